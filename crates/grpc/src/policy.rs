//! The client Gatehouse uses to push vault state to the deployment's policy
//! engine (`gatehouse.v1.PolicyEngine`, which the engine implements).
//!
//! ```no_run
//! # async fn example() -> Result<(), Box<dyn std::error::Error>> {
//! use gatehouse_grpc::policy::PolicyClient;
//! use gatehouse_grpc::v1::SyncVaultRequest;
//! let client = PolicyClient::new("http://policy-engine:50051", std::time::Duration::from_secs(5))?;
//! client.sync_vault(SyncVaultRequest { vault_id: "1".into(), ..Default::default() }).await?;
//! # Ok(()) }
//! ```

use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use crate::v1::SyncVaultRequest;
use crate::v1::policy_engine_client::PolicyEngineClient;

/// A lazily connecting client: building it never blocks, and each call
/// connects (or reconnects) as needed, within `timeout`.
#[derive(Clone)]
pub struct PolicyClient {
    inner: PolicyEngineClient<Channel>,
}

impl PolicyClient {
    /// `url` is the engine's gRPC address, e.g. `http://engine:50051`.
    pub fn new(url: &str, timeout: Duration) -> Result<Self, tonic::transport::Error> {
        let channel = Endpoint::from_shared(url.to_string())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        Ok(PolicyClient {
            inner: PolicyEngineClient::new(channel),
        })
    }

    /// Sends a vault's whole current state.
    pub async fn sync_vault(&self, request: SyncVaultRequest) -> Result<(), tonic::Status> {
        self.inner.clone().sync_vault(request).await.map(|_| ())
    }
}
