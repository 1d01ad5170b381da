//! Every list pages the same way (SPEC §5): `{"items", "next_cursor"}`,
//! `?limit=&cursor=`, default 50, at most 500, in a stable order. The list
//! routes come from the router's own OpenAPI document, so a list added
//! without paging, or without a walk here, fails.

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::Id;
use gatehouse_core::model::catalog::CredentialScope;
use gatehouse_core::model::sessions::ClientInfo;
use gatehouse_core::model::tenancy::{OrgRole, TeamRole};
use gatehouse_core::model::usage::RequestLog;
use gatehouse_core::model::vaults::{SubjectKind, VaultRole};
use gatehouse_core::tenancy::TeamSpec;
use gatehouse_core::vaults::VaultSpec;
use serde_json::{Value, json};

use crate::matrix::{Fixture, World};

/// The GET routes whose 200 answer is a page: `{"items", "next_cursor"}`.
fn list_routes() -> BTreeSet<String> {
    let spec = serde_json::to_value(gatehouse_api::openapi::spec()).unwrap();
    let schemas = &spec["components"]["schemas"];
    let mut lists = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        let Some(schema) =
            item["get"]["responses"]["200"]["content"]["application/json"].get("schema")
        else {
            continue;
        };
        let schema = match schema["$ref"].as_str() {
            Some(r) => &schemas[r.trim_start_matches("#/components/schemas/")],
            None => schema,
        };
        if schema["properties"].get("items").is_some()
            && schema["properties"].get("next_cursor").is_some()
        {
            lists.insert(path.clone());
        }
    }
    lists
}

/// What tells one item of a list from another.
fn identity(item: &Value) -> String {
    for field in ["id", "kid", "group", "email"] {
        if let Some(v) = item.get(field) {
            return v.to_string();
        }
    }
    match (item.get("subject_type"), item.get("subject_id")) {
        (Some(t), Some(id)) => format!("{t}:{id}"),
        _ => item["user_id"].to_string(),
    }
}

/// Gets one page as `token`.
async fn page(world: &World, token: &str, path: &str) -> (u16, Value) {
    let (status, body) = world.app.by(&format!("Bearer {token}")).get(path).await;
    (status, body)
}

/// Adds a second of each thing the fixture's organization holds one of, and
/// request logs (for usage and the request-log list), so that every list has
/// at least two items to page through.
/// Two deletions whose records are still being removed, written just before
/// their list is walked (the leader's `purge` job, every minute, would finish
/// them: these name nothing, so it would find nothing to remove).
async fn two_removals_in_progress(world: &World) {
    use gatehouse_core::model::tenancy::{Removal, RemovalKind};
    let now = world.app.services.usage.env().clock.now();
    for (id, kind) in [(1u64, RemovalKind::Organization), (2, RemovalKind::User)] {
        let removal = Removal {
            id: Id(id),
            kind,
            name: format!("gone {id}"),
            started_at: now,
            removed: 0,
            updated_at: now,
        };
        world
            .app
            .services
            .store
            .run(|tx| {
                let removal = &removal;
                async move {
                    gatehouse_core::keyspace::removal(removal.id)
                        .put(&tx, removal)
                        .await
                }
            })
            .await
            .unwrap();
    }
}

