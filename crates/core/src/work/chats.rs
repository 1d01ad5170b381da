//! Chats and their messages: start, list, read, change (rename, star, share,
//! model, system prompt, parameters), delete; messages listed a page at a
//! time, appended by the playground, context files, and the export.

use gatehouse_storage::RangeOptions;

use super::*;
use crate::codec::decode_values;
use crate::model::work::{ChatMessage, ChatRef, MessageRole};
use crate::page::{Page, PageRequest};

/// The most text one message or context file holds.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

/// The most characters one message, system prompt or context file holds
/// (the documented `maxLength`; [`MAX_CONTENT_BYTES`] bounds the bytes).
pub const MAX_CONTENT_CHARS: usize = 65_536;

/// The most bytes of a model's answer stored: the store keeps a record in
/// at most `MAX_VALUE_SIZE` bytes, and a message holds its text twice.
const MAX_ANSWER_BYTES: usize = 48 * 1024;

/// `text` cut, at a character boundary, to what a stored answer may hold:
/// for a model's answer, which is stored however long it ran.
pub fn clipped(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_CONTENT_CHARS) {
        text.truncate(at);
    }
    let mut at = text.len().min(MAX_ANSWER_BYTES);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text
}

/// Sampling parameters a chat may keep, sent with every call.
const PARAMETERS: [&str; 7] = [
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
];

/// A new chat.
#[derive(Debug, Clone, Default)]
pub struct ChatSpec {
    pub name: Option<String>,
    pub model: String,
    pub system_prompt: Option<String>,
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub shared: bool,
}

/// Changes to a chat; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct ChatChange {
    pub name: Option<String>,
    pub model: Option<String>,
    pub is_starred: Option<bool>,
    pub shared: Option<bool>,
    /// `Some(None)` removes it.
    pub system_prompt: Option<Option<String>>,
    pub parameters: Option<serde_json::Map<String, serde_json::Value>>,
}

/// Which messages [`WorkService::chat_history`] reads.
#[derive(Debug, Clone, Copy)]
pub struct History {
    /// The newest ones (a model's context) rather than the first (an export).
    pub newest: bool,
    pub limit: usize,
    pub max_bytes: usize,
}

/// A message to append.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub role: MessageRole,
    pub content: String,
    pub content_raw: serde_json::Value,
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: i64,
    pub is_context_file: bool,
    pub partial: bool,
    pub request_id: Option<Id>,
}

impl NewMessage {
    /// A plain text message.
    pub fn text(role: MessageRole, content: String) -> Self {
        NewMessage {
            content_raw: serde_json::json!({"role": role.as_str(), "content": content}),
            role,
            content,
            model: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_micros: 0,
            is_context_file: false,
            partial: false,
            request_id: None,
        }
    }
}

fn check_model(model: &str) -> Result<String> {
    let Some(model) =
        crate::common::trimmed_text(model).filter(|m| !m.is_empty() && m.len() <= 200)
    else {
        return Err(Error::invalid_input(
            "model names are 1 to 200 characters without control characters",
        ));
    };
    Ok(model.to_string())
}

fn check_text(text: &str, what: &str) -> Result<()> {
    if text.len() > MAX_CONTENT_BYTES || text.chars().count() > MAX_CONTENT_CHARS {
        return Err(Error::invalid_input(format!(
            "{what} is longer than {MAX_CONTENT_CHARS} characters"
        )));
    }
    Ok(())
}

fn check_parameters(
    parameters: &serde_json::Map<String, serde_json::Value>,
) -> Result<serde_json::Map<String, serde_json::Value>> {
    if let Some(unknown) = parameters
        .keys()
        .find(|k| !PARAMETERS.contains(&k.as_str()))
    {
        return Err(Error::invalid_input(format!(
            "`{unknown}` is not a chat parameter (one of {})",
            PARAMETERS.join(", ")
        )));
    }
    if serde_json::to_vec(parameters).map_or(0, |b| b.len()) > 16 * 1024 {
        return Err(Error::invalid_input("parameters are at most 16 KiB"));
    }
    if let Some(stop) = parameters.get("stop") {
        let sequences = stop.as_array().filter(|s| s.len() <= 4);
        let fine = sequences.is_some_and(|s| {
            s.iter().all(|q| {
                q.as_str()
                    .is_some_and(|q| (1..=200).contains(&q.chars().count()))
            })
        });
        if !fine {
            return Err(Error::invalid_input(
                "`stop` is up to four sequences of 1 to 200 characters",
            ));
        }
    }
    for (name, value) in parameters {
        let Some((low, high)) = parameter_range(name) else {
            continue;
        };
        if !value.as_f64().is_some_and(|v| (low..=high).contains(&v)) {
            return Err(Error::invalid_input(format!(
                "`{name}` is a number from {low} to {high}"
            )));
        }
    }
    Ok(parameters.clone())
}

