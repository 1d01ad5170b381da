//! The catalogue: `/api/v1/credentials`, `/api/v1/endpoints`,
//! `/api/v1/models`, `/api/v1/aliases` and `/api/v1/subscriptions`.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::catalog::health::HealthStatus;
use gatehouse_core::catalog::{
    CredentialChange, Decision, EndpointSpec, ModelSpec, NewCredential, SyncReport,
};
use gatehouse_core::model::catalog::{
    Alias, ApiFlavour, Credential, CredentialKind, CredentialScope, Endpoint, Model, Subscription,
    SubscriptionStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::orgs::id;
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiQuery};

// ---- credentials ----

#[derive(Serialize, ToSchema)]
pub struct CredentialOut {
    #[schema(value_type = String)]
    pub id: Id,
    /// `{"type": "platform"}`, `{"type": "organization", "org_id"}` or `{"type": "user", "user_id"}`.
    #[schema(value_type = Object)]
    pub scope: CredentialScope,
    pub name: String,
    /// `openai`, `anthropic`, `oauth_account` or `generic`.
    #[schema(value_type = String)]
    pub kind: CredentialKind,
    /// Non-secret settings. The secret itself is never returned.
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    /// The ID of the key-encryption key that seals the secret.
    pub key_id: String,
    #[schema(value_type = String)]
    pub created_by: Id,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Credential> for CredentialOut {
    fn from(c: Credential) -> Self {
        CredentialOut {
            id: c.id,
            scope: c.scope,
            name: c.name,
            kind: c.kind,
            metadata: c.metadata,
            key_id: c.secret.key_id,
            created_by: c.created_by,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCredentialBody {
    /// Leave out for the platform's (admins) or your own (provider accounts).
    #[schema(value_type = Option<Object>)]
    pub scope: Option<CredentialScope>,
    pub name: String,
    #[schema(value_type = String)]
    pub kind: CredentialKind,
    /// A JSON object, e.g. `{"api_key": "sk-…"}`; sealed at rest, never shown again.
    #[schema(value_type = Object)]
    pub secret: serde_json::Value,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialChangeBody {
    pub name: Option<String>,
    /// Replaces the secret.
    #[schema(value_type = Option<Object>)]
    pub secret: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CredentialQuery {
    /// Only the credentials of this organization.
    pub organization_id: Option<String>,
}

/// Create a credential (platform admins; organization owners and admins for
/// theirs; provider accounts their own `oauth_account` ones).
#[utoipa::path(post, path = "/api/v1/credentials", tag = "catalog",
    security(("bearer" = [])), request_body = NewCredentialBody,
    responses(
        (status = 201, description = "Created; the secret is not returned", body = CredentialOut),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn create_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewCredentialBody>,
) -> Result<(StatusCode, Json<CredentialOut>), ApiError> {
    let new = NewCredential {
        scope: body.scope,
        name: body.name,
        kind: body.kind,
        secret: body.secret,
        metadata: body.metadata,
    };
    let c = state
        .services
        .catalog
        .create_credential(&auth.user, new, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

/// The credentials you may read.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "catalog",
    security(("bearer" = [])), params(CredentialQuery),
    responses((status = 200, description = "Credentials, without secrets", body = [CredentialOut])))]
pub async fn list_credentials(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<CredentialQuery>,
) -> Result<Json<Vec<CredentialOut>>, ApiError> {
    let scope = query
        .organization_id
        .as_deref()
        .map(id)
        .transpose()?
        .map(|org_id| CredentialScope::Organization { org_id });
    let list = state
        .services
        .catalog
        .list_credentials(&auth.user, scope)
        .await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Read a credential (never its secret).
#[utoipa::path(get, path = "/api/v1/credentials/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Credential ID")),
    responses(
        (status = 200, description = "The credential", body = CredentialOut),
        (status = 404, description = "No such credential visible to you", body = ErrorBody),
    ))]
pub async fn read_credential(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(cid): Path<String>,
) -> Result<Json<CredentialOut>, ApiError> {
    let c = state
        .services
        .catalog
        .get_credential(&auth.user, id(&cid)?)
        .await?;
    Ok(Json(c.into()))
}

/// Rename a credential, replace its secret or metadata.
#[utoipa::path(patch, path = "/api/v1/credentials/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Credential ID")),
    request_body = CredentialChangeBody,
    responses(
        (status = 200, description = "Changed", body = CredentialOut),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such credential visible to you", body = ErrorBody),
    ))]
pub async fn update_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(cid): Path<String>,
    ApiJson(body): ApiJson<CredentialChangeBody>,
) -> Result<Json<CredentialOut>, ApiError> {
    let change = CredentialChange {
        name: body.name,
        secret: body.secret,
        metadata: body.metadata,
    };
    let c = state
        .services
        .catalog
        .update_credential(&auth.user, id(&cid)?, change, &client)
        .await?;
    Ok(Json(c.into()))
}

/// Delete a credential no endpoint uses.
#[utoipa::path(delete, path = "/api/v1/credentials/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Credential ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such credential visible to you", body = ErrorBody),
        (status = 409, description = "An endpoint uses it", body = ErrorBody),
    ))]
