//! Accounts: registration, the first admin, password sign-in and JWTs.
//!
//! Sign-in never tells whether an account exists: an unknown login, a disabled
//! account and a wrong password give the same error after the same work (a
//! password verification, against a dummy hash when there is no account).
//! Registration answers alike whether or not the email is taken.

use crate::model::accounts as model;
pub mod password;
use crate::model::sessions;
use crate::model::throttle;
pub mod tokens;

use std::collections::BTreeSet;
use std::sync::Arc;

use gatehouse_storage::{Store, TxError};

use self::model::{
    BootstrapRecord, Email, EmailToken, Role, TokenPurpose, User, UserEmail, UserRef, UserStatus,
    Username,
};
use self::password::{PasswordPolicy, Verified};
use self::sessions::{ClientInfo, Session, SessionKind, SessionPolicy, SessionRef};
use self::tokens::{Claims, Tokens};
use crate::audit::{Actor, AuditLog, NewEvent, Outcome};
use crate::blocking::{self, BlockingPool};
use crate::common::token_hash;
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
    pub password_policy: PasswordPolicy,
    pub sessions: SessionPolicy,
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
pub const MAX_USER_PAGE: usize = 200;

/// A display name: trimmed, 1 to 100 characters, no control characters.
fn parse_display_name(name: &str) -> Result<String> {
    crate::common::parse_name(name, "display")
}

