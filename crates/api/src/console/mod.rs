//! The web console: server-rendered pages for people, at the console's base
//! path (`/` by default, `console.base_path`).
//!
//! Pages read through the same `core` services as the REST API and are
//! rendered from compile-time-checked templates (`askama`, under
//! `crates/api/templates/console/`). Everything a page changes goes through
//! the REST API itself, from the console's one script (`static/console.js`):
//! a form marked `data-api` is sent as JSON with the session cookie, so no
//! business rule is written twice and every refusal is the API's own. Reading
//! works without JavaScript; charts are SVG drawn here, not by a script.
//!
//! The console's assets are embedded in the binary and served from
//! `{base}/static/`; its pages carry a Content-Security-Policy that allows
//! nothing but this origin (no inline script or style).

mod account;
mod admin;
mod catalog;
mod chart;
mod home;
mod orgs;
mod sign_in;
mod work;

use askama::Template;
use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use gatehouse_core::model::accounts::{Role, User};
use gatehouse_core::services::Credential;
use gatehouse_core::{Error, ErrorCode, Id};

use crate::rest::AppState;

/// Where the console is served.
#[derive(Debug, Clone, Default)]
pub struct ConsoleSettings {
    /// The console's path prefix: empty for `/`, or like `/console`.
    pub base_path: String,
}

impl ConsoleSettings {
    /// Checks and normalises `base_path`: empty or `/`, or `/` and path
    /// segments of letters, digits, `-` and `_`, without a trailing `/`.
    pub fn new(base_path: &str) -> Result<Self, String> {
        let trimmed = base_path.trim_end_matches('/');
        let valid = trimmed.is_empty()
            || (trimmed.starts_with('/')
                && trimmed[1..].split('/').all(|segment| {
                    !segment.is_empty()
                        && segment
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }));
        if !valid {
            return Err(format!(
                "console.base_path {base_path:?} must be empty or like /console"
            ));
        }
        Ok(ConsoleSettings {
            base_path: trimmed.to_string(),
        })
    }
}

/// The console's assets, embedded at build time.
const ASSETS: [(&str, &str, &[u8]); 3] = [
    (
        "console.css",
        "text/css; charset=utf-8",
        include_bytes!("../../static/console.css"),
    ),
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_bytes!("../../static/console.js"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_bytes!("../../static/favicon.svg"),
    ),
];

/// Nothing but this origin: no inline script or style, no frames, forms
/// posted only here.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The console's routes, to merge into the REST router.
pub(crate) fn routes(base: &str) -> Router<AppState> {
    let at = |path: &str| {
        let full = format!("{base}{path}");
        if full.is_empty() {
            "/".to_string()
        } else {
            full
        }
    };
    let mut router = Router::new()
        .route(&at("/"), get(home::page))
        .route(&at("/static/{file}"), get(asset))
        .route(&at("/sign-in"), get(sign_in::sign_in))
        .route(&at("/register"), get(sign_in::register))
        .route(&at("/reset"), get(sign_in::reset))
        .route(&at("/verify"), get(sign_in::verify))
        .route(&at("/password"), get(sign_in::password))
        .route(&at("/invitation"), get(sign_in::invitation))
        .route(&at("/keys"), get(home::keys))
        .route(&at("/playground"), get(work::playground))
        .route(&at("/playground/{org}/{project}/{chat}"), get(work::chat))
        .route(&at("/catalog"), get(catalog::models))
        .route(&at("/catalog/aliases"), get(catalog::aliases))
        .route(&at("/catalog/subscriptions"), get(catalog::subscriptions))
        .route(&at("/catalog/endpoints"), get(catalog::endpoints))
        .route(&at("/catalog/credentials"), get(catalog::credentials))
        .route(&at("/organizations"), get(orgs::list))
        .route(&at("/organizations/{org}"), get(orgs::organization))
        .route(&at("/admin/users"), get(admin::users))
        .route(&at("/admin/usage"), get(admin::usage))
        .route(&at("/admin/request-logs"), get(admin::logs))
        .route(&at("/admin/request-logs/{id}"), get(admin::log))
        .route(&at("/admin/audit"), get(admin::audit))
        .route(&at("/admin/system"), get(admin::system))
        .route(&at("/account"), get(account::page));
    // People type these; the console answers them.
    for alias in ["/ui", "/admin"] {
        let path = at(alias);
        if path != at("/") {
            router = router.route(&path, get(to_home));
        }
    }
    router.layer(axum::middleware::map_response(secure_headers))
}