pub async fn delete_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(cid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .delete_credential(&auth.user, id(&cid)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- endpoints ----

#[derive(Serialize, ToSchema)]
pub struct EndpointOut {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    pub base_url: String,
    /// `openai` or `anthropic`.
    #[schema(value_type = String)]
    pub flavour: ApiFlavour,
    #[schema(value_type = Option<String>)]
    pub credential_id: Option<Id>,
    pub proxy_url: Option<String>,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub enabled: bool,
    /// How the endpoint has been answering, as the instance that serves this
    /// request saw it (calls through the gateway and health probes).
    pub health: HealthOut,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct HealthOut {
    /// `unknown` (neither called nor probed yet), `healthy` (the last answer
    /// was a success), `degraded` (the last one or two failed) or `unhealthy`
    /// (three or more in a row failed).
    #[schema(value_type = String)]
    pub status: HealthStatus,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Why the last failure was one: a connection error, a timeout, the
    /// endpoint's HTTP status.
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
}

impl EndpointOut {
    fn new(e: Endpoint, state: &AppState) -> Self {
        let health = state.services.catalog.health().read(e.id);
        EndpointOut {
            health: HealthOut {
                status: health.status,
                last_success_at: health.last_success_at,
                last_failure_at: health.last_failure_at,
                last_error: health.last_error,
                consecutive_failures: health.consecutive_failures,
            },
            id: e.id,
            name: e.name,
            base_url: e.base_url,
            flavour: e.flavour,
            credential_id: e.credential_id,
            proxy_url: e.proxy_url,
            connect_timeout_ms: e.connect_timeout_ms,
            request_timeout_ms: e.request_timeout_ms,
            enabled: e.enabled,
            created_at: e.created_at,
            updated_at: e.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndpointBody {
    /// Unique; required to create.
    pub name: Option<String>,
    /// `http(s)://host[:port][/prefix]`; required to create.
    pub base_url: Option<String>,
    #[schema(value_type = Option<String>)]
    pub flavour: Option<ApiFlavour>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub credential_id: Option<Option<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    pub proxy_url: Option<Option<String>>,
    pub connect_timeout_ms: Option<u64>,
    pub request_timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
}

/// `Some(None)` for an explicit `null`, `None` for a missing field (with
/// `#[serde(default)]`).
pub(crate) fn some<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

impl EndpointBody {
    fn spec(self) -> Result<EndpointSpec, ApiError> {
        let credential_id = match self.credential_id {
            Some(Some(c)) => Some(Some(id(&c)?)),
            Some(None) => Some(None),
            None => None,
        };
        Ok(EndpointSpec {
            name: self.name,
            base_url: self.base_url,
            flavour: self.flavour,
            credential_id,
            proxy_url: self.proxy_url,
            connect_timeout_ms: self.connect_timeout_ms,
            request_timeout_ms: self.request_timeout_ms,
            enabled: self.enabled,
        })
    }
}

/// Create an inference endpoint (platform `admin`).
#[utoipa::path(post, path = "/api/v1/endpoints", tag = "catalog",
    security(("bearer" = [])), request_body = EndpointBody,
    responses(
        (status = 201, description = "Created", body = EndpointOut),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn create_endpoint(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<EndpointBody>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let e = state
        .services
        .catalog
        .create_endpoint(&auth.user, body.spec()?, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(EndpointOut::new(e, &state))))
}

/// Inference endpoints (platform `admin`, `admin_readonly`).
#[utoipa::path(get, path = "/api/v1/endpoints", tag = "catalog",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Endpoints", body = [EndpointOut]),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    ))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<EndpointOut>>, ApiError> {
    let list = state.services.catalog.list_endpoints(&auth.user).await?;
    Ok(Json(
        list.into_iter()
            .map(|e| EndpointOut::new(e, &state))
            .collect(),
    ))
}

/// Read an endpoint (platform `admin`, `admin_readonly`).
#[utoipa::path(get, path = "/api/v1/endpoints/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Endpoint ID")),
    responses(
        (status = 200, description = "The endpoint", body = EndpointOut),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ))]
pub async fn read_endpoint(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(eid): Path<String>,
) -> Result<Json<EndpointOut>, ApiError> {
    let e = state
        .services
        .catalog
        .get_endpoint(&auth.user, id(&eid)?)
        .await?;
    Ok(Json(EndpointOut::new(e, &state)))
}

/// Change an endpoint (platform `admin`).
#[utoipa::path(patch, path = "/api/v1/endpoints/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Endpoint ID")),
    request_body = EndpointBody,
    responses(
        (status = 200, description = "Changed", body = EndpointOut),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
    ))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(eid): Path<String>,
    ApiJson(body): ApiJson<EndpointBody>,
) -> Result<Json<EndpointOut>, ApiError> {
    let e = state
        .services
        .catalog
        .update_endpoint(&auth.user, id(&eid)?, body.spec()?, &client)
        .await?;
    Ok(Json(EndpointOut::new(e, &state)))
}

/// Delete an endpoint no model uses (platform `admin`).
#[utoipa::path(delete, path = "/api/v1/endpoints/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Endpoint ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 409, description = "A model uses it", body = ErrorBody),
    ))]
