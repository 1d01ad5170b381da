//! Vaults, clients and tokens on the memory engine with a controlled clock:
//! the time-bound rules (family expiry, key publication, scheduled rotation)
//! that the HTTP tests cannot wait for.

use std::sync::Arc;

use gatehouse_storage::Store;
use gatehouse_storage::memory::MemoryEngine;

use super::tokens::{TokenService, TokenSettings};
use super::*;
use crate::ErrorCode;
use crate::env::ManualClock;
use crate::model::accounts::Role;

struct World {
    vaults: VaultService,
    tokens: TokenService,
    store: Store,
    env: Env,
    clock: Arc<ManualClock>,
    c: ClientInfo,
}

fn world() -> World {
    let (env, clock) = crate::testing::env(1, 9);
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
    let keys = Arc::new(KeyRing::new(&[3; 32], &[]).unwrap());
    World {
        vaults: VaultService::new(
            store.clone(),
            env.clone(),
            audit.clone(),
            keys.clone(),
            true,
        ),
        tokens: TokenService::new(
            store.clone(),
            env.clone(),
            audit,
            keys,
            TokenSettings::default(),
        ),
        store,
        env,
        clock,
        c: ClientInfo::default(),
    }
}

const SECOND: i64 = 1000;

impl World {
    /// A user with their personal organization, a vault in it granted to
    /// them as `reader`.
    async fn granted(&self) -> (User, Id, Id) {
        let user = crate::testing::user(&self.store, &self.env, "ada", &[Role::User]).await;
        let org = crate::tenancy::TenancyService::new(
            self.store.clone(),
            self.env.clone(),
            Arc::new(AuditLog::new(self.store.clone(), self.env.clone())),
        )
        .orgs_of(user.id)
        .await
        .unwrap()[0]
            .0
            .id;
        let spec = VaultSpec {
            name: Some("v".into()),
            description: None,
        };
        let vault = self
            .vaults
            .create_vault(&user, org, spec, &self.c)
            .await
            .unwrap()
            .id;
        self.vaults
            .put_grant(
                &user,
                org,
                vault,
                (SubjectKind::User, user.id),
                VaultRole::Reader,
                &self.c,
            )
            .await
            .unwrap();
        (user, org, vault)
    }
}

#[tokio::test]
async fn refresh_families_end_at_their_absolute_expiry_however_often_they_rotate() {
    let w = world();
    w.tokens.ensure_signing_key().await.unwrap();
    let (user, org, vault) = w.granted().await;
    let mut tokens = w.tokens.user_token(&user, org, vault, &w.c).await.unwrap();
    let expiry = tokens.refresh_expires_at;
    // Rotating every 20 minutes keeps working until the hour is up…
    for _ in 0..2 {
        w.clock.advance(20 * 60 * SECOND);
        tokens = w.tokens.refresh(&tokens.refresh_token, &w.c).await.unwrap();
        assert_eq!(tokens.refresh_expires_at, expiry);
    }
    // …and not a moment past it.
    w.clock.advance(20 * 60 * SECOND);
    let e = w
        .tokens
        .refresh(&tokens.refresh_token, &w.c)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::Unauthenticated);
}

#[tokio::test]
async fn losing_the_grant_or_the_membership_stops_refresh() {
    let w = world();
    w.tokens.ensure_signing_key().await.unwrap();
    let (user, org, vault) = w.granted().await;
    let tokens = w.tokens.user_token(&user, org, vault, &w.c).await.unwrap();
    w.vaults
        .delete_grant(&user, org, vault, (SubjectKind::User, user.id), &w.c)
        .await
        .unwrap();
    let e = w
        .tokens
        .refresh(&tokens.refresh_token, &w.c)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
    let e = w
        .tokens
        .user_token(&user, org, vault, &w.c)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn a_deleted_organization_stops_refresh_before_its_vaults_are_removed() {
    let w = world();
    w.tokens.ensure_signing_key().await.unwrap();
    let (user, org, vault) = w.granted().await;
    let tokens = w.tokens.user_token(&user, org, vault, &w.c).await.unwrap();
    // What a deletion does at once: the organization's record goes; its
    // vaults and grants follow a page at a time, later.
    w.store
        .run(|tx| async move { keyspace::org(org).clear(&tx).await })
        .await
        .unwrap();
    let e = w
        .tokens
        .refresh(&tokens.refresh_token, &w.c)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}

#[tokio::test]
async fn retired_signing_keys_stay_published_for_a_day_and_rotation_follows_the_schedule() {
    let w = world();
    w.tokens.ensure_signing_key().await.unwrap();
    w.tokens.ensure_signing_key().await.unwrap();
    let kids = |jwks: serde_json::Value| -> Vec<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let first = kids(w.tokens.jwks().await.unwrap());
    assert_eq!(first.len(), 1, "starting twice makes one key");
    assert_eq!(w.tokens.rotate_if_older_than(30).await.unwrap(), None);
    w.clock.advance(31 * 24 * 3600 * SECOND);
    let second = w.tokens.rotate_if_older_than(30).await.unwrap().unwrap();
    let published = kids(w.tokens.jwks().await.unwrap());
    assert!(published.contains(&first[0]) && published.contains(&second));
    // A day later (past every token's five minutes) the old key is gone.
    w.clock.advance(24 * 3600 * SECOND + 31 * SECOND);
    assert_eq!(kids(w.tokens.jwks().await.unwrap()), vec![second]);
}

#[tokio::test]
async fn grants_name_subjects_of_the_same_organization_only() {
    let w = world();
    let (user, org, vault) = w.granted().await;
    let stranger = crate::testing::user(&w.store, &w.env, "bob", &[Role::User]).await;
    for (kind, id) in [
        (SubjectKind::User, stranger.id),
        (SubjectKind::Team, Id(7)),
        (SubjectKind::Client, Id(7)),
    ] {
        let e = w
            .vaults
            .put_grant(&user, org, vault, (kind, id), VaultRole::Admin, &w.c)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{kind:?}");
    }
    // A stranger sees neither the vault nor its organization.
    let e = w.vaults.get_vault(&stranger, org, vault).await.unwrap_err();
    assert_eq!(e.code(), ErrorCode::NotFound);
}

/// A policy engine that records what it receives and fails while told to.
#[derive(Default)]
struct Engine {
    received: parking_lot::Mutex<Vec<VaultState>>,
    down: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl PolicyEngine for Engine {
    async fn sync_vault(&self, state: &VaultState) -> std::result::Result<(), String> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err("connection refused".into());
        }
        self.received.lock().push(state.clone());
        Ok(())
    }
}

