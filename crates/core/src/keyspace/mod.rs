//! The keyspace: every subspace Gatehouse stores, with its data model.
//!
//! Keys are FoundationDB tuples, so they sort by their elements and look the same
//! in every engine. Index subspaces are named `<entity>_by_<field>`. The bytes are
//! pinned by the golden tests below: changing them orphans stored data.
//!
//! | key | value |
//! |---|---|
//! | `("system", "installation")` | [`Installation`] |
//! | `("setting", name)` | [`Setting`] |
//! | `("user", id)` | [`User`](crate::model::accounts::User) |
//! | `("user_by_email", lower-cased email)` | [`UserRef`](crate::model::accounts::UserRef) |
//! | `("user_email", user id, lower-cased email)` | [`UserEmail`](crate::model::accounts::UserEmail): addresses besides the primary |
//! | `("user_by_username", username)` | [`UserRef`](crate::model::accounts::UserRef) |
//! | `("sso_identity", provider, subject)` / `("user_sso", user id, provider, subject)` | [`SsoIdentity`](crate::model::accounts::SsoIdentity): a linked single sign-on identity, and the same under its account |
//! | `("sso_flow", sha256(state))` | [`SsoFlow`](crate::model::accounts::SsoFlow): a single sign-on in progress, single use, minutes |
//! | `("passkey", user id, id)` / `("passkey_credential", credential id)` | [`PasskeyRecord`] / [`PasskeyOwner`] |
//! | `("totp", user id)` | [`TotpFactor`]: the TOTP second factor and the hashes of its recovery codes |
//! | `("auth_challenge", sha256(token))` | [`Challenge`]: a passkey ceremony or a sign-in waiting for its second factor, single use, minutes |
//! | `("session", sha256(token))` | [`Session`](crate::model::sessions::Session) |
//! | `("session_by_user", user id, session id)` | [`SessionRef`](crate::model::sessions::SessionRef) |
//! | `("login_failures", "account" \| "ip" \| "device", subject)` | [`Failures`](crate::model::throttle::Failures) |
//! | `("audit", id)` | [`AuditEvent`](crate::model::audit::AuditEvent) |
//! | `("audit_by", "actor" \| "org" \| "target" \| "area", value…, id)` | packed `(actor user, org, target type, target id, action)`: the event's filter fields |
//! | `("outbox", id)` | [`OutboxMessage`](crate::model::email::OutboxMessage) |
//! | `("idempotency", sha256(credential, Idempotency-Key))` | [`IdempotentWrite`](crate::model::idempotency::IdempotentWrite): a write that may be retried, for 24 hours |
//! | `("email_token", sha256(token))` | [`EmailToken`](crate::model::accounts::EmailToken) |
//! | `("system", "migration", name)` | [`Setting`]: a data migration that has run, and when |
//! | `("system", "bootstrap_admin")` | [`BootstrapRecord`](crate::model::accounts::BootstrapRecord) |
//! | `("change", versionstamp)` | [`ChangeRecord`](crate::codec::ChangeRecord): one committed write to an entity subspace |
//! | `("change_count", "appended" \| "trimmed")` | `i64` counters (atomic add) |
//! | `("cluster", "worker", id)` | [`WorkerLease`]: who holds snowflake worker ID `id` |
//! | `("cluster", "leader")` | [`LeaderLease`]: the current leader and its fencing token |
//! | `("vault", org, id)` / `("vault_by_id", id)` | [`Vault`] / [`VaultRef`] |
//! | `("vault_grant", vault, "user" \| "team" \| "client", subject)` | [`VaultGrant`] |
//! | `("vault_sync", vault)` | [`PendingSync`]: the vault-sync outbox |
//! | `("service_client", org, id)` / `("client_by_id", id)` | [`ServiceClient`] / [`ClientRef`] |
//! | `("certificate", client, kid)` / `("certificate_by_kid", kid)` | [`Certificate`] / [`CertificateRef`] |
//! | `("signing_key", kid)` | [`SigningKey`]: Gatehouse's own, the private half sealed |
//! | `("assertion_jti", client, jti)` | [`SpentAssertion`]: used client-assertion IDs, until they expire |
//! | `("refresh_token", sha256(token))` / `("token_family", id)` | [`RefreshToken`] / [`TokenFamily`] |
//! | `("org", id)` / `("org_by_slug", slug)` | [`Organization`] / [`OrgRef`] |
//! | `("org_member", org, user)` / `("user_org", user, org)` | [`Membership`] / [`UserOrgRef`] |
//! | `("org_invitation", org, id)` / `("invitation_by_token", sha256(token))` | [`Invitation`] / [`InvitationRef`] |
//! | `("team", org, id)` / `("team_by_id", id)` | [`Team`] / [`TeamRef`] |
//! | `("team_member", team, user)` / `("user_team", user, team)` | [`TeamMember`] / [`UserTeamRef`] |
//! | `("credential", id)` / `("credential_by_scope", kind, scope id, id)` | [`Credential`] / [`IdRef`] |
//! | `("endpoint", id)` / `("endpoint_by_name", name)` | [`Endpoint`] / [`IdRef`] |
//! | `("model", id)` / `("model_by_name", name)` | [`Model`] / [`IdRef`] |
//! | `("alias", id)` / `("alias_global", alias)` / `("alias_user", user, alias)` | [`Alias`] / [`IdRef`] |
//! | `("subscription", id)` / `("subscription_by_user", user, model)` | [`Subscription`] / [`IdRef`] |
//! | `("api_key", id)` / `("api_key_by_hash", sha256(key))` / `("api_key_by_owner", user, id)` | [`ApiKey`] / [`IdRef`] |
//! | `("api_key_last_used", id)` | [`LastUsed`] |
//! | `("request_log", id)` | [`RequestLog`](crate::model::usage::RequestLog), without its captured bodies |
//! | `("request_body", id)` | [`LogBodies`](crate::model::usage::LogBodies): a request log's captured bodies |
//! | `("request_log_by", "user" \| "key" \| "org" \| "model" \| "status", value, id)` | packed `(user, key, org, status, model)`: the log's filter fields, so a query filters on the index alone |
//! | `("usage_all", dimension, day, group)` | rollup row: four `i64` lanes (requests, prompt tokens, completion tokens, cost µ$; atomic add): everyone's calls of one day by `day` (group `""`), `model`, `key`, `user` or `org`, and of one week by `user_week` |
//! | `("usage_user", user, dimension, day, group)` | rollup row (lanes as above): one user's calls of one day by `day`, `model` or `key` |
//! | `("usage_all" \| "usage_user", …, group, field)` | `i64` counter: rollups of earlier releases, one key per field; read alongside the rows until the `records_layout` job folds them in |
//! | `("usage_day", day, user, key, model, field)` | `i64` counter: the rollups before per-dimension ones, moved into them at start, then gone |
//! | `("spend", period, holder kind, holder id)` | `i64` micro-dollars spent in a budget period (atomic add) |
//! | `("rate", minute, holder kind, holder id, "requests" \| "tokens")` | `i64` counter of one minute (atomic add) |
//! | `("project", org, id)` | [`Project`] |
//! | `("chat", project, id)` / `("user_chat", user, chat)` | [`Chat`] / [`ChatRef`]: a user's chats, for their deletion |
//! | `("chat_message", chat, id)` | [`StoredMessage`]: a message, with its text or the text's first part |
//! | `("chat_message_part", chat, id, n)` | [`TextPart`]: part `n` (from 1) of a long message's text |
//! | `("chat_prompt_part", chat, n)` | [`TextPart`]: part `n` (from 1) of a chat's long system prompt |
//! | `("purge", id)` | [`Purge`]: a deleted project or chat whose records are being removed a page at a time |
//! | `("removal", id)` | [`Removal`](crate::model::tenancy::Removal): a deleted organization or account whose records are being removed a page at a time |