pub async fn delete_endpoint(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(eid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .delete_endpoint(&auth.user, id(&eid)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct SyncOut {
    pub added: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: usize,
}

impl From<SyncReport> for SyncOut {
    fn from(r: SyncReport) -> Self {
        SyncOut {
            added: r.added,
            updated: r.updated,
            unchanged: r.unchanged,
        }
    }
}

/// Read the endpoint's `GET /v1/models` and add (disabled) or update models;
/// running it again changes nothing (platform `admin`).
#[utoipa::path(post, path = "/api/v1/endpoints/{id}/sync", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Endpoint ID")),
    responses(
        (status = 200, description = "What changed", body = SyncOut),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such endpoint", body = ErrorBody),
        (status = 503, description = "The endpoint did not answer", body = ErrorBody),
    ))]
pub async fn sync_endpoint(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(eid): Path<String>,
) -> Result<Json<SyncOut>, ApiError> {
    let report = state
        .services
        .catalog
        .sync_models(&auth.user, id(&eid)?, &client)
        .await?;
    Ok(Json(report.into()))
}

// ---- models ----

#[derive(Serialize, ToSchema)]
pub struct ModelOut {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    #[schema(value_type = String)]
    pub endpoint_id: Id,
    pub upstream_name: String,
    pub provider: String,
    pub context_length: Option<u32>,
    pub input_cost_per_token: f64,
    pub output_cost_per_token: f64,
    pub enabled: bool,
    pub restricted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Model> for ModelOut {
    fn from(m: Model) -> Self {
        ModelOut {
            id: m.id,
            name: m.name,
            endpoint_id: m.endpoint_id,
            upstream_name: m.upstream_name,
            provider: m.provider,
            context_length: m.context_length,
            input_cost_per_token: m.input_cost_per_token,
            output_cost_per_token: m.output_cost_per_token,
            enabled: m.enabled,
            restricted: m.restricted,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelBody {
    /// The public name, unique; required to create.
    pub name: Option<String>,
    /// Required to create.
    pub endpoint_id: Option<String>,
    /// Defaults to `name`.
    pub upstream_name: Option<String>,
    pub provider: Option<String>,
    #[serde(default, deserialize_with = "some")]
    pub context_length: Option<Option<u32>>,
    /// US dollars per input token.
    pub input_cost_per_token: Option<f64>,
    /// US dollars per output token.
    pub output_cost_per_token: Option<f64>,
    pub enabled: Option<bool>,
    /// Needs an approved subscription.
    pub restricted: Option<bool>,
}

impl ModelBody {
    fn spec(self) -> Result<ModelSpec, ApiError> {
        Ok(ModelSpec {
            name: self.name,
            endpoint_id: self.endpoint_id.as_deref().map(id).transpose()?,
            upstream_name: self.upstream_name,
            provider: self.provider,
            context_length: self.context_length,
            input_cost_per_token: self.input_cost_per_token,
            output_cost_per_token: self.output_cost_per_token,
            enabled: self.enabled,
            restricted: self.restricted,
        })
    }
}

/// Add a model (platform `admin`).
#[utoipa::path(post, path = "/api/v1/models", tag = "catalog",
    security(("bearer" = [])), request_body = ModelBody,
    responses(
        (status = 201, description = "Created", body = ModelOut),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn create_model(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<ModelBody>,
) -> Result<(StatusCode, Json<ModelOut>), ApiError> {
    let m = state
        .services
        .catalog
        .create_model(&auth.user, body.spec()?, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

/// The catalogue: enabled models for users, every model for platform admins.
#[utoipa::path(get, path = "/api/v1/models", tag = "catalog",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Models", body = [ModelOut]),
        (status = 403, description = "Provider accounts", body = ErrorBody),
    ))]
pub async fn list_models(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<ModelOut>>, ApiError> {
    let list = state.services.catalog.list_models(&auth.user).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Read a model.
#[utoipa::path(get, path = "/api/v1/models/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Model ID")),
    responses(
        (status = 200, description = "The model", body = ModelOut),
        (status = 404, description = "No such model visible to you", body = ErrorBody),
    ))]
pub async fn read_model(
    State(state): State<AppState>,
    auth: Authenticated,
    Path(mid): Path<String>,
) -> Result<Json<ModelOut>, ApiError> {
    let m = state
        .services
        .catalog
        .get_model(&auth.user, id(&mid)?)
        .await?;
    Ok(Json(m.into()))
}

/// Change a model: prices, enabled, restricted, … (platform `admin`).
#[utoipa::path(patch, path = "/api/v1/models/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Model ID")),
    request_body = ModelBody,
    responses(
        (status = 200, description = "Changed", body = ModelOut),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
    ))]
pub async fn update_model(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(mid): Path<String>,
    ApiJson(body): ApiJson<ModelBody>,
) -> Result<Json<ModelOut>, ApiError> {
    let m = state
        .services
        .catalog
        .update_model(&auth.user, id(&mid)?, body.spec()?, &client)
        .await?;
    Ok(Json(m.into()))
}

/// Delete a model with its aliases and subscriptions (platform `admin`).
#[utoipa::path(delete, path = "/api/v1/models/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Model ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such model", body = ErrorBody),
    ))]
