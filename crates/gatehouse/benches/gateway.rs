//! The gateway against a fast local upstream, compared with calling the
//! upstream directly: requests per second and latency at p50 and p99, at 1
//! and 32 connections, for non-streaming and streaming chat completions.
//! Load generator, gateway and upstream share this machine's cores.
//!
//! `cargo bench -p gatehouse --bench gateway` (numbers in docs/performance.md;
//! `GATEHOUSE_BENCH_SECS` sets the seconds per case, default 5).

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::response::{IntoResponse, Response};
use gatehouse::config::Secret;
use gatehouse_core::model::sessions::ClientInfo;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};

mod common;

/// The allocator the `gatehouse` binary uses.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
/// hyper's pooled client out) without any decision, ledger or logging — the
/// cost of the extra hop alone.
async fn bare_proxy(upstream: String) -> String {
    let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
    connector.set_nodelay(true);
    let client: hyper_util::client::legacy::Client<_, Full<Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build(connector);
    let target: hyper::Uri = format!("{upstream}/v1/chat/completions").parse().unwrap();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: Bytes| {
            let (client, target) = (client.clone(), target.clone());
            async move {
                let request = hyper::Request::post(target)
                    .header("content-type", "application/json")
                    .body(Full::new(body))
                    .unwrap();
                let response = client.request(request).await.unwrap();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
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
    /// CPU time of the serving threads per request (median of the turns).
    cpu: Duration,
}

/// One keep-alive HTTP/1.1 connection driven in a loop, like `wrk`: the
/// request is built once, each answer is read to its end.
async fn connection(
    url: &str,
    key: Option<&str>,
    body: Bytes,
    warm_until: Instant,
    deadline: Instant,
) -> (Vec<Duration>, usize) {
    let uri: hyper::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().clone();
    let stream = tokio::net::TcpStream::connect(authority.as_str())
        .await
        .unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let request = || {
        let mut r = hyper::Request::post(uri.path())
            .header("host", authority.as_str())
            .header("content-type", "application/json");
        if let Some(key) = key {
            r = r.header("authorization", format!("Bearer {key}"));
        }
        r.body(Full::new(body.clone())).unwrap()
    };
    let (mut samples, mut requests) = (Vec::with_capacity(1 << 16), 0);
    while Instant::now() < deadline {
        let start = Instant::now();
        sender.ready().await.unwrap();
        let response = sender.send_request(request()).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.into_body().collect().await.unwrap();
        requests += 1;
        if start >= warm_until {
            samples.push(start.elapsed());
        }
    }
    (samples, requests)
}

/// What one load run measured: each request's latency after the warm-up,
/// how long the measured part took, and the CPU time the threads of the
/// role under load used per request (warm-up included).
struct Run {
    samples: Vec<Duration>,
    secs: f64,
    cpu_per_request: Duration,
}

/// The CPU time (ns) used so far by each of this process's threads named
/// `role` (a runtime's workers and blocking threads), by thread ID, from the
/// scheduler's own accounting (`/proc/self/task/*/schedstat`; none elsewhere).
fn cpu_times(role: &str) -> std::collections::HashMap<std::ffi::OsString, u64> {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return Default::default();
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|comm| comm.trim_end() == role)
        })
        .filter_map(|task| {
            let stat = std::fs::read_to_string(task.path().join("schedstat")).ok()?;
            let ns = stat.split_whitespace().next()?.parse().ok()?;
            Some((task.file_name(), ns))
        })
        .collect()
}

/// The CPU time `role`'s threads used since `before` (threads that started
/// since count from zero; one that ended takes its share with it).
fn cpu_since(role: &str, before: &std::collections::HashMap<std::ffi::OsString, u64>) -> Duration {
    let used = cpu_times(role)
        .iter()
        .map(|(tid, ns)| ns.saturating_sub(before.get(tid).copied().unwrap_or(0)))
        .sum();
    Duration::from_nanos(used)
}

