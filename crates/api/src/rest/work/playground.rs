//! `POST …/chats/{chat}/messages`: the playground. The chat's owner sends a
//! message; Gatehouse calls the chat's model through the gateway's own
//! decision, admission (limits and budgets), upstream call and settlement —
//! on behalf of the signed-in user, without an API key — and streams the
//! answer back as it arrives. Nothing is stored for a call that is refused;
//! once the model answers, the user's message is stored, and the
//! assistant's when the stream ends — marked `partial` when it broke off or
//! the client went away (then written by a task of its own).
//!
//! The stream is the model's OpenAI chat-completion chunks as they come
//! (`data: {…}` … `data: [DONE]`), framed by two events of Gatehouse's:
//! `event: user_message` first and `event: message` last, each with the
//! stored message as JSON.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures_util::StreamExt;
use gatehouse_core::model::accounts::User;
use gatehouse_core::model::catalog::Model;
use gatehouse_core::model::sessions::ClientInfo;
use gatehouse_core::model::work::{ChatMessage, MessageRole};
use gatehouse_core::work::{History, NewMessage, WorkService};
use gatehouse_core::{Error, ErrorCode, Id};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::super::AppState;
use super::chats::{MessageOut, chat_path};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath};
use crate::sse::DataLines;

/// What is sent to the model with a new message: the newest 1000 earlier
/// messages, at most about 4 MiB of text.
const CONTEXT: History = History {
    newest: true,
    limit: 1000,
    max_bytes: 4 << 20,
};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendMessage {
    /// Your message: at most 65 536 characters (256 KiB).
    #[schema(max_length = 65536)]
    pub content: String,
}

/// Send a message to the chat's model and stream its answer (the chat's
/// owner). Refused exactly as the gateway refuses a key's call: a model you
/// may not use, a limit reached or a budget spent.
#[utoipa::path(post, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/messages", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
    ),
    request_body = SendMessage,
    responses(
        (status = 200, description = "`text/event-stream`: `event: user_message` (the stored message), the model's chat-completion chunks, `data: [DONE]`, then `event: message` (the stored answer)", content_type = "text/event-stream", body = String),
        (status = 400, description = "Too long", body = ErrorBody),
        (status = 403, description = "Not your chat, or a model you may not use", body = ErrorBody),
        (status = 404, description = "No such chat, or an unknown model", body = ErrorBody),
        (status = 429, description = "A limit reached or a budget spent; see `Retry-After`", body = ErrorBody),
        (status = 503, description = "The model's endpoint failed or cannot be reached", body = ErrorBody),
        (status = 504, description = "The model's endpoint did not answer in time", body = ErrorBody),
    ))]
pub async fn send(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<SendMessage>,
) -> Result<Response, ApiError> {
    let at = chat_path(&org, &project, &chat)?;
    let work = state.services.work.clone();
    let (chat, request) = work
        .next_turn(&auth.user, at, &body.content, CONTEXT)
        .await?;
    // The gateway's decision, for the user instead of a key.
    let grant = state
        .services
        .keys
        .index()
        .check_user(auth.user.id, &chat.model, chat.org_id)
        .await
        .map_err(|d| ApiError(Error::new(code_of(d.status()), d.message())))?;
    let model = grant.model.clone();
    let request_id = state.services.usage.env().ids.next_id();
    let payload = serde_json::to_vec(&request).map_err(|e| ApiError(Error::internal(e)))?;
    let answer = crate::gateway::playground(state.gateway.clone(), grant, payload, request_id)
        .await
        .map_err(|e| ApiError(Error::new(code_of(e.status()), e.message())))?;
    // Answered: the user's message is kept, then the answer streams.
    let user_message = work
        .append_message(
            &auth.user,
            at,
            NewMessage::text(MessageRole::User, body.content),
            &client,
        )
        .await?;
    let first = event("user_message", &user_message);
    let upstream = answer.into_body();
    let answer = Answer {
        work,
        user: auth.user,
        at,
        model,
        request_id,
        client,
        content: String::new(),
        usage: None,
        lines: DataLines::default(),
        finished: false,
        stored: false,
    };
    Ok(stream(first, answer, upstream))
}

