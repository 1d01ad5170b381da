//! Single sign-on, once a provider has vouched for someone: the flow's
//! single-use record between start and callback, which account signs in
//! (linked, linked by a verified email, or created just in time), and the
//! roles its groups give it. The protocol itself — discovery, PKCE, the code
//! exchange, ID-token validation — is the relying party's, in `api`.
//!
//! Rules (SPEC §2):
//! - an identity links to an existing account only when the provider says the
//!   email is verified and it is a verified address of that account; any
//!   other match of an email is refused, never taken over;
//! - roles held through groups (`User::sso_roles`) are recomputed at every
//!   SSO sign-in; roles granted by hand are kept.

use std::collections::BTreeMap;

use super::*;
use crate::model::accounts::{SsoFlow, SsoIdentity};
pub use crate::tenancy::MappedMembership;

/// How long a started sign-in waits for its callback.
pub const SSO_FLOW_TTL_MS: i64 = 10 * 60 * 1000;

/// What configuration says of one provider, as far as accounts go.
#[derive(Debug, Clone, Default)]
pub struct SsoRules {
    /// The provider's `id`.
    pub provider: String,
    /// Group → the platform roles it gives.
    pub role_mapping: BTreeMap<String, BTreeSet<Role>>,
    /// Roles every account signing in through this provider holds.
    pub default_roles: BTreeSet<Role>,
    /// Lower-cased domains whose addresses may sign in; empty: any.
    pub allowed_email_domains: Vec<String>,
    /// Group → the organization memberships (and teams) it gives.
    pub org_mapping: BTreeMap<String, Vec<MappedMembership>>,
}

/// Who the provider says signed in (from a validated ID token or userinfo).
#[derive(Debug, Clone, Default)]
pub struct SsoProfile {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

impl SsoRules {
    /// The roles `groups` give, with the defaults.
    fn mapped_roles(&self, groups: &[String]) -> BTreeSet<Role> {
        let mut roles = self.default_roles.clone();
        for group in groups {
            if let Some(given) = self.role_mapping.get(group) {
                roles.extend(given.iter().copied());
            }
        }
        roles
    }

    /// The memberships `groups` give.
    fn mapped_memberships(&self, groups: &[String]) -> Vec<MappedMembership> {
        let mut all: Vec<MappedMembership> = Vec::new();
        for group in groups {
            for m in self.org_mapping.get(group).into_iter().flatten() {
                match all.iter_mut().find(|a| a.org_slug == m.org_slug) {
                    // Two groups into one organization: the higher role, every team.
                    Some(a) => {
                        a.role = a.role.max(m.role);
                        a.teams.extend(m.teams.iter().cloned());
                    }
                    None => all.push(m.clone()),
                }
            }
        }
        all
    }

    fn allows(&self, email: Option<&str>) -> bool {
        if self.allowed_email_domains.is_empty() {
            return true;
        }
        let Some(domain) = email.and_then(|e| e.rsplit_once('@')).map(|(_, d)| d) else {
            return false;
        };
        let domain = domain.to_ascii_lowercase();
        self.allowed_email_domains.contains(&domain)
    }
}

/// `roles` with the group-held ones recomputed: hand-granted roles stay, the
/// previous group-held ones go, the `mapped` ones come. Returns the new roles
/// and which of them are group-held.
fn remap(user: &User, mapped: &BTreeSet<Role>) -> (BTreeSet<Role>, BTreeSet<Role>) {
    let by_hand: BTreeSet<Role> = user.roles.difference(&user.sso_roles).copied().collect();
    let held: BTreeSet<Role> = mapped.difference(&by_hand).copied().collect();
    let roles = by_hand.union(&held).copied().collect();
    (roles, held)
}

impl AccountService {
    /// Keeps a started sign-in under the SHA-256 of its `state`.
    pub async fn start_sso_flow(&self, state: &str, mut flow: SsoFlow) -> Result<()> {
        flow.expires_at_ms = self.env.clock.now_millis() + SSO_FLOW_TTL_MS;
        let hash = token_hash(state);
        self.store
            .run(|tx| {
                let (hash, flow) = (&hash, &flow);
                async move { keyspace::sso_flow(hash).put(&tx, flow).await }
            })
            .await?;
        Ok(())
    }

