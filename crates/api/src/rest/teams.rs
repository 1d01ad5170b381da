//! `/api/v1/organizations/{org}/teams`: teams, their managers and members,
//! delegated permissions and model allow-lists.

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::model::tenancy::{Team, TeamMember, TeamPermission, TeamRole};
use gatehouse_core::tenancy::TeamSpec;
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
pub struct TeamOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub organization_id: Id,
    pub name: String,
    pub description: String,
    /// What the team's managers may do in the organization: `invite_members`,
    /// `manage_teams`, `manage_keys`, `manage_vaults`.
    #[schema(value_type = Vec<crate::rest::names::TeamPermission>)]
    pub permissions: BTreeSet<TeamPermission>,
    /// Models the members may use; empty means no narrowing.
    pub allowed_models: BTreeSet<String>,
    /// What the members may spend together.
    pub budget: Option<super::keys::BudgetBody>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<Team> for TeamOut {
    fn from(t: Team) -> Self {
        TeamOut {
            id: t.id,
            organization_id: t.org_id,
            name: t.name,
            description: t.description,
            permissions: t.permissions,
            allowed_models: t.allowed_models,
            budget: t.budget.map(Into::into),
            created_at: t.created_at,
            updated_at: t.updated_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamBody {
    /// 1-100 characters, unique in the organization (required to create).
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Owners and admins only.
    #[schema(value_type = Option<Vec<crate::rest::names::TeamPermission>>)]
    pub permissions: Option<BTreeSet<TeamPermission>>,
    /// Owners and admins only; empty means every model.
    #[schema(value_type = Option<Vec<crate::rest::names::ModelName>>, max_items = 1000)]
    pub allowed_models: Option<Vec<String>>,
    /// Owners and admins only; `null` removes it.
    #[serde(default, deserialize_with = "super::catalog::some")]
    pub budget: Option<Option<super::keys::BudgetBody>>,
}

/// A new team: [`TeamBody`] with its name required.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTeamBody {
    /// 1-100 characters, unique in the organization
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    #[schema(max_length = 1000)]
    pub description: Option<String>,
    /// Owners and admins only.
    #[schema(value_type = Option<Vec<crate::rest::names::TeamPermission>>)]
    pub permissions: Option<BTreeSet<TeamPermission>>,
    /// Owners and admins only; empty means every model.
    #[schema(value_type = Option<Vec<crate::rest::names::ModelName>>, max_items = 1000)]
    pub allowed_models: Option<Vec<String>>,
    /// Owners and admins only; `null` removes it.
    #[serde(default, deserialize_with = "super::catalog::some")]
    pub budget: Option<Option<super::keys::BudgetBody>>,
}

impl From<NewTeamBody> for TeamBody {
    fn from(b: NewTeamBody) -> Self {
        TeamBody {
            name: Some(b.name),
            description: b.description,
            permissions: b.permissions,
            allowed_models: b.allowed_models,
            budget: b.budget,
        }
    }
}

impl From<TeamBody> for TeamSpec {
    fn from(b: TeamBody) -> Self {
        TeamSpec {
            name: b.name,
            description: b.description,
            permissions: b.permissions,
            allowed_models: b.allowed_models,
            budget: b.budget.map(|b| b.map(Into::into)),
        }
    }
}

/// Create a team (owners, admins, `manage_teams` delegates; permissions and
/// allow-list need an owner or admin).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/teams", tag = "teams",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = NewTeamBody,
    responses(
        (status = 201, description = "Created", body = TeamOut),
        (status = 400, description = "Invalid name or model list", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(body): ApiJson<NewTeamBody>,
) -> Result<(StatusCode, Json<TeamOut>), ApiError> {
    let team = state
        .services
        .tenancy
        .create_team(&auth.user, id(&org)?, TeamBody::from(body).into(), &client)
        .await?;
    Ok((StatusCode::CREATED, Json(team.into())))
}

/// The organization's teams (members and platform readers).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/teams", tag = "teams",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "Teams", body = List<TeamOut>),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<TeamOut>>, ApiError> {
    let page = page.request()?;
    let teams = state
        .services
        .tenancy
        .list_teams(&auth.user, id(&org)?)
        .await?;
    Ok(Json(List::paged(teams, &page, Order::Ascending, |t| t.id)?))
}

/// Read a team.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/teams/{team}", tag = "teams",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("team" = String, Path, description = "Team ID"),
    ),
    responses(
        (status = 200, description = "The team", body = TeamOut),
        (status = 404, description = "No such organization or team", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<Json<TeamOut>, ApiError> {
    let team = state
        .services
        .tenancy
        .get_team(&auth.user, id(&org)?, id(&team)?)
        .await?;
    Ok(Json(team.into()))
}

/// Change a team: name and description with `manage_teams`; permissions and
/// allow-list as owner or admin.
#[utoipa::path(patch, path = "/api/v1/organizations/{org}/teams/{team}", tag = "teams",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("team" = String, Path, description = "Team ID"),
    ),
    request_body = TeamBody,
    responses(
        (status = 200, description = "Changed", body = TeamOut),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or team", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<TeamBody>,
) -> Result<Json<TeamOut>, ApiError> {
    let team = state
        .services
        .tenancy
        .update_team(&auth.user, id(&org)?, id(&team)?, body.into(), &client)
        .await?;
    Ok(Json(team.into()))
}

/// Delete a team and its memberships.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/teams/{team}", tag = "teams",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("team" = String, Path, description = "Team ID"),
    ),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or team", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, team)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .delete_team(&auth.user, id(&org)?, id(&team)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct TeamMemberOut {
    #[schema(value_type = String)]
    pub user_id: Id,
    /// `manager` or `member`.
    #[schema(value_type = crate::rest::names::TeamRole)]
    pub role: TeamRole,
    pub added_at: DateTime<Utc>,
}

