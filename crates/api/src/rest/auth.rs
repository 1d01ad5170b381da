//! `/api/v1/auth`: registration, sign-in and the signed-in user.

use super::page::{List, Order, PageQuery, TextPageQuery};
use axum::Json;
use axum::extract::State;
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use gatehouse_core::accounts::Grant;
use gatehouse_core::accounts::mfa::PasswordStep;
use gatehouse_core::model::accounts::{Role, User, UserStatus};
use gatehouse_core::model::sessions::{ClientInfo, Session, SessionKind};
use gatehouse_core::page::Page;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::ApiError;
use crate::auth::{Client, InPerson, SESSION_COOKIE, SignedIn};
use crate::caller::DEVICE_COOKIE;
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    #[schema(example = "ada@example.com", format = Email, max_length = 254)]
    pub email: String,
    /// 8 to 128 characters (the minimum is configurable); common passwords are refused.
    #[schema(min_length = 8, max_length = 128)]
    pub password: String,
    #[schema(pattern = "^[A-Za-z][A-Za-z0-9_.-]{2,31}$")]
    pub username: Option<String>,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{0,100}$")]
    pub display_name: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct Accepted {
    /// Always `accepted`: the answer does not say whether the email was new.
    pub status: &'static str,
}

/// What `login` hands back.
#[derive(Deserialize, ToSchema, Default, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum LoginMode {
    /// A JWT in the body (the default).
    #[default]
    Token,
    /// A browser session: an `HttpOnly` cookie, and the session in the body.
    Session,
    /// A command-line session: an opaque token in the body, for `Authorization: Bearer`.
    Cli,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// Email address or username. Also accepted as `email` or `username`
    /// (the AIGateway body), one of the three.
    #[schema(example = "ada@example.com")]
    #[serde(alias = "email", alias = "username")]
    pub login: String,
    pub password: String,
    #[serde(default)]
    pub mode: LoginMode,
}

#[derive(Serialize, ToSchema)]
pub struct TokenResponse {
    /// A JWT (mode `token`) or session token (mode `cli`) for `Authorization: Bearer …`.
    pub token: String,
    pub token_type: &'static str,
    /// Seconds until the token expires (for sessions: at the latest).
    pub expires_in: i64,
}

#[derive(Serialize, ToSchema)]
pub struct SessionInfo {
    #[schema(value_type = String)]
    pub id: gatehouse_core::Id,
    /// `web` or `cli`.
    #[schema(value_type = crate::rest::names::SessionKind)]
    pub kind: SessionKind,
    pub created_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    /// The latest the session can last; it ends earlier when idle.
    pub expires_at: DateTime<Utc>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    /// Whether this is the session making the request.
    pub current: bool,
}

impl SessionInfo {
    pub(crate) fn new(s: Session, current: Option<gatehouse_core::Id>) -> Self {
        SessionInfo {
            current: Some(s.id) == current,
            id: s.id,
            kind: s.kind,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            expires_at: s.absolute_expires_at,
            ip: s.ip,
            user_agent: s.user_agent,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    pub current_password: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

pub(crate) fn session_cookie(token: &str, max_age: i64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    );
    // Tokens are base64url, so the value is always a valid header.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// An account as its owner sees it.
#[derive(Serialize, ToSchema)]
pub struct Me {
    #[schema(value_type = String, example = "7260912745631744001")]
    pub id: gatehouse_core::Id,
    pub email: String,
    pub username: Option<String>,
    pub display_name: String,
    #[schema(value_type = Vec<crate::rest::names::Role>, example = json!(["user"]))]
    pub roles: Vec<Role>,
    /// Which of `roles` are held through single sign-on groups (recomputed
    /// at every SSO sign-in); the others were granted by hand.
    #[schema(value_type = Vec<crate::rest::names::Role>, example = json!([]))]
    pub sso_roles: Vec<Role>,
    /// `active` or `disabled`.
    #[schema(value_type = crate::rest::names::UserStatus)]
    pub status: UserStatus,
    pub email_verified: bool,
    /// The password was generated and must be changed.
    pub must_change_password: bool,
    /// Gateway limits across all the user's keys.
    #[schema(value_type = Object)]
    pub limits: gatehouse_core::model::accounts::UsageLimits,
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
            sso_roles: u.sso_roles.into_iter().collect(),
            status: u.status,
            email_verified: u.email_verified,
            must_change_password: u.must_change_password,
            limits: u.limits,
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
        (status = 409, description = "The username is taken", body = ErrorBody),
    ))]
pub async fn register(
    State(state): State<AppState>,
    Client(client): Client,
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
            &client,
        )
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

/// A password sign-in that still needs its second factor: send a code from
/// the authenticator app, or a recovery code, to `POST /api/v1/auth/login/mfa`
/// with this token.
#[derive(Serialize, ToSchema)]
pub struct SecondFactorNeeded {
    /// Always `true`.
    pub mfa_required: bool,
    /// Single use; for `POST /api/v1/auth/login/mfa`.
    pub mfa_token: String,
    /// What the second step accepts: `totp`, `recovery_code`.
    pub methods: Vec<&'static str>,
    /// Seconds the token stays good.
    pub expires_in: i64,
}

/// What a sign-in answers: a token (modes `token` and `cli`), the browser
/// session (mode `session`, with its cookie), or the call for a second factor.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum LoginAnswer {
    Token(TokenResponse),
    Session(SessionInfo),
    SecondFactor(SecondFactorNeeded),
}

