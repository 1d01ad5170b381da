//! API keys (SPEC §1): stored only as a SHA-256 hash, shown once.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::record;
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

/// What a key may be used for (SPEC §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    /// The gateway (`/v1/…`): every key has it.
    Gateway,
    /// The management API, acting as the owner (never on the account's own
    /// security: password, addresses, sessions, passkeys, second factor).
    Management,
}

impl KeyScope {
    pub fn as_str(self) -> &'static str {
        match self {
            KeyScope::Gateway => "gateway",
            KeyScope::Management => "management",
        }
    }
}

/// The scopes of a key made before scopes existed, and of one created
/// without any: the gateway only.
pub fn gateway_only() -> BTreeSet<KeyScope> {
    BTreeSet::from([KeyScope::Gateway])
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
    /// What the key may be used for; always holds `gateway`.
    #[serde(default = "gateway_only")]
    pub scopes: BTreeSet<KeyScope>,
    /// The key that created this one through the management API, if any:
    /// only that key may revoke or rotate it (besides people).
    #[serde(default)]
    pub created_by_key: Option<Id>,
    pub created_at: DateTime<Utc>,
}

record!(ApiKey, "API key");

impl ApiKey {
    /// Whether the key may use the management API.
    pub fn may_manage(&self) -> bool {
        self.scopes.contains(&KeyScope::Management)
    }

    /// Why `child` is broader than this key, if it is: its models must be a
    /// subset of this key's, its limits and budget no higher, its expiry no
    /// later, its scopes no wider.
    pub fn broader(&self, child: &ApiKey) -> Option<&'static str> {
        fn exceeds<T: PartialOrd>(parent: Option<T>, child: Option<T>) -> bool {
            match (parent, child) {
                (Some(_), None) => true,
                (Some(p), Some(c)) => c > p,
                (None, _) => false,
            }
        }
        if !self.allowed_models.is_empty()
            && (child.allowed_models.is_empty()
                || !child.allowed_models.is_subset(&self.allowed_models))
        {
            return Some("allowed_models must be a subset of this key's");
        }
        if exceeds(self.rpm_limit, child.rpm_limit) {
            return Some("rpm_limit must be set and no higher than this key's");
        }
        if exceeds(self.tpm_limit, child.tpm_limit) {
            return Some("tpm_limit must be set and no higher than this key's");
        }
        if let Some(parent) = self.budget {
            let within = child
                .budget
                .is_some_and(|c| c.period == parent.period && c.max_usd <= parent.max_usd);
            if !within {
                return Some(
                    "budget must be set, over the same period and no higher than this key's",
                );
            }
        }
        if exceeds(self.expires_at, child.expires_at) {
            return Some("expires_at must be set and no later than this key's");
        }
        if !child.scopes.is_subset(&self.scopes) {
            return Some("scopes must be no wider than this key's");
        }
        None
    }

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

record!(LastUsed, "API key last use", no_feed);

/// Checks a budget's amount.
pub fn check_budget(budget: &Budget) -> Result<()> {
    if !budget.max_usd.is_finite() || budget.max_usd < 0.0 {
        return Err(Error::invalid_input(
            "budget.max_usd is a non-negative number of US dollars",
        ));
    }
    Ok(())
}
