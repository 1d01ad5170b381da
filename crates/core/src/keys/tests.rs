//! The access decision, case by case, on the memory engine with a controlled
//! clock, and an index on a second "instance" that follows the change feed.

use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;

use super::index::Denial;
use super::*;
use crate::catalog::{CatalogService, Decision, EndpointSpec, ModelSpec, NoLister};
use crate::changes::ChangeFeed;
use crate::crypto::KeyRing;
use crate::env::ManualClock;
use crate::model::accounts::UserStatus;
use crate::model::catalog::SubscriptionStatus;
use crate::model::tenancy::TeamRole;
use crate::tenancy::{TeamSpec, TenancyService};

struct World {
    keys: KeyService,
    audit: Arc<AuditLog>,
    catalog: CatalogService,
    tenancy: TenancyService,
    store: Store,
    env: Env,
    clock: Arc<ManualClock>,
    c: ClientInfo,
}

fn world() -> World {
    let (env, clock) = crate::testing::env(4, 21);
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
    let index = Arc::new(AccessIndex::new(
        store.clone(),
        Arc::new(ChangeFeed::new(store.clone())),
        clock.clone(),
        "ak_",
    ));
    World {
        keys: KeyService::new(store.clone(), env.clone(), audit.clone(), index),
        audit: audit.clone(),
        catalog: CatalogService::new(
            store.clone(),
            env.clone(),
            audit.clone(),
            Arc::new(KeyRing::new(&[5; 32], &[]).unwrap()),
            Arc::new(NoLister),
        ),
        tenancy: TenancyService::new(store.clone(), env.clone(), audit),
        store,
        env,
        clock,
        c: ClientInfo::default(),
    }
}

impl World {
    async fn user(&self, name: &str, roles: &[Role]) -> User {
        crate::testing::user(&self.store, &self.env, name, roles).await
    }

    async fn set_status(&self, user: &User, status: UserStatus) {
        let mut changed = user.clone();
        changed.status = status;
        self.store
            .run(|tx| {
                let changed = &changed;
                async move { keyspace::user(changed.id).put(&tx, changed).await }
            })
            .await
            .unwrap();
    }

    async fn model(
        &self,
        admin: &User,
        name: &str,
        restricted: bool,
    ) -> crate::model::catalog::Model {
        let endpoint = self
            .catalog
            .create_endpoint(
                admin,
                EndpointSpec {
                    name: Some(format!("ep-{name}")),
                    base_url: Some("http://127.0.0.1:9".into()),
                    ..EndpointSpec::default()
                },
                &self.c,
            )
            .await
            .unwrap();
        let model = self
            .catalog
            .create_model(
                admin,
                ModelSpec {
                    name: Some(name.into()),
                    endpoint_id: Some(endpoint.id),
                    restricted: Some(restricted),
                    ..ModelSpec::default()
                },
                &self.c,
            )
            .await
            .unwrap();
        self.keys.index().refresh_catalog().await.unwrap();
        model
    }

    async fn key(&self, owner: &User, spec: NewKey) -> (ApiKey, String) {
        self.keys.create(owner, spec, None, &self.c).await.unwrap()
    }

    fn check(&self, key: &str, model: &str) -> Result<Id, Denial> {
        self.keys.index().check(key, model).map(|g| g.model.id)
    }
}

