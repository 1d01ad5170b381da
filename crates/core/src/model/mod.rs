//! The stored entities of every domain, with the checks that make a value
//! valid (names, URLs, budgets) and nothing that reads or writes the store.
//!
//! This layer sits under [`keyspace`](crate::keyspace), which names where each
//! entity is kept, and under every service, which reads and writes them: the
//! services may share types through it without importing each other.

pub mod accounts;
pub mod audit;
pub mod catalog;
pub mod cluster;
pub mod email;
pub mod factors;
pub mod idempotency;
pub mod keys;
pub mod sessions;
pub mod system;
pub mod tenancy;
pub mod throttle;
pub mod usage;
pub mod vaults;
pub mod work;
