//! Work (the Platform seed's workspace): projects in an organization
//! (`here`), chats in a project (`chats`) and their messages (`messages`),
//! long texts stored in parts (`parts`), and the removal of deleted
//! projects' and chats' records a page at a time (`purge`).
//!
//! The rules (SPEC §2, §3): members read the organization's projects; owners
//! and admins create, rename and delete them. Any member starts chats; a chat
//! is read by its owner, by the organization's owners and admins and by
//! platform readers, and by every member when it is `shared`; only its owner
//! writes to it, and its owner or the organization's owners and admins
//! delete it. Outsiders get `not_found` for everything, as elsewhere.

mod chats;
mod messages;
mod parts;
pub mod purge;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_storage::{Store, Tx, TxError};

use crate::access::{OrgAccess, OrgAction, load_access, read_in_org};
use crate::audit::{AuditLog, Audited, NewEvent};
use crate::codec::{abort, read_all};
use crate::model::accounts::User;
use crate::model::sessions::ClientInfo;
use crate::model::work::{Chat, Project};
use crate::{Env, Error, Id, Result, keyspace};

pub use chats::{ChatChange, ChatSpec, MAX_CONTENT_BYTES, MAX_CONTENT_CHARS};
pub use messages::{History, MAX_PAGE_TEXT_BYTES, NewMessage, clipped};

/// The name of every personal organization's default project.
pub const DEFAULT_PROJECT: &str = "Default";

pub struct WorkService {
    store: Store,
    env: Env,
    audit: Arc<AuditLog>,
}

impl Audited for WorkService {
    fn audit_parts(&self) -> (&Store, &AuditLog) {
        (&self.store, &self.audit)
    }
}

/// Creates the default project of a personal organization, in the
/// transaction that creates the organization.
pub(crate) async fn create_default_project(
    tx: &Tx,
    org_id: Id,
    project_id: Id,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    let project = Project {
        id: project_id,
        org_id,
        name: DEFAULT_PROJECT.to_string(),
        is_user_default: true,
        created_at: now,
        updated_at: now,
    };
    keyspace::project(org_id, project_id)
        .put(tx, &project)
        .await
}

fn no_project() -> TxError<Error> {
    TxError::Abort(Error::not_found("project"))
}

/// The project `project_id` of `org_id`, or `not_found`.
async fn project_in(tx: &Tx, org_id: Id, project_id: Id) -> Result<Project, TxError<Error>> {
    keyspace::project(org_id, project_id)
        .get(tx)
        .await?
        .ok_or_else(no_project)
}

/// Whether the caller manages the organization's projects (and may delete
/// and read any chat in it).
fn manages(access: &OrgAccess) -> bool {
    access.allows(OrgAction::ManageProjects)
}

/// Whether the caller may read `chat`.
fn may_read(access: &OrgAccess, actor: &User, chat: &Chat) -> bool {
    chat.owner_id == actor.id
        || access.platform_reader()
        || manages(access)
        || (chat.shared && access.role.is_some())
}

impl WorkService {
    pub fn new(store: Store, env: Env, audit: Arc<AuditLog>) -> Self {
        WorkService { store, env, audit }
    }

    fn event<'a>(
        &self,
        actor: &User,
        client: &'a ClientInfo,
        action: &'a str,
        org: Id,
        target: (&'a str, Id),
        details: serde_json::Value,
    ) -> crate::audit::AuditEvent {
        self.audit.event(
            NewEvent::by_user(actor, action, client)
                .on(target.0, target.1)
                .in_org(Some(org))
                .with(details),
        )
    }

