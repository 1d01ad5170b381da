//! Idempotent retries of writes (the IETF `Idempotency-Key` header draft).
//!
//! A client that sends a write with an `Idempotency-Key` and retries it with
//! the same key gets it applied at most once:
//!
//! 1. [`Idempotency::begin`] claims the key for the request, in a
//!    transaction of its own (two parallel requests cannot both claim it).
//! 2. The change the request makes marks the record *applied* in the change's
//!    own transaction ([`mark_applied`], called where the change's audit event
//!    is staged): so when the storage engine cannot say whether a commit
//!    happened (`MaybeCommitted`), the record can.
//! 3. [`Idempotency::finish`] keeps a successful answer for replay, sealed
//!    under a key derived from the credential and the Idempotency-Key, which
//!    are not stored: an answer that shows a secret once (a new API key) is
//!    readable only by whoever sends the same credential and key again.
//!    Any other outcome releases the claim, unless a change was applied.
//!
//! Records expire after 24 hours; [`Idempotency::prune`] deletes them.

use gatehouse_storage::{Store, Tx, TxError};
use sha2::{Digest, Sha256};

use crate::crypto::KeyRing;
use crate::model::audit::AuditEvent;
pub use crate::model::idempotency::{IdempotentWrite, RequestMark, WriteState};
use crate::{Env, Error, ErrorCode, Result, keyspace};

/// How long a write's record (and its answer) is kept.
pub const TTL_MS: i64 = 24 * 3_600_000;
/// The longest Idempotency-Key accepted.
pub const MAX_KEY_LEN: usize = 255;
/// The largest answer kept for replay; a larger one is not replayed.
pub const MAX_ANSWER_BYTES: usize = 64 * 1024;

const SEAL_CONTEXT: &str = "idempotent answer";

/// SHA-256 of a request's method, target and body: what a retry must repeat.
pub fn fingerprint(method: &str, target: &str, body: &[u8]) -> [u8; 32] {
    Sha256::new()
        .chain_update(method.as_bytes())
        .chain_update([0])
        .chain_update(target.as_bytes())
        .chain_update([0])
        .chain_update(body)
        .finalize()
        .into()
}

/// The right to handle a request: given by [`Idempotency::begin`].
pub struct Claim {
    mark: RequestMark,
    /// Seals and opens the answer; derived, never stored.
    sealing: KeyRing,
    fingerprint: String,
}

impl Claim {
    /// What the request's changes carry, to mark the record applied.
    pub fn mark(&self) -> RequestMark {
        self.mark.clone()
    }
}

/// An answer to keep or replay.
#[derive(Clone, PartialEq, Eq)]
pub struct Answer {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl std::fmt::Debug for Answer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Answer")
            .field("status", &self.status)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Where a request with an Idempotency-Key stands.
#[derive(Debug)]
pub enum Begun {
    /// First time (or the earlier try changed nothing): handle it.
    Run(Box<Claim>),
    /// Handled before: its answer.
    Replay(Answer),
}

pub struct Idempotency {
    store: Store,
    env: Env,
}

impl std::fmt::Debug for Claim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Claim(..)")
    }
}

impl Idempotency {
    pub fn new(store: Store, env: Env) -> Self {
        Idempotency { store, env }
    }

