//! Vaults and service clients (seed 001): vaults inside an organization with
//! grants to users, teams and clients; clients that authenticate with their
//! own Ed25519 keys. Token issuance is in [`tokens`].
//!
//! Vaults are managed by organization owners and admins and by managers of a
//! team with `manage_vaults`; clients by owners, admins and managers of a team
//! with `manage_keys`. Every member reads both.

pub mod jwt;
use crate::model::vaults as model;
#[cfg(test)]
mod tests;
pub mod tokens;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ed25519_dalek::pkcs8::{DecodePublicKey, EncodePrivateKey};
use gatehouse_storage::{Store, Tx, TxError};
use serde_json::json;

use self::model::{
    Certificate, CertificateRef, ClientRef, PendingSync, ServiceClient, SubjectKind, SyncState,
    SyncStatus, Vault, VaultGrant, VaultRef, VaultRole,
};
use crate::access::{OrgAction, load_access};
use crate::audit::{AuditLog, NewEvent};
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

/// Deletes the vaults, grants, service clients and certificates of an
/// organization being deleted, in its transaction; the policy engine learns
/// of each deleted vault through the sync outbox.
pub(crate) async fn delete_org_vaults(
    tx: &Tx,
    org_id: Id,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    for vault in read_all::<Vault>(tx, &keyspace::vaults(org_id)).await? {
        clear_vault(tx, org_id, vault.id).await?;
        if vault.sync.status != SyncStatus::NotConfigured {
            queue_sync(tx, org_id, vault.id, now).await?;
        }
    }
    for client in read_all::<ServiceClient>(tx, &keyspace::service_clients(org_id)).await? {
        clear_client(tx, org_id, client.id).await?;
    }
    Ok(())
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
    jwt::decode_public_key(text)
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

    async fn record(
        &self,
        actor: &User,
        client: &ClientInfo,
        action: &str,
        org: Id,
        target: (&str, String),
        details: serde_json::Value,
    ) {
        let event = NewEvent::by_user(actor, action, client)
            .on(target.0, target.1)
            .in_org(Some(org))
            .with(details);
        self.audit.record(event).await;
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

    /// Delivers every due vault's state to the policy engine (the leader runs
    /// this). A delivery confirms only the generation it carried; a failure is
    /// retried with a growing wait (at most five minutes) and shown on the
    /// vault as `failed` with its reason.
    pub async fn sync_pending(&self, engine: &dyn PolicyEngine) -> Result<SyncReport> {
        let now = self.env.clock.now();
        let due: Vec<PendingSync> = self
            .store
            .run(|tx| async move { read_all::<PendingSync>(&tx, &keyspace::vault_syncs()).await })
            .await?
            .into_iter()
            .filter(|p| p.generation > p.synced_generation && p.next_at <= now)
            .collect();
        let mut report = SyncReport::default();
        for pending in due {
            let state = self
                .store
                .run(|tx| {
                    let pending = &pending;
                    async move {
                        let vault = keyspace::vault(pending.org_id, pending.vault_id)
                            .get(&tx)
                            .await?;
                        let grants = match &vault {
                            Some(_) => {
                                read_all::<VaultGrant>(
                                    &tx,
                                    &keyspace::vault_grants(pending.vault_id),
                                )
                                .await?
                            }
                            None => Vec::new(),
                        };
                        Ok::<_, TxError<Error>>(VaultState {
                            vault_id: pending.vault_id,
                            org_id: pending.org_id,
                            name: vault.as_ref().map(|v| v.name.clone()).unwrap_or_default(),
                            deleted: vault.is_none(),
                            grants,
                            generation: pending.generation,
                        })
                    }
                })
                .await?;
            let outcome = engine.sync_vault(&state).await;
            let at = self.env.clock.now();
            match &outcome {
                Ok(()) => report.synced += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(vault = %pending.vault_id, error = %e, "vault sync failed; will retry");
                }
            }
            self.store
                .run(|tx| {
                    let (pending, outcome) = (&pending, &outcome);
                    async move {
                        let key = keyspace::vault_sync(pending.vault_id);
                        let Some(mut current) = key.get(&tx).await? else {
                            return Ok(());
                        };
                        let vault_key = keyspace::vault(pending.org_id, pending.vault_id);
                        let vault = vault_key.get(&tx).await?;
                        match outcome {
                            Ok(()) if current.generation == pending.generation => {
                                current.synced_generation = pending.generation;
                                current.attempts = 0;
                                current.last_error = None;
                                if vault.is_none() {
                                    // Deletion confirmed; the ID never returns.
                                    key.clear(&tx).await?;
                                } else {
                                    key.put(&tx, &current).await?;
                                }
                                if let Some(mut vault) = vault {
                                    vault.sync = SyncState {
                                        status: SyncStatus::Synced,
                                        reason: None,
                                        at,
                                    };
                                    vault_key.put(&tx, &vault).await?;
                                }
                            }
                            // Changed meanwhile: the newer state goes next round.
                            Ok(()) => {
                                current.synced_generation = pending.generation;
                                key.put(&tx, &current).await?;
                            }
                            Err(e) => {
                                current.attempts = current.attempts.saturating_add(1);
                                let wait = 1i64
                                    .checked_shl(current.attempts.min(16))
                                    .unwrap_or(MAX_SYNC_BACKOFF_SECS)
                                    .min(MAX_SYNC_BACKOFF_SECS);
                                current.next_at = at + chrono::Duration::seconds(wait);
                                current.last_error = Some(e.clone());
                                key.put(&tx, &current).await?;
                                if let Some(mut vault) = vault {
                                    vault.sync = SyncState {
                                        status: SyncStatus::Failed,
                                        reason: Some(e.clone()),
                                        at,
                                    };
                                    vault_key.put(&tx, &vault).await?;
                                }
                            }
                        }
                        Ok::<_, TxError<Error>>(())
                    }
                })
                .await?;
        }
        Ok(report)
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
            .store
            .run(|tx| {
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
            })
            .await?;
        self.record(
            actor,
            client,
            "vaults.create",
            org_id,
            ("vault", vault.id.to_string()),
            json!({"name": vault.name}),
        )
        .await;
        Ok(vault)
    }

    pub async fn list_vaults(&self, actor: &User, org_id: Id) -> Result<Vec<Vault>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                read_all::<Vault>(&tx, &keyspace::vaults(org_id)).await
            })
            .await?)
    }

    pub async fn get_vault(&self, actor: &User, org_id: Id, id: Id) -> Result<Vault> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                get_vault(&tx, org_id, id).await
            })
            .await?)
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
            .store
            .run(|tx| {
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
            })
            .await?;
        self.record(
            actor,
            client,
            "vaults.update",
            org_id,
            ("vault", id.to_string()),
            json!({"name": vault.name}),
        )
        .await;
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
        self.store
            .run(|tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageVaults)?;
                get_vault(&tx, org_id, id).await?;
                clear_vault(&tx, org_id, id).await?;
                // The engine learns of the deletion through the outbox.
                self.mark_changed(&tx, org_id, id).await.map(|_| ())
            })
            .await?;
        self.record(
            actor,
            client,
            "vaults.delete",
            org_id,
            ("vault", id.to_string()),
            json!({}),
        )
        .await;
        Ok(())
    }

    // ---- grants ----

    pub async fn list_grants(
        &self,
        actor: &User,
        org_id: Id,
        vault: Id,
    ) -> Result<Vec<VaultGrant>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                get_vault(&tx, org_id, vault).await?;
                read_all::<VaultGrant>(&tx, &keyspace::vault_grants(vault)).await
            })
            .await?)
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
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageVaults)?;
                let mut vault = get_vault(&tx, org_id, vault_id).await?;
                let exists = match kind {
                    SubjectKind::User => keyspace::org_member(org_id, subject)
                        .get(&tx)
                        .await?
                        .is_some(),
                    SubjectKind::Team => keyspace::team(org_id, subject).get(&tx).await?.is_some(),
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
            })
            .await?;
        self.record(
            actor,
            client,
            "vaults.grant",
            org_id,
            ("vault", vault_id.to_string()),
            json!({"subject_type": kind.as_str(), "subject_id": subject, "role": role.as_str()}),
        )
        .await;
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
        self.store
            .run(|tx| async move {
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
            })
            .await?;
        self.record(
            actor,
            client,
            "vaults.revoke_grant",
            org_id,
            ("vault", vault_id.to_string()),
            json!({"subject_type": kind.as_str(), "subject_id": subject}),
        )
        .await;
        Ok(())
    }

    // ---- service clients ----

    pub async fn create_client(
        &self,
        actor: &User,
        org_id: Id,
        spec: VaultSpec,
        client: &ClientInfo,
    ) -> Result<ServiceClient> {
        let name = parse_name(spec.name.as_deref().unwrap_or_default(), "client")?;
        let description = parse_description(spec.description.as_deref())?;
        let service = ServiceClient {
            id: self.env.ids.next_id(),
            org_id,
            name,
            description,
            created_at: self.env.clock.now(),
        };
        self.store
            .run(|tx| {
                let service = &service;
                async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageKeys)?;
                    keyspace::client_by_id(service.id)
                        .put(&tx, &ClientRef { org_id })
                        .await?;
                    keyspace::service_client(org_id, service.id)
                        .put(&tx, service)
                        .await
                }
            })
            .await?;
        self.record(
            actor,
            client,
            "clients.create",
            org_id,
            ("client", service.id.to_string()),
            json!({"name": service.name}),
        )
        .await;
        Ok(service)
    }

    pub async fn list_clients(&self, actor: &User, org_id: Id) -> Result<Vec<ServiceClient>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                read_all::<ServiceClient>(&tx, &keyspace::service_clients(org_id)).await
            })
            .await?)
    }

    pub async fn get_client(&self, actor: &User, org_id: Id, id: Id) -> Result<ServiceClient> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                get_client(&tx, org_id, id).await
            })
            .await?)
    }

    /// Deletes a client with its certificates and vault grants: its assertions
    /// stop working at once, its refresh tokens at their next use.
    pub async fn delete_client(
        &self,
        actor: &User,
        org_id: Id,
        id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.store
            .run(|tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageKeys)?;
                get_client(&tx, org_id, id).await?;
                let now = self.env.clock.now();
                forget_subject(&tx, org_id, SubjectKind::Client, id, now).await?;
                clear_client(&tx, org_id, id).await
            })
            .await?;
        self.record(
            actor,
            client,
            "clients.delete",
            org_id,
            ("client", id.to_string()),
            json!({}),
        )
        .await;
        Ok(())
    }

    // ---- certificates ----

    /// Adds a certificate. Returns it and, when Gatehouse generated the key
    /// pair, the private key as PKCS#8 PEM — shown this once.
    pub async fn add_certificate(
        &self,
        actor: &User,
        org_id: Id,
        client_id: Id,
        spec: CertificateSpec,
        client: &ClientInfo,
    ) -> Result<(Certificate, Option<String>)> {
        let kid = format!("ck_{}", self.env.random.alphanumeric(22));
        let (public, private_pem, sealed) = match spec.public_key.as_deref() {
            Some(text) => {
                if spec.keep_private_key {
                    return Err(Error::invalid_input(
                        "keep_private_key applies only to key pairs Gatehouse generates",
                    ));
                }
                (parse_public_key(text)?, None, None)
            }
            None => {
                let mut seed = [0u8; 32];
                self.env.random.fill(&mut seed);
                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                let pem = key
                    .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
                    .map_err(Error::internal)?
                    .to_string();
                let sealed = if spec.keep_private_key {
                    Some(self.keys.seal(
                        self.env.random.as_ref(),
                        &seed,
                        &Certificate::context(&kid),
                    )?)
                } else {
                    None
                };
                (key.verifying_key(), Some(pem), sealed)
            }
        };
        let cert = Certificate {
            kid: kid.clone(),
            client_id,
            org_id,
            public_key: jwt::encode_public_key(&public),
            private_key: sealed,
            created_at: self.env.clock.now(),
            revoked_at: None,
        };
        self.store
            .run(|tx| {
                let cert = &cert;
                async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageKeys)?;
                    get_client(&tx, org_id, client_id).await?;
                    keyspace::certificate_by_kid(&cert.kid)
                        .put(&tx, &CertificateRef { client_id, org_id })
                        .await?;
                    keyspace::certificate(client_id, &cert.kid)
                        .put(&tx, cert)
                        .await
                }
            })
            .await?;
        self.record(
            actor,
            client,
            "clients.add_certificate",
            org_id,
            ("client", client_id.to_string()),
            json!({"kid": kid, "generated": private_pem.is_some(), "kept": cert.private_key.is_some()}),
        )
        .await;
        Ok((cert, private_pem))
    }

    pub async fn list_certificates(
        &self,
        actor: &User,
        org_id: Id,
        client_id: Id,
    ) -> Result<Vec<Certificate>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                get_client(&tx, org_id, client_id).await?;
                read_all::<Certificate>(&tx, &keyspace::certificates(client_id)).await
            })
            .await?)
    }

    /// Revokes a certificate: assertions signed with it are refused from now on.
    pub async fn revoke_certificate(
        &self,
        actor: &User,
        org_id: Id,
        client_id: Id,
        kid: &str,
        client: &ClientInfo,
    ) -> Result<Certificate> {
        let now = self.env.clock.now();
        let cert = self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageKeys)?;
                get_client(&tx, org_id, client_id).await?;
                let key = keyspace::certificate(client_id, kid);
                let Some(mut cert) = key.get(&tx).await? else {
                    return abort(Error::not_found("certificate"));
                };
                if cert.revoked_at.is_none() {
                    cert.revoked_at = Some(now);
                    // The private key, if kept, is of no further use.
                    cert.private_key = None;
                    key.put(&tx, &cert).await?;
                }
                Ok(cert)
            })
            .await?;
        self.record(
            actor,
            client,
            "clients.revoke_certificate",
            org_id,
            ("client", client_id.to_string()),
            json!({"kid": kid}),
        )
        .await;
        Ok(cert)
    }

    /// Re-seals kept client private keys with the current key-encryption key.
    pub async fn reseal_all(&self) -> Result<usize> {
        let certs: Vec<(Id, String)> = self
            .store
            .run(|tx| async move {
                let range = keyspace::all_certificates();
                Ok::<_, TxError<Error>>(
                    read_all::<Certificate>(&tx, &range)
                        .await?
                        .into_iter()
                        .filter(|c| c.private_key.is_some())
                        .map(|c| (c.client_id, c.kid))
                        .collect(),
                )
            })
            .await?;
        let mut resealed = 0;
        for (client_id, kid) in certs {
            let keys = &self.keys;
            let random = self.env.random.as_ref();
            let kid = &kid;
            let changed = self
                .store
                .run(|tx| async move {
                    let key = keyspace::certificate(client_id, kid);
                    let Some(mut cert) = key.get(&tx).await? else {
                        return Ok(false);
                    };
                    let Some(sealed) = &cert.private_key else {
                        return Ok(false);
                    };
                    let context = Certificate::context(kid);
                    let Some(resealed) = keys
                        .reseal(random, sealed, &context)
                        .map_err(TxError::Abort)?
                    else {
                        return Ok(false);
                    };
                    cert.private_key = Some(resealed);
                    key.put(&tx, &cert).await?;
                    Ok::<_, TxError<Error>>(true)
                })
                .await?;
            resealed += usize::from(changed);
        }
        Ok(resealed)
    }
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
