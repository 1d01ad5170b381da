//! API keys and the catalogue through the real server: keys on the management
//! API, model sync against a real HTTP server, nothing secret at rest, the
//! gRPC decision and change stream, and revocation across two instances on
//! one PostgreSQL.

use std::time::{Duration, Instant};

use gatehouse_grpc::v1::key_service_client::KeyServiceClient;
use gatehouse_grpc::v1::{ValidateApiKeyRequest, WatchChangesRequest};
use gatehouse_storage::postgres::testing::TestPostgres;
use gatehouse_storage::{KeyRange, RangeOptions, TxError};
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app, test_config, with_first_admin};
use crate::matrix::models_upstream;

async fn login(app: &TestApp, email: &str) -> String {
    app.bearer(email).await
}

/// An admin token, a user token, and a model the user may call.
async fn setup(app: &TestApp) -> (String, String) {
    app.create_user(&app.first_admin().await, "ada").await;
    let admin = login(app, "admin@example.com").await;
    let ada = login(app, "ada@example.com").await;
    let (_, endpoint) = app
        .by(&admin)
        .post(
            "/api/v1/endpoints",
            json!({"name": "local", "base_url": "http://127.0.0.1:9"}),
        )
        .await;
    let (status, _) = app
        .by(&admin)
        .post(
            "/api/v1/models",
            json!({"name": "small", "endpoint_id": endpoint["id"]}),
        )
        .await;
    assert_eq!(status, 201);
    (admin, ada)
}