/// The range a numeric sampling parameter takes (OpenAI's).
fn parameter_range(name: &str) -> Option<(f64, f64)> {
    match name {
        "temperature" => Some((0.0, 2.0)),
        "top_p" => Some((0.0, 1.0)),
        "presence_penalty" | "frequency_penalty" => Some((-2.0, 2.0)),
        // Documented as 32-bit integers (`format: int32`).
        "max_tokens" | "max_completion_tokens" => Some((1.0, f64::from(i32::MAX))),
        _ => None,
    }
}

fn no_chat() -> TxError<Error> {
    TxError::Abort(Error::not_found("chat"))
}

/// The chat, if the caller may read it; with the caller's access.
async fn readable_chat(
    tx: &Tx,
    actor: &User,
    org_id: Id,
    project_id: Id,
    chat_id: Id,
) -> Result<(OrgAccess, Chat), TxError<Error>> {
    let access = load_access(tx, actor, org_id).await?;
    project_in(tx, org_id, project_id).await?;
    let chat = keyspace::chat(project_id, chat_id)
        .get(tx)
        .await?
        .filter(|c| c.org_id == org_id && may_read(&access, actor, c))
        .ok_or_else(no_chat)?;
    Ok((access, chat))
}

/// The chat, if the caller is its owner and may still write in the
/// organization (a member, the organization not suspended).
async fn own_chat(
    tx: &Tx,
    actor: &User,
    org_id: Id,
    project_id: Id,
    chat_id: Id,
) -> Result<Chat, TxError<Error>> {
    let (access, chat) = readable_chat(tx, actor, org_id, project_id, chat_id).await?;
    if chat.owner_id != actor.id {
        return abort(Error::permission_denied(
            "only the chat's owner writes to it",
        ));
    }
    ensure_may_write(&access)?;
    Ok(chat)
}

fn ensure_may_write(access: &OrgAccess) -> Result<(), TxError<Error>> {
    use crate::model::tenancy::OrgStatus;
    if access.role.is_none() {
        return abort(Error::permission_denied(
            "only the organization's members start and write chats",
        ));
    }
    if access.org.status == OrgStatus::Suspended {
        return abort(Error::permission_denied(
            "this organization is suspended; a platform admin can resume it",
        ));
    }
    Ok(())
}

