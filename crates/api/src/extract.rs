//! Extractors that reject with our error shape instead of axum's plain text.

use axum::extract::{FromRequest, FromRequestParts};

use crate::ApiError;

/// `axum::Json`, but a malformed, oversized or non-JSON body becomes an
/// [`ApiError`] with a stable code.
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `axum::extract::Query`, but a malformed query string becomes an
/// `invalid_input` error in our shape.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct ApiQuery<T>(pub T);
