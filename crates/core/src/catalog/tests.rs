//! Tests of the catalogue on the memory engine.

use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;
use parking_lot::Mutex;

use super::*;
use crate::model::tenancy::OrgRole;
use crate::tenancy::TenancyService;

/// A lister that answers with whatever the test put in it.
#[derive(Default)]
struct FixedLister(Mutex<Vec<UpstreamModel>>);

#[async_trait]
impl ModelLister for FixedLister {
    async fn list_models(
        &self,
        _: &Endpoint,
        _: Option<&serde_json::Value>,
    ) -> Result<Vec<UpstreamModel>> {
        Ok(self.0.lock().clone())
    }
}

struct World {
    catalog: CatalogService,
    tenancy: TenancyService,
    store: Store,
    env: Env,
    lister: Arc<FixedLister>,
    c: ClientInfo,
}

fn world_with_key(secret: &[u8], previous: &[Vec<u8>], store: Store) -> World {
    let (env, _) = crate::testing::env(3, 11);
    let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
    let lister = Arc::new(FixedLister::default());
    World {
        catalog: CatalogService::new(
            store.clone(),
            env.clone(),
            audit.clone(),
            Arc::new(KeyRing::new(secret, previous).unwrap()),
            lister.clone(),
        ),
        tenancy: TenancyService::new(store.clone(), env.clone(), audit),
        store,
        env,
        lister,
        c: ClientInfo::default(),
    }
}

fn world() -> World {
    world_with_key(&[1; 32], &[], Store::new(Arc::new(MemoryEngine::new())))
}

impl World {
    async fn user(&self, name: &str, roles: &[Role]) -> User {
        crate::testing::user(&self.store, &self.env, name, roles).await
    }

    async fn endpoint(&self, admin: &User) -> Endpoint {
        let spec = EndpointSpec {
            name: Some(format!("local-{}", self.env.ids.next_id())),
            base_url: Some("http://127.0.0.1:9".into()),
            ..EndpointSpec::default()
        };
        self.catalog
            .create_endpoint(admin, spec, &self.c)
            .await
            .unwrap()
    }

    async fn model(&self, admin: &User, name: &str, restricted: bool) -> Model {
        let endpoint = self.endpoint(admin).await;
        let spec = ModelSpec {
            name: Some(name.into()),
            endpoint_id: Some(endpoint.id),
            restricted: Some(restricted),
            input_cost_per_token: Some(0.000001),
            output_cost_per_token: Some(0.000002),
            ..ModelSpec::default()
        };
        self.catalog
            .create_model(admin, spec, &self.c)
            .await
            .unwrap()
    }
}

fn code<T: std::fmt::Debug>(r: Result<T>) -> ErrorCode {
    r.expect_err("an error").code()
}

fn secret(key: &str) -> serde_json::Value {
    serde_json::json!({ "api_key": key })
}