impl LoginMode {
    /// The session a sign-in in this mode starts; `None`: a JWT.
    pub(crate) fn session_kind(self) -> Option<SessionKind> {
        match self {
            LoginMode::Token => None,
            LoginMode::Session => Some(SessionKind::Web),
            LoginMode::Cli => Some(SessionKind::Cli),
        }
    }
}

/// The answer to a completed sign-in: a JWT or command-line session token in
/// the body, or a browser session's cookie (and the session in the body);
/// with the device-proof cookie either way.
pub(crate) fn signed_in(
    state: &AppState,
    user: &User,
    grant: Grant,
    client: &ClientInfo,
) -> Response {
    let accounts = &state.services.accounts;
    let mut response = match grant {
        Grant::Token(token) => Json(LoginAnswer::Token(TokenResponse {
            token,
            token_type: "Bearer",
            expires_in: accounts.token_ttl_secs(),
        }))
        .into_response(),
        Grant::Session(session, token) => {
            let lifetime = (session.absolute_expires_at - session.created_at).num_seconds();
            if session.kind == SessionKind::Cli {
                Json(LoginAnswer::Token(TokenResponse {
                    token,
                    token_type: "Bearer",
                    expires_in: lifetime,
                }))
                .into_response()
            } else {
                let cookie = session_cookie(&token, lifetime, state.secure_cookies);
                let mut response = Json(LoginAnswer::Session(SessionInfo::new(
                    session.clone(),
                    Some(session.id),
                )))
                .into_response();
                response.headers_mut().append(SET_COOKIE, cookie);
                response
            }
        }
    };
    let proof = accounts.device_proof(user, client);
    set_device_cookie(&mut response, &proof, state.secure_cookies);
    response
}

/// Sign in with email or username and password. `mode` picks a JWT (default),
/// a browser session cookie, or a command-line session token. Accounts with a
/// TOTP second factor get `mfa_required` and a token for the second step.
#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in: a token (modes `token`, `cli`) or the session with a `Set-Cookie` (mode `session`); or, for accounts with a second factor, `mfa_required` and the token for `POST /api/v1/auth/login/mfa`", body = LoginAnswer),
        (status = 401, description = "Wrong login or password (the same answer for both)", body = ErrorBody),
        (status = 429, description = "Too many failed sign-ins for this account from here; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn login(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<LoginRequest>,
) -> Result<Response, ApiError> {
    let step = state
        .services
        .accounts
        .password_step(
            &request.login,
            &request.password,
            request.mode.session_kind(),
            &client,
        )
        .await?;
    Ok(match step {
        PasswordStep::SignedIn(user, grant) => signed_in(&state, &user, grant, &client),
        PasswordStep::SecondFactor {
            token,
            expires_in_secs,
        } => Json(LoginAnswer::SecondFactor(SecondFactorNeeded {
            mfa_required: true,
            mfa_token: token,
            methods: vec!["totp", "recovery_code"],
            expires_in: expires_in_secs,
        }))
        .into_response(),
    })
}

