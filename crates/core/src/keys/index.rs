//! The access index: everything the access decision of SPEC §4 needs, in
//! memory, so that checking a key never reads storage.
//!
//! It is loaded once at start and kept exact through the change feed: writes
//! made by this instance refresh it before they answer (so a revoked key fails
//! on the very next request here), and [`AccessIndex::catch_up`], called every
//! few hundred milliseconds, applies what other instances wrote.
//!
//! Lookups are by SHA-256 of the presented key in a [`DashMap`]; owners and
//! the catalogue (models, aliases) sit beside it, shared through `Arc`s.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use dashmap::DashMap;
use gatehouse_storage::tuple::unpack;
use gatehouse_storage::{Store, TxError};
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};

use super::model::{ApiKey, Budget};
use crate::changes::{ChangeCursor, ChangeFeed};
use crate::codec::read_all;
use crate::env::Clock;
use crate::model::accounts::{Role, UsageLimits, User};
use crate::model::catalog::{Alias, Endpoint, IdRef, Model, SubscriptionStatus};
use crate::model::tenancy::Organization;
use crate::model::tenancy::UserTeamRef;
use crate::{Error, Id, Result, keyspace};

/// Why a request is refused (SPEC §4), with the HTTP status it maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denial {
    /// 401: no such key.
    UnknownKey,
    /// 401: revoked.
    Revoked,
    /// 401: past its expiry (or its rotation grace period).
    Expired,
    /// 401: the owner is disabled, deleted, or does not hold `user`.
    OwnerInactive,
    /// 404: the name resolves to no enabled model.
    UnknownModel,
    /// 403: the model is restricted and the owner has no active subscription.
    SubscriptionRequired,
    /// 403: the owner's teams do not allow the model.
    TeamNotAllowed,
    /// 403: the key's own allow-list does not include the model.
    KeyNotAllowed,
}

impl Denial {
    pub fn status(self) -> u16 {
        match self {
            Denial::UnknownKey | Denial::Revoked | Denial::Expired | Denial::OwnerInactive => 401,
            Denial::UnknownModel => 404,
            Denial::SubscriptionRequired | Denial::TeamNotAllowed | Denial::KeyNotAllowed => 403,
        }
    }

    /// A stable name, for logs and gRPC answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Denial::UnknownKey => "unknown_key",
            Denial::Revoked => "revoked",
            Denial::Expired => "expired",
            Denial::OwnerInactive => "owner_inactive",
            Denial::UnknownModel => "unknown_model",
            Denial::SubscriptionRequired => "subscription_required",
            Denial::TeamNotAllowed => "team_not_allowed",
            Denial::KeyNotAllowed => "key_not_allowed",
        }
    }

    /// The sentence a client sees.
    pub fn message(self) -> &'static str {
        match self {
            Denial::UnknownKey => "invalid API key",
            Denial::Revoked => "this API key has been revoked",
            Denial::Expired => "this API key has expired",
            Denial::OwnerInactive => "the account of this API key cannot use models",
            Denial::UnknownModel => "the model does not exist",
            Denial::SubscriptionRequired => {
                "this model needs an approved subscription; request one first"
            }
            Denial::TeamNotAllowed => "your teams do not allow this model",
            Denial::KeyNotAllowed => "this API key does not allow this model",
        }
    }
}

/// The subspaces the access decision depends on: [`AccessIndex::catch_up`]
/// follows them, and so does a gateway outside the process that caches
/// decisions (gRPC `WatchChanges` streams exactly these).
pub const FOLLOWED: [&str; 12] = [
    "api_key",
    "user",
    "subscription_by_user",
    "team_member",
    "user_team",
    "subscription",
    "team",
    "model",
    "alias",
    "endpoint",
    "org",
    "credential",
];

/// Who may follow the changes behind access decisions: platform admins and
/// read-only admins (the stream names every key and user that changes).
pub fn may_watch_changes(user: &User) -> Result<()> {
    if user.is_platform_reader() {
        Ok(())
    } else {
        Err(Error::permission_denied(
            "only platform admins watch changes",
        ))
    }
}

