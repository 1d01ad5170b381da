//! Time-ordered records with indexes: request logs and audit events.
//!
//! Such a record is stored under its snowflake ID (so its subspace is in
//! time order) and entered in an index per field its list filters by, each
//! entry's key ending in the record's ID. An entry's value repeats the
//! record's filter fields, so a list with several filters walks the
//! narrowest index, decides on entries alone, and reads only the records
//! it returns. A walk examines at most a budget of entries per page: a rare
//! combination answers a short page with a cursor to continue from, never
//! an unbounded scan.
//!
//! Retention deletes records with their entries a page per transaction, and
//! records written before their indexes existed are entered by a resumable
//! migration. Both are here once, for every such record.

use gatehouse_storage::{KeyRange, RangeOptions, Store, Tx, TxError};

use crate::codec::{self, Record};
use crate::{Error, Id, Result, keyspace};

/// The re-indexing migrations of request logs and of audit events.
pub const LOG_INDEX: &str = "request_log_index";
pub const AUDIT_INDEX: &str = "audit_index";
/// The marker of everyone's weekly usage rows by user: `{"since":
/// "YYYY-MM-DD"}`, the Monday from which they are complete.
pub const USAGE_WEEKS: &str = "usage_weeks";
/// The fold of one-counter-per-field usage rollups into rows of lanes.
pub const USAGE_LANES: &str = "usage_lanes";