use gatehouse_storage::KeyRange;
use gatehouse_storage::tuple::{Subspace, pack};

mod records;
pub use records::*;

use crate::codec::Key;
pub use crate::codec::{change_count, change_prefix};
use crate::model::accounts::{
    BootstrapRecord, EmailToken, SsoFlow, SsoIdentity, User, UserEmail, UserRef, Username,
};
use crate::model::audit::AuditEvent;
use crate::model::catalog::{
    Alias, Credential, CredentialScope, Endpoint, IdRef, Model, Subscription,
};
use crate::model::cluster::{LeaderLease, WorkerLease};
use crate::model::email::OutboxMessage;
use crate::model::factors::{Challenge, PasskeyOwner, PasskeyRecord, TotpFactor};
use crate::model::idempotency::IdempotentWrite;
use crate::model::keys::{ApiKey, LastUsed};
use crate::model::sessions::{Session, SessionRef};
use crate::model::system::{Installation, Setting, SettingName};
use crate::model::tenancy::{
    Invitation, InvitationRef, Membership, OrgRef, Organization, Team, TeamMember, TeamRef,
    UserOrgRef, UserTeamRef,
};
use crate::model::throttle::Failures;
use crate::model::vaults::{
    Certificate, CertificateRef, ClientRef, PendingSync, RefreshToken, ServiceClient, SigningKey,
    SpentAssertion, SubjectKind, TokenFamily, Vault, VaultGrant, VaultRef,
};
use crate::model::work::{Chat, ChatRef, Project, Purge, StoredMessage, TextPart};

pub const SYSTEM: &str = "system";
pub const SETTING: &str = "setting";
pub use crate::codec::CHANGE;
pub const USER: &str = "user";
pub const USER_BY_EMAIL: &str = "user_by_email";
pub const USER_BY_USERNAME: &str = "user_by_username";
pub const SESSION: &str = "session";
pub const SESSION_BY_USER: &str = "session_by_user";
pub const CLUSTER: &str = "cluster";
pub const SPEND: &str = "spend";
pub const RATE: &str = "rate";

