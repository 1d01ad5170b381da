//! `POST /v1/messages/count_tokens`: how many input tokens a messages request
//! would count, as Anthropic's SDKs ask before a call (Claude Code every turn,
//! to manage its context).
//!
//! It is decided as a call is (SPEC §4 steps 1-4), but nothing is generated,
//! so no limit, budget or usage applies and nothing is recorded. A model
//! behind an Anthropic endpoint is counted by that endpoint; any other — or
//! one whose endpoint cannot count (no such route, unreachable, refusing our
//! credential) — gets the estimate the gateway reserves by: four bytes a token.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::model::catalog::ApiFlavour;
use gatehouse_core::usage::estimate_tokens;
use serde_json::json;

use super::call::{build_headers, read_body};
use super::{Api, Gateway, GatewayError};
use crate::raw_object::RawObject;

/// The most of an endpoint's answer that is read: a count is a few bytes.
const ANSWER_LIMIT: usize = 64 * 1024;

pub(super) async fn count_tokens(
    gateway: Arc<Gateway>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let shape = ApiFlavour::Anthropic;
    let (working, body) = read_body(&gateway, Api::Messages, &headers, body).await?;
    let malformed = |message: String| GatewayError::new(shape, StatusCode::BAD_REQUEST, message);
    let mut request = RawObject::parse(&body)
        .map_err(|e| malformed(format!("the body is not a JSON object: {e}")))?;
    let Some(model_name) = request.string("model") else {
        return Err(malformed("`model` is required".into()));
    };
    let grant = gateway
        .services
        .keys
        .index()
        .check_key(&working, &model_name)
        .map_err(|d| GatewayError::denial(shape, d))?;
    let estimate = axum::Json(json!({"input_tokens": estimate_tokens(body.len())}));
    let endpoint = grant
        .endpoint
        .filter(|e| e.enabled && e.flavour == ApiFlavour::Anthropic);
    let Some(endpoint) = endpoint else {
        return Ok(estimate.into_response());
    };
    let (Ok(target), Ok(outbound)) = (
        gateway.upstream(&endpoint),
        build_headers(&gateway, &endpoint, &headers).await,
    ) else {
        return Ok(estimate.into_response());
    };
    request.set("model", json!(grant.model.upstream_name).to_string());
    let timeout = Duration::from_millis(endpoint.request_timeout_ms);
    let sent = tokio::time::timeout(
        timeout,
        target.post(Api::CountTokens, outbound, request.to_vec()),
    )
    .await;
    let Ok(Ok(response)) = sent else {
        return Ok(estimate.into_response());
    };
    let status = response.status();
    // The count, or the caller's own mistake (Anthropic's error object) as
    // the endpoint said it; anything else is the endpoint's failure.
    if !(status.is_success() || status == StatusCode::BAD_REQUEST) {
        return Ok(estimate.into_response());
    }
    match axum::body::to_bytes(response.into_body(), ANSWER_LIMIT).await {
        Ok(answer) if serde_json::from_slice::<serde_json::Value>(&answer).is_ok() => Ok((
            status,
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            answer,
        )
            .into_response()),
        _ => Ok(estimate.into_response()),
    }
}