/// A presented key found working, with its owner as the index knows them
/// ([`AccessIndex::working_key`]).
#[derive(Debug, Clone)]
pub struct WorkingKey {
    key: Arc<ApiKey>,
    owner: Arc<Owner>,
}

/// The key of a playground call: none (request logs show `0`, and `api`
/// `playground`).
pub const PLAYGROUND: Id = Id(0);

/// What an allowed request may do: who it is, which model, and its limits.
#[derive(Debug, Clone)]
pub struct Grant {
    pub key_id: Id,
    pub owner_id: Id,
    /// The organization the call is made for (the key's; the playground's
    /// chat's), which its request log is filed under.
    pub org_id: Option<Id>,
    pub model: Arc<Model>,
    /// The model's endpoint (`None` if it was deleted under the model).
    pub endpoint: Option<Arc<Endpoint>>,
    pub rpm_limit: Option<u32>,
    pub tpm_limit: Option<u32>,
    pub budget: Option<Budget>,
    /// The owner's own limits across all their keys.
    pub user_limits: UsageLimits,
    /// Budgets of the owner's teams.
    pub team_budgets: Vec<(Id, Budget)>,
    /// Keep request and response bodies (the key's organization asks for it).
    pub capture_bodies: bool,
}

/// An owner, as the decision sees them.
#[derive(Debug, Clone, Default)]
struct Owner {
    /// Active and holding `user`.
    may_use_models: bool,
    limits: UsageLimits,
    team_budgets: Vec<(Id, Budget)>,
    /// Models with an active subscription.
    subscribed: HashSet<Id>,
    /// The union of the owner's teams' allow-lists, when every team narrows.
    team_allow: Option<BTreeSet<String>>,
}

#[derive(Debug, Default)]
struct Catalog {
    endpoints: HashMap<Id, Arc<Endpoint>>,
    capture_orgs: HashSet<Id>,
    by_name: HashMap<String, Arc<Model>>,
    by_id: HashMap<Id, Arc<Model>>,
    global_aliases: HashMap<String, Id>,
    user_aliases: HashMap<Id, HashMap<String, Id>>,
}

pub struct AccessIndex {
    store: Store,
    changes: Arc<ChangeFeed>,
    clock: Arc<dyn Clock>,
    /// `ak_` by default.
    prefix: String,
    keys: DashMap<[u8; 32], Arc<ApiKey>>,
    hash_of: DashMap<Id, [u8; 32]>,
    owners: DashMap<Id, Arc<Owner>>,
    catalog: RwLock<Arc<Catalog>>,
    cursor: Mutex<Option<ChangeCursor>>,
    /// Keys used since the last flush, with the time of last use (ms).
    used: DashMap<Id, i64>,
    /// Moves whenever a credential changes, so that caches of decrypted
    /// credentials know to reload.
    credentials_epoch: std::sync::atomic::AtomicU64,
}

/// The random part of a key: this many characters of `[A-Za-z0-9]`.
pub const KEY_RANDOM_CHARS: usize = 32;

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

