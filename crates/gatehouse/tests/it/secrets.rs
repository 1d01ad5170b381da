//! No secret reaches a log or the printed configuration: the built binary's
//! whole log of a scripted session is searched for every secret the session
//! made, and `gatehouse check-config` prints YAML with secrets redacted.

use std::process::Command;
use std::time::Duration;

use gatehouse_core::codec::decode_values;
use gatehouse_core::keyspace;
use gatehouse_core::model::email::OutboxMessage;
use gatehouse_storage::{Engine, RangeOptions, StorageConfig, TxError};
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, json_of, spawn_process};

const JWT_SECRET: &str = "c2VjcmV0cy10ZXN0LWp3dC1zZWNyZXQtMzItYnl0ZXMhIQ==";
const KEK: &str = "c2VjcmV0cy10ZXN0LWtlay1zZWNyZXQtMzItYnl0ZXMhIQ==";

#[test]
fn check_config_prints_yaml_with_secrets_and_url_passwords_redacted() {
    let dir = tempfile::tempdir().unwrap();
    // A single sign-on provider's client secret, from the file.
    std::fs::write(
        dir.path().join("config.yaml"),
        "auth:\n  sso:\n    providers:\n      - id: corp\n        issuer: https://idp.example.com\n        client_id: gatehouse\n        client_secret: sso-secret-4\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_gatehouse"))
        .arg("check-config")
        .envs([
            ("GATEHOUSE__STORAGE__ENGINE", "postgres"),
            (
                "GATEHOUSE__STORAGE__POSTGRES_URL",
                "postgres://gatehouse:pg-password-1@db:5432/gatehouse?sslmode=disable",
            ),
            (
                "GATEHOUSE__EMAIL__SMTP_URL",
                "smtp://mailer:smtp-password-2@mail:587?tls=required",
            ),
            ("GATEHOUSE__AUTH__JWT_SECRET", JWT_SECRET),
            ("GATEHOUSE__AUTH__KEY_ENCRYPTION_SECRET", KEK),
            ("GATEHOUSE__BOOTSTRAP__ADMIN_PASSWORD", "admin-password-3"),
        ])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    for secret in [
        "pg-password-1",
        "smtp-password-2",
        JWT_SECRET,
        KEK,
        "admin-password-3",
        "sso-secret-4",
    ] {
        assert!(!printed.contains(secret), "{secret} printed:\n{printed}");
    }
    let config: Value = yaml_serde::from_str(&printed).unwrap();
    assert_eq!(
        config["storage"]["postgres_url"],
        "postgres://gatehouse:***@db:5432/gatehouse?sslmode=disable"
    );
    assert_eq!(
        config["email"]["smtp_url"],
        "smtp://mailer:***@mail:587?tls=required"
    );
    assert_eq!(config["auth"]["jwt_secret"], "***");
    assert_eq!(config["bootstrap"]["admin_password"], "***");
    assert_eq!(
        config["auth"]["sso"]["providers"][0]["client_secret"],
        "***"
    );
    assert_eq!(config["storage"]["engine"], "postgres");
}

