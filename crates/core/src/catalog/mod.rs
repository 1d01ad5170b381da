//! The model catalogue: credentials (secrets sealed at rest), inference
//! endpoints, models, aliases and subscriptions, with the rules of SPEC §2.
//!
//! Platform admins manage everything here and read-only admins read it.
//! Users read the enabled models, manage their own aliases and subscriptions.
//! Provider accounts manage their own `oauth_account` credentials. An
//! organization's owners and admins manage its credentials. What a caller may
//! not read is `not_found`.

mod aliases;
mod credentials;
pub mod declared;
mod endpoints;
pub mod health;
mod models;
mod subscriptions;
use crate::model::catalog as model;

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_storage::{Store, Tx, TxError};

use self::model::{
    Alias, ApiFlavour, Credential, CredentialKind, CredentialScope, Endpoint, IdRef, Model,
    Subscription, SubscriptionStatus,
};
use crate::access::{OrgAction, load_access};
use crate::audit::{AuditLog, Audited, NewEvent};
use crate::codec::{abort, read_all};
use crate::common::REDACTED;
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
#[derive(Clone)]
pub struct NewCredential {
    pub scope: Option<CredentialScope>,
    pub name: String,
    pub kind: CredentialKind,
    /// A JSON object, e.g. `{"api_key": "…"}`.
    pub secret: serde_json::Value,
    pub metadata: serde_json::Value,
}

/// Changes to a credential; `None` keeps a field.
#[derive(Clone, Default)]
pub struct CredentialChange {
    pub name: Option<String>,
    pub secret: Option<serde_json::Value>,
    pub metadata: Option<serde_json::Value>,
}

// The secrets these carry in plaintext never reach a log through `{:?}`.
impl std::fmt::Debug for NewCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewCredential")
            .field("scope", &self.scope)
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("secret", &REDACTED)
            .field("metadata", &self.metadata)
            .finish()
    }
}

impl std::fmt::Debug for CredentialChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CredentialChange")
            .field("name", &self.name)
            .field("secret", &self.secret.as_ref().map(|_| REDACTED))
            .field("metadata", &self.metadata)
            .finish()
    }
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

    /// The audit event of `action`, to stage in the change's transaction.
    fn event(
        &self,
        actor: &User,
        action: &str,
        target: (&str, Id),
        organization: Option<Id>,
        client: &ClientInfo,
        details: serde_json::Value,
    ) -> crate::audit::AuditEvent {
        self.audit.event(
            NewEvent::by_user(actor, action, client)
                .on(target.0, target.1)
                .in_org(organization)
                .with(details),
        )
    }

    // ---- credentials ----

    // ---- endpoints ----

    // ---- models ----

    // ---- aliases ----

    // ---- subscriptions ----
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

impl crate::audit::Audited for CatalogService {
    fn audit_parts(&self) -> (&Store, &AuditLog) {
        (&self.store, &self.audit)
    }
}
