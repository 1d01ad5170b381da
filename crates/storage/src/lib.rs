//! Gatehouse storage: a bytes-only, ordered key-value store with serializable
//! transactions, and the engines behind it.
//!
//! Callers hold a [`Store`] and run transactions as closures with
//! [`Store::run`]. Every engine enforces the same limits ([`limits`]), the ones
//! of FoundationDB, so data and code move between engines unchanged. Keys are
//! built with the FoundationDB tuple encoding, re-exported as [`tuple`].
//!
//! This crate knows nothing of entities: it stores bytes.

pub mod embedded;
pub mod engine;
mod error;
#[cfg(feature = "fdb")]
pub mod fdb;
pub mod limits;
pub mod memory;
mod occ;
mod open;
#[cfg(feature = "postgres")]
pub mod postgres;
mod range;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

pub use foundationdb_tuple as tuple;
use rand::Rng;

pub use crate::engine::{EngineTransaction, KvEngine};
pub use crate::error::{StorageError, TxError};
use crate::limits::{MAX_KEY_SIZE, MAX_TRANSACTION_DURATION, MAX_TRANSACTION_SIZE, MAX_VALUE_SIZE};
pub use crate::open::{Engine, OpenError, StorageConfig, open};
pub use crate::range::{KeyRange, KeyValue, RangeOptions, RangePage, key_after};

/// Length of the stamp [`Tx::set_versionstamped_key`] inserts.
pub const VERSIONSTAMP_LEN: usize = 10;

/// How often [`Store::run`] tries a transaction before giving up on conflicts.
const MAX_ATTEMPTS: u32 = 50;

/// A handle to an open store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    engine: Arc<dyn KvEngine>,
}

impl Store {
    pub fn new(engine: Arc<dyn KvEngine>) -> Self {
        Store { engine }
    }

    /// The configuration name of the engine behind this store.
    pub fn engine_name(&self) -> &'static str {
        self.engine.name()
    }

    /// Whether other processes may use the same store at the same time.
    pub fn is_shared(&self) -> bool {
        self.engine.is_shared()
    }

    /// Whether transactions committed at the same time are written as one
    /// group ([`KvEngine::commits_in_groups`]).
    pub fn commits_in_groups(&self) -> bool {
        self.engine.commits_in_groups()
    }

    /// Runs `f` in a serializable transaction and commits it, retrying the whole
    /// closure on conflicts.
    ///
    /// # Warning
    ///
    /// The closure may run more than once: each attempt gets a fresh transaction,
    /// and only the last one commits. It must not have side effects outside the
    /// transaction (no sending email, no incrementing in-memory counters); do
    /// those after `run` returns. Returning `Err(TxError::Abort(_))` discards the
    /// attempt's writes and returns at once.
    pub async fn run<T, E, F, Fut>(&self, f: F) -> Result<T, TxError<E>>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, TxError<E>>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.attempt(&f).await;
            match result {
                Err(TxError::Storage(e)) if e.is_retryable() && attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt, error = %e, "retrying transaction");
                    tokio::time::sleep(backoff(attempt)).await;
                }
                other => return other,
            }
        }
    }

    /// Reads one page of `range` in a transaction of its own, retried like
    /// [`run`](Self::run): for a read that needs nothing else from its
    /// transaction.
    pub async fn read_range(
        &self,
        range: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangePage, StorageError> {
        let read = self.run(|tx| async move {
            Ok::<_, TxError<std::convert::Infallible>>(tx.get_range(range, options).await?)
        });
        match read.await {
            Ok(page) => Ok(page),
            Err(TxError::Storage(e)) => Err(e),
            Err(TxError::Abort(never)) => match never {},
        }
    }

    async fn attempt<T, E, F, Fut>(&self, f: &F) -> Result<T, TxError<E>>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<T, TxError<E>>>,
    {
        let tx = Tx::new(self.engine.begin().await?);
        let value = f(tx.clone()).await?;
        tx.check_age()?;
        tx.inner.engine_tx.commit().await?;
        Ok(value)
    }

    /// Checks that the engine answers a read.
    pub async fn ping(&self) -> Result<(), StorageError> {
        let tx = self.engine.begin().await?;
        tx.get(b"\xff/ping").await?;
        Ok(())
    }
}

/// Exponential backoff with jitter: 1 ms doubling to at most 128 ms.
fn backoff(attempt: u32) -> Duration {
    let ceiling = 1u64 << attempt.min(7);
    Duration::from_micros(rand::rng().random_range(500..=ceiling * 1000))
}

struct TxInner {
    engine_tx: Box<dyn EngineTransaction>,
    written: AtomicUsize,
    started: Instant,
    local_sequence: AtomicU16,
}

/// One attempt of a transaction, as handed to a [`Store::run`] closure. Clones
/// share the same transaction.
///
/// Mutations check the size limits at once and fail with
/// [`StorageError::KeyTooLarge`], [`StorageError::ValueTooLarge`] or
/// [`StorageError::TransactionTooLarge`] rather than at commit.
#[derive(Clone)]
pub struct Tx {
    inner: Arc<TxInner>,
}

impl Tx {
    fn new(engine_tx: Box<dyn EngineTransaction>) -> Self {
        Tx {
            inner: Arc::new(TxInner {
                engine_tx,
                written: AtomicUsize::new(0),
                started: Instant::now(),
                local_sequence: AtomicU16::new(0),
            }),
        }
    }

