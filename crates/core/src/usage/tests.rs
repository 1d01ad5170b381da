//! Usage records on the memory engine: buffered writes, rollups, who sees
//! what, and retention.

use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;

use super::*;
use crate::model::accounts::Role;

struct World {
    usage: UsageService,
    store: Store,
    env: Env,
    clock: Arc<crate::env::ManualClock>,
}

fn world() -> World {
    let (env, clock) = crate::testing::env(6, 3);
    let store = Store::new(Arc::new(MemoryEngine::new()));
    World {
        usage: UsageService::new(store.clone(), env.clone(), Arc::new(Ledger::new())),
        store,
        env,
        clock,
    }
}

impl World {
    fn log(&self, user: Id, model: &str, tokens: (u64, u64)) -> RequestLog {
        RequestLog {
            id: self.env.ids.next_id(),
            at: self.env.clock.now(),
            key_id: Id(77),
            user_id: user,
            model_id: Id(5),
            model: model.into(),
            endpoint_id: Id(6),
            api: "chat.completions".into(),
            stream: false,
            status: 200,
            latency_ms: 12,
            prompt_tokens: tokens.0,
            completion_tokens: tokens.1,
            cost_micros: (tokens.0 + 2 * tokens.1) as i64,
            tokens_estimated: false,
            error: None,
            request_body: Some("{\"messages\": []}".into()),
            response_body: Some("{\"choices\": []}".into()),
        }
    }
}

