//! The audit log: who did what, to what, from where, and how it ended. Events
//! carry no secrets: callers put only identifiers and outcomes in them, and
//! [`redact`] blanks any detail whose name looks secret.

use chrono::{DateTime, Utc};
use gatehouse_storage::{KeyRange, Store, Tx, TxError};

use crate::model::accounts::{Role, User};
pub use crate::model::audit::{Actor, AuditEvent, Outcome};
use crate::model::sessions::ClientInfo;
use crate::{Env, Error, ErrorCode, Id, Result, keyspace};

/// Names of details that are never stored.
const SECRET_WORDS: [&str; 6] = ["password", "secret", "token", "key", "hash", "credential"];

/// Replaces the value of every object field whose name contains a secret word.
pub fn redact(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| {
                    let lower = k.to_lowercase();
                    if SECRET_WORDS.iter().any(|w| lower.contains(w)) {
                        (k, Value::String("[redacted]".into()))
                    } else {
                        (k, redact(v))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact).collect()),
        other => other,
    }
}

/// What to record; the log adds the ID and time.
pub struct NewEvent<'a> {
    pub actor: Actor,
    pub action: &'a str,
    pub outcome: Outcome,
    pub target: Option<(&'a str, String)>,
    /// The organization the action happened in, if any.
    pub organization: Option<Id>,
    pub client: &'a ClientInfo,
    pub details: serde_json::Value,
}

impl<'a> NewEvent<'a> {
    /// A successful action by `actor`; add its target, organization and
    /// details with the builders below.
    pub fn success(actor: Actor, action: &'a str, client: &'a ClientInfo) -> Self {
        NewEvent {
            actor,
            action,
            outcome: Outcome::Success,
            target: None,
            organization: None,
            client,
            details: serde_json::Value::Null,
        }
    }

    /// A successful action by a signed-in user.
    pub fn by_user(actor: &User, action: &'a str, client: &'a ClientInfo) -> Self {
        Self::success(Actor::User { id: actor.id }, action, client)
    }

    /// What the action was done to.
    pub fn on(mut self, kind: &'a str, id: impl ToString) -> Self {
        self.target = Some((kind, id.to_string()));
        self
    }

    /// The organization it happened in.
    pub fn in_org(mut self, organization: Option<Id>) -> Self {
        self.organization = organization;
        self
    }

    pub fn with(mut self, details: serde_json::Value) -> Self {
        self.details = details;
        self
    }
}

/// A service whose changes are audited: [`Audited::audited`] runs a change
/// and stages its event in the same transaction.
pub(crate) trait Audited {
    /// The service's store and audit log.
    fn audit_parts(&self) -> (&Store, &AuditLog);

    /// Runs the change `f` and stages the audit event `describe` makes of its
    /// outcome in the same transaction: both commit, or neither does.
    async fn audited<T, F, Fut, D>(&self, f: F, describe: D) -> Result<T>
    where
        F: Fn(Tx) -> Fut,
        Fut: std::future::Future<Output = Result<T, TxError<Error>>>,
        D: Fn(&T) -> AuditEvent,
    {
        let (store, audit) = self.audit_parts();
        audit.run_audited(store, f, describe).await
    }
}

pub struct AuditLog {
    store: Store,
    env: Env,
    /// Tests make staged writes fail, to see that the change fails with them.
    #[cfg(test)]
    pub(crate) fail_writes: std::sync::atomic::AtomicBool,
}

/// Most events one read returns: a page and one more, which tells whether
/// another page follows.
pub const MAX_PAGE: usize = crate::page::MAX_LIMIT + 1;

impl AuditLog {
    pub fn new(store: Store, env: Env) -> Self {
        AuditLog {
            store,
            env,
            #[cfg(test)]
            fail_writes: std::sync::atomic::AtomicBool::new(false),
        }
    }

    /// The event as it will be stored, with its ID and time: written by
    /// [`Self::stage`] inside the transaction of the change it describes.
    pub fn event(&self, event: NewEvent<'_>) -> AuditEvent {
        AuditEvent {
            id: self.env.ids.next_id(),
            at: self.env.clock.now(),
            actor: event.actor,
            action: event.action.to_string(),
            outcome: event.outcome,
            target_type: event.target.as_ref().map(|t| t.0.to_string()),
            target_id: event.target.map(|t| t.1),
            organization_id: event.organization,
            ip: event.client.ip.clone(),
            user_agent: event.client.user_agent.clone(),
            details: redact(event.details),
            request: event.client.idempotency.clone(),
        }
    }

