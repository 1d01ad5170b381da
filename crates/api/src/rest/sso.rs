//! `/api/v1/auth/sso/{provider}/…`: single sign-on through a configured
//! OpenID Connect provider (see `crate::sso`).

use axum::Json;
use axum::extract::State;
use axum::http::header::{HOST, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::Error;
use gatehouse_core::accounts::Grant;
use gatehouse_core::model::sessions::SessionKind;
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::auth::{LoginMode, SessionInfo, session_cookie, set_device_cookie, signed_in};
use super::page::{List, Order, TextPageQuery};
use crate::ApiError;
use crate::auth::{Client, InPerson, SignedIn};
use crate::extract::{ApiPath, ApiQuery};
use gatehouse_core::page::Page;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StartQuery {
    /// Where the browser goes once signed in (mode `session`): a path on this
    /// server, or a URL on an origin in `auth.sso.redirect_origins`.
    #[param(max_length = 2048)]
    pub redirect_to: Option<String>,
    /// `session` (the default: a cookie, then a redirect), `token` (a JWT in
    /// the callback's answer) or `cli` (a session token in the answer).
    pub mode: Option<LoginMode>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CallbackQuery {
    pub code: Option<String>,
    pub state: Option<String>,
    /// Set by the provider when the person did not sign in.
    pub error: Option<String>,
    pub error_description: Option<String>,
    /// The issuer, from providers that name it (RFC 9207): must be the provider's.
    pub iss: Option<String>,
}

fn host(headers: &HeaderMap) -> Option<&str> {
    headers.get(HOST).and_then(|h| h.to_str().ok())
}

/// Start signing in through `provider`: answers with a redirect to the
/// provider (authorization code with PKCE; `state` and `nonce` kept
/// server-side for ten minutes, single use).
#[utoipa::path(get, path = "/api/v1/auth/sso/{provider}/start", tag = "auth",
    params(("provider" = String, Path, description = "The provider's `id` in `auth.sso.providers`"), StartQuery),
    responses(
        (status = 303, description = "To the provider's authorization page (`Location`)"),
        (status = 400, description = "`redirect_to` leaves this server and its UI origins", body = crate::error::ErrorBody),
        (status = 503, description = "The provider could not be reached", body = crate::error::ErrorBody),
    ))]
pub async fn start(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<StartQuery>,
) -> Result<Response, ApiError> {
    let mode = match query.mode.unwrap_or(LoginMode::Session) {
        LoginMode::Session => "session",
        LoginMode::Token => "token",
        LoginMode::Cli => "cli",
    };
    let url = state
        .sso
        .start(
            &state.services.accounts,
            &provider,
            query.redirect_to,
            mode,
            host(&headers),
        )
        .await?;
    redirect(&url)
}

/// Where the provider sends the browser back: the code is exchanged, the ID
/// token validated, and the person signed in — a session cookie and a
/// redirect to `redirect_to` (mode `session`), or a token in the answer.
#[utoipa::path(get, path = "/api/v1/auth/sso/{provider}/callback", tag = "auth",
    params(("provider" = String, Path, description = "The provider's `id`"), CallbackQuery),
    responses(
        (status = 200, description = "Signed in (modes `token`, `cli`)", body = super::auth::TokenResponse),
        (status = 303, description = "Signed in (mode `session`): a `Set-Cookie` and the way on"),
        (status = 401, description = "Unknown, used or expired `state`, or the provider's answer did not validate", body = crate::error::ErrorBody),
        (status = 403, description = "This account may not sign in through this provider", body = crate::error::ErrorBody),
        (status = 409, description = "An account with this email exists and the identity cannot be linked to it", body = crate::error::ErrorBody),
    ))]
pub async fn callback(
    State(state): State<AppState>,
    ApiPath(provider): ApiPath<String>,
    Client(client): Client,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<CallbackQuery>,
) -> Result<Response, ApiError> {
    state.sso.provider(&provider)?;
    if let Some(error) = query.error {
        let why = query.error_description.unwrap_or_default();
        return Err(ApiError(Error::new(
            gatehouse_core::ErrorCode::Unauthenticated,
            format!("the provider did not sign you in: {error} {why}")
                .trim_end()
                .to_string(),
        )));
    }
    let (Some(code), Some(flow_state)) = (query.code, query.state) else {
        return Err(ApiError(Error::invalid_input(
            "the callback needs `code` and `state`",
        )));
    };
    let accounts = &state.services.accounts;
    let finished = state
        .sso
        .finish(
            accounts,
            &provider,
            crate::sso::Answer {
                code: &code,
                state: &flow_state,
                iss: query.iss.as_deref(),
            },
            host(&headers),
            &client,
        )
        .await?;
    // A browser session goes back where the sign-in started; the other
    // modes answer like a password sign-in.
    let Grant::Session(session, token) = finished.signed_in else {
        return Ok(signed_in(
            &state,
            &finished.user,
            finished.signed_in,
            &client,
        ));
    };
    if session.kind == SessionKind::Cli {
        let grant = Grant::Session(session, token);
        return Ok(signed_in(&state, &finished.user, grant, &client));
    }
    let lifetime = (session.absolute_expires_at - session.created_at).num_seconds();
    let to = finished.redirect_to.as_deref().unwrap_or("/");
    let mut response = match redirect(to) {
        Ok(response) => response,
        Err(_) => Json(SessionInfo::new(session.clone(), Some(session.id))).into_response(),
    };
    let cookie = session_cookie(&token, lifetime, state.secure_cookies);
    response.headers_mut().append(SET_COOKIE, cookie);
    let proof = accounts.device_proof(&finished.user, &client);
    set_device_cookie(&mut response, &proof, state.secure_cookies);
    Ok(response)
}

