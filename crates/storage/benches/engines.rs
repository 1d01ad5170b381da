//! Storage engine throughput: point reads, durable single-key commits, range
//! pages and contended read-modify-writes, on every engine that can run here.
//!
//! `cargo bench -p gatehouse-storage --bench engines` (numbers in docs/performance.md).

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_storage::postgres::testing::TestPostgres;
use gatehouse_storage::{KeyRange, RangeOptions, Store, TxError, decode_counter};

type R<T> = Result<T, TxError<String>>;

const KEYS: u32 = 10_000;

fn key(i: u32) -> Vec<u8> {
    gatehouse_storage::tuple::pack(&("bench", i))
}

fn report(engine: &str, what: &str, ops: u32, elapsed: Duration) {
    let per_sec = f64::from(ops) / elapsed.as_secs_f64();
    let micros = elapsed.as_secs_f64() * 1e6 / f64::from(ops);
    println!("{engine:<9} {what:<36} {per_sec:>12.0} ops/s {micros:>10.1} µs/op");
}

async fn bench(engine: &str, store: Store) {
    // Load in transactions of 1000 keys.
    for chunk in 0..KEYS / 1000 {
        store
            .run(|tx| async move {
                for i in chunk * 1000..(chunk + 1) * 1000 {
                    tx.set(&key(i), &[7u8; 200])?;
                }
                R::Ok(())
            })
            .await
            .unwrap();
    }

    let n = 20_000;
    let started = Instant::now();
    for i in 0..n {
        let k = key(i % KEYS);
        let k = &k;
        store
            .run(|tx| async move { R::Ok(tx.get(k).await?) })
            .await
            .unwrap();
    }
    report(
        engine,
        "point read (one transaction each)",
        n,
        started.elapsed(),
    );

    let n = 2_000;
    let started = Instant::now();
    for i in 0..n {
        let k = key(i % KEYS);
        let k = &k;
        store
            .run(|tx| async move { R::Ok(tx.set(k, &[9u8; 200])?) })
            .await
            .unwrap();
    }
    report(
        engine,
        "durable commit (one 200-byte set)",
        n,
        started.elapsed(),
    );

    let n = 2_000;
    let started = Instant::now();
    for i in 0..n {
        let begin = key((i * 97) % (KEYS - 100));
        let range = KeyRange::new(
            begin,
            KeyRange::prefix(&gatehouse_storage::tuple::pack(&("bench",))).end,
        );
        let range = &range;
        store
            .run(|tx| async move { R::Ok(tx.get_range(range, RangeOptions::limit(100)).await?) })
            .await
            .unwrap();
    }
    report(engine, "range page of 100", n, started.elapsed());

    let tasks = 8;
    let each = 100;
    let started = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..each {
                    store
                        .run(|tx| async move {
                            let n = tx.get(b"counter").await?.map_or(0, |v| decode_counter(&v));
                            tx.set(b"counter", &(n + 1).to_le_bytes())?;
                            R::Ok(())
                        })
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.await.unwrap();
    }
    report(
        engine,
        "contended increment (8 tasks)",
        tasks * each,
        started.elapsed(),
    );
}

fn main() {
    // `cargo test --benches` runs this with `--bench` absent; keep it quick then.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        bench(
            "memory",
            Store::new(Arc::new(gatehouse_storage::memory::MemoryEngine::new())),
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let embedded = gatehouse_storage::embedded::EmbeddedEngine::open(dir.path()).unwrap();
        bench("embedded", Store::new(Arc::new(embedded))).await;
        if let Some(pg) = TestPostgres::shared() {
            let url = pg.create_database().await;
            let engine = gatehouse_storage::postgres::PostgresEngine::connect(&url)
                .await
                .unwrap();
            bench("postgres", Store::new(Arc::new(engine))).await;
        }
    });
}
