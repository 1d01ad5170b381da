//! Tenancy (SPEC §3): organizations (`organizations`), their members
//! (`members`) and invitations (`invitations`), and teams (`teams`); here the
//! service, the records' shared write helpers and the removal cascades.
//!
//! Every operation inside an organization first works out the caller's
//! [`OrgAccess`](crate::access::OrgAccess) in the same transaction as its
//! reads and writes ([`crate::access`] holds that rule). Removing a member or
//! a team takes its vault grants with it in the same transaction
//! ([`crate::vaults::forget_subject`]); deleting an organization or an
//! account removes it from view at once and its records a page per
//! transaction (`removal`).

mod invitations;
mod members;
mod organizations;
mod removal;
mod teams;

pub(crate) use self::removal::{check_user_removable, start_org_removal, start_user_removal};

use crate::model::tenancy as model;

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_storage::{KeyRange, RangeOptions, Store, Tx, TxError};

use self::model::{
    Invitation, InvitationRef, InvitationStatus, Membership, OrgRef, OrgRole, OrgStatus,
    Organization, Team, TeamMember, TeamPermission, TeamRef, TeamRole, UserOrgRef, UserTeamRef,
};
use crate::access::{OrgAccess, OrgAction, load_access, read_in_org};
use crate::audit::{Actor, AuditLog, Audited, NewEvent, Outcome};
use crate::codec::{abort, decode_values, read_all};
use crate::common::parse_description;
use crate::common::token_hash;
use crate::model::accounts::{Email, User};
use crate::model::sessions::ClientInfo;
use crate::model::vaults::SubjectKind;
use crate::page::{Page, PageRequest};
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
#[derive(Clone)]
pub struct SentInvitation {
    pub invitation: Invitation,
    pub token: String,
}

impl std::fmt::Debug for SentInvitation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SentInvitation")
            .field("invitation", &self.invitation)
            .field("token", &crate::common::REDACTED)
            .finish()
    }
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
            clear_team_membership(tx, entry.team_id, user_id).await?;
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

/// Takes `user_id` out of `team_id`: the membership and its entry under the user.
pub(crate) async fn clear_team_membership(
    tx: &Tx,
    team_id: Id,
    user_id: Id,
) -> Result<(), TxError<Error>> {
    keyspace::team_member(team_id, user_id).clear(tx).await?;
    keyspace::user_team(user_id, team_id).clear(tx).await
}

/// Deletes a team with its memberships.
async fn delete_team_records(
    tx: &Tx,
    team: &Team,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    crate::vaults::forget_subject(tx, team.org_id, SubjectKind::Team, team.id, now).await?;
    for member in read_all::<TeamMember>(tx, &keyspace::team_members(team.id)).await? {
        clear_team_membership(tx, team.id, member.user_id).await?;
    }
    keyspace::team_by_id(team.id).clear(tx).await?;
    keyspace::team(team.org_id, team.id).clear(tx).await
}

/// Creates a user's personal organization inside the transaction that creates the user.
pub(crate) async fn create_personal_org(
    tx: &Tx,
    (org_id, project_id): (Id, Id),
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
    crate::work::create_default_project(tx, org_id, project_id, now).await?;
    put_membership(
        tx,
        &Membership {
            org_id,
            user_id: user.id,
            role: OrgRole::Owner,
            joined_at: now,
            sso_provider: None,
        },
    )
    .await
}

/// A membership that single sign-on groups give: an organization (by slug),
/// the role in it (never owner), and teams in it (by name).
#[derive(Debug, Clone, PartialEq)]
pub struct MappedMembership {
    pub org_slug: String,
    pub role: OrgRole,
    pub teams: Vec<String>,
}

