//! Tenancy: organizations, their members and invitations, and teams (SPEC §3).
//!
//! Every operation inside an organization first works out the caller's
//! [`OrgAccess`] in the same transaction as its reads and writes, so a role
//! change or removal counts from the next request on. Someone who is neither a
//! member nor a platform reader gets `not_found` for anything inside, never
//! `permission_denied`, so the IDs of other tenants reveal nothing.

use crate::model::tenancy as model;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_storage::{KeyRange, RangeOptions, Store, Tx, TxError};

use self::model::{
    Invitation, InvitationRef, InvitationStatus, Membership, OrgRef, OrgRole, OrgStatus,
    Organization, Team, TeamMember, TeamPermission, TeamRef, TeamRole, UserOrgRef, UserTeamRef,
};
use crate::access::{OrgAccess, OrgAction, load_access};
use crate::audit::{Actor, AuditLog, NewEvent, Outcome};
use crate::codec::{abort, decode_values, read_all};
use crate::common::parse_description;
use crate::common::token_hash;
use crate::model::accounts::{Email, User};
use crate::model::sessions::ClientInfo;
use crate::model::vaults::SubjectKind;
use crate::{Env, Error, Id, Result, keyspace};

/// How long an invitation can be accepted.
pub const INVITATION_TTL_DAYS: i64 = 7;

/// A member with the account details a member list shows.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub membership: Membership,
    pub email: String,
    pub display_name: String,
}

/// A new team; `permissions` and `allowed_models` need owner or admin.
#[derive(Debug, Clone, Default)]
pub struct TeamSpec {
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: Option<BTreeSet<TeamPermission>>,
    pub allowed_models: Option<Vec<String>>,
    /// `Some(None)` removes the budget.
    pub budget: Option<Option<crate::model::keys::Budget>>,
}

/// Changes to an organization; `None` keeps a field.
#[derive(Debug, Clone, Default)]
pub struct OrgChange {
    pub name: Option<String>,
    /// Keep gateway request and response bodies of keys bound to it.
    pub capture_bodies: Option<bool>,
}

/// A user's organizations and teams, for internal services.
#[derive(Debug, Clone, Default)]
pub struct Memberships {
    pub organizations: Vec<(Organization, OrgRole)>,
    pub teams: Vec<(Team, TeamRole)>,
}

/// What a named permission is checked on.
#[derive(Debug, Clone, Copy)]
pub enum Resource {
    Organization(Id),
    Team(Id),
}

/// A newly sent invitation with its token (mailed, and returned once).
#[derive(Debug, Clone)]
pub struct SentInvitation {
    pub invitation: Invitation,
    pub token: String,
}

/// Adds a membership and its index entry.
async fn put_membership(tx: &Tx, membership: &Membership) -> Result<(), TxError<Error>> {
    keyspace::org_member(membership.org_id, membership.user_id)
        .put(tx, membership)
        .await?;
    keyspace::user_org(membership.user_id, membership.org_id)
        .put(
            tx,
            &UserOrgRef {
                org_id: membership.org_id,
            },
        )
        .await
}

/// Removes a user from an organization and from its teams.
async fn remove_membership(
    tx: &Tx,
    org_id: Id,
    user_id: Id,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    crate::vaults::forget_subject(tx, org_id, SubjectKind::User, user_id, now).await?;
    keyspace::org_member(org_id, user_id).clear(tx).await?;
    keyspace::user_org(user_id, org_id).clear(tx).await?;
    for entry in read_all::<UserTeamRef>(tx, &keyspace::user_teams(user_id)).await? {
        if entry.org_id == org_id {
            keyspace::team_member(entry.team_id, user_id)
                .clear(tx)
                .await?;
            keyspace::user_team(user_id, entry.team_id)
                .clear(tx)
                .await?;
        }
    }
    Ok(())
}

async fn owner_count(tx: &Tx, org_id: Id) -> Result<usize, TxError<Error>> {
    Ok(read_all::<Membership>(tx, &keyspace::org_members(org_id))
        .await?
        .iter()
        .filter(|m| m.role == OrgRole::Owner)
        .count())
}

