//! Request logs through the real server: filed under the key's organization,
//! bodies only in one log's detail and only for whoever may read them,
//! exports streamed page by page.

use gatehouse_core::Id;
use gatehouse_core::keys::NewKey;
use gatehouse_core::model::accounts::Role;
use gatehouse_core::tenancy::OrgChange;
use gatehouse_core::usage::RequestLog;
use serde_json::Value;

use crate::gateway::{World, chat_body};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn captured_bodies_are_read_one_log_at_a_time_by_those_who_may() {
    let w = World::new().await;
    let s = &w.app.services;
    let org = s
        .tenancy
        .create_org(&w.ada, "Capturing", &w.c)
        .await
        .unwrap()
        .id;
    let change = OrgChange {
        capture_bodies: Some(true),
        ..OrgChange::default()
    };
    s.tenancy
        .update_org(&w.ada, org, change, &w.c)
        .await
        .unwrap();
    let spec = NewKey {
        org_id: Some(org),
        label: "captured".into(),
        ..NewKey::default()
    };
    let (_, key) = w.key(&w.ada, spec).await;
    s.keys.index().catch_up().await.unwrap();
    let (status, _, _) = w.chat(&key, chat_body("gpt")).await;
    assert_eq!(status, 200);
    w.flush().await;
    let viewer = w.app.create_user(&w.admin, "viewer").await;
    let mut roles = viewer.roles.clone();
    roles.insert(Role::RequestViewer);
    let change = gatehouse_core::accounts::UserChange {
        roles: Some(roles),
        ..Default::default()
    };
    s.accounts
        .update_account(&w.admin, viewer.id, change, &w.c)
        .await
        .unwrap();

    let auth = |token: &str| ("authorization", token.to_string());
    let (ada, admin, bob, viewer) = (
        w.token("ada@example.com").await,
        w.token("admin@example.com").await,
        w.token("bob@example.com").await,
        w.token("viewer@example.com").await,
    );
    let get = |token: String, path: String| {
        let app = &w.app;
        async move {
            let (name, value) = auth(&token);
            app.get(&path, Some((name, &value))).await
        }
    };
    let path = format!("/api/v1/request-logs?organization={org}");
    let (status, listed) = get(ada.clone(), path).await;
    assert_eq!(status, 200, "{listed}");
    let items = listed["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{listed}");
    let log = &items[0];
    assert_eq!(log["organization_id"], org.to_string());
    assert_eq!(log["captured"], true);
    assert!(
        log["request_body"].is_null(),
        "lists carry no bodies: {log}"
    );
    let other = format!("/api/v1/request-logs?organization={}", Id(org.0 + 1));
    let (_, none) = get(ada.clone(), other).await;
    assert_eq!(none["items"], Value::Array(vec![]));

    let detail = format!("/api/v1/request-logs/{}", log["id"].as_str().unwrap());
    for (who, token, status, bodies) in [
        ("the caller", ada, 200, true),
        ("a request viewer", viewer, 200, true),
        ("an admin", admin, 200, false),
        ("another user", bob, 404, false),
    ] {
        let (got, body) = get(token, detail.clone()).await;
        assert_eq!(got, status, "{who}: {body}");
        if status == 200 {
            assert_eq!(body["captured"], true, "{who}");
            let request = body["request_body"].as_str();
            assert_eq!(
                request.is_some_and(|b| b.contains("Hi")),
                bodies,
                "{who}: {body}"
            );
            assert_eq!(body["response_body"].is_string(), bodies, "{who}: {body}");
        } else {
            assert_eq!(body["error"]["code"], "not_found", "{who}: {body}");
        }
    }
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exports_stream_every_log_of_a_range_in_csv_and_ndjson() {
    let w = World::new().await;
    let s = &w.app.services;
    let now = s.usage.env().clock.now();
    let first = Id::first_at(now.timestamp_millis() - 60_000).0;
    // More logs than one export page, one of them with a model name a
    // spreadsheet would run and an error holding a separator.
    for i in 0..1_203u64 {
        s.usage.record(RequestLog {
            at: now,
            model: if i == 7 { "=cmd".into() } else { "gpt".into() },
            status: if i % 2 == 0 { 200 } else { 502 },
            error: (i % 2 == 1).then(|| "upstream said \"no\", twice".into()),
            ..crate::helpers::request_log(Id(first + i), w.ada.id, "gpt")
        });
    }
    w.flush().await;
    let admin = w.token("admin@example.com").await;
    let export = |query: &'static str| {
        let (app, admin) = (&w.app, admin.clone());
        async move {
            let response = app
                .client
                .get(app.url(&format!("/api/v1/request-logs/export{query}")))
                .header("authorization", admin)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let kind = response.headers()["content-type"]
                .to_str()
                .unwrap()
                .to_string();
            (status, kind, response.text().await.unwrap())
        }
    };
    let (status, kind, csv) = export("").await;
    assert_eq!(status, 200);
    assert!(kind.starts_with("text/csv"), "{kind}");
    let lines: Vec<&str> = csv.lines().collect();
    assert!(lines[0].starts_with("id,at,user_id,key_id,organization_id,model"));
    assert_eq!(lines.len(), 1 + 1_203, "a header and every log");
    assert!(csv.contains(",'=cmd,"), "formula-like text is defused");
    assert!(
        csv.contains("\"upstream said \"\"no\"\", twice\""),
        "quoted"
    );

    let (status, kind, ndjson) = export("?format=ndjson&status_class=5").await;
    assert_eq!((status, kind.as_str()), (200, "application/x-ndjson"));
    let rows: Vec<Value> = ndjson
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 601, "the 5xx half");
    assert!(rows.iter().all(|r| r["status"] == 502));
    let ids: std::collections::HashSet<&str> =
        rows.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 601, "each log once");

    // A refused export is refused before it starts, in the JSON error shape.
    let bob = w.token("bob@example.com").await;
    let (status, body) = w
        .app
        .by(&bob)
        .get(&format!("/api/v1/request-logs/export?user={}", w.ada.id))
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "permission_denied");
    w.app.stop().await;
}

