//! API keys (SPEC §1): stored only as a SHA-256 hash, shown once.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::Record;
use crate::{Error, Id, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetPeriod {
    Day,
    Month,
    Total,
}

/// The most a key may spend per period, in US dollars.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    pub max_usd: f64,
    pub period: BudgetPeriod,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub owner_id: Id,
    /// The organization the key works for (its owner is a member); its body
    /// capture setting applies.
    #[serde(default)]
    pub org_id: Option<Id>,
    pub label: String,
    /// The first characters of the key, for recognising it in lists.
    pub display_prefix: String,
    /// SHA-256 of the key.
    pub hash: Vec<u8>,
    /// Models this key may use; empty means every model its owner may use.
    pub allowed_models: BTreeSet<String>,
    /// Requests per minute.
    pub rpm_limit: Option<u32>,
    /// Tokens per minute.
    pub tpm_limit: Option<u32>,
    pub budget: Option<Budget>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
    /// The key this one replaced by rotation.
    pub rotated_from: Option<Id>,
    /// The key that replaced this one; this one works until `expires_at`.
    pub replaced_by: Option<Id>,
    pub created_at: DateTime<Utc>,
}

impl Record for ApiKey {
    const VERSION: u8 = 1;
    const NAME: &'static str = "API key";
}

impl ApiKey {
    /// Why the key does not work at `now_ms`, if it does not.
    pub fn unusable_at(&self, now_ms: i64) -> Option<&'static str> {
        if self.revoked_at.is_some() {
            Some("revoked")
        } else if self
            .expires_at
            .is_some_and(|at| at.timestamp_millis() <= now_ms)
        {
            Some("expired")
        } else {
            None
        }
    }
}

/// `("api_key_last_used", id)`: written in batches, not on every request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LastUsed {
    pub at: DateTime<Utc>,
}

impl Record for LastUsed {
    const VERSION: u8 = 1;
    const NAME: &'static str = "API key last use";
    const CHANGE_FEED: bool = false;
}

/// Checks a budget's amount.
pub fn check_budget(budget: &Budget) -> Result<()> {
    if !budget.max_usd.is_finite() || budget.max_usd < 0.0 {
        return Err(Error::invalid_input(
            "budget.max_usd is a non-negative number of US dollars",
        ));
    }
    Ok(())
}
