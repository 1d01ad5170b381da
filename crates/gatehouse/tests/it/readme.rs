//! The README's quick start, run as written: every shell block of its "Quick
//! start" section after the first (which starts the server and the tests) is
//! given to bash against a real `gatehouse serve` on a fresh data directory
//! and a stand-in model server, with the official `openai` SDK on the PATH.

use std::path::Path;
use std::process::Command;

use axum::Json;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::helpers::sdk_python;
use crate::helpers::spawn_process;

/// The shell blocks of the README's "Quick start" section, but the first.
fn quick_start_blocks() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let section = readme
        .split("\n## Quick start\n")
        .nth(1)
        .expect("a Quick start section")
        .split("\n## ")
        .next()
        .unwrap();
    let blocks: Vec<String> = section
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap().to_string())
        .collect();
    assert!(blocks.len() >= 2, "the quick start has commands to run");
    blocks[1..].to_vec()
}

/// An OpenAI-compatible model server that answers chat completions for one
/// API key only.
async fn stand_in_model_server() -> String {
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|headers: HeaderMap, Json(body): Json<Value>| async move {
            if headers.get("authorization").and_then(|v| v.to_str().ok())
                != Some("Bearer sk-readme-upstream")
            {
                return (StatusCode::UNAUTHORIZED, Json(json!({"error": "wrong key"})));
            }
            (
                StatusCode::OK,
                Json(json!({
                    "id": "chatcmpl-readme",
                    "object": "chat.completion",
                    "created": 1,
                    "model": body["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                        "message": {"role": "assistant", "content": "Hello from the stand-in model"}}],
                    "usage": {"prompt_tokens": 5, "completion_tokens": 6, "total_tokens": 11}
                })),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quick_start_reaches_a_model_as_written() {
    let Some(python) = sdk_python() else {
        return;
    };
    let script = quick_start_blocks().join("\n");
    let upstream = stand_in_model_server().await;
    let dir = tempfile::tempdir().unwrap();
    let mut server = spawn_process(
        dir.path(),
        &[(
            "GATEHOUSE__STORAGE__PATH",
            dir.path().join("data").display().to_string(),
        )],
        &[],
    );
    // The generated password, from the log line the README points to.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let password = server
        .startup_lines()
        .cloned()
        .chain(server.log_lines())
        .find(|l| l.contains("created the first admin with a generated password"))
        .and_then(|l| l.split("password=").nth(1).map(str::to_string))
        .and_then(|rest| rest.split_whitespace().next().map(str::to_string))
        .expect("the generated password is logged");
    let venv = Path::new(&python).parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        venv.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let base = server.url("");
    let output = tokio::task::spawn_blocking(move || {
        Command::new("bash")
            .args(["-euo", "pipefail", "-c", &script])
            .env("PATH", path)
            .env("GATEHOUSE", base)
            .env("ADMIN_PASSWORD", password)
            .env("UPSTREAM", upstream)
            .env("UPSTREAM_KEY", "sk-readme-upstream")
            .env_remove("OPENAI_API_KEY")
            .env_remove("OPENAI_BASE_URL")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    server.terminate();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the quick start failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Hello from the stand-in model"), "{stdout}");
    // Step 6: the call was counted against the model.
    assert!(stdout.contains("\"group\": \"llama-3-8b\""), "{stdout}");
    assert!(stdout.contains("\"requests\": 1"), "{stdout}");
}
