//! The TOTP second factor (RFC 6238: HMAC-SHA-1, six digits, 30-second
//! steps, one step of drift either way) and its recovery codes, and the
//! second step of a password sign-in.
//!
//! A code is good once: the step it was accepted for is stored, and codes
//! for that step or earlier fail. Recovery codes are ten random codes shown
//! once at enrolment and stored as SHA-256 hashes (they carry 50 bits of
//! randomness each, so a fast hash is enough); each works once. The second
//! step is throttled like passwords, against the account.

use totp_rs::{Algorithm, TOTP};

use super::login::Counter;
use super::*;
use crate::model::factors::{ChallengePurpose, TotpFactor};

/// How many recovery codes an enrolment hands out.
pub const RECOVERY_CODES: usize = 10;

/// Wrong codes before a pending sign-in is dropped (the password is asked again).
const MAX_SECOND_FACTOR_FAILURES: u32 = 5;

/// What the authenticator app needs, shown once at enrolment.
pub struct TotpEnrolment {
    /// The secret in base32, for typing into an app.
    pub secret: String,
    /// `otpauth://totp/…`, for apps that read links or QR codes.
    pub otpauth_uri: String,
    /// The URI as a QR code, an SVG document.
    pub qr_svg: String,
}

/// The user's second factors, as they see them.
pub struct SecondFactors {
    pub totp_enabled: bool,
    pub recovery_codes_left: usize,
    pub passkeys: u32,
    /// This account must have a second factor (it holds `admin` and the
    /// server requires one for admins).
    pub required: bool,
}

/// The first step of a password sign-in.
pub enum PasswordStep {
    /// Signed in: no second factor is set up.
    SignedIn(Box<User>, Grant),
    /// The password was right; a TOTP or recovery code must follow with this
    /// token (shown once) before it expires.
    SecondFactor { token: String, expires_in_secs: i64 },
}

const STEP_SECS: u64 = 30;

/// The code generator for `secret`, labelled with the account.
fn generator(secret: Vec<u8>, account: &str) -> TOTP {
    TOTP::new_unchecked(
        Algorithm::SHA1,
        6,
        1,
        STEP_SECS,
        secret,
        Some("Gatehouse".to_string()),
        account.to_string(),
    )
}

/// The step a six-digit `code` belongs to near `now_secs`, if it is one.
fn matching_step(totp: &TOTP, code: &str, now_secs: u64) -> Option<u64> {
    let current = now_secs / STEP_SECS;
    (current.saturating_sub(1)..=current + 1).find(|step| {
        let expected = totp.generate(step * STEP_SECS);
        crate::common::constant_time_eq(expected.as_bytes(), code.as_bytes())
    })
}