pub async fn delete_model(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(mid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .delete_model(&auth.user, id(&mid)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- aliases ----

#[derive(Serialize, ToSchema)]
pub struct AliasOut {
    #[schema(value_type = String)]
    pub id: Id,
    pub alias: String,
    #[schema(value_type = String)]
    pub model_id: Id,
    /// Absent for global aliases.
    #[schema(value_type = Option<String>)]
    pub owner_id: Option<Id>,
    pub created_at: DateTime<Utc>,
}

impl From<Alias> for AliasOut {
    fn from(a: Alias) -> Self {
        AliasOut {
            id: a.id,
            alias: a.alias,
            model_id: a.model_id,
            owner_id: a.owner_id,
            created_at: a.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlias {
    pub alias: String,
    pub model_id: String,
    /// A global alias (platform `admin`); otherwise your own.
    #[serde(default)]
    pub global: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    pub model_id: String,
}

/// Create an alias: your own, or a global one (platform `admin`).
#[utoipa::path(post, path = "/api/v1/aliases", tag = "catalog",
    security(("bearer" = [])), request_body = NewAlias,
    responses(
        (status = 201, description = "Created", body = AliasOut),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn create_alias(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewAlias>,
) -> Result<(StatusCode, Json<AliasOut>), ApiError> {
    let a = state
        .services
        .catalog
        .create_alias(
            &auth.user,
            &body.alias,
            id(&body.model_id)?,
            body.global,
            &client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(a.into())))
}

/// Global aliases and your own (platform readers: all).
#[utoipa::path(get, path = "/api/v1/aliases", tag = "catalog",
    security(("bearer" = [])),
    responses((status = 200, description = "Aliases", body = [AliasOut])))]
pub async fn list_aliases(
    State(state): State<AppState>,
    auth: Authenticated,
) -> Result<Json<Vec<AliasOut>>, ApiError> {
    let list = state.services.catalog.list_aliases(&auth.user).await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Point an alias at another model (your own; platform `admin`: any).
#[utoipa::path(patch, path = "/api/v1/aliases/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Alias ID")),
    request_body = AliasTarget,
    responses(
        (status = 200, description = "Changed", body = AliasOut),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such alias visible to you", body = ErrorBody),
    ))]
pub async fn update_alias(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(aid): Path<String>,
    ApiJson(body): ApiJson<AliasTarget>,
) -> Result<Json<AliasOut>, ApiError> {
    let alias = state
        .services
        .catalog
        .change_alias(&auth.user, id(&aid)?, Some(id(&body.model_id)?), &client)
        .await?
        .ok_or_else(|| ApiError(gatehouse_core::Error::not_found("alias")))?;
    Ok(Json(alias.into()))
}

/// Delete an alias (your own; platform `admin`: any).
#[utoipa::path(delete, path = "/api/v1/aliases/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Alias ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "No such alias visible to you", body = ErrorBody),
    ))]