    pub async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        check_key(key)?;
        self.check_age()?;
        self.inner.engine_tx.get(key).await
    }

    /// Reads one page of `range`; continue with [`RangePage::next`].
    pub async fn get_range(
        &self,
        range: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangePage, StorageError> {
        self.check_age()?;
        if range.begin > range.end {
            return Err(StorageError::InvalidRange);
        }
        if range.is_empty() || options.limit == Some(0) {
            return Ok(RangePage::default());
        }
        self.inner.engine_tx.get_range(range, options).await
    }

    /// Every engine enforces FoundationDB's transaction lifetime, so code that
    /// works on one engine does not time out on another.
    fn check_age(&self) -> Result<(), StorageError> {
        if self.inner.started.elapsed() > MAX_TRANSACTION_DURATION {
            return Err(StorageError::TransactionTooOld {
                limit_secs: MAX_TRANSACTION_DURATION.as_secs(),
            });
        }
        Ok(())
    }

    pub fn set(&self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        if value.len() > MAX_VALUE_SIZE {
            return Err(StorageError::ValueTooLarge {
                size: value.len(),
                limit: MAX_VALUE_SIZE,
            });
        }
        self.account(key.len() + value.len())?;
        self.inner.engine_tx.set(key, value);
        Ok(())
    }

    pub fn clear(&self, key: &[u8]) -> Result<(), StorageError> {
        check_key(key)?;
        self.account(key.len())?;
        self.inner.engine_tx.clear(key);
        Ok(())
    }

    pub fn clear_range(&self, range: &KeyRange) -> Result<(), StorageError> {
        if range.begin > range.end {
            return Err(StorageError::InvalidRange);
        }
        self.account(range.begin.len() + range.end.len())?;
        self.inner.engine_tx.clear_range(range);
        Ok(())
    }

    /// Adds `delta` to the little-endian `i64` at `key` without a read conflict.
    pub fn atomic_add(&self, key: &[u8], delta: i64) -> Result<(), StorageError> {
        check_key(key)?;
        self.account(key.len() + 8)?;
        self.inner.engine_tx.atomic_add(key, &[delta]);
        Ok(())
    }

    /// Adds `deltas[i]` to lane `i` of the value at `key` — its bytes
    /// `8i..8i+8`, a little-endian `i64` — without a read conflict: several
    /// counters of one row in one key, one write instead of one per counter.
    /// The value becomes `deltas.len()` lanes (missing ones count as zero);
    /// read it with [`decode_lanes`]. With more than one lane the deltas must
    /// not be negative (FoundationDB adds the lanes as one integer, which is
    /// exact only while no lane borrows from the next), and a lane is exact
    /// until it passes `i64::MAX`.
    pub fn atomic_add_lanes(&self, key: &[u8], deltas: &[i64]) -> Result<(), StorageError> {
        check_key(key)?;
        if deltas.is_empty() || deltas.len() > MAX_LANES {
            return Err(StorageError::InvalidAdd(format!(
                "{} lanes (1 to {MAX_LANES})",
                deltas.len()
            )));
        }
        if deltas.len() > 1 && deltas.iter().any(|d| *d < 0) {
            return Err(StorageError::InvalidAdd(
                "a negative delta in an addition of several lanes".into(),
            ));
        }
        self.account(key.len() + 8 * deltas.len())?;
        self.inner.engine_tx.atomic_add(key, deltas);
        Ok(())
    }

    /// Writes `prefix ++ stamp ++ suffix = value` with a 10-byte versionstamp
    /// assigned at commit: keys written this way sort in commit order across
    /// all transactions (see [`EngineTransaction::set_versionstamped_key`]).
    /// Use [`Tx::next_local_sequence`] in `suffix` to keep several such keys of
    /// one transaction apart.
    pub fn set_versionstamped_key(
        &self,
        prefix: &[u8],
        suffix: &[u8],
        value: &[u8],
    ) -> Result<(), StorageError> {
        let key_len = prefix.len() + VERSIONSTAMP_LEN + suffix.len();
        if key_len > MAX_KEY_SIZE {
            return Err(StorageError::KeyTooLarge {
                size: key_len,
                limit: MAX_KEY_SIZE,
            });
        }
        if value.len() > MAX_VALUE_SIZE {
            return Err(StorageError::ValueTooLarge {
                size: value.len(),
                limit: MAX_VALUE_SIZE,
            });
        }
        self.account(key_len + value.len())?;
        self.inner
            .engine_tx
            .set_versionstamped_key(prefix, suffix, value);
        Ok(())
    }

    /// 0, 1, 2, … for each call within this attempt.
    pub fn next_local_sequence(&self) -> u16 {
        self.inner.local_sequence.fetch_add(1, Ordering::Relaxed)
    }

    fn account(&self, bytes: usize) -> Result<(), StorageError> {
        let total = self.inner.written.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > MAX_TRANSACTION_SIZE {
            return Err(StorageError::TransactionTooLarge {
                size: total,
                limit: MAX_TRANSACTION_SIZE,
            });
        }
        Ok(())
    }
}

fn check_key(key: &[u8]) -> Result<(), StorageError> {
    if key.len() > MAX_KEY_SIZE {
        return Err(StorageError::KeyTooLarge {
            size: key.len(),
            limit: MAX_KEY_SIZE,
        });
    }
    Ok(())
}

/// Decodes a value written by [`Tx::atomic_add`].
pub fn decode_counter(bytes: &[u8]) -> i64 {
    occ::lane(bytes, 0)
}

/// Most lanes one [`Tx::atomic_add_lanes`] adds to.
pub const MAX_LANES: usize = 16;

/// Decodes the first `N` lanes of a value written by [`Tx::atomic_add_lanes`]
/// (missing lanes read as zero).
pub fn decode_lanes<const N: usize>(bytes: &[u8]) -> [i64; N] {
    std::array::from_fn(|i| occ::lane(bytes, i))
}