/// `("system", "installation") = Installation`
pub fn installation() -> Key<Installation> {
    Key::new(pack(&(SYSTEM, "installation")))
}

/// `("setting", name) = Setting`
pub fn setting(name: &SettingName) -> Key<Setting> {
    Key::new(pack(&(SETTING, name.as_str())))
}

/// All of `("setting", *)`.
pub fn settings() -> KeyRange {
    KeyRange::subspace(&Subspace::from(SETTING))
}

/// `("user", id) = User`
pub fn user(id: crate::Id) -> Key<User> {
    Key::new(pack(&(USER, id.0)))
}

/// All of `("user", *)`, in ID order.
pub fn users() -> KeyRange {
    KeyRange::subspace(&Subspace::from(USER))
}

/// `("user_by_email", lower-cased email) = UserRef`
pub fn user_by_email(email_key: &str) -> Key<UserRef> {
    Key::new(pack(&(USER_BY_EMAIL, email_key)))
}

/// `("user_email", user, lower-cased email) = UserEmail`
pub fn user_email(user: crate::Id, email_key: &str) -> Key<UserEmail> {
    Key::new(pack(&("user_email", user.0, email_key)))
}

/// All of `("user_email", user, *)`.
pub fn user_emails(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("user_email").subspace(&(user.0,)))
}

/// `("sso_identity", provider, subject) = SsoIdentity`
pub fn sso_identity(provider: &str, subject: &str) -> Key<SsoIdentity> {
    Key::new(pack(&("sso_identity", provider, subject)))
}

/// `("user_sso", user, provider, subject) = SsoIdentity`
pub fn user_sso(user: crate::Id, provider: &str, subject: &str) -> Key<SsoIdentity> {
    Key::new(pack(&("user_sso", user.0, provider, subject)))
}

/// All of `("user_sso", user, *)`.
pub fn user_ssos(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("user_sso").subspace(&(user.0,)))
}

/// `("sso_flow", sha256(state)) = SsoFlow`
pub fn sso_flow(state_hash: &[u8]) -> Key<SsoFlow> {
    Key::new(pack(&("sso_flow", state_hash)))
}

/// All of `("sso_flow", *)`, for pruning.
pub fn sso_flows() -> KeyRange {
    KeyRange::subspace(&Subspace::from("sso_flow"))
}

/// `("passkey", user, id) = PasskeyRecord`
pub fn passkey(user: crate::Id, id: crate::Id) -> Key<PasskeyRecord> {
    Key::new(pack(&("passkey", user.0, id.0)))
}

/// All of `("passkey", user, *)`, oldest first.
pub fn passkeys_of(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("passkey").subspace(&(user.0,)))
}

/// `("passkey_credential", credential id) = PasskeyOwner`
pub fn passkey_credential(credential_id: &[u8]) -> Key<PasskeyOwner> {
    Key::new(pack(&("passkey_credential", credential_id)))
}

/// `("totp", user) = TotpFactor`
pub fn totp(user: crate::Id) -> Key<TotpFactor> {
    Key::new(pack(&("totp", user.0)))
}

/// All of `("totp", *)`, for re-sealing.
pub fn totps() -> KeyRange {
    KeyRange::subspace(&Subspace::from("totp"))
}

/// `("auth_challenge", sha256(token)) = Challenge`
pub fn auth_challenge(token_hash: &[u8]) -> Key<Challenge> {
    Key::new(pack(&("auth_challenge", token_hash)))
}

/// All of `("auth_challenge", *)`, for pruning.
pub fn auth_challenges() -> KeyRange {
    KeyRange::subspace(&Subspace::from("auth_challenge"))
}

/// `("project", org, id) = Project`
pub fn project(org: crate::Id, id: crate::Id) -> Key<Project> {
    Key::new(pack(&("project", org.0, id.0)))
}

/// All of `("project", org, *)`, oldest first.
pub fn projects(org: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("project").subspace(&(org.0,)))
}

/// `("chat", project, id) = Chat`
pub fn chat(project: crate::Id, id: crate::Id) -> Key<Chat> {
    Key::new(pack(&("chat", project.0, id.0)))
}

/// All of `("chat", project, *)`, oldest first.
pub fn chats(project: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("chat").subspace(&(project.0,)))
}

/// `("user_chat", user, chat) = ChatRef`
pub fn user_chat(user: crate::Id, chat: crate::Id) -> Key<ChatRef> {
    Key::new(pack(&("user_chat", user.0, chat.0)))
}

/// All of `("user_chat", user, *)`.
pub fn user_chats(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("user_chat").subspace(&(user.0,)))
}

/// `("chat_message", chat, id) = StoredMessage`
pub fn chat_message(chat: crate::Id, id: crate::Id) -> Key<StoredMessage> {
    Key::new(pack(&("chat_message", chat.0, id.0)))
}

