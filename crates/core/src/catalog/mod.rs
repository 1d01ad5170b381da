//! The model catalogue: credentials (secrets sealed at rest), inference
//! endpoints, models, aliases and subscriptions, with the rules of SPEC §2.
//!
//! Platform admins manage everything here and read-only admins read it.
//! Users read the enabled models, manage their own aliases and subscriptions.
//! Provider accounts manage their own `oauth_account` credentials. An
//! organization's owners and admins manage its credentials. What a caller may
//! not read is `not_found`.

pub mod health;
use crate::model::catalog as model;

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_storage::{Store, Tx, TxError};

use self::model::{
    Alias, ApiFlavour, Credential, CredentialKind, CredentialScope, Endpoint, IdRef, Model,
    Subscription, SubscriptionStatus,
};
use crate::access::{OrgAction, load_access};
use crate::audit::{AuditLog, NewEvent};
use crate::codec::{abort, read_all};
use crate::crypto::KeyRing;
use crate::model::accounts::{Role, User};
use crate::model::sessions::ClientInfo;
use crate::{Env, Error, ErrorCode, Id, Result, keyspace};

/// A model an endpoint offers, as its model list names it.
#[derive(Debug, Clone, PartialEq)]
pub struct UpstreamModel {
    pub name: String,
    pub provider: Option<String>,
    pub context_length: Option<u32>,
}

/// Reads an endpoint's model list (`GET /v1/models`). The binary supplies the
/// HTTP implementation; core stays free of I/O.
#[async_trait]
pub trait ModelLister: Send + Sync {
    /// `secret` is the endpoint credential's decrypted secret data, if any.
    async fn list_models(
        &self,
        endpoint: &Endpoint,
        secret: Option<&serde_json::Value>,
    ) -> Result<Vec<UpstreamModel>>;

    /// Whether the endpoint answers `GET /v1/models` at all: any answer but a
    /// server error or a refusal of the credential counts (some servers have
    /// no model list); `Err` says why not.
    async fn probe(
        &self,
        endpoint: &Endpoint,
        secret: Option<&serde_json::Value>,
    ) -> std::result::Result<(), String> {
        self.list_models(endpoint, secret)
            .await
            .map(drop)
            .map_err(|e| e.message().to_string())
    }
}

/// A lister for deployments without outbound HTTP: every sync fails clearly.
pub struct NoLister;

#[async_trait]
impl ModelLister for NoLister {
    async fn list_models(
        &self,
        _: &Endpoint,
        _: Option<&serde_json::Value>,
    ) -> Result<Vec<UpstreamModel>> {
        Err(Error::new(
            ErrorCode::Unavailable,
            "model sync is not available in this build",
        ))
    }
}

/// A new credential. Without `scope`: the platform's for admins, the
/// caller's own for provider accounts.
#[derive(Debug, Clone)]
pub struct NewCredential {
    pub scope: Option<CredentialScope>,
    pub name: String,
    pub kind: CredentialKind,
    /// A JSON object, e.g. `{"api_key": "…"}`.
    pub secret: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// Changes to a credential; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct CredentialChange {
    pub name: Option<String>,
    pub secret: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
}

/// An endpoint's settings; on update `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct EndpointSpec {
    pub name: Option<String>,
    pub base_url: Option<String>,
    pub flavour: Option<ApiFlavour>,
    /// `Some(None)` removes the credential.
    pub credential_id: Option<Option<Id>>,
    /// `Some(None)` removes the proxy.
    pub proxy_url: Option<Option<String>>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
}

/// A model's settings; on update `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    pub name: Option<String>,
    pub endpoint_id: Option<Id>,
    pub upstream_name: Option<String>,
    pub provider: Option<String>,
    pub context_length: Option<Option<u32>>,
    pub input_cost_per_token: Option<f64>,
    pub output_cost_per_token: Option<f64>,
    pub enabled: Option<bool>,
    pub restricted: Option<bool>,
}

/// What a sync changed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SyncReport {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

/// What an admin does with a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Approve,
    Deny,
    Suspend,
}

pub const DEFAULT_CONNECT_TIMEOUT_MS: u64 = 5_000;
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 300_000;

fn require_admin(user: &User) -> Result<()> {
    if !user.is_platform_admin() {
        let message = if user.is_platform_reader() {
            "read-only admins change nothing"
        } else {
            "only platform admins manage the catalogue"
        };
        return Err(Error::permission_denied(message));
    }
    Ok(())
}

fn require_reader(user: &User) -> Result<()> {
    if !user.is_platform_reader() {
        return Err(Error::permission_denied("only platform admins read this"));
    }
    Ok(())
}

fn require_user_role(user: &User) -> Result<()> {
    if !user.roles.contains(&Role::User) {
        return Err(Error::permission_denied(
            "provider accounts manage their provider credentials only",
        ));
    }
    Ok(())
}

fn check_secret(secret: &serde_json::Value) -> Result<()> {
    match secret.as_object() {
        Some(map) if !map.is_empty() => Ok(()),
        _ => Err(Error::invalid_input(
            "secret is a non-empty JSON object, e.g. {\"api_key\": \"…\"}",
        )),
    }
}

fn check_metadata(metadata: &serde_json::Value) -> Result<()> {
    if !metadata.is_object() && !metadata.is_null() {
        return Err(Error::invalid_input("metadata is a JSON object"));
    }
    Ok(())
}

fn check_cost(cost: f64, what: &str) -> Result<f64> {
    if !cost.is_finite() || cost < 0.0 {
        return Err(Error::invalid_input(format!(
            "{what} is a non-negative number of US dollars per token"
        )));
    }
    Ok(cost)
}

fn check_timeout(ms: u64, what: &str) -> Result<u64> {
    if !(1..=3_600_000).contains(&ms) {
        return Err(Error::invalid_input(format!(
            "{what} is 1 to 3600000 milliseconds"
        )));
    }
    Ok(ms)
}

