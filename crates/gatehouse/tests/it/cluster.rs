//! Several instances on one real PostgreSQL: distinct worker IDs, one leader,
//! failover when the leader dies, and a change feed that other instances follow.

use std::time::{Duration, Instant};

use gatehouse_core::changes::ChangeKind;
use gatehouse_core::services::system::SettingName;
use gatehouse_storage::postgres::testing::TestPostgres;
use serde_json::{Value, json};

use crate::helpers::{ServerProcess, json_of, serve, spawn_app, spawn_process, test_config};

const LEASE_SECS: u64 = 3;

async fn ready(client: &reqwest::Client, server: &ServerProcess) -> Value {
    let response = client.get(server.url("/ready")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_one_postgres() {
    let Some(pg) = TestPostgres::shared() else {
        return;
    };
    let url = pg.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("GATEHOUSE__STORAGE__ENGINE", "postgres".to_string()),
        ("GATEHOUSE__STORAGE__POSTGRES_URL", url),
        ("GATEHOUSE__CLUSTER__LEASE_SECS", LEASE_SECS.to_string()),
        // One JWT key for both (development mode makes one per process).
        (
            "GATEHOUSE__AUTH__JWT_SECRET",
            "Y2x1c3Rlci10ZXN0LWp3dC1zZWNyZXQtMzItYnl0ZXMhIQ==".to_string(),
        ),
    ];
    let first = spawn_process(dir.path(), &envs, &[]);
    let second = spawn_process(dir.path(), &envs, &[]);
    let mut servers = [first, second];
    let client = reqwest::Client::new();

    // Different worker IDs; exactly one leader once both have campaigned.
    let (a, b) = (
        ready(&client, &servers[0]).await,
        ready(&client, &servers[1]).await,
    );
    assert_ne!(a["node"]["worker_id"], b["node"]["worker_id"]);
    let deadline = Instant::now() + Duration::from_secs(LEASE_SECS * 2);
    let leader = loop {
        let a = ready(&client, &servers[0]).await["node"]["leader"] == true;
        let b = ready(&client, &servers[1]).await["node"]["leader"] == true;
        assert!(!(a && b), "two leaders at once");
        if a != b {
            break if a { 0 } else { 1 };
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    // The store was initialized through the first and is read through the second.
    let info = |i: usize| {
        let url = servers[i].url("/api/v1/system");
        let client = client.clone();
        async move {
            client
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(
        info(0).await["installation_id"],
        info(1).await["installation_id"]
    );

    // A JWT from the first ends on both when its holder signs out on the second.
    let response = client
        .post(servers[0].url("/api/v1/auth/register"))
        .json(&json!({"email": "ada@example.com", "password": crate::helpers::PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let login = json_of(
        client
            .post(servers[0].url("/api/v1/auth/login"))
            .json(&json!({"login": "ada@example.com", "password": crate::helpers::PASSWORD})),
    )
    .await;
    let jwt = login["token"].as_str().unwrap();
    let me = |i: usize| {
        let request = client
            .get(servers[i].url("/api/v1/auth/me"))
            .bearer_auth(jwt);
        async move { request.send().await.unwrap().status().as_u16() }
    };
    assert_eq!((me(0).await, me(1).await), (200, 200));
    let logout = client
        .post(servers[1].url("/api/v1/auth/logout"))
        .bearer_auth(jwt)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!((me(0).await, me(1).await), (401, 401));

    // Fifty wrong passwords at once, half through each instance: the shared
    // store counts each before it is judged, so at most the five free ones are.
    let guesses = (0..50).map(|i| {
        let request = client
            .post(servers[i % 2].url("/api/v1/auth/login"))
            .json(&json!({"login": "ada@example.com", "password": "a wrong guess"}));
        async move { request.send().await.unwrap().status().as_u16() }
    });
    let statuses = futures_util::future::join_all(guesses).await;
    let judged = statuses.iter().filter(|s| **s == 401).count();
    assert!((1..=5).contains(&judged), "{judged} judged: {statuses:?}");
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );

    // The leader ran its jobs; the follower did not.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let node = &ready(&client, &servers[leader]).await["node"];
        if node["jobs"][0]["last_outcome"]
            .as_str()
            .is_some_and(|o| o.starts_with("ok"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "leader ran no job: {node}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let follower = 1 - leader;
    assert_eq!(
        ready(&client, &servers[follower]).await["node"]["jobs"],
        json!([])
    );

    // SIGKILL the leader: the other leads within the lease time (plus one renewal tick).
    let token_before = ready(&client, &servers[leader]).await["node"]["fencing_token"].clone();
    servers[leader].child.kill().unwrap();
    servers[leader].child.wait().unwrap();
    let killed = Instant::now();
    let limit = Duration::from_secs(LEASE_SECS)
        + Duration::from_secs(LEASE_SECS) / 3
        + Duration::from_secs(1);
    loop {
        let node = ready(&client, &servers[follower]).await["node"].clone();
        if node["leader"] == true {
            assert!(node["fencing_token"].as_u64() > token_before.as_u64());
            break;
        }
        assert!(killed.elapsed() < limit, "no failover within {limit:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let status = servers[follower].terminate();
    assert!(status.success(), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_on_another_instance_sees_writes_in_order() {
    let Some(pg) = TestPostgres::shared() else {
        return;
    };
    let url = pg.create_database().await;
    let config = || {
        let mut config = test_config(None);
        config.storage.engine = "postgres".into();
        config.storage.postgres_url = Some(url.clone());
        config
    };
    let writer = spawn_app(config()).await;
    let reader = spawn_app(config()).await;
    assert_ne!(
        writer.services.cluster.status().worker_id,
        reader.services.cluster.status().worker_id
    );
    // Each sees both, and knows which one it is (the console's system page).
    let seen = reader.services.cluster.instances().await.unwrap();
    let ids: std::collections::BTreeSet<_> = seen.iter().map(|i| i.instance_id.clone()).collect();
    assert_eq!(
        ids,
        [
            writer.services.cluster.instance_id(),
            reader.services.cluster.instance_id()
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    );
    assert!(seen[0].this && seen[0].instance_id == reader.services.cluster.instance_id());
    assert!(seen.iter().filter(|i| i.leader).count() <= 1);

    let start = reader.services.changes.head().await.unwrap();
    let names: Vec<String> = (0..20).map(|i| format!("flag.{i:02}")).collect();
    let writes = {
        let system = writer.services.system.clone();
        let names = names.clone();
        tokio::spawn(async move {
            for name in &names {
                let name = SettingName::parse(name).unwrap();
                system.put_setting(&name, json!(true)).await.unwrap();
            }
        })
    };
    // The follower polls from its cursor while the writes happen.
    let mut seen = Vec::new();
    let mut cursor = start;
    let deadline = Instant::now() + Duration::from_secs(20);
    while seen.len() < names.len() {
        for change in reader
            .services
            .changes
            .read_after(cursor.as_ref(), 7)
            .await
            .unwrap()
        {
            assert!(cursor.as_ref() < Some(&change.cursor), "cursors grow");
            cursor = Some(change.cursor);
            assert_eq!(
                (change.record.subspace.as_str(), change.record.kind),
                ("setting", ChangeKind::Put)
            );
            seen.push(change.record.key);
        }
        assert!(
            Instant::now() < deadline,
            "follower saw only {} changes",
            seen.len()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    writes.await.unwrap();
    let expected: Vec<String> = names
        .iter()
        .map(|n| {
            gatehouse_core::keyspace::setting(&SettingName::parse(n).unwrap())
                .as_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
        .collect();
    assert_eq!(seen, expected);
    writer.stop().await;
    reader.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_configured_worker_id_is_honoured_or_refused() {
    let Some(pg) = TestPostgres::shared() else {
        return;
    };
    let url = pg.create_database().await;
    let dir = tempfile::tempdir().unwrap();
    let envs = [
        ("GATEHOUSE__STORAGE__ENGINE", "postgres".to_string()),
        ("GATEHOUSE__STORAGE__POSTGRES_URL", url),
        ("GATEHOUSE__IDS__WORKER_ID", "5".to_string()),
    ];
    let mut holder = spawn_process(dir.path(), &envs, &[]);
    let node = ready(&reqwest::Client::new(), &holder).await;
    assert_eq!(node["node"]["worker_id"], 5);

    let refused = serve(dir.path(), &envs).output().unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("worker ID 5 is held by another live instance"),
        "{stderr}"
    );
    assert!(holder.terminate().success());
}
