//! The REST router: operational endpoints, the management API under `/api/v1`,
//! and the interactive API documentation.

pub(crate) mod audit;
pub(crate) mod auth;
pub(crate) mod catalog;
pub(crate) mod keys;
pub(crate) mod ops;
pub(crate) mod orgs;
pub(crate) mod system;
pub(crate) mod teams;
pub(crate) mod usage;
pub(crate) mod users;
pub(crate) mod vaults;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::{HeaderValue, Method};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing;
use axum::{Json, Router};
use gatehouse_core::ErrorCode;
use gatehouse_core::keys::index::AccessIndex;
use gatehouse_core::services::Services;
use tower_http::catch_panic::CatchPanicLayer;
use tracing::Instrument;

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
}

/// Settings of the REST interface.
#[derive(Debug, Clone, Copy)]
pub struct RestOptions {
    pub body_limit_bytes: usize,
    pub request_timeout: Duration,
    /// Mark session cookies `Secure` (set when clients reach the server over TLS).
    pub secure_cookies: bool,
}

/// The routes, and a list of them that tests read (the authorization matrix
/// needs a row for every one).
struct RouteTable {
    router: Router<AppState>,
    routes: Vec<(Method, &'static str)>,
}

macro_rules! verbs {
    ($($name:ident => $method:ident),*) => {$(
        fn $name<H, T>(mut self, path: &'static str, handler: H) -> Self
        where
            H: Handler<T, AppState>,
            T: 'static,
        {
            self.router = self.router.route(path, routing::$name(handler));
            self.routes.push((Method::$method, path));
            self
        }
    )*};
}

impl RouteTable {
    verbs!(get => GET, post => POST, put => PUT, patch => PATCH, delete => DELETE);
}

/// Every route of the REST interface.
fn route_table() -> RouteTable {
    let docs = Html(utoipa_scalar::Scalar::new(crate::openapi::spec()).to_html());
    let spec = Json(crate::openapi::spec());
    RouteTable {
        router: Router::new(),
        routes: Vec::new(),
    }
    .get("/health", ops::health)
    .get("/ready", ops::ready)
    .get("/metrics", ops::metrics)
    .get("/docs", docs.clone())
    .get("/admin/docs", docs)
    .get("/openapi.json", spec)
    .get("/api/v1/system", system::info)
    .post("/api/v1/auth/register", auth::register)
    .post("/api/v1/auth/login", auth::login)
    .get("/api/v1/auth/me", auth::me)
    .post("/api/v1/auth/logout", auth::logout)
    .put("/api/v1/auth/password", auth::change_password)
    .get("/api/v1/auth/sessions", auth::list_sessions)
    .delete("/api/v1/auth/sessions/{id}", auth::revoke_session)
    .get("/api/v1/auth/emails", auth::list_emails)
    .post("/api/v1/auth/emails", auth::add_email)
    .post("/api/v1/auth/emails/verify", auth::verify_email)
    .delete("/api/v1/auth/emails/{email}", auth::remove_email)
    .post("/api/v1/auth/emails/{email}/primary", auth::make_primary)
    .post("/api/v1/auth/reset", auth::request_reset)
    .post("/api/v1/auth/reset/confirm", auth::confirm_reset)
    .get("/api/v1/users", users::list)
    .post("/api/v1/users", users::create)
    .get("/api/v1/users/{id}", users::read)
    .patch("/api/v1/users/{id}", users::update)
    .delete("/api/v1/users/{id}", users::delete)
    .get("/api/v1/organizations", orgs::list)
    .post("/api/v1/organizations", orgs::create)
    .get("/api/v1/organizations/{org}", orgs::read)
    .patch("/api/v1/organizations/{org}", orgs::update)
    .delete("/api/v1/organizations/{org}", orgs::delete)
    .post("/api/v1/organizations/{org}/suspend", orgs::suspend)
    .post("/api/v1/organizations/{org}/resume", orgs::resume)
    .post("/api/v1/organizations/{org}/transfer", orgs::transfer)
    .get("/api/v1/organizations/{org}/members", orgs::members)
    .patch(
        "/api/v1/organizations/{org}/members/{user}",
        orgs::set_member_role,
    )
    .delete(
        "/api/v1/organizations/{org}/members/{user}",
        orgs::remove_member,
    )
    .get("/api/v1/organizations/{org}/invitations", orgs::invitations)
    .post("/api/v1/organizations/{org}/invitations", orgs::invite)
    .delete(
        "/api/v1/organizations/{org}/invitations/{id}",
        orgs::revoke_invitation,
    )
    .post("/api/v1/invitations/accept", orgs::accept)
    .post("/api/v1/invitations/decline", orgs::decline)
    .get("/api/v1/organizations/{org}/teams", teams::list)
    .post("/api/v1/organizations/{org}/teams", teams::create)
    .get("/api/v1/organizations/{org}/teams/{team}", teams::read)
    .patch("/api/v1/organizations/{org}/teams/{team}", teams::update)
    .delete("/api/v1/organizations/{org}/teams/{team}", teams::delete)
    .get(
        "/api/v1/organizations/{org}/teams/{team}/members",
        teams::members,
    )
    .put(
        "/api/v1/organizations/{org}/teams/{team}/members/{user}",
        teams::put_member,
    )
    .delete(
        "/api/v1/organizations/{org}/teams/{team}/members/{user}",
        teams::remove_member,
    )
    .get("/api/v1/credentials", catalog::list_credentials)
    .post("/api/v1/credentials", catalog::create_credential)
    .get("/api/v1/credentials/{id}", catalog::read_credential)
    .patch("/api/v1/credentials/{id}", catalog::update_credential)
    .delete("/api/v1/credentials/{id}", catalog::delete_credential)
    .get("/api/v1/endpoints", catalog::list_endpoints)
    .post("/api/v1/endpoints", catalog::create_endpoint)
    .get("/api/v1/endpoints/{id}", catalog::read_endpoint)
    .patch("/api/v1/endpoints/{id}", catalog::update_endpoint)
    .delete("/api/v1/endpoints/{id}", catalog::delete_endpoint)
    .post("/api/v1/endpoints/{id}/sync", catalog::sync_endpoint)
    .get("/api/v1/models", catalog::list_models)
    .post("/api/v1/models", catalog::create_model)
    .get("/api/v1/models/{id}", catalog::read_model)
    .patch("/api/v1/models/{id}", catalog::update_model)
    .delete("/api/v1/models/{id}", catalog::delete_model)
    .get("/api/v1/aliases", catalog::list_aliases)
    .post("/api/v1/aliases", catalog::create_alias)
    .patch("/api/v1/aliases/{id}", catalog::update_alias)
    .delete("/api/v1/aliases/{id}", catalog::delete_alias)
    .get("/api/v1/subscriptions", catalog::list_subscriptions)
    .post("/api/v1/subscriptions", catalog::subscribe)
    .delete("/api/v1/subscriptions/{id}", catalog::cancel_subscription)
    .post(
        "/api/v1/subscriptions/{id}/approve",
        catalog::approve_subscription,
    )
    .post(
        "/api/v1/subscriptions/{id}/deny",
        catalog::deny_subscription,
    )
    .post(
        "/api/v1/subscriptions/{id}/suspend",
        catalog::suspend_subscription,
    )
    .get("/api/v1/organizations/{org}/vaults", vaults::list_vaults)
    .post("/api/v1/organizations/{org}/vaults", vaults::create_vault)
    .get(
        "/api/v1/organizations/{org}/vaults/{vault}",
        vaults::read_vault,
    )
    .patch(
        "/api/v1/organizations/{org}/vaults/{vault}",
        vaults::update_vault,
    )
    .delete(
        "/api/v1/organizations/{org}/vaults/{vault}",
        vaults::delete_vault,
    )
    .get(
        "/api/v1/organizations/{org}/vaults/{vault}/grants",
        vaults::list_grants,
    )
    .put(
        "/api/v1/organizations/{org}/vaults/{vault}/grants",
        vaults::put_grant,
    )
    .delete(
        "/api/v1/organizations/{org}/vaults/{vault}/grants/{subject_type}/{subject_id}",
        vaults::delete_grant,
    )
    .post(
        "/api/v1/organizations/{org}/vaults/{vault}/token",
        vaults::user_token,
    )
    .get("/api/v1/organizations/{org}/clients", vaults::list_clients)
    .post("/api/v1/organizations/{org}/clients", vaults::create_client)
    .get(
        "/api/v1/organizations/{org}/clients/{client}",
        vaults::read_client,
    )
    .delete(
        "/api/v1/organizations/{org}/clients/{client}",
        vaults::delete_client,
    )
    .get(
        "/api/v1/organizations/{org}/clients/{client}/certificates",
        vaults::list_certificates,
    )
    .post(
        "/api/v1/organizations/{org}/clients/{client}/certificates",
        vaults::add_certificate,
    )
    .delete(
        "/api/v1/organizations/{org}/clients/{client}/certificates/{kid}",
        vaults::revoke_certificate,
    )
    .post("/api/v1/token", vaults::token)
    .get("/.well-known/jwks.json", vaults::jwks)
    .get("/api/v1/keys", keys::list)
    .post("/api/v1/keys", keys::create)
    .get("/api/v1/keys/{id}", keys::read)
    .delete("/api/v1/keys/{id}", keys::revoke)
    .post("/api/v1/keys/{id}/rotate", keys::rotate)
    .get("/api/v1/audit-events", audit::list)
    .get("/api/v1/usage", usage::stats)
    .get("/api/v1/usage/export", usage::export)
    .get("/api/v1/request-logs", usage::logs)
    .post("/v1/chat/completions", gateway::chat_completions)
    .post("/v1/embeddings", gateway::embeddings)
    .post("/v1/messages", gateway::messages)
    .get("/v1/models", gateway::models)
}

impl axum::extract::FromRef<AppState> for Arc<crate::gateway::Gateway> {
    fn from_ref(state: &AppState) -> Self {
        state.gateway.clone()
    }
}

/// Every (method, path template) the REST router serves.
pub fn routes() -> Vec<(Method, &'static str)> {
    route_table().routes
}

/// Builds the REST router with all its middleware.
pub fn router(services: Services, limits: RestOptions) -> Router {
    let metrics = Metrics::new();
    let state = AppState(Arc::new(AppStateInner {
        gateway: crate::gateway::Gateway::new(services.clone()),
        services,
        metrics: metrics.clone(),
        secure_cookies: limits.secure_cookies,
    }));
    let index = state.services.keys.index().clone();
    let routes = route_table().router.with_state(state);
    layered(routes, limits, metrics, Some(index))
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
    index: Option<Arc<AccessIndex>>,
) -> Router {
    let around = Arc::new(Around {
        metrics,
        timeout: limits.request_timeout,
        index,
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
    let gateway = request.uri().path().starts_with("/v1/");
    let write = !method.is_safe() && request.uri().path().starts_with("/api/");
    let started = Instant::now();
    let handled = async {
        let response = if gateway {
            next.run(request).await
        } else {
            match tokio::time::timeout(around.timeout, next.run(request)).await {
                Ok(response) => response,
                Err(_) => ApiError::new(
                    ErrorCode::Timeout,
                    format!(
                        "the request took longer than {} ms",
                        around.timeout.as_millis()
                    ),
                )
                .into_response(),
            }
        };
        if write
            && response.status().is_success()
            && let Some(index) = &around.index
            && let Err(e) = index.catch_up().await
        {
            tracing::warn!(error = %e, "access index could not read the change feed");
        }
        response
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