#[tokio::test]
async fn keys_are_shown_once_stored_hashed_and_checked() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    let small = w.model(&admin, "small", false).await;
    let (key, plaintext) = w.key(&ada, NewKey::default()).await;
    assert!(
        plaintext.starts_with("ak_") && plaintext.len() == 35,
        "{plaintext}"
    );
    assert!(plaintext[3..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(key.display_prefix, &plaintext[..7]);
    assert_eq!(w.check(&plaintext, "small"), Ok(small.id));
    // Unknown keys, near misses and garbage are all 401s.
    for bad in [
        "",
        "ak_",
        "sk-123",
        &plaintext[..34],
        &format!("{plaintext}x"),
    ] {
        assert_eq!(w.check(bad, "small"), Err(Denial::UnknownKey), "{bad:?}");
    }
    let mut other = plaintext.clone();
    other.replace_range(10..11, if &plaintext[10..11] == "A" { "B" } else { "A" });
    assert_eq!(w.check(&other, "small"), Err(Denial::UnknownKey));
    assert_eq!(w.check(&plaintext, "nope"), Err(Denial::UnknownModel));
    // Provider accounts hold no keys.
    let provider = w.user("prov", &[Role::Provider]).await;
    assert_eq!(
        w.keys
            .create(&provider, NewKey::default(), None, &w.c)
            .await
            .unwrap_err()
            .code(),
        crate::ErrorCode::PermissionDenied
    );
}

#[tokio::test]
async fn revocation_expiry_and_rotation_grace() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    let bob = w.user("bob", &[Role::User]).await;
    w.model(&admin, "small", false).await;
    // Revoked: by the owner, or by an admin; not by someone else.
    let (key, plaintext) = w.key(&ada, NewKey::default()).await;
    assert_eq!(
        w.keys
            .revoke(&bob, key.id, None, &w.c)
            .await
            .unwrap_err()
            .code(),
        crate::ErrorCode::NotFound
    );
    assert!(w.check(&plaintext, "small").is_ok());
    w.keys.revoke(&admin, key.id, None, &w.c).await.unwrap();
    assert_eq!(w.check(&plaintext, "small"), Err(Denial::Revoked));
    // Expiry.
    let soon = w.env.clock.now() + chrono::Duration::seconds(60);
    let (_, expiring) = w
        .key(
            &ada,
            NewKey {
                expires_at: Some(soon),
                ..NewKey::default()
            },
        )
        .await;
    assert!(w.check(&expiring, "small").is_ok());
    w.clock.advance(60_000);
    assert_eq!(w.check(&expiring, "small"), Err(Denial::Expired));
    // Rotation: both work during the grace period, then only the new one.
    let (old, old_text) = w.key(&ada, NewKey::default()).await;
    let (new, new_text) = w.keys.rotate(&ada, old.id, 300, None, &w.c).await.unwrap();
    assert_eq!(new.rotated_from, Some(old.id));
    assert!(w.check(&old_text, "small").is_ok());
    assert!(w.check(&new_text, "small").is_ok());
    assert_eq!(
        w.keys
            .rotate(&ada, old.id, 300, None, &w.c)
            .await
            .unwrap_err()
            .code(),
        crate::ErrorCode::Conflict
    );
    w.clock.advance(300_000);
    assert_eq!(w.check(&old_text, "small"), Err(Denial::Expired));
    assert!(w.check(&new_text, "small").is_ok());
    // A disabled owner's keys stop; enabled again, they work.
    w.set_status(&ada, UserStatus::Disabled).await;
    w.keys.index().refresh_owner(ada.id).await.unwrap();
    assert_eq!(w.check(&new_text, "small"), Err(Denial::OwnerInactive));
    w.set_status(&ada, UserStatus::Active).await;
    w.keys.index().refresh_owner(ada.id).await.unwrap();
    assert!(w.check(&new_text, "small").is_ok());
}

