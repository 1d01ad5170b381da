//! The server: REST and gRPC in one process, bound before they run so tests can
//! use port 0, stopped gracefully when the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::serve::ListenerExt as _;
use gatehouse_core::services::Services;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::rest::{self, RestOptions};

/// What the server needs to know from configuration.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub body_limit_bytes: usize,
    /// The largest non-streamed gateway answer read from an endpoint.
    pub max_answer_bytes: usize,
    pub request_timeout: Duration,
    /// How long in-flight requests may take to finish after a shutdown signal.
    pub shutdown_grace: Duration,
    /// Mark session cookies `Secure`.
    pub secure_cookies: bool,
}

/// A bound, not yet running server.
pub struct Application {
    http: TcpListener,
    grpc: TcpListener,
    router: Router,
    grpc_routes: Routes,
    health: HealthReporter,
    services: Services,
    shutdown_grace: Duration,
    /// Cancelled at shutdown; long-lived streams end on it.
    stop: CancellationToken,
}

impl Application {
    /// Binds both listeners and builds the routers.
    pub async fn build(settings: &ServerSettings, services: Services) -> std::io::Result<Self> {
        let http = TcpListener::bind(settings.http_addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", settings.http_addr),
            )
        })?;
        let grpc = TcpListener::bind(settings.grpc_addr).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("cannot listen on {}: {e}", settings.grpc_addr),
            )
        })?;
        let router = rest::router(
            services.clone(),
            RestOptions {
                body_limit_bytes: settings.body_limit_bytes,
                max_answer_bytes: settings.max_answer_bytes,
                request_timeout: settings.request_timeout,
                secure_cookies: settings.secure_cookies,
            },
        );
        let stop = CancellationToken::new();
        let (grpc_routes, health) =
            crate::grpc::routes(services.clone(), stop.clone()).map_err(std::io::Error::other)?;
        Ok(Application {
            http,
            grpc,
            router,
            grpc_routes,
            health,
            services,
            shutdown_grace: settings.shutdown_grace,
            stop,
        })
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.http.local_addr()
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.grpc.local_addr()
    }

    /// Serves until `shutdown` completes, then stops accepting connections and
    /// lets in-flight requests finish for up to the grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stop = self.stop.clone();
        tracing::info!(
            http = %self.http.local_addr()?,
            grpc = %self.grpc.local_addr()?,
            "serving"
        );

        // Small writes (SSE events, the last bytes of an answer) go out at
        // once instead of waiting for the peer's delayed ACK (Nagle).
        let http_listener = self.http.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY on a connection");
            }
        });
        let http = axum::serve(
            http_listener,
            self.router
                .into_make_service_with_connect_info::<SocketAddr>(),
        )
        .with_graceful_shutdown(stop.clone().cancelled_owned())
        .into_future();
        let grpc = tonic::transport::Server::builder()
            .layer(
                tower::ServiceBuilder::new()
                    .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                    .layer(TraceLayer::new_for_grpc().make_span_with(grpc_span))
                    .layer(PropagateRequestIdLayer::x_request_id()),
            )
            .add_routes(self.grpc_routes)
            .serve_with_incoming_shutdown(
                TcpListenerStream::new(self.grpc),
                stop.clone().cancelled_owned(),
            );
        let health = tokio::spawn(crate::grpc::report_health(
            self.services,
            self.health,
            stop.clone(),
        ));

        let trigger = stop.clone();
        tokio::spawn(async move {
            shutdown.await;
            tracing::info!("shutting down: finishing in-flight requests");
            trigger.cancel();
        });

        let servers = async {
            let (http, grpc) = tokio::join!(http, grpc);
            http?;
            grpc.map_err(std::io::Error::other)
        };
        let grace = self.shutdown_grace;
        let result = tokio::select! {
            result = servers => result,
            _ = async { stop.cancelled().await; tokio::time::sleep(grace).await } => {
                tracing::warn!(grace_secs = grace.as_secs(), "grace period over: dropping remaining connections");
                Ok(())
            }
        };
        stop.cancel();
        let _ = health.await;
        tracing::info!("stopped");
        result
    }
}

fn grpc_span(request: &axum::http::Request<tonic::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(crate::request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("grpc", request_id, path = %request.uri().path())
}
