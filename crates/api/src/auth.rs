//! Who is calling, for REST handlers ([`crate::caller`] reads the credential,
//! core decides what it names). The `Authenticated` extractor accepts, in order:
//! `X-API-Key: <key>` or `Authorization: Bearer <API key>` (the key's owner),
//! `Authorization: Bearer <JWT>`, `Authorization: Bearer <session token>`
//! (command-line sessions), or the `gatehouse_session` cookie (browsers). A
//! cookie-authenticated request with an unsafe method must come from this
//! server's own origin (a CSRF defence on top of `SameSite=Lax`).

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::{HOST, ORIGIN, USER_AGENT};
use axum::http::request::Parts;
use gatehouse_core::model::accounts::User;
use gatehouse_core::model::sessions::{ClientInfo, Session};
use gatehouse_core::services::Credential;
use gatehouse_core::{Error, ErrorCode};

use crate::rest::AppState;
use crate::{ApiError, caller};

/// Name of the session cookie.
pub use crate::caller::SESSION_COOKIE;

/// The signed-in user of this request, allowed to act: an account whose
/// generated password has not been changed yet is refused (see [`SignedIn`]).
pub struct Authenticated {
    pub user: User,
    /// The session, when the caller used one (not a JWT).
    pub session: Option<Session>,
    /// The raw session token, to end it at logout.
    pub session_token: Option<String>,
    /// The API key the caller presented, if that is how they signed in.
    pub api_key: Option<gatehouse_core::Id>,
}

fn missing() -> ApiError {
    ApiError(Error::new(
        ErrorCode::Unauthenticated,
        "sign in first: send `Authorization: Bearer <token>` or a session cookie",
    ))
}

/// The request's origin matches its host (or the browser sent no origin).
fn same_origin(parts: &Parts) -> bool {
    let Some(origin) = parts.headers.get(ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let host = parts.headers.get(HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin.split_once("://").map(|(_, rest)| rest);
    host.is_some() && origin_host == host
}

/// Where the request came from.
pub fn client_info(parts: &Parts) -> ClientInfo {
    ClientInfo {
        ip: parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string()),
        user_agent: parts
            .headers
            .get(USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        device: crate::caller::device_proof(&parts.headers).map(str::to_string),
        idempotency: parts
            .extensions
            .get::<gatehouse_core::idempotency::RequestMark>()
            .cloned(),
    }
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let SignedIn(auth) = SignedIn::from_request_parts(parts, state).await?;
        state.services.accounts.ensure_may_act(&auth.user)?;
        Ok(auth)
    }
}

/// Any signed-in user, including one who must still change a generated
/// password: for `me`, password change and logout only.
pub struct SignedIn(pub Authenticated);

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Ok(SignedIn(authenticate(parts, state).await?))
    }
}

async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Authenticated, ApiError> {
    let credential = caller::credential(&parts.headers).ok_or_else(missing)?;
    if let Credential::SessionCookie(_) = credential
        && !parts.method.is_safe()
        && !same_origin(parts)
    {
        return Err(ApiError(Error::new(
            ErrorCode::PermissionDenied,
            "cross-site request refused",
        )));
    }
    let caller = state.services.caller(credential).await?;
    caller.ensure_may_manage()?;
    let session_token = match credential {
        Credential::Bearer(token) | Credential::SessionCookie(token)
            if caller.session.is_some() =>
        {
            Some(token.to_string())
        }
        _ => None,
    };
    let api_key = caller.key_id();
    Ok(Authenticated {
        user: caller.user,
        session: caller.session,
        session_token,
        api_key,
    })
}

impl Authenticated {
    /// For the account's own security: refused to API keys.
    pub fn ensure_in_person(&self) -> Result<(), ApiError> {
        Ok(gatehouse_core::services::ensure_in_person(
            self.api_key.is_some(),
        )?)
    }
}

/// A signed-in person allowed to act, not an API key: for the account's own
/// password, addresses and sessions.
pub struct InPerson(pub Authenticated);

impl FromRequestParts<AppState> for InPerson {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let auth = Authenticated::from_request_parts(parts, state).await?;
        auth.ensure_in_person()?;
        Ok(InPerson(auth))
    }
}

/// A signed-in person, not an API key, who may still be held back from
/// acting (a second factor to enrol first): for the routes that add a way to
/// sign in.
pub struct Enrolling(pub Authenticated);

impl FromRequestParts<AppState> for Enrolling {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let SignedIn(auth) = SignedIn::from_request_parts(parts, state).await?;
        auth.ensure_in_person()?;
        Ok(Enrolling(auth))
    }
}

/// Client details, as an extractor.
pub struct Client(pub ClientInfo);

impl<S: Send + Sync> FromRequestParts<S> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(Client(client_info(parts)))
    }
}
