//! Signing in and the pages emails and first starts lead to: sign-in
//! (password, second factor, single sign-on, passkey), registration,
//! password reset, email verification and the forced password change.

use askama::Template;
use axum::extract::State;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::{Nav, PageQuery, render};
use crate::rest::AppState;

#[derive(Deserialize, Default)]
pub(crate) struct Landing {
    /// Where to go once signed in: a path on this server.
    next: Option<String>,
    /// The token an email carried.
    token: Option<String>,
}

/// A path on this server only: anything else (another host, a scheme, `//`)
/// goes home instead, so a sign-in link cannot send people elsewhere.
fn local_path(base: &str, next: Option<&str>) -> String {
    match next {
        Some(path)
            if path.starts_with('/')
                && !path.starts_with("//")
                && !path.contains('\\')
                && !path.chars().any(char::is_control) =>
        {
            path.to_string()
        }
        _ => super::home_path(base),
    }
}

/// A provider's sign-in button.
pub(crate) struct ProviderButton {
    pub name: String,
    pub href: String,
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignIn {
    nav: Nav,
    next: String,
    providers: Vec<ProviderButton>,
    registration: bool,
}

pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    PageQuery(landing): PageQuery<Landing>,
) -> Response {
    let base = &state.console_base;
    let next = local_path(base, landing.next.as_deref());
    // Already signed in: straight on.
    if super::browser_caller(&state, &headers).await.is_some() {
        return Redirect::to(&next).into_response();
    }
    let redirect =
        serde_urlencoded::to_string([("redirect_to", next.as_str())]).unwrap_or_default();
    let providers = state
        .sso
        .providers()
        .into_iter()
        .map(|p| ProviderButton {
            href: format!("/api/v1/auth/sso/{}/start?{redirect}", p.id),
            name: p.name,
        })
        .collect();
    render(SignIn {
        nav: Nav::anonymous(base),
        next,
        providers,
        registration: state.services.accounts.registration_enabled(),
    })
}

#[derive(Template)]
#[template(path = "console/register.html")]
struct Register {
    nav: Nav,
    open: bool,
}

pub(crate) async fn register(State(state): State<AppState>) -> Response {
    render(Register {
        nav: Nav::anonymous(&state.console_base),
        open: state.services.accounts.registration_enabled(),
    })
}

#[derive(Template)]
#[template(path = "console/reset.html")]
struct Reset {
    nav: Nav,
    /// From the email's link: the form that sets the new password.
    token: Option<String>,
}

pub(crate) async fn reset(
    State(state): State<AppState>,
    PageQuery(landing): PageQuery<Landing>,
) -> Response {
    render(Reset {
        nav: Nav::anonymous(&state.console_base),
        token: landing.token.filter(|t| !t.is_empty() && t.len() <= 512),
    })
}

#[derive(Template)]
#[template(path = "console/verify.html")]
struct Verify {
    nav: Nav,
    token: String,
}

/// The landing page of an email's verification link: the address is
/// confirmed by a button (a `POST`), never by merely opening the link, so a
/// mail scanner following links confirms nothing.
pub(crate) async fn verify(
    State(state): State<AppState>,
    PageQuery(landing): PageQuery<Landing>,
) -> Response {
    render(Verify {
        nav: Nav::anonymous(&state.console_base),
        token: landing.token.filter(|t| t.len() <= 512).unwrap_or_default(),
    })
}

#[derive(Template)]
#[template(path = "console/password.html")]
struct Password {
    nav: Nav,
    forced: bool,
}

/// The forced password change of an account with a generated password (the
/// first admin), reachable before anything else.
pub(crate) async fn password(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Response {
    let base = &state.console_base;
    let Some(caller) = super::browser_caller(&state, &headers).await else {
        return Redirect::to(&format!("{base}/sign-in")).into_response();
    };
    let forced = caller.user.must_change_password;
    let nav = Nav::of(base, &caller.user, "account");
    // Nothing else works yet: no links that would only bounce back.
    let nav = if forced { nav.held_back() } else { nav };
    render(Password { nav, forced })
}

#[derive(Template)]
#[template(path = "console/invitation.html")]
struct InvitationPage {
    nav: Nav,
    token: String,
    /// `?next=` back to this page, for signing in first.
    back: String,
}

/// The landing page of an invitation email: accept (signed in) or decline.
pub(crate) async fn invitation(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    PageQuery(landing): PageQuery<Landing>,
) -> Response {
    let base = &state.console_base;
    let token = landing.token.filter(|t| t.len() <= 512).unwrap_or_default();
    let nav = match &super::browser_caller(&state, &headers).await {
        Some(caller) => Nav::of(base, &caller.user, "organizations"),
        None => Nav::anonymous(base),
    };
    let here = format!(
        "{base}/invitation?{}",
        serde_urlencoded::to_string([("token", token.as_str())]).unwrap_or_default()
    );
    render(InvitationPage {
        nav,
        back: serde_urlencoded::to_string([("next", here.as_str())]).unwrap_or_default(),
        token,
    })
}

#[cfg(test)]
mod tests {
    use super::local_path;

    #[test]
    fn sign_in_only_leads_back_into_this_server() {
        assert_eq!(local_path("", Some("/keys?x=1")), "/keys?x=1");
        assert_eq!(local_path("/c", Some("/c/keys")), "/c/keys");
        for outside in [
            "https://evil.example/",
            "//evil.example",
            "/\\evil",
            "javascript:alert(1)",
            "keys",
        ] {
            assert_eq!(local_path("", Some(outside)), "/", "{outside}");
        }
        assert_eq!(local_path("/c", None), "/c/");
    }
}
