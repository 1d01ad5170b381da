//! The gateway: OpenAI- and Anthropic-compatible endpoints that an unchanged
//! client, pointed at Gatehouse with a Gatehouse key, calls as it would call
//! the provider.
//!
//! Each call: the key and model are decided from memory (SPEC §4 steps 1-4,
//! `AccessIndex::check`); limits and budgets are admitted by the in-memory
//! ledger, which reserves the most the call can cost (step 5); the request is
//! forwarded to the model's endpoint with the upstream model name and the
//! endpoint's credential, through its proxy; streamed answers pass through as
//! they arrive. Afterwards the reservation is settled with the real cost and
//! a request log is queued. Nothing on this path reads or writes storage,
//! except loading an endpoint's credential once after it changes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use futures_util::StreamExt;
use gatehouse_core::Id;
use gatehouse_core::catalog::health::HealthCell;
use gatehouse_core::error::error_chain;
use gatehouse_core::keys::index::{Denial, Grant};
use gatehouse_core::model::catalog::{ApiFlavour, Endpoint, secret_api_key};
use gatehouse_core::services::Services;
use gatehouse_core::usage::RequestLog;
use gatehouse_core::usage::estimate_tokens;
use gatehouse_core::usage::ledger::{Admission, Ticket};
use http_body_util::Full;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use serde_json::{Value, json};

use crate::raw_object::RawObject;
use crate::translate::{StreamTranslator, Translation};

/// Which API shape a route speaks, for its errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Anthropic,
}

/// A refusal or failure in the caller's API shape.
pub struct GatewayError {
    shape: Shape,
    status: StatusCode,
    kind: &'static str,
    message: String,
    retry_after: Option<u64>,
}

