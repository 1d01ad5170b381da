//! One gateway call, stage by stage: [`decide`] (key, model, endpoint, and
//! whether the call is translated), [`admit`] (limits and budgets, the most
//! the call can cost reserved), [`build`] (the upstream body and headers),
//! [`send`], and [`finish`] (the answer passed back, the call settled).
//! Every stage after admission settles the call on its way out, however it
//! ends.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::Response;
use gatehouse_core::keys::index::{Denial, Grant, WorkingKey};
use gatehouse_core::model::catalog::{ApiFlavour, Endpoint, secret_api_key};
use gatehouse_core::usage::Tokens;
use gatehouse_core::usage::ledger::{Admission, Ticket};
use serde_json::{Value, json};

use super::settle::Settlement;
use super::stream::{HideUsageChunk, Relay, stream_through};
use super::upstream::Upstream;
use super::usage::usage_of;
use super::{Api, ERROR_BODY_LIMIT, Gateway, GatewayError, captured_text, presented_key};
use crate::raw_object::RawObject;
use crate::translate::Translation;

/// What deciding a call found: who may call what, where, and how.
struct Decided<'a> {
    grant: Grant,
    endpoint: Arc<Endpoint>,
    /// The caller's body, parsed only as far as its top-level members.
    request: RawObject<'a>,
    model_name: String,
    stream: bool,
    /// Set when the endpoint speaks the other API.
    translation: Option<Translation>,
    /// The translated upstream body, when translated.
    translated: Option<Vec<u8>>,
    /// The caller asked for a final usage chunk (`stream_options.include_usage`).
    include_usage: bool,
}

/// Step 1 first, then the body: a caller without a working key gets its
/// refusal without its body being kept or parsed, and a body is read only up
/// to `server.body_limit_bytes`.
pub(super) async fn read_body(
    gateway: &Gateway,
    api: Api,
    headers: &HeaderMap,
    body: Body,
) -> Result<(WorkingKey, Bytes), GatewayError> {
    let shape = api.shape();
    let limit = gateway.limits.body_bytes;
    let working = match presented_key(headers) {
        None => Err(Denial::UnknownKey),
        Some(key) => gateway.services.keys.index().working_key(key),
    };
    let working = match working {
        Ok(working) => working,
        Err(denial) => {
            // Read to the end (up to the limit) and drop it, chunk by chunk:
            // answering while the client still writes makes it see a broken
            // pipe instead of the 401.
            discard(body, limit).await;
            return Err(GatewayError::denial(shape, denial));
        }
    };
    let body = axum::body::to_bytes(body, limit).await.map_err(|_| {
        GatewayError::new(
            shape,
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is larger than {limit} bytes, or broke off"),
        )
    })?;
    Ok((working, body))
}

/// Reads a body to its end, or past `limit`, keeping none of it.
async fn discard(body: Body, limit: usize) {
    use futures_util::StreamExt;
    let mut chunks = body.into_data_stream();
    let mut seen = 0usize;
    while let Some(Ok(chunk)) = chunks.next().await {
        seen += chunk.len();
        if seen > limit {
            return;
        }
    }
}

/// Steps 2-4 of SPEC §4 for a working key: the model and its endpoint, from memory.
fn decide<'a>(
    gateway: &Gateway,
    api: Api,
    key: &WorkingKey,
    body: &'a [u8],
) -> Result<Decided<'a>, GatewayError> {
    let shape = api.shape();
    let index = gateway.services.keys.index();
    // The key was checked before the body was read.
    let malformed = |message: String| GatewayError::new(shape, StatusCode::BAD_REQUEST, message);
    let request = RawObject::parse(body)
        .map_err(|e| malformed(format!("the body is not a JSON object: {e}")))?;
    let Some(model_name) = request.string("model") else {
        return Err(malformed("`model` is required".into()));
    };
    let stream = request.bool("stream").unwrap_or(false);
    let grant = index
        .check_key(key, &model_name)
        .map_err(|d| GatewayError::denial(shape, d))?;
    decided(api, grant, request, model_name, stream, body)
}

