//! The gateway against a fast local upstream, compared with calling the
//! upstream directly: requests per second and latency at p50 and p99, at 1
//! and 32 connections, for non-streaming and streaming chat completions.
//! Load generator, gateway and upstream share this machine's cores.
//!
//! `cargo bench -p gatehouse --bench gateway` (numbers in docs/performance.md;
//! `GATEHOUSE_BENCH_SECS` sets the seconds per case, default 5).

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::response::{IntoResponse, Response};
use gatehouse::Gatehouse;
use gatehouse::config::{Config, Secret};
use gatehouse_core::accounts::sessions::ClientInfo;
use gatehouse_core::catalog::{EndpointSpec, ModelSpec};
use serde_json::{Value, json};

async fn upstream() -> String {
    async fn chat(axum::Json(body): axum::Json<Value>) -> Response {
        if body["stream"].as_bool().unwrap_or(false) {
            let mut text = String::new();
            for word in ["Hello", " there", "!"] {
                text.push_str(&format!(
                    "data: {}\n\n",
                    json!({"object": "chat.completion.chunk", "choices": [{"index": 0, "delta": {"content": word}}]})
                ));
            }
            text.push_str(&format!(
                "data: {}\n\ndata: [DONE]\n\n",
                json!({"object": "chat.completion.chunk", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 3}})
            ));
            return Response::builder()
                .header("content-type", "text/event-stream")
                .body(Body::from(text))
                .unwrap();
        }
        axum::Json(json!({
            "id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
        }))
        .into_response()
    }
    let app = axum::Router::new().route("/v1/chat/completions", axum::routing::post(chat));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A bare forwarding proxy: the same HTTP stack as the gateway (axum in,
/// reqwest out) without any decision, ledger or logging — the cost of the
/// extra hop alone.
async fn bare_proxy(upstream: String) -> String {
    let client = reqwest::Client::builder()
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let target = format!("{upstream}/v1/chat/completions");
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::body::Bytes| {
            let (client, target) = (client.clone(), target.clone());
            async move {
                let response = client
                    .post(target)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                let bytes = response.bytes().await.unwrap();
                ([("content-type", "application/json")], bytes)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/v1/chat/completions")
}

struct Outcome {
    per_sec: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    url: String,
    key: Option<String>,
    stream: bool,
    connections: usize,
    secs: u64,
) -> Outcome {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .tcp_nodelay(true)
        .build()
        .unwrap();
    let body = json!({"model": "bench", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "stream": stream});
    // Warm up the connections.
    for _ in 0..connections.min(8) {
        let mut r = client.post(&url).json(&body);
        if let Some(key) = &key {
            r = r.bearer_auth(key);
        }
        r.send().await.unwrap().bytes().await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(secs);
    let body = Arc::new(body);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (client, url, key, body) = (client.clone(), url.clone(), key.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut samples = Vec::new();
            while Instant::now() < deadline {
                let start = Instant::now();
                let mut r = client.post(&url).json(&*body);
                if let Some(key) = &key {
                    r = r.bearer_auth(key);
                }
                let response = r.send().await.unwrap();
                assert!(response.status().is_success(), "{}", response.status());
                response.bytes().await.unwrap();
                samples.push(start.elapsed());
            }
            samples
        }));
    }
    let started = Instant::now();
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await.unwrap());
    }
    let elapsed = started.elapsed().as_secs_f64();
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    Outcome {
        per_sec: samples.len() as f64 / elapsed,
        p50: at(0.5),
        p99: at(0.99),
    }
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let secs: u64 = std::env::var("GATEHOUSE_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let upstream = upstream().await;
    let mut config = Config::default();
    config.storage.engine = "memory".into();
    config.server.http_addr = "127.0.0.1:0".parse().unwrap();
    config.server.grpc_addr = "127.0.0.1:0".parse().unwrap();
    config.auth.jwt_secret = Some(Secret(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    ));
    config.auth.key_encryption_secret = Some(Secret(
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into(),
    ));
    config.bootstrap.admin_password = Some(Secret("correct horse battery staple".into()));
    config.log.level = "warn".into();
    let server = Gatehouse::build(&config).await.unwrap();
    let gateway = format!("http://{}/v1/chat/completions", server.http_addr().unwrap());
    let services = server.services.clone();
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let c = ClientInfo::default();
    let (admin, _) = services
        .accounts
        .login("admin@localhost", "correct horse battery staple", &c)
        .await
        .unwrap();
    let endpoint = services
        .catalog
        .create_endpoint(
            &admin,
            EndpointSpec {
                name: Some("local".into()),
                base_url: Some(upstream.clone()),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
    services
        .catalog
        .create_model(
            &admin,
            ModelSpec {
                name: Some("bench".into()),
                endpoint_id: Some(endpoint.id),
                input_cost_per_token: Some(0.000001),
                output_cost_per_token: Some(0.000002),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
    services.keys.index().catch_up().await.unwrap();
    let (_, key) = services
        .keys
        .create(&admin, Default::default(), &c)
        .await
        .unwrap();
    let direct = format!("{upstream}/v1/chat/completions");

    println!(
        "{secs} s per case; load generator, gateway and upstream on {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let bare = bare_proxy(upstream.clone()).await;
    for connections in [1, 32] {
        let d = load(direct.clone(), None, false, connections, secs).await;
        let b = load(bare.clone(), None, false, connections, secs).await;
        println!(
            "bare proxy (no gateway logic), json, {connections} conns: {:.0} req/s ({:.0}% of direct {:.0}), p50 {} µs, added p50 {} µs",
            b.per_sec,
            100.0 * b.per_sec / d.per_sec,
            d.per_sec,
            b.p50.as_micros(),
            b.p50.as_micros() as i64 - d.p50.as_micros() as i64,
        );
    }
    println!(
        "{:<10} {:>5} {:>12} {:>12} {:>10} {:>10} {:>12} {:>8}",
        "mode", "conns", "direct r/s", "gateway r/s", "gw p50", "gw p99", "added p50", "ratio"
    );
    for stream in [false, true] {
        for connections in [1, 32] {
            let d = load(direct.clone(), None, stream, connections, secs).await;
            let g = load(
                gateway.clone(),
                Some(key.clone()),
                stream,
                connections,
                secs,
            )
            .await;
            println!(
                "{:<10} {:>5} {:>12.0} {:>12.0} {:>8} µs {:>7} µs {:>9} µs {:>7.0}%",
                if stream { "stream" } else { "json" },
                connections,
                d.per_sec,
                g.per_sec,
                g.p50.as_micros(),
                g.p99.as_micros(),
                g.p50.as_micros() as i64 - d.p50.as_micros() as i64,
                100.0 * g.per_sec / d.per_sec,
            );
            let _ = d.p99;
        }
    }
}
