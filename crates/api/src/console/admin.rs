//! Administration: users, everyone's usage (with filters and CSV export),
//! request logs (captured bodies for `request_viewer` only), the audit log
//! and the system's status. Filters are plain `GET` forms, so every list
//! reads and links without a script.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use chrono::{Days, NaiveDate};
use gatehouse_core::accounts::UserFilter;
use gatehouse_core::audit::AuditFilter;
use gatehouse_core::model::accounts::{Role, UserStatus};
use gatehouse_core::usage::{GroupBy, LogQuery, StatsQuery};
use gatehouse_core::{Error, Id};
use serde::Deserialize;

use super::catalog::api_name;
use super::home::{charts, every_day};
use super::{
    Nav, OrPage, PageError, PageQuery, PageResult, Viewer, count, dollars, page_id, page_path,
    render, when, when_opt,
};
use crate::rest::AppState;

/// Rows a list page shows.
const PAGE: usize = 100;

/// A filter's value: empty means unset.
fn given(value: &Option<String>) -> Option<&str> {
    value.as_deref().map(str::trim).filter(|v| !v.is_empty())
}

/// The filters that were given, as query parameters for the next page's link.
fn given_filters<'a, const N: usize>(
    filters: [(&'a str, &Option<String>); N],
) -> Vec<(&'a str, String)> {
    filters
        .into_iter()
        .filter_map(|(name, value)| given(value).map(|v| (name, v.to_string())))
        .collect()
}

fn refused(viewer: &Viewer) -> PageError {
    PageError {
        error: Error::not_found("page"),
        nav: Box::new(viewer.nav("")),
    }
}

/// A filter that does not parse: a page saying which.
fn bad(viewer: &Viewer, what: &str) -> PageError {
    PageError {
        error: Error::invalid_input(format!("{what} is not valid")),
        nav: Box::new(viewer.nav("admin")),
    }
}

fn id_filter(viewer: &Viewer, raw: &Option<String>, what: &str) -> Result<Option<Id>, PageError> {
    given(raw)
        .map(|v| v.parse::<Id>().map_err(|_| bad(viewer, what)))
        .transpose()
}

pub(crate) struct UserRow {
    pub id: String,
    /// The viewer: not disabled or deleted from here.
    pub me: bool,
    pub email: String,
    pub name: String,
    pub roles: Vec<&'static str>,
    pub active: bool,
    pub created: String,
}

#[derive(Deserialize, Default)]
pub(crate) struct UserSearch {
    q: Option<String>,
    role: Option<String>,
    status: Option<String>,
    after: Option<String>,
}

#[derive(Template)]
#[template(path = "console/users.html")]
struct Users {
    nav: Nav,
    users: Vec<UserRow>,
    q: String,
    role: String,
    status: String,
    next: Option<String>,
    all_roles: Vec<&'static str>,
}

const ROLES: [Role; 5] = [
    Role::User,
    Role::Admin,
    Role::AdminReadonly,
    Role::RequestViewer,
    Role::Provider,
];

pub(crate) async fn users(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(search): PageQuery<UserSearch>,
) -> PageResult {
    if !viewer.user.is_platform_reader() {
        return Err(refused(&viewer));
    }
    let role = match given(&search.role) {
        Some(name) => Some(
            ROLES
                .into_iter()
                .find(|r| r.as_str() == name)
                .ok_or_else(|| bad(&viewer, "role"))?,
        ),
        None => None,
    };
    let status = match given(&search.status) {
        Some("active") => Some(UserStatus::Active),
        Some("disabled") => Some(UserStatus::Disabled),
        Some(_) => return Err(bad(&viewer, "status")),
        None => None,
    };
    let filter = UserFilter {
        role,
        status,
        text: given(&search.q).map(str::to_string),
    };
    let after = id_filter(&viewer, &search.after, "after")?;
    let found = state
        .services
        .accounts
        .list_users(&viewer.user, &filter, after, PAGE + 1)
        .await
        .or_page(&viewer)?;
    let next = (found.len() > PAGE).then(|| found[PAGE - 1].id.to_string());
    let users = found
        .into_iter()
        .take(PAGE)
        .map(|u| UserRow {
            id: u.id.to_string(),
            me: u.id == viewer.user.id,
            roles: u.roles.iter().map(|r| r.as_str()).collect(),
            active: u.is_active(),
            created: when(&u.created_at),
            name: u.display_name,
            email: u.email,
        })
        .collect();
    Ok(render(Users {
        nav: viewer.nav("admin"),
        users,
        q: search.q.unwrap_or_default(),
        role: search.role.unwrap_or_default(),
        status: search.status.unwrap_or_default(),
        next,
        all_roles: ROLES.iter().map(|r| r.as_str()).collect(),
    }))
}

#[derive(Deserialize, Default)]
pub(crate) struct UsageSearch {
    from: Option<String>,
    to: Option<String>,
    group_by: Option<String>,
    user: Option<String>,
}

pub(crate) struct UsageRowView {
    pub group: String,
    pub requests: String,
    pub tokens: String,
    pub spend: String,
}

#[derive(Template)]
#[template(path = "console/usage.html")]
struct Usage {
    nav: Nav,
    from: String,
    to: String,
    group_by: String,
    user: String,
    charts: Vec<super::chart::Chart>,
    rows: Vec<UsageRowView>,
    export: String,
}

pub(crate) async fn usage(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(search): PageQuery<UsageSearch>,
) -> PageResult {
    if !viewer.user.is_platform_reader() {
        return Err(refused(&viewer));
    }
    let today = state.services.usage.env().clock.now().date_naive();
    let date = |raw: &Option<String>, default: NaiveDate, what: &str| {
        given(raw).map_or(Ok(default), |v| {
            NaiveDate::parse_from_str(v, "%Y-%m-%d").map_err(|_| bad(&viewer, what))
        })
    };
    let from = date(&search.from, today - Days::new(29), "from")?;
    let to = date(&search.to, today, "to")?;
    let group_by = match given(&search.group_by).unwrap_or("day") {
        "day" => GroupBy::Day,
        "model" => GroupBy::Model,
        "key" => GroupBy::Key,
        "user" => GroupBy::User,
        "organization" => GroupBy::Organization,
        _ => return Err(bad(&viewer, "group_by")),
    };
    let user = id_filter(&viewer, &search.user, "user")?;
    let query = StatsQuery {
        from,
        to,
        all: user.is_none(),
        user,
        group_by,
    };
    let rows = state
        .services
        .usage
        .stats(&viewer.user, &query)
        .await
        .or_page(&viewer)?;
    let charts = if group_by == GroupBy::Day {
        charts(&every_day(from, to, &rows))
    } else {
        Vec::new()
    };
    let group_name = api_name(&group_by);
    let mut params = vec![
        ("format", "csv".to_string()),
        ("from", from.to_string()),
        ("to", to.to_string()),
        ("group_by", group_name.clone()),
    ];
    match user {
        Some(id) => params.push(("user", id.to_string())),
        None => params.push(("all", "true".to_string())),
    }
    let export = format!(
        "/api/v1/usage/export?{}",
        serde_urlencoded::to_string(&params).unwrap_or_default()
    );
    Ok(render(Usage {
        nav: viewer.nav("admin"),
        from: from.to_string(),
        to: to.to_string(),
        group_by: group_name,
        user: user.map(|u| u.to_string()).unwrap_or_default(),
        charts,
        rows: rows
            .into_iter()
            .map(|r| UsageRowView {
                requests: count(r.requests),
                tokens: count(r.prompt_tokens + r.completion_tokens),
                spend: dollars(r.cost_micros),
                group: r.group,
            })
            .collect(),
        export,
    }))
}

#[derive(Deserialize, Default)]
pub(crate) struct LogSearch {
    user: Option<String>,
    key: Option<String>,
    organization: Option<String>,
    model: Option<String>,
    status: Option<String>,
    before: Option<String>,
}

pub(crate) struct LogRow {
    pub id: String,
    pub at: String,
    pub model: String,
    pub api: String,
    pub status: u16,
    pub latency: String,
    pub tokens: String,
    pub cost: String,
    pub user: String,
    pub key: String,
    pub captured: bool,
}

#[derive(Template)]
#[template(path = "console/logs.html")]
struct Logs {
    nav: Nav,
    logs: Vec<LogRow>,
    user: String,
    key: String,
    organization: String,
    model: String,
    status: String,
    /// The query string of the next page.
    next: Option<String>,
    export: String,
}

/// Who may open the request-log pages: platform readers (metadata) and
/// request viewers (bodies too); everyone else reads their own on the API.
fn may_read_logs(viewer: &Viewer) -> bool {
    viewer.user.is_platform_reader() || viewer.user.roles.contains(&Role::RequestViewer)
}

pub(crate) async fn logs(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(search): PageQuery<LogSearch>,
) -> PageResult {
    if !may_read_logs(&viewer) {
        return Err(refused(&viewer));
    }
    let status = given(&search.status)
        .map(|s| s.parse::<u16>().map_err(|_| bad(&viewer, "status")))
        .transpose()?;
    let query = LogQuery {
        from: None,
        to: None,
        user: id_filter(&viewer, &search.user, "user")?,
        key: id_filter(&viewer, &search.key, "key")?,
        org: id_filter(&viewer, &search.organization, "organization")?,
        model: given(&search.model).map(str::to_string),
        status,
        status_class: None,
        before: id_filter(&viewer, &search.before, "before")?,
        limit: PAGE,
    };
    let page = state
        .services
        .usage
        .logs(&viewer.user, &query)
        .await
        .or_page(&viewer)?;
    let mut filters = given_filters([
        ("user", &search.user),
        ("key", &search.key),
        ("organization", &search.organization),
        ("model", &search.model),
        ("status", &search.status),
    ]);
    let export = {
        let mut params = vec![("format", "csv".to_string())];
        params.extend(filters.iter().cloned());
        format!(
            "/api/v1/request-logs/export?{}",
            serde_urlencoded::to_string(&params).unwrap_or_default()
        )
    };
    let next = page.next.map(|before| {
        filters.push(("before", before.to_string()));
        serde_urlencoded::to_string(&filters).unwrap_or_default()
    });
    let logs = page
        .items
        .into_iter()
        .map(|l| LogRow {
            id: l.id.to_string(),
            at: l.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            api: l.api,
            status: l.status,
            latency: format!("{} ms", l.latency_ms),
            tokens: count((l.prompt_tokens + l.completion_tokens) as i64),
            cost: dollars(l.cost_micros),
            user: l.user_id.to_string(),
            // Playground calls have no key.
            key: if l.key_id == gatehouse_core::keys::index::PLAYGROUND {
                String::new()
            } else {
                l.key_id.to_string()
            },
            captured: l.captured,
            model: l.model,
        })
        .collect();
    Ok(render(Logs {
        nav: viewer.nav("admin"),
        logs,
        user: search.user.unwrap_or_default(),
        key: search.key.unwrap_or_default(),
        organization: search.organization.unwrap_or_default(),
        model: search.model.unwrap_or_default(),
        status: search.status.unwrap_or_default(),
        next,
        export,
    }))
}

#[derive(Template)]
#[template(path = "console/log.html")]
struct LogDetail {
    nav: Nav,
    fields: Vec<(&'static str, String)>,
    captured: bool,
    request: Option<String>,
    response: Option<String>,
}

pub(crate) async fn log(
    State(state): State<AppState>,
    viewer: Viewer,
    id: Result<Path<String>, PathRejection>,
) -> PageResult {
    if !may_read_logs(&viewer) {
        return Err(refused(&viewer));
    }
    let id = page_id(&viewer, &page_path(&viewer, id)?)?;
    let l = state
        .services
        .usage
        .log(&viewer.user, id)
        .await
        .or_page(&viewer)?;
    let fields = vec![
        ("ID", l.id.to_string()),
        ("Time", when(&l.at)),
        ("Model", l.model.clone()),
        (
            "API",
            format!("{}{}", l.api, if l.stream { " (streamed)" } else { "" }),
        ),
        ("Status", l.status.to_string()),
        ("Latency", format!("{} ms", l.latency_ms)),
        ("Prompt tokens", count(l.prompt_tokens as i64)),
        ("Completion tokens", count(l.completion_tokens as i64)),
        ("Cost", dollars(l.cost_micros)),
        ("User", l.user_id.to_string()),
        ("Key", l.key_id.to_string()),
        (
            "Organization",
            l.org_id.map(|o| o.to_string()).unwrap_or_default(),
        ),
        ("Endpoint", l.endpoint_id.to_string()),
        ("Error", l.error.clone().unwrap_or_default()),
    ];
    Ok(render(LogDetail {
        nav: viewer.nav("admin"),
        fields,
        captured: l.captured,
        request: l.request_body,
        response: l.response_body,
    }))
}

#[derive(Deserialize, Default)]
pub(crate) struct AuditSearch {
    action: Option<String>,
    actor: Option<String>,
    organization: Option<String>,
    target: Option<String>,
    before: Option<String>,
}

pub(crate) struct EventRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub target: String,
    pub ip: String,
    pub details: String,
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit {
    nav: Nav,
    events: Vec<EventRow>,
    action: String,
    actor: String,
    organization: String,
    target: String,
    next: Option<String>,
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(search): PageQuery<AuditSearch>,
) -> PageResult {
    if !viewer.user.is_platform_reader() {
        return Err(refused(&viewer));
    }
    let filter = AuditFilter {
        action: given(&search.action).map(str::to_string),
        actor: id_filter(&viewer, &search.actor, "actor")?,
        organization: id_filter(&viewer, &search.organization, "organization")?,
        target_type: None,
        target_id: given(&search.target).map(str::to_string),
        from: None,
    };
    let before = id_filter(&viewer, &search.before, "before")?;
    let (events, next) = state
        .services
        .audit
        .list(&viewer.user, &filter, before, PAGE)
        .await
        .or_page(&viewer)?;
    let next = next.map(|before| {
        let mut params = given_filters([
            ("action", &search.action),
            ("actor", &search.actor),
            ("organization", &search.organization),
            ("target", &search.target),
        ]);
        params.push(("before", before.to_string()));
        serde_urlencoded::to_string(&params).unwrap_or_default()
    });
    let events = events
        .into_iter()
        .map(|e| EventRow {
            at: e.at.format("%Y-%m-%d %H:%M:%S").to_string(),
            actor: serde_json::to_string(&e.actor).unwrap_or_default(),
            outcome: api_name(&e.outcome),
            target: match (&e.target_type, &e.target_id) {
                (Some(kind), Some(id)) => format!("{kind} {id}"),
                (Some(kind), None) => kind.clone(),
                _ => String::new(),
            },
            ip: e.ip.unwrap_or_default(),
            details: match e.details.as_object() {
                Some(none) if none.is_empty() => String::new(),
                _ => e.details.to_string(),
            },
            action: e.action,
        })
        .collect();
    Ok(render(Audit {
        nav: viewer.nav("admin"),
        events,
        action: search.action.unwrap_or_default(),
        actor: search.actor.unwrap_or_default(),
        organization: search.organization.unwrap_or_default(),
        target: search.target.unwrap_or_default(),
        next,
    }))
}

pub(crate) struct JobRow {
    pub name: String,
    pub last_run: String,
    pub outcome: String,
    pub runs: u64,
    pub failures: u64,
}

#[derive(Template)]
#[template(path = "console/system.html")]
struct System {
    nav: Nav,
    version: &'static str,
    installation: String,
    instance: String,
    worker: String,
    leader: bool,
    shared: bool,
    instances: Vec<(String, bool, bool, String)>,
    jobs: Vec<JobRow>,
    endpoints: Vec<(String, String, String)>,
    removals: Vec<(String, String, u64)>,
}

pub(crate) async fn system(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    if !viewer.user.is_platform_reader() {
        return Err(refused(&viewer));
    }
    let services = &state.services;
    let installation = services.system.installation().await.or_page(&viewer)?;
    let status = services.cluster.status();
    let instances = services
        .cluster
        .instances()
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|i| {
            (
                i.instance_id,
                i.this,
                i.leader,
                when_opt(&i.lease_expires_at),
            )
        })
        .collect();
    let names: std::collections::HashMap<Id, String> = services
        .catalog
        .list_endpoints(&viewer.user)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|e| (e.id, e.name))
        .collect();
    let mut endpoints: Vec<_> = services
        .catalog
        .health()
        .all()
        .into_iter()
        .filter_map(|(id, h)| {
            names.get(&id).map(|name| {
                (
                    name.clone(),
                    api_name(&h.status),
                    when_opt(&h.last_success_at),
                )
            })
        })
        .collect();
    endpoints.sort();
    let removals = services
        .tenancy
        .removals(&viewer.user)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|r| (api_name(&r.kind), r.name, r.removed))
        .collect();
    Ok(render(System {
        nav: viewer.nav("admin"),
        version: env!("CARGO_PKG_VERSION"),
        installation: installation.id.to_string(),
        instance: status.instance_id,
        worker: status.worker_id.map(|w| w.to_string()).unwrap_or_default(),
        leader: status.leader,
        shared: services.cluster.is_shared(),
        instances,
        jobs: status
            .jobs
            .into_iter()
            .map(|j| JobRow {
                last_run: when_opt(&j.last_run),
                outcome: j.last_outcome.unwrap_or_default(),
                runs: j.runs,
                failures: j.failures,
                name: j.name,
            })
            .collect(),
        endpoints,
        removals,
    }))
}