/// How a caller stands towards one credential.
enum CredentialRight {
    Hidden,
    Read,
    Write,
}

pub struct CatalogService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
    keys: Arc<KeyRing>,
    lister: Arc<dyn ModelLister>,
    health: Arc<health::HealthBoard>,
}

impl CatalogService {
    pub fn new(
        store: Store,
        env: Env,
        audit: Arc<AuditLog>,
        keys: Arc<KeyRing>,
        lister: Arc<dyn ModelLister>,
    ) -> Self {
        CatalogService {
            store,
            env,
            audit,
            keys,
            lister,
            health: Arc::default(),
        }
    }

    /// This instance's record of how endpoints answer (the gateway writes it).
    pub fn health(&self) -> &Arc<health::HealthBoard> {
        &self.health
    }

    /// The enabled endpoints that neither a call nor a probe has heard from in
    /// the last `idle_ms`: the ones worth probing.
    pub async fn endpoints_to_probe(&self, idle_ms: i64) -> Result<Vec<Endpoint>> {
        let since = self.env.clock.now_millis() - idle_ms;
        let all = self
            .store
            .run(|tx| async move { read_all::<Endpoint>(&tx, &keyspace::endpoints()).await })
            .await?;
        Ok(all
            .into_iter()
            .filter(|e| e.enabled && self.health.last_outcome_ms(e.id) <= since)
            .collect())
    }

    /// Asks the endpoint for its model list and records whether it answered;
    /// `Err` only when its credential cannot be opened.
    pub async fn probe(&self, endpoint: &Endpoint) -> Result<()> {
        // Taken before the call: an endpoint deleted meanwhile is not brought
        // back onto the board by its late answer.
        let cell = self.health.cell(endpoint.id);
        let secret = self.endpoint_secret(endpoint).await?;
        let answered = self.lister.probe(endpoint, secret.as_ref()).await;
        let now = self.env.clock.now_millis();
        match answered {
            Ok(()) => cell.success(now),
            Err(reason) => cell.failure(now, reason),
        }
        Ok(())
    }

    async fn endpoint_secret(&self, endpoint: &Endpoint) -> Result<Option<serde_json::Value>> {
        match endpoint.credential_id {
            Some(id) => Ok(Some(self.credential_secret(id).await?)),
            None => Ok(None),
        }
    }

    async fn audit(
        &self,
        actor: &User,
        action: &str,
        target: (&str, Id),
        organization: Option<Id>,
        client: &ClientInfo,
        details: serde_json::Value,
    ) {
        let event = NewEvent::by_user(actor, action, client)
            .on(target.0, target.1)
            .in_org(organization)
            .with(details);
        self.audit.record(event).await;
    }

    // ---- credentials ----

    /// What `user` may do with a credential of `scope`, read inside `tx`.
    async fn credential_right(
        tx: &Tx,
        user: &User,
        scope: CredentialScope,
    ) -> Result<CredentialRight, TxError<Error>> {
        let right = match scope {
            CredentialScope::Platform if user.is_platform_admin() => CredentialRight::Write,
            CredentialScope::Platform if user.is_platform_reader() => CredentialRight::Read,
            CredentialScope::Platform => CredentialRight::Hidden,
            CredentialScope::User { user_id } => {
                if user.is_platform_admin()
                    || (user.id == user_id && user.roles.contains(&Role::Provider))
                {
                    CredentialRight::Write
                } else if user.is_platform_reader() || user.id == user_id {
                    CredentialRight::Read
                } else {
                    CredentialRight::Hidden
                }
            }
            CredentialScope::Organization { org_id } => match load_access(tx, user, org_id).await {
                Ok(access) if access.allows(OrgAction::ManageCredentials) => CredentialRight::Write,
                Ok(access)
                    if access.platform_reader()
                        || access
                            .role
                            .is_some_and(|r| r >= crate::model::tenancy::OrgRole::Admin) =>
                {
                    CredentialRight::Read
                }
                Ok(_) => CredentialRight::Hidden,
                Err(TxError::Abort(e)) if e.code() == ErrorCode::NotFound => {
                    CredentialRight::Hidden
                }
                Err(e) => return Err(e),
            },
        };
        Ok(right)
    }

    /// Creates a credential; its secret is sealed before it is stored and is
    /// never returned.
    pub async fn create_credential(
        &self,
        actor: &User,
        new: NewCredential,
        client: &ClientInfo,
    ) -> Result<Credential> {
        let scope = match new.scope {
            Some(scope) => scope,
            None if actor.is_platform_admin() => CredentialScope::Platform,
            None => CredentialScope::User { user_id: actor.id },
        };
        if matches!(scope, CredentialScope::User { user_id } if user_id == actor.id)
            && !actor.is_platform_admin()
            && new.kind != CredentialKind::OauthAccount
        {
            return Err(Error::permission_denied(
                "provider accounts hold `oauth_account` credentials",
            ));
        }
        let name = crate::common::parse_name(&new.name, "credential")?;
        check_secret(&new.secret)?;
        check_metadata(&new.metadata)?;
        let now = self.env.clock.now();
        let id = self.env.ids.next_id();
        let plaintext = serde_json::to_vec(&new.secret).map_err(Error::internal)?;
        let credential = Credential {
            id,
            scope,
            name,
            kind: new.kind,
            secret: self.keys.seal(
                self.env.random.as_ref(),
                &plaintext,
                &Credential::context(id),
            )?,
            metadata: if new.metadata.is_null() {
                serde_json::json!({})
            } else {
                new.metadata
            },
            created_by: actor.id,
            created_at: now,
            updated_at: now,
        };
        self.store
            .run(|tx| {
                let credential = &credential;
                async move {
                    if let CredentialScope::User { user_id } = scope
                        && keyspace::user(user_id).get(&tx).await?.is_none()
                    {
                        return abort(Error::not_found("user"));
                    }
                    match Self::credential_right(&tx, actor, scope).await? {
                        CredentialRight::Write => {}
                        CredentialRight::Read => {
                            return abort(Error::permission_denied(
                                "your role does not allow managing these credentials",
                            ));
                        }
                        CredentialRight::Hidden => {
                            return abort(match scope {
                                CredentialScope::Organization { .. } => {
                                    Error::not_found("organization")
                                }
                                _ => Error::permission_denied(
                                    "your role does not allow creating this credential",
                                ),
                            });
                        }
                    }
                    keyspace::credential_by_scope(scope, credential.id)
                        .put(&tx, &IdRef { id: credential.id })
                        .await?;
                    keyspace::credential(credential.id)
                        .put(&tx, credential)
                        .await
                }
            })
            .await?;
        let org = match scope {
            CredentialScope::Organization { org_id } => Some(org_id),
            _ => None,
        };
        let details =
            serde_json::json!({"name": credential.name, "kind": credential.kind, "scope": scope});
        self.audit(
            actor,
            "credentials.create",
            ("credential", id),
            org,
            client,
            details,
        )
        .await;
        Ok(credential)
    }