/// `("chat_message_part", chat, id, n) = TextPart`
pub fn chat_message_part(chat: crate::Id, id: crate::Id, n: u32) -> Key<TextPart> {
    Key::new(pack(&("chat_message_part", chat.0, id.0, u64::from(n))))
}

/// All of `("chat_message_part", chat, id, *)`, in order.
pub fn chat_message_parts(chat: crate::Id, id: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("chat_message_part").subspace(&(chat.0, id.0)))
}

/// All of `("chat_message_part", chat, *)`: every part of a chat's messages.
pub fn chat_message_parts_of(chat: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("chat_message_part").subspace(&(chat.0,)))
}

/// All of `("chat_message", chat, *)`, oldest first.
pub fn chat_messages(chat: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("chat_message").subspace(&(chat.0,)))
}

/// `("chat_prompt_part", chat, n) = TextPart`
pub fn chat_prompt_part(chat: crate::Id, n: u32) -> Key<TextPart> {
    Key::new(pack(&("chat_prompt_part", chat.0, u64::from(n))))
}

/// All of `("chat_prompt_part", chat, *)`, in order.
pub fn chat_prompt_parts(chat: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("chat_prompt_part").subspace(&(chat.0,)))
}

/// `("purge", id) = Purge`
pub fn purge(id: crate::Id) -> Key<Purge> {
    Key::new(pack(&("purge", id.0)))
}

/// All of `("purge", *)`.
pub fn purges() -> KeyRange {
    KeyRange::subspace(&Subspace::from("purge"))
}

/// `("user_by_username", username) = UserRef`
pub fn user_by_username(username: &Username) -> Key<UserRef> {
    Key::new(pack(&(USER_BY_USERNAME, username.as_str())))
}

/// `("session", sha256(token)) = Session`
pub fn session(token_hash: &[u8]) -> Key<Session> {
    Key::new(pack(&(
        SESSION,
        gatehouse_storage::tuple::Bytes::from(token_hash),
    )))
}

/// `("session_by_user", user, session) = SessionRef`
pub fn session_by_user(user: crate::Id, session: crate::Id) -> Key<SessionRef> {
    Key::new(pack(&(SESSION_BY_USER, user.0, session.0)))
}

/// All of `("session_by_user", user, *)`.
pub fn sessions_of(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from(SESSION_BY_USER).subspace(&(user.0,)))
}

/// `("login_failures", kind, subject) = Failures`: `kind` is `account` (the
/// lower-cased login), `ip` or `device` (a device proof's ID).
pub fn login_failures(kind: &str, subject: &str) -> Key<Failures> {
    Key::new(pack(&("login_failures", kind, subject)))
}

/// Every sign-in failure counter.
pub fn all_login_failures() -> KeyRange {
    KeyRange::subspace(&Subspace::from("login_failures"))
}

/// `("idempotency", hash) = IdempotentWrite`: `hash` names the caller's
/// credential and Idempotency-Key together.
pub fn idempotent_write(hash: &[u8]) -> Key<IdempotentWrite> {
    Key::new(pack(&(
        "idempotency",
        gatehouse_storage::tuple::Bytes::from(hash),
    )))
}

/// Every idempotent write.
pub fn idempotent_writes() -> KeyRange {
    KeyRange::subspace(&Subspace::from("idempotency"))
}

/// `("audit", id) = AuditEvent`: snowflake IDs, so in time order.
pub fn audit_event(id: crate::Id) -> Key<AuditEvent> {
    Key::new(pack(&("audit", id.0)))
}

/// All audit events.
pub fn audit_events() -> KeyRange {
    KeyRange::subspace(&Subspace::from("audit"))
}

/// `("outbox", id) = OutboxMessage`
pub fn outbox_message(id: crate::Id) -> Key<OutboxMessage> {
    Key::new(pack(&("outbox", id.0)))
}

/// All outbox messages, oldest first.
pub fn outbox() -> KeyRange {
    KeyRange::subspace(&Subspace::from("outbox"))
}

/// `("email_token", sha256(token)) = EmailToken`
pub fn email_token(token_hash: &[u8]) -> Key<EmailToken> {
    Key::new(pack(&(
        "email_token",
        gatehouse_storage::tuple::Bytes::from(token_hash),
    )))
}

/// `("system", "bootstrap_admin") = BootstrapRecord`
pub fn bootstrap() -> Key<BootstrapRecord> {
    Key::new(pack(&(SYSTEM, "bootstrap_admin")))
}

/// `("system", "migration", name) = Setting`: a data migration that has run.
pub fn migration(name: &str) -> Key<Setting> {
    Key::new(pack(&(SYSTEM, "migration", name)))
}

/// All change records. The value type is [`ChangeRecord`](crate::codec::ChangeRecord).
pub fn changes() -> KeyRange {
    KeyRange::subspace(&Subspace::from(CHANGE))
}

/// `("cluster", "worker", id) = WorkerLease`
pub fn worker_lease(id: u16) -> Key<WorkerLease> {
    Key::new(pack(&(CLUSTER, "worker", id)))
}

