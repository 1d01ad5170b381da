//! Token issuance: vault-scoped access JWTs (EdDSA, signed with Gatehouse's
//! own Ed25519 keys, verifiable offline through the JWKS document) and
//! rotating refresh tokens.
//!
//! Service clients authenticate with an RFC 7523 assertion signed with one of
//! their certificates; signed-in users ask for a vault they are granted.
//! Refresh tokens are opaque, stored as SHA-256, single use: each use spends
//! the token and issues the next one of its family in one transaction, and
//! presenting a spent token revokes the whole family.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use ed25519_dalek::SigningKey as Ed25519Key;
use gatehouse_storage::{Store, TxError};
use parking_lot::Mutex;
use serde_json::{Value, json};

use super::jwt;
use super::model::{
    Certificate, Holder, RefreshToken, SigningKey, SpentAssertion, TokenFamily, VaultRole,
};
use crate::audit::{Actor, AuditLog, NewEvent, Outcome};
use crate::codec::{abort, read_all};
use crate::common::token_hash;
use crate::crypto::KeyRing;
use crate::model::accounts::User;
use crate::model::sessions::ClientInfo;
use crate::{Env, Error, ErrorCode, Id, Result, keyspace};

/// What the deployment decides about tokens.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    /// Gatehouse's public base URL: the `iss` of its tokens; assertions must
    /// name `{issuer}/api/v1/token` (or the issuer) as their audience.
    pub issuer: String,
    pub access_ttl_secs: i64,
    /// Absolute lifetime of a user's refresh-token family.
    pub user_refresh_ttl_secs: i64,
    /// Absolute lifetime of a client's refresh-token family.
    pub client_refresh_ttl_secs: i64,
}

impl Default for TokenSettings {
    fn default() -> Self {
        TokenSettings {
            issuer: "http://localhost:3000".into(),
            access_ttl_secs: 300,
            user_refresh_ttl_secs: 3600,
            client_refresh_ttl_secs: 7 * 24 * 3600,
        }
    }
}

/// An access token and the refresh token that follows it.
#[derive(Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub expires_in: i64,
    pub refresh_token: String,
    pub refresh_expires_at: DateTime<Utc>,
    pub org_id: Id,
    pub vault_id: Id,
    pub role: VaultRole,
}

impl std::fmt::Debug for IssuedTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedTokens")
            .field("access_token", &crate::common::REDACTED)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &crate::common::REDACTED)
            .field("refresh_expires_at", &self.refresh_expires_at)
            .field("org_id", &self.org_id)
            .field("vault_id", &self.vault_id)
            .field("role", &self.role)
            .finish()
    }
}

/// What a checked client assertion says.
struct Assertion {
    kid: String,
    client_id: Id,
    jti: String,
    expires: DateTime<Utc>,
}

/// The longest an assertion may be valid: RFC 7523 asks for short lifetimes.
const MAX_ASSERTION_SECS: i64 = 60;
/// Clock skew tolerated between a client and Gatehouse.
const SKEW_SECS: i64 = 5;
/// How long a retired signing key stays in the JWKS document.
const RETIRED_KEY_PUBLISHED_SECS: i64 = 24 * 3600;
/// How long a process uses the signing keys it read before reading again
/// (another instance may have rotated them).
const KEY_CACHE_SECS: i64 = 30;

struct KeyCache {
    loaded_at: DateTime<Utc>,
    current: (String, Ed25519Key),
    published: Vec<SigningKey>,
}

pub struct TokenService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
    keys: Arc<KeyRing>,
    settings: TokenSettings,
    cache: Mutex<Option<Arc<KeyCache>>>,
}

fn unauthenticated(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::Unauthenticated, message)
}

impl TokenService {
    pub fn new(
        store: Store,
        env: Env,
        audit: Arc<AuditLog>,
        keys: Arc<KeyRing>,
        settings: TokenSettings,
    ) -> Self {
        TokenService {
            store,
            env,
            audit,
            keys,
            settings,
            cache: Mutex::new(None),
        }
    }

    pub fn settings(&self) -> &TokenSettings {
        &self.settings
    }