/// Deletes a team with its memberships.
async fn delete_team_records(
    tx: &Tx,
    team: &Team,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    crate::vaults::forget_subject(tx, team.org_id, SubjectKind::Team, team.id, now).await?;
    for member in read_all::<TeamMember>(tx, &keyspace::team_members(team.id)).await? {
        keyspace::team_member(team.id, member.user_id)
            .clear(tx)
            .await?;
        keyspace::user_team(member.user_id, team.id)
            .clear(tx)
            .await?;
    }
    keyspace::team_by_id(team.id).clear(tx).await?;
    keyspace::team(team.org_id, team.id).clear(tx).await
}

/// Deletes an organization with everything in it.
async fn delete_org_records(tx: &Tx, org_id: Id, now: DateTime<Utc>) -> Result<(), TxError<Error>> {
    crate::vaults::delete_org_vaults(tx, org_id, now).await?;
    for team in read_all::<Team>(tx, &keyspace::teams(org_id)).await? {
        delete_team_records(tx, &team, now).await?;
    }
    for member in read_all::<Membership>(tx, &keyspace::org_members(org_id)).await? {
        keyspace::org_member(org_id, member.user_id)
            .clear(tx)
            .await?;
        keyspace::user_org(member.user_id, org_id).clear(tx).await?;
    }
    for invitation in read_all::<Invitation>(tx, &keyspace::invitations(org_id)).await? {
        keyspace::invitation_by_token(&invitation.token_hash)
            .clear(tx)
            .await?;
        keyspace::invitation(org_id, invitation.id)
            .clear(tx)
            .await?;
    }
    if let Some(org) = keyspace::org(org_id).get(tx).await? {
        keyspace::org_by_slug(&org.slug).clear(tx).await?;
    }
    keyspace::org(org_id).clear(tx).await
}

/// Creates a user's personal organization inside the transaction that creates the user.
pub(crate) async fn create_personal_org(
    tx: &Tx,
    org_id: Id,
    user: &User,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    // Named after the account's email, which is unique; should an older
    // organization hold that name, the user ID makes it unique.
    let mut name = user.email.to_lowercase();
    let mut slug = crate::common::slugify(&name).map_err(TxError::Abort)?;
    if keyspace::org_by_slug(&slug).get(tx).await?.is_some() {
        name = format!("{name} ({})", user.id);
        slug = crate::common::slugify(&name).map_err(TxError::Abort)?;
    }
    let org = Organization {
        id: org_id,
        name,
        slug,
        personal: true,
        status: OrgStatus::Active,
        capture_bodies: false,
        created_at: now,
        updated_at: now,
    };
    claim_slug(tx, &org.slug, org_id).await?;
    keyspace::org(org_id).put(tx, &org).await?;
    put_membership(
        tx,
        &Membership {
            org_id,
            user_id: user.id,
            role: OrgRole::Owner,
            joined_at: now,
        },
    )
    .await
}

/// Takes `slug` for `org_id`; `conflict` if another organization holds it.
async fn claim_slug(tx: &Tx, slug: &str, org_id: Id) -> Result<(), TxError<Error>> {
    let key = keyspace::org_by_slug(slug);
    match key.get(tx).await? {
        Some(held) if held.org_id != org_id => abort(Error::conflict(
            "an organization with this name exists; choose another",
        )),
        Some(_) => Ok(()),
        None => key.put(tx, &OrgRef { org_id }).await,
    }
}

