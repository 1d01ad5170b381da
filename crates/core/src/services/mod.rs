//! Services: the business rules, called by REST handlers and gRPC methods alike.

mod caller;
pub mod cluster;
pub mod system;

pub use self::caller::{Caller, Credential, ensure_in_person};

use crate::vaults::VaultService;
use crate::vaults::tokens::{TokenService, TokenSettings};
use std::sync::Arc;

use gatehouse_storage::Store;

use crate::Env;
use crate::accounts::{AccountService, AccountSettings};
use crate::audit::AuditLog;
use crate::blocking::BlockingPool;
use crate::catalog::{CatalogService, ModelLister};
use crate::changes::ChangeFeed;
use crate::crypto::KeyRing;
use crate::email::Outbox;
use crate::idempotency::Idempotency;
use crate::keys::KeyService;
use crate::keys::index::AccessIndex;
use crate::tenancy::TenancyService;
use crate::usage::UsageService;
use crate::usage::ledger::Ledger;

/// Every service, wired to one store and environment.
#[derive(Clone)]
pub struct Services {
    /// The store every service uses (for maintenance tools and tests).
    pub store: Store,
    pub system: Arc<system::SystemService>,
    pub cluster: Arc<cluster::ClusterService>,
    pub changes: Arc<ChangeFeed>,
    pub accounts: Arc<AccountService>,
    pub audit: Arc<AuditLog>,
    pub outbox: Arc<Outbox>,
    pub idempotency: Arc<Idempotency>,
    pub tenancy: Arc<TenancyService>,
    pub catalog: Arc<CatalogService>,
    pub keys: Arc<KeyService>,
    pub usage: Arc<UsageService>,
    pub vaults: Arc<VaultService>,
    pub tokens: Arc<TokenService>,
    pub work: Arc<crate::work::WorkService>,
}

/// What vaults and tokens need from the deployment.
#[derive(Debug, Clone, Default)]
pub struct VaultSettings {
    pub tokens: TokenSettings,
    /// A policy engine is configured: vault changes queue a sync to it.
    pub policy_engine: bool,
}

/// What the catalogue needs from the deployment.
pub struct CatalogSettings {
    /// Seals and opens secrets at rest.
    pub keys: Arc<KeyRing>,
    /// Reads endpoints' model lists for model sync.
    pub lister: Arc<dyn ModelLister>,
    /// What every API key starts with, e.g. `ak_`.
    pub key_prefix: String,
}

impl Services {
    /// `cluster` is built first, because the worker ID it leases goes into `env`.
    /// `pool` runs password hashing off the async workers.
    pub fn new(
        store: Store,
        env: Env,
        cluster: Arc<cluster::ClusterService>,
        pool: Arc<dyn BlockingPool>,
        accounts: AccountSettings,
        catalog: CatalogSettings,
        vaults: VaultSettings,
    ) -> Self {
        let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
        let changes = Arc::new(ChangeFeed::new(store.clone()));
        let index = Arc::new(AccessIndex::new(
            store.clone(),
            changes.clone(),
            env.clock.clone(),
            &catalog.key_prefix,
        ));
        let console_url = accounts.console_url.clone();
        Services {
            vaults: Arc::new(VaultService::new(
                store.clone(),
                env.clone(),
                audit.clone(),
                catalog.keys.clone(),
                vaults.policy_engine,
            )),
            tokens: Arc::new(TokenService::new(
                store.clone(),
                env.clone(),
                audit.clone(),
                catalog.keys.clone(),
                vaults.tokens,
            )),
            store: store.clone(),
            system: Arc::new(system::SystemService::new(store.clone(), env.clone())),
            accounts: Arc::new(AccountService::new(
                store.clone(),
                env.clone(),
                pool,
                audit.clone(),
                accounts,
                catalog.keys.clone(),
            )),
            catalog: Arc::new(CatalogService::new(
                store.clone(),
                env.clone(),
                audit.clone(),
                catalog.keys,
                catalog.lister,
            )),
            work: Arc::new(crate::work::WorkService::new(
                store.clone(),
                env.clone(),
                audit.clone(),
            )),
            tenancy: Arc::new(
                TenancyService::new(store.clone(), env.clone(), audit.clone())
                    .with_console_url(console_url),
            ),
            outbox: Arc::new(Outbox::new(store.clone(), env.clone())),
            idempotency: Arc::new(Idempotency::new(store.clone(), env.clone())),
            keys: Arc::new(KeyService::new(
                store.clone(),
                env.clone(),
                audit.clone(),
                index,
            )),
            usage: Arc::new(UsageService::new(
                store.clone(),
                env.clone(),
                Arc::new(Ledger::new()),
            )),
            changes,
            audit,
            cluster,
        }
    }

    /// Finishes what deletions left: organizations and accounts being removed
    /// (`TenancyService::run_removals`), then the projects and chats they and
    /// others handed on (`WorkService::run_purges`). How many records went.
    pub async fn finish_removals(&self) -> crate::Result<usize> {
        let removed = self.tenancy.run_removals().await?;
        Ok(removed + self.work.run_purges().await?)
    }
}