impl GatewayError {
    fn new(shape: Shape, status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match (shape, status.as_u16()) {
            (Shape::OpenAi, 401) => "authentication_error",
            (Shape::OpenAi, 403) => "permission_error",
            (Shape::OpenAi, 404) => "not_found_error",
            (Shape::OpenAi, 429) => "rate_limit_error",
            (Shape::OpenAi, 400..=499) => "invalid_request_error",
            (Shape::OpenAi, _) => "api_error",
            (Shape::Anthropic, 401) => "authentication_error",
            (Shape::Anthropic, 403) => "permission_error",
            (Shape::Anthropic, 404) => "not_found_error",
            (Shape::Anthropic, 429) => "rate_limit_error",
            (Shape::Anthropic, 400..=499) => "invalid_request_error",
            (Shape::Anthropic, 529) => "overloaded_error",
            (Shape::Anthropic, _) => "api_error",
        };
        GatewayError {
            shape,
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    fn denial(shape: Shape, denial: Denial) -> Self {
        let status = StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::FORBIDDEN);
        let mut e = GatewayError::new(shape, status, denial.message());
        if denial == Denial::KeyNotAllowed || denial == Denial::TeamNotAllowed {
            e.kind = "permission_error";
        }
        e
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = match self.shape {
            Shape::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.status.as_u16().to_string(),
            }}),
            Shape::Anthropic => json!({"type": "error", "error": {
                "type": self.kind,
                "message": self.message,
            }}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

/// What the gateway keeps between calls: an HTTP client and parsed URLs per
/// endpoint, and decrypted credentials, both rebuilt when they change.
pub struct Gateway {
    services: Services,
    upstreams: DashMap<Id, Arc<Upstream>>,
    secrets: DashMap<Id, (u64, Arc<Value>)>,
}

/// An endpoint as the gateway calls it: its client (connection pool, proxy,
/// connect timeout) and its routes' URLs, parsed once.
struct Upstream {
    endpoint: Arc<Endpoint>,
    transport: Transport,
    urls: [Uri; 3],
    /// Where this instance records how the endpoint answers.
    health: Arc<HealthCell>,
}

type DirectClient =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// How the gateway reaches an endpoint.
enum Transport {
    /// Straight to the endpoint: hyper's pooled client, the lean path.
    Direct(Box<DirectClient>),
    /// Through the endpoint's outbound HTTP proxy.
    Proxied(reqwest::Client),
}

/// Why an upstream call could not be made.
struct SendError {
    timeout: bool,
    message: String,
}

impl Upstream {
    fn new(endpoint: &Arc<Endpoint>, health: Arc<HealthCell>) -> Result<Self, String> {
        let connect_timeout = Duration::from_millis(endpoint.connect_timeout_ms);
        let transport = match &endpoint.proxy_url {
            None => {
                let mut http = HttpConnector::new();
                http.enforce_http(false);
                http.set_nodelay(true);
                http.set_connect_timeout(Some(connect_timeout));
                let https = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_webpki_roots()
                    .https_or_http()
                    .enable_all_versions()
                    .wrap_connector(http);
                Transport::Direct(Box::new(
                    hyper_util::client::legacy::Client::builder(TokioExecutor::new())
                        .pool_idle_timeout(Duration::from_secs(90))
                        .pool_timer(TokioTimer::new())
                        .build(https),
                ))
            }
            Some(proxy) => Transport::Proxied(
                reqwest::Client::builder()
                    .connect_timeout(connect_timeout)
                    .pool_idle_timeout(Duration::from_secs(90))
                    // An API answer is never a redirect to follow: following
                    // one would send the credential to wherever it points.
                    .redirect(reqwest::redirect::Policy::none())
                    .tcp_nodelay(true)
                    .proxy(reqwest::Proxy::all(proxy).map_err(|e| e.to_string())?)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
        };
        let url = |api: Api| {
            format!("{}{}", endpoint.base_url.trim_end_matches('/'), api.path())
                .parse::<Uri>()
                .map_err(|e| format!("the base URL is not a URL: {e}"))
        };
        Ok(Upstream {
            endpoint: endpoint.clone(),
            transport,
            urls: [
                url(Api::ChatCompletions)?,
                url(Api::Embeddings)?,
                url(Api::Messages)?,
            ],
            health,
        })
    }

    /// POSTs `body` with `headers` to the route of `api`; the answer's body
    /// streams as it arrives. Redirects are never followed.
    async fn post(
        &self,
        api: Api,
        headers: HeaderMap,
        body: Vec<u8>,
    ) -> Result<axum::http::Response<Body>, SendError> {
        let url = self.urls[api as usize].clone();
        match &self.transport {
            Transport::Direct(client) => {
                let mut request = axum::http::Request::new(Full::new(Bytes::from(body)));
                *request.method_mut() = axum::http::Method::POST;
                *request.uri_mut() = url;
                *request.headers_mut() = headers;
                match client.request(request).await {
                    Ok(response) => Ok(response.map(Body::new)),
                    Err(e) => Err(SendError {
                        timeout: caused_by_timeout(&e),
                        message: error_chain(&e),
                    }),
                }
            }
            Transport::Proxied(client) => {
                match client
                    .post(url.to_string())
                    .headers(headers)
                    .body(body)
                    .send()
                    .await
                {
                    Ok(response) => {
                        Ok(axum::http::Response::<reqwest::Body>::from(response).map(Body::new))
                    }
                    Err(e) => Err(SendError {
                        timeout: e.is_timeout(),
                        message: error_chain(&e),
                    }),
                }
            }
        }
    }
}

/// Whether a connection failed because it timed out.
fn caused_by_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(e);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
            || cause.to_string().contains("timed out")
        {
            return true;
        }
        source = cause.source();
    }
    false
}

/// Tokens a request may produce when it does not say (`max_tokens`).
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The most of an upstream's error answer the gateway reads.
const ERROR_BODY_LIMIT: usize = 1 << 20;

/// The most of a request or response body kept when bodies are captured.
pub const CAPTURE_LIMIT: usize = 256 * 1024;

/// The longest stream line the gateway buffers to read usage from.
const MAX_EVENT_LINE: usize = 1 << 20;

/// A captured body as text: at most [`CAPTURE_LIMIT`] bytes of it, with a
/// note of what was cut.
fn captured_text(bytes: &[u8], total: usize) -> String {
    let kept = &bytes[..bytes.len().min(CAPTURE_LIMIT)];
    let mut text = String::from_utf8_lossy(kept).into_owned();
    if total > kept.len() {
        text.push_str(&format!(
            "…[{} more bytes not captured]",
            total - kept.len()
        ));
    }
    text
}

impl Gateway {
    pub fn new(services: Services) -> Arc<Self> {
        Arc::new(Gateway {
            services,
            upstreams: DashMap::new(),
            secrets: DashMap::new(),
        })
    }

    fn upstream(&self, endpoint: &Arc<Endpoint>) -> Result<Arc<Upstream>, String> {
        if let Some(entry) = self.upstreams.get(&endpoint.id)
            && Arc::ptr_eq(&entry.endpoint, endpoint)
        {
            return Ok(entry.clone());
        }
        let health = self.services.catalog.health().cell(endpoint.id);
        let upstream = Arc::new(Upstream::new(endpoint, health)?);
        self.upstreams.insert(endpoint.id, upstream.clone());
        Ok(upstream)
    }

