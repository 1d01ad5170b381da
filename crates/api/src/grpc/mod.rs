//! The gRPC services: Gatehouse's own, the standard health service and server
//! reflection. Methods are thin wrappers over the same `core` services as REST.

use std::time::Duration;

use gatehouse_core::keys::index::FOLLOWED;
use gatehouse_core::model::accounts::User;
use gatehouse_core::services::Services;
use gatehouse_core::services::system::VERSION;
use gatehouse_core::tenancy::Resource;
use gatehouse_core::{Error, ErrorCode, Id};
use gatehouse_grpc::v1::auth_service_server::{AuthService, AuthServiceServer};
use gatehouse_grpc::v1::directory_service_server::{DirectoryService, DirectoryServiceServer};
use gatehouse_grpc::v1::key_service_server::{KeyService, KeyServiceServer};
use gatehouse_grpc::v1::system_service_server::{SystemService, SystemServiceServer};
use gatehouse_grpc::v1::vault_service_server::{VaultService, VaultServiceServer};
use gatehouse_grpc::v1::{
    ChangeEvent, ValidateApiKeyRequest, ValidateApiKeyResponse, WatchChangesRequest,
};
use gatehouse_grpc::v1::{
    CheckPermissionRequest, CheckPermissionResponse, GetInfoRequest, GetInfoResponse,
    GetUserRequest, GetUserResponse, IntrospectTokenRequest, IntrospectTokenResponse,
    ListMembershipsRequest, ListMembershipsResponse, OrganizationMembership, TeamMembership,
};
use gatehouse_grpc::v1::{
    ExchangeAssertionRequest, GetJwksRequest, GetJwksResponse, GetVaultRequest, Grant,
    ListGrantsRequest, ListGrantsResponse, ListVaultsRequest, ListVaultsResponse,
    RefreshTokenRequest, TokenResponse, Vault as VaultMessage,
};
use tokio_util::sync::CancellationToken;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::ApiError;

mod records;
mod work;

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

/// `gatehouse.v1.DirectoryService`: users, memberships and permission checks.
pub struct DirectoryGrpc {
    services: Services,
}

fn enum_str<T: serde::Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

impl DirectoryGrpc {
    /// The caller, from `authorization: Bearer <JWT, session token or API
    /// key>` or `x-api-key` metadata, decided as REST decides it.
    async fn caller<T>(&self, request: &Request<T>) -> Result<User, Status> {
        let headers = request.metadata().clone().into_headers();
        let credential = crate::caller::credential(&headers).ok_or_else(|| {
            Status::unauthenticated("send `authorization: Bearer <token>` metadata")
        })?;
        let caller = self.services.caller(credential).await.map_err(ApiError)?;
        caller.ensure_may_manage().map_err(ApiError)?;
        self.services
            .accounts
            .ensure_may_act(&caller.user)
            .map_err(ApiError)?;
        Ok(caller.user)
    }

    /// The user a request is about: the caller (empty ID), or anyone for
    /// platform readers; others are NOT_FOUND, as over REST.
    async fn subject(&self, caller: &User, user_id: &str) -> Result<User, Status> {
        if user_id.trim().is_empty() {
            return Ok(caller.clone());
        }
        let id: Id = user_id.parse().map_err(ApiError)?;
        Ok(self
            .services
            .accounts
            .view_user(caller, id)
            .await
            .map_err(ApiError)?)
    }
}

#[tonic::async_trait]
impl DirectoryService for DirectoryGrpc {
    async fn get_user(
        &self,
        request: Request<GetUserRequest>,
    ) -> Result<Response<GetUserResponse>, Status> {
        let caller = self.caller(&request).await?;
        let user = self.subject(&caller, &request.get_ref().user_id).await?;
        Ok(Response::new(GetUserResponse {
            user: Some(gatehouse_grpc::v1::User {
                id: user.id.to_string(),
                roles: user.roles.iter().map(|r| r.as_str().to_string()).collect(),
                status: enum_str(&user.status),
                email: user.email,
                username: user.username.unwrap_or_default(),
                display_name: user.display_name,
                email_verified: user.email_verified,
                created_at: user.created_at.to_rfc3339(),
            }),
        }))
    }

