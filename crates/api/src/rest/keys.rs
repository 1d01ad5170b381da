//! `/api/v1/api-keys`: API keys, shown once at creation.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::keys::{KeyView, NewKey};
use gatehouse_core::model::keys::{ApiKey, Budget, BudgetPeriod, KeyScope};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::orgs::id;
use super::page::{self, List};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

#[derive(Serialize, Deserialize, ToSchema, Clone, Copy)]
pub struct BudgetBody {
    /// US dollars.
    #[schema(minimum = 0)]
    pub max_usd: f64,
    /// `day`, `month` or `total`.
    #[schema(value_type = crate::rest::names::BudgetPeriod)]
    pub period: BudgetPeriod,
}

impl From<BudgetBody> for Budget {
    fn from(b: BudgetBody) -> Self {
        Budget {
            max_usd: b.max_usd,
            period: b.period,
        }
    }
}

impl From<Budget> for BudgetBody {
    fn from(b: Budget) -> Self {
        BudgetBody {
            max_usd: b.max_usd,
            period: b.period,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct KeyOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub owner_id: Id,
    #[schema(value_type = Option<String>)]
    pub organization_id: Option<Id>,
    pub label: String,
    /// The first characters of the key.
    pub display_prefix: String,
    /// Empty: every model the owner may use.
    pub allowed_models: BTreeSet<String>,
    #[schema(minimum = 0, maximum = 4294967295.0, value_type = Option<i64>)]
    pub rpm_limit: Option<u32>,
    #[schema(minimum = 0, maximum = 4294967295.0, value_type = Option<i64>)]
    pub tpm_limit: Option<u32>,
    pub budget: Option<BudgetBody>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>)]
    pub rotated_from: Option<Id>,
    #[schema(value_type = Option<String>)]
    pub replaced_by: Option<Id>,
    /// `gateway` (always) and `management` (the management API, as the owner).
    #[schema(value_type = Vec<crate::rest::names::KeyScope>, example = json!(["gateway"]))]
    pub scopes: BTreeSet<KeyScope>,
    /// The key that created this one, when a key did.
    #[schema(value_type = Option<String>)]
    pub created_by_key: Option<Id>,
    pub created_at: DateTime<Utc>,
    /// Recorded in batches: up to `keys.last_used_flush_secs` behind.
    pub last_used_at: Option<DateTime<Utc>>,
}

impl KeyOut {
    fn new(k: ApiKey, last_used_at: Option<DateTime<Utc>>) -> Self {
        KeyOut {
            id: k.id,
            owner_id: k.owner_id,
            organization_id: k.org_id,
            label: k.label,
            display_prefix: k.display_prefix,
            allowed_models: k.allowed_models,
            rpm_limit: k.rpm_limit,
            tpm_limit: k.tpm_limit,
            budget: k.budget.map(Into::into),
            expires_at: k.expires_at,
            revoked_at: k.revoked_at,
            rotated_from: k.rotated_from,
            replaced_by: k.replaced_by,
            scopes: k.scopes,
            created_by_key: k.created_by_key,
            created_at: k.created_at,
            last_used_at,
        }
    }
}

impl From<KeyView> for KeyOut {
    fn from(v: KeyView) -> Self {
        KeyOut::new(v.key, v.last_used_at)
    }
}