pub async fn delete_alias(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(aid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .change_alias(&auth.user, id(&aid)?, None, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---- subscriptions ----

#[derive(Serialize, ToSchema)]
pub struct SubscriptionOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub user_id: Id,
    #[schema(value_type = String)]
    pub model_id: Id,
    /// `pending`, `active`, `denied` or `suspended`.
    #[schema(value_type = String)]
    pub status: SubscriptionStatus,
    pub requested_at: DateTime<Utc>,
    #[schema(value_type = Option<String>)]
    pub decided_by: Option<Id>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

impl From<Subscription> for SubscriptionOut {
    fn from(s: Subscription) -> Self {
        SubscriptionOut {
            id: s.id,
            user_id: s.user_id,
            model_id: s.model_id,
            status: s.status,
            requested_at: s.requested_at,
            decided_by: s.decided_by,
            decided_at: s.decided_at,
            reason: s.reason,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewSubscription {
    pub model_id: String,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    /// Everyone's (platform `admin`, `admin_readonly`).
    #[serde(default)]
    pub all: bool,
    #[param(value_type = Option<String>)]
    pub status: Option<SubscriptionStatus>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Shown to the subscriber.
    pub reason: Option<String>,
}

/// Subscribe to a model: active at once, or pending approval when restricted.
#[utoipa::path(post, path = "/api/v1/subscriptions", tag = "catalog",
    security(("bearer" = [])), request_body = NewSubscription,
    responses(
        (status = 201, description = "Subscribed or pending", body = SubscriptionOut),
        (status = 400, description = "No such model", body = ErrorBody),
        (status = 409, description = "Already subscribed", body = ErrorBody),
    ))]
pub async fn subscribe(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewSubscription>,
) -> Result<(StatusCode, Json<SubscriptionOut>), ApiError> {
    let s = state
        .services
        .catalog
        .subscribe(&auth.user, id(&body.model_id)?, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(s.into())))
}

/// Your subscriptions (or everyone's with `all=true`, platform readers).
#[utoipa::path(get, path = "/api/v1/subscriptions", tag = "catalog",
    security(("bearer" = [])), params(SubscriptionQuery),
    responses(
        (status = 200, description = "Subscriptions", body = [SubscriptionOut]),
        (status = 403, description = "`all` without being a platform reader", body = ErrorBody),
    ))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<SubscriptionQuery>,
) -> Result<Json<Vec<SubscriptionOut>>, ApiError> {
    let list = state
        .services
        .catalog
        .list_subscriptions(&auth.user, query.all, query.status)
        .await?;
    Ok(Json(list.into_iter().map(Into::into).collect()))
}

/// Cancel your subscription (platform `admin`: anyone's).
#[utoipa::path(delete, path = "/api/v1/subscriptions/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Subscription ID")),
    responses(
        (status = 204, description = "Cancelled"),
        (status = 404, description = "No such subscription visible to you", body = ErrorBody),
    ))]
