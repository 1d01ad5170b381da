//! Email addresses: verification, extra addresses, the primary one, and
//! password reset by emailed single-use tokens.

use super::sessions::end_sessions;
use super::*;

impl AccountService {
    /// 256 random bits, base64url.
    /// Stores a token for `purpose` and queues the email carrying it, in one
    /// transaction.
    pub(super) async fn send_token(&self, user: &User, purpose: TokenPurpose) -> Result<()> {
        self.send_token_to(user, &user.email.clone(), purpose).await
    }

    /// As [`Self::send_token`], to one of the user's addresses.
    pub(super) async fn send_token_to(
        &self,
        user: &User,
        address: &str,
        purpose: TokenPurpose,
    ) -> Result<()> {
        let token = self.env.random.token();
        // The console's page for the token, when the console's address is known.
        let link = |page: &str| {
            self.console_url
                .as_ref()
                .map(|base| format!("Open {base}/{page}?token={token}\nor use the token:\n\n"))
                .unwrap_or_default()
        };
        let (ttl, subject, body) = match purpose {
            TokenPurpose::VerifyEmail => (
                VERIFY_TTL_MS,
                "Verify your email address",
                format!(
                    "Hello {},\n\nconfirm this address for your Gatehouse account (valid 24 hours).\n\n{}token: {token}\n\n(POST /api/v1/auth/emails/verify with {{\"token\": \"...\"}})\n",
                    user.display_name,
                    link("verify"),
                ),
            ),
            TokenPurpose::ResetPassword => (
                RESET_TTL_MS,
                "Reset your password",
                format!(
                    "Hello {},\n\nsomeone asked to reset the password of your Gatehouse account. If it was you, set a new one within an hour.\n\n{}token: {token}\n\n(POST /api/v1/auth/reset/confirm with {{\"token\": \"...\", \"new_password\": \"...\"}})\nIf it was not you, ignore this email.\n",
                    user.display_name,
                    link("reset"),
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
    pub(super) async fn take_token(
        &self,
        token: &str,
        purpose: TokenPurpose,
    ) -> Result<EmailToken> {
        let hash = token_hash(token.trim());
        let now = self.env.clock.now_millis();
        Ok(self
            .store
            .run(|tx| {
                let hash = &hash;
                async move { take_email_token(&tx, hash, purpose, now).await }
            })
            .await?)
    }

    /// Marks the address a verification token was sent to as verified.
    pub async fn verify_email(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let record = self.take_token(token, TokenPurpose::VerifyEmail).await?;
        let now = self.env.clock.now();
        self.audited(
            |tx| {
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
            },
            |_| {
                let details = serde_json::json!({"email": record.email_key});
                self.event(
                    Actor::User { id: record.user_id },
                    "auth.email_verify",
                    Outcome::Success,
                    client,
                    details,
                )
            },
        )
        .await?;
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
            .audited(
                |tx| {
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
                },
                |added| {
                    let details = serde_json::json!({"email": email.as_str(), "added": added});
                    self.event(
                        Actor::User { id: user_id },
                        "auth.email_add",
                        Outcome::Success,
                        client,
                        details,
                    )
                },
            )
            .await?;
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
        self.audited(
            |tx| {
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
            },
            |_| {
                let details = serde_json::json!({"email": key});
                self.event(
                    Actor::User { id: user_id },
                    "auth.email_remove",
                    Outcome::Success,
                    client,
                    details,
                )
            },
        )
        .await?;
        Ok(())
    }

    /// Makes a verified address primary; the old primary becomes a secondary one.
    pub async fn make_primary(&self, user_id: Id, email: &str, client: &ClientInfo) -> Result<()> {
        let key = Email::parse(email)?.key();
        let now = self.env.clock.now();
        self.audited(
            |tx| {
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
            },
            |_| {
                let details = serde_json::json!({"email": key});
                self.event(
                    Actor::User { id: user_id },
                    "auth.email_primary",
                    Outcome::Success,
                    client,
                    details,
                )
            },
        )
        .await?;
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
        let token = token_hash(token.trim());
        let now = self.env.clock.now();
        // One transaction: the token is used, the password set, every
        // session and JWT ended and the event written, or none of it.
        self.audited(
            |tx| {
                let (token, hash) = (&token, &hash);
                async move {
                    let purpose = TokenPurpose::ResetPassword;
                    let record =
                        take_email_token(&tx, token, purpose, now.timestamp_millis()).await?;
                    set_password(&tx, record.user_id, hash, now).await?;
                    let ended = end_sessions(&tx, record.user_id, None).await?;
                    Ok((record.user_id, ended))
                }
            },
            |(user_id, ended)| {
                self.event(
                    Actor::User { id: *user_id },
                    "auth.reset_password",
                    Outcome::Success,
                    client,
                    serde_json::json!({"sessions_ended": ended}),
                )
            },
        )
        .await?;
        Ok(())
    }
}

/// Deletes a single-use token inside `tx` and returns it if it is live and
/// for `purpose`.
async fn take_email_token(
    tx: &Tx,
    hash: &[u8],
    purpose: TokenPurpose,
    now_ms: i64,
) -> std::result::Result<EmailToken, TxError<Error>> {
    let invalid = || {
        TxError::Abort(Error::invalid_input(
            "this token is invalid, used or expired",
        ))
    };
    let key = keyspace::email_token(hash);
    let record = key
        .get(tx)
        .await?
        .filter(|r| r.purpose == purpose)
        .ok_or_else(invalid)?;
    key.clear(tx).await?;
    if record.expires_at_ms <= now_ms {
        return Err(invalid());
    }
    Ok(record)
}

/// Sets a user's password hash inside `tx` (a generated one no longer needs
/// changing).
pub(super) async fn set_password(
    tx: &Tx,
    user_id: Id,
    hash: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> std::result::Result<(), TxError<Error>> {
    let key = keyspace::user(user_id);
    let Some(mut user) = key.get(tx).await? else {
        return Err(TxError::Abort(Error::invalid_input(
            "this token is invalid, used or expired",
        )));
    };
    user.password_hash = Some(hash.to_string());
    user.must_change_password = false;
    user.updated_at = now;
    key.put(tx, &user).await
}
