//! Home (usage over time, budgets, the models one may use with a snippet to
//! call them) and API keys.

use askama::Template;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect};
use chrono::{Days, NaiveDate};
use gatehouse_core::model::keys::{Budget, BudgetPeriod};
use gatehouse_core::page::PageRequest;
use gatehouse_core::usage::ledger::{Holder, period_key};
use gatehouse_core::usage::{GroupBy, StatsQuery, StatsRow};

use super::chart::Chart;
use super::{Nav, OrPage, PageResult, Viewer, count, dollars, render, when, when_opt};
use crate::rest::AppState;

/// The days the home page charts.
const DAYS: u64 = 30;

/// One budget and how much of it is left.
pub(crate) struct BudgetView {
    pub holder: String,
    pub period: &'static str,
    pub max: String,
    pub spent: String,
    pub left: String,
    /// Spent, as a percentage of the budget (0–100), for the meter.
    pub percent: u32,
}

fn budget_view(state: &AppState, holder: Holder, name: String, budget: Budget) -> BudgetView {
    let now = state.services.usage.env().clock.now();
    let spent = state
        .services
        .usage
        .ledger()
        .spent(holder, &period_key(budget.period, now));
    let max = gatehouse_core::common::to_micros(budget.max_usd);
    let percent = if max > 0 {
        ((spent as f64 / max as f64) * 100.0).clamp(0.0, 100.0) as u32
    } else {
        100
    };
    BudgetView {
        holder: name,
        period: period_name(budget.period),
        max: dollars(max),
        spent: dollars(spent),
        left: dollars((max - spent).max(0)),
        percent,
    }
}

pub(crate) fn period_name(period: BudgetPeriod) -> &'static str {
    match period {
        BudgetPeriod::Day => "per day",
        BudgetPeriod::Month => "per month",
        BudgetPeriod::Total => "in total",
    }
}

/// A model one may use, as the home page lists it.
pub(crate) struct UsableModel {
    pub name: String,
    pub provider: String,
    pub prices: String,
}

/// Per-million-token prices, as catalogues show them.
pub(crate) fn prices(input: f64, output: f64) -> String {
    format!(
        "${:.2} in / ${:.2} out per 1M tokens",
        input * 1e6,
        output * 1e6
    )
}

/// The days `from..=to` with their rows (zeros for days without calls).
pub(crate) fn every_day(from: NaiveDate, to: NaiveDate, rows: &[StatsRow]) -> Vec<StatsRow> {
    let mut days = Vec::new();
    let mut day = from;
    while day <= to {
        let label = day.format("%Y-%m-%d").to_string();
        let row = rows
            .iter()
            .find(|r| r.group == label)
            .cloned()
            .unwrap_or(StatsRow {
                group: label,
                ..StatsRow::default()
            });
        days.push(row);
        let Some(next) = day.checked_add_days(Days::new(1)) else {
            break;
        };
        day = next;
    }
    days
}

/// The three charts of a run of days: tokens, spend, requests.
pub(crate) fn charts(days: &[StatsRow]) -> Vec<Chart> {
    let short = |r: &StatsRow| r.group.get(5..).unwrap_or(&r.group).to_string();
    let tokens: Vec<_> = days
        .iter()
        .map(|r| {
            let n = r.prompt_tokens + r.completion_tokens;
            (short(r), n as f64, format!("{} tokens", count(n)))
        })
        .collect();
    let spend: Vec<_> = days
        .iter()
        .map(|r| (short(r), r.cost_micros as f64, dollars(r.cost_micros)))
        .collect();
    let requests: Vec<_> = days
        .iter()
        .map(|r| {
            (
                short(r),
                r.requests as f64,
                format!("{} requests", count(r.requests)),
            )
        })
        .collect();
    vec![
        Chart::bars("Tokens per day", &tokens),
        Chart::bars("Spend per day", &spend),
        Chart::bars("Requests per day", &requests),
    ]
}

#[derive(Template)]
#[template(path = "console/home.html")]
struct Home {
    nav: Nav,
    charts: Vec<Chart>,
    requests: String,
    tokens: String,
    spend: String,
    budgets: Vec<BudgetView>,
    models: Vec<UsableModel>,
    /// The gateway's base URL as this browser reaches it.
    gateway: String,
    /// The model the snippets name.
    example_model: String,
}

