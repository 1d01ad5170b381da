//! The catalogue: models and prices for everyone (admins create, edit,
//! enable and restrict them), aliases (one's own and global), subscriptions
//! (people ask; admins approve or deny with a reason), and for admins the
//! endpoints (health, sync) and credentials.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use gatehouse_core::model::catalog::{CredentialScope, SubscriptionStatus};
use gatehouse_core::{Error, Id};
use serde::Serialize;

use super::home::prices;
use super::{Nav, OrPage, PageError, PageResult, Viewer, render, when, when_opt};
use crate::rest::AppState;

/// An enum's name as the API spells it (its serde name).
pub(crate) fn api_name<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(name)) => name,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

pub(crate) struct ModelRow {
    pub id: String,
    pub name: String,
    pub provider: String,
    pub endpoint: String,
    pub upstream: String,
    pub context: String,
    pub prices: String,
    pub input_cost: f64,
    pub output_cost: f64,
    pub enabled: bool,
    pub restricted: bool,
    /// The viewer's subscription's status, for restricted models.
    pub subscription: String,
    /// The viewer may call it now.
    pub usable: bool,
}

#[derive(Template)]
#[template(path = "console/models.html")]
struct Models {
    nav: Nav,
    models: Vec<ModelRow>,
    endpoints: Vec<(String, String)>,
}

pub(crate) async fn models(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let user = &viewer.user;
    let catalog = &state.services.catalog;
    let models = catalog.list_models(user).await.or_page(&viewer)?;
    let endpoints = if user.is_platform_reader() {
        catalog.list_endpoints(user).await.or_page(&viewer)?
    } else {
        Vec::new()
    };
    let endpoint_names: HashMap<Id, String> =
        endpoints.iter().map(|e| (e.id, e.name.clone())).collect();
    let subscriptions: HashMap<Id, SubscriptionStatus> = catalog
        .list_subscriptions(user, false, None)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|s| (s.model_id, s.status))
        .collect();
    let usable: std::collections::HashSet<String> =
        super::home::usable_model_names(&state, user.id)
            .await
            .into_iter()
            .collect();
    let mut rows: Vec<ModelRow> = models
        .into_iter()
        .map(|m| ModelRow {
            id: m.id.to_string(),
            endpoint: endpoint_names
                .get(&m.endpoint_id)
                .cloned()
                .unwrap_or_default(),
            upstream: m.upstream_name.clone(),
            context: m
                .context_length
                .map_or_else(|| "—".to_string(), |n| super::count(n.into())),
            prices: prices(m.input_cost_per_token, m.output_cost_per_token),
            input_cost: m.input_cost_per_token,
            output_cost: m.output_cost_per_token,
            enabled: m.enabled,
            restricted: m.restricted,
            subscription: subscriptions.get(&m.id).map(api_name).unwrap_or_default(),
            usable: usable.contains(&m.name),
            provider: m.provider,
            name: m.name,
        })
        .collect();
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(render(Models {
        nav: viewer.nav("catalog"),
        models: rows,
        endpoints: endpoints
            .into_iter()
            .map(|e| (e.id.to_string(), e.name))
            .collect(),
    }))
}

pub(crate) struct AliasRow {
    pub id: String,
    pub alias: String,
    pub model: String,
    pub global: bool,
    /// The viewer may remove it.
    pub removable: bool,
}

#[derive(Template)]
#[template(path = "console/aliases.html")]
struct Aliases {
    nav: Nav,
    aliases: Vec<AliasRow>,
    models: Vec<(String, String)>,
}

pub(crate) async fn aliases(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let user = &viewer.user;
    let catalog = &state.services.catalog;
    let models = catalog.list_models(user).await.or_page(&viewer)?;
    let names: HashMap<Id, String> = models.iter().map(|m| (m.id, m.name.clone())).collect();
    let aliases = catalog
        .list_aliases(user)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|a| AliasRow {
            id: a.id.to_string(),
            model: names
                .get(&a.model_id)
                .cloned()
                .unwrap_or_else(|| a.model_id.to_string()),
            global: a.owner_id.is_none(),
            removable: a.owner_id == Some(user.id)
                || (a.owner_id.is_none() && user.is_platform_admin()),
            alias: a.alias,
        })
        .collect();
    Ok(render(Aliases {
        nav: viewer.nav("catalog"),
        aliases,
        models: models
            .into_iter()
            .filter(|m| m.enabled)
            .map(|m| (m.id.to_string(), m.name))
            .collect(),
    }))
}

pub(crate) struct SubscriptionRow {
    pub id: String,
    pub user: String,
    pub model: String,
    pub status: String,
    pub requested: String,
    pub decided: String,
    pub reason: String,
}

