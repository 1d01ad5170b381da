//! Usage: what every gateway call cost, written off the request path.
//!
//! The gateway hands each finished call to [`UsageService::record`], which
//! only appends to a buffer. [`UsageService::flush`], run every second by
//! each instance, writes the buffered request logs, adds them to the daily
//! rollups (atomic adds, so writers never conflict), adds settled spend to the
//! shared budget counters and reads the totals back into the [`Ledger`].
//!
//! Reading: users see their own statistics and request logs; `admin` and
//! `admin_readonly` see everyone's; captured bodies are shown only to
//! `request_viewer` holders and to the user who made the call (SPEC §2).

pub mod ledger;
mod settle;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use gatehouse_storage::tuple::unpack;
use gatehouse_storage::{KeyRange, RangeOptions, Store, TxError, decode_counter};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use self::ledger::{Holder, Ledger};
pub use self::settle::{
    CallOutcome, DEFAULT_MAX_TOKENS, MAX_TOKENS_CAP, Tokens, estimate_tokens, reserved_tokens,
};
use crate::codec;
use crate::model::accounts::{Role, User};
use crate::model::keys::BudgetPeriod;
pub use crate::model::usage::RequestLog;
use crate::{Env, Error, Id, Result, keyspace};

/// Request logs written per transaction, at most.
const FLUSH_BATCH: usize = 2000;
/// About this many bytes of request logs per transaction, at most (engines
/// refuse transactions over 10 MB).
const FLUSH_BATCH_BYTES: usize = 2_000_000;

/// Roughly how many bytes a log takes stored, with its rollup writes.
fn log_size(log: &RequestLog) -> usize {
    600 + log.request_body.as_ref().map_or(0, String::len)
        + log.response_body.as_ref().map_or(0, String::len)
        + log.error.as_ref().map_or(0, String::len)
}

/// The counters of a daily rollup row.
const FIELDS: [&str; 4] = [
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "cost_micros",
];

/// Request logs encoded between yields to the scheduler during a flush.
const YIELD_EVERY: usize = 128;

/// A request log encoded within the store's value limit: captured bodies that
/// escape into more JSON than fits are cut (the longer first, by half each
/// time), then the error text.
fn encode_fitting(log: &RequestLog) -> Result<Vec<u8>> {
    const ROOM: usize = gatehouse_storage::limits::MAX_VALUE_SIZE - 64;
    let encoded = codec::encode(log)?;
    if encoded.len() <= ROOM {
        return Ok(encoded);
    }
    let mut log = log.clone();
    for _ in 0..64 {
        let longest = [
            &mut log.request_body,
            &mut log.response_body,
            &mut log.error,
        ]
        .into_iter()
        .filter_map(|text| text.as_mut())
        .max_by_key(|text| text.len());
        match longest {
            Some(text) if !text.is_empty() => {
                let mut keep = text.len() / 2;
                while !text.is_char_boundary(keep) {
                    keep -= 1;
                }
                text.truncate(keep);
                text.push_str("…[cut to fit]");
                if keep == 0 {
                    text.clear();
                }
            }
            _ => break,
        }
        let encoded = codec::encode(&log)?;
        if encoded.len() <= ROOM {
            return Ok(encoded);
        }
    }
    Err(Error::internal(
        "a request log does not fit in a stored value",
    ))
}

/// A count as the storage counters' `i64`, at most `i64::MAX`.
fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The rollup additions of some logs, one per (day, user, key, model) and
/// counter: calls of one key to one model on one day add up before they are
/// written.
fn rollups_of(logs: &[RequestLog]) -> Vec<(Vec<u8>, i64)> {
    let mut sums: HashMap<(NaiveDate, Id, Id, &str), [i64; 4]> = HashMap::new();
    for log in logs {
        let day = log.at.date_naive();
        let sum = sums
            .entry((day, log.user_id, log.key_id, log.model.as_str()))
            .or_default();
        let values = [
            1,
            saturating_i64(log.prompt_tokens),
            saturating_i64(log.completion_tokens),
            log.cost_micros,
        ];
        for (total, value) in sum.iter_mut().zip(values) {
            *total = total.saturating_add(value);
        }
    }
    let mut rows = Vec::with_capacity(sums.len() * FIELDS.len());
    for ((day, user, key, model), values) in sums {
        let day = day.format("%Y-%m-%d").to_string();
        for (field, value) in FIELDS.iter().zip(values) {
            rows.push((keyspace::usage_day(&day, user, key, model, field), value));
        }
    }
    rows
}

