//! `/api/v1/audit-events`: the audit log, for platform admins.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gatehouse_core::audit::AuditEvent;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::page::List;
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::ApiQuery;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page. A page may hold fewer items
    /// than `limit` (even none) and still have a next one: each page
    /// examines a bounded number of events.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
    /// Actions starting with this, e.g. `keys.` or `auth.login`.
    pub action: Option<String>,
    /// Events by this user.
    pub actor: Option<String>,
    pub organization_id: Option<String>,
    /// e.g. `user`, `organization`, `api_key`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// RFC 3339: events at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
}

#[derive(Serialize, ToSchema)]
pub struct AuditEventInfo {
    #[schema(value_type = String)]
    pub id: gatehouse_core::Id,
    pub at: DateTime<Utc>,
    /// `{"type": "user", "id": …}`, `{"type": "anonymous", "login": …}` or `{"type": "system"}`.
    #[schema(value_type = Object)]
    pub actor: serde_json::Value,
    /// `area.verb`, e.g. `auth.login`.
    pub action: String,
    /// `success`, `failure` or `refused`.
    #[schema(value_type = String)]
    pub outcome: serde_json::Value,
    /// What was acted on, e.g. `user`, `organization`, `team`, `invitation`.
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    /// The organization the action happened in.
    #[schema(value_type = Option<String>)]
    pub organization_id: Option<gatehouse_core::Id>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEvent> for AuditEventInfo {
    fn from(e: AuditEvent) -> Self {
        AuditEventInfo {
            id: e.id,
            at: e.at,
            actor: serde_json::to_value(&e.actor).unwrap_or_default(),
            action: e.action,
            outcome: serde_json::to_value(e.outcome).unwrap_or_default(),
            target_type: e.target_type,
            target_id: e.target_id,
            organization_id: e.organization_id,
            ip: e.ip,
            user_agent: e.user_agent,
            details: e.details,
        }
    }
}

/// Audit events, newest first, filtered by action prefix, actor,
/// organization, target or time (platform `admin` or `admin_readonly`).
#[utoipa::path(get, path = "/api/v1/audit-events", tag = "records",
    security(("bearer" = [])),
    params(AuditQuery),
    responses(
        (status = 200, description = "A page of events, newest first", body = List<AuditEventInfo>),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<List<AuditEventInfo>>, ApiError> {
    let page = super::page::request(query.limit, query.cursor)?;
    let before = page.after_key().map_err(ApiError)?;
    let filter = gatehouse_core::audit::AuditFilter {
        action: query.action,
        actor: query
            .actor
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError)?,
        organization: query
            .organization_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError)?,
        target_type: query.target_type,
        target_id: query.target_id,
        from: query.from,
    };
    let (events, next) = state
        .services
        .audit
        .list(&auth.user, &filter, before, page.limit)
        .await?;
    Ok(Json(List {
        items: events.into_iter().map(Into::into).collect(),
        next_cursor: next.map(|id| id.to_string()),
    }))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}
