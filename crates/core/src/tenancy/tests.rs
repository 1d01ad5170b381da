//! Tests of organizations, invitations and teams on the memory engine with a
//! controlled clock.

use std::collections::BTreeSet;
use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;

use super::*;
use crate::ErrorCode;
use crate::env::ManualClock;
use crate::model::accounts::Role;

struct World {
    tenancy: TenancyService,
    store: Store,
    env: Env,
    clock: Arc<ManualClock>,
    client: ClientInfo,
}

fn world() -> World {
    let (env, clock) = crate::testing::env(1, 5);
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
    World {
        tenancy: TenancyService::new(store.clone(), env.clone(), audit),
        store,
        env,
        clock,
        client: ClientInfo::default(),
    }
}

impl World {
    async fn user(&self, name: &str, roles: &[Role]) -> User {
        crate::testing::user(&self.store, &self.env, name, roles).await
    }

    /// The invitation token mailed to `to`, from the outbox.
    async fn mailed_token(&self, to: &str) -> String {
        crate::testing::mailed_token(&self.store, &self.env, to).await
    }

    /// Invites `who` into `org` as `role` (by `by`) and accepts.
    async fn join(&self, by: &User, org: Id, who: &User, role: OrgRole) {
        self.tenancy
            .invite(by, org, &who.email, role, &self.client)
            .await
            .unwrap();
        let token = self.mailed_token(&who.email).await;
        self.tenancy
            .accept_invitation(who, &token, &self.client)
            .await
            .unwrap();
    }

    /// An organization with an owner, an admin and a member.
    async fn org(&self) -> (Id, User, User, User) {
        let owner = self.user("owner", &[Role::User]).await;
        let admin = self.user("orgadmin", &[Role::User]).await;
        let member = self.user("member", &[Role::User]).await;
        let org = self
            .tenancy
            .create_org(&owner, "Acme", &self.client)
            .await
            .unwrap();
        self.join(&owner, org.id, &admin, OrgRole::Admin).await;
        self.join(&owner, org.id, &member, OrgRole::Member).await;
        (org.id, owner, admin, member)
    }
}

fn rename(name: &str) -> OrgChange {
    OrgChange {
        name: Some(name.into()),
        ..OrgChange::default()
    }
}