    /// Takes the sign-in `state` names, once: a second callback with the same
    /// state, an expired one, or one started for another provider finds none.
    pub async fn take_sso_flow(&self, provider: &str, state: &str) -> Result<SsoFlow> {
        let hash = token_hash(state);
        let now = self.env.clock.now_millis();
        let flow = self
            .store
            .run(|tx| {
                let hash = &hash;
                async move { keyspace::sso_flow(hash).take(&tx).await }
            })
            .await?;
        match flow {
            Some(flow) if flow.expires_at_ms > now && flow.provider == provider => Ok(flow),
            _ => Err(Error::new(
                ErrorCode::Unauthenticated,
                "this sign-in is unknown, used or expired: start again",
            )),
        }
    }

    /// Deletes sign-ins whose callback never came.
    pub async fn prune_sso_flows(&self) -> Result<usize> {
        let now = self.env.clock.now_millis();
        crate::codec::prune_range(&self.store, keyspace::sso_flows(), |flow: &SsoFlow| {
            flow.expires_at_ms <= now
        })
        .await
    }

    /// Signs in the person `profile` describes, through the provider `rules`
    /// describe: the linked account, an account with the same verified
    /// email (linked now), or a new one. Recomputes its group-held roles and
    /// hands back a JWT (`kind` none) or a session.
    #[tracing::instrument(skip(self, rules, profile, client), fields(provider = %rules.provider))]
    pub async fn sso_sign_in(
        &self,
        rules: &SsoRules,
        profile: SsoProfile,
        kind: Option<SessionKind>,
        client: &ClientInfo,
    ) -> Result<(User, Grant)> {
        let account = if rules.allows(profile.email.as_deref()) {
            self.sso_account(rules, &profile, client).await
        } else {
            Err(Error::new(
                ErrorCode::PermissionDenied,
                format!(
                    "accounts of this email domain may not sign in through `{}`",
                    rules.provider
                ),
            ))
        };
        let user = match account {
            Ok(user) => user,
            Err(e) => {
                let details = serde_json::json!({
                    "provider": rules.provider,
                    "subject": profile.subject,
                    "email": profile.email,
                    "reason": e.message(),
                });
                let actor = Actor::Anonymous {
                    login: profile.email.clone(),
                };
                self.audit(actor, "auth.sso_login", Outcome::Failure, client, details)
                    .await;
                return Err(e);
            }
        };
        let user = self.sso_remap(rules, &profile, user, client).await?;
        let grant = self.grant(&user, kind, client).await?;
        Ok((user, grant))
    }

    /// The account the identity is linked to, linking or creating one.
    async fn sso_account(
        &self,
        rules: &SsoRules,
        profile: &SsoProfile,
        client: &ClientInfo,
    ) -> Result<User> {
        let provider = rules.provider.as_str();
        let linked = self
            .store
            .run(|tx| async move {
                keyspace::sso_identity(provider, &profile.subject)
                    .get(&tx)
                    .await
            })
            .await?;
        if let Some(identity) = linked {
            match self.get_user(identity.user_id).await {
                Ok(user) if user.status != UserStatus::Active => {
                    return Err(Error::new(
                        ErrorCode::Unauthenticated,
                        "this account is disabled",
                    ));
                }
                Ok(user) => return Ok(user),
                // The account was deleted and its removal has not reached the
                // identity yet: the person signs in as someone new.
                Err(e) if e.code() == ErrorCode::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        let Some(email) = profile.email.as_deref() else {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "the provider did not give an email address for this account",
            ));
        };
        let email = Email::parse(email)?;
        let existing = self.find_by_login(email.as_str()).await?;
        let user = match existing {
            Some(user) => {
                let verified = self.address_verified(&user, &email).await?;
                if !(profile.email_verified && verified) {
                    return Err(Error::new(
                        ErrorCode::Conflict,
                        "an account with this email already exists: sign in to it another way to link this provider (both must have verified the address)",
                    ));
                }
                user
            }
            None => {
                let display_name = display_name_for(profile.name.as_deref(), &email)?;
                let new = NewUser {
                    email: email.clone(),
                    username: None,
                    display_name,
                    password_hash: None,
                    roles: BTreeSet::from([Role::User]),
                    must_change_password: false,
                    email_verified: profile.email_verified,
                };
                let provider_name = rules.provider.clone();
                let email_text = email.as_str().to_string();
                let created = |user: &User| {
                    self.event(
                        Actor::User { id: user.id },
                        "auth.sso_register",
                        Outcome::Success,
                        client,
                        serde_json::json!({"provider": provider_name, "email": email_text}),
                    )
                };
                self.insert(new, created).await?
            }
        };
        self.link_identity(rules, profile, &user, client).await?;
        Ok(user)
    }

