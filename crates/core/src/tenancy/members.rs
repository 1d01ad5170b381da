//! Members of an organization: listing, roles, removal and ownership
//! transfer. The last owner cannot leave or be demoted.

use super::*;

impl TenancyService {
    /// A page of an organization's members, in user-ID order, read from
    /// storage after the cursor (organizations can be very large).
    pub async fn list_members(
        &self,
        actor: &User,
        org_id: Id,
        page: &PageRequest,
    ) -> Result<Page<MemberView>> {
        let after: Option<Id> = page.after_key()?;
        let limit = page.limit;
        read_in_org(&self.store, actor, org_id, |tx| async move {
            let after = after.map(|user| keyspace::org_member(org_id, user));
            let (memberships, more) = crate::codec::read_page_after::<Membership>(
                &tx,
                &keyspace::org_members(org_id),
                after.as_ref().map(|k| k.as_bytes()),
                limit,
            )
            .await?;
            let page = Page::after_read(memberships, more, |m| m.user_id);
            let mut items = Vec::with_capacity(page.items.len());
            for m in page.items {
                if let Some(user) = keyspace::user(m.user_id).get(&tx).await? {
                    items.push(MemberView {
                        membership: m,
                        email: user.email,
                        display_name: user.display_name,
                    });
                }
            }
            let next_cursor = page.next_cursor;
            Ok::<_, TxError<Error>>(Page { items, next_cursor })
        })
        .await
    }

    /// Changes a member's role. Owners and admins manage members, but only an
    /// owner makes or unmakes owners, and the last owner keeps the role.
    pub async fn set_member_role(
        &self,
        actor: &User,
        org_id: Id,
        user_id: Id,
        role: OrgRole,
        client: &ClientInfo,
    ) -> Result<Membership> {
        let (_, after) = self
            .audited(
                |tx| async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    access.require(OrgAction::ManageMembers)?;
                    let key = keyspace::org_member(org_id, user_id);
                    let Some(mut member) = key.get(&tx).await? else {
                        return abort(Error::not_found("member"));
                    };
                    let before = member.role;
                    let touches_owner = before == OrgRole::Owner || role == OrgRole::Owner;
                    if touches_owner && !access.is_owner() && !access.platform_admin {
                        return abort(Error::permission_denied(
                            "only an owner makes or unmakes owners",
                        ));
                    }
                    if before == OrgRole::Owner
                        && role != OrgRole::Owner
                        && owner_count(&tx, org_id).await? == 1
                    {
                        return abort(Error::conflict(
                            "the last owner cannot be demoted; transfer ownership first",
                        ));
                    }
                    member.role = role;
                    key.put(&tx, &member).await?;
                    Ok((before, member))
                },
                |(before, _)| {
                    let details = serde_json::json!({"from": before.as_str(), "to": role.as_str()});
                    self.event(
                        actor,
                        client,
                        Event {
                            action: "orgs.members.set_role",
                            org: Some(org_id),
                            target: Some(("user", user_id)),
                            details,
                        },
                    )
                },
            )
            .await?;
        Ok(after)
    }

    /// Removes a member, or — when `user_id` is the caller — leaves. Admins
    /// cannot remove owners; the last owner can neither leave nor be removed.
    pub async fn remove_member(
        &self,
        actor: &User,
        org_id: Id,
        user_id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        let leaving = actor.id == user_id;
        let now = self.env.clock.now();
        self.audited(
            |tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                let Some(member) = keyspace::org_member(org_id, user_id).get(&tx).await? else {
                    return abort(Error::not_found("member"));
                };
                if !leaving {
                    access.require(OrgAction::ManageMembers)?;
                    if member.role == OrgRole::Owner && !access.is_owner() && !access.platform_admin
                    {
                        return abort(Error::permission_denied("only an owner removes an owner"));
                    }
                } else if access.org.status == OrgStatus::Suspended {
                    access.require(OrgAction::ManageMembers)?;
                }
                if member.role == OrgRole::Owner && owner_count(&tx, org_id).await? == 1 {
                    return abort(Error::conflict(
                        "the last owner can neither leave nor be removed; transfer ownership first",
                    ));
                }
                remove_membership(&tx, org_id, user_id, now).await
            },
            |_| {
                let action = if leaving {
                    "orgs.members.leave"
                } else {
                    "orgs.members.remove"
                };
                self.event(
                    actor,
                    client,
                    Event {
                        action,
                        org: Some(org_id),
                        target: Some(("user", user_id)),
                        details: serde_json::json!({}),
                    },
                )
            },
        )
        .await?;
        Ok(())
    }

    /// An owner hands ownership to another member and becomes an admin.
    pub async fn transfer_ownership(
        &self,
        actor: &User,
        org_id: Id,
        to: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.audited(
            |tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                if !access.is_owner() {
                    // Members may know the organization; others already got 404.
                    return abort(Error::permission_denied(
                        "only an owner transfers ownership",
                    ));
                }
                access.require(OrgAction::Delete)?;
                if to == actor.id {
                    return abort(Error::invalid_input("you already own this organization"));
                }
                let key = keyspace::org_member(org_id, to);
                let Some(mut target) = key.get(&tx).await? else {
                    return abort(Error::not_found("member"));
                };
                target.role = OrgRole::Owner;
                key.put(&tx, &target).await?;
                let own = keyspace::org_member(org_id, actor.id);
                if let Some(mut me) = own.get(&tx).await? {
                    me.role = OrgRole::Admin;
                    own.put(&tx, &me).await?;
                }
                Ok::<_, TxError<Error>>(())
            },
            |_| {
                self.event(
                    actor,
                    client,
                    Event {
                        action: "orgs.transfer",
                        org: Some(org_id),
                        target: Some(("user", to)),
                        details: serde_json::json!({"from": actor.id}),
                    },
                )
            },
        )
        .await?;
        Ok(())
    }
}
