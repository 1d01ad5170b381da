//! `auth.sso`: single sign-on providers and where sign-ins may return to.

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::accounts::sso::MappedMembership;
use gatehouse_core::accounts::sso::SsoRules;
use gatehouse_core::model::accounts::Role;
use gatehouse_core::model::tenancy::OrgRole;
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
    /// Email domains whose accounts must sign in with single sign-on:
    /// password sign-ins of those accounts are refused (403).
    pub required_for_domains: Vec<String>,
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
    /// The OpenID Connect issuer; its `/.well-known/openid-configuration` is read.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Instead of `issuer`: a plain OAuth2 provider (OpenShift, GitHub).
    #[serde(default)]
    pub oauth2: Option<OAuth2Config>,
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
    /// Groups → organization memberships (and teams), kept in step at
    /// every sign-in like the roles.
    #[serde(default)]
    pub org_mapping: Vec<OrgMappingConfig>,
}

/// One group's membership of an organization.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrgMappingConfig {
    pub group: String,
    /// The organization's slug.
    pub organization: String,
    /// `member` (default) or `admin`; never `owner`.
    #[serde(default = "default_org_role")]
    pub role: OrgRole,
    /// Team names in that organization.
    #[serde(default)]
    pub teams: Vec<String>,
}

fn default_org_role() -> OrgRole {
    OrgRole::Member
}

/// A plain OAuth2 provider: its URLs and where its userinfo answer holds
/// what Gatehouse needs, as JSON pointers (RFC 6901).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    pub authorization_url: String,
    pub token_url: String,
    pub userinfo_url: String,
    /// The stable subject, e.g. `/metadata/uid` (OpenShift) or `/id` (GitHub).
    pub subject_pointer: String,
    #[serde(default)]
    pub email_pointer: Option<String>,
    /// A boolean: the provider verified the email. Unset: never verified
    /// (such identities never link to an existing account by email).
    #[serde(default)]
    pub email_verified_pointer: Option<String>,
    #[serde(default)]
    pub name_pointer: Option<String>,
    /// The groups, e.g. `/groups` (OpenShift).
    #[serde(default)]
    pub groups_pointer: Option<String>,
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
            let http = |u: &str| u.starts_with("https://") || u.starts_with("http://");
            match (&p.issuer, &p.oauth2) {
                (Some(issuer), None) if http(issuer) => {}
                (Some(_), None) => return Err(format!("{at}.issuer must be an http(s) URL")),
                (None, Some(o)) => {
                    for (name, url) in [
                        ("authorization_url", &o.authorization_url),
                        ("token_url", &o.token_url),
                        ("userinfo_url", &o.userinfo_url),
                    ] {
                        if !http(url) {
                            return Err(format!("{at}.oauth2.{name} must be an http(s) URL"));
                        }
                    }
                    let pointers = [
                        Some(&o.subject_pointer),
                        o.email_pointer.as_ref(),
                        o.email_verified_pointer.as_ref(),
                        o.name_pointer.as_ref(),
                        o.groups_pointer.as_ref(),
                    ];
                    if pointers.into_iter().flatten().any(|p| !p.starts_with('/')) {
                        return Err(format!("{at}.oauth2: JSON pointers start with '/'"));
                    }
                }
                _ => {
                    return Err(format!(
                        "{at}: set issuer (OpenID Connect) or oauth2, one of them"
                    ));
                }
            }
            if p.org_mapping.iter().any(|m| m.role == OrgRole::Owner) {
                return Err(format!(
                    "{at}.org_mapping: groups give `member` or `admin`, never `owner`"
                ));
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
            // OpenID Connect always asks for `openid`; plain OAuth2 asks for what it is told.
            let mut scopes = Vec::new();
            if p.oauth2.is_none() {
                scopes.push("openid".to_string());
            }
            scopes.extend(
                p.scopes
                    .iter()
                    .filter(|s| p.oauth2.is_some() || *s != "openid")
                    .cloned(),
            );
            providers.push(gatehouse_api::sso::SsoProvider {
                id: p.id.clone(),
                name: p.name.clone().unwrap_or_else(|| p.id.clone()),
                issuer: p.issuer.clone().unwrap_or_default(),
                oauth2: p
                    .oauth2
                    .as_ref()
                    .map(|o| gatehouse_api::sso::OAuth2Endpoints {
                        authorization_url: o.authorization_url.clone(),
                        token_url: o.token_url.clone(),
                        userinfo_url: o.userinfo_url.clone(),
                        subject: o.subject_pointer.clone(),
                        email: o.email_pointer.clone(),
                        email_verified: o.email_verified_pointer.clone(),
                        name: o.name_pointer.clone(),
                        groups: o.groups_pointer.clone(),
                    }),
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
                    org_mapping: p.org_mapping.iter().fold(
                        BTreeMap::<String, Vec<MappedMembership>>::new(),
                        |mut by_group, m| {
                            by_group
                                .entry(m.group.clone())
                                .or_default()
                                .push(MappedMembership {
                                    org_slug: m.organization.clone(),
                                    role: m.role,
                                    teams: m.teams.clone(),
                                });
                            by_group
                        },
                    ),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(extra: serde_json::Value) -> SsoProviderConfig {
        let mut p = serde_json::json!({"id": "corp", "client_id": "gatehouse"});
        p.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        serde_json::from_value(p).unwrap()
    }

    #[test]
    fn a_provider_is_openid_connect_or_plain_oauth2_and_production_needs_a_public_url() {
        let oidc = provider(serde_json::json!({"issuer": "https://idp.example.com"}));
        let oauth2 = provider(serde_json::json!({"oauth2": {
            "authorization_url": "https://idp.example.com/authorize",
            "token_url": "https://idp.example.com/token",
            "userinfo_url": "https://api.example.com/users/~",
            "subject_pointer": "/metadata/uid",
            "groups_pointer": "/groups",
        }}));
        let config = |providers: Vec<SsoProviderConfig>| SsoConfig {
            providers,
            ..Default::default()
        };
        assert_eq!(config(vec![oidc.clone()]).validate(false), Ok(()));
        assert_eq!(config(vec![oauth2.clone()]).validate(false), Ok(()));
        let mut both = oidc.clone();
        both.oauth2 = oauth2.oauth2.clone();
        assert!(config(vec![both]).validate(false).is_err());
        let mut neither = oidc.clone();
        neither.issuer = None;
        assert!(config(vec![neither]).validate(false).is_err());
        let mut bad_pointer = oauth2.clone();
        if let Some(o) = bad_pointer.oauth2.as_mut() {
            o.subject_pointer = "metadata.uid".into();
        }
        assert!(config(vec![bad_pointer]).validate(false).is_err());
        assert!(
            config(vec![oidc.clone(), oidc.clone()])
                .validate(false)
                .is_err(),
            "one id twice"
        );
        let err = config(vec![oidc.clone()]).validate(true).unwrap_err();
        assert!(err.contains("public_url"), "{err}");
        // OpenID Connect always asks for `openid`; plain OAuth2 only for what it is told.
        let settings = config(vec![oidc, oauth2]).settings().unwrap();
        assert_eq!(settings.providers[0].scopes, ["openid", "email", "profile"]);
        assert_eq!(settings.providers[1].scopes, ["email", "profile"]);
    }
}
