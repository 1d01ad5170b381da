//! The account: profile, email addresses, password, sessions, passkeys, the
//! authenticator-app second factor and linked single sign-on identities.

use askama::Template;
use axum::extract::State;
use serde::Deserialize;

use super::catalog::api_name;
use super::{Nav, OrPage, PageQuery, PageResult, Viewer, render, when, when_opt};
use crate::rest::AppState;

pub(crate) struct SessionRow {
    pub id: String,
    pub kind: String,
    pub created: String,
    pub last_seen: String,
    pub ip: String,
    pub agent: String,
    pub current: bool,
}

#[derive(Deserialize, Default)]
pub(crate) struct AccountQuery {
    /// Sent here to enrol a second factor before going on.
    enrol: Option<String>,
}

#[derive(Template)]
#[template(path = "console/account.html")]
struct Account {
    nav: Nav,
    enrol: bool,
    display_name: String,
    username: String,
    roles: Vec<&'static str>,
    emails: Vec<(String, bool, bool)>,
    sessions: Vec<SessionRow>,
    passkeys: Vec<(String, String, String, String)>,
    totp_enabled: bool,
    recovery_codes_left: usize,
    identities: Vec<(String, String, String)>,
    has_password: bool,
}

pub(crate) async fn page(
    State(state): State<AppState>,
    viewer: Viewer,
    PageQuery(query): PageQuery<AccountQuery>,
) -> PageResult {
    let accounts = &state.services.accounts;
    let user = &viewer.user;
    let emails = accounts
        .list_emails(user.id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|e| (e.email, e.primary, e.verified))
        .collect();
    let mut sessions: Vec<SessionRow> = accounts
        .list_sessions(user.id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|s| SessionRow {
            id: s.id.to_string(),
            kind: api_name(&s.kind),
            created: when(&s.created_at),
            last_seen: when(&s.last_seen_at),
            ip: s.ip.unwrap_or_default(),
            agent: s.user_agent.unwrap_or_default(),
            current: Some(s.id) == viewer.session,
        })
        .collect();
    sessions.sort_by_key(|s| !s.current);
    let passkeys = accounts
        .list_passkeys(user.id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|p| {
            (
                p.id.to_string(),
                p.name,
                when(&p.created_at),
                when_opt(&p.last_used_at),
            )
        })
        .collect();
    let factors = accounts.second_factors(user).await.or_page(&viewer)?;
    let identities = accounts
        .sso_identities(user.id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|i| {
            (
                i.provider,
                i.email.unwrap_or(i.subject),
                when(&i.last_sign_in_at),
            )
        })
        .collect();
    let enrol = query.enrol.is_some() && state.services.accounts.ensure_may_act(user).is_err();
    // Nothing else opens until a second factor is enrolled.
    let nav = viewer.nav("account");
    let nav = if enrol { nav.held_back() } else { nav };
    Ok(render(Account {
        nav,
        enrol,
        display_name: user.display_name.clone(),
        username: user.username.clone().unwrap_or_default(),
        roles: user.roles.iter().map(|r| r.as_str()).collect(),
        emails,
        sessions,
        passkeys,
        totp_enabled: factors.totp_enabled,
        recovery_codes_left: factors.recovery_codes_left,
        identities,
        has_password: user.password_hash.is_some(),
    }))
}
