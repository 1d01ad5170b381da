//! Operational endpoints of the real server, over HTTP.

use serde_json::json;

use crate::helpers::{spawn_app, test_config};

#[tokio::test]
async fn health_ready_metrics_and_docs_answer() {
    let app = spawn_app(test_config(None)).await;

    let (status, body) = app.get_json("/health").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = app.get_json("/ready").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
    // A store only this process uses: worker 0, and this instance leads.
    assert_eq!(body["node"]["worker_id"], 0);
    assert_eq!(body["node"]["leader"], true);

    let (status, info) = app.get_json("/api/v1/system").await;
    assert_eq!(status, 200);
    assert_eq!(info["version"], env!("CARGO_PKG_VERSION"));
    assert!(
        info["installation_id"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .is_ok()
    );

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap();
    assert_eq!(metrics.status(), 200);
    assert!(
        metrics.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"),
    );
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(
            r#"gatehouse_http_requests_total{method="GET",route="/health",status="200"} 1"#
        ),
        "{text}"
    );
    assert!(
        text.contains("gatehouse_http_request_duration_seconds_bucket"),
        "{text}"
    );
    assert!(text.contains("\ngatehouse_usage_logs_pending "), "{text}");
    assert!(
        text.contains("\ngatehouse_usage_logs_dropped_total 0\n"),
        "{text}"
    );

    // The documentation works offline: the page and everything it names
    // come from Gatehouse, and its policy allows nothing from elsewhere.
    for docs in ["/docs", "/admin/docs"] {
        let page = app.client.get(app.url(docs)).send().await.unwrap();
        assert_eq!(page.status(), 200);
        let policy = page.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_string();
        assert!(policy.starts_with("default-src 'none'"), "{policy}");
        assert!(!policy.contains("http"), "{policy}");
        let html = page.text().await.unwrap();
        assert!(
            !html.contains("http://") && !html.contains("https://"),
            "{html}"
        );
        assert!(html.contains(r#"data-url="/openapi.json""#), "{html}");
        let assets: Vec<&str> = html
            .split(r#"src=""#)
            .skip(1)
            .filter_map(|rest| rest.split('"').next())
            .collect();
        assert_eq!(assets, [gatehouse_api::rest::docs::SCRIPT_PATH]);
        for asset in assets {
            let response = app.client.get(app.url(asset)).send().await.unwrap();
            assert_eq!(response.status(), 200, "{asset}");
            assert!(
                response.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/javascript")
            );
            assert!(response.bytes().await.unwrap().len() > 1_000_000, "{asset}");
        }
    }
    let (status, spec) = app.get_json("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(spec["paths"]["/ready"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn request_id_is_echoed_and_in_error_bodies() {
    let app = spawn_app(test_config(None)).await;
    let response = app
        .client
        .get(app.url("/api/v1/nothing-here"))
        .header("x-request-id", "trace-me-123")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.headers()["x-request-id"], "trace-me-123");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"error": {"code": "route_not_found", "message": "no route matches this path", "request_id": "trace-me-123"}})
    );
    app.stop().await;
}
