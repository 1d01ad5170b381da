//! Usage: what every gateway call cost, written off the request path.
//!
//! The gateway hands each finished call to [`UsageService::record`], which
//! only appends to a buffer. [`UsageService::flush`], run every second by
//! each instance, writes the buffered request logs with their index entries
//! (`logs`), adds them to the daily rollups (`rollups`; atomic adds, so
//! writers never conflict), adds settled spend to the shared budget counters
//! and reads the totals back into the [`Ledger`].
//!
//! Reading: users see their own statistics and request logs; `admin` and
//! `admin_readonly` see everyone's; captured bodies are shown only to
//! `request_viewer` holders and to the user who made the call (SPEC §2).

pub mod ledger;
mod logs;
mod rollups;
mod settle;

use std::sync::Arc;

use gatehouse_storage::tuple::unpack;
use gatehouse_storage::{RangeOptions, Store, TxError, decode_counter};
use parking_lot::Mutex;

use self::ledger::{Holder, Ledger};
pub use self::logs::{LogPage, LogQuery};
use self::rollups::saturating_i64;
pub use self::rollups::{GroupBy, MAX_STATS_DAYS, StatsQuery, StatsRow};
pub use self::settle::{
    CallOutcome, DEFAULT_MAX_TOKENS, MAX_TOKENS_CAP, Tokens, estimate_tokens, reserved_tokens,
};
use crate::model::keys::BudgetPeriod;
pub use crate::model::usage::{LogBodies, RequestLog};
use crate::timeline::SCAN_BUDGET;
use crate::{Env, Error, Id, Result, keyspace};

/// Request logs written per transaction, at most.
/// The embedded engine's cost of a commit grows with the index and rollup
/// pages it dirties, which depend on how many users, keys and models a batch
/// touches, not on how many logs it holds: larger batches write far fewer
/// pages per log (measured in docs/performance.md, "Records at scale"). So a
/// batch is as large as a transaction may be ([`FLUSH_TX_BYTES`]).
const FLUSH_BATCH: usize = 20_000;
/// Most bytes one flush transaction writes, rollups included (engines refuse
/// transactions over 10 MB): a batch is cut to about this by its logs'
/// estimated size, and cut again in proportion if its encoding is over it.
const FLUSH_TX_BYTES: usize = 8_000_000;

/// Roughly how many bytes a log takes in memory.
fn log_size(log: &RequestLog) -> usize {
    600 + log.request_body.as_ref().map_or(0, String::len)
        + log.response_body.as_ref().map_or(0, String::len)
        + log.error.as_ref().map_or(0, String::len)
}

/// Roughly how many bytes writing a log takes: the record, five index
/// entries and its share of the rollup rows (about 1.2 kB measured, without
/// bodies).
fn stored_size(log: &RequestLog) -> usize {
    log_size(log) + 600
}

/// The logs from `start` that one flush transaction takes: up to
/// [`FLUSH_BATCH`] and about [`FLUSH_TX_BYTES`] by their estimated size.
fn batch_end(logs: &[RequestLog], start: usize) -> usize {
    let mut end = start;
    let mut bytes = 0;
    while end < logs.len() && end - start < FLUSH_BATCH && bytes < FLUSH_TX_BYTES {
        bytes += stored_size(&logs[end]);
        end += 1;
    }
    end
}

/// The batch `logs[start..end]` encoded within [`FLUSH_TX_BYTES`]: cut in
/// proportion while its encoding is over (a single log always fits: its
/// bodies are cut to a stored value's size).
async fn encode_fitting(logs: &[RequestLog], start: usize, mut end: usize) -> Result<Batch> {
    loop {
        let (rows, rollups, bytes) = encode_batch(&logs[start..end]).await?;
        let n = end - start;
        if bytes <= FLUSH_TX_BYTES || n == 1 {
            return Ok(Batch {
                logs: start..end,
                rows,
                rollups,
            });
        }
        let fits = (n as u128 * FLUSH_TX_BYTES as u128 * 9 / 10 / bytes as u128) as usize;
        end = start + fits.clamp(1, n - 1);
    }
}

