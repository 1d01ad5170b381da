//! Who may do what inside an organization: the caller's [`OrgAccess`] and the
//! one rule, [`OrgAccess::require`], that every organization-scoped operation
//! (tenancy, catalogue, vaults, work) asks.
//!
//! Access is worked out in the same transaction as the operation's reads and
//! writes, so a role change or removal counts from the next request on.
//! Someone who is neither a member nor a platform reader gets `not_found` for
//! anything inside, never `permission_denied`, so the IDs of other tenants
//! reveal nothing.

use std::collections::BTreeSet;

use gatehouse_storage::{Store, Tx, TxError};

use crate::codec::read_all;
use crate::model::accounts::User;
use crate::model::tenancy::{
    OrgRole, OrgStatus, Organization, TeamPermission, TeamRole, UserTeamRef,
};
use crate::{Error, Id, Result, keyspace};

/// What a caller wants to do inside an organization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgAction {
    /// Rename the organization.
    Update,
    /// Delete it: owners (and platform admins).
    Delete,
    /// Change roles, remove members: owners and admins.
    ManageMembers,
    /// Invite people: owners, admins, and managers of a team with `invite_members`.
    Invite,
    /// Create, rename and delete teams and manage their members: owners,
    /// admins, and managers of a team with `manage_teams`.
    ManageTeams,
    /// Set a team's delegated permissions, allow-list and managers: owners and admins.
    SetTeamPolicy,
    /// Manage the organization's keys and clients.
    ManageKeys,
    /// Manage the organization's vaults.
    ManageVaults,
    /// Create, read, change and delete the organization's credentials: owners and admins.
    ManageCredentials,
    /// Create, rename and delete projects, and delete anyone's chats in
    /// them: owners and admins.
    ManageProjects,
    /// Suspend or resume: platform admins only.
    Suspend,
}

/// The caller's standing in one organization.
#[derive(Debug, Clone)]
pub struct OrgAccess {
    pub org: Organization,
    /// `None` for platform readers who are not members.
    pub role: Option<OrgRole>,
    /// Delegated permissions from the teams the caller manages here.
    pub delegated: BTreeSet<TeamPermission>,
    pub(crate) platform_admin: bool,
    pub(crate) platform_reader: bool,
}

impl OrgAccess {
    /// Whether the caller may do `action` (reads are always allowed: an access
    /// exists only for those who may see the organization).
    pub fn allows(&self, action: OrgAction) -> bool {
        if self.platform_admin {
            return true;
        }
        if action == OrgAction::Suspend || self.org.status == OrgStatus::Suspended {
            return false;
        }
        let role = self.role.unwrap_or(OrgRole::Member);
        let is_member = self.role.is_some();
        let delegated = |p| is_member && self.delegated.contains(&p);
        match action {
            OrgAction::Delete => role == OrgRole::Owner,
            OrgAction::Update
            | OrgAction::ManageMembers
            | OrgAction::SetTeamPolicy
            | OrgAction::ManageCredentials
            | OrgAction::ManageProjects => is_member && role >= OrgRole::Admin,
            OrgAction::Invite => {
                is_member && role >= OrgRole::Admin || delegated(TeamPermission::InviteMembers)
            }
            OrgAction::ManageTeams => {
                is_member && role >= OrgRole::Admin || delegated(TeamPermission::ManageTeams)
            }
            OrgAction::ManageKeys => {
                is_member && role >= OrgRole::Admin || delegated(TeamPermission::ManageKeys)
            }
            OrgAction::ManageVaults => {
                is_member && role >= OrgRole::Admin || delegated(TeamPermission::ManageVaults)
            }
            OrgAction::Suspend => false,
        }
    }

    /// `permission_denied` unless [`allows`](Self::allows).
    pub fn require(&self, action: OrgAction) -> Result<(), TxError<Error>> {
        if self.allows(action) {
            return Ok(());
        }
        let message = if self.org.status == OrgStatus::Suspended && !self.platform_admin {
            "this organization is suspended; a platform admin can resume it".to_string()
        } else if self.platform_reader && self.role.is_none() {
            "read-only admins change nothing".to_string()
        } else {
            format!("your role here does not allow this ({action:?})")
        };
        Err(TxError::Abort(Error::permission_denied(message)))
    }

    pub(crate) fn is_owner(&self) -> bool {
        self.role == Some(OrgRole::Owner)
    }

    /// The caller reads everything as a platform admin or read-only admin.
    pub fn platform_reader(&self) -> bool {
        self.platform_reader
    }
}

/// Runs `read` in a transaction of its own once `user` is seen to see
/// `org_id` (`not_found` otherwise, before anything else is read): the shape
/// of every "read a thing of an organization" call.
pub async fn read_in_org<T, F, Fut>(store: &Store, user: &User, org_id: Id, read: F) -> Result<T>
where
    F: Fn(Tx) -> Fut,
    Fut: std::future::Future<Output = Result<T, TxError<Error>>>,
{
    let read = &read;
    Ok(store
        .run(|tx| async move {
            load_access(&tx, user, org_id).await?;
            read(tx).await
        })
        .await?)
}

/// The caller's access to `org_id`, or `not_found` for those who may not see it.
pub async fn load_access(tx: &Tx, user: &User, org_id: Id) -> Result<OrgAccess, TxError<Error>> {
    let not_found = || TxError::Abort(Error::not_found("organization"));
    let org = keyspace::org(org_id).get(tx).await?.ok_or_else(not_found)?;
    let role = keyspace::org_member(org_id, user.id)
        .get(tx)
        .await?
        .map(|m| m.role);
    if role.is_none() && !user.is_platform_reader() {
        return Err(not_found());
    }
    let mut delegated = BTreeSet::new();
    if role.is_some() {
        for entry in read_all::<UserTeamRef>(tx, &keyspace::user_teams(user.id)).await? {
            if entry.org_id != org_id {
                continue;
            }
            let managed = keyspace::team_member(entry.team_id, user.id)
                .get(tx)
                .await?
                .is_some_and(|m| m.role == TeamRole::Manager);
            if !managed {
                continue;
            }
            if let Some(team) = keyspace::team(org_id, entry.team_id).get(tx).await? {
                delegated.extend(team.permissions);
            }
        }
    }
    Ok(OrgAccess {
        org,
        role,
        delegated,
        platform_admin: user.is_platform_admin(),
        platform_reader: user.is_platform_reader(),
    })
}
