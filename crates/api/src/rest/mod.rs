//! The REST router: operational endpoints, the management API under `/api/v1`,
//! and the interactive API documentation.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod ops;
pub(crate) mod system;
pub(crate) mod users;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::{Json, Router};
use gatehouse_core::ErrorCode;
use gatehouse_core::services::Services;
use tower_http::catch_panic::CatchPanicLayer;

pub use self::ops::{Health, Ready};
pub use self::system::SystemInfo;
use crate::ApiError;
pub use crate::metrics::Metrics;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub services: Services,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) secure_cookies: bool,
}

/// Settings of the REST interface.
#[derive(Debug, Clone, Copy)]
pub struct RestOptions {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// Mark session cookies `Secure` (set when clients reach the server over TLS).
    pub secure_cookies: bool,
}

/// Builds the REST router with all its middleware.
pub fn router(services: Services, limits: RestOptions) -> Router {
    let metrics = Metrics::new();
    let state = AppState {
        services,
        metrics: metrics.clone(),
        secure_cookies: limits.secure_cookies,
    };
    let docs = Html(utoipa_scalar::Scalar::new(crate::openapi::spec()).to_html());
    let spec = Json(crate::openapi::spec());

    let routes = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/api/v1/system", get(system::info))
        .route("/api/v1/auth/register", post(auth::register))
        .route("/api/v1/auth/login", post(auth::login))
        .route("/api/v1/auth/me", get(auth::me))
        .route("/api/v1/auth/logout", post(auth::logout))
        .route("/api/v1/auth/password", put(auth::change_password))
        .route("/api/v1/auth/sessions", get(auth::list_sessions))
        .route("/api/v1/auth/sessions/{id}", delete(auth::revoke_session))
        .route(
            "/api/v1/auth/emails",
            get(auth::list_emails).post(auth::add_email),
        )
        .route("/api/v1/auth/emails/verify", post(auth::verify_email))
        .route("/api/v1/auth/emails/{email}", delete(auth::remove_email))
        .route(
            "/api/v1/auth/emails/{email}/primary",
            post(auth::make_primary),
        )
        .route("/api/v1/auth/reset", post(auth::request_reset))
        .route("/api/v1/auth/reset/confirm", post(auth::confirm_reset))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/{id}", get(users::read).patch(users::update))
        .route("/api/v1/audit-events", get(audit::list))
        .route("/docs", get(docs.clone()))
        .route("/admin/docs", get(docs))
        .route("/openapi.json", get(spec))
        .with_state(state);
    with_middleware(routes, limits, metrics)
}

/// Adds what every route gets: request IDs and logging, metrics, panic
/// recovery, the body limit, the timeout, and JSON errors for unknown routes
/// and methods.
pub fn with_middleware(routes: Router, limits: RestOptions, metrics: Arc<Metrics>) -> Router {
    routes
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers wrap each route, so the inner ones see the matched route. The
        // last added runs first: request IDs exist before anything logs.
        .layer(middleware::from_fn_with_state(
            limits.request_timeout,
            timeout,
        ))
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(
            metrics,
            crate::metrics::middleware,
        ))
        .layer(middleware::from_fn(crate::request_id::middleware))
}

async fn route_not_found() -> ApiError {
    ApiError::new(ErrorCode::RouteNotFound, "no route matches this path")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this route does not support this method",
    )
}

async fn timeout(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!("the request took longer than {} ms", limit.as_millis()),
        )
        .into_response(),
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError(gatehouse_core::Error::internal("handler panicked")).into_response()
}
