//! `Idempotency-Key` on management writes, through the real server: a retry
//! gets the first answer (a new key's secret included) and changes nothing,
//! a reused key with another request is refused, parallel retries make one
//! thing, and sign-in routes are left alone.

use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app, test_config, with_first_admin};

/// Sends a POST with `Idempotency-Key: key` as `auth`; status, whether it
/// was a replay, and the JSON answer.
async fn post(
    app: &TestApp,
    auth: &str,
    path: &str,
    key: &str,
    body: &Value,
) -> (u16, bool, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("authorization", auth)
        .header("idempotency-key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (status, replayed, response.json().await.unwrap_or_default())
}

async fn ada(app: &TestApp) -> String {
    app.create_user(&app.first_admin().await, "ada").await;
    app.bearer("ada@example.com").await
}

async fn count(app: &TestApp, auth: &str, path: &str) -> usize {
    let (status, list) = app.by(auth).get(path).await;
    assert_eq!(status, 200, "{list}");
    list["items"].as_array().expect("a list").len()
}

#[tokio::test]
async fn a_retried_create_is_answered_again_and_made_once() {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    let app = spawn_app(config).await;
    let ada = ada(&app).await;

    // An API key: the retry shows the same secret, and there is one key.
    let body = json!({"label": "ci"});
    let (status, replayed, first) = post(&app, &ada, "/api/v1/api-keys", "key-1", &body).await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, replayed, again) = post(&app, &ada, "/api/v1/api-keys", "key-1", &body).await;
    assert_eq!((status, replayed), (201, true), "{again}");
    assert_eq!(again, first);
    assert!(first["key"].as_str().unwrap().starts_with("ak_"));
    assert_eq!(count(&app, &ada, "/api/v1/api-keys").await, 1);

    // The same Idempotency-Key with another request: refused, nothing made.
    let (status, _, refused) = post(
        &app,
        &ada,
        "/api/v1/api-keys",
        "key-1",
        &json!({"label": "other"}),
    )
    .await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(refused["error"]["code"], "idempotency_key_reused");
    assert_eq!(count(&app, &ada, "/api/v1/api-keys").await, 1);

    // A request that failed changed nothing and is not kept: fixed and sent
    // with a new key it goes through, and the failed one fails again.
    let bad = json!({"name": ""});
    let (status, _, _) = post(&app, &ada, "/api/v1/organizations", "org-0", &bad).await;
    assert_eq!(status, 400);
    let (status, replayed, _) = post(&app, &ada, "/api/v1/organizations", "org-0", &bad).await;
    assert_eq!((status, replayed), (400, false));

    // Parallel retries of one create: one organization, every success the
    // same answer, the others told the first is still running.
    let orgs_before = count(&app, &ada, "/api/v1/organizations").await;
    let body = json!({"name": "Acme"});
    let tries = (0..8).map(|_| post(&app, &ada, "/api/v1/organizations", "org-1", &body));
    let answers = futures_util::future::join_all(tries).await;
    let made: Vec<&Value> = answers
        .iter()
        .filter(|(status, _, _)| *status == 201)
        .map(|(_, _, body)| body)
        .collect();
    assert!(!made.is_empty(), "{answers:?}");
    assert!(made.iter().all(|b| b["id"] == made[0]["id"]), "{answers:?}");
    assert!(
        answers.iter().all(|(status, _, body)| *status == 201
            || (*status == 409 && body["error"]["code"] == "conflict")),
        "{answers:?}"
    );
    let (status, replayed, again) = post(&app, &ada, "/api/v1/organizations", "org-1", &body).await;
    assert_eq!((status, replayed, &again), (201, true, made[0]));
    assert_eq!(
        count(&app, &ada, "/api/v1/organizations").await,
        orgs_before + 1
    );

    // Another credential of the same account does not see the answer: it
    // makes its own.
    let (status, cli) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "ada@example.com", "password": PASSWORD, "mode": "cli"}),
        )
        .await;
    assert_eq!(status, 200);
    let other_session = format!("Bearer {}", cli["token"].as_str().unwrap());
    let (status, replayed, own) = post(
        &app,
        &other_session,
        "/api/v1/api-keys",
        "key-1",
        &json!({"label": "ci"}),
    )
    .await;
    assert_eq!((status, replayed), (201, false));
    assert_ne!(own["key"], first["key"]);

    // A malformed key is refused before anything is done.
    let (status, _, refused) = post(
        &app,
        &ada,
        "/api/v1/api-keys",
        "has spaces in it",
        &json!({"label": "x"}),
    )
    .await;
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    assert_eq!(count(&app, &ada, "/api/v1/api-keys").await, 2);
    app.stop().await;
}

#[tokio::test]
async fn sign_in_routes_ignore_the_header() {
    let mut config = test_config(None);
    with_first_admin(&mut config);
    let app = spawn_app(config).await;
    let login = json!({"login": "admin@example.com", "password": PASSWORD});
    for _ in 0..2 {
        let response = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .header("authorization", "Bearer whatever")
            .header("idempotency-key", "same")
            .json(&login)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().get("idempotent-replayed").is_none());
        // A fresh sign-in each time: it sets its cookies again.
        assert!(response.headers().get("set-cookie").is_some());
    }
    app.stop().await;
}
