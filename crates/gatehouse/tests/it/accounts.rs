//! Accounts through the real server: registration, sign-in, `me`, and the
//! first admin.

use gatehouse::config::Secret;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, spawn_app, test_config};

async fn post(app: &TestApp, path: &str, body: Value) -> (u16, Value) {
    let response = app
        .client
        .post(app.url(path))
        .header("x-request-id", "fixed")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// Registers `email` with [`PASSWORD`].
async fn register(app: &TestApp, email: &str) -> (u16, Value) {
    let body = json!({"email": email, "password": PASSWORD});
    post(app, "/api/v1/auth/register", body).await
}

async fn me(app: &TestApp, token: &str) -> (u16, Value, Option<String>) {
    let response = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_string());
    (
        response.status().as_u16(),
        response.json().await.unwrap(),
        challenge,
    )
}

#[tokio::test]
async fn register_sign_in_and_read_me() {
    let app = spawn_app(test_config(None)).await;
    let new = json!({"email": "Ada@Example.com", "password": PASSWORD, "username": "ada"});
    let (status, body) = post(&app, "/api/v1/auth/register", new.clone()).await;
    assert_eq!((status, body.clone()), (202, json!({"status": "accepted"})));
    // A second registration of the same email is answered the same way.
    assert_eq!(post(&app, "/api/v1/auth/register", new).await, (202, body));

    // SPEC §5: the account as `login`, `email` or `username` (AIGateway's body).
    for (field, login) in [
        ("login", "ada@example.com"),
        ("login", "ADA"),
        ("email", "ada@example.com"),
        ("username", "ada"),
    ] {
        let (status, token) = post(
            &app,
            "/api/v1/auth/login",
            json!({field: login, "password": PASSWORD}),
        )
        .await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(token["token_type"], "Bearer");
        assert_eq!(token["expires_in"], 86400);
        let (status, me, _) = me(&app, token["token"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        assert_eq!(me["email"], "Ada@Example.com");
        assert_eq!(me["username"], "ada");
        assert_eq!(me["roles"], json!(["user"]));
        assert!(me.get("password_hash").is_none());
    }
    app.stop().await;
}

#[tokio::test]
async fn failures_reveal_nothing_and_use_the_error_shape() {
    let app = spawn_app(test_config(None)).await;
    register(&app, "ada@example.com").await;
    let wrong = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": "not the password"}),
    )
    .await;
    let unknown = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "nobody@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown, "same status and body");

    let (status, body, challenge) = me(&app, "not-a-token").await;
    assert_eq!((status, challenge.as_deref()), (401, Some("Bearer")));
    assert_eq!(body["error"]["code"], "unauthenticated");
    let bare = app
        .client
        .get(app.url("/api/v1/auth/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(bare.status(), 401);

    let (status, body) = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "bob@example.com", "password": "password123"}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "invalid_input");
    let (status, body) = post(&app, "/api/v1/auth/login", json!({"login": "x"})).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_body");
    // One name for the account, not two.
    let (status, body) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "username": "ada", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "malformed_body");
    app.stop().await;
}

#[tokio::test]
async fn self_registration_can_be_turned_off() {
    let mut config = test_config(None);
    config.auth.registration_enabled = false;
    let app = spawn_app(config).await;
    let (status, body) = register(&app, "ada@example.com").await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["code"], "permission_denied");
    app.stop().await;
}

