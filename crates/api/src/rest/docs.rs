//! The interactive API documentation at `/docs` (alias `/admin/docs`): the
//! Scalar API reference, vendored into the binary (`assets/scalar/`), reading
//! `/openapi.json`. Nothing is loaded from anywhere but this server, and the
//! page's Content-Security-Policy forbids anything else: air-gapped
//! installations get the same page.

use axum::http::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

/// The vendored `@scalar/api-reference` release (see `assets/scalar/README.md`).
pub const SCALAR_VERSION: &str = "1.76.0";

/// Where the script is served: versioned, so it may be cached for good.
pub const SCRIPT_PATH: &str = "/docs/assets/scalar-1.76.0.js";

const SCRIPT: &[u8] = include_bytes!("../../assets/scalar/standalone.js");

/// The page: Scalar reads its document URL and settings from the
/// `api-reference` element, so no inline script is needed. Its default fonts
/// would come from a CDN; the system's are used instead.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Gatehouse API</title>
</head>
<body>
<script id="api-reference" data-url="/openapi.json" data-configuration='{"withDefaultFonts": false, "hideClientButton": true, "telemetry": false, "showDeveloperTools": "never", "agent": {"disabled": true}, "mcp": {"disabled": true}}'></script>
<script src="/docs/assets/scalar-1.76.0.js"></script>
</body>
</html>
"#;

/// Everything from this origin, nothing from elsewhere. Scalar injects its
/// stylesheet at run time, hence inline styles.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; font-src 'self' data:; connect-src 'self'; \
     base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

pub async fn page() -> Response {
    (
        [
            (CONTENT_TYPE, "text/html; charset=utf-8"),
            (CONTENT_SECURITY_POLICY, POLICY),
        ],
        PAGE,
    )
        .into_response()
}

pub async fn script() -> Response {
    (
        [
            (CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (CACHE_CONTROL, "public, max-age=31536000, immutable"),
        ],
        SCRIPT,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_names_the_vendored_version() {
        assert!(SCRIPT_PATH.contains(SCALAR_VERSION));
        assert!(PAGE.contains(SCRIPT_PATH));
        assert!(!PAGE.contains("http://") && !PAGE.contains("https://"));
        assert!(SCRIPT.len() > 1_000_000, "the whole bundle is embedded");
    }
}
