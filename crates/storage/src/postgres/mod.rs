//! The PostgreSQL engine: keys and values as `bytea` in one table, every
//! transaction SERIALIZABLE, so PostgreSQL's own conflict detection gives the
//! same guarantees as the other engines. The same wire protocol serves
//! CockroachDB and YugabyteDB (see `docs/storage.md`).
//!
//! Writes are buffered like in the other engines (`set` and `clear` are not
//! async) and sent to the server before the next read and at commit, so reads
//! see the transaction's own writes.

use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use parking_lot::Mutex;
use tokio_postgres::NoTls;
use tokio_postgres::error::SqlState;

use crate::engine::{EngineTransaction, KvEngine};
use crate::occ::{Op, StampedWrite, WriteBuffer};
use crate::range::{KeyValue, overfetch};
use crate::{KeyRange, RangeOptions, RangePage, StorageError};

/// Version of the schema this build creates and expects.
const SCHEMA_VERSION: i32 = 1;
/// Serializes schema migrations of instances starting together.
const MIGRATION_LOCK: i64 = 0x6761_7465_686f_7573; // "gatehous"
const POOL_SIZE: usize = 32;

const MIGRATE: &str = "
    CREATE TABLE IF NOT EXISTS gatehouse_schema (version integer NOT NULL);
    CREATE TABLE IF NOT EXISTS gatehouse_kv (
        key bytea PRIMARY KEY,
        value bytea NOT NULL
    );
    CREATE TABLE IF NOT EXISTS gatehouse_stamp (
        id boolean PRIMARY KEY DEFAULT true CHECK (id),
        seq bigint NOT NULL
    );
    INSERT INTO gatehouse_stamp (id, seq) VALUES (true, 0) ON CONFLICT (id) DO NOTHING;
";

/// The PostgreSQL engine: a pool of connections to one database.
#[derive(Clone)]
pub struct PostgresEngine {
    pool: Pool,
}

impl PostgresEngine {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and
    /// creates or migrates the schema.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let config: tokio_postgres::Config = url
            .parse()
            .map_err(|e| StorageError::Unavailable(format!("invalid PostgreSQL URL: {e}")))?;
        let manager = Manager::from_config(
            config,
            NoTls,
            ManagerConfig {
                // A connection returned mid-transaction (a dropped closure) is
                // rolled back before anyone else gets it.
                recycling_method: RecyclingMethod::Custom("ROLLBACK".to_string()),
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .build()
            .map_err(|e| StorageError::Unavailable(format!("PostgreSQL pool: {e}")))?;
        let engine = PostgresEngine { pool };
        engine.migrate().await?;
        engine.check_predicate_locks().await?;
        Ok(engine)
    }

    /// Warns when the server gives SERIALIZABLE little room to track reads:
    /// past half of `max_pred_locks_per_transaction` pages of one table it
    /// locks the whole table, and the usage flush and retention then cancel
    /// each other (measured in docs/performance.md; advice in storage.md).
    async fn check_predicate_locks(&self) -> Result<(), StorageError> {
        let client = self.client().await?;
        let row = client
            .query_one("SHOW max_pred_locks_per_transaction", &[])
            .await
            .map_err(map_error)?;
        let value: String = row.get(0);
        if let Some(advice) = predicate_lock_advice(&value) {
            tracing::warn!("{advice}");
        }
        Ok(())
    }

    async fn client(&self) -> Result<Object, StorageError> {
        self.pool
            .get()
            .await
            .map_err(|e| StorageError::Unavailable(format!("PostgreSQL connection: {e}")))
    }

    async fn migrate(&self) -> Result<(), StorageError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(map_error)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(map_error)?;
        tx.batch_execute(MIGRATE).await.map_err(map_error)?;
        let version: Option<i32> = tx
            .query_opt("SELECT max(version) FROM gatehouse_schema", &[])
            .await
            .map_err(map_error)?
            .and_then(|row| row.get(0));
        match version {
            None => {
                tx.execute(
                    "INSERT INTO gatehouse_schema (version) VALUES ($1)",
                    &[&SCHEMA_VERSION],
                )
                .await
                .map_err(map_error)?;
            }
            Some(v) if v > SCHEMA_VERSION => {
                return Err(StorageError::Unavailable(format!(
                    "the database has schema version {v}, newer than this build's {SCHEMA_VERSION}: upgrade Gatehouse"
                )));
            }
            Some(_) => {}
        }
        tx.commit().await.map_err(map_error)
    }
}

/// Keys per batched statement, at most.
const BATCH_KEYS: usize = 1_000;
/// Bytes of keys and values per batched upsert, at most.
const BATCH_BYTES: usize = 4_000_000;

