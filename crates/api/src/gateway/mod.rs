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

mod call;
pub(crate) use call::playground;
mod count;
mod error;
mod settle;
mod stream;
#[cfg(test)]
mod tests;
mod upstream;
mod usage;

use std::sync::Arc;

use axum::body::Body;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use dashmap::DashMap;
use gatehouse_core::Id;
use gatehouse_core::keys::index::Denial;
use gatehouse_core::model::catalog::{ApiFlavour, Endpoint, Model};
use gatehouse_core::services::{Credential, Services};
use serde_json::{Value, json};

pub use self::error::GatewayError;
use self::upstream::Upstream;

/// What the gateway keeps between calls: an HTTP client and parsed URLs per
/// endpoint, and decrypted credentials, both rebuilt when they change.
/// How much the gateway reads.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest request body (`server.body_limit_bytes`).
    pub body_bytes: usize,
    /// The largest non-streamed answer (`endpoints.max_answer_bytes`).
    pub answer_bytes: usize,
}

pub struct Gateway {
    services: Services,
    limits: Limits,
    upstreams: DashMap<Id, Arc<Upstream>>,
    secrets: DashMap<Id, (u64, Arc<Value>)>,
}

/// The most of an upstream's error answer the gateway reads.
const ERROR_BODY_LIMIT: usize = 1 << 20;

/// The most of a request or response body kept when bodies are captured.
pub const CAPTURE_LIMIT: usize = 40 * 1024;

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
    pub fn new(services: Services, limits: Limits) -> Arc<Self> {
        Arc::new(Gateway {
            services,
            limits,
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

/// The key a caller presented: `X-API-Key`, or `Authorization: Bearer`
/// (read as every transport reads credentials; the gateway takes keys only).
fn presented_key(headers: &HeaderMap) -> Option<&str> {
    match crate::caller::credential(headers)? {
        Credential::ApiKey(key) | Credential::Bearer(key) => Some(key),
        Credential::SessionCookie(_) => None,
    }
}

/// The route a call came in on (the discriminant indexes the upstream's URLs).
#[derive(Debug, Clone, Copy)]
pub enum Api {
    ChatCompletions = 0,
    Embeddings = 1,
    Messages = 2,
    /// Anthropic's `messages/count_tokens` (counted, never settled).
    CountTokens = 3,
}

impl Api {
    pub(super) fn shape(self) -> ApiFlavour {
        match self {
            Api::Messages | Api::CountTokens => ApiFlavour::Anthropic,
            Api::ChatCompletions | Api::Embeddings => ApiFlavour::Openai,
        }
    }

    pub(super) fn path(self) -> &'static str {
        match self {
            Api::ChatCompletions => "/v1/chat/completions",
            Api::Embeddings => "/v1/embeddings",
            Api::Messages => "/v1/messages",
            Api::CountTokens => "/v1/messages/count_tokens",
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Api::ChatCompletions => "chat.completions",
            Api::Embeddings => "embeddings",
            Api::Messages => "messages",
            Api::CountTokens => "messages.count_tokens",
        }
    }
}

/// What the gateway itself reads of a chat completion request; the rest is
/// the upstream's to judge. (Documentation only: the body is forwarded as sent.)
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ChatRequest {
    /// A model, alias or global alias name.
    #[schema(min_length = 1)]
    model: String,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    stream: Option<bool>,
}

/// What the gateway reads of an embeddings request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct EmbeddingsRequest {
    #[schema(min_length = 1)]
    model: String,
    /// Text, or a list of texts or token arrays.
    #[schema(value_type = Value)]
    input: serde_json::Value,
}

/// What the gateway reads of an Anthropic messages request.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct MessagesRequest {
    #[schema(min_length = 1)]
    model: String,
    max_tokens: u32,
    #[schema(value_type = Vec<Object>)]
    messages: Vec<serde_json::Value>,
    stream: Option<bool>,
}

/// OpenAI chat completions, streaming (`"stream": true`) or not.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "gateway",
    security(("bearer" = []), ("api_key" = [])),
    request_body(content = ChatRequest, description = "An OpenAI chat completion request (any other member is passed on)"),
    responses(
        (status = 200, description = "The upstream's answer (JSON, or server-sent events)"),
    ))]
pub async fn chat_completions(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    call::forward(gateway, Api::ChatCompletions, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// OpenAI embeddings.
#[utoipa::path(post, path = "/v1/embeddings", tag = "gateway",
    security(("bearer" = []), ("api_key" = [])),
    request_body(content = EmbeddingsRequest, description = "An OpenAI embeddings request (any other member is passed on)"),
    responses(
        (status = 200, description = "The upstream's answer"),
    ))]