#[tokio::test]
async fn the_first_start_creates_exactly_one_admin() {
    let dir = tempfile::tempdir().unwrap();
    let first_password = "first admin password";
    let mut config = test_config(Some(dir.path()));
    config.bootstrap.admin_email = "root@example.com".into();
    config.bootstrap.admin_password = Some(Secret(first_password.into()));
    let app = spawn_app(config.clone()).await;
    let (status, token) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "root@example.com", "password": first_password}),
    )
    .await;
    assert_eq!(status, 200);
    let (_, me, _) = me(&app, token["token"].as_str().unwrap()).await;
    assert_eq!(me["roles"], json!(["user", "admin"]));
    assert_eq!(me["must_change_password"], false);
    app.stop().await;

    // A second start with other bootstrap settings creates no admin and
    // changes none.
    config.bootstrap.admin_email = "other@example.com".into();
    config.bootstrap.admin_password = Some(Secret("second admin password".into()));
    let app = spawn_app(config).await;
    let other = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "other@example.com", "password": "second admin password"}),
    )
    .await;
    assert_eq!(other.0, 401);
    let root = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "root@example.com", "password": first_password}),
    )
    .await;
    assert_eq!(root.0, 200);
    app.stop().await;
}

#[tokio::test]
async fn sessions_by_cookie_and_bearer_password_change_and_logout() {
    let app = spawn_app(test_config(None)).await;
    register(&app, "ada@example.com").await;

    // A browser session: an HttpOnly, SameSite cookie.
    let response = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": "ada@example.com", "password": PASSWORD, "mode": "session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let set_cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(set_cookie.starts_with("gatehouse_session="), "{set_cookie}");
    for attribute in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age=604800"] {
        assert!(set_cookie.contains(attribute), "{set_cookie}");
    }
    assert!(!set_cookie.contains("Secure"), "development mode, no TLS");
    let web_session: Value = response.json().await.unwrap();
    assert_eq!(web_session["kind"], "web");
    let cookie = set_cookie.split(';').next().unwrap().to_string();
    let cookie = ("cookie", cookie.as_str());
    let (status, me) = app.get("/api/v1/auth/me", Some(cookie)).await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("ada@example.com"))
    );

    // A command-line session: an opaque bearer token.
    let (status, cli) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": PASSWORD, "mode": "cli"}),
    )
    .await;
    assert_eq!(status, 200);
    let cli_auth = format!("Bearer {}", cli["token"].as_str().unwrap());
    let bearer = ("authorization", cli_auth.as_str());
    let (status, sessions) = app.get("/api/v1/auth/sessions", Some(bearer)).await;
    assert_eq!(status, 200);
    assert_eq!(sessions["items"].as_array().unwrap().len(), 2);
    assert_eq!(
        sessions["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["current"] == true)
            .count(),
        1
    );

    // A cross-site request with the cookie is refused before anything changes.
    let response = app
        .client
        .put(app.url("/api/v1/auth/password"))
        .header("cookie", cookie.1)
        .header("origin", "https://evil.example")
        .json(&json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);

    // A JWT, which the password change below ends too.
    let (status, login) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200);
    let jwt_auth = format!("Bearer {}", login["token"].as_str().unwrap());
    let jwt = ("authorization", jwt_auth.as_str());
    let (status, _) = app.get("/api/v1/auth/me", Some(jwt)).await;
    assert_eq!(status, 200);

    // Changing the password from the CLI session ends the browser session
    // and every JWT.
    let change = json!({"current_password": PASSWORD, "new_password": "a brand new passphrase"});
    let (status, _) = app.put("/api/v1/auth/password", Some(bearer), change).await;
    assert_eq!(status, 204);
    let (status, _) = app.get("/api/v1/auth/me", Some(cookie)).await;
    assert_eq!(status, 401);
    let (status, body) = app.get("/api/v1/auth/me", Some(jwt)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (401, Some("unauthenticated"))
    );
    let (status, _) = app.get("/api/v1/auth/me", Some(bearer)).await;
    assert_eq!(status, 200);
    let old = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    assert_eq!(old.0, 401);

    // Logout with a JWT ends it (and every other JWT of the account).
    let (status, login) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": "a brand new passphrase"}),
    )
    .await;
    assert_eq!(status, 200);
    let jwt_auth = format!("Bearer {}", login["token"].as_str().unwrap());
    let jwt = ("authorization", jwt_auth.as_str());
    let (status, _) = app.post("/api/v1/auth/logout", Some(jwt), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.get("/api/v1/auth/me", Some(jwt)).await;
    assert_eq!(status, 401);

    // Someone else's (or no) session cannot be ended; logout ends our own.
    let (status, body) = app.delete("/api/v1/auth/sessions/123", Some(bearer)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (404, Some("not_found"))
    );
    let (status, _) = app.post("/api/v1/auth/logout", Some(bearer), None).await;
    assert_eq!(status, 204);
    let (status, _) = app.get("/api/v1/auth/me", Some(bearer)).await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn repeated_failures_get_429_with_retry_after() {
    let app = spawn_app(test_config(None)).await;
    let attempt = || {
        app.client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"login": "ada@example.com", "password": "not the password"}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(attempt().await.unwrap().status(), 401);
    }
    let refused = attempt().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["retry-after"], "1");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    app.stop().await;
}