#[tokio::test]
async fn credentials_are_sealed_and_scoped() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let readonly = w.user("ro", &[Role::User, Role::AdminReadonly]).await;
    let provider = w.user("prov", &[Role::Provider]).await;
    let user = w.user("user", &[Role::User]).await;
    let platform = w
        .catalog
        .create_credential(
            &admin,
            NewCredential {
                scope: None,
                name: "OpenAI".into(),
                kind: CredentialKind::Openai,
                secret: secret("sk-platform-0123456789"),
                metadata: serde_json::Value::Null,
            },
            &w.c,
        )
        .await
        .unwrap();
    assert_eq!(platform.scope, CredentialScope::Platform);
    assert_eq!(
        w.catalog.credential_secret(platform.id).await.unwrap(),
        secret("sk-platform-0123456789")
    );
    // Providers hold their own oauth_account credentials only.
    let new = |kind| NewCredential {
        scope: None,
        name: "mine".into(),
        kind,
        secret: secret("sk-provider-secret-value"),
        metadata: serde_json::json!({"account": "acme"}),
    };
    assert_eq!(
        code(
            w.catalog
                .create_credential(&provider, new(CredentialKind::Openai), &w.c)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    let own = w
        .catalog
        .create_credential(&provider, new(CredentialKind::OauthAccount), &w.c)
        .await
        .unwrap();
    assert_eq!(
        own.scope,
        CredentialScope::User {
            user_id: provider.id
        }
    );
    // Readers: admins, read-only admins, the provider; others see nothing.
    assert_eq!(
        w.catalog
            .list_credentials(&admin, None)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        w.catalog
            .list_credentials(&readonly, None)
            .await
            .unwrap()
            .len(),
        2
    );
    assert_eq!(
        w.catalog
            .list_credentials(&provider, None)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        w.catalog
            .list_credentials(&user, None)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        code(w.catalog.get_credential(&user, platform.id).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(w.catalog.get_credential(&provider, platform.id).await),
        ErrorCode::NotFound
    );
    let change = CredentialChange {
        secret: Some(secret("sk-provider-rotated-value")),
        ..CredentialChange::default()
    };
    assert_eq!(
        code(
            w.catalog
                .update_credential(&readonly, own.id, change.clone(), &w.c)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    w.catalog
        .update_credential(&provider, own.id, change, &w.c)
        .await
        .unwrap();
    assert_eq!(
        w.catalog.credential_secret(own.id).await.unwrap(),
        secret("sk-provider-rotated-value")
    );
    // Providers cannot delete; admins can. Bad secrets are refused.
    assert_eq!(
        code(w.catalog.delete_credential(&provider, own.id, &w.c).await),
        ErrorCode::PermissionDenied
    );
    w.catalog
        .delete_credential(&admin, own.id, &w.c)
        .await
        .unwrap();
    let bad = NewCredential {
        secret: serde_json::json!("just a string"),
        ..new(CredentialKind::Openai)
    };
    assert_eq!(
        code(w.catalog.create_credential(&admin, bad, &w.c).await),
        ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn organization_credentials_belong_to_its_owners_and_admins() {
    let w = world();
    let owner = w.user("owner", &[Role::User]).await;
    let member = w.user("member", &[Role::User]).await;
    let outsider = w.user("outsider", &[Role::User]).await;
    let org = w.tenancy.create_org(&owner, "Org", &w.c).await.unwrap();
    let sent = w
        .tenancy
        .invite(&owner, org.id, &member.email, OrgRole::Member, &w.c)
        .await
        .unwrap();
    w.tenancy
        .accept_invitation(&member, &sent.token, &w.c)
        .await
        .unwrap();
    let new = || NewCredential {
        scope: Some(CredentialScope::Organization { org_id: org.id }),
        name: "Team key".into(),
        kind: CredentialKind::Anthropic,
        secret: secret("sk-ant-org-secret"),
        metadata: serde_json::Value::Null,
    };
    let cred = w
        .catalog
        .create_credential(&owner, new(), &w.c)
        .await
        .unwrap();
    assert_eq!(
        code(w.catalog.create_credential(&outsider, new(), &w.c).await),
        ErrorCode::NotFound
    );
    for who in [&member, &outsider] {
        assert_eq!(
            code(w.catalog.get_credential(who, cred.id).await),
            ErrorCode::NotFound
        );
    }
    w.catalog
        .delete_credential(&owner, cred.id, &w.c)
        .await
        .unwrap();
}

#[tokio::test]
async fn rotating_the_key_reseals_everything_and_loses_nothing() {
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let old = world_with_key(&[1; 32], &[], store.clone());
    let admin = old.user("admin", &[Role::User, Role::Admin]).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let cred = old
            .catalog
            .create_credential(
                &admin,
                NewCredential {
                    scope: None,
                    name: format!("c{i}"),
                    kind: CredentialKind::Generic,
                    secret: secret(&format!("secret-number-{i}")),
                    metadata: serde_json::Value::Null,
                },
                &old.c,
            )
            .await
            .unwrap();
        ids.push(cred.id);
    }
    // The new key is current; the old one only decrypts.
    let rotating = world_with_key(&[2; 32], &[vec![1; 32]], store.clone());
    assert_eq!(rotating.catalog.reseal_all().await.unwrap(), 5);
    assert_eq!(
        rotating.catalog.reseal_all().await.unwrap(),
        0,
        "idempotent"
    );
    // Without the old key, everything still opens.
    let new = world_with_key(&[2; 32], &[], store);
    for (i, id) in ids.into_iter().enumerate() {
        assert_eq!(
            new.catalog.credential_secret(id).await.unwrap(),
            secret(&format!("secret-number-{i}"))
        );
    }
}

#[tokio::test]
async fn models_sync_idempotently_and_names_stay_unique() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let user = w.user("user", &[Role::User]).await;
    let endpoint = w.endpoint(&admin).await;
    *w.lister.0.lock() = vec![
        UpstreamModel {
            name: "llama-3".into(),
            provider: Some("meta".into()),
            context_length: Some(8192),
        },
        UpstreamModel {
            name: "mistral".into(),
            provider: None,
            context_length: None,
        },
    ];
    let first = w
        .catalog
        .sync_models(&admin, endpoint.id, &w.c)
        .await
        .unwrap();
    assert_eq!(first.added, ["llama-3", "mistral"]);
    let again = w
        .catalog
        .sync_models(&admin, endpoint.id, &w.c)
        .await
        .unwrap();
    assert_eq!(
        (again.added.len(), again.updated.len(), again.unchanged),
        (0, 0, 2)
    );
    w.lister.0.lock()[1].context_length = Some(32_000);
    let changed = w
        .catalog
        .sync_models(&admin, endpoint.id, &w.c)
        .await
        .unwrap();
    assert_eq!(changed.updated, ["mistral"]);
    // Synced models start disabled: users do not see them yet.
    assert!(w.catalog.list_models(&user).await.unwrap().is_empty());
    assert_eq!(w.catalog.list_models(&admin).await.unwrap().len(), 2);
    assert_eq!(
        code(w.catalog.sync_models(&user, endpoint.id, &w.c).await),
        ErrorCode::PermissionDenied
    );
    // A second endpoint with the same model gets a prefixed public name.
    let other = w.endpoint(&admin).await;
    w.catalog.sync_models(&admin, other.id, &w.c).await.unwrap();
    let names: Vec<String> = w
        .catalog
        .list_models(&admin)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.name)
        .collect();
    assert!(
        names.contains(&format!("{}/llama-3", other.name)),
        "{names:?}"
    );
    // Endpoints in use cannot be deleted.
    assert_eq!(
        code(w.catalog.delete_endpoint(&admin, endpoint.id, &w.c).await),
        ErrorCode::Conflict
    );
}

#[tokio::test]
async fn restricted_models_need_an_approved_subscription() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let user = w.user("user", &[Role::User]).await;
    let open = w.model(&admin, "small", false).await;
    let locked = w.model(&admin, "large", true).await;
    let s = w.catalog.subscribe(&user, open.id, &w.c).await.unwrap();
    assert_eq!(s.status, SubscriptionStatus::Active);
    let s = w.catalog.subscribe(&user, locked.id, &w.c).await.unwrap();
    assert_eq!(s.status, SubscriptionStatus::Pending);
    assert_eq!(
        code(w.catalog.subscribe(&user, locked.id, &w.c).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            w.catalog
                .decide_subscription(&user, s.id, Decision::Approve, None, &w.c)
                .await
        ),
        ErrorCode::NotFound
    );
    let pending = w
        .catalog
        .list_subscriptions(&admin, true, Some(SubscriptionStatus::Pending))
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    let approved = w
        .catalog
        .decide_subscription(&admin, s.id, Decision::Approve, Some("ok".into()), &w.c)
        .await
        .unwrap();
    assert_eq!(approved.status, SubscriptionStatus::Active);
    let suspended = w
        .catalog
        .decide_subscription(&admin, s.id, Decision::Suspend, None, &w.c)
        .await
        .unwrap();
    assert_eq!(suspended.status, SubscriptionStatus::Suspended);
    w.catalog
        .cancel_subscription(&user, s.id, &w.c)
        .await
        .unwrap();
    assert_eq!(
        w.catalog
            .list_subscriptions(&user, false, None)
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn aliases_are_global_or_own() {
    let w = world();
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let ada = w.user("ada", &[Role::User]).await;
    let bob = w.user("bob", &[Role::User]).await;
    let model = w.model(&admin, "gpt-4o", false).await;
    let global = w
        .catalog
        .create_alias(&admin, "default", model.id, true, &w.c)
        .await
        .unwrap();
    assert_eq!(
        code(
            w.catalog
                .create_alias(&ada, "x", model.id, true, &w.c)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    let own = w
        .catalog
        .create_alias(&ada, "mine", model.id, false, &w.c)
        .await
        .unwrap();
    // Names of models cannot be aliases; the same user alias twice conflicts,
    // another user's alias of the same name does not.
    assert_eq!(
        code(
            w.catalog
                .create_alias(&ada, "gpt-4o", model.id, false, &w.c)
                .await
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            w.catalog
                .create_alias(&ada, "mine", model.id, false, &w.c)
                .await
        ),
        ErrorCode::Conflict
    );
    w.catalog
        .create_alias(&bob, "mine", model.id, false, &w.c)
        .await
        .unwrap();
    let seen: Vec<_> = w
        .catalog
        .list_aliases(&ada)
        .await
        .unwrap()
        .into_iter()
        .map(|a| a.id)
        .collect();
    assert_eq!(seen, [global.id, own.id]);
    assert_eq!(
        code(w.catalog.change_alias(&bob, own.id, None, &w.c).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(w.catalog.change_alias(&ada, global.id, None, &w.c).await),
        ErrorCode::PermissionDenied
    );
    w.catalog
        .change_alias(&ada, own.id, None, &w.c)
        .await
        .unwrap();
    // Deleting the model takes its aliases along.
    w.catalog
        .delete_model(&admin, model.id, &w.c)
        .await
        .unwrap();
    assert!(w.catalog.list_aliases(&admin).await.unwrap().is_empty());
}
