//! Single sign-on against a real OpenID Provider: the certified
//! `oidc-provider` package (pinned in `tests/oidc/package-lock.json`), started
//! on loopback by the test. Every sign-in walks the whole authorization-code
//! flow over HTTP, through the provider's own login and consent pages.
//!
//! Needs Node.js and `npm ci` in `tests/oidc` (`.ci/run` does both); without
//! them the tests skip, unless `GATEHOUSE_TEST_REQUIRE_OIDC` is set.

use std::path::PathBuf;
use std::process::Stdio;

use gatehouse::config::{Config, SsoProviderConfig};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::helpers::{TestApp, admin_config, spawn_app};

pub(crate) const CLIENT_ID: &str = "gatehouse";
pub(crate) const CLIENT_SECRET: &str = "test-client-secret";

/// The provider process; killed when dropped.
pub(crate) struct Provider {
    pub(crate) issuer: String,
    accounts: PathBuf,
    _dir: tempfile::TempDir,
    _child: tokio::process::Child,
}

impl Provider {
    /// Rewrites the provider's accounts (read at every sign-in).
    fn set_accounts(&self, accounts: &Value) {
        std::fs::write(&self.accounts, accounts.to_string()).unwrap();
    }
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/oidc")
}

/// A free loopback port for the provider (its issuer URL is in Gatehouse's
/// configuration before either starts).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the provider on `port` with one client whose callbacks are on
/// `app`, or `None` when Node.js or the fixture's packages are missing.
pub(crate) async fn start_provider(port: u16, app: &str, accounts: &Value) -> Option<Provider> {
    let ready = fixture_dir().join("node_modules/oidc-provider").exists()
        && std::process::Command::new("node")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !ready {
        assert!(
            std::env::var_os("GATEHOUSE_TEST_REQUIRE_OIDC").is_none(),
            "Node.js and `npm ci` in {} are needed",
            fixture_dir().display()
        );
        eprintln!("skipping: no Node.js or no `npm ci` in tests/oidc");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let clients = dir.path().join("clients.json");
    let accounts_file = dir.path().join("accounts.json");
    let callbacks: Vec<String> = ["corp", "other", "plain"]
        .iter()
        .map(|p| format!("{app}/api/v1/auth/sso/{p}/callback"))
        .collect();
    let client = json!([{
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "redirect_uris": callbacks,
    }, {
        "client_id": "someone-else",
        "client_secret": "another-secret",
        "redirect_uris": callbacks,
    }]);
    std::fs::write(&clients, client.to_string()).unwrap();
    std::fs::write(&accounts_file, accounts.to_string()).unwrap();
    let mut child = tokio::process::Command::new("node")
        .arg(fixture_dir().join("provider.mjs"))
        .arg(port.to_string())
        .arg(&clients)
        .arg(&accounts_file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("node starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let issuer = tokio::time::timeout(std::time::Duration::from_secs(20), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(issuer) = line.strip_prefix("listening ") {
                return issuer.to_string();
            }
        }
        panic!("the provider exited before listening");
    })
    .await
    .expect("the provider starts within 20 s");
    // Keep reading what it prints: a closed pipe would stop it at its next line.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Provider {
        issuer,
        accounts: accounts_file,
        _dir: dir,
        _child: child,
    })
}

/// Gatehouse, configured by `edit` (given the provider's issuer), and the
/// provider with `people`; `None` when the provider cannot run here.
async fn world(
    people: &Value,
    edit: impl FnOnce(&mut Config, &str),
) -> Option<(TestApp, Provider)> {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = gatehouse(&issuer, |config| edit(config, &issuer)).await;
    let provider = start_provider(port, &app.http, people).await?;
    Some((app, provider))
}

