//! `/api/v1/organizations` and `/api/v1/invitations`: organizations, their
//! members and invitations. Anything inside an organization answers 404 to
//! those who are neither members nor platform readers.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use gatehouse_core::Id;
use gatehouse_core::access::OrgAccess;
use gatehouse_core::model::tenancy::{
    Invitation, InvitationStatus, Membership, OrgRole, OrgStatus, Organization,
};
use gatehouse_core::tenancy::MemberView;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::page::{self, List, Order, PageQuery};
use crate::ApiError;
use crate::auth::{Authenticated, Client};
use crate::error::ErrorBody;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use gatehouse_core::page::Page;

/// Parses an ID from a path segment.
pub(crate) fn id(segment: &str) -> Result<Id, ApiError> {
    segment.parse().map_err(ApiError)
}

#[derive(Serialize, ToSchema)]
pub struct OrgView {
    #[schema(value_type = String)]
    pub id: Id,
    /// Unique across the installation.
    pub name: String,
    /// The name in lower case, other characters as `-`; unique.
    pub slug: String,
    /// A user's own organization, made with the account (named after its email).
    pub personal: bool,
    /// Gateway request and response bodies of keys bound to it are kept.
    pub capture_bodies: bool,
    /// `active` or `suspended`.
    #[schema(value_type = crate::rest::names::OrgStatus)]
    pub status: OrgStatus,
    /// Your role here; absent for platform admins who are not members.
    #[schema(value_type = Option<crate::rest::names::OrgRole>)]
    pub role: Option<OrgRole>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl OrgView {
    fn new(org: Organization, role: Option<OrgRole>) -> Self {
        OrgView {
            id: org.id,
            name: org.name,
            slug: org.slug,
            personal: org.personal,
            capture_bodies: org.capture_bodies,
            status: org.status,
            role,
            created_at: org.created_at,
            updated_at: org.updated_at,
        }
    }
}

impl From<OrgAccess> for OrgView {
    fn from(access: OrgAccess) -> Self {
        OrgView::new(access.org, access.role)
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgName {
    /// 1-100 characters.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrgChangeBody {
    /// 1-100 characters, unique.
    #[schema(
        pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]*[^\\s\\x00-\\x1f\\x7f-\\x9f][^\\x00-\\x1f\\x7f-\\x9f]*$",
        max_length = 100
    )]
    pub name: Option<String>,
    /// Keep gateway request and response bodies of API keys bound to this
    /// organization (off by default).
    pub capture_bodies: Option<bool>,
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct OrgListQuery {
    /// Every organization, not only yours (platform `admin` or `admin_readonly`).
    #[serde(default)]
    pub all: bool,
    /// Items in the page: 1 to 500 (default 50).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<u64>,
    /// The `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,19}$")]
    pub cursor: Option<String>,
}

/// Create an organization; you become its owner.
#[utoipa::path(post, path = "/api/v1/organizations", tag = "organizations",
    security(("bearer" = [])),
    request_body = OrgName,
    responses(
        (status = 201, description = "Created", body = OrgView),
        (status = 400, description = "Invalid name", body = ErrorBody),
        (status = 403, description = "Provider accounts cannot", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(request): ApiJson<OrgName>,
) -> Result<(StatusCode, Json<OrgView>), ApiError> {
    let org = state
        .services
        .tenancy
        .create_org(&auth.user, &request.name, &client)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(OrgView::new(org, Some(OrgRole::Owner))),
    ))
}

/// Your organizations with your role in each; with `all=true`, every
/// organization (platform readers).
#[utoipa::path(get, path = "/api/v1/organizations", tag = "organizations",
    security(("bearer" = [])),
    params(OrgListQuery),
    responses(
        (status = 200, description = "A page of organizations, oldest first", body = List<OrgView>),
        (status = 403, description = "`all` without being a platform reader", body = ErrorBody),
    ))]
