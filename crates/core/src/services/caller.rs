//! Who is calling: the one rule that turns a presented credential into the
//! account it acts for, for REST, gRPC and the gateway's key checks alike.
//!
//! An API key acts for its owner as stored now (a disabled owner's keys stop
//! at once); a bearer token that has the shape of an API key is one; any
//! other bearer token is a JWT or a command-line session token; a session
//! cookie is a browser session.

use crate::keys::index::Denial;
use crate::model::accounts::User;
use crate::model::sessions::Session;
use crate::{Error, ErrorCode, Id, Result};

use super::Services;

/// A credential as a request presents it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential<'a> {
    /// `X-API-Key` (or gRPC `x-api-key` metadata).
    ApiKey(&'a str),
    /// `Authorization: Bearer …`: an API key, a JWT or a session token.
    Bearer(&'a str),
    /// The browser's session cookie.
    SessionCookie(&'a str),
}

/// The account a request acts for, and how it signed in.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user: User,
    /// The session, when the caller used one (not a JWT or a key).
    pub session: Option<Session>,
    /// The API key the caller presented, if that is how it signed in.
    pub api_key: Option<Id>,
}

/// A refused key, as the management API words it.
fn key_refused(denial: Denial) -> Error {
    Error::new(ErrorCode::Unauthenticated, denial.message())
}

impl Services {
    /// The caller a credential names, or `unauthenticated`.
    pub async fn caller(&self, credential: Credential<'_>) -> Result<Caller> {
        let index = self.keys.index();
        let key = match credential {
            Credential::ApiKey(key) => Some(key),
            Credential::Bearer(token) if index.looks_like_key(token) => Some(token),
            _ => None,
        };
        if let Some(presented) = key {
            let key = index.authenticate(presented).map_err(key_refused)?;
            // The owner as stored now: status and roles count at once.
            let user = self
                .accounts
                .get_user(key.owner_id)
                .await
                .map_err(|_| key_refused(Denial::OwnerInactive))?;
            if !user.is_active() {
                return Err(key_refused(Denial::OwnerInactive));
            }
            return Ok(Caller {
                user,
                session: None,
                api_key: Some(key.id),
            });
        }
        let (user, session) = match credential {
            Credential::SessionCookie(token) => {
                let (user, session) = self.accounts.authenticate_session(token).await?;
                (user, Some(session))
            }
            Credential::Bearer(token) | Credential::ApiKey(token) => {
                self.accounts.authenticate_bearer(token).await?
            }
        };
        Ok(Caller {
            user,
            session,
            api_key: None,
        })
    }
}