/// Step 4 for an allowed call: its endpoint, and whether it is translated.
fn decided<'a>(
    api: Api,
    grant: Grant,
    request: RawObject<'a>,
    model_name: String,
    stream: bool,
    body: &'a [u8],
) -> Result<Decided<'a>, GatewayError> {
    let shape = api.shape();
    let endpoint = grant
        .endpoint
        .clone()
        .filter(|e| e.enabled)
        .ok_or_else(|| {
            GatewayError::new(
                shape,
                StatusCode::SERVICE_UNAVAILABLE,
                "the model's endpoint is not available",
            )
        })?;
    // A call of the other API is translated (slow path: the body is parsed);
    // one of the same API is forwarded byte for byte.
    let translation = match (api, endpoint.flavour) {
        (Api::ChatCompletions, ApiFlavour::Anthropic) => Some(Translation::ChatOverMessages),
        (Api::Messages, ApiFlavour::Openai) => Some(Translation::MessagesOverChat),
        (Api::Embeddings, ApiFlavour::Anthropic) => {
            return Err(GatewayError::new(
                shape,
                StatusCode::BAD_REQUEST,
                format!(
                    "model {model_name} offers no embeddings (its endpoint speaks Anthropic's messages API)"
                ),
            ));
        }
        _ => None,
    };
    let translated = match translation {
        Some(t) => Some(
            t.request(body, &grant.model.upstream_name)
                .map_err(|m| GatewayError::new(shape, StatusCode::BAD_REQUEST, m))?,
        ),
        None => None,
    };
    let include_usage = request
        .get("stream_options")
        .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
        .is_some_and(|o| o["include_usage"] == true);
    Ok(Decided {
        grant,
        endpoint,
        request,
        model_name,
        stream,
        translation,
        translated,
        include_usage,
    })
}

/// Step 5: limits and budgets, with the most this call can cost reserved.
fn admit(
    gateway: &Gateway,
    api: Api,
    decided: &Decided<'_>,
    body_len: usize,
) -> Result<Ticket, GatewayError> {
    let request = &decided.request;
    let max_tokens = request
        .u64("max_tokens")
        .or_else(|| request.u64("max_completion_tokens"));
    let admission = Admission::for_grant(&decided.grant, body_len, max_tokens);
    let now = gateway.services.usage.env().clock.now();
    gateway
        .services
        .usage
        .ledger()
        .admit(&admission, now)
        .map_err(|refusal| {
            let mut e =
                GatewayError::new(api.shape(), StatusCode::TOO_MANY_REQUESTS, refusal.message);
            e.retry_after = Some(refusal.retry_after_secs);
            e
        })
}

/// The upstream body: translated, or the caller's with the upstream model
/// name (and, for an OpenAI stream, a request for the final usage chunk).
fn build_payload(
    api: Api,
    upstream_model: &str,
    mut request: RawObject<'_>,
    translated: Option<Vec<u8>>,
    stream: bool,
) -> Vec<u8> {
    if let Some(payload) = translated {
        return payload;
    }
    request.set("model", json!(upstream_model).to_string());
    if stream && matches!(api, Api::ChatCompletions) {
        // Ask for the final usage chunk, keeping the caller's other options.
        let mut options = request
            .get("stream_options")
            .and_then(|raw| serde_json::from_str::<serde_json::Map<String, Value>>(raw).ok())
            .unwrap_or_default();
        options.insert("include_usage".into(), Value::Bool(true));
        request.set("stream_options", Value::Object(options).to_string());
    }
    request.to_vec()
}