/// All of `("cluster", "worker", *)`.
pub fn worker_leases() -> KeyRange {
    KeyRange::subspace(&Subspace::from(CLUSTER).subspace(&("worker",)))
}

/// `("cluster", "leader") = LeaderLease`
pub fn leader_lease() -> Key<LeaderLease> {
    Key::new(pack(&(CLUSTER, "leader")))
}

/// `("org", id) = Organization`
pub fn org(id: crate::Id) -> Key<Organization> {
    Key::new(pack(&("org", id.0)))
}

/// All organizations, in ID order.
pub fn orgs() -> KeyRange {
    KeyRange::subspace(&Subspace::from("org"))
}

/// `("org_by_slug", slug) = OrgRef`
pub fn org_by_slug(slug: &str) -> Key<OrgRef> {
    Key::new(pack(&("org_by_slug", slug)))
}

/// `("org_member", org, user) = Membership`
pub fn org_member(org: crate::Id, user: crate::Id) -> Key<Membership> {
    Key::new(pack(&("org_member", org.0, user.0)))
}

/// All members of `org`.
pub fn org_members(org: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("org_member").subspace(&(org.0,)))
}

/// `("user_org", user, org) = UserOrgRef`
pub fn user_org(user: crate::Id, org: crate::Id) -> Key<UserOrgRef> {
    Key::new(pack(&("user_org", user.0, org.0)))
}

/// All of `("user_org", user, *)`.
pub fn user_orgs(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("user_org").subspace(&(user.0,)))
}

/// `("org_invitation", org, id) = Invitation`
pub fn invitation(org: crate::Id, id: crate::Id) -> Key<Invitation> {
    Key::new(pack(&("org_invitation", org.0, id.0)))
}

/// All invitations of `org`, oldest first.
pub fn invitations(org: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("org_invitation").subspace(&(org.0,)))
}

/// `("invitation_by_token", sha256(token)) = InvitationRef`
pub fn invitation_by_token(token_hash: &[u8]) -> Key<InvitationRef> {
    Key::new(pack(&(
        "invitation_by_token",
        gatehouse_storage::tuple::Bytes::from(token_hash),
    )))
}

/// `("team", org, id) = Team`
pub fn team(org: crate::Id, id: crate::Id) -> Key<Team> {
    Key::new(pack(&("team", org.0, id.0)))
}

/// All teams of `org`.
pub fn teams(org: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("team").subspace(&(org.0,)))
}

/// `("team_by_id", id) = TeamRef`
pub fn team_by_id(id: crate::Id) -> Key<TeamRef> {
    Key::new(pack(&("team_by_id", id.0)))
}

/// `("team_member", team, user) = TeamMember`
pub fn team_member(team: crate::Id, user: crate::Id) -> Key<TeamMember> {
    Key::new(pack(&("team_member", team.0, user.0)))
}

/// All members of `team`.
pub fn team_members(team: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("team_member").subspace(&(team.0,)))
}

/// `("user_team", user, team) = UserTeamRef`
pub fn user_team(user: crate::Id, team: crate::Id) -> Key<UserTeamRef> {
    Key::new(pack(&("user_team", user.0, team.0)))
}

/// All of `("user_team", user, *)`.
pub fn user_teams(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("user_team").subspace(&(user.0,)))
}

/// `("credential", id) = Credential`
pub fn credential(id: crate::Id) -> Key<Credential> {
    Key::new(pack(&("credential", id.0)))
}

/// All credentials.
pub fn credentials() -> KeyRange {
    KeyRange::subspace(&Subspace::from("credential"))
}

/// `("credential_by_scope", kind, scope id, id) = IdRef`
pub fn credential_by_scope(scope: CredentialScope, id: crate::Id) -> Key<IdRef> {
    let (kind, owner) = scope.index();
    Key::new(pack(&("credential_by_scope", kind, owner, id.0)))
}

/// `("endpoint", id) = Endpoint`
pub fn endpoint(id: crate::Id) -> Key<Endpoint> {
    Key::new(pack(&("endpoint", id.0)))
}

/// All endpoints.
pub fn endpoints() -> KeyRange {
    KeyRange::subspace(&Subspace::from("endpoint"))
}

/// `("endpoint_by_name", name) = IdRef`
pub fn endpoint_by_name(name: &str) -> Key<IdRef> {
    Key::new(pack(&("endpoint_by_name", name)))
}

/// `("model", id) = Model`
pub fn model(id: crate::Id) -> Key<Model> {
    Key::new(pack(&("model", id.0)))
}

/// All models.
pub fn models() -> KeyRange {
    KeyRange::subspace(&Subspace::from("model"))
}

/// `("model_by_name", name) = IdRef`
pub fn model_by_name(name: &str) -> Key<IdRef> {
    Key::new(pack(&("model_by_name", name)))
}

