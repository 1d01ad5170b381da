//! Models: the public catalogue of names, prices and restrictions, each
//! served by one endpoint.

use super::*;

impl CatalogService {
    pub async fn create_model(
        &self,
        actor: &User,
        spec: ModelSpec,
        client: &ClientInfo,
    ) -> Result<Model> {
        require_admin(actor)?;
        let name = model::parse_model_name(spec.name.as_deref().unwrap_or_default())?;
        let endpoint_id = spec
            .endpoint_id
            .ok_or_else(|| Error::invalid_input("endpoint_id is required"))?;
        let upstream = match spec.upstream_name.as_deref() {
            Some(u) => model::parse_model_name(u)?,
            None => name.clone(),
        };
        let now = self.env.clock.now();
        let model = Model {
            id: self.env.ids.next_id(),
            name,
            endpoint_id,
            upstream_name: upstream,
            provider: spec.provider.clone().unwrap_or_default(),
            context_length: spec.context_length.flatten(),
            input_cost_per_token: check_cost(
                spec.input_cost_per_token.unwrap_or(0.0),
                "input_cost_per_token",
            )?,
            output_cost_per_token: check_cost(
                spec.output_cost_per_token.unwrap_or(0.0),
                "output_cost_per_token",
            )?,
            enabled: spec.enabled.unwrap_or(true),
            restricted: spec.restricted.unwrap_or(false),
            created_at: now,
            updated_at: now,
        };
        self.audited(
            |tx| {
                let model = &model;
                async move {
                    if keyspace::endpoint(model.endpoint_id)
                        .get(&tx)
                        .await?
                        .is_none()
                    {
                        return abort(Error::invalid_input("no endpoint has this endpoint_id"));
                    }
                    if keyspace::alias_global(&model.name)
                        .get(&tx)
                        .await?
                        .is_some()
                    {
                        return abort(Error::conflict("a global alias has this name"));
                    }
                    claim_name(
                        &tx,
                        keyspace::model_by_name(&model.name),
                        model.id,
                        "a model",
                    )
                    .await?;
                    keyspace::model(model.id).put(&tx, model).await
                }
            },
            |_| {
                self.event(
                    actor,
                    "models.create",
                    ("model", model.id),
                    None,
                    client,
                    model_details(&model),
                )
            },
        )
        .await?;
        Ok(model)
    }

    /// Every model for platform readers; the enabled ones for everyone else
    /// holding `user`.
    pub async fn list_models(&self, actor: &User) -> Result<Vec<Model>> {
        if !actor.is_platform_reader() {
            require_user_role(actor)?;
        }
        let mut models = self
            .store
            .run(|tx| async move { read_all::<Model>(&tx, &keyspace::models()).await })
            .await?;
        if !actor.is_platform_reader() {
            models.retain(|m| m.enabled);
        }
        Ok(models)
    }

    pub async fn get_model(&self, actor: &User, id: Id) -> Result<Model> {
        let model = self
            .store
            .run(|tx| async move { keyspace::model(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("model"))?;
        let visible =
            actor.is_platform_reader() || (model.enabled && actor.roles.contains(&Role::User));
        if !visible {
            return Err(Error::not_found("model"));
        }
        Ok(model)
    }

    pub async fn update_model(
        &self,
        actor: &User,
        id: Id,
        spec: ModelSpec,
        client: &ClientInfo,
    ) -> Result<Model> {
        require_admin(actor)?;
        let name = spec
            .name
            .as_deref()
            .map(model::parse_model_name)
            .transpose()?;
        let upstream = spec
            .upstream_name
            .as_deref()
            .map(model::parse_model_name)
            .transpose()?;
        let input = spec
            .input_cost_per_token
            .map(|c| check_cost(c, "input_cost_per_token"))
            .transpose()?;
        let output = spec
            .output_cost_per_token
            .map(|c| check_cost(c, "output_cost_per_token"))
            .transpose()?;
        let now = self.env.clock.now();
        let model = self
            .audited(
                |tx| {
                    let (name, upstream, spec) = (&name, &upstream, &spec);
                    async move {
                        let key = keyspace::model(id);
                        let Some(mut model) = key.get(&tx).await? else {
                            return abort(Error::not_found("model"));
                        };
                        if let Some(name) = name
                            && name != &model.name
                        {
                            if keyspace::alias_global(name).get(&tx).await?.is_some() {
                                return abort(Error::conflict("a global alias has this name"));
                            }
                            claim_name(&tx, keyspace::model_by_name(name), id, "a model").await?;
                            keyspace::model_by_name(&model.name).clear(&tx).await?;
                            model.name = name.clone();
                        }
                        if let Some(endpoint) = spec.endpoint_id {
                            if keyspace::endpoint(endpoint).get(&tx).await?.is_none() {
                                return abort(Error::invalid_input(
                                    "no endpoint has this endpoint_id",
                                ));
                            }
                            model.endpoint_id = endpoint;
                        }
                        if let Some(upstream) = upstream {
                            model.upstream_name = upstream.clone();
                        }
                        if let Some(provider) = &spec.provider {
                            model.provider = provider.trim().to_string();
                        }
                        if let Some(context) = spec.context_length {
                            model.context_length = context;
                        }
                        if let Some(cost) = input {
                            model.input_cost_per_token = cost;
                        }
                        if let Some(cost) = output {
                            model.output_cost_per_token = cost;
                        }
                        if let Some(enabled) = spec.enabled {
                            model.enabled = enabled;
                        }
                        if let Some(restricted) = spec.restricted {
                            model.restricted = restricted;
                        }
                        model.updated_at = now;
                        key.put(&tx, &model).await?;
                        Ok(model)
                    }
                },
                |model| {
                    self.event(
                        actor,
                        "models.update",
                        ("model", id),
                        None,
                        client,
                        model_details(model),
                    )
                },
            )
            .await?;
        Ok(model)
    }

    /// Deletes a model with its aliases and subscriptions.
    pub async fn delete_model(&self, actor: &User, id: Id, client: &ClientInfo) -> Result<()> {
        require_admin(actor)?;
        self.audited(
            |tx| async move {
                let Some(model) = keyspace::model(id).get(&tx).await? else {
                    return abort(Error::not_found("model"));
                };
                for alias in read_all::<Alias>(&tx, &keyspace::aliases()).await? {
                    if alias.model_id == id {
                        clear_alias(&tx, &alias).await?;
                    }
                }
                for sub in read_all::<Subscription>(&tx, &keyspace::subscriptions()).await? {
                    if sub.model_id == id {
                        clear_subscription(&tx, &sub).await?;
                    }
                }
                keyspace::model_by_name(&model.name).clear(&tx).await?;
                keyspace::model(id).clear(&tx).await?;
                Ok(model)
            },
            |model| {
                self.event(
                    actor,
                    "models.delete",
                    ("model", id),
                    None,
                    client,
                    serde_json::json!({"name": model.name}),
                )
            },
        )
        .await?;
        Ok(())
    }
}
