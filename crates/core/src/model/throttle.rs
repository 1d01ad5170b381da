//! Sign-in throttling, per account and per client IP: after a few free
//! failures each further attempt must wait twice as long as the last (up to 15
//! minutes), and an account takes at most 100 failures per hour. Everything
//! resets an hour after the first failure of a window, so a lockout can delay a
//! user but never shut them out for good.

use serde::{Deserialize, Serialize};

use crate::codec::record;

pub const WINDOW_MS: i64 = 3_600_000;
pub const MAX_DELAY_MS: i64 = 15 * 60 * 1000;
pub const MAX_FAILURES_PER_WINDOW: u32 = 100;
/// Failures allowed before delays start.
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
pub const IP_FREE_FAILURES: u32 = 20;

/// Failed sign-ins of one account or IP in the current window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failures {
    pub window_start_ms: i64,
    pub count: u32,
    pub last_ms: i64,
}

record!(Failures, "sign-in failures", no_feed);

impl Failures {
    /// How long (ms) the next attempt must still wait, if at all.
    pub fn wait_ms(&self, now_ms: i64, free: u32) -> Option<i64> {
        if now_ms >= self.window_start_ms + WINDOW_MS {
            return None;
        }
        if self.count >= MAX_FAILURES_PER_WINDOW {
            return Some(self.window_start_ms + WINDOW_MS - now_ms);
        }
        if self.count < free {
            return None;
        }
        let doublings = (self.count - free).min(20);
        let delay = (1000i64 << doublings).min(MAX_DELAY_MS);
        let wait = self.last_ms + delay - now_ms;
        (wait > 0).then_some(wait)
    }

    /// The record with one attempt taken back (it succeeded, or was never
    /// judged); `None` when none is left.
    pub fn taken_back(self) -> Option<Failures> {
        let count = self.count.checked_sub(1).filter(|c| *c > 0)?;
        Some(Failures { count, ..self })
    }

    /// Whether the window is over: the record counts for nothing and can go.
    pub fn expired(&self, now_ms: i64) -> bool {
        now_ms >= self.window_start_ms.saturating_add(WINDOW_MS)
    }

    /// The record after one more failure at `now_ms`.
    pub fn after_failure(previous: Option<Failures>, now_ms: i64) -> Failures {
        match previous {
            Some(f) if now_ms < f.window_start_ms + WINDOW_MS => Failures {
                count: f.count.saturating_add(1),
                last_ms: now_ms,
                ..f
            },
            _ => Failures {
                window_start_ms: now_ms,
                count: 1,
                last_ms: now_ms,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_after_the_free_failures_and_cap() {
        let mut f: Option<Failures> = None;
        let mut now = 0;
        for _ in 0..5 {
            f = Some(Failures::after_failure(f, now));
            now += 10;
        }
        let record = f.unwrap();
        assert_eq!(record.wait_ms(now, 5), Some(1000 - 10));
        assert_eq!(record.wait_ms(1000 + 40, 5), None);
        let mut record = Failures::after_failure(Some(record), 1040);
        assert_eq!(record.wait_ms(1040, 5), Some(2000));
        record.count = 40;
        assert_eq!(record.wait_ms(1040, 5), Some(MAX_DELAY_MS));
    }

    #[test]
    fn the_window_ends_everything() {
        let record = Failures {
            window_start_ms: 0,
            count: MAX_FAILURES_PER_WINDOW,
            last_ms: 3_500_000,
        };
        assert_eq!(record.wait_ms(3_500_000, 5), Some(100_000));
        assert_eq!(record.wait_ms(WINDOW_MS, 5), None);
        let fresh = Failures::after_failure(Some(record), WINDOW_MS + 1);
        assert_eq!(fresh.count, 1);
    }
}