/// How long a device proof is kept: 180 days.
const DEVICE_COOKIE_SECS: i64 = 180 * 24 * 3600;

/// Adds the device-proof cookie, sent back only to the auth endpoints.
pub(crate) fn set_device_cookie(response: &mut Response, proof: &str, secure: bool) {
    let secure = if secure { "; Secure" } else { "" };
    let cookie = format!(
        "{DEVICE_COOKIE}={proof}; Path=/api/v1/auth; HttpOnly; SameSite=Lax; Max-Age={DEVICE_COOKIE_SECS}{secure}"
    );
    // Proofs are digits, letters and dots, so the value is always a valid header.
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(SET_COOKIE, value);
    }
}

/// End the current session (and clear its cookie); signed in with a JWT, end
/// every JWT of the account (on every instance at once).
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn logout(
    State(state): State<AppState>,
    Client(client): Client,
    SignedIn(auth): SignedIn,
) -> Result<Response, ApiError> {
    auth.ensure_in_person()?;
    match &auth.session_token {
        Some(token) => state.services.accounts.logout(token, &client).await?,
        None => {
            state
                .services
                .accounts
                .logout_token(&auth.user, &client)
                .await?
        }
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response
        .headers_mut()
        .insert(SET_COOKIE, session_cookie("", 0, state.secure_cookies));
    Ok(response)
}

/// Change the password (the current one is required). Ends every other session.
#[utoipa::path(put, path = "/api/v1/auth/password", tag = "auth",
    security(("bearer" = [])),
    request_body = PasswordChange,
    responses(
        (status = 204, description = "Changed"),
        (status = 400, description = "Wrong current password, or the new one is not acceptable", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn change_password(
    State(state): State<AppState>,
    Client(client): Client,
    SignedIn(auth): SignedIn,
    ApiJson(request): ApiJson<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    auth.ensure_in_person()?;
    state
        .services
        .accounts
        .change_password(
            auth.user.id,
            &request.current_password,
            &request.new_password,
            auth.session.as_ref().map(|s| s.id),
            &client,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in user's live sessions, newest first.
#[utoipa::path(get, path = "/api/v1/auth/sessions", tag = "auth",
    security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of sessions, newest first", body = List<SessionInfo>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_sessions(
    State(state): State<AppState>,
    InPerson(auth): InPerson,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<SessionInfo>>, ApiError> {
    let page = page.request()?;
    let current = auth.session.as_ref().map(|s| s.id);
    let sessions = state.services.accounts.list_sessions(auth.user.id).await?;
    let sessions = Page::of(sessions, &page, Order::Descending, |s| s.id).map_err(ApiError)?;
    Ok(Json(List::of(
        sessions.map(|s| SessionInfo::new(s, current)),
    )))
}

/// End one of the signed-in user's sessions.
#[utoipa::path(delete, path = "/api/v1/auth/sessions/{id}", tag = "auth",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Session ID")),
    responses(
        (status = 204, description = "Ended"),
        (status = 404, description = "No such session of this user", body = ErrorBody),
    ))]
pub async fn revoke_session(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id: gatehouse_core::Id = id.parse().map_err(ApiError)?;
    state
        .services
        .accounts
        .revoke_session(auth.user.id, id, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The signed-in account.
#[utoipa::path(get, path = "/api/v1/auth/me", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The signed-in account", body = Me),
        (status = 401, description = "Missing, invalid or expired token", body = ErrorBody),
    ))]
pub async fn me(SignedIn(auth): SignedIn) -> Json<Me> {
    Json(auth.user.into())
}

/// A single-use token from an email (verification).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailTokenRequest {
    /// The token from the email.
    pub token: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirm {
    pub token: String,
    #[schema(min_length = 8, max_length = 128)]
    pub new_password: String,
}

/// Confirm an email address with the token emailed to it.
#[utoipa::path(post, path = "/api/v1/auth/emails/verify", tag = "auth",
    request_body = EmailTokenRequest,
    responses(
        (status = 204, description = "Verified"),
        (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
    ))]
pub async fn verify_email(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<EmailTokenRequest>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .verify_email(&request.token, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Ask for a password-reset email. Answers alike whether or not the address
/// belongs to an account.
#[utoipa::path(post, path = "/api/v1/auth/reset", tag = "auth",
    request_body = ResetRequest,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Not an email address", body = ErrorBody),
    ))]
