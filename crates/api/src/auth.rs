//! Who is calling: the `Authenticated` extractor reads `Authorization: Bearer
//! <JWT>` and asks the account service for the active user behind it.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use gatehouse_core::accounts::model::User;
use gatehouse_core::accounts::tokens::Claims;
use gatehouse_core::{Error, ErrorCode};

use crate::ApiError;
use crate::rest::AppState;

/// The signed-in user of this request.
pub struct Authenticated {
    pub user: User,
    pub claims: Claims,
}

fn missing() -> ApiError {
    ApiError(Error::new(
        ErrorCode::Unauthenticated,
        "sign in first: send `Authorization: Bearer <token>`",
    ))
}

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(missing)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(missing)?;
        let (user, claims) = state.services.accounts.authenticate_token(token).await?;
        Ok(Authenticated { user, claims })
    }
}
