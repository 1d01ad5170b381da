//! The records' subspaces: request logs, their indexes and captured bodies,
//! the usage rollups statistics are read from, and the audit log's indexes.
//!
//! A request log is stored once under its ID (time order) and indexed under
//! each field the API filters by, each index key ending in the log's ID so
//! that a time window is a key range of the index too. An index entry's
//! value repeats the log's filter fields, so a query with several filters
//! walks one index and decides on the entries alone, reading only the logs
//! it returns.
//!
//! Rollups are kept per dimension, day first within one, so that statistics
//! over `from..=to` grouped by that dimension are one contiguous range of
//! (days × groups) rows, whatever the history's length. A row is one value
//! of four `i64` lanes ([`ROLLUP_LANES`]); releases before rows of lanes
//! wrote one counter per field (`…, group, field`), which readers still sum
//! until the `records_layout` job has folded them into rows.

use gatehouse_storage::KeyRange;
use gatehouse_storage::tuple::{Subspace, pack};

use crate::Id;
use crate::codec::Key;
use crate::model::usage::{LogBodies, RequestLog};

pub const REQUEST_LOG: &str = "request_log";
pub const REQUEST_BODY: &str = "request_body";
pub const REQUEST_LOG_BY: &str = "request_log_by";
pub const AUDIT_BY: &str = "audit_by";
pub const USAGE_ALL: &str = "usage_all";
pub const USAGE_USER: &str = "usage_user";
/// The rollups of earlier releases, moved into the per-dimension ones.
pub const USAGE_DAY: &str = "usage_day";

/// `("request_log", id) = RequestLog`, without its bodies.
pub fn request_log(id: Id) -> Key<RequestLog> {
    Key::new(pack(&(REQUEST_LOG, id.0)))
}

/// All request logs, oldest first.
pub fn request_logs() -> KeyRange {
    KeyRange::subspace(&Subspace::from(REQUEST_LOG))
}

/// `("request_body", id) = LogBodies`
pub fn request_body(id: Id) -> Key<LogBodies> {
    Key::new(pack(&(REQUEST_BODY, id.0)))
}

/// All captured bodies.
pub fn request_bodies() -> KeyRange {
    KeyRange::subspace(&Subspace::from(REQUEST_BODY))
}

/// One index of request logs: the logs of a user, a key, an organization, a
/// model, or a status class (`2` for 2xx, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogIndex<'a> {
    User(Id),
    Key(Id),
    Org(Id),
    Model(&'a str),
    StatusClass(u16),
}

impl LogIndex<'_> {
    /// `("request_log_by", kind, value, *)`: this index's entries.
    pub fn entries(&self) -> Entries {
        let by = Subspace::from(REQUEST_LOG_BY);
        Entries(match *self {
            LogIndex::User(id) => by.subspace(&("user", id.0)),
            LogIndex::Key(id) => by.subspace(&("key", id.0)),
            LogIndex::Org(id) => by.subspace(&("org", id.0)),
            LogIndex::Model(name) => by.subspace(&("model", name)),
            LogIndex::StatusClass(class) => by.subspace(&("status", u64::from(class))),
        })
    }
}

/// One index of audit events: by the user who acted, the organization it
/// happened in, what it was done to, or its action's area (`keys` of
/// `keys.create`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditIndex<'a> {
    Actor(Id),
    Org(Id),
    Target(&'a str, &'a str),
    Area(&'a str),
}

impl AuditIndex<'_> {
    /// `("audit_by", kind, value…, *)`: this index's entries.
    pub fn entries(&self) -> Entries {
        let by = Subspace::from(AUDIT_BY);
        Entries(match *self {
            AuditIndex::Actor(id) => by.subspace(&("actor", id.0)),
            AuditIndex::Org(id) => by.subspace(&("org", id.0)),
            AuditIndex::Target(kind, id) => by.subspace(&("target", kind, id)),
            AuditIndex::Area(area) => by.subspace(&("area", area)),
        })
    }
}

/// The entries of one index: keys that end in the ID of the record they
/// stand for, so that a time window is a key range of the index too.
pub struct Entries(Subspace);

impl Entries {
    /// The entry of record `id`.
    pub fn entry(&self, id: Id) -> Vec<u8> {
        self.0.pack(&(id.0,))
    }

    /// Every entry.
    pub fn range(&self) -> KeyRange {
        KeyRange::subspace(&self.0)
    }

    /// The record ID an entry ends in (`None`: not an entry of this index).
    pub fn id_of(&self, key: &[u8]) -> Option<Id> {
        self.0.unpack::<(u64,)>(key).ok().map(|(id,)| Id(id))
    }
}

/// The lanes of a rollup row, in order.
pub const ROLLUP_LANES: [&str; 4] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
];

/// `("usage_all", dimension, day, group)`: a rollup row, the four
/// [`ROLLUP_LANES`] as `i64` lanes (atomic adds).
pub fn usage_all_row(dimension: &str, day: &str, group: &str) -> Vec<u8> {
    pack(&(USAGE_ALL, dimension, day, group))
}

