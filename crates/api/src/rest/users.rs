//! `/api/v1/users`: user administration (platform admins).

use std::collections::BTreeSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use gatehouse_core::accounts::{AdminNewUser, UserChange, UserFilter};
use gatehouse_core::model::accounts::Role;
use gatehouse_core::model::accounts::UserStatus;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::Me;
use super::page::{self, List};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use gatehouse_core::page::Page;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateUser {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// Leave out to generate one (returned once; must be changed at first sign-in).
    #[schema(min_length = 8, max_length = 128)]
    pub password: Option<String>,
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_.-]{2,31}$")]
    pub username: Option<String>,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,100}$")]
    pub display_name: Option<String>,
    /// A provider account: holds the `provider` role alone.
    #[serde(default)]
    pub provider: bool,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedUser {
    pub user: Me,
    /// Shown only now, when the password was generated.
    pub generated_password: Option<String>,
}

/// Create an account (platform `admin`).
#[utoipa::path(post, path = "/api/v1/users", tag = "users",
    security(("bearer" = [])),
    request_body = CreateUser,
    responses(
        (status = 201, description = "Created", body = CreatedUser),
        (status = 400, description = "Invalid email, username or password", body = ErrorBody),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 409, description = "The email or username is taken", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(request): ApiJson<CreateUser>,
) -> Result<(StatusCode, Json<CreatedUser>), ApiError> {
    let new = AdminNewUser {
        email: &request.email,
        password: request.password.as_deref(),
        username: request.username.as_deref(),
        display_name: request.display_name.as_deref(),
        provider: request.provider,
    };
    let (user, generated_password) = state
        .services
        .accounts
        .admin_create_user(&auth.user, new, &client)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(CreatedUser {
            user: user.into(),
            generated_password,
        }),
    ))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateUser {
    /// 1-100 characters. Users change their own; admins anyone's.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub display_name: Option<String>,
    /// The complete new set (platform `admin`, not on yourself). Every account
    /// keeps `user`; a provider account holds `provider` alone.
    #[schema(value_type = Option<Vec<crate::rest::names::Role>>, example = json!(["user", "request_viewer"]))]
    pub roles: Option<BTreeSet<Role>>,
    /// `active` or `disabled` (platform `admin`, not on yourself); disabling
    /// ends the user's sessions at once.
    #[schema(value_type = Option<crate::rest::names::UserStatus>)]
    pub status: Option<UserStatus>,
    /// The user's gateway limits across all their keys (platform `admin`, not
    /// on yourself): `{"rpm_limit"?, "tpm_limit"?, "budget"?: {"max_usd", "period"}}`.
    #[schema(value_type = Option<Object>)]
    pub limits: Option<gatehouse_core::model::accounts::UsageLimits>,
}

/// Update an account: your own display name, or (platform `admin`) anyone's
/// display name, roles and status. Changes count from the next request.
#[utoipa::path(patch, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User ID")),
    request_body = UpdateUser,
    responses(
        (status = 200, description = "Updated", body = Me),
        (status = 400, description = "Invalid name or role set", body = ErrorBody),
        (status = 403, description = "Not allowed (your own roles, read-only admins)", body = ErrorBody),
        (status = 404, description = "No such user visible to you", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<UpdateUser>,
) -> Result<Json<Me>, ApiError> {
    let id: gatehouse_core::Id = id.parse().map_err(ApiError)?;
    let change = UserChange {
        display_name: request.display_name,
        roles: request.roles,
        status: request.status,
        limits: request.limits,
    };
    let user = state
        .services
        .accounts
        .update_account(&auth.user, id, change, &client)
        .await?;
    Ok(Json(user.into()))
}

/// Delete an account with its sessions, addresses, memberships and personal
/// organization (platform `admin`, not your own).
#[utoipa::path(delete, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not a platform admin, or your own account", body = ErrorBody),
        (status = 404, description = "No such user visible to you", body = ErrorBody),
        (status = 409, description = "The user alone owns an organization", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id: gatehouse_core::Id = id.parse().map_err(ApiError)?;
    state
        .services
        .accounts
        .delete_user(&auth.user, id, &client)
        .await?;
    // Gone from view already; what hangs off it goes in the background.
    super::system::finish_removals(&state);
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only users holding this role.
    #[param(value_type = Option<crate::rest::names::Role>)]
    pub role: Option<Role>,
    /// `active` or `disabled`.
    #[param(value_type = Option<crate::rest::names::UserStatus>)]
    pub status: Option<UserStatus>,
    /// Text in the email, username or display name.
    pub q: Option<String>,
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

/// List users, oldest first (platform `admin` or `admin_readonly`).
#[utoipa::path(get, path = "/api/v1/users", tag = "users",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of users", body = List<Me>),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<List<Me>>, ApiError> {
    let page = page::request(query.limit, query.cursor)?;
    let after = page.after_key().map_err(ApiError)?;
    let filter = UserFilter {
        role: query.role,
        status: query.status,
        text: query.q,
    };
    let users = state
        .services
        .accounts
        .list_users(&auth.user, &filter, after, page.limit + 1)
        .await?;
    Ok(Json(List::of(Page::from_lookahead(
        users,
        page.limit,
        |u| u.id,
    ))))
}

/// Read a user: yourself, or anyone for platform admins (others get 404).
#[utoipa::path(get, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "User ID")),
    responses(
        (status = 200, description = "The user", body = Me),
        (status = 404, description = "No such user visible to you", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Me>, ApiError> {
    let id: gatehouse_core::Id = id.parse().map_err(ApiError)?;
    let user = state.services.accounts.view_user(&auth.user, id).await?;
    Ok(Json(user.into()))
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
}
