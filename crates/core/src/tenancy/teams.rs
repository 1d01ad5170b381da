//! Teams inside an organization: their members and managers, delegated
//! permissions, model allow-lists and budgets.

use super::*;

impl TenancyService {
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
        self.audited(
            |tx| {
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
            },
            |_| {
                self.event(
                    actor,
                    client,
                    Event {
                        action: "teams.create",
                        org: Some(org_id),
                        target: Some(("team", team.id)),
                        details: team_details(&team),
                    },
                )
            },
        )
        .await?;
        Ok(team)
    }

    pub async fn list_teams(&self, actor: &User, org_id: Id) -> Result<Vec<Team>> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            read_all::<Team>(&tx, &keyspace::teams(org_id)).await
        })
        .await
    }

    pub async fn get_team(&self, actor: &User, org_id: Id, team_id: Id) -> Result<Team> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            keyspace::team(org_id, team_id)
                .get(&tx)
                .await?
                .ok_or_else(|| TxError::Abort(Error::not_found("team")))
        })
        .await
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
            .audited(
                |tx| {
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
                },
                |team| {
                    self.event(
                        actor,
                        client,
                        Event {
                            action: "teams.update",
                            org: Some(org_id),
                            target: Some(("team", team_id)),
                            details: team_details(team),
                        },
                    )
                },
            )
            .await?;
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
        self.audited(
            |tx| async move {
                let access = load_access(&tx, actor, org_id).await?;
                access.require(OrgAction::ManageTeams)?;
                let Some(team) = keyspace::team(org_id, team_id).get(&tx).await? else {
                    return abort(Error::not_found("team"));
                };
                delete_team_records(&tx, &team, now).await?;
                Ok(team)
            },
            |team| {
                self.event(
                    actor,
                    client,
                    Event {
                        action: "teams.delete",
                        org: Some(org_id),
                        target: Some(("team", team_id)),
                        details: serde_json::json!({"name": team.name}),
                    },
                )
            },
        )
        .await?;
        Ok(())
    }

    pub async fn list_team_members(
        &self,
        actor: &User,
        org_id: Id,
        team_id: Id,
        page: &PageRequest,
    ) -> Result<Page<TeamMember>> {
        let after: Option<Id> = page.after_key()?;
        let limit = page.limit;
        read_in_org(&self.store, actor, org_id, |tx| async move {
            if keyspace::team(org_id, team_id).get(&tx).await?.is_none() {
                return abort(Error::not_found("team"));
            }
            let after = after.map(|user| keyspace::team_member(team_id, user));
            let (items, more) = crate::codec::read_page_after::<TeamMember>(
                &tx,
                &keyspace::team_members(team_id),
                after.as_ref().map(|k| k.as_bytes()),
                limit,
            )
            .await?;
            Ok(Page::after_read(items, more, |m| m.user_id))
        })
        .await
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
            .audited(
                |tx| async move {
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
                        sso_provider: None,
                    };
                    key.put(&tx, &member).await?;
                    keyspace::user_team(user_id, team_id)
                        .put(&tx, &UserTeamRef { org_id, team_id })
                        .await?;
                    Ok(member)
                },
                |member| {
                    self.event(
                        actor,
                        client,
                        Event {
                            action: "teams.members.put",
                            org: Some(org_id),
                            target: Some(("user", user_id)),
                            details: serde_json::json!({"team_id": team_id, "role": member.role}),
                        },
                    )
                },
            )
            .await?;
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
        self.audited(
            |tx| async move {
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
            },
            |_| {
                self.event(
                    actor,
                    client,
                    Event {
                        action: "teams.members.remove",
                        org: Some(org_id),
                        target: Some(("user", user_id)),
                        details: serde_json::json!({"team_id": team_id}),
                    },
                )
            },
        )
        .await?;
        Ok(())
    }
}