pub(crate) fn provider_config(
    id: &str,
    issuer: &str,
    client_id: &str,
    secret: &str,
) -> SsoProviderConfig {
    serde_json::from_value(json!({
        "id": id,
        "issuer": issuer,
        "client_id": client_id,
        "client_secret": secret,
        "scopes": ["email", "profile", "groups"],
        "role_mapping": {
            "litemaas-admins": ["admin"],
            "litemaas-readonly": ["admin_readonly"],
        },
    }))
    .unwrap()
}

/// Gatehouse with provider `corp` (and `other`, registered at the provider
/// under another client ID) on `issuer`.
pub(crate) async fn gatehouse(issuer: &str, edit: impl FnOnce(&mut Config)) -> TestApp {
    let mut config = admin_config();
    config.auth.sso.providers = vec![
        provider_config("corp", issuer, CLIENT_ID, CLIENT_SECRET),
        provider_config("other", issuer, "someone-else", "another-secret"),
    ];
    edit(&mut config);
    spawn_app(config).await
}

/// A browser: cookies kept, redirects looked at one by one.
pub(crate) fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

pub(crate) fn location(response: &reqwest::Response, base: &str) -> String {
    let to = response
        .headers()
        .get("location")
        .unwrap_or_else(|| panic!("a redirect from {base}: {}", response.status()))
        .to_str()
        .unwrap()
        .to_string();
    if to.starts_with('/') {
        let origin = base.split('/').take(3).collect::<Vec<_>>().join("/");
        format!("{origin}{to}")
    } else {
        to
    }
}

/// Walks from Gatehouse's start URL through the provider's login and consent
/// pages as `login`, and returns the callback URL the provider sends the
/// browser to (not yet followed).
pub(crate) async fn authorize(browser: &reqwest::Client, start: &str, login: &str) -> String {
    let response = browser.get(start).send().await.unwrap();
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    let mut url = location(&response, start);
    for _ in 0..20 {
        if url.contains("/api/v1/auth/sso/") {
            return url;
        }
        let response = browser.get(&url).send().await.unwrap();
        if response.status().is_redirection() {
            url = location(&response, &url);
            continue;
        }
        assert_eq!(response.status(), 200, "{url}");
        let page = response.text().await.unwrap();
        // The provider's own form: login first, then consent.
        let action = page
            .split("action=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_else(|| panic!("a form on {url}: {page}"))
            .to_string();
        let action = if action.starts_with('/') {
            let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
            format!("{origin}{action}")
        } else {
            action
        };
        let form: Vec<(&str, &str)> = if page.contains("name=\"login\"") {
            vec![("prompt", "login"), ("login", login), ("password", "any")]
        } else {
            vec![("prompt", "consent")]
        };
        let response = browser.post(&action).form(&form).send().await.unwrap();
        assert!(
            response.status().is_redirection(),
            "{action}: {}",
            response.status()
        );
        url = location(&response, &action);
    }
    panic!("the flow did not come back to Gatehouse");
}

/// A whole sign-in through `corp` in token mode: the callback's answer.
async fn sign_in(app: &TestApp, login: &str) -> (u16, Value) {
    sign_in_through(app, "corp", login).await
}

async fn sign_in_through(app: &TestApp, provider: &str, login: &str) -> (u16, Value) {
    let browser = browser();
    let start = format!("{}/api/v1/auth/sso/{provider}/start?mode=token", app.http);
    let callback = authorize(&browser, &start, login).await;
    let response = browser.get(&callback).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn call(app: &TestApp, method: &str, path: &str, token: &str) -> (u16, Value) {
    let response = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.http))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn me(app: &TestApp, token: &str) -> Value {
    app.client
        .get(format!("{}/api/v1/auth/me", app.http))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub(crate) fn accounts(alice_groups: &[&str]) -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice Liddell", "groups": alice_groups},
        "mallory": {"email": "ada@example.com", "email_verified": false, "groups": []},
        "ada": {"email": "ada@example.com", "email_verified": true, "groups": []},
    })
}

