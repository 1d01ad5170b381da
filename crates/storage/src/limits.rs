//! The limits every engine enforces, taken from FoundationDB so that data written
//! on the embedded engine can always move to a distributed one.

use std::time::Duration;

/// Largest key, in bytes.
pub const MAX_KEY_SIZE: usize = 10_000;
/// Largest value, in bytes.
pub const MAX_VALUE_SIZE: usize = 100_000;
/// Largest total of keys and values written by one transaction, in bytes.
pub const MAX_TRANSACTION_SIZE: usize = 10_000_000;
/// Longest a transaction may live, from its start to its commit.
pub const MAX_TRANSACTION_DURATION: Duration = Duration::from_secs(5);