/// `("spend", period, holder kind, holder id)` of a holder.
fn spend_key(period: &str, holder: Holder) -> Vec<u8> {
    keyspace::spend(period, holder.kind(), holder.id())
}

/// `("rate", minute, holder kind, holder id, field)` of a holder.
fn rate_key(minute: i64, holder: Holder, field: &str) -> Vec<u8> {
    keyspace::rate(minute, holder.kind(), holder.id(), field)
}

/// How statistics are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Model,
    Key,
    User,
}

/// One row of statistics.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatsRow {
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cost_micros: i64,
}

/// Which statistics: days `from..=to` (UTC), optionally one user's.
#[derive(Debug, Clone)]
pub struct StatsQuery {
    pub from: NaiveDate,
    pub to: NaiveDate,
    /// `None`: the caller's own, unless `all`.
    pub user: Option<Id>,
    /// Everyone's (platform readers).
    pub all: bool,
    pub group_by: GroupBy,
}

/// Filters for request logs; `before` pages backwards by ID.
#[derive(Debug, Clone, Default)]
pub struct LogQuery {
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub user: Option<Id>,
    pub key: Option<Id>,
    pub model: Option<String>,
    pub status: Option<u16>,
    pub before: Option<Id>,
    pub limit: usize,
}

/// The most days one statistics query covers.
pub const MAX_STATS_DAYS: i64 = 366;

pub struct UsageService {
    store: Store,
    env: Env,
    ledger: Arc<Ledger>,
    buffer: Mutex<Buffer>,
    /// The last flush's buffer, emptied, for the next round: a buffer that
    /// grew from nothing every second re-copied its logs at each doubling
    /// and faulted in fresh pages, on the request path.
    spare: Mutex<Vec<RequestLog>>,
}

/// Request logs waiting for the next flush, and about how much memory they
/// hold ([`log_size`]: captured bodies make some logs half a megabyte).
#[derive(Default)]
struct Buffer {
    logs: Vec<RequestLog>,
    bytes: usize,
}

/// Most logs, and most bytes of them, buffered before new ones are dropped
/// (a storage outage must not exhaust memory); each dropped log is logged.
const MAX_BUFFER: usize = 100_000;
pub const MAX_BUFFER_BYTES: usize = 64 * 1024 * 1024;

/// Buffer capacity (in logs) kept between flushes however few came.
const KEPT_BUFFER: usize = 16_384;

