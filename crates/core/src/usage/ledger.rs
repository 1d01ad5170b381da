//! Limits and budgets, decided in memory (SPEC §4 step 5).
//!
//! Requests per minute and tokens per minute are counted in one-minute windows
//! per key and per user. Spend is held per budget holder (key, user, team) and
//! period (UTC day, UTC month, total) in micro-dollars. Admission reserves the
//! most a request can cost before the upstream call; settlement replaces the
//! reservation with the actual cost. One lock covers a whole admission, so
//! concurrent requests cannot together pass a budget they would exceed.
//!
//! Across instances the ledger is kept close through storage by the usage
//! writer: it adds each instance's settled spend to shared counters and reads
//! the totals back every sync interval, so instances see each other's spend
//! at most one interval late (see docs/gateway.md).

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};
use parking_lot::Mutex;

use crate::Id;
use crate::common::{Micros, to_micros};
use crate::keys::index::Grant;
use crate::model::keys::{Budget, BudgetPeriod};

/// Who a limit or budget belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Holder {
    Key(Id),
    User(Id),
    Team(Id),
}

impl Holder {
    pub fn kind(self) -> &'static str {
        match self {
            Holder::Key(_) => "key",
            Holder::User(_) => "user",
            Holder::Team(_) => "team",
        }
    }

    pub fn id(self) -> Id {
        match self {
            Holder::Key(id) | Holder::User(id) | Holder::Team(id) => id,
        }
    }

    pub fn parse(kind: &str, id: Id) -> Option<Holder> {
        match kind {
            "key" => Some(Holder::Key(id)),
            "user" => Some(Holder::User(id)),
            "team" => Some(Holder::Team(id)),
            _ => None,
        }
    }
}

/// The key of a budget period at `at`: `d2026-11-22`, `m2026-11` or `total`.
pub fn period_key(period: BudgetPeriod, at: DateTime<Utc>) -> String {
    match period {
        BudgetPeriod::Day => format!("d{}", at.format("%Y-%m-%d")),
        BudgetPeriod::Month => format!("m{}", at.format("%Y-%m")),
        BudgetPeriod::Total => "total".to_string(),
    }
}

/// Seconds until the period that contains `at` ends (a day for `total`, which
/// does not end: the answer then means "not soon").
fn seconds_left(period: BudgetPeriod, at: DateTime<Utc>) -> u64 {
    let end = match period {
        BudgetPeriod::Day => (at.date_naive() + chrono::Days::new(1))
            .and_hms_opt(0, 0, 0)
            .map(|d| d.and_utc()),
        BudgetPeriod::Month => {
            let (y, m) = if at.month() == 12 {
                (at.year() + 1, 1)
            } else {
                (at.year(), at.month() + 1)
            };
            chrono::NaiveDate::from_ymd_opt(y, m, 1)
                .and_then(|d| d.and_hms_opt(0, 0, 0))
                .map(|d| d.and_utc())
        }
        BudgetPeriod::Total => None,
    };
    end.map_or(86_400, |end| (end - at).num_seconds().max(1) as u64)
}

/// Per-minute limits of one holder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    pub rpm: Option<u32>,
    pub tpm: Option<u32>,
}

/// What one request asks the ledger for.
#[derive(Debug, Clone)]
pub struct Admission {
    /// Holders with per-minute limits (the key and its owner).
    pub limited: Vec<(Holder, Limits)>,
    /// Holders with budgets (the key, its owner, the owner's teams).
    pub budgets: Vec<(Holder, Budget)>,
    /// The most this request can cost.
    pub reserve: Micros,
}

