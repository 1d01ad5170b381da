//! Organizations: the list, and one organization's members and roles,
//! invitations, teams, vaults with grants, service clients with their
//! certificates, and settings. What a person may change is shown only when
//! their access allows it; the API refuses it anyway.

use askama::Template;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use gatehouse_core::access::OrgAction;
use gatehouse_core::model::tenancy::OrgRole;

use super::catalog::api_name;
use super::{Nav, OrPage, PageResult, Viewer, page_id, page_path, render, when};
use crate::rest::AppState;

/// The most vaults and clients whose grants and certificates a page reads.
const DETAILED: usize = 100;

/// The members and invitations a page shows: the first 500 (the API pages
/// through the rest).
const SHOWN: gatehouse_core::page::PageRequest = gatehouse_core::page::PageRequest {
    limit: 500,
    after: None,
};

pub(crate) struct OrgRow {
    pub id: String,
    pub name: String,
    pub role: String,
    pub personal: bool,
    pub suspended: bool,
}

#[derive(Template)]
#[template(path = "console/orgs.html")]
struct Orgs {
    nav: Nav,
    orgs: Vec<OrgRow>,
}

pub(crate) async fn list(State(state): State<AppState>, viewer: Viewer) -> PageResult {
    let orgs = state
        .services
        .tenancy
        .orgs_of(viewer.user.id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|(org, role)| OrgRow {
            id: org.id.to_string(),
            role: api_name(&role),
            personal: org.personal,
            suspended: api_name(&org.status) == "suspended",
            name: org.name,
        })
        .collect();
    Ok(render(Orgs {
        nav: viewer.nav("organizations"),
        orgs,
    }))
}

pub(crate) struct MemberRow {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub joined: String,
    pub me: bool,
}

pub(crate) struct InvitationRow {
    pub id: String,
    pub email: String,
    pub role: String,
    pub status: String,
    pub expires: String,
}

pub(crate) struct TeamRow {
    pub id: String,
    pub name: String,
    pub permissions: String,
    pub models: String,
}

pub(crate) struct VaultRow {
    pub id: String,
    pub name: String,
    pub sync: String,
    pub grants: Vec<String>,
}

pub(crate) struct ClientRow {
    pub id: String,
    pub name: String,
    pub certificates: Vec<(String, String, bool)>,
}

#[derive(Template)]
#[template(path = "console/org.html")]
struct OrgPage {
    nav: Nav,
    id: String,
    name: String,
    personal: bool,
    capture_bodies: bool,
    my_role: String,
    may_update: bool,
    may_delete: bool,
    may_manage_members: bool,
    may_invite: bool,
    may_manage_teams: bool,
    may_manage_vaults: bool,
    may_manage_keys: bool,
    members: Vec<MemberRow>,
    invitations: Vec<InvitationRow>,
    teams: Vec<TeamRow>,
    vaults: Vec<VaultRow>,
    clients: Vec<ClientRow>,
    roles: Vec<&'static str>,
}