    async fn credential_for(
        tx: &Tx,
        actor: &User,
        id: Id,
        write: bool,
    ) -> Result<Credential, TxError<Error>> {
        let Some(credential) = keyspace::credential(id).get(tx).await? else {
            return abort(Error::not_found("credential"));
        };
        match Self::credential_right(tx, actor, credential.scope).await? {
            CredentialRight::Hidden => abort(Error::not_found("credential")),
            CredentialRight::Read if write => abort(Error::permission_denied(
                "your role does not allow changing this credential",
            )),
            _ => Ok(credential),
        }
    }

    pub async fn get_credential(&self, actor: &User, id: Id) -> Result<Credential> {
        Ok(self
            .store
            .run(|tx| async move { Self::credential_for(&tx, actor, id, false).await })
            .await?)
    }

    /// The credentials the caller may read, oldest first; `scope` narrows it.
    pub async fn list_credentials(
        &self,
        actor: &User,
        scope: Option<CredentialScope>,
    ) -> Result<Vec<Credential>> {
        let found = self
            .store
            .run(|tx| async move {
                let all = read_all::<Credential>(&tx, &keyspace::credentials()).await?;
                let mut visible = Vec::new();
                for credential in all {
                    if scope.is_some_and(|s| s != credential.scope) {
                        continue;
                    }
                    if !matches!(
                        Self::credential_right(&tx, actor, credential.scope).await?,
                        CredentialRight::Hidden
                    ) {
                        visible.push(credential);
                    }
                }
                Ok::<_, TxError<Error>>(visible)
            })
            .await?;
        Ok(found)
    }

    /// Renames a credential, replaces its secret (sealed afresh) or metadata.
    pub async fn update_credential(
        &self,
        actor: &User,
        id: Id,
        change: CredentialChange,
        client: &ClientInfo,
    ) -> Result<Credential> {
        let name = change
            .name
            .as_deref()
            .map(|n| crate::common::parse_name(n, "credential"))
            .transpose()?;
        if let Some(secret) = &change.secret {
            check_secret(secret)?;
        }
        if let Some(metadata) = &change.metadata {
            check_metadata(metadata)?;
        }
        let sealed = match &change.secret {
            Some(secret) => {
                let plaintext = serde_json::to_vec(secret).map_err(Error::internal)?;
                Some(self.keys.seal(
                    self.env.random.as_ref(),
                    &plaintext,
                    &Credential::context(id),
                )?)
            }
            None => None,
        };
        let now = self.env.clock.now();
        let credential = self
            .store
            .run(|tx| {
                let (name, sealed, metadata) = (&name, &sealed, &change.metadata);
                async move {
                    let mut credential = Self::credential_for(&tx, actor, id, true).await?;
                    if let Some(name) = name {
                        credential.name = name.clone();
                    }
                    if let Some(sealed) = sealed {
                        credential.secret = sealed.clone();
                    }
                    if let Some(metadata) = metadata {
                        credential.metadata = metadata.clone();
                    }
                    credential.updated_at = now;
                    keyspace::credential(id).put(&tx, &credential).await?;
                    Ok(credential)
                }
            })
            .await?;
        let details = serde_json::json!({
            "name": credential.name,
            "secret_replaced": change.secret.is_some(),
        });
        self.audit(
            actor,
            "credentials.update",
            ("credential", id),
            org_of(credential.scope),
            client,
            details,
        )
        .await;
        Ok(credential)
    }

    /// Deletes a credential no endpoint uses. Provider accounts cannot delete
    /// (SPEC §2); platform admins and organization owners and admins can.
    pub async fn delete_credential(&self, actor: &User, id: Id, client: &ClientInfo) -> Result<()> {
        let credential = self
            .store
            .run(|tx| async move {
                let credential = Self::credential_for(&tx, actor, id, true).await?;
                if matches!(credential.scope, CredentialScope::User { .. })
                    && !actor.is_platform_admin()
                {
                    return abort(Error::permission_denied(
                        "a platform admin deletes provider credentials",
                    ));
                }
                let used = read_all::<Endpoint>(&tx, &keyspace::endpoints())
                    .await?
                    .into_iter()
                    .find(|e| e.credential_id == Some(id));
                if let Some(endpoint) = used {
                    return abort(Error::conflict(format!(
                        "endpoint {} uses this credential",
                        endpoint.name
                    )));
                }
                keyspace::credential_by_scope(credential.scope, id)
                    .clear(&tx)
                    .await?;
                keyspace::credential(id).clear(&tx).await?;
                Ok(credential)
            })
            .await?;
        self.audit(
            actor,
            "credentials.delete",
            ("credential", id),
            org_of(credential.scope),
            client,
            serde_json::json!({"name": credential.name}),
        )
        .await;
        Ok(())
    }

