//! Vaults and service clients (seed 001): vaults inside an organization with
//! grants to users, teams and clients; clients that authenticate with their
//! own Ed25519 keys. Token issuance is in [`tokens`].
//!
//! Vaults are managed by organization owners and admins and by managers of a
//! team with `manage_vaults`; clients by owners, admins and managers of a team
//! with `manage_keys`. Every member reads both.

pub mod jwt;
use crate::model::vaults as model;
mod clients;
mod sync;
#[cfg(test)]
mod tests;
pub mod tokens;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::DecodePublicKey;
use gatehouse_storage::{Store, Tx, TxError};
use serde_json::json;

use self::model::{
    Certificate, CertificateRef, ClientRef, PendingSync, ServiceClient, SubjectKind, SyncState,
    SyncStatus, Vault, VaultGrant, VaultRef, VaultRole,
};
use crate::access::{OrgAction, load_access, read_in_org};
use crate::audit::{AuditLog, Audited, NewEvent};
use crate::codec::{abort, read_all};
use crate::common::{parse_description, parse_name};
use crate::crypto::KeyRing;
use crate::model::accounts::User;
use crate::model::sessions::ClientInfo;
use crate::model::tenancy::UserTeamRef;
use crate::{Env, Error, Id, Result, keyspace};

/// A new vault or a change to one (`None` keeps a field).
#[derive(Debug, Clone, Default)]
pub struct VaultSpec {
    pub name: Option<String>,
    pub description: Option<String>,
}

/// A new certificate: the client's own public key, or none to have Gatehouse
/// generate a key pair (the private key is returned once).
#[derive(Debug, Clone, Default)]
pub struct CertificateSpec {
    /// Base64url of the 32 raw bytes, or a PEM `PUBLIC KEY`.
    pub public_key: Option<String>,
    /// Keep the generated private key, sealed, instead of forgetting it.
    pub keep_private_key: bool,
}

pub struct VaultService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
    keys: Arc<KeyRing>,
    /// Whether a policy engine is configured: changes then queue a sync.
    policy_engine: bool,
}

/// A vault's whole state as the policy engine receives it.
#[derive(Debug, Clone, PartialEq)]
pub struct VaultState {
    pub vault_id: Id,
    pub org_id: Id,
    pub name: String,
    /// The vault is gone: the engine drops it.
    pub deleted: bool,
    pub grants: Vec<VaultGrant>,
    pub generation: u64,
}

/// The deployment's policy engine, as vault sync needs it (the binary
/// implements it over gRPC).
#[async_trait::async_trait]
pub trait PolicyEngine: Send + Sync {
    /// Delivers `state`; an error is kept on the vault as the reason.
    async fn sync_vault(&self, state: &VaultState) -> std::result::Result<(), String>;
}

/// What one round of vault sync did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub synced: usize,
    pub failed: usize,
}

/// The longest wait between retries of a failing sync.
const MAX_SYNC_BACKOFF_SECS: i64 = 300;

/// The reason a vault shows while no policy engine is configured.
const NO_ENGINE: &str = "no policy engine is configured for this deployment";

/// The highest role `holder` has in `vault`: their own grant, or (for users)
/// any of their teams' grants. Users must still be members of the vault's
/// organization.
pub async fn effective_role(
    tx: &Tx,
    vault: &Vault,
    holder: model::Holder,
) -> Result<Option<VaultRole>, TxError<Error>> {
    match holder {
        model::Holder::Client(id) => Ok(keyspace::vault_grant(vault.id, SubjectKind::Client, id)
            .get(tx)
            .await?
            .map(|g| g.role)),
        model::Holder::User(id) => {
            if keyspace::org_member(vault.org_id, id)
                .get(tx)
                .await?
                .is_none()
            {
                return Ok(None);
            }
            let mut best = keyspace::vault_grant(vault.id, SubjectKind::User, id)
                .get(tx)
                .await?
                .map(|g| g.role);
            for team in read_all::<UserTeamRef>(tx, &keyspace::user_teams(id)).await? {
                if team.org_id != vault.org_id {
                    continue;
                }
                if let Some(grant) =
                    keyspace::vault_grant(vault.id, SubjectKind::Team, team.team_id)
                        .get(tx)
                        .await?
                {
                    best = best.max(Some(grant.role));
                }
            }
            Ok(best)
        }
    }
}

