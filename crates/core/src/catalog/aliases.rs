//! Aliases: other names for a model, global (admins) or a user's own.

use super::*;

impl CatalogService {
    /// Creates an alias: global (admins) or the caller's own (holders of `user`).
    pub async fn create_alias(
        &self,
        actor: &User,
        alias: &str,
        model_id: Id,
        global: bool,
        client: &ClientInfo,
    ) -> Result<Alias> {
        if global {
            require_admin(actor)?;
        } else {
            require_user_role(actor)?;
        }
        let name = model::parse_model_name(alias)?;
        let record = Alias {
            id: self.env.ids.next_id(),
            alias: name,
            model_id,
            owner_id: (!global).then_some(actor.id),
            created_at: self.env.clock.now(),
        };
        self.audited(
            |tx| {
                let record = &record;
                async move {
                    let visible = keyspace::model(record.model_id)
                        .get(&tx)
                        .await?
                        .is_some_and(|m| m.enabled || actor.is_platform_reader());
                    if !visible {
                        return abort(Error::invalid_input("no model has this model_id"));
                    }
                    if keyspace::model_by_name(&record.alias)
                        .get(&tx)
                        .await?
                        .is_some()
                    {
                        return abort(Error::conflict("a model has this name"));
                    }
                    let index = match record.owner_id {
                        None => keyspace::alias_global(&record.alias),
                        Some(owner) => keyspace::alias_user(owner, &record.alias),
                    };
                    claim_name(&tx, index, record.id, "an alias").await?;
                    keyspace::alias(record.id).put(&tx, record).await
                }
            },
            |_| {
                let details = serde_json::json!({
                    "alias": record.alias,
                    "model_id": record.model_id,
                    "global": global,
                });
                self.event(
                    actor,
                    "aliases.create",
                    ("alias", record.id),
                    None,
                    client,
                    details,
                )
            },
        )
        .await?;
        Ok(record)
    }

    /// Global aliases and the caller's own; platform readers see every alias.
    pub async fn list_aliases(&self, actor: &User) -> Result<Vec<Alias>> {
        let mut aliases = self
            .store
            .run(|tx| async move { read_all::<Alias>(&tx, &keyspace::aliases()).await })
            .await?;
        if !actor.is_platform_reader() {
            if actor.is_provider_account() {
                return Err(Error::permission_denied(
                    "provider accounts manage their provider credentials only",
                ));
            }
            aliases.retain(|a| a.owner_id.is_none() || a.owner_id == Some(actor.id));
        }
        Ok(aliases)
    }

    /// Points an alias at another model, or deletes it (`model_id` `None`).
    /// Owners change their own; admins any.
    pub async fn change_alias(
        &self,
        actor: &User,
        id: Id,
        model_id: Option<Id>,
        client: &ClientInfo,
    ) -> Result<Option<Alias>> {
        let action = if model_id.is_some() {
            "aliases.update"
        } else {
            "aliases.delete"
        };
        let result = self
            .audited(
                |tx| async move {
                    let key = keyspace::alias(id);
                    let Some(mut alias) = key.get(&tx).await? else {
                        return abort(Error::not_found("alias"));
                    };
                    let own = alias.owner_id == Some(actor.id);
                    let visible = own || alias.owner_id.is_none() || actor.is_platform_reader();
                    if !visible || actor.is_provider_account() {
                        return abort(Error::not_found("alias"));
                    }
                    if !own && !actor.is_platform_admin() {
                        return abort(Error::permission_denied(
                            "only platform admins change global or others' aliases",
                        ));
                    }
                    match model_id {
                        None => {
                            clear_alias(&tx, &alias).await?;
                            Ok(None)
                        }
                        Some(model_id) => {
                            if keyspace::model(model_id).get(&tx).await?.is_none() {
                                return abort(Error::invalid_input("no model has this model_id"));
                            }
                            alias.model_id = model_id;
                            key.put(&tx, &alias).await?;
                            Ok(Some(alias))
                        }
                    }
                },
                |_| {
                    self.event(
                        actor,
                        action,
                        ("alias", id),
                        None,
                        client,
                        serde_json::json!({"model_id": model_id}),
                    )
                },
            )
            .await?;
        Ok(result)
    }
}