    /// A credential's secret data, for upstream calls. Never for clients.
    pub async fn credential_secret(&self, id: Id) -> Result<serde_json::Value> {
        let credential = self
            .store
            .run(|tx| async move { keyspace::credential(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("credential"))?;
        let plaintext = self
            .keys
            .open(&credential.secret, &Credential::context(id))?;
        serde_json::from_slice(&plaintext).map_err(Error::internal)
    }

    /// Re-seals every secret not sealed with the current key; returns how many
    /// were re-sealed. Each credential is its own transaction, so the work can
    /// be interrupted and run again.
    pub async fn reseal_all(&self) -> Result<usize> {
        let ids: Vec<Id> = self
            .store
            .run(|tx| async move {
                Ok::<_, TxError<Error>>(
                    read_all::<Credential>(&tx, &keyspace::credentials())
                        .await?
                        .into_iter()
                        .map(|c| c.id)
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
        let mut resealed = 0;
        for id in ids {
            let keys = &self.keys;
            let random = self.env.random.as_ref();
            let changed = self
                .store
                .run(|tx| async move {
                    let key = keyspace::credential(id);
                    let Some(mut credential) = key.get(&tx).await? else {
                        return Ok(false);
                    };
                    let context = Credential::context(id);
                    let Some(sealed) = keys
                        .reseal(random, &credential.secret, &context)
                        .map_err(TxError::Abort)?
                    else {
                        return Ok(false);
                    };
                    credential.secret = sealed;
                    key.put(&tx, &credential).await?;
                    Ok::<_, TxError<Error>>(true)
                })
                .await?;
            resealed += usize::from(changed);
        }
        Ok(resealed)
    }

    // ---- endpoints ----

    pub async fn create_endpoint(
        &self,
        actor: &User,
        spec: EndpointSpec,
        client: &ClientInfo,
    ) -> Result<Endpoint> {
        require_admin(actor)?;
        let now = self.env.clock.now();
        let name = crate::common::parse_name(spec.name.as_deref().unwrap_or_default(), "endpoint")?;
        let base_url = model::parse_url(
            spec.base_url
                .as_deref()
                .ok_or_else(|| Error::invalid_input("base_url is required"))?,
            "base_url",
        )?;
        let endpoint = Endpoint {
            id: self.env.ids.next_id(),
            name,
            base_url,
            flavour: spec.flavour.unwrap_or(ApiFlavour::Openai),
            credential_id: spec.credential_id.flatten(),
            proxy_url: spec
                .proxy_url
                .flatten()
                .map(|p| model::parse_url(&p, "proxy_url"))
                .transpose()?,
            connect_timeout_ms: check_timeout(
                spec.connect_timeout_ms
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
                "connect_timeout_ms",
            )?,
            request_timeout_ms: check_timeout(
                spec.request_timeout_ms
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS),
                "request_timeout_ms",
            )?,
            enabled: spec.enabled.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        self.store
            .run(|tx| {
                let endpoint = &endpoint;
                async move {
                    check_credential_exists(&tx, endpoint.credential_id).await?;
                    claim_name(
                        &tx,
                        keyspace::endpoint_by_name(&endpoint.name),
                        endpoint.id,
                        "an endpoint",
                    )
                    .await?;
                    keyspace::endpoint(endpoint.id).put(&tx, endpoint).await
                }
            })
            .await?;
        self.audit(
            actor,
            "endpoints.create",
            ("endpoint", endpoint.id),
            None,
            client,
            endpoint_details(&endpoint),
        )
        .await;
        Ok(endpoint)
    }

    pub async fn list_endpoints(&self, actor: &User) -> Result<Vec<Endpoint>> {
        require_reader(actor)?;
        Ok(self
            .store
            .run(|tx| async move { read_all::<Endpoint>(&tx, &keyspace::endpoints()).await })
            .await?)
    }

    pub async fn get_endpoint(&self, actor: &User, id: Id) -> Result<Endpoint> {
        require_reader(actor)?;
        self.endpoint(id).await
    }

    async fn endpoint(&self, id: Id) -> Result<Endpoint> {
        self.store
            .run(|tx| async move { keyspace::endpoint(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("endpoint"))
    }

    pub async fn update_endpoint(
        &self,
        actor: &User,
        id: Id,
        spec: EndpointSpec,
        client: &ClientInfo,
    ) -> Result<Endpoint> {
        require_admin(actor)?;
        let name = spec
            .name
            .as_deref()
            .map(|n| crate::common::parse_name(n, "endpoint"))
            .transpose()?;
        let base_url = spec
            .base_url
            .as_deref()
            .map(|u| model::parse_url(u, "base_url"))
            .transpose()?;
        let proxy_url = spec
            .proxy_url
            .clone()
            .map(|p| p.map(|p| model::parse_url(&p, "proxy_url")).transpose())
            .transpose()?;
        let connect = spec
            .connect_timeout_ms
            .map(|ms| check_timeout(ms, "connect_timeout_ms"))
            .transpose()?;
        let request = spec
            .request_timeout_ms
            .map(|ms| check_timeout(ms, "request_timeout_ms"))
            .transpose()?;
        let now = self.env.clock.now();
        let endpoint = self
            .store
            .run(|tx| {
                let (name, base_url, proxy_url, spec) = (&name, &base_url, &proxy_url, &spec);
                async move {
                    let key = keyspace::endpoint(id);
                    let Some(mut endpoint) = key.get(&tx).await? else {
                        return abort(Error::not_found("endpoint"));
                    };
                    if let Some(name) = name
                        && name != &endpoint.name
                    {
                        claim_name(&tx, keyspace::endpoint_by_name(name), id, "an endpoint")
                            .await?;
                        keyspace::endpoint_by_name(&endpoint.name)
                            .clear(&tx)
                            .await?;
                        endpoint.name = name.clone();
                    }
                    if let Some(url) = base_url {
                        endpoint.base_url = url.clone();
                    }
                    if let Some(flavour) = spec.flavour {
                        endpoint.flavour = flavour;
                    }
                    if let Some(credential) = spec.credential_id {
                        check_credential_exists(&tx, credential).await?;
                        endpoint.credential_id = credential;
                    }
                    if let Some(proxy) = proxy_url {
                        endpoint.proxy_url = proxy.clone();
                    }
                    if let Some(ms) = connect {
                        endpoint.connect_timeout_ms = ms;
                    }
                    if let Some(ms) = request {
                        endpoint.request_timeout_ms = ms;
                    }
                    if let Some(enabled) = spec.enabled {
                        endpoint.enabled = enabled;
                    }
                    endpoint.updated_at = now;
                    key.put(&tx, &endpoint).await?;
                    Ok(endpoint)
                }
            })
            .await?;
        self.audit(
            actor,
            "endpoints.update",
            ("endpoint", id),
            None,
            client,
            endpoint_details(&endpoint),
        )
        .await;
        Ok(endpoint)
    }

    /// Deletes an endpoint no model uses.
    pub async fn delete_endpoint(&self, actor: &User, id: Id, client: &ClientInfo) -> Result<()> {
        require_admin(actor)?;
        let endpoint = self
            .store
            .run(|tx| async move {
                let Some(endpoint) = keyspace::endpoint(id).get(&tx).await? else {
                    return abort(Error::not_found("endpoint"));
                };
                let used = read_all::<Model>(&tx, &keyspace::models())
                    .await?
                    .into_iter()
                    .find(|m| m.endpoint_id == id);
                if let Some(model) = used {
                    return abort(Error::conflict(format!(
                        "model {} uses this endpoint",
                        model.name
                    )));
                }
                keyspace::endpoint_by_name(&endpoint.name)
                    .clear(&tx)
                    .await?;
                keyspace::endpoint(id).clear(&tx).await?;
                Ok(endpoint)
            })
            .await?;
        self.audit(
            actor,
            "endpoints.delete",
            ("endpoint", id),
            None,
            client,
            serde_json::json!({"name": endpoint.name}),
        )
        .await;
        self.health.forget(id);
        Ok(())
    }

    /// Reads the endpoint's model list and adds the models it does not know
    /// yet (disabled, so an admin sets prices and enables them) and updates
    /// what changed upstream. Running it again changes nothing.
    pub async fn sync_models(
        &self,
        actor: &User,
        endpoint_id: Id,
        client: &ClientInfo,
    ) -> Result<SyncReport> {
        require_admin(actor)?;
        let endpoint = self.endpoint(endpoint_id).await?;
        let cell = self.health.cell(endpoint.id);
        let secret = self.endpoint_secret(&endpoint).await?;
        let listed = self.lister.list_models(&endpoint, secret.as_ref()).await;
        match &listed {
            Ok(_) => cell.success(self.env.clock.now_millis()),
            Err(e) => cell.failure(self.env.clock.now_millis(), e.message()),
        }
        let listed = listed?;
        let now = self.env.clock.now();
        let mut report = SyncReport::default();
        for upstream in listed {
            let Ok(name) = model::parse_model_name(&upstream.name) else {
                continue;
            };
            let new_id = self.env.ids.next_id();
            let outcome = self
                .store
                .run(|tx| {
                    let (upstream, name, endpoint) = (&upstream, &name, &endpoint);
                    async move {
                        let existing = read_all::<Model>(&tx, &keyspace::models())
                            .await?
                            .into_iter()
                            .find(|m| m.endpoint_id == endpoint.id && &m.upstream_name == name);
                        if let Some(mut model) = existing {
                            let provider =
                                upstream.provider.clone().unwrap_or(model.provider.clone());
                            let context = upstream.context_length.or(model.context_length);
                            if provider == model.provider && context == model.context_length {
                                return Ok::<_, TxError<Error>>(0);
                            }
                            model.provider = provider;
                            model.context_length = context;
                            model.updated_at = now;
                            keyspace::model(model.id).put(&tx, &model).await?;
                            return Ok(1);
                        }
                        // A public name taken by another endpoint's model gets
                        // the endpoint's name in front.
                        let public = if keyspace::model_by_name(name).get(&tx).await?.is_some() {
                            format!("{}/{}", endpoint.name.replace(' ', "-"), name)
                        } else {
                            name.clone()
                        };
                        let model = Model {
                            id: new_id,
                            name: public.clone(),
                            endpoint_id: endpoint.id,
                            upstream_name: name.clone(),
                            provider: upstream.provider.clone().unwrap_or_default(),
                            context_length: upstream.context_length,
                            input_cost_per_token: 0.0,
                            output_cost_per_token: 0.0,
                            enabled: false,
                            restricted: false,
                            created_at: now,
                            updated_at: now,
                        };
                        claim_name(&tx, keyspace::model_by_name(&public), model.id, "a model")
                            .await?;
                        keyspace::model(model.id).put(&tx, &model).await?;
                        Ok(2)
                    }
                })
                .await?;
            match outcome {
                0 => report.unchanged += 1,
                1 => report.updated.push(name),
                _ => report.added.push(name),
            }
        }
        let details = serde_json::json!({"added": report.added, "updated": report.updated, "unchanged": report.unchanged});
        self.audit(
            actor,
            "endpoints.sync",
            ("endpoint", endpoint_id),
            None,
            client,
            details,
        )
        .await;
        Ok(report)
    }

    // ---- models ----

    pub async fn create_model(
        &self,
        actor: &User,
        spec: ModelSpec,
        client: &ClientInfo,
    ) -> Result<Model> {
        require_admin(actor)?;
        let name = model::parse_model_name(spec.name.as_deref().unwrap_or_default())?;
        let endpoint_id = spec
            .endpoint_id
            .ok_or_else(|| Error::invalid_input("endpoint_id is required"))?;
        let upstream = match spec.upstream_name.as_deref() {
            Some(u) => model::parse_model_name(u)?,
            None => name.clone(),
        };
        let now = self.env.clock.now();
        let model = Model {
            id: self.env.ids.next_id(),
            name,
            endpoint_id,
            upstream_name: upstream,
            provider: spec.provider.clone().unwrap_or_default(),
            context_length: spec.context_length.flatten(),
            input_cost_per_token: check_cost(
                spec.input_cost_per_token.unwrap_or(0.0),
                "input_cost_per_token",
            )?,
            output_cost_per_token: check_cost(
                spec.output_cost_per_token.unwrap_or(0.0),
                "output_cost_per_token",
            )?,
            enabled: spec.enabled.unwrap_or(true),
            restricted: spec.restricted.unwrap_or(false),
            created_at: now,
            updated_at: now,
        };
        self.store
            .run(|tx| {
                let model = &model;
                async move {
                    if keyspace::endpoint(model.endpoint_id)
                        .get(&tx)
                        .await?
                        .is_none()
                    {
                        return abort(Error::invalid_input("no endpoint has this endpoint_id"));
                    }
                    if keyspace::alias_global(&model.name)
                        .get(&tx)
                        .await?
                        .is_some()
                    {
                        return abort(Error::conflict("a global alias has this name"));
                    }
                    claim_name(
                        &tx,
                        keyspace::model_by_name(&model.name),
                        model.id,
                        "a model",
                    )
                    .await?;
                    keyspace::model(model.id).put(&tx, model).await
                }
            })
            .await?;
        self.audit(
            actor,
            "models.create",
            ("model", model.id),
            None,
            client,
            model_details(&model),
        )
        .await;
        Ok(model)
    }

    /// Every model for platform readers; the enabled ones for everyone else
    /// holding `user`.
    pub async fn list_models(&self, actor: &User) -> Result<Vec<Model>> {
        if !actor.is_platform_reader() {
            require_user_role(actor)?;
        }
        let mut models = self
            .store
            .run(|tx| async move { read_all::<Model>(&tx, &keyspace::models()).await })
            .await?;
        if !actor.is_platform_reader() {
            models.retain(|m| m.enabled);
        }
        Ok(models)
    }

    pub async fn get_model(&self, actor: &User, id: Id) -> Result<Model> {
        let model = self
            .store
            .run(|tx| async move { keyspace::model(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("model"))?;
        let visible =
            actor.is_platform_reader() || (model.enabled && actor.roles.contains(&Role::User));
        if !visible {
            return Err(Error::not_found("model"));
        }
        Ok(model)
    }

    pub async fn update_model(
        &self,
        actor: &User,
        id: Id,
        spec: ModelSpec,
        client: &ClientInfo,
    ) -> Result<Model> {
        require_admin(actor)?;
        let name = spec
            .name
            .as_deref()
            .map(model::parse_model_name)
            .transpose()?;
        let upstream = spec
            .upstream_name
            .as_deref()
            .map(model::parse_model_name)
            .transpose()?;
        let input = spec
            .input_cost_per_token
            .map(|c| check_cost(c, "input_cost_per_token"))
            .transpose()?;
        let output = spec
            .output_cost_per_token
            .map(|c| check_cost(c, "output_cost_per_token"))
            .transpose()?;
        let now = self.env.clock.now();
        let model = self
            .store
            .run(|tx| {
                let (name, upstream, spec) = (&name, &upstream, &spec);
                async move {
                    let key = keyspace::model(id);
                    let Some(mut model) = key.get(&tx).await? else {
                        return abort(Error::not_found("model"));
                    };
                    if let Some(name) = name
                        && name != &model.name
                    {
                        if keyspace::alias_global(name).get(&tx).await?.is_some() {
                            return abort(Error::conflict("a global alias has this name"));
                        }
                        claim_name(&tx, keyspace::model_by_name(name), id, "a model").await?;
                        keyspace::model_by_name(&model.name).clear(&tx).await?;
                        model.name = name.clone();
                    }
                    if let Some(endpoint) = spec.endpoint_id {
                        if keyspace::endpoint(endpoint).get(&tx).await?.is_none() {
                            return abort(Error::invalid_input("no endpoint has this endpoint_id"));
                        }
                        model.endpoint_id = endpoint;
                    }
                    if let Some(upstream) = upstream {
                        model.upstream_name = upstream.clone();
                    }
                    if let Some(provider) = &spec.provider {
                        model.provider = provider.trim().to_string();
                    }
                    if let Some(context) = spec.context_length {
                        model.context_length = context;
                    }
                    if let Some(cost) = input {
                        model.input_cost_per_token = cost;
                    }
                    if let Some(cost) = output {
                        model.output_cost_per_token = cost;
                    }
                    if let Some(enabled) = spec.enabled {
                        model.enabled = enabled;
                    }
                    if let Some(restricted) = spec.restricted {
                        model.restricted = restricted;
                    }
                    model.updated_at = now;
                    key.put(&tx, &model).await?;
                    Ok(model)
                }
            })
            .await?;
        self.audit(
            actor,
            "models.update",
            ("model", id),
            None,
            client,
            model_details(&model),
        )
        .await;
        Ok(model)
    }

    /// Deletes a model with its aliases and subscriptions.
    pub async fn delete_model(&self, actor: &User, id: Id, client: &ClientInfo) -> Result<()> {
        require_admin(actor)?;
        let model = self
            .store
            .run(|tx| async move {
                let Some(model) = keyspace::model(id).get(&tx).await? else {
                    return abort(Error::not_found("model"));
                };
                for alias in read_all::<Alias>(&tx, &keyspace::aliases()).await? {
                    if alias.model_id == id {
                        clear_alias(&tx, &alias).await?;
                    }
                }
                for sub in read_all::<Subscription>(&tx, &keyspace::subscriptions()).await? {
                    if sub.model_id == id {
                        clear_subscription(&tx, &sub).await?;
                    }
                }
                keyspace::model_by_name(&model.name).clear(&tx).await?;
                keyspace::model(id).clear(&tx).await?;
                Ok(model)
            })
            .await?;
        self.audit(
            actor,
            "models.delete",
            ("model", id),
            None,
            client,
            serde_json::json!({"name": model.name}),
        )
        .await;
        Ok(())
    }

    // ---- aliases ----

    /// Creates an alias: global (admins) or the caller's own (holders of `user`).
    pub async fn create_alias(
        &self,
        actor: &User,
        alias: &str,
        model_id: Id,
        global: bool,
        client: &ClientInfo,
    ) -> Result<Alias> {
        if global {
            require_admin(actor)?;
        } else {
            require_user_role(actor)?;
        }
        let name = model::parse_model_name(alias)?;
        let record = Alias {
            id: self.env.ids.next_id(),
            alias: name,
            model_id,
            owner_id: (!global).then_some(actor.id),
            created_at: self.env.clock.now(),
        };
        self.store
            .run(|tx| {
                let record = &record;
                async move {
                    let visible = keyspace::model(record.model_id)
                        .get(&tx)
                        .await?
                        .is_some_and(|m| m.enabled || actor.is_platform_reader());
                    if !visible {
                        return abort(Error::invalid_input("no model has this model_id"));
                    }
                    if keyspace::model_by_name(&record.alias)
                        .get(&tx)
                        .await?
                        .is_some()
                    {
                        return abort(Error::conflict("a model has this name"));
                    }
                    let index = match record.owner_id {
                        None => keyspace::alias_global(&record.alias),
                        Some(owner) => keyspace::alias_user(owner, &record.alias),
                    };
                    claim_name(&tx, index, record.id, "an alias").await?;
                    keyspace::alias(record.id).put(&tx, record).await
                }
            })
            .await?;
        self.audit(
            actor,
            "aliases.create",
            ("alias", record.id),
            None,
            client,
            serde_json::json!({"alias": record.alias, "model_id": record.model_id, "global": global}),
        )
        .await;
        Ok(record)
    }

    /// Global aliases and the caller's own; platform readers see every alias.
    pub async fn list_aliases(&self, actor: &User) -> Result<Vec<Alias>> {
        let mut aliases = self
            .store
            .run(|tx| async move { read_all::<Alias>(&tx, &keyspace::aliases()).await })
            .await?;
        if !actor.is_platform_reader() {
            if actor.is_provider_account() {
                return Err(Error::permission_denied(
                    "provider accounts manage their provider credentials only",
                ));
            }
            aliases.retain(|a| a.owner_id.is_none() || a.owner_id == Some(actor.id));
        }
        Ok(aliases)
    }

    /// Points an alias at another model, or deletes it (`model_id` `None`).
    /// Owners change their own; admins any.
    pub async fn change_alias(
        &self,
        actor: &User,
        id: Id,
        model_id: Option<Id>,
        client: &ClientInfo,
    ) -> Result<Option<Alias>> {
        let result = self
            .store
            .run(|tx| async move {
                let key = keyspace::alias(id);
                let Some(mut alias) = key.get(&tx).await? else {
                    return abort(Error::not_found("alias"));
                };
                let own = alias.owner_id == Some(actor.id);
                let visible = own || alias.owner_id.is_none() || actor.is_platform_reader();
                if !visible || actor.is_provider_account() {
                    return abort(Error::not_found("alias"));
                }
                if !own && !actor.is_platform_admin() {
                    return abort(Error::permission_denied(
                        "only platform admins change global or others' aliases",
                    ));
                }
                match model_id {
                    None => {
                        clear_alias(&tx, &alias).await?;
                        Ok(None)
                    }
                    Some(model_id) => {
                        if keyspace::model(model_id).get(&tx).await?.is_none() {
                            return abort(Error::invalid_input("no model has this model_id"));
                        }
                        alias.model_id = model_id;
                        key.put(&tx, &alias).await?;
                        Ok(Some(alias))
                    }
                }
            })
            .await?;
        let action = if model_id.is_some() {
            "aliases.update"
        } else {
            "aliases.delete"
        };
        self.audit(
            actor,
            action,
            ("alias", id),
            None,
            client,
            serde_json::json!({"model_id": model_id}),
        )
        .await;
        Ok(result)
    }

    // ---- subscriptions ----

    /// Subscribes the caller to a model: active at once, or pending an admin's
    /// approval for restricted models.
    pub async fn subscribe(
        &self,
        actor: &User,
        model_id: Id,
        client: &ClientInfo,
    ) -> Result<Subscription> {
        require_user_role(actor)?;
        let now = self.env.clock.now();
        let id = self.env.ids.next_id();
        let sub = self
            .store
            .run(|tx| async move {
                let Some(model) = keyspace::model(model_id).get(&tx).await? else {
                    return abort(Error::invalid_input("no model has this model_id"));
                };
                if !model.enabled {
                    return abort(Error::invalid_input("no model has this model_id"));
                }
                let index = keyspace::subscription_by_user(actor.id, model_id);
                if let Some(existing) = index.get(&tx).await? {
                    let status = keyspace::subscription(existing.id)
                        .get(&tx)
                        .await?
                        .map(|s| s.status);
                    return abort(Error::conflict(format!(
                        "you already have a subscription to this model ({})",
                        status.map_or("unknown".into(), |s| format!("{s:?}").to_lowercase())
                    )));
                }
                let sub = Subscription {
                    id,
                    user_id: actor.id,
                    model_id,
                    status: if model.restricted {
                        SubscriptionStatus::Pending
                    } else {
                        SubscriptionStatus::Active
                    },
                    requested_at: now,
                    decided_by: None,
                    decided_at: None,
                    reason: None,
                };
                index.put(&tx, &IdRef { id }).await?;
                keyspace::subscription(id).put(&tx, &sub).await?;
                Ok(sub)
            })
            .await?;
        self.audit(
            actor,
            "subscriptions.create",
            ("subscription", id),
            None,
            client,
            serde_json::json!({"model_id": model_id, "status": sub.status}),
        )
        .await;
        Ok(sub)
    }

    /// The caller's subscriptions, or every one (`all`, platform readers),
    /// optionally only those with `status`.
    pub async fn list_subscriptions(
        &self,
        actor: &User,
        all: bool,
        status: Option<SubscriptionStatus>,
    ) -> Result<Vec<Subscription>> {
        if all {
            require_reader(actor)?;
        }
        let mut subs = self
            .store
            .run(
                |tx| async move { read_all::<Subscription>(&tx, &keyspace::subscriptions()).await },
            )
            .await?;
        subs.retain(|s| (all || s.user_id == actor.id) && status.is_none_or(|st| s.status == st));
        Ok(subs)
    }

    /// An admin approves, denies or suspends a subscription.
    pub async fn decide_subscription(
        &self,
        actor: &User,
        id: Id,
        decision: Decision,
        reason: Option<String>,
        client: &ClientInfo,
    ) -> Result<Subscription> {
        if !actor.is_platform_reader() {
            return Err(Error::not_found("subscription"));
        }
        require_admin(actor)?;
        let reason = reason.map(|r| r.trim().chars().take(500).collect::<String>());
        let now = self.env.clock.now();
        let sub = self
            .store
            .run(|tx| {
                let reason = &reason;
                async move {
                    let key = keyspace::subscription(id);
                    let Some(mut sub) = key.get(&tx).await? else {
                        return abort(Error::not_found("subscription"));
                    };
                    sub.status = match decision {
                        Decision::Approve => SubscriptionStatus::Active,
                        Decision::Deny => SubscriptionStatus::Denied,
                        Decision::Suspend => SubscriptionStatus::Suspended,
                    };
                    sub.decided_by = Some(actor.id);
                    sub.decided_at = Some(now);
                    sub.reason = reason.clone();
                    key.put(&tx, &sub).await?;
                    Ok(sub)
                }
            })
            .await?;
        let action = match decision {
            Decision::Approve => "subscriptions.approve",
            Decision::Deny => "subscriptions.deny",
            Decision::Suspend => "subscriptions.suspend",
        };
        self.audit(
            actor,
            action,
            ("subscription", id),
            None,
            client,
            serde_json::json!({"user_id": sub.user_id, "model_id": sub.model_id, "reason": sub.reason}),
        )
        .await;
        Ok(sub)
    }

    /// The subscriber cancels a subscription (or an admin removes it).
    pub async fn cancel_subscription(
        &self,
        actor: &User,
        id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        let sub = self
            .store
            .run(|tx| async move {
                let Some(sub) = keyspace::subscription(id).get(&tx).await? else {
                    return abort(Error::not_found("subscription"));
                };
                if sub.user_id != actor.id {
                    if !actor.is_platform_reader() {
                        return abort(Error::not_found("subscription"));
                    }
                    if !actor.is_platform_admin() {
                        return abort(Error::permission_denied("read-only admins change nothing"));
                    }
                }
                clear_subscription(&tx, &sub).await?;
                Ok(sub)
            })
            .await?;
        self.audit(
            actor,
            "subscriptions.delete",
            ("subscription", id),
            None,
            client,
            serde_json::json!({"user_id": sub.user_id, "model_id": sub.model_id}),
        )
        .await;
        Ok(())
    }
}

fn org_of(scope: CredentialScope) -> Option<Id> {
    match scope {
        CredentialScope::Organization { org_id } => Some(org_id),
        _ => None,
    }
}

async fn check_credential_exists(tx: &Tx, id: Option<Id>) -> Result<(), TxError<Error>> {
    if let Some(id) = id
        && keyspace::credential(id).get(tx).await?.is_none()
    {
        return abort(Error::invalid_input("no credential has this credential_id"));
    }
    Ok(())
}

/// Takes a unique name for `id`; `conflict` if another entity holds it.
async fn claim_name(
    tx: &Tx,
    key: crate::codec::Key<IdRef>,
    id: Id,
    what: &str,
) -> Result<(), TxError<Error>> {
    match key.get(tx).await? {
        Some(held) if held.id != id => abort(Error::conflict(format!("{what} has this name"))),
        Some(_) => Ok(()),
        None => key.put(tx, &IdRef { id }).await,
    }
}

async fn clear_alias(tx: &Tx, alias: &Alias) -> Result<(), TxError<Error>> {
    match alias.owner_id {
        None => keyspace::alias_global(&alias.alias).clear(tx).await?,
        Some(owner) => keyspace::alias_user(owner, &alias.alias).clear(tx).await?,
    }
    keyspace::alias(alias.id).clear(tx).await
}

async fn clear_subscription(tx: &Tx, sub: &Subscription) -> Result<(), TxError<Error>> {
    keyspace::subscription_by_user(sub.user_id, sub.model_id)
        .clear(tx)
        .await?;
    keyspace::subscription(sub.id).clear(tx).await
}

fn endpoint_details(e: &Endpoint) -> serde_json::Value {
    serde_json::json!({
        "name": e.name,
        "base_url": e.base_url,
        "flavour": e.flavour,
        "credential_id": e.credential_id,
        "proxy_url": e.proxy_url,
        "enabled": e.enabled,
    })
}

fn model_details(m: &Model) -> serde_json::Value {
    serde_json::json!({
        "name": m.name,
        "endpoint_id": m.endpoint_id,
        "upstream_name": m.upstream_name,
        "enabled": m.enabled,
        "restricted": m.restricted,
        "input_cost_per_token": m.input_cost_per_token,
        "output_cost_per_token": m.output_cost_per_token,
    })
}

#[cfg(test)]
mod tests;
