//! The `catalog` setting (SPEC §5): endpoints, models and aliases declared in
//! `config.yaml`, applied at each start of the real binary: created once,
//! left alone when unchanged, corrected when the file changes.

use std::path::Path;

use serde_json::Value;

use crate::helpers::{PASSWORD, json_of, serve, spawn_process};
use crate::matrix::models_upstream;

fn config(upstream: &str, price: &str) -> String {
    format!(
        r#"
catalog:
  endpoints:
    - name: vllm
      base_url: {upstream}/v1
      api_key_env: CATALOG_TEST_VLLM_KEY
      models:
        - name: llama-3-8b
          upstream_name: meta-llama/Meta-Llama-3-8B-Instruct
          context_length: 8192
          input_cost_per_token: {price}
          output_cost_per_token: 0.0000006
        - name: mistral-7b
          restricted: true
  aliases:
    - alias: default
      model: llama-3-8b
"#
    )
}

fn envs(dir: &Path) -> Vec<(&'static str, String)> {
    vec![
        (
            "GATEHOUSE__STORAGE__PATH",
            dir.join("data").display().to_string(),
        ),
        (
            "GATEHOUSE__BOOTSTRAP__ADMIN_EMAIL",
            "admin@example.com".into(),
        ),
        ("GATEHOUSE__BOOTSTRAP__ADMIN_PASSWORD", PASSWORD.into()),
        ("CATALOG_TEST_VLLM_KEY", "sk-declared".into()),
    ]
}

/// The item of a list answer called `name`.
fn named<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

/// Signs the admin in and reads `path`.
async fn read(base: &str, path: &str) -> Value {
    let client = reqwest::Client::new();
    let login = json_of(
        client
            .post(format!("{base}/api/v1/auth/login"))
            .json(&serde_json::json!({"login": "admin@example.com", "password": PASSWORD})),
    )
    .await;
    let token = login["token"].as_str().unwrap().to_string();
    json_of(client.get(format!("{base}{path}")).bearer_auth(token)).await
}

#[tokio::test(flavor = "multi_thread")]
async fn the_declared_catalogue_is_applied_at_each_start_idempotently() {
    let upstream = models_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        config(&upstream, "0.0000002"),
    )
    .unwrap();
    let envs = envs(dir.path());

    let mut first = spawn_process(dir.path(), &envs, &[]);
    let base = format!("http://{}", first.http);
    let endpoints = read(&base, "/api/v1/endpoints").await;
    assert_eq!(
        endpoints["items"].as_array().unwrap().len(),
        1,
        "{endpoints}"
    );
    let endpoint = &endpoints["items"][0];
    assert_eq!(endpoint["name"], "vllm");
    assert_eq!(
        endpoint["base_url"],
        upstream.as_str(),
        "the /v1 is dropped"
    );
    let credentials = read(&base, "/api/v1/credentials").await;
    let credential = named(&credentials, "catalog: vllm");
    assert_eq!(endpoint["credential_id"], credential["id"]);
    assert!(
        !credentials.to_string().contains("sk-declared"),
        "never shown"
    );
    let models = read(&base, "/api/v1/models").await;
    let llama = named(&models, "llama-3-8b");
    assert_eq!(
        llama["upstream_name"],
        "meta-llama/Meta-Llama-3-8B-Instruct"
    );
    assert_eq!(llama["input_cost_per_token"], 0.0000002);
    assert_eq!(llama["enabled"], true);
    let mistral = named(&models, "mistral-7b");
    assert_eq!(mistral["restricted"], true);
    let aliases = read(&base, "/api/v1/model-aliases").await;
    assert_eq!(aliases["items"][0]["alias"], "default");
    assert_eq!(aliases["items"][0]["model_id"], llama["id"]);
    let events = read(&base, "/api/v1/audit-events?limit=500").await;
    let writes = events["items"].as_array().unwrap().len();
    assert!(first.terminate().success());

    // The same file again: nothing is written.
    let mut second = spawn_process(dir.path(), &envs, &[]);
    let base = format!("http://{}", second.http);
    let applied = second
        .startup_lines()
        .find(|l| l.contains("catalog setting applied"))
        .cloned()
        .expect("the start says what it applied");
    assert!(
        applied.contains("created=[]") && applied.contains("updated=[]"),
        "{applied}"
    );
    assert!(applied.contains("unchanged=5"), "{applied}");
    let events = read(&base, "/api/v1/audit-events?limit=500").await;
    // Only the two sign-ins of this test's reads since.
    assert_eq!(events["items"].as_array().unwrap().len(), writes + 1);
    assert!(second.terminate().success());

    // A new price in the file: the model is corrected, nothing else.
    std::fs::write(
        dir.path().join("config.yaml"),
        config(&upstream, "0.0000003"),
    )
    .unwrap();
    let mut third = spawn_process(dir.path(), &envs, &[]);
    let base = format!("http://{}", third.http);
    let applied = third
        .startup_lines()
        .find(|l| l.contains("catalog setting applied"))
        .cloned()
        .unwrap();
    assert!(
        applied.contains(r#"updated=["model llama-3-8b"]"#),
        "{applied}"
    );
    let models = read(&base, "/api/v1/models").await;
    let llama = named(&models, "llama-3-8b");
    assert_eq!(llama["input_cost_per_token"], 0.0000003);
    assert!(third.terminate().success());
}

#[test]
fn a_key_variable_that_is_not_set_stops_the_start_and_says_which() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("config.yaml"),
        config("http://127.0.0.1:9", "0.0000002"),
    )
    .unwrap();
    let output = serve(dir.path(), &[])
        .arg("--ephemeral")
        .env_remove("CATALOG_TEST_VLLM_KEY")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "catalog.endpoints[0].api_key_env names CATALOG_TEST_VLLM_KEY, which is not set"
        ),
        "{stderr}"
    );
}