#[tokio::test]
async fn admins_read_the_audit_log_and_users_cannot() {
    let mut config = test_config(None);
    config.bootstrap.admin_email = "root@example.com".into();
    config.bootstrap.admin_password = Some(Secret("first admin password".into()));
    let app = spawn_app(config).await;
    register(&app, "ada@example.com").await;
    post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": "not it at all"}),
    )
    .await;
    let (_, user) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    let (_, admin) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "root@example.com", "password": "first admin password"}),
    )
    .await;
    let get = |token: String, query: String| {
        let request = app
            .client
            .get(app.url(&format!("/api/v1/audit-events{query}")))
            .bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        }
    };
    let (status, _) = get(user["token"].as_str().unwrap().into(), String::new()).await;
    assert_eq!(status, 403);
    let (status, page) = get(admin["token"].as_str().unwrap().into(), "?limit=3".into()).await;
    assert_eq!(status, 200);
    let events = page["items"].as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["action"], "auth.login");
    assert_eq!(events[0]["outcome"], "success");
    assert_eq!(events[0]["ip"], "127.0.0.1");
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, older) = get(
        admin["token"].as_str().unwrap().into(),
        format!("?cursor={cursor}"),
    )
    .await;
    let actions: Vec<&str> = older["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["auth.register", "auth.bootstrap_admin"]);
    assert!(!older.to_string().contains(PASSWORD));
    app.stop().await;
}