pub async fn list(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiQuery(query): ApiQuery<OrgListQuery>,
) -> Result<Json<List<OrgView>>, ApiError> {
    let tenancy = &state.services.tenancy;
    let page = page::request(query.limit, query.cursor)?;
    if !query.all {
        let mine = tenancy
            .orgs_of(auth.user.id)
            .await?
            .into_iter()
            .map(|(org, role)| OrgView::new(org, Some(role)))
            .collect();
        return Ok(Json(List::paged(
            mine,
            &page,
            Order::Ascending,
            |o: &OrgView| o.id,
        )?));
    }
    let after = page.after_key().map_err(ApiError)?;
    let orgs = tenancy
        .list_all_orgs(&auth.user, after, page.limit + 1)
        .await?
        .into_iter()
        .map(|o| OrgView::new(o, None))
        .collect();
    Ok(Json(List::of(Page::from_lookahead(
        orgs,
        page.limit,
        |o: &OrgView| o.id,
    ))))
}

/// Read an organization (members and platform readers).
#[utoipa::path(get, path = "/api/v1/organizations/{org}", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    responses(
        (status = 200, description = "The organization", body = OrgView),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn read(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<OrgView>, ApiError> {
    let access = state.services.tenancy.access(&auth.user, id(&org)?).await?;
    Ok(Json(access.into()))
}

/// Rename an organization or turn body capture on or off (owners and admins).
#[utoipa::path(patch, path = "/api/v1/organizations/{org}", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = OrgChangeBody,
    responses(
        (status = 200, description = "Renamed", body = OrgView),
        (status = 403, description = "Your role does not allow it, or the organization is suspended", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
    ))]
pub async fn update(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<OrgChangeBody>,
) -> Result<Json<OrgView>, ApiError> {
    let tenancy = &state.services.tenancy;
    let change = gatehouse_core::tenancy::OrgChange {
        name: request.name,
        capture_bodies: request.capture_bodies,
    };
    let org = tenancy
        .update_org(&auth.user, id(&org)?, change, &client)
        .await?;
    let access = tenancy.access(&auth.user, org.id).await?;
    Ok(Json(access.into()))
}

/// Delete an organization with its members, invitations and teams (owners,
/// platform admins). Personal organizations go only with their user.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 403, description = "Not an owner", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
        (status = 409, description = "A personal organization", body = ErrorBody),
    ))]
pub async fn delete(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .delete_org(&auth.user, id(&org)?, &client)
        .await?;
    // Gone from view already; what hangs off it goes in the background.
    super::system::finish_removals(&state);
    Ok(StatusCode::NO_CONTENT)
}

async fn set_status(
    state: &AppState,
    auth: &Authenticated,
    org: &str,
    status: OrgStatus,
    client: &gatehouse_core::model::sessions::ClientInfo,
) -> Result<Json<OrgView>, ApiError> {
    let org = state
        .services
        .tenancy
        .set_org_status(&auth.user, id(org)?, status, client)
        .await?;
    let access = state.services.tenancy.access(&auth.user, org.id).await?;
    Ok(Json(access.into()))
}