/// How an account signs in: its password, passkeys, second factor and
/// single sign-on identities.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SignInMethods {
    /// Whether the account has a password.
    pub password: bool,
    /// How many passkeys it has (`GET /api/v1/auth/passkeys` lists them).
    pub passkeys: u32,
    /// Whether an authenticator app (TOTP) is its second factor.
    pub totp: bool,
    /// Unused recovery codes of the authenticator app.
    pub recovery_codes_left: usize,
    /// The account must have a second factor (it holds `admin`, and the
    /// server requires one for admins).
    pub second_factor_required: bool,
    pub sso: Vec<LinkedIdentity>,
}

/// A single sign-on identity linked to the account.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct LinkedIdentity {
    /// The provider's `id` in `auth.sso.providers`.
    pub provider: String,
    /// The provider's subject (`sub`).
    pub subject: String,
    /// The email the provider asserted at the last sign-in.
    pub email: Option<String>,
    pub linked_at: chrono::DateTime<chrono::Utc>,
    pub last_sign_in_at: chrono::DateTime<chrono::Utc>,
}

/// Your ways to sign in.
#[utoipa::path(get, path = "/api/v1/auth/methods", tag = "auth",
    security(("bearer" = [])),
    responses((status = 200, description = "Password, passkeys, second factor and linked identities", body = SignInMethods)))]
pub async fn methods(
    State(state): State<AppState>,
    SignedIn(auth): SignedIn,
) -> Result<Json<SignInMethods>, ApiError> {
    let identities = state.services.accounts.sso_identities(auth.user.id).await?;
    let factors = state.services.accounts.second_factors(&auth.user).await?;
    Ok(Json(SignInMethods {
        password: auth.user.password_hash.is_some(),
        passkeys: auth.user.passkey_count,
        totp: factors.totp_enabled,
        recovery_codes_left: factors.recovery_codes_left,
        second_factor_required: factors.required,
        sso: identities
            .into_iter()
            .map(|i| LinkedIdentity {
                provider: i.provider,
                subject: i.subject,
                email: i.email,
                linked_at: i.linked_at,
                last_sign_in_at: i.last_sign_in_at,
            })
            .collect(),
    }))
}

/// Unlink your identity at `provider` (not your last way to sign in).
#[utoipa::path(delete, path = "/api/v1/auth/sso/{provider}/identity", tag = "auth",
    security(("bearer" = [])),
    params(("provider" = String, Path, description = "The provider's `id`")),
    responses(
        (status = 204, description = "Unlinked"),
        (status = 404, description = "No identity of this provider is linked", body = crate::error::ErrorBody),
        (status = 409, description = "It is the account's last way to sign in", body = crate::error::ErrorBody),
    ))]
pub async fn unlink(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiPath(provider): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .unlink_sso(auth.user.id, &provider, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

fn redirect(to: &str) -> Result<Response, ApiError> {
    let location = HeaderValue::from_str(to)
        .map_err(|_| ApiError(Error::invalid_input("the redirect is not a valid URL")))?;
    let mut response = StatusCode::SEE_OTHER.into_response();
    response.headers_mut().insert(LOCATION, location);
    Ok(response)
}

/// The configured single sign-on providers, for a sign-in page's buttons
/// (by `id`).
#[utoipa::path(get, path = "/api/v1/auth/sso/providers", tag = "auth",
    params(TextPageQuery),
    responses((status = 200, description = "A page of providers", body = List<crate::sso::ProviderInfo>)))]
pub async fn providers(
    State(state): State<AppState>,
    ApiQuery(page): ApiQuery<TextPageQuery>,
) -> Result<Json<List<crate::sso::ProviderInfo>>, ApiError> {
    let page = page.request()?;
    let providers = state.sso.providers();
    let providers =
        Page::of(providers, &page, Order::Ascending, |p| p.id.clone()).map_err(ApiError)?;
    Ok(Json(List::of(providers)))
}

pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(providers))
        .routes(routes!(start))
        .routes(routes!(callback))
        .routes(routes!(methods))
        .routes(routes!(unlink))
}