#[tokio::test]
async fn first_sign_in_creates_the_account_and_groups_give_and_take_roles() {
    let Some((app, provider)) = world(&accounts(&["litemaas-admins"]), |_, _| {}).await else {
        return;
    };
    assert!(provider.issuer.starts_with("http://127.0.0.1:"));

    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let token = body["token"].as_str().unwrap().to_string();
    let alice = me(&app, &token).await;
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["display_name"], "Alice Liddell");
    assert_eq!(alice["roles"], json!(["user", "admin"]), "{alice}");
    assert_eq!(alice["sso_roles"], json!(["admin"]), "held through a group");
    // Created just in time, with a personal organization like any account.
    let orgs: Value = app
        .client
        .get(format!("{}/api/v1/organizations", app.http))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1, "{orgs}");
    // Her one way to sign in is this identity: it cannot be unlinked.
    let (status, methods) = call(&app, "GET", "/api/v1/auth/methods", &token).await;
    assert_eq!(status, 200);
    assert_eq!(methods["password"], false);
    assert_eq!(methods["sso"][0]["provider"], "corp");
    assert_eq!(methods["sso"][0]["subject"], "alice");
    let (status, body) = call(&app, "DELETE", "/api/v1/auth/sso/corp/identity", &token).await;
    assert_eq!(status, 409, "{body}");

    // Out of the admins' group at the provider: `admin` goes at the next sign-in.
    provider.set_accounts(&accounts(&["litemaas-users"]));
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let again = me(&app, body["token"].as_str().unwrap()).await;
    assert_eq!(again["id"], alice["id"], "the same account");
    assert_eq!(again["roles"], json!(["user"]));
    assert_eq!(again["sso_roles"], json!([]));

    // The sign-ins and the role change are audited.
    let admin = app.sign_in("admin@example.com").await;
    let events: Value = app
        .client
        .get(format!("{}/api/v1/audit-events?limit=500", app.http))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let actions: Vec<&str> = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for action in [
        "auth.sso_register",
        "auth.sso_link",
        "auth.sso_login",
        "auth.sso_roles_changed",
    ] {
        assert!(actions.contains(&action), "{action} in {actions:?}");
    }
}

#[tokio::test]
async fn a_state_is_single_use_and_must_be_ours() {
    let Some((app, _provider)) = world(&accounts(&[]), |_, _| {}).await else {
        return;
    };
    let browser = browser();
    let start = format!("{}/api/v1/auth/sso/corp/start?mode=token", app.http);
    let callback = authorize(&browser, &start, "alice").await;

    // Tampered state: refused, and the real one still works once.
    let tampered = callback.replace("state=", "state=x");
    let response = browser.get(&tampered).send().await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
    let response = browser.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 200);
    // Replayed: the state was used.
    let response = browser.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // A state started for one provider does not finish another's sign-in.
    let callback = authorize(&browser, &start, "alice").await;
    let elsewhere = callback.replace("/sso/corp/", "/sso/other/");
    assert_eq!(browser.get(&elsewhere).send().await.unwrap().status(), 401);
}

#[tokio::test]
async fn a_code_issued_to_another_client_is_refused() {
    // `corp` is configured with a client ID the provider issues no tokens to:
    // its tokens name the client that asked (`someone-else`).
    let Some((app, _provider)) = world(&accounts(&[]), |config, issuer| {
        config.auth.sso.providers[0] =
            provider_config("corp", issuer, "someone-else", "another-secret");
        config.auth.sso.providers[1] = provider_config("other", issuer, CLIENT_ID, CLIENT_SECRET);
    })
    .await
    else {
        return;
    };
    // A code for `someone-else`, redeemed as `gatehouse`: the provider
    // refuses the exchange, or the token's audience is refused.
    let browser = browser();
    let start = format!("{}/api/v1/auth/sso/other/start?mode=token", app.http);
    let callback = authorize(&browser, &start, "alice").await;
    let (flow_state, code) = {
        let query = callback.split('?').nth(1).unwrap();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        let get = |k: &str| pairs.iter().find(|(n, _)| n == k).unwrap().1.clone();
        (get("state"), get("code"))
    };
    // Start a `corp` sign-in to hold a state of its own, and present the
    // other client's code with it.
    let start = format!("{}/api/v1/auth/sso/corp/start?mode=token", app.http);
    let response = browser.get(&start).send().await.unwrap();
    let to = location(&response, &start);
    let corp_state: String = {
        let query = to.split('?').nth(1).unwrap();
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        pairs.into_iter().find(|(n, _)| n == "state").unwrap().1
    };
    assert_ne!(corp_state, flow_state);
    let forged = format!(
        "{}/api/v1/auth/sso/corp/callback?code={code}&state={corp_state}",
        app.http
    );
    let response = browser.get(&forged).send().await.unwrap();
    assert_eq!(response.status(), 401, "{}", response.text().await.unwrap());
}

