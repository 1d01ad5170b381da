//! Usage records on the memory engine: buffered writes, rollups, who sees
//! what, and retention.

use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;

use super::*;
use crate::model::accounts::{Role, User};

struct World {
    usage: UsageService,
    store: Store,
    env: Env,
    clock: Arc<crate::env::ManualClock>,
}

fn world() -> World {
    world_on(Store::new(Arc::new(MemoryEngine::new())))
}

fn world_on(store: Store) -> World {
    let (env, clock) = crate::testing::env(6, 3);
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
            org_id: None,
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
            captured: false,
            request_body: Some("{\"messages\": []}".into()),
            response_body: Some("{\"choices\": []}".into()),
        }
    }
}

/// How many logs `viewer` sees following `query`'s pages to the end.
async fn every_page(w: &World, viewer: &User, mut query: LogQuery) -> usize {
    let mut count = 0;
    loop {
        let page = w.usage.logs(viewer, &query).await.unwrap();
        count += page.items.len();
        match page.next {
            Some(next) => query.before = Some(next),
            None => return count,
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
    let own = w.usage.logs(&ada, &query).await.unwrap().items;
    assert_eq!(own.len(), 1);
    assert!(
        own[0].captured && own[0].request_body.is_none(),
        "lists carry no bodies"
    );
    let opened = w.usage.log(&ada, own[0].id).await.unwrap();
    assert!(
        opened.request_body.is_some(),
        "the caller sees their bodies"
    );
    let for_admin = w.usage.logs(&admin, &query).await.unwrap().items;
    assert_eq!(for_admin.len(), 2);
    for log in &for_admin {
        let opened = w.usage.log(&admin, log.id).await.unwrap();
        assert!(
            opened.captured && opened.request_body.is_none(),
            "admins see metadata only"
        );
        let opened = w.usage.log(&viewer, log.id).await.unwrap();
        assert!(opened.response_body.is_some(), "request viewers see bodies");
    }
    let bobs = for_admin.iter().find(|l| l.user_id == bob.id).unwrap();
    assert_eq!(
        w.usage.log(&ada, bobs.id).await.unwrap_err().code(),
        crate::ErrorCode::NotFound,
        "another user's log is not there for ada"
    );
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
    assert_eq!(w.usage.logs(&admin, &query).await.unwrap().items.len(), 1);
    assert_eq!(
        w.usage.log(&admin, bobs.id).await.unwrap_err().code(),
        crate::ErrorCode::NotFound
    );
    let bob_query = LogQuery {
        user: Some(bob.id),
        ..query.clone()
    };
    assert!(
        w.usage
            .logs(&admin, &bob_query)
            .await
            .unwrap()
            .items
            .is_empty(),
        "the trimmed log's index entries went with it"
    );
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
    assert_eq!(w.usage.dropped(), 200 - kept as u64);
    assert!(w.usage.pending_bytes() <= MAX_BUFFER_BYTES);
    assert!(w.usage.pending_bytes() > MAX_BUFFER_BYTES - 2 * log_size(&heavy()));
    // A flush empties it, and logs are taken again.
    assert_eq!(w.usage.flush().await.unwrap(), kept);
    assert_eq!(w.usage.pending_bytes(), 0);
    w.usage.record(heavy());
    assert_eq!(w.usage.pending(), 1);
}

/// A few thousand logs with random users, keys, organizations, models,
/// statuses and times, each query paged to its end: the pages hold exactly
/// what a brute-force filter over all logs does, newest first, each once —
/// also when the scan budget cuts pages short.
#[tokio::test]
async fn every_filter_combination_pages_through_exactly_what_a_full_scan_finds() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    let base = world();
    let w = World {
        usage: UsageService::new(
            base.store.clone(),
            base.env.clone(),
            Arc::new(Ledger::new()),
        )
        .with_scan_budget(150),
        ..base
    };
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    let mut rng = StdRng::seed_from_u64(20);
    let models = ["a", "b", "c", "gpt-4o"];
    let statuses = [200, 200, 200, 201, 400, 404, 429, 500, 502];
    let mut all = Vec::new();
    for _ in 0..3000 {
        w.clock.advance(rng.random_range(0..40_000));
        let user = Id(rng.random_range(1..=6));
        let log = RequestLog {
            key_id: Id(user.0 * 10 + rng.random_range(0..3)),
            org_id: [None, Some(Id(100)), Some(Id(101))][rng.random_range(0..3)],
            status: statuses[rng.random_range(0..statuses.len())],
            ..w.log(user, models[rng.random_range(0..models.len())], (1, 1))
        };
        all.push(log.clone());
        w.usage.record(log);
    }
    w.usage.flush().await.unwrap();
    all.reverse();
    let (first, last) = (all.last().unwrap().at, all[0].at);
    let span = (last - first).num_milliseconds();
    for round in 0..150 {
        let pick = |rng: &mut StdRng| rng.random_bool(0.4);
        let mut query = LogQuery {
            user: pick(&mut rng).then(|| Id(rng.random_range(1..=7))),
            key: pick(&mut rng).then(|| Id(rng.random_range(10..=62))),
            org: pick(&mut rng).then(|| Id(rng.random_range(100..=102))),
            model: pick(&mut rng).then(|| models[rng.random_range(0..models.len())].to_string()),
            status: rng
                .random_bool(0.2)
                .then(|| statuses[rng.random_range(0..statuses.len())]),
            status_class: rng.random_bool(0.2).then(|| rng.random_range(2..=5)),
            limit: rng.random_range(1..=120),
            ..LogQuery::default()
        };
        if pick(&mut rng) {
            let from = first + chrono::Duration::milliseconds(rng.random_range(0..span));
            query.from = Some(from);
            query.to = Some(from + chrono::Duration::milliseconds(rng.random_range(0..span / 3)));
        }
        let expected: Vec<Id> = all
            .iter()
            .filter(|l| {
                query.user.is_none_or(|u| l.user_id == u)
                    && query.key.is_none_or(|k| l.key_id == k)
                    && query.org.is_none_or(|o| l.org_id == Some(o))
                    && query.model.as_deref().is_none_or(|m| l.model == m)
                    && query.status.is_none_or(|s| l.status == s)
                    && query.status_class.is_none_or(|c| l.status / 100 == c)
                    && query.from.is_none_or(|f| l.at >= f)
                    && query.to.is_none_or(|t| l.at <= t)
            })
            .map(|l| l.id)
            .collect();
        let mut seen = Vec::new();
        for pages in 0.. {
            assert!(pages < 1000, "round {round}: paging does not end");
            let page = w.usage.logs(&admin, &query).await.unwrap();
            assert!(page.items.len() <= query.limit);
            seen.extend(page.items.iter().map(|l| l.id));
            match page.next {
                Some(next) => query.before = Some(next),
                None => break,
            }
        }
        assert_eq!(seen, expected, "round {round}: {query:?}");
    }
}

#[tokio::test]
async fn logs_and_rollups_of_earlier_releases_move_into_the_indexed_layout() {
    let w = world();
    let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    // As an earlier release stored them: bodies inline, no index entries,
    // and rollups by (day, user, key, model).
    let old: Vec<RequestLog> = (0..1200).map(|_| w.log(ada.id, "a", (3, 4))).collect();
    let day = w.env.clock.now().format("%Y-%m-%d").to_string();
    w.store
        .run(|tx| {
            let (old, day) = (&old, &day);
            async move {
                for log in old {
                    keyspace::request_log(log.id).put(&tx, log).await?;
                }
                for (field, value) in [("requests", 1200), ("prompt_tokens", 3600)] {
                    tx.atomic_add(&keyspace::usage_day(day, ada.id, Id(77), "a", field), value)?;
                }
                Ok::<_, TxError<Error>>(())
            }
        })
        .await
        .unwrap();
    let mine = LogQuery {
        user: Some(ada.id),
        limit: 500,
        ..LogQuery::default()
    };
    assert!(
        w.usage.logs(&admin, &mine).await.unwrap().items.is_empty(),
        "not indexed yet"
    );
    // Listed without bodies even before the move.
    let listed = w
        .usage
        .logs(
            &admin,
            &LogQuery {
                limit: 5,
                ..LogQuery::default()
            },
        )
        .await
        .unwrap();
    assert!(
        listed
            .items
            .iter()
            .all(|l| l.captured && l.request_body.is_none())
    );

    assert_eq!(w.usage.index_old_logs().await.unwrap(), 1200);
    assert_eq!(w.usage.index_old_logs().await.unwrap(), 0, "once");
    assert_eq!(every_page(&w, &admin, mine.clone()).await, 1200);
    let opened = w.usage.log(&ada, old[7].id).await.unwrap();
    assert_eq!(
        opened.request_body, old[7].request_body,
        "bodies moved apart, still there"
    );

    assert_eq!(w.usage.move_old_rollups().await.unwrap(), 2);
    assert_eq!(w.usage.move_old_rollups().await.unwrap(), 0, "moved once");
    let today = w.env.clock.now().date_naive();
    for (viewer, all, group_by) in [
        (&ada, false, GroupBy::Day),
        (&ada, false, GroupBy::Model),
        (&admin, true, GroupBy::Key),
        (&admin, true, GroupBy::User),
    ] {
        let query = StatsQuery {
            from: today,
            to: today,
            user: (!all).then_some(ada.id),
            all,
            group_by,
        };
        let rows = w.usage.stats(viewer, &query).await.unwrap();
        assert_eq!(rows.len(), 1, "{group_by:?}");
        assert_eq!(
            (rows[0].requests, rows[0].prompt_tokens),
            (1200, 3600),
            "{group_by:?}"
        );
    }
}

#[tokio::test]
async fn everyone_s_usage_groups_by_organization_and_a_user_s_own_does_not() {
    let w = world();
    let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    for (org, tokens) in [
        (Some(Id(100)), (10, 1)),
        (Some(Id(100)), (20, 2)),
        (Some(Id(101)), (5, 5)),
        (None, (1, 1)),
    ] {
        w.usage.record(RequestLog {
            org_id: org,
            ..w.log(ada.id, "a", tokens)
        });
    }
    w.usage.flush().await.unwrap();
    let today = w.env.clock.now().date_naive();
    let query = StatsQuery {
        from: today,
        to: today,
        user: None,
        all: true,
        group_by: GroupBy::Organization,
    };
    let rows = w.usage.stats(&admin, &query).await.unwrap();
    let rows: Vec<(&str, i64, i64)> = rows
        .iter()
        .map(|r| (r.group.as_str(), r.requests, r.prompt_tokens))
        .collect();
    assert_eq!(
        rows,
        [("100", 2, 30), ("101", 1, 5)],
        "calls for no organization are in no row"
    );
    let own = StatsQuery {
        all: false,
        ..query
    };
    assert_eq!(
        w.usage.stats(&ada, &own).await.unwrap_err().code(),
        crate::ErrorCode::InvalidInput
    );
}

/// Everyone's usage by user reads whole weeks from the weekly rows and the
/// days around them from the daily ones; weeks before the weekly rows were
/// started (a store of an earlier release, whose logs wrote none) come from
/// the daily rows. Random ranges over four months give exactly the sums of
/// the logs themselves.
#[tokio::test]
async fn usage_by_user_sums_weeks_and_days_exactly_as_the_logs_do() {
    use std::collections::BTreeMap;

    use rand::rngs::StdRng;

    use super::rollups::USER_WEEK;
    use rand::{Rng, SeedableRng};
    let w = world();
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    let mut rng = StdRng::seed_from_u64(7);
    let mut all = Vec::new();
    let record = |w: &World, rng: &mut StdRng, n: usize, all: &mut Vec<RequestLog>| {
        for _ in 0..n {
            w.clock.advance(rng.random_range(0..(36 * 3600 * 1000)));
            let user = Id(rng.random_range(1..=8));
            let tokens = (rng.random_range(0..500), rng.random_range(0..500));
            let log = w.log(user, "m", tokens);
            all.push(log.clone());
            w.usage.record(log);
        }
    };
    // An earlier release: daily rows only.
    record(&w, &mut rng, 80, &mut all);
    w.usage.flush().await.unwrap();
    w.store
        .run(|tx| async move {
            tx.clear_range(&keyspace::usage_all_days(USER_WEEK, "", "9999-12-31"))?;
            Ok::<_, TxError<Error>>(())
        })
        .await
        .unwrap();
    assert!(w.usage.start_weekly_rollups().await.unwrap());
    assert!(!w.usage.start_weekly_rollups().await.unwrap(), "once");
    record(&w, &mut rng, 80, &mut all);
    w.usage.flush().await.unwrap();
    let first = all[0].at.date_naive();
    let span = (all.last().unwrap().at.date_naive() - first).num_days();
    for round in 0..200 {
        let from = first + chrono::Days::new(rng.random_range(0..=span) as u64);
        let to = from + chrono::Days::new(rng.random_range(0..=60));
        let query = StatsQuery {
            from,
            to,
            user: None,
            all: true,
            group_by: GroupBy::User,
        };
        let mut expected: BTreeMap<String, (i64, i64, i64, i64)> = BTreeMap::new();
        for log in all
            .iter()
            .filter(|l| (from..=to).contains(&l.at.date_naive()))
        {
            let row = expected.entry(log.user_id.to_string()).or_default();
            row.0 += 1;
            row.1 += log.prompt_tokens as i64;
            row.2 += log.completion_tokens as i64;
            row.3 += log.cost_micros;
        }
        let got: BTreeMap<String, (i64, i64, i64, i64)> = w
            .usage
            .stats(&admin, &query)
            .await
            .unwrap()
            .into_iter()
            .map(|r| {
                let sums = (
                    r.requests,
                    r.prompt_tokens,
                    r.completion_tokens,
                    r.cost_micros,
                );
                (r.group, sums)
            })
            .collect();
        assert_eq!(got, expected, "round {round}: {from}..={to}");
    }
}

#[test]
fn a_range_splits_into_whole_weeks_and_the_days_around_them() {
    use chrono::NaiveDate;

    use super::rollups::weeks_and_days;
    let d = |s: &str| NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap();
    // 2026-11-02 is a Monday.
    let (weeks, days) = weeks_and_days(d("2026-11-04"), d("2026-11-26"), Some(d("0001-01-01")));
    assert_eq!(weeks, Some((d("2026-11-09"), d("2026-11-16"))));
    assert_eq!(
        days,
        [
            (d("2026-11-04"), d("2026-11-08")),
            (d("2026-11-23"), d("2026-11-26"))
        ]
    );
    let (weeks, days) = weeks_and_days(d("2026-11-02"), d("2026-11-15"), Some(d("0001-01-01")));
    assert_eq!(
        (weeks, days),
        (Some((d("2026-11-02"), d("2026-11-09"))), vec![])
    );
    // Weeks before `since` come from days.
    let (weeks, days) = weeks_and_days(d("2026-11-02"), d("2026-11-22"), Some(d("2026-11-16")));
    assert_eq!(weeks, Some((d("2026-11-16"), d("2026-11-16"))));
    assert_eq!(days, [(d("2026-11-02"), d("2026-11-15"))]);
    assert_eq!(
        weeks_and_days(d("2026-11-03"), d("2026-11-08"), Some(d("0001-01-01"))),
        (None, vec![(d("2026-11-03"), d("2026-11-08"))])
    );
    assert_eq!(
        weeks_and_days(d("2026-11-02"), d("2026-11-30"), None),
        (None, vec![(d("2026-11-02"), d("2026-11-30"))])
    );
}

#[tokio::test]
async fn rollup_counters_of_earlier_releases_fold_into_rows_and_count_once() {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    let w = world();
    // The same calls, rolled up by this release alone: the reference.
    let reference = world();
    let ada = crate::testing::user(&w.store, &w.env, "ada", &[Role::User]).await;
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    let mut rng = StdRng::seed_from_u64(11);
    let mut calls = |n: usize| -> Vec<RequestLog> {
        (0..n)
            .map(|_| {
                w.clock.advance(rng.random_range(0..(9 * 3600 * 1000)));
                let user = if rng.random_bool(0.5) {
                    ada.id
                } else {
                    Id(rng.random_range(1..=5))
                };
                let model = ["m1", "m2", "m3"][rng.random_range(0..3)];
                let mut log = w.log(
                    user,
                    model,
                    (rng.random_range(0..900), rng.random_range(0..90)),
                );
                log.key_id = Id(rng.random_range(70..74));
                log.org_id = rng.random_bool(0.7).then(|| Id(rng.random_range(500..503)));
                log
            })
            .collect()
    };
    // What an earlier release wrote: one counter per field of each row.
    let old = calls(150);
    let rows = super::rollups::rollups_of(&old);
    w.store
        .run(|tx| {
            let rows = &rows;
            async move {
                for (row, lanes) in rows {
                    let (user, dimension, day, group, field) = keyspace::parse_rollup(row).unwrap();
                    assert_eq!(field, None);
                    for (field, value) in keyspace::ROLLUP_LANES.iter().zip(lanes) {
                        let key = match user {
                            None => keyspace::usage_all_field(&dimension, &day, &group, field),
                            Some(u) => {
                                keyspace::usage_user_field(u, &dimension, &day, &group, field)
                            }
                        };
                        tx.atomic_add(&key, *value)?;
                    }
                }
                Ok::<_, TxError<Error>>(())
            }
        })
        .await
        .unwrap();
    // Then this release's rows, for calls on the same days and later.
    w.clock.set(old[0].at.timestamp_millis());
    let new = calls(150);
    for log in old.iter().chain(&new) {
        reference.usage.record(log.clone());
    }
    for log in &new {
        w.usage.record(log.clone());
    }
    w.usage.flush().await.unwrap();
    reference.usage.flush().await.unwrap();

    let (from, to) = (
        old[0].at.date_naive(),
        new.iter()
            .chain(&old)
            .map(|l| l.at.date_naive())
            .max()
            .unwrap(),
    );
    let same = |stage: &'static str| {
        let (w, reference, ada, admin) = (&w, &reference, &ada, &admin);
        async move {
            for (viewer, all, group_by) in [
                (admin, true, GroupBy::Day),
                (admin, true, GroupBy::Model),
                (admin, true, GroupBy::Key),
                (admin, true, GroupBy::User),
                (admin, true, GroupBy::Organization),
                (ada, false, GroupBy::Day),
                (ada, false, GroupBy::Model),
                (ada, false, GroupBy::Key),
                (ada, false, GroupBy::User),
            ] {
                let query = StatsQuery {
                    from,
                    to,
                    user: None,
                    all,
                    group_by,
                };
                let got = w.usage.stats(viewer, &query).await.unwrap();
                let want = reference.usage.stats(viewer, &query).await.unwrap();
                assert!(!want.is_empty());
                assert_eq!(got, want, "{stage}: {group_by:?} all={all}");
            }
        }
    };
    let old_counters = || async {
        let page = w
            .store
            .read_range(&keyspace::usage_rollups(), RangeOptions::default())
            .await
            .unwrap();
        page.entries
            .iter()
            .filter(|(k, _)| matches!(keyspace::parse_rollup(k), Some((.., Some(_)))))
            .count()
    };
    let before = old_counters().await;
    assert_eq!(before, rows.len() * 4);
    same("both layouts side by side").await;
    // Part of the way: still exact.
    let mut folded = 0;
    for _ in 0..5 {
        let (count, done) = w.usage.fold_rollup_page(97).await.unwrap();
        assert!(!done);
        folded += count;
    }
    assert!(folded > 0 && old_counters().await == before - folded);
    same("half folded").await;
    // To the end, once.
    folded += w.usage.fold_rollup_fields().await.unwrap();
    assert_eq!(folded, before);
    assert_eq!(old_counters().await, 0);
    assert_eq!(w.usage.fold_rollup_fields().await.unwrap(), 0, "once");
    same("folded").await;
}

