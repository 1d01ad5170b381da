//! The gRPC side of the real server: health, reflection and our own service.

use gatehouse_grpc::v1::GetInfoRequest;
use gatehouse_grpc::v1::system_service_client::SystemServiceClient;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_reflection::pb::v1::ServerReflectionRequest;
use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;

use crate::helpers::{spawn_app, test_config};

#[tokio::test]
async fn health_reflection_and_system_info() {
    let app = spawn_app(test_config(None)).await;
    let endpoint = format!("http://{}", app.grpc);

    let channel = tonic::transport::Channel::from_shared(endpoint.clone())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for service in ["", "gatehouse.v1.SystemService"] {
        let status = health
            .check(HealthCheckRequest {
                service: service.to_string(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "service {service:?}");
    }
    let unknown = health
        .check(HealthCheckRequest {
            service: "no.such.Service".to_string(),
        })
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::NotFound);

    let mut system = SystemServiceClient::connect(endpoint).await.unwrap();
    let info = system
        .get_info(GetInfoRequest {})
        .await
        .unwrap()
        .into_inner();
    let (_, rest) = app.get_json("/api/v1/system").await;
    assert_eq!(
        info.installation_id,
        rest["installation_id"].as_str().unwrap()
    );
    assert_eq!(info.version, env!("CARGO_PKG_VERSION"));

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().expect("one response");
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    assert!(
        names.contains(&"gatehouse.v1.SystemService".to_string()),
        "{names:?}"
    );
    assert!(
        names.contains(&"grpc.health.v1.Health".to_string()),
        "{names:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn introspection_tells_active_tokens_from_the_rest() {
    use gatehouse_grpc::v1::IntrospectTokenRequest;
    use gatehouse_grpc::v1::auth_service_client::AuthServiceClient;

    let app = spawn_app(test_config(None)).await;
    let password = "correct horse battery staple";
    app.client
        .post(app.url("/api/v1/auth/register"))
        .json(&serde_json::json!({"email": "ada@example.com", "password": password, "username": "ada"}))
        .send()
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for mode in ["token", "cli"] {
        let body: serde_json::Value = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "ada", "password": password, "mode": mode}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        tokens.push(body["token"].as_str().unwrap().to_string());
    }

    let mut auth = AuthServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .unwrap();
    for (token, kind) in tokens.iter().zip(["jwt", "session"]) {
        let answer = auth
            .introspect_token(IntrospectTokenRequest {
                token: token.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(answer.active, "{kind}");
        assert_eq!(answer.token_kind, kind);
        assert_eq!(
            (answer.email.as_str(), answer.username.as_str()),
            ("ada@example.com", "ada")
        );
        assert_eq!(answer.roles, vec!["user"]);
        assert!(answer.expires_at > 0);
    }
    for bogus in ["", "nope", "a.b.c"] {
        let answer = auth
            .introspect_token(IntrospectTokenRequest {
                token: bogus.into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.active, "{bogus:?}");
        assert!(answer.user_id.is_empty());
    }
    app.stop().await;
}
