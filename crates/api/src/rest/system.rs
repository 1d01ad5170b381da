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
use crate::ApiError;
use crate::error::ErrorBody;

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

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(info))
}
