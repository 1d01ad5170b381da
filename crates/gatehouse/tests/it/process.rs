//! The built `gatehouse` binary as operators run it.

use std::process::Command;

use crate::helpers::{gatehouse, json_of, spawn_process};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// Runs `gatehouse serve` expecting a configuration error; returns its stderr.
fn refused(envs: &[(&str, &str)], args: &[&str]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(BIN)
        .arg("serve")
        .args(args)
        .envs(envs.iter().copied())
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success(), "should refuse to start");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    stderr
}

#[test]
fn bad_configuration_stops_the_start_with_one_line_naming_the_field() {
    let e = refused(&[("GATEHOUSE__SERVER__HTTP_ADDR", "not-an-address")], &[]);
    assert!(
        e.contains("server.http_addr") && e.contains("GATEHOUSE__SERVER__HTTP_ADDR"),
        "{e}"
    );

    let e = refused(&[("GATEHOUSE__STORAGE__ENGINE", "mongodb")], &[]);
    assert!(e.contains("storage.engine") && e.contains("mongodb"), "{e}");

    let e = refused(&[("GATEHOUSE__IDS__WORKER_ID", "4096")], &[]);
    assert!(e.contains("ids.worker_id"), "{e}");

    let e = refused(&[("GATEHOUSE__MODE", "production")], &[]);
    assert!(
        e.contains("auth.jwt_secret") && e.contains("production"),
        "{e}"
    );

    let e = refused(
        &[("GATEHOUSE__AUTH__KEY_ENCRYPTION_SECRET", "c2hvcnQ=")],
        &[],
    );
    assert!(
        e.contains("auth.key_encryption_secret") && e.contains("32"),
        "{e}"
    );

    let e = refused(&[], &["--config", "/does/not/exist.yaml"]);
    assert!(e.contains("/does/not/exist.yaml"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("typo.yaml");
    std::fs::write(&file, "server:\n  http_adr: 127.0.0.1:3000\n").unwrap();
    let e = refused(&[], &["--config", file.to_str().unwrap()]);
    assert!(
        e.contains("server.http_adr") && e.contains("typo.yaml"),
        "{e}"
    );
}

#[test]
fn serve_answers_health_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = spawn_process(
        dir.path(),
        &[("GATEHOUSE__STORAGE__PATH", data.display().to_string())],
        &[],
    );
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let health = reqwest::get(server.url("/health")).await.unwrap();
        assert_eq!(health.status(), 200);
        let ready = reqwest::get(server.url("/ready")).await.unwrap();
        assert_eq!(ready.status(), 200);
    });
    assert!(data.join("gatehouse.redb").exists());
    let status = server.terminate();
    assert!(status.success(), "clean exit after SIGTERM: {status}");
    let lines = server.log_lines();
    assert!(lines.iter().any(|l| l.contains("stopped")), "{lines:?}");
}

#[test]
fn the_generated_admin_password_is_logged_once_and_must_be_changed() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let envs = [("GATEHOUSE__STORAGE__PATH", data.display().to_string())];
    let mut server = spawn_process(dir.path(), &envs, &[]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let lines = server.log_lines();
    let password = lines
        .iter()
        .chain(server.startup_lines())
        .find_map(|l| l.split("password=").nth(1))
        .map(|rest| rest.split_whitespace().next().unwrap().to_string())
        .expect("the generated password is logged");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let login = json_of(client
            .post(server.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "admin@localhost", "password": password}))).await;
        let token = login["token"].as_str().expect("signed in").to_string();
        let me = json_of(client
            .get(server.url("/api/v1/auth/me"))
            .bearer_auth(&token)).await;
        assert_eq!(me["must_change_password"], true);
        assert_eq!(me["roles"], serde_json::json!(["user", "admin"]));
        let blocked = client
            .get(server.url("/api/v1/audit-events"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(blocked.status(), 403);
        let changed = client
            .put(server.url("/api/v1/auth/password"))
            .bearer_auth(&token)
            .json(&serde_json::json!({"current_password": password, "new_password": "the admin's own passphrase"}))
            .send()
            .await
            .unwrap();
        assert_eq!(changed.status(), 204);
        // The change ended the JWT: sign in again with the new password.
        let ended = client
            .get(server.url("/api/v1/auth/me"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(ended.status(), 401);
        let login = json_of(client
            .post(server.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "admin@localhost", "password": "the admin's own passphrase"}))).await;
        let token = login["token"].as_str().expect("signed in again");
        let allowed = client
            .get(server.url("/api/v1/audit-events"))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(allowed.status(), 200);
    });
    assert!(server.terminate().success());

    // A second start creates no admin and logs no password.
    let mut again = spawn_process(dir.path(), &envs, &[]);
    std::thread::sleep(std::time::Duration::from_millis(200));
    let all: Vec<String> = again
        .startup_lines()
        .cloned()
        .chain(again.log_lines())
        .collect();
    assert!(!all.iter().any(|l| l.contains("password=")), "{all:?}");
    assert!(again.terminate().success());
}