/// Takes a user out of every organization and team, inside the transaction
/// that deletes the account. A personal organization the user alone owns is
/// deleted with them; any other organization they alone own is a `conflict`
/// (ownership must be transferred first). Returns the deleted organizations.
pub(crate) async fn remove_user_everywhere(
    tx: &Tx,
    user_id: Id,
    now: DateTime<Utc>,
) -> Result<Vec<Id>, TxError<Error>> {
    let mut deleted = Vec::new();
    for entry in read_all::<UserOrgRef>(tx, &keyspace::user_orgs(user_id)).await? {
        let Some(org) = keyspace::org(entry.org_id).get(tx).await? else {
            continue;
        };
        let role = keyspace::org_member(org.id, user_id)
            .get(tx)
            .await?
            .map(|m| m.role);
        let last_owner = role == Some(OrgRole::Owner) && owner_count(tx, org.id).await? == 1;
        if last_owner && org.personal {
            delete_org_records(tx, org.id, now).await?;
            deleted.push(org.id);
        } else if last_owner {
            return abort(Error::conflict(format!(
                "this user is the last owner of organization {} ({}); transfer its ownership or delete it first",
                org.name, org.id
            )));
        } else {
            remove_membership(tx, org.id, user_id, now).await?;
        }
    }
    Ok(deleted)
}

pub struct TenancyService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
}

/// The audit record of one successful write.
struct Event<'a> {
    action: &'a str,
    org: Option<Id>,
    target: Option<(&'a str, Id)>,
    details: serde_json::Value,
}

fn require_user_role(user: &User) -> Result<()> {
    if user.is_provider_account() {
        return Err(Error::permission_denied(
            "provider accounts manage their provider credentials only",
        ));
    }
    Ok(())
}

impl TenancyService {
    pub fn new(store: Store, env: Env, audit: Arc<AuditLog>) -> Self {
        TenancyService { store, env, audit }
    }

    async fn audit(&self, actor: &User, client: &ClientInfo, event: Event<'_>) {
        let mut record = NewEvent::by_user(actor, event.action, client)
            .in_org(event.org)
            .with(event.details);
        if let Some((kind, id)) = event.target {
            record = record.on(kind, id);
        }
        self.audit.record(record).await;
    }

    // ---- organizations ----