impl From<TeamMember> for TeamMemberOut {
    fn from(m: TeamMember) -> Self {
        TeamMemberOut {
            user_id: m.user_id,
            role: m.role,
            added_at: m.added_at,
        }
    }
}

/// A team's members.
#[utoipa::path(get, path = "/api/v1/organizations/{org}/teams/{team}/members", tag = "teams",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("team" = String, Path, description = "Team ID"),
        PageQuery,
    ),
    responses(
        (status = 200, description = "Members", body = List<TeamMemberOut>),
        (status = 404, description = "No such organization or team", body = ErrorBody),
    ))]
pub async fn members(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath((org, team)): ApiPath<(String, String)>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<TeamMemberOut>>, ApiError> {
    let page = page.request()?;
    let members = state
        .services
        .tenancy
        .list_team_members(&auth.user, id(&org)?, id(&team)?, &page)
        .await?;
    Ok(Json(List::of(members)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TeamRoleBody {
    /// `member` (default) or `manager` (owners and admins only).
    #[schema(value_type = Option<crate::rest::names::TeamRole>)]
    pub role: Option<TeamRole>,
}

/// Add a member of the organization to the team, or change their team role
/// (members: `manage_teams` delegates and the team's managers; managers:
/// owners and admins).
#[utoipa::path(put, path = "/api/v1/organizations/{org}/teams/{team}/members/{user}", tag = "teams",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("team" = String, Path, description = "Team ID"),
        ("user" = String, Path, description = "User ID"),
    ),
    request_body = TeamRoleBody,
    responses(
        (status = 200, description = "Added or changed", body = TeamMemberOut),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization, team or member", body = ErrorBody),
    ))]
pub async fn put_member(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, team, user)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<TeamRoleBody>,
) -> Result<Json<TeamMemberOut>, ApiError> {
    let role = body.role.unwrap_or(TeamRole::Member);
    let member = state
        .services
        .tenancy
        .put_team_member(&auth.user, id(&org)?, id(&team)?, id(&user)?, role, &client)
        .await?;
    Ok(Json(member.into()))
}

/// Take someone off the team, or leave it when `user` is you.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/teams/{team}/members/{user}", tag = "teams",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("team" = String, Path, description = "Team ID"),
        ("user" = String, Path, description = "User ID"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization, team or team member", body = ErrorBody),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, team, user)): ApiPath<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .remove_team_member(&auth.user, id(&org)?, id(&team)?, id(&user)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(create))
        .routes(routes!(read))
        .routes(routes!(update))
        .routes(routes!(delete))
        .routes(routes!(members))
        .routes(routes!(put_member))
        .routes(routes!(remove_member))
}
