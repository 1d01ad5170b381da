//! Who is calling: the one rule that turns a presented credential into the
//! account it acts for, for REST, gRPC and the gateway's key checks alike.
//!
//! An API key acts for its owner as stored now (a disabled owner's keys stop
//! at once); a bearer token that has the shape of an API key is one; any
//! other bearer token is a JWT or a command-line session token; a session
//! cookie is a browser session.
//!
//! What a key may do beyond the gateway is decided here too (SPEC §2): only
//! with the `management` scope, and never on the account's own security.

use std::sync::Arc;

use crate::keys::index::Denial;
use crate::model::accounts::User;
use crate::model::keys::ApiKey;
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
    pub api_key: Option<Arc<ApiKey>>,
}

impl Caller {
    /// The ID of the key the caller presented.
    pub fn key_id(&self) -> Option<Id> {
        self.api_key.as_ref().map(|k| k.id)
    }

    /// The management API: people, and keys with the `management` scope.
    pub fn ensure_may_manage(&self) -> Result<()> {
        match &self.api_key {
            Some(key) if !key.may_manage() => Err(Error::permission_denied(
                "this API key is for the gateway only; create one with \"scopes\": [\"gateway\", \"management\"] to use the management API",
            )),
            _ => Ok(()),
        }
    }
}

/// The account's own security (password, addresses, sessions, passkeys,
/// second factor): people only, never through an API key.
pub fn ensure_in_person(through_key: bool) -> Result<()> {
    if through_key {
        return Err(Error::permission_denied(
            "an API key cannot change the account's password, addresses, sessions, passkeys or second factor: sign in",
        ));
    }
    Ok(())
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
                api_key: Some(key),
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