    /// Gives every personal organization without a default project one
    /// (accounts made before projects existed). Runs once per store: a
    /// marker says it has; each organization is its own transaction.
    pub async fn ensure_default_projects(&self) -> Result<usize> {
        const MIGRATION: &str = "default_projects";
        let done = self
            .store
            .run(|tx| async move { keyspace::migration(MIGRATION).get(&tx).await })
            .await?;
        if done.is_some() {
            return Ok(0);
        }
        let mut made = 0;
        let mut next = Some(keyspace::orgs());
        while let Some(range) = next {
            let (orgs, rest) = crate::codec::read_page::<crate::model::tenancy::Organization>(
                &self.store,
                &range,
                200,
            )
            .await?;
            for org in orgs.into_iter().filter(|o| o.personal) {
                let (id, now) = (self.env.ids.next_id(), self.env.clock.now());
                let created = self
                    .store
                    .run(|tx| async move {
                        let projects =
                            read_all::<Project>(&tx, &keyspace::projects(org.id)).await?;
                        if projects.iter().any(|p| p.is_user_default) {
                            return Ok(false);
                        }
                        create_default_project(&tx, org.id, id, now).await?;
                        Ok::<_, TxError<Error>>(true)
                    })
                    .await?;
                made += usize::from(created);
            }
            next = rest;
        }
        let marker = crate::model::system::Setting {
            name: MIGRATION.to_string(),
            value: serde_json::json!({"projects_created": made}),
            updated_at: self.env.clock.now(),
        };
        self.store
            .run(|tx| {
                let marker = &marker;
                async move { keyspace::migration(MIGRATION).put(&tx, marker).await }
            })
            .await?;
        Ok(made)
    }

    /// Creates a project (owners and admins).
    pub async fn create_project(
        &self,
        actor: &User,
        org_id: Id,
        name: &str,
        client: &ClientInfo,
    ) -> Result<Project> {
        let name = crate::common::parse_name(name, "project")?;
        let now = self.env.clock.now();
        let project = Project {
            id: self.env.ids.next_id(),
            org_id,
            name,
            is_user_default: false,
            created_at: now,
            updated_at: now,
        };
        self.audited(
            |tx| {
                let project = &project;
                async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageProjects)?;
                    keyspace::project(org_id, project.id)
                        .put(&tx, project)
                        .await
                }
            },
            |_| {
                let details = serde_json::json!({"name": project.name});
                let target = ("project", project.id);
                self.event(actor, client, "projects.create", org_id, target, details)
            },
        )
        .await?;
        Ok(project)
    }

    /// The organization's projects (anyone who sees the organization).
    pub async fn list_projects(&self, actor: &User, org_id: Id) -> Result<Vec<Project>> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            read_all::<Project>(&tx, &keyspace::projects(org_id)).await
        })
        .await
    }

    pub async fn get_project(&self, actor: &User, org_id: Id, project_id: Id) -> Result<Project> {
        read_in_org(&self.store, actor, org_id, |tx| async move {
            project_in(&tx, org_id, project_id).await
        })
        .await
    }

    /// Renames a project (owners and admins).
    pub async fn rename_project(
        &self,
        actor: &User,
        org_id: Id,
        project_id: Id,
        name: &str,
        client: &ClientInfo,
    ) -> Result<Project> {
        let name = crate::common::parse_name(name, "project")?;
        let now = self.env.clock.now();
        self.audited(
            |tx| {
                let name = name.clone();
                async move {
                    load_access(&tx, actor, org_id)
                        .await?
                        .require(OrgAction::ManageProjects)?;
                    let mut project = project_in(&tx, org_id, project_id).await?;
                    project.name = name;
                    project.updated_at = now;
                    keyspace::project(org_id, project_id)
                        .put(&tx, &project)
                        .await?;
                    Ok(project)
                }
            },
            |project| {
                let details = serde_json::json!({"name": project.name});
                let target = ("project", project_id);
                self.event(actor, client, "projects.update", org_id, target, details)
            },
        )
        .await
    }

    /// Deletes a project (owners and admins; never a personal organization's
    /// default): it is gone at once, its chats and messages follow a page at
    /// a time ([`purge`]).
    pub async fn delete_project(
        &self,
        actor: &User,
        org_id: Id,
        project_id: Id,
        client: &ClientInfo,
    ) -> Result<()> {
        self.audited(
            |tx| async move {
                load_access(&tx, actor, org_id)
                    .await?
                    .require(OrgAction::ManageProjects)?;
                let project = project_in(&tx, org_id, project_id).await?;
                if project.is_user_default {
                    return abort(Error::conflict(
                        "the default project is deleted only with its organization",
                    ));
                }
                purge::remove_project(&tx, &project).await
            },
            |_| {
                let target = ("project", project_id);
                let details = serde_json::Value::Null;
                self.event(actor, client, "projects.delete", org_id, target, details)
            },
        )
        .await?;
        self.run_purges().await?;
        Ok(())
    }
}
