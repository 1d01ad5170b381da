//! Invitations: sent by email with a single-use token (stored hashed), listed,
//! revoked, accepted or declined by the invited address.

use super::*;

impl TenancyService {
    /// Invites an email address into the organization; the token goes out
    /// through the email outbox in the same transaction. Admins invite as
    /// member or admin, owners as any role, delegates (`invite_members`) as member.
    pub async fn invite(
        &self,
        actor: &User,
        org_id: Id,
        email: &str,
        role: OrgRole,
        client: &ClientInfo,
    ) -> Result<SentInvitation> {
        let email = Email::parse(email)?;
        let token = self.env.random.token();
        let now = self.env.clock.now();
        let invitation = Invitation {
            id: self.env.ids.next_id(),
            org_id,
            email: email.as_str().to_string(),
            role,
            invited_by: actor.id,
            status: InvitationStatus::Pending,
            token_hash: token_hash(&token),
            created_at: now,
            expires_at: now + chrono::Duration::days(INVITATION_TTL_DAYS),
        };
        let env = &self.env;
        let console_url = self.console_url.as_deref();
        self
            .audited(
                |tx| {
                let (invitation, email, token) = (&invitation, &email, &token);
                async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    access.require(OrgAction::Invite)?;
                    let allowed = match role {
                        OrgRole::Owner => access.is_owner() || access.platform_admin,
                        OrgRole::Admin => access.allows(OrgAction::ManageMembers),
                        OrgRole::Member => true,
                    };
                    if !allowed {
                        return abort(Error::permission_denied(format!(
                            "your role here cannot invite as {}",
                            role.as_str()
                        )));
                    }
                    if let Some(existing) = keyspace::user_by_email(&email.key()).get(&tx).await?
                        && keyspace::org_member(org_id, existing.id)
                            .get(&tx)
                            .await?
                            .is_some()
                    {
                        return abort(Error::conflict("this person is already a member"));
                    }
                    let pending = read_all::<Invitation>(&tx, &keyspace::invitations(org_id))
                        .await?
                        .into_iter()
                        .any(|i| {
                            i.status_at(now) == InvitationStatus::Pending
                                && i.email.eq_ignore_ascii_case(email.as_str())
                        });
                    if pending {
                        return abort(Error::conflict(
                            "an invitation to this address is already pending",
                        ));
                    }
                    keyspace::invitation(org_id, invitation.id)
                        .put(&tx, invitation)
                        .await?;
                    keyspace::invitation_by_token(&invitation.token_hash)
                        .put(
                            &tx,
                            &InvitationRef {
                                org_id,
                                id: invitation.id,
                            },
                        )
                        .await?;
                    let link = console_url
                        .map(|base| format!("Open {base}/invitation?token={token}\nor use the token:\n\n"))
                        .unwrap_or_default();
                    let body = format!(
                        "Hello,\n\n{} invited you to join the organization {} on Gatehouse as {}.\nThe invitation is valid for {INVITATION_TTL_DAYS} days.\n\n{link}token: {token}\n\n(sign in, then POST /api/v1/invitations/accept with {{\"token\": \"...\"}}; POST /api/v1/invitations/decline to decline)\n",
                        actor.display_name,
                        access.org.name,
                        role.as_str()
                    );
                    crate::email::enqueue(
                        &tx,
                        env,
                        email.as_str(),
                        &format!("Invitation to {}", access.org.name),
                        &body,
                    )
                    .await
                }
            },
            |_| {
                let details = serde_json::json!({"email": invitation.email, "role": role.as_str()});
                let event = Event {
                    action: "orgs.invitations.create",
                    org: Some(org_id),
                    target: Some(("invitation", invitation.id)),
                    details,
                };
                self.event(actor, client, event)
            },
        )
            .await?;
        Ok(SentInvitation { invitation, token })
    }

    /// A page of an organization's invitations, oldest first (those who may
    /// invite), read from storage after the cursor.
    pub async fn list_invitations(
        &self,
        actor: &User,
        org_id: Id,
        page: &PageRequest,
    ) -> Result<Page<Invitation>> {
        let now = self.env.clock.now();
        let after: Option<Id> = page.after_key()?;
        let limit = page.limit;
        let (mut items, more) = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                if !access.allows(OrgAction::Invite) && !access.platform_reader {
                    access.require(OrgAction::Invite)?;
                }
                let after = after.map(|id| keyspace::invitation(org_id, id));
                crate::codec::read_page_after::<Invitation>(
                    &tx,
                    &keyspace::invitations(org_id),
                    after.as_ref().map(|k| k.as_bytes()),
                    limit,
                )
                .await
            })
            .await?;
        for i in &mut items {
            i.status = i.status_at(now);
        }
        Ok(Page::after_read(items, more, |i| i.id))
    }

    /// Revokes a pending invitation.
    pub async fn revoke_invitation(
        &self,
        actor: &User,
        org_id: Id,
        id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.env.clock.now();
        self.audited(
            |tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                access.require(OrgAction::Invite)?;
                let key = keyspace::invitation(org_id, id);
                let Some(mut invitation) = key.get(&tx).await? else {
                    return abort(Error::not_found("invitation"));
                };
                if invitation.status_at(now) != InvitationStatus::Pending {
                    return abort(Error::conflict("this invitation is no longer pending"));
                }
                invitation.status = InvitationStatus::Revoked;
                keyspace::invitation_by_token(&invitation.token_hash)
                    .clear(&tx)
                    .await?;
                key.put(&tx, &invitation).await
            },
            |_| {
                self.event(
                    actor,
                    client,
                    Event {
                        action: "orgs.invitations.revoke",
                        org: Some(org_id),
                        target: Some(("invitation", id)),
                        details: serde_json::json!({}),
                    },
                )
            },
        )
        .await?;
        Ok(())
    }

    /// Finds the pending invitation a token stands for.
    pub(super) async fn pending_invitation(
        tx: &Tx,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<Invitation, TxError<Error>> {
        let invalid = || {
            TxError::Abort(Error::invalid_input(
                "this invitation is invalid, used or expired",
            ))
        };
        let found = keyspace::invitation_by_token(&token_hash(token.trim()))
            .get(tx)
            .await?
            .ok_or_else(invalid)?;
        let invitation = keyspace::invitation(found.org_id, found.id)
            .get(tx)
            .await?
            .ok_or_else(invalid)?;
        if invitation.status_at(now) != InvitationStatus::Pending {
            return Err(invalid());
        }
        Ok(invitation)
    }

    /// Accepts an invitation sent to one of the caller's addresses.
    pub async fn accept_invitation(
        &self,
        actor: &User,
        token: &str,
        client: &ClientInfo,
    ) -> Result<Membership> {
        require_user_role(actor)?;
        let now = self.env.clock.now();
        let (_, membership) = self
            .audited(
                |tx| async move {
                    let mut invitation = Self::pending_invitation(&tx, token, now).await?;
                    let address = invitation.email.to_lowercase();
                    let own = actor.email.to_lowercase() == address
                        || keyspace::user_email(actor.id, &address)
                            .get(&tx)
                            .await?
                            .is_some();
                    if !own {
                        return abort(Error::permission_denied(
                            "this invitation is for another email address; add and verify it first",
                        ));
                    }
                    let org = keyspace::org(invitation.org_id).get(&tx).await?;
                    if org.is_none_or(|o| o.status == OrgStatus::Suspended) {
                        return abort(Error::permission_denied(
                            "this organization is not taking new members",
                        ));
                    }
                    if keyspace::org_member(invitation.org_id, actor.id)
                        .get(&tx)
                        .await?
                        .is_some()
                    {
                        return abort(Error::conflict("you are already a member"));
                    }
                    let membership = Membership {
                        org_id: invitation.org_id,
                        user_id: actor.id,
                        role: invitation.role,
                        joined_at: now,
                        sso_provider: None,
                    };
                    put_membership(&tx, &membership).await?;
                    invitation.status = InvitationStatus::Accepted;
                    keyspace::invitation_by_token(&invitation.token_hash)
                        .clear(&tx)
                        .await?;
                    keyspace::invitation(invitation.org_id, invitation.id)
                        .put(&tx, &invitation)
                        .await?;
                    Ok((invitation, membership))
                },
                |(invitation, _)| {
                    self.event(
                        actor,
                        client,
                        Event {
                            action: "orgs.invitations.accept",
                            org: Some(invitation.org_id),
                            target: Some(("invitation", invitation.id)),
                            details: serde_json::json!({"role": invitation.role.as_str()}),
                        },
                    )
                },
            )
            .await?;
        Ok(membership)
    }

    /// Declines an invitation: the token alone suffices, so people without an
    /// account can decline too.
    pub async fn decline_invitation(&self, token: &str, client: &ClientInfo) -> Result<()> {
        let now = self.env.clock.now();
        let invitation = self
            .store
            .run(|tx| async move {
                let mut invitation = Self::pending_invitation(&tx, token, now).await?;
                invitation.status = InvitationStatus::Declined;
                keyspace::invitation_by_token(&invitation.token_hash)
                    .clear(&tx)
                    .await?;
                keyspace::invitation(invitation.org_id, invitation.id)
                    .put(&tx, &invitation)
                    .await?;
                Ok::<_, TxError<Error>>(invitation)
            })
            .await?;
        self.audit
            .record(NewEvent {
                actor: Actor::Anonymous {
                    login: Some(invitation.email.clone()),
                },
                action: "orgs.invitations.decline",
                outcome: Outcome::Success,
                target: Some(("invitation", invitation.id.to_string())),
                organization: Some(invitation.org_id),
                client,
                details: serde_json::json!({}),
            })
            .await;
        Ok(())
    }
}
