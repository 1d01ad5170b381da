//! `…/projects/{project}/chats[/{chat}]` and the chats' messages, context
//! files and export.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::model::work::{Chat, ChatMessage, MessageRole};
use gatehouse_core::work::{ChatChange, ChatSpec, History, NewMessage};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::super::AppState;
use super::super::orgs::id;
use super::super::page::{List, PageQuery};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// What an export holds: the first 10 000 messages, at most about 32 MiB of text.
const EXPORT: History = History {
    newest: false,
    limit: 10_000,
    max_bytes: 32 << 20,
};

#[derive(Serialize, ToSchema)]
pub struct ChatOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub organization_id: Id,
    #[schema(value_type = String)]
    pub project_id: Id,
    /// Who started it; only they write to it.
    #[schema(value_type = String)]
    pub owner_id: Id,
    pub name: String,
    /// A model's public name or an alias.
    pub model: String,
    pub is_starred: bool,
    pub is_user_default: bool,
    /// Every member of the organization may read it.
    pub shared: bool,
    pub system_prompt: Option<String>,
    /// Sent with every call: `temperature`, `top_p`, `max_tokens`, …
    #[schema(value_type = Object)]
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Chat> for ChatOut {
    fn from(c: Chat) -> Self {
        ChatOut {
            id: c.id,
            organization_id: c.org_id,
            project_id: c.project_id,
            owner_id: c.owner_id,
            name: c.name,
            model: c.model,
            is_starred: c.is_starred,
            is_user_default: c.is_user_default,
            shared: c.shared,
            system_prompt: c.system_prompt,
            parameters: c.parameters,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

/// Sampling parameters sent with every call of the chat.
#[derive(Deserialize, Serialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct ChatParameters {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 2)]
    pub temperature: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 0, maximum = 1)]
    pub top_p: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1)]
    pub max_completion_tokens: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2, maximum = 2)]
    pub presence_penalty: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(minimum = -2, maximum = 2)]
    pub frequency_penalty: Option<f64>,
    /// Up to four sequences that end the answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 4)]
    pub stop: Option<Vec<StopSequence>>,
}

/// A sequence that ends the answer: 1 to 200 characters.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(transparent)]
#[schema(pattern = "^[\\s\\S]{1,200}$")]
pub struct StopSequence(pub String);

impl ChatParameters {
    fn into_map(self) -> serde_json::Map<String, serde_json::Value> {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(map)) => map,
            _ => serde_json::Map::new(),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewChatBody {
    /// The model's name if left out.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    /// A model's public name or an alias you may use.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 200
    )]
    pub model: String,
    #[schema(max_length = 65536)]
    pub system_prompt: Option<String>,
    pub parameters: Option<ChatParameters>,
    #[serde(default)]
    pub shared: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChatPatch {
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 200
    )]
    pub model: Option<String>,
    pub is_starred: Option<bool>,
    pub shared: Option<bool>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "super::super::catalog::some")]
    #[schema(max_length = 65536)]
    pub system_prompt: Option<Option<String>>,
    /// Replaces the parameters (`{}` clears them).
    pub parameters: Option<ChatParameters>,
}

#[derive(Serialize, ToSchema)]
pub struct MessageOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub chat_id: Id,
    /// `system`, `user`, `assistant` or `tool`.
    #[schema(value_type = String)]
    pub role: MessageRole,
    pub content: String,
    /// The whole message as the model API has it.
    #[schema(value_type = Object)]
    pub content_raw: serde_json::Value,
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    pub is_context_file: bool,
    pub is_tool_message: bool,
    /// The answer broke off; what arrived is kept.
    pub partial: bool,
    /// The gateway call that produced it (see `/api/v1/request-logs`).
    #[schema(value_type = Option<String>)]
    pub request_id: Option<Id>,
    pub created_at: DateTime<Utc>,
}