    async fn secret(&self, credential: Id) -> gatehouse_core::Result<Arc<Value>> {
        let epoch = self.services.keys.index().credentials_epoch();
        if let Some(entry) = self.secrets.get(&credential)
            && entry.0 == epoch
        {
            return Ok(entry.1.clone());
        }
        let secret = Arc::new(self.services.catalog.credential_secret(credential).await?);
        self.secrets.insert(credential, (epoch, secret.clone()));
        Ok(secret)
    }
}

/// The key a caller presented: `X-API-Key`, or `Authorization: Bearer`.
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| {
            headers
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|h| {
                    h.strip_prefix("Bearer ")
                        .or_else(|| h.strip_prefix("bearer "))
                })
        })
        .map(str::trim)
}

/// Token counts and whether the upstream reported them.
#[derive(Debug, Clone, Copy, Default)]
struct Tokens {
    prompt: u64,
    completion: u64,
    reported: bool,
}

/// The parts of an answer (or stream event) the gateway reads: `usage`, or
/// Anthropic's `message.usage`; everything else is skipped.
#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<UsageFields>,
    message: Option<MessageUsage>,
}

#[derive(serde::Deserialize)]
struct MessageUsage {
    usage: Option<UsageFields>,
}

#[derive(serde::Deserialize)]
struct UsageFields {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
}

/// Reads the token counts of an OpenAI or Anthropic answer or stream event.
///
/// Most answers end with their `usage` (an embeddings answer is mostly
/// numbers before it): when the last `"usage"` in the text is a member of the
/// outermost object and closes it, only that member is parsed. Otherwise the
/// whole text is read, skipping all but `usage` and `message.usage`. Text with
/// no `"usage"` at all reports nothing and is not parsed.
fn usage_of(json: &[u8], tokens: &mut Tokens) {
    let Some(at) = memchr::memmem::rfind(json, b"\"usage\"") else {
        return;
    };
    let usage = trailing_usage(json, at).or_else(|| {
        let answer = serde_json::from_slice::<UsageOnly>(json).ok()?;
        answer.usage.or(answer.message.and_then(|m| m.usage))
    });
    let Some(usage) = usage else {
        return;
    };
    if let Some(n) = usage.prompt_tokens.or(usage.input_tokens) {
        tokens.prompt = n;
        tokens.reported = true;
    }
    if let Some(n) = usage.completion_tokens.or(usage.output_tokens) {
        tokens.completion = n;
        tokens.reported = true;
    }
}

/// The `usage` member whose name starts at `at`, if it is the outermost
/// object's last member: after its value come only whitespace, one `}` and
/// whitespace. (A quote before the name could be an escaped one inside a
/// longer name: such text takes the slow path.)
fn trailing_usage(json: &[u8], at: usize) -> Option<UsageFields> {
    if at > 0 && json[at - 1] == b'\\' {
        return None;
    }
    let rest = json[at + b"\"usage\"".len()..].trim_ascii_start();
    let rest = rest.strip_prefix(b":")?;
    let mut values = serde_json::Deserializer::from_slice(rest).into_iter::<Option<UsageFields>>();
    let usage = values.next()?.ok()?;
    let after = rest[values.byte_offset()..].trim_ascii();
    if after != b"}" {
        return None;
    }
    usage
}

/// The route a call came in on (the discriminant indexes `Upstream::urls`).
#[derive(Debug, Clone, Copy)]
pub enum Api {
    ChatCompletions = 0,
    Embeddings = 1,
    Messages = 2,
}

impl Api {
    fn shape(self) -> Shape {
        match self {
            Api::Messages => Shape::Anthropic,
            _ => Shape::OpenAi,
        }
    }

    fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::Messages => "/v1/messages",
        }
    }

    fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat.completions",
            Api::Embeddings => "embeddings",
            Api::Messages => "messages",
        }
    }
}

/// Everything needed to finish a call's bookkeeping once its answer is done.
struct Settlement {
    gateway: Arc<Gateway>,
    ticket: Option<Ticket>,
    grant: Grant,
    api: Api,
    stream: bool,
    started: Instant,
    request_bytes: usize,
    request_body: Option<String>,
    /// Settled already (a call is settled exactly once).
    done: bool,
}

impl Drop for Settlement {
    /// A call dropped before it finished — the client went away while the
    /// upstream worked — still gives its reservation back and is logged.
    fn drop(&mut self) {
        self.settle(
            499,
            Tokens::default(),
            0,
            None,
            Some("the client closed the connection".into()),
        );
    }
}

impl Settlement {
    /// Settles the reservation and queues the request log.
    fn finish(
        mut self,
        status: u16,
        tokens: Tokens,
        response_bytes: usize,
        response_body: Option<String>,
        error: Option<String>,
    ) {
        self.settle(status, tokens, response_bytes, response_body, error);
    }

