//! `/api/v1/credentials` (the platform's and provider accounts') and
//! `/api/v1/organizations/{org}/credentials`: upstream secrets, sealed at rest
//! and never read back.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct CredentialOut {
    #[schema(value_type = String)]
    pub id: Id,
    /// `{"type": "platform"}`, `{"type": "organization", "org_id"}` or `{"type": "user", "user_id"}`.
    #[schema(value_type = crate::rest::names::CredentialScope)]
    pub scope: CredentialScope,
    pub name: String,
    /// `openai`, `anthropic`, `oauth_account` or `generic`.
    #[schema(value_type = crate::rest::names::CredentialKind)]
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
    /// Leave out for the platform's (admins) or your own (provider accounts);
    /// `{"type": "platform"}` or `{"type": "user", "user_id"}`.
    #[schema(value_type = Option<crate::rest::names::TopLevelScope>)]
    pub scope: Option<CredentialScope>,
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    #[schema(value_type = crate::rest::names::CredentialKind)]
    pub kind: CredentialKind,
    /// A JSON object, e.g. `{"api_key": "sk-…"}`; sealed at rest, never shown again.
    #[schema(schema_with = crate::rest::names::secret_object)]
    pub secret: serde_json::Value,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: serde_json::Value,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialChangeBody {
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    /// Replaces the secret.
    #[schema(schema_with = crate::rest::names::optional_secret_object)]
    pub secret: Option<serde_json::Value>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A new organization credential: the path names its organization.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewOrgCredentialBody {
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    #[schema(value_type = crate::rest::names::CredentialKind)]
    pub kind: CredentialKind,
    /// A JSON object, e.g. `{"api_key": "sk-…"}`; sealed at rest, never shown again.
    #[schema(schema_with = crate::rest::names::secret_object)]
    pub secret: serde_json::Value,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: serde_json::Value,
}

/// Where a credential route is: the top level holds the platform's and
/// provider accounts' credentials, an organization's path holds its own. A
/// credential read through the other place is not found there.
#[derive(Clone, Copy)]
enum Place {
    TopLevel,
    Organization(Id),
}

impl Place {
    fn holds(self, scope: CredentialScope) -> bool {
        match (self, scope) {
            (Place::TopLevel, CredentialScope::Organization { .. }) => false,
            (Place::TopLevel, _) => true,
            (Place::Organization(org), CredentialScope::Organization { org_id }) => org == org_id,
            (Place::Organization(_), _) => false,
        }
    }
}

/// The credential `cid` if the caller may read it and it is in `place`.
async fn credential_in(
    state: &AppState,
    auth: &Authenticated,
    place: Place,
    cid: &str,
) -> Result<Credential, ApiError> {
    let c = state
        .services
        .catalog
        .get_credential(&auth.user, id(cid)?)
        .await?;
    if !place.holds(c.scope) {
        return Err(ApiError(gatehouse_core::Error::not_found("credential")));
    }
    Ok(c)
}

async fn create_in(
    state: &AppState,
    client: &gatehouse_core::model::sessions::ClientInfo,
    auth: &Authenticated,
    new: NewCredential,
) -> Result<(StatusCode, Json<CredentialOut>), ApiError> {
    let c = state
        .services
        .catalog
        .create_credential(&auth.user, new, client)
        .await?;
    Ok((StatusCode::CREATED, Json(c.into())))
}

async fn list_in(
    state: &AppState,
    auth: &Authenticated,
    place: Place,
    page: PageQuery,
) -> Result<Json<List<CredentialOut>>, ApiError> {
    let page = page.request()?;
    let scope = match place {
        Place::TopLevel => None,
        Place::Organization(org_id) => {
            // An organization you cannot see is not found, not empty.
            state.services.tenancy.access(&auth.user, org_id).await?;
            Some(CredentialScope::Organization { org_id })
        }
    };
    let mut list = state
        .services
        .catalog
        .list_credentials(&auth.user, scope)
        .await?;
    list.retain(|c| place.holds(c.scope));
    Ok(Json(List::paged(list, &page, Order::Ascending, |c| c.id)?))
}

async fn update_in(
    state: &AppState,
    client: &gatehouse_core::model::sessions::ClientInfo,
    auth: &Authenticated,
    place: Place,
    cid: &str,
    body: CredentialChangeBody,
) -> Result<Json<CredentialOut>, ApiError> {
    // A credential's scope never changes, so the check holds for the write.
    let c = credential_in(state, auth, place, cid).await?;
    let change = CredentialChange {
        name: body.name,
        secret: body.secret,
        metadata: body.metadata,
    };
    let c = state
        .services
        .catalog
        .update_credential(&auth.user, c.id, change, client)
        .await?;
    Ok(Json(c.into()))
}

async fn delete_in(
    state: &AppState,
    client: &gatehouse_core::model::sessions::ClientInfo,
    auth: &Authenticated,
    place: Place,
    cid: &str,
) -> Result<StatusCode, ApiError> {
    let c = credential_in(state, auth, place, cid).await?;
    state
        .services
        .catalog
        .delete_credential(&auth.user, c.id, client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Create a platform credential (platform admins) or, from a provider
/// account, its own `oauth_account` one. An organization's credentials are
/// created under `/api/v1/organizations/{org}/credentials`.
#[utoipa::path(post, path = "/api/v1/credentials", tag = "catalog",
    security(("bearer" = [])), request_body = NewCredentialBody,
    responses(
        (status = 201, description = "Created; the secret is not returned", body = CredentialOut),
        (status = 400, description = "Invalid, or an organization scope", body = ErrorBody),
        (status = 403, description = "Not allowed", body = ErrorBody),
        (status = 404, description = "The scope names a user that does not exist", body = ErrorBody),
    ))]
pub async fn create_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(body): ApiJson<NewCredentialBody>,
) -> Result<(StatusCode, Json<CredentialOut>), ApiError> {
    if let Some(CredentialScope::Organization { org_id }) = body.scope {
        return Err(ApiError(gatehouse_core::Error::invalid_input(format!(
            "create organization credentials at /api/v1/organizations/{org_id}/credentials"
        ))));
    }
    let new = NewCredential {
        scope: body.scope,
        name: body.name,
        kind: body.kind,
        secret: body.secret,
        metadata: body.metadata,
    };
    create_in(&state, &client, &auth, new).await
}

