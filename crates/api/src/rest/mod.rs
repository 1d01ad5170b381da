//! The REST router: operational endpoints, the management API under `/api/v1`,
//! and the interactive API documentation.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod catalog;
pub(crate) mod clients;
pub mod docs;
pub(crate) mod export;
pub(crate) mod factors;
pub(crate) mod keys;
pub(crate) mod names;
pub(crate) mod ops;
pub(crate) mod orgs;
pub(crate) mod page;
pub(crate) mod sso;
pub(crate) mod system;
pub(crate) mod teams;
pub(crate) mod usage;
pub(crate) mod users;
pub(crate) mod vaults;
pub(crate) mod work;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use gatehouse_core::ErrorCode;
use gatehouse_core::idempotency::Idempotency;
use gatehouse_core::keys::index::AccessIndex;
use gatehouse_core::services::Services;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::request_id;

pub use self::ops::{Health, Ready};
pub use self::system::SystemInfo;
use crate::ApiError;
use crate::gateway;
pub use crate::metrics::Metrics;

/// What every handler can reach. Behind one `Arc`: axum clones the state for
/// every request, and one reference count is cheaper than one per service.
#[derive(Clone)]
pub struct AppState(Arc<AppStateInner>);

impl std::ops::Deref for AppState {
    type Target = AppStateInner;

    fn deref(&self) -> &AppStateInner {
        &self.0
    }
}

pub struct AppStateInner {
    pub services: Services,
    pub(crate) gateway: Arc<crate::gateway::Gateway>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) secure_cookies: bool,
    pub(crate) sso: Arc<crate::sso::Sso>,
    /// The web console's path prefix (empty: `/`).
    pub(crate) console_base: String,
}

/// Settings of the REST interface.
#[derive(Debug, Clone, Copy)]
pub struct RestOptions {
    pub body_limit_bytes: usize,
    /// The largest non-streamed gateway answer read from an endpoint.
    pub max_answer_bytes: usize,
    pub request_timeout: Duration,
    /// Mark session cookies `Secure` (set when clients reach the server over TLS).
    pub secure_cookies: bool,
}

/// Every documented route: each module lists its handlers, and each handler's
/// `#[utoipa::path]` annotation gives its method and path — one declaration
/// that the router and the OpenAPI document are both built from.
pub(crate) fn documented() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::openapi())
        .merge(ops::routes())
        .merge(system::routes())
        .merge(auth::routes())
        .merge(sso::routes())
        .merge(factors::routes())
        .merge(work::routes())
        .merge(users::routes())
        .merge(orgs::routes())
        .merge(teams::routes())
        .merge(catalog::routes())
        .merge(vaults::routes())
        .merge(clients::routes())
        .merge(keys::routes())
        .merge(audit::routes())
        .merge(usage::routes())
        .routes(routes!(gateway::chat_completions))
        .routes(routes!(gateway::embeddings))
        .routes(routes!(gateway::messages))
        .routes(routes!(gateway::count_tokens))
        .routes(routes!(gateway::models))
        .routes(routes!(gateway::model))
}

/// The documentation pages, their script and the document itself: served,
/// not operations.
const UNDOCUMENTED: [&str; 4] = ["/docs", "/admin/docs", docs::SCRIPT_PATH, "/openapi.json"];

/// The routes of the REST interface, with the documentation pages, the
/// gateway's routes without their `/v1` prefix (SPEC §5) and the console.
fn route_table(console_base: &str) -> Router<AppState> {
    let (router, _) = documented().split_for_parts();
    let spec = crate::openapi::spec();
    router
        .route(UNDOCUMENTED[0], routing::get(docs::page))
        .route(UNDOCUMENTED[1], routing::get(docs::page))
        .route(UNDOCUMENTED[2], routing::get(docs::script))
        .route(UNDOCUMENTED[3], routing::get(Json(spec)))
        .route(UNPREFIXED[0], routing::post(gateway::chat_completions))
        .route(UNPREFIXED[1], routing::post(gateway::embeddings))
        .route(UNPREFIXED[2], routing::post(gateway::messages))
        .route(UNPREFIXED[3], routing::post(gateway::count_tokens))
        .route(UNPREFIXED[4], routing::get(gateway::models))
        .route(UNPREFIXED[5], routing::get(gateway::model))
        .merge(crate::console::routes(console_base))
}

/// The gateway's routes as OpenAI's and Anthropic's SDKs also call them,
/// without `/v1` (a base URL given without it).
pub const UNPREFIXED: [&str; 6] = [
    "/chat/completions",
    "/embeddings",
    "/messages",
    "/messages/count_tokens",
    "/models",
    "/models/{model}",
];

impl axum::extract::FromRef<AppState> for Arc<crate::gateway::Gateway> {
    fn from_ref(state: &AppState) -> Self {
        state.gateway.clone()
    }
}

/// Every (method, path template) the REST router serves.
pub fn routes() -> Vec<(Method, String)> {
    let spec = documented().into_openapi();
    let mut routes: Vec<(Method, String)> = UNDOCUMENTED
        .iter()
        .map(|path| (Method::GET, path.to_string()))
        .collect();
    for (path, item) in &spec.paths.paths {
        let operations = [
            (Method::GET, &item.get),
            (Method::POST, &item.post),
            (Method::PUT, &item.put),
            (Method::PATCH, &item.patch),
            (Method::DELETE, &item.delete),
        ];
        for (method, operation) in operations {
            if operation.is_some() {
                routes.push((method, path.clone()));
            }
        }
    }
    routes
}