/// The answer as it streams: what the client was sent of it, to store at the end.
struct Answer {
    work: Arc<WorkService>,
    user: User,
    at: (Id, Id, Id),
    model: Arc<Model>,
    request_id: Id,
    client: ClientInfo,
    content: String,
    /// Prompt and completion tokens, from the final usage chunk.
    usage: Option<(u64, u64)>,
    lines: DataLines,
    /// The model said it was done (`finish_reason`, or `[DONE]`).
    finished: bool,
    stored: bool,
}

impl Answer {
    /// Reads the text, the end and the usage from a piece of the stream.
    fn see(&mut self, piece: &[u8]) {
        let (content, usage, finished) = (&mut self.content, &mut self.usage, &mut self.finished);
        self.lines.feed(piece, |data| {
            if data == b"[DONE]" {
                *finished = true;
                return;
            }
            let Ok(chunk) = serde_json::from_slice::<Value>(data) else {
                return;
            };
            if let Some(text) = chunk
                .pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                && content.len() + text.len() <= gatehouse_core::work::MAX_CONTENT_BYTES
            {
                content.push_str(text);
            }
            if chunk
                .pointer("/choices/0/finish_reason")
                .is_some_and(|f| !f.is_null())
            {
                *finished = true;
            }
            if let Some(u) = chunk.get("usage").filter(|u| u.is_object()) {
                let count = |name: &str| u.get(name).and_then(Value::as_u64).unwrap_or(0);
                *usage = Some((count("prompt_tokens"), count("completion_tokens")));
            }
        });
    }

    /// The assistant's message as it stands.
    fn message(&self, partial: bool) -> NewMessage {
        let (prompt, completion) = self.usage.unwrap_or((0, 0));
        let mut message = NewMessage::text(
            MessageRole::Assistant,
            gatehouse_core::work::clipped(self.content.clone()),
        );
        message.model = Some(self.model.name.clone());
        message.prompt_tokens = prompt;
        message.completion_tokens = completion;
        message.cost_micros = self.model.cost_micros(prompt, completion);
        message.partial = partial;
        message.request_id = Some(self.request_id);
        message
    }

    async fn store(&mut self) -> gatehouse_core::Result<ChatMessage> {
        self.stored = true;
        let message = self.message(!self.finished);
        self.work
            .append_message(&self.user, self.at, message, &self.client)
            .await
    }
}

impl Drop for Answer {
    /// The client went away mid-stream: what arrived is kept, marked partial.
    fn drop(&mut self) {
        if self.stored {
            return;
        }
        let (work, user, at) = (self.work.clone(), self.user.clone(), self.at);
        let (client, message) = (self.client.clone(), self.message(true));
        tokio::spawn(async move {
            if let Err(e) = work.append_message(&user, at, message, &client).await {
                tracing::warn!(error = %e, "a broken-off answer could not be kept");
            }
        });
    }
}

/// The response: `first`, the model's chunks as they come, then the stored
/// answer.
fn stream(first: Bytes, answer: Answer, upstream: Body) -> Response {
    let start = (Some(first), upstream.into_data_stream(), answer, false);
    let events = futures_util::stream::unfold(
        start,
        |(first, mut up, mut answer, ended)| async move {
            if let Some(first) = first {
                return Some((Ok::<_, std::io::Error>(first), (None, up, answer, ended)));
            }
            if ended {
                return None;
            }
            match up.next().await {
                Some(Ok(piece)) => {
                    answer.see(&piece);
                    Some((Ok(piece), (None, up, answer, false)))
                }
                Some(Err(_)) | None => {
                    let last = match answer.store().await {
                        Ok(message) => event("message", &message),
                        Err(e) => {
                            let error = json!({"error": {"code": e.code().as_str(), "message": e.message()}});
                            Bytes::from(format!("event: error\ndata: {error}\n\n"))
                        }
                    };
                    Some((Ok(last), (None, up, answer, true)))
                }
            }
        },
    );
    let mut response = Response::new(Body::from_stream(events));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// A stored message as one server-sent event.
fn event(name: &str, message: &ChatMessage) -> Bytes {
    let json = serde_json::to_string(&MessageOut::from(message.clone())).unwrap_or_default();
    Bytes::from(format!("event: {name}\ndata: {json}\n\n"))
}

fn code_of(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::InvalidInput,
        401 => ErrorCode::Unauthenticated,
        403 => ErrorCode::PermissionDenied,
        404 => ErrorCode::NotFound,
        429 => ErrorCode::RateLimited,
        504 => ErrorCode::Timeout,
        _ => ErrorCode::Unavailable,
    }
}
