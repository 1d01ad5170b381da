//! Turning domain errors into responses: the JSON error shape for REST and a
//! status for gRPC, each mapped from [`ErrorCode`] exhaustively.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Error, ErrorCode};
use serde::Serialize;
use utoipa::ToSchema;

use crate::request_id;

/// The HTTP status of each error code.
pub fn http_status(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidInput | ErrorCode::MalformedBody => StatusCode::BAD_REQUEST,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorCode::NotFound | ErrorCode::RouteNotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The gRPC code of each error code.
pub fn grpc_code(code: ErrorCode) -> tonic::Code {
    match code {
        ErrorCode::InvalidInput | ErrorCode::MalformedBody | ErrorCode::UnsupportedMediaType => {
            tonic::Code::InvalidArgument
        }
        ErrorCode::PayloadTooLarge | ErrorCode::RateLimited => tonic::Code::ResourceExhausted,
        ErrorCode::Unauthenticated => tonic::Code::Unauthenticated,
        ErrorCode::PermissionDenied => tonic::Code::PermissionDenied,
        ErrorCode::NotFound => tonic::Code::NotFound,
        ErrorCode::RouteNotFound | ErrorCode::MethodNotAllowed => tonic::Code::Unimplemented,
        ErrorCode::Conflict => tonic::Code::AlreadyExists,
        ErrorCode::IdempotencyKeyReused => tonic::Code::FailedPrecondition,
        ErrorCode::Timeout => tonic::Code::DeadlineExceeded,
        ErrorCode::Unavailable => tonic::Code::Unavailable,
        ErrorCode::Internal => tonic::Code::Internal,
    }
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `not_found`.
    #[schema(example = "not_found")]
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// The request ID, also in the `X-Request-Id` response header.
    pub request_id: String,
}

/// An error on its way to becoming a response.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ApiError(Error::new(code, message))
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        ApiError(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = self.0;
        let status = http_status(error.code());
        // Causes are for operators: log them, never send them.
        if let Some(cause) = error.cause() {
            if status.is_server_error() {
                tracing::error!(code = %error.code(), cause, "request failed");
            } else {
                tracing::info!(code = %error.code(), cause, "request refused");
            }
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: error.code().as_str(),
                message: error.message().to_string(),
                request_id: request_id::current().unwrap_or_default(),
            },
        };
        let retry_after = error.retry_after_secs();
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(secs),
            );
        }
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        let error = e.0;
        if let Some(cause) = error.cause() {
            tracing::error!(code = %error.code(), cause, "gRPC request failed");
        }
        tonic::Status::new(grpc_code(error.code()), error.message())
    }
}

impl From<axum::extract::rejection::PathRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::PathRejection) -> Self {
        ApiError::new(
            ErrorCode::InvalidInput,
            format!("invalid path: {}", rejection.body_text()),
        )
    }
}

impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(rejection: axum::extract::rejection::QueryRejection) -> Self {
        ApiError::new(
            ErrorCode::InvalidInput,
            format!("invalid query string: {}", rejection.body_text()),
        )
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> Self {
        let code = match &rejection {
            JsonRejection::MissingJsonContentType(_) => ErrorCode::UnsupportedMediaType,
            JsonRejection::BytesRejection(_)
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE =>
            {
                ErrorCode::PayloadTooLarge
            }
            _ => ErrorCode::MalformedBody,
        };
        let message = match code {
            ErrorCode::UnsupportedMediaType => {
                "expected a request body with `Content-Type: application/json`".to_string()
            }
            ErrorCode::PayloadTooLarge => "the request body is too large".to_string(),
            _ => format!("invalid JSON body: {}", rejection.body_text()),
        };
        ApiError::new(code, message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_maps_to_an_error_status() {
        for code in ErrorCode::ALL {
            let status = http_status(code);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}"
            );
            assert_ne!(grpc_code(code), tonic::Code::Ok, "{code}");
        }
        assert_eq!(http_status(ErrorCode::NotFound), StatusCode::NOT_FOUND);
        assert_eq!(grpc_code(ErrorCode::Unavailable), tonic::Code::Unavailable);
    }
}
