//! What is kept of a write sent with an `Idempotency-Key`: its fingerprint,
//! where it got to, and (once it succeeded) its answer, sealed under a key
//! only the same credential and Idempotency-Key can derive.

use serde::{Deserialize, Serialize};

use crate::codec::record;
use crate::crypto::Sealed;

/// Names the record of one (credential, Idempotency-Key) pair: carried by the
/// request's [`ClientInfo`](crate::model::sessions::ClientInfo), so that the
/// change it makes marks the record in the change's own transaction.
#[derive(Clone, PartialEq, Eq)]
pub struct RequestMark(pub(crate) [u8; 32]);

impl std::fmt::Debug for RequestMark {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RequestMark(..)")
    }
}

/// One idempotent write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotentWrite {
    /// SHA-256 of the method, target and body, in hex: a retry must match it.
    pub fingerprint: String,
    pub created_ms: i64,
    pub state: WriteState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WriteState {
    /// Being handled, by a request that holds it until `until_ms` (after
    /// that, a retry may take it over: nothing was changed).
    Running { until_ms: i64 },
    /// Its change committed, but its answer is not (yet) kept.
    Applied {
        target_type: Option<String>,
        target_id: Option<String>,
    },
    /// Succeeded; the answer to replay.
    Answered {
        status: u16,
        content_type: Option<String>,
        body: Sealed,
    },
}

record!(IdempotentWrite, "idempotent write", no_feed);
