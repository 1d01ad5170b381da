//! The built `gatehouse` binary as operators run it.

use std::process::Command;

use crate::helpers::spawn_process;

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