#[tokio::test]
async fn a_flush_larger_than_a_transaction_is_written_in_several() {
    flush_larger_than_a_transaction(world()).await;
}

/// The same on the embedded engine, where the flush's transactions are
/// committed together as one group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_in_several_transactions_commits_them_as_a_group() {
    let dir = tempfile::tempdir().unwrap();
    let engine = gatehouse_storage::embedded::EmbeddedEngine::open(dir.path()).unwrap();
    let store = Store::new(Arc::new(engine));
    assert!(store.commits_in_groups());
    flush_larger_than_a_transaction(world_on(store)).await;
}

async fn flush_larger_than_a_transaction(w: World) {
    let admin = crate::testing::user(&w.store, &w.env, "admin", &[Role::User, Role::Admin]).await;
    // Captured bodies (counted in the size estimate), then long model names
    // (not in it: each log's index entries and rollup rows repeat the name,
    // about 15 kB a log, so the encoded batch is over and is cut again).
    let bodies = |w: &World| {
        let mut log = w.log(admin.id, "m", (1, 1));
        log.request_body = Some("q".repeat(60_000));
        log.response_body = Some("a".repeat(30_000));
        log
    };
    let long = "x".repeat(1_900);
    for round in 0..2 {
        for i in 0..1_000 {
            let log = match round {
                0 if i < 150 => bodies(&w),
                0 => continue,
                _ => w.log(admin.id, &format!("{long}{}", i % 7), (1, 1)),
            };
            w.usage.record(log);
        }
        let pending = w.usage.pending();
        // Each transaction is refused over 10 MB: all written means each fit.
        assert_eq!(w.usage.flush().await.unwrap(), pending, "round {round}");
        assert_eq!(w.usage.pending(), 0);
    }
    let mine = LogQuery {
        user: Some(admin.id),
        limit: 500,
        ..LogQuery::default()
    };
    assert_eq!(every_page(&w, &admin, mine).await, 1_150);
    let today = w.env.clock.now().date_naive();
    let stats = w
        .usage
        .stats(
            &admin,
            &StatsQuery {
                from: today,
                to: today,
                user: None,
                all: false,
                group_by: GroupBy::Day,
            },
        )
        .await
        .unwrap();
    assert_eq!(stats[0].requests, 1_150);
}
