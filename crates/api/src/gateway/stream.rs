//! Server-sent events passed through as they arrive (or translated), with
//! usage read from the upstream's own bytes on the way.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use gatehouse_core::catalog::health::HealthCell;
use gatehouse_core::usage::Tokens;

use super::settle::Settlement;
use super::usage::usage_of;
use super::{CAPTURE_LIMIT, Gateway, captured_text};
use crate::sse::DataLines;
use crate::translate::StreamTranslator;

/// Reads usage from a server-sent event stream as its pieces pass, wherever
/// they split it.
#[derive(Default)]
pub(super) struct StreamUsage {
    pub(super) tokens: Tokens,
    /// The event lines, read as they complete.
    pub(super) pending: DataLines,
}

impl StreamUsage {
    pub(super) fn see(&mut self, piece: &[u8]) {
        let tokens = &mut self.tokens;
        self.pending.feed(piece, |data| usage_of(data, tokens));
    }
}

/// Passes server-sent events through as they arrive, reading usage from them
/// on the way; the bookkeeping happens when the stream ends or the client
/// goes away.
pub(super) fn stream_through(
    settlement: Settlement,
    response: axum::http::Response<Body>,
    content_type: HeaderValue,
    health: Arc<HealthCell>,
    translator: Option<StreamTranslator>,
) -> Response {
    struct Watch {
        settlement: Option<Settlement>,
        usage: StreamUsage,
        bytes: usize,
        captured: Option<Vec<u8>>,
        failed: Option<String>,
    }
    impl Watch {
        fn see(&mut self, chunk: &[u8]) {
            self.bytes += chunk.len();
            if let Some(captured) = &mut self.captured {
                let room = CAPTURE_LIMIT.saturating_sub(captured.len());
                captured.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            self.usage.see(chunk);
        }
    }
    impl Drop for Watch {
        fn drop(&mut self) {
            if let Some(settlement) = self.settlement.take() {
                let captured = self.captured.take().map(|c| captured_text(&c, self.bytes));
                settlement.finish(
                    200,
                    self.usage.tokens,
                    self.bytes,
                    captured,
                    self.failed.take(),
                );
            }
        }
    }
    let capture = settlement.grant.capture_bodies;
    let gateway = settlement.gateway.clone();
    let watch = Watch {
        settlement: Some(settlement),
        usage: StreamUsage::default(),
        bytes: 0,
        captured: capture.then(Vec::new),
        failed: None,
    };
    /// What the stream carries from one piece to the next.
    struct Flow {
        upstream: axum::body::BodyDataStream,
        watch: Watch,
        translator: Option<StreamTranslator>,
        health: Arc<HealthCell>,
        gateway: Arc<Gateway>,
        ended: bool,
    }
    let flow = Flow {
        upstream: response.into_body().into_data_stream(),
        watch,
        translator,
        health,
        gateway,
        ended: false,
    };
    // Usage is read from the upstream's own bytes; the caller gets them as
    // they are, or translated. Dropping the flow (the end, or the client going
    // away) settles the call.
    let body = futures_util::stream::unfold(flow, |mut flow| async move {
        while !flow.ended {
            match flow.upstream.next().await {
                Some(Ok(bytes)) => {
                    flow.watch.see(&bytes);
                    let out = match &mut flow.translator {
                        Some(t) => Bytes::from(t.feed(&bytes)),
                        None => bytes,
                    };
                    if !out.is_empty() {
                        return Some((Ok::<Bytes, std::io::Error>(out), flow));
                    }
                }
                Some(Err(e)) => {
                    let now = flow.gateway.services.usage.env().clock.now_millis();
                    flow.health.failure(now, format!("the stream broke: {e}"));
                    flow.watch.failed = Some(format!("upstream stream broke: {e}"));
                    flow.ended = true;
                    let e = std::io::Error::other("the model's endpoint broke off the stream");
                    return Some((Err(e), flow));
                }
                None => {
                    flow.ended = true;
                    let tail = flow.translator.as_mut().map(StreamTranslator::finish);
                    if let Some(tail) = tail.filter(|t| !t.is_empty()) {
                        return Some((Ok(Bytes::from(tail)), flow));
                    }
                }
            }
        }
        None
    });
    let mut response = Response::new(Body::from_stream(body));
    *response.status_mut() = StatusCode::OK;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, content_type);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}