/// Raises the vault's generation in the sync outbox (due at once) and
/// returns its new sync state, `pending`.
async fn queue_sync(
    tx: &Tx,
    org_id: Id,
    vault_id: Id,
    now: DateTime<Utc>,
) -> Result<SyncState, TxError<Error>> {
    let key = keyspace::vault_sync(vault_id);
    let mut pending = key.get(tx).await?.unwrap_or(PendingSync {
        vault_id,
        org_id,
        generation: 0,
        synced_generation: 0,
        attempts: 0,
        next_at: now,
        last_error: None,
    });
    pending.generation += 1;
    pending.attempts = 0;
    pending.next_at = now;
    pending.last_error = None;
    key.put(tx, &pending).await?;
    Ok(SyncState {
        status: SyncStatus::Pending,
        reason: None,
        at: now,
    })
}

/// Removes every vault grant of a subject leaving `org` (a member removed or
/// leaving, a team deleted), in the caller's transaction, and queues a sync
/// of each vault that changed — unless the vault has no engine to sync to.
pub(crate) async fn forget_subject(
    tx: &Tx,
    org_id: Id,
    kind: SubjectKind,
    subject: Id,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    for mut vault in read_all::<Vault>(tx, &keyspace::vaults(org_id)).await? {
        let key = keyspace::vault_grant(vault.id, kind, subject);
        if key.get(tx).await?.is_none() {
            continue;
        }
        key.clear(tx).await?;
        if vault.sync.status != SyncStatus::NotConfigured {
            vault.sync = queue_sync(tx, org_id, vault.id, now).await?;
            keyspace::vault(org_id, vault.id).put(tx, &vault).await?;
        }
    }
    Ok(())
}

/// One page of the removal of a deleted organization's vaults and service
/// clients: up to `page` grants of its first vault (the vault itself, its
/// deletion queued for the policy engine, once none are left), else its
/// first client with its certificates. How many records went; 0: none left.
pub(crate) async fn remove_org_vaults_page(
    tx: &Tx,
    org_id: Id,
    page: usize,
    now: DateTime<Utc>,
) -> Result<usize, TxError<Error>> {
    use gatehouse_storage::RangeOptions;
    let first = tx
        .get_range(&keyspace::vaults(org_id), RangeOptions::limit(1))
        .await?;
    if let Some((_, value)) = first.entries.first() {
        let vault: Vault = crate::codec::decode(value).map_err(TxError::Abort)?;
        let grants = tx
            .get_range(&keyspace::vault_grants(vault.id), RangeOptions::limit(page))
            .await?;
        if !grants.entries.is_empty() {
            for grant in crate::codec::decode_values::<VaultGrant>(&grants.entries)
                .map_err(TxError::Abort)?
            {
                keyspace::vault_grant(vault.id, grant.subject_type, grant.subject_id)
                    .clear(tx)
                    .await?;
            }
            return Ok(grants.entries.len());
        }
        clear_vault(tx, org_id, vault.id).await?;
        if vault.sync.status != SyncStatus::NotConfigured {
            queue_sync(tx, org_id, vault.id, now).await?;
        }
        return Ok(1);
    }
    let first = tx
        .get_range(&keyspace::service_clients(org_id), RangeOptions::limit(1))
        .await?;
    if let Some((_, value)) = first.entries.first() {
        let client: ServiceClient = crate::codec::decode(value).map_err(TxError::Abort)?;
        clear_client(tx, org_id, client.id).await?;
        return Ok(1);
    }
    Ok(0)
}

