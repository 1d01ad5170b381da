//! The messages of a chat: listed a page at a time, read as a model's
//! context or for the export, appended by the playground and as context
//! files.
//!
//! How one is stored: its text once (what a model gets, `content_raw`, is
//! made from the role, the text and a context file's name when read), and
//! in parts (`parts`): the message record keeps the text's first part, the
//! rest follow under `("chat_message_part", chat, id, n)`, written in the
//! same transaction and removed with the chat.

use gatehouse_storage::RangeOptions;

use super::chats::{check_text, own_chat, readable_chat, touch};
use super::parts;
use super::*;
use crate::codec::decode_values;
use crate::model::work::{ChatMessage, MessageRole, StoredMessage};
use crate::page::{Page, PageRequest};

/// The most one page of [`WorkService::list_messages`] carries over REST, in
/// bytes of its messages' text and of what the model gets (`content_raw`
/// as JSON): a page ends early, with a cursor, rather than hold 500
/// messages of 256 KiB.
pub const MAX_PAGE_TEXT_BYTES: usize = 16 * 1024 * 1024;

/// How many messages a page reads at a time.
const READ_BATCH: usize = 50;

/// `text` cut, at a character boundary, to what one message holds: for a
/// model's answer, which is stored however long it ran.
pub fn clipped(mut text: String) -> String {
    if let Some((at, _)) = text.char_indices().nth(MAX_CONTENT_CHARS) {
        text.truncate(at);
    }
    let mut at = text.len().min(MAX_CONTENT_BYTES);
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    text.truncate(at);
    text
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
    /// A context file's name: the message is that file, given to the model
    /// as context.
    pub file_name: Option<String>,
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: i64,
    pub partial: bool,
    pub request_id: Option<Id>,
}

impl NewMessage {
    /// A plain text message.
    pub fn text(role: MessageRole, content: String) -> Self {
        NewMessage {
            role,
            content,
            file_name: None,
            model: None,
            prompt_tokens: 0,
            completion_tokens: 0,
            cost_micros: 0,
            partial: false,
            request_id: None,
        }
    }

    /// A text file `name` (checked like every name) given to the model as
    /// context, from the user.
    pub fn context_file(name: &str, content: String) -> Result<Self> {
        let name = crate::common::parse_name(name, "file")?;
        Ok(NewMessage {
            file_name: Some(name),
            ..NewMessage::text(MessageRole::User, content)
        })
    }
}

/// The message as the model API has it: its role and text, or for a
/// context file the text under a line that names the file.
fn content_raw(role: MessageRole, content: &str, file_name: Option<&str>) -> serde_json::Value {
    match file_name {
        Some(name) => serde_json::json!({
            "role": role.as_str(),
            "name": name,
            "content": format!("Context file `{name}`:\n\n{content}"),
        }),
        None => serde_json::json!({"role": role.as_str(), "content": content}),
    }
}

/// How long `raw` is as JSON, counted as it is written (nothing kept).
fn raw_len(raw: &serde_json::Value) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    serde_json::to_writer(&mut count, raw).map_or(0, |()| count.0)
}

/// A stored message made whole: its text's later parts read in `tx`.
async fn whole(tx: &Tx, mut stored: StoredMessage) -> Result<ChatMessage, TxError<Error>> {
    let mut content = std::mem::take(&mut stored.content);
    let range = keyspace::chat_message_parts(stored.chat_id, stored.id);
    parts::read(tx, &range, stored.parts, &mut content).await?;
    Ok(assemble(stored, content))
}

/// The message `stored` is, with its whole text `content`.
fn assemble(stored: StoredMessage, content: String) -> ChatMessage {
    let content_raw = stored
        .content_raw
        .unwrap_or_else(|| content_raw(stored.role, &content, stored.file_name.as_deref()));
    ChatMessage {
        id: stored.id,
        chat_id: stored.chat_id,
        role: stored.role,
        content,
        content_raw,
        model: stored.model,
        prompt_tokens: stored.prompt_tokens,
        completion_tokens: stored.completion_tokens,
        cost_micros: stored.cost_micros,
        is_context_file: stored.is_context_file,
        is_tool_message: stored.is_tool_message,
        partial: stored.partial,
        request_id: stored.request_id,
        created_at: stored.created_at,
    }
}

/// The stored messages of a range read, made whole, until there are
/// `count` of them or `bytes` of text (the message that crosses it is the
/// last): what lies beyond is not read.
async fn read_whole(
    tx: &Tx,
    entries: &[gatehouse_storage::KeyValue],
    (count, bytes): (usize, usize),
) -> Result<Vec<ChatMessage>, TxError<Error>> {
    let mut messages = Vec::new();
    let mut seen = 0;
    for stored in decode_values::<StoredMessage>(entries).map_err(TxError::Abort)? {
        if messages.len() >= count || seen >= bytes {
            break;
        }
        let message = whole(tx, stored).await?;
        seen += message.content.len();
        messages.push(message);
    }
    Ok(messages)
}