pub async fn embeddings(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    call::forward(gateway, Api::Embeddings, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// Anthropic messages, streaming or not.
#[utoipa::path(post, path = "/v1/messages", tag = "gateway",
    security(("bearer" = []), ("api_key" = [])),
    request_body(content = MessagesRequest, description = "An Anthropic messages request (any other member is passed on)"),
    responses(
        (status = 200, description = "The upstream's answer (JSON, or server-sent events)"),
    ))]
pub async fn messages(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    call::forward(gateway, Api::Messages, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// How many input tokens an Anthropic messages request would count: the
/// model's Anthropic endpoint counts it, any other model gets an estimate
/// (four bytes a token). Decided as a call (key, model); not limited, billed
/// or recorded.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "gateway",
    security(("bearer" = []), ("api_key" = [])),
    request_body(content = MessagesRequest, description = "An Anthropic messages request (`max_tokens` not needed)"),
    responses(
        (status = 200, description = "`{\"input_tokens\": N}`"),
    ))]
pub async fn count_tokens(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    count::count_tokens(gateway, headers, body)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

/// The shape Anthropic's SDKs get: they send `anthropic-version`.
fn models_shape(headers: &HeaderMap) -> ApiFlavour {
    if headers.contains_key("anthropic-version") {
        ApiFlavour::Anthropic
    } else {
        ApiFlavour::Openai
    }
}

/// A model as OpenAI's or Anthropic's models API describes one, under the
/// name the caller uses for it.
fn model_object(shape: ApiFlavour, id: &str, m: &Model) -> Value {
    match shape {
        ApiFlavour::Openai => json!({
            "id": id,
            "object": "model",
            "created": m.created_at.timestamp(),
            "owned_by": if m.provider.is_empty() { "gatehouse" } else { m.provider.as_str() },
        }),
        ApiFlavour::Anthropic => json!({
            "type": "model",
            "id": id,
            "display_name": id,
            "created_at": m.created_at,
        }),
    }
}

/// The models this key may use, in OpenAI's list shape — or in Anthropic's
/// (`{"data": [{"type": "model", "id", …}], "has_more": false, …}`) when the
/// request carries `anthropic-version`, as Anthropic's SDKs send.
#[utoipa::path(get, path = "/v1/models", tag = "gateway",
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{\"object\": \"list\", \"data\": [...]}`, or Anthropic's list"),
    ))]
pub async fn models(State(gateway): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    let shape = models_shape(&headers);
    let Some(key) = presented_key(&headers) else {
        return GatewayError::denial(shape, Denial::UnknownKey).into_response();
    };
    let models = match gateway.services.keys.index().models_for(key) {
        Ok(models) => models,
        Err(denial) => return GatewayError::denial(shape, denial).into_response(),
    };
    let data: Vec<Value> = models
        .iter()
        .map(|m| model_object(shape, &m.name, m))
        .collect();
    let list = match shape {
        ApiFlavour::Openai => json!({"object": "list", "data": data}),
        ApiFlavour::Anthropic => json!({
            "data": data,
            "has_more": false,
            "first_id": models.first().map(|m| m.name.as_str()),
            "last_id": models.last().map(|m| m.name.as_str()),
        }),
    };
    axum::Json(list).into_response()
}

/// One model this key may use, by the name it calls it (a model's name or an
/// alias), in OpenAI's shape or Anthropic's; refused as a call to it would
/// be (404 for a name that resolves to no enabled model).
#[utoipa::path(get, path = "/v1/models/{model}", tag = "gateway",
    security(("bearer" = []), ("api_key" = [])),
    params(("model" = String, Path, description = "A model's name or alias")),
    responses(
        (status = 200, description = "`{\"id\", \"object\": \"model\", \"created\", \"owned_by\"}`, or Anthropic's model object"),
        (status = 404, description = "No such model for this key"),
    ))]
pub async fn model(
    State(gateway): State<Arc<Gateway>>,
    name: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> Response {
    let shape = models_shape(&headers);
    let Ok(Path(name)) = name else {
        let message = "the model name is not valid UTF-8 once percent-decoded";
        return GatewayError::new(shape, StatusCode::BAD_REQUEST, message).into_response();
    };
    let Some(key) = presented_key(&headers) else {
        return GatewayError::denial(shape, Denial::UnknownKey).into_response();
    };
    match gateway.services.keys.index().check(key, &name) {
        Ok(grant) => axum::Json(model_object(shape, &name, &grant.model)).into_response(),
        Err(denial) => GatewayError::denial(shape, denial).into_response(),
    }
}
