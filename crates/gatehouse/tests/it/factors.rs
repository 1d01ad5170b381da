//! Passkeys and the TOTP second factor through the real server: a software
//! authenticator (`webauthn-authenticator-rs`'s `SoftToken`, which keeps a
//! sign count and can be copied) plays the browser's authenticator, and the
//! test computes app codes with `totp-rs` from the enrolment's secret.

use serde_json::{Value, json};
use webauthn_authenticator_rs::AuthenticatorBackend;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softtoken::SoftToken;
use webauthn_rs_proto::AllowCredentials;

use crate::helpers::{PASSWORD, TestApp, admin_config, spawn_app};

/// Where the test server's passkeys are bound: `tokens.issuer` by default.
const ORIGIN: &str = "http://localhost:3000";

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let header = bearer.map(|b| ("authorization", b));
    app.post(path, header, body).await
}

/// Registers a passkey on `token` for the holder of `bearer`; its credential ID.
async fn register(app: &TestApp, bearer: &str, token: &mut SoftToken, name: &str) -> Vec<u8> {
    let start = "/api/v1/auth/passkeys/register/start";
    let (status, body) = post(app, start, Some(bearer), json!({})).await;
    assert_eq!(status, 400, "registration asks for the password: {body}");
    let (status, body) = post(app, start, Some(bearer), json!({"password": PASSWORD})).await;
    assert_eq!(status, 200, "{body}");
    let options: CreationChallengeResponse =
        serde_json::from_value(body["options"].clone()).unwrap();
    assert_eq!(options.public_key.rp.id, "localhost");
    let credential = token
        .perform_register(origin(), options.public_key, 60_000)
        .expect("the authenticator makes a credential");
    let id = credential.raw_id.to_vec();
    let finish = json!({
        "challenge_id": body["challenge_id"],
        "name": name,
        "credential": credential,
    });
    let path = "/api/v1/auth/passkeys/register/finish";
    let (status, answer) = post(app, path, Some(bearer), finish.clone()).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(answer["name"], name);
    let (status, _) = post(app, path, Some(bearer), finish).await;
    assert_eq!(status, 401, "a registration challenge is single use");
    id
}

/// Signs in with the passkey `credential_id` on `token` alone; the status
/// and answer. The test plays the browser's account chooser: the server
/// asks for any passkey (a discoverable credential), and the browser picks
/// this one.
async fn passkey_sign_in(
    app: &TestApp,
    token: &mut SoftToken,
    credential_id: &[u8],
) -> (u16, Value) {
    let (status, body) = post(app, "/api/v1/auth/passkeys/login/start", None, json!({})).await;
    assert_eq!(status, 200, "{body}");
    let mut options: RequestChallengeResponse =
        serde_json::from_value(body["options"].clone()).unwrap();
    assert!(
        options.public_key.allow_credentials.is_empty(),
        "no username first: any passkey for this server will do"
    );
    options.public_key.allow_credentials = vec![AllowCredentials {
        type_: "public-key".into(),
        id: credential_id.to_vec().into(),
        transports: None,
    }];
    let assertion = token
        .perform_auth(origin(), options.public_key, 60_000)
        .expect("the authenticator signs");
    let finish = json!({"challenge_id": body["challenge_id"], "credential": assertion});
    post(app, "/api/v1/auth/passkeys/login/finish", None, finish).await
}

/// Registers a passkey for `user` through the service (for fixtures).
pub async fn passkey_for(
    services: &gatehouse_core::services::Services,
    user: gatehouse_core::Id,
    name: &str,
) {
    let c = gatehouse_core::model::sessions::ClientInfo::default();
    let accounts = &services.accounts;
    let started = accounts
        .start_passkey_registration(user, Some(PASSWORD), None, &c)
        .await
        .unwrap();
    let (mut token, _) = SoftToken::new(true).unwrap();
    let credential = token
        .perform_register(origin(), started.options.public_key, 60_000)
        .unwrap();
    accounts
        .finish_passkey_registration(user, &started.challenge_id, name, &credential, &c)
        .await
        .unwrap();
}

