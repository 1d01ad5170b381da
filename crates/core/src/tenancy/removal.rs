//! Deleting an organization or an account of any size, in bounded
//! transactions: the one cascade that removes what hangs off them.
//!
//! The deleting transaction removes the organization (or the account, and
//! its personal organization) from view and writes a [`Removal`] marker;
//! from then on nobody can read or use it. Its records — vaults and their
//! grants, service clients, projects (handed on to `work`'s purge), teams
//! and their members, members, invitations; for an account its sessions,
//! team and organization memberships and chats — then go a page per
//! transaction, the marker counting what went in the same transaction, so
//! a removal cut short by a restart resumes where it stopped. The leader's
//! `purge` job finishes what deletions left; `GET /api/v1/system/removals`
//! shows the progress.

use chrono::{DateTime, Utc};
use gatehouse_storage::{RangeOptions, Store, Tx, TxError};

use super::{TenancyService, clear_team_membership};
use crate::codec::decode_values;
use crate::model::accounts::User;
use crate::model::sessions::SessionRef;
use crate::model::tenancy::{
    Invitation, Membership, OrgRole, Organization, Removal, RemovalKind, Team, TeamMember,
    UserOrgRef, UserTeamRef,
};
use crate::model::vaults::SubjectKind;
use crate::{Error, Id, Result, keyspace};

/// Records removed per transaction, at most (each one or two keys and a
/// change record: well inside the 10 MB and 5 s limits).
const PAGE: usize = 500;
/// Projects and chats per transaction (each writes its own purge marker).
const SMALL_PAGE: usize = 100;

/// Removes `org` from view in `tx` and marks its records for removal.
pub(crate) async fn start_org_removal(
    tx: &Tx,
    org: &Organization,
    now: DateTime<Utc>,
) -> Result<(), TxError<Error>> {
    keyspace::org_by_slug(&org.slug).clear(tx).await?;
    keyspace::org(org.id).clear(tx).await?;
    let marker = Removal {
        id: org.id,
        kind: RemovalKind::Organization,
        name: org.name.clone(),
        started_at: now,
        removed: 0,
        updated_at: now,
    };
    keyspace::removal(org.id).put(tx, &marker).await
}

/// In the transaction that deletes `user`'s account record: removes their
/// personal organization from view and marks both for removal. Returns the
/// personal organization's ID.
pub(crate) async fn start_user_removal(
    tx: &Tx,
    user: &User,
    now: DateTime<Utc>,
) -> Result<Option<Id>, TxError<Error>> {
    // A personal organization is named after the email, or the email and the
    // user ID when another organization held that name.
    let mut personal = None;
    let email = user.email.to_lowercase();
    for name in [email.clone(), format!("{email} ({})", user.id)] {
        let Ok(slug) = crate::common::slugify(&name) else {
            continue;
        };
        let Some(found) = keyspace::org_by_slug(&slug).get(tx).await? else {
            continue;
        };
        let org = keyspace::org(found.org_id).get(tx).await?;
        let owner = keyspace::org_member(found.org_id, user.id).get(tx).await?;
        if let (Some(org), Some(owner)) = (org, owner)
            && org.personal
            && owner.role == OrgRole::Owner
        {
            start_org_removal(tx, &org, now).await?;
            personal = Some(org.id);
            break;
        }
    }
    let marker = Removal {
        id: user.id,
        kind: RemovalKind::User,
        name: user.email.clone(),
        started_at: now,
        removed: 0,
        updated_at: now,
    };
    keyspace::removal(user.id).put(tx, &marker).await?;
    Ok(personal)
}

/// Fails with `conflict` when removing `user_id` would leave an organization
/// other than their personal one without an owner. Reads a page per
/// transaction (an account may belong to very many organizations).
pub(crate) async fn check_user_removable(store: &Store, user_id: Id) -> Result<()> {
    let mut next = Some(keyspace::user_orgs(user_id));
    while let Some(range) = next {
        let (refs, rest) = crate::codec::read_page::<UserOrgRef>(store, &range, PAGE).await?;
        for entry in refs {
            let owned = store
                .run(|tx| async move {
                    let member = keyspace::org_member(entry.org_id, user_id).get(&tx).await?;
                    let org = keyspace::org(entry.org_id).get(&tx).await?;
                    Ok::<_, TxError<Error>>(match (org, member) {
                        (Some(org), Some(m)) if m.role == OrgRole::Owner && !org.personal => {
                            Some(org)
                        }
                        _ => None,
                    })
                })
                .await?;
            if let Some(org) = owned
                && !has_another_owner(store, org.id, user_id).await?
            {
                return Err(Error::conflict(format!(
                    "this user is the last owner of organization {} ({}); transfer its ownership or delete it first",
                    org.name, org.id
                )));
            }
        }
        next = rest;
    }
    Ok(())
}