impl WorkService {
    /// A page of a chat's messages, oldest first: `limit` of them, or fewer
    /// where they hold more than `max_bytes` of text and `content_raw`
    /// together (one at least): [`MAX_PAGE_TEXT_BYTES`] for REST, less
    /// where the transport bounds a message (gRPC).
    pub async fn list_messages(
        &self,
        actor: &User,
        (org_id, project_id, chat_id): (Id, Id, Id),
        page: &PageRequest,
        max_bytes: usize,
    ) -> Result<Page<ChatMessage>> {
        let after: Option<u64> = page.after_key()?;
        let limit = page.limit;
        let (items, more) = self
            .store
            .run(|tx| async move {
                readable_chat(&tx, actor, org_id, project_id, chat_id).await?;
                let mut range = keyspace::chat_messages(chat_id);
                if let Some(after) = after {
                    range.begin = gatehouse_storage::key_after(
                        keyspace::chat_message(chat_id, Id(after)).as_bytes(),
                    );
                }
                // A few at a time: a page may end early on its text's size.
                let (mut items, mut bytes) = (Vec::new(), 0);
                loop {
                    let want = (limit + 1 - items.len()).min(READ_BATCH);
                    let found = tx.get_range(&range, RangeOptions::limit(want)).await?;
                    let batch = decode_values::<StoredMessage>(&found.entries);
                    for stored in batch.map_err(TxError::Abort)? {
                        if items.len() == limit {
                            return Ok((items, true));
                        }
                        let message = whole(&tx, stored).await?;
                        bytes += message.content.len() + raw_len(&message.content_raw);
                        if bytes > max_bytes && !items.is_empty() {
                            return Ok((items, true));
                        }
                        items.push(message);
                    }
                    match found.next {
                        Some(rest) => range = rest,
                        None => return Ok::<_, TxError<Error>>((items, false)),
                    }
                }
            })
            .await?;
        Ok(Page::after_read(items, more, |m| m.id.0))
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
        let chat = self.get_chat(actor, org_id, project_id, chat_id).await?;
        let mut messages: Vec<ChatMessage> = Vec::new();
        let mut bytes = 0usize;
        let mut next = Some(keyspace::chat_messages(chat_id));
        while let Some(range) = next.take() {
            let options = RangeOptions::limit(READ_BATCH);
            let options = if window.newest {
                options.reversed()
            } else {
                options
            };
            let left = (
                window.limit.saturating_sub(messages.len()),
                window.max_bytes.saturating_sub(bytes),
            );
            let (page, more) = self
                .store
                .run(|tx| {
                    let range = &range;
                    async move {
                        let page = tx.get_range(range, options).await?;
                        let read = read_whole(&tx, &page.entries, left).await?;
                        Ok::<_, TxError<Error>>((read, page.next))
                    }
                })
                .await?;
            bytes += page.iter().map(|m| m.content.len()).sum::<usize>();
            messages.extend(page);
            if messages.len() < window.limit && bytes < window.max_bytes {
                next = more;
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
        let pieces = parts::split(&new.content);
        let stored = StoredMessage {
            id: self.env.ids.next_id(),
            chat_id,
            role: new.role,
            content: pieces[0].to_string(),
            parts: parts::later(&pieces)?,
            is_context_file: new.file_name.is_some(),
            file_name: new.file_name.clone(),
            content_raw: None,
            model: new.model.clone(),
            prompt_tokens: new.prompt_tokens,
            completion_tokens: new.completion_tokens,
            cost_micros: new.cost_micros,
            is_tool_message: new.role == MessageRole::Tool,
            partial: new.partial,
            request_id: new.request_id,
            created_at: self.env.clock.now(),
        };
        let (id, now) = (stored.id, stored.created_at);
        self.audited(
            |tx| {
                let (stored, pieces) = (&stored, &pieces);
                async move {
                    own_chat(&tx, actor, org_id, project_id, chat_id).await?;
                    keyspace::chat_message(chat_id, id).put(&tx, stored).await?;
                    parts::write(&tx, pieces, |n| keyspace::chat_message_part(chat_id, id, n))
                        .await?;
                    touch(&tx, project_id, chat_id, now).await
                }
            },
            |_| {
                let action = if stored.is_context_file {
                    "chats.files.add"
                } else {
                    "chats.messages.add"
                };
                let details = serde_json::json!({
                    "message_id": id,
                    "role": new.role.as_str(),
                    "request_id": new.request_id,
                });
                self.event(actor, client, action, org_id, ("chat", chat_id), details)
            },
        )
        .await?;
        Ok(assemble(stored, new.content))
    }
}
