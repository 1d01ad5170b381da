//! The embedded durable engine, on redb: one file in the data directory, ACID,
//! crash-safe (every commit is fsynced before it is acknowledged), with MVCC
//! readers that never block.
//!
//! redb allows one writer at a time, so commits are serialized; optimistic
//! validation (see [`crate::occ`]) gives the same serializable semantics as the
//! distributed engines while transactions read without holding any lock.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Held while validating and applying a group of commits.
    log: Mutex<CommitLog>,
    /// Commits waiting for the next group.
    queue: Mutex<VecDeque<Queued>>,
    /// Groups written (redb transactions committed, one fsync each).
    groups: AtomicU64,
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
                queue: Mutex::new(VecDeque::new()),
                groups: AtomicU64::new(0),
                live,
            }),
        })
    }

    /// How many groups of commits were written (each one redb transaction
    /// and one fsync).
    pub fn groups_written(&self) -> u64 {
        self.inner.groups.load(Ordering::Relaxed)
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

    fn commits_in_groups(&self) -> bool {
        true
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
        let (done, outcome) = tokio::sync::oneshot::channel();
        // Queued before the committing thread is asked for, so that commits
        // handed over together (a flush's batches) go out as one group.
        self.inner.queue.lock().push_back(Queued {
            start_version,
            reads,
            writes,
            done,
        });
        let inner = self.inner.clone();
        // The commit fsyncs: keep it off the async worker threads.
        let drained = tokio::task::spawn_blocking(move || inner.commit_queued()).await;
        match outcome.await {
            Ok(result) => result,
            Err(_) => Err(StorageError::MaybeCommitted(match drained {
                Err(e) => format!("commit task failed: {e}"),
                Ok(()) => "commit task ended without an answer".into(),
            })),
        }
    }
}

/// A commit waiting for the committing thread.
struct Queued {
    start_version: u64,
    reads: Vec<KeyRange>,
    writes: WriteBuffer,
    done: tokio::sync::oneshot::Sender<Result<(), StorageError>>,
}

/// Most commits written in one group: each holds up to 10 MB of writes.
const MAX_GROUP: usize = 8;

impl Inner {
    /// Commits everything queued, a group at a time, under the commit lock.
    /// Each commit queues itself and then asks for this, so a commit is
    /// always in a group its own call or an earlier one takes.
    fn commit_queued(&self) {
        let mut log = self.log.lock();
        loop {
            let group: Vec<Queued> = {
                let mut queue = self.queue.lock();
                let n = queue.len().min(MAX_GROUP);
                queue.drain(..n).collect()
            };
            if group.is_empty() {
                return;
            }
            self.commit_group(&mut log, group);
        }
    }

    /// Group commit: validates each queued commit in order (against the
    /// log and against the group's earlier members, which its snapshot has
    /// not seen), applies those that pass in one redb transaction, each
    /// under its own version, and makes them durable with one fsync. The
    /// flush's 10 MB batches touch mostly the same index and rollup pages,
    /// so a group writes each of those pages once instead of once a batch.
    fn commit_group(&self, log: &mut CommitLog, group: Vec<Queued>) {
        // The commits applied so far, each with its version.
        let mut accepted: Vec<(u64, Queued)> = Vec::with_capacity(group.len());
        let written = (|| {
            let write = self.db.begin_write().map_err(unavailable)?;
            {
                let mut meta = write.open_table(META).map_err(unavailable)?;
                let mut version = meta
                    .get(VERSION_KEY)
                    .map_err(unavailable)?
                    .map_or(0, |v| v.value());
                let mut data = write.open_table(DATA).map_err(unavailable)?;
                let mut queue = group.into_iter();
                while let Some(mut queued) = queue.next() {
                    if let Err(e) = validate(log, &accepted, &queued) {
                        let _ = queued.done.send(Err(e));
                        continue;
                    }
                    version += 1;
                    queued.writes.complete_stamps(version);
                    if let Err(e) = queued.writes.apply_to(&mut TableTarget(&mut data)) {
                        for unwritten in std::iter::once(queued).chain(queue.by_ref()) {
                            let _ = unwritten.done.send(Err(e.clone()));
                        }
                        return Err(e);
                    }
                    accepted.push((version, queued));
                }
                if accepted.is_empty() {
                    // Every member was answered; the redb transaction is dropped.
                    return Ok(());
                }
                meta.insert(VERSION_KEY, version).map_err(unavailable)?;
            }
            write.commit().map_err(unavailable)?;
            self.groups.fetch_add(1, Ordering::Relaxed);
            Ok::<_, StorageError>(())
        })();
        match written {
            Ok(()) => {
                for (version, queued) in accepted {
                    log.record(version, &queued.writes);
                    let _ = queued.done.send(Ok(()));
                }
            }
            // Nothing of the group was written (an unfinished redb
            // transaction is dropped): every member fails alike.
            Err(e) => {
                for (_, queued) in accepted {
                    let _ = queued.done.send(Err(e.clone()));
                }
            }
        }
    }
}

