//! Server-sent events passed through as they arrive (or translated), with
//! usage read from the upstream's own bytes on the way.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt;
use gatehouse_core::catalog::health::HealthCell;
use gatehouse_core::usage::Tokens;
use serde_json::value::RawValue;

use super::settle::Settlement;
use super::usage::{EMPTY_CHOICES, USAGE, usage_of};
use super::{CAPTURE_LIMIT, Gateway, captured_text};
use crate::sse::{DataLines, MAX_EVENT_LINE};
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

/// Drops the usage-only chunk (`"choices": []` with `usage`) from an OpenAI
/// chat stream whose client did not ask for it (`stream_options.
/// include_usage`): Gatehouse asks the upstream for it to count the call,
/// and OpenAI sends it only when asked, so clients that read `choices[0]` of
/// every chunk break on it. Every other line passes unchanged.
///
/// Line by line and bounded like [`DataLines`]: only an unfinished line is
/// held, and one longer than [`MAX_EVENT_LINE`] is passed on as it comes.
#[derive(Debug, Default)]
pub(super) struct HideUsageChunk {
    pending: Vec<u8>,
    /// Passing an overlong line through until its end.
    overlong: bool,
    /// The blank line that ended a dropped event is dropped too.
    skip_blank: bool,
}

impl HideUsageChunk {
    /// What the client gets of `piece`: the piece itself, uncopied, when it
    /// holds whole lines and no empty `choices` (every chunk but the last).
    pub(super) fn pass(&mut self, piece: Bytes) -> Bytes {
        let clean = self.pending.is_empty() && !self.overlong && !self.skip_blank;
        let no_empty_choices = EMPTY_CHOICES.iter().all(|f| f.find(&piece).is_none());
        if clean && no_empty_choices && piece.ends_with(b"\n") {
            return piece;
        }
        Bytes::from(self.feed(&piece))
    }

    /// What the client gets of `piece`.
    pub(super) fn feed(&mut self, piece: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(piece.len());
        let mut rest = piece;
        if self.overlong || !self.pending.is_empty() {
            let Some(end) = memchr::memchr(b'\n', rest) else {
                self.hold(rest, &mut out);
                return out;
            };
            if self.overlong {
                out.extend_from_slice(&rest[..=end]);
                self.overlong = false;
            } else {
                let mut line = std::mem::take(&mut self.pending);
                line.extend_from_slice(&rest[..=end]);
                self.line(&line, &mut out);
            }
            rest = &rest[end + 1..];
        }
        while let Some(end) = memchr::memchr(b'\n', rest) {
            self.line(&rest[..=end], &mut out);
            rest = &rest[end + 1..];
        }
        self.hold(rest, &mut out);
        out
    }

    /// The unfinished line left at the end of the stream.
    pub(super) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    fn hold(&mut self, part: &[u8], out: &mut Vec<u8>) {
        if self.overlong {
            out.extend_from_slice(part);
        } else if self.pending.len() + part.len() > MAX_EVENT_LINE {
            out.append(&mut self.pending);
            out.extend_from_slice(part);
            self.overlong = true;
        } else {
            self.pending.extend_from_slice(part);
        }
    }

    /// One whole line, with its `\n`.
    fn line(&mut self, line: &[u8], out: &mut Vec<u8>) {
        let text = line.trim_ascii_end();
        if std::mem::take(&mut self.skip_blank) && text.is_empty() {
            return;
        }
        if is_usage_only(text) {
            self.skip_blank = true;
            return;
        }
        out.extend_from_slice(line);
    }
}

/// A `data:` line carrying OpenAI's usage-only chunk (`"choices": []` with a
/// `usage` object).
fn is_usage_only(line: &[u8]) -> bool {
    let Some(data) = line.strip_prefix(b"data:") else {
        return false;
    };
    // Most chunks carry `"usage": null` or none: only parse the rest.
    if USAGE.find(data).is_none() {
        return false;
    }
    /// The two members that tell, left unparsed (the rest is skipped).
    #[derive(serde::Deserialize)]
    struct Probe<'a> {
        #[serde(borrow)]
        choices: Option<&'a RawValue>,
        #[serde(borrow)]
        usage: Option<&'a RawValue>,
    }
    let Ok(Probe {
        choices: Some(choices),
        usage: Some(usage),
    }) = serde_json::from_slice(data.trim_ascii())
    else {
        return false;
    };
    let empty = choices
        .get()
        .strip_prefix('[')
        .and_then(|c| c.strip_suffix(']'))
        .is_some_and(|inside| inside.trim().is_empty());
    empty && usage.get().starts_with('{')
}

/// How the client gets the upstream's events.
pub(super) enum Relay {
    /// Unchanged.
    AsIs,
    /// Unchanged but for the usage-only chunk it did not ask for.
    HideUsage(HideUsageChunk),
    /// Translated to the other API.
    Translate(StreamTranslator),
}

impl Relay {
    fn feed(&mut self, bytes: Bytes) -> Bytes {
        match self {
            Relay::AsIs => bytes,
            Relay::HideUsage(filter) => filter.pass(bytes),
            Relay::Translate(t) => Bytes::from(t.feed(&bytes)),
        }
    }

    fn finish(&mut self) -> Vec<u8> {
        match self {
            Relay::AsIs => Vec::new(),
            Relay::HideUsage(filter) => filter.finish(),
            Relay::Translate(t) => t.finish(),
        }
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
    relay: Relay,
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
        relay: Relay,
        health: Arc<HealthCell>,
        gateway: Arc<Gateway>,
        ended: bool,
    }
    let flow = Flow {
        upstream: response.into_body().into_data_stream(),
        watch,
        relay,
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
                    let out = flow.relay.feed(bytes);
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
                    let tail = flow.relay.finish();
                    if !tail.is_empty() {
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
