//! `/api/v1/auth`: registration, sign-in and the signed-in user.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::accounts::model::{Role, User};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::AppState;
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::ApiJson;

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com")]
    pub email: String,
    /// 8 to 128 characters (the minimum is configurable); common passwords are refused.
    pub password: String,
    pub username: Option<String>,
    pub display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`: the answer does not say whether the email was new.
    pub status: &'static str,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address or username.
    #[schema(example = "ada@example.com")]
    pub login: String,
    pub password: String,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT for `Authorization: Bearer …`.
    pub token: String,
    pub token_type: &'static str,
    /// Seconds until the token expires.
    pub expires_in: i64,
}

/// An account as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = String, example = "7260912745631744001")]
    pub id: gatehouse_core::Id,
    pub email: String,
    pub username: Option<String>,
    pub display_name: String,
    #[schema(value_type = Vec<String>, example = json!(["user"]))]
    pub roles: Vec<Role>,
    pub email_verified: bool,
    /// The password was generated and must be changed.
    pub must_change_password: bool,
    pub created_at: DateTime<Utc>,
}

impl From<User> for Me {
    fn from(u: User) -> Self {
        Me {
            id: u.id,
            email: u.email,
            username: u.username,
            display_name: u.display_name,
            roles: u.roles.into_iter().collect(),
            email_verified: u.email_verified,
            must_change_password: u.must_change_password,
            created_at: u.created_at,
        }
    }
}

/// Create an account. Answers alike whether or not the email is registered.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth",
    request_body = RegisterRequest,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Invalid email, username or password", body = ErrorBody),
        (status = 403, description = "Self-registration is turned off", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .services
        .accounts
        .register(
            &request.email,
            &request.password,
            request.username.as_deref(),
            request.display_name.as_deref(),
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

/// Sign in with email or username and password; returns a JWT.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenResponse),
        (status = 401, description = "Wrong login or password (the same answer for both)", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let accounts = &state.services.accounts;
    let (_, token) = accounts.login(&request.login, &request.password).await?;
    Ok(Json(TokenResponse {
        token,
        token_type: "Bearer",
        expires_in: accounts.token_ttl_secs(),
    }))
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in account", body = Me),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
pub async fn me(auth: Authenticated) -> Json<Me> {
    Json(auth.user.into())
}