    /// Whether `email` is a verified address of `user`.
    async fn address_verified(&self, user: &User, email: &Email) -> Result<bool> {
        if user.email.eq_ignore_ascii_case(email.as_str()) {
            return Ok(user.email_verified);
        }
        let key = email.key();
        let address = self
            .store
            .run(|tx| {
                let key = &key;
                async move { keyspace::user_email(user.id, key).get(&tx).await }
            })
            .await?;
        Ok(address.is_some_and(|a| a.verified))
    }

    /// Links the identity to `user`, unless another sign-in linked it first.
    async fn link_identity(
        &self,
        rules: &SsoRules,
        profile: &SsoProfile,
        user: &User,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.env.clock.now();
        let identity = SsoIdentity {
            user_id: user.id,
            provider: rules.provider.clone(),
            subject: profile.subject.clone(),
            email: profile.email.clone(),
            linked_at: now,
            last_sign_in_at: now,
        };
        let event = self.event(
            Actor::User { id: user.id },
            "auth.sso_link",
            Outcome::Success,
            client,
            serde_json::json!({"provider": identity.provider, "subject": identity.subject, "email": identity.email}),
        );
        self.store
            .run(|tx| {
                let (identity, event) = (&identity, &event);
                async move {
                    let key = keyspace::sso_identity(&identity.provider, &identity.subject);
                    if let Some(existing) = key.get(&tx).await? {
                        if existing.user_id == identity.user_id {
                            return Ok(());
                        }
                        // A deleted account's link is no one's.
                        if keyspace::user(existing.user_id).get(&tx).await?.is_some() {
                            return Err(TxError::Abort(Error::conflict(
                                "this identity was just linked to another account",
                            )));
                        }
                    }
                    key.put(&tx, identity).await?;
                    keyspace::user_sso(identity.user_id, &identity.provider, &identity.subject)
                        .put(&tx, identity)
                        .await?;
                    self.audit.stage(&tx, event).await
                }
            })
            .await?;
        Ok(())
    }

    /// Recomputes the group-held roles and notes the sign-in.
    async fn sso_remap(
        &self,
        rules: &SsoRules,
        profile: &SsoProfile,
        user: User,
        client: &ClientInfo,
    ) -> Result<User> {
        let mapped = rules.mapped_roles(&profile.groups);
        let memberships = rules.mapped_memberships(&profile.groups);
        let now = self.env.clock.now();
        let provider = rules.provider.as_str();
        let subject = profile.subject.as_str();
        let user =
            self.store
                .run(|tx| {
                    let (mapped, memberships) = (&mapped, &memberships);
                    async move {
                        let key = keyspace::user(user.id);
                        let mut user = key.get(&tx).await?.ok_or_else(|| {
                            TxError::Abort(Error::not_found("the account is gone"))
                        })?;
                        let before = user.roles.clone();
                        // A provider account holds `provider` alone: groups give it nothing.
                        if !user.is_provider_account() {
                            let (roles, held) = remap(&user, mapped);
                            if roles != user.roles || held != user.sso_roles {
                                user.roles = roles;
                                user.sso_roles = held;
                                user.updated_at = now;
                                key.put(&tx, &user).await?;
                            }
                        }
                        if before != user.roles {
                            let event = self.event(
                                Actor::User { id: user.id },
                                "auth.sso_roles_changed",
                                Outcome::Success,
                                client,
                                serde_json::json!({
                                    "provider": provider,
                                    "before": before,
                                    "after": user.roles,
                                }),
                            );
                            self.audit.stage(&tx, &event).await?;
                        }
                        if !user.is_provider_account() {
                            let changes = crate::tenancy::apply_sso_memberships(
                                &tx,
                                user.id,
                                provider,
                                memberships,
                                now,
                            )
                            .await?;
                            if !changes.is_empty() {
                                let event = self.event(
                                    Actor::User { id: user.id },
                                    "auth.sso_memberships_changed",
                                    Outcome::Success,
                                    client,
                                    serde_json::json!({"provider": provider, "changes": changes}),
                                );
                                self.audit.stage(&tx, &event).await?;
                            }
                        }
                        for key in [
                            keyspace::sso_identity(provider, subject),
                            keyspace::user_sso(user.id, provider, subject),
                        ] {
                            if let Some(mut identity) = key.get(&tx).await? {
                                identity.last_sign_in_at = now;
                                identity.email = profile.email.clone();
                                key.put(&tx, &identity).await?;
                            }
                        }
                        let event = self.event(
                            Actor::User { id: user.id },
                            "auth.sso_login",
                            Outcome::Success,
                            client,
                            serde_json::json!({"provider": provider, "subject": subject}),
                        );
                        self.audit.stage(&tx, &event).await?;
                        Ok::<_, TxError<Error>>(user)
                    }
                })
                .await?;
        Ok(user)
    }

