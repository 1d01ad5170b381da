//! Vaults and their grants (`/api/v1/organizations/{org}/vaults`) and token
//! issuance (for the service clients of [`super::clients`]):
//! `POST /api/v1/token` (RFC 7523 client assertions and refresh tokens),
//! `POST …/vaults/{vault}/token` (signed-in users), `/.well-known/jwks.json`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use gatehouse_core::model::vaults::{SubjectKind, SyncStatus, Vault, VaultGrant, VaultRole};
use gatehouse_core::vaults::VaultSpec;
use gatehouse_core::vaults::tokens::IssuedTokens;
use gatehouse_core::{ErrorCode, Id};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::orgs::id;
use super::page::{List, Order, PageQuery, TextPageQuery};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

#[derive(Serialize, ToSchema)]
pub struct VaultOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub organization_id: Id,
    pub name: String,
    pub description: String,
    /// `pending`, `synced`, `failed` or `not_configured` (no policy engine).
    #[schema(value_type = crate::rest::names::SyncStatus)]
    pub sync_status: SyncStatus,
    /// Why the last sync failed, or why there is nothing to sync to.
    pub sync_reason: Option<String>,
    pub sync_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Vault> for VaultOut {
    fn from(v: Vault) -> Self {
        VaultOut {
            id: v.id,
            organization_id: v.org_id,
            name: v.name,
            description: v.description,
            sync_status: v.sync.status,
            sync_reason: v.sync.reason,
            sync_at: v.sync.at,
            created_at: v.created_at,
            updated_at: v.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VaultBody {
    /// 1-100 characters, unique in the organization (required to create).
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

/// A new vault or service client: its name is required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewVaultBody {
    /// 1-100 characters, unique in the organization.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
}

impl From<NewVaultBody> for VaultSpec {
    fn from(b: NewVaultBody) -> Self {
        VaultSpec {
            name: Some(b.name),
            description: b.description,
        }
    }
}

impl From<VaultBody> for VaultSpec {
    fn from(b: VaultBody) -> Self {
        VaultSpec {
            name: b.name,
            description: b.description,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct GrantOut {
    #[schema(value_type = String)]
    pub vault_id: Id,
    /// `user`, `team` or `client`.
    #[schema(value_type = crate::rest::names::SubjectKind)]
    pub subject_type: SubjectKind,
    #[schema(value_type = String)]
    pub subject_id: Id,
    /// `reader`, `writer`, `manager` or `admin`.
    #[schema(value_type = crate::rest::names::VaultRole)]
    pub role: VaultRole,
    pub created_at: DateTime<Utc>,
}

impl From<VaultGrant> for GrantOut {
    fn from(g: VaultGrant) -> Self {
        GrantOut {
            vault_id: g.vault_id,
            subject_type: g.subject_type,
            subject_id: g.subject_id,
            role: g.role,
            created_at: g.created_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GrantBody {
    /// `user` (a member), `team` or `client` of this organization.
    #[schema(value_type = crate::rest::names::SubjectKind)]
    pub subject_type: String,
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub subject_id: String,
    /// `reader`, `writer`, `manager` or `admin`.
    #[schema(value_type = crate::rest::names::VaultRole)]
    pub role: VaultRole,
}

/// Tokens, in the shape of an OAuth 2.0 token response (RFC 6749 §5.1).
#[derive(Serialize, ToSchema)]
pub struct TokenOut {
    /// EdDSA JWT; claims `iss`, `sub`, `sub_type`, `aud`, `exp`, `iat`,
    /// `jti`, `org`, `vault`, `role`, `scope`.
    pub access_token: String,
    /// Always `Bearer`.
    pub token_type: &'static str,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Opaque, single use: every use returns the next one.
    pub refresh_token: String,
    /// The refresh tokens' absolute expiry (rotation never extends it).
    pub refresh_expires_at: DateTime<Utc>,
    pub scope: &'static str,
    #[schema(value_type = String)]
    pub organization_id: Id,
    #[schema(value_type = String)]
    pub vault_id: Id,
    #[schema(value_type = crate::rest::names::VaultRole)]
    pub role: VaultRole,
}

impl From<IssuedTokens> for TokenOut {
    fn from(t: IssuedTokens) -> Self {
        TokenOut {
            access_token: t.access_token,
            token_type: "Bearer",
            expires_in: t.expires_in,
            refresh_token: t.refresh_token,
            refresh_expires_at: t.refresh_expires_at,
            scope: t.role.scope(),
            organization_id: t.org_id,
            vault_id: t.vault_id,
            role: t.role,
        }
    }
}

/// The token request, as a form (`application/x-www-form-urlencoded`) or JSON.
#[derive(Deserialize, ToSchema)]
pub struct TokenRequest {
    /// `client_credentials` (with a client assertion) or `refresh_token`.
    #[schema(pattern = "^(client_credentials|refresh_token)$")]
    pub grant_type: String,
    /// `urn:ietf:params:oauth:client-assertion-type:jwt-bearer`.
    pub client_assertion_type: Option<String>,
    /// The client's JWT, signed with one of its certificates (EdDSA):
    /// `iss` = `sub` = client ID, `aud` = this URL, `exp` at most 60 s ahead,
    /// `iat`, single-use `jti`; header `kid` = the certificate.
    pub client_assertion: Option<String>,
    /// The vault the token is for (client assertions).
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub vault_id: Option<String>,
    /// With `grant_type=refresh_token`.
    pub refresh_token: Option<String>,
}

const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

fn subject(kind: &str, id_text: &str) -> Result<(SubjectKind, Id), ApiError> {
    Ok((SubjectKind::parse(kind)?, id(id_text)?))
}

// ---- vaults ----

/// Create a vault (owners, admins, `manage_vaults` delegates).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/vaults", tag = "vaults",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = NewVaultBody,
    responses(
        (status = 201, description = "Created", body = VaultOut),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn create_vault(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<NewVaultBody>,
) -> Result<(StatusCode, Json<VaultOut>), ApiError> {
    let vault = state
        .services
        .vaults
        .create_vault(&auth.user, id(&org)?, body.into(), &client)
        .await?;
    Ok((StatusCode::CREATED, Json(vault.into())))
}

/// The organization's vaults (members and platform readers).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/vaults", tag = "vaults",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "Vaults", body = List<VaultOut>),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn list_vaults(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<VaultOut>>, ApiError> {
    let page = page.request()?;
    let vaults = state
        .services
        .vaults
        .list_vaults(&auth.user, id(&org)?)
        .await?;
    Ok(Json(List::paged(vaults, &page, Order::Ascending, |v| {
        v.id
    })?))
}

/// Read a vault, with its sync status.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/vaults/{vault}", tag = "vaults",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
    ),
    responses(
        (status = 200, description = "The vault", body = VaultOut),
        (status = 404, description = "No such vault visible to you", body = ErrorBody),
    ))]
pub async fn read_vault(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, vault)): ApiPath<(String, String)>,
) -> Result<Json<VaultOut>, ApiError> {
    let vault = state
        .services
        .vaults
        .get_vault(&auth.user, id(&org)?, id(&vault)?)
        .await?;
    Ok(Json(vault.into()))
}

/// Rename a vault or change its description.
#[utoipa::path(patch, path = "/api/v1/organizations/{org}/vaults/{vault}", tag = "vaults",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
    ),
    request_body = VaultBody,
    responses(
        (status = 200, description = "Changed", body = VaultOut),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such vault visible to you", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn update_vault(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, vault)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<VaultBody>,
) -> Result<Json<VaultOut>, ApiError> {
    let vault = state
        .services
        .vaults
        .update_vault(&auth.user, id(&org)?, id(&vault)?, body.into(), &client)
        .await?;
    Ok(Json(vault.into()))
}

/// Delete a vault and its grants.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/vaults/{vault}", tag = "vaults",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such vault visible to you", body = ErrorBody),
    ))]
