//! API keys: created for their owner and shown once, stored only as SHA-256,
//! revoked, rotated with a grace period; and the in-memory [`AccessIndex`]
//! that decides requests without reading storage.
//!
//! Holders of `user` create and manage their own keys; platform admins read
//! and revoke every key, read-only admins read them (SPEC §2).

pub mod index;
use crate::model::keys as model;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_storage::{KeyRange, RangeOptions, Store, TxError};

use self::index::{AccessIndex, KEY_RANDOM_CHARS};
use self::model::{ApiKey, Budget, KeyScope, LastUsed, check_budget};
use crate::audit::{AuditEvent, AuditLog, NewEvent};
use crate::codec::decode_values;
use crate::model::accounts::{Role, User};
use crate::model::catalog::IdRef;
use crate::model::sessions::ClientInfo;
use crate::page::{Page, PageRequest};
use crate::{Env, Error, Id, Result, keyspace};

/// A new key's settings.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    /// An organization the owner belongs to.
    pub org_id: Option<Id>,
    pub label: String,
    pub allowed_models: Vec<String>,
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u32>,
    pub budget: Option<Budget>,
    pub expires_at: Option<DateTime<Utc>>,
    /// `gateway` is always granted; `management` only when asked for.
    pub scopes: Vec<KeyScope>,
}

/// A key as listed: the record and its last use.
#[derive(Debug, Clone)]
pub struct KeyView {
    pub key: ApiKey,
    pub last_used_at: Option<DateTime<Utc>>,
}

/// Most keys one user holds.
pub const MAX_KEYS_PER_USER: usize = 1000;

/// The longest grace period a rotation grants (30 days).
pub const MAX_GRACE_SECS: u64 = 30 * 86_400;

pub struct KeyService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
    index: Arc<AccessIndex>,
}

impl KeyService {
    pub fn new(store: Store, env: Env, audit: Arc<AuditLog>, index: Arc<AccessIndex>) -> Self {
        KeyService {
            store,
            env,
            audit,
            index,
        }
    }

    pub fn index(&self) -> &Arc<AccessIndex> {
        &self.index
    }

    /// The audit event of `action` on key `id`, to stage in its transaction.
    fn event(
        &self,
        actor: &User,
        action: &str,
        id: Id,
        client: &ClientInfo,
        details: serde_json::Value,
    ) -> AuditEvent {
        self.audit.event(
            NewEvent::by_user(actor, action, client)
                .on("api_key", id)
                .with(details),
        )
    }

    /// `prefix` + 32 characters of `[A-Za-z0-9]` (about 190 bits).
    fn generate(&self) -> String {
        format!(
            "{}{}",
            self.index.prefix(),
            self.env.random.alphanumeric(KEY_RANDOM_CHARS)
        )
    }

    fn build(
        &self,
        owner: Id,
        spec: &NewKey,
        (rotated_from, created_by_key): (Option<Id>, Option<Id>),
    ) -> Result<(ApiKey, String)> {
        let Some(label) = crate::common::trimmed_text(&spec.label, 100) else {
            return Err(Error::invalid_input(
                "labels are at most 100 characters without control characters",
            ));
        };
        let allowed_models = crate::model::catalog::allow_list(&spec.allowed_models)?;
        if let Some(budget) = &spec.budget {
            check_budget(budget)?;
        }
        let now = self.env.clock.now();
        if spec.expires_at.is_some_and(|at| at <= now) {
            return Err(Error::invalid_input("expires_at is in the past"));
        }
        if spec.rpm_limit == Some(0) || spec.tpm_limit == Some(0) {
            return Err(Error::invalid_input(
                "rpm_limit and tpm_limit are at least 1 (leave them out for no limit)",
            ));
        }
        let plaintext = self.generate();
        let key = ApiKey {
            id: self.env.ids.next_id(),
            owner_id: owner,
            org_id: spec.org_id,
            label: label.to_string(),
            display_prefix: plaintext
                .chars()
                .take(self.index.prefix().len() + 4)
                .collect(),
            hash: crate::common::token_hash(&plaintext),
            allowed_models,
            rpm_limit: spec.rpm_limit,
            tpm_limit: spec.tpm_limit,
            budget: spec.budget,
            expires_at: spec.expires_at,
            revoked_at: None,
            rotated_from,
            replaced_by: None,
            scopes: spec
                .scopes
                .iter()
                .copied()
                .chain([KeyScope::Gateway])
                .collect(),
            created_by_key,
            created_at: now,
        };
        Ok((key, plaintext))
    }