#[derive(Serialize, ToSchema)]
pub struct CreatedKey {
    /// The key itself: shown only now. Send it as `Authorization: Bearer …` or `X-API-Key: …`.
    pub key: String,
    #[serde(flatten)]
    pub info: KeyOut,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewKeyBody {
    /// An organization you belong to: the key works for it, and its body
    /// capture setting applies.
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub organization_id: Option<String>,
    #[serde(default)]
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,100}$")]
    pub label: String,
    /// Model names; empty or absent: every model you may use.
    #[serde(default)]
    #[schema(value_type = Vec<crate::rest::names::ModelName>, max_items = 1000)]
    pub allowed_models: Vec<String>,
    #[schema(minimum = 0, maximum = 4294967295.0, value_type = Option<i64>)]
    pub rpm_limit: Option<u32>,
    #[schema(minimum = 0, maximum = 4294967295.0, value_type = Option<i64>)]
    pub tpm_limit: Option<u32>,
    pub budget: Option<BudgetBody>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `["gateway"]` (the default: the gateway only) or
    /// `["gateway", "management"]` (also the management API, as you, except
    /// your password, addresses, sessions, passkeys and second factor).
    #[serde(default)]
    #[schema(value_type = Vec<crate::rest::names::KeyScope>, example = json!(["gateway"]))]
    pub scopes: Vec<KeyScope>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct KeyQuery {
    /// Everyone's keys (platform `admin`, `admin_readonly`).
    #[serde(default)]
    pub all: bool,
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// How long the old key keeps working (default 86400, at most 30 days).
    #[schema(maximum = 2592000)]
    pub grace_secs: Option<u64>,
}

/// Create an API key for yourself; the key is in this answer only.
#[utoipa::path(post, path = "/api/v1/api-keys", tag = "keys",
    security(("bearer" = [])), request_body = NewKeyBody,
    responses(
        (status = 201, description = "Created", body = CreatedKey),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Provider accounts hold no keys; an API key asked for a key broader than itself", body = ErrorBody),
        (status = 404, description = "The `organization_id` names no organization visible to you", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewKeyBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let spec = NewKey {
        org_id: body.organization_id.as_deref().map(id).transpose()?,
        label: body.label,
        allowed_models: body.allowed_models,
        rpm_limit: body.rpm_limit,
        tpm_limit: body.tpm_limit,
        budget: body.budget.map(Into::into),
        expires_at: body.expires_at,
        scopes: body.scopes,
    };
    let (key, plaintext) = state
        .services
        .keys
        .create(&auth.user, spec, auth.api_key, &client)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: plaintext,
            info: KeyOut::new(key, None),
        }),
    ))
}

/// Your keys, newest first (or everyone's with `all=true`, platform readers).
#[utoipa::path(get, path = "/api/v1/api-keys", tag = "keys",
    security(("bearer" = [])), params(KeyQuery),
    responses(
        (status = 200, description = "A page of keys, without the keys themselves", body = List<KeyOut>),
        (status = 403, description = "`all` without being a platform reader", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<KeyQuery>,
) -> Result<Json<List<KeyOut>>, ApiError> {
    let page = page::request(query.limit, query.cursor)?;
    let keys = state
        .services
        .keys
        .list(&auth.user, query.all, &page)
        .await?;
    Ok(Json(List::of(keys)))
}

/// Read a key (yours; platform readers: any).
#[utoipa::path(get, path = "/api/v1/api-keys/{id}", tag = "keys",
    security(("bearer" = [])), params(("id" = String, Path, description = "Key ID")),
    responses(
        (status = 200, description = "The key's settings", body = KeyOut),
        (status = 404, description = "No such key visible to you", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(kid): ApiPath<String>,
) -> Result<Json<KeyOut>, ApiError> {
    let view = state.services.keys.get(&auth.user, id(&kid)?).await?;
    Ok(Json(view.into()))
}

/// Revoke a key (yours; platform `admin`: any; through an API key: only the
/// keys that key created). It stops working at once.
#[utoipa::path(delete, path = "/api/v1/api-keys/{id}", tag = "keys",
    security(("bearer" = [])), params(("id" = String, Path, description = "Key ID")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Read-only admins", body = ErrorBody),
        (status = 404, description = "No such key visible to you", body = ErrorBody),
    ))]
pub async fn revoke(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(kid): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .keys
        .revoke(&auth.user, id(&kid)?, auth.api_key, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Replace your key with a new one with the same settings; the old one works
/// for `grace_secs` more. The new key is in this answer only.
#[utoipa::path(post, path = "/api/v1/api-keys/{id}/rotate", tag = "keys",
    security(("bearer" = [])), params(("id" = String, Path, description = "Key ID")),
    request_body = RotateBody,
    responses(
        (status = 201, description = "The new key", body = CreatedKey),
        (status = 403, description = "Not your key", body = ErrorBody),
        (status = 404, description = "No such key visible to you", body = ErrorBody),
        (status = 409, description = "Revoked, expired or already rotated", body = ErrorBody),
    ))]
pub async fn rotate(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(kid): ApiPath<String>,
    ApiJson(body): ApiJson<RotateBody>,
) -> Result<(StatusCode, Json<CreatedKey>), ApiError> {
    let (key, plaintext) = state
        .services
        .keys
        .rotate(
            &auth.user,
            id(&kid)?,
            body.grace_secs.unwrap_or(86_400),
            auth.api_key,
            &client,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: plaintext,
            info: KeyOut::new(key, None),
        }),
    ))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(create))
        .routes(routes!(read))
        .routes(routes!(revoke))
        .routes(routes!(rotate))
}
