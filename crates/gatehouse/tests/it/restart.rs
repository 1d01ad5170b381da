//! Data written through a core service survives stopping the server and starting
//! it again on the same data directory.

use gatehouse_core::services::system::SettingName;
use serde_json::json;

use crate::helpers::{spawn_app, test_config};

#[tokio::test]
async fn embedded_data_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let name = SettingName::parse("ui.banner").unwrap();

    let app = spawn_app(test_config(Some(dir.path()))).await;
    let written = app
        .services
        .system
        .put_setting(&name, json!({"text": "maintenance at noon"}))
        .await
        .unwrap();
    let (status, before) = app.get_json("/api/v1/system").await;
    assert_eq!(status, 200);
    app.stop().await;

    let app = spawn_app(test_config(Some(dir.path()))).await;
    let (status, after) = app.get_json("/api/v1/system").await;
    assert_eq!(status, 200);
    assert_eq!(after["installation_id"], before["installation_id"]);
    assert_eq!(after["created_at"], before["created_at"]);
    assert_eq!(
        app.services.system.get_setting(&name).await.unwrap(),
        written
    );
    app.stop().await;
}

#[tokio::test]
async fn memory_engine_starts_empty_every_time() {
    let app = spawn_app(test_config(None)).await;
    let (_, first) = app.get_json("/api/v1/system").await;
    app.stop().await;
    let app = spawn_app(test_config(None)).await;
    let (_, second) = app.get_json("/api/v1/system").await;
    assert_ne!(first["installation_id"], second["installation_id"]);
    app.stop().await;
}
