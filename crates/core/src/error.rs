//! The domain error: one type for every service, with stable machine codes.
//!
//! The codes in [`ErrorCode`] are part of the public interface (clients match on
//! them), so they never change once released. Transports map each code to their
//! own status exhaustively; see the `api` crate.

use std::fmt;

use gatehouse_storage::{StorageError, TxError};

/// Stable, machine-readable error codes. `as_str` is what clients see.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A field or parameter is invalid.
    InvalidInput,
    /// The request body is not valid JSON or does not match the expected shape.
    MalformedBody,
    /// The request body is larger than the configured limit.
    PayloadTooLarge,
    /// The request body has a content type other than JSON.
    UnsupportedMediaType,
    /// No credentials, or credentials that are not valid.
    Unauthenticated,
    /// Valid credentials without the needed permission.
    PermissionDenied,
    /// The resource does not exist, or the caller may not know it exists.
    NotFound,
    /// No route matches the path.
    RouteNotFound,
    /// The route exists but not with this method.
    MethodNotAllowed,
    /// The request conflicts with the current state (a duplicate name, …).
    Conflict,
    /// An `Idempotency-Key` that came with a different request before.
    IdempotencyKeyReused,
    /// Too many requests, or a budget is exhausted.
    RateLimited,
    /// The request took longer than the configured timeout.
    Timeout,
    /// A dependency (storage, an upstream) is not available right now.
    Unavailable,
    /// A bug or an unexpected failure; details are logged, never returned.
    Internal,
}

impl ErrorCode {
    /// Every code, for tests that check the tables stay complete.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::InvalidInput,
        ErrorCode::MalformedBody,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::RouteNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::RateLimited,
        ErrorCode::Timeout,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidInput => "invalid_input",
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::Unauthenticated => "unauthenticated",
            ErrorCode::PermissionDenied => "permission_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Timeout => "timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A domain error: a stable code, a sentence for humans, and (for logs only) a cause.
#[derive(Debug)]
pub struct Error {
    code: ErrorCode,
    message: String,
    cause: Option<String>,
    retry_after_secs: Option<u64>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Error {
            code,
            message: message.into(),
            cause: None,
            retry_after_secs: None,
        }
    }

    /// `rate_limited`, to be tried again after `secs` seconds.
    pub fn rate_limited(message: impl Into<String>, secs: u64) -> Self {
        Error {
            retry_after_secs: Some(secs.max(1)),
            ..Self::new(ErrorCode::RateLimited, message)
        }
    }

    /// Tells the client to try again after `secs` seconds.
    pub fn retry_after(self, secs: u64) -> Self {
        Error {
            retry_after_secs: Some(secs.max(1)),
            ..self
        }
    }

    /// When to try again, for `rate_limited` errors.
    pub fn retry_after_secs(&self) -> Option<u64> {
        self.retry_after_secs
    }

    pub fn invalid_input(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::InvalidInput, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(ErrorCode::NotFound, format!("{what} not found"))
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::Conflict, message)
    }

    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::PermissionDenied, message)
    }

    /// An unexpected failure. `cause` goes to the log; clients see a generic sentence.
    pub fn internal(cause: impl fmt::Display) -> Self {
        Error {
            code: ErrorCode::Internal,
            message: "an internal error occurred".to_string(),
            cause: Some(cause.to_string()),
            retry_after_secs: None,
        }
    }

    pub fn code(&self) -> ErrorCode {
        self.code
    }

    /// The sentence safe to show to clients.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Detail for logs, never for clients.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        if let Some(cause) = &self.cause {
            write!(f, " ({cause})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        let code = match &e {
            StorageError::Unavailable(_)
            | StorageError::Conflict
            | StorageError::TransactionTooOld { .. }
            | StorageError::MaybeCommitted(_) => ErrorCode::Unavailable,
            StorageError::KeyTooLarge { .. }
            | StorageError::ValueTooLarge { .. }
            | StorageError::TransactionTooLarge { .. }
            | StorageError::InvalidRange
            | StorageError::InvalidAdd(_)
            | StorageError::Corrupt(_)
            | StorageError::AlreadyCommitted => ErrorCode::Internal,
        };
        let message = match (&e, code) {
            (StorageError::MaybeCommitted(_), _) => {
                "storage could not confirm whether the change was saved; retry with the same Idempotency-Key header to apply it at most once"
            }
            (_, ErrorCode::Unavailable) => "storage is temporarily unavailable, try again",
            _ => "an internal error occurred",
        };
        Error {
            code,
            message: message.to_string(),
            cause: Some(e.to_string()),
            retry_after_secs: None,
        }
    }
}

impl From<TxError<Error>> for Error {
    fn from(e: TxError<Error>) -> Self {
        match e {
            TxError::Abort(e) => e,
            TxError::Storage(e) => e.into(),
        }
    }
}

/// An error with its causes, `outer: cause: root`, for logs and for admins
/// ("error sending request: connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut message = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let s = code.as_str();
            assert!(seen.insert(s), "duplicate code {s}");
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
        }
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = Error::internal("disk on fire at /var/lib/x");
        assert_eq!(e.message(), "an internal error occurred");
        assert_eq!(e.cause(), Some("disk on fire at /var/lib/x"));
        let e: Error = StorageError::Corrupt("page 7".into()).into();
        assert_eq!(e.code(), ErrorCode::Internal);
        assert!(!e.message().contains("page 7"));
    }
}