/// `("usage_all", dimension, day, group, field)`: one `i64` counter, as
/// releases before rows of lanes wrote them (folded into rows).
pub fn usage_all_field(dimension: &str, day: &str, group: &str, field: &str) -> Vec<u8> {
    pack(&(USAGE_ALL, dimension, day, group, field))
}

/// Every counter of `("usage_all", dimension, day)` for days `from..=to`
/// (`YYYY-MM-DD`, so text order is day order).
pub fn usage_all_days(dimension: &str, from: &str, to: &str) -> KeyRange {
    let dimension = Subspace::from(USAGE_ALL).subspace(&(dimension,));
    days(&dimension, from, to)
}

/// `("usage_user", user, dimension, day, group)`: one user's rollup row,
/// lanes as in [`usage_all_row`].
pub fn usage_user_row(user: Id, dimension: &str, day: &str, group: &str) -> Vec<u8> {
    pack(&(USAGE_USER, user.0, dimension, day, group))
}

/// `("usage_user", user, dimension, day, group, field)`: one `i64` counter,
/// as releases before rows of lanes wrote them (folded into rows).
pub fn usage_user_field(user: Id, dimension: &str, day: &str, group: &str, field: &str) -> Vec<u8> {
    pack(&(USAGE_USER, user.0, dimension, day, group, field))
}

/// Every rollup row and counter, everyone's then each user's (with the
/// `usage_day` subspace between them, which the fold leaves alone).
pub fn usage_rollups() -> KeyRange {
    KeyRange::new(
        KeyRange::subspace(&Subspace::from(USAGE_ALL)).begin,
        KeyRange::subspace(&Subspace::from(USAGE_USER)).end,
    )
}

/// Where a rollup key stands: `Some((user, dimension, day, group, field))`
/// (`user` `None` for everyone's, `field` `None` for a row of lanes);
/// `None` for a key outside the rollups.
pub type RollupKey<'a> = (
    Option<Id>,
    std::borrow::Cow<'a, str>,
    std::borrow::Cow<'a, str>,
    std::borrow::Cow<'a, str>,
    Option<std::borrow::Cow<'a, str>>,
);

/// Reads a key of [`usage_rollups`].
pub fn parse_rollup(key: &[u8]) -> Option<RollupKey<'_>> {
    use std::borrow::Cow;
    let all = Subspace::from(USAGE_ALL);
    let user = Subspace::from(USAGE_USER);
    if let Ok((d, day, g)) = all.unpack::<(Cow<str>, Cow<str>, Cow<str>)>(key) {
        return Some((None, d, day, g, None));
    }
    if let Ok((d, day, g, f)) = all.unpack::<(Cow<str>, Cow<str>, Cow<str>, Cow<str>)>(key) {
        return Some((None, d, day, g, Some(f)));
    }
    if let Ok((u, d, day, g)) = user.unpack::<(u64, Cow<str>, Cow<str>, Cow<str>)>(key) {
        return Some((Some(Id(u)), d, day, g, None));
    }
    user.unpack::<(u64, Cow<str>, Cow<str>, Cow<str>, Cow<str>)>(key)
        .ok()
        .map(|(u, d, day, g, f)| (Some(Id(u)), d, day, g, Some(f)))
}

/// Every counter of `("usage_user", user, dimension, day)` for days `from..=to`.
pub fn usage_user_days(user: Id, dimension: &str, from: &str, to: &str) -> KeyRange {
    let dimension = Subspace::from(USAGE_USER).subspace(&(user.0, dimension));
    days(&dimension, from, to)
}

fn days(dimension: &Subspace, from: &str, to: &str) -> KeyRange {
    KeyRange::new(
        dimension.pack(&(from,)),
        KeyRange::subspace(&dimension.subspace(&(to,))).end,
    )
}

/// `("usage_day", day, user, key, model, field)`: a counter of an earlier
/// release (tests write them to check their move).
pub fn usage_day(day: &str, user: Id, key: Id, model: &str, field: &str) -> Vec<u8> {
    pack(&(USAGE_DAY, day, user.0, key.0, model, field))
}