pub async fn cancel_subscription(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    Path(sid): Path<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .cancel_subscription(&auth.user, id(&sid)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn decide(
    state: &AppState,
    auth: &Authenticated,
    sid: &str,
    decision: Decision,
    body: Option<DecisionBody>,
    client: &gatehouse_core::model::sessions::ClientInfo,
) -> Result<Json<SubscriptionOut>, ApiError> {
    let s = state
        .services
        .catalog
        .decide_subscription(
            &auth.user,
            id(sid)?,
            decision,
            body.unwrap_or_default().reason,
            client,
        )
        .await?;
    Ok(Json(s.into()))
}

/// An optional JSON body: empty is `None`.
fn optional_json(body: &[u8]) -> Result<Option<DecisionBody>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    serde_json::from_slice(body).map(Some).map_err(|e| {
        ApiError(gatehouse_core::Error::new(
            gatehouse_core::ErrorCode::MalformedBody,
            format!("the body is not valid JSON for this request: {e}"),
        ))
    })
}

macro_rules! decision_route {
    ($name:ident, $path:literal, $decision:expr, $what:literal) => {
        #[doc = $what]
        #[utoipa::path(post, path = $path, tag = "catalog",
            security(("bearer" = [])), params(("id" = String, Path, description = "Subscription ID")),
            request_body(content = DecisionBody, description = "Optional reason"),
            responses(
                (status = 200, description = "Decided", body = SubscriptionOut),
                (status = 403, description = "Not a platform admin", body = ErrorBody),
                (status = 404, description = "No such subscription visible to you", body = ErrorBody),
            ))]
        pub async fn $name(
            State(state): State<AppState>,
            Client(client): Client,
            auth: Authenticated,
            Path(sid): Path<String>,
            body: axum::body::Bytes,
        ) -> Result<Json<SubscriptionOut>, ApiError> {
            let body = optional_json(&body)?;
            decide(&state, &auth, &sid, $decision, body, &client).await
        }
    };
}

decision_route!(
    approve_subscription,
    "/api/v1/subscriptions/{id}/approve",
    Decision::Approve,
    "Approve a subscription (platform `admin`)."
);
decision_route!(
    deny_subscription,
    "/api/v1/subscriptions/{id}/deny",
    Decision::Deny,
    "Deny a subscription (platform `admin`)."
);
decision_route!(
    suspend_subscription,
    "/api/v1/subscriptions/{id}/suspend",
    Decision::Suspend,
    "Suspend a subscription (platform `admin`)."
);
