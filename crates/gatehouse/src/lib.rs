//! The Gatehouse binary's library half: configuration, logging, secrets, and the
//! wiring of storage, core services and the servers. `main.rs` only parses the
//! command line; tests build the same [`Gatehouse`] in-process.

pub mod config;
pub mod secrets;
pub mod telemetry;

use std::net::SocketAddr;

use anyhow::Context;
use gatehouse_api::Application;
use gatehouse_core::Env;
use gatehouse_core::services::Services;
use gatehouse_storage::Engine;

use crate::config::{Config, WorkerId};

/// A fully wired server, bound and ready to run.
pub struct Gatehouse {
    pub app: Application,
    pub services: Services,
}

impl Gatehouse {
    /// Opens storage, initializes the store, and binds the servers.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let storage = config.storage_config()?;
        let store = gatehouse_storage::open(&storage)
            .await
            .with_context(|| format!("opening storage engine `{}`", storage.engine))?;
        let persist = (storage.engine == Engine::Embedded).then_some(storage.path.as_path());
        let _secrets = secrets::resolve(config, persist)?;

        // Until instances lease worker IDs from a shared store, `auto` means a
        // single instance with worker 0.
        let worker_id = match config.ids.worker_id {
            WorkerId::Auto => 0,
            WorkerId::Fixed(id) => id,
        };
        let env = Env::system(worker_id)?;
        let services = Services::new(store, env);
        let installation = services.system.initialize().await?;
        tracing::info!(
            installation_id = %installation.id,
            engine = storage.engine.as_str(),
            worker_id,
            "store ready"
        );
        let app = Application::build(&config.server_settings(), services.clone()).await?;
        Ok(Gatehouse { app, services })
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.app.http_addr()
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.app.grpc_addr()
    }

    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        Ok(self.app.run_until_stopped(shutdown).await?)
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}