#[tokio::test]
async fn allow_lists_subscriptions_and_aliases() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    let small = w.model(&admin, "small", false).await;
    let large = w.model(&admin, "large", true).await;
    w.model(&admin, "other", false).await;
    let (_, key) = w.key(&ada, NewKey::default()).await;
    // Restricted: no subscription, pending, then approved.
    assert_eq!(w.check(&key, "large"), Err(Denial::SubscriptionRequired));
    let sub = w.catalog.subscribe(&ada, large.id, &w.c).await.unwrap();
    assert_eq!(sub.status, SubscriptionStatus::Pending);
    w.keys.index().refresh_owner(ada.id).await.unwrap();
    assert_eq!(w.check(&key, "large"), Err(Denial::SubscriptionRequired));
    w.catalog
        .decide_subscription(&admin, sub.id, Decision::Approve, None, &w.c)
        .await
        .unwrap();
    w.keys.index().refresh_owner(ada.id).await.unwrap();
    assert_eq!(w.check(&key, "large"), Ok(large.id));
    // The key's own allow-list.
    let (_, narrow) = w
        .key(
            &ada,
            NewKey {
                allowed_models: vec!["small".into()],
                ..NewKey::default()
            },
        )
        .await;
    assert_eq!(w.check(&narrow, "small"), Ok(small.id));
    assert_eq!(w.check(&narrow, "large"), Err(Denial::KeyNotAllowed));
    // Aliases: the user's own, then global, then the model name.
    w.catalog
        .create_alias(&admin, "default", small.id, true, &w.c)
        .await
        .unwrap();
    w.catalog
        .create_alias(&ada, "fast", small.id, false, &w.c)
        .await
        .unwrap();
    w.keys.index().refresh_catalog().await.unwrap();
    assert_eq!(w.check(&key, "default"), Ok(small.id));
    assert_eq!(w.check(&key, "fast"), Ok(small.id));
    // Disabled models are unknown.
    w.catalog
        .update_model(
            &admin,
            small.id,
            ModelSpec {
                enabled: Some(false),
                ..ModelSpec::default()
            },
            &w.c,
        )
        .await
        .unwrap();
    w.keys.index().refresh_catalog().await.unwrap();
    assert_eq!(w.check(&key, "small"), Err(Denial::UnknownModel));
    assert_eq!(w.check(&key, "fast"), Err(Denial::UnknownModel));
}

#[tokio::test]
async fn team_allow_lists_narrow_and_unite() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    for name in ["a", "b", "c"] {
        w.model(&admin, name, false).await;
    }
    let (_, key) = w.key(&ada, NewKey::default()).await;
    let org = w.tenancy.create_org(&ada, "Org", &w.c).await.unwrap();
    let team = |name: &str, models: &[&str]| TeamSpec {
        name: Some(name.into()),
        allowed_models: Some(models.iter().map(|m| m.to_string()).collect()),
        ..TeamSpec::default()
    };
    let t1 = w
        .tenancy
        .create_team(&ada, org.id, team("one", &["a"]), &w.c)
        .await
        .unwrap();
    let t2 = w
        .tenancy
        .create_team(&ada, org.id, team("two", &["b"]), &w.c)
        .await
        .unwrap();
    let t3 = w
        .tenancy
        .create_team(&ada, org.id, team("all", &[]), &w.c)
        .await
        .unwrap();
    // No team: no narrowing.
    assert!(w.check(&key, "c").is_ok());
    w.tenancy
        .put_team_member(&ada, org.id, t1.id, ada.id, TeamRole::Member, &w.c)
        .await
        .unwrap();
    w.keys.index().catch_up().await.unwrap();
    assert!(w.check(&key, "a").is_ok());
    assert_eq!(w.check(&key, "b"), Err(Denial::TeamNotAllowed));
    // Two narrowing teams: the union.
    w.tenancy
        .put_team_member(&ada, org.id, t2.id, ada.id, TeamRole::Member, &w.c)
        .await
        .unwrap();
    w.keys.index().catch_up().await.unwrap();
    assert!(w.check(&key, "b").is_ok());
    assert_eq!(w.check(&key, "c"), Err(Denial::TeamNotAllowed));
    // A team that allows every model lifts the narrowing.
    w.tenancy
        .put_team_member(&ada, org.id, t3.id, ada.id, TeamRole::Member, &w.c)
        .await
        .unwrap();
    w.keys.index().catch_up().await.unwrap();
    assert!(w.check(&key, "c").is_ok());
    // Removed from the open team, narrowed again at the next check.
    w.tenancy
        .remove_team_member(&ada, org.id, t3.id, ada.id, &w.c)
        .await
        .unwrap();
    w.keys.index().catch_up().await.unwrap();
    assert_eq!(w.check(&key, "c"), Err(Denial::TeamNotAllowed));
    // An allow-list change reaches the index through the feed.
    w.tenancy
        .update_team(&ada, org.id, t1.id, team("one", &["a", "c"]), &w.c)
        .await
        .unwrap();
    w.keys.index().catch_up().await.unwrap();
    assert!(w.check(&key, "c").is_ok());
}