/// A log of `user`'s with ID `id`, for organization 3.
fn log_at(id: Id, user: Id) -> RequestLog {
    RequestLog {
        org_id: Some(Id(3)),
        ..crate::helpers::request_log(id, user, "gpt")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_warehouse_streams_request_logs_over_grpc_and_resumes_from_its_cursor() {
    use gatehouse_grpc::v1::StreamRequestLogsRequest;
    use gatehouse_grpc::v1::records_service_client::RecordsServiceClient;

    use crate::grpc::with_token;

    let w = crate::matrix::World::new().await;
    let usage = &w.app.services.usage;
    let user = w.user("user").id;
    let now = usage.env().clock.now_millis();
    let first = Id::first_at(now - 120_000).0;
    for i in 0..1_203u64 {
        usage.record(log_at(Id(first + i), user));
    }
    usage.flush().await.unwrap();
    let mut client = RecordsServiceClient::connect(format!("http://{}", w.app.grpc))
        .await
        .unwrap();
    let from = |after: &str| StreamRequestLogsRequest {
        after_id: after.into(),
        settle_seconds: 0,
    };
    let mut stream = client
        .stream_request_logs(with_token(from("0"), w.token("request_viewer")))
        .await
        .unwrap()
        .into_inner();
    let mut ids = Vec::new();
    while ids.len() < 1_203 {
        let log = stream.message().await.unwrap().unwrap();
        assert_eq!(log.organization_id, "3");
        ids.push(log.id.parse::<u64>().unwrap());
    }
    assert_eq!(
        ids,
        (first..first + 1_203).collect::<Vec<_>>(),
        "oldest first, each once"
    );
    // A log written later (older than the settle time) follows on the open stream.
    let late = Id::first_at(now - 30_000);
    usage.record(log_at(late, user));
    usage.flush().await.unwrap();
    let next = tokio::time::timeout(std::time::Duration::from_secs(10), stream.message())
        .await
        .expect("the new log arrives")
        .unwrap()
        .unwrap();
    assert_eq!(next.id, late.to_string());
    // Resuming from a cursor sends exactly what came after it.
    let cursor = ids[999].to_string();
    let mut resumed = client
        .stream_request_logs(with_token(from(&cursor), w.token("admin")))
        .await
        .unwrap()
        .into_inner();
    let mut rest = Vec::new();
    while rest.len() < 204 {
        rest.push(resumed.message().await.unwrap().unwrap().id);
    }
    assert_eq!(rest[0], (first + 1_000).to_string());
    assert_eq!(rest[203], late.to_string());
    // Only those who read everyone's logs may stream them.
    let refused = client
        .stream_request_logs(with_token(from("0"), w.token("user")))
        .await
        .unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    let bad = client
        .stream_request_logs(with_token(from("yesterday"), w.token("admin")))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), tonic::Code::InvalidArgument);
}
