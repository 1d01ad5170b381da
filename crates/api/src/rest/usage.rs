//! `/api/v1/usage` and `/api/v1/request-logs`: what gateway calls cost, and
//! each call's record.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, Utc};
use gatehouse_core::Id;
use gatehouse_core::usage::{GroupBy, LogQuery, RequestLog, StatsQuery, StatsRow};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::orgs::id;
use super::page::{List, Order};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::ApiQuery;
use gatehouse_core::page::Page;

/// Which statistics: the CSV export's parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageFilter {
    /// First day (UTC), `YYYY-MM-DD`; default: 30 days ago.
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last day (UTC), `YYYY-MM-DD`; default: today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    /// `day` (default), `model`, `key` or `user`.
    #[param(value_type = Option<crate::rest::names::GroupBy>)]
    pub group_by: Option<GroupBy>,
    /// One user's usage (platform `admin`, `admin_readonly`; others: yourself).
    pub user: Option<String>,
    /// Everyone's usage (platform `admin`, `admin_readonly`).
    #[serde(default)]
    pub all: bool,
}

/// The statistics' parameters and a page (serde cannot flatten a query and
/// still refuse unknown parameters, so the filter's fields are repeated).
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// First day (UTC), `YYYY-MM-DD`; default: 30 days ago.
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last day (UTC), `YYYY-MM-DD`; default: today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    /// `day` (default), `model`, `key` or `user`.
    #[param(value_type = Option<crate::rest::names::GroupBy>)]
    pub group_by: Option<GroupBy>,
    /// One user's usage (platform `admin`, `admin_readonly`; others: yourself).
    pub user: Option<String>,
    /// Everyone's usage (platform `admin`, `admin_readonly`).
    #[serde(default)]
    pub all: bool,
    /// Rows in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,512}$")]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct UsageRow {
    /// The day, model, key ID or user ID.
    pub group: String,
    pub requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    /// US dollars.
    pub cost_usd: f64,
}

impl From<StatsRow> for UsageRow {
    fn from(r: StatsRow) -> Self {
        UsageRow {
            group: r.group,
            requests: r.requests,
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
            cost_usd: r.cost_micros as f64 / 1e6,
        }
    }
}

async fn rows(
    state: &AppState,
    auth: &Authenticated,
    q: UsageFilter,
) -> Result<Vec<StatsRow>, ApiError> {
    let today = state.services.usage.env().clock.now().date_naive();
    let query = StatsQuery {
        from: q.from.unwrap_or(today - chrono::Days::new(30)),
        to: q.to.unwrap_or(today),
        user: q.user.as_deref().map(id).transpose()?,
        all: q.all,
        group_by: q.group_by.unwrap_or(GroupBy::Day),
    };
    Ok(state.services.usage.stats(&auth.user, &query).await?)
}

/// Usage statistics: your own, or (platform readers) one user's or everyone's,
/// grouped by day, model, key or user. Up to `usage.flush_ms` behind.
#[utoipa::path(get, path = "/api/v1/usage", tag = "records",
    security(("bearer" = [])), params(UsageQuery),
    responses(
        (status = 200, description = "A page of rows, by group", body = List<UsageRow>),
        (status = 400, description = "Invalid range", body = ErrorBody),
        (status = 403, description = "Others' usage without being a platform reader", body = ErrorBody),
    ))]
pub async fn stats(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<List<UsageRow>>, ApiError> {
    let page = super::page::request(query.limit, query.cursor)?;
    let filter = UsageFilter {
        from: query.from,
        to: query.to,
        group_by: query.group_by,
        user: query.user,
        all: query.all,
    };
    let rows = rows(&state, &auth, filter).await?;
    Ok(Json(List::paged(rows, &page, Order::Ascending, |r| {
        r.group.clone()
    })?))
}

/// The same statistics as CSV (`group,requests,prompt_tokens,completion_tokens,cost_usd`).
#[utoipa::path(get, path = "/api/v1/usage/export", tag = "records",
    security(("bearer" = [])), params(UsageFilter),
    responses(
        (status = 200, description = "CSV", content_type = "text/csv", body = String),
        (status = 403, description = "Others' usage without being a platform reader", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<UsageFilter>,
) -> Result<Response, ApiError> {
    let rows = rows(&state, &auth, query).await?;
    let mut csv = String::from("group,requests,prompt_tokens,completion_tokens,cost_usd\n");
    for r in rows {
        let group = if r.group.contains([',', '"', '\n']) {
            format!("\"{}\"", r.group.replace('"', "\"\""))
        } else {
            r.group
        };
        csv.push_str(&format!(
            "{group},{},{},{},{:.6}\n",
            r.requests,
            r.prompt_tokens,
            r.completion_tokens,
            r.cost_micros as f64 / 1e6
        ));
    }
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"usage.csv\"",
            ),
        ],
        csv,
    )
        .into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LogsQuery {
    /// RFC 3339: logs at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339: logs at or before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub key: Option<String>,
    pub model: Option<String>,
    /// Only answers with this HTTP status.
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<u16>,
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct RequestLogOut {
    #[schema(value_type = String)]
    pub id: Id,
    pub at: DateTime<Utc>,
    #[schema(value_type = String)]
    pub key_id: Id,
    #[schema(value_type = String)]
    pub user_id: Id,
    pub model: String,
    pub api: String,
    pub stream: bool,
    pub status: u16,
    pub latency_ms: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
    /// The upstream reported no usage; the gateway estimated it.
    pub tokens_estimated: bool,
    pub error: Option<String>,
    /// Only when captured, and only for `request_viewer` holders and the caller.
    pub request_body: Option<String>,
    pub response_body: Option<String>,
}

impl From<RequestLog> for RequestLogOut {
    fn from(l: RequestLog) -> Self {
        RequestLogOut {
            id: l.id,
            at: l.at,
            key_id: l.key_id,
            user_id: l.user_id,
            model: l.model,
            api: l.api,
            stream: l.stream,
            status: l.status,
            latency_ms: l.latency_ms,
            prompt_tokens: l.prompt_tokens,
            completion_tokens: l.completion_tokens,
            cost_usd: l.cost_micros as f64 / 1e6,
            tokens_estimated: l.tokens_estimated,
            error: l.error,
            request_body: l.request_body,
            response_body: l.response_body,
        }
    }
}

/// Request logs, newest first: your own; everyone's for platform readers and
/// `request_viewer` holders. Bodies only for `request_viewer` and the caller.
#[utoipa::path(get, path = "/api/v1/request-logs", tag = "records",
    security(("bearer" = [])), params(LogsQuery),
    responses(
        (status = 200, description = "A page of request logs, newest first", body = List<RequestLogOut>),
        (status = 403, description = "Others' logs without the role", body = ErrorBody),
    ))]
pub async fn logs(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Json<List<RequestLogOut>>, ApiError> {
    let page = super::page::request(q.limit, q.cursor)?;
    let query = LogQuery {
        from: q.from,
        to: q.to,
        user: q.user.as_deref().map(id).transpose()?,
        key: q.key.as_deref().map(id).transpose()?,
        model: q.model,
        status: q.status,
        before: page.after_key().map_err(ApiError)?,
        limit: page.limit + 1,
    };
    let logs = state.services.usage.logs(&auth.user, &query).await?;
    Ok(Json(List::of(Page::from_lookahead(
        logs,
        page.limit,
        |l| l.id,
    ))))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(export))
        .routes(routes!(logs))
}