/// `("alias", id) = Alias`
pub fn alias(id: crate::Id) -> Key<Alias> {
    Key::new(pack(&("alias", id.0)))
}

/// All aliases.
pub fn aliases() -> KeyRange {
    KeyRange::subspace(&Subspace::from("alias"))
}

/// `("alias_global", alias) = IdRef`
pub fn alias_global(alias: &str) -> Key<IdRef> {
    Key::new(pack(&("alias_global", alias)))
}

/// All of `("alias_user", user, *)`: one user's own aliases.
pub fn aliases_of(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("alias_user").subspace(&(user.0,)))
}

/// `("alias_user", user, alias) = IdRef`
pub fn alias_user(user: crate::Id, alias: &str) -> Key<IdRef> {
    Key::new(pack(&("alias_user", user.0, alias)))
}

/// `("subscription", id) = Subscription`
pub fn subscription(id: crate::Id) -> Key<Subscription> {
    Key::new(pack(&("subscription", id.0)))
}

/// All subscriptions.
pub fn subscriptions() -> KeyRange {
    KeyRange::subspace(&Subspace::from("subscription"))
}

/// `("subscription_by_user", user, model) = IdRef`
pub fn subscription_by_user(user: crate::Id, model: crate::Id) -> Key<IdRef> {
    Key::new(pack(&("subscription_by_user", user.0, model.0)))
}

/// All of `("subscription_by_user", user, *)`.
pub fn subscriptions_of(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("subscription_by_user").subspace(&(user.0,)))
}

/// `("api_key", id) = ApiKey`
pub fn api_key(id: crate::Id) -> Key<ApiKey> {
    Key::new(pack(&("api_key", id.0)))
}

/// All API keys.
pub fn api_keys() -> KeyRange {
    KeyRange::subspace(&Subspace::from("api_key"))
}

/// `("api_key_by_hash", sha256(key)) = IdRef`
pub fn api_key_by_hash(hash: &[u8]) -> Key<IdRef> {
    Key::new(pack(&(
        "api_key_by_hash",
        gatehouse_storage::tuple::Bytes::from(hash),
    )))
}

/// `("api_key_by_owner", user, id) = IdRef`
pub fn api_key_of(user: crate::Id, id: crate::Id) -> Key<IdRef> {
    Key::new(pack(&("api_key_by_owner", user.0, id.0)))
}

/// All of `("api_key_by_owner", user, *)`.
pub fn api_keys_of(user: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("api_key_by_owner").subspace(&(user.0,)))
}

/// `("api_key_last_used", id) = LastUsed`
pub fn api_key_last_used(id: crate::Id) -> Key<LastUsed> {
    Key::new(pack(&("api_key_last_used", id.0)))
}

/// `("vault", org, id) = Vault`
pub fn vault(org: crate::Id, id: crate::Id) -> Key<Vault> {
    Key::new(pack(&("vault", org.0, id.0)))
}

/// All vaults of `org`.
pub fn vaults(org: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("vault").subspace(&(org.0,)))
}

/// `("vault_by_id", id) = VaultRef`
pub fn vault_by_id(id: crate::Id) -> Key<VaultRef> {
    Key::new(pack(&("vault_by_id", id.0)))
}

/// `("vault_grant", vault, subject kind, subject) = VaultGrant`
pub fn vault_grant(vault: crate::Id, kind: SubjectKind, subject: crate::Id) -> Key<VaultGrant> {
    Key::new(pack(&("vault_grant", vault.0, kind.as_str(), subject.0)))
}

/// All grants of `vault`.
pub fn vault_grants(vault: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("vault_grant").subspace(&(vault.0,)))
}

/// `("vault_sync", vault) = PendingSync`
pub fn vault_sync(vault: crate::Id) -> Key<PendingSync> {
    Key::new(pack(&("vault_sync", vault.0)))
}

/// Every vault waiting to be synced.
pub fn vault_syncs() -> KeyRange {
    KeyRange::subspace(&Subspace::from("vault_sync"))
}

/// `("service_client", org, id) = ServiceClient`
pub fn service_client(org: crate::Id, id: crate::Id) -> Key<ServiceClient> {
    Key::new(pack(&("service_client", org.0, id.0)))
}

/// All service clients of `org`.
pub fn service_clients(org: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("service_client").subspace(&(org.0,)))
}

/// `("client_by_id", id) = ClientRef`
pub fn client_by_id(id: crate::Id) -> Key<ClientRef> {
    Key::new(pack(&("client_by_id", id.0)))
}

/// `("certificate", client, kid) = Certificate`
pub fn certificate(client: crate::Id, kid: &str) -> Key<Certificate> {
    Key::new(pack(&("certificate", client.0, kid)))
}

/// All certificates of `client`.
pub fn certificates(client: crate::Id) -> KeyRange {
    KeyRange::subspace(&Subspace::from("certificate").subspace(&(client.0,)))
}

/// `("certificate_by_kid", kid) = CertificateRef`
pub fn certificate_by_kid(kid: &str) -> Key<CertificateRef> {
    Key::new(pack(&("certificate_by_kid", kid)))
}