    /// Creates a key for the caller; the plaintext is returned only now.
    ///
    /// Made by an API key (`via`), the new key is never broader than it.
    pub async fn create(
        &self,
        actor: &User,
        spec: NewKey,
        via: Option<Id>,
        client: &ClientInfo,
    ) -> Result<(ApiKey, String)> {
        if !actor.roles.contains(&Role::User) {
            return Err(Error::permission_denied(
                "provider accounts cannot hold API keys",
            ));
        }
        let (key, plaintext) = self.build(actor.id, &spec, (None, via))?;
        let event = self.event(actor, "keys.create", key.id, client, key_details(&key));
        self.store
            .run(|tx| {
                let (key, event) = (&key, &event);
                async move {
                    if let Some(parent) = via {
                        let parent = keyspace::api_key(parent)
                            .get(&tx)
                            .await?
                            .filter(|p| p.owner_id == key.owner_id && p.may_manage())
                            .ok_or_else(|| {
                                TxError::Abort(Error::permission_denied(
                                    "this API key cannot create keys",
                                ))
                            })?;
                        if let Some(why) = parent.broader(key) {
                            return Err(TxError::Abort(Error::permission_denied(format!(
                                "a key cannot create a key broader than itself: {why}"
                            ))));
                        }
                    }
                    if let Some(org) = key.org_id
                        && keyspace::org_member(org, key.owner_id)
                            .get(&tx)
                            .await?
                            .is_none()
                    {
                        return Err(TxError::Abort(Error::not_found("organization")));
                    }
                    let held = tx
                        .get_range(
                            &keyspace::api_keys_of(key.owner_id),
                            RangeOptions::limit(MAX_KEYS_PER_USER),
                        )
                        .await?
                        .entries
                        .len();
                    if held >= MAX_KEYS_PER_USER {
                        return Err(TxError::Abort(Error::invalid_input(format!(
                            "a user holds at most {MAX_KEYS_PER_USER} API keys"
                        ))));
                    }
                    insert(&tx, key).await?;
                    self.audit.stage(&tx, event).await
                }
            })
            .await?;
        self.index.refresh_key(key.id).await?;
        Ok((key, plaintext))
    }

    /// A page of the caller's keys, or (`all`, platform readers) everyone's;
    /// newest first. Paged in storage: a reverse range read that ends before
    /// the cursor's key.
    pub async fn list(&self, actor: &User, all: bool, page: &PageRequest) -> Result<Page<KeyView>> {
        if all && !actor.is_platform_reader() {
            return Err(Error::permission_denied(
                "only platform admins list every key",
            ));
        }
        let owner = actor.id;
        let after: Option<Id> = page.after_key()?;
        let whole = if all {
            keyspace::api_keys()
        } else {
            keyspace::api_keys_of(owner)
        };
        // Newest first: read backwards, from just before the cursor's key.
        let range = match after {
            None => whole,
            Some(id) if all => KeyRange::new(whole.begin, keyspace::api_key(id).as_bytes()),
            Some(id) => KeyRange::new(whole.begin, keyspace::api_key_of(owner, id).as_bytes()),
        };
        let limit = page.limit;
        let views = self
            .store
            .run(|tx| {
                let range = &range;
                async move {
                    let read = RangeOptions::limit(limit + 1).reversed();
                    let page = tx.get_range(range, read).await?;
                    let keys: Vec<ApiKey> = if all {
                        decode_values(&page.entries).map_err(TxError::Abort)?
                    } else {
                        let mut keys = Vec::new();
                        for entry in
                            decode_values::<IdRef>(&page.entries).map_err(TxError::Abort)?
                        {
                            if let Some(key) = keyspace::api_key(entry.id).get(&tx).await? {
                                keys.push(key);
                            }
                        }
                        keys
                    };
                    let mut views = Vec::with_capacity(keys.len());
                    for key in keys {
                        let last_used_at = keyspace::api_key_last_used(key.id)
                            .get(&tx)
                            .await?
                            .map(|l| l.at);
                        views.push(KeyView { key, last_used_at });
                    }
                    Ok::<_, TxError<Error>>(views)
                }
            })
            .await?;
        Ok(Page::from_lookahead(views, limit, |v| v.key.id))
    }

