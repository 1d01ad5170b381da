//! Usage statistics, read from rollups only.
//!
//! Each flush adds its logs to per-day rows (atomic adds, so writers never
//! conflict) in every dimension the API groups by: everyone's by day, model,
//! key, user and organization, and each user's own by day, model and key. A
//! row is one value of four `i64` lanes (requests, prompt and completion
//! tokens, cost): one write per row, not one per counter — the rollups were
//! most of the write path's cost as four keys a row (docs/performance.md,
//! "Rollup rows of lanes"). A statistics query reads one dimension's rows for
//! its days — (days × groups) values however long the history — and never a
//! log. Rows of earlier releases, one counter per field, are read alongside
//! until [`UsageService::fold_rollup_fields`] has folded them into rows.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};

use chrono::{Datelike, NaiveDate};
use gatehouse_storage::tuple::unpack;
use gatehouse_storage::{KeyRange, RangeOptions, TxError, decode_counter, decode_lanes};
use serde::{Deserialize, Serialize};

use super::UsageService;
use crate::keyspace;
use crate::model::accounts::User;
use crate::model::usage::RequestLog;
use crate::{Error, Id, Result};

/// The counters of a rollup row: its lanes.
const FIELDS: [&str; 4] = keyspace::ROLLUP_LANES;

/// A rollup row's counters, in [`FIELDS`] order.
pub(super) type Lanes = [i64; 4];

/// Rows (or counters of earlier releases) read per storage round trip.
const READ_PAGE: usize = 50_000;

/// The most days one statistics query covers.
pub const MAX_STATS_DAYS: i64 = 366;

/// Everyone's usage by user, per week: `("usage_all", "user_week", monday,
/// user, field)`. Statistics by user for everyone read whole weeks from it
/// and only the days around them from the daily rows — about 3× fewer
/// counters for 30 days, 6× for a year (the costliest query: its size grows
/// with the number of users).
pub(super) const USER_WEEK: &str = "user_week";

/// The marker that says from which Monday on the weekly rows are complete.
const WEEKS: &str = crate::timeline::USAGE_WEEKS;

/// The marker of the fold of one-counter-per-field rollups into rows:
/// `{"after": base64url of the last key folded}` while under way,
/// `{"done": true}` at the end.
const LANES: &str = crate::timeline::USAGE_LANES;

/// Counters of earlier releases folded into rows per transaction.
const FOLD_PAGE: usize = 2_000;

/// A stored rollup value as lanes: a row's four, or (`field` given) the one
/// counter of an earlier release in its field's lane (an unknown field: none).
fn lanes_of(field: Option<&str>, value: &[u8]) -> Lanes {
    match field {
        None => decode_lanes(value),
        Some(field) => {
            let mut lanes = [0; 4];
            if let Some(i) = FIELDS.iter().position(|f| *f == field) {
                lanes[i] = decode_counter(value);
            }
            lanes
        }
    }
}

/// The Monday of `day`'s week.
fn week_of(day: NaiveDate) -> NaiveDate {
    day - chrono::Days::new(u64::from(day.weekday().num_days_from_monday()))
}

/// A run of days, first and last (for weeks: their Mondays).
pub(super) type Days = (NaiveDate, NaiveDate);

/// Days `from..=to` as the whole weeks (first and last Monday) that start on
/// or after `since`, and the runs of days outside them.
pub(super) fn weeks_and_days(
    from: NaiveDate,
    to: NaiveDate,
    since: Option<NaiveDate>,
) -> (Option<Days>, Vec<Days>) {
    let whole = since.and_then(|since| {
        let start = from.max(since);
        let first = week_of(start + chrono::Days::new(6));
        let last = week_of(to + chrono::Days::new(1)) - chrono::Days::new(7);
        (first <= last).then_some((first, last))
    });
    match whole {
        None => (None, vec![(from, to)]),
        Some((first, last)) => {
            let mut days = Vec::new();
            if from < first {
                days.push((from, first - chrono::Days::new(1)));
            }
            let after = last + chrono::Days::new(7);
            if after <= to {
                days.push((after, to));
            }
            (Some((first, last)), days)
        }
    }
}

/// How statistics are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Day,
    Model,
    Key,
    User,
    /// The organization calls were made for (everyone's usage only; calls
    /// for no organization are not in it).
    Organization,
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

/// A count as the storage counters' `i64`, at most `i64::MAX`.
pub(super) fn saturating_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Whose counters: everyone's, or one user's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Scope {
    All,
    User(Id),
}