/// Deletes a vault's record, index entry and grants.
async fn clear_vault(tx: &Tx, org_id: Id, id: Id) -> Result<(), TxError<Error>> {
    for grant in read_all::<VaultGrant>(tx, &keyspace::vault_grants(id)).await? {
        keyspace::vault_grant(id, grant.subject_type, grant.subject_id)
            .clear(tx)
            .await?;
    }
    keyspace::vault_by_id(id).clear(tx).await?;
    keyspace::vault(org_id, id).clear(tx).await
}

/// Deletes a client's record, index entry and certificates: its assertions
/// are refused from then on.
async fn clear_client(tx: &Tx, org_id: Id, id: Id) -> Result<(), TxError<Error>> {
    for cert in read_all::<Certificate>(tx, &keyspace::certificates(id)).await? {
        keyspace::certificate_by_kid(&cert.kid).clear(tx).await?;
        keyspace::certificate(id, &cert.kid).clear(tx).await?;
    }
    keyspace::client_by_id(id).clear(tx).await?;
    keyspace::service_client(org_id, id).clear(tx).await
}

/// Finds a vault by ID alone.
pub async fn find_vault(tx: &Tx, id: Id) -> Result<Option<Vault>, TxError<Error>> {
    let Some(r) = keyspace::vault_by_id(id).get(tx).await? else {
        return Ok(None);
    };
    keyspace::vault(r.org_id, id).get(tx).await
}

/// Reads a public key given as raw base64url or as a PEM `PUBLIC KEY`.
fn parse_public_key(text: &str) -> Result<ed25519_dalek::VerifyingKey> {
    let text = text.trim();
    if text.starts_with("-----BEGIN") {
        return ed25519_dalek::VerifyingKey::from_public_key_pem(text)
            .map_err(|_| Error::invalid_input("public_key is not an Ed25519 PEM public key"));
    }
    // Standard base64 too (what `base64` prints): the two alphabets differ
    // only in these two characters.
    jwt::decode_public_key(&text.replace('+', "-").replace('/', "_"))
}

impl VaultService {
    pub fn new(
        store: Store,
        env: Env,
        audit: Arc<AuditLog>,
        keys: Arc<KeyRing>,
        policy_engine: bool,
    ) -> Self {
        VaultService {
            store,
            env,
            audit,
            keys,
            policy_engine,
        }
    }

    /// The audit event of a change, to stage in its transaction.
    fn event(
        &self,
        actor: &User,
        client: &ClientInfo,
        action: &str,
        org: Id,
        target: (&str, String),
        details: serde_json::Value,
    ) -> crate::audit::AuditEvent {
        self.audit.event(
            NewEvent::by_user(actor, action, client)
                .on(target.0, target.1)
                .in_org(Some(org))
                .with(details),
        )
    }

    /// Queues a sync of the vault (in the changing transaction) and returns
    /// the vault's new sync state: `pending`, or `not_configured`.
    async fn mark_changed(
        &self,
        tx: &Tx,
        org_id: Id,
        vault_id: Id,
    ) -> Result<SyncState, TxError<Error>> {
        let now = self.env.clock.now();
        if !self.policy_engine {
            return Ok(SyncState {
                status: SyncStatus::NotConfigured,
                reason: Some(NO_ENGINE.into()),
                at: now,
            });
        }
        queue_sync(tx, org_id, vault_id, now).await
    }

    // ---- vaults ----

