//! The keyspace: every subspace Gatehouse stores, with its data model.
//!
//! Keys are FoundationDB tuples, so they sort by their elements and look the same
//! in every engine. Index subspaces are named `<entity>_by_<field>`. The bytes are
//! pinned by the golden tests below: changing them orphans stored data.
//!
//! | key | value |
//! |---|---|
//! | `("system", "installation")` | [`Installation`] |
//! | `("setting", name)` | [`Setting`] |
//! | `("change_head",)` | `u64` little-endian: sequence of the newest change |
//! | `("change", seq)` | [`Change`]: one committed write to an entity subspace |
//! | `("cluster", "worker", id)` | [`WorkerLease`]: who holds snowflake worker ID `id` |
//! | `("cluster", "leader")` | [`LeaderLease`]: the current leader and its fencing token |

use gatehouse_storage::KeyRange;
use gatehouse_storage::tuple::{Subspace, pack};

use crate::changes::Change;
use crate::codec::Key;
use crate::services::cluster::{LeaderLease, WorkerLease};
use crate::services::system::{Installation, Setting, SettingName};

pub const SYSTEM: &str = "system";
pub const SETTING: &str = "setting";
pub const CHANGE: &str = "change";
pub const CHANGE_HEAD: &str = "change_head";
pub const CLUSTER: &str = "cluster";

/// `("system", "installation") = Installation`
pub fn installation() -> Key<Installation> {
    Key::new(pack(&(SYSTEM, "installation")))
}

/// `("setting", name) = Setting`
pub fn setting(name: &SettingName) -> Key<Setting> {
    Key::new(pack(&(SETTING, name.as_str())))
}

/// All of `("setting", *)`.
pub fn settings() -> KeyRange {
    KeyRange::subspace(&Subspace::from(SETTING))
}

/// `("change_head",)`: the sequence number of the newest change record.
pub fn change_head() -> Vec<u8> {
    pack(&(CHANGE_HEAD,))
}

/// `("change", seq) = Change`
pub fn change(seq: u64) -> Key<Change> {
    Key::new(pack(&(CHANGE, seq)))
}

/// Change records with sequence numbers in `[from, to)`.
pub fn changes_between(from: u64, to: u64) -> KeyRange {
    KeyRange::new(pack(&(CHANGE, from)), pack(&(CHANGE, to)))
}

/// `("cluster", "worker", id) = WorkerLease`
pub fn worker_lease(id: u16) -> Key<WorkerLease> {
    Key::new(pack(&(CLUSTER, "worker", id)))
}

/// All of `("cluster", "worker", *)`.
pub fn worker_leases() -> KeyRange {
    KeyRange::subspace(&Subspace::from(CLUSTER).subspace(&("worker",)))
}

/// `("cluster", "leader") = LeaderLease`
pub fn leader_lease() -> Key<LeaderLease> {
    Key::new(pack(&(CLUSTER, "leader")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        assert_eq!(
            installation().as_bytes(),
            b"\x02system\x00\x02installation\x00"
        );
        let name = SettingName::parse("ui.theme").unwrap();
        assert_eq!(
            setting(&name).as_bytes(),
            b"\x02setting\x00\x02ui.theme\x00"
        );
        assert_eq!(
            settings(),
            KeyRange::new(
                b"\x02setting\x00\x00".to_vec(),
                b"\x02setting\x00\xff".to_vec()
            )
        );
        assert_eq!(change_head(), b"\x02change_head\x00");
        assert_eq!(change(258).as_bytes(), b"\x02change\x00\x16\x01\x02");
        assert_eq!(
            worker_lease(7).as_bytes(),
            b"\x02cluster\x00\x02worker\x00\x15\x07"
        );
        assert_eq!(leader_lease().as_bytes(), b"\x02cluster\x00\x02leader\x00");
        // Integers, as entity IDs will be stored: type code 0x15 + one byte.
        assert_eq!(pack(&("user", 42u64)), b"\x02user\x00\x15\x2a");
        // Strings with NUL bytes are escaped so tuples still sort correctly.
        assert_eq!(pack(&("a\0b",)), b"\x02a\x00\xffb\x00");
    }
}
