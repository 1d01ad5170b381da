//! Starting and stopping real servers for tests.

use std::net::SocketAddr;
use std::path::Path;

use gatehouse::Gatehouse;
use gatehouse::config::{Config, Secret};
use gatehouse_core::services::Services;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A configuration for tests: loopback, ephemeral ports, fixed secrets, and the
/// memory engine unless a data directory is given.
pub fn test_config(data_dir: Option<&Path>) -> Config {
    let mut config = Config::default();
    config.server.http_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.server.grpc_addr = SocketAddr::from(([127, 0, 0, 1], 0));
    config.auth.jwt_secret = Some(Secret(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    ));
    config.auth.key_encryption_secret = Some(Secret(
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into(),
    ));
    match data_dir {
        Some(dir) => {
            config.storage.engine = "embedded".into();
            config.storage.path = dir.to_path_buf();
        }
        None => config.storage.engine = "memory".into(),
    }
    config
}

/// A running server.
pub struct TestApp {
    pub http: String,
    pub grpc: SocketAddr,
    pub services: Services,
    pub client: reqwest::Client,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<anyhow::Result<()>>,
}

pub async fn spawn_app(config: Config) -> TestApp {
    let server = Gatehouse::build(&config).await.expect("server builds");
    let http = format!("http://{}", server.http_addr().unwrap());
    let grpc = server.grpc_addr().unwrap();
    let services = server.services.clone();
    let (stop, stopped) = oneshot::channel::<()>();
    let handle = tokio::spawn(server.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    TestApp {
        http,
        grpc,
        services,
        client: reqwest::Client::new(),
        stop,
        handle,
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.http)
    }

    pub async fn get_json(&self, path: &str) -> (u16, serde_json::Value) {
        let response = self
            .client
            .get(self.url(path))
            .send()
            .await
            .expect("request");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// Stops the server gracefully and waits until it has released the store.
    pub async fn stop(self) {
        let TestApp {
            stop,
            handle,
            services,
            ..
        } = self;
        drop(services);
        let _ = stop.send(());
        handle
            .await
            .expect("server task")
            .expect("server stops cleanly");
    }
}