#[tokio::test]
async fn another_instance_follows_the_change_feed() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    w.model(&admin, "small", false).await;
    let (key, plaintext) = w.key(&ada, NewKey::default()).await;
    // A second index on the same store, as another instance would hold it.
    let other = AccessIndex::new(
        w.store.clone(),
        Arc::new(ChangeFeed::new(w.store.clone())),
        w.clock.clone(),
        "ak_",
    );
    other.load().await.unwrap();
    assert!(other.check(&plaintext, "small").is_ok());
    w.keys.revoke(&ada, key.id, None, &w.c).await.unwrap();
    assert!(other.check(&plaintext, "small").is_ok(), "not yet seen");
    assert!(other.catch_up().await.unwrap() > 0);
    assert_eq!(
        other.check(&plaintext, "small").unwrap_err(),
        Denial::Revoked
    );
    // New keys and catalogue changes arrive the same way.
    let (_, fresh) = w.key(&ada, NewKey::default()).await;
    w.model(&admin, "late", false).await;
    other.catch_up().await.unwrap();
    assert!(other.check(&fresh, "late").is_ok());
}

#[tokio::test]
async fn last_use_is_written_in_batches() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    w.model(&admin, "small", false).await;
    let (key, plaintext) = w.key(&ada, NewKey::default()).await;
    assert_eq!(w.keys.get(&ada, key.id).await.unwrap().last_used_at, None);
    for _ in 0..100 {
        w.check(&plaintext, "small").unwrap();
    }
    assert_eq!(w.keys.get(&ada, key.id).await.unwrap().last_used_at, None);
    assert_eq!(w.keys.flush_last_used().await.unwrap(), 1);
    assert_eq!(w.keys.flush_last_used().await.unwrap(), 0);
    assert_eq!(
        w.keys.get(&ada, key.id).await.unwrap().last_used_at,
        Some(w.env.clock.now())
    );
    // Lists: own for users, all for admins; others' keys are invisible.
    let bob = w.user("bob", &[Role::User]).await;
    assert!(
        w.keys
            .list(&bob, false, &Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert_eq!(
        w.keys.get(&bob, key.id).await.unwrap_err().code(),
        crate::ErrorCode::NotFound
    );
    assert_eq!(
        w.keys
            .list(&admin, true, &Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(w.keys.list(&bob, true, &Default::default()).await.is_err());
}

#[tokio::test]
async fn a_key_creates_only_narrower_keys_and_acts_only_on_its_own() {
    use crate::ErrorCode;
    use crate::model::keys::{BudgetPeriod, KeyScope};
    let w = world();
    let ada = w.user("ada", &[Role::User]).await;
    let budget = |max_usd| {
        Some(Budget {
            max_usd,
            period: BudgetPeriod::Month,
        })
    };
    let (parent, _) = w
        .key(
            &ada,
            NewKey {
                allowed_models: vec!["small".into()],
                rpm_limit: Some(1),
                budget: budget(0.01),
                expires_at: Some(w.env.clock.now() + chrono::Duration::days(7)),
                scopes: vec![KeyScope::Management],
                ..NewKey::default()
            },
        )
        .await;
    assert!(parent.may_manage());
    let narrow = NewKey {
        allowed_models: vec!["small".into()],
        rpm_limit: Some(1),
        budget: budget(0.005),
        expires_at: Some(w.env.clock.now() + chrono::Duration::days(1)),
        ..NewKey::default()
    };
    // Each way of being broader is refused, with what was too broad.
    let broader = [
        (
            "allowed_models",
            NewKey {
                allowed_models: vec![],
                ..narrow.clone()
            },
        ),
        (
            "allowed_models",
            NewKey {
                allowed_models: vec!["small".into(), "large".into()],
                ..narrow.clone()
            },
        ),
        (
            "rpm_limit",
            NewKey {
                rpm_limit: None,
                ..narrow.clone()
            },
        ),
        (
            "rpm_limit",
            NewKey {
                rpm_limit: Some(2),
                ..narrow.clone()
            },
        ),
        (
            "budget",
            NewKey {
                budget: None,
                ..narrow.clone()
            },
        ),
        (
            "budget",
            NewKey {
                budget: budget(0.02),
                ..narrow.clone()
            },
        ),
        (
            "expires_at",
            NewKey {
                expires_at: None,
                ..narrow.clone()
            },
        ),
        (
            "expires_at",
            NewKey {
                expires_at: Some(w.env.clock.now() + chrono::Duration::days(8)),
                ..narrow.clone()
            },
        ),
    ];
    for (field, spec) in broader {
        let e = w
            .keys
            .create(&ada, spec, Some(parent.id), &w.c)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::PermissionDenied, "{field}");
        assert!(e.message().contains(field), "{field}: {}", e.message());
    }
    // A gateway-only child cannot ask for management from a gateway-only parent.
    let (child, _) = w
        .keys
        .create(&ada, narrow.clone(), Some(parent.id), &w.c)
        .await
        .unwrap();
    assert_eq!(child.created_by_key, Some(parent.id));
    assert!(!child.may_manage());
    let wider = NewKey {
        scopes: vec![KeyScope::Management],
        ..narrow.clone()
    };
    let e = w
        .keys
        .create(&ada, wider, Some(child.id), &w.c)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::PermissionDenied);

    // The parent rotates and revokes its child, not itself or its siblings.
    let (sibling, _) = w.key(&ada, NewKey::default()).await;
    for target in [parent.id, sibling.id] {
        let e = w
            .keys
            .revoke(&ada, target, Some(parent.id), &w.c)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::PermissionDenied);
        let e = w
            .keys
            .rotate(&ada, target, 60, Some(parent.id), &w.c)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::PermissionDenied);
    }
    let (rotated, _) = w
        .keys
        .rotate(&ada, child.id, 60, Some(parent.id), &w.c)
        .await
        .unwrap();
    assert_eq!(rotated.created_by_key, Some(parent.id), "still its own");
    w.keys
        .revoke(&ada, rotated.id, Some(parent.id), &w.c)
        .await
        .unwrap();
}

