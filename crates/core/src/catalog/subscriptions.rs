//! Subscriptions: a user asks for a restricted model; admins approve or deny
//! with a reason, and the user may cancel.

use super::*;

impl CatalogService {
    /// Subscribes the caller to a model: active at once, or pending an admin's
    /// approval for restricted models.
    pub async fn subscribe(
        &self,
        actor: &User,
        model_id: Id,
        client: &ClientInfo,
    ) -> Result<Subscription> {
        require_user_role(actor)?;
        let now = self.env.clock.now();
        let id = self.env.ids.next_id();
        let sub = self
            .audited(
                |tx| async move {
                    let Some(model) = keyspace::model(model_id).get(&tx).await? else {
                        return abort(Error::invalid_input("no model has this model_id"));
                    };
                    if !model.enabled {
                        return abort(Error::invalid_input("no model has this model_id"));
                    }
                    let index = keyspace::subscription_by_user(actor.id, model_id);
                    if let Some(existing) = index.get(&tx).await? {
                        let status = keyspace::subscription(existing.id)
                            .get(&tx)
                            .await?
                            .map(|s| s.status);
                        return abort(Error::conflict(format!(
                            "you already have a subscription to this model ({})",
                            status.map_or("unknown".into(), |s| format!("{s:?}").to_lowercase())
                        )));
                    }
                    let sub = Subscription {
                        id,
                        user_id: actor.id,
                        model_id,
                        status: if model.restricted {
                            SubscriptionStatus::Pending
                        } else {
                            SubscriptionStatus::Active
                        },
                        requested_at: now,
                        decided_by: None,
                        decided_at: None,
                        reason: None,
                    };
                    index.put(&tx, &IdRef { id }).await?;
                    keyspace::subscription(id).put(&tx, &sub).await?;
                    Ok(sub)
                },
                |sub| {
                    self.event(
                        actor,
                        "subscriptions.create",
                        ("subscription", id),
                        None,
                        client,
                        serde_json::json!({"model_id": model_id, "status": sub.status}),
                    )
                },
            )
            .await?;
        Ok(sub)
    }

    /// The caller's subscriptions, or every one (`all`, platform readers),
    /// optionally only those with `status`.
    pub async fn list_subscriptions(
        &self,
        actor: &User,
        all: bool,
        status: Option<SubscriptionStatus>,
    ) -> Result<Vec<Subscription>> {
        if all {
            require_reader(actor)?;
        }
        let mut subs = self
            .store
            .run(
                |tx| async move { read_all::<Subscription>(&tx, &keyspace::subscriptions()).await },
            )
            .await?;
        subs.retain(|s| (all || s.user_id == actor.id) && status.is_none_or(|st| s.status == st));
        Ok(subs)
    }

    /// An admin approves, denies or suspends a subscription.
    pub async fn decide_subscription(
        &self,
        actor: &User,
        id: Id,
        decision: Decision,
        reason: Option<String>,
        client: &ClientInfo,
    ) -> Result<Subscription> {
        if !actor.is_platform_reader() {
            return Err(Error::not_found("subscription"));
        }
        require_admin(actor)?;
        if reason.as_deref().is_some_and(|r| r.chars().count() > 500) {
            return Err(Error::invalid_input("a reason is at most 500 characters"));
        }
        let reason = reason.map(|r| r.trim().to_string());
        let now = self.env.clock.now();
        let action = match decision {
            Decision::Approve => "subscriptions.approve",
            Decision::Deny => "subscriptions.deny",
            Decision::Suspend => "subscriptions.suspend",
        };
        let sub = self
            .audited(
                |tx| {
                    let reason = &reason;
                    async move {
                        let key = keyspace::subscription(id);
                        let Some(mut sub) = key.get(&tx).await? else {
                            return abort(Error::not_found("subscription"));
                        };
                        sub.status = match decision {
                            Decision::Approve => SubscriptionStatus::Active,
                            Decision::Deny => SubscriptionStatus::Denied,
                            Decision::Suspend => SubscriptionStatus::Suspended,
                        };
                        sub.decided_by = Some(actor.id);
                        sub.decided_at = Some(now);
                        sub.reason = reason.clone();
                        key.put(&tx, &sub).await?;
                        Ok(sub)
                    }
                },
                |sub| {
                    let details = serde_json::json!({
                        "user_id": sub.user_id,
                        "model_id": sub.model_id,
                        "reason": sub.reason,
                    });
                    self.event(actor, action, ("subscription", id), None, client, details)
                },
            )
            .await?;
        Ok(sub)
    }

    /// The subscriber cancels a subscription (or an admin removes it).
    pub async fn cancel_subscription(
        &self,
        actor: &User,
        id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.audited(
            |tx| async move {
                let Some(sub) = keyspace::subscription(id).get(&tx).await? else {
                    return abort(Error::not_found("subscription"));
                };
                if sub.user_id != actor.id {
                    if !actor.is_platform_reader() {
                        return abort(Error::not_found("subscription"));
                    }
                    if !actor.is_platform_admin() {
                        return abort(Error::permission_denied("read-only admins change nothing"));
                    }
                }
                clear_subscription(&tx, &sub).await?;
                Ok(sub)
            },
            |sub| {
                self.event(
                    actor,
                    "subscriptions.delete",
                    ("subscription", id),
                    None,
                    client,
                    serde_json::json!({"user_id": sub.user_id, "model_id": sub.model_id}),
                )
            },
        )
        .await?;
        Ok(())
    }
}