/// `http(s)://host` as the browser reached this server.
pub(crate) fn origin(state: &AppState, headers: &HeaderMap) -> String {
    let host = headers
        .get(axum::http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            h.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost:3000");
    let scheme = if state.secure_cookies {
        "https"
    } else {
        "http"
    };
    format!("{scheme}://{host}")
}

pub(crate) async fn page(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> PageResult {
    let user = &viewer.user;
    if !user
        .roles
        .contains(&gatehouse_core::model::accounts::Role::User)
    {
        // Provider accounts: their credentials are all they have.
        return Ok(Redirect::to(&format!("{}/account", viewer.base)).into_response());
    }
    let today = state.services.usage.env().clock.now().date_naive();
    let from = today - Days::new(DAYS - 1);
    let query = StatsQuery {
        from,
        to: today,
        user: None,
        all: false,
        group_by: GroupBy::Day,
    };
    let rows = state
        .services
        .usage
        .stats(user, &query)
        .await
        .or_page(&viewer)?;
    let days = every_day(from, today, &rows);
    let total = |f: fn(&StatsRow) -> i64| days.iter().map(f).sum::<i64>();
    let mut budgets = Vec::new();
    if let Some(budget) = user.limits.budget {
        budgets.push(budget_view(
            &state,
            Holder::User(user.id),
            "Your account".into(),
            budget,
        ));
    }
    let (keys, now) = own_keys(&state, &viewer).await?;
    for view in &keys {
        let key = &view.key;
        if let Some(budget) = key.budget
            && key.unusable_at(now).is_none()
        {
            let name = format!("Key {} ({}…)", key.label, key.display_prefix);
            budgets.push(budget_view(&state, Holder::Key(key.id), name, budget));
        }
    }
    let models: Vec<UsableModel> = state
        .services
        .keys
        .index()
        .models_for_user(user.id)
        .await
        .iter()
        .map(|m| UsableModel {
            name: m.name.clone(),
            provider: m.provider.clone(),
            prices: prices(m.input_cost_per_token, m.output_cost_per_token),
        })
        .collect();
    Ok(render(Home {
        nav: viewer.nav("home"),
        charts: charts(&days),
        requests: count(total(|r| r.requests)),
        tokens: count(total(|r| r.prompt_tokens + r.completion_tokens)),
        spend: dollars(total(|r| r.cost_micros)),
        budgets,
        example_model: models
            .first()
            .map_or_else(|| "MODEL".to_string(), |m| m.name.clone()),
        models,
        gateway: origin(&state, &headers),
    }))
}

/// The viewer's keys (their first 500, newest first) and the time now, in
/// milliseconds, to tell which still work.
async fn own_keys(
    state: &AppState,
    viewer: &Viewer,
) -> Result<(Vec<gatehouse_core::keys::KeyView>, i64), super::PageError> {
    let page = PageRequest {
        limit: 500,
        after: None,
    };
    let keys = state
        .services
        .keys
        .list(&viewer.user, false, &page)
        .await
        .or_page(viewer)?;
    let now = state.services.usage.env().clock.now().timestamp_millis();
    Ok((keys.items, now))
}

/// The names of the models `user` may call now, in order.
pub(crate) async fn usable_model_names(state: &AppState, user: gatehouse_core::Id) -> Vec<String> {
    state
        .services
        .keys
        .index()
        .models_for_user(user)
        .await
        .iter()
        .map(|m| m.name.clone())
        .collect()
}

/// A key as the keys page lists it.
pub(crate) struct KeyRow {
    pub id: String,
    pub label: String,
    pub prefix: String,
    pub models: String,
    pub limits: String,
    pub budget: String,
    pub scopes: String,
    pub created: String,
    pub expires: String,
    pub last_used: String,
    /// `active`, `revoked`, `expired`, or `rotated` (working until its grace ends).
    pub status: &'static str,
    pub usable: bool,
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct Keys {
    nav: Nav,
    keys: Vec<KeyRow>,
    models: Vec<String>,
    organizations: Vec<(String, String)>,
    gateway: String,
}

pub(crate) async fn keys(
    State(state): State<AppState>,
    headers: HeaderMap,
    viewer: Viewer,
) -> PageResult {
    let user = &viewer.user;
    let (listed, now) = own_keys(&state, &viewer).await?;
    let keys = listed
        .into_iter()
        .map(|view| {
            let key = view.key;
            let unusable = key.unusable_at(now);
            let status = match unusable {
                Some("revoked") => "revoked",
                Some(_) => "expired",
                None if key.replaced_by.is_some() => "rotated",
                None => "active",
            };
            let limits = match (key.rpm_limit, key.tpm_limit) {
                (None, None) => "—".to_string(),
                (rpm, tpm) => [
                    rpm.map(|n| format!("{} req/min", count(n.into()))),
                    tpm.map(|n| format!("{} tokens/min", count(n.into()))),
                ]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", "),
            };
            KeyRow {
                id: key.id.to_string(),
                label: key.label.clone(),
                prefix: key.display_prefix.clone(),
                models: if key.allowed_models.is_empty() {
                    "all you may use".to_string()
                } else {
                    key.allowed_models
                        .iter()
                        .cloned()
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                limits,
                budget: key.budget.map_or_else(
                    || "—".to_string(),
                    |b| format!("${:.2} {}", b.max_usd, period_name(b.period)),
                ),
                scopes: key
                    .scopes
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                created: when(&key.created_at),
                expires: when_opt(&key.expires_at),
                last_used: when_opt(&view.last_used_at),
                usable: unusable.is_none(),
                status,
            }
        })
        .collect();
    let models = usable_model_names(&state, user.id).await;
    let organizations = state
        .services
        .tenancy
        .orgs_of(user.id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|(org, _)| (org.id.to_string(), org.name))
        .collect();
    Ok(render(Keys {
        nav: viewer.nav("keys"),
        keys,
        models,
        organizations,
        gateway: origin(&state, &headers),
    }))
}