pub async fn request_reset(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<ResetRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .services
        .accounts
        .request_password_reset(&request.email, &client)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

/// Set a new password with the emailed token. Ends every session.
#[utoipa::path(post, path = "/api/v1/auth/reset/confirm", tag = "auth",
    request_body = ResetConfirm,
    responses(
        (status = 204, description = "Password changed"),
        (status = 400, description = "Invalid token, or the password is not acceptable", body = ErrorBody),
    ))]
pub async fn confirm_reset(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<ResetConfirm>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .reset_password(&request.token, &request.new_password, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct EmailInfo {
    pub email: String,
    pub primary: bool,
    pub verified: bool,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewEmail {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
}

/// The signed-in user's email addresses, primary first.
#[utoipa::path(get, path = "/api/v1/auth/emails", tag = "auth",
    security(("bearer" = [])), params(TextPageQuery),
    responses(
        (status = 200, description = "A page of addresses, primary first", body = List<EmailInfo>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_emails(
    State(state): State<AppState>,
    InPerson(auth): InPerson,
    ApiQuery(page): ApiQuery<TextPageQuery>,
) -> Result<Json<List<EmailInfo>>, ApiError> {
    let page = page.request()?;
    let emails = state.services.accounts.list_emails(auth.user.id).await?;
    // Primary first, then by address: the sort key puts `0` before `1`.
    let emails = Page::of(emails, &page, Order::Ascending, |e| {
        format!("{}:{}", u8::from(!e.primary), e.email)
    })
    .map_err(ApiError)?;
    Ok(Json(List::of(emails.map(|e| EmailInfo {
        email: e.email,
        primary: e.primary,
        verified: e.verified,
    }))))
}

/// Add an address; a verification token is emailed to it. Answers alike when
/// the address belongs to another account (and then changes nothing).
#[utoipa::path(post, path = "/api/v1/auth/emails", tag = "auth",
    security(("bearer" = [])),
    request_body = NewEmail,
    responses(
        (status = 202, description = "Accepted", body = Accepted),
        (status = 400, description = "Not an email address, or too many", body = ErrorBody),
    ))]
pub async fn add_email(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiJson(request): ApiJson<NewEmail>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    state
        .services
        .accounts
        .add_email(auth.user.id, &request.email, &client)
        .await?;
    Ok((StatusCode::ACCEPTED, Json(Accepted { status: "accepted" })))
}

/// Remove an address other than the primary one.
#[utoipa::path(delete, path = "/api/v1/auth/emails/{email}", tag = "auth",
    security(("bearer" = [])),
    params(("email" = String, Path, description = "The address")),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "The primary address", body = ErrorBody),
        (status = 404, description = "Not one of your addresses", body = ErrorBody),
    ))]
pub async fn remove_email(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiPath(email): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .remove_email(auth.user.id, &email, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Make a verified address the primary one.
#[utoipa::path(post, path = "/api/v1/auth/emails/{email}/primary", tag = "auth",
    security(("bearer" = [])),
    params(("email" = String, Path, description = "The address")),
    responses(
        (status = 204, description = "Now primary"),
        (status = 400, description = "Not verified", body = ErrorBody),
        (status = 404, description = "Not one of your addresses", body = ErrorBody),
    ))]
pub async fn make_primary(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiPath(email): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .make_primary(auth.user.id, &email, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(login))
        .routes(routes!(me))
        .routes(routes!(logout))
        .routes(routes!(change_password))
        .routes(routes!(list_sessions))
        .routes(routes!(revoke_session))
        .routes(routes!(list_emails))
        .routes(routes!(add_email))
        .routes(routes!(verify_email))
        .routes(routes!(remove_email))
        .routes(routes!(make_primary))
        .routes(routes!(request_reset))
        .routes(routes!(confirm_reset))
}
