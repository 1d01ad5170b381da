//! `GET /api/v1/request-logs/export`: request logs as CSV or NDJSON, streamed
//! a page at a time (constant memory, however long the range), for feeding
//! a warehouse. The first page is read before the answer starts, so a
//! refused query still gets its JSON error; later pages follow the first's
//! cursor.

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use gatehouse_core::model::accounts::User;
use gatehouse_core::usage::{LogPage, LogQuery, RequestLog, UsageService};
use serde::Deserialize;
use std::sync::Arc;
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::usage::{LogsQuery, RequestLogOut};
use crate::ApiError;
use crate::auth::Authenticated;
use crate::error::ErrorBody;
use crate::extract::ApiQuery;

/// Logs read per page of an export.
const EXPORT_PAGE: usize = 500;

/// An export's format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Csv,
    Ndjson,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Csv => "text/csv; charset=utf-8",
            Format::Ndjson => "application/x-ndjson",
        }
    }

    /// `Content-Disposition` naming the file `stem` with this format's ending.
    pub fn disposition(self, stem: &str) -> String {
        let ending = match self {
            Format::Csv => "csv",
            Format::Ndjson => "ndjson",
        };
        format!("attachment; filename=\"{stem}.{ending}\"")
    }
}

/// Which request logs to export: the list's filters, no page.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    /// `csv` (default) or `ndjson`.
    #[param(value_type = Option<Format>)]
    pub format: Option<Format>,
    /// RFC 3339: logs at or after this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<DateTime<Utc>>,
    /// RFC 3339: logs at or before this time.
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<DateTime<Utc>>,
    pub user: Option<String>,
    pub key: Option<String>,
    pub organization: Option<String>,
    pub model: Option<String>,
    #[param(minimum = 100, maximum = 599)]
    pub status: Option<u16>,
    #[param(minimum = 1, maximum = 5)]
    pub status_class: Option<u16>,
}

/// The CSV columns of a request log.
const CSV_HEADER: &str = "id,at,user_id,key_id,organization_id,model,api,stream,status,latency_ms,prompt_tokens,completion_tokens,cost_usd,tokens_estimated,error\n";

/// One CSV field: quoted when it holds a separator, a quote or a line break;
/// a text a spreadsheet would run as a formula is prefixed with `'`.
pub fn csv_field(text: &str) -> String {
    let text = if text.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{text}")
    } else {
        text.to_string()
    };
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text
    }
}

fn csv_line(log: &RequestLog) -> String {
    format!(
        "{},{},{},{},{},{},{},{},{},{},{},{},{:.6},{},{}\n",
        log.id,
        log.at.to_rfc3339(),
        log.user_id,
        log.key_id,
        log.org_id.map(|o| o.to_string()).unwrap_or_default(),
        csv_field(&log.model),
        csv_field(&log.api),
        log.stream,
        log.status,
        log.latency_ms,
        log.prompt_tokens,
        log.completion_tokens,
        log.cost_micros as f64 / 1e6,
        log.tokens_estimated,
        csv_field(log.error.as_deref().unwrap_or("")),
    )
}

/// A page's lines in `format`.
fn render(format: Format, page: &LogPage) -> Bytes {
    let mut out = String::new();
    for log in &page.items {
        match format {
            Format::Csv => out.push_str(&csv_line(log)),
            Format::Ndjson => {
                let line = serde_json::to_string(&RequestLogOut::from(log.clone()))
                    .unwrap_or_else(|_| "{}".into());
                out.push_str(&line);
                out.push('\n');
            }
        }
    }
    Bytes::from(out)
}

/// Request logs of a range as CSV or NDJSON (no bodies), newest first,
/// streamed: the same filters and visibility as the list.
#[utoipa::path(get, path = "/api/v1/request-logs/export", tag = "records",
    security(("bearer" = [])), params(ExportQuery),
    responses(
        (status = 200, description = "CSV (`text/csv`) or NDJSON (`application/x-ndjson`), one log a line",
            content((String = "text/csv"), (String = "application/x-ndjson"))),
        (status = 400, description = "Invalid filter", body = ErrorBody),
        (status = 403, description = "Others' logs without the role", body = ErrorBody),
    ))]
pub async fn logs(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(q): ApiQuery<ExportQuery>,
) -> Result<Response, ApiError> {
    let format = q.format.unwrap_or_default();
    let filters = LogsQuery {
        from: q.from,
        to: q.to,
        user: q.user,
        key: q.key,
        organization: q.organization,
        model: q.model,
        status: q.status,
        status_class: q.status_class,
        limit: None,
        cursor: None,
    };
    let query = filters.query(None, EXPORT_PAGE)?;
    let usage = state.services.usage.clone();
    let first = usage.logs(&auth.user, &query).await?;
    let head = match format {
        Format::Csv => Bytes::from_static(CSV_HEADER.as_bytes()),
        Format::Ndjson => Bytes::new(),
    };
    let head = [head, render(format, &first)].concat();
    let rest = pages(usage, auth.user, query, first.next, format);
    let body = futures_util::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    Ok((
        [
            (header::CONTENT_TYPE, format.content_type().to_string()),
            (
                header::CONTENT_DISPOSITION,
                format.disposition("request-logs"),
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}

/// The pages after the first, one read each time the client takes the last.
fn pages(
    usage: Arc<UsageService>,
    viewer: User,
    query: LogQuery,
    next: Option<gatehouse_core::Id>,
    format: Format,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold(next, move |next| {
        let (usage, viewer, mut query) = (usage.clone(), viewer.clone(), query.clone());
        async move {
            query.before = Some(next?);
            match usage.logs(&viewer, &query).await {
                Ok(page) => Some((Ok(render(format, &page)), page.next)),
                Err(e) => {
                    // The answer has started: all that is left is to end it short.
                    tracing::warn!(error = %e, "request-log export ended early");
                    Some((Err(std::io::Error::other("export ended early")), None))
                }
            }
        }
    })
}