/// An upstream that lists one model, only for `Authorization: Bearer <expected>`.
async fn guarded_upstream(expected: &'static str) -> String {
    let app = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(move |headers: axum::http::HeaderMap| async move {
            let ok = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == format!("Bearer {expected}"));
            if ok {
                Ok(axum::Json(
                    serde_json::json!({"data": [{"id": "guarded-model"}]}),
                ))
            } else {
                Err(axum::http::StatusCode::UNAUTHORIZED)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotating_the_encryption_key_loses_no_secret() {
    const OLD: &str = "b2xkLWtleS1lbmNyeXB0aW9uLXNlY3JldC0zMi1ieXRlcyE=";
    const NEW: &str = "bmV3LWtleS1lbmNyeXB0aW9uLXNlY3JldC0zMi1ieXRlcyE=";
    const UPSTREAM_KEY: &str = "sk-upstream-secret-for-rotation";
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let upstream = guarded_upstream(UPSTREAM_KEY).await;
    let base = |key: &str| {
        vec![
            ("GATEHOUSE__STORAGE__PATH", data.display().to_string()),
            ("GATEHOUSE__AUTH__JWT_SECRET", NEW.to_string()),
            ("GATEHOUSE__AUTH__KEY_ENCRYPTION_SECRET", key.to_string()),
            (
                "GATEHOUSE__BOOTSTRAP__ADMIN_EMAIL",
                "admin@example.com".to_string(),
            ),
            (
                "GATEHOUSE__BOOTSTRAP__ADMIN_PASSWORD",
                "correct horse battery staple".to_string(),
            ),
        ]
    };
    let client = reqwest::Client::new();
    // Signs in and syncs the endpoint: 200 only if the credential decrypts.
    let sync = |server: &crate::helpers::ServerProcess, endpoint: Option<String>| {
        let client = client.clone();
        let url = |p: &str| server.url(p);
        let (login, endpoints, credentials) = (
            url("/api/v1/auth/login"),
            url("/api/v1/endpoints"),
            url("/api/v1/credentials"),
        );
        let upstream = upstream.clone();
        let base = server.url("");
        async move {
            let token = json_of(client
                .post(login)
                .json(&serde_json::json!({"login": "admin@example.com", "password": "correct horse battery staple"}))).await;
            let auth = format!("Bearer {}", token["token"].as_str().unwrap());
            let endpoint = match endpoint {
                Some(id) => id,
                None => {
                    let credential = json_of(client
                        .post(credentials)
                        .header("authorization", &auth)
                        .json(&serde_json::json!({"name": "upstream", "kind": "openai", "secret": {"api_key": UPSTREAM_KEY}}))).await;
                    let endpoint = json_of(client
                        .post(endpoints)
                        .header("authorization", &auth)
                        .json(&serde_json::json!({"name": "guarded", "base_url": upstream, "credential_id": credential["id"]}))).await;
                    endpoint["id"].as_str().unwrap().to_string()
                }
            };
            let status = client
                .post(format!("{base}/api/v1/endpoints/{endpoint}/sync"))
                .header("authorization", &auth)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16();
            (endpoint, status)
        }
    };
    let to_refs = |v: &Vec<(&'static str, String)>| v.clone();

    let mut first = spawn_process(dir.path(), &to_refs(&base(OLD)), &[]);
    let (endpoint, status) = sync(&first, None).await;
    assert_eq!(status, 200, "the credential works under the old key");
    first.terminate();

    let mut rotate_env = base(NEW);
    rotate_env.push((
        "GATEHOUSE__AUTH__PREVIOUS_KEY_ENCRYPTION_SECRETS",
        format!("[{OLD}]"),
    ));
    let output = gatehouse(dir.path(), &rotate_env, &["rotate-encryption-key"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // The credential and the token-signing key made at the first start.
    assert_eq!(stdout.trim(), "re-encrypted 2 secrets with the current key");

    // Only the new key now: the secret still decrypts.
    let mut after = spawn_process(dir.path(), &to_refs(&base(NEW)), &[]);
    let (_, status) = sync(&after, Some(endpoint.clone())).await;
    assert_eq!(status, 200, "nothing lost");
    let jwks = client
        .get(after.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 200, "the signing key opens with the new key");
    after.terminate();
    // And the old key alone no longer opens it: it really was re-sealed.
    let mut old_only = spawn_process(dir.path(), &to_refs(&base(OLD)), &[]);
    let (_, status) = sync(&old_only, Some(endpoint)).await;
    assert_eq!(status, 500);
    let jwks = client
        .get(old_only.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jwks.status(), 500, "the signing key was re-sealed too");
    old_only.terminate();
}

#[tokio::test]
async fn rotate_signing_key_command_publishes_the_new_key_beside_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let env = vec![
        (
            "GATEHOUSE__STORAGE__PATH",
            dir.path().join("data").display().to_string(),
        ),
        (
            "GATEHOUSE__AUTH__JWT_SECRET",
            "bmV3LWtleS1lbmNyeXB0aW9uLXNlY3JldC0zMi1ieXRlcyE=".to_string(),
        ),
        (
            "GATEHOUSE__AUTH__KEY_ENCRYPTION_SECRET",
            "b2xkLWtleS1lbmNyeXB0aW9uLXNlY3JldC0zMi1ieXRlcyE=".to_string(),
        ),
    ];
    let kids = |body: serde_json::Value| -> Vec<String> {
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let client = reqwest::Client::new();
    let mut first = spawn_process(dir.path(), &env, &[]);
    let before = json_of(client.get(first.url("/.well-known/jwks.json"))).await;
    // While the server runs, the embedded store is its alone: the command
    // says to stop it first, and changes nothing.
    let busy = gatehouse(dir.path(), &env, &["rotate-signing-key"])
        .output()
        .unwrap();
    assert!(!busy.status.success());
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(said.contains("stop the server first"), "{said}");
    first.terminate();
    let before = kids(before);
    assert_eq!(before.len(), 1, "the first start made one key");

    let output = gatehouse(dir.path(), &env, &["rotate-signing-key"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let new_kid = stdout
        .trim()
        .strip_prefix("new signing key ")
        .unwrap()
        .to_string();

    let mut second = spawn_process(dir.path(), &env, &[]);
    let after = json_of(client.get(second.url("/.well-known/jwks.json"))).await;
    second.terminate();
    let after = kids(after);
    assert!(
        after.contains(&new_kid) && after.contains(&before[0]),
        "{after:?}"
    );
}