/// Every `("usage_day", …)` counter left.
pub fn usage_days() -> KeyRange {
    KeyRange::subspace(&Subspace::from(USAGE_DAY))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        let (a, b) = (Id(1), Id(2));
        assert_eq!(request_log(b).as_bytes(), b"\x02request_log\x00\x15\x02");
        assert_eq!(request_body(b).as_bytes(), b"\x02request_body\x00\x15\x02");
        assert_eq!(
            LogIndex::User(a).entries().entry(b),
            b"\x02request_log_by\x00\x02user\x00\x15\x01\x15\x02"
        );
        assert_eq!(
            LogIndex::Key(a).entries().entry(b),
            b"\x02request_log_by\x00\x02key\x00\x15\x01\x15\x02"
        );
        assert_eq!(
            LogIndex::Org(a).entries().entry(b),
            b"\x02request_log_by\x00\x02org\x00\x15\x01\x15\x02"
        );
        assert_eq!(
            LogIndex::Model("m").entries().entry(b),
            b"\x02request_log_by\x00\x02model\x00\x02m\x00\x15\x02"
        );
        assert_eq!(
            LogIndex::StatusClass(4).entries().entry(b),
            b"\x02request_log_by\x00\x02status\x00\x15\x04\x15\x02"
        );
        let (m, n, mm) = (
            LogIndex::Model("m").entries(),
            LogIndex::Model("n").entries(),
            LogIndex::Model("mm").entries(),
        );
        assert_eq!(m.id_of(&m.entry(b)), Some(b));
        assert_eq!(m.id_of(&n.entry(b)), None);
        assert!(!m.range().contains(&mm.entry(b)));
        assert_eq!(
            AuditIndex::Actor(a).entries().entry(b),
            b"\x02audit_by\x00\x02actor\x00\x15\x01\x15\x02"
        );
        assert_eq!(
            AuditIndex::Org(a).entries().entry(b),
            b"\x02audit_by\x00\x02org\x00\x15\x01\x15\x02"
        );
        assert_eq!(
            AuditIndex::Target("user", "7").entries().entry(b),
            b"\x02audit_by\x00\x02target\x00\x02user\x00\x027\x00\x15\x02"
        );
        assert_eq!(
            AuditIndex::Area("keys").entries().entry(b),
            b"\x02audit_by\x00\x02area\x00\x02keys\x00\x15\x02"
        );
        assert_eq!(
            usage_all_row("model", "2026-11-28", "m"),
            b"\x02usage_all\x00\x02model\x00\x022026-11-28\x00\x02m\x00"
        );
        assert_eq!(
            usage_user_row(a, "day", "2026-11-28", ""),
            b"\x02usage_user\x00\x15\x01\x02day\x00\x022026-11-28\x00\x02\x00"
        );
        assert_eq!(
            usage_all_field("model", "2026-11-28", "m", "requests"),
            b"\x02usage_all\x00\x02model\x00\x022026-11-28\x00\x02m\x00\x02requests\x00"
        );
        assert_eq!(
            usage_user_field(a, "day", "2026-11-28", "", "cost_micros"),
            b"\x02usage_user\x00\x15\x01\x02day\x00\x022026-11-28\x00\x02\x00\x02cost_micros\x00"
        );
        assert_eq!(
            usage_day("2026-11-28", a, b, "m", "requests"),
            b"\x02usage_day\x00\x022026-11-28\x00\x15\x01\x15\x02\x02m\x00\x02requests\x00"
        );
        assert!(usage_days().contains(&usage_day("2026-11-28", a, b, "m", "requests")));
    }

    #[test]
    fn a_days_range_holds_exactly_its_days() {
        let range = usage_all_days("model", "2026-11-02", "2026-11-03");
        for (day, inside) in [
            ("2026-11-01", false),
            ("2026-11-02", true),
            ("2026-11-03", true),
            ("2026-11-04", false),
        ] {
            assert_eq!(
                range.contains(&usage_all_row("model", day, "m")),
                inside,
                "{day}"
            );
            assert_eq!(
                range.contains(&usage_all_field("model", day, "m", "requests")),
                inside,
                "{day}"
            );
            assert!(!range.contains(&usage_all_row("key", day, "m")));
        }
        let mine = usage_user_days(Id(7), "day", "2026-11-02", "2026-11-02");
        assert!(mine.contains(&usage_user_row(Id(7), "day", "2026-11-02", "")));
        assert!(mine.contains(&usage_user_field(
            Id(7),
            "day",
            "2026-11-02",
            "",
            "requests"
        )));
        assert!(!mine.contains(&usage_user_row(Id(8), "day", "2026-11-02", "")));
    }

    #[test]
    fn rollup_keys_of_both_layouts_read_back_and_nothing_else_does() {
        use std::borrow::Cow;
        let rollups = usage_rollups();
        let cow = Cow::Borrowed;
        let cases = [
            (
                usage_all_row("model", "2026-11-02", "m"),
                (None, "model", "m", None),
            ),
            (
                usage_all_field("model", "2026-11-02", "m", "requests"),
                (None, "model", "m", Some("requests")),
            ),
            (
                usage_user_row(Id(7), "key", "2026-11-02", "9"),
                (Some(Id(7)), "key", "9", None),
            ),
            (
                usage_user_field(Id(7), "key", "2026-11-02", "9", "cost_micros"),
                (Some(Id(7)), "key", "9", Some("cost_micros")),
            ),
        ];
        for (key, (user, dimension, group, field)) in cases {
            assert!(rollups.contains(&key));
            assert_eq!(
                parse_rollup(&key),
                Some((
                    user,
                    cow(dimension),
                    cow("2026-11-02"),
                    cow(group),
                    field.map(cow)
                ))
            );
        }
        let old = usage_day("2026-11-02", Id(1), Id(2), "m", "requests");
        assert!(
            rollups.contains(&old),
            "between the two: the fold must skip it"
        );
        assert_eq!(parse_rollup(&old), None);
        assert_eq!(parse_rollup(request_log(Id(1)).as_bytes()), None);
    }
}
