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
    // Exactly the services served: not `PolicyEngine`, which Gatehouse calls.
    let mut names = names;
    names.sort();
    let mut served = gatehouse_api::grpc::SERVED.map(String::from).to_vec();
    served.sort();
    assert_eq!(names, served);

    // v1alpha too: grpcio-reflection, older grpcurl, grpcui and Postman speak it.
    use tonic_reflection::pb::v1alpha::server_reflection_client::ServerReflectionClient as AlphaClient;
    use tonic_reflection::pb::v1alpha::server_reflection_request::MessageRequest as AlphaRequest;
    use tonic_reflection::pb::v1alpha::server_reflection_response::MessageResponse as AlphaResponse;
    let channel = tonic::transport::Channel::from_shared(format!("http://{}", app.grpc))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let request = tonic_reflection::pb::v1alpha::ServerReflectionRequest {
        host: String::new(),
        message_request: Some(AlphaRequest::ListServices(String::new())),
    };
    let response = AlphaClient::new(channel)
        .server_reflection_info(tokio_stream::once(request))
        .await
        .unwrap()
        .into_inner()
        .message()
        .await
        .unwrap()
        .expect("one response");
    let Some(AlphaResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected v1alpha reflection response");
    };
    let mut alpha: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    alpha.sort();
    assert_eq!(alpha, served);
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

/// A request with the caller's bearer token in its metadata.
pub(crate) fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

#[tokio::test]
async fn internal_services_read_users_memberships_and_permissions() {
    use gatehouse_grpc::v1::directory_service_client::DirectoryServiceClient;
    use gatehouse_grpc::v1::{CheckPermissionRequest, GetUserRequest, ListMembershipsRequest};

    let w = crate::matrix::World::new().await;
    let f = w.fixture(false).await;
    let mut client = DirectoryServiceClient::connect(format!("http://{}", w.app.grpc))
        .await
        .unwrap();
    let member = w.user("org_member");
    let admin = w.user("admin");

    // Without credentials: UNAUTHENTICATED.
    let refused = client
        .get_user(GetUserRequest::default())
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::Unauthenticated);

    // Users read themselves; only platform admins read others.
    let me = client
        .get_user(with_token(GetUserRequest::default(), w.token("org_member")))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(
        (me.id, me.status.as_str()),
        (member.id.to_string(), "active")
    );
    let hidden = client
        .get_user(with_token(
            GetUserRequest {
                user_id: admin.id.to_string(),
            },
            w.token("org_member"),
        ))
        .await
        .unwrap_err();
    assert_eq!(hidden.code(), tonic::Code::NotFound);
    let read = client
        .get_user(with_token(
            GetUserRequest {
                user_id: member.id.to_string(),
            },
            w.token("admin_readonly"),
        ))
        .await
        .unwrap()
        .into_inner()
        .user
        .unwrap();
    assert_eq!(read.email, member.email);

    // Memberships: the personal organization, the fixture's, and its team.
    let list = |token: &str| {
        with_token(
            ListMembershipsRequest {
                user_id: member.id.to_string(),
            },
            token,
        )
    };
    let memberships = client
        .list_memberships(list(w.token("admin")))
        .await
        .unwrap()
        .into_inner();
    let org = memberships
        .organizations
        .iter()
        .find(|o| o.organization_id == f.org.to_string())
        .expect("the fixture organization");
    assert_eq!(org.role, "member");
    assert!(memberships.organizations.iter().any(|o| o.personal));
    assert_eq!(memberships.teams.len(), 1);
    assert_eq!(memberships.teams[0].team_id, f.team.to_string());
    assert_eq!(memberships.teams[0].role, "member");

    // Permission checks follow the organization roles.
    let check = |actor: &str, permission: &str, kind: &str, id: String| {
        with_token(
            CheckPermissionRequest {
                user_id: String::new(),
                permission: permission.into(),
                resource_type: kind.into(),
                resource_id: id,
            },
            w.token(actor),
        )
    };
    let org_id = f.org.to_string();
    let team_id = f.team.to_string();
    for (actor, permission, kind, id, expected) in [
        (
            "org_owner",
            "organization.delete",
            "organization",
            &org_id,
            true,
        ),
        ("org_admin", "members.manage", "organization", &org_id, true),
        (
            "org_admin",
            "organization.delete",
            "organization",
            &org_id,
            false,
        ),
        (
            "org_member",
            "organization.read",
            "organization",
            &org_id,
            true,
        ),
        (
            "org_member",
            "members.manage",
            "organization",
            &org_id,
            false,
        ),
        ("org_member", "team.read", "team", &team_id, true),
        ("org_member", "team.manage_members", "team", &team_id, false),
        (
            "non_member",
            "organization.read",
            "organization",
            &org_id,
            false,
        ),
        ("non_member", "team.read", "team", &team_id, false),
        (
            "admin",
            "organization.suspend",
            "organization",
            &org_id,
            true,
        ),
    ] {
        let allowed = client
            .check_permission(check(actor, permission, kind, id.clone()))
            .await
            .unwrap()
            .into_inner()
            .allowed;
        assert_eq!(allowed, expected, "{actor} {permission} on {kind}");
    }
    let unknown = client
        .check_permission(check("org_member", "everything", "organization", org_id))
        .await
        .unwrap_err();
    assert_eq!(unknown.code(), tonic::Code::InvalidArgument);

    // Taken off the team, the member's next call no longer lists it.
    w.app
        .services
        .tenancy
        .remove_team_member(
            w.user("org_owner"),
            f.org,
            f.team,
            member.id,
            &Default::default(),
        )
        .await
        .unwrap();
    let memberships = client
        .list_memberships(list(w.token("org_member")))
        .await
        .unwrap()
        .into_inner();
    assert!(memberships.teams.is_empty());
    w.app.stop().await;
}