    async fn list_memberships(
        &self,
        request: Request<ListMembershipsRequest>,
    ) -> Result<Response<ListMembershipsResponse>, Status> {
        let caller = self.caller(&request).await?;
        let user = self.subject(&caller, &request.get_ref().user_id).await?;
        let found = self
            .services
            .tenancy
            .memberships(user.id)
            .await
            .map_err(ApiError)?;
        Ok(Response::new(ListMembershipsResponse {
            organizations: found
                .organizations
                .into_iter()
                .map(|(org, role)| OrganizationMembership {
                    organization_id: org.id.to_string(),
                    name: org.name,
                    personal: org.personal,
                    status: enum_str(&org.status),
                    role: role.as_str().to_string(),
                })
                .collect(),
            teams: found
                .teams
                .into_iter()
                .map(|(team, role)| TeamMembership {
                    team_id: team.id.to_string(),
                    organization_id: team.org_id.to_string(),
                    name: team.name,
                    role: enum_str(&role),
                    permissions: team
                        .permissions
                        .iter()
                        .map(|p| p.as_str().to_string())
                        .collect(),
                    allowed_models: team.allowed_models.into_iter().collect(),
                })
                .collect(),
        }))
    }

    async fn check_permission(
        &self,
        request: Request<CheckPermissionRequest>,
    ) -> Result<Response<CheckPermissionResponse>, Status> {
        let caller = self.caller(&request).await?;
        let r = request.get_ref();
        let user = self.subject(&caller, &r.user_id).await?;
        let id: Id = r.resource_id.parse().map_err(ApiError)?;
        let resource = match r.resource_type.as_str() {
            "organization" => Resource::Organization(id),
            "team" => Resource::Team(id),
            other => {
                return Err(ApiError(Error::new(
                    ErrorCode::InvalidInput,
                    format!("resource_type is `organization` or `team`, not {other:?}"),
                ))
                .into());
            }
        };
        let allowed = self
            .services
            .tenancy
            .check_permission(&user, &r.permission, resource)
            .await
            .map_err(ApiError)?;
        Ok(Response::new(CheckPermissionResponse { allowed }))
    }
}

/// `gatehouse.v1.KeyService`: the access decision and the change stream for
/// gateways outside the process.
pub struct KeyGrpc {
    services: Services,
    directory: DirectoryGrpc,
    /// Cancelled at shutdown: open change streams end.
    stop: CancellationToken,
}

/// How often a change stream looks for new changes when it is idle.
const WATCH_POLL: Duration = Duration::from_millis(200);

