//! The credential a request presents, read one way for every transport: REST
//! and gateway headers and gRPC metadata alike. In order: `X-API-Key`, then
//! `Authorization: Bearer`, then the session cookie. What it names is decided
//! by one rule in core, [`Services::caller`](gatehouse_core::services::Services::caller).

use axum::http::HeaderMap;
use axum::http::header::{AUTHORIZATION, COOKIE};
use gatehouse_core::services::Credential;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "gatehouse_session";
/// Name of the device-proof cookie a sign-in sets (OWASP's device cookie):
/// sent back at the next sign-in, it keeps failures made elsewhere from
/// locking this client out.
pub const DEVICE_COOKIE: &str = "gatehouse_device";

/// The device proof `headers` present, if any.
pub fn device_proof(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, DEVICE_COOKIE)
}

/// The browser session cookie `headers` present, if any (the console reads
/// nothing else).
pub fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
}

/// The credential `headers` present, if any.
pub fn credential(headers: &HeaderMap) -> Option<Credential<'_>> {
    if let Some(key) = headers.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return Some(Credential::ApiKey(key.trim()));
    }
    if let Some(token) = bearer(headers) {
        return Some(Credential::Bearer(token));
    }
    cookie(headers, SESSION_COOKIE).map(Credential::SessionCookie)
}

/// The token of `Authorization: Bearer <token>`, when there is one.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| {
            h.strip_prefix("Bearer ")
                .or_else(|| h.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// The value of cookie `name`.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[test]
    fn credentials_are_read_in_order() {
        let all = headers(&[
            ("cookie", "a=b; gatehouse_session=s1"),
            ("authorization", "Bearer jwt"),
            ("x-api-key", " ak_1 "),
        ]);
        assert_eq!(credential(&all), Some(Credential::ApiKey("ak_1")));
        let no_key = headers(&[
            ("cookie", "gatehouse_session=s1"),
            ("authorization", "bearer  jwt "),
        ]);
        assert_eq!(credential(&no_key), Some(Credential::Bearer("jwt")));
        let empty_bearer = headers(&[
            ("authorization", "Bearer  "),
            ("cookie", "x=1; gatehouse_session=s1"),
        ]);
        assert_eq!(
            credential(&empty_bearer),
            Some(Credential::SessionCookie("s1"))
        );
        assert_eq!(credential(&headers(&[("authorization", "Basic x")])), None);
    }
}
