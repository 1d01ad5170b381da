//! Checks of the code base itself: module headers and the direction of
//! dependencies described in docs/ARCHITECTURE.md.

use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if !dir.exists() {
        return;
    }
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

#[test]
fn every_module_says_what_it_is_for() {
    let mut files = Vec::new();
    for krate in ["gatehouse", "api", "core", "storage", "grpc"] {
        let root = workspace().join("crates").join(krate);
        rust_files(&root.join("src"), &mut files);
        rust_files(&root.join("tests"), &mut files);
        if root.join("build.rs").exists() {
            files.push(root.join("build.rs"));
        }
    }
    assert!(files.len() > 20);
    let missing: Vec<_> = files
        .iter()
        .filter(|f| !std::fs::read_to_string(f).unwrap().starts_with("//!"))
        .collect();
    assert!(
        missing.is_empty(),
        "files without a `//!` header: {missing:?}"
    );
}

/// The `[dependencies]` section of a crate's manifest.
fn dependencies(krate: &str) -> String {
    let manifest =
        std::fs::read_to_string(workspace().join("crates").join(krate).join("Cargo.toml")).unwrap();
    let start = manifest.find("[dependencies]").expect("has dependencies");
    let rest = &manifest[start + "[dependencies]".len()..];
    rest[..rest.find("\n[").unwrap_or(rest.len())].to_string()
}

fn names(section: &str) -> Vec<String> {
    section
        .lines()
        .filter_map(|l| l.split(['=', '.']).next())
        .map(|n| n.trim().to_string())
        .filter(|n| !n.is_empty() && !n.starts_with('#'))
        .collect()
}

#[test]
fn dependency_arrows_point_one_way() {
    let transport = [
        "axum",
        "tonic",
        "prost",
        "hyper",
        "tower",
        "tower-http",
        "http",
    ];
    let engines = ["redb", "tokio-postgres", "sqlx", "foundationdb", "imbl"];

    let core = names(&dependencies("core"));
    for forbidden in transport
        .iter()
        .chain(&engines)
        .chain(&["gatehouse-api", "tokio"])
    {
        assert!(
            !core.contains(&forbidden.to_string()),
            "core depends on {forbidden}"
        );
    }
    let api = names(&dependencies("api"));
    for forbidden in engines.iter().chain(&["gatehouse-storage"]) {
        assert!(
            !api.contains(&forbidden.to_string()),
            "api depends on {forbidden}"
        );
    }
    let storage = names(&dependencies("storage"));
    for forbidden in transport
        .iter()
        .chain(&["gatehouse-core", "gatehouse-api", "serde"])
    {
        assert!(
            !storage.contains(&forbidden.to_string()),
            "storage depends on {forbidden}"
        );
    }
}
