//! Vaults, their grants, service clients with their certificates, and what
//! token issuance keeps: signing keys, spent assertion IDs, refresh tokens and
//! their families.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::record;
use crate::crypto::Sealed;
use crate::{Error, Id, Result};

/// A vault: a named space inside an organization whose access a downstream
/// policy engine enforces; Gatehouse owns who may hold which role in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vault {
    pub id: Id,
    pub org_id: Id,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Whether the downstream policy engine has this vault's current grants.
    pub sync: SyncState,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Vault, "vault");

/// Where a vault's grants stand with the downstream policy engine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncState {
    pub status: SyncStatus,
    /// Why the last attempt failed, or why there is nothing to sync to.
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Changed here, not yet delivered.
    Pending,
    Synced,
    Failed,
    /// This deployment names no policy engine.
    NotConfigured,
}

/// `("vault_by_id", vault)`: which organization a vault is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaultRef {
    pub org_id: Id,
}

record!(VaultRef, "vault reference");

/// `("vault_sync", vault)`: the outbox of vault sync, one per vault. Each
/// change raises `generation`; the vault is due while the engine has not
/// confirmed that generation. Kept after a sync (so generations keep
/// growing) until the engine confirms the vault's deletion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PendingSync {
    pub vault_id: Id,
    pub org_id: Id,
    /// Grows with every change; a sync confirms only the generation it sent.
    pub generation: u64,
    /// The newest generation the engine confirmed.
    #[serde(default)]
    pub synced_generation: u64,
    pub attempts: u32,
    pub next_at: DateTime<Utc>,
    pub last_error: Option<String>,
}

record!(PendingSync, "pending vault sync", no_feed);

/// A role in a vault; each includes the ones below it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaultRole {
    Reader,
    Writer,
    Manager,
    Admin,
}

impl VaultRole {
    pub fn as_str(self) -> &'static str {
        match self {
            VaultRole::Reader => "reader",
            VaultRole::Writer => "writer",
            VaultRole::Manager => "manager",
            VaultRole::Admin => "admin",
        }
    }

    /// The scopes a token with this role carries, space-separated.
    pub fn scope(self) -> &'static str {
        match self {
            VaultRole::Reader => "vault:read",
            VaultRole::Writer => "vault:read vault:write",
            VaultRole::Manager => "vault:read vault:write vault:manage",
            VaultRole::Admin => "vault:read vault:write vault:manage vault:admin",
        }
    }
}

/// Who a grant is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectKind {
    User,
    Team,
    Client,
}

impl SubjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SubjectKind::User => "user",
            SubjectKind::Team => "team",
            SubjectKind::Client => "client",
        }
    }

    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "user" => Ok(SubjectKind::User),
            "team" => Ok(SubjectKind::Team),
            "client" => Ok(SubjectKind::Client),
            _ => Err(Error::invalid_input(
                "subject_type must be user, team or client",
            )),
        }
    }
}

/// `("vault_grant", vault, subject kind, subject)`: a role in a vault.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VaultGrant {
    pub vault_id: Id,
    pub org_id: Id,
    pub subject_type: SubjectKind,
    pub subject_id: Id,
    pub role: VaultRole,
    pub created_at: DateTime<Utc>,
}

record!(VaultGrant, "vault grant");

/// A service client: an internal service that authenticates with its own
/// Ed25519 keys and gets vault tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceClient {
    pub id: Id,
    pub org_id: Id,
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub created_at: DateTime<Utc>,
}

record!(ServiceClient, "service client");

/// `("client_by_id", client)`: which organization a client is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientRef {
    pub org_id: Id,
}

record!(ClientRef, "client reference");

/// One of a client's public keys. Assertions name it by `kid`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Certificate {
    pub kid: String,
    pub client_id: Id,
    pub org_id: Id,
    /// The 32-byte Ed25519 public key, unpadded URL-safe base64 (as in a JWK).
    pub public_key: String,
    /// The private key, sealed, when the client asked Gatehouse to keep it.
    pub private_key: Option<Sealed>,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl Certificate {
    /// The associated data its sealed private key is bound to.
    pub fn context(kid: &str) -> String {
        format!("client_certificate:{kid}")
    }
}

record!(Certificate, "certificate");

/// `("certificate_by_kid", kid)`: whose key a `kid` is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CertificateRef {
    pub client_id: Id,
    pub org_id: Id,
}

record!(CertificateRef, "certificate reference");

/// One of Gatehouse's own signing keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SigningKey {
    pub kid: String,
    /// Unpadded URL-safe base64 of the 32-byte Ed25519 public key.
    pub public_key: String,
    /// The 32-byte seed, sealed.
    pub private_key: Sealed,
    pub created_at: DateTime<Utc>,
    /// When a newer key replaced it. Retired keys stay published until every
    /// token they signed has expired.
    pub retired_at: Option<DateTime<Utc>>,
}

impl SigningKey {
    pub fn context(kid: &str) -> String {
        format!("signing_key:{kid}")
    }
}

record!(SigningKey, "signing key");

/// `("assertion_jti", client, jti)`: an assertion ID already used, kept
/// until the assertion would have expired anyway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpentAssertion {
    pub expires_at: DateTime<Utc>,
}

record!(SpentAssertion, "spent assertion", no_feed);

/// Who a token was issued to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
pub enum Holder {
    User(Id),
    Client(Id),
}

impl Holder {
    pub fn id(self) -> Id {
        match self {
            Holder::User(id) | Holder::Client(id) => id,
        }
    }

    pub fn kind(self) -> &'static str {
        match self {
            Holder::User(_) => "user",
            Holder::Client(_) => "client",
        }
    }
}

/// `("refresh_token", sha256(token))`: a refresh token, usable once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefreshToken {
    pub family_id: Id,
    pub holder: Holder,
    pub org_id: Id,
    pub vault_id: Id,
    pub issued_at: DateTime<Utc>,
    /// The family's absolute expiry: rotation never extends it.
    pub expires_at: DateTime<Utc>,
    pub spent_at: Option<DateTime<Utc>>,
}

record!(RefreshToken, "refresh token", no_feed);

/// `("token_family", id)`: every refresh token from one sign-in or assertion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenFamily {
    pub id: Id,
    pub holder: Holder,
    pub vault_id: Id,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

record!(TokenFamily, "token family", no_feed);
