//! Calls the control plane makes to other systems itself: reading an
//! endpoint's model list for model sync and health probes
//! (`GET {base_url}/v1/models`), and
//! delivering vault state to the policy engine over gRPC.

use async_trait::async_trait;
use gatehouse_core::catalog::{ModelLister, UpstreamModel};
use gatehouse_core::error::error_chain;
use gatehouse_core::model::catalog::{ApiFlavour, Endpoint, secret_api_key};
use gatehouse_core::{Error, ErrorCode, Result};
use serde::Deserialize;

/// Reads model lists over HTTP(S), through the endpoint's proxy if it has one.
pub struct HttpModelLister;

impl HttpModelLister {
    pub fn new() -> anyhow::Result<Self> {
        Ok(HttpModelLister)
    }
}

#[derive(Deserialize)]
struct ModelList {
    data: Vec<ListedModel>,
}

#[derive(Deserialize)]
struct ListedModel {
    id: String,
    owned_by: Option<String>,
    /// vLLM names it `max_model_len`; others `context_length` or `context_window`.
    #[serde(alias = "max_model_len", alias = "context_window")]
    context_length: Option<u32>,
}

fn unavailable(endpoint: &Endpoint, what: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::Unavailable,
        format!(
            "endpoint {} did not list its models: GET {}/v1/models: {what}",
            endpoint.name, endpoint.base_url
        ),
    )
}

/// `GET {base_url}/v1/models` with the endpoint's credential, through its proxy.
fn models_request(
    endpoint: &Endpoint,
    secret: Option<&serde_json::Value>,
) -> Result<reqwest::RequestBuilder> {
    let mut builder = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_millis(
            endpoint.connect_timeout_ms,
        ))
        .timeout(std::time::Duration::from_millis(
            endpoint.request_timeout_ms.min(60_000),
        ))
        // Never send the credential wherever a redirect points.
        .redirect(reqwest::redirect::Policy::none());
    if let Some(proxy) = &endpoint.proxy_url {
        builder = builder.proxy(
            reqwest::Proxy::all(proxy)
                .map_err(|e| Error::invalid_input(format!("proxy_url: {e}")))?,
        );
    }
    let client = builder.build().map_err(Error::internal)?;
    let mut request = client.get(format!("{}/v1/models", endpoint.base_url));
    if let Some(key) = secret.and_then(secret_api_key) {
        request = match endpoint.flavour {
            ApiFlavour::Openai => request.bearer_auth(key),
            ApiFlavour::Anthropic => request
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01"),
        };
    }
    Ok(request)
}

#[async_trait]
impl ModelLister for HttpModelLister {
    async fn list_models(
        &self,
        endpoint: &Endpoint,
        secret: Option<&serde_json::Value>,
    ) -> Result<Vec<UpstreamModel>> {
        let response = models_request(endpoint, secret)?
            .send()
            .await
            .map_err(|e| unavailable(endpoint, error_chain(&e)))?;
        let status = response.status();
        if !status.is_success() {
            return Err(unavailable(endpoint, format!("HTTP {status}")));
        }
        let list: ModelList = response
            .json()
            .await
            .map_err(|e| unavailable(endpoint, format!("unexpected answer: {e}")))?;
        Ok(list
            .data
            .into_iter()
            .map(|m| UpstreamModel {
                name: m.id,
                provider: m.owned_by,
                context_length: m.context_length,
            })
            .collect())
    }

    async fn probe(
        &self,
        endpoint: &Endpoint,
        secret: Option<&serde_json::Value>,
    ) -> std::result::Result<(), String> {
        let request = models_request(endpoint, secret).map_err(|e| e.message().to_string())?;
        let response = request.send().await.map_err(|e| error_chain(&e))?;
        let status = response.status();
        if status.is_server_error() {
            Err(format!("HTTP {status}"))
        } else if status == reqwest::StatusCode::UNAUTHORIZED
            || status == reqwest::StatusCode::FORBIDDEN
        {
            Err(format!(
                "HTTP {status}: the endpoint refused the credential"
            ))
        } else {
            Ok(())
        }
    }
}

/// The deployment's policy engine, reached with `gatehouse_grpc::policy`.
pub struct GrpcPolicyEngine {
    client: gatehouse_grpc::policy::PolicyClient,
}

impl GrpcPolicyEngine {
    pub fn new(url: &str, timeout: std::time::Duration) -> anyhow::Result<Self> {
        let client = gatehouse_grpc::policy::PolicyClient::new(url, timeout)
            .map_err(|e| anyhow::anyhow!("vaults.policy_engine_url: {e}"))?;
        Ok(GrpcPolicyEngine { client })
    }
}

#[async_trait]
impl gatehouse_core::vaults::PolicyEngine for GrpcPolicyEngine {
    async fn sync_vault(
        &self,
        state: &gatehouse_core::vaults::VaultState,
    ) -> std::result::Result<(), String> {
        use gatehouse_grpc::v1::{SyncVaultRequest, VaultGrant};
        let request = SyncVaultRequest {
            vault_id: state.vault_id.to_string(),
            organization_id: state.org_id.to_string(),
            name: state.name.clone(),
            deleted: state.deleted,
            grants: state
                .grants
                .iter()
                .map(|g| VaultGrant {
                    subject_type: g.subject_type.as_str().to_string(),
                    subject_id: g.subject_id.to_string(),
                    role: g.role.as_str().to_string(),
                })
                .collect(),
            generation: state.generation,
        };
        self.client.sync_vault(request).await.map_err(|status| {
            format!(
                "the policy engine answered {:?}: {}",
                status.code(),
                status.message()
            )
        })
    }
}