impl WorkService {
    /// Starts a chat in a project (any member).
    pub async fn create_chat(
        &self,
        actor: &User,
        org_id: Id,
        project_id: Id,
        spec: ChatSpec,
        client: &ClientInfo,
    ) -> Result<Chat> {
        let model = check_model(&spec.model)?;
        // Unnamed, a chat is called after its model (names hold 100
        // characters, model names 200).
        let fallback: String = model.chars().take(100).collect();
        let name = crate::common::parse_name(spec.name.as_deref().unwrap_or(&fallback), "chat")?;
        if let Some(prompt) = &spec.system_prompt {
            check_text(prompt, "the system prompt")?;
        }
        let now = self.env.clock.now();
        let chat = Chat {
            id: self.env.ids.next_id(),
            org_id,
            project_id,
            owner_id: actor.id,
            name,
            model,
            is_starred: false,
            is_user_default: false,
            shared: spec.shared,
            system_prompt: spec.system_prompt.filter(|p| !p.trim().is_empty()),
            parameters: check_parameters(&spec.parameters)?,
            created_at: now,
            updated_at: now,
        };
        self.audited(
            |tx| {
                let chat = &chat;
                async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    ensure_may_write(&access)?;
                    project_in(&tx, org_id, project_id).await?;
                    keyspace::chat(project_id, chat.id).put(&tx, chat).await?;
                    let at = ChatRef { org_id, project_id };
                    keyspace::user_chat(actor.id, chat.id).put(&tx, &at).await
                }
            },
            |_| {
                let details = serde_json::json!({"project_id": project_id, "model": chat.model});
                let target = ("chat", chat.id);
                self.event(actor, client, "chats.create", org_id, target, details)
            },
        )
        .await?;
        Ok(chat)
    }

    /// The chats of a project the caller may read.
    pub async fn list_chats(&self, actor: &User, org_id: Id, project_id: Id) -> Result<Vec<Chat>> {
        Ok(self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                project_in(&tx, org_id, project_id).await?;
                let chats = read_all::<Chat>(&tx, &keyspace::chats(project_id)).await?;
                Ok::<_, TxError<Error>>(
                    chats
                        .into_iter()
                        .filter(|c| may_read(&access, actor, c))
                        .collect(),
                )
            })
            .await?)
    }

    pub async fn get_chat(
        &self,
        actor: &User,
        org_id: Id,
        project_id: Id,
        chat_id: Id,
    ) -> Result<Chat> {
        Ok(self
            .store
            .run(|tx| async move {
                let (_, chat) = readable_chat(&tx, actor, org_id, project_id, chat_id).await?;
                Ok::<_, TxError<Error>>(chat)
            })
            .await?)
    }

    /// Changes a chat (its owner).
    pub async fn update_chat(
        &self,
        actor: &User,
        (org_id, project_id, chat_id): (Id, Id, Id),
        change: ChatChange,
        client: &ClientInfo,
    ) -> Result<Chat> {
        let name = change
            .name
            .as_deref()
            .map(|n| crate::common::parse_name(n, "chat"))
            .transpose()?;
        let model = change.model.as_deref().map(check_model).transpose()?;
        if let Some(Some(prompt)) = &change.system_prompt {
            check_text(prompt, "the system prompt")?;
        }
        let parameters = change
            .parameters
            .as_ref()
            .map(check_parameters)
            .transpose()?;
        let now = self.env.clock.now();
        self.audited(
            |tx| {
                let (name, model, change, parameters) = (&name, &model, &change, &parameters);
                async move {
                    let mut chat = own_chat(&tx, actor, org_id, project_id, chat_id).await?;
                    if let Some(name) = name {
                        chat.name = name.clone();
                    }
                    if let Some(model) = model {
                        chat.model = model.clone();
                    }
                    if let Some(starred) = change.is_starred {
                        chat.is_starred = starred;
                    }
                    if let Some(shared) = change.shared {
                        chat.shared = shared;
                    }
                    if let Some(prompt) = &change.system_prompt {
                        chat.system_prompt = prompt.clone().filter(|p| !p.trim().is_empty());
                    }
                    if let Some(parameters) = parameters {
                        chat.parameters = parameters.clone();
                    }
                    chat.updated_at = now;
                    keyspace::chat(project_id, chat_id).put(&tx, &chat).await?;
                    Ok(chat)
                }
            },
            |_| {
                let target = ("chat", chat_id);
                let details = serde_json::json!({"project_id": project_id});
                self.event(actor, client, "chats.update", org_id, target, details)
            },
        )
        .await
    }

    /// Deletes a chat (its owner, or the organization's owners and admins):
    /// gone at once, its messages follow a page at a time.
    pub async fn delete_chat(
        &self,
        actor: &User,
        (org_id, project_id, chat_id): (Id, Id, Id),
        client: &ClientInfo,
    ) -> Result<()> {
        self.audited(
            |tx| async move {
                let (access, chat) = readable_chat(&tx, actor, org_id, project_id, chat_id).await?;
                if chat.owner_id != actor.id {
                    access.require(OrgAction::ManageProjects)?;
                } else {
                    ensure_may_write(&access)?;
                }
                purge::remove_chat(&tx, &chat).await
            },
            |_| {
                let target = ("chat", chat_id);
                let details = serde_json::json!({"project_id": project_id});
                self.event(actor, client, "chats.delete", org_id, target, details)
            },
        )
        .await?;
        self.run_purges().await?;
        Ok(())
    }

    /// A page of a chat's messages, oldest first.
    pub async fn list_messages(
        &self,
        actor: &User,
        (org_id, project_id, chat_id): (Id, Id, Id),
        page: &PageRequest,
    ) -> Result<Page<ChatMessage>> {
        let after: Option<u64> = page.after_key()?;
        let limit = page.limit;
        let items = self
            .store
            .run(|tx| async move {
                readable_chat(&tx, actor, org_id, project_id, chat_id).await?;
                let mut range = keyspace::chat_messages(chat_id);
                if let Some(after) = after {
                    range.begin = gatehouse_storage::key_after(
                        keyspace::chat_message(chat_id, Id(after)).as_bytes(),
                    );
                }
                let found = tx.get_range(&range, RangeOptions::limit(limit + 1)).await?;
                decode_values::<ChatMessage>(&found.entries).map_err(TxError::Abort)
            })
            .await?;
        Ok(Page::from_lookahead(items, limit, |m| m.id.0))
    }

    /// The messages of a chat the caller may read, oldest first, for the
    /// model's context and the export: the newest ones (`newest`) or the
    /// first ones, at most `limit` of them and about `max_bytes` of text (the
    /// message that crosses it is the last), read a page at a time.
    pub async fn chat_history(
        &self,
        actor: &User,
        (org_id, project_id, chat_id): (Id, Id, Id),
        window: History,
    ) -> Result<(Chat, Vec<ChatMessage>)> {
        const PAGE: usize = 100;
        let chat = self.get_chat(actor, org_id, project_id, chat_id).await?;
        let mut messages: Vec<ChatMessage> = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(keyspace::chat_messages(chat_id));
        while let Some(range) = next.take() {
            let options = RangeOptions::limit(PAGE);
            let options = if window.newest {
                options.reversed()
            } else {
                options
            };
            let page = self.store.read_range(&range, options).await?;
            for message in decode_values::<ChatMessage>(&page.entries)? {
                bytes += message.content.len();
                messages.push(message);
                if messages.len() >= window.limit || bytes >= window.max_bytes {
                    break;
                }
            }
            if messages.len() < window.limit && bytes < window.max_bytes {
                next = page.next;
            }
        }
        if window.newest {
            messages.reverse();
        }
        Ok((chat, messages))
    }

    /// The next turn of a chat of the caller's own: the chat, and the
    /// chat-completion request its model gets for `content` — the system
    /// prompt, the history `window` allows, the new message, the chat's
    /// parameters, streamed with a final usage chunk. Nothing is stored.
    pub async fn next_turn(
        &self,
        actor: &User,
        at: (Id, Id, Id),
        content: &str,
        window: History,
    ) -> Result<(Chat, serde_json::Value)> {
        check_text(content, "a message")?;
        let (chat, history) = self.chat_history(actor, at, window).await?;
        if chat.owner_id != actor.id {
            return Err(Error::permission_denied(
                "only the chat's owner writes to it",
            ));
        }
        let mut messages = Vec::with_capacity(history.len() + 2);
        if let Some(prompt) = &chat.system_prompt {
            messages.push(serde_json::json!({"role": "system", "content": prompt}));
        }
        messages.extend(history.iter().map(ChatMessage::for_model));
        messages.push(serde_json::json!({"role": "user", "content": content}));
        let mut request = serde_json::json!({
            "model": chat.model,
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        for (name, value) in &chat.parameters {
            request[name] = value.clone();
        }
        Ok((chat, request))
    }

    /// Appends a message to a chat of the caller's own, audited in the same
    /// transaction; the stored message.
    pub async fn append_message(
        &self,
        actor: &User,
        (org_id, project_id, chat_id): (Id, Id, Id),
        new: NewMessage,
        client: &ClientInfo,
    ) -> Result<ChatMessage> {
        check_text(&new.content, "a message")?;
        let message = ChatMessage {
            id: self.env.ids.next_id(),
            chat_id,
            role: new.role,
            content: new.content,
            content_raw: new.content_raw,
            model: new.model,
            prompt_tokens: new.prompt_tokens,
            completion_tokens: new.completion_tokens,
            cost_micros: new.cost_micros,
            is_context_file: new.is_context_file,
            is_tool_message: new.role == MessageRole::Tool,
            partial: new.partial,
            request_id: new.request_id,
            created_at: self.env.clock.now(),
        };
        // The store holds at most `MAX_VALUE_SIZE` bytes a record, and a
        // message keeps its text twice (as text and as the model has it):
        // one that cannot be stored is the caller's to shorten, not a 500.
        let stored = crate::codec::encode(&message)?.len();
        if stored > gatehouse_storage::limits::MAX_VALUE_SIZE {
            return Err(Error::invalid_input(format!(
                "the message is too long to store ({stored} bytes stored; at most {})",
                gatehouse_storage::limits::MAX_VALUE_SIZE
            )));
        }
        let now = message.created_at;
        self.audited(
            |tx| {
                let message = &message;
                async move {
                    let mut chat = own_chat(&tx, actor, org_id, project_id, chat_id).await?;
                    keyspace::chat_message(chat_id, message.id)
                        .put(&tx, message)
                        .await?;
                    chat.updated_at = now;
                    keyspace::chat(project_id, chat_id).put(&tx, &chat).await
                }
            },
            |_| {
                let action = if message.is_context_file {
                    "chats.files.add"
                } else {
                    "chats.messages.add"
                };
                let details = serde_json::json!({
                    "message_id": message.id,
                    "role": message.role.as_str(),
                    "request_id": message.request_id,
                });
                self.event(actor, client, action, org_id, ("chat", chat_id), details)
            },
        )
        .await?;
        Ok(message)
    }
}
