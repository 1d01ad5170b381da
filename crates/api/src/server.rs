//! The server: REST and gRPC in one process, bound before they run so tests can
//! use port 0, stopped gracefully when the shutdown future completes.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use gatehouse_core::services::Services;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic_health::server::HealthReporter;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::listener::{self, ConnectionLimits};
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
    /// Header-read and idle timeouts and the connection cap, per listener.
    pub connections: ConnectionLimits,
    /// Single sign-on providers.
    pub sso: crate::sso::SsoSettings,
    /// Where the web console is served.
    pub console: crate::console::ConsoleSettings,
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
    connections: ConnectionLimits,
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
            settings.sso.clone(),
            &settings.console,
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
            connections: settings.connections,
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

        // Both listeners bound their connections the same way (header-read
        // and idle timeouts, a cap): see `listener`.
        let http = listener::serve(
            "http",
            self.http,
            self.router,
            self.connections,
            stop.clone(),
        );
        let grpc_router = self.grpc_routes.prepare().into_axum_router().layer(
            tower::ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(TraceLayer::new_for_grpc().make_span_with(grpc_span))
                .layer(PropagateRequestIdLayer::x_request_id()),
        );
        let grpc = listener::serve(
            "grpc",
            self.grpc,
            grpc_router,
            self.connections,
            stop.clone(),
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
            grpc
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

fn grpc_span(request: &axum::http::Request<axum::body::Body>) -> tracing::Span {
    let request_id = request
        .headers()
        .get(crate::request_id::HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("grpc", request_id, path = %request.uri().path())
}
