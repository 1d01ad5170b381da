//! Gatehouse's interfaces: REST with axum for web UIs and gRPC with tonic for
//! internal services. Both are thin: they parse their transport's input, call the
//! same `core` service, and convert the result. This is the only crate that knows
//! HTTP, JSON-over-HTTP and gRPC types.

pub mod auth;
pub mod caller;
pub mod console;
pub mod error;
pub mod extract;
pub mod gateway;
pub mod grpc;
pub mod idempotency;
pub mod listener;
pub mod metrics;
pub mod openapi;
pub mod raw_object;
pub mod request_id;
pub mod rest;
pub mod server;
pub mod sse;
pub mod sso;
pub mod translate;

pub use crate::error::ApiError;
pub use crate::server::{Application, ServerSettings};