    /// Claims `key` for a request made with `credential` (the bytes that
    /// authenticate it), or finds the earlier request's outcome. A claim is
    /// held for `lease_ms`, after which a retry may take it over.
    ///
    /// Refusals: `invalid_input` for a malformed key, `idempotency_key_reused`
    /// when the key came with a different request, `conflict` while the
    /// earlier request is still running or when it was applied but its answer
    /// was lost.
    pub async fn begin(
        &self,
        credential: &[u8],
        key: &str,
        fingerprint: [u8; 32],
        lease_ms: i64,
    ) -> Result<Begun> {
        if key.is_empty() || key.len() > MAX_KEY_LEN || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Error::invalid_input(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} visible ASCII characters"
            )));
        }
        let mark = RequestMark(derive(b"gatehouse idempotency record\0", credential, key));
        let sealing = KeyRing::new(
            &derive(b"gatehouse idempotency answer\0", credential, key),
            &[],
        )?;
        let claim = Claim {
            mark,
            sealing,
            fingerprint: crate::codec::hex(&fingerprint),
        };
        let now = self.env.clock.now_millis();
        let record_key = keyspace::idempotent_write(&claim.mark.0);
        let (claim_ref, record_key) = (&claim, &record_key);
        let found = self
            .store
            .run(|tx| async move {
                let found = record_key
                    .get(&tx)
                    .await?
                    .filter(|w| now < w.created_ms + TTL_MS);
                let takeover = match &found {
                    None => true,
                    Some(w) if w.fingerprint != claim_ref.fingerprint => false,
                    Some(w) => {
                        matches!(w.state, WriteState::Running { until_ms } if until_ms <= now)
                    }
                };
                if takeover {
                    let write = IdempotentWrite {
                        fingerprint: claim_ref.fingerprint.clone(),
                        created_ms: now,
                        state: WriteState::Running {
                            until_ms: now.saturating_add(lease_ms),
                        },
                    };
                    record_key.put(&tx, &write).await?;
                    return Ok(None);
                }
                Ok::<_, TxError<Error>>(found)
            })
            .await?;
        let Some(found) = found else {
            return Ok(Begun::Run(Box::new(claim)));
        };
        if found.fingerprint != claim.fingerprint {
            return Err(Error::new(
                ErrorCode::IdempotencyKeyReused,
                "this Idempotency-Key was sent with a different request; use a new key for a new request",
            ));
        }
        match found.state {
            WriteState::Running { until_ms } => Err(Error::new(
                ErrorCode::Conflict,
                "a request with this Idempotency-Key is still being handled; retry when it has finished",
            )
            .retry_after(((until_ms - now) / 1000).max(1) as u64)),
            WriteState::Applied {
                target_type,
                target_id,
            } => {
                let what = match (target_type, target_id) {
                    (Some(kind), Some(id)) => format!(": read {kind} {id}"),
                    _ => String::new(),
                };
                Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "the request with this Idempotency-Key was applied, but its answer was lost{what}"
                    ),
                ))
            }
            WriteState::Answered {
                status,
                content_type,
                body,
            } => Ok(Begun::Replay(Answer {
                status,
                content_type,
                body: claim.sealing.open(&body, SEAL_CONTEXT)?,
            })),
        }
    }

    /// Keeps `answer` for replay if the request succeeded and the answer is
    /// small enough; otherwise releases the claim (a retry runs again), unless
    /// a change was applied.
    pub async fn finish(&self, claim: Box<Claim>, answer: &Answer) -> Result<()> {
        let keep = (200..300).contains(&answer.status) && answer.body.len() <= MAX_ANSWER_BYTES;
        let sealed = if keep {
            Some(
                claim
                    .sealing
                    .seal(&*self.env.random, &answer.body, SEAL_CONTEXT)?,
            )
        } else {
            None
        };
        let record_key = keyspace::idempotent_write(&claim.mark.0);
        let (record_key, sealed, claim) = (&record_key, &sealed, &claim);
        self.store
            .run(|tx| async move {
                let Some(mut write) = record_key.get(&tx).await? else {
                    return Ok(());
                };
                if write.fingerprint != claim.fingerprint {
                    return Ok(());
                }
                match (sealed, &write.state) {
                    (Some(body), WriteState::Running { .. } | WriteState::Applied { .. }) => {
                        write.state = WriteState::Answered {
                            status: answer.status,
                            content_type: answer.content_type.clone(),
                            body: body.clone(),
                        };
                        record_key.put(&tx, &write).await
                    }
                    (None, WriteState::Running { .. }) => record_key.clear(&tx).await,
                    _ => Ok::<_, TxError<Error>>(()),
                }
            })
            .await?;
        Ok(())
    }

    /// Deletes records older than 24 hours, a page per transaction; returns
    /// how many went. The `idempotency` job runs it.
    pub async fn prune(&self) -> Result<usize> {
        let now = self.env.clock.now_millis();
        crate::codec::prune_range(
            &self.store,
            keyspace::idempotent_writes(),
            |write: &IdempotentWrite| now >= write.created_ms + TTL_MS,
        )
        .await
    }
}

