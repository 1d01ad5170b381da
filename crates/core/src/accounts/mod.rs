//! Accounts: registration and the first admin (`registration`), password
//! sign-in with throttling (`login`), email addresses and resets (`emails`),
//! sessions and JWTs (`sessions`), single sign-on (`sso`), passkeys
//! (`passkeys`), the TOTP second factor (`mfa`) and the challenges between
//! their steps (`challenges`), and administration (`admin`). The service
//! and what those files share are here.
//!
//! Sign-in never tells whether an account exists: an unknown login, a disabled
//! account and a wrong password give the same error after the same work (a
//! password verification, against a dummy hash when there is no account).
//! Registration answers alike whether or not the email is taken.

mod admin;
mod challenges;
mod devices;
mod emails;
mod login;
pub mod mfa;
pub mod passkeys;
pub mod password;
mod registration;
mod sessions;
pub mod sso;
pub mod tokens;

use crate::model::accounts as model;
use crate::model::throttle;

use std::collections::BTreeSet;
use std::sync::Arc;

use gatehouse_storage::{Store, Tx, TxError};

use self::devices::Devices;
use self::model::{
    BootstrapRecord, Email, EmailToken, Role, TokenPurpose, User, UserEmail, UserRef, UserStatus,
    Username,
};
use self::password::{PasswordPolicy, Verified};
use self::tokens::{Claims, Tokens};
use crate::audit::{Actor, AuditLog, Audited, NewEvent, Outcome};
use crate::blocking::{self, BlockingPool};
use crate::codec::Key;
use crate::common::token_hash;
use crate::crypto::KeyRing;
use crate::model::sessions::{ClientInfo, Session, SessionKind, SessionPolicy, SessionRef};
use crate::{Env, Error, ErrorCode, Id, Result, keyspace};

/// One of a user's addresses, as listed.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailAddress {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

/// At most this many addresses per user.
pub const MAX_EMAILS: usize = 10;

/// Email verification tokens last a day; reset tokens an hour.
const VERIFY_TTL_MS: i64 = 24 * 3600 * 1000;
const RESET_TTL_MS: i64 = 3600 * 1000;

/// Account settings from configuration.
pub struct AccountSettings {
    pub jwt_secret: Vec<u8>,
    pub jwt_ttl_secs: i64,
    pub registration_enabled: bool,
    /// Lower-cased email domains whose accounts must sign in with single
    /// sign-on: their password sign-ins are refused.
    pub sso_required_domains: Vec<String>,
    pub password_policy: PasswordPolicy,
    pub sessions: SessionPolicy,
    /// Holders of `admin` must have a second factor (a TOTP app or a passkey)
    /// before they may act.
    pub mfa_required_for_admins: bool,
    /// Where passkeys are bound; `None`: passkeys are off.
    pub passkeys: Option<passkeys::RelyingParty>,
    /// The web console's address (`https://host[/base]`), for the links in
    /// emails; `None`: emails carry the token alone.
    pub console_url: Option<String>,
}

/// An account an admin creates.
pub struct AdminNewUser<'a> {
    pub email: &'a str,
    /// `None`: generate one (returned once; must be changed at first sign-in).
    pub password: Option<&'a str>,
    pub username: Option<&'a str>,
    pub display_name: Option<&'a str>,
    /// A provider account: holds `provider` alone, so it cannot create keys or
    /// call the gateway.
    pub provider: bool,
}

impl<'a> AdminNewUser<'a> {
    /// A user account with `email` and `password` (`None`: generated), no
    /// username or display name of its own.
    pub fn new(email: &'a str, password: Option<&'a str>) -> Self {
        AdminNewUser {
            email,
            password,
            username: None,
            display_name: None,
            provider: false,
        }
    }
}

/// The first admin, when this start created it.
pub struct Bootstrapped {
    pub admin: User,
    /// Set when no password was configured: shown once, to be changed at first login.
    pub generated_password: Option<String>,
}

/// An active token, as [`AccountService::introspect`] describes it.
pub struct Introspection {
    pub user: User,
    /// Unix seconds.
    pub expires_at: i64,
    /// `jwt` or `session`.
    pub kind: &'static str,
}

/// Changes the stored account inside `tx` (nothing when it is gone): for
/// fields other operations keep in step with their own records.
async fn change_user(
    tx: &Tx,
    user_id: Id,
    change: impl FnOnce(&mut User),
) -> Result<(), TxError<Error>> {
    let key = keyspace::user(user_id);
    if let Some(mut user) = key.get(tx).await? {
        change(&mut user);
        key.put(tx, &user).await?;
    }
    Ok(())
}

/// Deletes a session and its entry in the user's session list.
async fn end_session(
    tx: &gatehouse_storage::Tx,
    token_hash: &[u8],
    session: &Session,
) -> Result<(), TxError<Error>> {
    keyspace::session(token_hash).clear(tx).await?;
    keyspace::session_by_user(session.user_id, session.id)
        .clear(tx)
        .await
}

/// What a completed sign-in hands back.
pub enum Grant {
    /// A JWT.
    Token(String),
    /// A session (browser or command line) and its token.
    Session(Session, String),
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Grant::Token(_) => f.write_str("Token(***)"),
            Grant::Session(session, _) => write!(f, "Session({}, ***)", session.id),
        }
    }
}

/// Filters for [`AccountService::list_users`].
#[derive(Debug, Clone, Default)]
pub struct UserFilter {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
    pub text: Option<String>,
}

/// What [`AccountService::update_account`] changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct UserChange {
    pub display_name: Option<String>,
    pub roles: Option<BTreeSet<Role>>,
    pub status: Option<UserStatus>,
    /// The user's gateway limits and budget (platform admins, not on themselves).
    pub limits: Option<model::UsageLimits>,
}

