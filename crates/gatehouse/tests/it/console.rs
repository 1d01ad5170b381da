//! The web console: its pages over plain HTTP (sign-in redirects, headers,
//! role-aware refusals, the base path), and people using it end to end in a
//! real browser — Debian's Chromium driven through Debian's ChromeDriver by
//! Selenium (`tests/console/console_test.py`), against this server, a real
//! upstream started here and the real OpenID Provider of the SSO tests.
//!
//! The browser test needs the SDK virtualenv (`GATEHOUSE_TEST_PYTHON`, with
//! Selenium), Chromium and ChromeDriver, and `npm ci` in `tests/console`
//! (axe-core); `.ci/run` provides all of them. Screenshots of every page at
//! two widths are left in `target/console-screenshots/`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::helpers::sdk_python;
use crate::helpers::{PASSWORD, TestApp, admin_config, spawn_app};
use crate::sso::{CLIENT_ID, CLIENT_SECRET, free_port, provider_config, start_provider};

/// An OpenAI-compatible upstream: two models, a short answer, and a
/// streamed one whose pieces come 300 ms apart (so a browser sees it grow).
async fn upstream() -> String {
    async fn models() -> axum::Json<Value> {
        axum::Json(json!({"object": "list", "data": [
            {"id": "console-gpt", "object": "model"},
            {"id": "console-pro", "object": "model"},
        ]}))
    }
    async fn chat(headers: HeaderMap, axum::Json(body): axum::Json<Value>) -> Response {
        let _ = headers;
        let model = body["model"].as_str().unwrap_or_default().to_string();
        if body["stream"].as_bool() != Some(true) {
            return axum::Json(json!({
                "id": "chatcmpl-1", "object": "chat.completion", "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello from the upstream"}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17},
            }))
            .into_response();
        }
        let mut events: Vec<String> = ["Compilers ", "turn source ", "into machine code."]
            .iter()
            .map(|piece| {
                format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk", "model": model,
                        "choices": [{"index": 0, "delta": {"content": piece}}]})
                )
            })
            .collect();
        events.push(format!(
            "data: {}\n\n",
            json!({"object": "chat.completion.chunk", "choices": [],
                "usage": {"prompt_tokens": 20, "completion_tokens": 7}})
        ));
        events.push("data: [DONE]\n\n".to_string());
        crate::helpers::sse(events, |i| {
            Duration::from_millis(if i > 0 { 300 } else { 0 })
        })
    }
    let router = axum::Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    format!("http://{addr}")
}