    /// Writes `event` inside `tx`, the transaction of the change it
    /// describes: both commit, or neither does (SPEC §5). The transaction
    /// may run again; the event keeps its ID, so it is written once.
    pub async fn stage(&self, tx: &Tx, event: &AuditEvent) -> Result<(), TxError<Error>> {
        #[cfg(test)]
        if self.fail_writes.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(TxError::Abort(Error::internal("the audit write failed")));
        }
        if let Some(request) = &event.request {
            crate::idempotency::mark_applied(tx, request, event).await?;
        }
        keyspace::audit_event(event.id).put(tx, event).await
    }

    /// Runs the change `f` in a transaction of `store` and stages the event
    /// `describe` makes of its outcome in the same transaction.
    pub async fn run_audited<T, F, Fut, D>(&self, store: &Store, f: F, describe: D) -> Result<T>
    where
        F: Fn(Tx) -> Fut,
        Fut: std::future::Future<Output = Result<T, TxError<Error>>>,
        D: Fn(&T) -> AuditEvent,
    {
        let (f, describe) = (&f, &describe);
        Ok(store
            .run(|tx| async move {
                let outcome = f(tx.clone()).await?;
                self.stage(&tx, &describe(&outcome)).await?;
                Ok(outcome)
            })
            .await?)
    }

    /// Records an event that goes with no change of its own (a refused or
    /// failed attempt, a sign-in): in a transaction of its own. A failure is
    /// logged, not returned.
    pub async fn record(&self, event: NewEvent<'_>) {
        self.write(self.event(event)).await;
    }

    /// Writes an event made with [`Self::event`] in a transaction of its own
    /// (see [`Self::record`]).
    pub async fn write(&self, event: AuditEvent) {
        let result = self
            .store
            .run(|tx| {
                let event = &event;
                async move { keyspace::audit_event(event.id).put(&tx, event).await }
            })
            .await;
        if let Err(e) = result {
            tracing::error!(action = %event.action, error = %Error::from(e), "could not record audit event");
        }
    }

    /// Deletes events older than `days`; returns how many (at most 10 000 a call).
    pub async fn trim(&self, days: u64) -> Result<usize> {
        let cutoff = self.env.clock.now_millis() - days as i64 * 86_400_000;
        let end = keyspace::audit_event(Id::first_at(cutoff))
            .as_bytes()
            .to_vec();
        let range = KeyRange::new(keyspace::audit_events().begin, end);
        crate::codec::trim_range(&self.store, &range).await
    }

    /// Newest first, for platform admins (`admin`, `admin_readonly`), those
    /// matching `filter`; `before` is the last ID of the previous page.
    pub async fn list(
        &self,
        viewer: &User,
        filter: &AuditFilter,
        before: Option<Id>,
        limit: usize,
    ) -> Result<Vec<AuditEvent>> {
        if !viewer
            .roles
            .iter()
            .any(|r| matches!(r, Role::Admin | Role::AdminReadonly))
        {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "only platform admins can read the audit log",
            ));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        let all = keyspace::audit_events();
        let begin = match filter.from {
            Some(from) => keyspace::audit_event(Id::first_at(from.timestamp_millis()))
                .as_bytes()
                .to_vec(),
            None => all.begin.clone(),
        };
        let end = match before {
            Some(id) => keyspace::audit_event(id).as_bytes().to_vec(),
            None => all.end.clone(),
        };
        crate::codec::find_in_range(&self.store, begin, end, true, limit, |e: &AuditEvent| {
            filter.matches(e)
        })
        .await
    }
}

/// Which audit events to list; every field narrows.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actions starting with this, e.g. `keys.` or `auth.login`.
    pub action: Option<String>,
    /// Events by this user.
    pub actor: Option<Id>,
    pub organization: Option<Id>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// Events at or after this time.
    pub from: Option<DateTime<Utc>>,
}

impl AuditFilter {
    fn matches(&self, e: &AuditEvent) -> bool {
        self.action
            .as_deref()
            .is_none_or(|a| e.action.starts_with(a))
            && self
                .actor
                .is_none_or(|id| matches!(e.actor, Actor::User { id: actor } if actor == id))
            && self
                .organization
                .is_none_or(|o| e.organization_id == Some(o))
            && self
                .target_type
                .as_deref()
                .is_none_or(|t| e.target_type.as_deref() == Some(t))
            && self
                .target_id
                .as_deref()
                .is_none_or(|t| e.target_id.as_deref() == Some(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_at_any_depth() {
        let details = serde_json::json!({
            "email": "a@b.c",
            "new_password": "hunter2",
            "nested": {"apiKey": "ak_123", "note": "fine"},
            "list": [{"client_secret": "s"}]
        });
        assert_eq!(
            redact(details),
            serde_json::json!({
                "email": "a@b.c",
                "new_password": "[redacted]",
                "nested": {"apiKey": "[redacted]", "note": "fine"},
                "list": [{"client_secret": "[redacted]"}]
            })
        );
    }
}
