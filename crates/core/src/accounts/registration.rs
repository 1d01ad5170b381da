//! Registration: self-service sign-up, the first admin at first start, and
//! accounts an admin creates.

use super::*;

impl AccountService {
    /// Creates the user and its index entries; `Conflict` if the email or
    /// username is taken.
    /// Creates an account; the audit event `describe` makes of it is written
    /// in the same transaction.
    pub(super) async fn insert(
        &self,
        new: NewUser,
        describe: impl Fn(&User) -> crate::audit::AuditEvent,
    ) -> Result<User> {
        let now = self.env.clock.now();
        let user = User {
            username: new.username.as_ref().map(|u| u.as_str().to_string()),
            password_hash: new.password_hash,
            email_verified: new.email_verified,
            must_change_password: new.must_change_password,
            ..User::new(
                self.env.ids.next_id(),
                new.email.as_str().to_string(),
                new.display_name,
                new.roles,
                now,
            )
        };
        let email_key = new.email.key();
        // Every account that holds `user` gets a personal organization with it.
        let personal_org = user
            .roles
            .contains(&Role::User)
            .then(|| (self.env.ids.next_id(), self.env.ids.next_id()));
        let describe = &describe;
        self.store
            .run(|tx| {
                let (user, email_key, username) = (&user, &email_key, &new.username);
                async move {
                    if let Some(ids) = personal_org {
                        crate::tenancy::create_personal_org(&tx, ids, user, now).await?;
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
                    keyspace::user(user.id).put(&tx, user).await?;
                    self.audit.stage(&tx, &describe(user)).await
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
            email_verified: false,
        };
        let email_text = new.email.as_str().to_string();
        let registered = |user: &User| {
            self.event(
                Actor::User { id: user.id },
                "auth.register",
                Outcome::Success,
                client,
                serde_json::json!({"email": email_text}),
            )
        };
        match self.insert(new, registered).await {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "account registered");
                self.send_token(&user, TokenPurpose::VerifyEmail).await?;
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

    /// The first admin the first start created, if the account still exists.
    pub async fn first_admin(&self) -> Result<Option<User>> {
        let marker = self
            .store
            .run(|tx| async move { keyspace::bootstrap().get(&tx).await })
            .await?;
        match marker {
            None => Ok(None),
            Some(record) => match self.get_user(record.admin_id).await {
                Ok(user) => Ok(Some(user)),
                Err(e) if e.code() == crate::ErrorCode::NotFound => Ok(None),
                Err(e) => Err(e),
            },
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
                email_verified: false,
            },
                |admin| {
                    let details = serde_json::json!({"user_id": admin.id, "email": admin.email, "generated_password": generated.is_some()});
                    self.event(
                        Actor::System,
                        "auth.bootstrap_admin",
                        Outcome::Success,
                        &ClientInfo::default(),
                        details,
                    )
                },
            )
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
                    email_verified: false,
                },
                |user| {
                    let details = serde_json::json!({"user_id": user.id, "email": user.email, "provider": new.provider});
                    self.audit.event(NewEvent {
                        actor: Actor::User { id: admin.id },
                        action: "users.create",
                        outcome: Outcome::Success,
                        target: Some(("user", user.id.to_string())),
                        organization: None,
                        client,
                        details,
                    })
                },
            )
            .await?;
        Ok((user, generated))
    }

    /// 20 characters from a 62-letter alphabet: about 119 bits.
    pub(super) fn generate_password(&self) -> String {
        self.env.random.alphanumeric(20)
    }
}