/// A browser without JavaScript: cookies kept, redirects looked at.
pub(crate) fn plain_browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn page(browser: &reqwest::Client, url: &str) -> (u16, HeaderMap, String) {
    let response = browser.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

/// Signs `login` in as a browser does (mode `session`: the cookie).
pub(crate) async fn session(app: &TestApp, browser: &reqwest::Client, login: &str) {
    let response = browser
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": login, "password": PASSWORD, "mode": "session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{login} signs in");
}

#[tokio::test(flavor = "multi_thread")]
async fn pages_send_strangers_to_sign_in_and_back_and_carry_a_strict_policy() {
    let app = spawn_app(admin_config()).await;
    let browser = plain_browser();
    let (status, headers, _) = page(&browser, &app.url("/keys?x=1")).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/sign-in?next=%2Fkeys%3Fx%3D1");
    let (status, headers, html) = page(&browser, &app.url("/sign-in?next=%2Fkeys")).await;
    assert_eq!(status, 200);
    let csp = headers["content-security-policy"].to_str().unwrap();
    for rule in [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "frame-ancestors 'none'",
    ] {
        assert!(csp.contains(rule), "{csp}");
    }
    assert_eq!(headers["x-frame-options"], "DENY");
    assert!(
        html.contains(r#"data-next="/keys""#),
        "back to where they were going"
    );
    // Nothing inline: every script and style is a file of this server.
    assert!(
        !html.contains("<script>") && !html.contains("style="),
        "{html}"
    );
    assert!(html.contains(r#"<script src="/static/console.js" defer></script>"#));
    // A link elsewhere is not followed after signing in.
    let (_, _, html) = page(
        &browser,
        &app.url("/sign-in?next=https%3A%2F%2Fevil.example%2F"),
    )
    .await;
    assert!(html.contains(r#"data-next="/""#), "{html}");
    // The assets are embedded and typed; nothing else is served from there.
    let response = browser
        .get(app.url("/static/console.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "text/javascript; charset=utf-8"
    );
    let etag = response.headers()["etag"].clone();
    assert!(response.text().await.unwrap().contains("data-api"));
    // Revalidating costs a 304, not the script again.
    let again = browser
        .get(app.url("/static/console.js"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    let (status, _, _) = page(&browser, &app.url("/static/../Cargo.toml")).await;
    assert!(status == 404 || status == 400, "{status}");
    let (status, _, _) = page(&browser, &app.url("/static/nope.js")).await;
    assert_eq!(status, 404);
    // People type these.
    for alias in ["/ui", "/admin"] {
        let (status, headers, _) = page(&browser, &app.url(alias)).await;
        assert_eq!(
            (status, headers["location"].to_str().unwrap()),
            (303, "/"),
            "{alias}"
        );
    }
    // Signed in: the page itself, with the person's name.
    session(&app, &browser, "admin@example.com").await;
    let (status, _, html) = page(&browser, &app.url("/keys")).await;
    assert_eq!(status, 200);
    assert!(html.contains("<h1>API keys</h1>"), "{html}");
    let (_, headers, _) = page(&browser, &app.url("/sign-in?next=%2Fkeys")).await;
    assert_eq!(
        headers["location"], "/keys",
        "signed in already: straight on"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn what_a_role_may_not_use_is_neither_shown_nor_served() {
    let app = spawn_app(admin_config()).await;
    let admin = app.first_admin().await;
    app.create_user(&admin, "ada").await;
    let ada = plain_browser();
    session(&app, &ada, "ada@example.com").await;
    let (_, _, home) = page(&ada, &app.url("/")).await;
    assert!(
        home.contains("Welcome, ada@example.com") || home.contains("Welcome, ada"),
        "{home}"
    );
    assert!(!home.contains("/admin/users"), "no admin link for a user");
    for path in [
        "/admin/users",
        "/admin/usage",
        "/admin/request-logs",
        "/admin/audit",
        "/admin/system",
        "/catalog/endpoints",
        "/catalog/credentials",
    ] {
        let (status, _, html) = page(&ada, &app.url(path)).await;
        assert_eq!(status, 404, "{path}: {html}");
        assert!(html.contains("Not found"), "{path}");
    }
    // Another tenant's organization: 404, as on the API.
    let admin_browser = plain_browser();
    session(&app, &admin_browser, "admin@example.com").await;
    let (_, _, orgs) = page(&admin_browser, &app.url("/organizations")).await;
    let org = orgs
        .split("/organizations/")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the admin's organization is listed")
        .to_string();
    let (status, _, _) = page(&ada, &app.url(&format!("/organizations/{org}"))).await;
    assert_eq!(status, 404);
    let (status, _, _) = page(&ada, &app.url("/organizations/not-a-number")).await;
    assert_eq!(status, 404);
    // Admins see the administration and its link.
    let (_, _, home) = page(&admin_browser, &app.url("/")).await;
    assert!(home.contains("/admin/users"));
    let (status, _, users) = page(&admin_browser, &app.url("/admin/users?q=ada")).await;
    assert_eq!(status, 200);
    assert!(
        users.contains("ada@example.com") && !users.contains(">admin@example.com<"),
        "{users}"
    );
    let (status, _, _) = page(&admin_browser, &app.url("/admin/users?role=emperor")).await;
    assert_eq!(status, 400, "a filter that does not parse says so");
    let (status, _, system) = page(&admin_browser, &app.url("/admin/system")).await;
    assert_eq!(status, 200);
    let instance = app.services.cluster.instance_id();
    assert!(
        system.contains(&format!(
            "<code>{instance}</code> <span class=\"badge active\">this one</span>"
        )),
        "{system}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_chat_shows_its_newest_messages_and_says_the_export_has_the_rest() {
    use gatehouse_core::model::work::MessageRole;
    use gatehouse_core::work::{ChatSpec, NewMessage};
    let app = spawn_app(admin_config()).await;
    let admin = app.first_admin().await;
    let ada = app.create_user(&admin, "ada").await;
    let work = &app.services.work;
    let client = gatehouse_core::model::sessions::ClientInfo::default();
    let org = app.services.tenancy.orgs_of(ada.id).await.unwrap()[0].0.id;
    let project = work.list_projects(&ada, org).await.unwrap()[0].id;
    let spec = ChatSpec {
        model: "llama".into(),
        ..ChatSpec::default()
    };
    let chat = work
        .create_chat(&ada, org, project, spec, &client)
        .await
        .unwrap();
    let at = (org, project, chat.id);
    for i in 0..505 {
        let m = NewMessage::text(MessageRole::User, format!("message number {i}."));
        work.append_message(&ada, at, m, &client).await.unwrap();
    }
    let browser = plain_browser();
    session(&app, &browser, "ada@example.com").await;
    let url = app.url(&format!("/playground/{org}/{project}/{}", chat.id));
    let (status, _, html) = page(&browser, &url).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("message number 504."), "the newest is shown");
    assert!(html.contains("message number 5."), "the 500 newest");
    assert!(!html.contains("message number 4."), "not the oldest");
    assert!(
        html.find("message number 5.") < html.find("message number 504."),
        "in order"
    );
    assert!(html.contains("data-earlier") && html.contains("/export?format=markdown"));
    // A short chat says nothing of earlier messages.
    let spec = ChatSpec {
        model: "llama".into(),
        ..ChatSpec::default()
    };
    let short = work
        .create_chat(&ada, org, project, spec, &client)
        .await
        .unwrap();
    let url = app.url(&format!("/playground/{org}/{project}/{}", short.id));
    let (_, _, html) = page(&browser, &url).await;
    assert!(!html.contains("data-earlier"), "{html}");
    assert!(
        !html.contains("data-more-chats"),
        "two chats are all listed"
    );
    // Exactly as many messages as a page shows: nothing is said of earlier ones.
    for i in 0..500 {
        let m = NewMessage::text(MessageRole::User, format!("short number {i}."));
        work.append_message(&ada, (org, project, short.id), m, &client)
            .await
            .unwrap();
    }
    let (_, _, html) = page(&browser, &url).await;
    assert!(html.contains("short number 0.") && html.contains("short number 499."));
    assert!(!html.contains("data-earlier"), "all 500 are shown");
    // A project with many chats: the newest 100 are listed, and the list says so.
    for i in 0..99 {
        let spec = ChatSpec {
            name: Some(format!("chat number {i}.")),
            model: "llama".into(),
            ..ChatSpec::default()
        };
        work.create_chat(&ada, org, project, spec, &client)
            .await
            .unwrap();
    }
    let (_, _, html) = page(&browser, &app.url("/playground")).await;
    assert!(html.contains("chat number 98.") && html.contains("chat number 0."));
    assert!(html.contains(&format!("/{}\"", short.id)), "{html}");
    assert!(
        !html.contains(&format!("/{}\"", chat.id)),
        "the oldest is not listed"
    );
    assert!(html.contains("data-more-chats"));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_moves_under_its_base_path_and_the_gateway_answers_without_v1() {
    let mut config = admin_config();
    config.console.base_path = "/console/".into();
    let app = spawn_app(config).await;
    let browser = plain_browser();
    let (status, headers, _) = page(&browser, &app.url("/console/")).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/console/sign-in?next=%2Fconsole%2F")
    );
    let (status, _, html) = page(&browser, &app.url("/console/sign-in")).await;
    assert_eq!(status, 200);
    assert!(
        html.contains(r#"href="/console/static/console.css""#),
        "{html}"
    );
    let (status, _, _) = page(&browser, &app.url("/console/static/console.css")).await;
    assert_eq!(status, 200);
    let (status, _, _) = page(&browser, &app.url("/sign-in")).await;
    assert_eq!(status, 404, "nothing of the console outside its path");
    // `/models` is the gateway's, as SDKs given a base URL without /v1 call it.
    let (status, body) = app.get("/models", None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"].is_string(),
        "the OpenAI error shape: {body}"
    );
    app.stop().await;
}

/// Debian's Chromium and ChromeDriver, or `None` to skip (unless
/// `GATEHOUSE_TEST_REQUIRE_BROWSER` is set, as in `.ci/run`).
fn browser_binaries() -> Option<(PathBuf, PathBuf)> {
    let chromium = std::env::var_os("GATEHOUSE_TEST_CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    let driver = std::env::var_os("GATEHOUSE_TEST_CHROMEDRIVER")
        .map_or_else(|| PathBuf::from("/usr/bin/chromedriver"), PathBuf::from);
    if chromium.exists() && driver.exists() {
        return Some((chromium, driver));
    }
    assert!(
        std::env::var_os("GATEHOUSE_TEST_REQUIRE_BROWSER").is_none(),
        "install Debian's chromium and chromium-driver"
    );
    eprintln!("skipped: no Chromium or ChromeDriver");
    None
}

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console")
}

#[tokio::test(flavor = "multi_thread")]
async fn people_use_the_console_end_to_end_in_a_real_browser() {
    let Some(python) = sdk_python() else {
        return;
    };
    let Some((chromium, chromedriver)) = browser_binaries() else {
        return;
    };
    let axe = fixtures().join("node_modules/axe-core/axe.min.js");
    if !axe.exists() {
        assert!(
            std::env::var_os("GATEHOUSE_TEST_REQUIRE_BROWSER").is_none(),
            "run `npm ci` in tests/console"
        );
        eprintln!("skipped: no axe-core (npm ci in tests/console)");
        return;
    }
    let upstream = upstream().await;
    // Passkeys need a domain, not an IP: the browser uses localhost.
    let port = free_port();
    let base = format!("http://localhost:{port}");
    let provider_port = free_port();
    let issuer = format!("http://127.0.0.1:{provider_port}");
    let mut config = admin_config();
    config.server.http_addr = SocketAddr::from(([127, 0, 0, 1], port));
    config.auth.passkeys.origins = vec![base.clone()];
    config.usage.flush_ms = 200;
    config.auth.sso.providers = vec![provider_config("corp", &issuer, CLIENT_ID, CLIENT_SECRET)];
    let app = spawn_app(config).await;
    let people = json!({"lin": {"email": "lin@example.com", "email_verified": true, "name": "Lin", "groups": []}});
    let provider = start_provider(provider_port, &base, &people).await;
    let shots = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .unwrap()
        .join("console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::process::Command::new(python)
        .arg(fixtures().join("console_test.py"))
        .arg(&upstream)
        .env("GATEHOUSE_URL", &base)
        .env("ADMIN_EMAIL", "admin@example.com")
        .env("ADMIN_PASSWORD", PASSWORD)
        .env("AXE_JS", &axe)
        .env("SHOTS", &shots)
        .env("SSO_LOGIN", if provider.is_some() { "lin" } else { "" })
        .env("CHROMIUM", &chromium)
        .env("CHROMEDRIVER", &chromedriver)
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the browser run failed; screenshots in {}\n{stdout}\n{stderr}",
        shots.display()
    );
    let report: Value = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REPORT "))
        .map(|r| serde_json::from_str(r).unwrap())
        .expect("the run's report");
    assert_eq!(
        report["violations"],
        json!([]),
        "axe-core: no serious or critical violation"
    );
    assert_eq!(
        report["elsewhere"],
        json!([]),
        "nothing asked of another origin"
    );
    let pages = report["pages"].as_array().unwrap();
    assert!(pages.len() >= 25, "every page was checked: {pages:?}");
    for page in pages {
        for width in ["desktop", "phone"] {
            let shot = shots.join(format!("{}-{width}.png", page.as_str().unwrap()));
            let png = std::fs::read(&shot).unwrap_or_default();
            assert!(
                png.starts_with(b"\x89PNG") && png.len() > 5_000,
                "{}",
                shot.display()
            );
        }
    }
    // What the browser did is in the store: the key, the chat, the calls.
    app.services.usage.flush().await.unwrap();
    let person = app
        .services
        .accounts
        .list_users(
            &app.first_admin().await,
            &gatehouse_core::accounts::UserFilter {
                text: Some("grace".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(person.len(), 1);
    assert_eq!(person[0].display_name, "Grace Hopper");
    let sso = app
        .services
        .accounts
        .list_users(
            &app.first_admin().await,
            &gatehouse_core::accounts::UserFilter {
                text: Some("lin@example.com".into()),
                ..Default::default()
            },
            None,
            10,
        )
        .await
        .unwrap();
    assert_eq!(
        sso.len(),
        usize::from(provider.is_some()),
        "the SSO account"
    );
    drop(provider);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_invitation_email_leads_to_the_console_page_that_accepts_it() {
    let app = spawn_app(admin_config()).await;
    let admin = app.first_admin().await;
    app.create_user(&admin, "ada").await;
    let bearer = app.bearer("admin@example.com").await;
    let auth = Some(("authorization", bearer.as_str()));
    let (status, org) = app
        .post("/api/v1/organizations", auth, json!({"name": "Lab"}))
        .await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_string();
    let (status, _) = app
        .post(
            &format!("/api/v1/organizations/{org}/invitations"),
            auth,
            json!({"email": "ada@example.com", "role": "member"}),
        )
        .await;
    assert_eq!(status, 201);
    let pending = app.services.outbox.pending().await.unwrap();
    let mail = pending
        .iter()
        .rev()
        .find(|m| m.to == "ada@example.com")
        .expect("the invitation email");
    let token = mail
        .body
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .unwrap()
        .to_string();
    let link = format!("http://localhost:3000/invitation?token={token}");
    assert!(mail.body.contains(&format!("Open {link}")), "{}", mail.body);
    // Signed out: sign in first, and come back here.
    let browser = plain_browser();
    let page_url = app.url(&format!("/invitation?token={token}"));
    let (status, _, html) = page(&browser, &page_url).await;
    assert_eq!(status, 200);
    let back =
        serde_urlencoded::to_string([("next", format!("/invitation?token={token}"))]).unwrap();
    assert!(
        html.contains(&format!("/sign-in?{}", back.replace('&', "&amp;"))),
        "{html}"
    );
    assert!(html.contains(r#"id="decline""#) && !html.contains(r#"id="accept""#));
    // Signed in: the button that accepts, with the token.
    session(&app, &browser, "ada@example.com").await;
    let (_, _, html) = page(&browser, &page_url).await;
    assert!(html.contains(r#"id="accept""#), "{html}");
    assert!(
        html.contains(&format!(r#"name="token" value="{token}""#)),
        "{html}"
    );
    // What the button sends, as the browser sends it.
    let response = browser
        .post(app.url("/api/v1/invitations/accept"))
        .json(&json!({"token": token}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (_, _, orgs) = page(&browser, &app.url("/organizations")).await;
    assert!(
        orgs.contains(&format!("/organizations/{org}\">Lab</a>")),
        "{orgs}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_held_back_are_sent_to_the_page_that_frees_them() {
    let mut config = admin_config();
    config.auth.mfa.required_for_admins = true;
    let app = spawn_app(config).await;
    let admin = plain_browser();
    session(&app, &admin, "admin@example.com").await;
    // An admin without a second factor: enrol one first.
    for path in ["/", "/admin/users", "/keys"] {
        let (status, headers, _) = page(&admin, &app.url(path)).await;
        assert_eq!(
            (status, headers["location"].to_str().unwrap()),
            (303, "/account?enrol=1"),
            "{path}"
        );
    }
    let (status, _, html) = page(&admin, &app.url("/account?enrol=1")).await;
    assert_eq!(status, 200);
    assert!(html.contains("needs a second factor"), "{html}");
    assert!(html.contains(r#"id="totp-start""#) && html.contains(r#"id="add-passkey""#));
    assert!(
        !html.contains("/admin/users"),
        "nothing else is offered yet"
    );
    // A generated password: change it first.
    let root = app.first_admin().await;
    let new = gatehouse_core::accounts::AdminNewUser::new("new@example.com", None);
    let (_, generated) = app
        .services
        .accounts
        .admin_create_user(&root, new, &Default::default())
        .await
        .unwrap();
    let generated = generated.expect("a generated password");
    let newcomer = plain_browser();
    let response = newcomer
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"login": "new@example.com", "password": &generated, "mode": "session"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, headers, _) = page(&newcomer, &app.url("/keys")).await;
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (303, "/password")
    );
    let (status, _, html) = page(&newcomer, &app.url("/password")).await;
    assert_eq!(status, 200);
    assert!(html.contains("was generated"), "{html}");
    app.stop().await;
}
