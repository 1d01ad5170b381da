//! The change feed: every committed write to an entity subspace also appends a
//! change record, in the same transaction, under a sequence number that follows
//! commit order. Other instances follow the feed from a cursor to invalidate
//! their caches.
//!
//! Order comes from a head counter that every change-writing transaction reads
//! and increments; serializable transactions make the sequence the commit
//! order on every engine. (A FoundationDB engine can use versionstamps instead
//! and avoid the shared counter.)

use gatehouse_storage::tuple::{Element, unpack};
use gatehouse_storage::{RangeOptions, Store, Tx, TxError, decode_counter};
use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{Error, Result, keyspace};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Put,
    Delete,
}

/// One committed write.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub seq: u64,
    /// The subspace written, e.g. `setting`.
    pub subspace: String,
    /// The full key, hex-encoded.
    pub key: String,
    pub kind: ChangeKind,
}

impl Record for Change {
    const VERSION: u8 = 1;
    const NAME: &'static str = "change";
    const CHANGE_FEED: bool = false;
}

/// Appends a change record for `key` to the feed, inside `tx`.
pub async fn append(tx: &Tx, key: &[u8], kind: ChangeKind) -> Result<(), TxError<Error>> {
    let head_key = keyspace::change_head();
    let head = tx
        .get(&head_key)
        .await?
        .map_or(0, |v| decode_counter(&v) as u64);
    let seq = head + 1;
    tx.set(&head_key, &(seq as i64).to_le_bytes())?;
    let change = Change {
        seq,
        subspace: subspace_of(key),
        key: hex(key),
        kind,
    };
    let record = crate::codec::encode(&change).map_err(TxError::Abort)?;
    tx.set(keyspace::change(seq).as_bytes(), &record)?;
    Ok(())
}

fn subspace_of(key: &[u8]) -> String {
    match unpack::<Vec<Element>>(key)
        .ok()
        .and_then(|t| t.into_iter().next())
    {
        Some(Element::String(s)) => s.into_owned(),
        _ => String::new(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reading and trimming the feed.
pub struct ChangeFeed {
    store: Store,
}

/// Most change records returned by one read.
pub const MAX_READ: usize = 1000;

impl ChangeFeed {
    pub fn new(store: Store) -> Self {
        ChangeFeed { store }
    }

    /// The sequence number of the newest change (0 when there is none).
    pub async fn head(&self) -> Result<u64> {
        Ok(self
            .store
            .run(|tx| async move {
                Ok::<_, TxError<Error>>(
                    tx.get(&keyspace::change_head())
                        .await?
                        .map_or(0, |v| decode_counter(&v) as u64),
                )
            })
            .await?)
    }

    /// Changes after `cursor`, oldest first, at most `limit` (capped at [`MAX_READ`]).
    /// Pass the last `seq` returned as the next cursor.
    pub async fn read_after(&self, cursor: u64, limit: usize) -> Result<Vec<Change>> {
        let limit = limit.clamp(1, MAX_READ);
        let page = self
            .store
            .run(|tx| async move {
                Ok::<_, TxError<Error>>(
                    tx.get_range(
                        &keyspace::changes_between(cursor.saturating_add(1), u64::MAX),
                        RangeOptions::limit(limit),
                    )
                    .await?,
                )
            })
            .await?;
        crate::codec::decode_values(&page.entries)
    }

    /// Deletes all but the newest `keep` records; returns how many sequence
    /// numbers were trimmed (an upper bound on records deleted).
    pub async fn trim(&self, keep: u64) -> Result<u64> {
        Ok(self
            .store
            .run(|tx| async move {
                let head = tx
                    .get(&keyspace::change_head())
                    .await?
                    .map_or(0, |v| decode_counter(&v) as u64);
                let below = head.saturating_sub(keep).saturating_add(1);
                if below <= 1 {
                    return Ok::<_, TxError<Error>>(0);
                }
                tx.clear_range(&keyspace::changes_between(0, below))?;
                Ok(below - 1)
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
    use crate::services::system::SettingName;

    fn name(s: &str) -> SettingName {
        SettingName::parse(s).unwrap()
    }

    #[tokio::test]
    async fn writes_append_in_commit_order_and_trim_keeps_the_newest() {
        let store = Store::new(Arc::new(MemoryEngine::new()));
        let feed = ChangeFeed::new(store.clone());
        assert_eq!(feed.head().await.unwrap(), 0);
        for n in ["a", "b", "c"] {
            let key = keyspace::setting(&name(n));
            store
                .run(|tx| {
                    let key = &key;
                    async move {
                        key.put(
                            &tx,
                            &crate::services::system::Setting {
                                name: n.into(),
                                value: serde_json::Value::Null,
                                updated_at: DateTime::<Utc>::UNIX_EPOCH,
                            },
                        )
                        .await
                    }
                })
                .await
                .unwrap();
        }
        store
            .run(|tx| async move { keyspace::setting(&name("b")).clear(&tx).await })
            .await
            .unwrap();
        let all = feed.read_after(0, 100).await.unwrap();
        let seen: Vec<(u64, &str, ChangeKind)> = all
            .iter()
            .map(|c| (c.seq, c.subspace.as_str(), c.kind))
            .collect();
        assert_eq!(
            seen,
            vec![
                (1, "setting", ChangeKind::Put),
                (2, "setting", ChangeKind::Put),
                (3, "setting", ChangeKind::Put),
                (4, "setting", ChangeKind::Delete),
            ]
        );
        assert_eq!(all[1].key, hex(keyspace::setting(&name("b")).as_bytes()));
        assert_eq!(feed.read_after(2, 1).await.unwrap()[0].seq, 3);
        assert_eq!(feed.trim(2).await.unwrap(), 2);
        let kept: Vec<u64> = feed
            .read_after(0, 100)
            .await
            .unwrap()
            .iter()
            .map(|c| c.seq)
            .collect();
        assert_eq!(kept, vec![3, 4]);
        assert_eq!(feed.head().await.unwrap(), 4);
    }
}
