//! Operational endpoints: liveness, readiness and metrics.

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use gatehouse_core::services::cluster::NodeStatus;
use serde::Serialize;
use utoipa::ToSchema;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use crate::ApiError;
use crate::error::ErrorBody;

#[derive(Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the process answers.
    pub status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready` when every dependency answers.
    pub status: &'static str,
    /// This instance's place in the cluster.
    pub node: NodeInfo,
    /// The email outbox (its oldest 1000 messages).
    pub outbox: OutboxInfo,
}

#[derive(Serialize, ToSchema)]
pub struct OutboxInfo {
    /// Messages not yet tried.
    pub waiting: usize,
    /// Messages whose delivery failed and is being retried.
    pub retrying: usize,
    /// Messages given up on after every attempt failed.
    pub failed: usize,
    /// `true` when mail is not going out (a delivery failed): check
    /// `email.smtp_url` and the log's `email delivery failed` lines.
    pub stuck: bool,
}

#[derive(Serialize, ToSchema)]
pub struct NodeInfo {
    /// Random ID of this process, used in leases.
    pub instance_id: String,
    /// The snowflake worker ID this instance holds.
    pub worker_id: Option<u16>,
    /// Whether this instance leads (and so runs the background jobs).
    pub leader: bool,
    /// The leader lease's fencing token, while leading.
    pub fencing_token: Option<u64>,
    /// Background jobs this instance has run.
    pub jobs: Vec<JobInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct JobInfo {
    pub name: String,
    pub last_run: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<u64>,
    /// `ok: …` or `error: …`.
    pub last_outcome: Option<String>,
    pub runs: u64,
    pub failures: u64,
}

impl From<NodeStatus> for NodeInfo {
    fn from(s: NodeStatus) -> Self {
        NodeInfo {
            instance_id: s.instance_id,
            worker_id: s.worker_id,
            leader: s.leader,
            fencing_token: s.fencing_token,
            jobs: s
                .jobs
                .into_iter()
                .map(|j| JobInfo {
                    name: j.name,
                    last_run: j.last_run,
                    last_duration_ms: j.last_duration_ms,
                    last_outcome: j.last_outcome,
                    runs: j.runs,
                    failures: j.failures,
                })
                .collect(),
        }
    }
}

/// Liveness: the process is up.
#[utoipa::path(get, path = "/health", tag = "operations",
    responses((status = 200, description = "The process is alive", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Readiness: storage answers a read. Also reports the instance's worker ID,
/// leadership, background jobs and whether email is going out.
#[utoipa::path(get, path = "/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Ready),
        (status = 503, description = "Storage is unreachable", body = ErrorBody),
    ))]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Ready>, ApiError> {
    state.services.system.check_ready().await?;
    let outbox = state.services.outbox.status().await?;
    Ok(Json(Ready {
        status: "ready",
        node: state.services.cluster.status().into(),
        outbox: OutboxInfo {
            waiting: outbox.waiting,
            retrying: outbox.retrying,
            failed: outbox.failed,
            stuck: outbox.stuck(),
        },
    }))
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    state
        .metrics
        .set_endpoint_health(state.services.catalog.health());
    let usage = &state.services.usage;
    state.metrics.set_usage(usage.pending(), usage.dropped());
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}
