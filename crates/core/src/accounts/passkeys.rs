//! Passkeys: WebAuthn credentials, verified by `webauthn-rs`. A signed-in
//! user registers them (after re-authenticating), names, lists and deletes
//! them; anyone signs in with one alone (a discoverable credential: no
//! username first). A passkey verifies its user, so it is a second factor in
//! itself: a passkey sign-in needs no TOTP code.
//!
//! Sign counts only go up: an assertion whose count is not above the stored
//! one (a cloned authenticator) is refused and audited, like an unknown
//! credential.

use webauthn_rs::prelude::{
    CreationChallengeResponse, DiscoverableKey, PublicKeyCredential, RegisterPublicKeyCredential,
    RequestChallengeResponse, Url, Uuid, Webauthn, WebauthnBuilder, WebauthnError,
};
use webauthn_rs_proto::ResidentKeyRequirement;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use webauthn_rs::prelude::DiscoverableAuthentication;

use super::*;
use crate::model::factors::{Challenge, ChallengePurpose, PasskeyOwner, PasskeyRecord};

/// What a passkey sign-in's challenge ID carries, sealed.
#[derive(serde::Serialize, serde::Deserialize)]
struct SignInTicket {
    state: DiscoverableAuthentication,
    kind: Option<SessionKind>,
    expires_at_ms: i64,
}

/// What the sealed ticket is bound to.
const TICKET_CONTEXT: &str = "passkey sign-in";

/// At most this many passkeys per account.
pub const MAX_PASSKEYS: usize = 10;

/// The relying party passkeys are bound to: its ID (a domain) and the web
/// origins that may run the ceremonies.
pub struct RelyingParty(Webauthn);

impl RelyingParty {
    /// `rp_id` must be the origins' host or a parent domain of it.
    pub fn new(rp_id: &str, rp_name: &str, origins: &[String]) -> Result<Self> {
        let parse = |o: &String| {
            Url::parse(o).map_err(|e| Error::invalid_input(format!("passkey origin `{o}`: {e}")))
        };
        let mut urls = origins.iter().map(parse);
        let first = urls
            .next()
            .ok_or_else(|| Error::invalid_input("passkeys need at least one origin"))??;
        let mut builder = WebauthnBuilder::new(rp_id, &first)
            .map_err(|e| Error::invalid_input(format!("passkey relying party `{rp_id}`: {e}")))?
            .rp_name(rp_name);
        for url in urls {
            builder = builder.append_allowed_origin(&url?);
        }
        let webauthn = builder
            .build()
            .map_err(|e| Error::invalid_input(format!("passkey relying party: {e}")))?;
        Ok(RelyingParty(webauthn))
    }
}

/// A started passkey ceremony: the token that finishes it and what the
/// browser passes to `navigator.credentials`.
pub struct Ceremony<T> {
    pub challenge_id: String,
    pub options: T,
}

/// The WebAuthn user handle of an account: stable, and says nothing but the ID.
fn user_handle(id: Id) -> Uuid {
    Uuid::from_u64_pair(0x6761_7465_686f_7573, id.0)
}

fn refused(reason: &str) -> Error {
    Error::new(
        ErrorCode::Unauthenticated,
        format!("the passkey was not accepted: {reason}"),
    )
}

impl AccountService {
    /// The ticket a challenge ID seals, if it is one of ours and not expired.
    fn open_ticket(&self, challenge_id: &str) -> Result<SignInTicket> {
        let unknown = super::challenges::unknown_challenge;
        let sealed = URL_SAFE_NO_PAD
            .decode(challenge_id.trim())
            .ok()
            .and_then(|bytes| serde_json::from_slice::<crate::crypto::Sealed>(&bytes).ok())
            .ok_or_else(unknown)?;
        let plain = self
            .keys
            .open(&sealed, TICKET_CONTEXT)
            .map_err(|_| unknown())?;
        let ticket: SignInTicket = serde_json::from_slice(&plain).map_err(|_| unknown())?;
        if ticket.expires_at_ms <= self.env.clock.now_millis() {
            return Err(unknown());
        }
        Ok(ticket)
    }

