//! Accounts: users, their platform roles, and the validated values they hold.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::record;
use crate::{Error, Id, Result};

/// Platform roles (SPEC §2). Effective permissions are the union.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    AdminReadonly,
    RequestViewer,
    Provider,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::AdminReadonly => "admin_readonly",
            Role::RequestViewer => "request_viewer",
            Role::Provider => "provider",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserStatus {
    Active,
    Disabled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: Id,
    /// The primary email, as the user typed it.
    pub email: String,
    pub username: Option<String>,
    pub display_name: String,
    /// An argon2id PHC string; `None` for accounts that cannot sign in with a password.
    pub password_hash: Option<String>,
    pub roles: BTreeSet<Role>,
    pub status: UserStatus,
    pub email_verified: bool,
    /// Set for generated passwords: the user must choose a new one.
    pub must_change_password: bool,
    /// Per-minute limits and budget on the user's gateway use, across all
    /// their keys (platform admins set them).
    #[serde(default)]
    pub limits: UsageLimits,
    /// Every JWT carries the epoch it was issued in and is refused once this
    /// moves on: logout with a JWT, a password change or reset, disabling the
    /// user and an admin's "end every session" move it (SPEC §2).
    #[serde(default)]
    pub token_epoch: u64,
    /// The roles of `roles` held through single sign-on groups: recomputed at
    /// every SSO sign-in; the others were granted by hand and are kept.
    #[serde(default)]
    pub sso_roles: BTreeSet<Role>,
    /// A confirmed TOTP second factor: password sign-ins take a second step.
    #[serde(default)]
    pub totp_enabled: bool,
    /// How many passkeys the account has registered.
    #[serde(default)]
    pub passkey_count: u32,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Limits on one user's gateway use (SPEC §4 step 5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct UsageLimits {
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u32>,
    pub budget: Option<crate::model::keys::Budget>,
}

record!(User, "user");

impl User {
    /// A new active account with no password, no second factor, no limits
    /// and its email taken as verified; callers change what differs.
    pub fn new(
        id: Id,
        email: String,
        display_name: String,
        roles: BTreeSet<Role>,
        now: DateTime<Utc>,
    ) -> User {
        User {
            id,
            email,
            username: None,
            display_name,
            password_hash: None,
            roles,
            status: UserStatus::Active,
            email_verified: true,
            must_change_password: false,
            limits: UsageLimits::default(),
            token_epoch: 0,
            sso_roles: BTreeSet::new(),
            totp_enabled: false,
            passkey_count: 0,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn is_active(&self) -> bool {
        self.status == UserStatus::Active
    }

    /// Holds `admin`: manages the whole platform.
    pub fn is_platform_admin(&self) -> bool {
        self.roles.contains(&Role::Admin)
    }

    /// Holds `admin` or `admin_readonly`: reads everything an admin reads.
    pub fn is_platform_reader(&self) -> bool {
        self.is_platform_admin() || self.roles.contains(&Role::AdminReadonly)
    }

    /// Has a second factor: a confirmed TOTP app or a passkey.
    pub fn has_second_factor(&self) -> bool {
        self.totp_enabled || self.passkey_count > 0
    }

    /// A provider account: holds `provider` without `user` (SPEC §2).
    pub fn is_provider_account(&self) -> bool {
        !self.roles.contains(&Role::User) && self.roles.contains(&Role::Provider)
    }
}

/// A syntactically valid email address, kept as typed; [`Email::key`] is the
/// case-insensitive form used for uniqueness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(s: &str) -> Result<Self> {
        let s = s.trim();
        let invalid = || Error::invalid_input("not a valid email address");
        let (local, domain) = s.rsplit_once('@').ok_or_else(invalid)?;
        let ok = !local.is_empty()
            && local.len() <= 64
            && s.len() <= 254
            && !domain.is_empty()
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !s.chars().any(|c| c.is_whitespace() || c.is_control())
            && !local.contains('@');
        if !ok {
            return Err(invalid());
        }
        Ok(Email(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The lower-cased form, unique across accounts.
    pub fn key(&self) -> String {
        self.0.to_lowercase()
    }
}

/// A username: 3 to 32 of `a-z 0-9 _ . -`, starting with a letter, stored lower-case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(s: &str) -> Result<Self> {
        let lower = s.trim().to_lowercase();
        let ok = (3..=32).contains(&lower.len())
            && lower.starts_with(|c: char| c.is_ascii_lowercase())
            && lower
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if !ok {
            return Err(Error::invalid_input(
                "usernames are 3-32 characters of a-z, 0-9, '_', '.' or '-', starting with a letter",
            ));
        }
        Ok(Username(lower))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which user the first start created.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapRecord {
    pub admin_id: Id,
}

record!(BootstrapRecord, "bootstrap record");

/// An index entry pointing at a user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: Id,
}

record!(UserRef, "user index entry");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenPurpose {
    VerifyEmail,
    ResetPassword,
}

/// A single-use token sent by email; stored under the SHA-256 of the token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EmailToken {
    pub user_id: Id,
    /// The lower-cased address the token was sent to.
    pub email_key: String,
    pub purpose: TokenPurpose,
    pub expires_at_ms: i64,
}

record!(EmailToken, "email token", no_feed);

/// A user's address other than the primary one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserEmail {
    pub email: String,
    pub verified: bool,
    pub added_at: chrono::DateTime<chrono::Utc>,
}

record!(UserEmail, "email address");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_checked_and_keyed_case_insensitively() {
        let e = Email::parse("  Ada.Lovelace@Example.COM ").unwrap();
        assert_eq!(e.as_str(), "Ada.Lovelace@Example.COM");
        assert_eq!(e.key(), "ada.lovelace@example.com");
        for bad in [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@.com",
            "a b@c.d",
            "a@b@c",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn usernames_are_lower_case_and_restricted() {
        assert_eq!(Username::parse("Ada_L").unwrap().as_str(), "ada_l");
        for bad in ["ab", "1abc", "has space", "ünï", &"a".repeat(33)] {
            assert!(Username::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn roles_serialize_as_the_spec_names() {
        let json = serde_json::to_string(&[Role::AdminReadonly, Role::RequestViewer]).unwrap();
        assert_eq!(json, r#"["admin_readonly","request_viewer"]"#);
    }
}

/// An identity at a single sign-on provider, linked to one account; stored
/// under the provider and the provider's subject, and under the user.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SsoIdentity {
    pub user_id: Id,
    /// The provider's `id` in configuration.
    pub provider: String,
    /// The provider's stable subject (`sub`).
    pub subject: String,
    /// The email as the provider asserted it at the last sign-in.
    pub email: Option<String>,
    pub linked_at: DateTime<Utc>,
    pub last_sign_in_at: DateTime<Utc>,
}

record!(SsoIdentity, "SSO identity");

/// A single sign-on in progress: what the callback must find, single use,
/// stored under the SHA-256 of its `state` for a few minutes.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct SsoFlow {
    pub provider: String,
    /// The `nonce` the ID token must carry.
    pub nonce: String,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: String,
    /// Where the browser goes once signed in.
    pub redirect_to: Option<String>,
    /// How the sign-in is handed back: `session`, `token` or `cli`.
    pub mode: String,
    pub expires_at_ms: i64,
}

impl std::fmt::Debug for SsoFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SsoFlow")
            .field("provider", &self.provider)
            .field("redirect_to", &self.redirect_to)
            .field("mode", &self.mode)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish_non_exhaustive()
    }
}

record!(SsoFlow, "SSO flow", no_feed);
