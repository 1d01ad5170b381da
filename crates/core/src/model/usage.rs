//! Request logs as stored: one record per gateway call, and its captured
//! bodies apart from it (read only when a permitted viewer opens the log).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Id;
use crate::codec::record;
use crate::common::Micros;

/// One gateway call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestLog {
    pub id: Id,
    pub at: DateTime<Utc>,
    pub key_id: Id,
    pub user_id: Id,
    /// The organization the call was made for: the key's, or the chat's in
    /// the playground (logs of earlier releases have none).
    #[serde(default)]
    pub org_id: Option<Id>,
    pub model_id: Id,
    pub model: String,
    pub endpoint_id: Id,
    /// `chat.completions`, `embeddings` or `messages`.
    pub api: String,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_micros: Micros,
    /// The upstream sent no usage: the gateway counted (roughly) itself.
    pub tokens_estimated: bool,
    pub error: Option<String>,
    /// Bodies were captured: stored apart, under [`LogBodies`].
    #[serde(default)]
    pub captured: bool,
    /// Only when body capture is on for the key's organization; never in
    /// the stored log (earlier releases kept them inline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_body: Option<String>,
}

record!(RequestLog, "request log", no_feed);

/// A request log's captured bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogBodies {
    pub request: Option<String>,
    pub response: Option<String>,
}

record!(LogBodies, "request log bodies", no_feed);
