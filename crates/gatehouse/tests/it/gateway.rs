//! The gateway through the real server against a real upstream HTTP server
//! started in the test: allowed and refused calls, limits and budgets,
//! upstream failures and timeouts, streaming, and the usage they leave.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::catalog::{EndpointSpec, ModelSpec, NewCredential};
use gatehouse_core::keys::NewKey;
use gatehouse_core::model::accounts::User;
use gatehouse_core::model::catalog::{ApiFlavour, CredentialKind};
use gatehouse_core::model::keys::{Budget, BudgetPeriod};
use gatehouse_core::model::sessions::ClientInfo;
use parking_lot::Mutex;
use serde_json::{Value, json};

use crate::helpers::{TestApp, admin_config, sdk_python, sdk_script, spawn_app};

const UPSTREAM_KEY: &str = "sk-upstream-credential";

/// What the upstream saw: each request's path, authorization and body.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// An OpenAI- and Anthropic-compatible upstream. Upstream model names steer
/// it: `huge` answers 3 MiB, `broken` answers 500, `moved` redirects, `sleepy` waits 3 s, streams pause 1.5 s after
/// their first event, `silent` reports no usage, `boastful` streams a usage of
/// 2^64 - 1 tokens; `messages/count_tokens` counts 42 for everything.
async fn upstream(seen: Seen) -> String {
    async fn handle(seen: Seen, path: &'static str, headers: HeaderMap, body: Value) -> Response {
        let auth = headers
            .get("authorization")
            .or(headers.get("x-api-key"))
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        seen.lock().push((path.to_string(), auth, body.clone()));
        let model = body["model"].as_str().unwrap_or_default().to_string();
        match model.as_str() {
            "broken" => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Traceback: secret internal detail at /srv/model.py",
                )
                    .into_response();
            }
            "sleepy" => tokio::time::sleep(Duration::from_secs(3)).await,
            "huge" => {
                let content = "x".repeat(3 << 20);
                return axum::Json(json!({"object": "chat.completion", "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content}}]}))
                .into_response();
            }
            "moved" => {
                return (
                    StatusCode::TEMPORARY_REDIRECT,
                    [("location", "http://127.0.0.1:9/v1/chat/completions")],
                )
                    .into_response();
            }
            _ => {}
        }
        let silent = model == "silent";
        let stream = body["stream"].as_bool().unwrap_or(false);
        if path == "/v1/messages/count_tokens" {
            return axum::Json(json!({"input_tokens": 42})).into_response();
        }
        if path == "/v1/messages" {
            if stream {
                let events = vec![
                    format!(
                        "event: message_start\ndata: {}\n\n",
                        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "content": [], "model": model, "usage": {"input_tokens": 7, "output_tokens": 1}}})
                    ),
                    format!(
                        "event: content_block_start\ndata: {}\n\n",
                        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
                    ),
                    format!(
                        "event: content_block_delta\ndata: {}\n\n",
                        json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})
                    ),
                    "event: content_block_stop\ndata: {\"type\": \"content_block_stop\", \"index\": 0}\n\n".to_string(),
                    format!(
                        "event: message_delta\ndata: {}\n\n",
                        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}})
                    ),
                    "event: message_stop\ndata: {\"type\": \"message_stop\"}\n\n".to_string(),
                ];
                return sse(events);
            }
            return axum::Json(json!({
                "id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": "Hello"}],
                "usage": {"input_tokens": 7, "output_tokens": 3},
            }))
            .into_response();
        }
        if path == "/v1/embeddings" {
            return axum::Json(json!({
                "object": "list", "model": model,
                "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}],
                "usage": {"prompt_tokens": 5, "total_tokens": 5},
            }))
            .into_response();
        }
        if stream {
            let chunk = |text: &str| {
                format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk", "model": model, "choices": [{"index": 0, "delta": {"content": text}}]})
                )
            };
            let mut events = vec![chunk("Hel"), chunk("lo")];
            if body["stream_options"]["include_usage"] == true && !silent {
                let usage = if model == "boastful" {
                    json!({"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX})
                } else {
                    json!({"prompt_tokens": 10, "completion_tokens": 20})
                };
                events.push(format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk", "choices": [], "usage": usage})
                ));
            }
            events.push("data: [DONE]\n\n".to_string());
            return sse(events);
        }
        let mut answer = json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 10, "completion_tokens": 20, "total_tokens": 30},
        });
        if silent {
            answer.as_object_mut().unwrap().remove("usage");
        }
        axum::Json(answer).into_response()
    }

    /// Server-sent events: the first at once, the rest after a pause.
    fn sse(events: Vec<String>) -> Response {
        crate::helpers::sse(events, |i| {
            Duration::from_millis(if i == 1 { 1500 } else { 0 })
        })
    }

    let mut router = axum::Router::new();
    for path in [
        "/v1/chat/completions",
        "/v1/embeddings",
        "/v1/messages",
        "/v1/messages/count_tokens",
    ] {
        let seen = seen.clone();
        router = router.route(
            path,
            axum::routing::post(move |h: HeaderMap, axum::Json(b): axum::Json<Value>| {
                handle(seen, path, h, b)
            }),
        );
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

pub(crate) struct World {
    pub(crate) app: TestApp,
    seen: Seen,
    pub(crate) admin: User,
    pub(crate) ada: User,
    pub(crate) bob: User,
    pub(crate) c: ClientInfo,
}

/// Input $1 and output $2 per million tokens, so 10 + 20 tokens cost $0.00005.
const INPUT: f64 = 0.000001;
const OUTPUT: f64 = 0.000002;

fn config() -> gatehouse::config::Config {
    let mut config = admin_config();
    config.usage.flush_ms = 200;
    config
}

impl World {
    pub(crate) async fn new() -> World {
        World::with(config()).await
    }

    async fn with(config: gatehouse::config::Config) -> World {
        let app = spawn_app(config).await;
        let seen: Seen = Arc::default();
        let base = upstream(seen.clone()).await;
        let s = &app.services;
        let c = ClientInfo::default();
        let admin = app.first_admin().await;
        let mut users = Vec::new();
        for name in ["ada", "bob"] {
            users.push(app.create_user(&admin, name).await);
        }
        let credential = s
            .catalog
            .create_credential(
                &admin,
                NewCredential {
                    scope: None,
                    name: "upstream".into(),
                    kind: CredentialKind::Openai,
                    secret: json!({"api_key": UPSTREAM_KEY}),
                    metadata: Value::Null,
                },
                &c,
            )
            .await
            .unwrap();
        // `proxied` names a host that does not exist and reaches it through
        // its outbound proxy — the upstream, which also answers as an HTTP
        // proxy (absolute-form requests).
        for (name, flavour, timeout) in [
            ("openai", ApiFlavour::Openai, 60_000),
            ("anthropic", ApiFlavour::Anthropic, 60_000),
            ("impatient", ApiFlavour::Openai, 500),
            ("proxied", ApiFlavour::Openai, 60_000),
        ] {
            let proxied = name == "proxied";
            let endpoint = s
                .catalog
                .create_endpoint(
                    &admin,
                    EndpointSpec {
                        name: Some(name.into()),
                        base_url: Some(if proxied {
                            "http://upstream.invalid".into()
                        } else {
                            base.clone()
                        }),
                        proxy_url: proxied.then(|| Some(base.clone())),
                        flavour: Some(flavour),
                        credential_id: Some(Some(credential.id)),
                        request_timeout_ms: Some(timeout),
                        ..Default::default()
                    },
                    &c,
                )
                .await
                .unwrap();
            let models: &[(&str, &str)] = match name {
                "openai" => &[
                    ("gpt", "upstream-gpt"),
                    ("other", "other"),
                    ("broken", "broken"),
                    ("moved", "moved"),
                    ("silent", "silent"),
                    ("boastful", "boastful"),
                    ("huge", "huge"),
                    ("restricted", "restricted"),
                ],
                "anthropic" => &[("claude", "upstream-claude")],
                "proxied" => &[("via-proxy", "upstream-gpt")],
                _ => &[("sleepy", "sleepy")],
            };
            for (public, upstream_name) in models {
                s.catalog
                    .create_model(
                        &admin,
                        ModelSpec {
                            name: Some(public.to_string()),
                            endpoint_id: Some(endpoint.id),
                            upstream_name: Some(upstream_name.to_string()),
                            input_cost_per_token: Some(INPUT),
                            output_cost_per_token: Some(OUTPUT),
                            restricted: Some(*public == "restricted"),
                            ..Default::default()
                        },
                        &c,
                    )
                    .await
                    .unwrap();
            }
        }
        s.keys.index().catch_up().await.unwrap();
        let bob = users.pop().unwrap();
        let ada = users.pop().unwrap();
        World {
            app,
            seen,
            admin,
            ada,
            bob,
            c,
        }
    }

    pub(crate) async fn key(&self, user: &User, spec: NewKey) -> (String, String) {
        let (key, plaintext) = self
            .app
            .services
            .keys
            .create(user, spec, None, &self.c)
            .await
            .unwrap();
        (key.id.to_string(), plaintext)
    }

    pub(crate) async fn chat(&self, key: &str, body: Value) -> (u16, HeaderMap, Value) {
        self.post("/v1/chat/completions", key, body).await
    }

    /// `GET path` (`/v1/models`, `/v1/models/{model}`) as an OpenAI client,
    /// or as an Anthropic one (`x-api-key`, `anthropic-version`).
    async fn models(&self, path: &str, key: &str, anthropic: bool) -> Value {
        let request = self.app.client.get(self.app.url(path));
        let request = if anthropic {
            request
                .header("x-api-key", key)
                .header("anthropic-version", "2023-06-01")
        } else {
            request.bearer_auth(key)
        };
        request.send().await.unwrap().json().await.unwrap()
    }

    /// The Prometheus text of `/metrics`.
    async fn metrics(&self) -> String {
        let response = self.app.client.get(self.app.url("/metrics")).send().await;
        response.unwrap().text().await.unwrap()
    }

    /// Sends `body` to `path` with `key` as each kind of client does:
    /// Anthropic's in `x-api-key`, OpenAI's as a bearer token.
    async fn send(&self, path: &str, key: &str, body: &Value) -> reqwest::Response {
        let request = self.app.client.post(self.app.url(path));
        let request = if path == "/v1/messages" {
            request.header("x-api-key", key)
        } else {
            request.bearer_auth(key)
        };
        request.json(body).send().await.unwrap()
    }

    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, HeaderMap, Value) {
        let response = self.send(path, key, &body).await;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        (
            status,
            headers,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    /// The bodies the upstream received, in order.
    pub(crate) fn seen_bodies(&self) -> Vec<Value> {
        self.seen
            .lock()
            .iter()
            .map(|(_, _, body)| body.clone())
            .collect()
    }

    /// Writes buffered usage now (the server does it every second).
    pub(crate) async fn flush(&self) {
        self.app.services.usage.flush().await.unwrap();
    }

    /// Ada's request logs through the API, after writing what is buffered.
    async fn ada_logs(&self, query: &str) -> Vec<Value> {
        self.flush().await;
        let ada = self.token("ada@example.com").await;
        let path = format!("/api/v1/request-logs{query}");
        let (_, logs) = self.app.by(&ada).get(&path).await;
        logs["items"].as_array().unwrap().clone()
    }

    pub(crate) async fn token(&self, email: &str) -> String {
        self.app.bearer(email).await
    }
}

/// The `id`s of a model list (either API's shape).
fn ids(models: &Value) -> Vec<&str> {
    models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect()
}

pub(crate) fn chat_body(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 100})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_calls_reach_the_upstream_and_are_counted_for_the_right_people() {
    let w = World::new().await;
    let (key_id, key) = w.key(&w.ada, NewKey::default()).await;
    let (status, _, body) = w.chat(&key, chat_body("gpt")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["model"], "upstream-gpt",
        "the upstream's answer, unchanged"
    );
    assert_eq!(body["choices"][0]["message"]["content"], "Hello");
    {
        let seen = w.seen.lock();
        let (path, auth, sent) = seen.last().unwrap();
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(
            auth,
            &format!("Bearer {UPSTREAM_KEY}"),
            "the endpoint's credential, not the caller's key"
        );
        assert_eq!(sent["model"], "upstream-gpt");
    }
    // X-API-Key works as well; embeddings and Anthropic messages too.
    let response = w
        .app
        .client
        .post(w.app.url("/v1/embeddings"))
        .header("x-api-key", &key)
        .json(&json!({"model": "gpt", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (status, _, message) = w
        .post("/v1/messages", &key, json!({"model": "claude", "max_tokens": 50, "messages": [{"role": "user", "content": "Hi"}]}))
        .await;
    assert_eq!(status, 200, "{message}");
    assert_eq!(message["model"], "upstream-claude");
    assert_eq!(
        w.seen.lock().last().unwrap().1,
        UPSTREAM_KEY,
        "Anthropic endpoints get x-api-key"
    );
    // GET /v1/models lists what the key may use (not the restricted one).
    let models = w.models("/v1/models", &key, false).await;
    let names = ids(&models);
    assert!(
        names.contains(&"gpt") && names.contains(&"claude") && !names.contains(&"restricted"),
        "{names:?}"
    );
    assert_eq!(models["object"], "list");
    // Anthropic's SDKs (they send anthropic-version) get Anthropic's list.
    let models = w.models("/v1/models", &key, true).await;
    assert_eq!(ids(&models), names);
    assert_eq!(models["data"][0]["type"], "model");
    assert!(models["data"][0]["created_at"].is_string(), "{models}");
    assert_eq!(
        (&models["has_more"], &models["first_id"]),
        (&json!(false), &json!(names[0]))
    );
    let refused = w.models("/v1/models", "ak_wrong", true).await;
    assert_eq!(refused["error"]["type"], "authentication_error");
    // One model, with or without /v1, in either shape; refused as a call to
    // it would be.
    let gpt = w.models("/v1/models/gpt", &key, false).await;
    assert_eq!(
        (gpt["id"].as_str(), gpt["object"].as_str()),
        (Some("gpt"), Some("model")),
        "{gpt}"
    );
    assert_eq!(w.models("/models/gpt", &key, false).await, gpt);
    let claude = w.models("/v1/models/claude", &key, true).await;
    assert_eq!(
        (claude["id"].as_str(), claude["type"].as_str()),
        (Some("claude"), Some("model")),
        "{claude}"
    );
    let unknown = w.models("/v1/models/no-such-model", &key, false).await;
    assert_eq!(unknown["error"]["type"], "not_found_error", "{unknown}");
    let restricted = w.models("/v1/models/restricted", &key, true).await;
    assert_eq!(restricted["type"], "error", "{restricted}");
    let refused = w.models("/v1/models/gpt", "ak_wrong", false).await;
    assert_eq!(refused["error"]["type"], "authentication_error");

    // Usage: right tokens and cost, seen by the caller and admins only.
    let logs = w.ada_logs("").await;
    let ada = w.token("ada@example.com").await;
    assert_eq!(logs.len(), 3);
    let chat = logs
        .iter()
        .find(|l| l["api"] == "chat.completions")
        .unwrap();
    assert_eq!(
        (
            chat["prompt_tokens"].as_u64(),
            chat["completion_tokens"].as_u64()
        ),
        (Some(10), Some(20))
    );
    assert_eq!(chat["key_id"], key_id);
    let cost = 10.0 * INPUT + 20.0 * OUTPUT;
    assert!((chat["cost_usd"].as_f64().unwrap() - cost).abs() < 1e-9);
    let messages = logs.iter().find(|l| l["api"] == "messages").unwrap();
    assert_eq!(
        (
            messages["prompt_tokens"].as_u64(),
            messages["completion_tokens"].as_u64()
        ),
        (Some(7), Some(3))
    );
    let (_, stats) = w.app.by(&ada).get("/api/v1/usage?group_by=model").await;
    let gpt = stats["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "gpt")
        .unwrap();
    assert_eq!(
        (gpt["requests"].as_i64(), gpt["prompt_tokens"].as_i64()),
        (Some(2), Some(15))
    );
    let bob = w.token("bob@example.com").await;
    let (_, bobs) = w.app.by(&bob).get("/api/v1/request-logs").await;
    assert!(bobs["items"].as_array().unwrap().is_empty());
    let (_, bob_stats) = w.app.by(&bob).get("/api/v1/usage").await;
    assert!(bob_stats["items"].as_array().unwrap().is_empty());
    let others = format!("/api/v1/usage?user={}", w.ada.id);
    let (status, _) = w.app.by(&bob).get(&others).await;
    assert_eq!(status, 403);
    let admin = w.token("admin@example.com").await;
    let (status, all) = w
        .app
        .by(&admin)
        .get("/api/v1/usage?all=true&group_by=user")
        .await;
    assert_eq!(status, 200);
    assert_eq!(all["items"].as_array().unwrap().len(), 1);
    assert_eq!(all["items"][0]["group"], w.ada.id.to_string());
    let csv = w
        .app
        .client
        .get(w.app.url("/api/v1/usage/export?all=true&group_by=model"))
        .header("authorization", &admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("group,requests,prompt_tokens,completion_tokens,cost_usd\n"),
        "{csv}"
    );
    assert!(csv.contains("\ngpt,2,15,20,"), "{csv}");
    let _ = &w.admin;
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_follow_the_spec() {
    let w = World::new().await;
    let (key_id, key) = w
        .key(
            &w.ada,
            NewKey {
                allowed_models: vec!["gpt".into()],
                ..Default::default()
            },
        )
        .await;
    let (status, _, body) = w.chat(&key, chat_body("other")).await;
    assert_eq!(status, 403);
    assert_eq!(body["error"]["type"], "permission_error");
    let (status, _, body) = w.chat(&key, chat_body("no-such-model")).await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );
    let (_, open) = w.key(&w.ada, NewKey::default()).await;
    let (status, _, _) = w.chat(&open, chat_body("restricted")).await;
    assert_eq!(status, 403, "restricted without a subscription");
    let (status, _, body) = w
        .chat("ak_0000000000000000000000000000000x", chat_body("gpt"))
        .await;
    assert_eq!(
        (status, body["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    let response = w
        .app
        .client
        .post(w.app.url("/v1/chat/completions"))
        .json(&chat_body("gpt"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Revoked: the next call fails.
    assert_eq!(w.chat(&key, chat_body("gpt")).await.0, 200);
    w.app
        .services
        .keys
        .revoke(&w.ada, key_id.parse().unwrap(), None, &w.c)
        .await
        .unwrap();
    assert_eq!(w.chat(&key, chat_body("gpt")).await.0, 401);
    // Anthropic callers get Anthropic-shaped errors.
    let (status, _, body) = w
        .post(
            "/v1/messages",
            "ak_0000000000000000000000000000000x",
            json!({"model": "claude", "max_tokens": 1, "messages": []}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        (body["type"].as_str(), body["error"]["type"].as_str()),
        (Some("error"), Some("authentication_error"))
    );
    // Malformed bodies are 400s, and change nothing upstream.
    let before = w.seen.lock().len();
    let (status, _, _) = w.chat(&open, json!({"messages": []})).await;
    assert_eq!(status, 400);
    // … but only to a caller whose key works.
    let (status, _, _) = w
        .chat(
            "ak_0000000000000000000000000000000x",
            json!({"messages": []}),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, _) = w.post("/v1/messages", &key, json!([1])).await;
    assert_eq!(status, 401, "the revoked key, not the body, is refused");
    assert_eq!(w.seen.lock().len(), before);
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_answer_429_with_retry_after() {
    let w = World::new().await;
    let (_, key) = w
        .key(
            &w.ada,
            NewKey {
                rpm_limit: Some(2),
                ..Default::default()
            },
        )
        .await;
    assert_eq!(w.chat(&key, chat_body("gpt")).await.0, 200);
    assert_eq!(w.chat(&key, chat_body("gpt")).await.0, 200);
    let (status, headers, body) = w.chat(&key, chat_body("gpt")).await;
    assert_eq!(status, 429);
    assert_eq!(body["error"]["type"], "rate_limit_error");
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    // The user's own limit counts across keys.
    let mut bob = w.bob.clone();
    bob.limits.rpm_limit = Some(1);
    w.app
        .services
        .accounts
        .update_account(
            &w.admin,
            bob.id,
            gatehouse_core::accounts::UserChange {
                limits: Some(bob.limits),
                ..Default::default()
            },
            &w.c,
        )
        .await
        .unwrap();
    let (_, k1) = w.key(&w.bob, NewKey::default()).await;
    let (_, k2) = w.key(&w.bob, NewKey::default()).await;
    w.app.services.keys.index().catch_up().await.unwrap();
    assert_eq!(w.chat(&k1, chat_body("gpt")).await.0, 200);
    assert_eq!(w.chat(&k2, chat_body("gpt")).await.0, 429);
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_cannot_overspend_a_budget() {
    let w = World::new().await;
    // Each call reserves for 100 output tokens (+ its input) and costs $0.00005.
    let one_call = 10.0 * INPUT + 20.0 * OUTPUT;
    let budget = 0.0008;
    let (key_id, key) = w
        .key(
            &w.ada,
            NewKey {
                budget: Some(Budget {
                    max_usd: budget,
                    period: BudgetPeriod::Day,
                }),
                ..Default::default()
            },
        )
        .await;
    let key = Arc::new(key);
    let mut calls = Vec::new();
    for _ in 0..60 {
        let (client, url, key) = (
            w.app.client.clone(),
            w.app.url("/v1/chat/completions"),
            key.clone(),
        );
        calls.push(tokio::spawn(async move {
            client
                .post(url)
                .bearer_auth(key.as_str())
                .json(&chat_body("gpt"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    let ok = statuses.iter().filter(|s| **s == 200).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    assert_eq!(ok + refused, 60, "{statuses:?}");
    assert!(refused > 0 && ok > 0, "{statuses:?}");
    w.flush().await;
    let ada = w.token("ada@example.com").await;
    let path = format!("/api/v1/request-logs?key={key_id}&status=200&limit=500");
    let (_, logs) = w.app.by(&ada).get(&path).await;
    let spent: f64 = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["cost_usd"].as_f64().unwrap())
        .sum();
    assert!(spent <= budget + one_call, "spent {spent} of {budget}");
    println!("{ok} calls admitted, {refused} refused, spent {spent:.6} of {budget}");
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_and_timeouts_become_clean_errors() {
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let (status, _, body) = w.chat(&key, chat_body("broken")).await;
    assert_eq!(status, 502);
    assert_eq!(body["error"]["type"], "api_error");
    assert!(
        !body.to_string().contains("Traceback"),
        "nothing internal leaks: {body}"
    );
    // A redirect is not followed (it would carry the credential elsewhere).
    let (status, _, body) = w.chat(&key, chat_body("moved")).await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(
        body["error"]["message"],
        "the model's endpoint failed (HTTP 307)"
    );
    let started = Instant::now();
    let (status, _, body) = w.chat(&key, chat_body("sleepy")).await;
    assert_eq!(status, 504, "{body}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the endpoint's 500 ms timeout applies"
    );
    // The failures are logged, with no cost.
    let logs = json!({"items": w.ada_logs("").await});
    let statuses: Vec<u64> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [504, 502, 502]);
    assert!(
        logs["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["cost_usd"] == 0.0)
    );
    w.app.stop().await;
}

/// The bytes of a streamed answer, and when its first piece arrived.
async fn streamed(response: reqwest::Response) -> (Duration, String) {
    let started = Instant::now();
    let mut response = response;
    let mut first = None;
    let mut all = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        first.get_or_insert(started.elapsed());
        all.extend_from_slice(&chunk);
    }
    (first.unwrap(), String::from_utf8(all).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_of_either_api_reach_models_of_the_other() {
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;

    // An OpenAI client calls a model on an Anthropic endpoint.
    let mut body = chat_body("claude");
    body["messages"] = json!([
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
    ]);
    let (status, _, answer) = w.chat(&key, body.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["object"], "chat.completion");
    assert_eq!(answer["model"], "claude");
    assert_eq!(answer["choices"][0]["message"]["content"], "Hello");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        answer["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    );
    {
        let seen = w.seen.lock();
        let (path, auth, sent) = seen.last().unwrap();
        assert_eq!(path, "/v1/messages");
        assert_eq!(auth, UPSTREAM_KEY, "Anthropic's x-api-key");
        assert_eq!(
            (
                &sent["model"],
                &sent["max_tokens"],
                &sent["system"][0]["text"]
            ),
            (&json!("upstream-claude"), &json!(100), &json!("Be brief."))
        );
        assert_eq!(
            sent["messages"],
            json!([{"role": "user", "content": [{"type": "text", "text": "Hi"}]}])
        );
    }
    // … streaming, with the final usage chunk it asks for; the first chunk
    // comes before the upstream has finished (it pauses 1.5 s).
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let response = w.send("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    let (first, text) = streamed(response).await;
    assert!(
        first < Duration::from_millis(1000),
        "first chunk after {first:?}"
    );
    let chunks: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "Hi");
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    assert_eq!(
        chunks.last().unwrap()["usage"],
        json!({"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10})
    );
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");

    // An Anthropic client calls a model on an OpenAI-compatible endpoint.
    let messages = json!({"model": "gpt", "max_tokens": 50, "system": "Be brief.",
                          "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _, answer) = w.post("/v1/messages", &key, messages.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        (&answer["type"], &answer["model"], &answer["stop_reason"]),
        (&json!("message"), &json!("gpt"), &json!("end_turn"))
    );
    assert_eq!(
        answer["content"],
        json!([{"type": "text", "text": "Hello"}])
    );
    assert_eq!(
        answer["usage"],
        json!({"input_tokens": 10, "output_tokens": 20})
    );
    {
        let seen = w.seen.lock();
        let (path, auth, sent) = seen.last().unwrap();
        assert_eq!(path, "/v1/chat/completions");
        assert_eq!(auth, &format!("Bearer {UPSTREAM_KEY}"));
        assert_eq!(
            sent["messages"],
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}])
        );
    }
    let mut streaming = messages.clone();
    streaming["stream"] = json!(true);
    let response = w.send("/v1/messages", &key, &streaming).await;
    let (first, text) = streamed(response).await;
    assert!(
        first < Duration::from_millis(1000),
        "first event after {first:?}"
    );
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(names.last(), Some(&"message_stop"));
    assert!(text.contains(r#""output_tokens":20"#), "{text}");
    assert_eq!(
        w.seen.lock().last().unwrap().2["stream_options"]["include_usage"],
        true
    );

    // What cannot be translated is refused before anything is spent or sent.
    let before = w.seen.lock().len();
    let mut two = chat_body("claude");
    two["n"] = json!(2);
    let (status, _, answer) = w.chat(&key, two).await;
    assert_eq!(status, 400);
    assert_eq!(answer["error"]["type"], "invalid_request_error");
    let (status, _, answer) = w
        .post(
            "/v1/embeddings",
            &key,
            json!({"model": "claude", "input": "Hi"}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(w.seen.lock().len(), before);

    // Usage is counted from the upstream's own figures.
    let logs = w.ada_logs("?model=claude").await;
    let tokens: Vec<(u64, u64)> = logs
        .iter()
        .map(|l| {
            (
                l["prompt_tokens"].as_u64().unwrap(),
                l["completion_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(tokens, [(7, 3), (7, 3)]);
    let logs = w.ada_logs("?model=gpt").await;
    assert_eq!(logs.len(), 2);
    assert!(logs.iter().all(|l| l["prompt_tokens"] == 10
        && l["completion_tokens"] == 20
        && l["tokens_estimated"] == false));
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_health_comes_from_calls_and_probes() {
    let mut config = config();
    config.endpoints.health_probe_secs = 1;
    let w = World::with(config).await;
    let admin = w.token("admin@example.com").await;
    // Nothing listens on port 9: probes of this endpoint fail to connect.
    let dead = w
        .app
        .services
        .catalog
        .create_endpoint(
            &w.admin,
            EndpointSpec {
                name: Some("dead".into()),
                base_url: Some("http://127.0.0.1:9".into()),
                flavour: Some(ApiFlavour::Openai),
                connect_timeout_ms: Some(500),
                ..Default::default()
            },
            &w.c,
        )
        .await
        .unwrap();
    let health = |name: &'static str| {
        let (app, admin) = (&w.app, &admin);
        async move {
            let (status, list) = app.by(admin).get("/api/v1/endpoints").await;
            assert_eq!(status, 200);
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["name"] == name)
                .unwrap()["health"]
                .clone()
        }
    };
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    assert_eq!(w.chat(&key, chat_body("gpt")).await.0, 200);
    let h = health("openai").await;
    assert_eq!(h["status"], "healthy", "{h}");
    assert!(h["last_success_at"].is_string(), "{h}");

    // The endpoint's own failures count; three in a row make it unhealthy.
    assert_eq!(w.chat(&key, chat_body("broken")).await.0, 502);
    let h = health("openai").await;
    assert_eq!(
        (&h["status"], &h["consecutive_failures"], &h["last_error"]),
        (&json!("degraded"), &json!(1), &json!("HTTP 500")),
        "{h}"
    );
    for _ in 0..2 {
        assert_eq!(w.chat(&key, chat_body("broken")).await.0, 502);
    }
    assert_eq!(health("openai").await["status"], "unhealthy");
    // One answer is a recovery.
    assert_eq!(w.chat(&key, chat_body("gpt")).await.0, 200);
    let h = health("openai").await;
    assert_eq!(
        (&h["status"], &h["consecutive_failures"]),
        (&json!("healthy"), &json!(0)),
        "{h}"
    );
    assert_eq!(
        h["last_error"], "HTTP 500",
        "the last failure stays visible"
    );

    // Probes: endpoints nobody calls are asked for their model list. The
    // upstream has none (404) — it answered, so it is healthy; the dead one
    // is not.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let anthropic = health("anthropic").await;
        let dead = health("dead").await;
        if anthropic["status"] == "healthy" && dead["status"] == "unhealthy" {
            assert!(
                dead["last_error"].as_str().unwrap().contains("onnect"),
                "{dead}"
            );
            assert!(dead["last_success_at"].is_null(), "{dead}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "probes did not run: {anthropic} {dead}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Prometheus sees the same, per endpoint ID.
    let metrics = w.metrics().await;
    let line = |name: &str, id: &str| {
        metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name}{{endpoint=\"{id}\"}}")))
            .map(|l| l.rsplit(' ').next().unwrap().to_string())
    };
    let dead_id = dead.id.to_string();
    assert_eq!(
        line("gatehouse_endpoint_up", &dead_id).as_deref(),
        Some("0")
    );
    let failures: u32 = line("gatehouse_endpoint_consecutive_failures", &dead_id)
        .unwrap()
        .parse()
        .unwrap();
    assert!(failures >= 3, "{metrics}");
    let anthropic_id = w
        .app
        .services
        .catalog
        .list_endpoints(&w.admin)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.name == "anthropic")
        .unwrap()
        .id
        .to_string();
    assert_eq!(
        line("gatehouse_endpoint_up", &anthropic_id).as_deref(),
        Some("1")
    );
    // A deleted endpoint's record goes with it.
    w.app
        .services
        .catalog
        .delete_endpoint(&w.admin, dead.id, &w.c)
        .await
        .unwrap();
    assert_eq!(
        w.app.services.catalog.health().read(dead.id).status,
        gatehouse_core::catalog::health::HealthStatus::Unknown
    );
    let metrics = w.metrics().await;
    assert!(!metrics.contains(&dead_id), "{metrics}");
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_pass_through_as_they_arrive_and_are_counted() {
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let mut body = chat_body("gpt");
    body["stream"] = json!(true);
    let started = Instant::now();
    let mut response = w.send("/v1/chat/completions", &key, &body).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let first = response.chunk().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(String::from_utf8_lossy(&first).contains("Hel"));
    // The upstream pauses 1.5 s after its first event: it was not buffered.
    assert!(
        first_at < Duration::from_millis(1200),
        "first chunk after {first_at:?}"
    );
    let mut rest = Vec::new();
    while let Some(chunk) = response.chunk().await.unwrap() {
        rest.extend_from_slice(&chunk);
    }
    assert!(started.elapsed() >= Duration::from_millis(1400));
    assert!(String::from_utf8_lossy(&rest).contains("[DONE]"));
    assert_eq!(
        w.seen.lock().last().unwrap().2["stream_options"]["include_usage"],
        true,
        "the final usage chunk is asked for"
    );
    let streamed = |path: &'static str, body: Value| {
        let (w, key) = (&w, &key);
        async move { w.send(path, key, &body).await.text().await.unwrap() }
    };
    let stream_of = |model: &str| {
        let mut body = chat_body(model);
        body["stream"] = json!(true);
        body
    };
    // An upstream that sends no usage: the gateway counts and says so.
    let text = streamed("/v1/chat/completions", stream_of("silent")).await;
    assert!(text.contains("[DONE]"));
    // An upstream that claims more tokens than any call can use is not
    // believed: one answer would otherwise outspend any budget.
    let text = streamed("/v1/chat/completions", stream_of("boastful")).await;
    assert!(text.contains("[DONE]"));
    let anthropic = json!({"model": "claude", "max_tokens": 50, "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let text = streamed("/v1/messages", anthropic).await;
    assert!(text.contains("message_stop"));
    let logs = json!({"items": w.ada_logs("").await});
    let logs = logs["items"].as_array().unwrap();
    let find = |model: &str| logs.iter().find(|l| l["model"] == model).unwrap();
    let gpt = find("gpt");
    assert_eq!(
        (
            gpt["stream"].as_bool(),
            gpt["prompt_tokens"].as_u64(),
            gpt["completion_tokens"].as_u64()
        ),
        (Some(true), Some(10), Some(20))
    );
    assert_eq!(gpt["tokens_estimated"], false);
    let quiet = find("silent");
    assert_eq!(quiet["tokens_estimated"], true);
    assert!(quiet["completion_tokens"].as_u64().unwrap() > 0);
    let boast = find("boastful");
    assert_eq!(boast["tokens_estimated"], true, "{boast}");
    assert!(boast["prompt_tokens"].as_u64().unwrap() < 1000, "{boast}");
    assert!(boast["cost_usd"].as_f64().unwrap() < 0.01, "{boast}");
    let claude = find("claude");
    assert_eq!(
        (
            claude["prompt_tokens"].as_u64(),
            claude["completion_tokens"].as_u64()
        ),
        (Some(7), Some(3))
    );
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_budgets_hold_across_instances_on_postgres() {
    let Some(pg) = gatehouse_storage::postgres::testing::TestPostgres::shared() else {
        return;
    };
    let url = pg.create_database().await;
    let shared = || {
        let mut config = config();
        config.storage.engine = "postgres".into();
        config.storage.postgres_url = Some(url.clone());
        config
    };
    let w = World::with(shared()).await;
    let other = spawn_app(shared()).await;
    let (_, key) = w
        .key(
            &w.ada,
            NewKey {
                rpm_limit: Some(4),
                budget: Some(Budget {
                    max_usd: 1.0,
                    period: BudgetPeriod::Month,
                }),
                ..Default::default()
            },
        )
        .await;
    let call = |app: &TestApp| {
        let (client, url, key) = (
            app.client.clone(),
            app.url("/v1/chat/completions"),
            key.clone(),
        );
        async move {
            client
                .post(url)
                .bearer_auth(key)
                .json(&chat_body("gpt"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    // The other instance learns of the key and models from the change feed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while other.services.keys.index().check(&key, "gpt").is_err() {
        assert!(
            Instant::now() < deadline,
            "the other instance never saw the key"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Three calls on one instance; the other instance learns of them at its
    // next sync (200 ms) after it first sees the key this minute: one more
    // call fits, and after that sync none.
    // (Skip a minute boundary, which would reset the window mid-test.)
    let second = w.app.services.usage.env().clock.now().timestamp() % 60;
    if second > 55 {
        tokio::time::sleep(Duration::from_secs(61 - second as u64)).await;
    }
    for _ in 0..3 {
        assert_eq!(call(&w.app).await, 200);
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(call(&other).await, 200);
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(call(&other).await, 429, "the limit holds across instances");
    assert_eq!(call(&w.app).await, 429);
    // Spend settled on the first instance reaches the other one's ledger.
    let spent = |app: &TestApp| {
        let now = app.services.usage.env().clock.now();
        let period = gatehouse_core::usage::ledger::period_key(BudgetPeriod::Month, now);
        let key_id = app
            .services
            .keys
            .index()
            .check(&key, "gpt")
            .map(|g| g.key_id);
        key_id.map(|id| {
            app.services
                .usage
                .ledger()
                .spent(gatehouse_core::usage::ledger::Holder::Key(id), &period)
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let (a, b) = (spent(&w.app), spent(&other));
    assert_eq!(a, b, "both instances know the same spend");
    assert_eq!(
        a.unwrap(),
        4 * gatehouse_core::common::to_micros(10.0 * INPUT + 20.0 * OUTPUT)
    );
    other.stop().await;
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_goes_away_gives_its_reservation_back() {
    let w = World::new().await;
    // Room for one call in flight: each reserves about $0.000225.
    let (_, key) = w
        .key(
            &w.ada,
            NewKey {
                budget: Some(Budget {
                    max_usd: 0.0003,
                    period: BudgetPeriod::Day,
                }),
                ..Default::default()
            },
        )
        .await;
    // The upstream sleeps 3 s on `sleepy`; the client gives up after 200 ms.
    let impatient = reqwest::Client::builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let gave_up = impatient
        .post(w.app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&chat_body("sleepy"))
        .send()
        .await;
    assert!(gave_up.is_err());
    // The server notices the closed connection and releases the reservation.
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let (status, _, _) = w.chat(&key, chat_body("gpt")).await;
        if status == 200 {
            break;
        }
        assert_eq!(status, 429);
        assert!(
            Instant::now() < deadline,
            "the reservation was never given back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let logs = json!({"items": w.ada_logs("").await});
    let statuses: Vec<u64> = logs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_u64().unwrap())
        .collect();
    assert!(statuses.contains(&499), "{statuses:?}");
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_behind_an_outbound_proxy_are_reached_through_it() {
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    // The endpoint's host does not resolve; only its proxy can reach it.
    let (status, _, body) = w.chat(&key, chat_body("via-proxy")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["model"], "upstream-gpt");
    let stream = json!({"model": "via-proxy", "stream": true, "messages": [{"role": "user", "content": "Hi"}]});
    let (status, _, _) = w.chat(&key, stream).await;
    assert_eq!(status, 200);
    let (path, auth, _) = w.seen.lock().last().cloned().unwrap();
    assert_eq!(path, "/v1/chat/completions");
    assert_eq!(auth, format!("Bearer {UPSTREAM_KEY}"));
    w.app.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_openai_sdk_streams_with_the_plain_choices_loop() {
    let Some(python) = sdk_python() else {
        return;
    };
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let base = w.app.url("");
    let runs = sdk_script(&python, "openai_stream.py", &[&base, &key, "gpt"]).await;
    assert_eq!(
        runs,
        vec![
            json!({"include_usage": false, "text": "Hello", "usage": null}),
            json!({"include_usage": true, "text": "Hello", "usage": {
                "prompt_tokens": 10, "completion_tokens": 20, "total_tokens": null,
                "completion_tokens_details": null, "prompt_tokens_details": null}}),
        ]
    );
    // Both were counted, with the upstream's usage.
    w.flush().await;
    let logs = w.ada_logs("").await;
    assert_eq!(logs.len(), 2, "{logs:?}");
    for log in &logs {
        assert_eq!(
            (
                log["prompt_tokens"].as_u64(),
                log["completion_tokens"].as_u64()
            ),
            (Some(10), Some(20)),
            "{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_anthropic_sdk_creates_and_streams_messages() {
    let Some(python) = sdk_python() else {
        return;
    };
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let base = w.app.url("");
    // `claude` is behind an Anthropic endpoint, `gpt` behind an OpenAI one.
    let args = [base.as_str(), &key, "claude", "gpt"];
    let lines = sdk_script(&python, "anthropic_messages.py", &args).await;
    assert_eq!(
        lines,
        vec![
            json!({"model": "claude", "stream": false, "text": "Hello", "stop_reason": null, "usage": [7, 3]}),
            json!({"model": "claude", "stream": true, "text": "Hi", "stop_reason": "end_turn", "usage": [7, 3]}),
            json!({"model": "gpt", "stream": false, "text": "Hello", "stop_reason": "end_turn", "usage": [10, 20]}),
            json!({"model": "gpt", "stream": true, "text": "Hello", "stop_reason": "end_turn", "usage": [10, 20]}),
            json!({"retrieved": "claude", "type": "model"}),
            json!({"counted": "claude", "input_tokens": 42}),
            json!({"error": "unknown model", "raised": "NotFoundError", "status": 404, "type": "not_found_error"}),
            json!({"error": "unknown key", "raised": "AuthenticationError", "status": 401, "type": "authentication_error"}),
        ]
    );
    // The four calls were counted with the upstream's usage.
    w.flush().await;
    let logs = w.ada_logs("").await;
    let counted: Vec<_> = logs
        .iter()
        .map(|l| {
            (
                l["model"].as_str().unwrap(),
                l["stream"].as_bool().unwrap(),
                l["prompt_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(counted.len(), 4, "{logs:?}");
    for (model, stream, prompt) in [
        ("claude", false, 7),
        ("claude", true, 7),
        ("gpt", false, 10),
        ("gpt", true, 10),
    ] {
        assert!(counted.contains(&(model, stream, prompt)), "{counted:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn input_tokens_are_counted_by_anthropic_endpoints_and_estimated_for_others() {
    let w = World::new().await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let hello = json!([{"role": "user", "content": "Hello there"}]);
    // Claude Code's path, query and all; the model's Anthropic endpoint counts.
    let claude = json!({"model": "claude", "messages": hello});
    for path in [
        "/v1/messages/count_tokens?beta=true",
        "/messages/count_tokens",
    ] {
        let (status, _, counted) = w.post(path, &key, claude.clone()).await;
        assert_eq!((status, &counted), (200, &json!({"input_tokens": 42})));
        let (path, auth, body) = w.seen.lock().last().cloned().unwrap();
        assert_eq!(path, "/v1/messages/count_tokens");
        assert_eq!(
            (auth.as_str(), &body["model"]),
            (UPSTREAM_KEY, &json!("upstream-claude"))
        );
    }
    // An OpenAI endpoint cannot count: four bytes a token of the request.
    let gpt = json!({"model": "gpt", "messages": hello, "system": "Be brief."});
    let seen = w.seen.lock().len();
    let (status, _, counted) = w.post("/v1/messages/count_tokens", &key, gpt.clone()).await;
    let estimate = gpt.to_string().len().div_ceil(4) as u64;
    assert_eq!(
        (status, counted["input_tokens"].as_u64()),
        (200, Some(estimate))
    );
    assert_eq!(w.seen.lock().len(), seen, "nothing was sent upstream");
    // Refused as a call would be, in Anthropic's shape.
    let (status, _, refused) = w
        .post("/v1/messages/count_tokens", "ak_wrong", claude.clone())
        .await;
    assert_eq!(
        (status, refused["error"]["type"].as_str()),
        (401, Some("authentication_error"))
    );
    let unknown = json!({"model": "no-such-model", "messages": hello});
    let (status, _, refused) = w.post("/v1/messages/count_tokens", &key, unknown).await;
    assert_eq!(
        (status, refused["error"]["type"].as_str()),
        (404, Some("not_found_error"))
    );
    let (status, _, refused) = w
        .post(
            "/v1/messages/count_tokens",
            &key,
            json!({"messages": hello}),
        )
        .await;
    assert_eq!((status, refused["type"].as_str()), (400, Some("error")));
    // Nothing is generated: nothing is recorded.
    w.flush().await;
    assert!(w.ada_logs("").await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn huge_max_tokens_cannot_spend_past_a_budget() {
    let w = World::new().await;
    // $0.10 in total; a call of 10 + 20 tokens costs $0.00005.
    let spec = NewKey {
        budget: Some(Budget {
            max_usd: 0.10,
            period: BudgetPeriod::Total,
        }),
        ..NewKey::default()
    };
    let (_, key) = w.key(&w.ada, spec).await;
    let (status, _, body) = w.chat(&key, chat_body("gpt")).await;
    assert_eq!(status, 200, "{body}");
    // Output tokens priced into the reservation: clamped (here to 2^21, the
    // model's context length being unknown, so $4.19 > $0.10), never wrapped.
    for max_tokens in [1u64 << 62, (1 << 63) - 1, u64::MAX]
        .into_iter()
        .cycle()
        .take(15)
    {
        let mut body = chat_body("gpt");
        body["max_tokens"] = json!(max_tokens);
        let (status, _, answer) = w.chat(&key, body).await;
        assert_eq!(status, 429, "max_tokens {max_tokens}: {answer}");
        assert_eq!(answer["error"]["type"], "rate_limit_error", "{answer}");
    }
    let logs = w.ada_logs("").await;
    assert_eq!(logs.len(), 1, "only the ordinary call reached the model");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_answer_over_the_limit_is_a_502_and_is_not_read_whole() {
    let mut config = config();
    config.endpoints.max_answer_bytes = 1 << 20;
    let w = World::with(config).await;
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let (status, _, body) = w.chat(&key, chat_body("huge")).await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("1048576 bytes"),
        "{body}"
    );
    // Smaller answers still pass.
    let (status, _, _) = w.chat(&key, chat_body("gpt")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_body_from_a_caller_without_a_key_is_not_parsed() {
    let w = World::new().await;
    // 2 MiB of distinct member names: refused for the key alone.
    let mut body = String::from("{\"m\":0");
    for i in 0.. {
        if body.len() > 2_050_000 {
            break;
        }
        body.push_str(&format!(",\"m{i}\":0"));
    }
    body.push('}');
    assert!(
        body.len() < 2 * 1024 * 1024,
        "within server.body_limit_bytes"
    );
    let response = w
        .app
        .client
        .post(w.app.url("/v1/chat/completions"))
        .header("authorization", "Bearer ak_notakeynotakeynotakeynotakeynot")
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // With a key, the same body is read and refused for its members.
    let (_, key) = w.key(&w.ada, NewKey::default()).await;
    let response = w
        .app
        .client
        .post(w.app.url("/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let members: Vec<String> = (0..300).map(|i| format!("\"m{i}\":0")).collect();
    let (status, _, answer) = w
        .chat(
            &key,
            serde_json::from_str(&format!("{{{}}}", members.join(","))).unwrap(),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("members")
    );
}