/// Brings the memberships `provider`'s groups gave `user_id` in line with
/// `mapped`, inside the sign-in's transaction: missing ones are made (marked
/// as the provider's) with their teams, the provider's that no longer apply
/// go. Memberships made by hand are left as they are. An organization or team
/// that does not exist is skipped (and said in the returned notes).
pub(crate) async fn apply_sso_memberships(
    tx: &Tx,
    user_id: Id,
    provider: &str,
    mapped: &[MappedMembership],
    now: DateTime<Utc>,
) -> Result<Vec<String>, TxError<Error>> {
    let mut notes = Vec::new();
    let mut wanted = BTreeSet::new();
    let mut wanted_teams = BTreeSet::new();
    for m in mapped {
        let Some(org) = keyspace::org_by_slug(&m.org_slug).get(tx).await? else {
            notes.push(format!("no organization `{}`", m.org_slug));
            continue;
        };
        wanted.insert(org.org_id);
        let key = keyspace::org_member(org.org_id, user_id);
        match key.get(tx).await? {
            Some(held) if held.sso_provider.as_deref() != Some(provider) || held.role == m.role => {
            }
            _ => {
                let membership = Membership {
                    org_id: org.org_id,
                    user_id,
                    role: m.role,
                    joined_at: now,
                    sso_provider: Some(provider.to_string()),
                };
                put_membership(tx, &membership).await?;
                notes.push(format!("member of `{}` as {}", m.org_slug, m.role.as_str()));
            }
        }
        let teams = read_all::<Team>(tx, &keyspace::teams(org.org_id)).await?;
        for name in &m.teams {
            let Some(team) = teams.iter().find(|t| t.name.eq_ignore_ascii_case(name)) else {
                notes.push(format!("no team `{name}` in `{}`", m.org_slug));
                continue;
            };
            wanted_teams.insert(team.id);
            let key = keyspace::team_member(team.id, user_id);
            if key.get(tx).await?.is_none() {
                let member = TeamMember {
                    team_id: team.id,
                    org_id: org.org_id,
                    user_id,
                    role: TeamRole::Member,
                    added_at: now,
                    sso_provider: Some(provider.to_string()),
                };
                key.put(tx, &member).await?;
                keyspace::user_team(user_id, team.id)
                    .put(
                        tx,
                        &UserTeamRef {
                            org_id: org.org_id,
                            team_id: team.id,
                        },
                    )
                    .await?;
                notes.push(format!("on team `{name}` of `{}`", m.org_slug));
            }
        }
    }
    // Teams this provider's groups gave and no longer give are taken back,
    // in organizations the user stays in too.
    for entry in read_all::<UserTeamRef>(tx, &keyspace::user_teams(user_id)).await? {
        if wanted_teams.contains(&entry.team_id) {
            continue;
        }
        let key = keyspace::team_member(entry.team_id, user_id);
        let held = key.get(tx).await?;
        if held.is_some_and(|m| m.sso_provider.as_deref() == Some(provider)) {
            key.clear(tx).await?;
            keyspace::user_team(user_id, entry.team_id)
                .clear(tx)
                .await?;
            notes.push(format!("left team {}", entry.team_id));
        }
    }
    for entry in read_all::<UserOrgRef>(tx, &keyspace::user_orgs(user_id)).await? {
        if wanted.contains(&entry.org_id) {
            continue;
        }
        let held = keyspace::org_member(entry.org_id, user_id).get(tx).await?;
        if held.is_some_and(|m| m.sso_provider.as_deref() == Some(provider)) {
            remove_membership(tx, entry.org_id, user_id, now).await?;
            notes.push(format!("left organization {}", entry.org_id));
        }
    }
    Ok(notes)
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

pub struct TenancyService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
    /// The web console's address, for the link in invitation emails.
    console_url: Option<String>,
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
        TenancyService {
            store,
            env,
            audit,
            console_url: None,
        }
    }

    /// Invitation emails link to the console at `url` (`https://host[/base]`).
    pub fn with_console_url(mut self, url: Option<String>) -> Self {
        self.console_url = url.map(|u| u.trim_end_matches('/').to_string());
        self
    }

    /// The audit event of a change, to stage in its transaction.
    fn event(
        &self,
        actor: &User,
        client: &ClientInfo,
        event: Event<'_>,
    ) -> crate::audit::AuditEvent {
        let mut record = NewEvent::by_user(actor, event.action, client)
            .in_org(event.org)
            .with(event.details);
        if let Some((kind, id)) = event.target {
            record = record.on(kind, id);
        }
        self.audit.event(record)
    }

    // ---- organizations ----

    // ---- members ----

    // ---- invitations ----

    // ---- teams ----

    // ---- for internal services ----
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

impl crate::audit::Audited for TenancyService {
    fn audit_parts(&self) -> (&Store, &AuditLog) {
        (&self.store, &self.audit)
    }
}
