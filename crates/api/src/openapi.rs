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
    // Schemas only query parameters name: utoipa collects those of bodies.
    components(schemas(
        ErrorBody,
        ErrorDetail,
        crate::rest::names::GroupBy,
        crate::rest::export::Format,
        crate::rest::work::chats::ExportFormat,
    )),
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
        (name = "work", description = "Projects, chats and their messages"),
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
                    .description(Some(
                        "A JWT from `POST /api/v1/auth/login`, a session token, or an API key (`ak_…`)",
                    ))
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
        let operations = [
            (false, item.get.as_mut()),
            (true, item.post.as_mut()),
            (false, item.put.as_mut()),
            (false, item.patch.as_mut()),
            (false, item.delete.as_mut()),
        ];
        for (post, operation) in operations {
            if let Some(operation) = operation {
                complete(path, post, operation);
            }
        }
    }
    doc
}

/// Path and query parameters that carry an ID: digits, as IDs print.
const ID_PARAMETERS: [&str; 13] = [
    "id",
    "org",
    "project",
    "chat",
    "team",
    "vault",
    "client",
    "user",
    "subject_id",
    "key",
    "actor",
    "organization_id",
    "organization",
];

/// What every operation of a kind can answer, written once here rather than
/// on each handler: the statuses the shared extractors, authentication and
/// idempotency produce, and the ID format of its parameters.
fn complete(path: &str, post: bool, operation: &mut utoipa::openapi::path::Operation) {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::{ObjectBuilder, Type};
    let gateway = path.starts_with("/v1/");
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    let mut queried = false;
    for parameter in operation.parameters.iter_mut().flatten() {
        let utoipa::openapi::RefOr::T(parameter) = parameter else {
            continue;
        };
        let id = ID_PARAMETERS.contains(&parameter.name.as_str());
        match parameter.parameter_in {
            ParameterIn::Path | ParameterIn::Query if id => {
                parameter.schema = Some(
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .pattern(Some("^[0-9]{1,19}$"))
                        .into(),
                );
            }
            _ => {}
        }
        queried |= parameter.parameter_in == ParameterIn::Query;
    }
    let mut add = |status: &str, description: &str| {
        let responses = &mut operation.responses.responses;
        if responses.contains_key(status) {
            return;
        }
        let mut response = utoipa::openapi::ResponseBuilder::new().description(description);
        if !gateway {
            response = response.content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name("ErrorBody")))
                    .build(),
            );
        }
        responses.insert(status.to_string(), response.build().into());
    };
    if operation.request_body.is_some() {
        add("400", "A malformed or invalid body");
        add("413", "The body is larger than `server.body_limit_bytes`");
        add("415", "The body is not `application/json`");
    }
    if path.contains('{') {
        add("400", "A malformed ID in the path");
        add("404", "Not found, or not visible to you");
    }
    if queried {
        add("400", "An invalid query parameter");
    }
    if gateway {
        // Every gateway call is decided the same way (SPEC §4).
        add("401", "Unknown, revoked or expired key");
        if post {
            add("403", "The key may not use this model");
            add("404", "Unknown model");
            add("429", "Rate limit or budget; see Retry-After");
            add("502", "The model's endpoint failed");
            add("503", "The model's endpoint is disabled or misconfigured");
            add("504", "The model's endpoint timed out");
        }
    }
    if secured {
        add(
            "401",
            "Not signed in, or the credential is invalid, expired or revoked",
        );
        if !gateway {
            add(
                "403",
                "Not allowed: your role, or an API key without the `management` scope",
            );
        }
    }
    if path.starts_with("/api/") {
        add(
            "503",
            "Storage did not answer, or could not confirm a write (retry it with the same `Idempotency-Key`)",
        );
        add(
            "504",
            "The request took longer than `server.request_timeout_secs`",
        );
    }
    if post && crate::idempotency::applies_to(path) {
        add(
            "409",
            "A request with this `Idempotency-Key` is still running, or was applied and its answer lost",
        );
        add(
            "422",
            "`idempotency_key_reused`: this `Idempotency-Key` was used for another request",
        );
    }
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
                .pattern(Some("^[\\x21-\\x7e]{1,255}$")),
        ))
        .build()
}

/// The OpenAPI document as YAML, as checked in at `OpenAPI.yaml`.
pub fn yaml() -> String {
    spec()
        .to_yaml()
        .unwrap_or_else(|e| format!("# cannot render OpenAPI document: {e}\n"))
}
