//! The change feed: every committed write to an entity subspace also appends a
//! change record, in the same transaction, under a versionstamped key, so the
//! records sort in commit order on every engine (FoundationDB's native
//! versionstamps, the commit version on the embedded engines, a commit-time
//! counter on PostgreSQL). Other instances follow the feed from a cursor to
//! invalidate their caches.

use std::fmt;

use gatehouse_storage::{KeyRange, RangeOptions, Store, TxError, decode_counter, key_after};

use crate::codec::unhex;
pub use crate::codec::{ChangeKind, ChangeRecord};
use crate::{Error, Result, keyspace};

/// A position in the feed: the 12 bytes after the record prefix (10-byte
/// versionstamp, 2-byte order within the transaction). Cursors compare in
/// commit order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangeCursor(Vec<u8>);

impl ChangeCursor {
    /// Parses the hex form produced by `Display`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() != 24 {
            return Err(Error::invalid_input(
                "a change cursor is 24 hexadecimal digits",
            ));
        }
        unhex(s)
            .map(ChangeCursor)
            .ok_or_else(|| Error::invalid_input("a change cursor is 24 hexadecimal digits"))
    }
}

impl fmt::Display for ChangeCursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::codec::hex(&self.0))
    }
}

/// One committed write, as read from the feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub cursor: ChangeCursor,
    pub record: ChangeRecord,
}

/// Reading and trimming the feed.
pub struct ChangeFeed {
    store: Store,
}

/// Most change records returned by one read, and deleted by one trim transaction.
pub const MAX_READ: usize = 1000;

impl ChangeFeed {
    pub fn new(store: Store) -> Self {
        ChangeFeed { store }
    }

    fn decode(entries: Vec<(Vec<u8>, Vec<u8>)>) -> Result<Vec<Change>> {
        let prefix_len = keyspace::change_prefix().len();
        entries
            .into_iter()
            .map(|(key, value)| {
                Ok(Change {
                    cursor: ChangeCursor(key.get(prefix_len..).unwrap_or_default().to_vec()),
                    record: crate::codec::decode(&value)?,
                })
            })
            .collect()
    }

    /// The cursor of the newest change, if any: start following from here to
    /// see only what comes next.
    pub async fn head(&self) -> Result<Option<ChangeCursor>> {
        let page = self
            .store
            .read_range(&keyspace::changes(), RangeOptions::limit(1).reversed())
            .await?;
        Ok(Self::decode(page.entries)?.pop().map(|c| c.cursor))
    }

    /// Changes after `cursor` (from the oldest kept when `None`), oldest first,
    /// at most `limit` (capped at [`MAX_READ`]). Pass the last cursor returned
    /// as the next `cursor`.
    pub async fn read_after(
        &self,
        cursor: Option<&ChangeCursor>,
        limit: usize,
    ) -> Result<Vec<Change>> {
        let limit = limit.clamp(1, MAX_READ);
        let all = keyspace::changes();
        let range = match cursor {
            Some(c) => {
                let mut key = keyspace::change_prefix();
                key.extend_from_slice(&c.0);
                KeyRange::new(key_after(&key), all.end)
            }
            None => all,
        };
        let page = self
            .store
            .read_range(&range, RangeOptions::limit(limit))
            .await?;
        Self::decode(page.entries)
    }

    /// Deletes the oldest records so that at most `keep` remain, at most
    /// [`MAX_READ`] per call; returns how many were deleted.
    pub async fn trim(&self, keep: u64) -> Result<u64> {
        Ok(self
            .store
            .run(|tx| async move {
                let count = |name: &'static str| {
                    let tx = tx.clone();
                    async move {
                        Ok::<u64, TxError<Error>>(
                            tx.get(&keyspace::change_count(name))
                                .await?
                                .map_or(0, |v| decode_counter(&v).max(0) as u64),
                        )
                    }
                };
                let live = count("appended")
                    .await?
                    .saturating_sub(count("trimmed").await?);
                let excess = live.saturating_sub(keep).min(MAX_READ as u64) as usize;
                if excess == 0 {
                    return Ok(0);
                }
                let all = keyspace::changes();
                let oldest = tx.get_range(&all, RangeOptions::limit(excess)).await?;
                let Some((last, _)) = oldest.entries.last() else {
                    return Ok(0);
                };
                tx.clear_range(&KeyRange::new(all.begin.clone(), key_after(last)))?;
                let removed = oldest.entries.len() as u64;
                tx.atomic_add(&keyspace::change_count("trimmed"), removed as i64)?;
                Ok(removed)
            })
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use chrono::{DateTime, Utc};
    use gatehouse_storage::memory::MemoryEngine;

    use super::*;
    use crate::services::system::{Setting, SettingName};

    fn name(s: &str) -> SettingName {
        SettingName::parse(s).unwrap()
    }

    fn setting(n: &str) -> Setting {
        Setting {
            name: n.into(),
            value: serde_json::Value::Null,
            updated_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[tokio::test]
    async fn writes_append_in_commit_order_and_trim_keeps_the_newest() {
        let store = Store::new(Arc::new(MemoryEngine::new()));
        let feed = ChangeFeed::new(store.clone());
        assert_eq!(feed.head().await.unwrap(), None);
        for n in ["a", "b", "c"] {
            store
                .run(|tx| async move { keyspace::setting(&name(n)).put(&tx, &setting(n)).await })
                .await
                .unwrap();
        }
        // Two writes in one transaction: two records, in write order.
        store
            .run(|tx| async move {
                keyspace::setting(&name("b")).clear(&tx).await?;
                keyspace::setting(&name("d")).put(&tx, &setting("d")).await
            })
            .await
            .unwrap();
        let all = feed.read_after(None, 100).await.unwrap();
        let seen: Vec<(String, ChangeKind)> = all
            .iter()
            .map(|c| (c.record.key.clone(), c.record.kind))
            .collect();
        let key = |n: &str| crate::codec::hex(keyspace::setting(&name(n)).as_bytes());
        assert_eq!(
            seen,
            vec![
                (key("a"), ChangeKind::Put),
                (key("b"), ChangeKind::Put),
                (key("c"), ChangeKind::Put),
                (key("b"), ChangeKind::Delete),
                (key("d"), ChangeKind::Put),
            ]
        );
        assert!(all.iter().all(|c| c.record.subspace == "setting"));
        assert!(all.windows(2).all(|w| w[0].cursor < w[1].cursor));
        assert_eq!(feed.head().await.unwrap().as_ref(), Some(&all[4].cursor));

        // Cursors round-trip through their text form and resume after themselves.
        let cursor = ChangeCursor::parse(&all[1].cursor.to_string()).unwrap();
        let next = feed.read_after(Some(&cursor), 1).await.unwrap();
        assert_eq!(next[0].record.key, key("c"));
        assert!(ChangeCursor::parse("zz").is_err());

        assert_eq!(feed.trim(2).await.unwrap(), 3);
        assert_eq!(feed.trim(2).await.unwrap(), 0);
        let kept: Vec<ChangeCursor> = feed
            .read_after(None, 100)
            .await
            .unwrap()
            .into_iter()
            .map(|c| c.cursor)
            .collect();
        assert_eq!(kept, vec![all[3].cursor.clone(), all[4].cursor.clone()]);
    }
}