/// Suspend an organization: it stays readable, and nothing in it changes
/// until it is resumed (platform `admin`).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/suspend", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    responses(
        (status = 200, description = "Suspended", body = OrgView),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn suspend(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<OrgView>, ApiError> {
    set_status(&state, &auth, &org, OrgStatus::Suspended, &client).await
}

/// Resume a suspended organization (platform `admin`).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/resume", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    responses(
        (status = 200, description = "Resumed", body = OrgView),
        (status = 403, description = "Not a platform admin", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn resume(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
) -> Result<Json<OrgView>, ApiError> {
    set_status(&state, &auth, &org, OrgStatus::Active, &client).await
}

#[derive(Serialize, ToSchema)]
pub struct MemberOut {
    #[schema(value_type = String)]
    pub user_id: Id,
    pub email: String,
    pub display_name: String,
    /// `owner`, `admin` or `member`.
    #[schema(value_type = crate::rest::names::OrgRole)]
    pub role: OrgRole,
    pub joined_at: DateTime<Utc>,
}

impl From<MemberView> for MemberOut {
    fn from(m: MemberView) -> Self {
        MemberOut {
            user_id: m.membership.user_id,
            email: m.email,
            display_name: m.display_name,
            role: m.membership.role,
            joined_at: m.membership.joined_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct MembershipOut {
    #[schema(value_type = String)]
    pub organization_id: Id,
    #[schema(value_type = String)]
    pub user_id: Id,
    #[schema(value_type = crate::rest::names::OrgRole)]
    pub role: OrgRole,
    pub joined_at: DateTime<Utc>,
}

impl From<Membership> for MembershipOut {
    fn from(m: Membership) -> Self {
        MembershipOut {
            organization_id: m.org_id,
            user_id: m.user_id,
            role: m.role,
            joined_at: m.joined_at,
        }
    }
}

/// The members of an organization (members and platform readers).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/members", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "Members", body = List<MemberOut>),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn members(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<MemberOut>>, ApiError> {
    let page = page.request()?;
    let members = state
        .services
        .tenancy
        .list_members(&auth.user, id(&org)?, &page)
        .await?;
    Ok(Json(List::of(members)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    /// `owner`, `admin` or `member`. Only owners make or unmake owners.
    #[schema(value_type = crate::rest::names::OrgRole)]
    pub role: OrgRole,
}

/// Change a member's role (owners and admins; owners only for the owner
/// role; the last owner cannot be demoted).
#[utoipa::path(patch, path = "/api/v1/organizations/{org}/members/{user}", tag = "organizations",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("user" = String, Path, description = "User ID"),
    ),
    request_body = RoleChange,
    responses(
        (status = 200, description = "Changed", body = MembershipOut),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or member", body = ErrorBody),
        (status = 409, description = "The last owner", body = ErrorBody),
    ))]
pub async fn set_member_role(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, user)): ApiPath<(String, String)>,
    ApiJson(request): ApiJson<RoleChange>,
) -> Result<Json<MembershipOut>, ApiError> {
    let member = state
        .services
        .tenancy
        .set_member_role(&auth.user, id(&org)?, id(&user)?, request.role, &client)
        .await?;
    Ok(Json(member.into()))
}

/// Remove a member (owners and admins; only owners remove owners), or leave
/// when `user` is you. The last owner can neither leave nor be removed.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/members/{user}", tag = "organizations",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("user" = String, Path, description = "User ID"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or member", body = ErrorBody),
        (status = 409, description = "The last owner", body = ErrorBody),
    ))]
pub async fn remove_member(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, user)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .remove_member(&auth.user, id(&org)?, id(&user)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Transfer {
    /// The member who becomes owner; you become an admin.
    #[schema(value_type = String, pattern = "^[0-9]{1,19}$")]
    pub user_id: String,
}

/// Hand ownership to another member (owners).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/transfer", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = Transfer,
    responses(
        (status = 204, description = "Transferred"),
        (status = 403, description = "Not an owner", body = ErrorBody),
        (status = 404, description = "No such organization or member", body = ErrorBody),
    ))]
pub async fn transfer(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<Transfer>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .transfer_ownership(&auth.user, id(&org)?, id(&request.user_id)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize, ToSchema)]
pub struct InvitationOut {
    #[schema(value_type = String)]
    pub id: Id,
    #[schema(value_type = String)]
    pub organization_id: Id,
    pub email: String,
    #[schema(value_type = crate::rest::names::OrgRole)]
    pub role: OrgRole,
    /// `pending`, `accepted`, `declined`, `revoked` or `expired`.
    #[schema(value_type = crate::rest::names::InvitationStatus)]
    pub status: InvitationStatus,
    #[schema(value_type = String)]
    pub invited_by: Id,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
}

impl From<Invitation> for InvitationOut {
    fn from(i: Invitation) -> Self {
        InvitationOut {
            id: i.id,
            organization_id: i.org_id,
            email: i.email,
            role: i.role,
            status: i.status,
            invited_by: i.invited_by,
            created_at: i.created_at,
            expires_at: i.expires_at,
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewInvitation {
    #[schema(format = Email, max_length = 254)]
    pub email: String,
    /// `member` (default), `admin` (owners and admins) or `owner` (owners).
    #[schema(value_type = Option<crate::rest::names::OrgRole>)]
    pub role: Option<OrgRole>,
}

/// Invite someone by email; the token goes out by email and is valid 7 days
/// (owners, admins, and managers of a team with `invite_members`, who invite members).
#[utoipa::path(post, path = "/api/v1/organizations/{org}/invitations", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID")),
    request_body = NewInvitation,
    responses(
        (status = 201, description = "Invited", body = InvitationOut),
        (status = 400, description = "Invalid email", body = ErrorBody),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
        (status = 409, description = "Already a member, or already invited", body = ErrorBody),
    ))]
pub async fn invite(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiJson(request): ApiJson<NewInvitation>,
) -> Result<(StatusCode, Json<InvitationOut>), ApiError> {
    let role = request.role.unwrap_or(OrgRole::Member);
    let sent = state
        .services
        .tenancy
        .invite(&auth.user, id(&org)?, &request.email, role, &client)
        .await?;
    Ok((StatusCode::CREATED, Json(sent.invitation.into())))
}

/// An organization's invitations, oldest first (those who may invite, and
/// platform readers).
#[utoipa::path(get, path = "/api/v1/organizations/{org}/invitations", tag = "organizations",
    security(("bearer" = [])),
    params(("org" = String, Path, description = "Organization ID"), PageQuery),
    responses(
        (status = 200, description = "Invitations", body = List<InvitationOut>),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization visible to you", body = ErrorBody),
    ))]
