//! Extractors that reject with our error shape instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts, Request};
use gatehouse_core::ErrorCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::ApiError;

/// `axum::Json`, but a malformed, oversized or non-JSON body becomes an
/// [`ApiError`] with a stable code, and a number with no fraction counts as
/// an integer wherever one is expected: JSON Schema calls `55190.0` an
/// integer, and clients that keep every number as a float send it so.
#[derive(Debug)]
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<Value>::from_request(request, state).await?;
        object_as(value).map(ApiJson)
    }
}

/// A body read as `T` by the rules of [`ApiJson`], for handlers that read
/// the body themselves (an optional body, a choice of content types).
pub fn json_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::new(ErrorCode::MalformedBody, format!("invalid JSON body: {e}")))?;
    object_as(value)
}

/// `value` as `T` when it is an object: serde would take a struct's fields
/// from an array too, in order (and `[]` or `[null]` as all defaults).
fn object_as<T: DeserializeOwned>(mut value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::new(
            ErrorCode::MalformedBody,
            "invalid JSON body: expected an object",
        ));
    }
    integral_floats_as_integers(&mut value);
    serde_json::from_value(value)
        .map_err(|e| ApiError::new(ErrorCode::MalformedBody, format!("invalid JSON body: {e}")))
}

/// Rewrites every float with no fractional part (and exactly representable,
/// below 2^53) as an integer. Bounded: serde_json refuses documents nested
/// deeper than 128 levels before this runs.
fn integral_floats_as_integers(value: &mut Value) {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    match value {
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < EXACT
            {
                *value = if f >= 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::from(f as i64)
                };
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_floats_as_integers),
        Value::Object(members) => members.values_mut().for_each(integral_floats_as_integers),
        _ => {}
    }
}

/// `axum::extract::Query`, but a malformed query string becomes an
/// `invalid_input` error in our shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);

/// `axum::extract::Path`, but a segment that does not decode (bytes that are
/// not UTF-8) becomes an `invalid_input` error in our shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_floats_become_integers_and_others_stay() {
        let mut v = json!({"grace_secs": 55190.0, "n": [-3.0, 0.5, 1e300], "s": "2.0", "i": 7});
        integral_floats_as_integers(&mut v);
        assert_eq!(
            v,
            json!({"grace_secs": 55190, "n": [-3, 0.5, 1e300], "s": "2.0", "i": 7})
        );
        assert!(v["grace_secs"].is_u64());
        assert!(v["n"][0].is_i64());
    }
}
