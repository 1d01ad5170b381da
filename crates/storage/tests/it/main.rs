//! Integration tests of the storage crate: the conformance suite, stamped once
//! per engine.

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod conformance;