async fn second_of_everything(world: &World, f: &Fixture) {
    let s = &world.app.services;
    let c = ClientInfo::default();
    let owner = world.user("org_owner");
    let admin = world.user("admin");
    let team = s
        .tenancy
        .create_team(
            owner,
            f.org,
            TeamSpec {
                name: Some("Second team".into()),
                ..TeamSpec::default()
            },
            &c,
        )
        .await
        .unwrap();
    let org_admin = world.user("org_admin").id;
    s.tenancy
        .put_team_member(owner, f.org, f.team, org_admin, TeamRole::Member, &c)
        .await
        .unwrap();
    s.tenancy
        .invite(owner, f.org, "second@example.com", OrgRole::Member, &c)
        .await
        .unwrap();
    let vault = s
        .vaults
        .create_vault(
            owner,
            f.org,
            VaultSpec {
                name: Some("Second vault".into()),
                description: None,
            },
            &c,
        )
        .await
        .unwrap();
    let _ = vault;
    s.vaults
        .put_grant(
            owner,
            f.org,
            f.vault,
            (SubjectKind::Team, team.id),
            VaultRole::Reader,
            &c,
        )
        .await
        .unwrap();
    s.vaults
        .create_client(
            owner,
            f.org,
            VaultSpec {
                name: Some("Second client".into()),
                description: None,
            },
            &c,
        )
        .await
        .unwrap();
    s.vaults
        .add_certificate(owner, f.org, f.client, Default::default(), &c)
        .await
        .unwrap();
    s.catalog
        .create_credential(
            owner,
            gatehouse_core::catalog::NewCredential {
                scope: Some(CredentialScope::Organization { org_id: f.org }),
                name: "Second".into(),
                kind: gatehouse_core::model::catalog::CredentialKind::Openai,
                secret: json!({"api_key": "sk-second"}),
                metadata: Value::Null,
            },
            &c,
        )
        .await
        .unwrap();
    s.accounts
        .add_email(admin.id, "admin-second@example.com", &c)
        .await
        .unwrap();
    // A second project, a second chat, and two messages.
    let work = &s.work;
    work.create_project(owner, f.org, "Second project", &c)
        .await
        .unwrap();
    let member = world.user("org_member");
    let spec = gatehouse_core::work::ChatSpec {
        model: "gpt-4o".into(),
        ..Default::default()
    };
    work.create_chat(member, f.org, f.project, spec, &c)
        .await
        .unwrap();
    for text in ["first", "second"] {
        let message = gatehouse_core::work::NewMessage::text(
            gatehouse_core::model::work::MessageRole::User,
            text.into(),
        );
        work.append_message(member, (f.org, f.project, f.chat), message, &c)
            .await
            .unwrap();
    }
    // Two passkeys.
    for name in ["laptop", "phone"] {
        crate::factors::passkey_for(s, admin.id, name).await;
    }
    // Sessions besides the JWTs: two command-line sign-ins.
    for _ in 0..2 {
        s.accounts
            .login_session(
                "admin@example.com",
                crate::helpers::PASSWORD,
                gatehouse_core::model::sessions::SessionKind::Cli,
                c.clone(),
            )
            .await
            .unwrap();
    }
    // Request logs and usage for two models.
    let now = s.usage.env().clock.now();
    let first = Id::first_at(now.timestamp_millis()).0;
    for (i, model) in ["model-a", "model-b", "model-b"].iter().enumerate() {
        s.usage.record(RequestLog {
            at: now,
            key_id: f.key,
            model_id: f.model,
            endpoint_id: f.endpoint,
            ..crate::helpers::request_log(Id(first + i as u64), admin.id, model)
        });
    }
    s.usage.flush().await.unwrap();
}

