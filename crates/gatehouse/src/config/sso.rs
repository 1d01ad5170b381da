//! `auth.sso`: single sign-on providers and where sign-ins may return to.

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::accounts::sso::SsoRules;
use gatehouse_core::model::accounts::Role;
use serde::{Deserialize, Serialize};

use super::Secret;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SsoConfig {
    /// Gatehouse's origin as browsers reach it, e.g. `https://gatehouse.example.com`:
    /// callbacks are `<public_url>/api/v1/auth/sso/<id>/callback`. Required in
    /// production when providers are set; in development the request's host is used.
    pub public_url: Option<String>,
    /// Origins of web UIs that `redirect_to` may return to, besides Gatehouse's own.
    pub redirect_origins: Vec<String>,
    pub providers: Vec<SsoProviderConfig>,
}

/// One OpenID Connect provider.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SsoProviderConfig {
    /// In URLs: `/api/v1/auth/sso/<id>/start`. Letters, digits, `-` and `_`.
    pub id: String,
    /// Shown on sign-in pages; the `id` if unset.
    #[serde(default)]
    pub name: Option<String>,
    /// The issuer; its `/.well-known/openid-configuration` is read.
    pub issuer: String,
    pub client_id: String,
    /// The client secret; prefer `client_secret_env` in production.
    #[serde(default)]
    pub client_secret: Option<Secret>,
    /// The environment variable holding the client secret.
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Scopes besides `openid`.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// The claim with the person's groups (ID token, else userinfo).
    #[serde(default = "default_groups_claim")]
    pub groups_claim: String,
    /// Group → platform roles, recomputed at every sign-in.
    #[serde(default)]
    pub role_mapping: BTreeMap<String, BTreeSet<Role>>,
    /// Roles every account signing in here holds (besides `user`).
    #[serde(default)]
    pub default_roles: BTreeSet<Role>,
    /// Only addresses of these domains may sign in; empty: any.
    #[serde(default)]
    pub allowed_email_domains: Vec<String>,
}

fn default_scopes() -> Vec<String> {
    ["email", "profile"].map(String::from).to_vec()
}

fn default_groups_claim() -> String {
    "groups".into()
}

impl SsoConfig {
    /// Checks what types alone cannot; `production` requires a public URL.
    pub fn validate(&self, production: bool) -> Result<(), String> {
        let mut seen = BTreeSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let at = format!("auth.sso.providers[{i}]");
            let valid_id = (1..=64).contains(&p.id.len())
                && p.id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !valid_id {
                return Err(format!(
                    "{at}.id must be 1-64 of letters, digits, '-' and '_'"
                ));
            }
            if !seen.insert(p.id.as_str()) {
                return Err(format!("{at}.id `{}` is used twice", p.id));
            }
            if !(p.issuer.starts_with("https://") || p.issuer.starts_with("http://")) {
                return Err(format!("{at}.issuer must be an http(s) URL"));
            }
            if p.client_secret.is_some() && p.client_secret_env.is_some() {
                return Err(format!(
                    "{at}: set client_secret or client_secret_env, not both"
                ));
            }
        }
        if production && !self.providers.is_empty() && self.public_url.is_none() {
            return Err("auth.sso.public_url is required in production mode".into());
        }
        for url in self.public_url.iter().chain(&self.redirect_origins) {
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(format!("auth.sso: `{url}` is not an http(s) origin"));
            }
        }
        Ok(())
    }

    /// The settings the server runs with, client secrets read from the
    /// environment where named (a named variable that is unset stops the start).
    pub fn settings(&self) -> anyhow::Result<gatehouse_api::sso::SsoSettings> {
        let mut providers = Vec::with_capacity(self.providers.len());
        for (i, p) in self.providers.iter().enumerate() {
            let client_secret = match (&p.client_secret, &p.client_secret_env) {
                (Some(secret), _) => Some(secret.0.clone()),
                (None, Some(var)) => Some(std::env::var(var).map_err(|_| {
                    anyhow::anyhow!(
                        "auth.sso.providers[{i}].client_secret_env names {var}, which is not set"
                    )
                })?),
                (None, None) => None,
            };
            let mut scopes = vec!["openid".to_string()];
            scopes.extend(p.scopes.iter().filter(|s| *s != "openid").cloned());
            providers.push(gatehouse_api::sso::SsoProvider {
                id: p.id.clone(),
                name: p.name.clone().unwrap_or_else(|| p.id.clone()),
                issuer: p.issuer.clone(),
                client_id: p.client_id.clone(),
                client_secret,
                scopes,
                groups_claim: p.groups_claim.clone(),
                rules: SsoRules {
                    provider: p.id.clone(),
                    role_mapping: p.role_mapping.clone(),
                    default_roles: p.default_roles.clone(),
                    allowed_email_domains: p
                        .allowed_email_domains
                        .iter()
                        .map(|d| d.to_ascii_lowercase())
                        .collect(),
                },
            });
        }
        Ok(gatehouse_api::sso::SsoSettings {
            public_url: self.public_url.clone(),
            redirect_origins: self.redirect_origins.clone(),
            providers,
        })
    }
}