/// The console's headers on every one of its answers.
async fn secure_headers(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

async fn to_home(State(state): State<AppState>) -> Redirect {
    Redirect::to(&home_path(&state.console_base))
}

fn home_path(base: &str) -> String {
    if base.is_empty() {
        "/".to_string()
    } else {
        format!("{base}/")
    }
}

/// An asset, with an `ETag` so that revalidating it costs a `304`.
async fn asset(
    file: Result<Path<String>, PathRejection>,
    headers: axum::http::HeaderMap,
) -> Response {
    let file = file.map(|Path(file)| file).unwrap_or_default();
    let found = ASSETS
        .iter()
        .zip(ETAGS.iter())
        .find(|((name, _, _), _)| *name == file);
    let Some(((_, kind, body), etag)) = found else {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    };
    let etag = etag.clone();
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|tag| tag.trim() == etag));
    // Revalidated each time: a new release must not be hidden behind an old
    // cached script.
    let cache = [
        (header::CACHE_CONTROL, "no-cache".to_string()),
        (header::ETAG, etag),
    ];
    if fresh {
        return (StatusCode::NOT_MODIFIED, cache).into_response();
    }
    (cache, [(header::CONTENT_TYPE, *kind)], *body).into_response()
}

/// The assets' validators, in [`ASSETS`]' order, computed once.
static ETAGS: std::sync::LazyLock<Vec<String>> =
    std::sync::LazyLock::new(|| ASSETS.iter().map(|(_, _, body)| etag(body)).collect());

/// A strong validator of an embedded asset: FNV-1a of its bytes (the assets
/// are a few kilobytes, embedded, and change only with a release).
fn etag(body: &[u8]) -> String {
    let hash = body.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("\"{hash:016x}\"")
}

/// What every page's frame needs: who is signed in, and what they may see.
pub(crate) struct Nav {
    pub base: String,
    /// The section whose link is marked current.
    pub section: &'static str,
    pub signed_in: bool,
    pub name: String,
    pub email: String,
    pub may_use_models: bool,
    pub admin: bool,
    pub reader: bool,
    pub request_viewer: bool,
    pub provider: bool,
}

impl Nav {
    pub fn anonymous(base: &str) -> Self {
        Nav {
            base: base.to_string(),
            section: "",
            signed_in: false,
            name: String::new(),
            email: String::new(),
            may_use_models: false,
            admin: false,
            reader: false,
            request_viewer: false,
            provider: false,
        }
    }

    pub fn of(base: &str, user: &User, section: &'static str) -> Self {
        Nav {
            base: base.to_string(),
            section,
            signed_in: true,
            name: if user.display_name.is_empty() {
                user.email.clone()
            } else {
                user.display_name.clone()
            },
            email: user.email.clone(),
            may_use_models: user.roles.contains(&Role::User),
            admin: user.is_platform_admin(),
            reader: user.is_platform_reader(),
            request_viewer: user.roles.contains(&Role::RequestViewer),
            provider: user.roles.contains(&Role::Provider),
        }
    }

    /// The frame of an account held back (a password to change, a second
    /// factor to enrol): no links that would only bounce back.
    pub fn held_back(mut self) -> Self {
        self.may_use_models = false;
        self.reader = false;
        self.request_viewer = false;
        self
    }

    /// `aria-current` for the section's link.
    pub fn current(&self, section: &str) -> &'static str {
        if self.section == section {
            "page"
        } else {
            "false"
        }
    }
}

/// The signed-in person a page is for. A browser without a session is sent
/// to the sign-in page (and back afterwards); an account that must change a
/// generated password, or enrol a second factor, to the page that does it.
pub(crate) struct Viewer {
    pub user: User,
    pub session: Option<Id>,
    pub base: String,
}

impl Viewer {
    pub fn nav(&self, section: &'static str) -> Nav {
        Nav::of(&self.base, &self.user, section)
    }
}

/// `Query`, but a query string that does not read (a field given twice) is
/// a 400 page, not a line of plain text.
pub(crate) struct PageQuery<T>(pub T);

impl<T: serde::de::DeserializeOwned> FromRequestParts<AppState> for PageQuery<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(query)) => Ok(PageQuery(query)),
            Err(rejection) => Err(PageError {
                error: Error::new(ErrorCode::InvalidInput, rejection.body_text()),
                nav: Box::new(Nav::anonymous(&state.console_base)),
            }
            .into_response()),
        }
    }
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        let base = state.console_base.clone();
        let here = parts
            .uri
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_string();
        let to_sign_in = || {
            let next = serde_urlencoded::to_string([("next", here.as_str())]).unwrap_or_default();
            Redirect::to(&format!("{base}/sign-in?{next}")).into_response()
        };
        let Some(caller) = browser_caller(state, &parts.headers).await else {
            return Err(to_sign_in());
        };
        let user = caller.user;
        let session = caller.session.map(|s| s.id);
        if user.must_change_password {
            return Err(Redirect::to(&format!("{base}/password")).into_response());
        }
        let account = format!("{base}/account");
        if state.services.accounts.ensure_may_act(&user).is_err() && parts.uri.path() != account {
            return Err(Redirect::to(&format!("{account}?enrol=1")).into_response());
        }
        Ok(Viewer {
            user,
            session,
            base,
        })
    }
}

