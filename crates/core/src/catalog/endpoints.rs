//! Inference endpoints: where models are served, with their credential,
//! timeouts and proxy; model sync and health probes read their model lists.

use super::*;

impl CatalogService {
    /// The enabled endpoints that neither a call nor a probe has heard from in
    /// the last `idle_ms`: the ones worth probing.
    pub async fn endpoints_to_probe(&self, idle_ms: i64) -> Result<Vec<Endpoint>> {
        let since = self.env.clock.now_millis() - idle_ms;
        let all = self
            .store
            .run(|tx| async move { read_all::<Endpoint>(&tx, &keyspace::endpoints()).await })
            .await?;
        Ok(all
            .into_iter()
            .filter(|e| e.enabled && self.health.last_outcome_ms(e.id) <= since)
            .collect())
    }

    /// Asks the endpoint for its model list and records whether it answered;
    /// `Err` only when its credential cannot be opened.
    pub async fn probe(&self, endpoint: &Endpoint) -> Result<()> {
        // Taken before the call: an endpoint deleted meanwhile is not brought
        // back onto the board by its late answer.
        let cell = self.health.cell(endpoint.id);
        let secret = self.endpoint_secret(endpoint).await?;
        let answered = self.lister.probe(endpoint, secret.as_ref()).await;
        let now = self.env.clock.now_millis();
        match answered {
            Ok(()) => cell.success(now),
            Err(reason) => cell.failure(now, reason),
        }
        Ok(())
    }

    pub(super) async fn endpoint_secret(
        &self,
        endpoint: &Endpoint,
    ) -> Result<Option<serde_json::Value>> {
        match endpoint.credential_id {
            Some(id) => Ok(Some(self.credential_secret(id).await?)),
            None => Ok(None),
        }
    }

