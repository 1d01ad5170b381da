//! The closed sets of names the API takes and gives (roles, statuses, kinds),
//! as OpenAPI enums, so that generated clients and fuzzers know every value.
//!
//! Core's enums are the truth and name no OpenAPI type; each enum here
//! mirrors one. [`mirror!`] writes a conversion that matches on every core
//! variant, so a variant added in core fails to compile here until it is
//! listed, and a test compares the wire names of both sides.

use serde::Serialize;
use utoipa::ToSchema;

macro_rules! mirror {
    ($(#[$meta:meta])* $name:ident = $core:path { $($variant:ident),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Serialize, ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($variant),+
        }

        impl From<$core> for $name {
            fn from(value: $core) -> Self {
                use $core as Core;
                match value {
                    $(Core::$variant => $name::$variant),+
                }
            }
        }

        impl $name {
            /// Each variant's wire name, here and in core.
            #[cfg(test)]
            pub(crate) fn wire_names() -> Vec<(serde_json::Value, serde_json::Value)> {
                use $core as Core;
                vec![$((
                    serde_json::to_value($name::$variant).unwrap(),
                    serde_json::to_value(Core::$variant).unwrap(),
                )),+]
            }
        }
    };
}

mirror!(
    /// A platform role (SPEC §2); roles add up.
    Role = gatehouse_core::model::accounts::Role { User, Admin, AdminReadonly, RequestViewer, Provider }
);
mirror!(
    /// Whether an account may sign in.
    UserStatus = gatehouse_core::model::accounts::UserStatus { Active, Disabled }
);
mirror!(
    /// What a credential's secret is for.
    CredentialKind = gatehouse_core::model::catalog::CredentialKind { Openai, Anthropic, OauthAccount, Generic }
);
mirror!(
    /// The API an endpoint speaks.
    ApiFlavour = gatehouse_core::model::catalog::ApiFlavour { Openai, Anthropic }
);
mirror!(
    /// Where a subscription to a model stands.
    SubscriptionStatus = gatehouse_core::model::catalog::SubscriptionStatus { Pending, Active, Denied, Suspended }
);
mirror!(
    /// The period a budget counts over.
    BudgetPeriod = gatehouse_core::model::keys::BudgetPeriod { Day, Month, Total }
);
mirror!(
    /// What an API key may be used for.
    KeyScope = gatehouse_core::model::keys::KeyScope { Gateway, Management }
);
mirror!(
    /// A browser (cookie) or command-line (bearer) session.
    SessionKind = gatehouse_core::model::sessions::SessionKind { Web, Cli }
);
mirror!(
    /// Whether an organization may act.
    OrgStatus = gatehouse_core::model::tenancy::OrgStatus { Active, Suspended }
);
mirror!(
    /// A member's role in an organization.
    OrgRole = gatehouse_core::model::tenancy::OrgRole { Member, Admin, Owner }
);
mirror!(
    /// Where an invitation stands.
    InvitationStatus = gatehouse_core::model::tenancy::InvitationStatus { Pending, Accepted, Declined, Revoked, Expired }
);
mirror!(
    /// A right an organization delegates to a team's members.
    TeamPermission = gatehouse_core::model::tenancy::TeamPermission { InviteMembers, ManageTeams, ManageKeys, ManageVaults }
);
mirror!(
    /// A member's role in a team.
    TeamRole = gatehouse_core::model::tenancy::TeamRole { Member, Manager }
);
mirror!(
    /// Where a vault's last sync to the policy engine stands.
    SyncStatus = gatehouse_core::model::vaults::SyncStatus { Pending, Synced, Failed, NotConfigured }
);
mirror!(
    /// A role in a vault.
    VaultRole = gatehouse_core::model::vaults::VaultRole { Reader, Writer, Manager, Admin }
);
mirror!(
    /// Who a vault grant is for.
    SubjectKind = gatehouse_core::model::vaults::SubjectKind { User, Team, Client }
);
mirror!(
    /// An endpoint's health, from calls and probes.
    HealthStatus = gatehouse_core::catalog::health::HealthStatus { Unknown, Healthy, Degraded, Unhealthy }
);
mirror!(
    /// How usage statistics are grouped (`organization`: everyone's only).
    GroupBy = gatehouse_core::usage::GroupBy { Day, Model, Key, User, Organization }
);

/// A model's name as the gateway matches it: 1 to 200 characters, no spaces.
#[derive(ToSchema)]
#[schema(pattern = "^[^\\s\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
pub struct ModelName(#[allow(dead_code)] String);

/// A credential's secret: a JSON object with at least one member.
pub(crate) fn secret_object() -> utoipa::openapi::Object {
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(utoipa::openapi::Type::Object)
        .min_properties(Some(1))
        .build()
}

/// A replacement secret, or `null` for none.
pub(crate) fn optional_secret_object() -> utoipa::openapi::Object {
    use utoipa::openapi::Type;
    use utoipa::openapi::schema::SchemaType;
    utoipa::openapi::ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Object, Type::Null]))
        .min_properties(Some(1))
        .build()
}

/// Whose a credential created at `/api/v1/credentials` is: the platform's
/// (platform admins) or a provider account's own. An organization's are
/// created under its path.
#[derive(ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum TopLevelScope {
    Platform,
    User {
        #[schema(pattern = "^[0-9]{1,19}$")]
        user_id: String,
    },
}

/// Whose a credential is.
#[derive(ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
pub enum CredentialScope {
    Platform,
    Organization { org_id: String },
    User { user_id: String },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_mirror_names_its_values_as_core_does() {
        let all = [
            Role::wire_names(),
            UserStatus::wire_names(),
            CredentialKind::wire_names(),
            ApiFlavour::wire_names(),
            SubscriptionStatus::wire_names(),
            BudgetPeriod::wire_names(),
            KeyScope::wire_names(),
            SessionKind::wire_names(),
            OrgStatus::wire_names(),
            OrgRole::wire_names(),
            InvitationStatus::wire_names(),
            TeamPermission::wire_names(),
            TeamRole::wire_names(),
            SyncStatus::wire_names(),
            VaultRole::wire_names(),
            SubjectKind::wire_names(),
            HealthStatus::wire_names(),
            GroupBy::wire_names(),
        ];
        for (ours, core) in all.into_iter().flatten() {
            assert_eq!(ours, core);
        }
    }
}