#[tokio::test]
async fn vault_changes_reach_the_policy_engine_through_the_outbox_with_retries() {
    let w = world();
    let engine = Engine::default();
    let (user, org, vault) = w.granted().await;
    let status = |v: Vault| (v.sync.status, v.sync.reason);
    assert_eq!(
        status(w.vaults.get_vault(&user, org, vault).await.unwrap()),
        (SyncStatus::Pending, None)
    );
    // The engine is down: failed, with the reason, retried later.
    engine.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let report = w.vaults.sync_pending(&engine).await.unwrap();
    assert_eq!(
        report,
        SyncReport {
            synced: 0,
            failed: 1
        }
    );
    assert_eq!(
        status(w.vaults.get_vault(&user, org, vault).await.unwrap()),
        (SyncStatus::Failed, Some("connection refused".into()))
    );
    assert_eq!(
        w.vaults.sync_pending(&engine).await.unwrap(),
        SyncReport::default(),
        "not due yet"
    );
    // Back up: the next due round delivers the whole state once.
    engine
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    w.clock.advance(3 * SECOND);
    assert_eq!(w.vaults.sync_pending(&engine).await.unwrap().synced, 1);
    assert_eq!(
        status(w.vaults.get_vault(&user, org, vault).await.unwrap()).0,
        SyncStatus::Synced
    );
    {
        let received = engine.received.lock();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].grants.len(), 1);
        assert_eq!(received[0].grants[0].subject_id, user.id);
        assert!(!received[0].deleted);
    }
    assert_eq!(
        w.vaults.sync_pending(&engine).await.unwrap(),
        SyncReport::default(),
        "nothing left"
    );
    // Deleting the vault is synced too.
    w.vaults
        .delete_vault(&user, org, vault, &w.c)
        .await
        .unwrap();
    assert_eq!(w.vaults.sync_pending(&engine).await.unwrap().synced, 1);
    let received = engine.received.lock();
    let last = received.last().unwrap();
    assert!(last.deleted && last.grants.is_empty());
    assert!(last.generation > received[0].generation);
}

#[test]
fn public_keys_are_read_in_every_common_spelling() {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
    use ed25519_dalek::pkcs8::EncodePublicKey;
    // A key whose standard base64 holds both `+` and `/`.
    let key = (0u8..=255)
        .map(|i| ed25519_dalek::SigningKey::from_bytes(&[i; 32]).verifying_key())
        .find(|k| {
            let text = STANDARD.encode(k.as_bytes());
            text.contains('+') && text.contains('/')
        })
        .unwrap();
    let bytes = key.as_bytes();
    let pem = key
        .to_public_key_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::CRLF)
        .unwrap();
    for text in [
        URL_SAFE_NO_PAD.encode(bytes),
        URL_SAFE.encode(bytes),
        STANDARD.encode(bytes),
        format!(" {}\n", STANDARD_NO_PAD.encode(bytes)),
        pem,
    ] {
        assert_eq!(parse_public_key(&text).unwrap(), key, "{text}");
    }
    for bad in [
        "",
        "short",
        "-----BEGIN PUBLIC KEY-----",
        &STANDARD.encode([1u8; 31]),
    ] {
        let e = parse_public_key(bad).unwrap_err();
        assert_eq!(e.code(), ErrorCode::InvalidInput, "{bad}");
    }
}