#[tokio::test]
async fn every_list_walks_one_item_at_a_time_to_its_end() {
    let world = World::new().await;
    let f = world.fixture(true).await;
    // A second fixture: two organizations, endpoints, models, keys…
    world.fixture(true).await;
    second_of_everything(&world, &f).await;
    let admin = world.token("admin").to_string();
    // Each list's path with its placeholders filled, and any query that
    // shows the admin everything.
    let walks: BTreeMap<&str, String> = [
        ("/api/v1/api-keys", "/api/v1/api-keys?all=true".to_string()),
        ("/api/v1/audit-events", "/api/v1/audit-events?".into()),
        ("/api/v1/auth/emails", "/api/v1/auth/emails?".into()),
        ("/api/v1/auth/passkeys", "/api/v1/auth/passkeys?".into()),
        (
            "/api/v1/organizations/{org}/projects",
            "/api/v1/organizations/{org}/projects?".into(),
        ),
        (
            "/api/v1/organizations/{org}/projects/{project}/chats",
            "/api/v1/organizations/{org}/projects/{project}/chats?".into(),
        ),
        (
            "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/messages",
            "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/messages?".into(),
        ),
        (
            "/api/v1/auth/sso/providers",
            "/api/v1/auth/sso/providers?".into(),
        ),
        ("/api/v1/auth/sessions", "/api/v1/auth/sessions?".into()),
        ("/api/v1/credentials", "/api/v1/credentials?".into()),
        ("/api/v1/endpoints", "/api/v1/endpoints?".into()),
        ("/api/v1/model-aliases", "/api/v1/model-aliases?".into()),
        ("/api/v1/models", "/api/v1/models?".into()),
        (
            "/api/v1/organizations",
            "/api/v1/organizations?all=true".into(),
        ),
        ("/api/v1/request-logs", "/api/v1/request-logs?".into()),
        (
            "/api/v1/subscriptions",
            "/api/v1/subscriptions?all=true".into(),
        ),
        (
            "/api/v1/usage",
            "/api/v1/usage?all=true&group_by=model".into(),
        ),
        ("/api/v1/users", "/api/v1/users?".into()),
        ("/api/v1/system/removals", "/api/v1/system/removals?".into()),
        (
            "/api/v1/organizations/{org}/clients",
            "/api/v1/organizations/{org}/clients?".into(),
        ),
        (
            "/api/v1/organizations/{org}/clients/{client}/certificates",
            "/api/v1/organizations/{org}/clients/{client}/certificates?".into(),
        ),
        (
            "/api/v1/organizations/{org}/credentials",
            "/api/v1/organizations/{org}/credentials?".into(),
        ),
        (
            "/api/v1/organizations/{org}/invitations",
            "/api/v1/organizations/{org}/invitations?".into(),
        ),
        (
            "/api/v1/organizations/{org}/members",
            "/api/v1/organizations/{org}/members?".into(),
        ),
        (
            "/api/v1/organizations/{org}/teams",
            "/api/v1/organizations/{org}/teams?".into(),
        ),
        (
            "/api/v1/organizations/{org}/teams/{team}/members",
            "/api/v1/organizations/{org}/teams/{team}/members?".into(),
        ),
        (
            "/api/v1/organizations/{org}/vaults",
            "/api/v1/organizations/{org}/vaults?".into(),
        ),
        (
            "/api/v1/organizations/{org}/vaults/{vault}/grants",
            "/api/v1/organizations/{org}/vaults/{vault}/grants?".into(),
        ),
    ]
    .into_iter()
    .collect();
    let lists = list_routes();
    let walked: BTreeSet<String> = walks.keys().map(|p| p.to_string()).collect();
    assert_eq!(lists, walked, "every list route has a walk, and only those");

    for (route, path) in &walks {
        if *route == "/api/v1/system/removals" {
            two_removals_in_progress(&world).await;
        }
        let path = world.fill(path, &f, None);
        let sep = if path.ends_with('?') { "" } else { "&" };
        // The whole list in one page, to compare the walk with.
        let (status, whole) = page(&world, &admin, &format!("{path}{sep}limit=500")).await;
        assert_eq!(status, 200, "{route}: {whole}");
        assert_eq!(
            whole["next_cursor"],
            Value::Null,
            "{route}: one page holds it all"
        );
        let expected: Vec<String> = whole["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(identity)
            .collect();
        assert!(
            expected.len() >= 2,
            "{route} has two items to walk: {whole}"
        );

        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let url = match &cursor {
                None => format!("{path}{sep}limit=1"),
                Some(c) => format!("{path}{sep}limit=1&cursor={}", urlencode(c)),
            };
            let (status, body) = page(&world, &admin, &url).await;
            assert_eq!(status, 200, "{route}: {body}");
            let items = body["items"].as_array().unwrap();
            assert!(items.len() <= 1, "{route}: limit=1 gave {}", items.len());
            seen.extend(items.iter().map(identity));
            match body["next_cursor"].as_str() {
                Some(next) => cursor = Some(next.to_string()),
                None => break,
            }
            assert!(
                seen.len() <= expected.len(),
                "{route}: the walk does not end"
            );
        }
        assert_eq!(
            seen, expected,
            "{route}: the walk sees each item once, in order"
        );
    }

    // The limits: the default is 50, more than 500 or less than 1 is refused,
    // and so is a cursor this list did not give.
    for bad in ["limit=0", "limit=501", "limit=x", "cursor=not-an-id"] {
        let (status, body) = page(&world, &admin, &format!("/api/v1/models?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "invalid_input", "{bad}: {body}");
    }
    // A cursor older than `from`, or `from` after `to`, leaves an empty page
    // (these once reached storage as an inverted range: a 500).
    for empty in [
        "/api/v1/audit-events?from=2026-11-29T03:43:16Z&cursor=5716940459",
        "/api/v1/request-logs?from=2026-11-29T03:43:16Z&cursor=5716940459",
        "/api/v1/request-logs?from=2026-11-29T03:43:16Z&to=2026-11-28T00:00:00Z",
    ] {
        let (status, body) = page(&world, &admin, empty).await;
        assert_eq!(status, 200, "{empty}: {body}");
        assert_eq!(body, json!({"items": [], "next_cursor": null}), "{empty}");
    }
    world.app.stop().await;
}

#[tokio::test]
async fn a_list_holds_fifty_by_default() {
    let world = World::new().await;
    let admin = world.user("admin");
    let c = ClientInfo::default();
    for i in 0..51 {
        world
            .app
            .services
            .tenancy
            .create_org(admin, &format!("Org {i}"), &c)
            .await
            .unwrap();
    }
    let token = world.token("admin").to_string();
    let (status, body) = page(&world, &token, "/api/v1/organizations").await;
    assert_eq!(status, 200);
    assert_eq!(body["items"].as_array().unwrap().len(), 50);
    assert!(body["next_cursor"].is_string());
    world.app.stop().await;
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
