//! Organizations, their members and invitations, and teams (SPEC §1, §3).

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::Id;
use crate::codec::record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgStatus {
    Active,
    /// Suspended by a platform admin: readable, but nothing in it changes
    /// until a platform admin resumes it.
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Organization {
    pub id: Id,
    /// Unique: no two organizations share a [`slug`](Self::slug).
    pub name: String,
    /// The name in lower case with runs of other characters as `-`.
    pub slug: String,
    /// A user's own organization, made with the account and removed with it.
    pub personal: bool,
    pub status: OrgStatus,
    /// Keep gateway request and response bodies of keys bound to this
    /// organization (off by default).
    #[serde(default)]
    pub capture_bodies: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Organization, "organization");

/// Organization roles, ordered: `Member < Admin < Owner`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrgRole {
    Member,
    Admin,
    Owner,
}

impl OrgRole {
    pub fn as_str(self) -> &'static str {
        match self {
            OrgRole::Member => "member",
            OrgRole::Admin => "admin",
            OrgRole::Owner => "owner",
        }
    }
}

/// `("org_member", org, user)`: a user's place in an organization.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Membership {
    pub org_id: Id,
    pub user_id: Id,
    pub role: OrgRole,
    pub joined_at: DateTime<Utc>,
    /// The single sign-on provider whose groups gave this membership: it
    /// goes when the groups no longer do. `None`: made by hand (invitation,
    /// creation), never touched by sign-ins.
    #[serde(default)]
    pub sso_provider: Option<String>,
}

record!(Membership, "organization membership");

/// `("user_org", user, org)`: the index from a user to their organizations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserOrgRef {
    pub org_id: Id,
}

record!(UserOrgRef, "organization index entry");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvitationStatus {
    Pending,
    Accepted,
    Declined,
    Revoked,
    /// Never stored: a pending invitation past its expiry reads as this.
    Expired,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: Id,
    pub org_id: Id,
    /// As typed; matched case-insensitively against the accepting account's addresses.
    pub email: String,
    pub role: OrgRole,
    pub invited_by: Id,
    pub status: InvitationStatus,
    /// SHA-256 of the token mailed to the invitee.
    pub token_hash: Vec<u8>,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

record!(Invitation, "invitation");

impl Invitation {
    /// The status as of `now`: a pending invitation past its expiry is expired.
    pub fn status_at(&self, now: DateTime<Utc>) -> InvitationStatus {
        if self.status == InvitationStatus::Pending && now >= self.expires_at {
            InvitationStatus::Expired
        } else {
            self.status
        }
    }
}

/// `("invitation_by_token", sha256(token))`: where a pending invitation is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InvitationRef {
    pub org_id: Id,
    pub id: Id,
}

record!(InvitationRef, "invitation index entry", no_feed);

/// What a team's managers may do in the organization on its behalf (Clay's
/// and InferaDB's delegated permissions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamPermission {
    /// Invite people into the organization as members.
    InviteMembers,
    /// Create, rename and delete teams, and add or remove their members.
    ManageTeams,
    /// Manage the organization's API keys and service clients.
    ManageKeys,
    /// Manage the organization's vaults and their grants.
    ManageVaults,
}

impl TeamPermission {
    pub const ALL: [TeamPermission; 4] = [
        TeamPermission::InviteMembers,
        TeamPermission::ManageTeams,
        TeamPermission::ManageKeys,
        TeamPermission::ManageVaults,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TeamPermission::InviteMembers => "invite_members",
            TeamPermission::ManageTeams => "manage_teams",
            TeamPermission::ManageKeys => "manage_keys",
            TeamPermission::ManageVaults => "manage_vaults",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Team {
    pub id: Id,
    pub org_id: Id,
    pub name: String,
    pub description: String,
    /// Held by the team's managers.
    pub permissions: BTreeSet<TeamPermission>,
    /// Models the team's members may use; empty means every model they may
    /// otherwise use.
    pub allowed_models: BTreeSet<String>,
    /// Spend limit for the team's members together.
    #[serde(default)]
    pub budget: Option<crate::model::keys::Budget>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Team, "team");

/// `("team_by_id", team)`: which organization a team is in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamRef {
    pub org_id: Id,
}

record!(TeamRef, "team index entry");

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamRole {
    Member,
    Manager,
}

/// `("team_member", team, user)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TeamMember {
    pub team_id: Id,
    pub org_id: Id,
    pub user_id: Id,
    pub role: TeamRole,
    pub added_at: DateTime<Utc>,
    /// Set when a single sign-on provider's `org_mapping` made it: the
    /// provider's groups take it back; memberships made by hand are never touched.
    #[serde(default)]
    pub sso_provider: Option<String>,
}

record!(TeamMember, "team membership");

/// `("user_team", user, team)`: the index from a user to their teams.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserTeamRef {
    pub org_id: Id,
    pub team_id: Id,
}

record!(UserTeamRef, "team index entry");

/// `("org_by_slug", slug)`: organization names are unique by their slug.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrgRef {
    pub org_id: Id,
}

record!(OrgRef, "organization name index entry");

/// What a [`Removal`] removes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RemovalKind {
    Organization,
    User,
}

/// An organization or account deleted from view at once, whose records the
/// `purge` job removes a page per transaction; its progress for operators.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Removal {
    /// The organization's or user's ID.
    pub id: Id,
    pub kind: RemovalKind,
    /// The organization's name, or the account's email.
    pub name: String,
    pub started_at: DateTime<Utc>,
    /// Records removed so far.
    pub removed: u64,
    pub updated_at: DateTime<Utc>,
}

record!(Removal, "removal", no_feed);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn org_roles_are_ordered() {
        assert!(OrgRole::Member < OrgRole::Admin && OrgRole::Admin < OrgRole::Owner);
    }

    #[test]
    fn allow_lists_are_checked() {
        assert!(crate::model::catalog::allow_list(&["gpt 4".into()]).is_err());
        assert_eq!(
            crate::model::catalog::allow_list(&["b".into(), "a".into(), "a".into()])
                .unwrap()
                .len(),
            2
        );
    }
}
