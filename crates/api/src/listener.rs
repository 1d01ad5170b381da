//! Serving a listener, REST and gRPC alike, with bounded connections: hyper's
//! own `axum::serve` and tonic's server keep a connection open for as long as
//! its peer likes, so a few thousand half-sent requests used to hold every
//! descriptor a container has. Here each listener
//!
//! - holds at most `max_connections` connections: beyond that a new one is
//!   closed at once, with a warning in the log (at most one per 10 s);
//! - closes an HTTP/1 connection whose request header has not fully arrived
//!   `header_read_timeout` after its first byte (or after the connection
//!   opened), checked by a watchdog that wakes every half timeout;
//! - gracefully closes any connection (HTTP/1 keep-alive or HTTP/2) that has
//!   carried no byte either way for `idle_timeout`: a request in flight is
//!   finished first, so a slow model's silence never cuts its answer.
//!
//! Built on hyper-util's connection builder (HTTP/1 and HTTP/2, as hyper
//! serves them for axum and tonic).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::Service;

/// How long a connection may take and how many there may be.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// The longest an HTTP/1 request header may take to arrive.
    pub header_read_timeout: Duration,
    /// A connection that carries nothing for this long is closed.
    pub idle_timeout: Duration,
    /// The most connections one listener holds at once.
    pub max_connections: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            max_connections: 4096,
        }
    }
}

/// Serves `router` on `listener` until `stop`, then lets open connections
/// finish their requests; returns once every connection has closed.
pub async fn serve(
    name: &'static str,
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: CancellationToken,
) -> io::Result<()> {
    let max = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(max));
    let mut make = router.into_make_service_with_connect_info::<SocketAddr>();
    let mut warned: Option<Instant> = None;
    loop {
        let (stream, remote) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of descriptors, or the peer gave up: wait a moment.
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(10)) {
                tracing::warn!(
                    listener = name,
                    max_connections = max,
                    "connection limit reached: new connections are closed until some end (server.max_connections)"
                );
                warned = Some(Instant::now());
            }
            drop(stream);
            continue;
        };
        // Small writes (SSE events, the last bytes of an answer) go out at
        // once instead of waiting for the peer's delayed ACK (Nagle).
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
        }
        let service = match make.call(remote).await {
            Ok(service) => service,
            Err(never) => match never {},
        };
        let stop = stop.clone();
        tokio::spawn(async move {
            connection(stream, service, limits, stop).await;
            drop(permit);
        });
    }
    // Every connection holds a permit until it ends.
    let _all_closed = permits.acquire_many(max as u32).await;
    Ok(())
}

/// What a connection's watchdog knows of it, in milliseconds since it opened.
struct ConnState {
    opened: Instant,
    /// The last byte carried either way.
    activity: AtomicU64,
    /// One more than when the first byte of a request arrived while no request
    /// was being served (0: none is arriving).
    header_since: AtomicU64,
    /// Requests whose header has been read and whose answer has not started.
    in_flight: AtomicU32,
    /// HTTP/2 (its client preface came first): streams have no header wait.
    http2: AtomicBool,
}

impl ConnState {
    fn now(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Why the connection should close now, if it should.
    fn overdue(&self, limits: &ConnectionLimits) -> Option<&'static str> {
        let now = self.now();
        let header_since = self.header_since.load(Ordering::Relaxed);
        if header_since > 0
            && self.in_flight.load(Ordering::Relaxed) == 0
            && now.saturating_sub(header_since - 1) >= millis(limits.header_read_timeout)
        {
            return Some("request header not received in time");
        }
        let idle = now.saturating_sub(self.activity.load(Ordering::Relaxed));
        (idle >= millis(limits.idle_timeout)).then_some("idle")
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Serves one connection until it ends, is idle or slow too long, or `stop`.
///
/// The header-read timeout is kept by this watchdog rather than by hyper's
/// own, which arms a timer for every request (measured: 1-5 µs of CPU per
/// gateway request at 32 connections); this one wakes every half timeout.
async fn connection<S>(
    stream: TcpStream,
    service: S,
    limits: ConnectionLimits,
    stop: CancellationToken,
) where
    S: Service<
            axum::http::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let state = Arc::new(ConnState {
        opened: Instant::now(),
        activity: AtomicU64::new(0),
        // The connection itself starts the wait for the first header.
        header_since: AtomicU64::new(1),
        in_flight: AtomicU32::new(0),
        http2: AtomicBool::new(false),
    });
    let io = TokioIo::new(Tracked {
        inner: stream,
        state: state.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http2().timer(TokioTimer::new());
    let service = Counted {
        inner: service,
        state: state.clone(),
    };
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let tick = (limits.header_read_timeout / 2)
        .min(limits.idle_timeout / 2)
        .max(Duration::from_millis(100));
    let mut closing = false;
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = stop.cancelled(), if !closing => {
                conn.as_mut().graceful_shutdown();
                closing = true;
            }
            () = tokio::time::sleep(tick), if !closing => match state.overdue(&limits) {
                Some("idle") => {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
                Some(reason) => {
                    tracing::debug!(reason, "connection closed");
                    return;
                }
                None => {}
            },
        }
    }
}

/// The service of one connection, counting the requests it serves.
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    state: Arc<ConnState>,
}

impl<S, B> Service<axum::http::Request<B>> for Counted<S>
where
    S: Service<axum::http::Request<B>>,
    S::Future: Send + 'static,
    S::Response: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<B>) -> Self::Future {
        // The header is in: no wait runs until the next request's first byte.
        self.state.in_flight.fetch_add(1, Ordering::Relaxed);
        self.state.header_since.store(0, Ordering::Relaxed);
        let done = InFlight(self.state.clone());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let _done = done;
            answer.await
        })
    }
}

/// Counts a request out when its answer has started (or it was dropped).
struct InFlight(Arc<ConnState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A stream that tells its [`ConnState`] when it carries bytes.
struct Tracked {
    inner: TcpStream,
    state: Arc<ConnState>,
}

impl Tracked {
    fn touch(&self) {
        self.state
            .activity
            .store(self.state.now(), Ordering::Relaxed);
    }
}

impl AsyncRead for Tracked {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.touch();
            let state = &self.state;
            // HTTP/2 shows by its client preface, first on the connection.
            if buf.filled()[before..].starts_with(b"PRI * HTTP/2.0") {
                state.http2.store(true, Ordering::Relaxed);
                state.header_since.store(0, Ordering::Relaxed);
            }
            if !state.http2.load(Ordering::Relaxed)
                && state.in_flight.load(Ordering::Relaxed) == 0
                && state.header_since.load(Ordering::Relaxed) == 0
            {
                state.header_since.store(state.now() + 1, Ordering::Relaxed);
            }
        }
        result
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
