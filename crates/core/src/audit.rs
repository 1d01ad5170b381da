//! The audit log: who did what, to what, from where, and how it ended. Events
//! carry no secrets: callers put only identifiers and outcomes in them, and
//! [`redact`] blanks any detail whose name looks secret.
//!
//! Each event is entered in indexes by the user who acted, its organization,
//! its target and its action's area, in the transaction that writes it, so
//! a filtered list reads only the events it returns ([`crate::timeline`]).

use chrono::{DateTime, Utc};
use gatehouse_storage::tuple::{pack, unpack};
use gatehouse_storage::{Store, Tx, TxError};

use crate::keyspace::AuditIndex;
use crate::model::accounts::{Role, User};
pub use crate::model::audit::{Actor, AuditEvent, Outcome};
use crate::model::sessions::ClientInfo;
use crate::{Env, Error, ErrorCode, Id, Result, codec, keyspace, timeline};

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
            details: serde_json::Value::Object(serde_json::Map::new()),
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
        put_event(tx, event).await
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
                async move { put_event(&tx, event).await }
            })
            .await;
        if let Err(e) = result {
            tracing::error!(action = %event.action, error = %Error::from(e), "could not record audit event");
        }
    }

    /// Deletes events older than `days` with their index entries, a page
    /// per transaction; returns how many.
    pub async fn trim(&self, days: u64) -> Result<usize> {
        timeline::trim(
            &self.store,
            (keyspace::audit_events(), event_key),
            (self.env.clock.now_millis(), days),
            |tx, event: &AuditEvent| {
                for index in indexes_of(event) {
                    tx.clear(&index.entries().entry(event.id))?;
                }
                Ok(())
            },
        )
        .await
    }

    /// Enters the events stored before their indexes existed; resumable,
    /// and nothing to do once done. Returns how many were entered.
    pub async fn index_old_events(&self) -> Result<usize> {
        timeline::reindex(
            &self.store,
            timeline::AUDIT_INDEX,
            (keyspace::audit_events(), event_key),
            self.env.clock.now(),
            |event: &AuditEvent, rows| {
                let value = entry_value(event);
                for index in indexes_of(event) {
                    rows.push((index.entries().entry(event.id), value.clone()));
                }
                Ok(())
            },
        )
        .await
    }

    /// Newest first, for platform admins (`admin`, `admin_readonly`), those
    /// matching `filter`; `before` is the last ID of the previous page. A
    /// page examines a bounded number of entries: it may come back short
    /// with a cursor (the ID to continue before) when few events match.
    pub async fn list(
        &self,
        viewer: &User,
        filter: &AuditFilter,
        before: Option<Id>,
        limit: usize,
    ) -> Result<(Vec<AuditEvent>, Option<Id>)> {
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
        let limit = limit.clamp(1, crate::page::MAX_LIMIT);
        let bounds = (
            filter.from.map(|f| Id::first_at(f.timestamp_millis())),
            before,
        );
        let (mut events, mut next) = match filter.index() {
            Some(index) => {
                let entries = index.entries();
                let found = timeline::walk_newest(
                    &self.store,
                    timeline::id_range(entries.range(), |id| entries.entry(id), bounds),
                    |key| entries.id_of(key),
                    |value| decode_entry(value).is_some_and(|e| filter.matches_entry(&e)),
                    limit,
                    timeline::SCAN_BUDGET,
                )
                .await?;
                let ids: Vec<Id> = found.entries.iter().map(|(id, _)| *id).collect();
                let events = self
                    .store
                    .run(|tx| {
                        let ids = &ids;
                        async move {
                            let mut events = Vec::with_capacity(ids.len());
                            for id in ids {
                                if let Some(event) = keyspace::audit_event(*id).get(&tx).await? {
                                    events.push(event);
                                }
                            }
                            Ok::<_, TxError<Error>>(events)
                        }
                    })
                    .await?;
                (events, found.next)
            }
            None => {
                let found = timeline::walk_newest(
                    &self.store,
                    timeline::id_range(keyspace::audit_events(), event_key, bounds),
                    |key| unpack::<(String, u64)>(key).ok().map(|(_, id)| Id(id)),
                    |value| codec::decode::<AuditEvent>(value).is_ok_and(|e| filter.matches(&e)),
                    limit,
                    timeline::SCAN_BUDGET,
                )
                .await?;
                let events = found
                    .entries
                    .iter()
                    .map(|(_, value)| codec::decode::<AuditEvent>(value))
                    .collect::<Result<Vec<_>>>()?;
                (events, found.next)
            }
        };
        if events.len() > limit {
            events.truncate(limit);
            next = events.last().map(|e| e.id);
        }
        Ok((events, next))
    }
}