#[tokio::test]
async fn records_are_written_in_batches_and_rolled_up_by_day() {
    let w = world();
    let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    for (model, tokens) in [("a", (10, 1)), ("a", (20, 2)), ("b", (5, 5))] {
        w.usage.record(w.log(ada.id, model, tokens));
    }
    assert_eq!(w.usage.pending(), 3);
    let today = w.env.clock.now().date_naive();
    let query = |group_by| StatsQuery {
        from: today,
        to: today,
        user: None,
        all: false,
        group_by,
    };
    assert!(
        w.usage
            .stats(&ada, &query(GroupBy::Day))
            .await
            .unwrap()
            .is_empty(),
        "nothing before the flush"
    );
    assert_eq!(w.usage.flush().await.unwrap(), 3);
    assert_eq!(w.usage.pending(), 0);
    let by_model = w.usage.stats(&ada, &query(GroupBy::Model)).await.unwrap();
    assert_eq!(by_model.len(), 2);
    assert_eq!(
        (
            by_model[0].group.as_str(),
            by_model[0].requests,
            by_model[0].prompt_tokens
        ),
        ("a", 2, 30)
    );
    assert_eq!(by_model[0].cost_micros, 36);
    // Another day's calls go to another row.
    w.clock.advance(86_400_000);
    w.usage.record(w.log(ada.id, "a", (1, 1)));
    w.usage.flush().await.unwrap();
    let range = StatsQuery {
        from: today,
        to: today + chrono::Days::new(1),
        ..query(GroupBy::Day)
    };
    let days = w.usage.stats(&ada, &range).await.unwrap();
    assert_eq!(days.iter().map(|r| r.requests).collect::<Vec<_>>(), [3, 1]);
    // Admins read everyone's; users only their own.
    let all = StatsQuery {
        all: true,
        ..range.clone()
    };
    assert_eq!(w.usage.stats(&admin, &all).await.unwrap().len(), 2);
    assert_eq!(
        w.usage.stats(&ada, &all).await.unwrap_err().code(),
        crate::ErrorCode::PermissionDenied
    );
    let too_long = StatsQuery {
        to: today + chrono::Days::new(400),
        ..range
    };
    assert_eq!(
        w.usage.stats(&ada, &too_long).await.unwrap_err().code(),
        crate::ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn one_flush_sums_many_calls_into_the_rows_of_their_own_days() {
    let w = world();
    let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
    let today = w.env.clock.now().date_naive();
    // More calls than are encoded between yields, across midnight, in one flush.
    for _ in 0..200 {
        w.usage.record(w.log(ada.id, "a", (3, 1)));
    }
    w.clock.advance(86_400_000);
    for _ in 0..100 {
        w.usage.record(w.log(ada.id, "a", (1, 2)));
    }
    w.usage.record(w.log(ada.id, "b", (7, 0)));
    assert_eq!(w.usage.flush().await.unwrap(), 301);
    let query = StatsQuery {
        from: today,
        to: today + chrono::Days::new(1),
        user: None,
        all: false,
        group_by: GroupBy::Day,
    };
    let days = w.usage.stats(&ada, &query).await.unwrap();
    let rows: Vec<_> = days
        .iter()
        .map(|r| {
            (
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost_micros,
            )
        })
        .collect();
    assert_eq!(rows, [(200, 600, 200, 1000), (101, 107, 200, 507)]);
    let logs = w
        .store
        .run(|tx| async move {
            Ok::<_, TxError<Error>>(
                tx.get_range(&keyspace::request_logs(), RangeOptions::default())
                    .await?
                    .entries
                    .len(),
            )
        })
        .await
        .unwrap();
    assert_eq!(logs, 301, "every call has its own request log");
}

#[tokio::test]
async fn bodies_are_shown_to_request_viewers_and_the_caller_only() {
    let w = world();
    let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
    let bob = crate::testing::user(&w.store, &w.env, "bob", &[Role::User]).await;
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    let viewer = crate::testing::user(
        &w.store,
        &w.env,
        "viewer",
        &[Role::User, Role::RequestViewer],
    )
    .await;
    w.usage.record(w.log(ada.id, "a", (1, 1)));
    w.usage.record(w.log(bob.id, "a", (1, 1)));
    w.usage.flush().await.unwrap();
    let query = LogQuery {
        limit: 50,
        ..LogQuery::default()
    };
    let own = w.usage.logs(&ada, &query).await.unwrap();
    assert_eq!(own.len(), 1);
    assert!(
        own[0].request_body.is_some(),
        "the caller sees their bodies"
    );
    let for_admin = w.usage.logs(&admin, &query).await.unwrap();
    assert_eq!(for_admin.len(), 2);
    assert!(
        for_admin.iter().all(|l| l.request_body.is_none()),
        "admins see metadata only"
    );
    let for_viewer = w.usage.logs(&viewer, &query).await.unwrap();
    assert!(for_viewer.iter().all(|l| l.response_body.is_some()));
    let others = LogQuery {
        user: Some(bob.id),
        ..query.clone()
    };
    assert_eq!(
        w.usage.logs(&ada, &others).await.unwrap_err().code(),
        crate::ErrorCode::PermissionDenied
    );
    // Retention removes what is older than the cut.
    w.clock.advance(31 * 86_400_000);
    w.usage.record(w.log(ada.id, "a", (1, 1)));
    w.usage.flush().await.unwrap();
    assert_eq!(w.usage.trim_logs(30).await.unwrap(), 2);
    assert_eq!(w.usage.logs(&admin, &query).await.unwrap().len(), 1);
}

#[tokio::test]
async fn the_buffer_is_bounded_in_bytes_as_well_as_in_logs() {
    let w = world();
    // Logs with two quarter-megabyte captured bodies: the byte bound comes
    // long before the count bound.
    let body = "x".repeat(256 * 1024);
    let heavy = || RequestLog {
        request_body: Some(body.clone()),
        response_body: Some(body.clone()),
        ..w.log(Id(1), "gpt", (1, 1))
    };
    for _ in 0..200 {
        w.usage.record(heavy());
    }
    let kept = w.usage.pending();
    assert!(kept < 200, "{kept} kept");
    assert!(w.usage.pending_bytes() <= MAX_BUFFER_BYTES);
    assert!(w.usage.pending_bytes() > MAX_BUFFER_BYTES - 2 * log_size(&heavy()));
    // A flush empties it, and logs are taken again.
    assert_eq!(w.usage.flush().await.unwrap(), kept);
    assert_eq!(w.usage.pending_bytes(), 0);
    w.usage.record(heavy());
    assert_eq!(w.usage.pending(), 1);
}
