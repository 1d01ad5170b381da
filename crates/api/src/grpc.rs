//! The gRPC services: Gatehouse's own, the standard health service and server
//! reflection. Methods are thin wrappers over the same `core` services as REST.

use std::time::Duration;

use gatehouse_core::services::Services;
use gatehouse_core::services::system::VERSION;
use gatehouse_grpc::v1::auth_service_server::{AuthService, AuthServiceServer};
use gatehouse_grpc::v1::system_service_server::{SystemService, SystemServiceServer};
use gatehouse_grpc::v1::{
    GetInfoRequest, GetInfoResponse, IntrospectTokenRequest, IntrospectTokenResponse,
};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::ApiError;

/// `gatehouse.v1.SystemService`.
pub struct SystemGrpc {
    services: Services,
}

#[tonic::async_trait]
impl SystemService for SystemGrpc {
    async fn get_info(
        &self,
        _request: Request<GetInfoRequest>,
    ) -> Result<Response<GetInfoResponse>, Status> {
        let installation = self
            .services
            .system
            .installation()
            .await
            .map_err(ApiError::from)?;
        Ok(Response::new(GetInfoResponse {
            version: VERSION.to_string(),
            installation_id: installation.id.to_string(),
            created_at: installation.created_at.to_rfc3339(),
        }))
    }
}

/// `gatehouse.v1.AuthService`.
pub struct AuthGrpc {
    services: Services,
}

#[tonic::async_trait]
impl AuthService for AuthGrpc {
    async fn introspect_token(
        &self,
        request: Request<IntrospectTokenRequest>,
    ) -> Result<Response<IntrospectTokenResponse>, Status> {
        let token = request.into_inner().token;
        let found = self
            .services
            .accounts
            .introspect(&token)
            .await
            .map_err(ApiError::from)?;
        let response = match found {
            None => IntrospectTokenResponse::default(),
            Some(i) => IntrospectTokenResponse {
                active: true,
                user_id: i.user.id.to_string(),
                email: i.user.email,
                username: i.user.username.unwrap_or_default(),
                roles: i
                    .user
                    .roles
                    .iter()
                    .map(|r| r.as_str().to_string())
                    .collect(),
                expires_at: i.expires_at,
                token_kind: i.kind.to_string(),
            },
        };
        Ok(Response::new(response))
    }
}

/// How often the health service re-checks storage.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The gRPC routes, and the reporter that keeps the health service current.
pub fn routes(
    services: Services,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(gatehouse_grpc::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let routes = Routes::new(health)
        .add_service(reflection)
        .add_service(SystemServiceServer::new(SystemGrpc {
            services: services.clone(),
        }))
        .add_service(AuthServiceServer::new(AuthGrpc { services }));
    Ok((routes, reporter))
}

/// Reports SERVING for the server and each service while storage answers, and
/// NOT_SERVING when it does not, until `stop` is cancelled.
pub async fn report_health(services: Services, reporter: HealthReporter, stop: CancellationToken) {
    let names = ["", "gatehouse.v1.SystemService", "gatehouse.v1.AuthService"];
    loop {
        let status = match services.system.check_ready().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "storage check failed; gRPC health is NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        for name in names {
            reporter.set_service_status(name, status).await;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(HEALTH_INTERVAL) => {}
        }
    }
    for name in names {
        reporter
            .set_service_status(name, ServingStatus::NotServing)
            .await;
    }
}
