//! What the benches share: a server on the embedded engine, signed in as
//! its first admin, with one model on a local upstream.

use std::path::PathBuf;

use gatehouse::Gatehouse;
use gatehouse::config::{Config, Secret};
use gatehouse_core::catalog::{EndpointSpec, ModelSpec};
use gatehouse_core::model::accounts::User;
use gatehouse_core::model::sessions::ClientInfo;
use gatehouse_core::services::Services;

pub const PASSWORD: &str = "correct horse battery staple";

/// The embedded engine in `path`, on free ports, logging warnings only,
/// with [`PASSWORD`] for the first admin.
pub fn embedded_config(path: PathBuf) -> Config {
    let mut config = Config::default();
    config.storage.engine = "embedded".into();
    config.storage.path = path;
    config.server.http_addr = "127.0.0.1:0".parse().unwrap();
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.bootstrap.admin_password = Some(Secret(PASSWORD.into()));
    config.log.level = "warn".into();
    config
}

/// The server `config` describes, built (not yet serving), with its
/// services and its first admin, signed in.
pub async fn open(config: &Config) -> (Gatehouse, Services, User) {
    let server = Gatehouse::build(config).await.unwrap();
    let services = server.services.clone();
    let (admin, _) = services
        .accounts
        .login("admin@localhost", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    (server, services, admin)
}

/// Endpoint `local` on `upstream` and model `name` on it, priced.
pub async fn serve_model(services: &Services, admin: &User, upstream: &str, name: &str) {
    let c = ClientInfo::default();
    let endpoint = services
        .catalog
        .create_endpoint(
            admin,
            EndpointSpec {
                name: Some("local".into()),
                base_url: Some(upstream.to_string()),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
    services
        .catalog
        .create_model(
            admin,
            ModelSpec {
                name: Some(name.into()),
                endpoint_id: Some(endpoint.id),
                input_cost_per_token: Some(0.000001),
                output_cost_per_token: Some(0.000002),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
}