#[tokio::test]
async fn an_email_is_linked_only_when_both_sides_verified_it() {
    let mut people = accounts(&[]);
    people["bob"] = json!({"email": "bob@example.com", "email_verified": true});
    let Some((app, _provider)) = world(&people, |_, _| {}).await else {
        return;
    };
    // Ada signs in through `corp` first: her account is created, with the
    // address the provider verified.
    let (status, body) = sign_in(&app, "ada").await;
    assert_eq!(status, 200, "{body}");
    let ada = me(&app, body["token"].as_str().unwrap()).await;
    assert_eq!(ada["email_verified"], true);
    // Mallory's provider account claims the same address, unverified: refused.
    let (status, body) = sign_in(&app, "mallory").await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (409, &json!("conflict")),
        "{body}"
    );
    // Through `other`, Ada is a new identity with a verified address that
    // matches her verified one: linked, the same account.
    let (status, body) = sign_in_through(&app, "other", "ada").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        me(&app, body["token"].as_str().unwrap()).await["id"],
        ada["id"]
    );
    // Bob has a password account whose address he never verified: the
    // provider's word alone does not take it over.
    let admin = app.first_admin().await;
    app.create_user(&admin, "bob").await;
    let (status, body) = sign_in(&app, "bob").await;
    assert_eq!(status, 409, "{body}");
    app.sign_in("bob@example.com").await;
}

#[tokio::test]
async fn a_browser_gets_a_session_and_goes_back_where_it_started() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    let app = gatehouse(&issuer, |config| {
        config.auth.sso.redirect_origins = vec!["https://console.example.com".into()];
    })
    .await;
    // Another origin is refused before anything is kept.
    let start = format!(
        "{}/api/v1/auth/sso/corp/start?redirect_to=https://evil.example.net/x",
        app.http
    );
    let response = browser().get(&start).send().await.unwrap();
    assert_eq!(response.status(), 400);
    for sneaky in ["//evil.example.net/x", "/\\evil.example.net"] {
        let start = format!(
            "{}/api/v1/auth/sso/corp/start?{}",
            app.http,
            serde_urlencoded::to_string([("redirect_to", sneaky)]).unwrap()
        );
        assert_eq!(
            browser().get(&start).send().await.unwrap().status(),
            400,
            "{sneaky}"
        );
    }
    let Some(_provider) = start_provider(port, &app.http, &accounts(&[])).await else {
        return;
    };
    let browser = browser();
    let start = format!(
        "{}/api/v1/auth/sso/corp/start?redirect_to=https://console.example.com/keys",
        app.http
    );
    let callback = authorize(&browser, &start, "alice").await;
    let response = browser.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(
        response.headers()["location"],
        "https://console.example.com/keys"
    );
    // The session cookie signs the browser in.
    let me = browser
        .get(format!("{}/api/v1/auth/me", app.http))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["email"], "alice@example.com");
}

