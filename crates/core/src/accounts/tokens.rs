//! JSON Web Tokens for the management API: HS256 only, issuer and audience
//! `gatehouse`, short-lived. Expiry and not-before are checked against the
//! injected clock, so tests control time.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use super::model::User;
use crate::env::Clock;
use crate::{Error, ErrorCode, Id, Result};

pub const ISSUER: &str = "gatehouse";
pub const AUDIENCE: &str = "gatehouse";

/// What a token says.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Claims {
    /// The user ID.
    pub sub: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    pub iat: i64,
    pub nbf: i64,
    pub exp: i64,
    pub iss: String,
    pub aud: String,
    /// The user's [`User::token_epoch`] at issue; the token dies when it moves.
    #[serde(default)]
    pub epoch: u64,
}

impl Claims {
    pub fn user_id(&self) -> Result<Id> {
        self.sub.parse()
    }
}

/// Issues and checks tokens with one HMAC key.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    ttl_secs: i64,
    clock: Arc<dyn Clock>,
}

fn invalid_token() -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        "the token is invalid or expired",
    )
}

impl Tokens {
    pub fn new(secret: &[u8], ttl_secs: i64, clock: Arc<dyn Clock>) -> Self {
        Tokens {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            ttl_secs,
            clock,
        }
    }

    pub fn ttl_secs(&self) -> i64 {
        self.ttl_secs
    }

    pub fn issue(&self, user: &User) -> Result<String> {
        let now = self.clock.now_millis() / 1000;
        let claims = Claims {
            sub: user.id.to_string(),
            username: user.username.clone(),
            roles: user.roles.iter().map(|r| r.as_str().to_string()).collect(),
            iat: now,
            nbf: now,
            exp: now + self.ttl_secs,
            iss: ISSUER.to_string(),
            aud: AUDIENCE.to_string(),
            epoch: user.token_epoch,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .map_err(Error::internal)
    }

    /// Checks the signature first (HS256 only, so `none` and every other
    /// algorithm are refused), then issuer, audience, expiry and not-before.
    pub fn verify(&self, token: &str) -> Result<Claims> {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[AUDIENCE]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        // Time is checked below against the injected clock.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &validation)
            .map_err(|_| invalid_token())?;
        let now = self.clock.now_millis() / 1000;
        if data.claims.exp <= now || data.claims.nbf > now {
            return Err(invalid_token());
        }
        Ok(data.claims)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
    use chrono::DateTime;

    use super::*;
    use crate::env::ManualClock;
    use crate::model::accounts::Role;

    fn user() -> User {
        User {
            username: Some("ada".into()),
            ..User::new(
                Id(42),
                "a@b.c".into(),
                "Ada".into(),
                BTreeSet::from([Role::User]),
                DateTime::UNIX_EPOCH,
            )
        }
    }

    fn tokens(secret: &[u8], clock: &Arc<ManualClock>) -> Tokens {
        Tokens::new(secret, 3600, clock.clone())
    }

    #[test]
    fn a_fresh_token_verifies() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let t = tokens(b"k".repeat(32).as_slice(), &clock);
        let claims = t.verify(&t.issue(&user()).unwrap()).unwrap();
        assert_eq!(claims.user_id().unwrap(), Id(42));
        assert_eq!(claims.roles, vec!["user"]);
        assert_eq!(
            (claims.iss.as_str(), claims.aud.as_str()),
            ("gatehouse", "gatehouse")
        );
    }

    #[test]
    fn expired_tokens_are_refused() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let t = tokens(b"k".repeat(32).as_slice(), &clock);
        let token = t.issue(&user()).unwrap();
        clock.advance(3_600_000);
        assert_eq!(
            t.verify(&token).unwrap_err().code(),
            ErrorCode::Unauthenticated
        );
    }

    #[test]
    fn a_wrong_key_is_refused() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let token = tokens(b"k".repeat(32).as_slice(), &clock)
            .issue(&user())
            .unwrap();
        let other = tokens(b"x".repeat(32).as_slice(), &clock);
        assert!(other.verify(&token).is_err());
    }

    #[test]
    fn alg_none_is_refused() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let t = tokens(b"k".repeat(32).as_slice(), &clock);
        let token = t.issue(&user()).unwrap();
        let payload = token.split('.').nth(1).unwrap();
        let header = B64.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(t.verify(&format!("{header}.{payload}.")).is_err());
        assert!(t.verify(&format!("{header}.{payload}")).is_err());
    }

    #[test]
    fn a_wrong_audience_or_issuer_is_refused() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let secret = b"k".repeat(32);
        let t = tokens(&secret, &clock);
        let now = 1_800_000_000;
        for (iss, aud) in [("gatehouse", "someone-else"), ("evil", "gatehouse")] {
            let claims = Claims {
                sub: "42".into(),
                username: None,
                roles: vec!["admin".into()],
                iat: now,
                nbf: now,
                exp: now + 60,
                iss: iss.into(),
                aud: aud.into(),
                epoch: 0,
            };
            let forged = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&secret),
            )
            .unwrap();
            assert!(t.verify(&forged).is_err(), "{iss}/{aud}");
        }
    }
}
