//! The catalogue as code (SPEC §5, the `catalog` setting): endpoints with
//! their credentials, models with prices, and global aliases declared in the
//! configuration and applied at start, like LiteLLM's `model_list`.
//!
//! Applying is idempotent: what exists by name and already matches is left
//! alone (no write, no audit event), what differs is updated, what is missing
//! is created. Entries removed from the declaration are left in place: a
//! declaration adds and corrects, it never deletes (delete through the API).
//! Changes go through the same service methods as the API, so they are
//! checked and audited alike, as made by the acting admin.

use std::collections::BTreeMap;

use super::{CatalogService, CredentialChange, EndpointSpec, ModelSpec, NewCredential};
use crate::model::accounts::User;
use crate::model::catalog::{ApiFlavour, CredentialKind, CredentialScope};
use crate::model::sessions::ClientInfo;
use crate::{Error, ErrorCode, Result};

/// A declared catalogue.
#[derive(Clone, Default)]
pub struct DeclaredCatalog {
    pub endpoints: Vec<DeclaredEndpoint>,
    pub aliases: Vec<DeclaredAlias>,
}

/// An endpoint and the models it serves.
#[derive(Clone)]
pub struct DeclaredEndpoint {
    pub name: String,
    pub base_url: String,
    pub flavour: ApiFlavour,
    /// The upstream's API key, read by the caller from where the declaration
    /// says (an environment variable); kept as the platform credential
    /// `catalog: <endpoint name>`.
    pub api_key: Option<String>,
    pub proxy_url: Option<String>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub enabled: bool,
    pub models: Vec<DeclaredModel>,
}

impl std::fmt::Debug for DeclaredEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeclaredEndpoint")
            .field("name", &self.name)
            .field("base_url", &self.base_url)
            .field(
                "api_key",
                &self.api_key.as_ref().map(|_| crate::common::REDACTED),
            )
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone)]
pub struct DeclaredModel {
    pub name: String,
    /// The upstream's name for it; defaults to `name`.
    pub upstream_name: Option<String>,
    pub provider: Option<String>,
    pub context_length: Option<u32>,
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    pub enabled: bool,
    pub restricted: bool,
}

/// A global alias: another name for a model.
#[derive(Debug, Clone)]
pub struct DeclaredAlias {
    pub alias: String,
    pub model: String,
}

/// What applying changed, by kind and name (`endpoint vllm`, `model llama`…).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AppliedReport {
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

/// The name of the platform credential holding a declared endpoint's key.
pub fn credential_name(endpoint: &str) -> String {
    format!("catalog: {endpoint}")
}

impl CatalogService {
    /// Makes the catalogue hold what `declared` says, as `actor` (a platform
    /// admin). Several instances may apply the same declaration at once: a
    /// name another instance created meanwhile is found on a second pass.
    pub async fn apply_declared(
        &self,
        actor: &User,
        declared: &DeclaredCatalog,
        client: &ClientInfo,
    ) -> Result<AppliedReport> {
        let mut last = None;
        for _ in 0..3 {
            match self.apply_once(actor, declared, client).await {
                Err(e) if e.code() == ErrorCode::Conflict => last = Some(e),
                done => return done,
            }
        }
        Err(last.unwrap_or_else(|| Error::conflict("the catalogue kept changing")))
    }

    async fn apply_once(
        &self,
        actor: &User,
        declared: &DeclaredCatalog,
        client: &ClientInfo,
    ) -> Result<AppliedReport> {
        let mut report = AppliedReport::default();
        let mut endpoints: BTreeMap<String, _> = self
            .list_endpoints(actor)
            .await?
            .into_iter()
            .map(|e| (e.name.clone(), e))
            .collect();
        let mut models: BTreeMap<String, _> = self
            .list_models(actor)
            .await?
            .into_iter()
            .map(|m| (m.name.clone(), m))
            .collect();
        for e in &declared.endpoints {
            let existing = endpoints.remove(&e.name);
            let endpoint = self
                .declared_endpoint(actor, e, existing, client, &mut report)
                .await?;
            for m in &e.models {
                self.declared_model(actor, m, endpoint.id, &mut models, client, &mut report)
                    .await?;
            }
        }
        let aliases = self.list_aliases(actor).await?;
        for a in &declared.aliases {
            let model = models.get(&a.model).ok_or_else(|| {
                Error::invalid_input(format!(
                    "catalog alias {} names model {}, which does not exist",
                    a.alias, a.model
                ))
            })?;
            let existing = aliases
                .iter()
                .find(|x| x.owner_id.is_none() && x.alias == a.alias);
            match existing {
                None => {
                    report.created.push(format!("alias {}", a.alias));
                    self.create_alias(actor, &a.alias, model.id, true, client)
                        .await?;
                }
                Some(x) if x.model_id == model.id => report.unchanged += 1,
                Some(x) => {
                    report.updated.push(format!("alias {}", a.alias));
                    self.change_alias(actor, x.id, Some(model.id), client)
                        .await?;
                }
            }
        }
        Ok(report)
    }