#[derive(Template)]
#[template(path = "console/subscriptions.html")]
struct Subscriptions {
    nav: Nav,
    all: bool,
    subscriptions: Vec<SubscriptionRow>,
}

pub(crate) async fn subscriptions(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let user = &viewer.user;
    let catalog = &state.services.catalog;
    let all = user.is_platform_reader();
    let models: HashMap<Id, String> = catalog
        .list_models(user)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|m| (m.id, m.name))
        .collect();
    let mut found = catalog
        .list_subscriptions(user, all, None)
        .await
        .or_page(&viewer)?;
    // Pending first, then newest.
    found.sort_by(|a, b| {
        (b.status == SubscriptionStatus::Pending)
            .cmp(&(a.status == SubscriptionStatus::Pending))
            .then(b.requested_at.cmp(&a.requested_at))
    });
    let mut subscriptions = Vec::with_capacity(found.len());
    for s in found {
        let who = if s.user_id == user.id {
            user.email.clone()
        } else {
            match state.services.accounts.get_user(s.user_id).await {
                Ok(u) => u.email,
                _ => s.user_id.to_string(),
            }
        };
        subscriptions.push(SubscriptionRow {
            id: s.id.to_string(),
            user: who,
            model: models
                .get(&s.model_id)
                .cloned()
                .unwrap_or_else(|| s.model_id.to_string()),
            status: api_name(&s.status),
            requested: when(&s.requested_at),
            decided: when_opt(&s.decided_at),
            reason: s.reason.unwrap_or_default(),
        });
    }
    Ok(render(Subscriptions {
        nav: viewer.nav(if all { "admin" } else { "catalog" }),
        all,
        subscriptions,
    }))
}

pub(crate) struct EndpointRow {
    pub id: String,
    pub name: String,
    pub base_url: String,
    pub flavour: String,
    pub credential: String,
    pub enabled: bool,
    pub health: String,
    pub last_error: String,
    pub last_success: String,
}

#[derive(Template)]
#[template(path = "console/endpoints.html")]
struct Endpoints {
    nav: Nav,
    endpoints: Vec<EndpointRow>,
    credentials: Vec<(String, String)>,
}

fn admin_only(viewer: &Viewer) -> Result<(), PageError> {
    if viewer.user.is_platform_reader() {
        Ok(())
    } else {
        Err(PageError {
            error: Error::not_found("page"),
            nav: Box::new(viewer.nav("")),
        })
    }
}

pub(crate) async fn endpoints(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    admin_only(&viewer)?;
    let catalog = &state.services.catalog;
    let credentials = catalog
        .list_credentials(&viewer.user, Some(CredentialScope::Platform))
        .await
        .or_page(&viewer)?;
    let names: HashMap<Id, String> = credentials.iter().map(|c| (c.id, c.name.clone())).collect();
    let endpoints = catalog
        .list_endpoints(&viewer.user)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|e| {
            let health = catalog.health().read(e.id);
            EndpointRow {
                id: e.id.to_string(),
                credential: e
                    .credential_id
                    .map(|c| names.get(&c).cloned().unwrap_or_else(|| c.to_string()))
                    .unwrap_or_else(|| "—".to_string()),
                flavour: api_name(&e.flavour),
                enabled: e.enabled,
                health: api_name(&health.status),
                last_error: health.last_error.unwrap_or_default(),
                last_success: when_opt(&health.last_success_at),
                base_url: e.base_url,
                name: e.name,
            }
        })
        .collect();
    Ok(render(Endpoints {
        nav: viewer.nav("admin"),
        endpoints,
        credentials: credentials
            .into_iter()
            .map(|c| (c.id.to_string(), c.name))
            .collect(),
    }))
}

pub(crate) struct CredentialRow {
    pub id: String,
    pub name: String,
    pub kind: String,
    pub scope: String,
    pub updated: String,
}

#[derive(Template)]
#[template(path = "console/credentials.html")]
struct Credentials {
    nav: Nav,
    credentials: Vec<CredentialRow>,
    /// Provider accounts make `oauth_account` credentials of their own.
    provider: bool,
}

pub(crate) async fn credentials(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let provider = viewer.user.is_provider_account();
    if !provider {
        admin_only(&viewer)?;
    }
    let credentials = state
        .services
        .catalog
        .list_credentials(&viewer.user, None)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|c| CredentialRow {
            id: c.id.to_string(),
            kind: api_name(&c.kind),
            scope: match c.scope {
                CredentialScope::Platform => "platform".to_string(),
                CredentialScope::Organization { org_id } => format!("organization {org_id}"),
                CredentialScope::User { user_id } => format!("user {user_id}"),
            },
            updated: when(&c.updated_at),
            name: c.name,
        })
        .collect();
    Ok(render(Credentials {
        nav: viewer.nav(if provider { "credentials" } else { "admin" }),
        credentials,
        provider,
    }))
}
