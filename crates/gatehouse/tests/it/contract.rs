//! The OpenAPI document is a contract clients are generated from: schemathesis
//! (pinned in `tests/sdk/requirements.txt`) sends every operation schema-valid
//! and schema-violating requests as the first admin, against the real binary,
//! and checks each answer against the document: no server error, only
//! documented statuses, bodies in their schemas, valid requests accepted and
//! invalid ones refused. Allowances for rules no schema can express are in
//! `tests/contract/schemathesis.toml`, each with its reason.
//!
//! Path parameters name real things — an organization (and a second one for
//! deleting and suspending), a project, a chat, a team, a vault, a service
//! client, a user — made over REST before the run, so that the operations
//! under them answer more than 404; `tests/it/paths.rs` sends the hostile
//! path segments.

use std::path::Path;
use std::process::Command;

use crate::helpers::sdk_python;
use serde_json::json;

use crate::helpers::{PASSWORD, ServerProcess, json_of, spawn_process};

/// Seconds schemathesis may spend on the management API; the gateway gets 30
/// more (within the three minutes the step may take).
/// `GATEHOUSE_CONTRACT_SECS` and `GATEHOUSE_CONTRACT_SEED` change the time and
/// the seed (1), for longer runs by hand.
const BUDGET_SECS: &str = "120";

fn setting(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

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

/// Things for the operations' path parameters to name, made as the admin:
/// the environment variables `schemathesis.toml` reads, with their IDs. Each
/// thing twice, the `DOOMED` one for the operations that delete it (or
/// suspend it), so that the others keep theirs.
async fn fixtures(base: &str, token: &str) -> Vec<(String, String)> {
    let http = reqwest::Client::new();
    let made = |path: String, body: serde_json::Value| {
        let request = http
            .post(format!("{base}{path}"))
            .bearer_auth(token)
            .json(&body);
        async move {
            let made = json_of(request).await;
            // A new user comes as `{"user": {…}}`, everything else as itself.
            made.get("user").unwrap_or(&made)["id"]
                .as_str()
                .unwrap_or_else(|| panic!("POST {path}: {made}"))
                .to_string()
        }
    };
    let mut named = Vec::new();
    for (var, name) in [("", "Contract"), ("DOOMED_", "Doomed")] {
        let name = serde_json::json!({"name": name});
        let org = made("/api/v1/organizations".into(), name.clone()).await;
        named.push((format!("GATEHOUSE_CONTRACT_{var}ORG"), org));
    }
    let org = named[0].1.clone();
    let in_org = |what: &str| format!("/api/v1/organizations/{org}/{what}");
    let project = made(in_org("projects"), json!({"name": "Contract"})).await;
    for (var, name) in [("", "Contract"), ("DOOMED_", "Doomed")] {
        let body = json!({"name": name});
        for (thing, path) in [
            ("PROJECT", in_org("projects")),
            ("CHAT", in_org(&format!("projects/{project}/chats"))),
            ("TEAM", in_org("teams")),
            ("VAULT", in_org("vaults")),
            ("CLIENT", in_org("clients")),
        ] {
            let body = if thing == "CHAT" {
                json!({"name": name, "model": "gpt"})
            } else {
                body.clone()
            };
            let id = if thing == "PROJECT" && var.is_empty() {
                project.clone()
            } else {
                made(path, body).await
            };
            named.push((format!("GATEHOUSE_CONTRACT_{var}{thing}"), id));
        }
        let email = format!("{}@example.com", name.to_lowercase());
        let user = made(
            "/api/v1/users".into(),
            json!({"email": email, "password": PASSWORD}),
        )
        .await;
        named.push((format!("GATEHOUSE_CONTRACT_{var}USER"), user));
    }
    // The catalogue, keys and invitations: the doomed ones name the kept
    // ones where they need a reference, so that deleting them is allowed.
    let secret = json!({"api_key": "sk-contract"});
    let mut kept: Option<(String, String, String)> = None;
    for (var, name) in [("", "contract"), ("DOOMED_", "doomed")] {
        let credential = made(
            "/api/v1/credentials".into(),
            json!({"name": name, "kind": "openai", "secret": secret}),
        )
        .await;
        let credential_used = kept.as_ref().map_or(&credential, |k| &k.0).clone();
        let endpoint = made(
            "/api/v1/endpoints".into(),
            json!({"name": name, "base_url": "http://127.0.0.1:9/v1", "credential_id": credential_used}),
        )
        .await;
        let endpoint_used = kept.as_ref().map_or(&endpoint, |k| &k.1).clone();
        let model = made(
            "/api/v1/models".into(),
            json!({"name": format!("{name}-model"), "endpoint_id": endpoint_used}),
        )
        .await;
        let model_used = kept.as_ref().map_or(&model, |k| &k.2).clone();
        let alias = made(
            "/api/v1/model-aliases".into(),
            json!({"alias": format!("{name}-alias"), "model_id": model_used}),
        )
        .await;
        let subscription = made("/api/v1/subscriptions".into(), json!({"model_id": model})).await;
        let key = made("/api/v1/api-keys".into(), json!({"label": name})).await;
        let org_credential = made(
            in_org("credentials"),
            json!({"name": name, "kind": "openai", "secret": secret}),
        )
        .await;
        let invitation = made(
            in_org("invitations"),
            json!({"email": format!("{name}-invitee@example.com")}),
        )
        .await;
        for (thing, id) in [
            ("CREDENTIAL", &credential),
            ("ENDPOINT", &endpoint),
            ("MODEL", &model),
            ("ALIAS", &alias),
            ("SUBSCRIPTION", &subscription),
            ("KEY", &key),
            ("ORG_CREDENTIAL", &org_credential),
            ("INVITATION", &invitation),
        ] {
            named.push((format!("GATEHOUSE_CONTRACT_{var}{thing}"), id.clone()));
        }
        kept.get_or_insert((credential, endpoint, model));
    }
    named
}

#[tokio::test(flavor = "multi_thread")]
async fn every_operation_keeps_the_openapi_contract() {
    let Some(python) = sdk_python() else {
        return;
    };
    let st = Path::new(&python).with_file_name("st");
    let dir = tempfile::tempdir().unwrap();
    let (mut server, base, token) = admin_server(dir.path()).await;
    let named = fixtures(&base, &token).await;
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
        .args([
            "--max-time",
            &setting("GATEHOUSE_CONTRACT_SECS", BUDGET_SECS),
        ])
        // One worker: hypothesis describes its strategies with `ast.parse`,
        // which CPython 3.11 does not make safe across threads.
        .args(["--workers", "1"])
        .args(["--seed", &setting("GATEHOUSE_CONTRACT_SEED", "1")])
        .envs(named.iter().map(|(k, v)| (k, v)))
        .env("NO_COLOR", "1")
        .current_dir(dir.path());
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("run {}: {e}", st.display()));
    let report = String::from_utf8_lossy(&output.stdout).to_string();
    println!("{report}");
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
        // The configuration reads them (the gateway's operations do not).
        .envs(named.iter().map(|(k, v)| (k, v)))
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