/// A row's group, borrowed from the logs: formatted once per row when the
/// counters are written, not once per call (the flush runs on the gateway's
/// runtime).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Group<'a> {
    None,
    Id(Id),
    Name(&'a str),
}

impl Group<'_> {
    fn text(self) -> String {
        match self {
            Group::None => String::new(),
            Group::Id(id) => id.to_string(),
            Group::Name(name) => name.to_string(),
        }
    }
}

/// One rollup row: whose, which dimension, which day, which group.
type RowKey<'a> = (Scope, &'static str, NaiveDate, Group<'a>);

/// Adds one call's counters to the row of each dimension it counts in.
fn add<'a>(
    sums: &mut HashMap<RowKey<'a>, Lanes>,
    day: NaiveDate,
    row: (Id, Id, &'a str, Option<Id>),
    values: Lanes,
) {
    let (user, key, model, org) = row;
    let rows = [
        (Scope::All, "day", day, Group::None),
        (Scope::All, "model", day, Group::Name(model)),
        (Scope::All, "key", day, Group::Id(key)),
        (Scope::All, "user", day, Group::Id(user)),
        (Scope::All, USER_WEEK, week_of(day), Group::Id(user)),
        (Scope::User(user), "day", day, Group::None),
        (Scope::User(user), "model", day, Group::Name(model)),
        (Scope::User(user), "key", day, Group::Id(key)),
    ];
    let org = org.map(|org| (Scope::All, "org", day, Group::Id(org)));
    for row in rows.into_iter().chain(org) {
        let sum = sums.entry(row).or_default();
        for (total, value) in sum.iter_mut().zip(values) {
            *total = total.saturating_add(value);
        }
    }
}

/// The row additions of summed rows.
fn counters(sums: HashMap<RowKey<'_>, Lanes>) -> Vec<(Vec<u8>, Lanes)> {
    sums.into_iter()
        .map(|((scope, dimension, day, group), values)| {
            let (day, group) = (day.format("%Y-%m-%d").to_string(), group.text());
            let key = match scope {
                Scope::All => keyspace::usage_all_row(dimension, &day, &group),
                Scope::User(user) => keyspace::usage_user_row(user, dimension, &day, &group),
            };
            (key, values)
        })
        .collect()
}

/// The rollup additions of some logs: calls that fall in the same row add
/// up before they are written.
pub(super) fn rollups_of(logs: &[RequestLog]) -> Vec<(Vec<u8>, Lanes)> {
    let mut sums = HashMap::new();
    for log in logs {
        // Lanes of one row add up as one integer on FoundationDB: they take
        // no negative value (a cost never is one).
        let values = [
            1,
            saturating_i64(log.prompt_tokens),
            saturating_i64(log.completion_tokens),
            log.cost_micros.max(0),
        ];
        let row = (log.user_id, log.key_id, log.model.as_str(), log.org_id);
        add(&mut sums, log.at.date_naive(), row, values);
    }
    counters(sums)
}

