//! Storage errors: what can go wrong below the domain, as an enum callers can match on.

use thiserror::Error;

/// Everything a storage engine can report.
///
/// Variants describe *what happened*, so callers decide by matching, never by
/// parsing a message. The retry loop in [`crate::Store::run`] retries exactly the
/// variants for which [`StorageError::is_retryable`] is true.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StorageError {
    /// Another transaction committed a change to data this transaction read.
    #[error("transaction conflict: data read by this transaction was changed by another")]
    Conflict,
    /// The transaction outlived the engine's lifetime limit (or its read snapshot
    /// is no longer tracked) and must be started again.
    #[error("transaction exceeded the {limit_secs}-second lifetime limit")]
    TransactionTooOld { limit_secs: u64 },
    /// The connection failed during commit: the transaction may or may not have
    /// been applied. Closures must be idempotent if they are retried after this.
    #[error("commit outcome unknown: {0}")]
    MaybeCommitted(String),
    #[error("key of {size} bytes exceeds the limit of {limit} bytes")]
    KeyTooLarge { size: usize, limit: usize },
    #[error("value of {size} bytes exceeds the limit of {limit} bytes")]
    ValueTooLarge { size: usize, limit: usize },
    #[error("transaction writes {size} bytes, over the limit of {limit} bytes")]
    TransactionTooLarge { size: usize, limit: usize },
    /// An atomic addition the engines cannot all apply exactly.
    #[error("invalid atomic addition: {0}")]
    InvalidAdd(String),
    /// A range whose begin is after its end.
    #[error("invalid key range: begin is after end")]
    InvalidRange,
    /// The engine cannot be reached or refused the operation (I/O error, lost
    /// connection, lock held by another process, …).
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Stored bytes could not be understood.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The transaction was used after it was committed.
    #[error("transaction already committed")]
    AlreadyCommitted,
}

impl StorageError {
    /// Whether running the whole transaction again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            StorageError::Conflict | StorageError::TransactionTooOld { .. }
        )
    }
}

/// The error of a transaction closure: either the closure decided to abort with
/// its own error, or storage failed underneath it.
///
/// `?` on a storage operation inside a closure converts [`StorageError`] into
/// `TxError::Storage`; return `Err(TxError::Abort(e))` to stop without committing.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxError<E> {
    #[error("transaction aborted: {0}")]
    Abort(E),
    #[error(transparent)]
    Storage(#[from] StorageError),
}

impl<E> TxError<E> {
    /// Maps the abort error, keeping storage errors as they are.
    pub fn map_abort<F>(self, f: impl FnOnce(E) -> F) -> TxError<F> {
        match self {
            TxError::Abort(e) => TxError::Abort(f(e)),
            TxError::Storage(e) => TxError::Storage(e),
        }
    }
}
