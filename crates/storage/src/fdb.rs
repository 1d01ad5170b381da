//! The FoundationDB engine (cargo feature `fdb`). FoundationDB transactions are
//! serializable with native conflict detection, so this adapter only translates:
//! one FoundationDB transaction per attempt, `ADD` mutations for
//! [`EngineTransaction::atomic_add`], and FoundationDB's error codes mapped onto
//! [`StorageError`] so that [`crate::Store::run`] retries what FoundationDB calls
//! retryable.
//!
//! Building needs libclang (the bindings are generated from the crate's embedded
//! headers); running needs FoundationDB's client library `libfdb_c` (7.3 API).

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use foundationdb::options::{DatabaseOption, MutationType, StreamingMode};
use foundationdb::{Database, FdbError, RangeOption, Transaction};
use parking_lot::Mutex;

use crate::engine::{EngineTransaction, KvEngine};
use crate::limits::MAX_TRANSACTION_DURATION;
use crate::range::{KeyValue, overfetch};
use crate::{KeyRange, RangeOptions, RangePage, StorageError};

/// The client network runs once per process and stops when the process exits.
static NETWORK: OnceLock<foundationdb::api::NetworkAutoStop> = OnceLock::new();

/// FoundationDB's error codes that have a variant of their own.
const NOT_COMMITTED: i32 = 1020;
const TRANSACTION_TOO_OLD: i32 = 1007;
const KEY_TOO_LARGE: i32 = 2102;
const VALUE_TOO_LARGE: i32 = 2103;
const TRANSACTION_TOO_LARGE: i32 = 2101;

fn map_error(e: FdbError) -> StorageError {
    match e.code() {
        NOT_COMMITTED => StorageError::Conflict,
        TRANSACTION_TOO_OLD => StorageError::TransactionTooOld {
            limit_secs: MAX_TRANSACTION_DURATION.as_secs(),
        },
        KEY_TOO_LARGE => StorageError::KeyTooLarge {
            size: 0,
            limit: crate::limits::MAX_KEY_SIZE,
        },
        VALUE_TOO_LARGE => StorageError::ValueTooLarge {
            size: 0,
            limit: crate::limits::MAX_VALUE_SIZE,
        },
        TRANSACTION_TOO_LARGE => StorageError::TransactionTooLarge {
            size: 0,
            limit: crate::limits::MAX_TRANSACTION_SIZE,
        },
        _ if e.is_maybe_committed() => StorageError::MaybeCommitted(e.to_string()),
        // Other retryable errors (e.g. `future_version`, `process_behind`) are
        // transient: running the transaction again is the documented answer.
        _ if e.is_retryable() => StorageError::Conflict,
        _ => StorageError::Unavailable(format!("FoundationDB: {e}")),
    }
}

/// The FoundationDB engine.
#[derive(Clone)]
pub struct FdbEngine {
    db: Arc<Database>,
}

impl FdbEngine {
    /// Starts the client network (once per process) and opens the cluster named
    /// by `cluster_file`.
    pub fn open(cluster_file: &str) -> Result<Self, StorageError> {
        // SAFETY: `boot` must run once per process before any other FoundationDB
        // call; the `OnceLock` guarantees both.
        #[allow(unsafe_code)]
        NETWORK.get_or_init(|| unsafe { foundationdb::boot() });
        let db = Database::new(Some(cluster_file)).map_err(|e| {
            StorageError::Unavailable(format!("FoundationDB cluster file {cluster_file}: {e}"))
        })?;
        // FoundationDB transactions would otherwise wait forever for an
        // unreachable cluster; give up after our transaction lifetime.
        db.set_option(DatabaseOption::TransactionTimeout(
            MAX_TRANSACTION_DURATION.as_millis() as i32,
        ))
        .map_err(map_error)?;
        Ok(FdbEngine { db: Arc::new(db) })
    }
}