pub async fn delete_vault(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, vault)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .vaults
        .delete_vault(&auth.user, id(&org)?, id(&vault)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who holds which role in a vault.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/vaults/{vault}/grants", tag = "vaults",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
        TextPageQuery,
    ),
    responses(
        (status = 200, description = "Grants", body = List<GrantOut>),
        (status = 404, description = "No such vault visible to you", body = ErrorBody),
    ))]
pub async fn list_grants(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, vault)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<TextPageQuery>,
) -> Result<Json<List<GrantOut>>, ApiError> {
    let page = page.request()?;
    let grants = state
        .services
        .vaults
        .list_grants(&auth.user, id(&org)?, id(&vault)?)
        .await?;
    Ok(Json(List::paged(grants, &page, Order::Ascending, |g| {
        format!("{}:{}", g.subject_type.as_str(), g.subject_id)
    })?))
}

/// Give a member, team or client a role in a vault (replacing its role).
#[utoipa::path(put, path = "/api/v1/organizations/{org}/vaults/{vault}/grants", tag = "vaults",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
    ),
    request_body = GrantBody,
    responses(
        (status = 200, description = "Granted", body = GrantOut),
        (status = 400, description = "No such subject in this organization", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such vault visible to you", body = ErrorBody),
    ))]
pub async fn put_grant(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, vault)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<GrantBody>,
) -> Result<Json<GrantOut>, ApiError> {
    let who = subject(&body.subject_type, &body.subject_id)?;
    let grant = state
        .services
        .vaults
        .put_grant(&auth.user, id(&org)?, id(&vault)?, who, body.role, &client)
        .await?;
    Ok(Json(grant.into()))
}