#[tokio::test]
async fn keys_are_shown_once_work_on_the_api_and_stop_when_revoked() {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    let app = spawn_app(config).await;
    let (_, ada) = setup(&app).await;
    let body = json!({
        "label": "laptop",
        "allowed_models": ["small"],
        "rpm_limit": 60,
        "scopes": ["gateway", "management"],
    });
    let (status, created) = app.by(&ada).post("/api/v1/api-keys", body).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["scopes"], json!(["gateway", "management"]));
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    assert!(key.starts_with("ak_") && key.len() == 35);
    assert_eq!(created["display_prefix"], &key[..7]);
    // Never again: not in the list, not in the key's own record.
    let (_, list) = app.by(&ada).get("/api/v1/api-keys").await;
    assert!(!list.to_string().contains(&key));
    assert_eq!(list["items"][0]["label"], "laptop");
    // With the management scope both headers work on the management API, as
    // the key's owner.
    for auth in [
        ("x-api-key", key.clone()),
        ("authorization", format!("Bearer {key}")),
    ] {
        let (status, me) = app.get("/api/v1/auth/me", Some((auth.0, &auth.1))).await;
        assert_eq!(
            (status, me["email"].as_str()),
            (200, Some("ada@example.com"))
        );
    }
    // A key revokes only keys it created, so not itself; its owner does.
    let (status, _) = app
        .with_key(&key)
        .delete(&format!("/api/v1/api-keys/{id}"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app.by(&ada).delete(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(status, 204);
    // Revoked: the very next request fails.
    let (status, body) = app.with_key(&key).get("/api/v1/auth/me").await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = app
        .with_key("ak_thisisnotakeyatallbutlooksclose1")
        .get("/api/v1/auth/me")
        .await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn models_sync_from_a_real_endpoint_idempotently() {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    let app = spawn_app(config).await;
    let admin = login(&app, "admin@example.com").await;
    let upstream = models_upstream().await;
    let (status, endpoint) = app
        .by(&admin)
        .post(
            "/api/v1/endpoints", // The form OpenAI clients and LiteLLM take: with `/v1`.
            json!({"name": "vllm", "base_url": format!("{upstream}/v1/")}),
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    assert_eq!(endpoint["base_url"], upstream.as_str());
    assert_eq!(endpoint["api_base_url"], format!("{upstream}/v1"));
    let sync = format!(
        "/api/v1/endpoints/{}/sync",
        endpoint["id"].as_str().unwrap()
    );
    let auth = Some(("authorization", admin.as_str()));
    let (status, first) = app.post(&sync, auth, None).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(first["added"], json!(["llama-3-8b", "mistral-7b"]));
    let (_, again) = app.post(&sync, auth, None).await;
    assert_eq!(again, json!({"added": [], "updated": [], "unchanged": 2}));
    let (_, models) = app.get("/api/v1/models", auth).await;
    let llama = models["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "llama-3-8b")
        .unwrap();
    assert_eq!(llama["context_length"], 8192);
    assert_eq!(llama["provider"], "meta");
    assert_eq!(llama["enabled"], false, "synced models wait for an admin");
    // An endpoint that does not answer is a clear 503.
    let (_, dead) = app
        .post(
            "/api/v1/endpoints",
            auth,
            json!({"name": "dead", "base_url": "http://127.0.0.1:9", "connect_timeout_ms": 500}),
        )
        .await;
    let path = format!("/api/v1/endpoints/{}/sync", dead["id"].as_str().unwrap());
    let (status, body) = app.post(&path, auth, None).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "unavailable");
    // It says which URL answered what.
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("GET http://127.0.0.1:9/v1/models: "),
        "{message}"
    );
    app.stop().await;
}

#[tokio::test]
async fn no_plaintext_key_or_secret_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = test_config(Some(dir.path()));
    with_first_admin(&mut config);
    let app = spawn_app(config.clone()).await;
    let (admin, ada) = setup(&app).await;
    let mut secrets = Vec::new();
    for (i, kind) in ["openai", "anthropic", "generic"].iter().enumerate() {
        let secret = format!("sk-very-secret-credential-value-{i}");
        let (status, body) = app
            .by(&admin)
            .post(
                "/api/v1/credentials",
                json!({"name": format!("c{i}"), "kind": kind, "secret": {"api_key": secret}}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        assert!(!body.to_string().contains(&secret), "never returned");
        secrets.push(secret);
    }
    for i in 0..3 {
        let (_, created) = app
            .by(&ada)
            .post("/api/v1/api-keys", json!({"label": format!("k{i}")}))
            .await;
        secrets.push(created["key"].as_str().unwrap().to_string());
    }
    // A client key pair Gatehouse keeps, and a vault refresh token.
    let mut raw: Vec<Vec<u8>> = Vec::new();
    {
        let s = &app.services;
        let c = Default::default();
        let user = s
            .accounts
            .authenticate_token(ada.trim_start_matches("Bearer "))
            .await
            .unwrap()
            .0;
        let org = s.tenancy.create_org(&user, "Vaulted", &c).await.unwrap().id;
        let spec = |name: &str| gatehouse_core::vaults::VaultSpec {
            name: Some(name.into()),
            description: None,
        };
        let vault = s
            .vaults
            .create_vault(&user, org, spec("v"), &c)
            .await
            .unwrap()
            .id;
        let client = s
            .vaults
            .create_client(&user, org, spec("svc"), &c)
            .await
            .unwrap()
            .id;
        let (cert, pem) = s
            .vaults
            .add_certificate(
                &user,
                org,
                client,
                gatehouse_core::vaults::CertificateSpec {
                    public_key: None,
                    keep_private_key: true,
                },
                &c,
            )
            .await
            .unwrap();
        assert!(cert.private_key.is_some());
        let pem = pem.unwrap();
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        use base64::Engine as _;
        let der = base64::engine::general_purpose::STANDARD
            .decode(&body)
            .unwrap();
        raw.push(der[der.len() - 32..].to_vec());
        secrets.push(body);
        s.vaults
            .put_grant(
                &user,
                org,
                vault,
                (gatehouse_core::model::vaults::SubjectKind::User, user.id),
                gatehouse_core::model::vaults::VaultRole::Reader,
                &c,
            )
            .await
            .unwrap();
        let tokens = s.tokens.user_token(&user, org, vault, &c).await.unwrap();
        secrets.push(tokens.refresh_token);
    }
    raw.extend(secrets.iter().map(|s| s.as_bytes().to_vec()));
    // Every key and value the store holds, through the engine…
    let store = app.services.store.clone();
    let everything = store
        .run(|tx| async move {
            let all = KeyRange::new(vec![0u8], vec![0xffu8]);
            let mut found = Vec::new();
            let mut range = Some(all);
            while let Some(r) = range {
                let page = tx.get_range(&r, RangeOptions::limit(500)).await?;
                found.extend(page.entries);
                range = page.next;
            }
            Ok::<_, TxError<String>>(found)
        })
        .await
        .unwrap();
    assert!(everything.len() > 50, "the scan sees the store");
    drop(store);
    app.stop().await;
    // …and every byte of the data directory on disk.
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() && !path.ends_with("dev-secrets.json") {
            files.push(std::fs::read(&path).unwrap());
        }
    }
    assert!(!files.is_empty());
    for needle in &raw {
        let secret = String::from_utf8_lossy(needle);
        for (k, v) in &everything {
            assert!(
                !contains(k, needle) && !contains(v, needle),
                "{secret} stored"
            );
        }
        for bytes in &files {
            assert!(!contains(bytes, needle), "{secret} on disk");
        }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn gateways_validate_keys_and_follow_changes_over_grpc() {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    let app = spawn_app(config).await;
    let (admin, ada) = setup(&app).await;
    let (_, created) = app
        .by(&ada)
        .post(
            "/api/v1/api-keys",
            json!({"tpm_limit": 1000, "budget": {"max_usd": 5.0, "period": "month"}}),
        )
        .await;
    let key = created["key"].as_str().unwrap().to_string();
    let mut client = KeyServiceClient::connect(format!("http://{}", app.grpc))
        .await
        .unwrap();
    let validate = |model: &str| ValidateApiKeyRequest {
        key: key.clone(),
        model: model.into(),
    };
    let ok = client
        .validate_api_key(validate("small"))
        .await
        .unwrap()
        .into_inner();
    assert!(ok.allowed);
    assert_eq!(
        (ok.tpm_limit, ok.budget_usd, ok.budget_period.as_str()),
        (1000, 5.0, "month")
    );
    assert_eq!(ok.upstream_model, "small");
    let missing = client
        .validate_api_key(validate("nope"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (missing.allowed, missing.status, missing.reason.as_str()),
        (false, 404, "unknown_model")
    );

    // The change stream needs a platform reader, and resumes from a cursor.
    let mut unauthorized = tonic::Request::new(WatchChangesRequest::default());
    unauthorized
        .metadata_mut()
        .insert("authorization", ada.parse().unwrap());
    assert_eq!(
        client.watch_changes(unauthorized).await.unwrap_err().code(),
        tonic::Code::PermissionDenied
    );
    let mut request = tonic::Request::new(WatchChangesRequest::default());
    request
        .metadata_mut()
        .insert("authorization", admin.parse().unwrap());
    let mut stream = client.watch_changes(request).await.unwrap().into_inner();
    let id = created["id"].as_str().unwrap();
    let (status, _) = app.by(&ada).delete(&format!("/api/v1/api-keys/{id}")).await;
    assert_eq!(status, 204);
    let event = tokio::time::timeout(Duration::from_secs(5), stream.message())
        .await
        .expect("an event within seconds")
        .unwrap()
        .unwrap();
    assert_eq!(
        (event.subspace.as_str(), event.kind.as_str()),
        ("api_key", "put")
    );
    // Resuming from that event's cursor yields what came after it.
    let (_, later) = app
        .by(&ada)
        .post("/api/v1/api-keys", json!({"label": "later"}))
        .await;
    let mut resume = tonic::Request::new(WatchChangesRequest {
        cursor: event.cursor.clone(),
    });
    resume
        .metadata_mut()
        .insert("authorization", admin.parse().unwrap());
    let mut resumed = client.watch_changes(resume).await.unwrap().into_inner();
    let next = tokio::time::timeout(Duration::from_secs(5), resumed.message())
        .await
        .expect("an event after the cursor")
        .unwrap()
        .unwrap();
    assert!(next.cursor > event.cursor, "only what came after");
    assert_eq!(
        (next.subspace.as_str(), next.kind.as_str()),
        ("api_key", "put")
    );
    let later_id: u64 = later["id"].as_str().unwrap().parse().unwrap();
    let key_bytes: Vec<u8> = (0..next.key.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&next.key[i..i + 2], 16).unwrap())
        .collect();
    let (_, id): (String, u64) = gatehouse_storage::tuple::unpack(&key_bytes).unwrap();
    assert_eq!(id, later_id, "the key created after the cursor");
    let revoked = client
        .validate_api_key(validate("small"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (revoked.allowed, revoked.status, revoked.reason.as_str()),
        (false, 401, "revoked")
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_revoked_on_one_instance_fails_on_another_within_a_second() {
    let Some(pg) = TestPostgres::shared() else {
        return;
    };
    let url = pg.create_database().await;
    let config = || {
        let mut config = test_config(None);
        with_first_admin(&mut config);
        config.storage.engine = "postgres".into();
        config.storage.postgres_url = Some(url.clone());
        config
    };
    let first = spawn_app(config()).await;
    let second = spawn_app(config()).await;
    let (_, ada) = setup(&first).await;
    let (_, created) = first.by(&ada).post("/api/v1/api-keys", json!({})).await;
    let key = created["key"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    let index = second.services.keys.index().clone();
    // The second instance learns of the new key from the change feed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while index.check(&key, "small").is_err() {
        assert!(
            Instant::now() < deadline,
            "the second instance never saw the key"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (status, _) = first
        .by(&ada)
        .delete(&format!("/api/v1/api-keys/{id}"))
        .await;
    assert_eq!(status, 204);
    let revoked_at = Instant::now();
    assert!(
        first.services.keys.index().check(&key, "small").is_err(),
        "refused at once where it was revoked"
    );
    while index.check(&key, "small").is_ok() {
        assert!(
            revoked_at.elapsed() < Duration::from_secs(1),
            "still accepted on the other instance after a second"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "revocation reached the other instance in {} ms",
        revoked_at.elapsed().as_millis()
    );
    // Through the other instance's API as well.
    let (status, _) = second.with_key(&key).get("/api/v1/auth/me").await;
    assert_eq!(status, 401);
    first.stop().await;
    second.stop().await;
}

/// Creates a key with `ada`'s credential `auth` (a header pair); the status
/// and the answer.
async fn create_key(app: &TestApp, auth: (&str, &str), body: Value) -> (u16, Value) {
    app.post("/api/v1/api-keys", Some(auth), body).await
}

#[tokio::test]
async fn keys_are_gateway_credentials_unless_scoped_and_never_widen_themselves() {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    let app = spawn_app(config).await;
    let (_, ada) = setup(&app).await;

    // A key without the management scope: 403 on the management API.
    let (_, plain) = create_key(&app, ("authorization", &ada), json!({"label": "gw"})).await;
    assert_eq!(plain["scopes"], json!(["gateway"]));
    let plain = plain["key"].as_str().unwrap().to_string();
    for (method, path) in [
        (Method::GET, "/api/v1/auth/me"),
        (Method::GET, "/api/v1/api-keys"),
        (Method::POST, "/api/v1/api-keys"),
        (Method::GET, "/api/v1/organizations"),
    ] {
        let (status, body) = app
            .call(
                method.clone(),
                path,
                Some(("x-api-key", &plain)),
                Some(json!({})),
            )
            .await;
        assert_eq!(
            (status, body["error"]["code"].as_str()),
            (403, Some("permission_denied")),
            "{method} {path}: {body}"
        );
    }

    // The finding: a key limited to one model, 1 RPM and $0.01.
    let (status, parent) = create_key(
        &app,
        ("authorization", &ada),
        json!({"label": "narrow", "allowed_models": ["small"], "rpm_limit": 1,
               "budget": {"max_usd": 0.01, "period": "month"}, "scopes": ["gateway", "management"]}),
    )
    .await;
    assert_eq!(status, 201, "{parent}");
    let parent_id = parent["id"].as_str().unwrap().to_string();
    let parent = parent["key"].as_str().unwrap().to_string();
    let as_parent = ("x-api-key", parent.as_str());
    // It cannot mint a broader key…
    for body in [
        json!({}),
        json!({"allowed_models": ["small"], "budget": {"max_usd": 0.01, "period": "month"}}),
        json!({"allowed_models": ["small"], "rpm_limit": 5, "budget": {"max_usd": 0.01, "period": "month"}}),
        json!({"allowed_models": ["small"], "rpm_limit": 1, "budget": {"max_usd": 1.0, "period": "month"}}),
    ] {
        let (status, answer) = create_key(&app, as_parent, body.clone()).await;
        assert_eq!(status, 403, "{body} gave {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("broader")
        );
    }
    // …but a narrower one, which it then revokes.
    let (status, child) = create_key(
        &app,
        as_parent,
        json!({"allowed_models": ["small"], "rpm_limit": 1, "budget": {"max_usd": 0.005, "period": "month"}}),
    )
    .await;
    assert_eq!(status, 201, "{child}");
    assert_eq!(child["created_by_key"], parent_id.as_str());
    let child_key = child["key"].as_str().unwrap().to_string();
    let child_id = child["id"].as_str().unwrap().to_string();
    // The child (gateway only) cannot revoke its parent; the parent revokes the child.
    let (status, _) = app
        .with_key(&child_key)
        .delete(&format!("/api/v1/api-keys/{parent_id}"))
        .await;
    assert_eq!(status, 403);
    let (status, _) = app
        .delete(&format!("/api/v1/api-keys/{child_id}"), Some(as_parent))
        .await;
    assert_eq!(status, 204);

    // Never the account's own security, whatever its scopes.
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/auth/password",
            json!({"current_password": PASSWORD, "new_password": "taken over by a key"}),
        ),
        (Method::GET, "/api/v1/auth/sessions", json!({})),
        (
            Method::POST,
            "/api/v1/auth/emails",
            json!({"email": "attacker@example.com"}),
        ),
        (Method::POST, "/api/v1/auth/logout", json!({})),
    ] {
        let (status, body) = app
            .call(method.clone(), path, Some(as_parent), Some(body))
            .await;
        assert_eq!(status, 403, "{method} {path}: {body}");
    }
    // The password still works.
    assert!(!login(&app, "ada@example.com").await.is_empty());
    app.stop().await;
}

/// JSON Schema calls `55190.0` an integer, and clients that keep every
/// number as a float send it so: integral floats count as integers.
#[tokio::test]
async fn integers_sent_as_integral_floats_are_accepted() {
    let app = spawn_app(crate::helpers::admin_config()).await;
    let admin = app.bearer("admin@example.com").await;
    let auth = Some(("authorization", admin.as_str()));
    let (status, created) = app
        .post(
            "/api/v1/api-keys",
            auth,
            json!({"label": "floats", "rpm_limit": 60.0}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["rpm_limit"], 60);
    let rotate = format!(
        "/api/v1/api-keys/{}/rotate",
        created["id"].as_str().unwrap()
    );
    let (status, body) = app
        .post(&rotate, auth, json!({"grace_secs": 55190.0}))
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["rpm_limit"], 60);
    // A fraction is still not an integer.
    let (status, body) = app.post(&rotate, auth, json!({"grace_secs": 1.5})).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("malformed_body"))
    );
    app.stop().await;
}
