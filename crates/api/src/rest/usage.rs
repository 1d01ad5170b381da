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
use super::export::{Format, csv_field};
use super::orgs::id;
use super::page::{List, Order};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::{ApiPath, ApiQuery};

/// Which statistics: the export's parameters.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageFilter {
    /// `csv` (default) or `ndjson`.
    #[param(value_type = Option<super::export::Format>)]
    pub format: Option<super::export::Format>,
    /// First day (UTC), `YYYY-MM-DD`; default: 30 days ago.
    #[param(value_type = Option<String>, format = Date)]
    pub from: Option<NaiveDate>,
    /// Last day (UTC), `YYYY-MM-DD`; default: today.
    #[param(value_type = Option<String>, format = Date)]
    pub to: Option<NaiveDate>,
    /// `day` (default), `model`, `key`, `user`, or `organization` (with `all=true`).
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
    /// `day` (default), `model`, `key`, `user`, or `organization` (with `all=true`).
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
    /// The day, model, key ID, user ID or organization ID.
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
        format: None,
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

/// The same statistics as CSV (`group,requests,prompt_tokens,completion_tokens,cost_usd`)
/// or NDJSON (one row a line). Rollups only: (days × groups) rows at most.
#[utoipa::path(get, path = "/api/v1/usage/export", tag = "records",
    security(("bearer" = [])), params(UsageFilter),
    responses(
        (status = 200, description = "CSV (`text/csv`) or NDJSON (`application/x-ndjson`)",
            content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 403, description = "Others' usage without being a platform reader", body = ErrorBody),
    ))]
pub async fn export(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<UsageFilter>,
) -> Result<Response, ApiError> {
    let format = query.format.unwrap_or_default();
    let rows = rows(&state, &auth, query).await?;
    let mut out = match format {
        Format::Csv => String::from("group,requests,prompt_tokens,completion_tokens,cost_usd\n"),
        Format::Ndjson => String::new(),
    };
    for r in rows {
        match format {
            Format::Csv => out.push_str(&format!(
                "{},{},{},{},{:.6}\n",
                csv_field(&r.group),
                r.requests,
                r.prompt_tokens,
                r.completion_tokens,
                r.cost_micros as f64 / 1e6
            )),
            Format::Ndjson => {
                let row = serde_json::to_string(&UsageRow::from(r))
                    .map_err(|e| ApiError(gatehouse_core::Error::internal(e)))?;
                out.push_str(&row);
                out.push('\n');
            }
        }
    }
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (header::CONTENT_DISPOSITION, format.disposition("usage")),
        ],
        out,
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
    /// One user's logs (platform readers and `request_viewer`; others: yourself).
    pub user: Option<String>,
    /// One API key's logs.
    pub key: Option<String>,
    /// The logs of calls made for one organization.
    pub organization: Option<String>,
    /// One model's logs (its public name).
    pub model: Option<String>,
    /// Only answers with this HTTP status.
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<u16>,
    /// Only answers of this status class: `2` for 2xx … `5` for 5xx.
    #[param(minimum = 1, maximum = 5)]
    pub status_class: Option<u16>,
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page. A page may hold fewer items
    /// than `limit` (even none) and still have a next one: each page
    /// examines a bounded number of index entries.
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
    /// The organization the call was made for (the key's; the chat's in the
    /// playground), if any.
    #[schema(value_type = Option<String>)]
    pub organization_id: Option<Id>,
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
    /// The bodies were captured (the key's organization turned capture on):
    /// `GET /api/v1/request-logs/{id}` shows them to whoever may read them.
    pub captured: bool,
    /// Only in `GET /api/v1/request-logs/{id}`, when captured, and only for
    /// `request_viewer` holders and the caller; `null` in lists.
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
            organization_id: l.org_id,
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
            captured: l.captured,
            request_body: l.request_body,
            response_body: l.response_body,
        }
    }
}

impl LogsQuery {
    /// The core query for a page before `before` of size `limit`.
    pub(crate) fn query(self, before: Option<Id>, limit: usize) -> Result<LogQuery, ApiError> {
        Ok(LogQuery {
            from: self.from,
            to: self.to,
            user: self.user.as_deref().map(id).transpose()?,
            key: self.key.as_deref().map(id).transpose()?,
            org: self.organization.as_deref().map(id).transpose()?,
            model: self.model,
            status: self.status,
            status_class: self.status_class,
            before,
            limit,
        })
    }
}

/// Request logs, newest first, without bodies: your own; everyone's for
/// platform readers and `request_viewer` holders. Each filter walks its own
/// index, so a page costs the same however many logs there are.
#[utoipa::path(get, path = "/api/v1/request-logs", tag = "records",
    security(("bearer" = [])), params(LogsQuery),
    responses(
        (status = 200, description = "A page of request logs, newest first", body = List<RequestLogOut>),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 403, description = "Others' logs without the role", body = ErrorBody),
    ))]
pub async fn logs(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(mut q): ApiQuery<LogsQuery>,
) -> Result<Json<List<RequestLogOut>>, ApiError> {
    let page = super::page::request(q.limit.take(), q.cursor.take())?;
    let query = q.query(page.after_key().map_err(ApiError)?, page.limit)?;
    let found = state.services.usage.logs(&auth.user, &query).await?;
    Ok(Json(List {
        items: found.items.into_iter().map(Into::into).collect(),
        next_cursor: found.next.map(|id| id.to_string()),
    }))
}

/// One request log, with its captured bodies for `request_viewer` holders
/// and the user who made the call. Another user's log is not found unless
/// you read everyone's.
#[utoipa::path(get, path = "/api/v1/request-logs/{id}", tag = "records",
    security(("bearer" = [])), params(("id" = String, Path, description = "Request log ID")),
    responses(
        (status = 200, description = "The request log", body = RequestLogOut),
        (status = 404, description = "No such log, or not yours to read", body = ErrorBody),
    ))]
pub async fn log(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(log_id): ApiPath<String>,
) -> Result<Json<RequestLogOut>, ApiError> {
    let log = state.services.usage.log(&auth.user, id(&log_id)?).await?;
    Ok(Json(log.into()))
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(stats))
        .routes(routes!(export))
        .routes(routes!(logs))
        .routes(routes!(log))
        .routes(routes!(super::export::logs))
}