/// A queued commit's validation: against the commits after its snapshot in
/// the log, and against the group's members applied before it.
fn validate(
    log: &CommitLog,
    earlier: &[(u64, Queued)],
    queued: &Queued,
) -> Result<(), StorageError> {
    log.validate(queued.start_version, &queued.reads)?;
    if earlier
        .iter()
        .any(|(_, e)| e.writes.overlaps(&queued.reads))
    {
        return Err(StorageError::Conflict);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts `n` transactions that each read `"shared"` (when `read`), set
    /// it and a key of their own, then commits them while the commit lock is
    /// held, so they queue; returns their outcomes and how many groups the
    /// store wrote for them.
    async fn commit_queued(
        engine: &EmbeddedEngine,
        n: usize,
        read: bool,
    ) -> (Vec<Result<(), StorageError>>, u64) {
        let mut txs = Vec::new();
        for i in 0..n {
            let tx = engine.begin().await.unwrap();
            if read {
                tx.get(b"shared").await.unwrap();
            }
            tx.set(b"shared", format!("{i}").as_bytes());
            tx.set(format!("own/{i}").as_bytes(), b"x");
            txs.push(tx);
        }
        let before = engine.groups_written();
        let held = engine.inner.log.lock();
        let commits: Vec<_> = txs
            .into_iter()
            .map(|tx| tokio::spawn(async move { tx.commit().await }))
            .collect();
        // The test's own thread waits (the commits run on the workers).
        while engine.inner.queue.lock().len() < n {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(held);
        let mut outcomes = Vec::new();
        for commit in commits {
            outcomes.push(commit.await.unwrap());
        }
        (outcomes, engine.groups_written() - before)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn commits_queued_together_are_written_as_one_group() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).unwrap();
        let (outcomes, groups) = commit_queued(&engine, 5, false).await;
        assert!(outcomes.iter().all(Result::is_ok), "{outcomes:?}");
        assert_eq!(groups, 1);
        // Applied one after another (in queue order): one value stays.
        let tx = engine.begin().await.unwrap();
        let shared = tx.get(b"shared").await.unwrap().unwrap();
        assert!((0..5).any(|i| shared == format!("{i}").as_bytes()));
        for i in 0..5 {
            assert!(
                tx.get(format!("own/{i}").as_bytes())
                    .await
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_commit_conflicts_with_an_earlier_one_of_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let engine = EmbeddedEngine::open(dir.path()).unwrap();
        let (outcomes, groups) = commit_queued(&engine, 3, true).await;
        // All three read "shared" before any commit: the first of the group
        // commits, the two after it conflict with it.
        let committed: Vec<usize> = (0..3).filter(|&i| outcomes[i].is_ok()).collect();
        assert_eq!(committed.len(), 1, "{outcomes:?}");
        let winner = committed[0];
        for (i, outcome) in outcomes.iter().enumerate() {
            if i != winner {
                assert_eq!(outcome, &Err(StorageError::Conflict));
            }
        }
        assert_eq!(groups, 1);
        let tx = engine.begin().await.unwrap();
        assert_eq!(
            tx.get(b"shared").await.unwrap(),
            Some(format!("{winner}").into_bytes())
        );
        for i in 0..3 {
            let own = tx.get(format!("own/{i}").as_bytes()).await.unwrap();
            assert_eq!(own.is_some(), i == winner);
        }
        // Versions stay one a commit: a snapshot taken now validates
        // against nothing older, and the next commit goes through.
        tx.get(b"shared").await.unwrap();
        tx.set(b"shared", b"next");
        assert_eq!(tx.commit().await, Ok(()));
    }
}
