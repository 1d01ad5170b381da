//! `gatehouse.v1.RecordsService`: request logs streamed from a cursor, for
//! warehouses. The stream reads the logs' own time-ordered range a page at
//! a time and sends only logs older than the settle time, so a log that one
//! instance writes a moment after another's newer one is not skipped.

use std::time::Duration;

use gatehouse_core::Id;
use gatehouse_core::services::Services;
use gatehouse_core::usage::RequestLog;
use gatehouse_grpc::v1::records_service_server::RecordsService;
use gatehouse_grpc::v1::{RequestLog as LogOut, StreamRequestLogsRequest};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use super::DirectoryGrpc;
use crate::ApiError;

/// How often a caught-up stream looks for new logs.
const POLL: Duration = Duration::from_millis(500);
/// Logs read per page.
const PAGE: usize = 500;
/// How old a log must be before it is sent, by default.
const SETTLE_SECONDS: u32 = 10;

pub struct RecordsGrpc {
    pub(super) directory: DirectoryGrpc,
    pub(super) services: Services,
    pub(super) stop: CancellationToken,
}

fn log_out(l: RequestLog) -> LogOut {
    LogOut {
        id: l.id.to_string(),
        at: l.at.to_rfc3339(),
        user_id: l.user_id.to_string(),
        key_id: l.key_id.to_string(),
        organization_id: l.org_id.map(|o| o.to_string()).unwrap_or_default(),
        model: l.model,
        api: l.api,
        stream: l.stream,
        status: u32::from(l.status),
        latency_ms: l.latency_ms,
        prompt_tokens: l.prompt_tokens,
        completion_tokens: l.completion_tokens,
        cost_micros: l.cost_micros,
        tokens_estimated: l.tokens_estimated,
        error: l.error.unwrap_or_default(),
        captured: l.captured,
    }
}

#[tonic::async_trait]
impl RecordsService for RecordsGrpc {
    type StreamRequestLogsStream = tokio_stream::wrappers::ReceiverStream<Result<LogOut, Status>>;

    async fn stream_request_logs(
        &self,
        request: Request<StreamRequestLogsRequest>,
    ) -> Result<Response<Self::StreamRequestLogsStream>, Status> {
        let viewer = self.directory.caller(&request).await?;
        let usage = self.services.usage.clone();
        let clock = usage.env().clock.clone();
        let settle = match request.get_ref().settle_seconds {
            0 => SETTLE_SECONDS,
            s @ 1..=300 => s,
            _ => return Err(Status::invalid_argument("`settle_seconds` is 1 to 300")),
        };
        let settle_ms = i64::from(settle) * 1000;
        let mut after = match request.get_ref().after_id.trim() {
            "" => Id(Id::first_at(clock.now_millis() - settle_ms)
                .0
                .saturating_sub(1)),
            id => id
                .parse()
                .map_err(|_| Status::invalid_argument("`after_id` is not an ID"))?,
        };
        // The first read says now whether the caller may stream at all.
        let until = Id::first_at(clock.now_millis() - settle_ms);
        let first = usage
            .logs_between(&viewer, after, until, PAGE)
            .await
            .map_err(ApiError)?;
        let (tx, rx) = tokio::sync::mpsc::channel(PAGE);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            let mut page = first;
            loop {
                let full = page.len() >= PAGE;
                for log in page {
                    after = log.id;
                    if tx.send(Ok(log_out(log))).await.is_err() {
                        return;
                    }
                }
                if !full {
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(POLL) => {}
                    }
                }
                let until = Id::first_at(clock.now_millis() - settle_ms);
                page = match usage.logs_between(&viewer, after, until, PAGE).await {
                    Ok(page) => page,
                    Err(e) => {
                        let _ = tx.send(Err(ApiError(e).into())).await;
                        return;
                    }
                };
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}
