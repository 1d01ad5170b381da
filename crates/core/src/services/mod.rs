//! Services: the business rules, called by REST handlers and gRPC methods alike.

pub mod cluster;
pub mod system;

use std::sync::Arc;

use gatehouse_storage::Store;

use crate::Env;
use crate::changes::ChangeFeed;

/// Every service, wired to one store and environment.
#[derive(Clone)]
pub struct Services {
    pub system: Arc<system::SystemService>,
    pub cluster: Arc<cluster::ClusterService>,
    pub changes: Arc<ChangeFeed>,
}

impl Services {
    /// `cluster` is built first, because the worker ID it leases goes into `env`.
    pub fn new(store: Store, env: Env, cluster: Arc<cluster::ClusterService>) -> Self {
        Services {
            system: Arc::new(system::SystemService::new(store.clone(), env)),
            changes: Arc::new(ChangeFeed::new(store)),
            cluster,
        }
    }
}
