//! The embedded durable engine, on redb: one file in the data directory, ACID,
//! crash-safe (every commit is fsynced before it is acknowledged), with MVCC
//! readers that never block.
//!
//! redb allows one writer at a time, so commits are serialized; optimistic
//! validation (see [`crate::occ`]) gives the same serializable semantics as the
//! distributed engines while transactions read without holding any lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use redb::{Database, ReadOnlyTable, ReadableDatabase, ReadableTable, TableDefinition};

use crate::engine::{EngineTransaction, KvEngine};
use crate::occ::{
    ApplyTarget, CommitLog, Committer, LiveSnapshots, OccTransaction, Snapshot, WriteBuffer,
};
use crate::{KeyRange, StorageError};

/// `key = value`, the whole keyspace.
const DATA: TableDefinition<&[u8], &[u8]> = TableDefinition::new("kv");
/// `"version" = u64`: the number of commits, read from each snapshot so that a
/// transaction knows exactly which commits it has seen.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
const VERSION_KEY: &str = "version";

/// File name of the database inside the data directory.
pub const DB_FILE: &str = "gatehouse.redb";

struct Inner {
    db: Database,
    path: PathBuf,
    /// Held while validating and applying a commit.
    log: Mutex<CommitLog>,
    /// The snapshots open transactions read.
    live: Arc<LiveSnapshots>,
}

/// The page cache when none is configured (`storage.cache_mb`).
pub const DEFAULT_CACHE_BYTES: usize = 32 * 1024 * 1024;

/// The embedded durable engine.
#[derive(Clone)]
pub struct EmbeddedEngine {
    inner: Arc<Inner>,
}

impl EmbeddedEngine {
    /// Opens (creating if needed) the store in `dir`, with the default cache.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Opens (creating if needed) the store in `dir`, caching at most
    /// `cache_bytes` of its pages in memory (redb's own default is 1 GiB,
    /// which a busy gateway's request logs fill: too much for a container).
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<Self, StorageError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StorageError::Unavailable(format!(
                "cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(DB_FILE);
        let db = Database::builder()
            .set_cache_size(cache_bytes)
            .create(&path)
            .map_err(|e| match e {
                redb::DatabaseError::DatabaseAlreadyOpen => StorageError::Unavailable(format!(
                    "{} is already open in another process (a running `gatehouse serve`?): \
                     the embedded engine serves one process at a time, so stop the server \
                     first, or use PostgreSQL to run several",
                    path.display()
                )),
                other => {
                    StorageError::Unavailable(format!("cannot open {}: {other}", path.display()))
                }
            })?;
        // Create the tables once, so read transactions can always open them.
        let write = db.begin_write().map_err(unavailable)?;
        {
            write.open_table(DATA).map_err(unavailable)?;
            write.open_table(META).map_err(unavailable)?;
        }
        write.commit().map_err(unavailable)?;
        let live = Arc::new(LiveSnapshots::default());
        Ok(EmbeddedEngine {
            inner: Arc::new(Inner {
                db,
                path,
                log: Mutex::new(CommitLog::new(live.clone())),
                live,
            }),
        })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }
}

fn unavailable(e: impl Into<redb::Error>) -> StorageError {
    match e.into() {
        redb::Error::Corrupted(msg) => StorageError::Corrupt(msg),
        other => StorageError::Unavailable(other.to_string()),
    }
}

#[async_trait]
impl KvEngine for EmbeddedEngine {
    fn name(&self) -> &'static str {
        "embedded"
    }

    async fn begin(&self) -> Result<Box<dyn EngineTransaction>, StorageError> {
        let live = self.inner.live.open();
        let read = self.inner.db.begin_read().map_err(unavailable)?;
        let data = read.open_table(DATA).map_err(unavailable)?;
        let meta = read.open_table(META).map_err(unavailable)?;
        let version = meta
            .get(VERSION_KEY)
            .map_err(unavailable)?
            .map_or(0, |v| v.value());
        Ok(Box::new(OccTransaction::new(
            TableSnapshot(data),
            version,
            Arc::new(self.clone()),
            live,
        )))
    }
}

#[async_trait]
impl Committer for EmbeddedEngine {
    async fn commit(
        &self,
        start_version: u64,
        reads: Vec<KeyRange>,
        writes: WriteBuffer,
    ) -> Result<(), StorageError> {
        let inner = self.inner.clone();
        // The commit fsyncs: keep it off the async worker threads.
        tokio::task::spawn_blocking(move || {
            let mut writes = writes;
            let mut log = inner.log.lock();
            log.validate(start_version, &reads)?;
            let write = inner.db.begin_write().map_err(unavailable)?;
            let version = {
                let mut meta = write.open_table(META).map_err(unavailable)?;
                let version = meta
                    .get(VERSION_KEY)
                    .map_err(unavailable)?
                    .map_or(0, |v| v.value())
                    + 1;
                meta.insert(VERSION_KEY, version).map_err(unavailable)?;
                writes.complete_stamps(version);
                let mut data = write.open_table(DATA).map_err(unavailable)?;
                writes.apply_to(&mut TableTarget(&mut data))?;
                version
            };
            write.commit().map_err(unavailable)?;
            log.record(version, &writes);
            Ok(())
        })
        .await
        .map_err(|e| StorageError::MaybeCommitted(format!("commit task failed: {e}")))?
    }
}

type RangeItem<'a> = Result<
    (
        redb::AccessGuard<'a, &'static [u8]>,
        redb::AccessGuard<'a, &'static [u8]>,
    ),
    redb::StorageError,
>;

struct TableSnapshot(ReadOnlyTable<&'static [u8], &'static [u8]>);

impl Snapshot for TableSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .0
            .get(key)
            .map_err(unavailable)?
            .map(|v| v.value().to_vec()))
    }

    fn scan(
        &self,
        range: &KeyRange,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let iter = self
            .0
            .range::<&[u8]>(range.begin.as_slice()..range.end.as_slice())
            .map_err(unavailable)?;
        let mut step = |entry: RangeItem<'_>| {
            let (k, v) = entry.map_err(unavailable)?;
            Ok::<bool, StorageError>(visit(k.value(), v.value()))
        };
        if reverse {
            for entry in iter.rev() {
                if !step(entry)? {
                    break;
                }
            }
        } else {
            for entry in iter {
                if !step(entry)? {
                    break;
                }
            }
        }
        Ok(())
    }
}

struct TableTarget<'a, 't>(&'a mut redb::Table<'t, &'static [u8], &'static [u8]>);

impl ApplyTarget for TableTarget<'_, '_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self
            .0
            .get(key)
            .map_err(unavailable)?
            .map(|v| v.value().to_vec()))
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0.insert(key, value).map_err(unavailable)?;
        Ok(())
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.0.remove(key).map_err(unavailable)?;
        Ok(())
    }

    fn clear_range(&mut self, range: &KeyRange) -> Result<(), StorageError> {
        self.0
            .retain_in::<&[u8], _>(range.begin.as_slice()..range.end.as_slice(), |_, _| false)
            .map_err(unavailable)?;
        Ok(())
    }
}