/// The display name given, or the email's local part when none is.
fn display_name_for(given: Option<&str>, email: &Email) -> Result<String> {
    match given.filter(|d| !d.trim().is_empty()) {
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
    pool: Arc<dyn BlockingPool>,
    registration_enabled: bool,
    policy: PasswordPolicy,
    sessions: SessionPolicy,
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
}

impl AccountService {
    pub fn new(
        store: Store,
        env: Env,
        pool: Arc<dyn BlockingPool>,
        audit: Arc<AuditLog>,
        settings: AccountSettings,
    ) -> Self {
        AccountService {
            audit,
            tokens: Tokens::new(
                &settings.jwt_secret,
                settings.jwt_ttl_secs,
                env.clock.clone(),
            ),
            store,
            env,
            pool,
            registration_enabled: settings.registration_enabled,
            policy: settings.password_policy,
            sessions: settings.sessions,
        }
    }

    async fn audit(
        &self,
        actor: Actor,
        action: &str,
        outcome: Outcome,
        client: &ClientInfo,
        details: serde_json::Value,
    ) {
        self.audit
            .record(NewEvent {
                actor,
                action,
                outcome,
                target: None,
                organization: None,
                client,
                details,
            })
            .await;
    }

    pub fn token_ttl_secs(&self) -> i64 {
        self.tokens.ttl_secs()
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

    /// Creates the user and its index entries; `Conflict` if the email or
    /// username is taken.
    async fn insert(&self, new: NewUser) -> Result<User> {
        let now = self.env.clock.now();
        let user = User {
            id: self.env.ids.next_id(),
            email: new.email.as_str().to_string(),
            username: new.username.as_ref().map(|u| u.as_str().to_string()),
            display_name: new.display_name,
            password_hash: new.password_hash,
            roles: new.roles,
            status: UserStatus::Active,
            email_verified: false,
            must_change_password: new.must_change_password,
            limits: Default::default(),
            created_at: now,
            updated_at: now,
        };
        let email_key = new.email.key();
        // Every account that holds `user` gets a personal organization with it.
        let personal_org = user
            .roles
            .contains(&Role::User)
            .then(|| self.env.ids.next_id());
        self.store
            .run(|tx| {
                let (user, email_key, username) = (&user, &email_key, &new.username);
                async move {
                    if let Some(org_id) = personal_org {
                        crate::tenancy::create_personal_org(&tx, org_id, user, now).await?;
                    }
                    let by_email = keyspace::user_by_email(email_key);
                    if by_email.get(&tx).await?.is_some() {
                        return Err(TxError::Abort(Error::conflict(
                            "this email is already registered",
                        )));
                    }
                    if let Some(username) = username {
                        let by_name = keyspace::user_by_username(username);
                        if by_name.get(&tx).await?.is_some() {
                            return Err(TxError::Abort(Error::conflict("this username is taken")));
                        }
                        by_name.put(&tx, &UserRef { id: user.id }).await?;
                    }
                    by_email.put(&tx, &UserRef { id: user.id }).await?;
                    keyspace::user(user.id).put(&tx, user).await
                }
            })
            .await?;
        Ok(user)
    }

    /// Self-registration. Succeeds alike whether or not the email is taken, so
    /// that it reveals nothing; a taken email creates nothing.
    #[tracing::instrument(skip(self, password, client))]
    pub async fn register(
        &self,
        email: &str,
        password: &str,
        username: Option<&str>,
        display_name: Option<&str>,
        client: &ClientInfo,
    ) -> Result<()> {
        if !self.registration_enabled {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "self-registration is turned off on this server",
            ));
        }
        let email = Email::parse(email)?;
        let username = username.map(Username::parse).transpose()?;
        self.policy.check(password)?;
        let display_name = display_name_for(display_name, &email)?;
        // Hash before looking anything up, so both outcomes cost the same.
        let hash = self.hash_password(password).await?;
        let new = NewUser {
            display_name,
            email,
            username,
            password_hash: Some(hash),
            roles: BTreeSet::from([Role::User]),
            must_change_password: false,
        };
        let email_text = new.email.as_str().to_string();
        match self.insert(new).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "account registered");
                self.send_token(&user, TokenPurpose::VerifyEmail).await?;
                let details = serde_json::json!({"email": email_text});
                self.audit(
                    Actor::User { id: user.id },
                    "auth.register",
                    Outcome::Success,
                    client,
                    details,
                )
                .await;
                Ok(())
            }
            Err(e) if e.code() == ErrorCode::Conflict && e.message().contains("email") => {
                tracing::info!("registration for an existing email ignored");
                let details = serde_json::json!({"email": email_text, "reason": "email_taken"});
                let actor = Actor::Anonymous {
                    login: Some(email_text.clone()),
                };
                self.audit(actor, "auth.register", Outcome::Failure, client, details)
                    .await;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Creates the first admin if no start has done so. The password comes from
    /// configuration or is generated (then it must be changed at first login).
    pub async fn bootstrap_admin(
        &self,
        email: &str,
        password: Option<&str>,
    ) -> Result<Option<Bootstrapped>> {
        let marker = keyspace::bootstrap();
        if self
            .store
            .run(|tx| {
                let marker = &marker;
                async move { marker.get(&tx).await }
            })
            .await?
            .is_some()
        {
            return Ok(None);
        }
        let email = Email::parse(email)?;
        let generated = match password {
            Some(_) => None,
            None => Some(self.generate_password()),
        };
        let password = password.or(generated.as_deref()).unwrap_or_default();
        let hash = self.hash_password(password).await?;
        let admin = self
            .insert(NewUser {
                display_name: "Administrator".to_string(),
                email,
                username: Some(Username::parse("admin")?),
                password_hash: Some(hash),
                roles: BTreeSet::from([Role::User, Role::Admin]),
                must_change_password: generated.is_some(),
            })
            .await?;
        // Two instances starting on an empty shared store: the marker decides
        // which admin stands; the other one is removed.
        let kept = self
            .store
            .run(|tx| {
                let (marker, admin) = (&marker, &admin);
                async move {
                    if let Some(existing) = marker.get(&tx).await? {
                        return Ok::<_, TxError<Error>>(existing.admin_id == admin.id);
                    }
                    marker
                        .put(&tx, &BootstrapRecord { admin_id: admin.id })
                        .await?;
                    Ok(true)
                }
            })
            .await?;
        if !kept {
            return Ok(None);
        }
        let details = serde_json::json!({"user_id": admin.id, "email": admin.email, "generated_password": generated.is_some()});
        self.audit(
            Actor::System,
            "auth.bootstrap_admin",
            Outcome::Success,
            &ClientInfo::default(),
            details,
        )
        .await;
        Ok(Some(Bootstrapped {
            admin,
            generated_password: generated,
        }))
    }

    /// An admin creates an account: a regular user, or a provider account that
    /// holds `provider` alone (SPEC §2). Without a password one is generated,
    /// returned once, and must be changed at first sign-in.
    #[tracing::instrument(skip(self, admin, new, client), fields(admin = %admin.id))]
    pub async fn admin_create_user(
        &self,
        admin: &User,
        new: AdminNewUser<'_>,
        client: &ClientInfo,
    ) -> Result<(User, Option<String>)> {
        if !admin.roles.contains(&Role::Admin) {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "only platform admins can create users",
            ));
        }
        let email = Email::parse(new.email)?;
        let username = new.username.map(Username::parse).transpose()?;
        let generated = match new.password {
            Some(p) => {
                self.policy.check(p)?;
                None
            }
            None => Some(self.generate_password()),
        };
        let password = new.password.or(generated.as_deref()).unwrap_or_default();
        let hash = self.hash_password(password).await?;
        let roles = if new.provider {
            BTreeSet::from([Role::Provider])
        } else {
            BTreeSet::from([Role::User])
        };
        let display_name = display_name_for(new.display_name, &email)?;
        let user = self
            .insert(NewUser {
                display_name,
                email,
                username,
                password_hash: Some(hash),
                roles,
                must_change_password: generated.is_some(),
            })
            .await?;
        let details =
            serde_json::json!({"user_id": user.id, "email": user.email, "provider": new.provider});
        self.audit
            .record(NewEvent {
                actor: Actor::User { id: admin.id },
                action: "users.create",
                outcome: Outcome::Success,
                target: Some(("user", user.id.to_string())),
                organization: None,
                client,
                details,
            })
            .await;
        Ok((user, generated))
    }

    /// 20 characters from a 62-letter alphabet: about 119 bits.
    fn generate_password(&self) -> String {
        self.env.random.alphanumeric(20)
    }

    async fn find_by_login(&self, login: &str) -> Result<Option<User>> {
        let login = login.trim();
        let index = if login.contains('@') {
            match Email::parse(login) {
                Ok(email) => keyspace::user_by_email(&email.key()),
                Err(_) => return Ok(None),
            }
        } else {
            match Username::parse(login) {
                Ok(name) => keyspace::user_by_username(&name),
                Err(_) => return Ok(None),
            }
        };
        self.store
            .run(|tx| {
                let index = &index;
                async move {
                    match index.get(&tx).await? {
                        Some(entry) => keyspace::user(entry.id).get(&tx).await,
                        None => Ok(None),
                    }
                }
            })
            .await
            .map_err(Error::from)
    }

    /// Checks a login (email or username) and password; returns the user and a JWT.
    #[tracing::instrument(skip(self, password))]
    pub async fn login(
        &self,
        login: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<(User, String)> {
        let user = self.check_credentials(login, password, client).await?;
        let token = self.tokens.issue(&user)?;
        Ok((user, token))
    }

    /// Checks a login and password and starts a session; returns the session
    /// and its token (shown this once; only its hash is stored).
    #[tracing::instrument(skip(self, password, client))]
    pub async fn login_session(
        &self,
        login: &str,
        password: &str,
        kind: SessionKind,
        client: ClientInfo,
    ) -> Result<(User, Session, String)> {
        let user = self.check_credentials(login, password, &client).await?;
        let (session, token) = self.start_session(&user, kind, client).await?;
        Ok((user, session, token))
    }

    /// 256 random bits, base64url.
    /// Stores a token for `purpose` and queues the email carrying it, in one
    /// transaction.
    async fn send_token(&self, user: &User, purpose: TokenPurpose) -> Result<()> {
        self.send_token_to(user, &user.email.clone(), purpose).await
    }

    /// As [`Self::send_token`], to one of the user's addresses.
    async fn send_token_to(&self, user: &User, address: &str, purpose: TokenPurpose) -> Result<()> {
        let token = self.env.random.token();
        let (ttl, subject, body) = match purpose {
            TokenPurpose::VerifyEmail => (
                VERIFY_TTL_MS,
                "Verify your email address",
                format!(
                    "Hello {},\n\nconfirm this address for your Gatehouse account with this token (valid 24 hours):\n\ntoken: {token}\n\n(POST /api/v1/auth/emails/verify with {{\"token\": \"...\"}})\n",
                    user.display_name
                ),
            ),
            TokenPurpose::ResetPassword => (
                RESET_TTL_MS,
                "Reset your password",
                format!(
                    "Hello {},\n\nsomeone asked to reset the password of your Gatehouse account. If it was you, use this token within an hour:\n\ntoken: {token}\n\n(POST /api/v1/auth/reset/confirm with {{\"token\": \"...\", \"new_password\": \"...\"}})\nIf it was not you, ignore this email.\n",
                    user.display_name
                ),
            ),
        };
        let record = EmailToken {
            user_id: user.id,
            email_key: address.to_lowercase(),
            purpose,
            expires_at_ms: self.env.clock.now_millis() + ttl,
        };
        let hash = token_hash(&token);
        self.store
            .run(|tx| {
                let (record, hash, body, env, to) = (&record, &hash, &body, &self.env, address);
                async move {
                    keyspace::email_token(hash).put(&tx, record).await?;
                    crate::email::enqueue(&tx, env, to, subject, body).await
                }
            })
            .await?;
        Ok(())
    }

    /// Takes a single-use token: deletes it and returns it if it is live and
    /// for `purpose`.
    async fn take_token(&self, token: &str, purpose: TokenPurpose) -> Result<EmailToken> {
        let hash = token_hash(token.trim());
        let now = self.env.clock.now_millis();
        let found = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move {
                    let key = keyspace::email_token(hash);
                    let Some(record) = key.get(&tx).await? else {
                        return Ok(None);
                    };
                    if record.purpose != purpose {
                        return Ok(None);
                    }
                    key.clear(&tx).await?;
                    Ok::<_, TxError<Error>>((record.expires_at_ms > now).then_some(record))
                }
            })
            .await?;
        found.ok_or_else(|| Error::invalid_input("this token is invalid, used or expired"))
    }

    /// Marks the address a verification token was sent to as verified.
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let record = self.take_token(token, TokenPurpose::VerifyEmail).await?;
        let now = self.env.clock.now();
        self.store
            .run(|tx| {
                let record = &record;
                async move {
                    let key = keyspace::user(record.user_id);
                    let Some(mut user) = key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::invalid_input(
                            "this token is invalid, used or expired",
                        )));
                    };
                    if user.email.to_lowercase() == record.email_key {
                        user.email_verified = true;
                        user.updated_at = now;
                        key.put(&tx, &user).await?;
                    } else {
                        let secondary = keyspace::user_email(user.id, &record.email_key);
                        if let Some(mut address) = secondary.get(&tx).await? {
                            address.verified = true;
                            secondary.put(&tx, &address).await?;
                        }
                    }
                    Ok(())
                }
            })
            .await?;
        let details = serde_json::json!({"email": record.email_key});
        self.audit(
            Actor::User { id: record.user_id },
            "auth.email_verify",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    /// The user's addresses, primary first.
    pub async fn list_emails(&self, user_id: Id) -> Result<Vec<EmailAddress>> {
        let (user, others) = self
            .store
            .run(|tx| async move {
                let user = keyspace::user(user_id).get(&tx).await?;
                let others = tx
                    .get_range(
                        &keyspace::user_emails(user_id),
                        gatehouse_storage::RangeOptions::default(),
                    )
                    .await?;
                Ok::<_, TxError<Error>>((user, others))
            })
            .await?;
        let user = user.ok_or_else(|| Error::not_found("user"))?;
        let mut list = vec![EmailAddress {
            email: user.email,
            primary: true,
            verified: user.email_verified,
        }];
        for address in crate::codec::decode_values::<UserEmail>(&others.entries)? {
            list.push(EmailAddress {
                email: address.email,
                primary: false,
                verified: address.verified,
            });
        }
        Ok(list)
    }

    /// Adds an unverified address and emails it a verification token. An
    /// address that belongs to any account is answered alike and changes nothing.
    pub async fn add_email(&self, user_id: Id, email: &str, client: &ClientInfo) -> Result<()> {
        let email = Email::parse(email)?;
        let key = email.key();
        let now = self.env.clock.now();
        let added = self
            .store
            .run(|tx| {
                let (email, key) = (&email, &key);
                async move {
                    let index = keyspace::user_by_email(key);
                    if index.get(&tx).await?.is_some() {
                        return Ok(false);
                    }
                    let count = tx
                        .get_range(
                            &keyspace::user_emails(user_id),
                            gatehouse_storage::RangeOptions::default(),
                        )
                        .await?
                        .entries
                        .len();
                    if count + 1 >= MAX_EMAILS {
                        return Err(TxError::Abort(Error::invalid_input(format!(
                            "an account has at most {MAX_EMAILS} email addresses"
                        ))));
                    }
                    index.put(&tx, &UserRef { id: user_id }).await?;
                    let address = UserEmail {
                        email: email.as_str().to_string(),
                        verified: false,
                        added_at: now,
                    };
                    keyspace::user_email(user_id, key)
                        .put(&tx, &address)
                        .await?;
                    Ok::<_, TxError<Error>>(true)
                }
            })
            .await?;
        let details = serde_json::json!({"email": email.as_str(), "added": added});
        self.audit(
            Actor::User { id: user_id },
            "auth.email_add",
            Outcome::Success,
            client,
            details,
        )
        .await;
        if added {
            let user = self.get_user(user_id).await?;
            self.send_token_to(&user, email.as_str(), TokenPurpose::VerifyEmail)
                .await?;
        }
        Ok(())
    }

    /// Removes a non-primary address.
    pub async fn remove_email(&self, user_id: Id, email: &str, client: &ClientInfo) -> Result<()> {
        let key = Email::parse(email)?.key();
        self.store
            .run(|tx| {
                let key = &key;
                async move {
                    let user = keyspace::user(user_id).get(&tx).await?;
                    if user.is_some_and(|u| u.email.to_lowercase() == *key) {
                        return Err(TxError::Abort(Error::invalid_input(
                            "the primary address cannot be removed; make another one primary first",
                        )));
                    }
                    let address = keyspace::user_email(user_id, key);
                    if address.get(&tx).await?.is_none() {
                        return Err(TxError::Abort(Error::not_found("email address")));
                    }
                    address.clear(&tx).await?;
                    keyspace::user_by_email(key).clear(&tx).await
                }
            })
            .await?;
        let details = serde_json::json!({"email": key});
        self.audit(
            Actor::User { id: user_id },
            "auth.email_remove",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    /// Makes a verified address primary; the old primary becomes a secondary one.
    pub async fn make_primary(&self, user_id: Id, email: &str, client: &ClientInfo) -> Result<()> {
        let key = Email::parse(email)?.key();
        let now = self.env.clock.now();
        self.store
            .run(|tx| {
                let key = &key;
                async move {
                    let user_key = keyspace::user(user_id);
                    let Some(mut user) = user_key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("user")));
                    };
                    if user.email.to_lowercase() == *key {
                        return Ok(());
                    }
                    let address_key = keyspace::user_email(user_id, key);
                    let Some(address) = address_key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("email address")));
                    };
                    if !address.verified {
                        return Err(TxError::Abort(Error::invalid_input(
                            "verify this address before making it primary",
                        )));
                    }
                    address_key.clear(&tx).await?;
                    let old = UserEmail {
                        email: user.email.clone(),
                        verified: user.email_verified,
                        added_at: user.created_at,
                    };
                    keyspace::user_email(user_id, &old.email.to_lowercase())
                        .put(&tx, &old)
                        .await?;
                    user.email = address.email;
                    user.email_verified = true;
                    user.updated_at = now;
                    user_key.put(&tx, &user).await
                }
            })
            .await?;
        let details = serde_json::json!({"email": key});
        self.audit(
            Actor::User { id: user_id },
            "auth.email_primary",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    /// Emails a reset token if an active account has this address. Answers the
    /// same either way.
    pub async fn request_password_reset(&self, email: &str, client: &ClientInfo) -> Result<()> {
        let email = Email::parse(email)?;
        let user = self
            .find_by_login(email.as_str())
            .await?
            .filter(User::is_active);
        let details = serde_json::json!({"email": email.as_str(), "known": user.is_some()});
        let actor = Actor::Anonymous {
            login: Some(email.key()),
        };
        if let Some(user) = user {
            self.send_token(&user, TokenPurpose::ResetPassword).await?;
        }
        self.audit(
            actor,
            "auth.reset_request",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    /// Sets a new password with a reset token and ends every session.
    pub async fn reset_password(
        &self,
        token: &str,
        new_password: &str,
        client: &ClientInfo,
    ) -> Result<()> {
        self.policy.check(new_password)?;
        let hash = self.hash_password(new_password).await?;
        let record = self.take_token(token, TokenPurpose::ResetPassword).await?;
        self.update_user(record.user_id, |user| {
            user.password_hash = Some(hash.clone());
            user.must_change_password = false;
        })
        .await
        .map_err(|e| match e.code() {
            ErrorCode::NotFound => Error::invalid_input("this token is invalid, used or expired"),
            _ => e,
        })?;
        let ended = self.revoke_all_sessions(record.user_id, None).await?;
        let details = serde_json::json!({"sessions_ended": ended});
        self.audit(
            Actor::User { id: record.user_id },
            "auth.reset_password",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    async fn start_session(
        &self,
        user: &User,
        kind: SessionKind,
        client: ClientInfo,
    ) -> Result<(Session, String)> {
        let token = self.env.random.token();
        let now = self.env.clock.now();
        let session = Session {
            id: self.env.ids.next_id(),
            user_id: user.id,
            kind,
            created_at: now,
            last_seen_at: now,
            absolute_expires_at: now + chrono::Duration::seconds(self.sessions.absolute_secs),
            ip: client.ip.map(|ip| ip.chars().take(64).collect()),
            user_agent: client.user_agent.map(|ua| ua.chars().take(256).collect()),
        };
        let hash = token_hash(&token);
        self.store
            .run(|tx| {
                let (session, hash) = (&session, &hash);
                async move {
                    keyspace::session(hash).put(&tx, session).await?;
                    keyspace::session_by_user(session.user_id, session.id)
                        .put(
                            &tx,
                            &SessionRef {
                                token_hash: hash.clone(),
                            },
                        )
                        .await
                }
            })
            .await?;
        Ok((session, token))
    }

    /// The live session of `token` and its active user. Expired sessions are
    /// deleted when met.
    pub async fn authenticate_session(&self, token: &str) -> Result<(User, Session)> {
        let hash = token_hash(token);
        let now = self.env.clock.now();
        let policy = self.sessions;
        let found = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move {
                    let key = keyspace::session(hash);
                    let Some(mut session) = key.get(&tx).await? else {
                        return Ok(None);
                    };
                    if !session.is_live(now, &policy) {
                        end_session(&tx, hash, &session).await?;
                        return Ok(None);
                    }
                    let user = keyspace::user(session.user_id).get(&tx).await?;
                    if (now - session.last_seen_at).num_seconds() >= TOUCH_INTERVAL_SECS {
                        session.last_seen_at = now;
                        key.put(&tx, &session).await?;
                    }
                    Ok::<_, TxError<Error>>(user.map(|u| (u, session)))
                }
            })
            .await?;
        match found {
            Some((user, session)) if user.is_active() => Ok((user, session)),
            _ => Err(Error::new(
                ErrorCode::Unauthenticated,
                "the session is invalid or expired",
            )),
        }
    }

    /// The user's live sessions, newest first.
    pub async fn list_sessions(&self, user_id: Id) -> Result<Vec<Session>> {
        let now = self.env.clock.now();
        let policy = self.sessions;
        let mut sessions = self
            .store
            .run(|tx| async move {
                let refs = tx
                    .get_range(
                        &keyspace::sessions_of(user_id),
                        gatehouse_storage::RangeOptions::default(),
                    )
                    .await?;
                let mut sessions = Vec::new();
                for r in crate::codec::decode_values::<SessionRef>(&refs.entries)
                    .map_err(TxError::Abort)?
                {
                    if let Some(s) = keyspace::session(&r.token_hash).get(&tx).await? {
                        sessions.push(s);
                    }
                }
                Ok::<_, TxError<Error>>(sessions)
            })
            .await?;
        sessions.retain(|s| s.is_live(now, &policy));
        sessions.sort_by_key(|s| std::cmp::Reverse(s.created_at));
        Ok(sessions)
    }

    /// Ends one of the user's sessions; `not_found` if it is not theirs.
    pub async fn revoke_session(
        &self,
        user_id: Id,
        session_id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.store
            .run(|tx| async move {
                let index = keyspace::session_by_user(user_id, session_id);
                let Some(r) = index.get(&tx).await? else {
                    return Err(TxError::Abort(Error::not_found("session")));
                };
                keyspace::session(&r.token_hash).clear(&tx).await?;
                index.clear(&tx).await
            })
            .await?;
        let details = serde_json::json!({"session_id": session_id});
        self.audit(
            Actor::User { id: user_id },
            "auth.session_revoke",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    /// Ends the session of `token`, if it exists.
    pub async fn logout(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let hash = token_hash(token);
        let ended = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move {
                    let key = keyspace::session(hash);
                    let session = key.get(&tx).await?;
                    if let Some(session) = &session {
                        end_session(&tx, hash, session).await?;
                    }
                    Ok::<_, TxError<Error>>(session)
                }
            })
            .await?;
        if let Some(session) = ended {
            let details = serde_json::json!({"session_id": session.id});
            self.audit(
                Actor::User {
                    id: session.user_id,
                },
                "auth.logout",
                Outcome::Success,
                client,
                details,
            )
            .await;
        }
        Ok(())
    }

    /// Records the sign-out of a JWT holder. Nothing ends on the server: a
    /// JWT stays valid until it expires, which is why their lifetime is short.
    pub async fn logout_token(&self, user: &User, client: &ClientInfo) {
        let details = serde_json::json!({"kind": "jwt", "ended": false});
        self.audit(
            Actor::User { id: user.id },
            "auth.logout",
            Outcome::Success,
            client,
            details,
        )
        .await;
    }

    /// Ends every session of the user except `keep`; returns how many ended.
    pub async fn revoke_all_sessions(&self, user_id: Id, keep: Option<Id>) -> Result<usize> {
        Ok(self
            .store
            .run(|tx| async move {
                let refs = tx
                    .get_range(
                        &keyspace::sessions_of(user_id),
                        gatehouse_storage::RangeOptions::default(),
                    )
                    .await?;
                let mut ended = 0;
                for (key, value) in &refs.entries {
                    let (_, _, session_id): (String, u64, u64) =
                        gatehouse_storage::tuple::unpack(key).map_err(|e| {
                            TxError::Abort(Error::internal(format!("session index key: {e}")))
                        })?;
                    if Some(Id(session_id)) == keep {
                        continue;
                    }
                    let r: SessionRef = crate::codec::decode(value).map_err(TxError::Abort)?;
                    keyspace::session(&r.token_hash).clear(&tx).await?;
                    tx.clear(key)?;
                    ended += 1;
                }
                Ok::<_, TxError<Error>>(ended)
            })
            .await?)
    }

    /// Changes the password after checking the current one, and ends every
    /// other session of the user (`keep` is the caller's own session, if any).
    #[tracing::instrument(skip(self, current, new, client))]
    pub async fn change_password(
        &self,
        user_id: Id,
        current: &str,
        new: &str,
        keep: Option<Id>,
        client: &ClientInfo,
    ) -> Result<()> {
        let user = self.get_user(user_id).await?;
        let verified = self
            .verify_password(current, user.password_hash.as_deref())
            .await?;
        if verified == Verified::No || user.password_hash.is_none() {
            let details = serde_json::json!({"reason": "wrong_current_password"});
            self.audit(
                Actor::User { id: user_id },
                "auth.password_change",
                Outcome::Failure,
                client,
                details,
            )
            .await;
            return Err(Error::invalid_input("the current password is wrong"));
        }
        self.policy.check(new)?;
        if new == current {
            return Err(Error::invalid_input(
                "the new password must differ from the current one",
            ));
        }
        let hash = self.hash_password(new).await?;
        self.update_user(user_id, |user| {
            user.password_hash = Some(hash.clone());
            user.must_change_password = false;
        })
        .await?;
        let ended = self.revoke_all_sessions(user_id, keep).await?;
        tracing::info!(%user_id, sessions_ended = ended, "password changed");
        let details = serde_json::json!({"sessions_ended": ended});
        self.audit(
            Actor::User { id: user_id },
            "auth.password_change",
            Outcome::Success,
            client,
            details,
        )
        .await;
        Ok(())
    }

    /// Checks a login (email or username) and password, under the throttle of
    /// [`throttle`]: refused at once while the login or the client's IP must
    /// wait, and every failure counted against both.
    async fn check_credentials(
        &self,
        login: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<User> {
        let subject: String = login.trim().to_lowercase().chars().take(320).collect();
        let account_key = keyspace::login_failures("account", &subject);
        let ip_key = client
            .ip
            .as_deref()
            .map(|ip| keyspace::login_failures("ip", ip));
        let now = self.env.clock.now_millis();
        let (account, ip) = self
            .store
            .run(|tx| {
                let (account_key, ip_key) = (&account_key, &ip_key);
                async move {
                    let account = account_key.get(&tx).await?;
                    let ip = match ip_key {
                        Some(key) => key.get(&tx).await?,
                        None => None,
                    };
                    Ok::<_, TxError<Error>>((account, ip))
                }
            })
            .await?;
        let wait = [
            account.and_then(|f| f.wait_ms(now, throttle::ACCOUNT_FREE_FAILURES)),
            ip.and_then(|f| f.wait_ms(now, throttle::IP_FREE_FAILURES)),
        ]
        .into_iter()
        .flatten()
        .max();
        let anonymous = || Actor::Anonymous {
            login: Some(subject.clone()),
        };
        if let Some(ms) = wait {
            let secs = (ms as u64).div_ceil(1000);
            self.audit(
                anonymous(),
                "auth.login",
                Outcome::Refused,
                client,
                serde_json::json!({"reason": "throttled"}),
            )
            .await;
            return Err(Error::rate_limited(
                format!("too many failed sign-ins; try again in {secs} seconds"),
                secs,
            ));
        }
        let outcome = self.verify_credentials(login, password).await;
        let is_bad = matches!(&outcome, Err(e) if e.code() == ErrorCode::Unauthenticated);
        let is_ok = outcome.is_ok();
        if is_bad || is_ok {
            self.store
                .run(|tx| {
                    let (account_key, ip_key) = (&account_key, &ip_key);
                    async move {
                        if is_ok {
                            return account_key.clear(&tx).await;
                        }
                        let record =
                            throttle::Failures::after_failure(account_key.get(&tx).await?, now);
                        account_key.put(&tx, &record).await?;
                        if let Some(key) = ip_key {
                            let record =
                                throttle::Failures::after_failure(key.get(&tx).await?, now);
                            key.put(&tx, &record).await?;
                        }
                        Ok(())
                    }
                })
                .await?;
        }
        match &outcome {
            Ok(user) => {
                self.audit(
                    Actor::User { id: user.id },
                    "auth.login",
                    Outcome::Success,
                    client,
                    serde_json::json!({}),
                )
                .await
            }
            Err(_) if is_bad => {
                let details = serde_json::json!({"reason": "bad_credentials"});
                self.audit(anonymous(), "auth.login", Outcome::Failure, client, details)
                    .await
            }
            Err(_) => {}
        }
        outcome
    }

    async fn verify_credentials(&self, login: &str, password: &str) -> Result<User> {
        let user = self.find_by_login(login).await?;
        let stored = user
            .as_ref()
            .filter(|u| u.is_active())
            .and_then(|u| u.password_hash.clone());
        let verified = self.verify_password(password, stored.as_deref()).await?;
        let user = match (user, stored.is_some(), verified) {
            (Some(user), true, Verified::Yes | Verified::YesRehash) => user,
            _ => return Err(bad_credentials()),
        };
        if verified == Verified::YesRehash {
            self.upgrade_hash(&user, password).await;
        }
        Ok(user)
    }

    /// Replaces a hash made with older parameters. A failure only means the
    /// upgrade waits for the next sign-in.
    async fn upgrade_hash(&self, user: &User, password: &str) {
        let result = async {
            let hash = self.hash_password(password).await?;
            self.update_user(user.id, |u| u.password_hash = Some(hash.clone()))
                .await
        }
        .await;
        match result {
            Ok(()) => tracing::info!(user_id = %user.id, "password hash upgraded"),
            Err(e) => {
                tracing::warn!(user_id = %user.id, error = %e, "password hash upgrade failed")
            }
        }
    }

    /// The active user a JWT belongs to, as stored now: roles and status are
    /// read from the account on every request, so a change counts at once
    /// (stricter than SPEC §2 asks; the roles in the token are informational).
    pub async fn authenticate_token(&self, token: &str) -> Result<(User, Claims)> {
        let claims = self.tokens.verify(token)?;
        let user = self.get_user(claims.user_id()?).await.map_err(|_| {
            Error::new(
                ErrorCode::Unauthenticated,
                "the token is invalid or expired",
            )
        })?;
        if !user.is_active() {
            return Err(Error::new(
                ErrorCode::Unauthenticated,
                "this account is disabled",
            ));
        }
        Ok((user, claims))
    }

    /// The user behind a bearer token: a JWT (three dot-separated parts) or a
    /// session token (none); the session too for the latter.
    pub async fn authenticate_bearer(&self, token: &str) -> Result<(User, Option<Session>)> {
        if is_jwt(token) {
            let (user, _) = self.authenticate_token(token).await?;
            return Ok((user, None));
        }
        let (user, session) = self.authenticate_session(token).await?;
        Ok((user, Some(session)))
    }

    /// What a session token or JWT stands for, if it is active: for internal
    /// services that hold a user's token.
    pub async fn introspect(&self, token: &str) -> Result<Option<Introspection>> {
        let token = token.trim();
        if is_jwt(token) {
            return match self.authenticate_token(token).await {
                Ok((user, claims)) => Ok(Some(Introspection {
                    user,
                    expires_at: claims.exp,
                    kind: "jwt",
                })),
                Err(e) if e.code() == ErrorCode::Unauthenticated => Ok(None),
                Err(e) => Err(e),
            };
        }
        match self.authenticate_session(token).await {
            Ok((user, session)) => {
                let idle_end =
                    session.last_seen_at + chrono::Duration::seconds(self.sessions.idle_secs);
                Ok(Some(Introspection {
                    user,
                    expires_at: idle_end.min(session.absolute_expires_at).timestamp(),
                    kind: "session",
                }))
            }
            Err(e) if e.code() == ErrorCode::Unauthenticated => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the user may use the API beyond reading their own account,
    /// changing their password and signing out: not while a generated password
    /// is still theirs.
    pub fn ensure_may_act(&self, user: &User) -> Result<()> {
        if user.must_change_password {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "change your password first: PUT /api/v1/auth/password",
            ));
        }
        Ok(())
    }

    /// Changes an account. Users change their own display name; platform
    /// admins change anyone's display name, roles and status. Nobody changes
    /// their own roles or status (no self-promotion, and a platform keeps the
    /// admin who acts). Every account keeps `user`, except a provider account,
    /// which holds `provider` alone. Roles and status count from the next
    /// request: requests load the account each time. Disabling ends sessions.
    pub async fn update_account(
        &self,
        actor: &User,
        user_id: Id,
        change: UserChange,
        client: &ClientInfo,
    ) -> Result<User> {
        let own = actor.id == user_id;
        if !own && !actor.is_platform_reader() {
            return Err(Error::not_found("user"));
        }
        if !own && !actor.is_platform_admin() {
            return Err(Error::permission_denied("read-only admins change nothing"));
        }
        if own && (change.roles.is_some() || change.status.is_some() || change.limits.is_some()) {
            return Err(Error::permission_denied(
                "you cannot change your own roles, status or limits",
            ));
        }
        if let Some(budget) = change.limits.as_ref().and_then(|l| l.budget.as_ref()) {
            crate::model::keys::check_budget(budget)?;
        }
        let display_name = change
            .display_name
            .as_deref()
            .map(parse_display_name)
            .transpose()?;
        let now = self.env.clock.now();
        let actor_id = actor.id;
        let (before, after) = self
            .store
            .run(|tx| {
                let (change, display_name) = (&change, &display_name);
                async move {
                    // The actor's standing is read again in this transaction:
                    // two admins demoting each other at once cannot both win.
                    if !own {
                        let current = keyspace::user(actor_id).get(&tx).await?;
                        if !current.is_some_and(|a| a.is_active() && a.is_platform_admin()) {
                            return Err(TxError::Abort(Error::permission_denied(
                                "only platform admins change other accounts",
                            )));
                        }
                    }
                    let key = keyspace::user(user_id);
                    let Some(before) = key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("user")));
                    };
                    if let Some(roles) = &change.roles {
                        check_roles(&before, roles).map_err(TxError::Abort)?;
                    }
                    let mut after = before.clone();
                    if let Some(name) = display_name {
                        after.display_name = name.clone();
                    }
                    if let Some(roles) = &change.roles {
                        after.roles = roles.clone();
                    }
                    if let Some(status) = change.status {
                        after.status = status;
                    }
                    if let Some(limits) = change.limits {
                        after.limits = limits;
                    }
                    after.updated_at = now;
                    key.put(&tx, &after).await?;
                    Ok((before, after))
                }
            })
            .await?;
        if change.status == Some(UserStatus::Disabled) {
            self.revoke_all_sessions(user_id, None).await?;
        }
        let mut details = serde_json::Map::new();
        if before.display_name != after.display_name {
            details.insert(
                "display_name".into(),
                serde_json::json!({"from": before.display_name, "to": after.display_name}),
            );
        }
        if before.roles != after.roles {
            details.insert(
                "roles".into(),
                serde_json::json!({"from": before.roles, "to": after.roles}),
            );
        }
        if before.limits != after.limits {
            details.insert(
                "limits".into(),
                serde_json::json!({"from": before.limits, "to": after.limits}),
            );
        }
        if before.status != after.status {
            details.insert(
                "status".into(),
                serde_json::json!({"from": before.status, "to": after.status}),
            );
        }
        self.audit
            .record(NewEvent {
                actor: Actor::User { id: actor.id },
                action: "users.update",
                outcome: Outcome::Success,
                target: Some(("user", user_id.to_string())),
                organization: None,
                client,
                details: details.into(),
            })
            .await;
        Ok(after)
    }

    /// Deletes an account (platform admins, not their own): its sessions,
    /// addresses, memberships and personal organization go with it. A user who
    /// alone owns another organization is a `conflict` until ownership moves.
    pub async fn delete_user(&self, actor: &User, user_id: Id, client: &ClientInfo) -> Result<()> {
        if actor.id != user_id && !actor.is_platform_reader() {
            return Err(Error::not_found("user"));
        }
        if !actor.is_platform_admin() {
            return Err(Error::permission_denied(
                "only platform admins delete accounts",
            ));
        }
        if actor.id == user_id {
            return Err(Error::permission_denied(
                "you cannot delete your own account",
            ));
        }
        let now = self.env.clock.now();
        let (user, orgs) = self
            .store
            .run(|tx| async move {
                // Read again in this transaction, as in `update_account`.
                let current = keyspace::user(actor.id).get(&tx).await?;
                if !current.is_some_and(|a| a.is_active() && a.is_platform_admin()) {
                    return Err(TxError::Abort(Error::permission_denied(
                        "only platform admins delete accounts",
                    )));
                }
                let Some(user) = keyspace::user(user_id).get(&tx).await? else {
                    return Err(TxError::Abort(Error::not_found("user")));
                };
                let orgs = crate::tenancy::remove_user_everywhere(&tx, user_id, now).await?;
                let all = gatehouse_storage::RangeOptions::default();
                let refs = tx.get_range(&keyspace::sessions_of(user_id), all).await?;
                for r in crate::codec::decode_values::<SessionRef>(&refs.entries)
                    .map_err(TxError::Abort)?
                {
                    keyspace::session(&r.token_hash).clear(&tx).await?;
                }
                tx.clear_range(&keyspace::sessions_of(user_id))?;
                let emails = tx.get_range(&keyspace::user_emails(user_id), all).await?;
                for e in crate::codec::decode_values::<UserEmail>(&emails.entries)
                    .map_err(TxError::Abort)?
                {
                    let key = e.email.to_lowercase();
                    keyspace::user_by_email(&key).clear(&tx).await?;
                    keyspace::user_email(user_id, &key).clear(&tx).await?;
                }
                keyspace::user_by_email(&user.email.to_lowercase())
                    .clear(&tx)
                    .await?;
                if let Some(name) = user
                    .username
                    .as_deref()
                    .map(Username::parse)
                    .transpose()
                    .map_err(TxError::Abort)?
                {
                    keyspace::user_by_username(&name).clear(&tx).await?;
                }
                keyspace::user(user_id).clear(&tx).await?;
                Ok((user, orgs))
            })
            .await?;
        self.audit
            .record(NewEvent {
                actor: Actor::User { id: actor.id },
                action: "users.delete",
                outcome: Outcome::Success,
                target: Some(("user", user_id.to_string())),
                organization: None,
                client,
                details: serde_json::json!({"email": user.email, "deleted_organizations": orgs}),
            })
            .await;
        Ok(())
    }

    /// A user as `viewer` may see it: themself, or anyone for platform admins
    /// (`admin`, `admin_readonly`). Anyone else is `not_found`, so IDs leak nothing.
    pub async fn view_user(&self, viewer: &User, id: Id) -> Result<User> {
        if viewer.id != id && !viewer.is_platform_reader() {
            return Err(Error::not_found("user"));
        }
        self.get_user(id).await
    }

    /// Users in ID (creation) order, for platform admins, filtered by role,
    /// status and text (in email, username or display name). `after` is the
    /// last ID of the previous page.
    pub async fn list_users(
        &self,
        viewer: &User,
        filter: &UserFilter,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<User>> {
        if !viewer.is_platform_reader() {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "only platform admins can list users",
            ));
        }
        let limit = limit.clamp(1, MAX_USER_PAGE);
        let text = filter.text.as_deref().map(str::to_lowercase);
        let matches = |u: &User| {
            filter.role.is_none_or(|r| u.roles.contains(&r))
                && filter.status.is_none_or(|s| u.status == s)
                && text.as_deref().is_none_or(|t| {
                    u.email.to_lowercase().contains(t)
                        || u.display_name.to_lowercase().contains(t)
                        || u.username.as_deref().is_some_and(|n| n.contains(t))
                })
        };
        let mut found = Vec::new();
        let all = keyspace::users();
        let mut range = match after {
            Some(id) => gatehouse_storage::KeyRange::new(
                gatehouse_storage::key_after(keyspace::user(id).as_bytes()),
                all.end.clone(),
            ),
            None => all,
        };
        // Filtered reads scan in pages until the page is full or users run out;
        // each page is its own short transaction.
        loop {
            let page = self
                .store
                .run(|tx| {
                    let range = &range;
                    async move {
                        Ok::<_, TxError<Error>>(
                            tx.get_range(range, gatehouse_storage::RangeOptions::limit(200))
                                .await?,
                        )
                    }
                })
                .await?;
            for user in crate::codec::decode_values::<User>(&page.entries)? {
                if matches(&user) {
                    found.push(user);
                    if found.len() == limit {
                        return Ok(found);
                    }
                }
            }
            match page.next {
                Some(next) => range = next,
                None => return Ok(found),
            }
        }
    }

    /// Disables an account; its sessions end at once.
    pub async fn disable_user(&self, user_id: Id) -> Result<()> {
        self.update_user(user_id, |u| u.status = UserStatus::Disabled)
            .await?;
        self.revoke_all_sessions(user_id, None).await?;
        Ok(())
    }

    /// Reads, changes and writes one user in a transaction (`change` may run
    /// more than once), stamping `updated_at`; `not_found` if there is none.
    async fn update_user(&self, id: Id, change: impl Fn(&mut User) + Send + Sync) -> Result<()> {
        let now = self.env.clock.now();
        self.store
            .run(|tx| {
                let change = &change;
                async move {
                    let key = keyspace::user(id);
                    let Some(mut user) = key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("user")));
                    };
                    change(&mut user);
                    user.updated_at = now;
                    key.put(&tx, &user).await
                }
            })
            .await?;
        Ok(())
    }

    pub async fn get_user(&self, id: Id) -> Result<User> {
        self.store
            .run(|tx| async move { keyspace::user(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }
}

#[cfg(test)]
mod tests;
