//! The model catalogue (SPEC §1): credentials, inference endpoints, models,
//! aliases and subscriptions.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::codec::record;
use crate::crypto::Sealed;
use crate::{Error, Id, Result};

/// Who a credential belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialScope {
    /// The platform's own, managed by platform admins.
    Platform,
    /// An organization's, managed by its owners and admins.
    Organization { org_id: Id },
    /// A provider account's own (`oauth_account` credentials).
    User { user_id: Id },
}

impl CredentialScope {
    /// The two tuple elements that group credentials by scope in the keyspace.
    pub fn index(self) -> (&'static str, u64) {
        match self {
            CredentialScope::Platform => ("platform", 0),
            CredentialScope::Organization { org_id } => ("org", org_id.0),
            CredentialScope::User { user_id } => ("user", user_id.0),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    Openai,
    Anthropic,
    OauthAccount,
    Generic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Credential {
    pub id: Id,
    pub scope: CredentialScope,
    pub name: String,
    pub kind: CredentialKind,
    /// The secret data (a JSON object), sealed for `credential:<id>`.
    pub secret: Sealed,
    /// Non-secret settings shown to readers (account name, region, …).
    pub metadata: serde_json::Value,
    pub created_by: Id,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Credential, "credential");

impl Credential {
    /// The associated data its secret is sealed with.
    pub fn context(id: Id) -> String {
        format!("credential:{id}")
    }
}

/// The API key in a credential's secret data: `api_key`, or `key` / `token`.
pub fn secret_api_key(secret: &serde_json::Value) -> Option<&str> {
    ["api_key", "key", "token"]
        .iter()
        .find_map(|k| secret.get(*k).and_then(serde_json::Value::as_str))
}

/// An index entry that points at an entity by ID.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdRef {
    pub id: Id,
}

record!(IdRef, "index entry");

/// The API an endpoint speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApiFlavour {
    /// OpenAI-compatible (`/v1/chat/completions`, `/v1/embeddings`, `/v1/models`).
    Openai,
    /// Anthropic (`/v1/messages`).
    Anthropic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub id: Id,
    /// Unique.
    pub name: String,
    /// e.g. `https://api.openai.com` (the `/v1/...` paths are appended).
    pub base_url: String,
    pub flavour: ApiFlavour,
    /// Whose secret authenticates upstream calls.
    pub credential_id: Option<Id>,
    /// An outbound HTTP proxy for upstream calls (AIGateway's proxies).
    pub proxy_url: Option<String>,
    pub connect_timeout_ms: u64,
    pub request_timeout_ms: u64,
    pub enabled: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Endpoint, "inference endpoint");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub id: Id,
    /// The public name clients ask for; unique.
    pub name: String,
    pub endpoint_id: Id,
    /// The name the endpoint knows it by.
    pub upstream_name: String,
    pub provider: String,
    pub context_length: Option<u32>,
    /// US dollars per input token.
    pub input_cost_per_token: f64,
    /// US dollars per output token.
    pub output_cost_per_token: f64,
    pub enabled: bool,
    /// Needs an approved subscription.
    pub restricted: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

record!(Model, "model");

impl Model {
    /// What `prompt` input and `completion` output tokens cost, in
    /// micro-dollars (saturating at the ends of `i64`, never wrapping).
    pub fn cost_micros(&self, prompt: u64, completion: u64) -> i64 {
        crate::common::to_micros(
            prompt as f64 * self.input_cost_per_token
                + completion as f64 * self.output_cost_per_token,
        )
    }
}

/// Another name for a model: global (admins) or one user's own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alias {
    pub id: Id,
    pub alias: String,
    pub model_id: Id,
    /// `None` for a global alias.
    pub owner_id: Option<Id>,
    pub created_at: DateTime<Utc>,
}

