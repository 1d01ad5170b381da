//! Gatehouse core: entities, the keyspace, repositories and services. Every
//! business rule lives here, once, for REST and gRPC alike.
//!
//! Core does no I/O of its own: storage comes in as a [`gatehouse_storage::Store`],
//! and time, randomness and IDs through the traits in [`env`], so tests control them.

pub mod access;
pub mod accounts;
pub mod audit;
pub mod blocking;
pub mod catalog;
pub mod changes;
pub mod clock;
pub mod codec;
pub mod common;
pub mod crypto;
pub mod email;
pub mod env;
pub mod error;
pub mod id;
pub mod idempotency;
pub mod keys;
pub mod keyspace;
pub mod model;
pub mod page;
pub mod services;
pub mod tenancy;
#[cfg(test)]
mod testing;
pub mod timeline;
pub mod usage;
pub mod vaults;
pub mod work;

pub use crate::env::Env;
pub use crate::error::{Error, ErrorCode, Result};
pub use crate::id::Id;