pub async fn invitations(
    State(state): State<AppState>,
    auth: Authenticated,
    ApiPath(org): ApiPath<String>,
    ApiQuery(page): ApiQuery<PageQuery>,
) -> Result<Json<List<InvitationOut>>, ApiError> {
    let page = page.request()?;
    let list = state
        .services
        .tenancy
        .list_invitations(&auth.user, id(&org)?, &page)
        .await?;
    Ok(Json(List::of(list)))
}

/// Revoke a pending invitation.
#[utoipa::path(delete, path = "/api/v1/organizations/{org}/invitations/{id}", tag = "organizations",
    security(("bearer" = [])),
    params(
        ("org" = String, Path, description = "Organization ID"),
        ("id" = String, Path, description = "Invitation ID"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "Your role does not allow it", body = ErrorBody),
        (status = 404, description = "No such organization or invitation", body = ErrorBody),
        (status = 409, description = "No longer pending", body = ErrorBody),
    ))]
pub async fn revoke_invitation(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiPath((org, invitation)): ApiPath<(String, String)>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .revoke_invitation(&auth.user, id(&org)?, id(&invitation)?, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvitationToken {
    /// The token from the invitation email.
    pub token: String,
}

/// Accept an invitation sent to one of your addresses.
#[utoipa::path(post, path = "/api/v1/invitations/accept", tag = "organizations",
    security(("bearer" = [])),
    request_body = InvitationToken,
    responses(
        (status = 200, description = "You are a member", body = MembershipOut),
        (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
        (status = 403, description = "Sent to another address", body = ErrorBody),
        (status = 409, description = "Already a member", body = ErrorBody),
    ))]
pub async fn accept(
    State(state): State<AppState>,
    Client(client): Client,
    auth: Authenticated,
    ApiJson(request): ApiJson<InvitationToken>,
) -> Result<Json<MembershipOut>, ApiError> {
    let membership = state
        .services
        .tenancy
        .accept_invitation(&auth.user, &request.token, &client)
        .await?;
    Ok(Json(membership.into()))
}

/// Decline an invitation; the token alone suffices, no account needed.
#[utoipa::path(post, path = "/api/v1/invitations/decline", tag = "organizations",
    request_body = InvitationToken,
    responses(
        (status = 204, description = "Declined"),
        (status = 400, description = "Invalid, used or expired token", body = ErrorBody),
    ))]
pub async fn decline(
    State(state): State<AppState>,
    Client(client): Client,
    ApiJson(request): ApiJson<InvitationToken>,
) -> Result<StatusCode, ApiError> {
    state
        .services
        .tenancy
        .decline_invitation(&request.token, &client)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// This module's routes: each handler's `#[utoipa::path]` gives its method and path, to
/// the router and the OpenAPI document alike.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(create))
        .routes(routes!(read))
        .routes(routes!(update))
        .routes(routes!(delete))
        .routes(routes!(suspend))
        .routes(routes!(resume))
        .routes(routes!(transfer))
        .routes(routes!(members))
        .routes(routes!(set_member_role))
        .routes(routes!(remove_member))
        .routes(routes!(invitations))
        .routes(routes!(invite))
        .routes(routes!(revoke_invitation))
        .routes(routes!(accept))
        .routes(routes!(decline))
}
