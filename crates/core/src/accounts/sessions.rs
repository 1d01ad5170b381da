//! Sessions and bearer credentials: starting, checking, listing and ending
//! sessions, JWTs and their introspection.

use super::*;

impl AccountService {
    /// Hands a signed-in user a JWT (`kind` none) or a session of `kind`.
    pub(super) async fn grant(
        &self,
        user: &User,
        kind: Option<SessionKind>,
        client: &ClientInfo,
    ) -> Result<Grant> {
        Ok(match kind {
            None => Grant::Token(self.tokens.issue(user)?),
            Some(kind) => {
                let (session, token) = self.start_session(user, kind, client.clone()).await?;
                Grant::Session(session, token)
            }
        })
    }

    pub(super) async fn start_session(
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
        self.audited(
            |tx| async move {
                let index = keyspace::session_by_user(user_id, session_id);
                let Some(r) = index.get(&tx).await? else {
                    return Err(TxError::Abort(Error::not_found("session")));
                };
                keyspace::session(&r.token_hash).clear(&tx).await?;
                index.clear(&tx).await
            },
            |_| {
                let details = serde_json::json!({"session_id": session_id});
                self.event(
                    Actor::User { id: user_id },
                    "auth.session_revoke",
                    Outcome::Success,
                    client,
                    details,
                )
            },
        )
        .await?;
        Ok(())
    }

    /// Ends the session of `token`, if it exists.
    pub async fn logout(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let hash = token_hash(token);
        self.store
            .run(|tx| {
                let hash = &hash;
                async move {
                    let key = keyspace::session(hash);
                    if let Some(session) = key.get(&tx).await? {
                        end_session(&tx, hash, &session).await?;
                        let event = self.event(
                            Actor::User {
                                id: session.user_id,
                            },
                            "auth.logout",
                            Outcome::Success,
                            client,
                            serde_json::json!({"session_id": session.id}),
                        );
                        self.audit.stage(&tx, &event).await?;
                    }
                    Ok::<_, TxError<Error>>(())
                }
            })
            .await?;
        Ok(())
    }

    /// Signs a JWT holder out: every JWT of the user ends (a JWT is not
    /// stored, so the user's token epoch moves on); sessions stay.
    pub async fn logout_token(&self, user: &User, client: &ClientInfo) -> Result<()> {
        let user_id = user.id;
        self.audited(
            |tx| async move { end_tokens(&tx, user_id).await },
            |_| {
                let details = serde_json::json!({"kind": "jwt", "ended": "every jwt"});
                self.event(
                    Actor::User { id: user.id },
                    "auth.logout",
                    Outcome::Success,
                    client,
                    details,
                )
            },
        )
        .await?;
        Ok(())
    }

    /// Ends every JWT and every session of the user except the session
    /// `keep`; returns how many sessions ended.
    pub async fn revoke_all_sessions(&self, user_id: Id, keep: Option<Id>) -> Result<usize> {
        Ok(self
            .store
            .run(|tx| async move { end_sessions(&tx, user_id, keep).await })
            .await?)
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
        if claims.epoch != user.token_epoch {
            return Err(Error::new(
                ErrorCode::Unauthenticated,
                "this token has ended (signed out, or the password changed): sign in again",
            ));
        }
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
        if self.mfa_required_for(user) && !user.has_second_factor() {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "your account holds admin and must have a second factor: enrol one first (POST /api/v1/auth/mfa/totp, or register a passkey)",
            ));
        }
        Ok(())
    }
}

/// Moves the user's token epoch on, which ends every JWT issued before.
async fn end_tokens(tx: &Tx, user_id: Id) -> std::result::Result<(), TxError<Error>> {
    change_user(tx, user_id, |u| {
        u.token_epoch = u.token_epoch.saturating_add(1)
    })
    .await
}

/// Ends every JWT and every session of the user except the session `keep`,
/// inside `tx`; how many sessions ended.
pub(super) async fn end_sessions(
    tx: &Tx,
    user_id: Id,
    keep: Option<Id>,
) -> std::result::Result<usize, TxError<Error>> {
    change_user(tx, user_id, |u| {
        u.token_epoch = u.token_epoch.saturating_add(1)
    })
    .await?;
    let refs = tx
        .get_range(
            &keyspace::sessions_of(user_id),
            gatehouse_storage::RangeOptions::default(),
        )
        .await?;
    let mut ended = 0;
    for (key, value) in &refs.entries {
        let (_, _, session_id): (String, u64, u64) = gatehouse_storage::tuple::unpack(key)
            .map_err(|e| TxError::Abort(Error::internal(format!("session index key: {e}"))))?;
        if Some(Id(session_id)) == keep {
            continue;
        }
        let r: SessionRef = crate::codec::decode(value).map_err(TxError::Abort)?;
        keyspace::session(&r.token_hash).clear(tx).await?;
        tx.clear(key)?;
        ended += 1;
    }
    Ok(ended)
}
