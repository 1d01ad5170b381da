//! The `Idempotency-Key` header on management writes: a `POST` under
//! `/api/v1` that carries it and a credential is applied at most once per
//! (credential, key) for 24 hours, and a retry gets the first answer again
//! (with `Idempotent-Replayed: true`). The rules live in
//! [`gatehouse_core::idempotency`]; this is how HTTP meets them.
//!
//! Sign-in routes (`/api/v1/auth/…`, `/api/v1/token`) are left out: their
//! answers are fresh credentials and cookies, which are not replayed.

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::header::CONTENT_TYPE;
use axum::http::{HeaderName, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_core::ErrorCode;
use gatehouse_core::idempotency::{Answer, Begun, Idempotency};
use gatehouse_core::services::Credential;

use crate::ApiError;

pub const HEADER: HeaderName = HeaderName::from_static("idempotency-key");
/// Set on an answer that is a replay of an earlier one.
pub const REPLAYED: HeaderName = HeaderName::from_static("idempotent-replayed");

/// The request is a write with an Idempotency-Key this applies to.
pub(crate) fn applies(request: &Request) -> bool {
    request.method() == Method::POST
        && request.headers().contains_key(HEADER)
        && applies_to(request.uri().path())
}

/// A `POST` to `path` honours the Idempotency-Key.
pub(crate) fn applies_to(path: &str) -> bool {
    path.starts_with("/api/v1/") && !path.starts_with("/api/v1/auth/") && path != "/api/v1/token"
}

/// Runs `request` at most once for its (credential, Idempotency-Key).
/// `lease_ms` is how long the claim is held while it runs (the request
/// timeout and a little more); `body_limit` bounds the body read to
/// fingerprint it.
pub(crate) async fn run_once(
    idempotency: &Idempotency,
    request: Request,
    next: Next,
    lease_ms: i64,
    body_limit: usize,
) -> Response {
    let Some(credential) = crate::caller::credential(request.headers()).map(credential_bytes)
    else {
        // Not signed in: the handler refuses it, nothing to keep.
        return next.run(request).await;
    };
    let key = match request.headers().get(HEADER).map(HeaderValue::to_str) {
        Some(Ok(key)) => key.trim().to_string(),
        _ => {
            return ApiError::new(
                ErrorCode::InvalidInput,
                "Idempotency-Key must be visible ASCII characters",
            )
            .into_response();
        }
    };
    let (mut parts, body) = request.into_parts();
    let body = match axum::body::to_bytes(body, body_limit).await {
        Ok(body) => body,
        Err(_) => {
            return ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("the request body is larger than {body_limit} bytes"),
            )
            .into_response();
        }
    };
    let target = parts
        .uri
        .path_and_query()
        .map_or(parts.uri.path(), |p| p.as_str());
    let fingerprint =
        gatehouse_core::idempotency::fingerprint(parts.method.as_str(), target, &body);
    let claim = match idempotency
        .begin(&credential, &key, fingerprint, lease_ms)
        .await
    {
        Ok(Begun::Run(claim)) => claim,
        Ok(Begun::Replay(answer)) => return replay(answer),
        Err(e) => return ApiError(e).into_response(),
    };
    parts.extensions.insert(claim.mark());
    let response = next.run(Request::from_parts(parts, Body::from(body))).await;
    let (parts, body) = response.into_parts();
    // Management answers are built whole in memory (JSON), so collecting them
    // costs nothing more; `finish` keeps only those of a bounded size.
    let body = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(body) => body,
        Err(e) => {
            tracing::warn!(error = %e, "an idempotent answer could not be read");
            return ApiError::new(ErrorCode::Internal, "the answer could not be read")
                .into_response();
        }
    };
    let answer = Answer {
        status: parts.status.as_u16(),
        content_type: parts
            .headers
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        body: body.to_vec(),
    };
    if let Err(e) = idempotency.finish(claim, &answer).await {
        tracing::warn!(error = %e, "could not keep an idempotent answer");
    }
    Response::from_parts(parts, Body::from(body))
}

/// The bytes naming a credential: its kind and value.
fn credential_bytes(credential: Credential<'_>) -> Vec<u8> {
    let (kind, value) = match credential {
        Credential::ApiKey(v) => ("api_key", v),
        Credential::Bearer(v) => ("bearer", v),
        Credential::SessionCookie(v) => ("session", v),
    };
    [kind.as_bytes(), b"\0", value.as_bytes()].concat()
}

fn replay(answer: Answer) -> Response {
    let mut response = Response::new(Body::from(Bytes::from(answer.body)));
    *response.status_mut() =
        axum::http::StatusCode::from_u16(answer.status).unwrap_or(axum::http::StatusCode::OK);
    if let Some(value) = answer
        .content_type
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response.headers_mut().insert(CONTENT_TYPE, value);
    }
    response
        .headers_mut()
        .insert(REPLAYED, HeaderValue::from_static("true"));
    response
}
