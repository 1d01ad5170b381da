//! Serving a listener, REST and gRPC alike, with bounded connections: hyper's
//! own `axum::serve` and tonic's server keep a connection open for as long as
//! its peer likes, so a few thousand half-sent requests used to hold every
//! descriptor a container has. Here each listener
//!
//! - holds at most `max_connections` connections: beyond that a new one is
//!   closed at once, with a warning in the log (at most one per 10 s);
//! - closes an HTTP/1 connection whose request header has not fully arrived
//!   `header_read_timeout` after the connection or its previous request;
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
use std::sync::atomic::{AtomicU64, Ordering};
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
    let max = limits.max_connections.clamp(1, Semaphore::MAX_PERMITS);
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

/// Serves one connection until it ends, is idle too long, or `stop`.
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
    let started = Instant::now();
    let activity = Arc::new(AtomicU64::new(0));
    let io = TokioIo::new(Tracked {
        inner: stream,
        started,
        activity: activity.clone(),
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder.http2().timer(TokioTimer::new());
    let conn = builder.serve_connection_with_upgrades(io, TowerToHyperService::new(service));
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let idle_for = started
            .elapsed()
            .saturating_sub(Duration::from_millis(activity.load(Ordering::Relaxed)));
        let check = limits.idle_timeout.saturating_sub(idle_for);
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
            () = tokio::time::sleep(check), if !closing => {
                let idle_for = started.elapsed().saturating_sub(Duration::from_millis(
                    activity.load(Ordering::Relaxed),
                ));
                if idle_for >= limits.idle_timeout {
                    conn.as_mut().graceful_shutdown();
                    closing = true;
                }
            }
        }
    }
}

/// A stream that notes when it last carried bytes (milliseconds since
/// `started`).
struct Tracked {
    inner: TcpStream,
    started: Instant,
    activity: Arc<AtomicU64>,
}

impl Tracked {
    fn touch(&self) {
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.activity.store(now, Ordering::Relaxed);
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
