//! `/api/v1/organizations/{org}/projects/…`: projects, their chats and the
//! chats' messages (SPEC §1, §3). The rules are core's
//! (`gatehouse_core::work`); here the shapes. `chats.rs` has the chats and
//! their messages.

pub(crate) mod chats;
mod playground;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::model::work::Project;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::orgs::id;
use super::page::{List, Order, PageQuery};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

#[derive(Serialize, ToSchema)]
pub struct ProjectOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub organization_id: Id,
    pub name: String,
    /// The default project of a personal organization.
    pub is_user_default: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectOut {
    fn from(p: Project) -> Self {
        ProjectOut {
            id: p.id,
            organization_id: p.org_id,
            name: p.name,
            is_user_default: p.is_user_default,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectBody {
    /// 1-100 characters.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
}

/// Create a project (organization owners and admins).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/projects", tag = "work",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = ProjectBody,
    responses(
        (status = 201, description = "Created", body = ProjectOut),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<ProjectBody>,
) -> Result<(StatusCode, Json<ProjectOut>), ApiError> {
    let project = state
        .services
        .work
        .create_project(&auth.user, id(&org)?, &body.name, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(project.into())))
}

/// The organization's projects (members and platform readers).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/projects", tag = "work",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "Projects, oldest first", body = List<ProjectOut>),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<ProjectOut>>, ApiError> {
    let page = page.request()?;
    let projects = state
        .services
        .work
        .list_projects(&auth.user, id(&org)?)
        .await?;
    Ok(Json(List::paged(projects, &page, Order::Ascending, |p| {
        p.id
    })?))
}

/// Read a project.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/projects/{project}", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
    ),
    responses(
        (status = 200, description = "The project", body = ProjectOut),
        (status = 404, description = "No such organization or project", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, project)): ApiPath<(String, String)>,
) -> Result<Json<ProjectOut>, ApiError> {
    let project = state
        .services
        .work
        .get_project(&auth.user, id(&org)?, id(&project)?)
        .await?;
    Ok(Json(project.into()))
}

/// Rename a project (organization owners and admins).
#[utoipa::path(patch, path = "/api/v1/organizations/{org}/projects/{project}", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
    ),
    request_body = ProjectBody,
    responses(
        (status = 200, description = "Renamed", body = ProjectOut),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or project", body = ErrorBody),
    ))]
pub async fn rename(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<ProjectBody>,
) -> Result<Json<ProjectOut>, ApiError> {
    let project = state
        .services
        .work
        .rename_project(&auth.user, id(&org)?, id(&project)?, &body.name, &client)
        .await?;
    Ok(Json(project.into()))
}

/// Delete a project with its chats and messages (organization owners and
/// admins; a personal organization's default project goes only with it).
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/projects/{project}", tag = "work",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("project" = String, Path, description = "Project ID"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or project", body = ErrorBody),
        (status = 409, description = "The default project", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, project)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .work
        .delete_project(&auth.user, id(&org)?, id(&project)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's routes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(read, rename, delete))
        .merge(chats::routes())
        .routes(routes!(playground::send))
}