fn named(name: &str) -> TeamSpec {
    TeamSpec {
        name: Some(name.into()),
        ..TeamSpec::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<T>) -> ErrorCode {
    result.expect_err("an error").code()
}

#[tokio::test]
async fn every_user_gets_a_personal_organization_and_providers_none() {
    let w = world();
    let ada = w.user("ada", &[Role::User]).await;
    let orgs = w.tenancy.orgs_of(ada.id).await.unwrap();
    assert_eq!(orgs.len(), 1);
    let (personal, role) = &orgs[0];
    assert!(personal.personal);
    assert_eq!(personal.name, "ada@example.com");
    // Should someone already hold that name, the personal one is still made.
    let taken = w
        .tenancy
        .create_org(&ada, "bob@example.com", &w.client)
        .await
        .unwrap();
    let bob = w.user("bob", &[Role::User]).await;
    let (bobs, _) = &w.tenancy.orgs_of(bob.id).await.unwrap()[0];
    assert!(bobs.personal && bobs.name.starts_with("bob@example.com (") && bobs.id != taken.id);
    assert_eq!(*role, OrgRole::Owner);
    // It cannot be deleted on its own, nor left by its only owner.
    assert_eq!(
        code(w.tenancy.delete_org(&ada, personal.id, &w.client).await),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(
            w.tenancy
                .remove_member(&ada, personal.id, ada.id, &w.client)
                .await
        ),
        ErrorCode::Conflict
    );
    let provider = w.user("prov", &[Role::Provider]).await;
    assert!(w.tenancy.orgs_of(provider.id).await.unwrap().is_empty());
    assert_eq!(
        code(w.tenancy.create_org(&provider, "P", &w.client).await),
        ErrorCode::PermissionDenied
    );
}

#[tokio::test]
async fn organizations_are_created_renamed_and_deleted_by_their_owner() {
    let w = world();
    let (org, owner, admin, member) = w.org().await;
    let renamed = w
        .tenancy
        .update_org(&admin, org, rename(" Acme Corp "), &w.client)
        .await
        .unwrap();
    assert_eq!(renamed.name, "Acme Corp");
    assert_eq!(
        code(
            w.tenancy
                .update_org(&member, org, rename("Mine"), &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .update_org(&owner, org, rename("  "), &w.client)
                .await
        ),
        ErrorCode::InvalidInput
    );
    // Names are unique by slug; renaming frees the old one.
    assert_eq!(
        code(w.tenancy.create_org(&member, "ACME corp!", &w.client).await),
        ErrorCode::Conflict
    );
    let acme = w
        .tenancy
        .create_org(&member, "Acme", &w.client)
        .await
        .unwrap();
    assert_eq!(acme.slug, "acme");
    assert_eq!(
        code(
            w.tenancy
                .update_org(&member, acme.id, rename("acme-corp"), &w.client)
                .await
        ),
        ErrorCode::Conflict
    );
    assert_eq!(
        code(w.tenancy.delete_org(&admin, org, &w.client).await),
        ErrorCode::PermissionDenied
    );
    let team = w
        .tenancy
        .create_team(
            &owner,
            org,
            TeamSpec {
                name: Some("Research".into()),
                ..TeamSpec::default()
            },
            &w.client,
        )
        .await
        .unwrap();
    w.tenancy
        .put_team_member(&owner, org, team.id, member.id, TeamRole::Member, &w.client)
        .await
        .unwrap();
    w.tenancy.delete_org(&owner, org, &w.client).await.unwrap();
    // Everything inside went with it: no member still lists it or its team.
    for user in [&owner, &admin, &member] {
        let m = w.tenancy.memberships(user.id).await.unwrap();
        assert!(m.organizations.iter().all(|(o, _)| o.id != org));
        assert!(m.teams.is_empty());
    }
    assert_eq!(
        code(w.tenancy.access(&owner, org).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn invitations_are_mailed_accepted_once_and_only_by_their_addressee() {
    let w = world();
    let (org, owner, _, _) = w.org().await;
    let bob = w.user("bob", &[Role::User]).await;
    let eve = w.user("eve", &[Role::User]).await;
    let sent = w
        .tenancy
        .invite(&owner, org, "Bob@Example.com", OrgRole::Member, &w.client)
        .await
        .unwrap();
    assert_eq!(w.mailed_token("Bob@Example.com").await, sent.token);
    // The same address cannot be invited twice while pending.
    assert_eq!(
        code(
            w.tenancy
                .invite(&owner, org, "bob@example.com", OrgRole::Member, &w.client)
                .await
        ),
        ErrorCode::Conflict
    );
    // Someone else holding the token cannot use it.
    assert_eq!(
        code(
            w.tenancy
                .accept_invitation(&eve, &sent.token, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    let joined = w
        .tenancy
        .accept_invitation(&bob, &sent.token, &w.client)
        .await
        .unwrap();
    assert_eq!(joined.role, OrgRole::Member);
    assert_eq!(
        code(
            w.tenancy
                .accept_invitation(&bob, &sent.token, &w.client)
                .await
        ),
        ErrorCode::InvalidInput
    );
    // Members cannot be invited again.
    assert_eq!(
        code(
            w.tenancy
                .invite(&owner, org, &bob.email, OrgRole::Member, &w.client)
                .await
        ),
        ErrorCode::Conflict
    );
    // Declined, revoked and expired invitations cannot be accepted.
    let declined = w
        .tenancy
        .invite(&owner, org, &eve.email, OrgRole::Member, &w.client)
        .await
        .unwrap();
    w.tenancy
        .decline_invitation(&declined.token, &w.client)
        .await
        .unwrap();
    assert_eq!(
        code(
            w.tenancy
                .accept_invitation(&eve, &declined.token, &w.client)
                .await
        ),
        ErrorCode::InvalidInput
    );
    let revoked = w
        .tenancy
        .invite(&owner, org, &eve.email, OrgRole::Member, &w.client)
        .await
        .unwrap();
    w.tenancy
        .revoke_invitation(&owner, org, revoked.invitation.id, &w.client)
        .await
        .unwrap();
    assert_eq!(
        code(
            w.tenancy
                .accept_invitation(&eve, &revoked.token, &w.client)
                .await
        ),
        ErrorCode::InvalidInput
    );
    let late = w
        .tenancy
        .invite(&owner, org, &eve.email, OrgRole::Member, &w.client)
        .await
        .unwrap();
    w.clock.advance(INVITATION_TTL_DAYS * 86_400_000);
    assert_eq!(
        code(
            w.tenancy
                .accept_invitation(&eve, &late.token, &w.client)
                .await
        ),
        ErrorCode::InvalidInput
    );
    let statuses: Vec<_> = w
        .tenancy
        .list_invitations(&owner, org, &crate::page::PageRequest::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|i| i.email == eve.email)
        .map(|i| i.status)
        .collect();
    assert_eq!(
        statuses,
        [
            InvitationStatus::Declined,
            InvitationStatus::Revoked,
            InvitationStatus::Expired
        ]
    );
}

#[tokio::test]
async fn the_last_owner_stays_and_ownership_moves_by_transfer() {
    let w = world();
    let (org, owner, admin, member) = w.org().await;
    for attempt in [
        w.tenancy
            .set_member_role(&owner, org, owner.id, OrgRole::Admin, &w.client)
            .await
            .map(|_| ()),
        w.tenancy
            .remove_member(&owner, org, owner.id, &w.client)
            .await,
    ] {
        assert_eq!(code(attempt), ErrorCode::Conflict);
    }
    assert_eq!(
        code(
            w.tenancy
                .transfer_ownership(&admin, org, admin.id, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .transfer_ownership(&owner, org, w.env.ids.next_id(), &w.client)
                .await
        ),
        ErrorCode::NotFound
    );
    w.tenancy
        .transfer_ownership(&owner, org, member.id, &w.client)
        .await
        .unwrap();
    let roles: BTreeSet<_> = w
        .tenancy
        .list_members(&member, org, &crate::page::PageRequest::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| (m.display_name, m.membership.role))
        .collect();
    assert!(roles.contains(&("owner".into(), OrgRole::Admin)));
    assert!(roles.contains(&("member".into(), OrgRole::Owner)));
    // The former owner can leave now.
    w.tenancy
        .remove_member(&owner, org, owner.id, &w.client)
        .await
        .unwrap();
    assert_eq!(
        code(w.tenancy.access(&owner, org).await),
        ErrorCode::NotFound
    );
}

#[tokio::test]
async fn nobody_raises_their_own_organization_role() {
    let w = world();
    let (org, owner, admin, member) = w.org().await;
    // A member cannot make themself admin.
    assert_eq!(
        code(
            w.tenancy
                .set_member_role(&member, org, member.id, OrgRole::Admin, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    // An admin cannot make themself owner, remove or demote the owner, or
    // invite an owner.
    assert_eq!(
        code(
            w.tenancy
                .set_member_role(&admin, org, admin.id, OrgRole::Owner, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .set_member_role(&admin, org, owner.id, OrgRole::Member, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .remove_member(&admin, org, owner.id, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .invite(&admin, org, "x@example.com", OrgRole::Owner, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    // Admins do manage members below owner.
    w.tenancy
        .set_member_role(&admin, org, member.id, OrgRole::Admin, &w.client)
        .await
        .unwrap();
    let roles: Vec<_> = w
        .tenancy
        .list_members(&owner, org, &crate::page::PageRequest::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .map(|m| m.membership.role)
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == OrgRole::Owner).count(),
        1,
        "{roles:?}"
    );
}

#[tokio::test]
async fn team_managers_hold_only_the_permissions_delegated_to_them() {
    let w = world();
    let (org, owner, admin, member) = w.org().await;
    let helper = w.user("helper", &[Role::User]).await;
    w.join(&owner, org, &helper, OrgRole::Member).await;
    let team = w
        .tenancy
        .create_team(
            &admin,
            org,
            TeamSpec {
                name: Some("Onboarding".into()),
                permissions: Some(BTreeSet::from([TeamPermission::InviteMembers])),
                allowed_models: Some(vec!["gpt-4o".into()]),
                ..TeamSpec::default()
            },
            &w.client,
        )
        .await
        .unwrap();
    assert_eq!(team.allowed_models, BTreeSet::from(["gpt-4o".to_string()]));
    // Without a team, a member invites nobody.
    assert_eq!(
        code(
            w.tenancy
                .invite(&helper, org, "new@example.com", OrgRole::Member, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    // A member cannot make themself a manager.
    assert_eq!(
        code(
            w.tenancy
                .put_team_member(
                    &helper,
                    org,
                    team.id,
                    helper.id,
                    TeamRole::Manager,
                    &w.client
                )
                .await
        ),
        ErrorCode::PermissionDenied
    );
    w.tenancy
        .put_team_member(
            &admin,
            org,
            team.id,
            helper.id,
            TeamRole::Manager,
            &w.client,
        )
        .await
        .unwrap();
    // As manager: invites members, but not admins; adds members to their own
    // team, but cannot make managers, change the team's permissions or
    // allow-list, or create teams.
    w.tenancy
        .invite(&helper, org, "new@example.com", OrgRole::Member, &w.client)
        .await
        .unwrap();
    assert_eq!(
        code(
            w.tenancy
                .invite(&helper, org, "boss@example.com", OrgRole::Admin, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    w.tenancy
        .put_team_member(
            &helper,
            org,
            team.id,
            member.id,
            TeamRole::Member,
            &w.client,
        )
        .await
        .unwrap();
    assert_eq!(
        code(
            w.tenancy
                .put_team_member(
                    &helper,
                    org,
                    team.id,
                    member.id,
                    TeamRole::Manager,
                    &w.client
                )
                .await
        ),
        ErrorCode::PermissionDenied
    );
    let widen = TeamSpec {
        permissions: Some(TeamPermission::ALL.into_iter().collect()),
        ..TeamSpec::default()
    };
    assert_eq!(
        code(
            w.tenancy
                .update_team(&helper, org, team.id, widen, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    let allow_all = TeamSpec {
        allowed_models: Some(vec![]),
        ..TeamSpec::default()
    };
    assert_eq!(
        code(
            w.tenancy
                .update_team(&helper, org, team.id, allow_all, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    let another = TeamSpec {
        name: Some("Mine".into()),
        ..TeamSpec::default()
    };
    assert_eq!(
        code(
            w.tenancy
                .create_team(&helper, org, another, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert!(
        w.tenancy
            .check_permission(&helper, "members.invite", Resource::Organization(org))
            .await
            .unwrap()
    );
    assert!(
        w.tenancy
            .check_permission(&helper, "team.manage_members", Resource::Team(team.id))
            .await
            .unwrap()
    );
    // Taken off the team, the delegated permission is gone at once.
    w.tenancy
        .remove_team_member(&owner, org, team.id, helper.id, &w.client)
        .await
        .unwrap();
    assert_eq!(
        code(
            w.tenancy
                .invite(
                    &helper,
                    org,
                    "later@example.com",
                    OrgRole::Member,
                    &w.client
                )
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert!(
        !w.tenancy
            .check_permission(&helper, "members.invite", Resource::Organization(org))
            .await
            .unwrap()
    );
    // Team names are unique per organization, case-insensitively.
    let dup = TeamSpec {
        name: Some("onboarding".into()),
        ..TeamSpec::default()
    };
    assert_eq!(
        code(w.tenancy.create_team(&owner, org, dup, &w.client).await),
        ErrorCode::Conflict
    );
}

#[tokio::test]
async fn outsiders_see_nothing_and_change_nothing() {
    let w = world();
    let (org, owner, _, member) = w.org().await;
    let outsider = w.user("outsider", &[Role::User]).await;
    let team = w
        .tenancy
        .create_team(
            &owner,
            org,
            TeamSpec {
                name: Some("T".into()),
                ..TeamSpec::default()
            },
            &w.client,
        )
        .await
        .unwrap();
    let c = &w.client;
    let t = &w.tenancy;
    let o = &outsider;
    let results = [
        code(t.access(o, org).await),
        code(
            t.list_members(o, org, &crate::page::PageRequest::default())
                .await,
        ),
        code(t.update_org(o, org, rename("Pwned"), c).await),
        code(t.delete_org(o, org, c).await),
        code(t.set_org_status(o, org, OrgStatus::Suspended, c).await),
        code(
            t.set_member_role(o, org, member.id, OrgRole::Owner, c)
                .await,
        ),
        code(t.remove_member(o, org, member.id, c).await),
        code(t.transfer_ownership(o, org, o.id, c).await),
        code(t.invite(o, org, &o.email, OrgRole::Owner, c).await),
        code(
            t.list_invitations(o, org, &crate::page::PageRequest::default())
                .await,
        ),
        code(t.list_teams(o, org).await),
        code(t.get_team(o, org, team.id).await),
        code(t.create_team(o, org, named("Mine"), c).await),
        code(t.update_team(o, org, team.id, TeamSpec::default(), c).await),
        code(t.delete_team(o, org, team.id, c).await),
        code(
            t.list_team_members(o, org, team.id, &crate::page::PageRequest::default())
                .await,
        ),
        code(
            t.put_team_member(o, org, team.id, o.id, TeamRole::Manager, c)
                .await,
        ),
        code(t.remove_team_member(o, org, team.id, member.id, c).await),
    ];
    assert!(
        results.iter().all(|c| *c == ErrorCode::NotFound),
        "{results:?}"
    );
    assert_eq!(t.get_team(&owner, org, team.id).await.unwrap().name, "T");
    assert_eq!(
        t.list_members(&owner, org, &crate::page::PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert!(
        !t.check_permission(o, "organization.read", Resource::Organization(org))
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn suspended_organizations_are_read_only_until_resumed() {
    let w = world();
    let (org, owner, _, member) = w.org().await;
    let admin = w.user("root", &[Role::User, Role::Admin]).await;
    let readonly = w.user("auditor", &[Role::User, Role::AdminReadonly]).await;
    assert_eq!(
        code(
            w.tenancy
                .set_org_status(&owner, org, OrgStatus::Suspended, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .set_org_status(&readonly, org, OrgStatus::Suspended, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    w.tenancy
        .set_org_status(&admin, org, OrgStatus::Suspended, &w.client)
        .await
        .unwrap();
    assert_eq!(
        w.tenancy.access(&member, org).await.unwrap().org.status,
        OrgStatus::Suspended
    );
    assert_eq!(
        code(
            w.tenancy
                .update_org(&owner, org, rename("X"), &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            w.tenancy
                .invite(&owner, org, "n@example.com", OrgRole::Member, &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    w.tenancy
        .set_org_status(&admin, org, OrgStatus::Active, &w.client)
        .await
        .unwrap();
    w.tenancy
        .update_org(&owner, org, rename("X"), &w.client)
        .await
        .unwrap();
    // Read-only admins read it and change nothing.
    assert_eq!(
        w.tenancy
            .list_members(&readonly, org, &crate::page::PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        3
    );
    assert_eq!(
        code(
            w.tenancy
                .update_org(&readonly, org, rename("Y"), &w.client)
                .await
        ),
        ErrorCode::PermissionDenied
    );
}

#[tokio::test]
async fn a_deleted_user_leaves_everything_but_not_an_orphaned_organization() {
    let w = world();
    let (org, owner, admin, _) = w.org().await;
    let now = w.env.clock.now();
    let blocked = check_user_removable(&w.store, owner.id).await;
    assert_eq!(blocked.unwrap_err().code(), ErrorCode::Conflict);
    check_user_removable(&w.store, admin.id).await.unwrap();
    let deleted = w
        .store
        .run(|tx| {
            let admin = &admin;
            async move { start_user_removal(&tx, admin, now).await }
        })
        .await
        .unwrap();
    assert!(deleted.is_some(), "only the personal organization goes");
    w.tenancy.run_removals().await.unwrap();
    assert!(
        w.tenancy
            .memberships(admin.id)
            .await
            .unwrap()
            .organizations
            .is_empty()
    );
    assert_eq!(
        w.tenancy
            .list_members(&owner, org, &crate::page::PageRequest::default())
            .await
            .unwrap()
            .items
            .len(),
        2
    );
}

#[tokio::test]
async fn unknown_permission_names_are_refused() {
    let w = world();
    let ada = w.user("ada", &[Role::User]).await;
    assert_eq!(
        code(
            w.tenancy
                .check_permission(&ada, "everything", Resource::Organization(Id(1)))
                .await
        ),
        ErrorCode::InvalidInput
    );
}

/// An organization far too large to delete in one transaction (its members'
/// and team members' keys alone are tens of megabytes, against the engines'
/// 10 MB) is gone from view when `delete_org` returns, its progress is
/// visible, and the removal takes every record, a page per transaction.
#[tokio::test]
async fn a_huge_organization_is_removed_a_page_per_transaction() {
    let w = world();
    let owner = w.user("owner", &[Role::User]).await;
    let admin = w.user("admin", &[Role::User, Role::Admin]).await;
    let org = w
        .tenancy
        .create_org(&owner, "Huge", &w.client)
        .await
        .unwrap()
        .id;
    let spec = TeamSpec {
        name: Some("Everyone".into()),
        ..TeamSpec::default()
    };
    let team = w
        .tenancy
        .create_team(&owner, org, spec, &w.client)
        .await
        .unwrap()
        .id;
    let now = w.env.clock.now();
    const MEMBERS: u64 = 60_000;
    for chunk in 0..MEMBERS / 2_000 {
        w.store
            .run(|tx| async move {
                for i in 0..2_000 {
                    let user_id = Id(1_000_000 + chunk * 2_000 + i);
                    let membership = Membership {
                        org_id: org,
                        user_id,
                        role: OrgRole::Member,
                        joined_at: now,
                        sso_provider: None,
                    };
                    put_membership(&tx, &membership).await?;
                    let member = TeamMember {
                        team_id: team,
                        org_id: org,
                        user_id,
                        role: TeamRole::Member,
                        added_at: now,
                        sso_provider: None,
                    };
                    keyspace::team_member(team, user_id)
                        .put(&tx, &member)
                        .await?;
                    let at = UserTeamRef {
                        org_id: org,
                        team_id: team,
                    };
                    keyspace::user_team(user_id, team).put(&tx, &at).await?;
                }
                Ok::<_, TxError<Error>>(())
            })
            .await
            .unwrap();
    }
    // Lists of that size are read a page at a time, from the cursor on.
    let page = |cursor: Option<String>| crate::page::PageRequest::new(Some(500), cursor).unwrap();
    let first = w
        .tenancy
        .list_team_members(&owner, org, team, &page(None))
        .await
        .unwrap();
    assert_eq!(first.items.len(), 500);
    let second = w
        .tenancy
        .list_team_members(&owner, org, team, &page(first.next_cursor.clone()))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 500);
    assert!(second.items[0].user_id > first.items[499].user_id);
    let members = w
        .tenancy
        .list_members(&owner, org, &page(None))
        .await
        .unwrap();
    assert!(members.next_cursor.is_some() && members.items.len() <= 500);
    w.tenancy.delete_org(&owner, org, &w.client).await.unwrap();
    // Gone from view at once, for its members too.
    assert_eq!(
        code(w.tenancy.access(&owner, org).await),
        ErrorCode::NotFound
    );
    let someone = w.tenancy.memberships(Id(1_000_007)).await.unwrap();
    assert!(someone.organizations.is_empty() && someone.teams.is_empty());
    let pending = w.tenancy.removals(&admin).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!((pending[0].id, pending[0].removed), (org, 0));
    assert_eq!(
        code(w.tenancy.removals(&owner).await),
        ErrorCode::PermissionDenied
    );
    let removed = w.tenancy.run_removals().await.unwrap();
    assert!(removed as u64 >= 2 * MEMBERS, "{removed}");
    assert!(w.tenancy.removals(&admin).await.unwrap().is_empty());
    let left = w
        .store
        .run(|tx| async move {
            let mut left = 0;
            for range in [
                keyspace::org_members(org),
                keyspace::team_members(team),
                keyspace::teams(org),
                keyspace::user_orgs(Id(1_000_007)),
                keyspace::user_teams(Id(1_000_007)),
            ] {
                left += tx
                    .get_range(&range, Default::default())
                    .await?
                    .entries
                    .len();
            }
            Ok::<_, TxError<Error>>(left)
        })
        .await
        .unwrap();
    assert_eq!(left, 0);
}
