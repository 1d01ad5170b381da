//! Audit events as stored: who did what to which record, and how it ended.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Id;
use crate::codec::record;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Actor {
    User {
        id: Id,
    },
    /// Someone not signed in, e.g. a failed sign-in (`login` is what they typed,
    /// which may name no account).
    Anonymous {
        login: Option<String>,
    },
    System,
    /// A service client, authenticated by its assertion or refresh token.
    Client {
        id: Id,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Success,
    Failure,
    /// Refused before being tried (throttled, not allowed).
    Refused,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: Id,
    pub at: DateTime<Utc>,
    pub actor: Actor,
    /// `area.verb`, e.g. `auth.login`.
    pub action: String,
    pub outcome: Outcome,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub organization_id: Option<Id>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// A before / after summary or other detail, secrets redacted; `{}` when
    /// there is none (earlier releases stored `null`: read as `{}`).
    #[serde(deserialize_with = "object_or_empty")]
    pub details: serde_json::Value,
    /// The idempotent request that made the change, if any: not stored, the
    /// change marks that request's record applied (see `idempotency`).
    #[serde(skip)]
    pub request: Option<crate::model::idempotency::RequestMark>,
}

record!(AuditEvent, "audit event", no_feed);

/// An event's details as stored, `null` read as `{}`.
fn object_or_empty<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<serde_json::Value, D::Error> {
    let details = serde_json::Value::deserialize(deserializer)?;
    Ok(if details.is_null() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        details
    })
}