/// The writes of a batch of logs: their rows, their rollup additions, and
/// how many bytes the two write.
async fn encode_batch(logs: &[RequestLog]) -> Result<Rows> {
    let mut rows = Vec::with_capacity(logs.len() * 7);
    for (i, log) in logs.iter().enumerate() {
        if i % YIELD_EVERY == YIELD_EVERY - 1 {
            crate::blocking::yield_now().await;
        }
        logs::rows_of(log, &mut rows)?;
    }
    let rollups = rollups::rollups_of(logs);
    let bytes = rows.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
        + rollups.iter().map(|(k, _)| k.len() + 32).sum::<usize>();
    Ok((rows, rollups, bytes))
}

/// One flush transaction's writes: the logs it holds (their place in the
/// flushed buffer), their rows, and their rollup additions.
struct Batch {
    logs: std::ops::Range<usize>,
    rows: Vec<(Vec<u8>, Vec<u8>)>,
    rollups: Vec<(Vec<u8>, rollups::Lanes)>,
}

/// Holds each of a group's transactions, once filled, until all of them
/// are: then they commit at the same moment, which an engine that groups
/// commits writes as one. Open for good once opened (a retried transaction
/// passes at once).
struct Gate {
    /// How many have yet to arrive, and what opens the gate (taken when it
    /// opens).
    waiting: Mutex<(usize, Option<futures_channel::oneshot::Sender<()>>)>,
    opened: futures_util::future::Shared<futures_channel::oneshot::Receiver<()>>,
}

impl Gate {
    fn new(members: usize) -> Self {
        use futures_util::FutureExt;
        let (opener, opened) = futures_channel::oneshot::channel();
        Gate {
            waiting: Mutex::new((members, Some(opener))),
            opened: opened.shared(),
        }
    }

    async fn pass(&self) {
        {
            let mut waiting = self.waiting.lock();
            waiting.0 = waiting.0.saturating_sub(1);
            // The last to arrive opens it; a retry finds it open.
            if waiting.0 == 0 {
                if let Some(opener) = waiting.1.take() {
                    let _ = opener.send(());
                }
                return;
            }
        }
        // The opener is kept until it opens the gate, so this ends then.
        let _ = self.opened.clone().await;
    }
}

/// Rows to set, rollup rows to add to, and their size in bytes.
type Rows = (
    Vec<(Vec<u8>, Vec<u8>)>,
    Vec<(Vec<u8>, rollups::Lanes)>,
    usize,
);

/// Request logs encoded between yields to the scheduler during a flush.
const YIELD_EVERY: usize = 128;

/// `("spend", period, holder kind, holder id)` of a holder.
fn spend_key(period: &str, holder: Holder) -> Vec<u8> {
    keyspace::spend(period, holder.kind(), holder.id())
}

/// `("rate", minute, holder kind, holder id, field)` of a holder.
fn rate_key(minute: i64, holder: Holder, field: &str) -> Vec<u8> {
    keyspace::rate(minute, holder.kind(), holder.id(), field)
}

pub struct UsageService {
    store: Store,
    env: Env,
    ledger: Arc<Ledger>,
    buffer: Mutex<Buffer>,
    /// The last flush's buffer, emptied, for the next round: a buffer that
    /// grew from nothing every second re-copied its logs at each doubling
    /// and faulted in fresh pages, on the request path.
    spare: Mutex<Vec<RequestLog>>,
    /// Index entries a request-log page examines at most ([`SCAN_BUDGET`]).
    scan_budget: usize,
    /// Request logs dropped on a full buffer ([`Self::dropped`]).
    dropped: std::sync::atomic::AtomicU64,
    /// Flush transactions committed together: several where the engine
    /// writes concurrent commits as one group, else one at a time.
    group_size: usize,
}

