//! `/api/v1/auth/passkeys/…` and `/api/v1/auth/mfa/…`: passkeys (register,
//! list, rename, delete, sign in with one alone) and the TOTP second factor
//! (enrol, confirm, turn off, and the second step of a password sign-in).
//!
//! Adding a way to sign in asks for re-authentication: the current password,
//! or for accounts without one a session from the last ten minutes. These
//! routes stay open to an admin who has no second factor yet when one is
//! required: they are how it gets one.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use chrono::{DateTime, Utc};
use gatehouse_core::model::factors::PasskeyRecord;
use gatehouse_core::page::Page;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use webauthn_rs::prelude::{PublicKeyCredential, RegisterPublicKeyCredential};

use super::AppState;
use super::auth::{LoginMode, signed_in};
use super::page::{List, Order, PageQuery};
use crate::ApiError;
use crate::auth::{Authenticated, Client, Enrolling, InPerson};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath};

/// Re-authentication before a sign-in method is added or removed.
#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct Reauthenticate {
    /// The current password; accounts without one need a session started in
    /// the last ten minutes instead.
    pub password: Option<String>,
}

/// A started passkey ceremony.
#[derive(Serialize, ToSchema)]
pub struct Ceremony {
    /// Send it back with the browser's answer; single use, five minutes.
    pub challenge_id: String,
    /// For `navigator.credentials.create()` or `.get()`: `{"publicKey": …}`
    /// with binary fields in base64url.
    #[schema(value_type = Object)]
    pub options: serde_json::Value,
}