/// The upstream's client and the request headers: our credential for the
/// endpoint, and the caller's Anthropic version headers for Anthropic.
/// `Err` means the endpoint is misconfigured (logged here).
pub(super) async fn build_headers(
    gateway: &Gateway,
    endpoint: &Endpoint,
    headers: &HeaderMap,
) -> Result<HeaderMap, ()> {
    let mut outbound = HeaderMap::with_capacity(4);
    outbound.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(credential) = endpoint.credential_id {
        let secret = gateway.secret(credential).await.map_err(|e| {
            tracing::error!(endpoint = %endpoint.id, error = %e, "cannot open the endpoint's credential");
        })?;
        if let Some(key) = secret_api_key(&secret) {
            let (name, value) = match endpoint.flavour {
                ApiFlavour::Openai => (header::AUTHORIZATION, format!("Bearer {key}")),
                ApiFlavour::Anthropic => (HeaderName::from_static("x-api-key"), key.to_string()),
            };
            let mut value = HeaderValue::from_str(&value).map_err(|_| {
                tracing::error!(endpoint = %endpoint.id, "the endpoint's API key is not a valid header value");
            })?;
            value.set_sensitive(true);
            outbound.insert(name, value);
        }
    }
    if endpoint.flavour == ApiFlavour::Anthropic {
        for name in ["anthropic-version", "anthropic-beta"] {
            if let Some(value) = headers.get(name) {
                outbound.insert(name, value.clone());
            }
        }
        if !headers.contains_key("anthropic-version") {
            outbound.insert("anthropic-version", HeaderValue::from_static("2023-06-01"));
        }
    }
    Ok(outbound)
}

/// A call after admission: what the later stages need to answer and settle.
struct Admitted {
    gateway: Arc<Gateway>,
    api: Api,
    settlement: Settlement,
    target: Arc<Upstream>,
    model_name: String,
    stream: bool,
    translation: Option<Translation>,
    include_usage: bool,
    timeout: Duration,
}

impl Admitted {
    /// Ends the call with `e`, settled with `status`.
    fn fail(self, status: u16, e: GatewayError) -> GatewayError {
        self.settlement
            .finish(status, Tokens::default(), 0, None, Some(e.message.clone()));
        e
    }

    /// Ends the call for the endpoint's own failure: its health records
    /// `reason`, the caller gets `status` and `message`.
    fn endpoint_failed(self, reason: String, status: StatusCode, message: String) -> GatewayError {
        let now = self.gateway.services.usage.env().clock.now_millis();
        self.target.health.failure(now, reason);
        let shape = self.api.shape();
        self.fail(status.as_u16(), GatewayError::new(shape, status, message))
    }

    fn now_millis(&self) -> i64 {
        self.gateway.services.usage.env().clock.now_millis()
    }
}

/// Sends the request; a timeout or an unreachable endpoint ends the call.
async fn send(
    call: Admitted,
    upstream_api: Api,
    outbound: HeaderMap,
    payload: Vec<u8>,
) -> Result<(Admitted, axum::http::Response<Body>), GatewayError> {
    let sent = tokio::time::timeout(
        call.timeout,
        call.target.post(upstream_api, outbound, payload),
    )
    .await;
    match sent {
        Ok(Ok(response)) => Ok((call, response)),
        Err(_) => {
            let ms = call.timeout.as_millis();
            Err(call.endpoint_failed(
                format!("no answer within {ms} ms"),
                StatusCode::GATEWAY_TIMEOUT,
                format!("the model's endpoint did not answer within {ms} ms"),
            ))
        }
        Ok(Err(e)) => {
            tracing::warn!(endpoint = %call.target.endpoint.id, error = %e.message, "upstream call failed");
            let (status, message) = if e.timeout {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "the model's endpoint did not answer in time",
                )
            } else {
                (
                    StatusCode::BAD_GATEWAY,
                    "the model's endpoint cannot be reached",
                )
            };
            Err(call.endpoint_failed(e.message, status, message.into()))
        }
    }
}