/// Drives `connections` connections for `millis` from this thread (a
/// single-threaded runtime, so the load generator takes about one core at
/// most, as `wrk -t1` would).
fn load((url, key, role): Target, stream: bool, connections: usize, millis: u64) -> Run {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = Bytes::from(
        json!({"model": "bench", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16, "stream": stream})
            .to_string(),
    );
    let cpu_before = cpu_times(role);
    runtime.block_on(async {
        // The first fifth of the time warms up connections and caches.
        let warm_until = Instant::now() + Duration::from_millis(millis) / 5;
        let deadline = Instant::now() + Duration::from_millis(millis);
        let mut tasks = Vec::new();
        for _ in 0..connections {
            let (url, key, body) = (url.to_string(), key.map(str::to_string), body.clone());
            tasks.push(tokio::spawn(async move {
                connection(&url, key.as_deref(), body, warm_until, deadline).await
            }));
        }
        let (mut samples, mut requests) = (Vec::new(), 0);
        for task in tasks {
            let (s, n) = task.await.unwrap();
            samples.extend(s);
            requests += n;
        }
        let secs = warm_until.elapsed().as_secs_f64();
        Run {
            samples,
            secs,
            cpu_per_request: cpu_since(role, &cpu_before) / requests.max(1) as u32,
        }
    })
}

/// What a load run targets: the URL, the key to present, and the name of
/// the threads that serve it (whose CPU time is measured).
type Target<'a> = (&'a str, Option<&'a str>, &'a str);

/// Loads `a` and `b` (URL and key) in turns of one second, `secs` seconds
/// each, so that whatever else this machine does at the time weighs on both
/// alike; the ratio of the two is what the targets are about.
fn compare(
    a: Target,
    b: Target,
    stream: bool,
    connections: usize,
    secs: u64,
) -> (Outcome, Outcome) {
    let turn = setting("GATEHOUSE_BENCH_TURN_MS", 1000u64).clamp(100, secs * 1000);
    let (mut runs_a, mut runs_b) = (Vec::new(), Vec::new());
    for _ in 0..(secs * 1000 / turn).max(1) {
        runs_a.push(load(a, stream, connections, turn));
        runs_b.push(load(b, stream, connections, turn));
    }
    (Outcome::of(runs_a), Outcome::of(runs_b))
}

impl Outcome {
    fn of(runs: Vec<Run>) -> Outcome {
        let secs: f64 = runs.iter().map(|r| r.secs).sum();
        let mut cpu: Vec<Duration> = runs.iter().map(|r| r.cpu_per_request).collect();
        cpu.sort();
        let mut samples: Vec<Duration> = runs.into_iter().flat_map(|r| r.samples).collect();
        samples.sort();
        let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
        Outcome {
            per_sec: samples.len() as f64 / secs,
            p50: at(0.5),
            p99: at(0.99),
            cpu: cpu[cpu.len() / 2],
        }
    }
}

/// Runs `serve` on a runtime of its own on its own threads (`workers` of
/// them), so the upstream, the gateway and the load generator do not share a
/// scheduler — as three processes would not.
fn spawn_runtime<F, T>(name: &str, workers: usize, serve: F) -> T
where
    F: AsyncFnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_name = name.to_string();
    let builder = std::thread::Builder::new().name(name.to_string());
    builder
        .spawn(move || {
            let runtime = if workers == 1 {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
            } else {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(workers)
                    .thread_name(thread_name)
                    .enable_all()
                    .build()
                    .unwrap()
            };
            runtime.block_on(async move {
                tx.send(serve().await).unwrap();
                std::future::pending::<()>().await
            })
        })
        .unwrap();
    rx.recv().unwrap()
}