/// `("signing_key", kid) = SigningKey`
pub fn signing_key(kid: &str) -> Key<SigningKey> {
    Key::new(pack(&("signing_key", kid)))
}

/// All of Gatehouse's signing keys.
pub fn signing_keys() -> KeyRange {
    KeyRange::subspace(&Subspace::from("signing_key"))
}

/// `("assertion_jti", client, jti) = SpentAssertion`
pub fn spent_assertion(client: crate::Id, jti: &str) -> Key<SpentAssertion> {
    Key::new(pack(&("assertion_jti", client.0, jti)))
}

/// Every spent assertion ID.
pub fn spent_assertions() -> KeyRange {
    KeyRange::subspace(&Subspace::from("assertion_jti"))
}

/// `("refresh_token", sha256(token)) = RefreshToken`
pub fn refresh_token(hash: &[u8]) -> Key<RefreshToken> {
    Key::new(pack(&(
        "refresh_token",
        gatehouse_storage::tuple::Bytes::from(hash),
    )))
}

/// `("token_family", id) = TokenFamily`
pub fn token_family(id: crate::Id) -> Key<TokenFamily> {
    Key::new(pack(&("token_family", id.0)))
}

/// `("spend", period, holder kind, holder id)`: an `i64` counter of micro-dollars.
pub fn spend(period: &str, holder_kind: &str, holder: crate::Id) -> Vec<u8> {
    pack(&(SPEND, period, holder_kind, holder.0))
}

/// All of `("spend", period, *)`.
pub fn spend_in(period: &str) -> KeyRange {
    KeyRange::subspace(&Subspace::from(SPEND).subspace(&(period,)))
}

/// `("rate", minute, holder kind, holder id, "requests" | "tokens")`: an `i64`
/// counter of one minute.
pub fn rate(minute: i64, holder_kind: &str, holder: crate::Id, field: &str) -> Vec<u8> {
    pack(&(RATE, minute, holder_kind, holder.0, field))
}

/// Every rate counter of a minute before `minute`.
pub fn rates_before(minute: i64) -> KeyRange {
    KeyRange::new(pack(&(RATE,)), pack(&(RATE, minute)))
}

/// `("removal", id) = Removal`: an organization or account being removed.
pub fn removal(id: crate::Id) -> Key<crate::model::tenancy::Removal> {
    Key::new(pack(&("removal", id.0)))
}

/// Every removal in progress.
pub fn removals() -> KeyRange {
    KeyRange::subspace(&Subspace::from("removal"))
}

