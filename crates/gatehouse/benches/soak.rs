//! Memory under sustained load: the built `gatehouse` binary on the embedded
//! engine, with 100 000 API keys, serves 2 million chat completions from a
//! fast local upstream while its resident memory (RSS) is sampled every
//! second. What it shows is whether memory levels off, and where.
//!
//! `cargo bench -p gatehouse --bench soak` (figures in docs/performance.md).
//! `GATEHOUSE_SOAK_CALLS` (2 000 000), `GATEHOUSE_SOAK_KEYS` (100 000) and
//! `GATEHOUSE_SOAK_CONNECTIONS` (32) change the load; the server runs with
//! its defaults (`storage.cache_mb` 64).

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use gatehouse_core::accounts::AdminNewUser;
use gatehouse_core::catalog::EndpointSpec;
use gatehouse_core::model::sessions::ClientInfo;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::json;

use common::PASSWORD;

mod common;
/// Keys one account holds at most.
const KEYS_PER_USER: usize = 1000;

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A fast upstream answering every chat completion with a small answer.
async fn upstream() -> String {
    let answer = json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "soak",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello there!"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
    })
    .to_string();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move || {
            let answer = answer.clone();
            async move { ([("content-type", "application/json")], answer) }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// Prepares `data` in-process: a model on `upstream` and `keys` keys spread
/// over accounts of at most [`KEYS_PER_USER`]; the keys.
async fn prepare(data: &Path, upstream: &str, keys: usize) -> Vec<String> {
    let (server, services, admin) =
        common::open(&common::embedded_config(data.to_path_buf())).await;
    let c = ClientInfo::default();
    common::serve_model(&services, &admin, upstream, "soak").await;
    let started = Instant::now();
    let mut made = Vec::with_capacity(keys);
    for account in 0..keys.div_ceil(KEYS_PER_USER) {
        let email = format!("soak{account}@example.com");
        let new = AdminNewUser::new(&email, Some(PASSWORD));
        let (user, _) = services
            .accounts
            .admin_create_user(&admin, new, &c)
            .await
            .unwrap();
        let count = KEYS_PER_USER.min(keys - made.len());
        let mut pending = Vec::new();
        for _ in 0..count {
            let (keys, user, c) = (services.keys.clone(), user.clone(), c.clone());
            pending.push(tokio::spawn(async move {
                keys.create(&user, Default::default(), None, &c)
                    .await
                    .unwrap()
                    .1
            }));
        }
        for key in pending {
            made.push(key.await.unwrap());
        }
    }
    eprintln!(
        "prepared {} keys in {:.0} s",
        made.len(),
        started.elapsed().as_secs_f64()
    );
    drop(services);
    server.run_until_stopped(async {}).await.unwrap();
    made
}

/// Points the prepared store's endpoint at this run's `upstream`.
async fn repoint(data: &Path, upstream: &str) {
    let (server, services, admin) =
        common::open(&common::embedded_config(data.to_path_buf())).await;
    let c = ClientInfo::default();
    let endpoint = services
        .catalog
        .list_endpoints(&admin)
        .await
        .unwrap()
        .remove(0);
    services
        .catalog
        .update_endpoint(
            &admin,
            endpoint.id,
            EndpointSpec {
                base_url: Some(upstream.to_string()),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
    drop(services);
    server.run_until_stopped(async {}).await.unwrap();
}

/// The resident memory of process `pid`, in MiB.
fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Bytes under `dir`.
fn size_of(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map_or(0, |entries| {
        entries
            .flatten()
            .map(|e| match e.metadata() {
                Ok(m) if m.is_dir() => size_of(&e.path()),
                Ok(m) => m.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// One keep-alive connection sending calls until `calls` is used up, each
/// with the next of `keys` (so every key is used, in turn).
async fn connection(addr: String, keys: Arc<Vec<String>>, next: Arc<AtomicU64>, calls: u64) {
    let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let body = Bytes::from(
        json!({"model": "soak", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 16})
            .to_string(),
    );
    loop {
        let n = next.fetch_add(1, Ordering::Relaxed);
        if n >= calls {
            return;
        }
        let key = &keys[(n % keys.len() as u64) as usize];
        let request = hyper::Request::post("/v1/chat/completions")
            .header("host", addr.as_str())
            .header("content-type", "application/json")
            .header("authorization", format!("Bearer {key}"))
            .body(Full::new(body.clone()))
            .unwrap();
        sender.ready().await.unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.into_body().collect().await.unwrap();
    }
}

fn main() {
    let calls: u64 = setting("GATEHOUSE_SOAK_CALLS", 2_000_000);
    let keys: usize = setting("GATEHOUSE_SOAK_KEYS", 100_000);
    let connections: usize = setting("GATEHOUSE_SOAK_CONNECTIONS", 32);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let upstream = runtime.block_on(upstream());
    // GATEHOUSE_SOAK_DATA keeps the prepared store (and its keys) there, to
    // be used again by the next run; it must be prepared with this upstream's
    // address, so the next run reuses only the keys and its own model.
    let kept = std::env::var_os("GATEHOUSE_SOAK_DATA").map(std::path::PathBuf::from);
    let data = kept.clone().unwrap_or_else(|| dir.path().join("data"));
    let key_file = data.with_extension("keys");
    let keys = match std::fs::read_to_string(&key_file) {
        Ok(text) if kept.is_some() => {
            let keys: Vec<String> = text.lines().map(str::to_string).collect();
            runtime.block_on(repoint(&data, &upstream));
            keys
        }
        _ => {
            let keys = runtime.block_on(prepare(&data, &upstream, keys));
            if kept.is_some() {
                std::fs::write(&key_file, keys.join("\n")).unwrap();
            }
            keys
        }
    };
    let keys = Arc::new(keys);

    // GATEHOUSE_SOAK_WRAP runs the server under a tool (`heaptrack`, …).
    let mut command = match std::env::var_os("GATEHOUSE_SOAK_WRAP") {
        Some(tool) => {
            let mut command = Command::new(tool);
            command.arg(env!("CARGO_BIN_EXE_gatehouse"));
            command
        }
        None => Command::new(env!("CARGO_BIN_EXE_gatehouse")),
    };
    let mut child = command
        .args([
            "serve",
            "--http-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "127.0.0.1:0",
        ])
        .env("GATEHOUSE__STORAGE__PATH", &data)
        .env("GATEHOUSE__LOG__FORMAT", "plain")
        .current_dir(dir.path())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = loop {
        let line = lines.next().expect("the server starts").unwrap();
        if let Some(rest) = line.split("serving http=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_string();
        }
    };
    // Keep reading the log, so the server never blocks on a full pipe; with
    // GATEHOUSE_SOAK_LOG, into that file.
    let log = std::env::var_os("GATEHOUSE_SOAK_LOG").map(|p| std::fs::File::create(p).unwrap());
    std::thread::spawn(move || {
        use std::io::Write;
        let mut log = log;
        for line in lines.map_while(Result::ok) {
            if let Some(file) = log.as_mut() {
                let _ = writeln!(file, "{line}");
            }
        }
    });
    let started_rss = rss_mib(pid);
    println!("calls,seconds,rss_mib");
    println!("0,0,{started_rss:.0}");

    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let load = {
        let (keys, next) = (keys.clone(), next.clone());
        runtime.spawn(async move {
            let tasks: Vec<_> = (0..connections)
                .map(|_| tokio::spawn(connection(addr.clone(), keys.clone(), next.clone(), calls)))
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        })
    };
    let (mut peak, mut samples) = (started_rss, Vec::new());
    let mut last_print = Instant::now();
    while !load.is_finished() {
        std::thread::sleep(Duration::from_secs(1));
        let rss = rss_mib(pid);
        let done = next.load(Ordering::Relaxed).min(calls);
        peak = peak.max(rss);
        samples.push((done, rss));
        if last_print.elapsed() >= Duration::from_secs(10) {
            println!("{done},{:.0},{rss:.0}", started.elapsed().as_secs_f64());
            last_print = Instant::now();
        }
    }
    runtime.block_on(load).unwrap();
    let secs = started.elapsed().as_secs_f64();
    // Let the last request logs flush before the final figures.
    std::thread::sleep(Duration::from_secs(3));
    let end_rss = rss_mib(pid);
    println!("{calls},{secs:.0},{end_rss:.0}");
    let second_half = samples
        .iter()
        .filter(|(done, _)| *done >= calls / 2)
        .map(|(_, rss)| *rss);
    let (lo, hi) = second_half.fold((f64::MAX, 0.0_f64), |(lo, hi), r| (lo.min(r), hi.max(r)));
    eprintln!(
        "soak: {calls} calls with {} keys in {secs:.0} s ({:.0}/s); RSS {started_rss:.0} MiB at start, \
         peak {peak:.0} MiB, {lo:.0}–{hi:.0} MiB over the second half, {end_rss:.0} MiB at the end; \
         data directory {:.0} MiB",
        keys.len(),
        calls as f64 / secs,
        size_of(&data) as f64 / (1 << 20) as f64,
    );
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let _ = child.wait();
}
