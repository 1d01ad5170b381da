//! Ways to sign in besides the password: passkeys (WebAuthn credentials), the
//! TOTP second factor with its recovery codes, and the short-lived, single-use
//! challenges between the steps of a sign-in.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use webauthn_rs::prelude::{DiscoverableAuthentication, Passkey, PasskeyRegistration};

use crate::Id;
use crate::codec::record;
use crate::crypto::Sealed;
use crate::model::sessions::SessionKind;

/// A passkey of one account: stored under the account, and found at sign-in
/// through [`PasskeyOwner`] by its credential ID.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PasskeyRecord {
    pub id: Id,
    pub user_id: Id,
    /// The owner's name for it ("laptop", "phone").
    pub name: String,
    /// The public key, its sign count and flags, as `webauthn-rs` keeps them.
    pub credential: Passkey,
    /// The highest sign count an assertion showed; a later one must be higher
    /// (unless the authenticator keeps no count: then always 0).
    #[serde(default)]
    pub sign_count: u32,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
}

record!(PasskeyRecord, "passkey");

/// Whose a credential ID is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasskeyOwner {
    pub user_id: Id,
    pub passkey_id: Id,
}

record!(PasskeyOwner, "passkey owner");

/// A user's TOTP second factor (RFC 6238: SHA-1, 6 digits, 30 seconds).
#[derive(Clone, Serialize, Deserialize)]
pub struct TotpFactor {
    /// The shared secret, sealed with the key-encryption key.
    pub secret: Sealed,
    /// Set once a first code proved the user's app holds the secret; until
    /// then the factor is not in use.
    pub confirmed_at: Option<DateTime<Utc>>,
    /// The last time step a code was accepted for: a code is good once.
    pub last_step: u64,
    /// SHA-256 of each unused recovery code.
    pub recovery_codes: Vec<Vec<u8>>,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for TotpFactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TotpFactor")
            .field("confirmed_at", &self.confirmed_at)
            .field("recovery_codes_left", &self.recovery_codes.len())
            .finish_non_exhaustive()
    }
}

record!(TotpFactor, "TOTP factor");

/// A step of a sign-in or enrolment waiting for its second half, stored under
/// the SHA-256 of the token handed to the client, for a few minutes.
#[derive(Clone, Serialize, Deserialize)]
pub struct Challenge {
    pub purpose: ChallengePurpose,
    pub expires_at_ms: i64,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChallengePurpose {
    /// A passkey being registered by a signed-in user.
    PasskeyRegistration {
        user_id: Id,
        state: PasskeyRegistration,
    },
    /// A sign-in with a passkey alone; `kind` is how it is handed back (none: a JWT).
    /// (Written by earlier versions; starts are now sealed into the challenge ID.)
    PasskeySignIn {
        state: DiscoverableAuthentication,
        kind: Option<SessionKind>,
    },
    /// A passkey sign-in's challenge that has been used: it does not work again.
    Spent,
    /// A password sign-in that still needs its second factor.
    SecondFactor {
        user_id: Id,
        kind: Option<SessionKind>,
        /// Wrong codes so far: after a few the challenge is gone.
        failures: u32,
    },
}

impl std::fmt::Debug for Challenge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let purpose = match &self.purpose {
            ChallengePurpose::PasskeyRegistration { .. } => "passkey_registration",
            ChallengePurpose::PasskeySignIn { .. } => "passkey_sign_in",
            ChallengePurpose::SecondFactor { .. } => "second_factor",
            ChallengePurpose::Spent => "spent",
        };
        f.debug_struct("Challenge")
            .field("purpose", &purpose)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

record!(Challenge, "sign-in challenge", no_feed);