impl From<ChatMessage> for MessageOut {
    fn from(m: ChatMessage) -> Self {
        MessageOut {
            id: m.id,
            chat_id: m.chat_id,
            role: m.role,
            content: m.content,
            content_raw: m.content_raw,
            model: m.model,
            prompt_tokens: m.prompt_tokens,
            completion_tokens: m.completion_tokens,
            cost_usd: m.cost_micros as f64 / 1e6,
            is_context_file: m.is_context_file,
            is_tool_message: m.is_tool_message,
            partial: m.partial,
            request_id: m.request_id,
            created_at: m.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContextFile {
    /// The file's name, shown to the model.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    /// Its text: at most 65 536 characters (256 KiB).
    #[schema(max_length = 65536)]
    pub content: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `json` (default) or `markdown`.
    pub format: Option<ExportFormat>,
}

#[derive(Deserialize, ToSchema, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Json,
    Markdown,
}

#[derive(Serialize, ToSchema)]
pub struct ChatExport {
    pub chat: ChatOut,
    pub messages: Vec<MessageOut>,
}

pub(super) fn chat_path(org: &str, project: &str, chat: &str) -> Result<(Id, Id, Id), ApiError> {
    Ok((id(org)?, id(project)?, id(chat)?))
}

/// Start a chat in a project (members).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/projects/{project}/chats", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
    ),
    request_body = NewChatBody,
    responses(
        (status = 201, description = "Started", body = ChatOut),
        (status = 400, description = "Unknown parameters, or too long a prompt", body = ErrorBody),
        (status = 403, description = "Read-only, or the organization is suspended", body = ErrorBody),
        (status = 404, description = "No such organization or project", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<NewChatBody>,
) -> Result<(StatusCode, Json<ChatOut>), ApiError> {
    let spec = ChatSpec {
        name: body.name,
        model: body.model,
        system_prompt: body.system_prompt,
        parameters: body.parameters.unwrap_or_default().into_map(),
        shared: body.shared,
    };
    let chat = state
        .services
        .work
        .create_chat(&auth.user, id(&org)?, id(&project)?, spec, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(chat.into())))
}

/// The chats of a project you may read: yours, shared ones, and every one
/// for the organization's owners and admins.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/projects/{project}/chats", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "Chats, newest first", body = List<ChatOut>),
        (status = 404, description = "No such organization or project", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<ChatOut>>, ApiError> {
    let page = page.request()?;
    let chats = state
        .services
        .work
        .list_chats_page(&auth.user, id(&org)?, id(&project)?, &page)
        .await?;
    Ok(Json(List::of(chats)))
}

/// Read a chat.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
    ),
    responses(
        (status = 200, description = "The chat", body = ChatOut),
        (status = 404, description = "No such chat visible to you", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
) -> Result<Json<ChatOut>, ApiError> {
    let (org, project, chat) = chat_path(&org, &project, &chat)?;
    let chat = state
        .services
        .work
        .get_chat(&auth.user, org, project, chat)
        .await?;
    Ok(Json(chat.into()))
}

/// Change a chat: rename, star, share, model, system prompt, parameters (its owner).
#[utoipa::path(patch, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
    ),
    request_body = ChatPatch,
    responses(
        (status = 200, description = "Changed", body = ChatOut),
        (status = 400, description = "Unknown parameters, or too long a prompt", body = ErrorBody),
        (status = 403, description = "Not your chat", body = ErrorBody),
        (status = 404, description = "No such chat visible to you", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<ChatPatch>,
) -> Result<Json<ChatOut>, ApiError> {
    let change = ChatChange {
        name: body.name,
        model: body.model,
        is_starred: body.is_starred,
        shared: body.shared,
        system_prompt: body.system_prompt,
        parameters: body.parameters.map(ChatParameters::into_map),
    };
    let chat = state
        .services
        .work
        .update_chat(
            &auth.user,
            chat_path(&org, &project, &chat)?,
            change,
            &client,
        )
        .await?;
    Ok(Json(chat.into()))
}

/// Delete a chat with its messages (its owner, or the organization's owners and admins).
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not your chat", body = ErrorBody),
        (status = 404, description = "No such chat visible to you", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .work
        .delete_chat(&auth.user, chat_path(&org, &project, &chat)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A chat's messages, oldest first (a page holds fewer than `limit` where
/// they hold more than 16 MiB of text and `content_raw`: follow `next_cursor`).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/messages", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "Messages, oldest first", body = List<MessageOut>),
        (status = 404, description = "No such chat visible to you", body = ErrorBody),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<MessageOut>>, ApiError> {
    let page = page.request()?;
    let found = state
        .services
        .work
        .list_messages(
            &auth.user,
            chat_path(&org, &project, &chat)?,
            &page,
            gatehouse_core::work::MAX_PAGE_TEXT_BYTES,
        )
        .await?;
    Ok(Json(List::of(found)))
}

/// Add a text file to a chat as context for the model (its owner; at most 256 KiB).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/files", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
    ),
    request_body = ContextFile,
    responses(
        (status = 201, description = "Added, as a context-file message", body = MessageOut),
        (status = 400, description = "Too large", body = ErrorBody),
        (status = 403, description = "Not your chat", body = ErrorBody),
        (status = 404, description = "No such chat visible to you", body = ErrorBody),
    ))]
pub async fn add_file(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<ContextFile>,
) -> Result<(StatusCode, Json<MessageOut>), ApiError> {
    let message = NewMessage::context_file(&body.name, body.content)?;
    let message = state
        .services
        .work
        .append_message(
            &auth.user,
            chat_path(&org, &project, &chat)?,
            message,
            &client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(message.into())))
}

