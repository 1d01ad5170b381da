//! Integration tests of the real server: in-process through `Gatehouse::build`
//! (the same wiring `gatehouse serve` uses) and as a child process of the built
//! binary.

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod accounts;
mod catalog_as_code;
mod cli;
mod cluster;
mod connections;
mod console;
mod contract;
mod deploy;
mod docs;
mod factors;
mod gateway;
mod grpc;
mod helpers;
mod idempotency;
mod keys;
mod lists;
mod matrix;
mod openapi;
mod ops;
mod paths;
mod playground;
mod process;
mod readme;
mod records;
mod restart;
mod secrets;
mod smtp;
mod sso;
mod sso_tokens;
mod tenancy;
mod throttle;
mod tidy;
mod vaults;