/// Builds the REST router with all its middleware.
pub fn router(
    services: Services,
    limits: RestOptions,
    sso: crate::sso::SsoSettings,
    console: &crate::console::ConsoleSettings,
) -> Router {
    let metrics = Metrics::new();
    let state = AppState(Arc::new(AppStateInner {
        gateway: crate::gateway::Gateway::new(
            services.clone(),
            crate::gateway::Limits {
                body_bytes: limits.body_limit_bytes,
                answer_bytes: limits.max_answer_bytes,
            },
        ),
        services,
        metrics: metrics.clone(),
        secure_cookies: limits.secure_cookies,
        sso: Arc::new(crate::sso::Sso::new(sso)),
        console_base: console.base_path.clone(),
    }));
    let index = state.services.keys.index().clone();
    let idempotency = state.services.idempotency.clone();
    let routes = route_table(&console.base_path).with_state(state);
    layered(routes, limits, metrics, Some((index, idempotency)))
}

/// Adds what every route gets: request IDs and logging, metrics, panic
/// recovery, the body limit, the timeout, and JSON errors for unknown routes
/// and methods.
pub fn with_middleware(routes: Router, limits: RestOptions, metrics: Arc<Metrics>) -> Router {
    layered(routes, limits, metrics, None)
}

fn layered(
    routes: Router,
    limits: RestOptions,
    metrics: Arc<Metrics>,
    management: Option<(Arc<AccessIndex>, Arc<Idempotency>)>,
) -> Router {
    let (index, idempotency) = management.unzip();
    let around = Arc::new(Around {
        metrics,
        timeout: limits.request_timeout,
        body_limit: limits.body_limit_bytes,
        index,
        idempotency,
    });
    routes
        .fallback(route_not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // Layers wrap each route, so they see the matched route. The last
        // added runs first. One middleware function does the per-request
        // bookkeeping: each layer costs the gateway's hot path.
        .layer(DefaultBodyLimit::max(limits.body_limit_bytes))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(around, around_every_request))
}

/// What [`around_every_request`] needs.
struct Around {
    metrics: Arc<Metrics>,
    /// For the management API; gateway calls run on their endpoint's own
    /// timeouts (answers can take minutes).
    timeout: Duration,
    /// Brought up to date after each successful management write, so that a
    /// role, team or key change counts for API keys from the very next
    /// request. The gateway's own path stays free of storage reads.
    index: Option<Arc<AccessIndex>>,
    /// Applies writes sent with an `Idempotency-Key` at most once.
    idempotency: Option<Arc<Idempotency>>,
    body_limit: usize,
}

/// The request ID (the caller's if sane), the request's span and log line, its
/// metrics, the timeout, and the access index's catch-up after a write.
async fn around_every_request(
    State(around): State<Arc<Around>>,
    request: Request,
    next: Next,
) -> Response {
    let id = request_id::of(request.headers());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = request.method().clone();
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %method,
        route = %route,
    );
    let path = request.uri().path();
    let gateway = path.starts_with("/v1/") || UNPREFIXED.contains(&route.as_str());
    let write = !method.is_safe() && request.uri().path().starts_with("/api/");
    let started = Instant::now();
    let handled = async {
        if gateway {
            next.run(request).await
        } else {
            // Boxed: the management path's future (idempotency, timeout,
            // catch-up) is several kilobytes, and every layer above would
            // copy it for each gateway call too (measured: about 8 000
            // instructions a call).
            Box::pin(management(&around, request, next, write)).await
        }
    };
    let mut response = request_id::scope(id.clone(), handled)
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let status = response.status().as_u16();
    around
        .metrics
        .observe(method.as_str(), &route, status, elapsed);
    span.in_scope(|| {
        tracing::info!(
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(request_id::HEADER, value);
    }
    response
}

/// A management request: applied at most once under its `Idempotency-Key`,
/// within the request timeout; a successful write brings the access index up
/// to date.
async fn management(around: &Around, request: Request, next: Next, write: bool) -> Response {
    let run = async {
        match &around.idempotency {
            Some(idempotency) if crate::idempotency::applies(&request) => {
                // Held a little longer than the request may run, so a
                // retry never takes over a request still running.
                let lease_ms = around.timeout.as_millis() as i64 + 5_000;
                crate::idempotency::run_once(
                    idempotency,
                    request,
                    next,
                    lease_ms,
                    around.body_limit,
                )
                .await
            }
            _ => next.run(request).await,
        }
    };
    let response = match tokio::time::timeout(around.timeout, run).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            ErrorCode::Timeout,
            format!(
                "the request took longer than {} ms",
                around.timeout.as_millis()
            ),
        )
        .into_response(),
    };
    if write
        && response.status().is_success()
        && let Some(index) = &around.index
        && let Err(e) = index.catch_up().await
    {
        tracing::warn!(error = %e, "access index could not read the change feed");
    }
    response
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

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("handler panicked");
    ApiError(gatehouse_core::Error::internal("handler panicked")).into_response()
}

#[cfg(test)]
mod tests {
    /// The size of the future an async fn of three arguments returns.
    fn future_size<A, B, C, F: std::future::Future>(_: impl Fn(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every layer above the middleware moves its future, for every gateway
    /// call as well: with the management path inline it was 8 KiB, and the
    /// copies cost the gateway about 10 % of its CPU per call.
    #[test]
    fn the_per_request_middleware_future_stays_small() {
        let size = future_size(super::around_every_request);
        assert!(
            size <= 3072,
            "around_every_request's future is {size} bytes"
        );
    }
}
