//! Credentials: upstream secrets sealed at rest, scoped to the platform, a
//! provider or an organization; created, read (never the secret), changed,
//! deleted and re-sealed under a new key-encryption key.

use super::*;

impl CatalogService {
    /// What `user` may do with a credential of `scope`, read inside `tx`.
    pub(super) async fn credential_right(
        tx: &Tx,
        user: &User,
        scope: CredentialScope,
    ) -> Result<CredentialRight, TxError<Error>> {
        let right = match scope {
            CredentialScope::Platform if user.is_platform_admin() => CredentialRight::Write,
            CredentialScope::Platform if user.is_platform_reader() => CredentialRight::Read,
            CredentialScope::Platform => CredentialRight::Hidden,
            CredentialScope::User { user_id } => {
                if user.is_platform_admin()
                    || (user.id == user_id && user.roles.contains(&Role::Provider))
                {
                    CredentialRight::Write
                } else if user.is_platform_reader() || user.id == user_id {
                    CredentialRight::Read
                } else {
                    CredentialRight::Hidden
                }
            }
            CredentialScope::Organization { org_id } => match load_access(tx, user, org_id).await {
                Ok(access) if access.allows(OrgAction::ManageCredentials) => CredentialRight::Write,
                Ok(access)
                    if access.platform_reader()
                        || access
                            .role
                            .is_some_and(|r| r >= crate::model::tenancy::OrgRole::Admin) =>
                {
                    CredentialRight::Read
                }
                Ok(_) => CredentialRight::Hidden,
                Err(TxError::Abort(e)) if e.code() == ErrorCode::NotFound => {
                    CredentialRight::Hidden
                }
                Err(e) => return Err(e),
            },
        };
        Ok(right)
    }

    /// Creates a credential; its secret is sealed before it is stored and is
    /// never returned.
    pub async fn create_credential(
        &self,
        actor: &User,
        new: NewCredential,
        client: &ClientInfo,
    ) -> Result<Credential> {
        let scope = match new.scope {
            Some(scope) => scope,
            None if actor.is_platform_admin() => CredentialScope::Platform,
            None => CredentialScope::User { user_id: actor.id },
        };
        if matches!(scope, CredentialScope::User { user_id } if user_id == actor.id)
            && !actor.is_platform_admin()
            && new.kind != CredentialKind::OauthAccount
        {
            return Err(Error::permission_denied(
                "provider accounts hold `oauth_account` credentials",
            ));
        }
        let name = crate::common::parse_name(&new.name, "credential")?;
        check_secret(&new.secret)?;
        check_metadata(&new.metadata)?;
        let now = self.env.clock.now();
        let id = self.env.ids.next_id();
        let plaintext = serde_json::to_vec(&new.secret).map_err(Error::internal)?;
        let credential = Credential {
            id,
            scope,
            name,
            kind: new.kind,
            secret: self.keys.seal(
                self.env.random.as_ref(),
                &plaintext,
                &Credential::context(id),
            )?,
            metadata: if new.metadata.is_null() {
                serde_json::json!({})
            } else {
                new.metadata
            },
            created_by: actor.id,
            created_at: now,
            updated_at: now,
        };
        let org = match scope {
            CredentialScope::Organization { org_id } => Some(org_id),
            _ => None,
        };
        let details =
            serde_json::json!({"name": credential.name, "kind": credential.kind, "scope": scope});
        let event = self.event(
            actor,
            "credentials.create",
            ("credential", id),
            org,
            client,
            details,
        );
        self.store
            .run(|tx| {
                let (credential, event) = (&credential, &event);
                async move {
                    if let CredentialScope::User { user_id } = scope
                        && keyspace::user(user_id).get(&tx).await?.is_none()
                    {
                        return abort(Error::not_found("user"));
                    }
                    match Self::credential_right(&tx, actor, scope).await? {
                        CredentialRight::Write => {}
                        CredentialRight::Read => {
                            return abort(Error::permission_denied(
                                "your role does not allow managing these credentials",
                            ));
                        }
                        CredentialRight::Hidden => {
                            return abort(match scope {
                                // Its members know the organization exists.
                                CredentialScope::Organization { org_id } => {
                                    match load_access(&tx, actor, org_id).await {
                                        Ok(_) => Error::permission_denied(
                                            "only owners and admins manage an organization's credentials",
                                        ),
                                        Err(_) => Error::not_found("organization"),
                                    }
                                }
                                _ => Error::permission_denied(
                                    "your role does not allow creating this credential",
                                ),
                            });
                        }
                    }
                    keyspace::credential_by_scope(scope, credential.id)
                        .put(&tx, &IdRef { id: credential.id })
                        .await?;
                    keyspace::credential(credential.id)
                        .put(&tx, credential)
                        .await?;
                    self.audit.stage(&tx, event).await
                }
            })
            .await?;
        Ok(credential)
    }

    pub(super) async fn credential_for(
        tx: &Tx,
        actor: &User,
        id: Id,
        write: bool,
    ) -> Result<Credential, TxError<Error>> {
        let Some(credential) = keyspace::credential(id).get(tx).await? else {
            return abort(Error::not_found("credential"));
        };
        match Self::credential_right(tx, actor, credential.scope).await? {
            CredentialRight::Hidden => abort(Error::not_found("credential")),
            CredentialRight::Read if write => abort(Error::permission_denied(
                "your role does not allow changing this credential",
            )),
            _ => Ok(credential),
        }
    }

    pub async fn get_credential(&self, actor: &User, id: Id) -> Result<Credential> {
        Ok(self
            .store
            .run(|tx| async move { Self::credential_for(&tx, actor, id, false).await })
            .await?)
    }