impl Admission {
    /// What a call allowed by `grant` asks for: the key's and its owner's
    /// per-minute limits, the key's, owner's and owner's teams' budgets, and
    /// the most the call can cost — its `request_bytes` of input (estimated)
    /// and `max_tokens` of output at the model's prices.
    /// `max_tokens` is what the caller asked for; it is clamped with
    /// [`super::reserved_tokens`].
    pub fn for_grant(grant: &Grant, request_bytes: usize, max_tokens: Option<u64>) -> Admission {
        let max_tokens = super::reserved_tokens(max_tokens, grant.model.context_length);
        let mut budgets = Vec::new();
        if let Some(b) = grant.budget {
            budgets.push((Holder::Key(grant.key_id), b));
        }
        if let Some(b) = grant.user_limits.budget {
            budgets.push((Holder::User(grant.owner_id), b));
        }
        budgets.extend(
            grant
                .team_budgets
                .iter()
                .map(|(team, b)| (Holder::Team(*team), *b)),
        );
        Admission {
            limited: vec![
                (
                    Holder::Key(grant.key_id),
                    Limits {
                        rpm: grant.rpm_limit,
                        tpm: grant.tpm_limit,
                    },
                ),
                (
                    Holder::User(grant.owner_id),
                    Limits {
                        rpm: grant.user_limits.rpm_limit,
                        tpm: grant.user_limits.tpm_limit,
                    },
                ),
            ],
            budgets,
            reserve: grant
                .model
                .cost_micros(super::estimate_tokens(request_bytes), max_tokens),
        }
    }
}

/// Why a request must wait.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub message: String,
    pub retry_after_secs: u64,
}

/// An admitted request's claim, to be settled once.
#[derive(Debug)]
pub struct Ticket {
    limited: Vec<Holder>,
    budgets: Vec<(Holder, String)>,
    minute: i64,
    reserve: Micros,
}

#[derive(Debug, Default)]
struct Window {
    minute: i64,
    /// Counted on this instance.
    requests: u32,
    tokens: u64,
    /// Of those, already added to the shared counters.
    flushed_requests: u32,
    flushed_tokens: u64,
    /// Other instances' counts, as of the last sync.
    others_requests: u32,
    others_tokens: u64,
}

impl Window {
    fn requests(&self) -> u32 {
        self.requests + self.others_requests
    }

    fn tokens(&self) -> u64 {
        self.tokens + self.others_tokens
    }
}

/// One holder's per-minute counts, for the shared counters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateCount {
    pub holder: Holder,
    pub minute: i64,
    pub requests: u32,
    pub tokens: u64,
}

#[derive(Debug, Default)]
struct Spend {
    /// Settled spend, this instance's and (as of the last sync) everyone's.
    spent: Micros,
    /// Reserved by requests in flight on this instance.
    reserved: Micros,
    /// Settled here and not yet added to the shared counter.
    unflushed: Micros,
}

#[derive(Default)]
struct State {
    windows: HashMap<Holder, Window>,
    spend: HashMap<(Holder, String), Spend>,
}

#[derive(Default)]
pub struct Ledger {
    state: Mutex<State>,
}

impl Ledger {
    pub fn new() -> Self {
        Ledger::default()
    }

    /// Admits a request at `now`, or says how long to wait.
    pub fn admit(&self, request: &Admission, now: DateTime<Utc>) -> Result<Ticket, Refusal> {
        let minute = now.timestamp().div_euclid(60);
        let to_next_minute = (60 - now.timestamp().rem_euclid(60)).max(1) as u64;
        let mut state = self.state.lock();
        for (holder, limits) in &request.limited {
            let window = state.windows.entry(*holder).or_default();
            if window.minute != minute {
                *window = Window {
                    minute,
                    ..Window::default()
                };
            }
            if limits.rpm.is_some_and(|rpm| window.requests() >= rpm) {
                return Err(Refusal {
                    message: format!(
                        "the {} allows {} requests per minute",
                        holder.kind(),
                        limits.rpm.unwrap_or(0)
                    ),
                    retry_after_secs: to_next_minute,
                });
            }
            if limits
                .tpm
                .is_some_and(|tpm| window.tokens() >= u64::from(tpm))
            {
                return Err(Refusal {
                    message: format!(
                        "the {} allows {} tokens per minute",
                        holder.kind(),
                        limits.tpm.unwrap_or(0)
                    ),
                    retry_after_secs: to_next_minute,
                });
            }
        }
        let mut claims = Vec::with_capacity(request.budgets.len());
        for (holder, budget) in &request.budgets {
            let key = period_key(budget.period, now);
            let spend = state.spend.entry((*holder, key.clone())).or_default();
            let committed = spend
                .spent
                .saturating_add(spend.reserved)
                .saturating_add(request.reserve);
            if committed > to_micros(budget.max_usd) {
                return Err(Refusal {
                    message: format!(
                        "the {} budget of {:.2} USD per {} is spent",
                        holder.kind(),
                        budget.max_usd,
                        match budget.period {
                            BudgetPeriod::Day => "day",
                            BudgetPeriod::Month => "month",
                            BudgetPeriod::Total => "lifetime",
                        }
                    ),
                    retry_after_secs: seconds_left(budget.period, now),
                });
            }
            claims.push((*holder, key));
        }
        // Everything has room: count and reserve.
        for (holder, _) in &request.limited {
            if let Some(window) = state.windows.get_mut(holder) {
                window.requests = window.requests.saturating_add(1);
            }
        }
        for claim in &claims {
            if let Some(spend) = state.spend.get_mut(claim) {
                spend.reserved = spend.reserved.saturating_add(request.reserve);
            }
        }
        Ok(Ticket {
            limited: request.limited.iter().map(|(h, _)| *h).collect(),
            budgets: claims,
            minute,
            reserve: request.reserve,
        })
    }