/// Flush transactions committed as one group, at most, where the engine
/// groups commits: a busy second's flush (20 000 logs) is three of them.
const FLUSH_GROUP: usize = 8;

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
            env,
            ledger,
            buffer: Mutex::new(Buffer::default()),
            spare: Mutex::new(Vec::new()),
            scan_budget: SCAN_BUDGET,
            dropped: std::sync::atomic::AtomicU64::new(0),
            group_size: if store.commits_in_groups() {
                FLUSH_GROUP
            } else {
                1
            },
            store,
        }
    }

    /// The same service with another scan budget (tests reach its edge with
    /// few logs).
    #[cfg(test)]
    fn with_scan_budget(mut self, budget: usize) -> Self {
        self.scan_budget = budget.max(1);
        self
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
            self.dropped
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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

    /// How many request logs were dropped since the start because the
    /// buffer was full (storage down, or slower than the calls).
    pub fn dropped(&self) -> u64 {
        self.dropped.load(std::sync::atomic::Ordering::Relaxed)
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
                .read_range(&range, RangeOptions::default())
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

    /// One flush transaction: a batch's rows and rollup additions. Once
    /// filled it waits at `gate` for the group's other transactions, so that
    /// they reach the engine together.
    async fn write_batch(&self, batch: &Batch, gate: &Gate) -> Result<()> {
        Ok(self
            .store
            .run(|tx| async move {
                let filled = (|| {
                    for (key, bytes) in &batch.rows {
                        tx.set(key, bytes)?;
                    }
                    for (key, lanes) in &batch.rollups {
                        tx.atomic_add_lanes(key, lanes)?;
                    }
                    Ok::<_, gatehouse_storage::StorageError>(())
                })();
                // Passed even by a transaction that failed to fill, so that
                // the others never wait for it.
                gate.pass().await;
                filled?;
                Ok::<_, TxError<Error>>(())
            })
            .await?)
    }

    /// Writes a group of batches, committed together where the engine
    /// groups commits; on failure puts the logs of every batch that was not
    /// written back in the buffer and returns the first error.
    async fn write_group(&self, logs: &[RequestLog], group: &[Batch]) -> Result<()> {
        let gate = Gate::new(group.len());
        let results =
            futures_util::future::join_all(group.iter().map(|b| self.write_batch(b, &gate))).await;
        let mut first_error = None;
        for (batch, result) in group.iter().zip(results) {
            if let Err(e) = result {
                self.put_back(logs[batch.logs.clone()].iter().cloned());
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Returns logs that were not written to the buffer, for the next flush.
    fn put_back(&self, logs: impl Iterator<Item = RequestLog>) {
        let mut buffer = self.buffer.lock();
        for log in logs {
            buffer.bytes += log_size(&log);
            buffer.logs.push(log);
        }
    }

    /// The next group of batches from `start`: [`Self::group_size`] batches
    /// at most.
    async fn encode_group(&self, logs: &[RequestLog], mut start: usize) -> Result<Vec<Batch>> {
        let mut group = Vec::new();
        while start < logs.len() && group.len() < self.group_size {
            let batch = encode_fitting(logs, start, batch_end(logs, start)).await?;
            start = batch.logs.end;
            group.push(batch);
        }
        Ok(group)
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
        // inside the engines' transaction size limit, committed a group at a
        // time. Each group is encoded outside its transactions (which may run
        // again on a conflict), while the one before it commits: the commit's
        // work is on a blocking thread, the encoding here, yielding now and
        // then so that a large flush never holds a worker thread that requests
        // are waiting for.
        let mut next = self.encode_group(&logs, 0).await?;
        while !next.is_empty() {
            let end = next.last().map_or(logs.len(), |b| b.logs.end);
            let (result, following) = futures_util::join!(
                self.write_group(&logs, &next),
                self.encode_group(&logs, end)
            );
            if let Err(e) = result {
                // Put back what was not reached; the next flush retries.
                self.put_back(logs.drain(end..));
                return Err(e);
            }
            next = following?;
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
}

#[cfg(test)]
mod tests;