#[tokio::test]
async fn no_change_commits_without_its_audit_event() {
    use std::sync::atomic::Ordering;

    use crate::catalog::NewCredential;
    use crate::model::catalog::CredentialKind;
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    let (key, _) = w.key(&ada, NewKey::default()).await;
    let events = || async {
        w.store
            .run(|tx| async move {
                let page = tx
                    .get_range(&keyspace::audit_events(), RangeOptions::default())
                    .await?;
                Ok::<_, TxError<Error>>(page.entries.len())
            })
            .await
            .unwrap()
    };
    let before = events().await;
    w.audit.fail_writes.store(true, Ordering::Relaxed);

    // Each change fails with its audit write, and leaves nothing behind.
    assert!(
        w.keys
            .create(&ada, NewKey::default(), None, &w.c)
            .await
            .is_err()
    );
    assert_eq!(
        w.keys
            .list(&ada, false, &Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
    assert!(w.keys.revoke(&ada, key.id, None, &w.c).await.is_err());
    assert!(
        w.keys
            .get(&ada, key.id)
            .await
            .unwrap()
            .key
            .revoked_at
            .is_none()
    );
    assert!(w.keys.rotate(&ada, key.id, 60, None, &w.c).await.is_err());
    assert!(
        w.keys
            .get(&ada, key.id)
            .await
            .unwrap()
            .key
            .replaced_by
            .is_none()
    );
    let credential = NewCredential {
        scope: None,
        name: "upstream".into(),
        kind: CredentialKind::Openai,
        secret: serde_json::json!({"api_key": "sk-x"}),
        metadata: serde_json::Value::Null,
    };
    assert!(
        w.catalog
            .create_credential(&admin, credential.clone(), &w.c)
            .await
            .is_err()
    );
    assert!(
        w.catalog
            .list_credentials(&admin, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(events().await, before);

    // With the audit log writable again, the same changes commit with events.
    w.audit.fail_writes.store(false, Ordering::Relaxed);
    w.keys.revoke(&ada, key.id, None, &w.c).await.unwrap();
    w.catalog
        .create_credential(&admin, credential, &w.c)
        .await
        .unwrap();
    assert_eq!(events().await, before + 2);
}