/// A recovery code as typed, normalized: letters lower-cased, dashes and
/// spaces dropped.
fn normalize_recovery(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

impl AccountService {
    fn totp_context(user_id: Id) -> String {
        format!("totp:{user_id}")
    }

    async fn totp_factor(&self, user_id: Id) -> Result<Option<TotpFactor>> {
        Ok(self
            .store
            .run(|tx| async move { keyspace::totp(user_id).get(&tx).await })
            .await?)
    }

    /// The user's second factors.
    pub async fn second_factors(&self, user: &User) -> Result<SecondFactors> {
        let totp = self.totp_factor(user.id).await?;
        let confirmed = totp.as_ref().filter(|t| t.confirmed_at.is_some());
        Ok(SecondFactors {
            totp_enabled: confirmed.is_some(),
            recovery_codes_left: confirmed.map_or(0, |t| t.recovery_codes.len()),
            passkeys: user.passkey_count,
            required: self.mfa_required_for(user),
        })
    }

    /// Whether `user` must hold a second factor.
    pub fn mfa_required_for(&self, user: &User) -> bool {
        self.mfa_required_for_admins && user.is_platform_admin()
    }

    /// Re-seals every TOTP secret not sealed with the current key
    /// (`gatehouse rotate-encryption-key`), one user per transaction; how many.
    pub async fn reseal_totp(&self) -> Result<usize> {
        let mut users = Vec::new();
        let mut next = Some(keyspace::totps());
        while let Some(range) = next {
            let page = self
                .store
                .read_range(&range, gatehouse_storage::RangeOptions::limit(500))
                .await?;
            for (key, _) in &page.entries {
                let (_, user): (String, u64) = gatehouse_storage::tuple::unpack(key)
                    .map_err(|e| Error::internal(format!("totp key: {e}")))?;
                users.push(Id(user));
            }
            next = page.next;
        }
        let mut resealed = 0;
        for user_id in users {
            let (keys, random) = (&self.keys, self.env.random.as_ref());
            let context = Self::totp_context(user_id);
            let changed = self
                .store
                .run(|tx| {
                    let context = &context;
                    async move {
                        let key = keyspace::totp(user_id);
                        let Some(mut factor) = key.get(&tx).await? else {
                            return Ok(false);
                        };
                        let Some(sealed) = keys
                            .reseal(random, &factor.secret, context)
                            .map_err(TxError::Abort)?
                        else {
                            return Ok(false);
                        };
                        factor.secret = sealed;
                        key.put(&tx, &factor).await?;
                        Ok::<_, TxError<Error>>(true)
                    }
                })
                .await?;
            resealed += usize::from(changed);
        }
        Ok(resealed)
    }

    /// Starts a TOTP enrolment (after re-authentication): a new secret, not
    /// in use until [`confirm_totp`](Self::confirm_totp) sees a first code.
    pub async fn enrol_totp(
        &self,
        user_id: Id,
        password: Option<&str>,
        signed_in_at: Option<chrono::DateTime<chrono::Utc>>,
        client: &ClientInfo,
    ) -> Result<TotpEnrolment> {
        let user = self.get_user(user_id).await?;
        self.reauthenticate(&user, password, signed_in_at, client)
            .await?;
        if user.totp_enabled {
            return Err(Error::new(
                ErrorCode::Conflict,
                "a TOTP app is already set up: turn it off first to replace it",
            ));
        }
        let mut secret = vec![0u8; 20];
        self.env.random.fill(&mut secret);
        let sealed = self.keys.seal(
            self.env.random.as_ref(),
            &secret,
            &Self::totp_context(user_id),
        )?;
        let factor = TotpFactor {
            secret: sealed,
            confirmed_at: None,
            last_step: 0,
            recovery_codes: Vec::new(),
            created_at: self.env.clock.now(),
        };
        self.store
            .run(|tx| {
                let factor = &factor;
                async move { keyspace::totp(user_id).put(&tx, factor).await }
            })
            .await?;
        let totp = generator(secret, &user.email);
        let otpauth_uri = totp.get_url();
        let qr_svg = qrcode::QrCode::new(otpauth_uri.as_bytes())
            .map_err(|e| Error::internal(format!("QR code: {e}")))?
            .render::<qrcode::render::svg::Color>()
            .min_dimensions(200, 200)
            .build();
        Ok(TotpEnrolment {
            secret: totp.get_secret_base32(),
            otpauth_uri,
            qr_svg,
        })
    }

    /// Confirms an enrolment with a first code from the app; the recovery
    /// codes, shown this once.
    pub async fn confirm_totp(
        &self,
        user_id: Id,
        code: &str,
        client: &ClientInfo,
    ) -> Result<Vec<String>> {
        let user = self.get_user(user_id).await?;
        let factor = self
            .totp_factor(user_id)
            .await?
            .filter(|f| f.confirmed_at.is_none())
            .ok_or_else(|| Error::invalid_input("no TOTP enrolment is waiting: start one first"))?;
        let secret = self
            .keys
            .open(&factor.secret, &Self::totp_context(user_id))?;
        let now = self.env.clock.now();
        let step = matching_step(
            &generator(secret, &user.email),
            code.trim(),
            now.timestamp() as u64,
        )
        .ok_or_else(|| Error::invalid_input("the code is wrong: check the app's clock"))?;
        let codes: Vec<String> = (0..RECOVERY_CODES)
            .map(|_| {
                let raw = self.env.random.alphanumeric(10).to_ascii_lowercase();
                format!("{}-{}", &raw[..5], &raw[5..])
            })
            .collect();
        let hashes = codes
            .iter()
            .map(|c| token_hash(&normalize_recovery(c)))
            .collect();
        self.audited(
            |tx| {
                let hashes: &Vec<Vec<u8>> = &hashes;
                let factor = &factor;
                async move {
                    let mut factor = factor.clone();
                    factor.confirmed_at = Some(now);
                    factor.last_step = step;
                    factor.recovery_codes = hashes.clone();
                    keyspace::totp(user_id).put(&tx, &factor).await?;
                    change_user(&tx, user_id, |u| u.totp_enabled = true).await
                }
            },
            |_| {
                self.event(
                    Actor::User { id: user_id },
                    "auth.mfa_enrol",
                    Outcome::Success,
                    client,
                    serde_json::json!({"factor": "totp"}),
                )
            },
        )
        .await?;
        Ok(codes)
    }

    /// Turns the TOTP factor off (after re-authentication). An account that
    /// must hold a second factor keeps it unless it has a passkey.
    pub async fn disable_totp(
        &self,
        user_id: Id,
        password: Option<&str>,
        signed_in_at: Option<chrono::DateTime<chrono::Utc>>,
        client: &ClientInfo,
    ) -> Result<()> {
        let user = self.get_user(user_id).await?;
        self.reauthenticate(&user, password, signed_in_at, client)
            .await?;
        if self.mfa_required_for(&user) && user.passkey_count == 0 {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "admins must keep a second factor: register a passkey first",
            ));
        }
        self.audited(
            |tx| async move {
                keyspace::totp(user_id).clear(&tx).await?;
                change_user(&tx, user_id, |u| u.totp_enabled = false).await
            },
            |_| {
                self.event(
                    Actor::User { id: user_id },
                    "auth.mfa_disable",
                    Outcome::Success,
                    client,
                    serde_json::json!({"factor": "totp"}),
                )
            },
        )
        .await
    }

    /// Checks a login and password; signs in when the account has no second
    /// factor, or hands back the token for the second step
    /// ([`finish_second_factor`](Self::finish_second_factor)).
    pub async fn password_step(
        &self,
        login: &str,
        password: &str,
        kind: Option<SessionKind>,
        client: &ClientInfo,
    ) -> Result<PasswordStep> {
        let user = self.check_credentials(login, password, client).await?;
        if !user.totp_enabled {
            let grant = self.grant(&user, kind, client).await?;
            return Ok(PasswordStep::SignedIn(Box::new(user), grant));
        }
        let token = self
            .start_challenge(ChallengePurpose::SecondFactor {
                user_id: user.id,
                kind,
                failures: 0,
            })
            .await?;
        Ok(PasswordStep::SecondFactor {
            token,
            expires_in_secs: super::challenges::CHALLENGE_TTL_MS / 1000,
        })
    }

    /// The second step: a TOTP code or a recovery code for the sign-in
    /// `token` names. Wrong codes count against the account like wrong
    /// passwords; after five the token is gone.
    pub async fn finish_second_factor(
        &self,
        token: &str,
        code: &str,
        client: &ClientInfo,
    ) -> Result<(User, Grant)> {
        let hash = token_hash(token);
        let now_ms = self.env.clock.now_millis();
        let challenge = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move { keyspace::auth_challenge(hash).get(&tx).await }
            })
            .await?
            .filter(|c| c.expires_at_ms > now_ms);
        let Some(challenge) = challenge else {
            return Err(super::challenges::unknown_challenge());
        };
        let ChallengePurpose::SecondFactor {
            user_id,
            kind,
            failures,
        } = challenge.purpose
        else {
            return Err(super::challenges::unknown_challenge());
        };
        let counters = [Counter::of_login("second_factor", &user_id.to_string())];
        if let Some(ms) = self.count_attempt(&counters).await? {
            let secs = (ms as u64).div_ceil(1000);
            return Err(Error::rate_limited(
                format!("too many wrong codes; try again in {secs} seconds"),
                secs,
            ));
        }
        let user = self.get_user(user_id).await?;
        let method = self.spend_code(&user, code).await?;
        let Some(method) = method else {
            let failures = failures + 1;
            // Drop the token, then put it back while wrong codes are few.
            self.take_challenge(token).await.ok();
            if failures < MAX_SECOND_FACTOR_FAILURES {
                let purpose = ChallengePurpose::SecondFactor {
                    user_id,
                    kind,
                    failures,
                };
                self.put_back_challenge(token, purpose, challenge.expires_at_ms)
                    .await?;
            }
            let details = serde_json::json!({"reason": "wrong_code", "failures": failures});
            self.audit(
                Actor::User { id: user_id },
                "auth.second_factor",
                Outcome::Failure,
                client,
                details,
            )
            .await;
            return Err(Error::new(ErrorCode::Unauthenticated, "the code is wrong"));
        };
        // Single use: a second request with the same token finds none.
        self.take_challenge(token).await?;
        self.take_back_attempt(&counters, true).await?;
        if !user.is_active() {
            return Err(bad_credentials());
        }
        self.audit(
            Actor::User { id: user_id },
            "auth.second_factor",
            Outcome::Success,
            client,
            serde_json::json!({"method": method}),
        )
        .await;
        let grant = self.grant(&user, kind, client).await?;
        Ok((user, grant))
    }

    /// Spends `code` when it is good: a TOTP code for a later step than the
    /// last one used, or an unused recovery code. Which it was, or none.
    async fn spend_code(&self, user: &User, code: &str) -> Result<Option<&'static str>> {
        let user_id = user.id;
        let Some(factor) = self
            .totp_factor(user_id)
            .await?
            .filter(|f| f.confirmed_at.is_some())
        else {
            return Ok(None);
        };
        let code = code.trim();
        let now_secs = self.env.clock.now().timestamp() as u64;
        let is_totp = code.len() == 6 && code.bytes().all(|b| b.is_ascii_digit());
        let step = if is_totp {
            let secret = self
                .keys
                .open(&factor.secret, &Self::totp_context(user_id))?;
            matching_step(&generator(secret, &user.email), code, now_secs)
        } else {
            None
        };
        let recovery = (!is_totp).then(|| token_hash(&normalize_recovery(code)));
        self.store
            .run(|tx| {
                let recovery = &recovery;
                async move {
                    let key = keyspace::totp(user_id);
                    let Some(mut factor) = key.get(&tx).await? else {
                        return Ok(None);
                    };
                    let method = match (step, recovery) {
                        (Some(step), _) if step > factor.last_step => {
                            factor.last_step = step;
                            "totp"
                        }
                        (_, Some(hash)) => {
                            let before = factor.recovery_codes.len();
                            factor.recovery_codes.retain(|h| h != hash);
                            if factor.recovery_codes.len() == before {
                                return Ok(None);
                            }
                            "recovery_code"
                        }
                        _ => return Ok(None),
                    };
                    key.put(&tx, &factor).await?;
                    Ok::<_, TxError<Error>>(Some(method))
                }
            })
            .await
            .map_err(Error::from)
    }
}