    /// One key: the owner's, or any for platform readers; others `not_found`.
    pub async fn get(&self, actor: &User, id: Id) -> Result<KeyView> {
        let view = self
            .store
            .run(|tx| async move {
                let Some(key) = keyspace::api_key(id).get(&tx).await? else {
                    return Ok(None);
                };
                let last_used_at = keyspace::api_key_last_used(id)
                    .get(&tx)
                    .await?
                    .map(|l| l.at);
                Ok::<_, TxError<Error>>(Some(KeyView { key, last_used_at }))
            })
            .await?
            .filter(|v| v.key.owner_id == actor.id || actor.is_platform_reader())
            .ok_or_else(|| Error::not_found("API key"))?;
        Ok(view)
    }

    /// Revokes a key: its owner or a platform admin. It fails on the next
    /// request on this instance, and within a second on the others.
    /// Through an API key (`via`), only keys that key created.
    pub async fn revoke(
        &self,
        actor: &User,
        id: Id,
        via: Option<Id>,
        client: &ClientInfo,
    ) -> Result<ApiKey> {
        let now = self.env.clock.now();
        let key = self
            .store
            .run(|tx| async move {
                let storage_key = keyspace::api_key(id);
                let Some(mut key) = storage_key.get(&tx).await? else {
                    return Err(TxError::Abort(Error::not_found("API key")));
                };
                may_change(actor, &key).map_err(TxError::Abort)?;
                created_by(&key, via).map_err(TxError::Abort)?;
                if key.revoked_at.is_none() {
                    key.revoked_at = Some(now);
                    storage_key.put(&tx, &key).await?;
                }
                let details = serde_json::json!({"owner_id": key.owner_id});
                let event = self.event(actor, "keys.revoke", id, client, details);
                self.audit.stage(&tx, &event).await?;
                Ok(key)
            })
            .await?;
        self.index.refresh_key(id).await?;
        Ok(key)
    }