#[tokio::test]
async fn an_answer_naming_another_issuer_is_refused() {
    let Some((app, _provider)) = world(&accounts(&[]), |_, _| {}).await else {
        return;
    };
    // The callback names another issuer (the RFC 9207 mix-up defence).
    let browser = browser();
    let start = format!("{}/api/v1/auth/sso/corp/start?mode=token", app.http);
    let callback = authorize(&browser, &start, "alice").await;
    assert!(callback.contains("iss="), "{callback}");
    let mixed = callback.replace("iss=", "iss=https%3A%2F%2Fevil.example.net&was=");
    let response = browser.get(&mixed).send().await.unwrap();
    assert_eq!(response.status(), 401);
    // An unknown provider's callback is not found.
    let elsewhere = callback.replace("/sso/corp/", "/sso/nowhere/");
    assert_eq!(browser.get(&elsewhere).send().await.unwrap().status(), 404);
}

#[tokio::test]
async fn a_plain_oauth2_provider_is_read_through_its_userinfo() {
    let port = free_port();
    let issuer = format!("http://127.0.0.1:{port}");
    // The same provider, used the way OpenShift is: no discovery, no ID
    // token; who signed in comes from the userinfo URL at JSON pointers.
    let app = gatehouse(&issuer, |config| {
        let plain: SsoProviderConfig = serde_json::from_value(json!({
            "id": "plain",
            "client_id": CLIENT_ID,
            "client_secret": CLIENT_SECRET,
            "scopes": ["openid", "email", "profile", "groups"],
            "oauth2": {
                "authorization_url": format!("{issuer}/auth"),
                "token_url": format!("{issuer}/token"),
                "userinfo_url": format!("{issuer}/me"),
                "subject_pointer": "/sub",
                "email_pointer": "/email",
                "name_pointer": "/name",
                "groups_pointer": "/groups",
            },
            "role_mapping": {"litemaas-admins": ["admin"]},
        }))
        .unwrap();
        config.auth.sso.providers.push(plain);
    })
    .await;
    let Some(provider) = start_provider(port, &app.http, &accounts(&["litemaas-admins"])).await
    else {
        return;
    };
    let (status, body) = sign_in_through(&app, "plain", "alice").await;
    assert_eq!(status, 200, "{body}");
    let alice = me(&app, body["token"].as_str().unwrap()).await;
    assert_eq!(alice["email"], "alice@example.com");
    assert_eq!(alice["roles"], json!(["user", "admin"]));
    // Without an email_verified pointer the address counts as unverified.
    assert_eq!(alice["email_verified"], false);
    provider.set_accounts(&accounts(&[]));
    let (status, body) = sign_in_through(&app, "plain", "alice").await;
    assert_eq!(status, 200, "{body}");
    let again = me(&app, body["token"].as_str().unwrap()).await;
    assert_eq!(
        (&again["id"], &again["roles"]),
        (&alice["id"], &json!(["user"]))
    );
}