    fn settle(
        &mut self,
        status: u16,
        tokens: Tokens,
        response_bytes: usize,
        response_body: Option<String>,
        error: Option<String>,
    ) {
        if self.done {
            return;
        }
        self.done = true;
        let mut tokens = tokens;
        let estimated = !tokens.reported && status < 400;
        if estimated {
            tokens.prompt = estimate_tokens(self.request_bytes);
            tokens.completion = estimate_tokens(response_bytes);
        }
        let model = &self.grant.model;
        let cost = model.cost_micros(tokens.prompt, tokens.completion);
        let services = &self.gateway.services;
        if let Some(ticket) = self.ticket.take() {
            services
                .usage
                .ledger()
                .settle(ticket, cost, tokens.prompt + tokens.completion);
        }
        let env = services.usage.env();
        services.usage.record(RequestLog {
            id: env.ids.next_id(),
            at: env.clock.now(),
            key_id: self.grant.key_id,
            user_id: self.grant.owner_id,
            model_id: model.id,
            model: model.name.clone(),
            endpoint_id: model.endpoint_id,
            api: self.api.name().to_string(),
            stream: self.stream,
            status,
            latency_ms: self.started.elapsed().as_millis() as u64,
            prompt_tokens: tokens.prompt,
            completion_tokens: tokens.completion,
            cost_micros: cost,
            tokens_estimated: estimated,
            error,
            request_body: self.request_body.take(),
            response_body: if self.grant.capture_bodies {
                response_body
            } else {
                None
            },
        });
    }
}

/// OpenAI chat completions, streaming (`"stream": true`) or not.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway",
    security(("api_key" = [])),
    request_body(content = Object, description = "An OpenAI chat completion request"),
    responses(
        (status = 200, description = "The upstream's answer (JSON, or server-sent events)"),
        (status = 401, description = "Unknown, revoked or expired key"),
        (status = 403, description = "The key may not use this model"),
        (status = 404, description = "Unknown model"),
        (status = 429, description = "Rate limit or budget; see Retry-After"),
        (status = 502, description = "The model's endpoint failed"),
        (status = 504, description = "The model's endpoint timed out"),
    ))]
pub async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(gateway, Api::ChatCompletions, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// OpenAI embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway",
    security(("api_key" = [])),
    request_body(content = Object, description = "An OpenAI embeddings request"),
    responses(
        (status = 200, description = "The upstream's answer"),
        (status = 401, description = "Unknown, revoked or expired key"),
        (status = 403, description = "The key may not use this model"),
        (status = 404, description = "Unknown model"),
        (status = 429, description = "Rate limit or budget; see Retry-After"),
        (status = 502, description = "The model's endpoint failed"),
        (status = 504, description = "The model's endpoint timed out"),
    ))]
pub async fn embeddings(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(gateway, Api::Embeddings, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Anthropic messages, streaming or not.
#[utoipa::path(post, path = "/v1/messages", tag = "gateway",
    security(("api_key" = [])),
    request_body(content = Object, description = "An Anthropic messages request"),
    responses(
        (status = 200, description = "The upstream's answer (JSON, or server-sent events)"),
        (status = 401, description = "Unknown, revoked or expired key"),
        (status = 403, description = "The key may not use this model"),
        (status = 404, description = "Unknown model"),
        (status = 429, description = "Rate limit or budget; see Retry-After"),
        (status = 502, description = "The model's endpoint failed"),
        (status = 504, description = "The model's endpoint timed out"),
    ))]
