//! The authorization matrix: for every route the REST router serves, the
//! status each kind of caller gets. The route list comes from the router
//! itself, so a route added without a row here fails the test.
//!
//! Every cell runs against fresh fixtures (an organization with an owner, an
//! admin and a member, a team, a pending invitation, a user to administer),
//! so a cell that deletes or changes something cannot affect the next one.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU32, Ordering};

use gatehouse_core::Id;
use gatehouse_core::accounts::AdminNewUser;
use gatehouse_core::model::accounts::User;
use gatehouse_core::model::sessions::ClientInfo;
use gatehouse_core::model::tenancy::{OrgRole, TeamRole};
use gatehouse_core::tenancy::TeamSpec;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{PASSWORD, TestApp, admin_config, spawn_app};

/// The callers: people in the order of a row's statuses, then two API keys
/// whose statuses follow from the people's ([`Row::expected`]).
pub const ACTORS: [&str; 12] = [
    "anonymous",
    "user",
    "admin",
    "admin_readonly",
    "request_viewer",
    "provider",
    "org_owner",
    "org_admin",
    "org_member",
    "non_member",
    // `admin`'s key with the `management` scope.
    "admin_key",
    // `user`'s key without it: a gateway credential only.
    "gateway_key",
];

/// Routes on the account's own security, which no key may use.
const IN_PERSON: [&str; 7] = [
    "/api/v1/auth/logout",
    "/api/v1/auth/passkeys",
    "/api/v1/auth/mfa",
    "/api/v1/auth/sso/{provider}/identity",
    "/api/v1/auth/password",
    "/api/v1/auth/sessions",
    "/api/v1/auth/emails",
];

/// One route: its method and path template, a JSON body template, and the
/// status for each person of [`ACTORS`].
///
/// Placeholders: `{org}`, `{team}`, `{user}` (the organization's member),
/// `{victim}` (a user only admins administer), `{invitation}` (pending, in
/// `{org}`), `{invitation_token}`, `{n}` (unique per cell), `{me}` (the caller's ID).
pub struct Row {
    pub method: Method,
    pub path: &'static str,
    pub body: Option<&'static str>,
    pub expect: [u16; 10],
}

impl Row {
    /// The status `ACTORS[actor]` gets. On the gateway a key is the
    /// credential: the model list answers, and the calls' bodies name a model
    /// that does not exist. Elsewhere a key without the management scope is
    /// refused wherever a signed-in caller is needed (not at the service
    /// clients' token exchange, which takes an assertion) and otherwise
    /// answered as nobody; a management key acts as its owner (`admin`),
    /// except on the account's own security and on keys it did not create.
    pub fn expected(&self, actor: usize) -> u16 {
        let key = ACTORS[actor].ends_with("_key");
        if key && self.path.starts_with("/v1/") {
            // A key lists its models; every other gateway row names a model
            // that does not exist.
            return if self.path == "/v1/models" { 200 } else { 404 };
        }
        match ACTORS[actor] {
            // Routes that take no signed-in caller answer a key as nobody.
            "gateway_key" if ["/api/v1/token", "/api/v1/auth/login/mfa"].contains(&self.path) => {
                self.expect[0]
            }
            "gateway_key" if self.expect[0] == 401 => 403,
            "gateway_key" => self.expect[0],
            "admin_key" => {
                let own_security = IN_PERSON.iter().any(|p| self.path.starts_with(p))
                    && self.path != "/api/v1/auth/emails/verify"
                    && !self.path.starts_with("/api/v1/auth/passkeys/login/");
                let on_a_key =
                    self.path.starts_with("/api/v1/api-keys/{key}") && self.method != Method::GET;
                if own_security || on_a_key {
                    403
                } else {
                    self.expect[2]
                }
            }
            _ => self.expect[actor],
        }
    }
}

macro_rules! row {
    ($method:ident $path:literal, $body:expr, $expect:expr) => {
        Row {
            method: Method::$method,
            path: $path,
            body: $body,
            expect: $expect,
        }
    };
}