    /// The URL assertions must name as their audience.
    pub fn token_url(&self) -> String {
        format!(
            "{}/api/v1/token",
            self.settings.issuer.trim_end_matches('/')
        )
    }

    // ---- signing keys ----

    /// Creates the first signing key if there is none (at start).
    pub async fn ensure_signing_key(&self) -> Result<()> {
        let keys = self.signing_keys().await?;
        if keys.iter().any(|k| k.retired_at.is_none()) {
            return Ok(());
        }
        self.new_signing_key().await.map(|_| ())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKey>> {
        Ok(self
            .store
            .run(|tx| async move { read_all::<SigningKey>(&tx, &keyspace::signing_keys()).await })
            .await?)
    }

    /// Makes a new signing key current and retires the others; tokens they
    /// signed stay verifiable (their keys stay published) until they expire.
    /// Recorded in the audit log.
    pub async fn rotate_signing_key(&self) -> Result<String> {
        let kid = self.new_signing_key().await?;
        let client = ClientInfo::default();
        let event = NewEvent::success(Actor::System, "tokens.rotate_signing_key", &client)
            .on("signing_key", &kid)
            .with(json!({}));
        self.audit.record(event).await;
        Ok(kid)
    }

    async fn new_signing_key(&self) -> Result<String> {
        let mut seed = [0u8; 32];
        self.env.random.fill(&mut seed);
        let key = Ed25519Key::from_bytes(&seed);
        let kid = format!("gk_{}", self.env.random.alphanumeric(22));
        let now = self.env.clock.now();
        let record = SigningKey {
            kid: kid.clone(),
            public_key: jwt::encode_public_key(&key.verifying_key()),
            private_key: self.keys.seal(
                self.env.random.as_ref(),
                &seed,
                &SigningKey::context(&kid),
            )?,
            created_at: now,
            retired_at: None,
        };
        self.store
            .run(|tx| {
                let record = &record;
                async move {
                    for mut old in read_all::<SigningKey>(&tx, &keyspace::signing_keys()).await? {
                        if old.retired_at.is_none() {
                            old.retired_at = Some(now);
                            keyspace::signing_key(&old.kid).put(&tx, &old).await?;
                        }
                    }
                    keyspace::signing_key(&record.kid).put(&tx, record).await
                }
            })
            .await?;
        *self.cache.lock() = None;
        Ok(kid)
    }

    /// Rotates the signing key when the current one is older than `days`.
    pub async fn rotate_if_older_than(&self, days: u64) -> Result<Option<String>> {
        let max_age = i64::try_from(days)
            .ok()
            .and_then(Duration::try_days)
            .unwrap_or(Duration::MAX);
        let now = self.env.clock.now();
        let keys = self.signing_keys().await?;
        let fresh = keys
            .iter()
            .any(|k| k.retired_at.is_none() && now - k.created_at < max_age);
        if fresh {
            return Ok(None);
        }
        self.rotate_signing_key().await.map(Some)
    }

    /// The current signing key and the published ones, read at most every
    /// [`KEY_CACHE_SECS`].
    async fn key_cache(&self) -> Result<Arc<KeyCache>> {
        let now = self.env.clock.now();
        if let Some(cache) = self.cache.lock().as_ref()
            && now - cache.loaded_at < Duration::seconds(KEY_CACHE_SECS)
        {
            return Ok(cache.clone());
        }
        let keys = self.signing_keys().await?;
        let current = keys
            .iter()
            .filter(|k| k.retired_at.is_none())
            .max_by_key(|k| k.created_at)
            .ok_or_else(|| Error::internal("no current signing key"))?;
        let seed: [u8; 32] = self
            .keys
            .open(&current.private_key, &SigningKey::context(&current.kid))?
            .try_into()
            .map_err(|_| Error::internal("a signing key is not 32 bytes"))?;
        let published = keys
            .iter()
            .filter(|k| {
                k.retired_at
                    .is_none_or(|at| now - at < Duration::seconds(RETIRED_KEY_PUBLISHED_SECS))
            })
            .cloned()
            .collect();
        let cache = Arc::new(KeyCache {
            loaded_at: now,
            current: (current.kid.clone(), Ed25519Key::from_bytes(&seed)),
            published,
        });
        *self.cache.lock() = Some(cache.clone());
        Ok(cache)
    }

    /// The JWKS document: the current key and those retired within the last
    /// day (RFC 7517, RFC 8037 `OKP` keys).
    pub async fn jwks(&self) -> Result<Value> {
        let cache = self.key_cache().await?;
        let keys: Vec<Value> = cache
            .published
            .iter()
            .map(|k| jwt::public_jwk(&k.kid, &k.public_key))
            .collect();
        Ok(json!({ "keys": keys }))
    }

    /// Re-seals signing keys with the current key-encryption key.
    pub async fn reseal_all(&self) -> Result<usize> {
        let mut resealed = 0;
        for record in self.signing_keys().await? {
            let keys = &self.keys;
            let random = self.env.random.as_ref();
            let kid = &record.kid;
            let changed = self
                .store
                .run(|tx| async move {
                    let key = keyspace::signing_key(kid);
                    let Some(mut record) = key.get(&tx).await? else {
                        return Ok(false);
                    };
                    let context = SigningKey::context(kid);
                    let Some(sealed) = keys
                        .reseal(random, &record.private_key, &context)
                        .map_err(TxError::Abort)?
                    else {
                        return Ok(false);
                    };
                    record.private_key = sealed;
                    key.put(&tx, &record).await?;
                    Ok::<_, TxError<Error>>(true)
                })
                .await?;
            resealed += usize::from(changed);
        }
        *self.cache.lock() = None;
        Ok(resealed)
    }

    // ---- issuance ----

    async fn access_token(
        &self,
        holder: Holder,
        org_id: Id,
        vault_id: Id,
        role: VaultRole,
    ) -> Result<String> {
        let cache = self.key_cache().await?;
        let now = self.env.clock.now();
        let claims = json!({
            "iss": self.settings.issuer,
            "sub": holder.id().to_string(),
            "sub_type": holder.kind(),
            "aud": self.settings.issuer,
            "iat": now.timestamp(),
            "nbf": now.timestamp(),
            "exp": now.timestamp() + self.settings.access_ttl_secs,
            "jti": self.env.ids.next_id().to_string(),
            "org": org_id.to_string(),
            "vault": vault_id.to_string(),
            "role": role.as_str(),
            "scope": role.scope(),
        });
        Ok(jwt::sign(&cache.current.1, &cache.current.0, &claims))
    }

    async fn issue(
        &self,
        holder: Holder,
        refresh: (String, RefreshToken),
        role: VaultRole,
    ) -> Result<IssuedTokens> {
        let (plain, record) = refresh;
        Ok(IssuedTokens {
            access_token: self
                .access_token(holder, record.org_id, record.vault_id, role)
                .await?,
            expires_in: self.settings.access_ttl_secs,
            refresh_token: plain,
            refresh_expires_at: record.expires_at,
            org_id: record.org_id,
            vault_id: record.vault_id,
            role,
        })
    }

    fn new_refresh(&self, family: &TokenFamily, org_id: Id) -> (String, RefreshToken) {
        let plain = format!("grt_{}", self.env.random.token());
        let record = RefreshToken {
            family_id: family.id,
            holder: family.holder,
            org_id,
            vault_id: family.vault_id,
            issued_at: self.env.clock.now(),
            expires_at: family.expires_at,
            spent_at: None,
        };
        (plain, record)
    }

    /// A signed-in user's token for a vault they hold a role in.
    pub async fn user_token(
        &self,
        actor: &User,
        org_id: Id,
        vault_id: Id,
        client: &ClientInfo,
    ) -> Result<IssuedTokens> {
        let holder = Holder::User(actor.id);
        let now = self.env.clock.now();
        let family = TokenFamily {
            id: self.env.ids.next_id(),
            holder,
            vault_id,
            expires_at: now + Duration::seconds(self.settings.user_refresh_ttl_secs),
            revoked_at: None,
            revoked_reason: None,
        };
        let refresh = self.new_refresh(&family, org_id);
        let role = self
            .store
            .run(|tx| {
                let (family, refresh) = (&family, &refresh);
                async move {
                    crate::access::load_access(&tx, actor, org_id).await?;
                    let Some(vault) = keyspace::vault(org_id, vault_id).get(&tx).await? else {
                        return abort(Error::not_found("vault"));
                    };
                    let Some(role) = super::effective_role(&tx, &vault, holder).await? else {
                        return abort(Error::permission_denied("you hold no role in this vault"));
                    };
                    keyspace::token_family(family.id).put(&tx, family).await?;
                    keyspace::refresh_token(&token_hash(&refresh.0))
                        .put(&tx, &refresh.1)
                        .await?;
                    Ok(role)
                }
            })
            .await?;
        self.record(
            holder,
            "tokens.issue",
            Some(org_id),
            vault_id,
            client,
            json!({"role": role.as_str(), "grant_type": "session"}),
        )
        .await;
        self.issue(holder, refresh, role).await
    }

    /// The checks of RFC 7523 §3 that need no storage: algorithm, issuer and
    /// subject, audience, expiry, not-before, issued-at and `jti`.
    fn check_assertion(&self, parsed: &jwt::Unverified<'_>) -> Result<Assertion> {
        if parsed.header.alg != "EdDSA" {
            return Err(unauthenticated(
                "assertions must be signed with EdDSA (Ed25519)",
            ));
        }
        let kid = parsed
            .header
            .kid
            .clone()
            .ok_or_else(|| unauthenticated("the assertion's header names no kid"))?;
        let claims = &parsed.claims;
        let text = |name: &str| claims.get(name).and_then(Value::as_str).map(str::to_string);
        let number = |name: &str| claims.get(name).and_then(Value::as_i64);
        let (Some(iss), Some(sub)) = (text("iss"), text("sub")) else {
            return Err(unauthenticated(
                "the assertion needs iss and sub (the client ID)",
            ));
        };
        if iss != sub {
            return Err(unauthenticated(
                "the assertion's iss and sub must both be the client ID",
            ));
        }
        let client_id = iss
            .parse::<Id>()
            .map_err(|_| unauthenticated("the assertion's iss is not a client ID"))?;
        let token_url = self.token_url();
        let audience_ok = match claims.get("aud") {
            Some(Value::String(aud)) => *aud == token_url || *aud == self.settings.issuer,
            Some(Value::Array(auds)) => auds.iter().any(|a| {
                a.as_str()
                    .is_some_and(|a| a == token_url || a == self.settings.issuer)
            }),
            _ => false,
        };
        if !audience_ok {
            return Err(unauthenticated(format!(
                "the assertion's aud must be {token_url}"
            )));
        }
        let now = self.env.clock.now().timestamp();
        let Some(exp) = number("exp") else {
            return Err(unauthenticated("the assertion needs exp"));
        };
        if exp <= now - SKEW_SECS {
            return Err(unauthenticated("the assertion has expired"));
        }
        if exp > now + MAX_ASSERTION_SECS + SKEW_SECS {
            return Err(unauthenticated(format!(
                "the assertion's exp is more than {MAX_ASSERTION_SECS} s ahead"
            )));
        }
        if number("nbf").is_some_and(|nbf| nbf > now + SKEW_SECS) {
            return Err(unauthenticated("the assertion is not valid yet (nbf)"));
        }
        let Some(iat) = number("iat") else {
            return Err(unauthenticated("the assertion needs iat"));
        };
        if iat > now + SKEW_SECS || iat < now - MAX_ASSERTION_SECS - SKEW_SECS {
            return Err(unauthenticated(
                "the assertion's iat is not within the last minute",
            ));
        }
        let jti = text("jti")
            .filter(|j| !j.is_empty() && j.len() <= 200)
            .ok_or_else(|| unauthenticated("the assertion needs a jti of 1 to 200 characters"))?;
        let expires = DateTime::from_timestamp(exp, 0).unwrap_or_default();
        Ok(Assertion {
            kid,
            client_id,
            jti,
            expires,
        })
    }

    /// RFC 7523 client authentication: checks the assertion, spends its `jti`
    /// and issues tokens for `vault_id`, all in one transaction.
    pub async fn exchange_assertion(
        &self,
        assertion: &str,
        vault_id: Id,
        client: &ClientInfo,
    ) -> Result<IssuedTokens> {
        let parsed = jwt::parse(assertion)?;
        let Assertion {
            kid,
            client_id,
            jti,
            expires,
        } = self.check_assertion(&parsed)?;

        let holder = Holder::Client(client_id);
        let family = TokenFamily {
            id: self.env.ids.next_id(),
            holder,
            vault_id,
            expires_at: self.env.clock.now()
                + Duration::seconds(self.settings.client_refresh_ttl_secs),
            revoked_at: None,
            revoked_reason: None,
        };
        let result = self
            .store
            .run(|tx| {
                let (kid, jti, family, parsed) = (&kid, &jti, &family, &parsed);
                async move {
                    let refused = |m: &str| abort(unauthenticated(m.to_string()));
                    let Some(cert_ref) = keyspace::certificate_by_kid(kid).get(&tx).await? else {
                        return refused("the assertion's kid names no certificate");
                    };
                    if cert_ref.client_id != client_id {
                        return refused("the assertion's kid belongs to another client");
                    }
                    // An organization being removed takes its clients' certificates
                    // with it a page at a time: they stop signing in at once.
                    if keyspace::org(cert_ref.org_id).get(&tx).await?.is_none() {
                        return refused("the assertion's kid names no certificate");
                    }
                    let Some(cert) = keyspace::certificate(client_id, kid).get(&tx).await? else {
                        return refused("the assertion's kid names no certificate");
                    };
                    if cert.revoked_at.is_some() {
                        return refused("the assertion's certificate is revoked");
                    }
                    let key = jwt::decode_public_key(&cert.public_key).map_err(TxError::Abort)?;
                    if !parsed.verify(&key) {
                        return refused("the assertion's signature does not verify");
                    }
                    let spent = keyspace::spent_assertion(client_id, jti);
                    if spent.get(&tx).await?.is_some() {
                        return refused("this assertion was used already (jti)");
                    }
                    spent
                        .put(
                            &tx,
                            &SpentAssertion {
                                expires_at: expires,
                            },
                        )
                        .await?;
                    let Some(vault) = super::find_vault(&tx, vault_id).await? else {
                        return Ok(Err(Error::not_found("vault")));
                    };
                    if vault.org_id != cert.org_id {
                        return Ok(Err(Error::not_found("vault")));
                    }
                    let Some(role) = super::effective_role(&tx, &vault, holder).await? else {
                        return Ok(Err(Error::permission_denied(
                            "this client holds no role in this vault",
                        )));
                    };
                    let refresh = self.new_refresh(family, vault.org_id);
                    keyspace::token_family(family.id).put(&tx, family).await?;
                    keyspace::refresh_token(&token_hash(&refresh.0))
                        .put(&tx, &refresh.1)
                        .await?;
                    Ok(Ok((refresh, role, cert)))
                }
            })
            .await?;
        // A refused vault still spends the assertion: it was shown once.
        let (refresh, role, cert): ((String, RefreshToken), VaultRole, Certificate) = result?;
        self.record(
            holder,
            "tokens.issue",
            Some(cert.org_id),
            vault_id,
            client,
            json!({"role": role.as_str(), "grant_type": "client_assertion", "kid": cert.kid}),
        )
        .await;
        self.issue(holder, refresh, role).await
    }

    /// Spends a refresh token and issues the next one of its family. A token
    /// spent before revokes its whole family (someone holds a copy).
    pub async fn refresh(&self, token: &str, client: &ClientInfo) -> Result<IssuedTokens> {
        enum Step {
            Issued((String, RefreshToken), VaultRole),
            Reused(TokenFamily),
            Refused(Error),
        }
        let hash = token_hash(token.trim());
        let now = self.env.clock.now();
        let step = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move {
                    let invalid = || {
                        Ok(Step::Refused(unauthenticated(
                            "the refresh token is not valid",
                        )))
                    };
                    let key = keyspace::refresh_token(hash);
                    let Some(mut record) = key.get(&tx).await? else {
                        return invalid();
                    };
                    let family_key = keyspace::token_family(record.family_id);
                    let Some(mut family) = family_key.get(&tx).await? else {
                        return invalid();
                    };
                    if family.revoked_at.is_some() || record.expires_at <= now {
                        return invalid();
                    }
                    if record.spent_at.is_some() {
                        family.revoked_at = Some(now);
                        family.revoked_reason = Some("a spent refresh token was used again".into());
                        family_key.put(&tx, &family).await?;
                        return Ok(Step::Reused(family));
                    }
                    let Some(vault) = super::find_vault(&tx, record.vault_id).await? else {
                        return Ok(Step::Refused(Error::not_found("vault")));
                    };
                    // A deleted organization is gone at once, though its
                    // vaults and clients are removed a page at a time.
                    if keyspace::org(vault.org_id).get(&tx).await?.is_none() {
                        return Ok(Step::Refused(Error::not_found("vault")));
                    }
                    let role = super::effective_role(&tx, &vault, record.holder).await?;
                    let active = match record.holder {
                        Holder::User(id) => keyspace::user(id)
                            .get(&tx)
                            .await?
                            .is_some_and(|u| u.is_active()),
                        Holder::Client(id) => keyspace::service_client(vault.org_id, id)
                            .get(&tx)
                            .await?
                            .is_some(),
                    };
                    let Some(role) = role.filter(|_| active) else {
                        return Ok(Step::Refused(Error::permission_denied(
                            "the holder no longer has a role in this vault",
                        )));
                    };
                    record.spent_at = Some(now);
                    key.put(&tx, &record).await?;
                    let next = self.new_refresh(&family, vault.org_id);
                    keyspace::refresh_token(&token_hash(&next.0))
                        .put(&tx, &next.1)
                        .await?;
                    Ok::<_, TxError<Error>>(Step::Issued(next, role))
                }
            })
            .await?;
        match step {
            Step::Issued(next, role) => {
                let holder = next.1.holder;
                let (org, vault) = (next.1.org_id, next.1.vault_id);
                self.record(
                    holder,
                    "tokens.refresh",
                    Some(org),
                    vault,
                    client,
                    json!({"role": role.as_str()}),
                )
                .await;
                self.issue(holder, next, role).await
            }
            Step::Reused(family) => {
                self.audit
                    .record(NewEvent {
                        actor: holder_actor(family.holder),
                        action: "tokens.family_revoked",
                        outcome: Outcome::Refused,
                        target: Some(("token_family", family.id.to_string())),
                        organization: None,
                        client,
                        details: json!({
                            "reason": "a spent refresh token was used again",
                            "vault_id": family.vault_id,
                            "holder_type": family.holder.kind(),
                            "holder_id": family.holder.id(),
                        }),
                    })
                    .await;
                Err(unauthenticated(
                    "this refresh token was used already; every token of its sign-in is now revoked",
                ))
            }
            Step::Refused(e) => Err(e),
        }
    }

    async fn record(
        &self,
        holder: Holder,
        action: &str,
        org: Option<Id>,
        vault_id: Id,
        client: &ClientInfo,
        details: Value,
    ) {
        let event = NewEvent::success(holder_actor(holder), action, client)
            .on("vault", vault_id)
            .in_org(org)
            .with(details);
        self.audit.record(event).await;
    }

    /// Deletes spent assertion IDs whose assertions have expired anyway.
    pub async fn trim_spent_assertions(&self) -> Result<usize> {
        let now = self.env.clock.now();
        Ok(self
            .store
            .run(|tx| async move {
                let page = tx
                    .get_range(
                        &keyspace::spent_assertions(),
                        gatehouse_storage::RangeOptions::default(),
                    )
                    .await?;
                let mut trimmed = 0;
                for (key, value) in &page.entries {
                    let spent: SpentAssertion =
                        crate::codec::decode(value).map_err(TxError::Abort)?;
                    if spent.expires_at < now - Duration::seconds(SKEW_SECS) {
                        tx.clear(key)?;
                        trimmed += 1;
                    }
                }
                Ok::<_, TxError<Error>>(trimmed)
            })
            .await?)
    }
}

fn holder_actor(holder: Holder) -> Actor {
    match holder {
        Holder::User(id) => Actor::User { id },
        Holder::Client(id) => Actor::Client { id },
    }
}
