//! Password sign-in with throttling, and password changes. Sign-in never
//! tells whether an account exists: an unknown login, a disabled account and
//! a wrong password give the same error after the same work.

use super::emails::set_password;
use super::sessions::end_sessions;
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
        ensure_single_step(&user)?;
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
        ensure_single_step(&user)?;
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
        let now = self.env.clock.now();
        // One transaction: the new password, the ended sessions and JWTs,
        // and the event, or none of it.
        let ended = self
            .audited(
                |tx| {
                    let hash = &hash;
                    async move {
                        set_password(&tx, user_id, hash, now).await?;
                        end_sessions(&tx, user_id, keep).await
                    }
                },
                |ended| {
                    self.event(
                        Actor::User { id: user_id },
                        "auth.password_change",
                        Outcome::Success,
                        client,
                        serde_json::json!({"sessions_ended": ended}),
                    )
                },
            )
            .await?;
        tracing::info!(%user_id, sessions_ended = ended, "password changed");
        Ok(())
    }

    /// Checks a login (email or username) and password, under the throttle of
    /// [`throttle`]. The attempt is counted, in one transaction with the check
    /// that it may be made, before the password is looked at: so parallel
    /// attempts are serialized by the store, and at most the free failures are
    /// ever evaluated at once. A success takes its count back.
    ///
    /// An attempt counts against the login and the client's IP, unless the
    /// client presents a device proof for this account ([`Devices`]): then
    /// only against that device, so an attacker's failures elsewhere do not
    /// lock the user's own client out.
    pub(super) async fn check_credentials(
        &self,
        login: &str,
        password: &str,
        client: &ClientInfo,
    ) -> Result<User> {
        let subject: String = login.trim().to_lowercase().chars().take(320).collect();
        let user = self.find_by_login(login).await?;
        let device = client
            .device
            .as_deref()
            .and_then(|proof| self.devices.verify(proof))
            .filter(|(owner, _)| user.as_ref().is_some_and(|u| u.id == *owner));
        let counters: Vec<Counter> = match &device {
            Some((_, device)) => vec![Counter::of_login("device", device)],
            None => std::iter::once(Counter::of_login("account", &subject))
                .chain(client.ip.as_deref().map(Counter::of_ip))
                .collect(),
        };
        let wait = self.count_attempt(&counters).await?;
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
        let outcome = self.verify_credentials(user, password).await;
        let is_bad = matches!(&outcome, Err(e) if e.code() == ErrorCode::Unauthenticated);
        if !is_bad {
            // A success (or a failure of ours) takes the attempt back: the
            // login's and the device's counts start over, the IP's drops one.
            self.take_back_attempt(&counters, outcome.is_ok()).await?;
        }
        if let Ok(user) = &outcome
            && let Some(domain) = self.sso_required_for(&user.email)
        {
            let details = serde_json::json!({"reason": "sso_required", "domain": domain});
            self.audit(
                Actor::User { id: user.id },
                "auth.login",
                Outcome::Refused,
                client,
                details,
            )
            .await;
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                format!("accounts of {domain} sign in with single sign-on"),
            ));
        }
        match &outcome {
            Ok(user) => {
                self.audit(
                    Actor::User { id: user.id },
                    "auth.login",
                    Outcome::Success,
                    client,
                    serde_json::json!({"trusted_device": device.is_some()}),
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

    /// Counts an attempt against each of `counters`, in one transaction with
    /// the check that it may be made; how many milliseconds to wait when it
    /// may not (then nothing is counted).
    pub(super) async fn count_attempt(&self, counters: &[Counter]) -> Result<Option<i64>> {
        let now = self.env.clock.now_millis();
        let wait = self
            .store
            .run(|tx| async move {
                let mut records = Vec::with_capacity(counters.len());
                let mut wait = None;
                for counter in counters {
                    let record = counter.key.get(&tx).await?;
                    wait = wait.max(record.and_then(|f| f.wait_ms(now, counter.free)));
                    records.push(record);
                }
                if wait.is_none() {
                    for (counter, record) in counters.iter().zip(records) {
                        let record = throttle::Failures::after_failure(record, now);
                        counter.key.put(&tx, &record).await?;
                    }
                }
                Ok::<_, TxError<Error>>(wait)
            })
            .await?;
        Ok(wait)
    }

    /// Takes back an attempt that was not a wrong guess: after a success
    /// (`clear`) a personal count starts over and a shared one drops one;
    /// after a failure of ours each drops one.
    pub(super) async fn take_back_attempt(&self, counters: &[Counter], clear: bool) -> Result<()> {
        self.store
            .run(|tx| async move {
                for Counter { key, shared, .. } in counters {
                    let record = key.get(&tx).await?;
                    match record.and_then(|f| f.taken_back()) {
                        Some(f) if *shared || !clear => key.put(&tx, &f).await?,
                        _ => key.clear(&tx).await?,
                    }
                }
                Ok::<_, TxError<Error>>(())
            })
            .await?;
        Ok(())
    }

    /// The domain of `email` when its accounts must use single sign-on.
    fn sso_required_for(&self, email: &str) -> Option<String> {
        let domain = email.rsplit_once('@')?.1.to_ascii_lowercase();
        self.sso_required_domains
            .contains(&domain)
            .then_some(domain)
    }

    /// Deletes the sign-in failure counters whose window is over (the job
    /// `login_throttle` runs it), a page per transaction; how many went.
    pub async fn prune_login_failures(&self) -> Result<usize> {
        let now = self.env.clock.now_millis();
        crate::codec::prune_range(
            &self.store,
            keyspace::all_login_failures(),
            |record: &throttle::Failures| record.expired(now),
        )
        .await
    }

    /// A device proof for a client that has just signed in to `user`: the
    /// browser keeps it as a cookie ([`ClientInfo::device`] at the next
    /// sign-in). A client that already holds one for `user` keeps its ID.
    pub fn device_proof(&self, user: &User, client: &ClientInfo) -> String {
        let device = client
            .device
            .as_deref()
            .and_then(|proof| self.devices.verify(proof))
            .filter(|(owner, _)| *owner == user.id)
            .map(|(_, device)| device)
            .unwrap_or_else(|| self.env.random.alphanumeric(22));
        self.devices.issue(user.id, &device)
    }

    /// Checks `password` against `user`'s (found by login, maybe not at all),
    /// always doing the same work.
    pub(super) async fn verify_credentials(
        &self,
        user: Option<User>,
        password: &str,
    ) -> Result<User> {
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

/// [`login`](AccountService::login) and
/// [`login_session`](AccountService::login_session) sign in with a password
/// alone: accounts with a second factor take
/// [`password_step`](AccountService::password_step).
fn ensure_single_step(user: &User) -> Result<()> {
    if user.totp_enabled {
        return Err(Error::new(
            ErrorCode::Unauthenticated,
            "this account has a second factor: sign in with POST /api/v1/auth/login, then /api/v1/auth/login/mfa",
        ));
    }
    Ok(())
}

/// One failure counter an attempt is made against.
pub(super) struct Counter {
    key: Key<throttle::Failures>,
    /// Failures before delays start.
    free: u32,
    /// Many people may sign in from it (an IP): a success takes back only
    /// its own attempt instead of starting the count over.
    shared: bool,
}

impl Counter {
    pub(super) fn of_login(kind: &str, subject: &str) -> Self {
        Counter {
            key: keyspace::login_failures(kind, subject),
            free: throttle::ACCOUNT_FREE_FAILURES,
            shared: false,
        }
    }

    fn of_ip(ip: &str) -> Self {
        Counter {
            key: keyspace::login_failures("ip", ip),
            free: throttle::IP_FREE_FAILURES,
            shared: true,
        }
    }
}