impl UsageService {
    pub fn new(store: Store, env: Env, ledger: Arc<Ledger>) -> Self {
        UsageService {
            store,
            env,
            ledger,
            buffer: Mutex::new(Buffer::default()),
            spare: Mutex::new(Vec::new()),
        }
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Queues one call's record; never waits for storage.
    pub fn record(&self, log: RequestLog) {
        let size = log_size(&log);
        let mut buffer = self.buffer.lock();
        if buffer.logs.len() >= MAX_BUFFER || buffer.bytes.saturating_add(size) > MAX_BUFFER_BYTES {
            tracing::error!(request = %log.id, "usage buffer full: request log dropped");
            return;
        }
        buffer.bytes += size;
        buffer.logs.push(log);
    }

    /// How many records wait for the next flush.
    pub fn pending(&self) -> usize {
        self.buffer.lock().logs.len()
    }

    /// About how many bytes the records waiting for the next flush hold.
    pub fn pending_bytes(&self) -> usize {
        self.buffer.lock().bytes
    }

    /// Reads the shared spend of the current periods into the ledger (at start).
    pub async fn load_spend(&self) -> Result<()> {
        let now = self.env.clock.now();
        let mut totals = Vec::new();
        for period in [
            ledger::period_key(BudgetPeriod::Day, now),
            ledger::period_key(BudgetPeriod::Month, now),
            "total".to_string(),
        ] {
            let range = keyspace::spend_in(&period);
            let page = self
                .store
                .run(|tx| {
                    let range = &range;
                    async move {
                        Ok::<_, TxError<Error>>(tx.get_range(range, RangeOptions::default()).await?)
                    }
                })
                .await?;
            for (key, value) in page.entries {
                if let Ok((_, period, kind, id)) = unpack::<(String, String, String, u64)>(&key)
                    && let Some(holder) = Holder::parse(&kind, Id(id))
                {
                    totals.push((holder, period, decode_counter(&value)));
                }
            }
        }
        self.ledger.apply_totals(&totals);
        Ok(())
    }

    /// Writes what was buffered and brings the ledger in line with the other
    /// instances. Returns how many request logs were written.
    pub async fn flush(&self) -> Result<usize> {
        let spare = std::mem::take(&mut *self.spare.lock());
        let mut logs = {
            let mut buffer = self.buffer.lock();
            buffer.bytes = 0;
            std::mem::replace(&mut buffer.logs, spare)
        };
        let written = logs.len();
        // Few, large transactions (each commit is a durable write), each well
        // inside the engines' transaction size limit.
        let mut start = 0;
        while start < logs.len() {
            let mut end = start;
            let mut bytes = 0;
            while end < logs.len() && end - start < FLUSH_BATCH && bytes < FLUSH_BATCH_BYTES {
                bytes += log_size(&logs[end]);
                end += 1;
            }
            // Encoded once, outside the transaction (which may run again on a
            // conflict), yielding now and then so that a large flush never
            // holds a worker thread that requests are waiting for.
            let mut rows = Vec::with_capacity(end - start);
            for (i, log) in logs[start..end].iter().enumerate() {
                if i % YIELD_EVERY == YIELD_EVERY - 1 {
                    crate::blocking::yield_now().await;
                }
                rows.push((keyspace::request_log(log.id), encode_fitting(log)?));
            }
            let rollups = rollups_of(&logs[start..end]);
            let result = self
                .store
                .run(|tx| {
                    let (rows, rollups) = (&rows, &rollups);
                    async move {
                        for (key, bytes) in rows {
                            tx.set(key.as_bytes(), bytes)?;
                        }
                        for (key, value) in rollups {
                            tx.atomic_add(key, *value)?;
                        }
                        Ok::<_, TxError<Error>>(())
                    }
                })
                .await;
            if let Err(e) = result {
                // Put back what was not written; the next flush retries.
                let mut buffer = self.buffer.lock();
                buffer.bytes += logs[start..].iter().map(log_size).sum::<usize>();
                buffer.logs.extend(logs.drain(start..));
                return Err(e.into());
            }
            start = end;
        }
        logs.clear();
        // A second's worth of a busy gateway is kept across quiet spells;
        // what a backlog (after an outage) grew it to is given back.
        if logs.capacity() > KEPT_BUFFER.max(4 * written) {
            logs.shrink_to(KEPT_BUFFER.max(2 * written));
        }
        *self.spare.lock() = logs;
        let deltas = self.ledger.take_unflushed();
        if !deltas.is_empty() {
            let result = self
                .store
                .run(|tx| {
                    let deltas = &deltas;
                    async move {
                        for (holder, period, delta) in deltas {
                            tx.atomic_add(&spend_key(period, *holder), *delta)?;
                        }
                        Ok::<_, TxError<Error>>(())
                    }
                })
                .await;
            if let Err(e) = result {
                self.ledger.restore_unflushed(&deltas);
                return Err(e.into());
            }
        }
        let tracked = self.ledger.tracked();
        if !tracked.is_empty() {
            let totals = self
                .store
                .run(|tx| {
                    let tracked = &tracked;
                    async move {
                        let mut totals = Vec::with_capacity(tracked.len());
                        for (holder, period) in tracked {
                            let value = tx.get(&spend_key(period, *holder)).await?;
                            totals.push((
                                *holder,
                                period.clone(),
                                value.as_deref().map_or(0, decode_counter),
                            ));
                        }
                        Ok::<_, TxError<Error>>(totals)
                    }
                })
                .await?;
            self.ledger.apply_totals(&totals);
        }
        self.sync_rates().await?;
        self.ledger.forget_before(self.env.clock.now());
        Ok(written)
    }

    /// Adds this instance's per-minute counts to the shared counters and reads
    /// the totals back, so limits hold across instances; drops old minutes.
    async fn sync_rates(&self) -> Result<()> {
        let counts = self.ledger.take_rate_unflushed();
        let tracked = self.ledger.tracked_windows();
        let now_minute = self.env.clock.now().timestamp().div_euclid(60);
        let totals = self
            .store
            .run(|tx| {
                let (counts, tracked) = (&counts, &tracked);
                async move {
                    for c in counts {
                        tx.atomic_add(
                            &rate_key(c.minute, c.holder, "requests"),
                            i64::from(c.requests),
                        )?;
                        tx.atomic_add(
                            &rate_key(c.minute, c.holder, "tokens"),
                            saturating_i64(c.tokens),
                        )?;
                    }
                    let mut totals = Vec::with_capacity(tracked.len());
                    for (holder, minute) in tracked {
                        let requests = tx
                            .get(&rate_key(*minute, *holder, "requests"))
                            .await?
                            .as_deref()
                            .map_or(0, decode_counter);
                        let tokens = tx
                            .get(&rate_key(*minute, *holder, "tokens"))
                            .await?
                            .as_deref()
                            .map_or(0, decode_counter);
                        totals.push(ledger::RateCount {
                            holder: *holder,
                            minute: *minute,
                            requests: u32::try_from(requests).unwrap_or(u32::MAX),
                            tokens: u64::try_from(tokens).unwrap_or(0),
                        });
                    }
                    let old = keyspace::rates_before(now_minute - 2);
                    tx.clear_range(&old)?;
                    Ok::<_, TxError<Error>>(totals)
                }
            })
            .await?;
        self.ledger.apply_rate_totals(&totals);
        Ok(())
    }

    /// Usage statistics, grouped. Users read their own; platform readers
    /// anyone's (`user`) or everyone's (`all`).
    pub async fn stats(&self, viewer: &User, query: &StatsQuery) -> Result<Vec<StatsRow>> {
        let reader = viewer.is_platform_reader();
        if (query.all || query.user.is_some_and(|u| u != viewer.id)) && !reader {
            return Err(Error::permission_denied(
                "only platform admins read others' usage",
            ));
        }
        if viewer.is_provider_account() {
            return Err(Error::permission_denied("provider accounts have no usage"));
        }
        let days = (query.to - query.from).num_days();
        if !(0..MAX_STATS_DAYS).contains(&days) {
            return Err(Error::invalid_input(format!(
                "from..to covers 1 to {MAX_STATS_DAYS} days"
            )));
        }
        let only_user = if query.all {
            None
        } else {
            Some(query.user.unwrap_or(viewer.id))
        };
        let mut rows: BTreeMap<String, StatsRow> = BTreeMap::new();
        let mut day = query.from;
        while day <= query.to {
            let day_text = day.format("%Y-%m-%d").to_string();
            let range = keyspace::usage_of_day(&day_text, only_user);
            let mut next = Some(range);
            while let Some(range) = next {
                let page = self
                    .store
                    .run(|tx| {
                        let range = &range;
                        async move {
                            Ok::<_, TxError<Error>>(
                                tx.get_range(range, RangeOptions::limit(1000)).await?,
                            )
                        }
                    })
                    .await?;
                for (key, value) in &page.entries {
                    let Ok((_, day, user, key_id, model, field)) =
                        unpack::<(String, String, u64, u64, String, String)>(key)
                    else {
                        continue;
                    };
                    let group = match query.group_by {
                        GroupBy::Day => day,
                        GroupBy::Model => model,
                        GroupBy::Key => key_id.to_string(),
                        GroupBy::User => user.to_string(),
                    };
                    let row = rows.entry(group.clone()).or_insert_with(|| StatsRow {
                        group,
                        ..StatsRow::default()
                    });
                    let value = decode_counter(value);
                    match field.as_str() {
                        "requests" => row.requests += value,
                        "prompt_tokens" => row.prompt_tokens += value,
                        "completion_tokens" => row.completion_tokens += value,
                        "cost_micros" => row.cost_micros += value,
                        _ => {}
                    }
                }
                next = page.next;
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
        Ok(rows.into_values().collect())
    }

    /// Request logs, newest first. Users see their own; platform readers and
    /// `request_viewer` holders everyone's. Bodies only for `request_viewer`
    /// holders and the caller who made the request.
    pub async fn logs(&self, viewer: &User, query: &LogQuery) -> Result<Vec<RequestLog>> {
        if query.status.is_some_and(|s| !(100..=599).contains(&s)) {
            return Err(Error::invalid_input("status is an HTTP status, 100 to 599"));
        }
        let sees_all = viewer.is_platform_reader() || viewer.roles.contains(&Role::RequestViewer);
        if viewer.is_provider_account() {
            return Err(Error::permission_denied(
                "provider accounts have no request logs",
            ));
        }
        if query.user.is_some_and(|u| u != viewer.id) && !sees_all {
            return Err(Error::permission_denied(
                "only platform admins and request viewers read others' request logs",
            ));
        }
        let only_user = if sees_all {
            query.user
        } else {
            Some(viewer.id)
        };
        let limit = query.limit.clamp(1, crate::page::MAX_LIMIT + 1);
        let all = keyspace::request_logs();
        let begin = match query.from {
            Some(from) => keyspace::request_log(Id::first_at(from.timestamp_millis()))
                .as_bytes()
                .to_vec(),
            None => all.begin.clone(),
        };
        let mut end = match query.to {
            Some(to) => keyspace::request_log(Id::first_at(to.timestamp_millis() + 1))
                .as_bytes()
                .to_vec(),
            None => all.end.clone(),
        };
        if let Some(before) = query.before {
            let before = keyspace::request_log(before).as_bytes().to_vec();
            end = end.min(before);
        }
        let mut found = crate::codec::find_in_range(
            &self.store,
            begin,
            end,
            true,
            limit,
            |log: &RequestLog| {
                only_user.is_none_or(|u| log.user_id == u)
                    && query.key.is_none_or(|k| log.key_id == k)
                    && query.model.as_deref().is_none_or(|m| log.model == m)
                    && query.status.is_none_or(|s| log.status == s)
            },
        )
        .await?;
        let sees_bodies = viewer.roles.contains(&Role::RequestViewer);
        for log in &mut found {
            if !sees_bodies && log.user_id != viewer.id {
                log.request_body = None;
                log.response_body = None;
            }
        }
        Ok(found)
    }

    /// Deletes request logs older than `days`; returns how many, at most
    /// 10 000 per call.
    pub async fn trim_logs(&self, days: u64) -> Result<usize> {
        let cutoff = self.env.clock.now_millis() - days as i64 * 86_400_000;
        let end = keyspace::request_log(Id::first_at(cutoff))
            .as_bytes()
            .to_vec();
        let range = KeyRange::new(keyspace::request_logs().begin, end);
        codec::trim_range(&self.store, &range).await
    }
}

#[cfg(test)]
mod tests;