    fn relying_party(&self) -> Result<&Webauthn> {
        self.passkeys.as_ref().map(|rp| &rp.0).ok_or_else(|| {
            Error::new(
                ErrorCode::NotFound,
                "passkeys are not configured on this server (auth.passkeys)",
            )
        })
    }

    /// Starts registering a passkey for `user_id`, after re-authentication
    /// ([`reauthenticate`](Self::reauthenticate)).
    pub async fn start_passkey_registration(
        &self,
        user_id: Id,
        password: Option<&str>,
        signed_in_at: Option<chrono::DateTime<chrono::Utc>>,
        client: &ClientInfo,
    ) -> Result<Ceremony<CreationChallengeResponse>> {
        let rp = self.relying_party()?;
        let user = self.get_user(user_id).await?;
        self.reauthenticate(&user, password, signed_in_at, client)
            .await?;
        let existing = self.passkey_records(user_id).await?;
        if existing.len() >= MAX_PASSKEYS {
            return Err(Error::invalid_input(format!(
                "at most {MAX_PASSKEYS} passkeys per account: delete one first"
            )));
        }
        let exclude = existing
            .iter()
            .map(|p| p.credential.cred_id().clone())
            .collect();
        let name = user.username.as_deref().unwrap_or(&user.email);
        let (mut options, state) = rp
            .start_passkey_registration(
                user_handle(user.id),
                name,
                &user.display_name,
                Some(exclude),
            )
            .map_err(|e| Error::internal(format!("passkey registration: {e}")))?;
        // A passkey is a discoverable credential: it signs in without a
        // username. Browsers treat `preferred` as `required`; authenticators
        // that cannot store one still register (then they need a username).
        if let Some(selection) = options.public_key.authenticator_selection.as_mut() {
            selection.resident_key = Some(ResidentKeyRequirement::Preferred);
        }
        let challenge_id = self
            .start_challenge(ChallengePurpose::PasskeyRegistration { user_id, state })
            .await?;
        Ok(Ceremony {
            challenge_id,
            options,
        })
    }