    pub async fn create_vault(
        &self,
        actor: &User,
        org_id: Id,
        spec: VaultSpec,
        client: &ClientInfo,
    ) -> Result<Vault> {
        let name = parse_name(spec.name.as_deref().unwrap_or_default(), "vault")?;
        let description = parse_description(spec.description.as_deref())?;
        let now = self.env.clock.now();
        let draft = Vault {
            id: self.env.ids.next_id(),
            org_id,
            name,
            description,
            sync: SyncState {
                status: SyncStatus::Pending,
                reason: None,
                at: now,
            },
            created_at: now,
            updated_at: now,
        };
        let vault = self
            .audited(
                |tx| {
                    let mut vault = draft.clone();
                    async move {
                        load_access(&tx, actor, org_id)
                            .await?
                            .require(OrgAction::ManageVaults)?;
                        ensure_unique_vault_name(&tx, org_id, &vault.name, None).await?;
                        keyspace::vault_by_id(vault.id)
                            .put(&tx, &VaultRef { org_id })
                            .await?;
                        vault.sync = self.mark_changed(&tx, org_id, vault.id).await?;
                        keyspace::vault(org_id, vault.id).put(&tx, &vault).await?;
                        Ok(vault)
                    }
                },
                |vault| {
                    self.event(
                        actor,
                        client,
                        "vaults.create",
                        org_id,
                        ("vault", vault.id.to_string()),
                        json!({"name": vault.name}),
                    )
                },
            )
            .await?;
        Ok(vault)
    }

