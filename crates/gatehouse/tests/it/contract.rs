//! The OpenAPI document is a contract clients are generated from: schemathesis
//! (pinned in `tests/sdk/requirements.txt`) sends every operation schema-valid
//! and schema-violating requests as the first admin, against the real binary,
//! and checks each answer against the document: no server error, only
//! documented statuses, bodies in their schemas, valid requests accepted and
//! invalid ones refused. Allowances for rules no schema can express are in
//! `tests/contract/schemathesis.toml`, each with its reason.

use std::path::Path;
use std::process::Command;

use crate::gateway::sdk_python;
use crate::helpers::{PASSWORD, ServerProcess, json_of, spawn_process};

/// Seconds schemathesis may spend on the management API; the gateway gets 30
/// more (within the three minutes the step may take).
const BUDGET_SECS: &str = "120";

/// A fresh server on the memory engine, its URL and the first admin's JWT.
async fn admin_server(dir: &Path) -> (ServerProcess, String, String) {
    let server = spawn_process(
        dir,
        &[
            ("GATEHOUSE__STORAGE__ENGINE", "memory".into()),
            (
                "GATEHOUSE__BOOTSTRAP__ADMIN_EMAIL",
                "admin@example.com".into(),
            ),
            ("GATEHOUSE__BOOTSTRAP__ADMIN_PASSWORD", PASSWORD.into()),
        ],
        &[],
    );
    let base = server.url("");
    let login = json_of(
        reqwest::Client::new()
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "admin@example.com", "password": PASSWORD})),
    )
    .await;
    let token = login["token"]
        .as_str()
        .expect("the admin signs in")
        .to_string();
    (server, base, token)
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_keeps_the_openapi_contract() {
    let Some(python) = sdk_python() else {
        return;
    };
    let st = Path::new(&python).with_file_name("st");
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base, token) = admin_server(dir.path()).await;
    let config = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/contract/schemathesis.toml"
    );
    let mut command = Command::new(&st);
    command
        .args(["--config-file", config, "run"])
        .arg(format!("{base}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {token}")])
        // Signing out and changing the password end the admin's JWTs, and
        // with them the run.
        .args(["--exclude-path", "/api/v1/auth/logout"])
        .args(["--exclude-path", "/api/v1/auth/password"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-time", BUDGET_SECS])
        // One worker: hypothesis describes its strategies with `ast.parse`,
        // which CPython 3.11 does not make safe across threads.
        .args(["--workers", "1"])
        .args(["--seed", "1"])
        .env("NO_COLOR", "1")
        .current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("run {}: {e}", st.display()));
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "schemathesis found contract failures:\n{report}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );

    server.terminate();

    // The gateway, with an API key, on a fresh server (the run above filled
    // the catalogue with whatever it generated): its own operations, for a
    // shorter while.
    let (mut server, base, token) = admin_server(dir.path()).await;
    let key = reqwest::Client::new()
        .post(format!("{base}/api/v1/api-keys"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"label": "schemathesis"}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let key = key["key"].as_str().expect("a key").to_string();
    let mut command = Command::new(&st);
    command
        .args(["--config-file", config, "run"])
        .arg(format!("{base}/openapi.json"))
        .args(["--header", &format!("Authorization: Bearer {key}")])
        .args(["--include-path-regex", "^/v1/"])
        .args(["--phases", "examples,coverage,fuzzing"])
        .args(["--max-time", "30", "--workers", "1", "--seed", "1"])
        .env("NO_COLOR", "1")
        .current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    server.terminate();
    assert!(
        output.status.success(),
        "schemathesis found gateway contract failures:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
