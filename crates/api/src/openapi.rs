//! The OpenAPI document, generated from the handlers' annotations. The checked-in
//! `OpenAPI.yaml` is this document; a test fails when they drift apart.

use utoipa::OpenApi;

use crate::error::{ErrorBody, ErrorDetail};
use crate::rest;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Gatehouse",
        description = "Identity, tenancy, access and spend for every model an organization serves.",
        license(name = "Apache-2.0"),
    ),
    paths(
        rest::ops::health,
        rest::ops::ready,
        rest::ops::metrics,
        rest::system::info,
        rest::auth::register,
        rest::auth::login,
        rest::auth::me,
        rest::auth::logout,
        rest::auth::change_password,
        rest::auth::list_sessions,
        rest::auth::revoke_session,
        rest::auth::list_emails,
        rest::auth::add_email,
        rest::auth::remove_email,
        rest::auth::make_primary,
        rest::auth::verify_email,
        rest::auth::request_reset,
        rest::auth::confirm_reset,
        rest::users::list,
        rest::users::read,
        rest::users::create,
        rest::users::update,
        rest::users::delete,
        rest::orgs::list,
        rest::orgs::create,
        rest::orgs::read,
        rest::orgs::update,
        rest::orgs::delete,
        rest::orgs::suspend,
        rest::orgs::resume,
        rest::orgs::transfer,
        rest::orgs::members,
        rest::orgs::set_member_role,
        rest::orgs::remove_member,
        rest::orgs::invitations,
        rest::orgs::invite,
        rest::orgs::revoke_invitation,
        rest::orgs::accept,
        rest::orgs::decline,
        rest::teams::list,
        rest::teams::create,
        rest::teams::read,
        rest::teams::update,
        rest::teams::delete,
        rest::teams::members,
        rest::teams::put_member,
        rest::teams::remove_member,
        rest::catalog::list_credentials,
        rest::catalog::create_credential,
        rest::catalog::read_credential,
        rest::catalog::update_credential,
        rest::catalog::delete_credential,
        rest::catalog::list_endpoints,
        rest::catalog::create_endpoint,
        rest::catalog::read_endpoint,
        rest::catalog::update_endpoint,
        rest::catalog::delete_endpoint,
        rest::catalog::sync_endpoint,
        rest::catalog::list_models,
        rest::catalog::create_model,
        rest::catalog::read_model,
        rest::catalog::update_model,
        rest::catalog::delete_model,
        rest::catalog::list_aliases,
        rest::catalog::create_alias,
        rest::catalog::update_alias,
        rest::catalog::delete_alias,
        rest::catalog::list_subscriptions,
        rest::catalog::subscribe,
        rest::catalog::cancel_subscription,
        rest::catalog::approve_subscription,
        rest::catalog::deny_subscription,
        rest::catalog::suspend_subscription,
        rest::keys::list,
        rest::keys::create,
        rest::keys::read,
        rest::keys::revoke,
        rest::keys::rotate,
        rest::audit::list,
        rest::usage::stats,
        rest::usage::export,
        rest::usage::logs,
        rest::vaults::list_vaults,
        rest::vaults::create_vault,
        rest::vaults::read_vault,
        rest::vaults::update_vault,
        rest::vaults::delete_vault,
        rest::vaults::list_grants,
        rest::vaults::put_grant,
        rest::vaults::delete_grant,
        rest::vaults::user_token,
        rest::vaults::list_clients,
        rest::vaults::create_client,
        rest::vaults::read_client,
        rest::vaults::delete_client,
        rest::vaults::list_certificates,
        rest::vaults::add_certificate,
        rest::vaults::revoke_certificate,
        rest::vaults::token,
        rest::vaults::jwks,
        crate::gateway::chat_completions,
        crate::gateway::embeddings,
        crate::gateway::messages,
        crate::gateway::models,
    ),
    modifiers(&BearerAuth),
    components(schemas(ErrorBody, ErrorDetail)),
    tags(
        (name = "operations", description = "Liveness, readiness and metrics"),
        (name = "system", description = "Server and installation information"),
        (name = "auth", description = "Registration, sign-in and the signed-in account"),
        (name = "users", description = "User administration"),
        (name = "organizations", description = "Organizations, members and invitations"),
        (name = "teams", description = "Teams, delegated permissions and model allow-lists"),
        (name = "catalog", description = "Credentials, inference endpoints, models, aliases and subscriptions"),
        (name = "keys", description = "API keys"),
        (name = "vaults", description = "Vaults and their grants to members, teams and service clients"),
        (name = "clients", description = "Service clients and their Ed25519 certificates"),
        (name = "tokens", description = "Vault tokens: RFC 7523 client assertions, rotating refresh tokens, JWKS"),
        (name = "gateway", description = "OpenAI- and Anthropic-compatible inference, with a Gatehouse API key"),
        (name = "records", description = "Audit log, usage statistics and request logs"),
    )
)]
struct ApiDoc;

/// Declares the `bearer` scheme that authenticated paths name.
struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(utoipa::openapi::security::ApiKey::Header(
                utoipa::openapi::security::ApiKeyValue::new("x-api-key"),
            )),
        );
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// The OpenAPI document.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = ApiDoc::openapi();
    // The crate version would make the file change on every release bump; the
    // document describes the API, whose version is in its paths.
    doc.info.version = "v1".to_string();
    doc
}

/// The OpenAPI document as YAML, as checked in at `OpenAPI.yaml`.
pub fn yaml() -> String {
    spec()
        .to_yaml()
        .unwrap_or_else(|e| format!("# cannot render OpenAPI document: {e}\n"))
}
