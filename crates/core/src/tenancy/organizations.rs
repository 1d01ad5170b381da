//! Organizations: creation, reading, renaming, suspension and deletion, and
//! the internal questions other services ask (memberships, named permissions).

use super::*;

impl TenancyService {
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
        self.audited(
            |tx| {
                let org = &org;
                async move {
                    claim_slug(&tx, &org.slug, org.id).await?;
                    keyspace::org(org.id).put(&tx, org).await?;
                    let owner = Membership {
                        org_id: org.id,
                        user_id: actor.id,
                        role: OrgRole::Owner,
                        joined_at: now,
                        sso_provider: None,
                    };
                    put_membership(&tx, &owner).await
                }
            },
            |_| {
                let details = serde_json::json!({"name": org.name});
                self.event(
                    actor,
                    client,
                    Event {
                        action: "orgs.create",
                        org: Some(org.id),
                        target: Some(("organization", org.id)),
                        details,
                    },
                )
            },
        )
        .await?;
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
        let limit = limit.clamp(1, crate::page::MAX_LIMIT + 1);
        let page = self
            .store
            .read_range(&range, RangeOptions::limit(limit))
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
            .audited(
                |tx| {
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
                },
                |org| {
                    let details =
                        serde_json::json!({"name": org.name, "capture_bodies": org.capture_bodies});
                    self.event(
                        actor,
                        client,
                        Event {
                            action: "orgs.update",
                            org: Some(org_id),
                            target: Some(("organization", org_id)),
                            details,
                        },
                    )
                },
            )
            .await?;
        Ok(org)
    }

    /// Deletes an organization with its members, invitations, teams, vaults,
    /// clients and projects (owners, platform admins): it is gone from view
    /// when this returns; its records follow a page per transaction
    /// ([`Self::run_removals`]). A personal organization goes only with its user.
    pub async fn delete_org(&self, actor: &User, org_id: Id, client: &ClientInfo) -> Result<()> {
        let now = self.env.clock.now();
        self.audited(
            |tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                access.require(OrgAction::Delete)?;
                if access.org.personal {
                    return abort(Error::conflict(
                        "a personal organization is deleted only with its user",
                    ));
                }
                // Gone from view now; its records go a page at a time.
                start_org_removal(&tx, &access.org, now).await?;
                Ok(access.org)
            },
            |org| {
                let details = serde_json::json!({"name": org.name});
                self.event(
                    actor,
                    client,
                    Event {
                        action: "orgs.delete",
                        org: Some(org_id),
                        target: Some(("organization", org_id)),
                        details,
                    },
                )
            },
        )
        .await?;
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
            .audited(
                |tx| async move {
                    let access = load_access(&tx, actor, org_id).await?;
                    access.require(OrgAction::Suspend)?;
                    let mut org = access.org;
                    org.status = status;
                    org.updated_at = now;
                    keyspace::org(org_id).put(&tx, &org).await?;
                    Ok::<_, TxError<Error>>(org)
                },
                |_| {
                    let action = match status {
                        OrgStatus::Active => "orgs.resume",
                        OrgStatus::Suspended => "orgs.suspend",
                    };
                    self.event(
                        actor,
                        client,
                        Event {
                            action,
                            org: Some(org_id),
                            target: Some(("organization", org_id)),
                            details: serde_json::json!({}),
                        },
                    )
                },
            )
            .await?;
        Ok(org)
    }

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
                    // A team of an organization being removed is no longer held.
                    let org = keyspace::org(entry.org_id).get(&tx).await?;
                    if let (Some(team), Some(member), Some(_)) = (team, member, org) {
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
