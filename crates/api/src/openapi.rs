//! The OpenAPI document, generated from the handlers' annotations through the
//! same route list the router is built from ([`rest::documented`]), so the two
//! cannot disagree. The checked-in `OpenAPI.yaml` is this document; a test
//! fails when they drift apart.

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
pub(crate) struct ApiDoc;

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

/// The OpenAPI document: [`ApiDoc`]'s description with every route the
/// router serves.
pub fn spec() -> utoipa::openapi::OpenApi {
    let mut doc = rest::documented().into_openapi();
    // The crate version would make the file change on every release bump; the
    // document describes the API, whose version is in its paths.
    doc.info.version = "v1".to_string();
    for (path, item) in doc.paths.paths.iter_mut() {
        if let Some(post) = item.post.as_mut()
            && crate::idempotency::applies_to(path)
        {
            post.parameters
                .get_or_insert_with(Vec::new)
                .push(idempotency_key().into());
        }
    }
    doc
}

/// The optional `Idempotency-Key` header of management writes.
fn idempotency_key() -> utoipa::openapi::path::Parameter {
    use utoipa::openapi::path::{ParameterBuilder, ParameterIn};
    use utoipa::openapi::{ObjectBuilder, Required, Type};
    ParameterBuilder::new()
        .name("Idempotency-Key")
        .parameter_in(ParameterIn::Header)
        .required(Required::False)
        .description(Some(
            "Applies the write at most once: a retry with the same key, credential and body within 24 hours gets the first answer again (with `Idempotent-Replayed: true`); the same key with another body is refused with 422 `idempotency_key_reused`. 1 to 255 visible ASCII characters, e.g. a UUID.",
        ))
        .schema(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .min_length(Some(1))
                .max_length(Some(255)),
        ))
        .build()
}

/// The OpenAPI document as YAML, as checked in at `OpenAPI.yaml`.
pub fn yaml() -> String {
    spec()
        .to_yaml()
        .unwrap_or_else(|e| format!("# cannot render OpenAPI document: {e}\n"))
}