/// Writes `pairs` (distinct keys) with as few `INSERT … SELECT FROM UNNEST`
/// statements as [`BATCH_KEYS`] and [`BATCH_BYTES`] allow.
async fn upsert(client: &Object, pairs: &[(&[u8], &[u8])]) -> Result<(), StorageError> {
    let statement = client
        .prepare_cached(
            "INSERT INTO gatehouse_kv (key, value)
             SELECT * FROM UNNEST($1::bytea[], $2::bytea[])
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
        )
        .await
        .map_err(map_error)?;
    let mut rest = pairs;
    while !rest.is_empty() {
        let (mut n, mut bytes) = (0, 0);
        while n < rest.len() && n < BATCH_KEYS && (n == 0 || bytes < BATCH_BYTES) {
            bytes += rest[n].0.len() + rest[n].1.len();
            n += 1;
        }
        let (batch, tail) = rest.split_at(n);
        let keys: Vec<&[u8]> = batch.iter().map(|(k, _)| *k).collect();
        let values: Vec<&[u8]> = batch.iter().map(|(_, v)| *v).collect();
        client
            .execute(&statement, &[&keys, &values])
            .await
            .map_err(map_error)?;
        rest = tail;
    }
    Ok(())
}

/// Serialization failures and deadlocks mean "run the transaction again";
/// anything else means the database is not usable right now.
fn map_error(e: tokio_postgres::Error) -> StorageError {
    match e.code() {
        Some(code) if *code == SqlState::T_R_SERIALIZATION_FAILURE => StorageError::Conflict,
        Some(code) if *code == SqlState::T_R_DEADLOCK_DETECTED => StorageError::Conflict,
        _ => StorageError::Unavailable(format!("PostgreSQL: {e}")),
    }
}

#[async_trait]
impl KvEngine for PostgresEngine {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn begin(&self) -> Result<Box<dyn EngineTransaction>, StorageError> {
        let client = self.client().await?;
        client
            .batch_execute("BEGIN ISOLATION LEVEL SERIALIZABLE")
            .await
            .map_err(map_error)?;
        Ok(Box::new(PgTransaction {
            client: tokio::sync::Mutex::new(Some(client)),
            pending: Mutex::new(WriteBuffer::default()),
            stamped: Mutex::new(Vec::new()),
        }))
    }
}

struct PgTransaction {
    /// `None` once committed.
    client: tokio::sync::Mutex<Option<Object>>,
    pending: Mutex<WriteBuffer>,
    /// Versionstamped writes, sent only at commit.
    stamped: Mutex<Vec<StampedWrite>>,
}

impl PgTransaction {
    /// Sends buffered writes to the server, inside the transaction: cleared
    /// ranges first, then the per-key operations a batch per statement
    /// (deletes by `= ANY`, upserts from `UNNEST`, additions as one read of
    /// their current values and one upsert), so a transaction of thousands of
    /// writes costs a handful of round trips instead of one per write.
    async fn flush(&self, client: &Object) -> Result<(), StorageError> {
        let writes = std::mem::take(&mut *self.pending.lock());
        if writes.is_empty() {
            return Ok(());
        }
        for range in &writes.cleared {
            client
                .execute(
                    "DELETE FROM gatehouse_kv WHERE key >= $1 AND key < $2",
                    &[&range.begin, &range.end],
                )
                .await
                .map_err(map_error)?;
        }
        let (mut sets, mut deletes, mut adds) = (Vec::new(), Vec::new(), Vec::new());
        for (key, op) in &writes.ops {
            match op {
                Op::Set(value) => sets.push((key.as_slice(), value.as_slice())),
                Op::Clear => deletes.push(key.as_slice()),
                Op::Add(addition) => adds.push((key.as_slice(), addition)),
            }
        }
        for batch in deletes.chunks(BATCH_KEYS) {
            client
                .execute("DELETE FROM gatehouse_kv WHERE key = ANY($1)", &[&batch])
                .await
                .map_err(map_error)?;
        }
        upsert(client, &sets).await?;
        for batch in adds.chunks(BATCH_KEYS) {
            let keys: Vec<&[u8]> = batch.iter().map(|(k, _)| *k).collect();
            let rows = client
                .query(
                    "SELECT key, value FROM gatehouse_kv WHERE key = ANY($1)",
                    &[&keys],
                )
                .await
                .map_err(map_error)?;
            let current: std::collections::HashMap<Vec<u8>, Vec<u8>> =
                rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
            let values: Vec<Vec<u8>> = batch
                .iter()
                .map(|(key, addition)| addition.apply(current.get(*key).map(Vec::as_slice)))
                .collect();
            let pairs: Vec<(&[u8], &[u8])> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (*k, v.as_slice()))
                .collect();
            upsert(client, &pairs).await?;
        }
        Ok(())
    }

    /// Completes versionstamped keys with the next value of the stamp counter.
    /// The counter's row stays locked until this transaction ends, and a
    /// concurrent stamper fails with a serialization error once it is released,
    /// so stamps follow commit order. Taking it last keeps that window short.
    async fn write_stamped(&self, client: &Object) -> Result<(), StorageError> {
        let stamped = std::mem::take(&mut *self.stamped.lock());
        if stamped.is_empty() {
            return Ok(());
        }
        let row = client
            .query_one(
                "UPDATE gatehouse_stamp SET seq = seq + 1 WHERE id RETURNING seq",
                &[],
            )
            .await
            .map_err(map_error)?;
        let seq: i64 = row.get(0);
        let stamp = crate::occ::versionstamp(seq as u64);
        let mut buffer = WriteBuffer::default();
        for (prefix, suffix, value) in stamped {
            let mut key = prefix;
            key.extend_from_slice(&stamp);
            key.extend_from_slice(&suffix);
            buffer.set(&key, &value);
        }
        *self.pending.lock() = buffer;
        self.flush(client).await
    }

    async fn read(&self, client: &Object, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let statement = client
            .prepare_cached("SELECT value FROM gatehouse_kv WHERE key = $1")
            .await
            .map_err(map_error)?;
        let row = client
            .query_opt(&statement, &[&key])
            .await
            .map_err(map_error)?;
        Ok(row.map(|r| r.get(0)))
    }
}