/// Marks the re-indexing migrations done, in the transaction that creates a
/// store: a new store has nothing an earlier release wrote (without this,
/// the first minute's records, or a backfill of past ones, would be
/// re-indexed for nothing).
pub async fn mark_indexed(
    tx: &Tx,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<(), TxError<Error>> {
    for name in [LOG_INDEX, AUDIT_INDEX, USAGE_LANES] {
        let marker = crate::model::system::Setting {
            name: name.to_string(),
            value: serde_json::json!({"done": true, "new_store": true}),
            updated_at: now,
        };
        keyspace::migration(name).put(tx, &marker).await?;
    }
    // Weekly usage rows are complete from the start on a new store.
    let weeks = crate::model::system::Setting {
        name: USAGE_WEEKS.to_string(),
        value: serde_json::json!({"since": "0001-01-01", "new_store": true}),
        updated_at: now,
    };
    keyspace::migration(USAGE_WEEKS).put(tx, &weeks).await?;
    Ok(())
}

/// Index entries (or records) a page examines at most.
pub const SCAN_BUDGET: usize = 20_000;
/// Entries read per storage round trip.
const READ_PAGE: usize = 1_000;
/// Records entered in their indexes per transaction.
const WRITE_PAGE: usize = 500;
/// Records deleted per transaction (each a handful of small keys to clear:
/// a few hundred kilobytes a transaction; fewer, larger commits trim faster).
const TRIM_PAGE: usize = 2_000;

/// What a walk found: the kept entries' record IDs and values, newest first,
/// and where the next page starts (before that ID) when the budget ran out
/// with more left.
pub struct Found {
    pub entries: Vec<(Id, Vec<u8>)>,
    pub next: Option<Id>,
}

/// Walks `range` newest first, keeping the entries `keep` accepts, until
/// `limit + 1` are kept (one more than a page: there is another page) or
/// `budget` entries were examined. `id_of` reads an entry's record ID from
/// its key (`None`: not an entry of this walk).
pub async fn walk_newest(
    store: &Store,
    range: KeyRange,
    id_of: impl Fn(&[u8]) -> Option<Id>,
    keep: impl Fn(&[u8]) -> bool,
    limit: usize,
    budget: usize,
) -> Result<Found> {
    let budget = budget.max(1);
    let (mut entries, mut scanned, mut last) = (Vec::new(), 0, None);
    let mut range = Some(range);
    while let Some(current) = range.take() {
        if current.is_empty() {
            break;
        }
        let options = RangeOptions::limit(READ_PAGE.min(budget - scanned)).reversed();
        let page = store.read_range(&current, options).await?;
        for (key, value) in page.entries {
            scanned += 1;
            let Some(id) = id_of(&key) else { continue };
            last = Some(id);
            if keep(&value) {
                entries.push((id, value));
                if entries.len() > limit {
                    return Ok(Found {
                        entries,
                        next: None,
                    });
                }
            }
        }
        range = page.next;
        if scanned >= budget {
            // More may be left: the next page starts before the last entry examined.
            return Ok(Found {
                entries,
                next: range.and(last),
            });
        }
    }
    Ok(Found {
        entries,
        next: None,
    })
}

/// The part of `all` (a subspace whose keys end in IDs, as `key_of` makes
/// them) from `lower` up to, not including, `upper`.
pub fn id_range(
    all: KeyRange,
    key_of: impl Fn(Id) -> Vec<u8>,
    (lower, upper): (Option<Id>, Option<Id>),
) -> KeyRange {
    KeyRange::new(
        lower.map_or(all.begin, &key_of),
        upper.map_or(all.end, &key_of),
    )
}

/// Deletes the records of `all` (stored under keys `key_of` makes of their
/// IDs) older than `days` before `now_ms`, oldest first, [`TRIM_PAGE`] per
/// transaction, with what `clear` clears for each (its entries); returns
/// how many.
pub async fn trim<T: Record>(
    store: &Store,
    (all, key_of): (KeyRange, impl Fn(Id) -> Vec<u8>),
    (now_ms, days): (i64, u64),
    clear: impl Fn(&Tx, &T) -> Result<(), TxError<Error>>,
) -> Result<usize> {
    let days = i64::try_from(days).unwrap_or(i64::MAX / 86_400_000);
    let cutoff = now_ms - days.saturating_mul(86_400_000);
    let range = &KeyRange::new(all.begin, key_of(Id::first_at(cutoff)));
    let clear = &clear;
    let mut trimmed = 0;
    loop {
        let gone = store
            .run(|tx| async move {
                let page = tx.get_range(range, RangeOptions::limit(TRIM_PAGE)).await?;
                for (key, value) in &page.entries {
                    tx.clear(key)?;
                    // A record that does not decode still goes; its entries cannot be named.
                    if let Ok(record) = codec::decode::<T>(value) {
                        clear(&tx, &record)?;
                    }
                }
                Ok::<_, TxError<Error>>(page.entries.len())
            })
            .await?;
        trimmed += gone;
        if gone < TRIM_PAGE {
            return Ok(trimmed);
        }
        crate::blocking::yield_now().await;
    }
}

/// Rewrites the records of `all` (stored under keys `key_of` makes of their
/// IDs, `(subspace, id)`) made before a minute after `now` (later ones were
/// written by this release) with the writes `rows` makes of each (their
/// current layout and index entries), a page per transaction, keeping its progress
/// under the migration marker `name` in the same transaction: a run cut
/// short resumes where it stopped, and a finished one does nothing.
/// Returns how many records were rewritten.
pub async fn reindex<T: Record>(
    store: &Store,
    name: &'static str,
    (all, key_of): (KeyRange, impl Fn(Id) -> Vec<u8>),
    now: chrono::DateTime<chrono::Utc>,
    rows: impl Fn(&T, &mut Vec<(Vec<u8>, Vec<u8>)>) -> Result<()>,
) -> Result<usize> {
    let until = Id::first_at(now.timestamp_millis() + 60_000);
    let (rows, all, key_of) = (&rows, &all, &key_of);
    let mut moved = 0;
    loop {
        let step = store
            .run(|tx| async move {
                let marker = keyspace::migration(name).get(&tx).await?;
                let progress = marker.as_ref().map(|m| &m.value);
                if progress.is_some_and(|p| p["done"] == true) {
                    return Ok(None);
                }
                // Records from `until` on were written with their entries.
                let until = progress
                    .and_then(|p| p["until"].as_u64())
                    .unwrap_or(until.0);
                let after = progress.and_then(|p| p["after"].as_u64());
                let begin = after.map_or(all.begin.clone(), |a| {
                    gatehouse_storage::key_after(&key_of(Id(a)))
                });
                let range = KeyRange::new(begin, key_of(Id(until)));
                let page = tx
                    .get_range(&range, RangeOptions::limit(WRITE_PAGE))
                    .await?;
                let mut writes = Vec::new();
                for (_, value) in &page.entries {
                    if let Ok(record) = codec::decode::<T>(value) {
                        rows(&record, &mut writes).map_err(TxError::Abort)?;
                    }
                }
                for (key, value) in &writes {
                    tx.set(key, value)?;
                }
                let last = page.entries.last().and_then(|(key, _)| {
                    gatehouse_storage::tuple::unpack::<(String, u64)>(key)
                        .ok()
                        .map(|(_, id)| id)
                });
                let marker = crate::model::system::Setting {
                    name: name.to_string(),
                    value: serde_json::json!({
                        "until": until,
                        "after": last.or(after),
                        "done": page.next.is_none(),
                    }),
                    updated_at: now,
                };
                keyspace::migration(name).put(&tx, &marker).await?;
                Ok::<_, TxError<Error>>(Some(page.entries.len()))
            })
            .await?;
        match step {
            Some(n) => moved += n,
            None => return Ok(moved),
        }
        crate::blocking::yield_now().await;
    }
}