pub(crate) async fn organization(
    State(state): State<AppState>,
    viewer: Viewer,
    org: Result<Path<String>, PathRejection>,
) -> PageResult {
    let org_id = page_id(&viewer, &page_path(&viewer, org)?)?;
    let user = &viewer.user;
    let tenancy = &state.services.tenancy;
    let access = tenancy.access(user, org_id).await.or_page(&viewer)?;
    let members = tenancy
        .list_members(user, org_id, &SHOWN)
        .await
        .or_page(&viewer)?
        .items
        .into_iter()
        .map(|m| MemberRow {
            id: m.membership.user_id.to_string(),
            me: m.membership.user_id == user.id,
            role: api_name(&m.membership.role),
            joined: when(&m.membership.joined_at),
            email: m.email,
            name: m.display_name,
        })
        .collect();
    let may_invite = access.allows(OrgAction::Invite);
    let invitations = if may_invite || access.platform_reader() {
        tenancy
            .list_invitations(user, org_id, &SHOWN)
            .await
            .or_page(&viewer)?
            .items
            .into_iter()
            .map(|i| InvitationRow {
                id: i.id.to_string(),
                role: api_name(&i.role),
                status: api_name(&i.status),
                expires: when(&i.expires_at),
                email: i.email,
            })
            .collect()
    } else {
        Vec::new()
    };
    let teams = tenancy
        .list_teams(user, org_id)
        .await
        .or_page(&viewer)?
        .into_iter()
        .map(|t| TeamRow {
            id: t.id.to_string(),
            permissions: t
                .permissions
                .iter()
                .map(api_name)
                .collect::<Vec<_>>()
                .join(", "),
            models: if t.allowed_models.is_empty() {
                "all".to_string()
            } else {
                t.allowed_models
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            name: t.name,
        })
        .collect();
    let vaults = vault_rows(&state, &viewer, org_id).await?;
    let clients = client_rows(&state, &viewer, org_id).await?;
    let org = &access.org;
    Ok(render(OrgPage {
        nav: viewer.nav("organizations"),
        id: org.id.to_string(),
        name: org.name.clone(),
        personal: org.personal,
        capture_bodies: org.capture_bodies,
        my_role: access.role.map(|r| api_name(&r)).unwrap_or_default(),
        may_update: access.allows(OrgAction::Update),
        may_delete: access.allows(OrgAction::Delete) && !org.personal,
        may_manage_members: access.allows(OrgAction::ManageMembers),
        may_invite,
        may_manage_teams: access.allows(OrgAction::ManageTeams),
        may_manage_vaults: access.allows(OrgAction::ManageVaults),
        may_manage_keys: access.allows(OrgAction::ManageKeys),
        members,
        invitations,
        teams,
        vaults,
        clients,
        roles: [OrgRole::Member, OrgRole::Admin, OrgRole::Owner]
            .iter()
            .map(|r| r.as_str())
            .collect(),
    }))
}

/// The organization's vaults with their grants (the first [`DETAILED`]).
async fn vault_rows(
    state: &AppState,
    viewer: &Viewer,
    org_id: gatehouse_core::Id,
) -> Result<Vec<VaultRow>, super::PageError> {
    let vaults_service = &state.services.vaults;
    let user = &viewer.user;
    let mut vaults = Vec::new();
    for vault in vaults_service
        .list_vaults(user, org_id)
        .await
        .or_page(viewer)?
        .into_iter()
        .take(DETAILED)
    {
        let grants = vaults_service
            .list_grants(user, org_id, vault.id)
            .await
            .or_page(viewer)?
            .into_iter()
            .map(|g| {
                format!(
                    "{} {}: {}",
                    api_name(&g.subject_type),
                    g.subject_id,
                    g.role.as_str()
                )
            })
            .collect();
        vaults.push(VaultRow {
            id: vault.id.to_string(),
            sync: api_name(&vault.sync.status),
            name: vault.name,
            grants,
        });
    }
    Ok(vaults)
}

/// The organization's service clients with their certificates (the first
/// [`DETAILED`]).
async fn client_rows(
    state: &AppState,
    viewer: &Viewer,
    org_id: gatehouse_core::Id,
) -> Result<Vec<ClientRow>, super::PageError> {
    let vaults_service = &state.services.vaults;
    let user = &viewer.user;
    let mut clients = Vec::new();
    for client in vaults_service
        .list_clients(user, org_id)
        .await
        .or_page(viewer)?
        .into_iter()
        .take(DETAILED)
    {
        let certificates = vaults_service
            .list_certificates(user, org_id, client.id)
            .await
            .or_page(viewer)?
            .into_iter()
            .map(|c| (c.kid, when(&c.created_at), c.revoked_at.is_none()))
            .collect();
        clients.push(ClientRow {
            id: client.id.to_string(),
            name: client.name,
            certificates,
        });
    }
    Ok(clients)
}