/// Every client certificate, of every client.
pub fn all_certificates() -> KeyRange {
    KeyRange::subspace(&Subspace::from("certificate"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        assert_eq!(
            installation().as_bytes(),
            b"\x02system\x00\x02installation\x00"
        );
        let name = SettingName::parse("ui.theme").unwrap();
        assert_eq!(
            setting(&name).as_bytes(),
            b"\x02setting\x00\x02ui.theme\x00"
        );
        assert_eq!(
            settings(),
            KeyRange::new(
                b"\x02setting\x00\x00".to_vec(),
                b"\x02setting\x00\xff".to_vec()
            )
        );
        assert_eq!(change_prefix(), b"\x02change\x00\x33");
        assert_eq!(user(crate::Id(258)).as_bytes(), b"\x02user\x00\x16\x01\x02");
        assert_eq!(
            user_by_email("a@b.c").as_bytes(),
            b"\x02user_by_email\x00\x02a@b.c\x00"
        );
        assert_eq!(
            bootstrap().as_bytes(),
            b"\x02system\x00\x02bootstrap_admin\x00"
        );
        assert_eq!(
            change_count("trimmed"),
            b"\x02change_count\x00\x02trimmed\x00"
        );
        // A completed change key decodes as a tuple with a versionstamp.
        let mut key = change_prefix();
        key.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 1]);
        let (name, stamp): (String, gatehouse_storage::tuple::Versionstamp) =
            gatehouse_storage::tuple::unpack(&key).unwrap();
        assert_eq!(name, "change");
        assert_eq!(stamp.user_version(), 1);
        assert_eq!(
            worker_lease(7).as_bytes(),
            b"\x02cluster\x00\x02worker\x00\x15\x07"
        );
        assert_eq!(leader_lease().as_bytes(), b"\x02cluster\x00\x02leader\x00");
        assert_eq!(
            sso_identity("corp", "u1").as_bytes(),
            b"\x02sso_identity\x00\x02corp\x00\x02u1\x00"
        );
        assert_eq!(
            user_sso(crate::Id(258), "corp", "u1").as_bytes(),
            b"\x02user_sso\x00\x16\x01\x02\x02corp\x00\x02u1\x00"
        );
        assert_eq!(sso_flow(&[7]).as_bytes(), b"\x02sso_flow\x00\x01\x07\x00");
        assert_eq!(
            passkey(crate::Id(1), crate::Id(2)).as_bytes(),
            b"\x02passkey\x00\x15\x01\x15\x02"
        );
        assert!(!passkeys_of(crate::Id(1)).contains(passkey_credential(&[1]).as_bytes()));
        assert_eq!(
            passkey_credential(&[7]).as_bytes(),
            b"\x02passkey_credential\x00\x01\x07\x00"
        );
        assert_eq!(totp(crate::Id(1)).as_bytes(), b"\x02totp\x00\x15\x01");
        assert_eq!(
            chat_message(crate::Id(1), crate::Id(2)).as_bytes(),
            b"\x02chat_message\x00\x15\x01\x15\x02"
        );
        assert!(!chats(crate::Id(1)).contains(chat_message(crate::Id(1), crate::Id(2)).as_bytes()));
        let part = chat_message_part(crate::Id(1), crate::Id(2), 3);
        assert_eq!(
            part.as_bytes(),
            b"\x02chat_message_part\x00\x15\x01\x15\x02\x15\x03"
        );
        assert!(chat_message_parts(crate::Id(1), crate::Id(2)).contains(part.as_bytes()));
        assert!(!chat_message_parts(crate::Id(1), crate::Id(3)).contains(part.as_bytes()));
        assert!(chat_message_parts_of(crate::Id(1)).contains(part.as_bytes()));
        assert!(!chat_messages(crate::Id(1)).contains(part.as_bytes()));
        let prompt = chat_prompt_part(crate::Id(1), 2);
        assert_eq!(
            prompt.as_bytes(),
            b"\x02chat_prompt_part\x00\x15\x01\x15\x02"
        );
        assert!(chat_prompt_parts(crate::Id(1)).contains(prompt.as_bytes()));
        assert!(!chat_prompt_parts(crate::Id(2)).contains(prompt.as_bytes()));
        assert_eq!(
            project(crate::Id(1), crate::Id(2)).as_bytes(),
            b"\x02project\x00\x15\x01\x15\x02"
        );
        assert_eq!(purge(crate::Id(3)).as_bytes(), b"\x02purge\x00\x15\x03");
        assert_eq!(
            auth_challenge(&[7]).as_bytes(),
            b"\x02auth_challenge\x00\x01\x07\x00"
        );
        assert_eq!(
            idempotent_write(&[7, 0]).as_bytes(),
            b"\x02idempotency\x00\x01\x07\x00\xff\x00"
        );
        let (a, b) = (crate::Id(1), crate::Id(2));
        assert_eq!(org(a).as_bytes(), b"\x02org\x00\x15\x01");
        assert_eq!(
            org_member(a, b).as_bytes(),
            b"\x02org_member\x00\x15\x01\x15\x02"
        );
        assert_eq!(
            user_team(b, a).as_bytes(),
            b"\x02user_team\x00\x15\x02\x15\x01"
        );
        // ("org", *) does not take in ("org_member", ...) or ("org_invitation", ...).
        assert!(!orgs().contains(org_member(a, b).as_bytes()));
        assert_eq!(
            credential_by_scope(CredentialScope::Organization { org_id: a }, b).as_bytes(),
            b"\x02credential_by_scope\x00\x02org\x00\x15\x01\x15\x02"
        );
        assert!(!models().contains(model_by_name("m").as_bytes()));
        assert!(!api_keys().contains(api_key_last_used(a).as_bytes()));
        assert_eq!(api_key(b).as_bytes(), b"\x02api_key\x00\x15\x02");
        assert_eq!(removal(b).as_bytes(), b"\x02removal\x00\x15\x02");
        assert!(removals().contains(removal(a).as_bytes()));
        assert_eq!(
            spend("d2026-11-28", "key", b),
            b"\x02spend\x00\x02d2026-11-28\x00\x02key\x00\x15\x02".to_vec()
        );
        assert!(spend_in("d2026-11-28").contains(&spend("d2026-11-28", "user", a)));
        assert_eq!(
            rate(-1, "key", a, "tokens"),
            b"\x02rate\x00\x13\xfe\x02key\x00\x15\x01\x02tokens\x00".to_vec()
        );
        assert!(rates_before(10).contains(&rate(9, "key", a, "requests")));
        assert!(!rates_before(10).contains(&rate(10, "key", a, "requests")));
        assert_eq!(
            certificate(a, "k1").as_bytes(),
            b"\x02certificate\x00\x15\x01\x02k1\x00"
        );
        assert!(all_certificates().contains(certificate(b, "k").as_bytes()));
        assert!(!all_certificates().contains(certificate_by_kid("k").as_bytes()));
        // Integers, as entity IDs will be stored: type code 0x15 + one byte.
        assert_eq!(pack(&("user", 42u64)), b"\x02user\x00\x15\x2a");
        // Strings with NUL bytes are escaped so tuples still sort correctly.
        assert_eq!(pack(&("a\0b",)), b"\x02a\x00\xffb\x00");
    }
}
