//! Hostile input every route must refuse in our error shape. Path segments:
//! every REST route with path parameters, called by a platform admin with
//! each parameter replaced by a segment no route takes (bytes that are not
//! UTF-8, a NUL, a word that is no ID), answers a 4xx in our JSON error
//! shape; the routes come from the router itself, so a route added with a
//! plain extractor fails here. The console's pages answer the same
//! addresses, and query strings that do not read, with pages. Bodies: a
//! JSON body that is not an object is `malformed_body` on every route that
//! takes one.

use reqwest::Method;

use serde_json::json;

use crate::helpers::{admin_config, spawn_app};
use crate::matrix::{ACTORS, World, rows};

#[tokio::test]
async fn every_path_parameter_refuses_bad_segments_in_the_error_shape() {
    let app = spawn_app(admin_config()).await;
    let admin = app.bearer("admin@example.com").await;
    let mut wrong = Vec::new();
    let mut tried = 0;
    for (method, template) in gatehouse_api::rest::routes() {
        if !template.contains('{') {
            continue;
        }
        for bad in ["%FF%FE", "%00", "not-an-id"] {
            let path = fill(&template, bad);
            let mut request = app
                .client
                .request(method.clone(), app.url(&path))
                .header("authorization", &admin);
            if method != Method::GET && method != Method::DELETE {
                request = request.json(&serde_json::json!({}));
            }
            let response = request.send().await.unwrap();
            tried += 1;
            let status = response.status().as_u16();
            let json = response
                .headers()
                .get("content-type")
                .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
            let body: serde_json::Value = response.json().await.unwrap_or_default();
            if !(400..500).contains(&status) || !json || !body["error"]["code"].is_string() {
                wrong.push(format!("{method} {path}: {status} {body}"));
            }
        }
    }
    assert!(tried > 100, "only {tried} requests");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));

    // The console's pages answer such an address as a page that does not
    // exist (a 404 in the signed-in frame), and a query string that does not
    // read as a 400 page: never a line of plain text.
    let browser = crate::console::plain_browser();
    crate::console::session(&app, &browser, "admin@example.com").await;
    for (page, status, title) in [
        ("/organizations/%FF", 404, "Not found"),
        ("/admin/request-logs/%FF", 404, "Not found"),
        ("/playground/%FF/1/2", 404, "Not found"),
        ("/organizations/not-an-id", 404, "Not found"),
        ("/admin/users?q=a&q=b", 400, "Not understood"),
        ("/account?enrol=1&enrol=2", 400, "Not understood"),
        ("/sign-in?next=a&next=b", 400, "Not understood"),
    ] {
        let response = browser.get(app.url(page)).send().await.unwrap();
        assert_eq!(response.status(), status, "{page}");
        let html = response.text().await.unwrap();
        let framed = status == 400 || html.contains("Sign out");
        assert!(html.contains(title) && framed, "{page}: {html}");
    }
    let asset = browser.get(app.url("/static/%FF")).send().await.unwrap();
    assert_eq!(asset.status(), 404);
    app.stop().await;
}

/// Every route that takes a JSON body refuses one that is not an object
/// (serde would read `[null]` into a struct as all defaults) with
/// `malformed_body` and changes nothing: each row of the authorization
/// matrix that has a body, sent as the first caller the row lets in.
#[tokio::test]
async fn bodies_that_are_not_objects_are_refused() {
    let world = World::new().await;
    let mut wrong = Vec::new();
    let mut routes = 0;
    for row in rows() {
        if row.body.is_none() || row.path.starts_with("/v1/") {
            continue;
        }
        let Some(actor) = (0..ACTORS.len()).find(|&i| (200..300).contains(&row.expected(i))) else {
            continue;
        };
        routes += 1;
        let fixture = world.fixture_for(row.path).await;
        for body in [
            json!([null]),
            json!([]),
            json!(["x"]),
            json!(null),
            json!("x"),
        ] {
            let before = world.newest_audit_event().await;
            let (status, answer) = world
                .send_body(&row, actor, &fixture, Some(body.clone()))
                .await;
            let refused = status == 400 && answer["error"]["code"] == "malformed_body";
            if !refused || world.newest_audit_event().await != before {
                wrong.push(format!(
                    "{} {} with {body}: {status} {answer}",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(routes >= 40, "only {routes} routes with a body");
    // The service clients' token exchange reads its body itself (JSON or a form).
    let (status, answer) = world
        .app
        .post("/api/v1/token", None, json!(["client_credentials"]))
        .await;
    if status != 400 || answer["error"]["code"] != "malformed_body" {
        wrong.push(format!(
            "POST /api/v1/token with an array: {status} {answer}"
        ));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    world.app.stop().await;
}

/// `template` with every `{parameter}` replaced by `segment`.
fn fill(template: &str, segment: &str) -> String {
    let mut path = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        path.push_str(&rest[..open]);
        let close = rest[open..].find('}').map_or(rest.len(), |c| open + c + 1);
        path.push_str(segment);
        rest = &rest[close..];
    }
    path.push_str(rest);
    path
}

/// A record larger than the store takes (100 000 bytes a value) is the
/// caller's input to shorten: `400 invalid_input`, and nothing changes.
#[tokio::test]
async fn records_too_large_to_store_are_refused_and_change_nothing() {
    let app = spawn_app(admin_config()).await;
    let admin = app.bearer("admin@example.com").await;
    let auth = Some(("authorization", admin.as_str()));
    let (status, org) = app
        .post("/api/v1/organizations", auth, json!({"name": "Acme"}))
        .await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap();
    // A thousand model names of 200 characters each: within the schema,
    // beyond one record.
    let models: Vec<String> = (0..1000)
        .map(|i| format!("{i:04}{}", "m".repeat(196)))
        .collect();
    let big_secret = json!({"api_key": "k".repeat(150_000)});
    for (path, body, list) in [
        (
            format!("/api/v1/organizations/{org}/teams"),
            json!({"name": "Platform", "allowed_models": models}),
            format!("/api/v1/organizations/{org}/teams"),
        ),
        (
            "/api/v1/api-keys".to_string(),
            json!({"label": "wide", "allowed_models": models}),
            "/api/v1/api-keys".to_string(),
        ),
        (
            "/api/v1/credentials".to_string(),
            json!({"name": "huge", "kind": "openai", "secret": big_secret}),
            "/api/v1/credentials".to_string(),
        ),
        (
            format!("/api/v1/organizations/{org}/credentials"),
            json!({"name": "huge", "kind": "openai", "secret": big_secret}),
            format!("/api/v1/organizations/{org}/credentials"),
        ),
    ] {
        let (status, refused) = app.post(&path, auth, body).await;
        assert_eq!(status, 400, "{path}: {refused}");
        assert_eq!(
            refused["error"]["code"], "invalid_input",
            "{path}: {refused}"
        );
        let (_, listed) = app.get(&list, auth).await;
        assert_eq!(listed["items"], json!([]), "{path}: nothing was made");
    }
}