/// The key of event `id`.
fn event_key(id: Id) -> Vec<u8> {
    keyspace::audit_event(id).as_bytes().to_vec()
}

/// Writes `event` with its index entries.
async fn put_event(tx: &Tx, event: &AuditEvent) -> Result<(), TxError<Error>> {
    let value = entry_value(event);
    for index in indexes_of(event) {
        tx.set(&index.entries().entry(event.id), &value)?;
    }
    keyspace::audit_event(event.id).put(tx, event).await
}

/// The user who acted, if a user did.
fn actor_user(event: &AuditEvent) -> Option<Id> {
    match event.actor {
        Actor::User { id } => Some(id),
        _ => None,
    }
}

/// The indexes an event is entered in.
fn indexes_of(event: &AuditEvent) -> impl Iterator<Item = AuditIndex<'_>> {
    let target = match (&event.target_type, &event.target_id) {
        (Some(kind), Some(id)) => Some(AuditIndex::Target(kind, id)),
        _ => None,
    };
    [
        actor_user(event).map(AuditIndex::Actor),
        event.organization_id.map(AuditIndex::Org),
        target,
        Some(AuditIndex::Area(area(&event.action))),
    ]
    .into_iter()
    .flatten()
}

/// `keys` of `keys.create`.
fn area(action: &str) -> &str {
    action.split_once('.').map_or(action, |(area, _)| area)
}

/// An entry's value: the event's filter fields (`0` and `""`: none).
fn entry_value(event: &AuditEvent) -> Vec<u8> {
    pack(&(
        actor_user(event).map_or(0, |a| a.0),
        event.organization_id.map_or(0, |o| o.0),
        event.target_type.as_deref().unwrap_or(""),
        event.target_id.as_deref().unwrap_or(""),
        event.action.as_str(),
    ))
}

/// An event's filter fields, as its index entries hold them.
struct Entry {
    actor: u64,
    org: u64,
    target_type: String,
    target_id: String,
    action: String,
}