    /// One declared endpoint (and its credential): created, corrected or left.
    async fn declared_endpoint(
        &self,
        actor: &User,
        e: &DeclaredEndpoint,
        existing: Option<crate::model::catalog::Endpoint>,
        client: &ClientInfo,
        report: &mut AppliedReport,
    ) -> Result<crate::model::catalog::Endpoint> {
        let credential_id = match &e.api_key {
            Some(key) => Some(
                self.declared_credential(actor, e, key, client, report)
                    .await?,
            ),
            None => None,
        };
        let base_url = crate::model::catalog::parse_base_url(&e.base_url)?;
        let spec = EndpointSpec {
            name: Some(e.name.clone()),
            base_url: Some(base_url.clone()),
            flavour: Some(e.flavour),
            credential_id: Some(credential_id),
            proxy_url: Some(e.proxy_url.clone()),
            connect_timeout_ms: e.connect_timeout_ms,
            request_timeout_ms: e.request_timeout_ms,
            enabled: Some(e.enabled),
        };
        let endpoint = match existing {
            None => {
                report.created.push(format!("endpoint {}", e.name));
                self.create_endpoint(actor, spec, client).await?
            }
            Some(existing) => {
                let same = existing.base_url == base_url
                    && existing.flavour == e.flavour
                    && existing.credential_id == credential_id
                    && existing.proxy_url == e.proxy_url
                    && e.connect_timeout_ms
                        .is_none_or(|t| t == existing.connect_timeout_ms)
                    && e.request_timeout_ms
                        .is_none_or(|t| t == existing.request_timeout_ms)
                    && existing.enabled == e.enabled;
                if same {
                    report.unchanged += 1;
                    existing
                } else {
                    report.updated.push(format!("endpoint {}", e.name));
                    self.update_endpoint(actor, existing.id, spec, client)
                        .await?
                }
            }
        };
        Ok(endpoint)
    }

    /// One declared model of `endpoint_id`: created, corrected or left;
    /// `models` (by name) is kept up to date for the aliases.
    async fn declared_model(
        &self,
        actor: &User,
        m: &DeclaredModel,
        endpoint_id: crate::Id,
        models: &mut BTreeMap<String, crate::model::catalog::Model>,
        client: &ClientInfo,
        report: &mut AppliedReport,
    ) -> Result<()> {
        let upstream = m.upstream_name.clone().unwrap_or_else(|| m.name.clone());
        let spec = ModelSpec {
            name: Some(m.name.clone()),
            endpoint_id: Some(endpoint_id),
            upstream_name: Some(upstream.clone()),
            provider: m.provider.clone(),
            context_length: Some(m.context_length),
            input_cost_per_token: Some(m.input_cost_per_token),
            output_cost_per_token: Some(m.output_cost_per_token),
            enabled: Some(m.enabled),
            restricted: Some(m.restricted),
        };
        match models.get(&m.name) {
            None => {
                report.created.push(format!("model {}", m.name));
                let created = self.create_model(actor, spec, client).await?;
                models.insert(created.name.clone(), created);
            }
            Some(existing) => {
                let same = existing.endpoint_id == endpoint_id
                    && existing.upstream_name == upstream
                    && m.provider.as_ref().is_none_or(|p| *p == existing.provider)
                    && existing.context_length == m.context_length
                    && existing.input_cost_per_token == m.input_cost_per_token
                    && existing.output_cost_per_token == m.output_cost_per_token
                    && existing.enabled == m.enabled
                    && existing.restricted == m.restricted;
                if same {
                    report.unchanged += 1;
                } else {
                    report.updated.push(format!("model {}", m.name));
                    let updated = self.update_model(actor, existing.id, spec, client).await?;
                    models.insert(updated.name.clone(), updated);
                }
            }
        }
        Ok(())
    }

    /// The platform credential holding a declared endpoint's key: created,
    /// re-sealed when the key changed, or left alone.
    async fn declared_credential(
        &self,
        actor: &User,
        e: &DeclaredEndpoint,
        key: &str,
        client: &ClientInfo,
        report: &mut AppliedReport,
    ) -> Result<crate::Id> {
        let name = credential_name(&e.name);
        let secret = serde_json::json!({ "api_key": key });
        let existing = self
            .list_credentials(actor, Some(CredentialScope::Platform))
            .await?
            .into_iter()
            .find(|c| c.name == name);
        match existing {
            None => {
                report.created.push(format!("credential {name}"));
                let new = NewCredential {
                    scope: Some(CredentialScope::Platform),
                    name,
                    kind: match e.flavour {
                        ApiFlavour::Openai => CredentialKind::Openai,
                        ApiFlavour::Anthropic => CredentialKind::Anthropic,
                    },
                    secret,
                    metadata: serde_json::Value::Null,
                };
                Ok(self.create_credential(actor, new, client).await?.id)
            }
            Some(c) if self.credential_secret(c.id).await? == secret => {
                report.unchanged += 1;
                Ok(c.id)
            }
            Some(c) => {
                report.updated.push(format!("credential {name}"));
                let change = CredentialChange {
                    name: None,
                    secret: Some(secret),
                    metadata: None,
                };
                Ok(self
                    .update_credential(actor, c.id, change, client)
                    .await?
                    .id)
            }
        }
    }
}