/// The whole journey through the real server, with real SMTP.
#[tokio::test]
async fn the_whole_account_journey_with_real_smtp() {
    let sink = crate::smtp::SmtpSink::start().await;
    let mut config = test_config(None);
    config.email.smtp_url = Some(sink.url());
    config.email.outbox_interval_secs = 0;
    config.cluster.lease_secs = 3;
    let app = spawn_app(config).await;

    // Register; the verification email arrives over SMTP.
    let (status, _) = post(
        &app,
        "/api/v1/auth/register",
        json!({"email": "ada@example.com", "password": PASSWORD, "username": "ada"}),
    )
    .await;
    assert_eq!(status, 202);
    let mail = sink.nth_message_to("ada@example.com", 1).await;
    assert!(
        mail.contains("Subject: Verify your email address"),
        "{mail}"
    );
    let (status, _) = post(
        &app,
        "/api/v1/auth/emails/verify",
        json!({"token": crate::smtp::token_in(&mail)}),
    )
    .await;
    assert_eq!(status, 204);

    // Sign in both ways.
    let (_, jwt) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada", "password": PASSWORD}),
    )
    .await;
    let jwt = format!("Bearer {}", jwt["token"].as_str().unwrap());
    let (_, cli) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": PASSWORD, "mode": "cli"}),
    )
    .await;
    let cli = format!("Bearer {}", cli["token"].as_str().unwrap());
    let (status, me) = app.by(&jwt).get("/api/v1/auth/me").await;
    assert_eq!((status, me["email_verified"].as_bool()), (200, Some(true)));

    // Change the password with the JWT: the CLI session ends.
    let change = json!({"current_password": PASSWORD, "new_password": "second good passphrase"});
    let (status, _) = app.by(&jwt).put("/api/v1/auth/password", change).await;
    assert_eq!(status, 204);
    let (status, _) = app.by(&cli).get("/api/v1/auth/me").await;
    assert_eq!(status, 401);

    // Reset the password by email; a new session, then log out.
    let (status, _) = post(
        &app,
        "/api/v1/auth/reset",
        json!({"email": "ada@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _) = post(
        &app,
        "/api/v1/auth/reset",
        json!({"email": "nobody@example.com"}),
    )
    .await;
    assert_eq!(status, 202);
    let mail = sink.nth_message_to("ada@example.com", 2).await;
    assert!(mail.contains("Subject: Reset your password"), "{mail}");
    // A link to the console's page for the token (at `tokens.issuer`).
    let link = format!(
        "Open http://localhost:3000/reset?token={}",
        crate::smtp::token_in(&mail)
    );
    assert!(crate::smtp::unquoted(&mail).contains(&link), "{mail}");
    let (status, _) = post(
        &app,
        "/api/v1/auth/reset/confirm",
        json!({"token": crate::smtp::token_in(&mail), "new_password": "third good passphrase"}),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada", "password": "second good passphrase"}),
    )
    .await;
    assert_eq!(status, 401);
    let (_, session) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada", "password": "third good passphrase", "mode": "cli"}),
    )
    .await;
    let session = format!("Bearer {}", session["token"].as_str().unwrap());
    let (status, _) = app.by(&session).post("/api/v1/auth/logout", None).await;
    assert_eq!(status, 204);
    let (status, _) = app.by(&session).get("/api/v1/auth/me").await;
    assert_eq!(status, 401);
    app.stop().await;
}

#[tokio::test]
async fn email_addresses_are_managed_by_their_owner() {
    let app = spawn_app(test_config(None)).await;
    register(&app, "ada@example.com").await;
    let (_, token) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "ada@example.com", "password": PASSWORD}),
    )
    .await;
    let bearer = format!("Bearer {}", token["token"].as_str().unwrap());
    let auth = ("authorization", bearer.as_str());
    let (status, _) = app
        .post(
            "/api/v1/auth/emails",
            Some(auth),
            json!({"email": "ada@work.example"}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, list) = app.get("/api/v1/auth/emails", Some(auth)).await;
    assert_eq!(status, 200);
    assert_eq!(
        list,
        json!({"items": [
            {"email": "ada@example.com", "primary": true, "verified": false},
            {"email": "ada@work.example", "primary": false, "verified": false}
        ], "next_cursor": null})
    );
    let (status, body) = app
        .post(
            "/api/v1/auth/emails/ada@work.example/primary",
            Some(auth),
            None,
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );
    let (status, _) = app
        .delete("/api/v1/auth/emails/ada@example.com", Some(auth))
        .await;
    assert_eq!(status, 400, "the primary stays");
    let (status, _) = app
        .delete("/api/v1/auth/emails/ada@work.example", Some(auth))
        .await;
    assert_eq!(status, 204);
    let (_, list) = app.get("/api/v1/auth/emails", Some(auth)).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    app.stop().await;
}