/// Export a chat and its messages as JSON or Markdown (the first 10 000
/// messages, at most about 32 MiB of text).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/export", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
        ("chat" = String, Path, description = "Chat ID"),
        ExportQuery,
    ),
    responses(
        (status = 200, description = "The chat: JSON, or `text/markdown`",
            content((ChatExport = "application/json"), (String = "text/markdown"))),
        (status = 404, description = "No such chat visible to you", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, project, chat)): ApiPath<(String, String, String)>,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let at = chat_path(&org, &project, &chat)?;
    let (chat, messages) = state
        .services
        .work
        .chat_history(&auth.user, at, EXPORT)
        .await?;
    if query.format == Some(ExportFormat::Markdown) {
        let markdown = markdown(&chat, &messages);
        let filename = format!("attachment; filename=\"chat-{}.md\"", chat.id);
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    "text/markdown; charset=utf-8".to_string(),
                ),
                (header::CONTENT_DISPOSITION, filename),
            ],
            markdown,
        )
            .into_response());
    }
    Ok(Json(ChatExport {
        chat: chat.into(),
        messages: messages.into_iter().map(Into::into).collect(),
    })
    .into_response())
}

/// A chat as Markdown: a heading, then each message under its role.
fn markdown(chat: &Chat, messages: &[ChatMessage]) -> String {
    let mut out = format!("# {}\n\nModel: `{}`\n", chat.name, chat.model);
    if let Some(prompt) = &chat.system_prompt {
        out.push_str(&format!("\n## System\n\n{prompt}\n"));
    }
    for m in messages {
        let who = match m.role {
            MessageRole::System => "System",
            MessageRole::User if m.is_context_file => "Context file",
            MessageRole::User => "User",
            MessageRole::Assistant => "Assistant",
            MessageRole::Tool => "Tool",
        };
        let partial = if m.partial { " (broke off)" } else { "" };
        out.push_str(&format!("\n## {who}{partial}\n\n{}\n", m.content));
    }
    out
}

/// This module's routes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, update, delete))
        .routes(routes!(messages))
        .routes(routes!(add_file))
        .routes(routes!(export))
}