    /// The single sign-on identities linked to an account.
    pub async fn sso_identities(&self, user_id: Id) -> Result<Vec<SsoIdentity>> {
        let (identities, _) =
            crate::codec::read_page(&self.store, &keyspace::user_ssos(user_id), 100).await?;
        Ok(identities)
    }
}

impl AccountService {
    /// Unlinks the account's identities at `provider`, unless they are its
    /// last way to sign in (no password, passkey or other identity).
    pub async fn unlink_sso(&self, user_id: Id, provider: &str, client: &ClientInfo) -> Result<()> {
        let event = self.event(
            Actor::User { id: user_id },
            "auth.sso_unlink",
            Outcome::Success,
            client,
            serde_json::json!({"provider": provider}),
        );
        self.store
            .run(|tx| {
                let event = &event;
                async move {
                    let user = keyspace::user(user_id).get(&tx).await?.ok_or_else(|| {
                        TxError::Abort(Error::not_found("the account is gone"))
                    })?;
                    let linked =
                        crate::codec::read_all::<SsoIdentity>(&tx, &keyspace::user_ssos(user_id))
                            .await?;
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        linked.into_iter().partition(|i| i.provider == provider);
                    if gone.is_empty() {
                        return Err(TxError::Abort(Error::not_found(
                            "no identity of this provider is linked to your account",
                        )));
                    }
                    if user.password_hash.is_none() && kept.is_empty() && user.passkey_count == 0 {
                        return Err(TxError::Abort(Error::conflict(
                            "this is your last way to sign in: set a password, register a passkey or link another provider first",
                        )));
                    }
                    for identity in &gone {
                        keyspace::sso_identity(&identity.provider, &identity.subject)
                            .clear(&tx)
                            .await?;
                        keyspace::user_sso(user_id, &identity.provider, &identity.subject)
                            .clear(&tx)
                            .await?;
                    }
                    self.audit.stage(&tx, event).await
                }
            })
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(roles: &[Role], sso: &[Role]) -> User {
        User {
            sso_roles: sso.iter().copied().collect(),
            ..User::new(
                Id(1),
                "a@example.com".into(),
                "a".into(),
                roles.iter().copied().collect(),
                chrono::Utc::now(),
            )
        }
    }

    #[test]
    fn group_roles_are_recomputed_and_roles_granted_by_hand_kept() {
        let mapped = BTreeSet::from([Role::User, Role::Admin]);
        // First sign-in: `user` was there by hand, `admin` comes from a group.
        let (roles, held) = remap(&user(&[Role::User], &[]), &mapped);
        assert_eq!(roles, BTreeSet::from([Role::User, Role::Admin]));
        assert_eq!(held, BTreeSet::from([Role::Admin]));
        // Out of the admins' group: `admin` goes.
        let now = user(&[Role::User, Role::Admin], &[Role::Admin]);
        let (roles, held) = remap(&now, &BTreeSet::from([Role::User]));
        assert_eq!(roles, BTreeSet::from([Role::User]));
        assert!(held.is_empty());
        // `request_viewer` granted by hand stays whatever the groups say.
        let now = user(
            &[Role::User, Role::RequestViewer, Role::Admin],
            &[Role::Admin],
        );
        let (roles, _) = remap(&now, &BTreeSet::new());
        assert_eq!(roles, BTreeSet::from([Role::User, Role::RequestViewer]));
    }

    #[test]
    fn groups_map_to_roles_and_domains_are_checked() {
        let rules = SsoRules {
            provider: "corp".into(),
            role_mapping: BTreeMap::from([
                ("litemaas-admins".to_string(), BTreeSet::from([Role::Admin])),
                (
                    "litemaas-readonly".to_string(),
                    BTreeSet::from([Role::AdminReadonly]),
                ),
            ]),
            default_roles: BTreeSet::from([Role::User]),
            allowed_email_domains: vec!["example.com".into()],
            org_mapping: Default::default(),
        };
        assert_eq!(
            rules.mapped_roles(&["litemaas-admins".into(), "other".into()]),
            BTreeSet::from([Role::User, Role::Admin])
        );
        assert!(rules.allows(Some("Ada@EXAMPLE.com")));
        assert!(!rules.allows(Some("ada@example.com.evil.org")));
        assert!(!rules.allows(None));
    }
}
