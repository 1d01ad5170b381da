//! Service clients and their certificates
//! (`/api/v1/organizations/{org}/clients`): the Ed25519 keys internal
//! services sign their token requests with.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::model::vaults::{Certificate, ServiceClient};
use gatehouse_core::page::Page;
use gatehouse_core::vaults::CertificateSpec;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::orgs::id;
use super::page::{List, Order, PageQuery, TextPageQuery};
use super::vaults::NewVaultBody;
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

#[derive(Serialize, ToSchema)]
pub struct ClientOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub organization_id: Id,
    pub name: String,
    pub description: String,
    pub created_at: DateTime<Utc>,
}

impl From<ServiceClient> for ClientOut {
    fn from(c: ServiceClient) -> Self {
        ClientOut {
            id: c.id,
            organization_id: c.org_id,
            name: c.name,
            description: c.description,
            created_at: c.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct CertificateOut {
    /// Names this key in assertions' `kid` header.
    pub kid: String,
    #[schema(value_type = String)]
    pub client_id: Id,
    /// The public key as a JWK (`OKP`, `Ed25519`).
    #[schema(value_type = Object)]
    pub jwk: Value,
    /// Whether Gatehouse keeps the private key (sealed).
    pub private_key_kept: bool,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// Only when Gatehouse generated the pair, only in this answer: PKCS#8 PEM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
}

impl CertificateOut {
    fn new(c: Certificate, private_key: Option<String>) -> Self {
        CertificateOut {
            jwk: gatehouse_core::vaults::jwt::public_jwk(&c.kid, &c.public_key),
            kid: c.kid,
            client_id: c.client_id,
            private_key_kept: c.private_key.is_some(),
            created_at: c.created_at,
            revoked_at: c.revoked_at,
            private_key,
        }
    }
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct CertificateBody {
    /// The client's own Ed25519 public key: base64url (or standard base64)
    /// of the 32 bytes, or a PEM `PUBLIC KEY`. Absent: Gatehouse generates a
    /// pair, and the answer carries its private key as PKCS#8 v1 PEM.
    pub public_key: Option<String>,
    /// Keep the generated private key, sealed with AES-256-GCM.
    #[serde(default)]
    pub keep_private_key: bool,
}

/// Create a service client (owners, admins, `manage_keys` delegates).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/clients", tag = "clients",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = NewVaultBody,
    responses(
        (status = 201, description = "Created", body = ClientOut),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn create_client(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<NewVaultBody>,
) -> Result<(StatusCode, Json<ClientOut>), ApiError> {
    let created = state
        .services
        .vaults
        .create_client(&auth.user, id(&org)?, body.into(), &client)
        .await?;
    Ok((StatusCode::CREATED, Json(created.into())))
}

/// The organization's service clients.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/clients", tag = "clients",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "Clients", body = List<ClientOut>),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn list_clients(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<ClientOut>>, ApiError> {
    let page = page.request()?;
    let clients = state
        .services
        .vaults
        .list_clients(&auth.user, id(&org)?)
        .await?;
    Ok(Json(List::paged(clients, &page, Order::Ascending, |c| {
        c.id
    })?))
}

/// Read a service client.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/clients/{client}", tag = "clients",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("client" = String, Path, description = "Client ID"),
    ),
    responses(
        (status = 200, description = "The client", body = ClientOut),
        (status = 404, description = "No such client visible to you", body = ErrorBody),
    ))]
pub async fn read_client(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, client_id)): ApiPath<(String, String)>,
) -> Result<Json<ClientOut>, ApiError> {
    let found = state
        .services
        .vaults
        .get_client(&auth.user, id(&org)?, id(&client_id)?)
        .await?;
    Ok(Json(found.into()))
}

/// Delete a service client, its certificates and its vault grants.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/clients/{client}", tag = "clients",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("client" = String, Path, description = "Client ID"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such client visible to you", body = ErrorBody),
    ))]
pub async fn delete_client(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, client_id)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .vaults
        .delete_client(&auth.user, id(&org)?, id(&client_id)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A client's certificates (public keys).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/clients/{client}/certificates", tag = "clients",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("client" = String, Path, description = "Client ID"),
        TextPageQuery,
    ),
    responses(
        (status = 200, description = "A page of certificates, by key ID", body = List<CertificateOut>),
        (status = 404, description = "No such client visible to you", body = ErrorBody),
    ))]
pub async fn list_certificates(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, client_id)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<TextPageQuery>,
) -> Result<Json<List<CertificateOut>>, ApiError> {
    let page = page.request()?;
    let certs = state
        .services
        .vaults
        .list_certificates(&auth.user, id(&org)?, id(&client_id)?)
        .await?;
    let certs = Page::of(certs, &page, Order::Ascending, |c| c.kid.clone()).map_err(ApiError)?;
    Ok(Json(List::of(certs.map(|c| CertificateOut::new(c, None)))))
}

/// Add a certificate: send a public key, or none to have Gatehouse generate a
/// key pair (its private key is in this answer only).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/clients/{client}/certificates", tag = "clients",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("client" = String, Path, description = "Client ID"),
    ),
    request_body = CertificateBody,
    responses(
        (status = 201, description = "Added", body = CertificateOut),
        (status = 400, description = "Not an Ed25519 public key", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such client visible to you", body = ErrorBody),
    ))]
pub async fn add_certificate(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, client_id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CertificateBody>,
) -> Result<(StatusCode, Json<CertificateOut>), ApiError> {
    let spec = CertificateSpec {
        public_key: body.public_key,
        keep_private_key: body.keep_private_key,
    };
    let (cert, private_key) = state
        .services
        .vaults
        .add_certificate(&auth.user, id(&org)?, id(&client_id)?, spec, &client)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CertificateOut::new(cert, private_key)),
    ))
}

/// Revoke a certificate: assertions signed with it are refused from now on.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/clients/{client}/certificates/{kid}", tag = "clients",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("client" = String, Path, description = "Client ID"),
        ("kid" = String, Path, description = "Certificate kid"),
    ),
    responses(
        (status = 200, description = "Revoked", body = CertificateOut),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such client or certificate", body = ErrorBody),
    ))]
pub async fn revoke_certificate(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, client_id, kid)): ApiPath<(String, String, String)>,
) -> Result<Json<CertificateOut>, ApiError> {
    let cert = state
        .services
        .vaults
        .revoke_certificate(&auth.user, id(&org)?, id(&client_id)?, &kid, &client)
        .await?;
    Ok(Json(CertificateOut::new(cert, None)))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_clients))
        .routes(routes!(create_client))
        .routes(routes!(read_client))
        .routes(routes!(delete_client))
        .routes(routes!(list_certificates))
        .routes(routes!(add_certificate))
        .routes(routes!(revoke_certificate))
}
