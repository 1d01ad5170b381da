//! The short-lived, single-use records between the two halves of a passkey
//! ceremony or of a sign-in with a second factor, and re-authentication
//! before a sign-in method is added.
//!
//! A challenge is stored under the SHA-256 of a random token only the client
//! holds, so the store never holds what would let anyone finish it.

use super::*;
use crate::model::factors::{Challenge, ChallengePurpose};

/// Passkey ceremonies and second-factor steps last five minutes.
pub(super) const CHALLENGE_TTL_MS: i64 = 5 * 60 * 1000;

/// Accounts without a password re-authenticate by having signed in this
/// recently.
const RECENT_SIGN_IN_SECS: i64 = 10 * 60;

impl AccountService {
    /// Stores a challenge; the token that names it (shown to the client once).
    pub(super) async fn start_challenge(&self, purpose: ChallengePurpose) -> Result<String> {
        let token = self.env.random.token();
        let challenge = Challenge {
            purpose,
            expires_at_ms: self.env.clock.now_millis() + CHALLENGE_TTL_MS,
        };
        let hash = token_hash(&token);
        self.store
            .run(|tx| {
                let (hash, challenge) = (&hash, &challenge);
                async move { keyspace::auth_challenge(hash).put(&tx, challenge).await }
            })
            .await?;
        Ok(token)
    }

    /// Takes the challenge `token` names, once: used, expired or unknown
    /// tokens find none.
    pub(super) async fn take_challenge(&self, token: &str) -> Result<ChallengePurpose> {
        let hash = token_hash(token);
        let now = self.env.clock.now_millis();
        let challenge = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move { keyspace::auth_challenge(hash).take(&tx).await }
            })
            .await?;
        match challenge {
            Some(c) if c.expires_at_ms > now => Ok(c.purpose),
            _ => Err(unknown_challenge()),
        }
    }

    /// Puts a challenge back under the same token, keeping its expiry (a
    /// second-factor step after a wrong code).
    pub(super) async fn put_back_challenge(
        &self,
        token: &str,
        purpose: ChallengePurpose,
        expires_at_ms: i64,
    ) -> Result<()> {
        let hash = token_hash(token);
        let challenge = Challenge {
            purpose,
            expires_at_ms,
        };
        self.store
            .run(|tx| {
                let (hash, challenge) = (&hash, &challenge);
                async move { keyspace::auth_challenge(hash).put(&tx, challenge).await }
            })
            .await?;
        Ok(())
    }

    /// Deletes challenges nobody finished (the `login_throttle` job).
    pub async fn prune_challenges(&self) -> Result<usize> {
        let now = self.env.clock.now_millis();
        crate::codec::prune_range(&self.store, keyspace::auth_challenges(), |c: &Challenge| {
            c.expires_at_ms <= now
        })
        .await
    }

    /// Re-authentication before a sign-in method is added or removed: the
    /// current password for accounts that have one; otherwise a session
    /// started in the last ten minutes (`signed_in_at`).
    pub(super) async fn reauthenticate(
        &self,
        user: &User,
        password: Option<&str>,
        signed_in_at: Option<chrono::DateTime<chrono::Utc>>,
        client: &ClientInfo,
    ) -> Result<()> {
        if user.password_hash.is_some() {
            let Some(password) = password else {
                return Err(Error::invalid_input(
                    "confirm with your current password: `password`",
                ));
            };
            // Guesses count against the account like sign-ins do: a stolen
            // session cannot try passwords faster than the sign-in page.
            let counters = [super::login::Counter::of_login(
                "account",
                &user.email.to_lowercase(),
            )];
            if let Some(ms) = self.count_attempt(&counters).await? {
                let secs = (ms as u64).div_ceil(1000);
                return Err(Error::rate_limited(
                    format!("too many wrong passwords; try again in {secs} seconds"),
                    secs,
                ));
            }
            let verified = self
                .verify_password(password, user.password_hash.as_deref())
                .await?;
            if verified != Verified::No {
                self.take_back_attempt(&counters, true).await?;
            }
            if verified == Verified::No {
                let details = serde_json::json!({"reason": "wrong_password"});
                self.audit(
                    Actor::User { id: user.id },
                    "auth.reauthenticate",
                    Outcome::Failure,
                    client,
                    details,
                )
                .await;
                return Err(Error::invalid_input("the current password is wrong"));
            }
            return Ok(());
        }
        let now = self.env.clock.now();
        match signed_in_at {
            Some(at) if (now - at).num_seconds() <= RECENT_SIGN_IN_SECS => Ok(()),
            _ => Err(Error::new(
                ErrorCode::PermissionDenied,
                "sign in again (with a session) first: this needs a sign-in from the last ten minutes",
            )),
        }
    }
}

pub(super) fn unknown_challenge() -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        "this challenge is unknown, used or expired: start again",
    )
}
