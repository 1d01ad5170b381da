//! Vaults, service clients and token issuance through the real server. The
//! client side is written with an independent JWT library (`jsonwebtoken`):
//! it signs assertions with the PEM private key Gatehouse hands out, and
//! verifies vault tokens with nothing but the JWKS document.

use std::time::{SystemTime, UNIX_EPOCH};

use gatehouse_core::model::sessions::ClientInfo;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin_config, sdk_script, spawn_app};

const ISSUER: &str = "https://gatehouse.test";

struct World {
    app: TestApp,
    /// The organization owner's bearer header value.
    owner: String,
    /// A member with no grant of their own.
    member: String,
    member_id: String,
    org: String,
    vault: String,
    client: String,
    kid: String,
    /// The client's private key, PKCS#8 PEM, as Gatehouse returned it once.
    pem: String,
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn sign_in(app: &TestApp, email: &str) -> String {
    app.bearer(email).await
}

impl World {
    async fn new() -> World {
        let mut config = admin_config();
        config.tokens.issuer = ISSUER.into();
        let app = spawn_app(config).await;
        let s = &app.services;
        let c = ClientInfo::default();
        let admin = app.first_admin().await;
        for name in ["owner", "member"] {
            app.create_user(&admin, name).await;
        }
        let owner = sign_in(&app, "owner@example.com").await;
        let member = sign_in(&app, "member@example.com").await;
        let (_, org) = app
            .by(&owner)
            .post("/api/v1/organizations", json!({"name": "Acme"}))
            .await;
        let org = org["id"].as_str().unwrap().to_string();
        // The member joins through an invitation.
        let member_user = s
            .accounts
            .authenticate_token(member.trim_start_matches("Bearer "))
            .await
            .unwrap()
            .0;
        let owner_user = s
            .accounts
            .authenticate_token(owner.trim_start_matches("Bearer "))
            .await
            .unwrap()
            .0;
        let invited = s
            .tenancy
            .invite(
                &owner_user,
                org.parse().unwrap(),
                "member@example.com",
                gatehouse_core::model::tenancy::OrgRole::Member,
                &c,
            )
            .await
            .unwrap();
        s.tenancy
            .accept_invitation(&member_user, &invited.token, &c)
            .await
            .unwrap();
        let (status, vault) = app
            .by(&owner)
            .post(
                &format!("/api/v1/organizations/{org}/vaults"),
                json!({"name": "Secrets"}),
            )
            .await;
        assert_eq!(status, 201, "{vault}");
        assert_eq!(vault["sync_status"], "not_configured");
        let vault = vault["id"].as_str().unwrap().to_string();
        let (status, client) = app
            .by(&owner)
            .post(
                &format!("/api/v1/organizations/{org}/clients"),
                json!({"name": "billing-service"}),
            )
            .await;
        assert_eq!(status, 201, "{client}");
        let client = client["id"].as_str().unwrap().to_string();
        let (status, cert) = app
            .by(&owner)
            .post(
                &format!("/api/v1/organizations/{org}/clients/{client}/certificates"),
                json!({}),
            )
            .await;
        assert_eq!(status, 201, "{cert}");
        let pem = cert["private_key"].as_str().unwrap().to_string();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
        // PKCS#8 v1 (RFC 8410), the form OpenSSL 3 and Python's
        // `cryptography` read: version 0, the seed, no public key.
        let der: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let der = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, der).unwrap();
        assert_eq!(
            (der.len(), &der[..5]),
            (48, &[0x30, 0x2e, 0x02, 0x01, 0x00][..])
        );
        assert_eq!(cert["private_key_kept"], false);
        let kid = cert["kid"].as_str().unwrap().to_string();
        // The private key is shown once: listing shows only public keys.
        let (_, certs) = app
            .by(&owner)
            .get(&format!(
                "/api/v1/organizations/{org}/clients/{client}/certificates"
            ))
            .await;
        assert!(certs["items"][0].get("private_key").is_none());
        assert_eq!(certs["items"][0]["jwk"]["kty"], "OKP");
        World {
            app,
            owner,
            member,
            member_id: member_user.id.to_string(),
            org,
            vault,
            client,
            kid,
            pem,
        }
    }

    fn assertion(&self, claims: Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let key = EncodingKey::from_ed_pem(self.pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, &claims, &key).unwrap()
    }

