//! Chats: start, list, read, change (rename, star, share, model, system
//! prompt, parameters), delete; who reads and who writes one; how long a
//! text may be. Their messages are in `messages`.

use super::parts;
use super::*;
use crate::model::work::ChatRef;
use crate::page::{Page, PageRequest};

/// The most text one message or context file holds.
pub const MAX_CONTENT_BYTES: usize = 256 * 1024;

/// The most characters one message, system prompt or context file holds
/// (the documented `maxLength`; [`MAX_CONTENT_BYTES`] bounds the bytes).
pub const MAX_CONTENT_CHARS: usize = 65_536;

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

fn check_model(model: &str) -> Result<String> {
    let Some(model) = crate::common::trimmed_text(model, 200).filter(|m| !m.is_empty()) else {
        return Err(Error::invalid_input(
            "model names are 1 to 200 characters without control characters",
        ));
    };
    Ok(model.to_string())
}

pub(super) fn check_text(text: &str, what: &str) -> Result<()> {
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
pub(super) async fn readable_chat(
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
    Ok((access, whole(tx, chat).await?))
}

/// A stored chat made whole: its system prompt's later parts read.
async fn whole(tx: &Tx, mut chat: Chat) -> Result<Chat, TxError<Error>> {
    if chat.prompt_parts > 0 {
        let mut prompt = chat.system_prompt.take().unwrap_or_default();
        let range = keyspace::chat_prompt_parts(chat.id);
        parts::read(tx, &range, chat.prompt_parts, &mut prompt).await?;
        chat.system_prompt = Some(prompt);
        chat.prompt_parts = 0;
    }
    Ok(chat)
}

/// Stores `chat` (read whole, or new), its system prompt in parts when it
/// is long; the parts of the prompt it had go.
async fn put_chat(tx: &Tx, chat: &Chat) -> Result<(), TxError<Error>> {
    tx.clear_range(&keyspace::chat_prompt_parts(chat.id))?;
    let pieces = chat
        .system_prompt
        .as_deref()
        .map(parts::split)
        .unwrap_or_default();
    let key = keyspace::chat(chat.project_id, chat.id);
    if pieces.len() < 2 {
        return key.put(tx, chat).await;
    }
    let stored = Chat {
        system_prompt: Some(pieces[0].to_string()),
        prompt_parts: parts::later(&pieces).map_err(TxError::Abort)?,
        ..chat.clone()
    };
    parts::write(tx, &pieces, |n| keyspace::chat_prompt_part(chat.id, n)).await?;
    key.put(tx, &stored).await
}

/// Stores `chat` (read whole) whose system prompt did not change: a prompt
/// already in parts keeps them, only the record is written (rewriting them
/// would write up to 1.5 MB to rename a chat). A prompt an earlier release
/// stored inline goes through [`put_chat`], which splits it if it is long.
async fn keep_prompt_parts(tx: &Tx, chat: &Chat) -> Result<(), TxError<Error>> {
    let key = keyspace::chat(chat.project_id, chat.id);
    let stored = key.get(tx).await?.ok_or_else(no_chat)?;
    if stored.prompt_parts == 0 {
        return put_chat(tx, chat).await;
    }
    let record = Chat {
        system_prompt: stored.system_prompt,
        prompt_parts: stored.prompt_parts,
        ..chat.clone()
    };
    key.put(tx, &record).await
}

/// Marks a chat changed at `now` (a message added), its prompt untouched.
pub(super) async fn touch(
    tx: &Tx,
    project_id: Id,
    chat_id: Id,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    let key = keyspace::chat(project_id, chat_id);
    let mut stored = key.get(tx).await?.ok_or_else(no_chat)?;
    stored.updated_at = now;
    key.put(tx, &stored).await
}

/// The chat, if the caller is its owner and may still write in the
/// organization (a member, the organization not suspended).
pub(super) async fn own_chat(
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
            prompt_parts: 0,
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
                    put_chat(&tx, chat).await?;
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

    /// The chats of a project the caller may read, every one: for the
    /// places that show them all (the console's list, gRPC's `ListChats`).
    pub async fn list_chats(&self, actor: &User, org_id: Id, project_id: Id) -> Result<Vec<Chat>> {
        Ok(self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                project_in(&tx, org_id, project_id).await?;
                let mut readable = Vec::new();
                for chat in read_all::<Chat>(&tx, &keyspace::chats(project_id)).await? {
                    if may_read(&access, actor, &chat) {
                        readable.push(whole(&tx, chat).await?);
                    }
                }
                Ok::<_, TxError<Error>>(readable)
            })
            .await?)
    }

    /// A page of the chats of a project the caller may read, newest first,
    /// read from the store a batch at a time: however many chats the
    /// project holds, a page reads only what it needs.
    pub async fn list_chats_page(
        &self,
        actor: &User,
        org_id: Id,
        project_id: Id,
        page: &PageRequest,
    ) -> Result<Page<Chat>> {
        let after: Option<u64> = page.after_key()?;
        let access = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                project_in(&tx, org_id, project_id).await?;
                Ok::<_, TxError<Error>>(access)
            })
            .await?;
        let range = keyspace::chats(project_id);
        let end = match after {
            Some(after) => keyspace::chat(project_id, Id(after)).as_bytes().to_vec(),
            None => range.end.clone(),
        };
        let mut found = crate::codec::find_in_range::<Chat>(
            &self.store,
            range.begin.clone(),
            end,
            true,
            page.limit + 1,
            |chat| may_read(&access, actor, chat),
        )
        .await?;
        let more = found.len() > page.limit;
        found.truncate(page.limit);
        // Only chats with a long system prompt have more to read.
        if found.iter().any(|c| c.prompt_parts > 0) {
            let read = &found;
            found = self
                .store
                .run(|tx| async move {
                    let mut chats = Vec::with_capacity(read.len());
                    for chat in read {
                        chats.push(whole(&tx, chat.clone()).await?);
                    }
                    Ok::<_, TxError<Error>>(chats)
                })
                .await?;
        }
        Ok(Page::after_read(found, more, |c| c.id.0))
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
                    if change.system_prompt.is_none() {
                        keep_prompt_parts(&tx, &chat).await?;
                    } else {
                        put_chat(&tx, &chat).await?;
                    }
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
}