    /// Replaces a key with a new one with the same settings; the old one keeps
    /// working for `grace_secs` (at most 30 days), then stops. The owner only.
    /// Through an API key (`via`), only keys that key created.
    pub async fn rotate(
        &self,
        actor: &User,
        id: Id,
        grace_secs: u64,
        via: Option<Id>,
        client: &ClientInfo,
    ) -> Result<(ApiKey, String)> {
        if grace_secs > MAX_GRACE_SECS {
            return Err(Error::invalid_input(format!(
                "grace_secs is at most {MAX_GRACE_SECS} (30 days)"
            )));
        }
        let old = self.get(actor, id).await?.key;
        if old.owner_id != actor.id {
            return Err(Error::permission_denied("only its owner rotates a key"));
        }
        created_by(&old, via)?;
        if let Some(reason) = old.unusable_at(self.env.clock.now_millis()) {
            return Err(Error::conflict(format!("this key is {reason}")));
        }
        if old.replaced_by.is_some() {
            return Err(Error::conflict("this key has already been rotated"));
        }
        let spec = NewKey {
            org_id: old.org_id,
            label: old.label.clone(),
            allowed_models: old.allowed_models.iter().cloned().collect(),
            rpm_limit: old.rpm_limit,
            tpm_limit: old.tpm_limit,
            budget: old.budget,
            expires_at: old.expires_at,
            scopes: old.scopes.iter().copied().collect(),
        };
        let (new, plaintext) = self.build(actor.id, &spec, (Some(id), old.created_by_key))?;
        let grace_end = self.env.clock.now() + chrono::Duration::seconds(grace_secs as i64);
        let details = serde_json::json!({"new_key_id": new.id, "grace_secs": grace_secs});
        let event = self.event(actor, "keys.rotate", id, client, details);
        self.store
            .run(|tx| {
                let (new, event) = (&new, &event);
                async move {
                    let storage_key = keyspace::api_key(id);
                    let Some(mut old) = storage_key.get(&tx).await? else {
                        return Err(TxError::Abort(Error::not_found("API key")));
                    };
                    if old.replaced_by.is_some() || old.revoked_at.is_some() {
                        return Err(TxError::Abort(Error::conflict(
                            "this key has already been rotated or revoked",
                        )));
                    }
                    old.replaced_by = Some(new.id);
                    old.expires_at = Some(old.expires_at.map_or(grace_end, |e| e.min(grace_end)));
                    storage_key.put(&tx, &old).await?;
                    insert(&tx, new).await?;
                    self.audit.stage(&tx, event).await
                }
            })
            .await?;
        self.index.refresh_key(id).await?;
        self.index.refresh_key(new.id).await?;
        Ok((new, plaintext))
    }

    /// Writes the last-use times the index collected since the last flush;
    /// returns how many keys were written. Called by a background job, so no
    /// request waits on a storage write for it.
    pub async fn flush_last_used(&self) -> Result<usize> {
        let used = self.index.take_used();
        if used.is_empty() {
            return Ok(0);
        }
        let count = used.len();
        for chunk in used.chunks(500) {
            self.store
                .run(|tx| async move {
                    for (id, at_ms) in chunk {
                        let key = keyspace::api_key_last_used(*id);
                        let at = DateTime::<Utc>::from_timestamp_millis(*at_ms).unwrap_or_default();
                        let newer = key.get(&tx).await?.is_none_or(|l| l.at < at);
                        if newer {
                            key.put(&tx, &LastUsed { at }).await?;
                        }
                    }
                    Ok::<_, TxError<Error>>(())
                })
                .await?;
        }
        Ok(count)
    }
}

/// The owner changes their keys; platform admins revoke anyone's.
fn may_change(actor: &User, key: &ApiKey) -> Result<()> {
    if key.owner_id == actor.id || actor.is_platform_admin() {
        return Ok(());
    }
    if actor.is_platform_reader() {
        return Err(Error::permission_denied("read-only admins change nothing"));
    }
    Err(Error::not_found("API key"))
}

/// A key acting on a key (`via`) acts only on the keys it created.
fn created_by(key: &ApiKey, via: Option<Id>) -> Result<()> {
    match via {
        Some(parent) if key.created_by_key != Some(parent) => Err(Error::permission_denied(
            "an API key revokes and rotates only the keys it created",
        )),
        _ => Ok(()),
    }
}

async fn insert(tx: &gatehouse_storage::Tx, key: &ApiKey) -> Result<(), TxError<Error>> {
    keyspace::api_key_by_hash(&key.hash)
        .put(tx, &IdRef { id: key.id })
        .await?;
    keyspace::api_key_of(key.owner_id, key.id)
        .put(tx, &IdRef { id: key.id })
        .await?;
    keyspace::api_key(key.id).put(tx, key).await
}

fn key_details(key: &ApiKey) -> serde_json::Value {
    serde_json::json!({
        "label": key.label,
        "display_prefix": key.display_prefix,
        "allowed_models": key.allowed_models,
        "rpm_limit": key.rpm_limit,
        "tpm_limit": key.tpm_limit,
        "budget": key.budget,
        "expires_at": key.expires_at,
        "scopes": key.scopes,
        "created_by_key": key.created_by_key,
    })
}

#[cfg(test)]
mod tests;