    fn claims(&self) -> Value {
        json!({
            "iss": self.client, "sub": self.client,
            "aud": format!("{ISSUER}/api/v1/token"),
            "iat": now(), "exp": now() + 30,
            "jti": format!("jti-{}", rand_suffix()),
        })
    }

    async fn grant(&self, subject_type: &str, subject_id: &str, role: &str) {
        let (status, body) = self
            .app
            .by(&self.owner)
            .put(
                &format!(
                    "/api/v1/organizations/{}/vaults/{}/grants",
                    self.org, self.vault
                ),
                json!({"subject_type": subject_type, "subject_id": subject_id, "role": role}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    /// Posts a form to the token endpoint.
    async fn token(&self, form: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .app
            .client
            .post(self.app.url("/api/v1/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(serde_urlencoded::to_string(form).unwrap())
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }

    async fn exchange(&self, assertion: &str) -> (u16, Value) {
        self.token(&[
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
            ("vault_id", &self.vault),
        ])
        .await
    }

    async fn refresh(&self, token: &str) -> (u16, Value) {
        self.token(&[("grant_type", "refresh_token"), ("refresh_token", token)])
            .await
    }

    /// Verifies an access token with only the JWKS document.
    async fn verify(&self, token: &str) -> Result<Value, jsonwebtoken::errors::Error> {
        let (status, jwks) = self.app.get_json("/.well-known/jwks.json").await;
        assert_eq!(status, 200);
        let set: JwkSet = serde_json::from_value(jwks).unwrap();
        let header = jsonwebtoken::decode_header(token)?;
        let jwk = set
            .find(header.kid.as_deref().unwrap_or_default())
            .ok_or(jsonwebtoken::errors::ErrorKind::InvalidKeyFormat)?;
        let key = DecodingKey::from_jwk(jwk)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[ISSUER]);
        validation.set_audience(&[ISSUER]);
        Ok(jsonwebtoken::decode::<Value>(token, &key, &validation)?.claims)
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed) * 1_000_003 + now() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gets_a_vault_token_verifiable_with_only_the_jwks_and_refresh_rotates() {
    let w = World::new().await;
    w.grant("client", &w.client, "writer").await;
    let (status, tokens) = w.exchange(&w.assertion(w.claims())).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["expires_in"], 300);
    let claims = w
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub"], w.client.as_str());
    assert_eq!(claims["sub_type"], "client");
    assert_eq!(claims["org"], w.org.as_str());
    assert_eq!(claims["vault"], w.vault.as_str());
    assert_eq!(claims["role"], "writer");
    assert_eq!(claims["scope"], "vault:read vault:write");
    let exp = claims["exp"].as_i64().unwrap();
    assert!((now() + 290..=now() + 301).contains(&exp), "five minutes");
    // A tampered token does not verify.
    let access = tokens["access_token"].as_str().unwrap();
    let mut forged = access.to_string();
    forged.pop();
    forged.push(if access.ends_with('A') { 'B' } else { 'A' });
    assert!(w.verify(&forged).await.is_err());

    // Refresh: a new pair; the old refresh token is spent.
    let first = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, next) = w.refresh(&first).await;
    assert_eq!(status, 200, "{next}");
    let second = next["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert_eq!(
        next["refresh_expires_at"], tokens["refresh_expires_at"],
        "rotation never extends the family"
    );
    w.verify(next["access_token"].as_str().unwrap())
        .await
        .unwrap();
    // Replaying the spent one revokes the whole family, the newest token too.
    let (status, body) = w.refresh(&first).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthenticated");
    let (status, _) = w.refresh(&second).await;
    assert_eq!(status, 401, "the family is revoked");
    let (_, events) = w
        .app
        .by(&sign_in(&w.app, "admin@example.com").await)
        .get("/api/v1/audit-events")
        .await;
    let revoked = events["items"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "tokens.family_revoked");
    assert!(revoked, "an audit event says so: {events}");
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_service_gets_and_verifies_a_vault_token_with_pyjwt() {
    let Some(python) = crate::helpers::sdk_python() else {
        return;
    };
    let w = World::new().await;
    w.grant("client", &w.client, "reader").await;
    let dir = tempfile::tempdir().unwrap();
    let pem = dir.path().join("client.pem");
    std::fs::write(&pem, &w.pem).unwrap();
    let (base, pem) = (w.app.url(""), pem.to_string_lossy());
    let args = [base.as_str(), &pem, &w.kid, &w.client, &w.vault, ISSUER];
    let answer = sdk_script(&python, "pyjwt_vault_token.py", &args).await;
    assert_eq!(
        answer,
        [json!({"status": 200, "sub": w.client, "vault": w.vault, "role": "reader"})]
    );
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_assertions_are_refused() {
    let w = World::new().await;
    // No grant yet: refused, and the assertion is spent all the same.
    let claims = w.claims();
    let no_grant = w.assertion(claims.clone());
    let (status, body) = w.exchange(&no_grant).await;
    assert_eq!(status, 403, "{body}");
    w.grant("client", &w.client, "reader").await;
    let (status, _) = w.exchange(&no_grant).await;
    assert_eq!(status, 401, "its jti is spent");

    let good = w.assertion(w.claims());
    let (status, body) = w.exchange(&good).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = w.exchange(&good).await;
    assert_eq!(status, 401, "replayed jti: {body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("jti"));

    let mut expired = w.claims();
    expired["iat"] = json!(now() - 50);
    expired["exp"] = json!(now() - 10);
    let (status, body) = w.exchange(&w.assertion(expired)).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    let mut too_long = w.claims();
    too_long["exp"] = json!(now() + 3600);
    assert_eq!(
        w.exchange(&w.assertion(too_long)).await.0,
        401,
        "exp more than 60 s ahead"
    );

    let mut wrong_aud = w.claims();
    wrong_aud["aud"] = json!("https://elsewhere.test/api/v1/token");
    let (status, body) = w.exchange(&w.assertion(wrong_aud)).await;
    assert_eq!(status, 401, "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("aud"));

    let mut not_yet = w.claims();
    not_yet["nbf"] = json!(now() + 30);
    assert_eq!(
        w.exchange(&w.assertion(not_yet)).await.0,
        401,
        "nbf in the future"
    );

    let mut other_sub = w.claims();
    other_sub["sub"] = json!("12345");
    assert_eq!(
        w.exchange(&w.assertion(other_sub)).await.0,
        401,
        "iss and sub differ"
    );

    // Signed by another key under this kid.
    let (_, other) = w
        .app
        .by(&w.owner)
        .post(
            &format!(
                "/api/v1/organizations/{}/clients/{}/certificates",
                w.org, w.client
            ),
            json!({}),
        )
        .await;
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(w.kid.clone());
    let forged = jsonwebtoken::encode(
        &header,
        &w.claims(),
        &EncodingKey::from_ed_pem(other["private_key"].as_str().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    let (status, body) = w.exchange(&forged).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("signature")
    );

    // A revoked certificate.
    let (status, _) = w
        .app
        .by(&w.owner)
        .delete(&format!(
            "/api/v1/organizations/{}/clients/{}/certificates/{}",
            w.org, w.client, w.kid
        ))
        .await;
    assert_eq!(status, 200);
    let (status, body) = w.exchange(&w.assertion(w.claims())).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("revoked")
    );

    // Garbage and missing parameters get our error shape.
    let (status, body) = w.exchange("not-a-jwt").await;
    assert_eq!(status, 401, "{body}");
    let (status, body) = w.token(&[("grant_type", "password")]).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = w.refresh("grt_nothing").await;
    assert_eq!(status, 401);
    let response = w
        .app
        .client
        .post(w.app.url("/api/v1/token"))
        .header("content-type", "text/plain")
        .body("grant_type=refresh_token")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_concurrent_uses_of_one_refresh_token_let_exactly_one_through() {
    let w = World::new().await;
    w.grant("client", &w.client, "reader").await;
    for _ in 0..3 {
        let (status, tokens) = w.exchange(&w.assertion(w.claims())).await;
        assert_eq!(status, 200, "{tokens}");
        let refresh = tokens["refresh_token"].as_str().unwrap().to_string();
        let (a, b) = tokio::join!(w.refresh(&refresh), w.refresh(&refresh));
        let ok = [a.0, b.0].iter().filter(|s| **s == 200).count();
        assert_eq!(ok, 1, "exactly one succeeds: {} {}", a.0, b.0);
    }
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_get_tokens_for_vaults_they_or_their_teams_are_granted() {
    let w = World::new().await;
    let path = format!("/api/v1/organizations/{}/vaults/{}/token", w.org, w.vault);
    let (status, body) = w.app.by(&w.member).post(&path, None).await;
    assert_eq!(status, 403, "no grant: {body}");
    // Through a team: reader; their own grant: writer; the highest counts.
    let (_, team) = w
        .app
        .by(&w.owner)
        .post(
            &format!("/api/v1/organizations/{}/teams", w.org),
            json!({"name": "Readers"}),
        )
        .await;
    let team = team["id"].as_str().unwrap().to_string();
    let (status, _) = w
        .app
        .by(&w.owner)
        .put(
            &format!(
                "/api/v1/organizations/{}/teams/{team}/members/{}",
                w.org, w.member_id
            ),
            json!({"role": "member"}),
        )
        .await;
    assert_eq!(status, 200);
    w.grant("team", &team, "manager").await;
    let (status, tokens) = w.app.by(&w.member).post(&path, None).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(tokens["role"], "manager");
    w.grant("user", &w.member_id, "reader").await;
    let (_, tokens) = w.app.by(&w.member).post(&path, None).await;
    assert_eq!(
        tokens["role"], "manager",
        "the higher of own and team roles"
    );
    let claims = w
        .verify(tokens["access_token"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(claims["sub_type"], "user");
    assert_eq!(claims["sub"], w.member_id.as_str());
    // Removing the team grant takes effect at the next refresh.
    let (status, _) = w
        .app
        .by(&w.owner)
        .delete(&format!(
            "/api/v1/organizations/{}/vaults/{}/grants/team/{team}",
            w.org, w.vault
        ))
        .await;
    assert_eq!(status, 204);
    let (status, next) = w.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{next}");
    assert_eq!(next["role"], "reader");
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_signed_before_a_key_rotation_stay_verifiable() {
    let w = World::new().await;
    w.grant("client", &w.client, "admin").await;
    let (_, before) = w.exchange(&w.assertion(w.claims())).await;
    let old = before["access_token"].as_str().unwrap().to_string();
    let old_kid = jsonwebtoken::decode_header(&old).unwrap().kid.unwrap();
    let new_kid = w.app.services.tokens.rotate_signing_key().await.unwrap();
    assert_ne!(old_kid, new_kid);
    let (_, after) = w.exchange(&w.assertion(w.claims())).await;
    let new = after["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        jsonwebtoken::decode_header(&new).unwrap().kid.unwrap(),
        new_kid,
        "new tokens use the new key"
    );
    let (_, jwks) = w.app.get_json("/.well-known/jwks.json").await;
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(
        kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()),
        "{kids:?}"
    );
    w.verify(&old)
        .await
        .expect("a token from the previous key still verifies");
    w.verify(&new).await.unwrap();
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn internal_services_get_tokens_and_read_vaults_over_grpc() {
    use gatehouse_grpc::v1::vault_service_client::VaultServiceClient;
    use gatehouse_grpc::v1::{
        ExchangeAssertionRequest, GetJwksRequest, ListGrantsRequest, ListVaultsRequest,
        RefreshTokenRequest,
    };
    let w = World::new().await;
    w.grant("client", &w.client, "reader").await;
    let mut grpc = VaultServiceClient::connect(format!("http://{}", w.app.grpc))
        .await
        .unwrap();
    let tokens = grpc
        .exchange_assertion(ExchangeAssertionRequest {
            client_assertion: w.assertion(w.claims()),
            vault_id: w.vault.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(tokens.role, "reader");
    let claims = w.verify(&tokens.access_token).await.unwrap();
    assert_eq!(claims["vault"], w.vault.as_str());
    let jwks = grpc.get_jwks(GetJwksRequest {}).await.unwrap().into_inner();
    let (_, served) = w.app.get_json("/.well-known/jwks.json").await;
    assert_eq!(
        serde_json::from_str::<Value>(&jwks.jwks_json).unwrap(),
        served
    );
    let next = grpc
        .refresh_token(RefreshTokenRequest {
            refresh_token: tokens.refresh_token.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_ne!(next.refresh_token, tokens.refresh_token);
    let replay = grpc
        .refresh_token(RefreshTokenRequest {
            refresh_token: tokens.refresh_token,
        })
        .await
        .unwrap_err();
    assert_eq!(replay.code(), tonic::Code::Unauthenticated);
    // Reads carry the caller's bearer token and see what REST shows them.
    let mut request = tonic::Request::new(ListVaultsRequest {
        organization_id: w.org.clone(),
    });
    request
        .metadata_mut()
        .insert("authorization", w.member.parse().unwrap());
    let vaults = grpc.list_vaults(request).await.unwrap().into_inner().vaults;
    assert_eq!(vaults.len(), 1);
    assert_eq!(vaults[0].sync_status, "not_configured");
    let mut request = tonic::Request::new(ListGrantsRequest {
        organization_id: w.org.clone(),
        vault_id: w.vault.clone(),
    });
    request
        .metadata_mut()
        .insert("authorization", w.member.parse().unwrap());
    let grants = grpc.list_grants(request).await.unwrap().into_inner().grants;
    assert_eq!(grants[0].subject_type, "client");
    let anonymous = grpc
        .list_vaults(ListVaultsRequest {
            organization_id: w.org.clone(),
        })
        .await
        .unwrap_err();
    assert_eq!(anonymous.code(), tonic::Code::Unauthenticated);
    w.app.stop().await;
}

/// A policy engine: a real gRPC server implementing `gatehouse.v1.PolicyEngine`
/// that records what it receives and refuses while `down` is set.
#[derive(Clone, Default)]
struct Engine {
    received: std::sync::Arc<parking_lot::Mutex<Vec<gatehouse_grpc::v1::SyncVaultRequest>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

#[tonic::async_trait]
impl gatehouse_grpc::v1::policy_engine_server::PolicyEngine for Engine {
    async fn sync_vault(
        &self,
        request: tonic::Request<gatehouse_grpc::v1::SyncVaultRequest>,
    ) -> Result<tonic::Response<gatehouse_grpc::v1::SyncVaultResponse>, tonic::Status> {
        if self.down.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(tonic::Status::unavailable("engine under maintenance"));
        }
        self.received.lock().push(request.into_inner());
        Ok(tonic::Response::new(Default::default()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_changes_are_synced_to_the_policy_engine_over_grpc_with_retries() {
    let engine = Engine::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = engine.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(gatehouse_grpc::v1::policy_engine_server::PolicyEngineServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let mut config = admin_config();
    config.vaults.policy_engine_url = Some(format!("http://{addr}"));
    config.vaults.sync_interval_secs = 1;
    // Jobs run on the cluster tick (a third of the lease).
    config.cluster.lease_secs = 3;
    let app = spawn_app(config).await;
    let admin = sign_in(&app, "admin@example.com").await;
    let (_, org) = app
        .by(&admin)
        .post("/api/v1/organizations", json!({"name": "Synced"}))
        .await;
    let org = org["id"].as_str().unwrap().to_string();
    let (_, vault) = app
        .by(&admin)
        .post(
            &format!("/api/v1/organizations/{org}/vaults"),
            json!({"name": "Policies"}),
        )
        .await;
    assert_eq!(vault["sync_status"], "pending");
    let vault = vault["id"].as_str().unwrap().to_string();
    let (_, client) = app
        .by(&admin)
        .post(
            &format!("/api/v1/organizations/{org}/clients"),
            json!({"name": "svc"}),
        )
        .await;
    let client = client["id"].as_str().unwrap().to_string();
    let (status, _) = app
        .by(&admin)
        .put(
            &format!("/api/v1/organizations/{org}/vaults/{vault}/grants"),
            json!({"subject_type": "client", "subject_id": client, "role": "writer"}),
        )
        .await;
    assert_eq!(status, 200);
    let status_of = || async {
        let (_, v) = app
            .by(&admin)
            .get(&format!("/api/v1/organizations/{org}/vaults/{vault}"))
            .await;
        (
            v["sync_status"].as_str().unwrap().to_string(),
            v["sync_reason"].clone(),
        )
    };
    let wait_for = |want: &'static str| {
        let status_of = &status_of;
        async move {
            for _ in 0..100 {
                let (status, reason) = status_of().await;
                if status == want {
                    return reason;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!("the vault never became {want}: {:?}", status_of().await);
        }
    };
    wait_for("synced").await;
    {
        let received = engine.received.lock();
        let last = received.last().unwrap();
        assert_eq!(last.vault_id, vault);
        assert_eq!(last.name, "Policies");
        assert_eq!(last.grants.len(), 1);
        assert_eq!(last.grants[0].subject_type, "client");
        assert_eq!(last.grants[0].role, "writer");
    }
    // The engine refuses: the vault shows why, and the change is retried.
    engine.down.store(true, std::sync::atomic::Ordering::SeqCst);
    let (status, _) = app
        .by(&admin)
        .delete(&format!(
            "/api/v1/organizations/{org}/vaults/{vault}/grants/client/{client}"
        ))
        .await;
    assert_eq!(status, 204);
    let reason = wait_for("failed").await;
    assert!(reason.as_str().unwrap().contains("maintenance"), "{reason}");
    engine
        .down
        .store(false, std::sync::atomic::Ordering::SeqCst);
    wait_for("synced").await;
    let received = engine.received.lock().clone();
    let last = received.last().unwrap();
    assert!(last.grants.is_empty(), "the revocation arrived");
    assert!(last.generation > received[0].generation);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managers_of_a_team_with_manage_vaults_manage_vaults() {
    let w = World::new().await;
    let vaults = format!("/api/v1/organizations/{}/vaults", w.org);
    let (status, _) = w
        .app
        .by(&w.member)
        .post(&vaults, json!({"name": "Mine"}))
        .await;
    assert_eq!(status, 403, "a plain member may not");
    let (_, team) = w
        .app
        .by(&w.owner)
        .post(
            &format!("/api/v1/organizations/{}/teams", w.org),
            json!({"name": "Vault keepers", "permissions": ["manage_vaults"]}),
        )
        .await;
    let team = team["id"].as_str().unwrap().to_string();
    let (status, _) = w
        .app
        .by(&w.owner)
        .put(
            &format!(
                "/api/v1/organizations/{}/teams/{team}/members/{}",
                w.org, w.member_id
            ),
            json!({"role": "manager"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, vault) = w
        .app
        .by(&w.member)
        .post(&vaults, json!({"name": "Mine"}))
        .await;
    assert_eq!(status, 201, "{vault}");
    let id = vault["id"].as_str().unwrap();
    let (status, _) = w
        .app
        .by(&w.member)
        .patch(&format!("{vaults}/{id}"), json!({"name": "Ours"}))
        .await;
    assert_eq!(status, 200);
    // Names are unique in the organization; bad input changes nothing.
    let (status, body) = w
        .app
        .by(&w.owner)
        .post(&vaults, json!({"name": "ours"}))
        .await;
    assert_eq!(status, 409, "{body}");
    for bad in [
        json!({"name": ""}),
        json!({"name": "x", "extra": 1}),
        json!({"name": "\u{7}"}),
    ] {
        let (status, body) = w.app.by(&w.owner).post(&vaults, bad).await;
        assert_eq!(status, 400, "{body}");
        assert!(body["error"]["code"].is_string());
    }
    let (status, body) = w
        .app
        .by(&w.owner)
        .put(
            &format!("{vaults}/{id}/grants"),
            json!({"subject_type": "robot", "subject_id": "1", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    let (_, list) = w.app.by(&w.member).get(&vaults).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        2,
        "the fixture's vault and this one"
    );
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaving_members_lose_their_grants_and_a_deleted_organization_takes_its_clients() {
    let w = World::new().await;
    w.grant("user", &w.member_id, "writer").await;
    w.grant("client", &w.client, "reader").await;
    let grants = format!("/api/v1/organizations/{}/vaults/{}/grants", w.org, w.vault);
    let (_, before) = w.app.by(&w.owner).get(&grants).await;
    assert_eq!(before["items"].as_array().unwrap().len(), 2);
    // The member leaves: their grant goes with them.
    let (status, _) = w
        .app
        .by(&w.member)
        .delete(&format!(
            "/api/v1/organizations/{}/members/{}",
            w.org, w.member_id
        ))
        .await;
    assert_eq!(status, 204);
    let (_, after) = w.app.by(&w.owner).get(&grants).await;
    let after = after["items"].as_array().unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(after[0]["subject_type"], "client");
    // The organization goes: its client's certificate no longer signs in,
    // and a refresh token it held no longer renews.
    let (status, tokens) = w.exchange(&w.assertion(w.claims())).await;
    assert_eq!(status, 200);
    let refresh_token = tokens["refresh_token"].as_str().unwrap().to_string();
    let (status, _) = w
        .app
        .by(&w.owner)
        .delete(&format!("/api/v1/organizations/{}", w.org))
        .await;
    assert_eq!(status, 204);
    let (status, body) = w.exchange(&w.assertion(w.claims())).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("kid"),
        "{body}"
    );
    let (status, body) = w.refresh(&refresh_token).await;
    assert!(
        status == 404 || status == 401 || status == 400,
        "{status} {body}"
    );
    assert!(body["access_token"].is_null(), "{body}");
    w.app.stop().await;
}