    /// Replaces a ticket's reservation with what the request cost and used.
    pub fn settle(&self, ticket: Ticket, cost: Micros, tokens: u64) {
        let mut state = self.state.lock();
        for holder in &ticket.limited {
            if let Some(window) = state.windows.get_mut(holder)
                && window.minute == ticket.minute
            {
                window.tokens = window.tokens.saturating_add(tokens);
            }
        }
        for claim in &ticket.budgets {
            let spend = state.spend.entry(claim.clone()).or_default();
            spend.reserved = spend.reserved.saturating_sub(ticket.reserve);
            spend.spent = spend.spent.saturating_add(cost);
            spend.unflushed = spend.unflushed.saturating_add(cost);
        }
    }

    /// What one holder has spent in a period, as this instance knows it.
    pub fn spent(&self, holder: Holder, period: &str) -> Micros {
        let state = self.state.lock();
        state
            .spend
            .get(&(holder, period.to_string()))
            .map_or(0, |s| s.spent)
    }

    /// Takes the spend settled since the last call, to add to the shared
    /// counters.
    pub fn take_unflushed(&self) -> Vec<(Holder, String, Micros)> {
        let mut state = self.state.lock();
        state
            .spend
            .iter_mut()
            .filter(|(_, s)| s.unflushed != 0)
            .map(|((holder, period), s)| {
                let delta = std::mem::take(&mut s.unflushed);
                (*holder, period.clone(), delta)
            })
            .collect()
    }

    /// Gives back deltas that could not be written, to try again later.
    pub fn restore_unflushed(&self, deltas: &[(Holder, String, Micros)]) {
        let mut state = self.state.lock();
        for (holder, period, delta) in deltas {
            state
                .spend
                .entry((*holder, period.clone()))
                .or_default()
                .unflushed += delta;
        }
    }

    /// The periods this instance tracks, to read their shared totals.
    pub fn tracked(&self) -> Vec<(Holder, String)> {
        self.state.lock().spend.keys().cloned().collect()
    }

    /// Sets the shared totals read from storage; spend settled here but not
    /// yet flushed stays on top.
    pub fn apply_totals(&self, totals: &[(Holder, String, Micros)]) {
        let mut state = self.state.lock();
        for (holder, period, total) in totals {
            let spend = state.spend.entry((*holder, period.clone())).or_default();
            spend.spent = total + spend.unflushed;
        }
    }

    /// Takes this minute's counts not yet added to the shared counters.
    pub fn take_rate_unflushed(&self) -> Vec<RateCount> {
        let mut state = self.state.lock();
        state
            .windows
            .iter_mut()
            .filter(|(_, w)| w.requests > w.flushed_requests || w.tokens > w.flushed_tokens)
            .map(|(holder, w)| {
                let count = RateCount {
                    holder: *holder,
                    minute: w.minute,
                    requests: w.requests - w.flushed_requests,
                    tokens: w.tokens - w.flushed_tokens,
                };
                w.flushed_requests = w.requests;
                w.flushed_tokens = w.tokens;
                count
            })
            .collect()
    }