/// Posts `body` with `token` (a JWT) and returns the status and answer.
async fn post(
    client: &reqwest::Client,
    url: String,
    token: Option<&str>,
    body: Value,
) -> (u16, Value) {
    let mut request = client.post(url).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scripted_session_leaves_no_secret_in_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let envs = [
        ("GATEHOUSE__STORAGE__PATH", data.display().to_string()),
        ("GATEHOUSE__AUTH__JWT_SECRET", JWT_SECRET.to_string()),
        ("GATEHOUSE__AUTH__KEY_ENCRYPTION_SECRET", KEK.to_string()),
        (
            "GATEHOUSE__BOOTSTRAP__ADMIN_EMAIL",
            "admin@example.com".to_string(),
        ),
        ("GATEHOUSE__BOOTSTRAP__ADMIN_PASSWORD", PASSWORD.to_string()),
        ("GATEHOUSE__EMAIL__OUTBOX_INTERVAL_SECS", "1".to_string()),
        // Production, no SMTP server, and the most talkative log there is.
        ("GATEHOUSE__MODE", "production".to_string()),
        ("GATEHOUSE__AUTH__COOKIE_SECURE", "false".to_string()),
        ("GATEHOUSE__LOG__LEVEL", "debug".to_string()),
        // Background jobs run every lease / 3: once a second.
        ("GATEHOUSE__CLUSTER__LEASE_SECS", "3".to_string()),
    ];
    let mut server = spawn_process(dir.path(), &envs, &[]);
    let client = reqwest::Client::new();
    let mut secrets: Vec<String> = vec![PASSWORD.into()];

    // Register, sign in, ask for a password reset.
    let ada_password = "ada's own long passphrase";
    secrets.push(ada_password.into());
    let (status, body) = post(
        &client,
        server.url("/api/v1/auth/register"),
        None,
        json!({"email": "ada@example.com", "password": ada_password}),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let login = |login: &'static str, password: &'static str| {
        let (client, url) = (client.clone(), server.url("/api/v1/auth/login"));
        async move {
            let (status, body) = post(
                &client,
                url,
                None,
                json!({"login": login, "password": password}),
            )
            .await;
            assert_eq!(status, 200, "{body}");
            body["token"].as_str().unwrap().to_string()
        }
    };
    let admin = login("admin@example.com", PASSWORD).await;
    let ada = login("ada@example.com", "ada's own long passphrase").await;
    secrets.extend([admin.clone(), ada.clone()]);
    let (status, _) = post(
        &client,
        server.url("/api/v1/auth/reset"),
        None,
        json!({"email": "ada@example.com"}),
    )
    .await;
    assert_eq!(status, 202);

    // An organization with an invitation, a service client with a generated key.
    let (status, org) = post(
        &client,
        server.url("/api/v1/organizations"),
        Some(&admin),
        json!({"name": "Acme"}),
    )
    .await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_string();
    let (status, body) = post(
        &client,
        server.url(&format!("/api/v1/organizations/{org}/invitations")),
        Some(&admin),
        json!({"email": "bob@example.com"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let (status, service) = post(
        &client,
        server.url(&format!("/api/v1/organizations/{org}/clients")),
        Some(&admin),
        json!({"name": "billing"}),
    )
    .await;
    assert_eq!(status, 201, "{service}");
    let service = service["id"].as_str().unwrap().to_string();
    let (status, certificate) = post(
        &client,
        server.url(&format!(
            "/api/v1/organizations/{org}/clients/{service}/certificates"
        )),
        Some(&admin),
        json!({}),
    )
    .await;
    assert_eq!(status, 201, "{certificate}");
    let pem = certificate["private_key"].as_str().unwrap();
    // The PEM's base64 line is the secret (its armour is not).
    secrets.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----"))
            .map(str::to_string),
    );

    // An API key and an upstream credential.
    let (status, key) = post(
        &client,
        server.url("/api/v1/api-keys"),
        Some(&ada),
        json!({"label": "laptop"}),
    )
    .await;
    assert_eq!(status, 201, "{key}");
    secrets.push(key["key"].as_str().unwrap().to_string());
    let upstream_secret = "sk-upstream-credential-secret-4";
    secrets.push(upstream_secret.into());
    let (status, body) = post(
        &client,
        server.url("/api/v1/credentials"),
        Some(&admin),
        json!({"name": "openai", "kind": "openai", "secret": {"api_key": upstream_secret}}),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    // Let the outbox try to deliver the verification, the reset and the
    // invitation; collect
    // the whole log, including what the server prints as it stops.
    let mut log: Vec<String> = server.startup_lines().cloned().collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while log.iter().filter(|l| l.contains("email not sent")).count() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "the outbox never tried: {log:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        log.extend(server.log_lines());
    }
    let ready = json_of(client.get(server.url("/ready"))).await;
    assert_eq!(ready["outbox"]["stuck"], true, "{ready}");
    assert_eq!(ready["outbox"]["retrying"], 3, "{ready}");
    assert!(server.terminate().success());
    tokio::time::sleep(Duration::from_millis(100)).await;
    log.extend(server.log_lines());
    let log = log.join("\n");

    // The emailed tokens, from the outbox: kept there, not sent (a sent
    // message leaves the outbox).
    let store = gatehouse_storage::open(&StorageConfig {
        engine: Engine::Embedded,
        path: data,
        cache_mb: 16,
        postgres_url: None,
        fdb_cluster_file: None,
    })
    .await
    .unwrap();
    let messages: Vec<OutboxMessage> = store
        .run(|tx| async move {
            let page = tx
                .get_range(&keyspace::outbox(), RangeOptions::default())
                .await?;
            decode_values(&page.entries).map_err(TxError::Abort)
        })
        .await
        .unwrap();
    let subjects: Vec<&str> = messages.iter().map(|m| m.subject.as_str()).collect();
    assert_eq!(messages.len(), 3, "{subjects:?}");
    for message in &messages {
        // A sent message leaves the outbox; these were tried and kept.
        assert!(message.attempts >= 1, "{}", message.subject);
        assert!(message.last_error.is_some(), "{}", message.subject);
        let tokens: Vec<String> = message
            .body
            .lines()
            .filter_map(|l| l.trim().strip_prefix("token: "))
            .map(str::to_string)
            .collect();
        assert_eq!(tokens.len(), 1, "{}", message.body);
        secrets.extend(tokens);
    }

    for secret in &secrets {
        assert!(!secret.is_empty());
        assert!(
            !log.contains(secret.as_str()),
            "a secret reached the log: {secret}"
        );
    }
}
