//! Router tests of the api crate, in-process with `tower::ServiceExt::oneshot`.

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod middleware;
mod ready;
