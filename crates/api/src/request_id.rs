//! Request IDs: taken from `X-Request-Id` when the caller sends a sane one, made
//! otherwise; returned on every response, present in every log line of the
//! request (through its span, `rest::with_middleware`) and in error bodies
//! (through a task-local).

use axum::http::HeaderValue;

pub const HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The ID of the request being handled, if any.
pub fn current() -> Option<String> {
    REQUEST_ID.try_with(Clone::clone).ok()
}

/// Accepts IDs of 1–128 visible ASCII characters; anything else is replaced so
/// that logs cannot be forged through the header.
fn accept(value: &HeaderValue) -> Option<String> {
    let s = value.to_str().ok()?;
    let ok = (1..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| s.to_string())
}

/// The caller's ID when it is sane, a new one otherwise.
pub fn of(headers: &axum::http::HeaderMap) -> String {
    headers
        .get(HEADER)
        .and_then(accept)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Runs `f` with `id` as the current request ID.
pub async fn scope<F: Future>(id: String, f: F) -> F::Output {
    REQUEST_ID.scope(id, f).await
}