/// Room for predicate locks that keeps writers and retention apart under
/// load (docs/storage.md).
const ADVISED_PRED_LOCKS: i64 = 1024;

/// What to tell an operator about the server's
/// `max_pred_locks_per_transaction`, if anything.
fn predicate_lock_advice(setting: &str) -> Option<String> {
    let value: i64 = setting.trim().parse().ok()?;
    (value < ADVISED_PRED_LOCKS).then(|| {
        format!(
            "PostgreSQL's max_pred_locks_per_transaction is {value}: under load the usage writer and \
             retention cancel each other's SERIALIZABLE transactions and retry; set it to 4096 \
             (see docs/storage.md, \"Predicate locks\")"
        )
    })
}

#[async_trait]
impl EngineTransaction for PgTransaction {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let guard = self.client.lock().await;
        let client = guard.as_ref().ok_or(StorageError::AlreadyCommitted)?;
        self.flush(client).await?;
        self.read(client, key).await
    }

    async fn get_range(
        &self,
        range: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangePage, StorageError> {
        let guard = self.client.lock().await;
        let client = guard.as_ref().ok_or(StorageError::AlreadyCommitted)?;
        self.flush(client).await?;
        let fetch = overfetch(options).map_or(i64::MAX, |n| i64::try_from(n).unwrap_or(i64::MAX));
        let sql = if options.reverse {
            "SELECT key, value FROM gatehouse_kv WHERE key >= $1 AND key < $2 ORDER BY key DESC LIMIT $3"
        } else {
            "SELECT key, value FROM gatehouse_kv WHERE key >= $1 AND key < $2 ORDER BY key ASC LIMIT $3"
        };
        let statement = client.prepare_cached(sql).await.map_err(map_error)?;
        let rows = client
            .query(&statement, &[&range.begin, &range.end, &fetch])
            .await
            .map_err(map_error)?;
        let entries: Vec<KeyValue> = rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(RangePage::from_overfetch(entries, range, options))
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.pending.lock().set(key, value);
    }

    fn clear(&self, key: &[u8]) {
        self.pending.lock().clear(key);
    }

    fn clear_range(&self, range: &KeyRange) {
        self.pending.lock().clear_range(range);
    }

    fn atomic_add(&self, key: &[u8], deltas: &[i64]) {
        self.pending.lock().add(key, deltas);
    }

    fn set_versionstamped_key(&self, prefix: &[u8], suffix: &[u8], value: &[u8]) {
        self.stamped
            .lock()
            .push((prefix.to_vec(), suffix.to_vec(), value.to_vec()));
    }

    async fn commit(&self) -> Result<(), StorageError> {
        let mut guard = self.client.lock().await;
        let client = guard.take().ok_or(StorageError::AlreadyCommitted)?;
        self.flush(&client).await?;
        self.write_stamped(&client).await?;
        match client.batch_execute("COMMIT").await {
            Ok(()) => Ok(()),
            Err(e) if e.code().is_some() => Err(map_error(e)),
            // No SQLSTATE: the connection failed while COMMIT was in flight, so
            // the server may or may not have applied it.
            Err(e) => Err(StorageError::MaybeCommitted(format!("PostgreSQL: {e}"))),
        }
    }
}

#[cfg(feature = "testing")]
pub mod testing;

#[cfg(test)]
mod tests {
    use super::predicate_lock_advice;

    #[test]
    fn little_room_for_predicate_locks_is_pointed_out() {
        let advice = predicate_lock_advice("64").unwrap_or_default();
        assert!(
            advice.contains("is 64") && advice.contains("4096"),
            "{advice}"
        );
        assert!(predicate_lock_advice("256").is_some());
        assert_eq!(predicate_lock_advice("4096"), None);
        assert_eq!(predicate_lock_advice("1024"), None);
        // A value the server would never show says nothing.
        assert_eq!(predicate_lock_advice("lots"), None);
    }
}