#[tokio::test]
async fn a_domain_that_requires_single_sign_on_refuses_passwords() {
    let mut config = admin_config();
    config.auth.sso.required_for_domains = vec!["Corp.Example".into()];
    let app = spawn_app(config).await;
    let admin = app.first_admin().await;
    // Accounts of other domains (the admin's included) sign in as before.
    app.create_user(&admin, "bob").await;
    app.sign_in("bob@example.com").await;
    app.services
        .accounts
        .admin_create_user(
            &admin,
            gatehouse_core::accounts::AdminNewUser::new(
                "carol@corp.example",
                Some(crate::helpers::PASSWORD),
            ),
            &Default::default(),
        )
        .await
        .unwrap();
    let (status, body) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "carol@corp.example", "password": crate::helpers::PASSWORD}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("single sign-on"),
        "{body}"
    );
    // A wrong password is still the plain 401: the domain's rule tells nothing
    // to whoever does not hold the password.
    let (status, _) = app
        .post(
            "/api/v1/auth/login",
            None,
            json!({"login": "carol@corp.example", "password": "not the password at all"}),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn groups_make_organization_and_team_memberships_and_take_them_back() {
    let groups = ["litemaas-users", "research"];
    let Some((app, provider)) = world(&accounts(&groups), |config, _| {
        let corp = &mut config.auth.sso.providers[0];
        corp.org_mapping = serde_json::from_value(json!([
            {"group": "litemaas-users", "organization": "acme"},
            {"group": "research", "organization": "acme", "teams": ["research"]},
        ]))
        .unwrap();
    })
    .await
    else {
        return;
    };
    let admin = app.sign_in("admin@example.com").await;
    let (status, org) = call_with(
        &app,
        "POST",
        "/api/v1/organizations",
        &admin,
        json!({"name": "acme"}),
    )
    .await;
    assert_eq!(status, 201, "{org}");
    let org_id = org["id"].as_str().unwrap().to_string();
    let teams = format!("/api/v1/organizations/{org_id}/teams");
    let (status, team) = call_with(&app, "POST", &teams, &admin, json!({"name": "research"})).await;
    assert_eq!(status, 201, "{team}");
    let team_id = team["id"].as_str().unwrap().to_string();

    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let alice = me(&app, body["token"].as_str().unwrap()).await;
    let alice_id = alice["id"].as_str().unwrap().to_string();
    let members = format!("/api/v1/organizations/{org_id}/members?limit=500");
    let (_, listed) = call(&app, "GET", &members, &admin).await;
    let member = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["user_id"] == alice_id.as_str())
        .unwrap_or_else(|| panic!("alice is a member: {listed}"));
    assert_eq!(member["role"], "member");
    let team_members = format!("/api/v1/organizations/{org_id}/teams/{team_id}/members?limit=500");
    let (_, on_team) = call(&app, "GET", &team_members, &admin).await;
    assert!(on_team.to_string().contains(&alice_id), "{on_team}");

    // Out of the research group: off the team, still in the organization.
    provider.set_accounts(&accounts(&["litemaas-users"]));
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = call(&app, "GET", &members, &admin).await;
    assert!(listed.to_string().contains(&alice_id), "{listed}");
    let (_, on_team) = call(&app, "GET", &team_members, &admin).await;
    assert!(!on_team.to_string().contains(&alice_id), "{on_team}");
    // Back in it, then out of every group: out of the organization and its teams.
    provider.set_accounts(&accounts(&groups));
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let (_, on_team) = call(&app, "GET", &team_members, &admin).await;
    assert!(on_team.to_string().contains(&alice_id), "{on_team}");
    provider.set_accounts(&accounts(&[]));
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = call(&app, "GET", &members, &admin).await;
    assert!(!listed.to_string().contains(&alice_id), "{listed}");
    let (_, on_team) = call(&app, "GET", &team_members, &admin).await;
    assert!(!on_team.to_string().contains(&alice_id), "{on_team}");
}

async fn call_with(
    app: &TestApp,
    method: &str,
    path: &str,
    token: &str,
    body: Value,
) -> (u16, Value) {
    let response = app
        .client
        .request(method.parse().unwrap(), format!("{}{path}", app.http))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_deleted_account_leaves_its_identity_free_for_a_new_one() {
    let Some((app, _provider)) = world(&accounts(&[]), |_, _| {}).await else {
        return;
    };
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let first = me(&app, body["token"].as_str().unwrap()).await;
    let admin = app.bearer("admin@example.com").await;
    let path = format!("/api/v1/users/{}", first["id"].as_str().unwrap());
    let (status, _) = app.by(&admin).delete(&path).await;
    assert_eq!(status, 204);
    // At once, before the removal has reached the identity: a new account.
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    let second = me(&app, body["token"].as_str().unwrap()).await;
    assert_eq!(second["email"], "alice@example.com");
    assert_ne!(second["id"], first["id"]);
    // The removal finishing leaves the new link alone.
    app.services.finish_removals().await.unwrap();
    let (status, body) = sign_in(&app, "alice").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        me(&app, body["token"].as_str().unwrap()).await["id"],
        second["id"]
    );
}
