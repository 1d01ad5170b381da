//! The catalogue: `/api/v1/credentials`, `/api/v1/endpoints`,
//! `/api/v1/models`, `/api/v1/model-aliases` and `/api/v1/subscriptions`, a file each.

mod aliases;
mod credentials;
mod endpoints;
mod models;
mod subscriptions;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::catalog::health::HealthStatus;
use gatehouse_core::catalog::{
    CredentialChange, Decision, EndpointSpec, ModelSpec, NewCredential, SyncReport,
};
use gatehouse_core::model::catalog::{
    Alias, ApiFlavour, Credential, CredentialKind, CredentialScope, Endpoint, Model, Subscription,
    SubscriptionStatus,
};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::orgs::id;
use super::page::{List, Order, PageQuery};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};

/// `Some(None)` for an explicit `null`, `None` for a missing field (with
/// `#[serde(default)]`).
pub(crate) fn some<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(credentials::list_credentials))
        .routes(routes!(credentials::create_credential))
        .routes(routes!(credentials::read_credential))
        .routes(routes!(credentials::update_credential))
        .routes(routes!(credentials::delete_credential))
        .routes(routes!(credentials::list_org_credentials))
        .routes(routes!(credentials::create_org_credential))
        .routes(routes!(credentials::read_org_credential))
        .routes(routes!(credentials::update_org_credential))
        .routes(routes!(credentials::delete_org_credential))
        .routes(routes!(endpoints::list_endpoints))
        .routes(routes!(endpoints::create_endpoint))
        .routes(routes!(endpoints::read_endpoint))
        .routes(routes!(endpoints::update_endpoint))
        .routes(routes!(endpoints::delete_endpoint))
        .routes(routes!(endpoints::sync_endpoint))
        .routes(routes!(models::list_models))
        .routes(routes!(models::create_model))
        .routes(routes!(models::read_model))
        .routes(routes!(models::update_model))
        .routes(routes!(models::delete_model))
        .routes(routes!(aliases::list_aliases))
        .routes(routes!(aliases::create_alias))
        .routes(routes!(aliases::update_alias))
        .routes(routes!(aliases::delete_alias))
        .routes(routes!(subscriptions::list_subscriptions))
        .routes(routes!(subscriptions::subscribe))
        .routes(routes!(subscriptions::cancel_subscription))
        .routes(routes!(subscriptions::approve_subscription))
        .routes(routes!(subscriptions::deny_subscription))
        .routes(routes!(subscriptions::suspend_subscription))
}
