//! ID tokens that must be refused: for another audience, expired, or with
//! another nonce than the sign-in's. A real provider cannot be made to issue
//! them, so a forger stands between Gatehouse and the real `oidc-provider`:
//! it publishes the provider's discovery document with itself as issuer,
//! token endpoint and JWKS, passes each code exchange on to the provider,
//! and re-signs the ID token it gets back with its own key (committed in
//! `tests/oidc/forger-key.pem`, test-only) after changing one claim. The
//! untouched re-signed token signs in, so each refusal is the changed
//! claim's doing.

use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::helpers::TestApp;
use crate::sso::{Provider, accounts, authorize, browser, gatehouse, start_provider};

#[derive(Clone, Copy, PartialEq, Debug)]
enum Tamper {
    Nothing,
    Audience,
    Expired,
    Nonce,
}

struct Forger {
    me: String,
    real: Mutex<Option<String>>,
    tamper: Mutex<Tamper>,
    http: reqwest::Client,
}

impl Forger {
    fn real(&self) -> String {
        self.real.lock().clone().expect("the real provider is up")
    }

    async fn real_metadata(&self) -> Value {
        let url = format!("{}/.well-known/openid-configuration", self.real());
        self.http
            .get(url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

async fn discovery(State(f): State<Arc<Forger>>) -> axum::Json<Value> {
    let mut metadata = f.real_metadata().await;
    metadata["issuer"] = json!(f.me);
    metadata["token_endpoint"] = json!(format!("{}/token", f.me));
    metadata["jwks_uri"] = json!(format!("{}/jwks", f.me));
    metadata["id_token_signing_alg_values_supported"] = json!(["RS256"]);
    // The real provider names itself in its answers (RFC 9207); the test
    // drops that name, as the forger cannot change it.
    if let Some(m) = metadata.as_object_mut() {
        m.remove("authorization_response_iss_parameter_supported");
    }
    axum::Json(metadata)
}

async fn jwks() -> axum::Json<Value> {
    let jwk: Value = serde_json::from_str(include_str!("../oidc/forger-jwk.json")).unwrap();
    axum::Json(json!({"keys": [jwk]}))
}

async fn token(
    State(f): State<Arc<Forger>>,
    headers: HeaderMap,
    body: String,
) -> impl IntoResponse {
    let endpoint = f.real_metadata().await["token_endpoint"]
        .as_str()
        .unwrap()
        .to_string();
    let mut request = f
        .http
        .post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    if let Some(auth) = headers.get("authorization") {
        request = request.header("authorization", auth.to_str().unwrap());
    }
    let mut answer: Value = request.send().await.unwrap().json().await.unwrap();
    let id_token = answer["id_token"]
        .as_str()
        .expect("an ID token")
        .to_string();
    let payload = id_token.split('.').nth(1).unwrap();
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload)
        .unwrap();
    let mut claims: Value = serde_json::from_slice(&bytes).unwrap();
    claims["iss"] = json!(f.me);
    let now = claims["iat"].as_i64().unwrap();
    match *f.tamper.lock() {
        Tamper::Nothing => {}
        Tamper::Audience => claims["aud"] = json!("someone-else"),
        Tamper::Expired => {
            claims["iat"] = json!(now - 7200);
            claims["exp"] = json!(now - 3600);
        }
        Tamper::Nonce => claims["nonce"] = json!("not-the-nonce-of-this-sign-in"),
    }
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = Some("forger".into());
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(include_bytes!("../oidc/forger-key.pem")).unwrap();
    answer["id_token"] = json!(jsonwebtoken::encode(&header, &claims, &key).unwrap());
    axum::Json(answer)
}

/// Gatehouse whose provider `corp` is the forger, the real provider behind
/// it, and the forger's tamper switch.
async fn forged_world() -> Option<(TestApp, Provider, Arc<Forger>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let me = format!("http://{}", listener.local_addr().unwrap());
    let forger = Arc::new(Forger {
        me: me.clone(),
        real: Mutex::new(None),
        tamper: Mutex::new(Tamper::Nothing),
        http: reqwest::Client::new(),
    });
    let router = axum::Router::new()
        .route("/.well-known/openid-configuration", get(discovery))
        .route("/jwks", get(jwks))
        .route("/token", post(token))
        .with_state(forger.clone());
    tokio::spawn(async move { axum::serve(listener, router).await });
    let app = gatehouse(&me, |_| {}).await;
    let port = crate::sso::free_port();
    let provider = start_provider(port, &app.http, &accounts(&[])).await?;
    *forger.real.lock() = Some(provider.issuer.clone());
    Some((app, provider, forger))
}

/// A whole sign-in through the forger; the callback's status and answer.
async fn sign_in(app: &TestApp) -> (u16, Value) {
    let browser = browser();
    let start = format!("{}/api/v1/auth/sso/corp/start?mode=token", app.http);
    let callback = authorize(&browser, &start, "alice").await;
    let callback = callback.replace("iss=", "real_iss=");
    let response = browser.get(&callback).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn id_tokens_for_another_audience_expired_or_with_another_nonce_are_refused() {
    let Some((app, _provider, forger)) = forged_world().await else {
        return;
    };
    // Re-signed but unchanged: it signs in.
    let (status, body) = sign_in(&app).await;
    assert_eq!(status, 200, "the forger's untouched token signs in: {body}");
    for tamper in [Tamper::Audience, Tamper::Expired, Tamper::Nonce] {
        *forger.tamper.lock() = tamper;
        let (status, body) = sign_in(&app).await;
        assert_eq!(status, 401, "{tamper:?}: {body}");
        // Refused for the changed claim, not anything else.
        let why = match tamper {
            Tamper::Audience => "audience",
            Tamper::Expired => "expired",
            _ => "nonce",
        };
        let message = body["error"]["message"].as_str().unwrap().to_lowercase();
        assert!(message.contains(why), "{tamper:?}: {message}");
        assert_eq!(
            body["error"]["code"], "unauthenticated",
            "{tamper:?}: {body}"
        );
    }
    app.stop().await;
}