impl AccessIndex {
    pub fn new(
        store: Store,
        changes: Arc<ChangeFeed>,
        clock: Arc<dyn Clock>,
        prefix: &str,
    ) -> Self {
        AccessIndex {
            store,
            changes,
            clock,
            prefix: prefix.to_string(),
            keys: DashMap::new(),
            hash_of: DashMap::new(),
            owners: DashMap::new(),
            catalog: RwLock::new(Arc::new(Catalog::default())),
            cursor: Mutex::new(None),
            used: DashMap::new(),
            credentials_epoch: std::sync::atomic::AtomicU64::new(0),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Whether `token` looks like one of our keys (cheap; no lookup).
    pub fn looks_like_key(&self, token: &str) -> bool {
        token.len() == self.prefix.len() + KEY_RANDOM_CHARS
            && token.starts_with(&self.prefix)
            && token.as_bytes()[self.prefix.len()..]
                .iter()
                .all(u8::is_ascii_alphanumeric)
    }

    /// Loads everything. Changes committed during the load are applied by
    /// the next [`catch_up`](Self::catch_up): the cursor is taken first.
    pub async fn load(&self) -> Result<()> {
        let head = self.changes.head().await?;
        // A page at a time: one read of every key would hold them all twice
        // (stored bytes and decoded) at once, and leave the allocator's
        // pages scattered after it. Changes between pages are caught up.
        const PAGE: usize = 1000;
        let mut range = keyspace::api_keys();
        let mut owners = BTreeSet::new();
        loop {
            let (keys, next) = crate::codec::read_page::<ApiKey>(&self.store, &range, PAGE).await?;
            for key in keys {
                owners.insert(key.owner_id);
                self.put_key(key);
            }
            match next {
                Some(next) => range = next,
                None => break,
            }
        }
        for owner in owners {
            self.refresh_owner(owner).await?;
        }
        self.refresh_catalog().await?;
        *self.cursor.lock() = head;
        Ok(())
    }

    fn put_key(&self, key: ApiKey) {
        let Ok(hash) = <[u8; 32]>::try_from(key.hash.as_slice()) else {
            tracing::error!(key_id = %key.id, "stored API key hash has the wrong length");
            return;
        };
        self.hash_of.insert(key.id, hash);
        self.keys.insert(hash, Arc::new(key));
    }

    /// Re-reads one key (after a write, or a change from another instance).
    pub async fn refresh_key(&self, id: Id) -> Result<()> {
        let key = self
            .store
            .run(|tx| async move { keyspace::api_key(id).get(&tx).await })
            .await?;
        match key {
            Some(key) => {
                let owner = key.owner_id;
                self.put_key(key);
                if !self.owners.contains_key(&owner) {
                    self.refresh_owner(owner).await?;
                }
            }
            None => {
                if let Some((_, hash)) = self.hash_of.remove(&id) {
                    self.keys.remove(&hash);
                }
            }
        }
        Ok(())
    }

    /// Re-reads what the decision needs of one user.
    pub async fn refresh_owner(&self, user_id: Id) -> Result<()> {
        let owner = self
            .store
            .run(|tx| async move {
                let Some(user) = keyspace::user(user_id).get(&tx).await? else {
                    return Ok::<_, TxError<Error>>(Owner::default());
                };
                let mut subscribed = HashSet::new();
                for entry in read_all::<IdRef>(&tx, &keyspace::subscriptions_of(user_id)).await? {
                    if let Some(sub) = keyspace::subscription(entry.id).get(&tx).await?
                        && sub.status == SubscriptionStatus::Active
                    {
                        subscribed.insert(sub.model_id);
                    }
                }
                let mut lists = Vec::new();
                let mut team_budgets = Vec::new();
                for entry in read_all::<UserTeamRef>(&tx, &keyspace::user_teams(user_id)).await? {
                    // A team of an organization being removed counts no more.
                    let org = keyspace::org(entry.org_id).get(&tx).await?;
                    if let Some(team) = keyspace::team(entry.org_id, entry.team_id).get(&tx).await?
                        && org.is_some()
                    {
                        if let Some(budget) = team.budget {
                            team_budgets.push((team.id, budget));
                        }
                        lists.push(team.allowed_models);
                    }
                }
                let narrows = !lists.is_empty() && lists.iter().all(|l| !l.is_empty());
                Ok(Owner {
                    may_use_models: may_use_models(&user),
                    limits: user.limits,
                    team_budgets,
                    subscribed,
                    team_allow: narrows.then(|| lists.into_iter().flatten().collect()),
                })
            })
            .await?;
        self.owners.insert(user_id, Arc::new(owner));
        Ok(())
    }

    /// Re-reads the models and aliases.
    pub async fn refresh_catalog(&self) -> Result<()> {
        let (models, aliases, endpoints, orgs) = self
            .store
            .run(|tx| async move {
                let models = read_all::<Model>(&tx, &keyspace::models()).await?;
                let aliases = read_all::<Alias>(&tx, &keyspace::aliases()).await?;
                let endpoints = read_all::<Endpoint>(&tx, &keyspace::endpoints()).await?;
                let orgs = read_all::<Organization>(&tx, &keyspace::orgs()).await?;
                Ok::<_, TxError<Error>>((models, aliases, endpoints, orgs))
            })
            .await?;
        let mut catalog = Catalog {
            endpoints: endpoints.into_iter().map(|e| (e.id, Arc::new(e))).collect(),
            capture_orgs: orgs
                .into_iter()
                .filter(|o| o.capture_bodies)
                .map(|o| o.id)
                .collect(),
            ..Catalog::default()
        };
        for model in models {
            let model = Arc::new(model);
            catalog.by_name.insert(model.name.clone(), model.clone());
            catalog.by_id.insert(model.id, model);
        }
        for alias in aliases {
            match alias.owner_id {
                None => {
                    catalog.global_aliases.insert(alias.alias, alias.model_id);
                }
                Some(owner) => {
                    catalog
                        .user_aliases
                        .entry(owner)
                        .or_default()
                        .insert(alias.alias, alias.model_id);
                }
            }
        }
        *self.catalog.write() = Arc::new(catalog);
        Ok(())
    }

    /// Applies the changes other instances (or this one) committed since the
    /// last call; returns how many were read.
    pub async fn catch_up(&self) -> Result<usize> {
        let mut total = 0;
        loop {
            let cursor = self.cursor.lock().clone();
            let batch = self
                .changes
                .read_after(cursor.as_ref(), crate::changes::MAX_READ)
                .await?;
            let Some(last) = batch.last().map(|c| c.cursor.clone()) else {
                return Ok(total);
            };
            total += batch.len();
            let mut keys = BTreeSet::new();
            let mut owners = BTreeSet::new();
            let mut teams = BTreeSet::new();
            let mut catalog = false;
            for change in &batch {
                if !FOLLOWED.contains(&change.record.subspace.as_str()) {
                    continue;
                }
                let Some(bytes) = change.record.key_bytes() else {
                    continue;
                };
                match change.record.subspace.as_str() {
                    "api_key" => {
                        if let Ok((_, id)) = unpack::<(String, u64)>(&bytes) {
                            keys.insert(Id(id));
                        }
                    }
                    "user" => {
                        if let Ok((_, id)) = unpack::<(String, u64)>(&bytes) {
                            owners.insert(Id(id));
                        }
                    }
                    "subscription_by_user" | "team_member" | "user_team" => {
                        // (subspace, a, b): the user is `a` or `b`.
                        if let Ok((space, a, b)) = unpack::<(String, u64, u64)>(&bytes) {
                            owners.insert(Id(if space == "team_member" { b } else { a }));
                        }
                    }
                    "subscription" => {
                        if let Ok((_, id)) = unpack::<(String, u64)>(&bytes) {
                            let sub =
                                self.store
                                    .run(|tx| async move {
                                        keyspace::subscription(Id(id)).get(&tx).await
                                    })
                                    .await?;
                            if let Some(sub) = sub {
                                owners.insert(sub.user_id);
                            }
                        }
                    }
                    "team" => {
                        if let Ok((_, _, team)) = unpack::<(String, u64, u64)>(&bytes) {
                            teams.insert(Id(team));
                        }
                    }
                    "model" | "alias" | "endpoint" | "org" => catalog = true,
                    "credential" => {
                        self.credentials_epoch
                            .fetch_add(1, std::sync::atomic::Ordering::Release);
                    }
                    _ => {}
                }
            }
            for team in teams {
                let members = self
                    .store
                    .run(|tx| async move {
                        read_all::<crate::model::tenancy::TeamMember>(
                            &tx,
                            &keyspace::team_members(team),
                        )
                        .await
                    })
                    .await?;
                owners.extend(members.into_iter().map(|m| m.user_id));
            }
            for id in keys {
                self.refresh_key(id).await?;
            }
            for id in owners {
                // Only owners of keys matter to the decision.
                if self.owners.contains_key(&id) {
                    self.refresh_owner(id).await?;
                }
            }
            if catalog {
                self.refresh_catalog().await?;
            }
            *self.cursor.lock() = Some(last);
        }
    }

    /// The key a client presented, if it exists and works now.
    pub fn authenticate(&self, presented: &str) -> Result<Arc<ApiKey>, Denial> {
        self.working_key(presented).map(|w| w.key)
    }

    /// SPEC §4 step 1, once per call: the presented key works and its owner
    /// may use models. [`Self::check_key`] takes it on from there.
    pub fn working_key(&self, presented: &str) -> Result<WorkingKey, Denial> {
        self.key_and_owner(presented)
            .map(|(key, owner)| WorkingKey { key, owner })
    }

    /// SPEC §4 step 1: the key works and its owner may use models.
    fn key_and_owner(&self, presented: &str) -> Result<(Arc<ApiKey>, Arc<Owner>), Denial> {
        if !self.looks_like_key(presented) {
            return Err(Denial::UnknownKey);
        }
        let key = self
            .keys
            .get(&digest(presented))
            .map(|k| k.clone())
            .ok_or(Denial::UnknownKey)?;
        match key.unusable_at(self.clock.now_millis()) {
            Some("revoked") => return Err(Denial::Revoked),
            Some(_) => return Err(Denial::Expired),
            None => {}
        }
        let owner = self
            .owners
            .get(&key.owner_id)
            .map(|o| o.clone())
            .filter(|o| o.may_use_models)
            .ok_or(Denial::OwnerInactive)?;
        Ok((key, owner))
    }

    /// The access decision of SPEC §4 (limits and budgets, step 5, are the
    /// gateway's): may `presented` call `model_name`?
    pub fn check(&self, presented: &str, model_name: &str) -> Result<Grant, Denial> {
        self.check_key(&self.working_key(presented)?, model_name)
    }

    /// [`Self::check`] for a key already found working (steps 2-4).
    pub fn check_key(&self, working: &WorkingKey, model_name: &str) -> Result<Grant, Denial> {
        let (key, owner) = (&working.key, &working.owner);
        let catalog = self.catalog.read().clone();
        let model = resolve(&catalog, key.owner_id, model_name).ok_or(Denial::UnknownModel)?;
        may_use(key, owner, &model)?;
        self.used.insert(key.id, self.clock.now_millis());
        Ok(Grant {
            key_id: key.id,
            owner_id: key.owner_id,
            org_id: key.org_id,
            endpoint: catalog.endpoints.get(&model.endpoint_id).cloned(),
            model,
            rpm_limit: key.rpm_limit,
            tpm_limit: key.tpm_limit,
            budget: key.budget,
            user_limits: owner.limits,
            team_budgets: owner.team_budgets.clone(),
            capture_bodies: key
                .org_id
                .is_some_and(|o| catalog.capture_orgs.contains(&o)),
        })
    }

    /// SPEC §4 steps 1-3 for a signed-in user instead of a key (the
    /// playground): the user may use models, the name resolves to an enabled
    /// model, and the user may use it (subscriptions, team allow-lists). The
    /// grant carries the user's own and their teams' limits and budgets, and
    /// [`PLAYGROUND`] as its key; its calls are filed under `org_id` (the chat's
    /// organization). A user the index does not follow yet (no
    /// key) is read once and followed from then on.
    pub async fn check_user(
        &self,
        user_id: Id,
        model_name: &str,
        org_id: Id,
    ) -> Result<Grant, Denial> {
        if !self.owners.contains_key(&user_id) && self.refresh_owner(user_id).await.is_err() {
            return Err(Denial::OwnerInactive);
        }
        let owner = self
            .owners
            .get(&user_id)
            .map(|o| o.clone())
            .filter(|o| o.may_use_models)
            .ok_or(Denial::OwnerInactive)?;
        let catalog = self.catalog.read().clone();
        let model = resolve(&catalog, user_id, model_name).ok_or(Denial::UnknownModel)?;
        owner_may_use(&owner, &model)?;
        Ok(Grant {
            key_id: PLAYGROUND,
            owner_id: user_id,
            org_id: Some(org_id),
            endpoint: catalog.endpoints.get(&model.endpoint_id).cloned(),
            model,
            rpm_limit: None,
            tpm_limit: None,
            budget: None,
            user_limits: owner.limits,
            team_budgets: owner.team_budgets.clone(),
            capture_bodies: false,
        })
    }

    /// The enabled models `user_id` may call in person (the playground's and
    /// the console's list), by name; none for an inactive owner.
    pub async fn models_for_user(&self, user_id: Id) -> Vec<Arc<Model>> {
        if !self.owners.contains_key(&user_id) && self.refresh_owner(user_id).await.is_err() {
            return Vec::new();
        }
        let Some(owner) = self
            .owners
            .get(&user_id)
            .map(|o| o.clone())
            .filter(|o| o.may_use_models)
        else {
            return Vec::new();
        };
        let catalog = self.catalog.read().clone();
        let mut models: Vec<_> = catalog
            .by_name
            .values()
            .filter(|m| m.enabled && owner_may_use(&owner, m).is_ok())
            .cloned()
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        models
    }

    /// The enabled models `presented` may call (for `GET /v1/models`).
    pub fn models_for(&self, presented: &str) -> Result<Vec<Arc<Model>>, Denial> {
        let (key, owner) = self.key_and_owner(presented)?;
        let catalog = self.catalog.read().clone();
        let mut models: Vec<_> = catalog
            .by_name
            .values()
            .filter(|m| m.enabled && may_use(&key, &owner, m).is_ok())
            .cloned()
            .collect();
        models.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(models)
    }

    /// Changes whenever a credential is written (here or, after `catch_up`,
    /// elsewhere).
    pub fn credentials_epoch(&self) -> u64 {
        self.credentials_epoch
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// Takes the keys used since the last call, with their last-use times.
    pub fn take_used(&self) -> Vec<(Id, i64)> {
        let used: Vec<(Id, i64)> = self.used.iter().map(|e| (*e.key(), *e.value())).collect();
        for (id, at) in &used {
            self.used.remove_if(id, |_, v| v == at);
        }
        used
    }

    /// How many keys the index holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// SPEC §4 steps 3 and 4: subscription for restricted models, the owner's
/// teams' allow-lists, the key's own allow-list.
fn may_use(key: &ApiKey, owner: &Owner, model: &Model) -> Result<(), Denial> {
    owner_may_use(owner, model)?;
    if !key.allowed_models.is_empty() && !key.allowed_models.contains(&model.name) {
        return Err(Denial::KeyNotAllowed);
    }
    Ok(())
}

/// SPEC §4 step 3 without a key: subscriptions and team allow-lists.
fn owner_may_use(owner: &Owner, model: &Model) -> Result<(), Denial> {
    if model.restricted && !owner.subscribed.contains(&model.id) {
        return Err(Denial::SubscriptionRequired);
    }
    if owner
        .team_allow
        .as_ref()
        .is_some_and(|a| !a.contains(&model.name))
    {
        return Err(Denial::TeamNotAllowed);
    }
    Ok(())
}

/// Whether a user may call models at all: active, holding `user`.
fn may_use_models(user: &User) -> bool {
    user.is_active() && user.roles.contains(&Role::User)
}

/// A user alias, then a global alias, then a model name, to an enabled model.
fn resolve(catalog: &Catalog, owner: Id, name: &str) -> Option<Arc<Model>> {
    let by_alias = catalog
        .user_aliases
        .get(&owner)
        .and_then(|a| a.get(name))
        .or_else(|| catalog.global_aliases.get(name))
        .and_then(|id| catalog.by_id.get(id));
    by_alias
        .or_else(|| catalog.by_name.get(name))
        .filter(|m| m.enabled)
        .cloned()
}
