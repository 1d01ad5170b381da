//! Records at scale: loads request logs through the real write path
//! (`UsageService::record` and `flush`, as the gateway does) and measures
//! the queries the API and the console make, through HTTP, as the total
//! grows.
//!
//! `cargo bench -p gatehouse --bench records` (numbers in docs/performance.md).
//! `GATEHOUSE_BENCH_LOGS` sets how many logs (default 1 000 000),
//! `GATEHOUSE_BENCH_ENGINE` `embedded` (default) or `postgres` (a throwaway
//! server from the machine's PostgreSQL binaries), `GATEHOUSE_BENCH_DIR`
//! where the embedded store goes (default: a temporary directory),
//! `GATEHOUSE_BENCH_CACHE_MB` the embedded engine's page cache (default: the
//! server's default, `storage.cache_mb`). `GATEHOUSE_BENCH_RATE` (calls a
//! second) offers the logs at that rate to the server's own writer instead
//! of flushing them as fast as it can, and reports the backlog.
//!
//! The data: 1 000 users with 5 keys each, 50 models, 100 organizations,
//! spread over the last 30 days; 1 % of calls with captured bodies (1 KiB
//! each way), 2 % answered 429 and 1 % 500. User 1 made 100 000 calls (a
//! tenth of them when fewer than a million are loaded), user 2 ten.

// Benchmarks may unwrap: a panic here is a failed run.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use gatehouse::config::Secret;
use gatehouse_core::Id;
use gatehouse_core::services::Services;
use gatehouse_core::usage::RequestLog;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// Shared with the gateway benches, whose model helpers this one does not use.
#[allow(dead_code)]
mod common;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: u64 = 1_000;
const KEYS_PER_USER: u64 = 5;
const MODELS: u64 = 50;
const ORGS: u64 = 100;
const DAYS: i64 = 30;
/// Logs recorded before each flush (the gateway flushes every second: this
/// is a second of calls at 20 000 per second).
const BATCH: usize = 20_000;
/// Requests per measured query kind.
const SAMPLES: usize = 200;

/// User IDs are `USER_BASE + n`, so they never collide with real accounts.
const USER_BASE: u64 = 1 << 40;
const HEAVY: Id = Id(USER_BASE + 1);
const LIGHT: Id = Id(USER_BASE + 2);

fn setting<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// The `i`th of `total` logs: times spread evenly over the last [`DAYS`].
fn log(i: u64, total: u64, heavy: u64, start_ms: i64, rng: &mut StdRng) -> RequestLog {
    let span = DAYS * 86_400_000;
    let at_ms = start_ms + (i as i128 * span as i128 / total as i128) as i64;
    // Unique and time-ordered: the millisecond, then the log's number.
    let id = Id(Id::first_at(at_ms).0 + (i % 4096));
    let user = if i.is_multiple_of((total / heavy.max(1)).max(1)) {
        HEAVY
    } else if i % (total / 10).max(1) == 1 {
        LIGHT
    } else {
        Id(USER_BASE + 3 + rng.random_range(0..USERS - 2))
    };
    let key = Id((user.0 - USER_BASE) * KEYS_PER_USER + rng.random_range(0..KEYS_PER_USER));
    let model = rng.random_range(0..MODELS);
    let roll = rng.random_range(0..100);
    let status = match roll {
        0 => 500,
        1 | 2 => 429,
        _ => 200,
    };
    let captured = rng.random_range(0..100) == 0;
    let body = || captured.then(|| "x".repeat(1024));
    RequestLog {
        id,
        at: chrono::DateTime::from_timestamp_millis(at_ms).unwrap(),
        key_id: key,
        user_id: user,
        org_id: Some(Id(10_000 + (user.0 - USER_BASE) % ORGS)),
        model_id: Id(model + 1),
        model: format!("model-{model}"),
        endpoint_id: Id(1),
        api: "chat.completions".into(),
        stream: false,
        status,
        latency_ms: 300,
        prompt_tokens: 100,
        completion_tokens: 20,
        cost_micros: 140,
        tokens_estimated: false,
        error: (status >= 400).then(|| "upstream said no".into()),
        captured: false,
        request_body: body(),
        response_body: body(),
    }
}