    pub async fn create_endpoint(
        &self,
        actor: &User,
        spec: EndpointSpec,
        client: &ClientInfo,
    ) -> Result<Endpoint> {
        require_admin(actor)?;
        let now = self.env.clock.now();
        let name = crate::common::parse_name(spec.name.as_deref().unwrap_or_default(), "endpoint")?;
        let base_url = model::parse_base_url(
            spec.base_url
                .as_deref()
                .ok_or_else(|| Error::invalid_input("base_url is required"))?,
        )?;
        let endpoint = Endpoint {
            id: self.env.ids.next_id(),
            name,
            base_url,
            flavour: spec.flavour.unwrap_or(ApiFlavour::Openai),
            credential_id: spec.credential_id.flatten(),
            proxy_url: spec
                .proxy_url
                .flatten()
                .map(|p| model::parse_url(&p, "proxy_url"))
                .transpose()?,
            connect_timeout_ms: check_timeout(
                spec.connect_timeout_ms
                    .unwrap_or(DEFAULT_CONNECT_TIMEOUT_MS),
                "connect_timeout_ms",
            )?,
            request_timeout_ms: check_timeout(
                spec.request_timeout_ms
                    .unwrap_or(DEFAULT_REQUEST_TIMEOUT_MS),
                "request_timeout_ms",
            )?,
            enabled: spec.enabled.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        self.audited(
            |tx| {
                let endpoint = &endpoint;
                async move {
                    check_credential_exists(&tx, endpoint.credential_id).await?;
                    claim_name(
                        &tx,
                        keyspace::endpoint_by_name(&endpoint.name),
                        endpoint.id,
                        "an endpoint",
                    )
                    .await?;
                    keyspace::endpoint(endpoint.id).put(&tx, endpoint).await
                }
            },
            |_| {
                self.event(
                    actor,
                    "endpoints.create",
                    ("endpoint", endpoint.id),
                    None,
                    client,
                    endpoint_details(&endpoint),
                )
            },
        )
        .await?;
        Ok(endpoint)
    }

    pub async fn list_endpoints(&self, actor: &User) -> Result<Vec<Endpoint>> {
        require_reader(actor)?;
        Ok(self
            .store
            .run(|tx| async move { read_all::<Endpoint>(&tx, &keyspace::endpoints()).await })
            .await?)
    }

    pub async fn get_endpoint(&self, actor: &User, id: Id) -> Result<Endpoint> {
        require_reader(actor)?;
        self.endpoint(id).await
    }

    pub(super) async fn endpoint(&self, id: Id) -> Result<Endpoint> {
        self.store
            .run(|tx| async move { keyspace::endpoint(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("endpoint"))
    }

    pub async fn update_endpoint(
        &self,
        actor: &User,
        id: Id,
        spec: EndpointSpec,
        client: &ClientInfo,
    ) -> Result<Endpoint> {
        require_admin(actor)?;
        let name = spec
            .name
            .as_deref()
            .map(|n| crate::common::parse_name(n, "endpoint"))
            .transpose()?;
        let base_url = spec
            .base_url
            .as_deref()
            .map(model::parse_base_url)
            .transpose()?;
        let proxy_url = spec
            .proxy_url
            .clone()
            .map(|p| p.map(|p| model::parse_url(&p, "proxy_url")).transpose())
            .transpose()?;
        let connect = spec
            .connect_timeout_ms
            .map(|ms| check_timeout(ms, "connect_timeout_ms"))
            .transpose()?;
        let request = spec
            .request_timeout_ms
            .map(|ms| check_timeout(ms, "request_timeout_ms"))
            .transpose()?;
        let now = self.env.clock.now();
        let endpoint = self
            .audited(
                |tx| {
                    let (name, base_url, proxy_url, spec) = (&name, &base_url, &proxy_url, &spec);
                    async move {
                        let key = keyspace::endpoint(id);
                        let Some(mut endpoint) = key.get(&tx).await? else {
                            return abort(Error::not_found("endpoint"));
                        };
                        if let Some(name) = name
                            && name != &endpoint.name
                        {
                            claim_name(&tx, keyspace::endpoint_by_name(name), id, "an endpoint")
                                .await?;
                            keyspace::endpoint_by_name(&endpoint.name)
                                .clear(&tx)
                                .await?;
                            endpoint.name = name.clone();
                        }
                        if let Some(url) = base_url {
                            endpoint.base_url = url.clone();
                        }
                        if let Some(flavour) = spec.flavour {
                            endpoint.flavour = flavour;
                        }
                        if let Some(credential) = spec.credential_id {
                            check_credential_exists(&tx, credential).await?;
                            endpoint.credential_id = credential;
                        }
                        if let Some(proxy) = proxy_url {
                            endpoint.proxy_url = proxy.clone();
                        }
                        if let Some(ms) = connect {
                            endpoint.connect_timeout_ms = ms;
                        }
                        if let Some(ms) = request {
                            endpoint.request_timeout_ms = ms;
                        }
                        if let Some(enabled) = spec.enabled {
                            endpoint.enabled = enabled;
                        }
                        endpoint.updated_at = now;
                        key.put(&tx, &endpoint).await?;
                        Ok(endpoint)
                    }
                },
                |endpoint| {
                    self.event(
                        actor,
                        "endpoints.update",
                        ("endpoint", id),
                        None,
                        client,
                        endpoint_details(endpoint),
                    )
                },
            )
            .await?;
        Ok(endpoint)
    }

    /// Deletes an endpoint no model uses.
    pub async fn delete_endpoint(&self, actor: &User, id: Id, client: &ClientInfo) -> Result<()> {
        require_admin(actor)?;
        self.audited(
            |tx| async move {
                let Some(endpoint) = keyspace::endpoint(id).get(&tx).await? else {
                    return abort(Error::not_found("endpoint"));
                };
                let used = read_all::<Model>(&tx, &keyspace::models())
                    .await?
                    .into_iter()
                    .find(|m| m.endpoint_id == id);
                if let Some(model) = used {
                    return abort(Error::conflict(format!(
                        "model {} uses this endpoint",
                        model.name
                    )));
                }
                keyspace::endpoint_by_name(&endpoint.name)
                    .clear(&tx)
                    .await?;
                keyspace::endpoint(id).clear(&tx).await?;
                Ok(endpoint)
            },
            |endpoint| {
                self.event(
                    actor,
                    "endpoints.delete",
                    ("endpoint", id),
                    None,
                    client,
                    serde_json::json!({"name": endpoint.name}),
                )
            },
        )
        .await?;
        self.health.forget(id);
        Ok(())
    }

    /// Reads the endpoint's model list and adds the models it does not know
    /// yet (disabled, so an admin sets prices and enables them) and updates
    /// what changed upstream. Running it again changes nothing.
    pub async fn sync_models(
        &self,
        actor: &User,
        endpoint_id: Id,
        client: &ClientInfo,
    ) -> Result<SyncReport> {
        require_admin(actor)?;
        let endpoint = self.endpoint(endpoint_id).await?;
        let cell = self.health.cell(endpoint.id);
        let secret = self.endpoint_secret(&endpoint).await?;
        let listed = self.lister.list_models(&endpoint, secret.as_ref()).await;
        match &listed {
            Ok(_) => cell.success(self.env.clock.now_millis()),
            Err(e) => cell.failure(self.env.clock.now_millis(), e.message()),
        }
        let listed = listed?;
        let now = self.env.clock.now();
        let mut report = SyncReport::default();
        for upstream in listed {
            let Ok(name) = model::parse_model_name(&upstream.name) else {
                continue;
            };
            let new_id = self.env.ids.next_id();
            let outcome = self
                .store
                .run(|tx| {
                    let (upstream, name, endpoint) = (&upstream, &name, &endpoint);
                    async move {
                        let existing = read_all::<Model>(&tx, &keyspace::models())
                            .await?
                            .into_iter()
                            .find(|m| m.endpoint_id == endpoint.id && &m.upstream_name == name);
                        if let Some(mut model) = existing {
                            let provider =
                                upstream.provider.clone().unwrap_or(model.provider.clone());
                            let context = upstream.context_length.or(model.context_length);
                            if provider == model.provider && context == model.context_length {
                                return Ok::<_, TxError<Error>>(0);
                            }
                            model.provider = provider;
                            model.context_length = context;
                            model.updated_at = now;
                            keyspace::model(model.id).put(&tx, &model).await?;
                            return Ok(1);
                        }
                        // A public name taken by another endpoint's model gets
                        // the endpoint's name in front.
                        let public = if keyspace::model_by_name(name).get(&tx).await?.is_some() {
                            format!("{}/{}", endpoint.name.replace(' ', "-"), name)
                        } else {
                            name.clone()
                        };
                        let model = Model {
                            id: new_id,
                            name: public.clone(),
                            endpoint_id: endpoint.id,
                            upstream_name: name.clone(),
                            provider: upstream.provider.clone().unwrap_or_default(),
                            context_length: upstream.context_length,
                            input_cost_per_token: 0.0,
                            output_cost_per_token: 0.0,
                            enabled: false,
                            restricted: false,
                            created_at: now,
                            updated_at: now,
                        };
                        claim_name(&tx, keyspace::model_by_name(&public), model.id, "a model")
                            .await?;
                        keyspace::model(model.id).put(&tx, &model).await?;
                        Ok(2)
                    }
                })
                .await?;
            match outcome {
                0 => report.unchanged += 1,
                1 => report.updated.push(name),
                _ => report.added.push(name),
            }
        }
        let details = serde_json::json!({"added": report.added, "updated": report.updated, "unchanged": report.unchanged});
        // One summary event for the sync's per-model transactions.
        let target = ("endpoint", endpoint_id);
        let event = self.event(actor, "endpoints.sync", target, None, client, details);
        self.audit.write(event).await;
        Ok(report)
    }
}
