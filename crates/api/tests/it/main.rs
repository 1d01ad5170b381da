//! Router tests of the api crate, in-process with `tower::ServiceExt::oneshot`.

mod middleware;
mod ready;
