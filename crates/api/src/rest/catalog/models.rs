//! `/api/v1/models`: the catalogue of models and their prices.

use super::*;

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
    #[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub name: Option<String>,
    /// Required to create.
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub endpoint_id: Option<String>,
    /// Defaults to `name`.
    #[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub upstream_name: Option<String>,
    pub provider: Option<String>,
    #[serde(default, deserialize_with = "some")]
    #[schema(minimum = 0, maximum = 4294967295.0, value_type = Option<i64>)]
    pub context_length: Option<Option<u32>>,
    /// US dollars per input token.
    #[schema(minimum = 0)]
    pub input_cost_per_token: Option<f64>,
    /// US dollars per output token.
    #[schema(minimum = 0)]
    pub output_cost_per_token: Option<f64>,
    pub enabled: Option<bool>,
    /// Needs an approved subscription.
    pub restricted: Option<bool>,
}

/// A new model: [`ModelBody`] with its name and endpoint required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModelBody {
    /// The public name, unique.
    #[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub name: String,
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub endpoint_id: String,
    /// Defaults to `name`.
    #[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub upstream_name: Option<String>,
    pub provider: Option<String>,
    #[schema(minimum = 0, maximum = 4294967295.0, value_type = Option<i64>)]
    pub context_length: Option<u32>,
    /// US dollars per input token.
    #[schema(minimum = 0)]
    pub input_cost_per_token: Option<f64>,
    /// US dollars per output token.
    #[schema(minimum = 0)]
    pub output_cost_per_token: Option<f64>,
    pub enabled: Option<bool>,
    /// Needs an approved subscription.
    pub restricted: Option<bool>,
}

impl From<NewModelBody> for ModelBody {
    fn from(b: NewModelBody) -> Self {
        ModelBody {
            name: Some(b.name),
            endpoint_id: Some(b.endpoint_id),
            upstream_name: b.upstream_name,
            provider: b.provider,
            context_length: b.context_length.map(Some),
            input_cost_per_token: b.input_cost_per_token,
            output_cost_per_token: b.output_cost_per_token,
            enabled: b.enabled,
            restricted: b.restricted,
        }
    }
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
    security(("bearer" = [])), request_body = NewModelBody,
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
    ApiJson(body): ApiJson<NewModelBody>,
) -> Result<(StatusCode, Json<ModelOut>), ApiError> {
    let m = state
        .services
        .catalog
        .create_model(&auth.user, ModelBody::from(body).spec()?, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(m.into())))
}

/// The catalogue: enabled models for users, every model for platform admins.
#[utoipa::path(get, path = "/api/v1/models", tag = "catalog",
    security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of models, oldest first", body = List<ModelOut>),
        (status = 403, description = "Provider accounts", body = ErrorBody),
    ))]
pub async fn list_models(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<ModelOut>>, ApiError> {
    let page = page.request()?;
    let list = state.services.catalog.list_models(&auth.user).await?;
    Ok(Json(List::paged(list, &page, Order::Ascending, |m| m.id)?))
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
    ApiPath(mid): ApiPath<String>,
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
        (status = 409, description = "Another model has this name", body = ErrorBody),
    ))]
pub async fn update_model(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(mid): ApiPath<String>,
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
    ApiPath(mid): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .catalog
        .delete_model(&auth.user, id(&mid)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
