//! `/ready` tells the truth when storage is down, while `/health` stays up.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use gatehouse_api::rest::{RestOptions, router};
use gatehouse_core::Env;
use gatehouse_core::accounts::AccountSettings;
use gatehouse_core::blocking::InlinePool;
use gatehouse_core::env::{ManualClock, SeededRandom};
use gatehouse_core::services::Services;
use gatehouse_core::services::cluster::ClusterService;
use gatehouse_storage::engine::{EngineTransaction, KvEngine};
use gatehouse_storage::{StorageError, Store};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

/// An engine whose database is unreachable.
struct Down;

#[async_trait::async_trait]
impl KvEngine for Down {
    fn name(&self) -> &'static str {
        "down"
    }

    async fn begin(&self) -> Result<Box<dyn EngineTransaction>, StorageError> {
        Err(StorageError::Unavailable(
            "connection refused (10.0.0.9:5432)".into(),
        ))
    }
}

#[tokio::test]
async fn ready_is_503_with_the_error_shape_when_storage_is_down() {
    let store = Store::new(Arc::new(Down));
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let random = SeededRandom::new(1);
    let cluster = Arc::new(ClusterService::new(
        store.clone(),
        clock.clone(),
        &random,
        30_000,
    ));
    let env = Env::system(0, clock).unwrap();
    let accounts = AccountSettings {
        jwt_secret: vec![1; 32],
        jwt_ttl_secs: 60,
        registration_enabled: true,
        sso_required_domains: Vec::new(),
        password_policy: Default::default(),
        sessions: Default::default(),
        mfa_required_for_admins: false,
        passkeys: None,
        console_url: None,
    };
    let app = router(
        Services::new(
            store,
            env,
            cluster,
            Arc::new(InlinePool),
            accounts,
            gatehouse_core::services::CatalogSettings {
                keys: Arc::new(gatehouse_core::crypto::KeyRing::new(&[2; 32], &[]).unwrap()),
                lister: Arc::new(gatehouse_core::catalog::NoLister),
                key_prefix: "ak_".into(),
            },
            Default::default(),
        ),
        RestOptions {
            body_limit_bytes: 1024,
            max_answer_bytes: 1 << 20,
            request_timeout: Duration::from_secs(5),
            secure_cookies: false,
        },
        Default::default(),
        &Default::default(),
    );

    let health = app
        .clone()
        .oneshot(Request::get("/health").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);

    let ready = app
        .oneshot(
            Request::get("/ready")
                .header("x-request-id", "r1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body: Value =
        serde_json::from_slice(&ready.into_body().collect().await.unwrap().to_bytes()).unwrap();
    // The cause (with its address) is logged, not returned.
    assert_eq!(
        body,
        json!({"error": {
            "code": "unavailable",
            "message": "storage is temporarily unavailable, try again",
            "request_id": "r1"
        }})
    );
}