/// Whether an owner other than `user_id` holds `org_id`, reading its members
/// a page per transaction until one is found.
async fn has_another_owner(store: &Store, org_id: Id, user_id: Id) -> Result<bool> {
    let mut next = Some(keyspace::org_members(org_id));
    while let Some(range) = next {
        let (members, rest) = crate::codec::read_page::<Membership>(store, &range, 1_000).await?;
        if members
            .iter()
            .any(|m| m.role == OrgRole::Owner && m.user_id != user_id)
        {
            return Ok(true);
        }
        next = rest;
    }
    Ok(false)
}

/// One page of an organization's removal; how many records went (0: none
/// were left).
async fn org_page(tx: &Tx, org_id: Id, now: DateTime<Utc>) -> Result<usize, TxError<Error>> {
    let removed = crate::vaults::remove_org_vaults_page(tx, org_id, PAGE, now).await?;
    if removed > 0 {
        return Ok(removed);
    }
    let projects = tx
        .get_range(&keyspace::projects(org_id), RangeOptions::limit(SMALL_PAGE))
        .await?;
    if !projects.entries.is_empty() {
        for project in decode_values::<crate::model::work::Project>(&projects.entries)
            .map_err(TxError::Abort)?
        {
            crate::work::purge::remove_project(tx, &project).await?;
        }
        return Ok(projects.entries.len());
    }
    let teams = tx
        .get_range(&keyspace::teams(org_id), RangeOptions::limit(1))
        .await?;
    if let Some(team) = decode_values::<Team>(&teams.entries)
        .map_err(TxError::Abort)?
        .pop()
    {
        let members = tx
            .get_range(&keyspace::team_members(team.id), RangeOptions::limit(PAGE))
            .await?;
        for member in decode_values::<TeamMember>(&members.entries).map_err(TxError::Abort)? {
            clear_team_membership(tx, team.id, member.user_id).await?;
        }
        if members.entries.is_empty() {
            keyspace::team_by_id(team.id).clear(tx).await?;
            keyspace::team(org_id, team.id).clear(tx).await?;
            return Ok(1);
        }
        return Ok(members.entries.len());
    }
    let members = tx
        .get_range(&keyspace::org_members(org_id), RangeOptions::limit(PAGE))
        .await?;
    if !members.entries.is_empty() {
        for member in decode_values::<Membership>(&members.entries).map_err(TxError::Abort)? {
            keyspace::org_member(org_id, member.user_id)
                .clear(tx)
                .await?;
            keyspace::user_org(member.user_id, org_id).clear(tx).await?;
        }
        return Ok(members.entries.len());
    }
    let invitations = tx
        .get_range(&keyspace::invitations(org_id), RangeOptions::limit(PAGE))
        .await?;
    for invitation in decode_values::<Invitation>(&invitations.entries).map_err(TxError::Abort)? {
        keyspace::invitation_by_token(&invitation.token_hash)
            .clear(tx)
            .await?;
        keyspace::invitation(org_id, invitation.id)
            .clear(tx)
            .await?;
    }
    Ok(invitations.entries.len())
}

/// One page of an account's removal; how many records went (0: none were
/// left).
async fn user_page(tx: &Tx, user_id: Id, now: DateTime<Utc>) -> Result<usize, TxError<Error>> {
    let sessions = tx
        .get_range(&keyspace::sessions_of(user_id), RangeOptions::limit(PAGE))
        .await?;
    if !sessions.entries.is_empty() {
        for (key, value) in &sessions.entries {
            let r: SessionRef = crate::codec::decode(value).map_err(TxError::Abort)?;
            keyspace::session(&r.token_hash).clear(tx).await?;
            tx.clear(key)?;
        }
        return Ok(sessions.entries.len());
    }
    let teams = tx
        .get_range(&keyspace::user_teams(user_id), RangeOptions::limit(PAGE))
        .await?;
    if !teams.entries.is_empty() {
        for entry in decode_values::<UserTeamRef>(&teams.entries).map_err(TxError::Abort)? {
            clear_team_membership(tx, entry.team_id, user_id).await?;
        }
        return Ok(teams.entries.len());
    }
    let orgs = tx
        .get_range(
            &keyspace::user_orgs(user_id),
            RangeOptions::limit(SMALL_PAGE),
        )
        .await?;
    if !orgs.entries.is_empty() {
        for entry in decode_values::<UserOrgRef>(&orgs.entries).map_err(TxError::Abort)? {
            crate::vaults::forget_subject(tx, entry.org_id, SubjectKind::User, user_id, now)
                .await?;
            keyspace::org_member(entry.org_id, user_id)
                .clear(tx)
                .await?;
            keyspace::user_org(user_id, entry.org_id).clear(tx).await?;
        }
        return Ok(orgs.entries.len());
    }
    let signed = remove_ways_in(tx, user_id).await?;
    if signed > 0 {
        return Ok(signed);
    }
    crate::work::purge::remove_user_chats(tx, user_id, SMALL_PAGE).await
}

