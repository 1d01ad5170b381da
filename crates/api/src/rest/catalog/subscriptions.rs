//! `/api/v1/subscriptions`: requests for restricted models and their approval.

use super::*;

#[derive(Serialize, ToSchema)]
pub struct SubscriptionOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub user_id: Id,
    #[schema(value_type = String)]
    pub model_id: Id,
    /// `pending`, `active`, `denied` or `suspended`.
    #[schema(value_type = crate::rest::names::SubscriptionStatus)]
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
    #[schema(pattern = "^[0-9]{1,19}$")]
    pub model_id: String,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionQuery {
    /// Everyone's (platform `admin`, `admin_readonly`).
    #[serde(default)]
    pub all: bool,
    /// Only these: `pending`, `active`, `denied` or `suspended`.
    #[param(value_type = Option<crate::rest::names::SubscriptionStatus>)]
    pub status: Option<SubscriptionStatus>,
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct DecisionBody {
    /// Shown to the subscriber.
    #[schema(max_length = 500)]
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
        (status = 200, description = "A page of subscriptions, oldest first", body = List<SubscriptionOut>),
        (status = 403, description = "`all` without being a platform reader", body = ErrorBody),
    ))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<SubscriptionQuery>,
) -> Result<Json<List<SubscriptionOut>>, ApiError> {
    let page = super::super::page::request(query.limit, query.cursor)?;
    let list = state
        .services
        .catalog
        .list_subscriptions(&auth.user, query.all, query.status)
        .await?;
    Ok(Json(List::paged(list, &page, Order::Ascending, |s| s.id)?))
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
    ApiPath(sid): ApiPath<String>,
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
    crate::extract::json_object(body).map(Some)
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
            ApiPath(sid): ApiPath<String>,
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