/// Take a subject's role in a vault away.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/vaults/{vault}/grants/{subject_type}/{subject_id}", tag = "vaults",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
        ("subject_type" = crate::rest::names::SubjectKind, Path, description = "`user`, `team` or `client`"),
        ("subject_id" = String, Path, description = "The subject's ID"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such vault or grant", body = ErrorBody),
    ))]
pub async fn delete_grant(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, vault, kind, subject_id)): ApiPath<(String, String, String, String)>,
) -> Result<StatusCode, ApiError> {
    let who = subject(&kind, &subject_id)?;
    state
        .services
        .vaults
        .delete_grant(&auth.user, id(&org)?, id(&vault)?, who, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token for a vault you hold a role in (yours, or through a team).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/vaults/{vault}/token", tag = "tokens",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("vault" = String, Path, description = "Vault ID"),
    ),
    responses(
        (status = 200, description = "Tokens", body = TokenOut),
        (status = 403, description = "You hold no role in this vault", body = ErrorBody),
        (status = 404, description = "No such vault visible to you", body = ErrorBody),
    ))]
pub async fn user_token(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, vault)): ApiPath<(String, String)>,
) -> Result<Json<TokenOut>, ApiError> {
    let tokens = state
        .services
        .tokens
        .user_token(&auth.user, id(&org)?, id(&vault)?, &client)
        .await?;
    Ok(Json(tokens.into()))
}

// ---- token endpoint ----

/// The token endpoint: `grant_type=client_credentials` with an RFC 7523
/// client assertion and a `vault_id`, or `grant_type=refresh_token`. Takes a
/// form or JSON.
#[utoipa::path(post, path = "/api/v1/token", tag = "tokens",
    request_body(content = TokenRequest, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Tokens", body = TokenOut),
        (status = 400, description = "Missing or unknown parameters", body = ErrorBody),
        (status = 401, description = "Invalid, expired, replayed or revoked assertion or refresh token", body = ErrorBody),
        (status = 403, description = "No role in this vault", body = ErrorBody),
        (status = 404, description = "No such vault", body = ErrorBody),
        (status = 415, description = "Neither a form nor JSON", body = ErrorBody),
    ))]
pub async fn token(
    State(state): State<AppState>,
    Client(client): Client,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenOut>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let request: TokenRequest = if content_type.starts_with("application/x-www-form-urlencoded") {
        serde_urlencoded::from_bytes(&body).map_err(|e| {
            ApiError::new(
                ErrorCode::InvalidInput,
                format!("the form is not valid: {e}"),
            )
        })?
    } else if content_type.starts_with("application/json") {
        crate::extract::json_object(&body)?
    } else {
        return Err(ApiError::new(
            ErrorCode::UnsupportedMediaType,
            "send application/x-www-form-urlencoded or application/json",
        ));
    };
    let tokens = match request.grant_type.as_str() {
        "client_credentials" => {
            if request.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
                return Err(ApiError::new(
                    ErrorCode::InvalidInput,
                    format!("client_assertion_type must be {ASSERTION_TYPE}"),
                ));
            }
            let (Some(assertion), Some(vault)) = (request.client_assertion, request.vault_id)
            else {
                return Err(ApiError::new(
                    ErrorCode::InvalidInput,
                    "client_assertion and vault_id are required",
                ));
            };
            state
                .services
                .tokens
                .exchange_assertion(&assertion, id(&vault)?, &client)
                .await?
        }
        "refresh_token" => {
            let Some(refresh) = request.refresh_token else {
                return Err(ApiError::new(
                    ErrorCode::InvalidInput,
                    "refresh_token is required",
                ));
            };
            state.services.tokens.refresh(&refresh, &client).await?
        }
        _ => {
            return Err(ApiError::new(
                ErrorCode::InvalidInput,
                "grant_type must be client_credentials or refresh_token",
            ));
        }
    };
    Ok(Json(tokens.into()))
}

/// Gatehouse's token-signing public keys (current and recently retired), for
/// verifying vault tokens offline.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "tokens",
    responses((status = 200, description = "A JWK Set of Ed25519 (`OKP`) keys", body = Object)))]
pub async fn jwks(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    Ok(Json(state.services.tokens.jwks().await?))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_vaults))
        .routes(routes!(create_vault))
        .routes(routes!(read_vault))
        .routes(routes!(update_vault))
        .routes(routes!(delete_vault))
        .routes(routes!(list_grants))
        .routes(routes!(put_grant))
        .routes(routes!(delete_grant))
        .routes(routes!(user_token))
        .routes(routes!(token))
        .routes(routes!(jwks))
}
