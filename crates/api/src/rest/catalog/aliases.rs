//! `/api/v1/model-aliases`: other names for models, global or a user's own.

use super::*;

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
    #[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub alias: String,
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub model_id: String,
    /// A global alias (platform `admin`); otherwise your own.
    #[serde(default)]
    pub global: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AliasTarget {
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub model_id: String,
}

/// Create an alias: your own, or a global one (platform `admin`).
#[utoipa::path(post, path = "/api/v1/model-aliases", tag = "catalog",
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
#[utoipa::path(get, path = "/api/v1/model-aliases", tag = "catalog",
    security(("bearer" = [])), params(PageQuery),
    responses((status = 200, description = "A page of aliases, oldest first", body = List<AliasOut>)))]
pub async fn list_aliases(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<AliasOut>>, ApiError> {
    let page = page.request()?;
    let list = state.services.catalog.list_aliases(&auth.user).await?;
    Ok(Json(List::paged(list, &page, Order::Ascending, |a| a.id)?))
}

/// Point an alias at another model (your own; platform `admin`: any).
#[utoipa::path(patch, path = "/api/v1/model-aliases/{id}", tag = "catalog",
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
    ApiPath(aid): ApiPath<String>,
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
#[utoipa::path(delete, path = "/api/v1/model-aliases/{id}", tag = "catalog",
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
    ApiPath(aid): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .change_alias(&auth.user, id(&aid)?, None, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