impl UsageService {
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
        let (from, to) = (
            query.from.format("%Y-%m-%d").to_string(),
            query.to.format("%Y-%m-%d").to_string(),
        );
        let user = (!query.all).then(|| query.user.unwrap_or(viewer.id));
        let dimension = match query.group_by {
            GroupBy::Day => "day",
            GroupBy::Model => "model",
            GroupBy::Key => "key",
            // One user's rows by user: their daily totals, summed.
            GroupBy::User if user.is_some() => "day",
            GroupBy::User => "user",
            GroupBy::Organization if user.is_none() => "org",
            GroupBy::Organization => {
                return Err(Error::invalid_input(
                    "group_by=organization reads everyone's usage: add all=true (platform admins)",
                ));
            }
        };
        // What to read: ranges of one dimension's rows.
        let text = |d: NaiveDate| d.format("%Y-%m-%d").to_string();
        let reads: Vec<KeyRange> = match user {
            Some(user) => vec![keyspace::usage_user_days(user, dimension, &from, &to)],
            None if dimension == "user" => {
                // Whole weeks from the weekly rows, the days around them
                // from the daily ones.
                let since = self.weeks_since().await?;
                let (weeks, days) = weeks_and_days(query.from, query.to, since);
                let mut reads: Vec<KeyRange> = days
                    .into_iter()
                    .map(|(a, b)| keyspace::usage_all_days("user", &text(a), &text(b)))
                    .collect();
                if let Some((first, last)) = weeks {
                    reads.push(keyspace::usage_all_days(
                        USER_WEEK,
                        &text(first),
                        &text(last),
                    ));
                }
                reads
            }
            None => vec![keyspace::usage_all_days(dimension, &from, &to)],
        };
        let own_group = user.map(|u| u.to_string()).unwrap_or_default();
        let mut rows: BTreeMap<String, StatsRow> = BTreeMap::new();
        for range in reads {
            self.add_counters(range, query.group_by, &own_group, user.is_some(), &mut rows)
                .await?;
        }
        Ok(rows.into_values().collect())
    }

    /// Adds the rows of `range` (and the one-field counters of earlier
    /// releases, [`keyspace::parse_rollup`] reads both) into the rows they
    /// group into.
    async fn add_counters(
        &self,
        range: KeyRange,
        group_by: GroupBy,
        own_group: &str,
        one_user: bool,
        rows: &mut BTreeMap<String, StatsRow>,
    ) -> Result<()> {
        let mut next = Some(range);
        while let Some(range) = next {
            let page = self
                .store
                .read_range(&range, RangeOptions::limit(READ_PAGE))
                .await?;
            for (key, value) in &page.entries {
                // Borrowed, not copied: a year by user is millions of counters.
                let Some((_, _, day, group, field)) = keyspace::parse_rollup(key) else {
                    continue;
                };
                let group = match (group_by, one_user) {
                    (GroupBy::Day, _) => day,
                    (GroupBy::User, true) => Cow::Borrowed(own_group),
                    _ => group,
                };
                let row = match rows.get_mut(group.as_ref()) {
                    Some(row) => row,
                    None => rows.entry(group.to_string()).or_insert_with(|| StatsRow {
                        group: group.to_string(),
                        ..StatsRow::default()
                    }),
                };
                let lanes = lanes_of(field.as_deref(), value);
                row.requests = row.requests.saturating_add(lanes[0]);
                row.prompt_tokens = row.prompt_tokens.saturating_add(lanes[1]);
                row.completion_tokens = row.completion_tokens.saturating_add(lanes[2]);
                row.cost_micros = row.cost_micros.saturating_add(lanes[3]);
            }
            next = page.next;
        }
        Ok(())
    }

    /// From which Monday on everyone's weekly rows by user are complete
    /// (`None`: not yet: a store upgraded this week).
    async fn weeks_since(&self) -> Result<Option<NaiveDate>> {
        let marker = self
            .store
            .run(|tx| async move { keyspace::migration(WEEKS).get(&tx).await })
            .await?;
        Ok(marker.and_then(|m| {
            m.value["since"]
                .as_str()
                .and_then(|d| NaiveDate::parse_from_str(d, "%Y-%m-%d").ok())
        }))
    }

    /// On a store of an earlier release, starts the weekly rows: they are
    /// complete from the first Monday after now (the days before are read
    /// from the daily rows, as before). Once; `true` when it set the mark.
    pub async fn start_weekly_rollups(&self) -> Result<bool> {
        let now = self.env().clock.now();
        let since = week_of(now.date_naive()) + chrono::Days::new(7);
        Ok(self
            .store
            .run(|tx| async move {
                let key = keyspace::migration(WEEKS);
                if key.get(&tx).await?.is_some() {
                    return Ok::<_, TxError<Error>>(false);
                }
                let marker = crate::model::system::Setting {
                    name: WEEKS.to_string(),
                    value: serde_json::json!({"since": since.format("%Y-%m-%d").to_string()}),
                    updated_at: now,
                };
                key.put(&tx, &marker).await?;
                Ok(true)
            })
            .await?)
    }

    /// Moves the rollups of earlier releases (`("usage_day", day, user, key,
    /// model, field)`) into the per-dimension ones, a page per transaction:
    /// each page is added and cleared together, so a move cut short resumes
    /// without counting twice. Returns how many counters moved.
    pub async fn move_old_rollups(&self) -> Result<usize> {
        let mut moved = 0;
        loop {
            let gone = self
                .store
                .run(|tx| async move {
                    let page = tx
                        .get_range(&keyspace::usage_days(), RangeOptions::limit(2_000))
                        .await?;
                    let mut parsed = Vec::with_capacity(page.entries.len());
                    for (key, value) in &page.entries {
                        let Ok((_, day, user, key_id, model, field)) =
                            unpack::<(String, String, u64, u64, String, String)>(key)
                        else {
                            continue;
                        };
                        let (Ok(day), Some(i)) = (
                            NaiveDate::parse_from_str(&day, "%Y-%m-%d"),
                            FIELDS.iter().position(|f| *f == field),
                        ) else {
                            continue;
                        };
                        let mut values = [0; 4];
                        values[i] = decode_counter(value);
                        parsed.push((day, Id(user), Id(key_id), model, values));
                    }
                    let mut sums = HashMap::new();
                    for (day, user, key_id, model, values) in &parsed {
                        add(
                            &mut sums,
                            *day,
                            (*user, *key_id, model.as_str(), None),
                            *values,
                        );
                    }
                    for (key, lanes) in counters(sums) {
                        tx.atomic_add_lanes(&key, &lanes.map(|n| n.max(0)))?;
                    }
                    if let Some((last, _)) = page.entries.last() {
                        let range = keyspace::usage_days();
                        tx.clear_range(&KeyRange::new(
                            range.begin,
                            gatehouse_storage::key_after(last),
                        ))?;
                    }
                    Ok::<_, TxError<Error>>(page.entries.len())
                })
                .await?;
            moved += gone;
            if gone == 0 {
                return Ok(moved);
            }
            crate::blocking::yield_now().await;
        }
    }

    /// Folds the rollup counters of earlier releases (one key per field) into
    /// rows of lanes, a page per transaction: a page's counters are added to
    /// their rows and cleared together, and where the fold stands is saved in
    /// the same transaction, so a fold cut short resumes without counting
    /// twice. Statistics read both layouts meanwhile. Returns how many
    /// counters were folded; nothing to do once done.
    pub async fn fold_rollup_fields(&self) -> Result<usize> {
        let mut folded = 0;
        loop {
            let (count, done) = self.fold_rollup_page(FOLD_PAGE).await?;
            folded += count;
            if done {
                return Ok(folded);
            }
            crate::blocking::yield_now().await;
        }
    }

    /// Folds the next `page_size` keys of the rollups; `(counters folded,
    /// whether the fold is done)`.
    pub(super) async fn fold_rollup_page(&self, page_size: usize) -> Result<(usize, bool)> {
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
        let now = self.env.clock.now();
        Ok(self
            .store
            .run(|tx| async move {
                let marker = keyspace::migration(LANES);
                let at = marker.get(&tx).await?;
                if at.as_ref().is_some_and(|m| m.value["done"] == true) {
                    return Ok::<_, TxError<Error>>((0, true));
                }
                let rollups = keyspace::usage_rollups();
                let begin = at
                    .as_ref()
                    .and_then(|m| m.value["after"].as_str())
                    .and_then(|after| B64.decode(after).ok())
                    .map_or(rollups.begin, |after| gatehouse_storage::key_after(&after));
                let page = tx
                    .get_range(
                        &KeyRange::new(begin, rollups.end),
                        RangeOptions::limit(page_size),
                    )
                    .await?;
                let mut rows: HashMap<Vec<u8>, Lanes> = HashMap::new();
                let mut count = 0;
                for (key, value) in &page.entries {
                    let Some((user, dimension, day, group, Some(field))) =
                        keyspace::parse_rollup(key)
                    else {
                        continue;
                    };
                    if !FIELDS.contains(&field.as_ref()) {
                        continue;
                    }
                    let row = match user {
                        None => keyspace::usage_all_row(&dimension, &day, &group),
                        Some(user) => keyspace::usage_user_row(user, &dimension, &day, &group),
                    };
                    let sum = rows.entry(row).or_default();
                    for (total, n) in sum.iter_mut().zip(lanes_of(Some(&field), value)) {
                        *total = total.saturating_add(n.max(0));
                    }
                    tx.clear(key)?;
                    count += 1;
                }
                for (row, lanes) in &rows {
                    tx.atomic_add_lanes(row, lanes)?;
                }
                let done = page.next.is_none();
                let value = match page.entries.last() {
                    Some((last, _)) if !done => serde_json::json!({"after": B64.encode(last)}),
                    _ => serde_json::json!({"done": true}),
                };
                let setting = crate::model::system::Setting {
                    name: LANES.to_string(),
                    value,
                    updated_at: now,
                };
                marker.put(&tx, &setting).await?;
                Ok((count, done))
            })
            .await?)
    }
}