/// A page of what a deleted account used to get in or to call models: its
/// single sign-on identities (so the person can sign in afresh), passkeys and
/// second factor, API keys with their hash index, subscriptions and own
/// aliases. How many went (0: none left).
async fn remove_ways_in(tx: &Tx, user_id: Id) -> Result<usize, TxError<Error>> {
    use crate::model::accounts::SsoIdentity;
    use crate::model::catalog::IdRef;
    use crate::model::factors::PasskeyRecord;
    let page = RangeOptions::limit(SMALL_PAGE);
    let identities = tx.get_range(&keyspace::user_ssos(user_id), page).await?;
    if !identities.entries.is_empty() {
        for identity in decode_values::<SsoIdentity>(&identities.entries).map_err(TxError::Abort)? {
            let linked = keyspace::sso_identity(&identity.provider, &identity.subject);
            // Cleared only while it still names this account.
            if linked.get(tx).await?.is_some_and(|l| l.user_id == user_id) {
                linked.clear(tx).await?;
            }
            keyspace::user_sso(user_id, &identity.provider, &identity.subject)
                .clear(tx)
                .await?;
        }
        return Ok(identities.entries.len());
    }
    let passkeys = tx.get_range(&keyspace::passkeys_of(user_id), page).await?;
    if !passkeys.entries.is_empty() {
        for record in decode_values::<PasskeyRecord>(&passkeys.entries).map_err(TxError::Abort)? {
            keyspace::passkey_credential(record.credential.cred_id())
                .clear(tx)
                .await?;
            keyspace::passkey(user_id, record.id).clear(tx).await?;
        }
        return Ok(passkeys.entries.len());
    }
    let totp = keyspace::totp(user_id);
    if totp.get(tx).await?.is_some() {
        totp.clear(tx).await?;
        return Ok(1);
    }
    let keys = tx.get_range(&keyspace::api_keys_of(user_id), page).await?;
    if !keys.entries.is_empty() {
        for entry in decode_values::<IdRef>(&keys.entries).map_err(TxError::Abort)? {
            if let Some(key) = keyspace::api_key(entry.id).get(tx).await? {
                keyspace::api_key_by_hash(&key.hash).clear(tx).await?;
            }
            keyspace::api_key(entry.id).clear(tx).await?;
            keyspace::api_key_last_used(entry.id).clear(tx).await?;
            keyspace::api_key_of(user_id, entry.id).clear(tx).await?;
        }
        return Ok(keys.entries.len());
    }
    let subscriptions = tx
        .get_range(&keyspace::subscriptions_of(user_id), page)
        .await?;
    if !subscriptions.entries.is_empty() {
        for (key, value) in &subscriptions.entries {
            let entry: IdRef = crate::codec::decode(value).map_err(TxError::Abort)?;
            keyspace::subscription(entry.id).clear(tx).await?;
            tx.clear(key)?;
        }
        return Ok(subscriptions.entries.len());
    }
    let aliases = tx.get_range(&keyspace::aliases_of(user_id), page).await?;
    for (key, value) in &aliases.entries {
        let entry: IdRef = crate::codec::decode(value).map_err(TxError::Abort)?;
        keyspace::alias(entry.id).clear(tx).await?;
        tx.clear(key)?;
    }
    Ok(aliases.entries.len())
}

impl TenancyService {
    /// Runs every pending removal to its end, a page per transaction; how
    /// many records went. Deletions start it; the leader's `purge` job runs
    /// it for what a stopped instance left.
    pub async fn run_removals(&self) -> Result<usize> {
        let mut removed = 0;
        loop {
            let (pending, _) =
                crate::codec::read_page::<Removal>(&self.store, &keyspace::removals(), 50).await?;
            if pending.is_empty() {
                return Ok(removed);
            }
            for marker in pending {
                removed += self.finish(&marker).await?;
            }
        }
    }

    /// Removes what is left of one removal, then its marker.
    async fn finish(&self, marker: &Removal) -> Result<usize> {
        let (id, kind) = (marker.id, marker.kind);
        let mut removed = 0;
        loop {
            let now = self.env.clock.now();
            let gone = self
                .store
                .run(|tx| async move {
                    let Some(mut marker) = keyspace::removal(id).get(&tx).await? else {
                        return Ok(0);
                    };
                    let gone = match kind {
                        RemovalKind::Organization => org_page(&tx, id, now).await?,
                        RemovalKind::User => user_page(&tx, id, now).await?,
                    };
                    if gone == 0 {
                        keyspace::removal(id).clear(&tx).await?;
                    } else {
                        marker.removed += gone as u64;
                        marker.updated_at = now;
                        keyspace::removal(id).put(&tx, &marker).await?;
                    }
                    Ok::<_, TxError<Error>>(gone)
                })
                .await?;
            if gone == 0 {
                return Ok(removed);
            }
            removed += gone;
            crate::blocking::yield_now().await;
        }
    }

    /// The removals in progress (platform readers).
    pub async fn removals(&self, viewer: &User) -> Result<Vec<Removal>> {
        if !viewer.is_platform_reader() {
            return Err(Error::permission_denied(
                "only platform admins see removals in progress",
            ));
        }
        let mut found = Vec::new();
        let mut next = Some(keyspace::removals());
        while let Some(range) = next {
            let (page, rest) = crate::codec::read_page::<Removal>(&self.store, &range, 500).await?;
            found.extend(page);
            next = rest;
        }
        Ok(found)
    }
}