#[tokio::test]
async fn admins_create_accounts_users_cannot() {
    let mut config = test_config(None);
    config.bootstrap.admin_email = "root@example.com".into();
    config.bootstrap.admin_password = Some(Secret("first admin password".into()));
    let app = spawn_app(config).await;
    let (_, admin) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "root@example.com", "password": "first admin password"}),
    )
    .await;
    let admin = format!("Bearer {}", admin["token"].as_str().unwrap());
    let (status, created) = app
        .by(&admin)
        .post(
            "/api/v1/users",
            json!({"email": "prov@example.com", "provider": true}),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(created["user"]["roles"], json!(["provider"]));
    assert_eq!(created["user"]["must_change_password"], true);
    let generated = created["generated_password"].as_str().unwrap().to_string();
    let (status, again) = app
        .by(&admin)
        .post("/api/v1/users", json!({"email": "PROV@example.com"}))
        .await;
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (409, Some("conflict"))
    );

    let (_, provider) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "prov@example.com", "password": generated}),
    )
    .await;
    let provider = format!("Bearer {}", provider["token"].as_str().unwrap());
    let change = json!({"current_password": generated, "new_password": "provider passphrase"});
    let (status, _) = app.by(&provider).put("/api/v1/auth/password", change).await;
    assert_eq!(status, 204);
    let (_, provider) = post(
        &app,
        "/api/v1/auth/login",
        json!({"login": "prov@example.com", "password": "provider passphrase"}),
    )
    .await;
    let provider = format!("Bearer {}", provider["token"].as_str().unwrap());
    let (status, _) = app
        .by(&provider)
        .post("/api/v1/users", json!({"email": "eve@example.com"}))
        .await;
    assert_eq!(status, 403);

    // Disabling the provider ends its access at once.
    let id = created["user"]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/users/{id}");
    let disable = json!({"status": "disabled"});
    let (status, _) = app.by(&provider).patch(&path, disable.clone()).await;
    assert_eq!(status, 403, "only admins");
    let (status, updated) = app.by(&admin).patch(&path, disable).await;
    assert_eq!(status, 200, "{updated}");
    let (status, _) = app.by(&provider).get("/api/v1/auth/me").await;
    assert_eq!(status, 401);
    let (status, _) = app
        .by(&admin)
        .patch("/api/v1/users/999", json!({"status": "active"}))
        .await;
    assert_eq!(status, 404);
    app.stop().await;
}

#[tokio::test]
async fn users_are_listed_by_admins_and_read_by_themselves() {
    let mut config = test_config(None);
    config.bootstrap.admin_email = "root@example.com".into();
    config.bootstrap.admin_password = Some(Secret("first admin password".into()));
    let app = spawn_app(config).await;
    for name in ["ada", "bob"] {
        post(
            &app,
            "/api/v1/auth/register",
            json!({"email": format!("{name}@example.com"), "password": PASSWORD, "username": name}),
        )
        .await;
    }
    let token = |login: &'static str, password: &'static str| {
        let app = &app;
        async move {
            let (_, body) = post(
                app,
                "/api/v1/auth/login",
                json!({"login": login, "password": password}),
            )
            .await;
            format!("Bearer {}", body["token"].as_str().unwrap())
        }
    };
    let admin = token("root@example.com", "first admin password").await;
    let ada = token("ada", PASSWORD).await;

    let (status, page) = app.by(&admin).get("/api/v1/users?limit=2").await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap().to_string();
    let (_, rest) = app
        .by(&admin)
        .get(&format!("/api/v1/users?cursor={cursor}"))
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert!(rest["next_cursor"].is_null());
    let (_, admins) = app.by(&admin).get("/api/v1/users?role=admin").await;
    assert_eq!(admins["items"][0]["email"], "root@example.com");
    let (status, body) = app.by(&admin).get("/api/v1/users?role=emperor").await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (400, Some("invalid_input"))
    );

    let (status, _) = app.by(&ada).get("/api/v1/users").await;
    assert_eq!(status, 403);
    let (_, me) = app.by(&ada).get("/api/v1/auth/me").await;
    let ada_id = me["id"].as_str().unwrap();
    let (status, own) = app.by(&ada).get(&format!("/api/v1/users/{ada_id}")).await;
    assert_eq!((status, own["username"].as_str()), (200, Some("ada")));
    let bob_id = rest["items"][0]["id"].as_str().unwrap();
    let (status, _) = app.by(&ada).get(&format!("/api/v1/users/{bob_id}")).await;
    assert_eq!(
        status, 404,
        "another user's account is invisible, not forbidden"
    );
    app.stop().await;
}
