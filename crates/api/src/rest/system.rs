//! `/api/v1/system`: what this server is and which store it serves.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use gatehouse_core::services::system::{Installation, VERSION};
use serde::Serialize;
use utoipa::ToSchema;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::page::{List, Order, PageQuery};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::ApiQuery;
use gatehouse_core::model::tenancy::{Removal, RemovalKind};

#[derive(Debug, Serialize, ToSchema)]
pub struct SystemInfo {
    /// Version of the server answering.
    #[schema(example = "0.1.0")]
    pub version: &'static str,
    /// ID of the installation (the store), stable across restarts.
    #[schema(value_type = String, example = "7260912745631744001")]
    pub installation_id: gatehouse_core::Id,
    /// When the store was first initialized.
    pub created_at: DateTime<Utc>,
}

impl From<Installation> for SystemInfo {
    fn from(i: Installation) -> Self {
        SystemInfo {
            version: VERSION,
            installation_id: i.id,
            created_at: i.created_at,
        }
    }
}

/// Server version and installation identity.
#[utoipa::path(get, path = "/api/v1/system", tag = "system",
    responses(
        (status = 200, description = "System information", body = SystemInfo),
        (status = 503, description = "Storage is unreachable", body = ErrorBody),
    ))]
pub async fn info(State(state): State<AppState>) -> Result<Json<SystemInfo>, ApiError> {
    let installation = state.services.system.installation().await?;
    Ok(Json(installation.into()))
}

/// Finishes deletions in the background: an organization or account is gone
/// from view when its `DELETE` answers; its records follow a page per
/// transaction (the leader's `purge` job picks up whatever this leaves).
pub(crate) fn finish_removals(state: &AppState) {
    let services = state.services.clone();
    tokio::spawn(async move {
        if let Err(e) = services.finish_removals().await {
            tracing::warn!(error = %e, "removing deleted records stopped; the purge job will resume it");
        }
    });
}

/// An organization or account being removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct RemovalView {
    /// The organization's or user's ID.
    #[schema(value_type = String)]
    pub id: gatehouse_core::Id,
    /// `organization` or `user`.
    #[schema(value_type = String)]
    pub kind: RemovalKind,
    /// The organization's name or the account's email.
    pub name: String,
    pub started_at: DateTime<Utc>,
    /// Records removed so far.
    pub removed: u64,
    pub updated_at: DateTime<Utc>,
}

impl From<Removal> for RemovalView {
    fn from(r: Removal) -> Self {
        RemovalView {
            id: r.id,
            kind: r.kind,
            name: r.name,
            started_at: r.started_at,
            removed: r.removed,
            updated_at: r.updated_at,
        }
    }
}

/// Deleted organizations and accounts whose records are still being removed,
/// with how many have gone (platform `admin`, `admin_readonly`). Empty when
/// every deletion has finished.
#[utoipa::path(get, path = "/api/v1/system/removals", tag = "system",
    security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "Removals in progress, by ID", body = List<RemovalView>),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    ))]
pub async fn removals(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<PageQuery>,
) -> Result<Json<List<RemovalView>>, ApiError> {
    let page = query.request()?;
    let found = state.services.tenancy.removals(&auth.user).await?;
    Ok(Json(List::paged(found, &page, Order::Ascending, |r| r.id)?))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(info))
        .routes(routes!(removals))
}
