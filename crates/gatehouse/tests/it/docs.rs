//! `/docs` in a real browser with nothing but Gatehouse reachable: Debian's
//! Chromium (installed by `.ci/run`), headless, with every other host made
//! unresolvable. The page must render the operations from Gatehouse alone; a
//! screenshot is left at `target/tmp/docs.png` for people to look at.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::{spawn_app, test_config};

/// Debian's Chromium, or `GATEHOUSE_TEST_CHROMIUM`; `None` skips the test
/// unless `GATEHOUSE_TEST_REQUIRE_BROWSER` is set (as `.ci/run` does).
fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("GATEHOUSE_TEST_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    if path.exists() {
        return Some(path);
    }
    assert!(
        std::env::var_os("GATEHOUSE_TEST_REQUIRE_BROWSER").is_none(),
        "{} is missing: install Debian's chromium",
        path.display()
    );
    eprintln!("skipped: no Chromium at {}", path.display());
    None
}

/// Runs headless Chromium on `url` with only loopback reachable.
fn headless(chromium: &Path, profile: &Path, url: &str, extra: &[String]) -> std::process::Output {
    Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            // The network is off but for Gatehouse: no other host resolves.
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
            "--virtual-time-budget=30000",
            "--window-size=1280,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(url)
        .output()
        .expect("start chromium")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_docs_render_their_operations_offline_in_a_real_browser() {
    let Some(chromium) = chromium() else {
        return;
    };
    let app = spawn_app(test_config(None)).await;
    let url = app.url("/docs");
    let profile = tempfile::tempdir().unwrap();
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("docs.png");
    let (dom, shot) = {
        let (chromium, profile, url, screenshot) = (
            chromium.clone(),
            profile.path().to_path_buf(),
            url.clone(),
            screenshot.clone(),
        );
        tokio::task::spawn_blocking(move || {
            let dom = headless(&chromium, &profile, &url, &["--dump-dom".into()]);
            let shot = headless(
                &chromium,
                &profile,
                &url,
                &[format!("--screenshot={}", screenshot.display())],
            );
            (dom, shot)
        })
        .await
        .unwrap()
    };
    let html = String::from_utf8_lossy(&dom.stdout);
    // The document's description, tags and first operations, as Scalar
    // renders them from /openapi.json (later sections render on scrolling).
    for text in [
        "Identity, tenancy, access and spend",
        "Liveness: the process is up.",
        "/ready",
        "organizations",
        "gateway",
    ] {
        assert!(
            html.contains(text),
            "the rendered page shows {text:?}; chromium said:\n{}\n{}",
            String::from_utf8_lossy(&dom.stderr),
            &html[..html.len().min(2000)]
        );
    }
    assert!(
        shot.status.success(),
        "{}",
        String::from_utf8_lossy(&shot.stderr)
    );
    let png = std::fs::read(&screenshot).expect("a screenshot");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );
    app.stop().await;
}