/// The roles an account may hold: `user` always, except a provider account,
/// which holds `provider` alone (SPEC §2).
fn check_roles(account: &User, roles: &BTreeSet<Role>) -> Result<()> {
    if account.is_provider_account() {
        if roles != &BTreeSet::from([Role::Provider]) {
            return Err(Error::invalid_input(
                "a provider account holds the provider role alone",
            ));
        }
    } else if !roles.contains(&Role::User) {
        return Err(Error::invalid_input(
            "every account holds the user role; it cannot be removed",
        ));
    }
    Ok(())
}

/// Most users one page holds.
pub const MAX_USER_PAGE: usize = crate::page::MAX_LIMIT + 1;

/// A display name: trimmed, 1 to 100 characters, no control characters.
fn parse_display_name(name: &str) -> Result<String> {
    crate::common::parse_name(name, "display")
}

/// The display name given, or the email's local part when none is.
fn display_name_for(given: Option<&str>, email: &Email) -> Result<String> {
    // Blank is absent — when it would pass as a name otherwise: control
    // characters are refused, even at the ends, and so is a blank longer
    // than a name may be.
    match given.filter(|d| crate::common::trimmed_text(d, 100) != Some("")) {
        Some(name) => parse_display_name(name),
        None => Ok(email
            .as_str()
            .split('@')
            .next()
            .unwrap_or_default()
            .to_string()),
    }
}

/// JWTs have three dot-separated parts; session tokens have none.
fn is_jwt(token: &str) -> bool {
    token.matches('.').count() == 2
}

/// The answer to every failed sign-in.
fn bad_credentials() -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        "invalid email, username or password",
    )
}

pub struct AccountService {
    store: Store,
    audit: Arc<AuditLog>,
    env: Env,
    tokens: Tokens,
    devices: Devices,
    pool: Arc<dyn BlockingPool>,
    registration_enabled: bool,
    sso_required_domains: Vec<String>,
    policy: PasswordPolicy,
    sessions: SessionPolicy,
    mfa_required_for_admins: bool,
    passkeys: Option<passkeys::RelyingParty>,
    console_url: Option<String>,
    /// Seals TOTP secrets.
    keys: Arc<KeyRing>,
}

/// Sessions are not rewritten on every request: `last_seen_at` moves only
/// when it is older than this.
const TOUCH_INTERVAL_SECS: i64 = 60;

/// What a new account starts with.
struct NewUser {
    email: Email,
    username: Option<Username>,
    display_name: String,
    password_hash: Option<String>,
    roles: BTreeSet<Role>,
    must_change_password: bool,
    /// The address was verified elsewhere (a single sign-on provider vouched for it).
    email_verified: bool,
}

impl AccountService {
    pub fn new(
        store: Store,
        env: Env,
        pool: Arc<dyn BlockingPool>,
        audit: Arc<AuditLog>,
        settings: AccountSettings,
        keys: Arc<KeyRing>,
    ) -> Self {
        AccountService {
            audit,
            tokens: Tokens::new(
                &settings.jwt_secret,
                settings.jwt_ttl_secs,
                env.clock.clone(),
            ),
            devices: Devices::new(&settings.jwt_secret),
            store,
            env,
            pool,
            registration_enabled: settings.registration_enabled,
            sso_required_domains: settings.sso_required_domains,
            policy: settings.password_policy,
            sessions: settings.sessions,
            mfa_required_for_admins: settings.mfa_required_for_admins,
            passkeys: settings.passkeys,
            console_url: settings
                .console_url
                .map(|url| url.trim_end_matches('/').to_string()),
            keys,
        }
    }

    /// Records an attempt that changed nothing (a failure or refusal), or a
    /// sign-in, in a transaction of its own.
    async fn audit(
        &self,
        actor: Actor,
        action: &str,
        outcome: Outcome,
        client: &ClientInfo,
        details: serde_json::Value,
    ) {
        let event = self.event(actor, action, outcome, client, details);
        self.audit.write(event).await;
    }

    /// The audit event of a change, to stage in its transaction.
    fn event(
        &self,
        actor: Actor,
        action: &str,
        outcome: Outcome,
        client: &ClientInfo,
        details: serde_json::Value,
    ) -> crate::audit::AuditEvent {
        self.audit.event(NewEvent {
            actor,
            action,
            outcome,
            target: None,
            organization: None,
            client,
            details,
        })
    }

    /// Whether anyone may register (`auth.registration_enabled`).
    pub fn registration_enabled(&self) -> bool {
        self.registration_enabled
    }

    pub fn token_ttl_secs(&self) -> i64 {
        self.tokens.ttl_secs()
    }

    /// A JWT for `user` without a password, for the command line run where
    /// the store is (`gatehouse users …` with no server URL): whoever can open
    /// the store and its secrets holds every account already.
    pub fn token_for_operator(&self, user: &User) -> Result<String> {
        self.tokens.issue(user)
    }

    async fn hash_password(&self, password: &str) -> Result<String> {
        let mut salt = [0u8; 16];
        self.env.random.fill(&mut salt);
        let password = password.to_string();
        blocking::run(self.pool.as_ref(), move || password::hash(&password, &salt)).await?
    }

    async fn verify_password(&self, password: &str, stored: Option<&str>) -> Result<Verified> {
        let password = password.to_string();
        let stored = stored.map_or_else(|| password::DUMMY_HASH.clone(), str::to_string);
        blocking::run(self.pool.as_ref(), move || {
            password::verify(&password, &stored)
        })
        .await
    }
}

#[cfg(test)]
mod tests;

impl crate::audit::Audited for AccountService {
    fn audit_parts(&self) -> (&Store, &AuditLog) {
        (&self.store, &self.audit)
    }
}