#[tonic::async_trait]
impl KeyService for KeyGrpc {
    async fn validate_api_key(
        &self,
        request: Request<ValidateApiKeyRequest>,
    ) -> Result<Response<ValidateApiKeyResponse>, Status> {
        let r = request.into_inner();
        let index = self.services.keys.index();
        let response = match index.check(&r.key, &r.model) {
            Ok(grant) => ValidateApiKeyResponse {
                allowed: true,
                status: 200,
                key_id: grant.key_id.to_string(),
                user_id: grant.owner_id.to_string(),
                model_id: grant.model.id.to_string(),
                model_name: grant.model.name.clone(),
                upstream_model: grant.model.upstream_name.clone(),
                endpoint_id: grant.model.endpoint_id.to_string(),
                rpm_limit: grant.rpm_limit.unwrap_or(0),
                tpm_limit: grant.tpm_limit.unwrap_or(0),
                budget_usd: grant.budget.map_or(0.0, |b| b.max_usd),
                budget_period: grant
                    .budget
                    .map(|b| enum_str(&b.period))
                    .unwrap_or_default(),
                input_cost_per_token: grant.model.input_cost_per_token,
                output_cost_per_token: grant.model.output_cost_per_token,
                ..Default::default()
            },
            Err(denial) => ValidateApiKeyResponse {
                allowed: false,
                reason: denial.as_str().to_string(),
                status: u32::from(denial.status()),
                message: denial.message().to_string(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    type WatchChangesStream = tokio_stream::wrappers::ReceiverStream<Result<ChangeEvent, Status>>;

    async fn watch_changes(
        &self,
        request: Request<WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let caller = self.directory.caller(&request).await?;
        gatehouse_core::keys::index::may_watch_changes(&caller).map_err(ApiError)?;
        let changes = self.services.changes.clone();
        let mut cursor = match request.get_ref().cursor.trim() {
            "" => changes.head().await.map_err(ApiError)?,
            c => Some(gatehouse_core::changes::ChangeCursor::parse(c).map_err(ApiError)?),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let stop = self.stop.clone();
        tokio::spawn(async move {
            loop {
                if stop.is_cancelled() {
                    return;
                }
                let batch = match changes
                    .read_after(cursor.as_ref(), gatehouse_core::changes::MAX_READ)
                    .await
                {
                    Ok(batch) => batch,
                    Err(e) => {
                        let _ = tx.send(Err(ApiError(e).into())).await;
                        return;
                    }
                };
                if batch.is_empty() {
                    tokio::select! {
                        _ = tx.closed() => return,
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(WATCH_POLL) => continue,
                    }
                }
                for change in batch {
                    cursor = Some(change.cursor.clone());
                    if !FOLLOWED.contains(&change.record.subspace.as_str()) {
                        continue;
                    }
                    let event = ChangeEvent {
                        cursor: change.cursor.to_string(),
                        subspace: change.record.subspace,
                        key: change.record.key,
                        kind: enum_str(&change.record.kind),
                    };
                    if tx.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            rx,
        )))
    }
}

/// How often the health service re-checks storage.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// The gRPC routes, and the reporter that keeps the health service current.
/// `gatehouse.v1.VaultService`: vault tokens and vault reads.
pub struct VaultGrpc {
    directory: DirectoryGrpc,
}

fn vault_message(v: gatehouse_core::model::vaults::Vault) -> VaultMessage {
    VaultMessage {
        id: v.id.to_string(),
        organization_id: v.org_id.to_string(),
        name: v.name,
        description: v.description,
        sync_status: enum_str(&v.sync.status),
        sync_reason: v.sync.reason.unwrap_or_default(),
        created_at: v.created_at.to_rfc3339(),
        updated_at: v.updated_at.to_rfc3339(),
    }
}

fn token_message(t: gatehouse_core::vaults::tokens::IssuedTokens) -> TokenResponse {
    TokenResponse {
        access_token: t.access_token,
        expires_in: t.expires_in,
        refresh_token: t.refresh_token,
        refresh_expires_at: t.refresh_expires_at.to_rfc3339(),
        organization_id: t.org_id.to_string(),
        vault_id: t.vault_id.to_string(),
        role: t.role.as_str().to_string(),
        scope: t.role.scope().to_string(),
    }
}

fn parse_id(text: &str) -> Result<Id, Status> {
    Ok(text.trim().parse::<Id>().map_err(ApiError)?)
}

#[tonic::async_trait]
impl VaultService for VaultGrpc {
    async fn exchange_assertion(
        &self,
        request: Request<ExchangeAssertionRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let r = request.into_inner();
        let tokens = self
            .directory
            .services
            .tokens
            .exchange_assertion(
                &r.client_assertion,
                parse_id(&r.vault_id)?,
                &Default::default(),
            )
            .await
            .map_err(ApiError)?;
        Ok(Response::new(token_message(tokens)))
    }

    async fn refresh_token(
        &self,
        request: Request<RefreshTokenRequest>,
    ) -> Result<Response<TokenResponse>, Status> {
        let tokens = self
            .directory
            .services
            .tokens
            .refresh(&request.into_inner().refresh_token, &Default::default())
            .await
            .map_err(ApiError)?;
        Ok(Response::new(token_message(tokens)))
    }

    async fn get_jwks(
        &self,
        _request: Request<GetJwksRequest>,
    ) -> Result<Response<GetJwksResponse>, Status> {
        let jwks = self
            .directory
            .services
            .tokens
            .jwks()
            .await
            .map_err(ApiError)?;
        Ok(Response::new(GetJwksResponse {
            jwks_json: jwks.to_string(),
        }))
    }

    async fn get_vault(
        &self,
        request: Request<GetVaultRequest>,
    ) -> Result<Response<VaultMessage>, Status> {
        let caller = self.directory.caller(&request).await?;
        let r = request.get_ref();
        let vault = self
            .directory
            .services
            .vaults
            .get_vault(
                &caller,
                parse_id(&r.organization_id)?,
                parse_id(&r.vault_id)?,
            )
            .await
            .map_err(ApiError)?;
        Ok(Response::new(vault_message(vault)))
    }

    async fn list_vaults(
        &self,
        request: Request<ListVaultsRequest>,
    ) -> Result<Response<ListVaultsResponse>, Status> {
        let caller = self.directory.caller(&request).await?;
        let vaults = self
            .directory
            .services
            .vaults
            .list_vaults(&caller, parse_id(&request.get_ref().organization_id)?)
            .await
            .map_err(ApiError)?;
        Ok(Response::new(ListVaultsResponse {
            vaults: vaults.into_iter().map(vault_message).collect(),
        }))
    }

    async fn list_grants(
        &self,
        request: Request<ListGrantsRequest>,
    ) -> Result<Response<ListGrantsResponse>, Status> {
        let caller = self.directory.caller(&request).await?;
        let r = request.get_ref();
        let grants = self
            .directory
            .services
            .vaults
            .list_grants(
                &caller,
                parse_id(&r.organization_id)?,
                parse_id(&r.vault_id)?,
            )
            .await
            .map_err(ApiError)?;
        Ok(Response::new(ListGrantsResponse {
            grants: grants
                .into_iter()
                .map(|g| Grant {
                    subject_type: g.subject_type.as_str().to_string(),
                    subject_id: g.subject_id.to_string(),
                    role: g.role.as_str().to_string(),
                })
                .collect(),
        }))
    }
}

/// The gRPC services Gatehouse serves, as reflection names them.
pub const SERVED: [&str; 8] = [
    "grpc.health.v1.Health",
    "gatehouse.v1.SystemService",
    "gatehouse.v1.AuthService",
    "gatehouse.v1.DirectoryService",
    "gatehouse.v1.KeyService",
    "gatehouse.v1.VaultService",
    "gatehouse.v1.WorkService",
    "gatehouse.v1.RecordsService",
];

pub fn routes(
    services: Services,
    stop: CancellationToken,
) -> Result<(Routes, HealthReporter), tonic_reflection::server::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    // Both reflection versions: v1alpha is what grpcio-reflection, older
    // grpcurl, grpcui and Postman speak. Only the services served here are
    // advertised: the protos also hold `PolicyEngine`, which Gatehouse calls.
    let reflection = || {
        SERVED
            .iter()
            .fold(tonic_reflection::server::Builder::configure(), |b, name| {
                b.with_service_name(*name)
            })
            .register_encoded_file_descriptor_set(gatehouse_grpc::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let routes = Routes::new(health)
        .add_service(reflection().build_v1()?)
        .add_service(reflection().build_v1alpha()?)
        .add_service(SystemServiceServer::new(SystemGrpc {
            services: services.clone(),
        }))
        .add_service(AuthServiceServer::new(AuthGrpc {
            services: services.clone(),
        }))
        .add_service(DirectoryServiceServer::new(DirectoryGrpc {
            services: services.clone(),
        }))
        .add_service(
            gatehouse_grpc::v1::work_service_server::WorkServiceServer::new(work::WorkGrpc {
                directory: DirectoryGrpc {
                    services: services.clone(),
                },
                services: services.clone(),
            }),
        )
        .add_service(
            gatehouse_grpc::v1::records_service_server::RecordsServiceServer::new(
                records::RecordsGrpc {
                    directory: DirectoryGrpc {
                        services: services.clone(),
                    },
                    services: services.clone(),
                    stop: stop.clone(),
                },
            ),
        )
        .add_service(VaultServiceServer::new(VaultGrpc {
            directory: DirectoryGrpc {
                services: services.clone(),
            },
        }))
        .add_service(KeyServiceServer::new(KeyGrpc {
            directory: DirectoryGrpc {
                services: services.clone(),
            },
            services,
            stop,
        }));
    Ok((routes, reporter))
}

/// Reports SERVING for the server and each service while storage answers, and
/// NOT_SERVING when it does not, until `stop` is cancelled.
pub async fn report_health(services: Services, reporter: HealthReporter, stop: CancellationToken) {
    let names = [
        "",
        "gatehouse.v1.SystemService",
        "gatehouse.v1.AuthService",
        "gatehouse.v1.DirectoryService",
        "gatehouse.v1.KeyService",
        "gatehouse.v1.VaultService",
        "gatehouse.v1.WorkService",
        "gatehouse.v1.RecordsService",
    ];
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