fn ceremony<T: Serialize>(
    c: gatehouse_core::accounts::passkeys::Ceremony<T>,
) -> Result<Json<Ceremony>, ApiError> {
    let options = serde_json::to_value(&c.options)
        .map_err(|e| ApiError(gatehouse_core::Error::internal(e)))?;
    Ok(Json(Ceremony {
        challenge_id: c.challenge_id,
        options,
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishRegistration {
    pub challenge_id: String,
    /// Your name for it, e.g. `laptop`.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
    /// The `PublicKeyCredential` from `navigator.credentials.create()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: RegisterPublicKeyCredential,
}

#[derive(Serialize, ToSchema)]
pub struct PasskeyInfo {
    #[schema(value_type = String)]
    pub id: gatehouse_core::Id,
    pub name: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl From<PasskeyRecord> for PasskeyInfo {
    fn from(p: PasskeyRecord) -> Self {
        PasskeyInfo {
            id: p.id,
            name: p.name,
            created_at: p.created_at,
            last_used_at: p.last_used_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RenamePasskey {
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct StartSignIn {
    /// How the sign-in is handed back, as for `POST /api/v1/auth/login`.
    #[serde(default)]
    pub mode: LoginMode,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishSignIn {
    pub challenge_id: String,
    /// The `PublicKeyCredential` from `navigator.credentials.get()`, as JSON.
    #[schema(value_type = Object)]
    pub credential: PublicKeyCredential,
}

fn signed_in_at(auth: &Authenticated) -> Option<DateTime<Utc>> {
    auth.session.as_ref().map(|s| s.created_at)
}

/// Start registering a passkey (re-authentication required).
#[utoipa::path(post, path = "/api/v1/auth/passkeys/register/start", tag = "auth",
    security(("bearer" = [])),
    request_body = Reauthenticate,
    responses(
        (status = 200, description = "Options for `navigator.credentials.create()`", body = Ceremony),
        (status = 400, description = "Wrong password, or too many passkeys", body = ErrorBody),
        (status = 403, description = "No recent sign-in (accounts without a password), or an API key", body = ErrorBody),
        (status = 404, description = "Passkeys are off on this server", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn start_registration(
    State(state): State<AppState>,
    Client(client): Client,
    Enrolling(auth): Enrolling,
    ApiJson(request): ApiJson<Reauthenticate>,
) -> Result<Json<Ceremony>, ApiError> {
    let started = state
        .services
        .accounts
        .start_passkey_registration(
            auth.user.id,
            request.password.as_deref(),
            signed_in_at(&auth),
            &client,
        )
        .await?;
    ceremony(started)
}

/// Finish registering a passkey with the browser's answer.
#[utoipa::path(post, path = "/api/v1/auth/passkeys/register/finish", tag = "auth",
    security(("bearer" = [])),
    request_body = FinishRegistration,
    responses(
        (status = 201, description = "Registered", body = PasskeyInfo),
        (status = 400, description = "The answer does not verify", body = ErrorBody),
        (status = 401, description = "Unknown, used or expired challenge", body = ErrorBody),
        (status = 409, description = "This passkey is registered already", body = ErrorBody),
    ))]
pub async fn finish_registration(
    State(state): State<AppState>,
    Client(client): Client,
    Enrolling(auth): Enrolling,
    ApiJson(request): ApiJson<FinishRegistration>,
) -> Result<(StatusCode, Json<PasskeyInfo>), ApiError> {
    let record = state
        .services
        .accounts
        .finish_passkey_registration(
            auth.user.id,
            &request.challenge_id,
            &request.name,
            &request.credential,
            &client,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(record.into())))
}

/// Your passkeys, oldest first.
#[utoipa::path(get, path = "/api/v1/auth/passkeys", tag = "auth",
    security(("bearer" = [])), params(PageQuery),
    responses(
        (status = 200, description = "A page of passkeys", body = List<PasskeyInfo>),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ))]
pub async fn list_passkeys(
    State(state): State<AppState>,
    InPerson(auth): InPerson,
    crate::extract::ApiQuery(page): crate::extract::ApiQuery<PageQuery>,
) -> Result<Json<List<PasskeyInfo>>, ApiError> {
    let page = page.request()?;
    let passkeys = state.services.accounts.list_passkeys(auth.user.id).await?;
    let passkeys = Page::of(passkeys, &page, Order::Ascending, |p| p.id).map_err(ApiError)?;
    Ok(Json(List::of(passkeys.map(PasskeyInfo::from))))
}

/// Rename one of your passkeys.
#[utoipa::path(patch, path = "/api/v1/auth/passkeys/{id}", tag = "auth",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Passkey ID")),
    request_body = RenamePasskey,
    responses(
        (status = 200, description = "Renamed", body = PasskeyInfo),
        (status = 404, description = "No such passkey of yours", body = ErrorBody),
    ))]
pub async fn rename_passkey(
    State(state): State<AppState>,
    InPerson(auth): InPerson,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<RenamePasskey>,
) -> Result<Json<PasskeyInfo>, ApiError> {
    let id: gatehouse_core::Id = id.parse().map_err(ApiError)?;
    let record = state
        .services
        .accounts
        .rename_passkey(auth.user.id, id, &request.name)
        .await?;
    Ok(Json(record.into()))
}

/// Delete one of your passkeys (not your last way to sign in).
#[utoipa::path(delete, path = "/api/v1/auth/passkeys/{id}", tag = "auth",
    security(("bearer" = [])),
    params(("id" = String, Path, description = "Passkey ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 409, description = "Your last way to sign in", body = ErrorBody),
        (status = 404, description = "No such passkey of yours", body = ErrorBody),
    ))]
pub async fn delete_passkey(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id: gatehouse_core::Id = id.parse().map_err(ApiError)?;
    state
        .services
        .accounts
        .delete_passkey(auth.user.id, id, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Start signing in with a passkey alone (no username: the authenticator
/// offers the passkeys it holds for this server).
#[utoipa::path(post, path = "/api/v1/auth/passkeys/login/start", tag = "auth",
    request_body = StartSignIn,
    responses(
        (status = 200, description = "Options for `navigator.credentials.get()`", body = Ceremony),
        (status = 404, description = "Passkeys are off on this server", body = ErrorBody),
    ))]
pub async fn start_sign_in(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<StartSignIn>,
) -> Result<Json<Ceremony>, ApiError> {
    let started = state
        .services
        .accounts
        .start_passkey_sign_in(request.mode.session_kind())
        .await?;
    ceremony(started)
}

/// Finish signing in with a passkey: answers like `POST /api/v1/auth/login`.
/// A passkey is a second factor in itself: no code follows.
#[utoipa::path(post, path = "/api/v1/auth/passkeys/login/finish", tag = "auth",
    request_body = FinishSignIn,
    responses(
        (status = 200, description = "Signed in, as for `POST /api/v1/auth/login`", body = super::auth::LoginAnswer),
        (status = 401, description = "Unknown credential, bad signature, a sign count that went back, or an unknown, used or expired challenge", body = ErrorBody),
    ))]
pub async fn finish_sign_in(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<FinishSignIn>,
) -> Result<Response, ApiError> {
    let (user, grant) = state
        .services
        .accounts
        .finish_passkey_sign_in(&request.challenge_id, &request.credential, &client)
        .await?;
    Ok(signed_in(&state, &user, grant, &client))
}

/// What an authenticator app needs; shown once.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The secret in base32, to type into the app.
    pub secret: String,
    /// `otpauth://totp/Gatehouse:<email>?secret=…&issuer=Gatehouse`.
    pub otpauth_uri: String,
    /// The URI as a QR code: an SVG document.
    pub qr_svg: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// Six digits from the app.
    #[schema(example = "123456")]
    pub code: String,
}

#[derive(Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten codes, each good once in place of an app code. Shown this once:
    /// keep them somewhere safe.
    pub recovery_codes: Vec<String>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SecondStep {
    /// From `POST /api/v1/auth/login` (`mfa_token`).
    pub mfa_token: String,
    /// Six digits from the app, or a recovery code.
    pub code: String,
}

/// Start setting up an authenticator app (re-authentication required). It is
/// in use once confirmed with a first code.
#[utoipa::path(post, path = "/api/v1/auth/mfa/totp", tag = "auth",
    security(("bearer" = [])),
    request_body = Reauthenticate,
    responses(
        (status = 200, description = "The secret, its otpauth URI and QR code", body = TotpEnrolment),
        (status = 400, description = "Wrong password", body = ErrorBody),
        (status = 409, description = "An app is set up already", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn enrol_totp(
    State(state): State<AppState>,
    Client(client): Client,
    Enrolling(auth): Enrolling,
    ApiJson(request): ApiJson<Reauthenticate>,
) -> Result<Json<TotpEnrolment>, ApiError> {
    let enrolment = state
        .services
        .accounts
        .enrol_totp(
            auth.user.id,
            request.password.as_deref(),
            signed_in_at(&auth),
            &client,
        )
        .await?;
    Ok(Json(TotpEnrolment {
        secret: enrolment.secret,
        otpauth_uri: enrolment.otpauth_uri,
        qr_svg: enrolment.qr_svg,
    }))
}

/// Confirm the app with a first code; answers the recovery codes, once.
#[utoipa::path(post, path = "/api/v1/auth/mfa/totp/confirm", tag = "auth",
    security(("bearer" = [])),
    request_body = TotpCode,
    responses(
        (status = 200, description = "In use; the recovery codes", body = RecoveryCodes),
        (status = 400, description = "Wrong code, or no enrolment waiting", body = ErrorBody),
    ))]
pub async fn confirm_totp(
    State(state): State<AppState>,
    Client(client): Client,
    Enrolling(auth): Enrolling,
    ApiJson(request): ApiJson<TotpCode>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = state
        .services
        .accounts
        .confirm_totp(auth.user.id, &request.code, &client)
        .await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}

/// Turn the authenticator app off (re-authentication required).
#[utoipa::path(post, path = "/api/v1/auth/mfa/totp/disable", tag = "auth",
    security(("bearer" = [])),
    request_body = Reauthenticate,
    responses(
        (status = 204, description = "Off"),
        (status = 400, description = "Wrong password", body = ErrorBody),
        (status = 403, description = "Admins must keep a second factor", body = ErrorBody),
        (status = 429, description = "Too many wrong passwords; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn disable_totp(
    State(state): State<AppState>,
    Client(client): Client,
    InPerson(auth): InPerson,
    ApiJson(request): ApiJson<Reauthenticate>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .accounts
        .disable_totp(
            auth.user.id,
            request.password.as_deref(),
            signed_in_at(&auth),
            &client,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The second step of a password sign-in: a code from the app or a recovery
/// code. Answers like `POST /api/v1/auth/login` in the mode asked for there.
#[utoipa::path(post, path = "/api/v1/auth/login/mfa", tag = "auth",
    request_body = SecondStep,
    responses(
        (status = 200, description = "Signed in", body = super::auth::LoginAnswer),
        (status = 401, description = "Wrong code, or an unknown, used or expired token", body = ErrorBody),
        (status = 429, description = "Too many wrong codes; see `Retry-After`", body = ErrorBody),
    ))]
pub async fn second_step(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<SecondStep>,
) -> Result<Response, ApiError> {
    let (user, grant) = state
        .services
        .accounts
        .finish_second_factor(&request.mfa_token, &request.code, &client)
        .await?;
    Ok(signed_in(&state, &user, grant, &client))
}

/// This module's routes.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start_registration))
        .routes(routes!(finish_registration))
        .routes(routes!(list_passkeys))
        .routes(routes!(rename_passkey, delete_passkey))
        .routes(routes!(start_sign_in))
        .routes(routes!(finish_sign_in))
        .routes(routes!(enrol_totp))
        .routes(routes!(confirm_totp))
        .routes(routes!(disable_totp))
        .routes(routes!(second_step))
}