/// How many of `total` calls the heavy user made.
fn heavy_calls(total: u64) -> u64 {
    if total >= 1_000_000 {
        100_000
    } else {
        total / 10
    }
}

/// Loads `total` logs a batch at a time, as the gateway's flushes do;
/// returns logs per second.
async fn load(services: &Services, total: u64, start_ms: i64) -> f64 {
    let heavy = heavy_calls(total);
    let mut rng = StdRng::seed_from_u64(10);
    let started = Instant::now();
    let mut i = 0;
    while i < total {
        let end = (i + BATCH as u64).min(total);
        for n in i..end {
            services
                .usage
                .record(log(n, total, heavy, start_ms, &mut rng));
        }
        while services.usage.pending() > 0 {
            services.usage.flush().await.unwrap();
        }
        i = end;
        if i % 1_000_000 == 0 || i == total {
            let secs = started.elapsed().as_secs_f64();
            eprintln!("  loaded {i} in {secs:.0} s ({:.0}/s)", i as f64 / secs);
        }
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Offers `total` logs at `rate` a second, as a gateway's calls would
/// arrive, to the server's own writer (`write_usage`, flushing every
/// second); reports each million how many waited for a flush at most. The
/// writer keeps up when that stays about a second's worth; a writer that
/// falls behind lets it grow to the buffer's limit, then drops logs.
/// Returns logs per second written, counted once the buffer is empty.
async fn offer(services: &Services, total: u64, start_ms: i64, rate: u64) -> f64 {
    const TICK: Duration = Duration::from_millis(10);
    let per_tick = (rate * TICK.as_millis() as u64 / 1000).max(1);
    let heavy = heavy_calls(total);
    let mut rng = StdRng::seed_from_u64(10);
    let started = Instant::now();
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let (mut i, mut most_waiting, mut most_overall) = (0, 0, 0);
    while i < total {
        ticks.tick().await;
        let end = (i + per_tick).min(total);
        for n in i..end {
            services
                .usage
                .record(log(n, total, heavy, start_ms, &mut rng));
        }
        most_waiting = most_waiting.max(services.usage.pending());
        let million = end / 1_000_000 > i / 1_000_000;
        i = end;
        if million || i == total {
            let secs = started.elapsed().as_secs_f64();
            eprintln!(
                "  offered {i} in {secs:.0} s ({:.0}/s); most waiting for a flush: {most_waiting}",
                i as f64 / secs
            );
            most_overall = most_overall.max(most_waiting);
            most_waiting = 0;
        }
    }
    while services.usage.pending() > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The last flush took the buffer: wait for it to be written.
    let written = services.usage.flush().await.unwrap();
    assert_eq!(written, 0, "the writer had emptied the buffer");
    println!(
        "most logs waiting for a flush: {most_overall}; dropped on a full buffer: {}",
        services.usage.dropped()
    );
    total as f64 / started.elapsed().as_secs_f64()
}

struct Latency {
    p50: Duration,
    p99: Duration,
    items: usize,
}

/// `SAMPLES` GETs of the paths `path` makes, one at a time: p50, p99, and
/// the mean number of items (or lines) answered.
async fn measure(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    mut path: impl FnMut(usize) -> String,
) -> Latency {
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut items = 0;
    for n in 0..SAMPLES {
        let url = format!("{base}{}", path(n));
        let started = Instant::now();
        let response = client.get(&url).bearer_auth(token).send().await.unwrap();
        assert!(
            response.status().is_success(),
            "{url}: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await.unwrap();
        samples.push(started.elapsed());
        items += body["items"].as_array().map_or(0, Vec::len);
    }
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    Latency {
        p50: at(0.5),
        p99: at(0.99),
        items: items / SAMPLES,
    }
}

fn print(name: &str, l: &Latency) {
    println!(
        "{name:<44} {:>9.1} {:>9.1} {:>7}",
        l.p50.as_secs_f64() * 1e3,
        l.p99.as_secs_f64() * 1e3,
        l.items
    );
}

/// Bytes under `path`.
fn size_of(path: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(path) else {
        return std::fs::metadata(path).map_or(0, |m| m.len());
    };
    entries.flatten().map(|e| size_of(&e.path())).sum()
}

#[tokio::main]
async fn main() {
    let total: u64 = setting("GATEHOUSE_BENCH_LOGS", 1_000_000);
    let engine: String = setting("GATEHOUSE_BENCH_ENGINE", "embedded".to_string());
    let dir = match std::env::var("GATEHOUSE_BENCH_DIR") {
        Ok(dir) => {
            std::fs::create_dir_all(&dir).unwrap();
            tempfile::tempdir_in(dir).unwrap()
        }
        Err(_) => tempfile::tempdir().unwrap(),
    };
    let mut config = common::embedded_config(dir.path().join("data"));
    config.storage.cache_mb = setting("GATEHOUSE_BENCH_CACHE_MB", config.storage.cache_mb);
    let mut database = None;
    if engine == "postgres" {
        let server = gatehouse_storage::postgres::testing::TestPostgres::shared()
            .expect("PostgreSQL binaries (initdb, postgres)");
        let url = server.create_database().await;
        config.storage.engine = "postgres".into();
        config.storage.postgres_url = Some(url.clone());
        database = Some(url);
    }
    config.auth.jwt_secret = Some(Secret(
        "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into(),
    ));
    config.auth.key_encryption_secret = Some(Secret(
        "ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=".into(),
    ));
    // The bench flushes itself and the server's own writer only idles;
    // offering calls at a rate, the server's writer does the flushing.
    let offered: Option<u64> = std::env::var("GATEHOUSE_BENCH_RATE")
        .ok()
        .map(|r| r.parse().expect("GATEHOUSE_BENCH_RATE: calls a second"));
    config.usage.flush_ms = if offered.is_some() { 1_000 } else { 3_600_000 };
    let (server, services, admin) = common::open(&config).await;
    let base = format!("http://{}", server.http_addr().unwrap());
    tokio::spawn(server.run_until_stopped(std::future::pending()));
    let (_, token) = services
        .accounts
        .login(&admin.email, common::PASSWORD, &Default::default())
        .await
        .unwrap();
    let client = reqwest::Client::new();

    let now = services.usage.env().clock.now_millis();
    let start_ms = now - DAYS * 86_400_000;
    println!(
        "{total} request logs on {engine} (page cache {} MB when embedded)",
        config.storage.cache_mb
    );
    match offered {
        Some(offered) => {
            let rate = offer(&services, total, start_ms, offered).await;
            println!("offered {offered} calls/s to the server's writer: {rate:.0} logs/s written");
        }
        None => {
            let rate = load(&services, total, start_ms).await;
            println!("bulk load through record + flush: {rate:.0} logs/s");
        }
    }

    println!(
        "{:<44} {:>9} {:>9} {:>7}",
        "query (200 each)", "p50 ms", "p99 ms", "items"
    );
    let mut rng = StdRng::seed_from_u64(11);
    let logs = "/api/v1/request-logs?limit=50";
    let light = measure(&client, &base, &token, |_| format!("{logs}&user={LIGHT}")).await;
    print("logs of a user with 10 calls", &light);
    let heavy = measure(&client, &base, &token, |_| format!("{logs}&user={HEAVY}")).await;
    print("logs of a user with 100 000 calls", &heavy);
    let deep = measure(&client, &base, &token, |_| {
        let at = start_ms + rng.random_range(0..DAYS * 86_400_000);
        format!("{logs}&user={HEAVY}&cursor={}", Id::first_at(at))
    })
    .await;
    print("  … a page deep in their history", &deep);
    let mut rng = StdRng::seed_from_u64(12);
    let key = measure(&client, &base, &token, |_| {
        let user = 3 + rng.random_range(0..USERS - 2);
        format!(
            "{logs}&key={}",
            user * KEYS_PER_USER + rng.random_range(0..KEYS_PER_USER)
        )
    })
    .await;
    print("logs of a key", &key);
    let mut rng = StdRng::seed_from_u64(13);
    let model = measure(&client, &base, &token, |_| {
        format!("{logs}&model=model-{}", rng.random_range(0..MODELS))
    })
    .await;
    print("logs of a model", &model);
    let mut rng = StdRng::seed_from_u64(14);
    let hour = measure(&client, &base, &token, |_| {
        let from = start_ms + rng.random_range(0..(DAYS - 1) * 86_400_000);
        let at = |ms: i64| {
            chrono::DateTime::from_timestamp_millis(ms)
                .unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        };
        format!("{logs}&from={}&to={}", at(from), at(from + 3_600_000))
    })
    .await;
    print("logs of a one-hour window", &hour);
    let rare = measure(&client, &base, &token, |_| {
        format!("{logs}&user={HEAVY}&status=500")
    })
    .await;
    print("a busy user's 500s (scan budget)", &rare);
    let today = chrono::DateTime::from_timestamp_millis(now)
        .unwrap()
        .date_naive();
    let from = today - chrono::Days::new(29);
    for group in ["day", "model", "user"] {
        let stats = measure(&client, &base, &token, |_| {
            format!("/api/v1/usage?all=true&group_by={group}&from={from}&to={today}&limit=500")
        })
        .await;
        print(&format!("usage, 30 days by {group}, everyone"), &stats);
    }
    let own = measure(&client, &base, &token, |_| {
        format!("/api/v1/usage?user={HEAVY}&group_by=model&from={from}&to={today}&limit=500")
    })
    .await;
    print("usage, 30 days by model, one user", &own);

    // An export of one day, read to its end.
    let day = from + chrono::Days::new(10);
    let started = Instant::now();
    let response = client
        .get(format!(
            "{base}/api/v1/request-logs/export?format=ndjson&from={day}T00:00:00Z&to={day}T23:59:59Z"
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body = response.bytes().await.unwrap();
    let lines = body.iter().filter(|b| **b == b'\n').count();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "export of one day: {lines} logs, {:.0} MB in {secs:.1} s ({:.0} logs/s)",
        body.len() as f64 / 1e6,
        lines as f64 / secs
    );

    // Trimming the oldest day while the gateway keeps writing.
    let writer = {
        let services = services.clone();
        tokio::spawn(async move {
            let mut rng = StdRng::seed_from_u64(15);
            let (mut written, started) = (0u64, Instant::now());
            let mut n = 0;
            loop {
                for _ in 0..BATCH / 10 {
                    let mut log = log(n, total, 1, now, &mut rng);
                    log.id = services.usage.env().ids.next_id();
                    services.usage.record(log);
                    n += 1;
                }
                written += services.usage.flush().await.unwrap() as u64;
                if STOP.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            written as f64 / started.elapsed().as_secs_f64()
        })
    };
    let started = Instant::now();
    let trimmed = services.usage.trim_logs((DAYS - 1) as u64).await.unwrap();
    let secs = started.elapsed().as_secs_f64();
    STOP.store(true, std::sync::atomic::Ordering::Relaxed);
    let written = writer.await.unwrap();
    println!(
        "trimming the oldest day: {trimmed} logs in {secs:.1} s ({:.0}/s), while writes went on at {written:.0} logs/s",
        trimmed as f64 / secs
    );
    match database {
        Some(url) => {
            let (pg, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            let row = pg
                .query_one("SELECT pg_database_size(current_database())", &[])
                .await
                .unwrap();
            let bytes: i64 = row.get(0);
            println!("database size: {:.2} GB", bytes as f64 / 1e9);
        }
        None => println!(
            "store size on disk: {:.2} GB",
            size_of(dir.path()) as f64 / 1e9
        ),
    }
}

/// Stops the background writer.
static STOP: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