/// Python's `grpcio-reflection` (v1alpha), as a developer exploring the API
/// would use it, lists exactly the services Gatehouse serves.
#[tokio::test(flavor = "multi_thread")]
async fn python_grpcio_reflection_lists_the_services() {
    let Some(python) = crate::helpers::sdk_python() else {
        return;
    };
    let app = spawn_app(test_config(None)).await;
    let script = r#"
import sys, grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import ProtoReflectionDescriptorDatabase
with grpc.insecure_channel(sys.argv[1]) as channel:
    print("\n".join(sorted(ProtoReflectionDescriptorDatabase(channel).get_services())))
"#;
    let address = app.grpc.to_string();
    let output = tokio::task::spawn_blocking(move || {
        std::process::Command::new(python)
            .args(["-c", script, &address])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let listed: Vec<String> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(String::from)
        .collect();
    let mut served = gatehouse_api::grpc::SERVED.map(String::from).to_vec();
    served.sort();
    assert_eq!(listed, served);
    app.stop().await;
}

#[tokio::test]
async fn internal_services_read_projects_chats_and_messages_as_rest_shows_them() {
    use gatehouse_grpc::v1::work_service_client::WorkServiceClient;
    use gatehouse_grpc::v1::{
        GetChatRequest, ListChatsRequest, ListMessagesRequest, ListProjectsRequest,
    };

    let w = crate::matrix::World::new().await;
    let f = w.fixture(false).await;
    let member = w.user("org_member");
    let c = gatehouse_core::model::sessions::ClientInfo::default();
    let say = |text: String| {
        let message = gatehouse_core::work::NewMessage::text(
            gatehouse_core::model::work::MessageRole::User,
            text,
        );
        let work = &w.app.services.work;
        let c = &c;
        async move {
            work.append_message(member, (f.org, f.project, f.chat), message, c)
                .await
                .unwrap();
        }
    };
    for text in ["one", "two", "three"] {
        say(text.into()).await;
    }
    let mut client = WorkServiceClient::connect(format!("http://{}", w.app.grpc))
        .await
        .unwrap();
    let org = f.org.to_string();
    let projects = client
        .list_projects(with_token(
            ListProjectsRequest {
                organization_id: org.clone(),
            },
            w.token("org_member"),
        ))
        .await
        .unwrap()
        .into_inner()
        .projects;
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0].id, f.project.to_string());
    let mut chats = ListChatsRequest {
        organization_id: org.clone(),
        project_id: f.project.to_string(),
        ..Default::default()
    };
    let listed = client
        .list_chats(with_token(chats.clone(), w.token("org_admin")))
        .await
        .unwrap()
        .into_inner()
        .chats;
    assert_eq!(listed.len(), 1, "the organization's admins read every chat");
    // With a limit, a page at a time, newest first.
    for name in ["second", "third"] {
        let spec = gatehouse_core::work::ChatSpec {
            name: Some(name.into()),
            model: "llama".into(),
            ..Default::default()
        };
        w.app
            .services
            .work
            .create_chat(member, f.org, f.project, spec, &c)
            .await
            .unwrap();
    }
    chats.limit = 2;
    let first = client
        .list_chats(with_token(chats.clone(), w.token("org_admin")))
        .await
        .unwrap()
        .into_inner();
    let names: Vec<_> = first.chats.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["third", "second"]);
    chats.cursor = first.next_cursor;
    let rest = client
        .list_chats(with_token(chats.clone(), w.token("org_admin")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rest.chats.len(), 1);
    assert_eq!(rest.chats[0].id, f.chat.to_string());
    assert!(rest.next_cursor.is_empty());
    // Another member's private chat: NOT_FOUND, as over REST; outsiders see nothing.
    let get = GetChatRequest {
        organization_id: org.clone(),
        project_id: f.project.to_string(),
        chat_id: f.chat.to_string(),
    };
    let outsider = client
        .get_chat(with_token(get.clone(), w.token("non_member")))
        .await
        .unwrap_err();
    assert_eq!(outsider.code(), tonic::Code::NotFound);
    let chat = client
        .get_chat(with_token(get, w.token("org_member")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(chat.owner_id, member.id.to_string());
    // Messages page oldest first.
    let mut request = ListMessagesRequest {
        organization_id: org,
        project_id: f.project.to_string(),
        chat_id: f.chat.to_string(),
        limit: 2,
        cursor: String::new(),
    };
    let first = client
        .list_messages(with_token(request.clone(), w.token("org_member")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.messages.len(), 2);
    request.cursor = first.next_cursor.clone();
    let second = client
        .list_messages(with_token(request.clone(), w.token("org_member")))
        .await
        .unwrap()
        .into_inner();
    let texts: Vec<_> = first
        .messages
        .iter()
        .chain(&second.messages)
        .map(|m| m.content.as_str())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert!(second.next_cursor.is_empty());

    // Long messages (30 of 128 KiB, each sent twice: as text and as JSON)
    // come in pages a gRPC client takes by default (4 MiB at most).
    let long = "é".repeat(65_536);
    for _ in 0..30 {
        say(long.clone()).await;
    }
    request.limit = 500;
    request.cursor = String::new();
    let (mut pages, mut count) = (0, 0);
    loop {
        let page = client
            .list_messages(with_token(request.clone(), w.token("org_member")))
            .await
            .unwrap()
            .into_inner();
        pages += 1;
        count += page.messages.iter().filter(|m| m.content == long).count();
        if page.next_cursor.is_empty() {
            break;
        }
        request.cursor = page.next_cursor;
    }
    assert_eq!(count, 30);
    assert!(pages >= 3, "{pages} pages");
}
