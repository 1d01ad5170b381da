//! Services: the business rules, called by REST handlers and gRPC methods alike.

pub mod system;

use std::sync::Arc;

use gatehouse_storage::Store;

use crate::Env;

/// Every service, wired to one store and environment.
#[derive(Clone)]
pub struct Services {
    pub system: Arc<system::SystemService>,
}

impl Services {
    pub fn new(store: Store, env: Env) -> Self {
        Services {
            system: Arc::new(system::SystemService::new(store, env)),
        }
    }
}
