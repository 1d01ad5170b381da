//! Sessions: opaque random tokens (256 bits) that the server stores only as a
//! SHA-256 hash, with an idle and an absolute expiry.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Id;
use crate::codec::record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SessionKind {
    /// A browser, holding the token in a cookie.
    Web,
    /// A command-line tool or script, sending the token as a bearer token.
    Cli,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub id: Id,
    pub user_id: Id,
    pub kind: SessionKind,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The session ends at `last_seen_at` + the idle timeout or at this time,
    /// whichever comes first.
    pub absolute_expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

// Touched on use: too frequent for the feed, and only read by token.
record!(Session, "session", no_feed);

/// Points from a user's session list to the session's key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRef {
    /// SHA-256 of the token.
    pub token_hash: Vec<u8>,
}

record!(SessionRef, "session index entry", no_feed);

/// How long sessions last.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_secs: 2 * 3600,
            absolute_secs: 7 * 24 * 3600,
        }
    }
}

/// Where a request came from, for sessions and (later) audit events.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// The device proof the client presented (a cookie), checked at sign-in.
    pub device: Option<String>,
    /// The request came with an `Idempotency-Key`: the changes it makes mark
    /// its record applied.
    pub idempotency: Option<crate::model::idempotency::RequestMark>,
}

impl Session {
    pub fn is_live(&self, now: DateTime<Utc>, policy: &SessionPolicy) -> bool {
        let idle_end = self.last_seen_at + chrono::Duration::seconds(policy.idle_secs);
        now < idle_end && now < self.absolute_expires_at
    }
}
