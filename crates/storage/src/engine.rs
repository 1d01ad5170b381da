//! The interface an engine implements. Callers use [`crate::Store`] and
//! [`crate::Tx`], which add the retry loop and the size and time limits on top.

use async_trait::async_trait;

use crate::{KeyRange, RangeOptions, RangePage, StorageError};

/// A storage engine: something that can begin transactions.
#[async_trait]
pub trait KvEngine: Send + Sync + 'static {
    /// The engine's configuration name (`memory`, `embedded`, …).
    fn name(&self) -> &'static str;

    /// Whether several processes can open this store at once (a database
    /// server), so that instances must coordinate worker IDs and leadership.
    fn is_shared(&self) -> bool {
        false
    }

    /// Whether commits handed over at the same time are written together
    /// (the embedded engine's group commit: one write of the pages they
    /// share, one fsync). Elsewhere concurrent transactions only contend, so
    /// a writer with several large transactions commits them one by one.
    fn commits_in_groups(&self) -> bool {
        false
    }

    /// Starts one transaction attempt.
    async fn begin(&self) -> Result<Box<dyn EngineTransaction>, StorageError>;
}

/// One attempt of a serializable transaction.
///
/// Reads see a consistent snapshot plus this transaction's own writes. Writes are
/// buffered until [`EngineTransaction::commit`], which fails with
/// [`StorageError::Conflict`] if anything this transaction read was changed by a
/// transaction that committed after it began. Methods take `&self` so that the
/// handle can be shared by the futures of one closure.
#[async_trait]
pub trait EngineTransaction: Send + Sync {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// `range` is non-empty and `options.limit` is not `Some(0)`: [`crate::Tx`]
    /// answers those cases itself.
    async fn get_range(
        &self,
        range: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangePage, StorageError>;
    fn set(&self, key: &[u8], value: &[u8]);
    fn clear(&self, key: &[u8]);
    fn clear_range(&self, range: &KeyRange);
    /// Adds `deltas[i]` to the little-endian signed 64-bit integer at bytes
    /// `8i..8i+8` of the value at `key` (absent counts as zero; the result has
    /// `deltas.len()` lanes, as FoundationDB's `ADD` takes the operand's
    /// length) without making the key part of the read set, so concurrent
    /// adders do not conflict. [`crate::Tx::atomic_add_lanes`] checks the
    /// deltas first.
    fn atomic_add(&self, key: &[u8], deltas: &[i64]);
    /// Writes `prefix ++ stamp ++ suffix = value`, where `stamp` is a 10-byte
    /// versionstamp the engine assigns at commit. Stamps grow in commit order
    /// across all transactions, and are equal within one transaction. The key
    /// cannot be read back in the transaction that writes it.
    fn set_versionstamped_key(&self, prefix: &[u8], suffix: &[u8], value: &[u8]);
    async fn commit(&self) -> Result<(), StorageError>;
}