/// A number from the environment variable `name`, or `default`.
fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let secs = setting("GATEHOUSE_BENCH_SECS", 5u64);
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let workers = setting("GATEHOUSE_BENCH_WORKERS", cores);
    // `GATEHOUSE_BENCH_LOG=info` logs as the binary does by default (plain
    // lines on stderr): the cost of a log line per request.
    if let Ok(level) = std::env::var("GATEHOUSE_BENCH_LOG") {
        gatehouse::telemetry::init(&gatehouse::config::LogConfig {
            level,
            format: gatehouse::config::LogFormat::Plain,
        });
    }
    let upstream = spawn_runtime("upstream", 1, upstream);
    let bare = spawn_runtime("bare-proxy", workers, {
        let upstream = upstream.clone();
        async move || bare_proxy(upstream).await
    });
    let (gateway, key) = spawn_runtime("gateway", workers, {
        let upstream = upstream.clone();
        async move || gatehouse(upstream).await
    });
    let direct = format!("{upstream}/v1/chat/completions");

    println!(
        "{secs} s per case and side, in turns of 1 s; load generator (1 thread), gateway ({workers} workers) and upstream (1 thread) on {cores} cores"
    );
    println!(
        "{:<10} {:>5} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12} {:>8} {:>10}",
        "mode",
        "conns",
        "direct r/s",
        "gateway r/s",
        "direct p50",
        "gw p50",
        "gw p99",
        "added p50",
        "ratio",
        "gw CPU/req"
    );
    // `GATEHOUSE_BENCH_CASES=json-1,stream-32` runs only those cases.
    let only = std::env::var("GATEHOUSE_BENCH_CASES").ok();
    let wanted = |case: &str| {
        only.as_ref()
            .is_none_or(|o| o.split(',').any(|c| c == case))
    };
    for stream in [false, true] {
        for connections in [1, 32] {
            let mode = if stream { "stream" } else { "json" };
            if !wanted(&format!("{mode}-{connections}")) {
                continue;
            }
            let (d, g) = compare(
                (&direct, None, "upstream"),
                (&gateway, Some(&key), "gateway"),
                stream,
                connections,
                secs,
            );
            println!(
                "{:<10} {:>5} {:>12.0} {:>12.0} {:>7} µs {:>7} µs {:>7} µs {:>9} µs {:>7.0}% {:>7.1} µs",
                mode,
                connections,
                d.per_sec,
                g.per_sec,
                d.p50.as_micros(),
                g.p50.as_micros(),
                g.p99.as_micros(),
                g.p50.as_micros() as i64 - d.p50.as_micros() as i64,
                100.0 * g.per_sec / d.per_sec,
                g.cpu.as_secs_f64() * 1e6,
            );
        }
    }
    for connections in [1, 32] {
        if !wanted(&format!("bare-{connections}")) {
            continue;
        }
        let (d, b) = compare(
            (&direct, None, "upstream"),
            (&bare, None, "bare-proxy"),
            false,
            connections,
            secs,
        );
        println!(
            "bare proxy (no gateway logic), json, {connections} conns: {:.0} req/s ({:.0}% of direct {:.0}), p50 {} µs (direct {} µs), added p50 {} µs, CPU {:.1} µs/req",
            b.per_sec,
            100.0 * b.per_sec / d.per_sec,
            d.per_sec,
            b.p50.as_micros(),
            d.p50.as_micros(),
            b.p50.as_micros() as i64 - d.p50.as_micros() as i64,
            b.cpu.as_secs_f64() * 1e6,
        );
    }
}

/// Gatehouse on the embedded engine (the default) in a temporary directory,
/// with one model on `upstream` and one key:
/// the gateway's chat URL and the key.
async fn gatehouse(upstream: String) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    // Lives as long as the bench process.
    let mut config = common::embedded_config(dir.keep());
    config.auth.jwt_secret = Some(Secret(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    ));
    config.auth.key_encryption_secret = Some(Secret(
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into(),
    ));
    let (server, services, admin) = common::open(&config).await;
    let gateway = format!("http://{}/v1/chat/completions", server.http_addr().unwrap());
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let c = ClientInfo::default();
    common::serve_model(&services, &admin, &upstream, "bench").await;
    services.keys.index().catch_up().await.unwrap();
    let (_, key) = services
        .keys
        .create(&admin, Default::default(), None, &c)
        .await
        .unwrap();
    (gateway, key)
}