async fn audited(app: &TestApp, admin: &str, action: &str) -> Vec<Value> {
    let path = format!("/api/v1/audit-events?action={action}");
    let (status, body) = app.by(admin).get(&path).await;
    assert_eq!(status, 200, "{body}");
    body["items"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_passkey_signs_in_alone_and_a_cloned_one_is_refused() {
    let app = spawn_app(admin_config()).await;
    let admin = app.first_admin().await;
    let ada = app.create_user(&admin, "ada").await;
    let bearer = app.bearer("ada@example.com").await;
    let (mut token, _) = SoftToken::new(true).unwrap();
    let credential = register(&app, &bearer, &mut token, "laptop").await;
    // A copy of the authenticator as it is now, sign count and all.
    let copy = token.to_cbor().unwrap();

    let auth = Some(("authorization", bearer.as_str()));
    let (_, listed) = app.get("/api/v1/auth/passkeys", auth).await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let id = listed["items"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/auth/passkeys/{id}");
    let (status, renamed) = app.patch(&path, auth, json!({"name": "work laptop"})).await;
    assert_eq!(
        (status, renamed["name"].as_str()),
        (200, Some("work laptop"))
    );
    let (_, methods) = app.get("/api/v1/auth/methods", auth).await;
    assert_eq!(methods["passkeys"], 1, "{methods}");

    // Signed out, the passkey alone signs in (twice: the count goes up).
    let (status, _) = app.post("/api/v1/auth/logout", auth, None).await;
    assert_eq!(status, 204);
    for _ in 0..2 {
        let (status, body) = passkey_sign_in(&app, &mut token, &credential).await;
        assert_eq!(status, 200, "{body}");
        let jwt = format!("Bearer {}", body["token"].as_str().unwrap());
        let (_, me) = app.by(&jwt).get("/api/v1/auth/me").await;
        assert_eq!(me["id"], ada.id.to_string());
    }

    // A challenge works once: the same answer sent again is refused.
    let (_, body) = post(&app, "/api/v1/auth/passkeys/login/start", None, json!({})).await;
    let mut options: RequestChallengeResponse =
        serde_json::from_value(body["options"].clone()).unwrap();
    options.public_key.allow_credentials = vec![AllowCredentials {
        type_: "public-key".into(),
        id: credential.clone().into(),
        transports: None,
    }];
    let assertion = token
        .perform_auth(origin(), options.public_key, 60_000)
        .unwrap();
    let finish = json!({"challenge_id": body["challenge_id"], "credential": assertion});
    let finish_path = "/api/v1/auth/passkeys/login/finish";
    let (status, _) = post(&app, finish_path, None, finish.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = post(&app, finish_path, None, finish).await;
    assert_eq!(status, 401, "a replayed answer");
    let (status, _) = post(&app, finish_path, None, json!({"challenge_id": "forged", "credential": {"id": "x", "rawId": "eA", "response": {"authenticatorData": "", "clientDataJSON": "", "signature": ""}, "type": "public-key"}})).await;
    assert!(
        status == 401 || status == 400,
        "a forged challenge: {status}"
    );
    // The copy signs with a count below the one seen: refused, and audited.
    let mut clone = SoftToken::from_cbor(&copy).unwrap();
    let (status, body) = passkey_sign_in(&app, &mut clone, &credential).await;
    assert_eq!(status, 401, "{body}");
    let admin_bearer = app.bearer("admin@example.com").await;
    let events = audited(&app, &admin_bearer, "auth.passkey_login").await;
    assert!(
        events.iter().any(|e| e["outcome"] == "failure"
            && e["details"]["reason"] == "sign_count_regression"),
        "{events:?}"
    );

    // Deleted, it is an unknown credential.
    let bearer = app.bearer("ada@example.com").await;
    let auth = Some(("authorization", bearer.as_str()));
    let (status, _) = app.delete(&path, auth).await;
    assert_eq!(status, 204);
    let (status, _) = passkey_sign_in(&app, &mut token, &credential).await;
    assert_eq!(status, 401);
    let events = audited(&app, &admin_bearer, "auth.passkey_login").await;
    assert!(
        events
            .iter()
            .any(|e| e["details"]["reason"] == "unknown_credential"),
        "{events:?}"
    );
    app.stop().await;
}

/// The code an authenticator app shows for `secret` (base32), `steps` 30-second
/// steps from now (the server accepts one step of drift either way).
fn app_code(secret: &str, steps: u64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .unwrap();
    let totp = totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        String::new(),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    totp.generate(now + 30 * steps)
}

/// Enrols an authenticator app for the holder of `bearer`: its secret and
/// recovery codes.
async fn enrol(app: &TestApp, bearer: &str) -> (String, Vec<String>) {
    let (status, body) = post(
        app,
        "/api/v1/auth/mfa/totp",
        Some(bearer),
        json!({"password": PASSWORD}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["qr_svg"].as_str().unwrap().starts_with("<?xml"),
        "{body}"
    );
    assert!(
        body["otpauth_uri"]
            .as_str()
            .unwrap()
            .starts_with("otpauth://totp/")
    );
    let secret = body["secret"].as_str().unwrap().to_string();
    let confirm = json!({"code": app_code(&secret, 0)});
    let (status, body) = post(app, "/api/v1/auth/mfa/totp/confirm", Some(bearer), confirm).await;
    assert_eq!(status, 200, "{body}");
    let codes = body["recovery_codes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap().to_string())
        .collect::<Vec<_>>();
    assert_eq!(codes.len(), 10);
    (secret, codes)
}

async fn password_step(app: &TestApp, mode: &str) -> String {
    let login = json!({"login": "ada@example.com", "password": PASSWORD, "mode": mode});
    let (status, body) = post(app, "/api/v1/auth/login", None, login).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["mfa_required"], true, "{body}");
    assert!(
        body.get("token").is_none(),
        "no token before the second factor"
    );
    body["mfa_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn password_and_totp_sign_in_and_a_recovery_code_works_once() {
    let app = spawn_app(admin_config()).await;
    let admin = app.first_admin().await;
    app.create_user(&admin, "ada").await;
    let bearer = app.bearer("ada@example.com").await;
    let (secret, recovery) = enrol(&app, &bearer).await;

    // Password, then a wrong code, then the right one: a browser session, as
    // the first step asked.
    let mfa_token = password_step(&app, "session").await;
    let wrong = json!({"mfa_token": mfa_token, "code": "12345"});
    let (status, _) = post(&app, "/api/v1/auth/login/mfa", None, wrong).await;
    assert_eq!(status, 401);
    let right = json!({"mfa_token": mfa_token, "code": app_code(&secret, 1)});
    let response = app
        .client
        .post(app.url("/api/v1/auth/login/mfa"))
        .json(&right)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let cookies: Vec<_> = response
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    assert!(
        cookies.iter().any(|c| c.starts_with("gatehouse_session=")),
        "{cookies:?}"
    );
    let (status, _) = post(&app, "/api/v1/auth/login/mfa", None, right).await;
    assert_eq!(status, 401, "the second-step token is single use");

    // A recovery code works once.
    let mfa_token = password_step(&app, "token").await;
    let code = json!({"mfa_token": mfa_token, "code": recovery[0]});
    let (status, body) = post(&app, "/api/v1/auth/login/mfa", None, code).await;
    assert_eq!(status, 200, "{body}");
    let jwt = format!("Bearer {}", body["token"].as_str().unwrap());
    let mfa_token = password_step(&app, "token").await;
    let again = json!({"mfa_token": mfa_token, "code": recovery[0]});
    let (status, _) = post(&app, "/api/v1/auth/login/mfa", None, again).await;
    assert_eq!(status, 401, "a used recovery code fails");
    let auth = Some(("authorization", jwt.as_str()));
    let (_, methods) = app.get("/api/v1/auth/methods", auth).await;
    assert_eq!(
        (
            methods["totp"].as_bool(),
            methods["recovery_codes_left"].as_u64()
        ),
        (Some(true), Some(9))
    );
    app.stop().await;
}

#[tokio::test]
async fn an_admin_without_a_second_factor_is_told_to_enrol_when_one_is_required() {
    let mut config = admin_config();
    config.auth.mfa.required_for_admins = true;
    let app = spawn_app(config).await;
    let admin = app.first_admin().await;
    app.create_user(&admin, "ada").await;
    let bearer = app.bearer("admin@example.com").await;
    let auth = Some(("authorization", bearer.as_str()));
    let (status, body) = app.get("/api/v1/users", auth).await;
    assert_eq!(status, 403, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("/api/v1/auth/mfa/totp"), "{body}");
    let (_, methods) = app.get("/api/v1/auth/methods", auth).await;
    assert_eq!(methods["second_factor_required"], true, "{methods}");
    // Users without admin are not asked.
    let user = app.bearer("ada@example.com").await;
    let (status, _) = app.by(&user).get("/api/v1/api-keys").await;
    assert_eq!(status, 200);
    enrol(&app, &bearer).await;
    let (status, body) = app.get("/api/v1/users", auth).await;
    assert_eq!(status, 200, "enrolled, the admin may act: {body}");
    app.stop().await;
}
