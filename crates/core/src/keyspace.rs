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

use gatehouse_storage::KeyRange;
use gatehouse_storage::tuple::{Subspace, pack};

use crate::codec::Key;
use crate::services::system::{Installation, Setting, SettingName};

pub const SYSTEM: &str = "system";
pub const SETTING: &str = "setting";

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
        // Integers, as entity IDs will be stored: type code 0x15 + one byte.
        assert_eq!(pack(&("user", 42u64)), b"\x02user\x00\x15\x2a");
        // Strings with NUL bytes are escaped so tuples still sort correctly.
        assert_eq!(pack(&("a\0b",)), b"\x02a\x00\xffb\x00");
    }
}
