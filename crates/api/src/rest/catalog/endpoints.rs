//! `/api/v1/endpoints`: inference endpoints, their health and model sync.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct EndpointOut {
    #[schema(value_type = String)]
    pub id: Id,
    pub name: String,
    /// As given, without a trailing `/v1`: `http://host:8000` and
    /// `http://host:8000/v1` name the same endpoint.
    pub base_url: String,
    /// Where calls go: `{base_url}/v1`, followed by `/chat/completions`,
    /// `/embeddings`, `/messages` or `/models`.
    pub api_base_url: String,
    /// `openai` or `anthropic`.
    #[schema(value_type = crate::rest::names::ApiFlavour)]
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
    #[schema(value_type = crate::rest::names::HealthStatus)]
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
            api_base_url: format!("{}/v1", e.base_url),
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
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    /// `http(s)://host[:port][/prefix]`; required to create.
    #[schema(
        pattern = "^\\s*https?://[^/?#\\s\\x00-\\x1f\\x7f-\\x9f][^?#\\s\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 2000
    )]
    pub base_url: Option<String>,
    #[schema(value_type = Option<crate::rest::names::ApiFlavour>)]
    pub flavour: Option<ApiFlavour>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>, pattern = "^[0-9]{1,19}$")]
    pub credential_id: Option<Option<String>>,
    /// `null` removes it.
    #[serde(default, deserialize_with = "some")]
    #[schema(value_type = Option<String>)]
    #[schema(
        nullable,
        pattern = "^\\s*https?://[^/?#\\s\\x00-\\x1f\\x7f-\\x9f][^?#\\s\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 2000
    )]
    pub proxy_url: Option<Option<String>>,
    #[schema(minimum = 1, maximum = 3600000)]
    pub connect_timeout_ms: Option<u64>,
    #[schema(minimum = 1, maximum = 3600000)]
    pub request_timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
}

/// A new endpoint: [`EndpointBody`] with its name and URL required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEndpointBody {
    /// Unique.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    /// `http(s)://host[:port][/prefix]`.
    #[schema(
        pattern = "^\\s*https?://[^/?#\\s\\x00-\\x1f\\x7f-\\x9f][^?#\\s\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 2000
    )]
    pub base_url: String,
    #[schema(value_type = Option<crate::rest::names::ApiFlavour>)]
    pub flavour: Option<ApiFlavour>,
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub credential_id: Option<String>,
    #[schema(
        pattern = "^\\s*https?://[^/?#\\s\\x00-\\x1f\\x7f-\\x9f][^?#\\s\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 2000
    )]
    pub proxy_url: Option<String>,
    #[schema(minimum = 1, maximum = 3600000)]
    pub connect_timeout_ms: Option<u64>,
    #[schema(minimum = 1, maximum = 3600000)]
    pub request_timeout_ms: Option<u64>,
    pub enabled: Option<bool>,
}

impl From<NewEndpointBody> for EndpointBody {
    fn from(b: NewEndpointBody) -> Self {
        EndpointBody {
            name: Some(b.name),
            base_url: Some(b.base_url),
            flavour: b.flavour,
            credential_id: b.credential_id.map(Some),
            proxy_url: b.proxy_url.map(Some),
            connect_timeout_ms: b.connect_timeout_ms,
            request_timeout_ms: b.request_timeout_ms,
            enabled: b.enabled,
        }
    }
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
    security(("bearer" = [])), request_body = NewEndpointBody,
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
    ApiJson(body): ApiJson<NewEndpointBody>,
) -> Result<(StatusCode, Json<EndpointOut>), ApiError> {
    let e = state
        .services
        .catalog
        .create_endpoint(&auth.user, EndpointBody::from(body).spec()?, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(EndpointOut::new(e, &state))))
}

/// Inference endpoints (platform `admin`, `admin_readonly`).
#[utoipa::path(get, path = "/api/v1/endpoints", tag = "catalog",
    security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of endpoints, oldest first", body = List<EndpointOut>),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    ))]
pub async fn list_endpoints(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<EndpointOut>>, ApiError> {
    let page = page.request()?;
    let list = state.services.catalog.list_endpoints(&auth.user).await?;
    let page = List::<Endpoint>::paged(list, &page, Order::Ascending, |e| e.id)?;
    Ok(Json(List {
        items: page
            .items
            .into_iter()
            .map(|e| EndpointOut::new(e, &state))
            .collect(),
        next_cursor: page.next_cursor,
    }))
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
    ApiPath(eid): ApiPath<String>,
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
        (status = 409, description = "Another endpoint has this name", body = ErrorBody),
    ))]
pub async fn update_endpoint(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(eid): ApiPath<String>,
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
    ApiPath(eid): ApiPath<String>,
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
    ApiPath(eid): ApiPath<String>,
) -> Result<Json<SyncOut>, ApiError> {
    let report = state
        .services
        .catalog
        .sync_models(&auth.user, id(&eid)?, &client)
        .await?;
    Ok(Json(report.into()))
}
