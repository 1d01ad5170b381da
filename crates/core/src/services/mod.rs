//! Services: the business rules, called by REST handlers and gRPC methods alike.

pub mod cluster;
pub mod system;

use std::sync::Arc;

use gatehouse_storage::Store;

use crate::Env;
use crate::accounts::{AccountService, AccountSettings};
use crate::audit::AuditLog;
use crate::blocking::BlockingPool;
use crate::changes::ChangeFeed;
use crate::email::Outbox;
use crate::tenancy::TenancyService;

/// Every service, wired to one store and environment.
#[derive(Clone)]
pub struct Services {
    pub system: Arc<system::SystemService>,
    pub cluster: Arc<cluster::ClusterService>,
    pub changes: Arc<ChangeFeed>,
    pub accounts: Arc<AccountService>,
    pub audit: Arc<AuditLog>,
    pub outbox: Arc<Outbox>,
    pub tenancy: Arc<TenancyService>,
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
    ) -> Self {
        let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
        let env_for_outbox = env.clone();
        Services {
            system: Arc::new(system::SystemService::new(store.clone(), env.clone())),
            accounts: Arc::new(AccountService::new(
                store.clone(),
                env,
                pool,
                audit.clone(),
                accounts,
            )),
            tenancy: Arc::new(TenancyService::new(
                store.clone(),
                env_for_outbox.clone(),
                audit.clone(),
            )),
            outbox: Arc::new(Outbox::new(store.clone(), env_for_outbox)),
            changes: Arc::new(ChangeFeed::new(store)),
            audit,
            cluster,
        }
    }
}
