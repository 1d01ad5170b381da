//! Password sign-in with throttling, and password changes. Sign-in never
//! tells whether an account exists: an unknown login, a disabled account and
//! a wrong password give the same error after the same work.

use super::*;

impl AccountService {
    pub(super) async fn find_by_login(&self, login: &str) -> Result<Option<User>> {
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
    pub(super) async fn check_credentials(
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

    pub(super) async fn verify_credentials(&self, login: &str, password: &str) -> Result<User> {
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
    pub(super) async fn upgrade_hash(&self, user: &User, password: &str) {
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
}
