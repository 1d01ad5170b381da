//! `/api/v1/credentials`: upstream secrets, sealed at rest and never read back.

use super::*;

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