    /// The windows this instance tracks, to read their shared totals.
    pub fn tracked_windows(&self) -> Vec<(Holder, i64)> {
        self.state
            .lock()
            .windows
            .iter()
            .map(|(h, w)| (*h, w.minute))
            .collect()
    }

    /// Sets what the other instances counted: the shared totals minus what
    /// this instance added to them.
    pub fn apply_rate_totals(&self, totals: &[RateCount]) {
        let mut state = self.state.lock();
        for total in totals {
            if let Some(w) = state.windows.get_mut(&total.holder)
                && w.minute == total.minute
            {
                w.others_requests = total.requests.saturating_sub(w.flushed_requests);
                w.others_tokens = total.tokens.saturating_sub(w.flushed_tokens);
            }
        }
    }

    /// Forgets periods that have ended (keeps memory bounded).
    pub fn forget_before(&self, now: DateTime<Utc>) {
        let day = period_key(BudgetPeriod::Day, now);
        let month = period_key(BudgetPeriod::Month, now);
        let minute = now.timestamp().div_euclid(60);
        let mut state = self.state.lock();
        state.spend.retain(|(_, p), s| {
            p == &day || p == &month || p == "total" || s.unflushed != 0 || s.reserved != 0
        });
        state.windows.retain(|_, w| w.minute >= minute - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn requests_per_minute_reset_each_minute() {
        let ledger = Ledger::new();
        let key = Holder::Key(Id(1));
        let request = Admission {
            limited: vec![(
                key,
                Limits {
                    rpm: Some(2),
                    tpm: None,
                },
            )],
            budgets: vec![],
            reserve: 0,
        };
        let now = at("2026-11-22T10:00:10Z");
        ledger.settle(ledger.admit(&request, now).unwrap(), 0, 0);
        ledger.settle(ledger.admit(&request, now).unwrap(), 0, 0);
        let refused = ledger.admit(&request, now).unwrap_err();
        assert_eq!(refused.retry_after_secs, 50);
        assert!(ledger.admit(&request, at("2026-11-22T10:01:00Z")).is_ok());
    }

    #[test]
    fn tokens_per_minute_count_after_settlement() {
        let ledger = Ledger::new();
        let user = Holder::User(Id(2));
        let request = Admission {
            limited: vec![(
                user,
                Limits {
                    rpm: None,
                    tpm: Some(100),
                },
            )],
            budgets: vec![],
            reserve: 0,
        };
        let now = at("2026-11-22T10:00:00Z");
        let ticket = ledger.admit(&request, now).unwrap();
        // In flight: nothing counted yet.
        assert!(ledger.admit(&request, now).is_ok());
        ledger.settle(ticket, 0, 150);
        assert!(ledger.admit(&request, now).is_err());
    }

    #[test]
    fn sums_at_the_extremes_saturate_and_never_let_a_call_past_a_budget() {
        use crate::usage::{MAX_TOKENS_CAP, reserved_tokens};
        // max_tokens is clamped: to the context length, or to the cap.
        assert_eq!(
            reserved_tokens(None, None),
            crate::usage::DEFAULT_MAX_TOKENS
        );
        assert_eq!(reserved_tokens(Some(1 << 62), Some(8192)), 8192);
        assert_eq!(reserved_tokens(Some(u64::MAX), None), MAX_TOKENS_CAP);
        assert_eq!(reserved_tokens(Some(100), Some(8192)), 100);
        // Prices of huge counts saturate instead of wrapping.
        assert_eq!(to_micros(f64::MAX), i64::MAX);
        assert_eq!(to_micros(-f64::MAX), i64::MIN);
        assert_eq!(to_micros(f64::NAN), 0);

        // The finding: a $0.10 budget, one ordinary call, then reservations
        // as large as they get.
        let ledger = Ledger::new();
        let key = Holder::Key(Id(9));
        let budget = Budget {
            max_usd: 0.10,
            period: BudgetPeriod::Total,
        };
        let request = |reserve| Admission {
            limited: vec![(key, Limits::default())],
            budgets: vec![(key, budget)],
            reserve,
        };
        let now = at("2026-11-22T10:00:00Z");
        let ticket = ledger.admit(&request(to_micros(0.01)), now).unwrap();
        ledger.settle(ticket, to_micros(0.01), 100);
        for reserve in [i64::MAX, i64::MAX - 1, 1 << 62, to_micros(0.2)] {
            assert!(ledger.admit(&request(reserve), now).is_err(), "{reserve}");
        }
        // A settled cost at the top of i64 (a huge reported usage) pins the
        // spend at the maximum instead of wrapping it below the budget.
        let ticket = ledger.admit(&request(0), now).unwrap();
        ledger.settle(ticket, i64::MAX, u64::MAX);
        assert_eq!(ledger.spent(key, "total"), i64::MAX);
        assert!(ledger.admit(&request(0), now).is_err());
    }

    #[test]
    fn reservations_keep_concurrent_requests_within_the_budget() {
        let ledger = Ledger::new();
        let key = Holder::Key(Id(3));
        let budget = Budget {
            max_usd: 1.0,
            period: BudgetPeriod::Day,
        };
        let request = Admission {
            limited: vec![],
            budgets: vec![(key, budget)],
            reserve: to_micros(0.3),
        };
        let now = at("2026-11-22T23:00:00Z");
        let tickets: Vec<_> = (0..3)
            .map(|_| ledger.admit(&request, now).unwrap())
            .collect();
        // A fourth would pass 1.0 USD if all three cost their reservation.
        let refused = ledger.admit(&request, now).unwrap_err();
        assert_eq!(refused.retry_after_secs, 3600);
        // They cost less; room comes back.
        for t in tickets {
            ledger.settle(t, to_micros(0.1), 10);
        }
        assert_eq!(ledger.spent(key, "d2026-11-22"), to_micros(0.3));
        assert!(ledger.admit(&request, now).is_ok());
        // A new day starts from zero.
        assert!(ledger.admit(&request, at("2026-11-23T00:00:01Z")).is_ok());
    }

    #[test]
    fn other_instances_requests_count_against_the_limit() {
        let ledger = Ledger::new();
        let key = Holder::Key(Id(5));
        let request = Admission {
            limited: vec![(
                key,
                Limits {
                    rpm: Some(3),
                    tpm: None,
                },
            )],
            budgets: vec![],
            reserve: 0,
        };
        let now = at("2026-11-22T10:00:00Z");
        ledger.settle(ledger.admit(&request, now).unwrap(), 0, 0);
        let ours = ledger.take_rate_unflushed();
        assert_eq!(ours[0].requests, 1);
        // The shared counter says 3: two came from elsewhere.
        ledger.apply_rate_totals(&[RateCount {
            holder: key,
            minute: ours[0].minute,
            requests: 3,
            tokens: 0,
        }]);
        assert!(ledger.admit(&request, now).is_err());
    }

    #[test]
    fn shared_totals_keep_local_unflushed_spend_on_top() {
        let ledger = Ledger::new();
        let key = Holder::Key(Id(4));
        let budget = Budget {
            max_usd: 10.0,
            period: BudgetPeriod::Total,
        };
        let request = Admission {
            limited: vec![],
            budgets: vec![(key, budget)],
            reserve: 0,
        };
        let now = at("2026-11-22T10:00:00Z");
        ledger.settle(ledger.admit(&request, now).unwrap(), to_micros(1.0), 0);
        let flushed = ledger.take_unflushed();
        assert_eq!(flushed, vec![(key, "total".to_string(), 1_000_000)]);
        ledger.settle(ledger.admit(&request, now).unwrap(), to_micros(0.5), 0);
        // Another instance spent 3 USD: the shared total is 1 + 3.
        ledger.apply_totals(&[(key, "total".into(), to_micros(4.0))]);
        assert_eq!(ledger.spent(key, "total"), to_micros(4.5));
    }
}
