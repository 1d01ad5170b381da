//! The operator's command line through the real binary: directly on the
//! store while no server runs, then against a running server with a token.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

use crate::helpers::{PASSWORD, json_of, spawn_process};
use crate::matrix::models_upstream;

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

fn gatehouse(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .env_remove("GATEHOUSE_URL")
        .env_remove("GATEHOUSE_TOKEN")
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Runs a command that must succeed; its standard output.
fn ok(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> String {
    let output = gatehouse(dir, envs, args);
    assert!(
        output.status.success(),
        "gatehouse {args:?}:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

fn json(dir: &Path, envs: &[(&str, String)], args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    serde_json::from_str(&ok(dir, envs, &args)).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn operators_manage_users_keys_models_and_endpoints_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let store = vec![
        (
            "GATEHOUSE__STORAGE__PATH",
            d.join("data").display().to_string(),
        ),
        (
            "GATEHOUSE__BOOTSTRAP__ADMIN_EMAIL",
            "admin@example.com".to_string(),
        ),
        ("GATEHOUSE__BOOTSTRAP__ADMIN_PASSWORD", PASSWORD.to_string()),
        (
            "GATEHOUSE__AUTH__JWT_SECRET",
            "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".to_string(),
        ),
        (
            "GATEHOUSE__AUTH__KEY_ENCRYPTION_SECRET",
            "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".to_string(),
        ),
    ];

    // No server: the command opens the store itself, as the first admin.
    let created = ok(
        d,
        &store,
        &["users", "create", "--email", "ada@example.com"],
    );
    assert!(created.starts_with("GENERATED_PASSWORD\n"), "{created}");
    assert!(
        created.lines().nth(1).is_some_and(|p| p.len() >= 12),
        "{created}"
    );
    let users = json(d, &store, &["users", "list"]);
    let ada = users
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["email"] == "ada@example.com")
        .expect("ada is listed")
        .clone();
    let ada_id = ada["id"].as_str().unwrap();
    let table = ok(
        d,
        &store,
        &["users", "set-roles", ada_id, "user", "request_viewer"],
    );
    assert!(table.contains("user,request_viewer"), "{table}");
    let disabled = json(d, &store, &["users", "disable", ada_id]);
    assert_eq!(disabled["status"], "disabled");

    // A server holds the embedded store: the command says what to do.
    let mut server = spawn_process(d, &store, &[]);
    let busy = gatehouse(d, &store, &["users", "list"]);
    assert!(!busy.status.success());
    let said = String::from_utf8_lossy(&busy.stderr);
    assert!(said.contains("pass --url and --token"), "{said}");

    // With the server's URL and a token, the same commands go over REST.
    let url = server.url("");
    let login = json_of(
        reqwest::Client::new()
            .post(format!("{url}/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "admin@example.com", "password": PASSWORD})),
    )
    .await;
    let remote = vec![
        ("GATEHOUSE_URL", url.clone()),
        (
            "GATEHOUSE_TOKEN",
            login["token"].as_str().unwrap().to_string(),
        ),
    ];
    let upstream = models_upstream().await;
    let (d2, remote2) = (d.to_path_buf(), remote.clone());
    let endpoint = tokio::task::spawn_blocking(move || {
        json(
            &d2,
            &remote2,
            &[
                "endpoints",
                "create",
                "--name",
                "vllm",
                "--base-url",
                &format!("{upstream}/v1"),
            ],
        )
    })
    .await
    .unwrap();
    let endpoint_id = endpoint["id"].as_str().unwrap().to_string();
    let run = |args: Vec<String>| {
        let (d, remote) = (d.to_path_buf(), remote.clone());
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            json(&d, &remote, &args)
        })
    };
    let synced = run(vec!["endpoints".into(), "sync".into(), endpoint_id.clone()])
        .await
        .unwrap();
    assert_eq!(
        synced["added"],
        serde_json::json!(["llama-3-8b", "mistral-7b"])
    );
    let models = run(vec!["models".into(), "list".into()]).await.unwrap();
    let llama = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "llama-3-8b")
        .unwrap()
        .clone();
    assert_eq!(llama["enabled"], false, "synced models wait for an admin");
    let enabled = run(vec![
        "models".into(),
        "enable".into(),
        llama["id"].as_str().unwrap().into(),
    ])
    .await
    .unwrap();
    assert_eq!(enabled["enabled"], true);
    let created = run(vec![
        "models".into(),
        "create".into(),
        "--name".into(),
        "llama-large".into(),
        "--endpoint".into(),
        endpoint_id.clone(),
        "--upstream-name".into(),
        "llama-3-8b".into(),
        "--input-cost".into(),
        "0.000001".into(),
        "--enabled".into(),
    ])
    .await
    .unwrap();
    assert_eq!(created["input_cost_per_token"], 0.000001);
    let key = run(vec![
        "keys".into(),
        "create".into(),
        "--label".into(),
        "cli".into(),
        "--models".into(),
        "llama-3-8b,llama-large".into(),
    ])
    .await
    .unwrap();
    assert!(key["key"].as_str().unwrap().starts_with("ak_"));
    let keys = run(vec!["keys".into(), "list".into()]).await.unwrap();
    assert_eq!(keys.as_array().unwrap().len(), 1);
    assert_eq!(
        keys[0]["allowed_models"],
        serde_json::json!(["llama-3-8b", "llama-large"])
    );
    run(vec![
        "keys".into(),
        "revoke".into(),
        key["id"].as_str().unwrap().into(),
    ])
    .await
    .unwrap();
    let keys = run(vec!["keys".into(), "list".into()]).await.unwrap();
    assert!(keys[0]["revoked_at"].is_string(), "{keys}");
    // Refusals come back as one line with the server's reason.
    let (d3, remote3) = (d.to_path_buf(), remote.clone());
    let refused = tokio::task::spawn_blocking(move || {
        gatehouse(&d3, &remote3, &["users", "set-roles", "1", "admin"])
    })
    .await
    .unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(
        said.starts_with("gatehouse: PATCH /api/v1/users/1: 404"),
        "{said}"
    );
    server.terminate();
}