    pub async fn list_vaults(&self, actor: &User, org_id: Id) -> Result<Vec<Vault>> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            read_all::<Vault>(&tx, &keyspace::vaults(org_id)).await
        })
        .await
    }

    pub async fn get_vault(&self, actor: &User, org_id: Id, id: Id) -> Result<Vault> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            get_vault(&tx, org_id, id).await
        })
        .await
    }

    pub async fn update_vault(
        &self,
        actor: &User,
        org_id: Id,
        id: Id,
        spec: VaultSpec,
        client: &ClientInfo,
    ) -> Result<Vault> {
        let name = spec
            .name
            .as_deref()
            .map(|n| parse_name(n, "vault"))
            .transpose()?;
        let description = spec
            .description
            .as_deref()
            .map(|d| parse_description(Some(d)))
            .transpose()?;
        let now = self.env.clock.now();
        let vault = self
            .audited(
                |tx| {
                    let (name, description) = (name.clone(), description.clone());
                    async move {
                        load_access(&tx, actor, org_id)
                            .await?
                            .require(OrgAction::ManageVaults)?;
                        let mut vault = get_vault(&tx, org_id, id).await?;
                        if let Some(name) = name {
                            ensure_unique_vault_name(&tx, org_id, &name, Some(id)).await?;
                            vault.name = name;
                        }
                        if let Some(description) = description {
                            vault.description = description;
                        }
                        vault.updated_at = now;
                        vault.sync = self.mark_changed(&tx, org_id, id).await?;
                        keyspace::vault(org_id, id).put(&tx, &vault).await?;
                        Ok(vault)
                    }
                },
                |vault| {
                    self.event(
                        actor,
                        client,
                        "vaults.update",
                        org_id,
                        ("vault", id.to_string()),
                        json!({"name": vault.name}),
                    )
                },
            )
            .await?;
        Ok(vault)
    }

    /// Deletes a vault and its grants. Tokens already issued for it stay valid
    /// until they expire; their refresh tokens stop working.
    pub async fn delete_vault(
        &self,
        actor: &User,
        org_id: Id,
        id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.audited(
            |tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageVaults)?;
                get_vault(&tx, org_id, id).await?;
                clear_vault(&tx, org_id, id).await?;
                // The engine learns of the deletion through the outbox.
                self.mark_changed(&tx, org_id, id).await.map(|_| ())
            },
            |_| {
                self.event(
                    actor,
                    client,
                    "vaults.delete",
                    org_id,
                    ("vault", id.to_string()),
                    json!({}),
                )
            },
        )
        .await?;
        Ok(())
    }

    // ---- grants ----

    pub async fn list_grants(
        &self,
        actor: &User,
        org_id: Id,
        vault: Id,
    ) -> Result<Vec<VaultGrant>> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            get_vault(&tx, org_id, vault).await?;
            read_all::<VaultGrant>(&tx, &keyspace::vault_grants(vault)).await
        })
        .await
    }

    /// Gives `subject` `role` in the vault, replacing any role it had.
    pub async fn put_grant(
        &self,
        actor: &User,
        org_id: Id,
        vault_id: Id,
        (kind, subject): (SubjectKind, Id),
        role: VaultRole,
        client: &ClientInfo,
    ) -> Result<VaultGrant> {
        let now = self.env.clock.now();
        let grant = self
            .audited(
                |tx| async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageVaults)?;
                    let mut vault = get_vault(&tx, org_id, vault_id).await?;
                    let exists = match kind {
                        SubjectKind::User => keyspace::org_member(org_id, subject)
                            .get(&tx)
                            .await?
                            .is_some(),
                        SubjectKind::Team => {
                            keyspace::team(org_id, subject).get(&tx).await?.is_some()
                        }
                        SubjectKind::Client => keyspace::service_client(org_id, subject)
                            .get(&tx)
                            .await?
                            .is_some(),
                    };
                    if !exists {
                        return abort(Error::invalid_input(format!(
                            "no {} with this ID in this organization",
                            kind.as_str()
                        )));
                    }
                    let grant = VaultGrant {
                        vault_id,
                        org_id,
                        subject_type: kind,
                        subject_id: subject,
                        role,
                        created_at: now,
                    };
                    keyspace::vault_grant(vault_id, kind, subject)
                        .put(&tx, &grant)
                        .await?;
                    vault.sync = self.mark_changed(&tx, org_id, vault_id).await?;
                    vault.updated_at = now;
                    keyspace::vault(org_id, vault_id).put(&tx, &vault).await?;
                    Ok(grant)
                },
                |_| {
                    let details = json!({
                        "subject_type": kind.as_str(),
                        "subject_id": subject,
                        "role": role.as_str(),
                    });
                    let target = ("vault", vault_id.to_string());
                    self.event(actor, client, "vaults.grant", org_id, target, details)
                },
            )
            .await?;
        Ok(grant)
    }

    pub async fn delete_grant(
        &self,
        actor: &User,
        org_id: Id,
        vault_id: Id,
        (kind, subject): (SubjectKind, Id),
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.env.clock.now();
        self.audited(
            |tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageVaults)?;
                let mut vault = get_vault(&tx, org_id, vault_id).await?;
                let key = keyspace::vault_grant(vault_id, kind, subject);
                if key.get(&tx).await?.is_none() {
                    return abort(Error::not_found("grant"));
                }
                key.clear(&tx).await?;
                vault.sync = self.mark_changed(&tx, org_id, vault_id).await?;
                vault.updated_at = now;
                keyspace::vault(org_id, vault_id).put(&tx, &vault).await
            },
            |_| {
                self.event(
                    actor,
                    client,
                    "vaults.revoke_grant",
                    org_id,
                    ("vault", vault_id.to_string()),
                    json!({"subject_type": kind.as_str(), "subject_id": subject}),
                )
            },
        )
        .await?;
        Ok(())
    }

    // ---- service clients ----

    // ---- certificates ----
}

async fn get_vault(tx: &Tx, org_id: Id, id: Id) -> Result<Vault, TxError<Error>> {
    match keyspace::vault(org_id, id).get(tx).await? {
        Some(v) => Ok(v),
        None => abort(Error::not_found("vault")),
    }
}

async fn get_client(tx: &Tx, org_id: Id, id: Id) -> Result<ServiceClient, TxError<Error>> {
    match keyspace::service_client(org_id, id).get(tx).await? {
        Some(c) => Ok(c),
        None => abort(Error::not_found("client")),
    }
}

async fn ensure_unique_vault_name(
    tx: &Tx,
    org_id: Id,
    name: &str,
    except: Option<Id>,
) -> Result<(), TxError<Error>> {
    let taken = read_all::<Vault>(tx, &keyspace::vaults(org_id))
        .await?
        .iter()
        .any(|v| Some(v.id) != except && v.name.to_lowercase() == name.to_lowercase());
    if taken {
        return abort(Error::conflict("a vault with this name exists here"));
    }
    Ok(())
}

impl crate::audit::Audited for VaultService {
    fn audit_parts(&self) -> (&Store, &AuditLog) {
        (&self.store, &self.audit)
    }
}
