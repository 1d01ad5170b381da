//! Endpoint health as this instance sees it: every gateway call and every
//! probe (`GET /v1/models`) records whether the endpoint answered. Nothing is
//! stored: each instance reports what it saw itself, which is what matters for
//! the calls it forwards.
//!
//! Recording is a few relaxed atomic stores, cheap enough for the gateway's
//! hot path; only a failure takes a lock (to keep its reason).

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};

use chrono::{DateTime, TimeZone, Utc};
use dashmap::DashMap;
use parking_lot::Mutex;
use serde::Serialize;

use crate::Id;

/// Consecutive failures after which an endpoint is `unhealthy` (before that,
/// `degraded`).
pub const UNHEALTHY_AFTER: u32 = 3;

/// What the last answers of an endpoint say.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Neither called nor probed since this instance started.
    Unknown,
    /// Its last answer was a success.
    Healthy,
    /// Its last answers (fewer than [`UNHEALTHY_AFTER`]) failed.
    Degraded,
    /// Its last [`UNHEALTHY_AFTER`] or more answers failed.
    Unhealthy,
}

/// One endpoint's health, as read.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EndpointHealth {
    pub status: HealthStatus,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_failure_at: Option<DateTime<Utc>>,
    /// Why the last failure was one (for admins: the endpoint's answer or the
    /// connection error, never a credential).
    pub last_error: Option<String>,
    pub consecutive_failures: u32,
}

/// The live record of one endpoint's outcomes.
#[derive(Debug, Default)]
pub struct HealthCell {
    /// Milliseconds since the epoch; 0 = never.
    last_success: AtomicI64,
    last_failure: AtomicI64,
    consecutive_failures: AtomicU32,
    last_error: Mutex<Option<String>>,
}

impl HealthCell {
    /// The endpoint answered (any answer that is not its own failure).
    pub fn success(&self, now_ms: i64) {
        self.last_success.store(now_ms, Ordering::Relaxed);
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// The endpoint could not be reached, timed out, failed (5xx) or refused
    /// the gateway's credentials.
    pub fn failure(&self, now_ms: i64, reason: impl Into<String>) {
        *self.last_error.lock() = Some(reason.into());
        self.last_failure.store(now_ms, Ordering::Relaxed);
        self.consecutive_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// When the endpoint last answered or failed; 0 = never.
    pub fn last_outcome_ms(&self) -> i64 {
        self.last_success
            .load(Ordering::Relaxed)
            .max(self.last_failure.load(Ordering::Relaxed))
    }

    pub fn read(&self) -> EndpointHealth {
        let at = |ms: i64| {
            (ms > 0)
                .then(|| Utc.timestamp_millis_opt(ms).single())
                .flatten()
        };
        let success = self.last_success.load(Ordering::Relaxed);
        let failure = self.last_failure.load(Ordering::Relaxed);
        let failures = self.consecutive_failures.load(Ordering::Relaxed);
        let status = if success == 0 && failure == 0 {
            HealthStatus::Unknown
        } else if success >= failure || failures == 0 {
            HealthStatus::Healthy
        } else if failures < UNHEALTHY_AFTER {
            HealthStatus::Degraded
        } else {
            HealthStatus::Unhealthy
        };
        EndpointHealth {
            status,
            last_success_at: at(success),
            last_failure_at: at(failure),
            last_error: if failure > 0 {
                self.last_error.lock().clone()
            } else {
                None
            },
            consecutive_failures: failures,
        }
    }
}

/// The health cells of every endpoint this instance has seen.
#[derive(Debug, Default)]
pub struct HealthBoard {
    cells: DashMap<Id, Arc<HealthCell>>,
}

impl HealthBoard {
    /// The cell of `endpoint`, made on first use. The gateway keeps it with
    /// its client for the endpoint, so calls do not look it up.
    pub fn cell(&self, endpoint: Id) -> Arc<HealthCell> {
        if let Some(cell) = self.cells.get(&endpoint) {
            return cell.clone();
        }
        self.cells.entry(endpoint).or_default().clone()
    }

    pub fn read(&self, endpoint: Id) -> EndpointHealth {
        match self.cells.get(&endpoint) {
            Some(cell) => cell.read(),
            None => HealthCell::default().read(),
        }
    }

    /// When `endpoint` last answered or failed; 0 = never.
    pub fn last_outcome_ms(&self, endpoint: Id) -> i64 {
        self.cells
            .get(&endpoint)
            .map_or(0, |cell| cell.last_outcome_ms())
    }

    /// Every endpoint this instance has heard from, or about.
    pub fn all(&self) -> Vec<(Id, EndpointHealth)> {
        self.cells
            .iter()
            .map(|entry| (*entry.key(), entry.value().read()))
            .collect()
    }

    /// Drops a deleted endpoint's record.
    pub fn forget(&self, endpoint: Id) {
        self.cells.remove(&endpoint);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_follows_the_last_answers() {
        let cell = HealthCell::default();
        assert_eq!(cell.read().status, HealthStatus::Unknown);
        assert_eq!(cell.read().last_error, None);
        cell.success(1_000);
        assert_eq!(cell.read().status, HealthStatus::Healthy);
        cell.failure(2_000, "connection refused");
        let read = cell.read();
        assert_eq!(read.status, HealthStatus::Degraded);
        assert_eq!(read.last_error.as_deref(), Some("connection refused"));
        assert_eq!(read.consecutive_failures, 1);
        cell.failure(3_000, "HTTP 502");
        cell.failure(4_000, "HTTP 503");
        let read = cell.read();
        assert_eq!(read.status, HealthStatus::Unhealthy);
        assert_eq!(read.last_error.as_deref(), Some("HTTP 503"));
        assert_eq!(
            read.last_failure_at.map(|t| t.timestamp_millis()),
            Some(4_000)
        );
        assert_eq!(cell.last_outcome_ms(), 4_000);
        cell.success(5_000);
        let read = cell.read();
        assert_eq!(
            (read.status, read.consecutive_failures),
            (HealthStatus::Healthy, 0)
        );
        // The last failure stays visible after recovery.
        assert_eq!(read.last_error.as_deref(), Some("HTTP 503"));
    }
}