pub async fn messages(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    forward(gateway, Api::Messages, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The models this key may use, in OpenAI's list shape — or in Anthropic's
/// (`{"data": [{"type": "model", "id", …}], "has_more": false, …}`) when the
/// request carries `anthropic-version`, as Anthropic's SDKs send.
#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    security(("api_key" = [])),
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [...]}`, or Anthropic's list"),
        (status = 401, description = "Unknown, revoked or expired key"),
        (status = 403, description = "The key may not use this model"),
        (status = 404, description = "Unknown model"),
        (status = 429, description = "Rate limit or budget; see Retry-After"),
        (status = 502, description = "The model's endpoint failed"),
        (status = 504, description = "The model's endpoint timed out"),
    ))]
pub async fn models(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    // Anthropic's SDKs send `anthropic-version`: they get Anthropic's shape.
    let shape = if headers.contains_key("anthropic-version") {
        Shape::Anthropic
    } else {
        Shape::OpenAi
    };
    let Some(key) = presented_key(&headers) else {
        return GatewayError::denial(shape, Denial::UnknownKey).into_response();
    };
    let models = match gateway.services.keys.index().models_for(key) {
        Ok(models) => models,
        Err(denial) => return GatewayError::denial(shape, denial).into_response(),
    };
    let list = match shape {
        Shape::OpenAi => {
            let data: Vec<Value> = models
                .iter()
                .map(|m| {
                    json!({
                        "id": m.name,
                        "object": "model",
                        "created": m.created_at.timestamp(),
                        "owned_by": if m.provider.is_empty() { "gatehouse" } else { m.provider.as_str() },
                    })
                })
                .collect();
            json!({"object": "list", "data": data})
        }
        Shape::Anthropic => {
            let data: Vec<Value> = models
                .iter()
                .map(|m| {
                    json!({
                        "type": "model",
                        "id": m.name,
                        "display_name": m.name,
                        "created_at": m.created_at,
                    })
                })
                .collect();
            json!({
                "data": data,
                "has_more": false,
                "first_id": models.first().map(|m| m.name.as_str()),
                "last_id": models.last().map(|m| m.name.as_str()),
            })
        }
    };
    axum::Json(list).into_response()
}

async fn forward(
    gateway: Arc<Gateway>,
    api: Api,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, GatewayError> {
    let shape = api.shape();
    let started = Instant::now();
    let key =
        presented_key(&headers).ok_or_else(|| GatewayError::denial(shape, Denial::UnknownKey))?;
    let index = gateway.services.keys.index();
    // A malformed body is the caller's to hear about only once its key works
    // (the key is checked with the model on the well-formed path).
    let malformed = |message: String| match index.authenticate(key) {
        Ok(_) => GatewayError::new(shape, StatusCode::BAD_REQUEST, message),
        Err(denial) => GatewayError::denial(shape, denial),
    };
    let mut request = RawObject::parse(&body)
        .map_err(|e| malformed(format!("the body is not a JSON object: {e}")))?;
    let Some(model_name) = request.string("model") else {
        return Err(malformed("`model` is required".into()));
    };
    let stream = request.bool("stream").unwrap_or(false);
    let grant = index
        .check(key, &model_name)
        .map_err(|d| GatewayError::denial(shape, d))?;
    let unavailable =
        |message: &str| GatewayError::new(shape, StatusCode::SERVICE_UNAVAILABLE, message);
    let endpoint = grant
        .endpoint
        .clone()
        .filter(|e| e.enabled)
        .ok_or_else(|| unavailable("the model's endpoint is not available"))?;
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
            t.request(&body, &grant.model.upstream_name)
                .map_err(|m| GatewayError::new(shape, StatusCode::BAD_REQUEST, m))?,
        ),
        None => None,
    };
    let upstream_api = match translation {
        Some(Translation::ChatOverMessages) => Api::Messages,
        Some(Translation::MessagesOverChat) => Api::ChatCompletions,
        None => api,
    };
    let include_usage = translation.is_some()
        && request
            .get("stream_options")
            .and_then(|raw| serde_json::from_str::<Value>(raw).ok())
            .is_some_and(|o| o["include_usage"] == true);

    // Step 5: limits and budgets, with the most this call can cost reserved.
    let max_tokens = request
        .u64("max_tokens")
        .or_else(|| request.u64("max_completion_tokens"))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    let admission = Admission::for_grant(&grant, body.len(), max_tokens);
    let now = gateway.services.usage.env().clock.now();
    let ticket = gateway
        .services
        .usage
        .ledger()
        .admit(&admission, now)
        .map_err(|refusal| {
            let mut e = GatewayError::new(shape, StatusCode::TOO_MANY_REQUESTS, refusal.message);
            e.retry_after = Some(refusal.retry_after_secs);
            e
        })?;
    let settlement = Settlement {
        gateway: gateway.clone(),
        ticket: Some(ticket),
        request_body: grant
            .capture_bodies
            .then(|| captured_text(&body, body.len())),
        grant,
        api,
        stream,
        started,
        request_bytes: body.len(),
        done: false,
    };

    // The upstream request: its model name, our credential.
    let payload = match translated {
        Some(payload) => payload,
        None => {
            request.set(
                "model",
                json!(settlement.grant.model.upstream_name).to_string(),
            );
            if stream && matches!(api, Api::ChatCompletions) {
                // Ask for the final usage chunk, keeping the caller's other options.
                let mut options = request
                    .get("stream_options")
                    .and_then(|raw| {
                        serde_json::from_str::<serde_json::Map<String, Value>>(raw).ok()
                    })
                    .unwrap_or_default();
                options.insert("include_usage".into(), Value::Bool(true));
                request.set("stream_options", Value::Object(options).to_string());
            }
            request.to_vec()
        }
    };
    let fail = |settlement: Settlement, status: u16, e: GatewayError| {
        settlement.finish(status, Tokens::default(), 0, None, Some(e.message.clone()));
        e
    };
    let target = match gateway.upstream(&endpoint) {
        Ok(target) => target,
        Err(e) => {
            tracing::error!(endpoint = %endpoint.id, error = %e, "cannot build the upstream client");
            return Err(fail(
                settlement,
                502,
                unavailable("the model's endpoint is misconfigured"),
            ));
        }
    };
    let mut outbound = HeaderMap::with_capacity(4);
    outbound.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(credential) = endpoint.credential_id {
        let secret = match gateway.secret(credential).await {
            Ok(secret) => secret,
            Err(e) => {
                tracing::error!(endpoint = %endpoint.id, error = %e, "cannot open the endpoint's credential");
                return Err(fail(
                    settlement,
                    502,
                    unavailable("the model's endpoint is misconfigured"),
                ));
            }
        };
        if let Some(key) = secret_api_key(&secret) {
            let (name, value) = match endpoint.flavour {
                ApiFlavour::Openai => (header::AUTHORIZATION, format!("Bearer {key}")),
                ApiFlavour::Anthropic => (HeaderName::from_static("x-api-key"), key.to_string()),
            };
            match HeaderValue::from_str(&value) {
                Ok(mut value) => {
                    value.set_sensitive(true);
                    outbound.insert(name, value);
                }
                Err(_) => {
                    tracing::error!(endpoint = %endpoint.id, "the endpoint's API key is not a valid header value");
                    return Err(fail(
                        settlement,
                        502,
                        unavailable("the model's endpoint is misconfigured"),
                    ));
                }
            }
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
    let timeout = Duration::from_millis(endpoint.request_timeout_ms);
    let sent = tokio::time::timeout(timeout, target.post(upstream_api, outbound, payload)).await;
    let clock = &gateway.services.usage.env().clock;
    // The endpoint's own failure: its health records `reason`, the caller
    // gets `status` and `message`.
    let endpoint_failed =
        |settlement: Settlement, reason: String, status: StatusCode, message: String| {
            target.health.failure(clock.now_millis(), reason);
            fail(
                settlement,
                status.as_u16(),
                GatewayError::new(shape, status, message),
            )
        };
    let response = match sent {
        Err(_) => {
            return Err(endpoint_failed(
                settlement,
                format!("no answer within {} ms", endpoint.request_timeout_ms),
                StatusCode::GATEWAY_TIMEOUT,
                format!(
                    "the model's endpoint did not answer within {} ms",
                    endpoint.request_timeout_ms
                ),
            ));
        }
        Ok(Err(e)) => {
            tracing::warn!(endpoint = %endpoint.id, error = %e.message, "upstream call failed");
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
            return Err(endpoint_failed(
                settlement,
                e.message,
                status,
                message.into(),
            ));
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        // Only its message is read; a megabyte is plenty for that.
        let text = tokio::time::timeout(
            timeout,
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
                upstream_message
                    .unwrap_or_else(|| "the model's endpoint refused the request".into()),
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
        if status.is_server_error() || matches!(status.as_u16(), 401 | 403) {
            target
                .health
                .failure(clock.now_millis(), format!("HTTP {}", status.as_u16()));
        } else {
            target.health.success(clock.now_millis());
        }
        tracing::warn!(endpoint = %endpoint.id, upstream_status = status.as_u16(), "upstream refused or failed");
        return Err(fail(settlement, e.status.as_u16(), e));
    }
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/json"));
    let created = clock.now_millis().div_euclid(1000);
    if stream {
        target.health.success(clock.now_millis());
        let translator = translation.map(|t| t.stream(&model_name, created, include_usage));
        return Ok(stream_through(
            settlement,
            response,
            content_type,
            target.health.clone(),
            translator,
        ));
    }
    let body = match tokio::time::timeout(
        timeout,
        axum::body::to_bytes(response.into_body(), usize::MAX),
    )
    .await
    {
        Ok(Ok(body)) => body,
        _ => {
            return Err(endpoint_failed(
                settlement,
                "the answer did not finish in time".into(),
                StatusCode::GATEWAY_TIMEOUT,
                "the model's endpoint did not finish in time".into(),
            ));
        }
    };
    // The answer goes back unchanged (or translated); only its usage is read.
    let (out, content_type) = match translation {
        None => (body.clone(), content_type),
        Some(t) => match t.answer(&body, &model_name, created) {
            Some(out) => (
                Bytes::from(out),
                HeaderValue::from_static("application/json"),
            ),
            None => {
                return Err(endpoint_failed(
                    settlement,
                    "the answer is not the JSON of its API".into(),
                    StatusCode::BAD_GATEWAY,
                    "the model's endpoint answered something unreadable".into(),
                ));
            }
        },
    };
    target.health.success(clock.now_millis());
    let mut tokens = Tokens::default();
    usage_of(&body, &mut tokens);
    let captured = settlement
        .grant
        .capture_bodies
        .then(|| captured_text(&out, out.len()));
    settlement.finish(200, tokens, body.len(), captured, None);
    let mut response = Response::new(Body::from(out));
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    Ok(response)
}

/// Reads usage from a server-sent event stream as its pieces pass, wherever
/// they split it.
#[derive(Default)]
struct StreamUsage {
    tokens: Tokens,
    /// The start of a line the next piece finishes.
    pending: Vec<u8>,
}

impl StreamUsage {
    fn see(&mut self, piece: &[u8]) {
        // Lines are read where they lie; only an unfinished one is kept.
        let mut rest = piece;
        if !self.pending.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.keep(rest);
                return;
            };
            self.pending.extend_from_slice(&rest[..end]);
            event_line(&self.pending, &mut self.tokens);
            self.pending.clear();
            rest = &rest[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            event_line(&rest[..end], &mut self.tokens);
            rest = &rest[end + 1..];
        }
        self.keep(rest);
    }

    /// Keeps the start of an unfinished line, unless it grows longer than
    /// any event: there is no usage to read from such a line.
    fn keep(&mut self, part: &[u8]) {
        if self.pending.len() + part.len() > MAX_EVENT_LINE {
            self.pending.clear();
        } else {
            self.pending.extend_from_slice(part);
        }
    }
}

/// One line of an event stream: a `data:` line may carry usage.
fn event_line(line: &[u8], tokens: &mut Tokens) {
    if let Some(data) = line.trim_ascii().strip_prefix(b"data:") {
        usage_of(data.trim_ascii(), tokens);
    }
}

/// Passes server-sent events through as they arrive, reading usage from them
/// on the way; the bookkeeping happens when the stream ends or the client
/// goes away.
fn stream_through(
    settlement: Settlement,
    response: axum::http::Response<Body>,
    content_type: HeaderValue,
    health: Arc<HealthCell>,
    translator: Option<StreamTranslator>,
) -> Response {
    struct Watch {
        settlement: Option<Settlement>,
        usage: StreamUsage,
        bytes: usize,
        captured: Option<Vec<u8>>,
        failed: Option<String>,
    }
    impl Watch {
        fn see(&mut self, chunk: &[u8]) {
            self.bytes += chunk.len();
            if let Some(captured) = &mut self.captured {
                let room = CAPTURE_LIMIT.saturating_sub(captured.len());
                captured.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            self.usage.see(chunk);
        }
    }
    impl Drop for Watch {
        fn drop(&mut self) {
            if let Some(settlement) = self.settlement.take() {
                let captured = self.captured.take().map(|c| captured_text(&c, self.bytes));
                settlement.finish(
                    200,
                    self.usage.tokens,
                    self.bytes,
                    captured,
                    self.failed.take(),
                );
            }
        }
    }
    let capture = settlement.grant.capture_bodies;
    let gateway = settlement.gateway.clone();
    let watch = Watch {
        settlement: Some(settlement),
        usage: StreamUsage::default(),
        bytes: 0,
        captured: capture.then(Vec::new),
        failed: None,
    };
    /// What the stream carries from one piece to the next.
    struct Flow {
        upstream: axum::body::BodyDataStream,
        watch: Watch,
        translator: Option<StreamTranslator>,
        health: Arc<HealthCell>,
        gateway: Arc<Gateway>,
        ended: bool,
    }
    let flow = Flow {
        upstream: response.into_body().into_data_stream(),
        watch,
        translator,
        health,
        gateway,
        ended: false,
    };
    // Usage is read from the upstream's own bytes; the caller gets them as
    // they are, or translated. Dropping the flow (the end, or the client going
    // away) settles the call.
    let body = futures_util::stream::unfold(flow, |mut flow| async move {
        while !flow.ended {
            match flow.upstream.next().await {
                Some(Ok(bytes)) => {
                    flow.watch.see(&bytes);
                    let out = match &mut flow.translator {
                        Some(t) => Bytes::from(t.feed(&bytes)),
                        None => bytes,
                    };
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out), flow));
                    }
                }
                Some(Err(e)) => {
                    let now = flow.gateway.services.usage.env().clock.now_millis();
                    flow.health.failure(now, format!("the stream broke: {e}"));
                    flow.watch.failed = Some(format!("upstream stream broke: {e}"));
                    flow.ended = true;
                    let e = std::io::Error::other("the model's endpoint broke off the stream");
                    return Some((Err(e), flow));
                }
                None => {
                    flow.ended = true;
                    let tail = flow.translator.as_mut().map(StreamTranslator::finish);
                    if let Some(tail) = tail.filter(|t| !t.is_empty()) {
                        return Some((Ok(Bytes::from(tail)), flow));
                    }
                }
            }
        }
        None
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captured_bodies_are_cut_at_the_limit_and_say_so() {
        assert_eq!(captured_text(b"{\"a\":1}", 7), "{\"a\":1}");
        let big = vec![b'x'; CAPTURE_LIMIT + 10];
        let text = captured_text(&big, big.len());
        assert!(text.starts_with(&"x".repeat(CAPTURE_LIMIT)));
        assert!(
            text.ends_with("…[10 more bytes not captured]"),
            "{}",
            &text[CAPTURE_LIMIT..]
        );
        // A stream's capture holds the first bytes; the total says how many came.
        let text = captured_text(&big[..CAPTURE_LIMIT], 3 * CAPTURE_LIMIT);
        assert!(text.ends_with(&format!("…[{} more bytes not captured]", 2 * CAPTURE_LIMIT)));
    }

    fn tokens(json: &str) -> Option<(u64, u64)> {
        let mut t = Tokens::default();
        usage_of(json.as_bytes(), &mut t);
        t.reported.then_some((t.prompt, t.completion))
    }

    #[test]
    fn usage_is_read_from_the_end_or_from_the_whole_answer() {
        // The usual answer: `usage` last, read without parsing the rest.
        let openai = r#"{"id":"c","choices":[{"message":{"content":"hi"}}],"usage":{"prompt_tokens":12,"completion_tokens":3,"total_tokens":15,"prompt_tokens_details":{"cached_tokens":0}}}"#;
        assert_eq!(tokens(openai), Some((12, 3)));
        assert!(trailing_usage(openai.as_bytes(), openai.rfind("\"usage\"").unwrap()).is_some());
        // Anthropic's names, whitespace around everything.
        assert_eq!(
            tokens(
                "{ \"content\": [],\n  \"usage\" :\t{\"input_tokens\": 7, \"output_tokens\": 2} \n}\n"
            ),
            Some((7, 2))
        );
        // `usage` not last, or only in `message` (Anthropic's message_start):
        // the whole answer is read.
        assert_eq!(
            tokens(r#"{"usage":{"prompt_tokens":4,"completion_tokens":1},"choices":[]}"#),
            Some((4, 1))
        );
        assert_eq!(
            tokens(
                r#"{"type":"message_start","message":{"usage":{"input_tokens":9,"output_tokens":1}}}"#
            ),
            Some((9, 1))
        );
        // A nested `usage` that ends the text is not the answer's.
        assert_eq!(
            tokens(
                r#"{"choices":[{"meta":{"usage":{"prompt_tokens":99,"completion_tokens":99}}}]}"#
            ),
            None
        );
        // Text that talks about usage is not usage.
        assert_eq!(
            tokens(r#"{"choices":[{"text":"\"usage\": {\"prompt_tokens\": 99}}"}]}"#),
            None
        );
        assert_eq!(
            tokens(r#"{"a\"usage":{"prompt_tokens":99,"completion_tokens":99}}"#),
            None
        );
        // No usage, a null one, no JSON at all.
        assert_eq!(tokens(r#"{"choices":[]}"#), None);
        assert_eq!(tokens(r#"{"choices":[],"usage":null}"#), None);
        assert_eq!(tokens("data: [DONE]"), None);
        assert_eq!(tokens(r#"{"usage":"#), None);
    }

    #[test]
    fn stream_usage_is_read_however_the_stream_is_cut() {
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"usage\\\": 1}\"}}]}\r\n\r\n",
            ": a comment\n\n",
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":9,\"output_tokens\":1}}}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":3}}\n\n",
            "data: [DONE]\n\n",
        )
        .as_bytes();
        for cut in 0..stream.len() {
            let mut usage = StreamUsage::default();
            usage.see(&stream[..cut]);
            usage.see(&stream[cut..]);
            let t = usage.tokens;
            assert!(t.reported, "cut at {cut}");
            assert_eq!((t.prompt, t.completion), (12, 3), "cut at {cut}");
        }
        // Byte by byte, and an overlong line is dropped without harm.
        let mut usage = StreamUsage::default();
        usage.see(&vec![b'x'; MAX_EVENT_LINE + 1]);
        assert!(usage.pending.is_empty());
        for b in stream {
            usage.see(std::slice::from_ref(b));
        }
        assert_eq!((usage.tokens.prompt, usage.tokens.completion), (12, 3));
    }
}
