//! Refusals and failures in the caller's API shape: OpenAI's error object or
//! Anthropic's, with the status and `Retry-After` the SDKs act on.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gatehouse_core::keys::index::Denial;
use gatehouse_core::model::catalog::ApiFlavour;
use serde_json::json;

/// A refusal or failure in the caller's API shape (the flavour of the route
/// it came in on).
pub struct GatewayError {
    shape: ApiFlavour,
    pub(super) status: StatusCode,
    kind: &'static str,
    pub(super) message: String,
    pub(super) retry_after: Option<u64>,
}

impl GatewayError {
    pub(super) fn new(shape: ApiFlavour, status: StatusCode, message: impl Into<String>) -> Self {
        let kind = match (shape, status.as_u16()) {
            (ApiFlavour::Openai, 401) => "authentication_error",
            (ApiFlavour::Openai, 403) => "permission_error",
            (ApiFlavour::Openai, 404) => "not_found_error",
            (ApiFlavour::Openai, 429) => "rate_limit_error",
            (ApiFlavour::Openai, 400..=499) => "invalid_request_error",
            (ApiFlavour::Openai, _) => "api_error",
            (ApiFlavour::Anthropic, 401) => "authentication_error",
            (ApiFlavour::Anthropic, 403) => "permission_error",
            (ApiFlavour::Anthropic, 404) => "not_found_error",
            (ApiFlavour::Anthropic, 429) => "rate_limit_error",
            (ApiFlavour::Anthropic, 400..=499) => "invalid_request_error",
            (ApiFlavour::Anthropic, 529) => "overloaded_error",
            (ApiFlavour::Anthropic, _) => "api_error",
        };
        GatewayError {
            shape,
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// The HTTP status it answers with.
    pub(crate) fn status(&self) -> u16 {
        self.status.as_u16()
    }

    pub(crate) fn message(&self) -> &str {
        &self.message
    }

    pub(super) fn denial(shape: ApiFlavour, denial: Denial) -> Self {
        let status = StatusCode::from_u16(denial.status()).unwrap_or(StatusCode::FORBIDDEN);
        let mut e = GatewayError::new(shape, status, denial.message());
        if denial == Denial::KeyNotAllowed || denial == Denial::TeamNotAllowed {
            e.kind = "permission_error";
        }
        e
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = match self.shape {
            ApiFlavour::Openai => json!({"error": {
                "message": self.message,
                "type": self.kind,
                "param": null,
                "code": self.status.as_u16().to_string(),
            }}),
            ApiFlavour::Anthropic => json!({"type": "error", "error": {
                "type": self.kind,
                "message": self.message,
            }}),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&secs.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}