fn decode_entry(value: &[u8]) -> Option<Entry> {
    let (actor, org, target_type, target_id, action) =
        unpack::<(u64, u64, String, String, String)>(value).ok()?;
    Some(Entry {
        actor,
        org,
        target_type,
        target_id,
        action,
    })
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
    /// The narrowest index the filter names, or `None`: walk the events.
    fn index(&self) -> Option<AuditIndex<'_>> {
        if let (Some(kind), Some(id)) = (&self.target_type, &self.target_id) {
            return Some(AuditIndex::Target(kind, id));
        }
        if let Some(actor) = self.actor {
            return Some(AuditIndex::Actor(actor));
        }
        if let Some(org) = self.organization {
            return Some(AuditIndex::Org(org));
        }
        // An action prefix with a dot names its area; one without may span several.
        let action = self.action.as_deref()?;
        action
            .split_once('.')
            .map(|(area, _)| AuditIndex::Area(area))
    }

    fn matches_entry(&self, e: &Entry) -> bool {
        self.action
            .as_deref()
            .is_none_or(|a| e.action.starts_with(a))
            && self.actor.is_none_or(|id| e.actor == id.0)
            && self.organization.is_none_or(|o| e.org == o.0)
            && self
                .target_type
                .as_deref()
                .is_none_or(|t| e.target_type == t)
            && self.target_id.as_deref().is_none_or(|t| e.target_id == t)
    }

    fn matches(&self, e: &AuditEvent) -> bool {
        self.matches_entry(&Entry {
            actor: actor_user(e).map_or(0, |a| a.0),
            org: e.organization_id.map_or(0, |o| o.0),
            target_type: e.target_type.clone().unwrap_or_default(),
            target_id: e.target_id.clone().unwrap_or_default(),
            action: e.action.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A few thousand random events, each filter combination paged to its
    /// end: exactly what a brute-force filter finds, newest first, once each;
    /// and events stored before the indexes existed are entered once.
    #[tokio::test]
    async fn filtered_pages_hold_exactly_what_a_full_scan_finds() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let (env, clock) = crate::testing::env(2, 9);
        let store = Store::new(std::sync::Arc::new(
            gatehouse_storage::memory::MemoryEngine::new(),
        ));
        let audit = AuditLog::new(store.clone(), env.clone());
        let admin = crate::testing::user(&store, &env, "admin", &[Role::User, Role::Admin]).await;
        let mut rng = StdRng::seed_from_u64(4);
        let actions = [
            "keys.create",
            "keys.revoke",
            "auth.login",
            "auth.logout",
            "orgs.update",
        ];
        let mut all = Vec::new();
        for n in 0..2_500 {
            clock.advance(rng.random_range(0..5_000));
            let actor = match rng.random_range(0..4) {
                0 => Actor::System,
                _ => Actor::User {
                    id: Id(rng.random_range(1..=5)),
                },
            };
            let target = rng
                .random_bool(0.7)
                .then(|| ["user", "api_key"][rng.random_range(0..2)]);
            let event = AuditEvent {
                id: env.ids.next_id(),
                at: env.clock.now(),
                actor,
                action: actions[rng.random_range(0..actions.len())].into(),
                outcome: Outcome::Success,
                target_type: target.map(String::from),
                target_id: target.map(|_| rng.random_range(1..=4).to_string()),
                organization_id: rng
                    .random_bool(0.5)
                    .then(|| Id(rng.random_range(100..=102))),
                ip: None,
                user_agent: None,
                details: serde_json::Value::Null,
                request: None,
            };
            if n < 300 {
                // As an earlier release stored them: no index entries.
                store
                    .run(|tx| {
                        let event = &event;
                        async move { keyspace::audit_event(event.id).put(&tx, event).await }
                    })
                    .await
                    .unwrap();
            } else {
                audit.write(event.clone()).await;
            }
            all.push(event);
        }
        assert_eq!(audit.index_old_events().await.unwrap(), 2_500);
        assert_eq!(audit.index_old_events().await.unwrap(), 0, "once");
        all.reverse();
        for round in 0..120 {
            let pick = |rng: &mut StdRng| rng.random_bool(0.35);
            let filter = AuditFilter {
                action: pick(&mut rng).then(|| {
                    ["keys.", "auth.login", "k", "orgs.update", "auth."][rng.random_range(0..5)]
                        .into()
                }),
                actor: pick(&mut rng).then(|| Id(rng.random_range(1..=6))),
                organization: pick(&mut rng).then(|| Id(rng.random_range(100..=103))),
                target_type: pick(&mut rng)
                    .then(|| ["user", "api_key"][rng.random_range(0..2)].into()),
                target_id: pick(&mut rng).then(|| rng.random_range(1..=4).to_string()),
                from: pick(&mut rng).then(|| all[rng.random_range(0..all.len())].at),
            };
            let expected: Vec<Id> = all
                .iter()
                .filter(|e| filter.matches(e) && filter.from.is_none_or(|f| e.at >= f))
                .map(|e| e.id)
                .collect();
            let limit = rng.random_range(1..=80);
            let (mut seen, mut before) = (Vec::new(), None);
            loop {
                let (events, next) = audit.list(&admin, &filter, before, limit).await.unwrap();
                assert!(events.len() <= limit);
                seen.extend(events.iter().map(|e| e.id));
                match next {
                    Some(next) => before = Some(next),
                    None => break,
                }
            }
            assert_eq!(seen, expected, "round {round}: {filter:?}");
        }
        // Retention takes events with their entries.
        clock.advance(400 * 86_400_000);
        assert_eq!(audit.trim(1).await.unwrap(), 2_500);
        let by_actor = AuditFilter {
            actor: Some(Id(1)),
            ..AuditFilter::default()
        };
        assert!(
            audit
                .list(&admin, &by_actor, None, 10)
                .await
                .unwrap()
                .0
                .is_empty()
        );
        let left = store
            .run(|tx| async move {
                let range = gatehouse_storage::KeyRange::subspace(
                    &gatehouse_storage::tuple::Subspace::from("audit_by"),
                );
                Ok::<_, TxError<Error>>(
                    tx.get_range(&range, Default::default())
                        .await?
                        .entries
                        .len(),
                )
            })
            .await
            .unwrap();
        assert_eq!(left, 0, "no entry outlives its event");
    }

    #[test]
    fn events_stored_without_details_read_as_an_empty_object() {
        let event = |details| AuditEvent {
            id: Id(1),
            at: chrono::Utc::now(),
            actor: Actor::System,
            action: "jobs.run".into(),
            outcome: crate::model::audit::Outcome::Success,
            target_type: None,
            target_id: None,
            organization_id: None,
            ip: None,
            user_agent: None,
            details,
            request: None,
        };
        // As an earlier release stored it, and as this one does.
        let read = |e: AuditEvent| {
            crate::codec::decode::<AuditEvent>(&crate::codec::encode(&e).unwrap()).unwrap()
        };
        let null = read(event(serde_json::Value::Null));
        assert_eq!(null.details, serde_json::json!({}));
        let some = read(event(serde_json::json!({"n": 1})));
        assert_eq!(some.details, serde_json::json!({"n": 1}));
    }

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