record!(Alias, "model alias");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubscriptionStatus {
    Pending,
    Active,
    Denied,
    Suspended,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subscription {
    pub id: Id,
    pub user_id: Id,
    pub model_id: Id,
    pub status: SubscriptionStatus,
    pub requested_at: DateTime<Utc>,
    pub decided_by: Option<Id>,
    pub decided_at: Option<DateTime<Utc>>,
    pub reason: Option<String>,
}

record!(Subscription, "subscription");

/// A model or alias name: 1 to 200 characters without whitespace (not at
/// the ends either) or control characters, so it fits a URL path and a JSON
/// field unchanged.
pub fn parse_model_name(name: &str) -> Result<String> {
    if name.is_empty()
        || name.chars().count() > 200
        || name.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::invalid_input(
            "model names are 1 to 200 characters without spaces",
        ));
    }
    Ok(name.to_string())
}

/// An `http` or `https` URL without a query or fragment or white space
/// (some before it is dropped), at most 2000 characters; trailing `/`
/// removed.
pub fn parse_url(url: &str, what: &str) -> Result<String> {
    let short = url.chars().count() <= 2000;
    let url = url.trim_start().trim_end_matches('/');
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let ok = rest.is_some_and(|r| {
        !r.is_empty()
            && !r.starts_with('/')
            && !r.contains(['?', '#'])
            && !r.chars().any(|c| c.is_whitespace() || c.is_control())
    }) && short;
    if !ok {
        return Err(Error::invalid_input(format!(
            "{what} must be an http:// or https:// URL without query or fragment"
        )));
    }
    Ok(url.to_string())
}

/// An endpoint's base URL: [`parse_url`], and a trailing `/v1` dropped, since
/// the gateway adds `/v1/…` itself. `http://host:8000` and
/// `http://host:8000/v1` (the form OpenAI clients and LiteLLM take) name the
/// same endpoint.
pub fn parse_base_url(url: &str) -> Result<String> {
    let url = parse_url(url, "base_url")?;
    let base = url
        .strip_suffix("/v1")
        .unwrap_or(&url)
        .trim_end_matches('/');
    // `https://v1` is a host, not a path.
    if base.ends_with(':') || base.ends_with("//") {
        return Ok(url);
    }
    Ok(base.to_string())
}

/// An allow-list of model names (teams, keys): at most 1000 names, each
/// checked as [`parse_model_name`] checks it.
pub fn allow_list(names: &[String]) -> Result<BTreeSet<String>> {
    if names.len() > 1000 {
        return Err(Error::invalid_input(
            "an allow-list holds at most 1000 models",
        ));
    }
    names.iter().map(|n| parse_model_name(n)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names_are_checked() {
        assert_eq!(
            parse_url(" https://api.example.com/", "base_url").unwrap(),
            "https://api.example.com"
        );
        for (given, stored) in [
            ("http://host:8000", "http://host:8000"),
            ("http://host:8000/v1", "http://host:8000"),
            ("http://host:8000/v1/", "http://host:8000"),
            (
                "https://gw.example.com/openai/v1",
                "https://gw.example.com/openai",
            ),
            ("https://v1", "https://v1"),
            ("http://host/v10", "http://host/v10"),
        ] {
            assert_eq!(parse_base_url(given).unwrap(), stored, "{given}");
        }
        // As the documented pattern has it: white space before, none after.
        let long = format!("https://{}", "é".repeat(1993));
        for bad in [
            "ftp://x",
            "https://",
            "http://a b",
            "https://x?y=1",
            "x",
            "https://x ",
            "https://x\u{2003}",
            &long,
        ] {
            assert!(parse_url(bad, "base_url").is_err(), "{bad}");
        }
        assert!(parse_model_name("gpt 4").is_err());
        assert_eq!(parse_model_name("gpt-4o").unwrap(), "gpt-4o");
        // No white space at the ends either (the documented pattern).
        assert!(parse_model_name(" gpt-4o").is_err());
        assert!(parse_model_name(&"é".repeat(200)).is_ok());
    }
}
