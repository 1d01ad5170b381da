//! The deployment files are checked as their tools read them: the Kubernetes
//! manifests rendered by `kubectl kustomize` and validated against the
//! Kubernetes schemas (`kubernetes-validate --strict`, which carries them),
//! and the compose files against the Compose specification (`check-jsonschema`
//! with its vendored compose schema). Both validators are pinned in
//! `tests/sdk/requirements.txt`; no Docker engine or cluster is needed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::helpers::sdk_python;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `kubectl`, or `None` (skipping) unless `GATEHOUSE_TEST_REQUIRE_PYTHON` says
/// the whole toolchain must be there, as in `.ci/run`.
fn kubectl() -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kubectl"))
            .find(|p| p.exists())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("GATEHOUSE_TEST_REQUIRE_PYTHON").is_none(),
            "kubectl is missing: install Debian's kubernetes-client"
        );
        eprintln!("skipped: no kubectl");
    }
    found
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("the tool starts");
    assert!(
        output.status.success(),
        "{command:?}:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

#[test]
fn kubernetes_manifests_render_and_validate() {
    let (Some(python), Some(kubectl)) = (sdk_python(), kubectl()) else {
        return;
    };
    let validate = Path::new(&python).with_file_name("kubernetes-validate");
    let out = tempfile::tempdir().unwrap();
    for (name, dir) in [
        ("base", "deploy/kubernetes/base"),
        ("postgres", "deploy/kubernetes/overlays/postgres"),
    ] {
        let rendered = run(Command::new(&kubectl)
            .arg("kustomize")
            .arg(repo().join(dir)));
        let file = out.path().join(format!("{name}.yaml"));
        std::fs::write(&file, &rendered.stdout).unwrap();
        run(Command::new(&validate)
            .args(["--strict", "-k", "1.30.0"])
            .arg(&file));
        let text = String::from_utf8(rendered.stdout).unwrap();
        for probe in ["path: /health", "path: /ready"] {
            assert!(text.contains(probe), "{name}: {probe}");
        }
        assert!(
            text.contains("name: gatehouse-secrets"),
            "{name}: secrets by reference"
        );
        match name {
            "base" => {
                assert!(
                    text.contains("replicas: 1") && text.contains("kind: PersistentVolumeClaim")
                );
            }
            _ => {
                assert!(text.contains("replicas: 3"), "several instances");
                assert!(text.contains("kind: PodDisruptionBudget"));
                assert!(!text.contains("kind: PersistentVolumeClaim"), "no volume");
                assert!(text.contains("GATEHOUSE__STORAGE__ENGINE: postgres"));
                assert!(text.contains("key: postgres-url"));
            }
        }
    }
    // The optional ServiceMonitor is a custom resource (no schema in
    // Kubernetes itself): it parses and scrapes /metrics on the http port.
    let monitor: serde_json::Value = yaml_serde::from_str(
        &std::fs::read_to_string(repo().join("deploy/kubernetes/monitoring/servicemonitor.yaml"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(monitor["kind"], "ServiceMonitor");
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(monitor["spec"]["endpoints"][0]["port"], "http");
}

#[test]
fn compose_files_follow_the_compose_specification() {
    let Some(python) = sdk_python() else {
        return;
    };
    let check = Path::new(&python).with_file_name("check-jsonschema");
    let files = [
        "docker/compose.yaml",
        "docker/compose.postgres.yaml",
        "docker/compose.fdb.yaml",
    ];
    run(Command::new(&check)
        .args(["--builtin-schema", "vendor.compose-spec"])
        .args(files.map(|f| repo().join(f))));
    // gRPC is for internal services: published on loopback in development,
    // nowhere with PostgreSQL.
    let dev = std::fs::read_to_string(repo().join("docker/compose.yaml")).unwrap();
    assert!(dev.contains("\"127.0.0.1:3001:3001\""));
    let prod = std::fs::read_to_string(repo().join("docker/compose.postgres.yaml")).unwrap();
    assert!(!prod.contains(":3001\""), "gRPC is not published");
    // The image build context holds sources only.
    let ignore = std::fs::read_to_string(repo().join(".dockerignore")).unwrap();
    assert!(ignore.lines().any(|l| l == "target/"));
}