#[async_trait]
impl KvEngine for FdbEngine {
    fn name(&self) -> &'static str {
        "fdb"
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn begin(&self) -> Result<Box<dyn EngineTransaction>, StorageError> {
        let trx = self.db.create_trx().map_err(map_error)?;
        Ok(Box::new(FdbTransaction {
            trx: Mutex::new(Some(Arc::new(trx))),
        }))
    }
}

struct FdbTransaction {
    /// `None` once committed. Reads hold a clone of the `Arc` while in flight.
    trx: Mutex<Option<Arc<Transaction>>>,
}

impl FdbTransaction {
    fn handle(&self) -> Result<Arc<Transaction>, StorageError> {
        self.trx
            .lock()
            .clone()
            .ok_or(StorageError::AlreadyCommitted)
    }

    fn with(&self, f: impl FnOnce(&Transaction)) {
        if let Some(trx) = self.trx.lock().as_ref() {
            f(trx);
        }
    }
}

#[async_trait]
impl EngineTransaction for FdbTransaction {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let trx = self.handle()?;
        let value = trx.get(key, false).await.map_err(map_error)?;
        Ok(value.map(|v| v.to_vec()))
    }

    async fn get_range(
        &self,
        range: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangePage, StorageError> {
        let trx = self.handle()?;
        let want = overfetch(options);
        let mut option = RangeOption {
            limit: want,
            reverse: options.reverse,
            mode: StreamingMode::WantAll,
            ..RangeOption::from((range.begin.clone(), range.end.clone()))
        };
        let mut entries: Vec<KeyValue> = Vec::new();
        let mut iteration = 1;
        loop {
            let batch = trx
                .get_range(&option, iteration, false)
                .await
                .map_err(map_error)?;
            entries.extend(
                batch
                    .iter()
                    .map(|kv| (kv.key().to_vec(), kv.value().to_vec())),
            );
            let full = want.is_some_and(|w| entries.len() >= w);
            match option.next_range(&batch) {
                Some(next) if !full => option = next,
                _ => break,
            }
            iteration += 1;
        }
        Ok(RangePage::from_overfetch(entries, range, options))
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.with(|t| t.set(key, value));
    }

    fn clear(&self, key: &[u8]) {
        self.with(|t| t.clear(key));
    }

    fn clear_range(&self, range: &KeyRange) {
        self.with(|t| t.clear_range(&range.begin, &range.end));
    }

    fn atomic_add(&self, key: &[u8], deltas: &[i64]) {
        // One little-endian integer of all the lanes: the same as adding lane
        // by lane while no lane carries into the next, which
        // `Tx::atomic_add_lanes` ensures (non-negative deltas of several lanes).
        let operand: Vec<u8> = deltas.iter().flat_map(|d| d.to_le_bytes()).collect();
        self.with(|t| t.atomic_op(key, &operand, MutationType::Add));
    }

    fn set_versionstamped_key(&self, prefix: &[u8], suffix: &[u8], value: &[u8]) {
        // FoundationDB fills the 10 bytes at the 4-byte little-endian offset
        // appended to the key.
        let mut key = Vec::with_capacity(prefix.len() + 10 + suffix.len() + 4);
        key.extend_from_slice(prefix);
        key.extend_from_slice(&[0xff; 10]);
        key.extend_from_slice(suffix);
        key.extend_from_slice(&(prefix.len() as u32).to_le_bytes());
        self.with(|t| t.atomic_op(&key, value, MutationType::SetVersionstampedKey));
    }

    async fn commit(&self) -> Result<(), StorageError> {
        let trx = self
            .trx
            .lock()
            .take()
            .ok_or(StorageError::AlreadyCommitted)?;
        // Reads of this transaction have finished (the closure returned), so
        // this is the last reference.
        let trx = Arc::try_unwrap(trx).map_err(|_| {
            StorageError::Unavailable("FoundationDB transaction still in use at commit".into())
        })?;
        trx.commit()
            .await
            .map(|_| ())
            .map_err(|e| map_error(FdbError::from(e)))
    }
}