/// The platform's and provider accounts' credentials you may read, oldest first.
#[utoipa::path(get, path = "/api/v1/credentials", tag = "catalog",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, description = "A page of credentials, without secrets", body = List<CredentialOut>)))]
pub async fn list_credentials(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<CredentialOut>>, ApiError> {
    list_in(&state, &auth, Place::TopLevel, page).await
}

/// Read a platform or provider credential (never its secret).
#[utoipa::path(get, path = "/api/v1/credentials/{id}", tag = "catalog",
    security(("bearer" = [])), params(("id" = String, Path, description = "Credential ID")),
    responses(
        (status = 200, description = "The credential", body = CredentialOut),
        (status = 404, description = "No such credential visible to you", body = ErrorBody),
    ))]
pub async fn read_credential(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(cid): ApiPath<String>,
) -> Result<Json<CredentialOut>, ApiError> {
    let c = credential_in(&state, &auth, Place::TopLevel, &cid).await?;
    Ok(Json(c.into()))
}

/// Rename a platform or provider credential, replace its secret or metadata.
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
    ApiPath(cid): ApiPath<String>,
    ApiJson(body): ApiJson<CredentialChangeBody>,
) -> Result<Json<CredentialOut>, ApiError> {
    update_in(&state, &client, &auth, Place::TopLevel, &cid, body).await
}

/// Delete a platform or provider credential no endpoint uses.
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
    ApiPath(cid): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    delete_in(&state, &client, &auth, Place::TopLevel, &cid).await
}

/// Create one of an organization's credentials (its owners and admins).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/credentials", tag = "catalog",
    security(("bearer" = [])), params(("org" = String, Path, description = "Organization ID")),
    request_body = NewOrgCredentialBody,
    responses(
        (status = 201, description = "Created; the secret is not returned", body = CredentialOut),
        (status = 400, description = "Invalid", body = ErrorBody),
        (status = 403, description = "Not an owner or admin of the organization", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn create_org_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<NewOrgCredentialBody>,
) -> Result<(StatusCode, Json<CredentialOut>), ApiError> {
    let new = NewCredential {
        scope: Some(CredentialScope::Organization { org_id: id(&org)? }),
        name: body.name,
        kind: body.kind,
        secret: body.secret,
        metadata: body.metadata,
    };
    create_in(&state, &client, &auth, new).await
}

/// An organization's credentials (its owners and admins, platform readers), oldest first.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/credentials", tag = "catalog",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "A page of credentials, without secrets", body = List<CredentialOut>),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn list_org_credentials(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<CredentialOut>>, ApiError> {
    list_in(&state, &auth, Place::Organization(id(&org)?), page).await
}

/// Read one of an organization's credentials (never its secret).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/credentials/{id}", tag = "catalog",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"),
        ("id" = String, Path, description = "Credential ID")),
    responses(
        (status = 200, description = "The credential", body = CredentialOut),
        (status = 404, description = "No such credential in this organization", body = ErrorBody),
    ))]
pub async fn read_org_credential(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, cid)): ApiPath<(String, String)>,
) -> Result<Json<CredentialOut>, ApiError> {
    let place = Place::Organization(id(&org)?);
    Ok(Json(
        credential_in(&state, &auth, place, &cid).await?.into(),
    ))
}

/// Rename one of an organization's credentials, replace its secret or metadata.
#[utoipa::path(patch, path = "/api/v1/organizations/{org}/credentials/{id}", tag = "catalog",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"),
        ("id" = String, Path, description = "Credential ID")),
    request_body = CredentialChangeBody,
    responses(
        (status = 200, description = "Changed", body = CredentialOut),
        (status = 403, description = "Not an owner or admin of the organization", body = ErrorBody),
        (status = 404, description = "No such credential in this organization", body = ErrorBody),
    ))]
pub async fn update_org_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, cid)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<CredentialChangeBody>,
) -> Result<Json<CredentialOut>, ApiError> {
    let place = Place::Organization(id(&org)?);
    update_in(&state, &client, &auth, place, &cid, body).await
}

/// Delete one of an organization's credentials that no endpoint uses.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/credentials/{id}", tag = "catalog",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"),
        ("id" = String, Path, description = "Credential ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an owner or admin of the organization", body = ErrorBody),
        (status = 404, description = "No such credential in this organization", body = ErrorBody),
        (status = 409, description = "An endpoint uses it", body = ErrorBody),
    ))]
pub async fn delete_org_credential(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, cid)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    let place = Place::Organization(id(&org)?);
    delete_in(&state, &client, &auth, place, &cid).await
}
