//! What every route gets from `rest::with_middleware`: the JSON error shape,
//! request IDs, body limits, timeouts, panic recovery and per-route metrics.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use gatehouse_api::extract::ApiJson;
use gatehouse_api::rest::{Metrics, RestOptions, with_middleware};
use http_body_util::BodyExt;
use serde::Deserialize;
use serde_json::{Value, json};
use tower::ServiceExt;

#[derive(Deserialize)]
struct Greeting {
    name: String,
}

async fn greet(ApiJson(g): ApiJson<Greeting>) -> String {
    format!("hello {}", g.name)
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(5)).await;
    "late"
}

async fn boom() -> &'static str {
    panic!("secret detail at /etc/shadow")
}

fn app() -> (Router, Arc<Metrics>) {
    let metrics = Metrics::new();
    let m = metrics.clone();
    let routes = Router::new()
        .route("/greet", post(greet))
        .route("/slow", get(slow))
        .route("/boom", get(boom))
        .route("/items/{id}", get(|| async { "item" }))
        .route("/metrics", get(move || async move { m.render() }));
    let limits = RestOptions {
        body_limit_bytes: 64,
        max_answer_bytes: 1 << 20,
        request_timeout: Duration::from_millis(100),
        secure_cookies: false,
    };
    (with_middleware(routes, limits, metrics.clone()), metrics)
}

async fn send(router: &Router, request: Request<Body>) -> (StatusCode, String, Value) {
    let response: Response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let id = response
        .headers()
        .get("x-request-id")
        .expect("every response has a request ID")
        .to_str()
        .unwrap()
        .to_string();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or(Value::String(String::from_utf8_lossy(&bytes).into_owned()));
    (status, id, body)
}

fn error(code: &str, message: &str, request_id: &str) -> Value {
    json!({"error": {"code": code, "message": message, "request_id": request_id}})
}

#[tokio::test]
async fn unknown_route_and_method_use_the_error_shape() {
    let (router, _) = app();
    let req = Request::get("/nope")
        .header("x-request-id", "req-1")
        .body(Body::empty())
        .unwrap();
    let (status, id, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(id, "req-1");
    assert_eq!(
        body,
        error("route_not_found", "no route matches this path", "req-1")
    );

    let req = Request::delete("/greet")
        .header("x-request-id", "req-2")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        body,
        error(
            "method_not_allowed",
            "this route does not support this method",
            "req-2"
        )
    );
}

#[tokio::test]
async fn request_ids_are_made_when_missing_or_unsafe() {
    let (router, _) = app();
    let (_, made, _) = send(
        &router,
        Request::get("/items/1").body(Body::empty()).unwrap(),
    )
    .await;
    assert_eq!(made.len(), 36, "a UUID: {made}");
    for unsafe_id in ["has space", &"x".repeat(129)] {
        let req = Request::get("/items/1")
            .header("x-request-id", unsafe_id)
            .body(Body::empty())
            .unwrap();
        let (_, id, _) = send(&router, req).await;
        assert_ne!(id, unsafe_id);
        assert_eq!(id.len(), 36);
    }
}

fn json_post(body: &str) -> Request<Body> {
    Request::post("/greet")
        .header(header::CONTENT_TYPE, "application/json")
        .header("x-request-id", "j")
        .body(Body::from(body.to_string()))
        .unwrap()
}

#[tokio::test]
async fn bad_json_bodies_get_stable_codes() {
    let (router, _) = app();
    let (status, _, body) = send(&router, json_post(r#"{"name":"ada"}"#)).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, Value::String("hello ada".into()))
    );

    let (status, _, body) = send(&router, json_post("{not json")).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_body");

    let (status, _, body) = send(&router, json_post(r#"{"name": 5}"#)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"]["code"], "malformed_body");

    let no_type = Request::post("/greet")
        .header("x-request-id", "j")
        .body(Body::from("{}"))
        .unwrap();
    let (status, _, body) = send(&router, no_type).await;
    assert_eq!(status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    assert_eq!(
        body,
        error(
            "unsupported_media_type",
            "expected a request body with `Content-Type: application/json`",
            "j"
        )
    );

    let big = format!(r#"{{"name":"{}"}}"#, "a".repeat(100));
    let (status, _, body) = send(&router, json_post(&big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        body,
        error("payload_too_large", "the request body is too large", "j")
    );
}

#[tokio::test]
async fn slow_requests_time_out_with_the_error_shape() {
    let (router, _) = app();
    let req = Request::get("/slow")
        .header("x-request-id", "t")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(
        body,
        error("timeout", "the request took longer than 100 ms", "t")
    );
}

#[tokio::test]
async fn panics_become_internal_errors_without_details() {
    let (router, _) = app();
    let req = Request::get("/boom")
        .header("x-request-id", "p")
        .body(Body::empty())
        .unwrap();
    let (status, _, body) = send(&router, req).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(body, error("internal", "an internal error occurred", "p"));
}

#[tokio::test]
async fn metrics_count_by_route_template() {
    let (router, metrics) = app();
    for id in ["1", "2", "3"] {
        send(
            &router,
            Request::get(format!("/items/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    }
    send(&router, Request::get("/nope").body(Body::empty()).unwrap()).await;
    let text = metrics.render();
    assert!(
        text.contains(
            r#"gatehouse_http_requests_total{method="GET",route="/items/{id}",status="200"} 3"#
        ),
        "{text}"
    );
    assert!(
        text.contains(r#"route="unmatched",status="404"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(
            r#"gatehouse_http_request_duration_seconds_count{method="GET",route="/items/{id}"} 3"#
        ),
        "{text}"
    );
}