/// An upstream's refusal or failure, in the caller's API shape: the caller's
/// own mistakes keep their message, everything else is the endpoint's.
async fn refused(call: Admitted, response: axum::http::Response<Body>) -> GatewayError {
    let status = response.status();
    let shape = call.api.shape();
    let retry_after = response
        .headers()
        .get(header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    // Only its message is read; a megabyte is plenty for that.
    let text = tokio::time::timeout(
        call.timeout,
        axum::body::to_bytes(response.into_body(), ERROR_BODY_LIMIT),
    )
    .await
    .ok()
    .and_then(Result::ok)
    .unwrap_or_default();
    let upstream_message = serde_json::from_slice::<Value>(&text).ok().and_then(|v| {
        v.get("error")
            .and_then(|e| e.get("message").or(Some(e)))
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let mut e = match status.as_u16() {
        400 | 404 | 413 | 422 => GatewayError::new(
            shape,
            StatusCode::BAD_REQUEST,
            upstream_message.unwrap_or_else(|| "the model's endpoint refused the request".into()),
        ),
        429 => GatewayError::new(
            shape,
            StatusCode::TOO_MANY_REQUESTS,
            "the model's endpoint is busy; retry later",
        ),
        401 | 403 => GatewayError::new(
            shape,
            StatusCode::BAD_GATEWAY,
            "the model's endpoint refused the gateway's credentials",
        ),
        code => GatewayError::new(
            shape,
            StatusCode::BAD_GATEWAY,
            format!("the model's endpoint failed (HTTP {code})"),
        ),
    };
    if status.as_u16() == 429 {
        e.retry_after = Some(retry_after.unwrap_or(1));
    }
    // A refused request is the caller's matter; a failure or a refused
    // credential is the endpoint's.
    let now = call.now_millis();
    if status.is_server_error() || matches!(status.as_u16(), 401 | 403) {
        call.target
            .health
            .failure(now, format!("HTTP {}", status.as_u16()));
    } else {
        call.target.health.success(now);
    }
    tracing::warn!(endpoint = %call.target.endpoint.id, upstream_status = status.as_u16(), "upstream refused or failed");
    call.fail(e.status.as_u16(), e)
}

/// A successful answer back to the caller: streamed through as it arrives,
/// or read whole, translated if need be, and settled with its usage.
async fn finish(
    call: Admitted,
    response: axum::http::Response<Body>,
) -> Result<Response, GatewayError> {
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let created = call.now_millis().div_euclid(1000);
    if call.stream {
        call.target.health.success(call.now_millis());
        let relay = match call.translation {
            Some(t) => Relay::Translate(t.stream(&call.model_name, created, call.include_usage)),
            None if matches!(call.api, Api::ChatCompletions) && !call.include_usage => {
                Relay::HideUsage(HideUsageChunk::default())
            }
            None => Relay::AsIs,
        };
        return Ok(stream_through(
            call.settlement,
            response,
            content_type,
            call.target.health.clone(),
            relay,
        ));
    }
    let limit = call.gateway.limits.answer_bytes;
    let body = match tokio::time::timeout(
        call.timeout,
        axum::body::to_bytes(response.into_body(), limit),
    )
    .await
    {
        Ok(Ok(body)) => body,
        Ok(Err(e)) if is_over_limit(&e) => {
            return Err(call.endpoint_failed(
                format!("the answer is larger than endpoints.max_answer_bytes ({limit})"),
                StatusCode::BAD_GATEWAY,
                format!("the model's endpoint answered more than {limit} bytes"),
            ));
        }
        _ => {
            return Err(call.endpoint_failed(
                "the answer did not finish in time".into(),
                StatusCode::GATEWAY_TIMEOUT,
                "the model's endpoint did not finish in time".into(),
            ));
        }
    };
    // The answer goes back unchanged (or translated); only its usage is read.
    let (out, content_type) = match call.translation {
        None => (body.clone(), content_type),
        Some(t) => match t.answer(&body, &call.model_name, created) {
            Some(out) => (
                Bytes::from(out),
                HeaderValue::from_static("application/json"),
            ),
            None => {
                return Err(call.endpoint_failed(
                    "the answer is not the JSON of its API".into(),
                    StatusCode::BAD_GATEWAY,
                    "the model's endpoint answered something unreadable".into(),
                ));
            }
        },
    };
    call.target.health.success(call.now_millis());
    let mut tokens = Tokens::default();
    usage_of(&body, &mut tokens);
    let captured = call
        .settlement
        .grant
        .capture_bodies
        .then(|| captured_text(&out, out.len()));
    call.settlement
        .finish(200, tokens, body.len(), captured, None);
    let mut response = Response::new(Body::from(out));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// One call through every stage.
pub(super) async fn forward(
    gateway: Arc<Gateway>,
    api: Api,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (key, body) = read_body(&gateway, api, &headers, body).await?;
    let decided = decide(&gateway, api, &key, &body)?;
    run(gateway, api, &headers, decided, &body, started, None).await
}

/// A playground call (SPEC §4 for a signed-in user, without a key): `grant`
/// is the user's ([`check_user`](gatehouse_core::keys::index::AccessIndex::check_user)),
/// `body` a streamed chat completion. From admission on, it is any call; its
/// request log says `playground` and has the ID `request_id`.
pub(crate) async fn playground(
    gateway: Arc<Gateway>,
    grant: Grant,
    body: Vec<u8>,
    request_id: gatehouse_core::Id,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let api = Api::ChatCompletions;
    let malformed =
        |message: String| GatewayError::new(api.shape(), StatusCode::BAD_REQUEST, message);
    let request = RawObject::parse(&body).map_err(|e| malformed(e.to_string()))?;
    let model_name = request.string("model").unwrap_or_default();
    let decided = decided(api, grant, request, model_name, true, &body)?;
    run(
        gateway,
        api,
        &HeaderMap::new(),
        decided,
        &body,
        started,
        Some(request_id),
    )
    .await
}

/// Steps 5 on: admission, the upstream call, the answer, the settlement.
async fn run(
    gateway: Arc<Gateway>,
    api: Api,
    headers: &HeaderMap,
    decided: Decided<'_>,
    body: &[u8],
    started: Instant,
    playground: Option<gatehouse_core::Id>,
) -> Result<Response, GatewayError> {
    let ticket = admit(&gateway, api, &decided, body.len())?;
    let upstream_api = match decided.translation {
        Some(Translation::ChatOverMessages) => Api::Messages,
        Some(Translation::MessagesOverChat) => Api::ChatCompletions,
        None => api,
    };
    let Decided {
        grant,
        endpoint,
        request,
        model_name,
        stream,
        translation,
        translated,
        include_usage,
    } = decided;
    let payload = build_payload(api, &grant.model.upstream_name, request, translated, stream);
    // From here on the call is settled exactly once, however it ends.
    let settlement = Settlement {
        gateway: gateway.clone(),
        ticket: Some(ticket),
        request_body: grant
            .capture_bodies
            .then(|| captured_text(body, body.len())),
        grant,
        api,
        stream,
        started,
        request_bytes: body.len(),
        done: false,
        playground,
    };
    let misconfigured = |settlement: Settlement| {
        let e = GatewayError::new(
            api.shape(),
            StatusCode::SERVICE_UNAVAILABLE,
            "the model's endpoint is misconfigured",
        );
        settlement.finish(502, Tokens::default(), 0, None, Some(e.message.clone()));
        e
    };
    let target = match gateway.upstream(&endpoint) {
        Ok(target) => target,
        Err(e) => {
            tracing::error!(endpoint = %endpoint.id, error = %e, "cannot build the upstream client");
            return Err(misconfigured(settlement));
        }
    };
    let Ok(outbound) = build_headers(&gateway, &endpoint, headers).await else {
        return Err(misconfigured(settlement));
    };
    let call = Admitted {
        gateway,
        api,
        settlement,
        target,
        model_name,
        stream,
        translation,
        include_usage,
        timeout: Duration::from_millis(endpoint.request_timeout_ms),
    };
    let (call, response) = send(call, upstream_api, outbound, payload).await?;
    if !response.status().is_success() {
        return Err(refused(call, response).await);
    }
    finish(call, response).await
}

/// Whether reading a body failed because it was over the limit given.
fn is_over_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}