    /// Finishes a registration with the browser's answer; the new passkey.
    pub async fn finish_passkey_registration(
        &self,
        user_id: Id,
        challenge_id: &str,
        name: &str,
        credential: &RegisterPublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<PasskeyRecord> {
        let rp = self.relying_party()?;
        let name = crate::common::parse_name(name, "passkey name")?;
        let state = match self.take_challenge(challenge_id).await? {
            ChallengePurpose::PasskeyRegistration {
                user_id: owner,
                state,
            } if owner == user_id => state,
            _ => return Err(super::challenges::unknown_challenge()),
        };
        let passkey = rp
            .finish_passkey_registration(credential, &state)
            .map_err(|e| Error::invalid_input(format!("the passkey was not registered: {e}")))?;
        let record = PasskeyRecord {
            id: self.env.ids.next_id(),
            user_id,
            name,
            credential: passkey,
            sign_count: 0,
            created_at: self.env.clock.now(),
            last_used_at: None,
        };
        let details = serde_json::json!({"passkey_id": record.id, "name": record.name});
        self.audited(
            |tx| {
                let record = &record;
                async move {
                    let index = keyspace::passkey_credential(record.credential.cred_id());
                    if index.get(&tx).await?.is_some() {
                        return Err(TxError::Abort(Error::new(
                            ErrorCode::Conflict,
                            "this passkey is already registered",
                        )));
                    }
                    let owner = PasskeyOwner {
                        user_id,
                        passkey_id: record.id,
                    };
                    index.put(&tx, &owner).await?;
                    keyspace::passkey(user_id, record.id)
                        .put(&tx, record)
                        .await?;
                    change_user(&tx, user_id, |u| u.passkey_count += 1).await
                }
            },
            |_| {
                self.event(
                    Actor::User { id: user_id },
                    "auth.passkey_register",
                    Outcome::Success,
                    client,
                    details.clone(),
                )
            },
        )
        .await?;
        Ok(record)
    }

    async fn passkey_records(&self, user_id: Id) -> Result<Vec<PasskeyRecord>> {
        Ok(self
            .store
            .run(|tx| async move {
                crate::codec::read_all::<PasskeyRecord>(&tx, &keyspace::passkeys_of(user_id)).await
            })
            .await?)
    }

    /// The user's passkeys, oldest first.
    pub async fn list_passkeys(&self, user_id: Id) -> Result<Vec<PasskeyRecord>> {
        self.passkey_records(user_id).await
    }

    /// Renames one of the user's passkeys.
    pub async fn rename_passkey(&self, user_id: Id, id: Id, name: &str) -> Result<PasskeyRecord> {
        let name = crate::common::parse_name(name, "passkey name")?;
        Ok(self
            .store
            .run(|tx| {
                let name = name.clone();
                async move {
                    let key = keyspace::passkey(user_id, id);
                    let mut record = key.get(&tx).await?.ok_or_else(no_such_passkey)?;
                    record.name = name;
                    key.put(&tx, &record).await?;
                    Ok::<_, TxError<Error>>(record)
                }
            })
            .await?)
    }

    /// Deletes one of the user's passkeys, unless it is their last way to
    /// sign in (no password, no single sign-on identity, no other passkey).
    pub async fn delete_passkey(&self, user_id: Id, id: Id, client: &ClientInfo) -> Result<()> {
        let details = serde_json::json!({"passkey_id": id});
        self.audited(
            |tx| async move {
                let key = keyspace::passkey(user_id, id);
                let record = key.get(&tx).await?.ok_or_else(no_such_passkey)?;
                let user = keyspace::user(user_id)
                    .get(&tx)
                    .await?
                    .ok_or_else(|| TxError::Abort(Error::not_found("the account is gone")))?;
                let identities = crate::codec::read_all::<crate::model::accounts::SsoIdentity>(
                    &tx,
                    &keyspace::user_ssos(user_id),
                )
                .await?;
                let others = user.passkey_count.saturating_sub(1);
                if user.password_hash.is_none() && identities.is_empty() && others == 0 {
                    return Err(TxError::Abort(Error::conflict(
                        "this passkey is your last way to sign in: add another first",
                    )));
                }
                key.clear(&tx).await?;
                keyspace::passkey_credential(record.credential.cred_id())
                    .clear(&tx)
                    .await?;
                change_user(&tx, user_id, |u| {
                    u.passkey_count = u.passkey_count.saturating_sub(1)
                })
                .await
            },
            |_| {
                self.event(
                    Actor::User { id: user_id },
                    "auth.passkey_delete",
                    Outcome::Success,
                    client,
                    details.clone(),
                )
            },
        )
        .await
    }

    /// Starts a sign-in with a passkey alone; `kind` is how it will be
    /// handed back (none: a JWT).
    pub async fn start_passkey_sign_in(
        &self,
        kind: Option<SessionKind>,
    ) -> Result<Ceremony<RequestChallengeResponse>> {
        let rp = self.relying_party()?;
        let (mut options, state) = rp
            .start_discoverable_authentication()
            .map_err(|e| Error::internal(format!("passkey sign-in: {e}")))?;
        // For a "sign in with a passkey" button; a page that offers passkeys
        // in its username field's autofill sets `mediation` itself.
        options.mediation = None;
        // Nothing is stored for a start anyone may make: the state travels
        // sealed in the challenge ID, and only a sign-in that succeeds
        // leaves a record (so that its ID works once).
        let ticket = SignInTicket {
            state,
            kind,
            expires_at_ms: self.env.clock.now_millis() + super::challenges::CHALLENGE_TTL_MS,
        };
        let plain = serde_json::to_vec(&ticket).map_err(Error::internal)?;
        let sealed = self
            .keys
            .seal(self.env.random.as_ref(), &plain, TICKET_CONTEXT)?;
        let sealed = serde_json::to_vec(&sealed).map_err(Error::internal)?;
        let challenge_id = URL_SAFE_NO_PAD.encode(sealed);
        Ok(Ceremony {
            challenge_id,
            options,
        })
    }

    /// Finishes a passkey sign-in: checks the assertion against the stored
    /// credential and its sign count, and hands back a JWT or session.
    pub async fn finish_passkey_sign_in(
        &self,
        challenge_id: &str,
        credential: &PublicKeyCredential,
        client: &ClientInfo,
    ) -> Result<(User, Grant)> {
        let rp = self.relying_party()?;
        let SignInTicket {
            state,
            kind,
            expires_at_ms,
        } = self.open_ticket(challenge_id)?;
        let spent = token_hash(challenge_id);
        let credential_id = credential.get_credential_id().to_vec();
        let fail = |reason: &'static str, user: Option<Id>| async move {
            let actor = match user {
                Some(id) => Actor::User { id },
                None => Actor::Anonymous { login: None },
            };
            let details = serde_json::json!({"reason": reason});
            self.audit(
                actor,
                "auth.passkey_login",
                Outcome::Failure,
                client,
                details,
            )
            .await;
            refused(reason)
        };
        let found = self
            .store
            .run(|tx| {
                let credential_id = &credential_id;
                async move {
                    let Some(owner) = keyspace::passkey_credential(credential_id).get(&tx).await?
                    else {
                        return Ok(None);
                    };
                    let record = keyspace::passkey(owner.user_id, owner.passkey_id)
                        .get(&tx)
                        .await?;
                    Ok::<_, TxError<Error>>(record)
                }
            })
            .await?;
        let Some(mut record) = found else {
            return Err(fail("unknown_credential", None).await);
        };
        let user_id = record.user_id;
        let key: DiscoverableKey = (&record.credential).into();
        let result = match rp.finish_discoverable_authentication(credential, state, &[key]) {
            Ok(result) => result,
            Err(WebauthnError::CredentialPossibleCompromise) => {
                return Err(fail("sign_count_regression", Some(user_id)).await);
            }
            Err(_) => return Err(fail("bad_assertion", Some(user_id)).await),
        };
        let user = self.get_user(user_id).await?;
        if !user.is_active() {
            return Err(fail("account_disabled", Some(user_id)).await);
        }
        record.credential.update_credential(&result);
        record.last_used_at = Some(self.env.clock.now());
        record.sign_count = record.sign_count.max(result.counter());
        let (count, name) = (result.counter(), record.name.clone());
        let refused = self
            .store
            .run(|tx| {
                let (record, spent) = (&record, &spent);
                async move {
                    let key = keyspace::passkey(user_id, record.id);
                    let Some(stored) = key.get(&tx).await? else {
                        return Ok(Some("unknown_credential"));
                    };
                    // Two sign-ins with one assertion each: the later count wins,
                    // and a count that is not above the stored one loses.
                    if count > 0 && stored.sign_count >= count {
                        return Ok(Some("sign_count_regression"));
                    }
                    // The challenge works once.
                    let used = keyspace::auth_challenge(spent);
                    if used.get(&tx).await?.is_some() {
                        return Ok(Some("challenge_reused"));
                    }
                    let marker = Challenge {
                        purpose: ChallengePurpose::Spent,
                        expires_at_ms,
                    };
                    used.put(&tx, &marker).await?;
                    key.put(&tx, record).await?;
                    Ok::<_, TxError<Error>>(None)
                }
            })
            .await?;
        if let Some(reason) = refused {
            return Err(fail(reason, Some(user_id)).await);
        }
        self.audit(
            Actor::User { id: user_id },
            "auth.passkey_login",
            Outcome::Success,
            client,
            serde_json::json!({"passkey_id": record.id, "name": name}),
        )
        .await;
        let grant = self.grant(&user, kind, client).await?;
        Ok((user, grant))
    }
}

fn no_such_passkey() -> TxError<Error> {
    TxError::Abort(Error::new(ErrorCode::NotFound, "no such passkey"))
}