/// Who the browser's session cookie names, if it names anyone (pages read
/// nothing but the cookie).
pub(crate) async fn browser_caller(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Option<gatehouse_core::services::Caller> {
    let token = crate::caller::session_cookie(headers)?;
    state
        .services
        .caller(Credential::SessionCookie(token))
        .await
        .ok()
}

/// A page, rendered; a template that cannot render is a bug, answered 500.
pub(crate) fn render(page: impl Template) -> Response {
    match page.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "console template failed");
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "the page could not be drawn",
            )
                .into_response()
        }
    }
}

/// A refusal or failure shown as a page, with the API's status.
#[derive(Template)]
#[template(path = "console/error.html")]
pub(crate) struct ErrorPage {
    pub nav: Nav,
    pub title: String,
    pub message: String,
}

/// A page handler's failure: drawn with the signed-in frame when there is one.
pub(crate) struct PageError {
    pub error: Error,
    pub nav: Box<Nav>,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = crate::error::http_status(self.error.code());
        let title = match self.error.code() {
            ErrorCode::NotFound | ErrorCode::RouteNotFound => "Not found",
            ErrorCode::PermissionDenied => "Not allowed",
            ErrorCode::InvalidInput | ErrorCode::MalformedBody => "Not understood",
            _ if status.is_server_error() => "Something went wrong",
            _ => "Not possible",
        };
        if status.is_server_error() {
            tracing::error!(code = %self.error.code(), cause = ?self.error.cause(), "console page failed");
        }
        let message = if status.is_server_error() {
            "The server could not answer; the details are in its log.".to_string()
        } else {
            self.error.message().to_string()
        };
        let mut response = render(ErrorPage {
            nav: *self.nav,
            title: title.to_string(),
            message,
        });
        *response.status_mut() = status;
        response
    }
}

/// A page's result.
pub(crate) type PageResult = Result<Response, PageError>;

/// Ties a core error to the viewer's frame.
pub(crate) trait OrPage<T> {
    fn or_page(self, viewer: &Viewer) -> Result<T, PageError>;
}

impl<T> OrPage<T> for gatehouse_core::Result<T> {
    fn or_page(self, viewer: &Viewer) -> Result<T, PageError> {
        self.map_err(|error| PageError {
            error,
            nav: Box::new(viewer.nav("")),
        })
    }
}

/// A path segment or query value read as an ID, or a 404 page.
pub(crate) fn page_id(viewer: &Viewer, raw: &str) -> Result<Id, PageError> {
    raw.parse::<Id>().map_err(|_| no_such_page(viewer))
}

/// A page's path segments, or a 404 page when one does not decode (bytes
/// that are not UTF-8): no page has such an address.
pub(crate) fn page_path<T>(
    viewer: &Viewer,
    path: Result<Path<T>, PathRejection>,
) -> Result<T, PageError> {
    path.map(|Path(segments)| segments)
        .map_err(|_| no_such_page(viewer))
}

fn no_such_page(viewer: &Viewer) -> PageError {
    PageError {
        error: Error::new(ErrorCode::NotFound, "no such page"),
        nav: Box::new(viewer.nav("")),
    }
}

/// Whether two names are the same: for templates, which compare `&&str`
/// with `String`.
pub(crate) fn same(a: &str, b: &str) -> bool {
    a == b
}

/// Dates and times as the console shows them: UTC, to the minute.
pub(crate) fn when(at: &chrono::DateTime<chrono::Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// An optional time, or a dash.
pub(crate) fn when_opt(at: &Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.as_ref().map_or_else(|| "—".to_string(), when)
}

/// US dollars from micro-dollars, as people read them.
pub(crate) fn dollars(micros: i64) -> String {
    let usd = micros as f64 / 1e6;
    if usd != 0.0 && usd.abs() < 0.01 {
        format!("${usd:.4}")
    } else {
        format!("${usd:.2}")
    }
}

/// A count with thousands separated.
pub(crate) fn count(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3 + 1);
    if n < 0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_paths_are_checked_and_normalised() {
        assert_eq!(ConsoleSettings::new("").unwrap().base_path, "");
        assert_eq!(ConsoleSettings::new("/").unwrap().base_path, "");
        assert_eq!(
            ConsoleSettings::new("/console/").unwrap().base_path,
            "/console"
        );
        assert_eq!(ConsoleSettings::new("/a/b-c").unwrap().base_path, "/a/b-c");
        for bad in ["console", "/a//b", "/a b", "/<x>", "/a?b"] {
            assert!(ConsoleSettings::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1000), "1,000");
        assert_eq!(count(-1234567), "-1,234,567");
        assert_eq!(dollars(0), "$0.00");
        assert_eq!(dollars(1_500_000), "$1.50");
        assert_eq!(dollars(42), "$0.0000");
        assert_eq!(dollars(1234), "$0.0012");
    }
}