/// Marks the request's record applied, inside `tx`, the transaction of a
/// change the request made (its audit event names what changed).
pub(crate) async fn mark_applied(
    tx: &Tx,
    mark: &RequestMark,
    event: &AuditEvent,
) -> Result<(), TxError<Error>> {
    let record_key = keyspace::idempotent_write(&mark.0);
    let Some(mut write) = record_key.get(tx).await? else {
        return Ok(());
    };
    if !matches!(write.state, WriteState::Running { .. }) {
        return Ok(());
    }
    write.state = WriteState::Applied {
        target_type: event.target_type.clone(),
        target_id: event.target_id.clone(),
    };
    record_key.put(tx, &write).await
}

/// A 32-byte value naming `key` sent with `credential`, for `purpose`.
fn derive(purpose: &[u8], credential: &[u8], key: &str) -> [u8; 32] {
    Sha256::new()
        .chain_update(purpose)
        .chain_update(Sha256::digest(credential))
        .chain_update(key.as_bytes())
        .finalize()
        .into()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_storage::RangeOptions;
    use gatehouse_storage::memory::MemoryEngine;

    use super::*;
    use crate::audit::AuditLog;
    use crate::clock::ManualClock;
    use crate::model::accounts::Role;
    use crate::model::sessions::ClientInfo;
    use crate::tenancy::TenancyService;

    const LEASE: i64 = 35_000;

    struct World {
        idempotency: Idempotency,
        tenancy: TenancyService,
        store: Store,
        env: Env,
        clock: Arc<ManualClock>,
    }

    fn world() -> World {
        let (env, clock) = crate::testing::env(1, 9);
        let store = Store::new(Arc::new(MemoryEngine::new()));
        let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
        World {
            idempotency: Idempotency::new(store.clone(), env.clone()),
            tenancy: TenancyService::new(store.clone(), env.clone(), audit),
            store,
            env,
            clock,
        }
    }

    fn created(body: &str) -> Answer {
        Answer {
            status: 201,
            content_type: Some("application/json".into()),
            body: body.as_bytes().to_vec(),
        }
    }

    async fn claim(w: &World, credential: &str, key: &str, request: &str) -> Result<Begun> {
        let fp = fingerprint("POST", "/api/v1/things", request.as_bytes());
        w.idempotency
            .begin(credential.as_bytes(), key, fp, LEASE)
            .await
    }

    fn run(begun: Result<Begun>) -> Box<Claim> {
        match begun {
            Ok(Begun::Run(claim)) => claim,
            other => panic!("expected to run, got {other:?}"),
        }
    }

    fn code(begun: Result<Begun>) -> ErrorCode {
        match begun {
            Err(e) => e.code(),
            Ok(other) => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_retry_gets_the_first_answer_and_only_with_the_same_request() {
        let w = world();
        let first = run(claim(&w, "cred", "k1", "{}").await);
        w.idempotency
            .finish(first, &created(r#"{"id":"1"}"#))
            .await
            .unwrap();
        match claim(&w, "cred", "k1", "{}").await.unwrap() {
            Begun::Replay(answer) => assert_eq!(answer, created(r#"{"id":"1"}"#)),
            other => panic!("expected a replay, got {other:?}"),
        }
        assert_eq!(
            code(claim(&w, "cred", "k1", r#"{"other":1}"#).await),
            ErrorCode::IdempotencyKeyReused
        );
        // Another credential with the same key is another request.
        run(claim(&w, "other credential", "k1", "{}").await);
        // The stored answer is sealed: its plaintext is not in the record.
        let stored = w
            .store
            .run(|tx| async move {
                let range = keyspace::idempotent_writes();
                Ok::<_, TxError<Error>>(tx.get_range(&range, RangeOptions::limit(10)).await?)
            })
            .await
            .unwrap();
        assert!(
            stored
                .entries
                .iter()
                .all(|(_, v)| !v.windows(8).any(|w| w == br#"{"id":"1"#))
        );
    }

    #[tokio::test]
    async fn a_running_request_holds_its_key_until_its_lease_ends() {
        let w = world();
        let _first = run(claim(&w, "cred", "k", "{}").await);
        assert_eq!(
            code(claim(&w, "cred", "k", "{}").await),
            ErrorCode::Conflict
        );
        w.clock.advance(LEASE);
        // The first never finished and changed nothing: a retry runs.
        run(claim(&w, "cred", "k", "{}").await);
    }

    #[tokio::test]
    async fn a_failed_request_is_released_unless_it_changed_something() {
        let w = world();
        let failed = Answer {
            status: 400,
            content_type: None,
            body: b"{}".to_vec(),
        };
        let first = run(claim(&w, "cred", "k", "{}").await);
        w.idempotency.finish(first, &failed).await.unwrap();
        let second = run(claim(&w, "cred", "k", "{}").await);
        let unavailable = Answer {
            status: 503,
            ..failed.clone()
        };
        w.idempotency.finish(second, &unavailable).await.unwrap();
        run(claim(&w, "cred", "k", "{}").await);
    }

    /// The case `MaybeCommitted` is about: the change committed, and the
    /// answer never got back. The retry must not make it again.
    #[tokio::test]
    async fn a_change_that_committed_is_not_made_again_when_its_answer_was_lost() {
        let w = world();
        let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
        let claim_1 = run(claim(&w, "cred", "k", r#"{"name":"Acme"}"#).await);
        let client = ClientInfo {
            idempotency: Some(claim_1.mark()),
            ..ClientInfo::default()
        };
        let org = w.tenancy.create_org(&ada, "Acme", &client).await.unwrap();
        // The answer is lost: no finish. Long after the lease, a retry still
        // learns the change was made, and what it made.
        w.clock.advance(10 * LEASE);
        let refused = claim(&w, "cred", "k", r#"{"name":"Acme"}"#).await;
        let Err(e) = refused else {
            panic!("expected a refusal, got {refused:?}")
        };
        assert_eq!(e.code(), ErrorCode::Conflict);
        assert!(e.message().contains(&org.id.to_string()), "{}", e.message());
        // A failure answer does not release it either.
        let failed = Answer {
            status: 503,
            content_type: None,
            body: vec![],
        };
        w.idempotency.finish(claim_1, &failed).await.unwrap();
        assert_eq!(
            code(claim(&w, "cred", "k", r#"{"name":"Acme"}"#).await),
            ErrorCode::Conflict
        );
    }

    #[tokio::test]
    async fn records_expire_after_a_day_and_are_pruned() {
        let w = world();
        let first = run(claim(&w, "cred", "k", "{}").await);
        w.idempotency.finish(first, &created("{}")).await.unwrap();
        let _other = run(claim(&w, "cred", "k2", "{}").await);
        assert_eq!(w.idempotency.prune().await.unwrap(), 0);
        w.clock.advance(TTL_MS);
        // Expired: the key is free again, before and after pruning.
        let again = run(claim(&w, "cred", "k", "{}").await);
        w.idempotency.finish(again, &created("{}")).await.unwrap();
        assert_eq!(w.idempotency.prune().await.unwrap(), 1, "k2's record");
        w.clock.advance(TTL_MS);
        assert_eq!(w.idempotency.prune().await.unwrap(), 1, "k's second record");
    }

    #[tokio::test]
    async fn malformed_keys_are_refused() {
        let w = world();
        for key in ["", "has space", "é", &"k".repeat(MAX_KEY_LEN + 1)] {
            assert_eq!(
                code(claim(&w, "cred", key, "{}").await),
                ErrorCode::InvalidInput,
                "{key:?}"
            );
        }
        run(claim(&w, "cred", &"k".repeat(MAX_KEY_LEN), "{}").await);
    }
}
