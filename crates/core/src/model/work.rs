//! Work (the Platform seed's workspace): projects in an organization, chats
//! in a project, and the messages of a chat (SPEC §1).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Id;
use crate::codec::record;

/// A project: where an organization's chats live.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Project {
    pub id: Id,
    pub org_id: Id,
    pub name: String,
    /// The default project of a personal organization, made with the account.
    pub is_user_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Project, "project");

/// A conversation with one model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chat {
    pub id: Id,
    pub org_id: Id,
    pub project_id: Id,
    /// Who started it: they write to it; organization admins read it.
    pub owner_id: Id,
    pub name: String,
    /// A model's public name or an alias, as the gateway resolves it.
    pub model: String,
    pub is_starred: bool,
    pub is_user_default: bool,
    /// Every member of the organization may read it.
    pub shared: bool,
    /// Sent first, as the `system` message, when set.
    pub system_prompt: Option<String>,
    /// In the store: how many more parts a long system prompt has (under
    /// `("chat_prompt_part", chat, n)`). A chat read whole has 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) prompt_parts: u32,
    /// Sampling parameters sent with every call (`temperature`, `max_tokens`, …).
    pub parameters: serde_json::Map<String, serde_json::Value>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Chat, "chat");

/// Where a user's chat is, for deleting the user's chats with the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatRef {
    pub org_id: Id,
    pub project_id: Id,
}

record!(ChatRef, "chat reference");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageRole {
    System,
    User,
    Assistant,
    Tool,
}

impl MessageRole {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageRole::System => "system",
            MessageRole::User => "user",
            MessageRole::Assistant => "assistant",
            MessageRole::Tool => "tool",
        }
    }
}

/// One message of a chat, as read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub id: Id,
    pub chat_id: Id,
    pub role: MessageRole,
    /// The text.
    pub content: String,
    /// The whole message as the model API has it (tool calls, images by URL).
    pub content_raw: serde_json::Value,
    /// The model that answered (assistant messages).
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: i64,
    /// A file uploaded as context for the model.
    pub is_context_file: bool,
    pub is_tool_message: bool,
    /// The answer broke off (the client went away, or the model failed
    /// midway): what arrived is kept.
    pub partial: bool,
    /// The gateway call that produced it (its request log).
    pub request_id: Option<Id>,
    pub created_at: DateTime<Utc>,
}

impl ChatMessage {
    /// The message as a model gets it: as stored (a context file without
    /// its `name`), or its role and text.
    pub fn for_model(&self) -> serde_json::Value {
        match &self.content_raw {
            serde_json::Value::Object(raw) if raw.contains_key("role") => {
                let mut raw = raw.clone();
                raw.remove("name");
                serde_json::Value::Object(raw)
            }
            _ => serde_json::json!({"role": self.role.as_str(), "content": self.content}),
        }
    }
}

/// A [`ChatMessage`] as stored: its text once, and only its first part when
/// the text is longer than one stored value holds (the rest are
/// [`TextPart`]s). Reads what earlier releases wrote, which kept
/// `content_raw` beside the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredMessage {
    pub id: Id,
    pub chat_id: Id,
    pub role: MessageRole,
    /// The text, or its first part.
    pub content: String,
    /// How many more parts the text has.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub parts: u32,
    /// A context file's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_name: Option<String>,
    /// Written before the text was stored once; now made from the role, the
    /// text and the file name when read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_raw: Option<serde_json::Value>,
    pub model: Option<String>,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: i64,
    pub is_context_file: bool,
    pub is_tool_message: bool,
    pub partial: bool,
    pub request_id: Option<Id>,
    pub created_at: DateTime<Utc>,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

// Messages are many and read only through their chat: no change feed.
record!(StoredMessage, "chat message", no_feed);

/// A later part of a long text (a message's, a system prompt's).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TextPart(pub String);

record!(TextPart, "text part", no_feed);

/// Work that outlives one transaction: a project or chat whose records are
/// being deleted a page at a time. Written in the transaction that removes
/// the project or chat from view; the leader's job finishes what a stopped
/// instance left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Purge {
    /// Every chat and message of a deleted project.
    Project { org_id: Id, project_id: Id },
    /// Every message of a deleted chat.
    Chat { chat_id: Id },
}

record!(Purge, "purge", no_feed);
