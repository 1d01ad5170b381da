//! Administration of accounts: profile and role changes, deletion (the
//! cascade through tenancy and vaults), listing and disabling users.

use super::*;

impl AccountService {
    /// Changes an account. Users change their own display name; platform
    /// admins change anyone's display name, roles and status. Nobody changes
    /// their own roles or status (no self-promotion, and a platform keeps the
    /// admin who acts). Every account keeps `user`, except a provider account,
    /// which holds `provider` alone. Roles and status count from the next
    /// request: requests load the account each time. Disabling ends sessions.
    pub async fn update_account(
        &self,
        actor: &User,
        user_id: Id,
        change: UserChange,
        client: &ClientInfo,
    ) -> Result<User> {
        let own = actor.id == user_id;
        if !own && !actor.is_platform_reader() {
            return Err(Error::not_found("user"));
        }
        if !own && !actor.is_platform_admin() {
            return Err(Error::permission_denied("read-only admins change nothing"));
        }
        if own && (change.roles.is_some() || change.status.is_some() || change.limits.is_some()) {
            return Err(Error::permission_denied(
                "you cannot change your own roles, status or limits",
            ));
        }
        if let Some(budget) = change.limits.as_ref().and_then(|l| l.budget.as_ref()) {
            crate::model::keys::check_budget(budget)?;
        }
        let display_name = change
            .display_name
            .as_deref()
            .map(parse_display_name)
            .transpose()?;
        let now = self.env.clock.now();
        let actor_id = actor.id;
        let after = self
            .store
            .run(|tx| {
                let (change, display_name) = (&change, &display_name);
                async move {
                    // The actor's standing is read again in this transaction:
                    // two admins demoting each other at once cannot both win.
                    if !own {
                        let current = keyspace::user(actor_id).get(&tx).await?;
                        if !current.is_some_and(|a| a.is_active() && a.is_platform_admin()) {
                            return Err(TxError::Abort(Error::permission_denied(
                                "only platform admins change other accounts",
                            )));
                        }
                    }
                    let key = keyspace::user(user_id);
                    let Some(before) = key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("user")));
                    };
                    if let Some(roles) = &change.roles {
                        check_roles(&before, roles).map_err(TxError::Abort)?;
                    }
                    let mut after = before.clone();
                    if let Some(name) = display_name {
                        after.display_name = name.clone();
                    }
                    if let Some(roles) = &change.roles {
                        after.roles = roles.clone();
                        // A group-held role an admin takes away is no longer
                        // group-held; the next SSO sign-in gives it back if
                        // the groups still do.
                        after.sso_roles = after.sso_roles.intersection(roles).copied().collect();
                    }
                    if let Some(status) = change.status {
                        after.status = status;
                    }
                    if let Some(limits) = change.limits {
                        after.limits = limits;
                    }
                    after.updated_at = now;
                    key.put(&tx, &after).await?;
                    let event = self.audit.event(NewEvent {
                        actor: Actor::User { id: actor_id },
                        action: "users.update",
                        outcome: Outcome::Success,
                        target: Some(("user", user_id.to_string())),
                        organization: None,
                        client,
                        details: change_details(&before, &after),
                    });
                    self.audit.stage(&tx, &event).await?;
                    Ok(after)
                }
            })
            .await?;
        if change.status == Some(UserStatus::Disabled) {
            self.revoke_all_sessions(user_id, None).await?;
        }
        Ok(after)
    }

    /// Deletes an account (platform admins, not their own): its sessions,
    /// addresses, memberships, chats and personal organization go with it —
    /// the account and its personal organization at once, the rest a page per
    /// transaction (`TenancyService::run_removals`). A user who alone owns
    /// another organization is a `conflict` until ownership moves.
    pub async fn delete_user(&self, actor: &User, user_id: Id, client: &ClientInfo) -> Result<()> {
        if actor.id != user_id && !actor.is_platform_reader() {
            return Err(Error::not_found("user"));
        }
        if !actor.is_platform_admin() {
            return Err(Error::permission_denied(
                "only platform admins delete accounts",
            ));
        }
        if actor.id == user_id {
            return Err(Error::permission_denied(
                "you cannot delete your own account",
            ));
        }
        // Read a page at a time: an account may belong to very many organizations.
        crate::tenancy::check_user_removable(&self.store, user_id).await?;
        let now = self.env.clock.now();
        let (user, orgs) = self
            .store
            .run(|tx| async move {
                // Read again in this transaction, as in `update_account`.
                let current = keyspace::user(actor.id).get(&tx).await?;
                if !current.is_some_and(|a| a.is_active() && a.is_platform_admin()) {
                    return Err(TxError::Abort(Error::permission_denied(
                        "only platform admins delete accounts",
                    )));
                }
                let Some(user) = keyspace::user(user_id).get(&tx).await? else {
                    return Err(TxError::Abort(Error::not_found("user")));
                };
                // Gone from view now (no sign-in, no session, no token works
                // without the account); sessions, memberships and chats
                // follow a page at a time.
                let orgs = crate::tenancy::start_user_removal(&tx, &user, now).await?;
                let all = gatehouse_storage::RangeOptions::default();
                let emails = tx.get_range(&keyspace::user_emails(user_id), all).await?;
                for e in crate::codec::decode_values::<UserEmail>(&emails.entries)
                    .map_err(TxError::Abort)?
                {
                    let key = e.email.to_lowercase();
                    keyspace::user_by_email(&key).clear(&tx).await?;
                    keyspace::user_email(user_id, &key).clear(&tx).await?;
                }
                keyspace::user_by_email(&user.email.to_lowercase())
                    .clear(&tx)
                    .await?;
                if let Some(name) = user
                    .username
                    .as_deref()
                    .map(Username::parse)
                    .transpose()
                    .map_err(TxError::Abort)?
                {
                    keyspace::user_by_username(&name).clear(&tx).await?;
                }
                keyspace::user(user_id).clear(&tx).await?;
                Ok((user, orgs))
            })
            .await?;
        self.audit
            .record(NewEvent {
                actor: Actor::User { id: actor.id },
                action: "users.delete",
                outcome: Outcome::Success,
                target: Some(("user", user_id.to_string())),
                organization: None,
                client,
                details: serde_json::json!({"email": user.email, "deleted_organizations": orgs}),
            })
            .await;
        Ok(())
    }

    /// A user as `viewer` may see it: themself, or anyone for platform admins
    /// (`admin`, `admin_readonly`). Anyone else is `not_found`, so IDs leak nothing.
    pub async fn view_user(&self, viewer: &User, id: Id) -> Result<User> {
        if viewer.id != id && !viewer.is_platform_reader() {
            return Err(Error::not_found("user"));
        }
        self.get_user(id).await
    }

    /// Users in ID (creation) order, for platform admins, filtered by role,
    /// status and text (in email, username or display name). `after` is the
    /// last ID of the previous page.
    pub async fn list_users(
        &self,
        viewer: &User,
        filter: &UserFilter,
        after: Option<Id>,
        limit: usize,
    ) -> Result<Vec<User>> {
        if !viewer.is_platform_reader() {
            return Err(Error::new(
                ErrorCode::PermissionDenied,
                "only platform admins can list users",
            ));
        }
        let limit = limit.clamp(1, MAX_USER_PAGE);
        let text = filter.text.as_deref().map(str::to_lowercase);
        let matches = |u: &User| {
            filter.role.is_none_or(|r| u.roles.contains(&r))
                && filter.status.is_none_or(|s| u.status == s)
                && text.as_deref().is_none_or(|t| {
                    u.email.to_lowercase().contains(t)
                        || u.display_name.to_lowercase().contains(t)
                        || u.username.as_deref().is_some_and(|n| n.contains(t))
                })
        };
        let all = keyspace::users();
        let begin = match after {
            Some(id) => gatehouse_storage::key_after(keyspace::user(id).as_bytes()),
            None => all.begin,
        };
        crate::codec::find_in_range(&self.store, begin, all.end, false, limit, matches).await
    }

    /// Disables an account; its sessions end at once.
    pub async fn disable_user(&self, user_id: Id) -> Result<()> {
        self.update_user(user_id, |u| u.status = UserStatus::Disabled)
            .await?;
        self.revoke_all_sessions(user_id, None).await?;
        Ok(())
    }

    /// Reads, changes and writes one user in a transaction (`change` may run
    /// more than once), stamping `updated_at`; `not_found` if there is none.
    pub(super) async fn update_user(
        &self,
        id: Id,
        change: impl Fn(&mut User) + Send + Sync,
    ) -> Result<()> {
        let now = self.env.clock.now();
        self.store
            .run(|tx| {
                let change = &change;
                async move {
                    let key = keyspace::user(id);
                    let Some(mut user) = key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("user")));
                    };
                    change(&mut user);
                    user.updated_at = now;
                    key.put(&tx, &user).await
                }
            })
            .await?;
        Ok(())
    }

    pub async fn get_user(&self, id: Id) -> Result<User> {
        self.store
            .run(|tx| async move { keyspace::user(id).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("user"))
    }
}

/// What an account change changed, for its audit event.
fn change_details(before: &User, after: &User) -> serde_json::Value {
    let mut details = serde_json::Map::new();
    if before.display_name != after.display_name {
        details.insert(
            "display_name".into(),
            serde_json::json!({"from": before.display_name, "to": after.display_name}),
        );
    }
    if before.roles != after.roles {
        details.insert(
            "roles".into(),
            serde_json::json!({"from": before.roles, "to": after.roles}),
        );
    }
    if before.limits != after.limits {
        details.insert(
            "limits".into(),
            serde_json::json!({"from": before.limits, "to": after.limits}),
        );
    }
    if before.status != after.status {
        details.insert(
            "status".into(),
            serde_json::json!({"from": before.status, "to": after.status}),
        );
    }
    details.into()
}
