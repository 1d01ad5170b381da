//! The in-process access decision (SPEC §4) on the in-memory index: a valid
//! key for an allowed model, and unknown keys.
//!
//! `cargo bench -p gatehouse-core --bench decision` (numbers in docs/performance.md).
//! Targets: median ≤ 2 µs for a valid key; ≥ 1 M rejections per second per core.

// Tests and benchmarks may unwrap: a panic here is a failed check.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::audit::AuditLog;
use gatehouse_core::catalog::{CatalogService, EndpointSpec, ModelSpec, NoLister};
use gatehouse_core::changes::ChangeFeed;
use gatehouse_core::crypto::KeyRing;
use gatehouse_core::env::{Clock, OsRandom, SystemClock};
use gatehouse_core::id::Snowflake;
use gatehouse_core::keys::index::AccessIndex;
use gatehouse_core::keys::{KeyService, NewKey};
use gatehouse_core::model::accounts::{Role, User};
use gatehouse_core::model::sessions::ClientInfo;
use gatehouse_core::{Env, keyspace};
use gatehouse_storage::memory::MemoryEngine;
use gatehouse_storage::{Store, TxError};

const KEYS: usize = 10_000;
const MODELS: usize = 200;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let env = Env {
        ids: Arc::new(Snowflake::new(1, clock.clone()).unwrap()),
        clock: clock.clone(),
        random: Arc::new(OsRandom),
    };
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let audit = Arc::new(AuditLog::new(store.clone(), env.clone()));
    let index = Arc::new(AccessIndex::new(
        store.clone(),
        Arc::new(ChangeFeed::new(store.clone())),
        clock.clone(),
        "ak_",
    ));
    let keys = KeyService::new(store.clone(), env.clone(), audit.clone(), index.clone());
    let catalog = CatalogService::new(
        store.clone(),
        env.clone(),
        audit,
        Arc::new(KeyRing::new(&[9; 32], &[]).unwrap()),
        Arc::new(NoLister),
    );
    let c = ClientInfo::default();
    let now = env.clock.now();
    let admin = User::new(
        env.ids.next_id(),
        "admin@example.com".into(),
        "admin".into(),
        [Role::User, Role::Admin].into(),
        now,
    );
    store
        .run(|tx| {
            let admin = &admin;
            async move { keyspace::user(admin.id).put(&tx, admin).await }
        })
        .await
        .map_err(|e: TxError<gatehouse_core::Error>| e)
        .unwrap();
    let endpoint = catalog
        .create_endpoint(
            &admin,
            EndpointSpec {
                name: Some("local".into()),
                base_url: Some("http://127.0.0.1:9".into()),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
    for i in 0..MODELS {
        catalog
            .create_model(
                &admin,
                ModelSpec {
                    name: Some(format!("model-{i}")),
                    endpoint_id: Some(endpoint.id),
                    ..Default::default()
                },
                &c,
            )
            .await
            .unwrap();
    }
    // 20 owners with 500 keys each (a user holds at most 1000).
    let mut plaintexts = Vec::with_capacity(KEYS);
    for owner in 0..20 {
        let mut user = admin.clone();
        user.id = env.ids.next_id();
        user.email = format!("owner{owner}@example.com");
        user.roles = [Role::User].into();
        store
            .run(|tx| {
                let user = &user;
                async move { keyspace::user(user.id).put(&tx, user).await }
            })
            .await
            .unwrap();
        for i in 0..KEYS / 20 {
            let spec = NewKey {
                allowed_models: if i % 2 == 0 {
                    vec!["model-7".into()]
                } else {
                    vec![]
                },
                ..Default::default()
            };
            plaintexts.push(keys.create(&user, spec, None, &c).await.unwrap().1);
        }
    }
    index.load().await.unwrap();
    println!("index: {} keys, {MODELS} models", index.len());

    // A valid key, an allowed model: time each call.
    let rounds = 200_000;
    let mut samples = Vec::with_capacity(rounds);
    for i in 0..rounds {
        let key = &plaintexts[i % KEYS];
        let start = Instant::now();
        let grant = index.check(key, "model-7");
        samples.push(start.elapsed());
        assert!(grant.is_ok());
    }
    samples.sort();
    println!(
        "valid key, allowed model     median {:>6.0} ns   p99 {:>6.0} ns",
        percentile(&samples, 0.5).as_nanos(),
        percentile(&samples, 0.99).as_nanos()
    );

    // Unknown keys of the right shape (hashed and looked up), one core.
    let unknown: Vec<String> = (0..1000)
        .map(|i| format!("ak_{:0>32}", format!("unknownkey{i}")))
        .collect();
    let rejections = 2_000_000;
    let start = Instant::now();
    for i in 0..rejections {
        assert!(index.check(&unknown[i % unknown.len()], "model-7").is_err());
    }
    let per_sec = rejections as f64 / start.elapsed().as_secs_f64();
    println!("unknown key (right shape)    {per_sec:>12.0} rejections/s on one core");

    // Malformed keys are refused before hashing.
    let start = Instant::now();
    for _ in 0..rejections {
        assert!(index.check("sk-not-ours", "model-7").is_err());
    }
    let per_sec = rejections as f64 / start.elapsed().as_secs_f64();
    println!("malformed key                {per_sec:>12.0} rejections/s on one core");
}