//                                                   anon user admin ro  viewer prov owner oadm memb  non
#[rustfmt::skip]
pub fn rows() -> Vec<Row> {
    const ALL_200: [u16; 10] = [200; 10];
    const SIGNED_IN: fn(u16) -> [u16; 10] = |s| [401, s, s, s, s, s, s, s, s, s];
    vec![
        row!(GET "/health", None, ALL_200),
        row!(GET "/ready", None, ALL_200),
        row!(GET "/metrics", None, ALL_200),
        row!(GET "/docs", None, ALL_200),
        row!(GET "/admin/docs", None, ALL_200),
        row!(GET "/docs/assets/scalar-1.76.0.js", None, ALL_200),
        row!(GET "/openapi.json", None, ALL_200),
        row!(GET "/api/v1/system", None, ALL_200),
        // Deletions still removing records: platform readers.
        row!(GET "/api/v1/system/removals", None,                         [401, 403, 200, 200, 403, 403, 403, 403, 403, 403]),
        // Account self-service: anyone signed in, for their own account.
        row!(POST "/api/v1/auth/register", Some(r#"{"email": "reg-{n}@example.com", "password": "correct horse battery staple"}"#), [202; 10]),
        row!(POST "/api/v1/auth/login", Some(r#"{"login": "user@example.com", "password": "correct horse battery staple"}"#), ALL_200),
        row!(GET "/api/v1/auth/me", None, SIGNED_IN(200)),
        row!(POST "/api/v1/auth/logout", None, SIGNED_IN(204)),
        row!(PUT "/api/v1/auth/password", Some(r#"{"current_password": "not the password at all", "new_password": "another long password"}"#), SIGNED_IN(400)),
        row!(GET "/api/v1/auth/sessions", None, SIGNED_IN(200)),
        row!(DELETE "/api/v1/auth/sessions/{n}", None, SIGNED_IN(404)),
        row!(GET "/api/v1/auth/emails", None, SIGNED_IN(200)),
        row!(POST "/api/v1/auth/emails", Some(r#"{"email": "extra-{n}@example.com"}"#), SIGNED_IN(202)),
        row!(POST "/api/v1/auth/emails/verify", Some(r#"{"token": "not-a-token"}"#), [400; 10]),
        row!(DELETE "/api/v1/auth/emails/nobody-{n}@example.com", None, SIGNED_IN(404)),
        row!(POST "/api/v1/auth/emails/nobody-{n}@example.com/primary", None, SIGNED_IN(404)),
        row!(POST "/api/v1/auth/reset", Some(r#"{"email": "user@example.com"}"#), [202; 10]),
        // Single sign-on (two providers are configured, neither named `nowhere`).
        row!(GET "/api/v1/auth/sso/providers", None, ALL_200),
        row!(GET "/api/v1/auth/sso/{provider}/start", None, [404; 10]),
        row!(GET "/api/v1/auth/sso/{provider}/callback", None, [404; 10]),
        row!(GET "/api/v1/auth/methods", None, SIGNED_IN(200)),
        row!(DELETE "/api/v1/auth/sso/{provider}/identity", None, SIGNED_IN(404)),
        // Passkeys and the second factor: adding one needs the password
        // (none is sent here); signing in with one needs no account.
        row!(POST "/api/v1/auth/passkeys/register/start", Some("{}"), SIGNED_IN(400)),
        row!(POST "/api/v1/auth/passkeys/register/finish", Some("{}"), SIGNED_IN(400)),
        row!(GET "/api/v1/auth/passkeys", None, SIGNED_IN(200)),
        row!(PATCH "/api/v1/auth/passkeys/{n}", Some(r#"{"name": "Renamed"}"#), SIGNED_IN(404)),
        row!(DELETE "/api/v1/auth/passkeys/{n}", None, SIGNED_IN(404)),
        row!(POST "/api/v1/auth/passkeys/login/start", Some("{}"), ALL_200),
        row!(POST "/api/v1/auth/passkeys/login/finish", Some("{}"), [400; 10]),
        row!(POST "/api/v1/auth/mfa/totp", Some("{}"), SIGNED_IN(400)),
        row!(POST "/api/v1/auth/mfa/totp/confirm", Some(r#"{"code": "123456"}"#), SIGNED_IN(400)),
        row!(POST "/api/v1/auth/mfa/totp/disable", Some("{}"), SIGNED_IN(400)),
        row!(POST "/api/v1/auth/login/mfa", Some(r#"{"mfa_token": "not-a-token", "code": "123456"}"#), [401; 10]),
        row!(POST "/api/v1/auth/reset/confirm", Some(r#"{"token": "not-a-token", "new_password": "another long password"}"#), [400; 10]),
        // Platform user administration.
        row!(GET "/api/v1/users", None,                                   [401, 403, 200, 200, 403, 403, 403, 403, 403, 403]),
        row!(POST "/api/v1/users", Some(r#"{"email": "new-{n}@example.com", "password": "correct horse battery staple"}"#),
                                                                          [401, 403, 201, 403, 403, 403, 403, 403, 403, 403]),
        row!(GET "/api/v1/users/{victim}", None,                          [401, 404, 200, 200, 404, 404, 404, 404, 404, 404]),
        row!(PATCH "/api/v1/users/{victim}", Some(r#"{"display_name": "Renamed"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 404, 404, 404, 404]),
        row!(DELETE "/api/v1/users/{victim}", None,                       [401, 404, 204, 403, 404, 404, 404, 404, 404, 404]),
        row!(GET "/api/v1/audit-events", None,                            [401, 403, 200, 200, 403, 403, 403, 403, 403, 403]),
        // Credentials: `{credential}` is the platform's. Without a scope,
        // admins create the platform's and everyone else their own, which only
        // provider accounts may hold.
        row!(GET "/api/v1/credentials", None, SIGNED_IN(200)),
        row!(POST "/api/v1/credentials", Some(r#"{"name": "C {n}", "kind": "oauth_account", "secret": {"api_key": "sk-matrix-{n}"}}"#),
                                                                          [401, 403, 201, 403, 403, 201, 403, 403, 403, 403]),
        row!(GET "/api/v1/credentials/{credential}", None,                [401, 404, 200, 200, 404, 404, 404, 404, 404, 404]),
        row!(PATCH "/api/v1/credentials/{credential}", Some(r#"{"name": "Renamed"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 404, 404, 404, 404]),
        row!(DELETE "/api/v1/credentials/{credential}", None,             [401, 404, 204, 403, 404, 404, 404, 404, 404, 404]),
        // An organization's credentials: its owners and admins manage them,
        // platform readers read them; members see none.
        row!(GET "/api/v1/organizations/{org}/credentials", None,         [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/credentials", Some(r#"{"name": "O {n}", "kind": "openai", "secret": {"api_key": "sk-matrix-{n}"}}"#),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/credentials/{org_credential}", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 404, 404]),
        row!(PATCH "/api/v1/organizations/{org}/credentials/{org_credential}", Some(r#"{"name": "Renamed"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 404, 404]),
        row!(DELETE "/api/v1/organizations/{org}/credentials/{org_credential}", None,
                                                                          [401, 404, 204, 403, 404, 404, 204, 204, 404, 404]),
        // Endpoints: platform settings.
        row!(GET "/api/v1/endpoints", None,                               [401, 403, 200, 200, 403, 403, 403, 403, 403, 403]),
        row!(POST "/api/v1/endpoints", Some(r#"{"name": "E {n}", "base_url": "http://127.0.0.1:9"}"#),
                                                                          [401, 403, 201, 403, 403, 403, 403, 403, 403, 403]),
        row!(GET "/api/v1/endpoints/{endpoint}", None,                    [401, 403, 200, 200, 403, 403, 403, 403, 403, 403]),
        row!(PATCH "/api/v1/endpoints/{endpoint}", Some(r#"{"enabled": false}"#),
                                                                          [401, 403, 200, 403, 403, 403, 403, 403, 403, 403]),
        row!(DELETE "/api/v1/endpoints/{endpoint}", None,                 [401, 403, 204, 403, 403, 403, 403, 403, 403, 403]),
        row!(POST "/api/v1/endpoints/{endpoint}/sync", None,              [401, 403, 200, 403, 403, 403, 403, 403, 403, 403]),
        // Models: everyone holding `user` reads the enabled ones.
        row!(GET "/api/v1/models", None,                                  [401, 200, 200, 200, 200, 403, 200, 200, 200, 200]),
        row!(POST "/api/v1/models", Some(r#"{"name": "m-{n}", "endpoint_id": "{endpoint}"}"#),
                                                                          [401, 403, 201, 403, 403, 403, 403, 403, 403, 403]),
        row!(GET "/api/v1/models/{model}", None,                          [401, 200, 200, 200, 200, 404, 200, 200, 200, 200]),
        row!(PATCH "/api/v1/models/{model}", Some(r#"{"input_cost_per_token": 0.000003}"#),
                                                                          [401, 403, 200, 403, 403, 403, 403, 403, 403, 403]),
        row!(DELETE "/api/v1/models/{model}", None,                       [401, 403, 204, 403, 403, 403, 403, 403, 403, 403]),
        // Aliases: `{alias}` is global.
        row!(GET "/api/v1/model-aliases", None,                                 [401, 200, 200, 200, 200, 403, 200, 200, 200, 200]),
        row!(POST "/api/v1/model-aliases", Some(r#"{"alias": "a-{n}", "model_id": "{model}"}"#),
                                                                          [401, 201, 201, 201, 201, 403, 201, 201, 201, 201]),
        row!(PATCH "/api/v1/model-aliases/{alias}", Some(r#"{"model_id": "{model}"}"#),
                                                                          [401, 403, 200, 403, 403, 404, 403, 403, 403, 403]),
        row!(DELETE "/api/v1/model-aliases/{alias}", None,                      [401, 403, 204, 403, 403, 404, 403, 403, 403, 403]),
        // Subscriptions: `{subscription}` is `user`'s.
        row!(GET "/api/v1/subscriptions", None, SIGNED_IN(200)),
        row!(POST "/api/v1/subscriptions", Some(r#"{"model_id": "{model}"}"#),
                                                                          [401, 201, 201, 201, 201, 403, 201, 201, 201, 201]),
        row!(DELETE "/api/v1/subscriptions/{subscription}", None,         [401, 204, 204, 403, 404, 404, 404, 404, 404, 404]),
        row!(POST "/api/v1/subscriptions/{subscription}/approve", None,   [401, 404, 200, 403, 404, 404, 404, 404, 404, 404]),
        row!(POST "/api/v1/subscriptions/{subscription}/deny", Some(r#"{"reason": "no"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 404, 404, 404, 404]),
        row!(POST "/api/v1/subscriptions/{subscription}/suspend", None,   [401, 404, 200, 403, 404, 404, 404, 404, 404, 404]),
        // Usage and request logs: everyone's own; provider accounts have none.
        row!(GET "/api/v1/usage", None,                                   [401, 200, 200, 200, 200, 403, 200, 200, 200, 200]),
        row!(GET "/api/v1/usage/export", None,                            [401, 200, 200, 200, 200, 403, 200, 200, 200, 200]),
        row!(GET "/api/v1/request-logs", None,                            [401, 200, 200, 200, 200, 403, 200, 200, 200, 200]),
        row!(GET "/api/v1/request-logs/export", None,                     [401, 200, 200, 200, 200, 403, 200, 200, 200, 200]),
        // `{log}` is `user`'s call: its maker and those who read everyone's.
        row!(GET "/api/v1/request-logs/{log}", None,                      [401, 200, 200, 200, 200, 404, 404, 404, 404, 404]),
        // The gateway takes API keys only: sessions and JWTs are not keys.
        row!(POST "/v1/chat/completions", Some(r#"{"model": "model-{n}", "messages": []}"#), [401; 10]),
        row!(POST "/v1/embeddings", Some(r#"{"model": "model-{n}", "input": "x"}"#), [401; 10]),
        row!(POST "/v1/messages", Some(r#"{"model": "model-{n}", "max_tokens": 1, "messages": []}"#), [401; 10]),
        row!(GET "/v1/models", None, [401; 10]),
        // `{name}`: a name as the gateway takes it, not a catalogue ID.
        row!(GET "/v1/models/{name}", None, [401; 10]),
        row!(POST "/v1/messages/count_tokens", Some(r#"{"model": "model-{n}", "messages": []}"#), [401; 10]),
        // API keys: `{key}` is `user`'s.
        row!(GET "/api/v1/api-keys", None, SIGNED_IN(200)),
        row!(POST "/api/v1/api-keys", Some(r#"{"label": "k {n}"}"#),          [401, 201, 201, 201, 201, 403, 201, 201, 201, 201]),
        row!(GET "/api/v1/api-keys/{key}", None,                              [401, 200, 200, 200, 404, 404, 404, 404, 404, 404]),
        row!(DELETE "/api/v1/api-keys/{key}", None,                           [401, 204, 204, 403, 404, 404, 404, 404, 404, 404]),
        row!(POST "/api/v1/api-keys/{key}/rotate", Some(r#"{"grace_secs": 60}"#),
                                                                          [401, 201, 403, 403, 404, 404, 404, 404, 404, 404]),
        // Organizations.
        row!(GET "/api/v1/organizations", None, SIGNED_IN(200)),
        row!(POST "/api/v1/organizations", Some(r#"{"name": "New {n}"}"#),
                                                                          [401, 201, 201, 201, 201, 403, 201, 201, 201, 201]),
        row!(GET "/api/v1/organizations/{org}", None,                     [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PATCH "/api/v1/organizations/{org}", Some(r#"{"name": "Renamed {n}"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}", None,                  [401, 404, 204, 403, 404, 404, 204, 403, 403, 404]),
        row!(POST "/api/v1/organizations/{org}/suspend", None,            [401, 404, 200, 403, 404, 404, 403, 403, 403, 404]),
        row!(POST "/api/v1/organizations/{org}/resume", None,             [401, 404, 200, 403, 404, 404, 403, 403, 403, 404]),
        row!(POST "/api/v1/organizations/{org}/transfer", Some(r#"{"user_id": "{user}"}"#),
                                                                          [401, 404, 403, 403, 404, 404, 204, 403, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/members", None,             [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        // `{user}` is the member: promoting themself is refused, and the
        // member column of DELETE is the member leaving.
        row!(PATCH "/api/v1/organizations/{org}/members/{user}", Some(r#"{"role": "admin"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/members/{user}", None,   [401, 404, 204, 403, 404, 404, 204, 204, 204, 404]),
        row!(GET "/api/v1/organizations/{org}/invitations", None,         [401, 404, 200, 200, 404, 404, 200, 200, 403, 404]),
        row!(POST "/api/v1/organizations/{org}/invitations", Some(r#"{"email": "invitee-{n}@example.com"}"#),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/invitations/{invitation}", None,
                                                                          [401, 404, 204, 403, 404, 404, 204, 204, 403, 404]),
        // The fixture invitation is for someone else: accepting it is refused
        // to everyone signed in; declining needs only the token.
        row!(POST "/api/v1/invitations/accept", Some(r#"{"token": "{invitation_token}"}"#), SIGNED_IN(403)),
        row!(POST "/api/v1/invitations/decline", Some(r#"{"token": "{invitation_token}"}"#), [204; 10]),
        // Teams.
        // Projects (owners and admins manage them), and chats: `{chat}` is
        // `org_member`'s own; only its owner writes to it, the
        // organization's owners and admins (and platform readers) read it.
        row!(GET "/api/v1/organizations/{org}/projects", None,            [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/projects", Some(r#"{"name": "P {n}"}"#),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/projects/{project}", None,  [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PATCH "/api/v1/organizations/{org}/projects/{project}", Some(r#"{"name": "Renamed"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/projects/{project}", None,
                                                                          [401, 404, 204, 403, 404, 404, 204, 204, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/projects/{project}/chats", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/projects/{project}/chats", Some(r#"{"model": "gpt-4o"}"#),
                                                                          [401, 404, 403, 403, 404, 404, 201, 201, 201, 404]),
        row!(GET "/api/v1/organizations/{org}/projects/{project}/chats/{chat}", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PATCH "/api/v1/organizations/{org}/projects/{project}/chats/{chat}", Some(r#"{"is_starred": true}"#),
                                                                          [401, 404, 403, 403, 404, 404, 403, 403, 200, 404]),
        row!(DELETE "/api/v1/organizations/{org}/projects/{project}/chats/{chat}", None,
                                                                          [401, 404, 204, 403, 404, 404, 204, 204, 204, 404]),
        row!(GET "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/messages", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        // The playground: the fixture chat's model does not exist (404 for its owner).
        row!(POST "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/messages", Some(r#"{"content": "hi"}"#),
                                                                          [401, 404, 403, 403, 404, 404, 403, 403, 404, 404]),
        row!(POST "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/files", Some(r#"{"name": "notes.txt", "content": "context"}"#),
                                                                          [401, 404, 403, 403, 404, 404, 403, 403, 201, 404]),
        row!(GET "/api/v1/organizations/{org}/projects/{project}/chats/{chat}/export", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(GET "/api/v1/organizations/{org}/teams", None,               [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/teams", Some(r#"{"name": "Team {n}"}"#),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/teams/{team}", None,        [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PATCH "/api/v1/organizations/{org}/teams/{team}", Some(r#"{"allowed_models": ["gpt-4o"]}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/teams/{team}", None,     [401, 404, 204, 403, 404, 404, 204, 204, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/teams/{team}/members", None,[401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PUT "/api/v1/organizations/{org}/teams/{team}/members/{user}", Some(r#"{"role": "manager"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        // The member column is the member leaving the team.
        row!(DELETE "/api/v1/organizations/{org}/teams/{team}/members/{user}", None,
                                                                          [401, 404, 204, 403, 404, 404, 204, 204, 204, 404]),
        // Vaults: `{vault}` grants the member `reader`; `{client}` has the
        // certificate `{kid}`. Tokens need a role in the vault, not in the
        // organization.
        row!(GET "/api/v1/organizations/{org}/vaults", None,              [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/vaults", Some(r#"{"name": "Vault {n}"}"#),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/vaults/{vault}", None,      [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PATCH "/api/v1/organizations/{org}/vaults/{vault}", Some(r#"{"name": "Renamed {n}"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/vaults/{vault}", None,   [401, 404, 204, 403, 404, 404, 204, 204, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/vaults/{vault}/grants", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(PUT "/api/v1/organizations/{org}/vaults/{vault}/grants", Some(r#"{"subject_type": "user", "subject_id": "{user}", "role": "writer"}"#),
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/vaults/{vault}/grants/{subject_type}/{subject_id}", None,
                                                                          [401, 404, 204, 403, 404, 404, 204, 204, 403, 404]),
        row!(POST "/api/v1/organizations/{org}/vaults/{vault}/token", None,
                                                                          [401, 404, 403, 403, 404, 404, 403, 403, 200, 404]),
        row!(GET "/api/v1/organizations/{org}/clients", None,             [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/clients", Some(r#"{"name": "service {n}"}"#),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/clients/{client}", None,    [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(DELETE "/api/v1/organizations/{org}/clients/{client}", None, [401, 404, 204, 403, 404, 404, 204, 204, 403, 404]),
        row!(GET "/api/v1/organizations/{org}/clients/{client}/certificates", None,
                                                                          [401, 404, 200, 200, 404, 404, 200, 200, 200, 404]),
        row!(POST "/api/v1/organizations/{org}/clients/{client}/certificates", Some("{}"),
                                                                          [401, 404, 201, 403, 404, 404, 201, 201, 403, 404]),
        row!(DELETE "/api/v1/organizations/{org}/clients/{client}/certificates/{kid}", None,
                                                                          [401, 404, 200, 403, 404, 404, 200, 200, 403, 404]),
        // The token endpoint authenticates by assertion or refresh token, not
        // by the caller's session; the JWKS document is public.
        row!(POST "/api/v1/token", Some(r#"{"grant_type": "refresh_token", "refresh_token": "grt_none-{n}"}"#), [401; 10]),
        row!(GET "/.well-known/jwks.json", None, ALL_200),
    ]
}

/// The server and one signed-in caller of each kind.
pub struct World {
    pub app: TestApp,
    /// JWTs in [`ACTORS`] order; `None` for anonymous.
    pub tokens: Vec<Option<String>>,
    /// Accounts in [`ACTORS`] order; `None` for anonymous.
    pub users: Vec<Option<User>>,
    /// A local HTTP server answering `GET /v1/models`, as an endpoint's upstream.
    pub upstream: String,
    counter: AtomicU32,
}

/// Fresh things one cell acts on.
pub struct Fixture {
    pub org: Id,
    pub team: Id,
    pub member: Id,
    pub invitation: Id,
    pub invitation_token: String,
    pub victim: Option<Id>,
    pub credential: Id,
    /// One of `org`'s credentials.
    pub org_credential: Id,
    pub endpoint: Id,
    pub model: Id,
    pub alias: Id,
    pub subscription: Id,
    pub key: Id,
    pub vault: Id,
    pub client: Id,
    pub kid: String,
    pub project: Id,
    /// `org_member`'s own chat in `project`.
    pub chat: Id,
    /// A request log of `user`'s.
    pub log: Id,
}

impl World {
    pub async fn new() -> World {
        let mut config = admin_config();
        // Two single sign-on providers, never called: the list has two items.
        for id in ["corp", "partner"] {
            let provider =
                json!({"id": id, "issuer": "http://127.0.0.1:9", "client_id": "gatehouse"});
            config
                .auth
                .sso
                .providers
                .push(serde_json::from_value(provider).unwrap());
        }
        let app = spawn_app(config).await;
        let accounts = &app.services.accounts;
        let admin_token = app.sign_in("admin@example.com").await;
        let admin = accounts.authenticate_token(&admin_token).await.unwrap().0;
        let c = ClientInfo::default();
        let mut tokens = vec![None];
        let mut users = vec![None];
        for actor in &ACTORS[1..10] {
            let (token, user) = if *actor == "admin" {
                (admin_token.clone(), admin.clone())
            } else {
                let email = format!("{actor}@example.com");
                let new = AdminNewUser {
                    email: &email,
                    password: Some(PASSWORD),
                    username: None,
                    display_name: Some(actor),
                    provider: *actor == "provider",
                };
                let (mut user, _) = accounts.admin_create_user(&admin, new, &c).await.unwrap();
                let extra = match *actor {
                    "admin_readonly" => Some(gatehouse_core::model::accounts::Role::AdminReadonly),
                    "request_viewer" => Some(gatehouse_core::model::accounts::Role::RequestViewer),
                    _ => None,
                };
                if let Some(role) = extra {
                    let mut roles = user.roles.clone();
                    roles.insert(role);
                    let change = gatehouse_core::accounts::UserChange {
                        roles: Some(roles),
                        ..Default::default()
                    };
                    user = accounts
                        .update_account(&admin, user.id, change, &c)
                        .await
                        .unwrap();
                }
                (app.sign_in(&email).await, user)
            };
            tokens.push(Some(token));
            users.push(Some(user));
        }
        // The two keys: `admin`'s with the management scope, `user`'s without.
        for (owner, scopes) in [
            (
                1usize,
                vec![gatehouse_core::model::keys::KeyScope::Management],
            ),
            (0, vec![]),
        ] {
            let owner = if owner == 1 {
                &admin
            } else {
                users[1].as_ref().unwrap()
            };
            let spec = gatehouse_core::keys::NewKey {
                label: "matrix".into(),
                scopes,
                ..Default::default()
            };
            let (_, plaintext) = app
                .services
                .keys
                .create(owner, spec, None, &c)
                .await
                .unwrap();
            tokens.push(Some(plaintext));
            users.push(Some(owner.clone()));
        }
        World {
            app,
            tokens,
            users,
            upstream: models_upstream().await,
            counter: AtomicU32::new(0),
        }
    }

    pub fn user(&self, actor: &str) -> &User {
        let i = ACTORS.iter().position(|a| *a == actor).unwrap();
        self.users[i].as_ref().unwrap()
    }

    pub fn token(&self, actor: &str) -> &str {
        let i = ACTORS.iter().position(|a| *a == actor).unwrap();
        self.tokens[i].as_deref().unwrap()
    }

    pub fn next(&self) -> u32 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh organization owned by `org_owner` with `org_admin` and
    /// `org_member`, a team holding the member, and a pending invitation.
    /// `victim` also creates a user for the user-administration routes.
    pub async fn fixture(&self, victim: bool) -> Fixture {
        self.fixture_with(victim, true).await
    }

    /// The fixture a row needs: a user to administer only for `{victim}`
    /// rows, an API key only for `{key}` rows (a user holds at most 1000).
    pub async fn fixture_for(&self, path: &str) -> Fixture {
        self.fixture_with(path.contains("{victim}"), path.contains("{key}"))
            .await
    }

    async fn fixture_with(&self, victim: bool, with_key: bool) -> Fixture {
        let tenancy = &self.app.services.tenancy;
        let c = ClientInfo::default();
        let owner = self.user("org_owner");
        let name = format!("Fixture {}", self.next());
        let org = tenancy.create_org(owner, &name, &c).await.unwrap().id;
        for (actor, role) in [
            ("org_admin", OrgRole::Admin),
            ("org_member", OrgRole::Member),
        ] {
            let user = self.user(actor);
            let sent = tenancy
                .invite(owner, org, &user.email, role, &c)
                .await
                .unwrap();
            tenancy
                .accept_invitation(user, &sent.token, &c)
                .await
                .unwrap();
        }
        let member = self.user("org_member").id;
        let spec = TeamSpec {
            name: Some("Fixture team".into()),
            ..TeamSpec::default()
        };
        let team = tenancy.create_team(owner, org, spec, &c).await.unwrap().id;
        tenancy
            .put_team_member(owner, org, team, member, TeamRole::Member, &c)
            .await
            .unwrap();
        let n = self.next();
        let sent = tenancy
            .invite(
                owner,
                org,
                &format!("pending-{n}@example.com"),
                OrgRole::Member,
                &c,
            )
            .await
            .unwrap();
        let victim = if victim {
            let email = format!("victim-{n}@example.com");
            let new = AdminNewUser::new(&email, Some(PASSWORD));
            let admin = self.user("admin");
            let (user, _) = self
                .app
                .services
                .accounts
                .admin_create_user(admin, new, &c)
                .await
                .unwrap();
            Some(user.id)
        } else {
            None
        };
        let catalog = &self.app.services.catalog;
        let admin = self.user("admin");
        let credential = catalog
            .create_credential(
                admin,
                gatehouse_core::catalog::NewCredential {
                    scope: None,
                    name: format!("Platform {n}"),
                    kind: gatehouse_core::model::catalog::CredentialKind::Openai,
                    secret: json!({"api_key": format!("sk-fixture-{n}")}),
                    metadata: Value::Null,
                },
                &c,
            )
            .await
            .unwrap()
            .id;
        let org_credential = catalog
            .create_credential(
                owner,
                gatehouse_core::catalog::NewCredential {
                    scope: Some(
                        gatehouse_core::model::catalog::CredentialScope::Organization {
                            org_id: org,
                        },
                    ),
                    name: format!("Organization {n}"),
                    kind: gatehouse_core::model::catalog::CredentialKind::Openai,
                    secret: json!({"api_key": format!("sk-org-{n}")}),
                    metadata: Value::Null,
                },
                &c,
            )
            .await
            .unwrap()
            .id;
        let endpoint_spec = |name: String| gatehouse_core::catalog::EndpointSpec {
            name: Some(name),
            base_url: Some(self.upstream.clone()),
            ..Default::default()
        };
        let endpoint = catalog
            .create_endpoint(admin, endpoint_spec(format!("endpoint {n}")), &c)
            .await
            .unwrap()
            .id;
        let models_endpoint = catalog
            .create_endpoint(admin, endpoint_spec(format!("models {n}")), &c)
            .await
            .unwrap()
            .id;
        let model_spec = |name: String| gatehouse_core::catalog::ModelSpec {
            name: Some(name),
            endpoint_id: Some(models_endpoint),
            ..Default::default()
        };
        let model = catalog
            .create_model(admin, model_spec(format!("model-{n}")), &c)
            .await
            .unwrap()
            .id;
        let other_model = catalog
            .create_model(admin, model_spec(format!("other-{n}")), &c)
            .await
            .unwrap()
            .id;
        let alias = catalog
            .create_alias(admin, &format!("alias-{n}"), model, true, &c)
            .await
            .unwrap()
            .id;
        let user = self.user("user");
        let subscription = catalog.subscribe(user, other_model, &c).await.unwrap().id;
        let key = if with_key {
            self.app
                .services
                .keys
                .create(user, Default::default(), None, &c)
                .await
                .unwrap()
                .0
                .id
        } else {
            Id(0)
        };
        let vaults = &self.app.services.vaults;
        let vault = vaults
            .create_vault(
                owner,
                org,
                gatehouse_core::vaults::VaultSpec {
                    name: Some(format!("Vault {n}")),
                    description: None,
                },
                &c,
            )
            .await
            .unwrap()
            .id;
        vaults
            .put_grant(
                owner,
                org,
                vault,
                (gatehouse_core::model::vaults::SubjectKind::User, member),
                gatehouse_core::model::vaults::VaultRole::Reader,
                &c,
            )
            .await
            .unwrap();
        let client = vaults
            .create_client(
                owner,
                org,
                gatehouse_core::vaults::VaultSpec {
                    name: Some(format!("service {n}")),
                    description: None,
                },
                &c,
            )
            .await
            .unwrap()
            .id;
        let kid = vaults
            .add_certificate(owner, org, client, Default::default(), &c)
            .await
            .unwrap()
            .0
            .kid;
        let work = &self.app.services.work;
        let project = work
            .create_project(owner, org, "Fixture project", &c)
            .await
            .unwrap()
            .id;
        let chat_spec = gatehouse_core::work::ChatSpec {
            model: "gpt-4o".into(),
            ..Default::default()
        };
        let chat = work
            .create_chat(self.user("org_member"), org, project, chat_spec, &c)
            .await
            .unwrap()
            .id;
        let log = self.app.services.usage.env().ids.next_id();
        self.app
            .services
            .usage
            .record(gatehouse_core::usage::RequestLog {
                key_id: key,
                model_id: model,
                endpoint_id: endpoint,
                ..crate::helpers::request_log(log, user.id, "fixture")
            });
        self.app.services.usage.flush().await.unwrap();
        Fixture {
            log,
            project,
            chat,
            vault,
            client,
            kid,
            org,
            team,
            member,
            invitation: sent.invitation.id,
            invitation_token: sent.token,
            victim,
            credential,
            org_credential,
            endpoint,
            model,
            alias,
            subscription,
            key,
        }
    }

    /// The ID of the newest audit event.
    pub async fn newest_audit_event(&self) -> Option<Id> {
        let admin = self.user("admin");
        let events = self
            .app
            .services
            .audit
            .list(admin, &Default::default(), None, 1)
            .await
            .unwrap()
            .0;
        events.first().map(|e| e.id)
    }

    /// Fills a template's placeholders for one cell.
    pub fn fill(&self, template: &str, f: &Fixture, me: Option<&User>) -> String {
        let n = self.next();
        template
            .replace("{org}", &f.org.to_string())
            .replace("{team}", &f.team.to_string())
            .replace("{user}", &f.member.to_string())
            .replace(
                "{victim}",
                &f.victim.map(|v| v.to_string()).unwrap_or_default(),
            )
            .replace("{invitation_token}", &f.invitation_token)
            .replace("{credential}", &f.credential.to_string())
            .replace("{org_credential}", &f.org_credential.to_string())
            .replace("{endpoint}", &f.endpoint.to_string())
            .replace("{model}", &f.model.to_string())
            .replace("{name}", "model-0")
            .replace("{alias}", &f.alias.to_string())
            .replace("{subscription}", &f.subscription.to_string())
            .replace("{key}", &f.key.to_string())
            .replace("{vault}", &f.vault.to_string())
            .replace("{client}", &f.client.to_string())
            .replace("{kid}", &f.kid)
            .replace("{subject_type}", "user")
            .replace("{subject_id}", &f.member.to_string())
            .replace("{invitation}", &f.invitation.to_string())
            .replace("{me}", &me.map(|u| u.id.to_string()).unwrap_or_default())
            .replace("{provider}", "nowhere")
            .replace("{project}", &f.project.to_string())
            .replace("{chat}", &f.chat.to_string())
            .replace("{log}", &f.log.to_string())
            .replace("{n}", &(1_000_000 + n).to_string())
    }

    /// Sends one request as `actor_index`; returns the status.
    pub async fn send(&self, row: &Row, actor_index: usize, f: &Fixture) -> u16 {
        let me = self.users[actor_index].as_ref();
        let body = row.body.map(|body| {
            let body: Value = serde_json::from_str(&self.fill(body, f, me)).unwrap();
            body
        });
        self.send_body(row, actor_index, f, body).await.0
    }

    /// Sends one request as `actor_index` with `body` in place of the row's;
    /// the status and the JSON answer (`null` when there is none).
    pub async fn send_body(
        &self,
        row: &Row,
        actor_index: usize,
        f: &Fixture,
        body: Option<Value>,
    ) -> (u16, Value) {
        let me = self.users[actor_index].as_ref();
        let path = self.fill(row.path, f, me);
        let mut request = self
            .app
            .client
            .request(row.method.clone(), self.app.url(&path));
        // Logout with a JWT would end every JWT of the actor: sign out of a
        // command-line session made for it instead.
        let logout = row.method == Method::POST
            && row.path == "/api/v1/auth/logout"
            && !ACTORS[actor_index].ends_with("_key");
        match (&self.tokens[actor_index], me) {
            (Some(_), Some(user)) if logout => {
                let (status, session) = self
                    .app
                    .post(
                        "/api/v1/auth/login",
                        None,
                        json!({"login": user.email, "password": PASSWORD, "mode": "cli"}),
                    )
                    .await;
                assert_eq!(status, 200, "{session}");
                request = request.bearer_auth(session["token"].as_str().unwrap());
            }
            (Some(token), _) => request = request.bearer_auth(token),
            (None, _) => {}
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or_default())
    }
}

/// Starts an HTTP server that lists two models at `GET /v1/models`.
pub async fn models_upstream() -> String {
    let app = axum::Router::new().route(
        "/v1/models",
        axum::routing::get(|| async {
            axum::Json(json!({"object": "list", "data": [
                {"id": "llama-3-8b", "object": "model", "owned_by": "meta", "max_model_len": 8192},
                {"id": "mistral-7b", "object": "model", "owned_by": "mistral"},
            ]}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

/// A route's template as a row names it: `{victim}` and `{n}` stand for the
/// router's `{id}`, and literal example emails for `{email}`.
fn route_of(row: &Row) -> (Method, String) {
    let path = row
        .path
        .replace("{victim}", "{id}")
        .replace("sessions/{n}", "sessions/{id}")
        .replace("passkeys/{n}", "passkeys/{id}")
        .replace("{invitation}", "{id}")
        .replace("{log}", "{id}")
        .replace("nobody-{n}@example.com", "{email}");
    let path = [
        "{org_credential}",
        "{credential}",
        "{endpoint}",
        "{model}",
        "{alias}",
        "{subscription}",
        "{key}",
    ]
    .iter()
    .fold(path, |p, name| p.replace(name, "{id}"))
    .replace("{name}", "{model}");
    (row.method.clone(), path)
}

#[tokio::test]
async fn every_route_answers_every_caller_as_the_matrix_says() {
    let rows = rows();
    // The table covers exactly the router's routes.
    let served: BTreeSet<(String, String)> = gatehouse_api::rest::routes()
        .into_iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let listed: BTreeSet<(String, String)> = rows
        .iter()
        .map(route_of)
        .map(|(m, p)| (m.to_string(), p))
        .collect();
    let missing: Vec<_> = served.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&served).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "the authorization matrix is out of date.\nroutes without a row: {missing:?}\nrows without a route: {stale:?}"
    );
    assert_eq!(rows.len(), served.len(), "one row per route");

    let world = World::new().await;
    let mut wrong = Vec::new();
    for row in &rows {
        for (i, actor) in ACTORS.iter().enumerate() {
            let fixture = world.fixture_for(row.path).await;
            let before = world.newest_audit_event().await;
            let got = world.send(row, i, &fixture).await;
            if got != row.expected(i) {
                wrong.push(format!(
                    "{} {} as {actor}: expected {}, got {got}",
                    row.method,
                    row.path,
                    row.expected(i)
                ));
            }
            // Every successful write leaves an audit event (starting a
            // passkey sign-in stores only a five-minute challenge).
            let write = row.method != Method::GET && !row.path.ends_with("/login/start");
            if write && (200..300).contains(&got) && world.newest_audit_event().await == before {
                wrong.push(format!(
                    "{} {} as {actor}: {got} without an audit event",
                    row.method, row.path
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} cells differ:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
    world.app.stop().await;
}