    /// Any account holding `user` creates organizations and owns them.
    pub async fn create_org(
        &self,
        actor: &User,
        name: &str,
        client: &ClientInfo,
    ) -> Result<Organization> {
        require_user_role(actor)?;
        let now = self.env.clock.now();
        let name = crate::common::parse_name(name, "organization")?;
        let org = Organization {
            id: self.env.ids.next_id(),
            slug: crate::common::slugify(&name)?,
            name,
            personal: false,
            status: OrgStatus::Active,
            capture_bodies: false,
            created_at: now,
            updated_at: now,
        };
        self.store
            .run(|tx| {
                let org = &org;
                async move {
                    claim_slug(&tx, &org.slug, org.id).await?;
                    keyspace::org(org.id).put(&tx, org).await?;
                    let owner = Membership {
                        org_id: org.id,
                        user_id: actor.id,
                        role: OrgRole::Owner,
                        joined_at: now,
                    };
                    put_membership(&tx, &owner).await
                }
            })
            .await?;
        let details = serde_json::json!({"name": org.name});
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.create",
                org: Some(org.id),
                target: Some(("organization", org.id)),
                details,
            },
        )
        .await;
        Ok(org)
    }

    /// The caller's access to an organization (its record and their role).
    pub async fn access(&self, actor: &User, org_id: Id) -> Result<OrgAccess> {
        Ok(self
            .store
            .run(|tx| async move { load_access(&tx, actor, org_id).await })
            .await?)
    }

    /// The organizations `user_id` belongs to, with their role, by ID.
    pub async fn orgs_of(&self, user_id: Id) -> Result<Vec<(Organization, OrgRole)>> {
        Ok(self
            .store
            .run(|tx| async move {
                let mut found = Vec::new();
                for entry in read_all::<UserOrgRef>(&tx, &keyspace::user_orgs(user_id)).await? {
                    let org = keyspace::org(entry.org_id).get(&tx).await?;
                    let member = keyspace::org_member(entry.org_id, user_id).get(&tx).await?;
                    if let (Some(org), Some(member)) = (org, member) {
                        found.push((org, member.role));
                    }
                }
                Ok::<_, TxError<Error>>(found)
            })
            .await?)
    }

    /// Every organization, in ID order from after `after`, for platform readers.
    pub async fn list_all_orgs(
        &self,
        viewer: &User,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<Organization>> {
        if !viewer.is_platform_reader() {
            return Err(Error::permission_denied(
                "only platform admins list every organization",
            ));
        }
        let all = keyspace::orgs();
        let range = match after {
            Some(id) => KeyRange::new(
                gatehouse_storage::key_after(keyspace::org(id).as_bytes()),
                all.end.clone(),
            ),
            None => all,
        };
        let limit = limit.clamp(1, 200);
        let page = self
            .store
            .run(|tx| {
                let range = &range;
                async move {
                    Ok::<_, TxError<Error>>(tx.get_range(range, RangeOptions::limit(limit)).await?)
                }
            })
            .await?;
        decode_values(&page.entries)
    }

    /// Renames an organization (owners and admins).
    pub async fn update_org(
        &self,
        actor: &User,
        org_id: Id,
        change: OrgChange,
        client: &ClientInfo,
    ) -> Result<Organization> {
        let named = change
            .name
            .as_deref()
            .map(|n| {
                let name = crate::common::parse_name(n, "organization")?;
                let slug = crate::common::slugify(&name)?;
                Ok::<_, Error>((name, slug))
            })
            .transpose()?;
        let now = self.env.clock.now();
        let org = self
            .store
            .run(|tx| {
                let named = &named;
                async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    access.require(OrgAction::Update)?;
                    let mut org = access.org;
                    if let Some((name, slug)) = named {
                        if &org.slug != slug {
                            claim_slug(&tx, slug, org_id).await?;
                            keyspace::org_by_slug(&org.slug).clear(&tx).await?;
                        }
                        org.name = name.clone();
                        org.slug = slug.clone();
                    }
                    if let Some(capture) = change.capture_bodies {
                        org.capture_bodies = capture;
                    }
                    org.updated_at = now;
                    keyspace::org(org_id).put(&tx, &org).await?;
                    Ok::<_, TxError<Error>>(org)
                }
            })
            .await?;
        let details = serde_json::json!({"name": org.name, "capture_bodies": org.capture_bodies});
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.update",
                org: Some(org_id),
                target: Some(("organization", org_id)),
                details,
            },
        )
        .await;
        Ok(org)
    }

    /// Deletes an organization with its members, invitations and teams
    /// (owners, platform admins). A personal organization goes only with its user.
    pub async fn delete_org(&self, actor: &User, org_id: Id, client: &ClientInfo) -> Result<()> {
        let now = self.env.clock.now();
        let org = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                access.require(OrgAction::Delete)?;
                if access.org.personal {
                    return abort(Error::conflict(
                        "a personal organization is deleted only with its user",
                    ));
                }
                delete_org_records(&tx, org_id, now).await?;
                Ok(access.org)
            })
            .await?;
        let details = serde_json::json!({"name": org.name});
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.delete",
                org: Some(org_id),
                target: Some(("organization", org_id)),
                details,
            },
        )
        .await;
        Ok(())
    }

    /// Suspends or resumes an organization (platform admins).
    pub async fn set_org_status(
        &self,
        actor: &User,
        org_id: Id,
        status: OrgStatus,
        client: &ClientInfo,
    ) -> Result<Organization> {
        let now = self.env.clock.now();
        let org = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                access.require(OrgAction::Suspend)?;
                let mut org = access.org;
                org.status = status;
                org.updated_at = now;
                keyspace::org(org_id).put(&tx, &org).await?;
                Ok::<_, TxError<Error>>(org)
            })
            .await?;
        let action = match status {
            OrgStatus::Active => "orgs.resume",
            OrgStatus::Suspended => "orgs.suspend",
        };
        self.audit(
            actor,
            client,
            Event {
                action,
                org: Some(org_id),
                target: Some(("organization", org_id)),
                details: serde_json::json!({}),
            },
        )
        .await;
        Ok(org)
    }

    // ---- members ----

    pub async fn list_members(&self, actor: &User, org_id: Id) -> Result<Vec<MemberView>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                let mut members = Vec::new();
                for m in read_all::<Membership>(&tx, &keyspace::org_members(org_id)).await? {
                    if let Some(user) = keyspace::user(m.user_id).get(&tx).await? {
                        members.push(MemberView {
                            membership: m,
                            email: user.email,
                            display_name: user.display_name,
                        });
                    }
                }
                Ok::<_, TxError<Error>>(members)
            })
            .await?)
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
        let (before, after) = self
            .store
            .run(|tx| async move {
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
            })
            .await?;
        let details = serde_json::json!({"from": before.as_str(), "to": role.as_str()});
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.members.set_role",
                org: Some(org_id),
                target: Some(("user", user_id)),
                details,
            },
        )
        .await;
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
        self.store
            .run(|tx| async move {
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
            })
            .await?;
        let action = if leaving {
            "orgs.members.leave"
        } else {
            "orgs.members.remove"
        };
        self.audit(
            actor,
            client,
            Event {
                action,
                org: Some(org_id),
                target: Some(("user", user_id)),
                details: serde_json::json!({}),
            },
        )
        .await;
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
        self.store
            .run(|tx| async move {
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
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.transfer",
                org: Some(org_id),
                target: Some(("user", to)),
                details: serde_json::json!({"from": actor.id}),
            },
        )
        .await;
        Ok(())
    }

    // ---- invitations ----

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
        self.store
            .run(|tx| {
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
                    let body = format!(
                        "Hello,\n\n{} invited you to join the organization {} on Gatehouse as {}.\nThe invitation is valid for {INVITATION_TTL_DAYS} days:\n\ntoken: {token}\n\n(sign in, then POST /api/v1/invitations/accept with {{\"token\": \"...\"}}; POST /api/v1/invitations/decline to decline)\n",
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
            })
            .await?;
        let details = serde_json::json!({"email": invitation.email, "role": role.as_str()});
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.invitations.create",
                org: Some(org_id),
                target: Some(("invitation", invitation.id)),
                details,
            },
        )
        .await;
        Ok(SentInvitation { invitation, token })
    }

    /// An organization's invitations, oldest first (those who may invite).
    pub async fn list_invitations(&self, actor: &User, org_id: Id) -> Result<Vec<Invitation>> {
        let now = self.env.clock.now();
        let mut invitations = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                if !access.allows(OrgAction::Invite) && !access.platform_reader {
                    access.require(OrgAction::Invite)?;
                }
                read_all::<Invitation>(&tx, &keyspace::invitations(org_id)).await
            })
            .await?;
        for i in &mut invitations {
            i.status = i.status_at(now);
        }
        Ok(invitations)
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
        self.store
            .run(|tx| async move {
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
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.invitations.revoke",
                org: Some(org_id),
                target: Some(("invitation", id)),
                details: serde_json::json!({}),
            },
        )
        .await;
        Ok(())
    }

    /// Finds the pending invitation a token stands for.
    async fn pending_invitation(
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
        let (invitation, membership) = self
            .store
            .run(|tx| async move {
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
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "orgs.invitations.accept",
                org: Some(invitation.org_id),
                target: Some(("invitation", invitation.id)),
                details: serde_json::json!({"role": invitation.role.as_str()}),
            },
        )
        .await;
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

    // ---- teams ----

    /// Creates a team. Delegates with `manage_teams` name and describe it;
    /// its permissions and allow-list need an owner or admin.
    pub async fn create_team(
        &self,
        actor: &User,
        org_id: Id,
        spec: TeamSpec,
        client: &ClientInfo,
    ) -> Result<Team> {
        let name = crate::common::parse_name(spec.name.as_deref().unwrap_or_default(), "team")?;
        let description = parse_description(spec.description.as_deref())?;
        let allowed_models =
            crate::model::catalog::allow_list(spec.allowed_models.as_deref().unwrap_or_default())?;
        let now = self.env.clock.now();
        let team = Team {
            id: self.env.ids.next_id(),
            org_id,
            name,
            description,
            permissions: spec.permissions.clone().unwrap_or_default(),
            allowed_models,
            budget: spec.budget.flatten(),
            created_at: now,
            updated_at: now,
        };
        self.store
            .run(|tx| {
                let team = &team;
                async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    access.require(OrgAction::ManageTeams)?;
                    if !team.permissions.is_empty()
                        || !team.allowed_models.is_empty()
                        || team.budget.is_some()
                    {
                        access.require(OrgAction::SetTeamPolicy)?;
                    }
                    ensure_unique_team_name(&tx, org_id, &team.name, None).await?;
                    keyspace::team_by_id(team.id)
                        .put(&tx, &TeamRef { org_id })
                        .await?;
                    keyspace::team(org_id, team.id).put(&tx, team).await
                }
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "teams.create",
                org: Some(org_id),
                target: Some(("team", team.id)),
                details: team_details(&team),
            },
        )
        .await;
        Ok(team)
    }

    pub async fn list_teams(&self, actor: &User, org_id: Id) -> Result<Vec<Team>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                read_all::<Team>(&tx, &keyspace::teams(org_id)).await
            })
            .await?)
    }

    pub async fn get_team(&self, actor: &User, org_id: Id, team_id: Id) -> Result<Team> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                keyspace::team(org_id, team_id)
                    .get(&tx)
                    .await?
                    .ok_or_else(|| TxError::Abort(Error::not_found("team")))
            })
            .await?)
    }

    /// Changes a team: name and description with `manage_teams`, permissions
    /// and allow-list as owner or admin.
    pub async fn update_team(
        &self,
        actor: &User,
        org_id: Id,
        team_id: Id,
        spec: TeamSpec,
        client: &ClientInfo,
    ) -> Result<Team> {
        let name = spec
            .name
            .as_deref()
            .map(|n| crate::common::parse_name(n, "team"))
            .transpose()?;
        let description = spec
            .description
            .as_deref()
            .map(|d| parse_description(Some(d)))
            .transpose()?;
        let allowed_models = spec
            .allowed_models
            .as_deref()
            .map(crate::model::catalog::allow_list)
            .transpose()?;
        if let Some(Some(budget)) = &spec.budget {
            crate::model::keys::check_budget(budget)?;
        }
        let now = self.env.clock.now();
        let team = self
            .store
            .run(|tx| {
                let (name, description, allowed_models, permissions, budget) = (
                    &name,
                    &description,
                    &allowed_models,
                    &spec.permissions,
                    &spec.budget,
                );
                async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    access.require(OrgAction::ManageTeams)?;
                    if permissions.is_some() || allowed_models.is_some() || budget.is_some() {
                        access.require(OrgAction::SetTeamPolicy)?;
                    }
                    let key = keyspace::team(org_id, team_id);
                    let Some(mut team) = key.get(&tx).await? else {
                        return abort(Error::not_found("team"));
                    };
                    if let Some(name) = name {
                        ensure_unique_team_name(&tx, org_id, name, Some(team_id)).await?;
                        team.name = name.clone();
                    }
                    if let Some(description) = description {
                        team.description = description.clone();
                    }
                    if let Some(permissions) = permissions {
                        team.permissions = permissions.clone();
                    }
                    if let Some(models) = allowed_models {
                        team.allowed_models = models.clone();
                    }
                    if let Some(budget) = budget {
                        team.budget = *budget;
                    }
                    team.updated_at = now;
                    key.put(&tx, &team).await?;
                    Ok(team)
                }
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "teams.update",
                org: Some(org_id),
                target: Some(("team", team_id)),
                details: team_details(&team),
            },
        )
        .await;
        Ok(team)
    }

    pub async fn delete_team(
        &self,
        actor: &User,
        org_id: Id,
        team_id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        let now = self.env.clock.now();
        let team = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                access.require(OrgAction::ManageTeams)?;
                let Some(team) = keyspace::team(org_id, team_id).get(&tx).await? else {
                    return abort(Error::not_found("team"));
                };
                delete_team_records(&tx, &team, now).await?;
                Ok(team)
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "teams.delete",
                org: Some(org_id),
                target: Some(("team", team_id)),
                details: serde_json::json!({"name": team.name}),
            },
        )
        .await;
        Ok(())
    }

    pub async fn list_team_members(
        &self,
        actor: &User,
        org_id: Id,
        team_id: Id,
    ) -> Result<Vec<TeamMember>> {
        Ok(self
            .store
            .run(|tx| async move {
                load_access(&tx, actor, org_id).await?;
                if keyspace::team(org_id, team_id).get(&tx).await?.is_none() {
                    return abort(Error::not_found("team"));
                }
                read_all::<TeamMember>(&tx, &keyspace::team_members(team_id)).await
            })
            .await?)
    }

    /// Adds a member of the organization to a team, or changes their team
    /// role. Members: `manage_teams` delegates and the team's own managers;
    /// managers: owners and admins only.
    pub async fn put_team_member(
        &self,
        actor: &User,
        org_id: Id,
        team_id: Id,
        user_id: Id,
        role: TeamRole,
        client: &ClientInfo,
    ) -> Result<TeamMember> {
        let now = self.env.clock.now();
        let member = self
            .store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                if keyspace::team(org_id, team_id).get(&tx).await?.is_none() {
                    return abort(Error::not_found("team"));
                }
                let key = keyspace::team_member(team_id, user_id);
                let existing = key.get(&tx).await?;
                let manages_team =
                    is_team_manager(&tx, team_id, actor.id).await? && access.role.is_some();
                if role == TeamRole::Manager
                    || existing
                        .as_ref()
                        .is_some_and(|m| m.role == TeamRole::Manager)
                {
                    access.require(OrgAction::SetTeamPolicy)?;
                } else if !(manages_team && access.org.status == OrgStatus::Active) {
                    access.require(OrgAction::ManageTeams)?;
                }
                if keyspace::org_member(org_id, user_id)
                    .get(&tx)
                    .await?
                    .is_none()
                {
                    return abort(Error::not_found("member"));
                }
                let member = TeamMember {
                    team_id,
                    org_id,
                    user_id,
                    role,
                    added_at: existing.map_or(now, |m| m.added_at),
                };
                key.put(&tx, &member).await?;
                keyspace::user_team(user_id, team_id)
                    .put(&tx, &UserTeamRef { org_id, team_id })
                    .await?;
                Ok(member)
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "teams.members.put",
                org: Some(org_id),
                target: Some(("user", user_id)),
                details: serde_json::json!({"team_id": team_id, "role": member.role}),
            },
        )
        .await;
        Ok(member)
    }

    /// Takes someone off a team: the rules of [`put_team_member`](Self::put_team_member),
    /// and anyone may leave a team.
    pub async fn remove_team_member(
        &self,
        actor: &User,
        org_id: Id,
        team_id: Id,
        user_id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.store
            .run(|tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                let key = keyspace::team_member(team_id, user_id);
                let Some(existing) = key.get(&tx).await? else {
                    return abort(Error::not_found("team member"));
                };
                if actor.id != user_id {
                    let manages_team =
                        is_team_manager(&tx, team_id, actor.id).await? && access.role.is_some();
                    if existing.role == TeamRole::Manager {
                        access.require(OrgAction::SetTeamPolicy)?;
                    } else if !(manages_team && access.org.status == OrgStatus::Active) {
                        access.require(OrgAction::ManageTeams)?;
                    }
                }
                key.clear(&tx).await?;
                keyspace::user_team(user_id, team_id).clear(&tx).await
            })
            .await?;
        self.audit(
            actor,
            client,
            Event {
                action: "teams.members.remove",
                org: Some(org_id),
                target: Some(("user", user_id)),
                details: serde_json::json!({"team_id": team_id}),
            },
        )
        .await;
        Ok(())
    }

    // ---- for internal services ----

    /// A user's organizations and teams.
    pub async fn memberships(&self, user_id: Id) -> Result<Memberships> {
        let organizations = self.orgs_of(user_id).await?;
        let teams = self
            .store
            .run(|tx| async move {
                let mut teams = Vec::new();
                for entry in read_all::<UserTeamRef>(&tx, &keyspace::user_teams(user_id)).await? {
                    let team = keyspace::team(entry.org_id, entry.team_id).get(&tx).await?;
                    let member = keyspace::team_member(entry.team_id, user_id)
                        .get(&tx)
                        .await?;
                    if let (Some(team), Some(member)) = (team, member) {
                        teams.push((team, member.role));
                    }
                }
                Ok::<_, TxError<Error>>(teams)
            })
            .await?;
        Ok(Memberships {
            organizations,
            teams,
        })
    }

    /// Whether `user` holds the named permission on `resource`. Names:
    /// `organization.read`, `organization.update`, `organization.delete`,
    /// `members.manage`, `members.invite`, `teams.manage`, `teams.set_policy`,
    /// `keys.manage`, `vaults.manage`, `credentials.manage`, `organization.suspend`; on a team also
    /// `team.read` and `team.manage_members` (its managers). An unknown name is
    /// `invalid_input`; a resource the user may not see is simply `false`.
    pub async fn check_permission(
        &self,
        user: &User,
        permission: &str,
        resource: Resource,
    ) -> Result<bool> {
        let action = match permission {
            "organization.read" | "team.read" => None,
            "organization.update" => Some(OrgAction::Update),
            "organization.delete" => Some(OrgAction::Delete),
            "organization.suspend" => Some(OrgAction::Suspend),
            "members.manage" => Some(OrgAction::ManageMembers),
            "members.invite" => Some(OrgAction::Invite),
            "teams.manage" | "team.manage_members" => Some(OrgAction::ManageTeams),
            "teams.set_policy" => Some(OrgAction::SetTeamPolicy),
            "keys.manage" => Some(OrgAction::ManageKeys),
            "vaults.manage" => Some(OrgAction::ManageVaults),
            "credentials.manage" => Some(OrgAction::ManageCredentials),
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown permission {other:?}"
                )));
            }
        };
        if !user.is_active() {
            return Ok(false);
        }
        let team_only = matches!(permission, "team.read" | "team.manage_members");
        if team_only && !matches!(resource, Resource::Team(_)) {
            return Err(Error::invalid_input(format!(
                "{permission} is checked on a team"
            )));
        }
        let result = self
            .store
            .run(|tx| async move {
                let (org_id, team_id) = match resource {
                    Resource::Organization(id) => (id, None),
                    Resource::Team(id) => match keyspace::team_by_id(id).get(&tx).await? {
                        Some(r) => (r.org_id, Some(id)),
                        None => return Ok(false),
                    },
                };
                let access = match load_access(&tx, user, org_id).await {
                    Ok(access) => access,
                    Err(TxError::Abort(e)) if e.code() == crate::ErrorCode::NotFound => {
                        return Ok(false);
                    }
                    Err(e) => return Err(e),
                };
                let Some(action) = action else {
                    return Ok(true);
                };
                if access.allows(action) {
                    return Ok(true);
                }
                if let (Some(team_id), "team.manage_members") = (team_id, permission) {
                    return Ok(access.role.is_some()
                        && access.org.status == OrgStatus::Active
                        && is_team_manager(&tx, team_id, user.id).await?);
                }
                Ok::<_, TxError<Error>>(false)
            })
            .await?;
        Ok(result)
    }
}

async fn is_team_manager(tx: &Tx, team_id: Id, user_id: Id) -> Result<bool, TxError<Error>> {
    Ok(keyspace::team_member(team_id, user_id)
        .get(tx)
        .await?
        .is_some_and(|m| m.role == TeamRole::Manager))
}

async fn ensure_unique_team_name(
    tx: &Tx,
    org_id: Id,
    name: &str,
    except: Option<Id>,
) -> Result<(), TxError<Error>> {
    let taken = read_all::<Team>(tx, &keyspace::teams(org_id))
        .await?
        .iter()
        .any(|t| Some(t.id) != except && t.name.to_lowercase() == name.to_lowercase());
    if taken {
        return abort(Error::conflict("a team with this name exists here"));
    }
    Ok(())
}

fn team_details(team: &Team) -> serde_json::Value {
    serde_json::json!({
        "name": team.name,
        "permissions": team.permissions,
        "allowed_models": team.allowed_models,
    })
}

#[cfg(test)]
mod tests;