    /// The credentials the caller may read, oldest first; `scope` narrows it.
    pub async fn list_credentials(
        &self,
        actor: &User,
        scope: Option<CredentialScope>,
    ) -> Result<Vec<Credential>> {
        let found = self
            .store
            .run(|tx| async move {
                let all = read_all::<Credential>(&tx, &keyspace::credentials()).await?;
                let mut visible = Vec::new();
                for credential in all {
                    if scope.is_some_and(|s| s != credential.scope) {
                        continue;
                    }
                    if !matches!(
                        Self::credential_right(&tx, actor, credential.scope).await?,
                        CredentialRight::Hidden
                    ) {
                        visible.push(credential);
                    }
                }
                Ok::<_, TxError<Error>>(visible)
            })
            .await?;
        Ok(found)
    }

    /// Renames a credential, replaces its secret (sealed afresh) or metadata.
    pub async fn update_credential(
        &self,
        actor: &User,
        id: Id,
        change: CredentialChange,
        client: &ClientInfo,
    ) -> Result<Credential> {
        let name = change
            .name
            .as_deref()
            .map(|n| crate::common::parse_name(n, "credential"))
            .transpose()?;
        if let Some(secret) = &change.secret {
            check_secret(secret)?;
        }
        if let Some(metadata) = &change.metadata {
            check_metadata(metadata)?;
        }
        let sealed = match &change.secret {
            Some(secret) => {
                let plaintext = serde_json::to_vec(secret).map_err(Error::internal)?;
                Some(self.keys.seal(
                    self.env.random.as_ref(),
                    &plaintext,
                    &Credential::context(id),
                )?)
            }
            None => None,
        };
        let now = self.env.clock.now();
        let credential = self
            .store
            .run(|tx| {
                let (name, sealed, metadata) = (&name, &sealed, &change.metadata);
                async move {
                    let mut credential = Self::credential_for(&tx, actor, id, true).await?;
                    if let Some(name) = name {
                        credential.name = name.clone();
                    }
                    if let Some(sealed) = sealed {
                        credential.secret = sealed.clone();
                    }
                    if let Some(metadata) = metadata {
                        credential.metadata = metadata.clone();
                    }
                    credential.updated_at = now;
                    keyspace::credential(id).put(&tx, &credential).await?;
                    let details = serde_json::json!({
                        "name": credential.name,
                        "secret_replaced": sealed.is_some(),
                    });
                    let event = self.event(
                        actor,
                        "credentials.update",
                        ("credential", id),
                        org_of(credential.scope),
                        client,
                        details,
                    );
                    self.audit.stage(&tx, &event).await?;
                    Ok(credential)
                }
            })
            .await?;
        Ok(credential)
    }

    /// Deletes a credential no endpoint uses. Provider accounts cannot delete
    /// (SPEC §2); platform admins and organization owners and admins can.
    pub async fn delete_credential(&self, actor: &User, id: Id, client: &ClientInfo) -> Result<()> {
        self.store
            .run(|tx| async move {
                let credential = Self::credential_for(&tx, actor, id, true).await?;
                if matches!(credential.scope, CredentialScope::User { .. })
                    && !actor.is_platform_admin()
                {
                    return abort(Error::permission_denied(
                        "a platform admin deletes provider credentials",
                    ));
                }
                let used = read_all::<Endpoint>(&tx, &keyspace::endpoints())
                    .await?
                    .into_iter()
                    .find(|e| e.credential_id == Some(id));
                if let Some(endpoint) = used {
                    return abort(Error::conflict(format!(
                        "endpoint {} uses this credential",
                        endpoint.name
                    )));
                }
                keyspace::credential_by_scope(credential.scope, id)
                    .clear(&tx)
                    .await?;
                keyspace::credential(id).clear(&tx).await?;
                let event = self.event(
                    actor,
                    "credentials.delete",
                    ("credential", id),
                    org_of(credential.scope),
                    client,
                    serde_json::json!({"name": credential.name}),
                );
                self.audit.stage(&tx, &event).await
            })
            .await?;
        Ok(())
    }

    /// A credential's secret data, for upstream calls. Never for clients.
    pub async fn credential_secret(&self, id: Id) -> Result<serde_json::Value> {
        let credential = self
            .store
            .run(|tx| async move { keyspace::credential(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("credential"))?;
        let plaintext = self
            .keys
            .open(&credential.secret, &Credential::context(id))?;
        serde_json::from_slice(&plaintext).map_err(Error::internal)
    }

    /// Re-seals every secret not sealed with the current key; returns how many
    /// were re-sealed. Each credential is its own transaction, so the work can
    /// be interrupted and run again.
    pub async fn reseal_all(&self) -> Result<usize> {
        let ids: Vec<Id> = self
            .store
            .run(|tx| async move {
                Ok::<_, TxError<Error>>(
                    read_all::<Credential>(&tx, &keyspace::credentials())
                        .await?
                        .into_iter()
                        .map(|c| c.id)
                        .collect::<Vec<_>>(),
                )
            })
            .await?;
        let mut resealed = 0;
        for id in ids {
            let keys = &self.keys;
            let random = self.env.random.as_ref();
            let changed = self
                .store
                .run(|tx| async move {
                    let key = keyspace::credential(id);
                    let Some(mut credential) = key.get(&tx).await? else {
                        return Ok(false);
                    };
                    let context = Credential::context(id);
                    let Some(sealed) = keys
                        .reseal(random, &credential.secret, &context)
                        .map_err(TxError::Abort)?
                    else {
                        return Ok(false);
                    };
                    credential.secret = sealed;
                    key.put(&tx, &credential).await?;
                    Ok::<_, TxError<Error>>(true)
                })
                .await?;
            resealed += usize::from(changed);
        }
        Ok(resealed)
    }
}
