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
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::ApiQuery;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct Page {
    /// At most this many events (1-200, default 50).
    pub limit: Option<usize>,
    /// The `next_cursor` of the previous page.
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
    #[param(value_type = Option<String>)]
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

#[derive(Serialize, ToSchema)]
pub struct AuditPage {
    pub events: Vec<AuditEventInfo>,
    /// Pass as `cursor` for older events; absent on the last page.
    pub next_cursor: Option<String>,
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
    params(Page),
    responses(
        (status = 200, description = "A page of events", body = AuditPage),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(page): ApiQuery<Page>,
) -> Result<Json<AuditPage>, ApiError> {
    let limit = page.limit.unwrap_or(50);
    let before = page
        .cursor
        .as_deref()
        .map(str::parse)
        .transpose()
        .map_err(ApiError)?;
    let filter = gatehouse_core::audit::AuditFilter {
        action: page.action,
        actor: page
            .actor
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError)?,
        organization: page
            .organization_id
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(ApiError)?,
        target_type: page.target_type,
        target_id: page.target_id,
        from: page.from,
    };
    let events = state
        .services
        .audit
        .list(&auth.user, &filter, before, limit)
        .await?;
    let next_cursor = (events.len() == limit.clamp(1, gatehouse_core::audit::MAX_PAGE))
        .then(|| events.last().map(|e| e.id.to_string()))
        .flatten();
    Ok(Json(AuditPage {
        events: events.into_iter().map(Into::into).collect(),
        next_cursor,
    }))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}
