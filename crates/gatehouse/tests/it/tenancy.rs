//! Organizations, invitations and teams through the real server: the whole
//! journey, escalation and isolation, and access that ends on the next request.

use gatehouse_core::model::sessions::ClientInfo;
use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::PASSWORD;
use crate::matrix::{World, rows};

impl World {
    /// Sends a request as the holder of `token` (or nobody); returns status and body.
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let auth = token.map(|t| format!("Bearer {t}"));
        let header = auth.as_deref().map(|a| ("authorization", a));
        self.app.call(method, path, header, body).await
    }

    async fn as_actor(
        &self,
        actor: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        self.call(method, path, Some(self.token(actor)), body).await
    }

    /// The invitation token in the newest email to `to`.
    async fn mailed_token(&self, to: &str) -> String {
        let pending = self.app.services.outbox.pending().await.unwrap();
        let message = pending
            .iter()
            .rev()
            .find(|m| m.to.eq_ignore_ascii_case(to))
            .expect("an email to the invitee");
        message
            .body
            .lines()
            .find_map(|l| l.strip_prefix("token: "))
            .expect("a token in the email")
            .to_string()
    }
}

#[tokio::test]
async fn an_organization_from_creation_to_deletion() {
    let w = World::new().await;
    // Registration brings a personal organization.
    let (status, _) = w
        .call(
            Method::POST,
            "/api/v1/auth/register",
            None,
            Some(json!({"email": "dana@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 202);
    let (_, login) = w
        .call(
            Method::POST,
            "/api/v1/auth/login",
            None,
            Some(json!({"login": "dana@example.com", "password": PASSWORD})),
        )
        .await;
    let dana = login["token"].as_str().unwrap().to_string();
    let (status, orgs) = w
        .call(Method::GET, "/api/v1/organizations", Some(&dana), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(orgs["items"].as_array().unwrap().len(), 1);
    assert_eq!(orgs["items"][0]["personal"], true);
    assert_eq!(orgs["items"][0]["role"], "owner");

    // The owner creates an organization and invites Dana as admin; the
    // invitation goes out by email.
    let (status, org) = w
        .as_actor(
            "org_owner",
            Method::POST,
            "/api/v1/organizations",
            Some(json!({"name": "Lab"})),
        )
        .await;
    assert_eq!(status, 201, "{org}");
    let org = org["id"].as_str().unwrap().to_string();
    let base = format!("/api/v1/organizations/{org}");
    let (status, invitation) = w
        .as_actor(
            "org_owner",
            Method::POST,
            &format!("{base}/invitations"),
            Some(json!({"email": "Dana@Example.com", "role": "admin"})),
        )
        .await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["status"], "pending");
    assert!(invitation.get("token").is_none(), "tokens go only by email");
    let token = w.mailed_token("Dana@Example.com").await;
    // Nobody else can use it; Dana can, once.
    let (status, _) = w
        .as_actor(
            "user",
            Method::POST,
            "/api/v1/invitations/accept",
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, joined) = w
        .call(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(&dana),
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["role"], "admin");
    let (status, _) = w
        .call(
            Method::POST,
            "/api/v1/invitations/accept",
            Some(&dana),
            Some(json!({"token": token})),
        )
        .await;
    assert_eq!(status, 400);

    // Dana, as admin, builds a team with a model allow-list and a manager.
    let (status, team) = w
        .call(
            Method::POST,
            &format!("{base}/teams"),
            Some(&dana),
            Some(json!({
                "name": "Research",
                "permissions": ["invite_members"],
                "allowed_models": ["gpt-4o", "claude-sonnet"],
            })),
        )
        .await;
    assert_eq!(status, 201, "{team}");
    assert_eq!(team["allowed_models"], json!(["claude-sonnet", "gpt-4o"]));
    let team = team["id"].as_str().unwrap().to_string();
    let (_, members) = w
        .call(Method::GET, &format!("{base}/members"), Some(&dana), None)
        .await;
    let roles: Vec<_> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(roles.len(), 2);
    assert!(roles.contains(&"owner".to_string()) && roles.contains(&"admin".to_string()));
    let dana_id = w
        .app
        .services
        .accounts
        .authenticate_token(&dana)
        .await
        .unwrap()
        .0
        .id;
    let (status, body) = w
        .call(
            Method::PUT,
            &format!("{base}/teams/{team}/members/{dana_id}"),
            Some(&dana),
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Ownership moves to Dana; the former owner can then leave.
    let (status, _) = w
        .as_actor(
            "org_owner",
            Method::POST,
            &format!("{base}/transfer"),
            Some(json!({"user_id": dana_id.to_string()})),
        )
        .await;
    assert_eq!(status, 204);
    let owner_id = w.user("org_owner").id;
    let (status, _) = w
        .as_actor(
            "org_owner",
            Method::DELETE,
            &format!("{base}/members/{owner_id}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = w.as_actor("org_owner", Method::GET, &base, None).await;
    assert_eq!(status, 404, "a former member sees nothing");
    // Dana is now the last owner: she can neither leave nor be demoted.
    let (status, body) = w
        .call(
            Method::DELETE,
            &format!("{base}/members/{dana_id}"),
            Some(&dana),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");

    // A platform admin suspends it: readable, frozen; then resumes it.
    let (status, _) = w
        .as_actor("admin", Method::POST, &format!("{base}/suspend"), None)
        .await;
    assert_eq!(status, 200);
    let (status, body) = w.call(Method::GET, &base, Some(&dana), None).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("suspended")));
    let (status, _) = w
        .call(
            Method::PATCH,
            &base,
            Some(&dana),
            Some(json!({"name": "Frozen"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _) = w
        .as_actor("admin", Method::POST, &format!("{base}/resume"), None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = w.call(Method::DELETE, &base, Some(&dana), None).await;
    assert_eq!(status, 204);
    let (status, _) = w.call(Method::GET, &base, Some(&dana), None).await;
    assert_eq!(status, 404);

    // Every write above is in the audit log, with its organization.
    let path = format!("/api/v1/audit-events?limit=200&organization_id={org}");
    let (status, events) = w.as_actor("admin", Method::GET, &path, None).await;
    assert_eq!(status, 200);
    let events = events["items"].as_array().unwrap();
    assert!(
        events
            .iter()
            .all(|e| e["organization_id"].as_str() == Some(org.as_str()))
    );
    let in_org: Vec<&str> = events
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    // Filters combine: only Dana's invitation acceptance.
    let path = format!(
        "/api/v1/audit-events?organization_id={org}&action=orgs.invitations.&actor={dana_id}"
    );
    let (_, mine) = w.as_actor("admin", Method::GET, &path, None).await;
    let mine: Vec<&str> = mine["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(mine, ["orgs.invitations.accept"]);
    for action in [
        "orgs.create",
        "orgs.invitations.create",
        "orgs.invitations.accept",
        "teams.create",
        "teams.members.put",
        "orgs.transfer",
        "orgs.members.leave",
        "orgs.suspend",
        "orgs.resume",
        "orgs.delete",
    ] {
        assert!(in_org.contains(&action), "{action} missing from {in_org:?}");
    }
    w.app.stop().await;
}

#[tokio::test]
async fn nobody_raises_their_own_rights() {
    let w = World::new().await;
    let f = w.fixture(false).await;
    let base = format!("/api/v1/organizations/{}", f.org);
    let me = |actor: &str| w.user(actor).id;
    // A user cannot give themself a platform role.
    let user = me("user");
    let (status, _) = w
        .as_actor(
            "user",
            Method::PATCH,
            &format!("/api/v1/users/{user}"),
            Some(json!({"roles": ["user", "admin"]})),
        )
        .await;
    assert_eq!(status, 403);
    // Nor can a read-only admin, to themself or anyone.
    let ro = me("admin_readonly");
    for target in [ro, user] {
        let (status, _) = w
            .as_actor(
                "admin_readonly",
                Method::PATCH,
                &format!("/api/v1/users/{target}"),
                Some(json!({"roles": ["user", "admin"]})),
            )
            .await;
        assert_eq!(status, 403);
    }
    // An org member cannot make themself admin.
    let member = me("org_member");
    let (status, _) = w
        .as_actor(
            "org_member",
            Method::PATCH,
            &format!("{base}/members/{member}"),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 403);
    // An org admin cannot make themself owner, demote or remove the owner, or
    // invite an owner.
    let admin = me("org_admin");
    let owner = me("org_owner");
    let attempts = [
        (
            Method::PATCH,
            format!("{base}/members/{admin}"),
            Some(json!({"role": "owner"})),
        ),
        (
            Method::PATCH,
            format!("{base}/members/{owner}"),
            Some(json!({"role": "member"})),
        ),
        (Method::DELETE, format!("{base}/members/{owner}"), None),
        (
            Method::POST,
            format!("{base}/transfer"),
            Some(json!({"user_id": admin.to_string()})),
        ),
        (
            Method::POST,
            format!("{base}/invitations"),
            Some(json!({"email": "boss@example.com", "role": "owner"})),
        ),
    ];
    for (method, path, body) in attempts {
        let (status, response) = w.as_actor("org_admin", method.clone(), &path, body).await;
        assert_eq!(status, 403, "{method} {path}: {response}");
    }
    let (_, members) = w
        .as_actor("org_owner", Method::GET, &format!("{base}/members"), None)
        .await;
    let owners: Vec<_> = members["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "owner")
        .map(|m| m["user_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(owners, [owner.to_string()]);
    // A team member cannot make themself the team's manager.
    let (status, _) = w
        .as_actor(
            "org_member",
            Method::PUT,
            &format!("{base}/teams/{}/members/{member}", f.team),
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(status, 403);
    w.app.stop().await;
}

#[tokio::test]
async fn another_organization_sees_nothing_and_changes_nothing() {
    let w = World::new().await;
    let rows = rows();
    // Every route inside an organization, straight from the router.
    let scoped: Vec<_> = gatehouse_api::rest::routes()
        .into_iter()
        .filter(|(_, path)| path.contains("{org}"))
        .collect();
    assert!(scoped.len() >= 20, "{scoped:?}");
    for (method, path) in scoped {
        let row = rows
            .iter()
            .find(|r| {
                r.method == method
                    && r.path
                        .replace("{invitation}", "{id}")
                        .replace("{org_credential}", "{id}")
                        == path
            })
            .unwrap_or_else(|| panic!("no matrix row for {method} {path}"));
        let f = w.fixture(false).await;
        let before = w.app.services.changes.head().await.unwrap();
        // `non_member` owns an organization of its own, and is in no way part of this one.
        let outsider = crate::matrix::ACTORS
            .iter()
            .position(|a| *a == "non_member")
            .unwrap();
        let status = w.send(row, outsider, &f).await;
        assert_eq!(status, 404, "{method} {path}");
        let after = w.app.services.changes.head().await.unwrap();
        assert_eq!(before, after, "{method} {path} wrote something");
    }
    w.app.stop().await;
}

#[tokio::test]
async fn access_ends_on_the_next_request() {
    let w = World::new().await;
    let c = ClientInfo::default();
    // A second platform admin, signed in both with a JWT and with a session.
    let (status, created) = w
        .as_actor(
            "admin",
            Method::POST,
            "/api/v1/users",
            Some(json!({"email": "second@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 201);
    let second = created["user"]["id"].as_str().unwrap().to_string();
    let (status, _) = w
        .as_actor(
            "admin",
            Method::PATCH,
            &format!("/api/v1/users/{second}"),
            Some(json!({"roles": ["user", "admin"]})),
        )
        .await;
    assert_eq!(status, 200);
    let mut tokens = Vec::new();
    for mode in ["token", "cli"] {
        let (_, body) = w
            .call(
                Method::POST,
                "/api/v1/auth/login",
                None,
                Some(json!({"login": "second@example.com", "password": PASSWORD, "mode": mode})),
            )
            .await;
        tokens.push(body["token"].as_str().unwrap().to_string());
    }
    for token in &tokens {
        let (status, _) = w
            .call(Method::GET, "/api/v1/users", Some(token), None)
            .await;
        assert_eq!(status, 200);
    }
    let (status, _) = w
        .as_actor(
            "admin",
            Method::PATCH,
            &format!("/api/v1/users/{second}"),
            Some(json!({"roles": ["user"]})),
        )
        .await;
    assert_eq!(status, 200);
    for token in &tokens {
        let (status, _) = w
            .call(Method::GET, "/api/v1/users", Some(token), None)
            .await;
        assert_eq!(status, 403, "the role is gone for JWTs and sessions alike");
    }

    // A team manager who invites on the team's behalf loses that with the team.
    let f = w.fixture(false).await;
    let base = format!("/api/v1/organizations/{}", f.org);
    let owner = w.user("org_owner");
    w.app
        .services
        .tenancy
        .update_team(
            owner,
            f.org,
            f.team,
            gatehouse_core::tenancy::TeamSpec {
                permissions: Some(
                    [gatehouse_core::model::tenancy::TeamPermission::InviteMembers].into(),
                ),
                ..Default::default()
            },
            &c,
        )
        .await
        .unwrap();
    let member = w.user("org_member").id;
    let (status, _) = w
        .as_actor(
            "org_owner",
            Method::PUT,
            &format!("{base}/teams/{}/members/{member}", f.team),
            Some(json!({"role": "manager"})),
        )
        .await;
    assert_eq!(status, 200);
    let invite = |n: u32| Some(json!({"email": format!("guest-{n}@example.com")}));
    let (status, _) = w
        .as_actor(
            "org_member",
            Method::POST,
            &format!("{base}/invitations"),
            invite(1),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _) = w
        .as_actor(
            "org_owner",
            Method::DELETE,
            &format!("{base}/teams/{}/members/{member}", f.team),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = w
        .as_actor(
            "org_member",
            Method::POST,
            &format!("{base}/invitations"),
            invite(2),
        )
        .await;
    assert_eq!(status, 403);

    // Removed from the organization, the member sees nothing of it.
    let (status, _) = w
        .as_actor(
            "org_owner",
            Method::DELETE,
            &format!("{base}/members/{member}"),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _) = w.as_actor("org_member", Method::GET, &base, None).await;
    assert_eq!(status, 404);
    w.app.stop().await;
}

/// Deleting an organization or an account answers at once and hides it at
/// once; what hangs off it goes in the background, visible to platform
/// admins until it has.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deletions_answer_at_once_and_finish_in_the_background() {
    let w = World::new().await;
    let f = w.fixture(true).await;
    let s = &w.app.services;
    let member = w.user("org_member").id;
    // The member has a team in the organization and a chat in its project.
    assert!(
        !s.tenancy
            .memberships(member)
            .await
            .unwrap()
            .organizations
            .is_empty()
    );
    let path = format!("/api/v1/organizations/{}", f.org);
    let (status, body) = w.as_actor("org_owner", Method::DELETE, &path, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = w.as_actor("org_owner", Method::GET, &path, None).await;
    assert_eq!(status, 404, "gone from view when the DELETE answers");
    let m = s.tenancy.memberships(member).await.unwrap();
    assert!(m.organizations.iter().all(|(o, _)| o.id != f.org));
    assert!(m.teams.iter().all(|(t, _)| t.org_id != f.org));
    // An account goes the same way, with the keys it held.
    let victim = f.victim.unwrap();
    let victim_user = s.accounts.get_user(victim).await.unwrap();
    let (key, _) = s
        .keys
        .create(
            &victim_user,
            gatehouse_core::keys::NewKey::default(),
            None,
            &Default::default(),
        )
        .await
        .unwrap();
    let path = format!("/api/v1/users/{victim}");
    let (status, body) = w.as_actor("admin", Method::DELETE, &path, None).await;
    assert_eq!(status, 204, "{body}");
    let (status, _) = w.as_actor("admin", Method::GET, &path, None).await;
    assert_eq!(status, 404);
    // The background finishes both; until then the list says how far.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (status, removals) = w
            .as_actor("admin", Method::GET, "/api/v1/system/removals", None)
            .await;
        assert_eq!(status, 200, "{removals}");
        if removals["items"].as_array().unwrap().is_empty() {
            break;
        }
        let item = &removals["items"][0];
        assert!(
            item["kind"] == "organization" || item["kind"] == "user",
            "{item}"
        );
        assert!(
            std::time::Instant::now() < deadline,
            "still removing: {removals}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (key_id, key_hash) = (key.id, &key.hash);
    let left = s
        .store
        .run(|tx| async move {
            let mut left = 0;
            for range in [
                gatehouse_core::keyspace::org_members(f.org),
                gatehouse_core::keyspace::teams(f.org),
                gatehouse_core::keyspace::team_members(f.team),
                gatehouse_core::keyspace::vaults(f.org),
                gatehouse_core::keyspace::projects(f.org),
                gatehouse_core::keyspace::invitations(f.org),
                gatehouse_core::keyspace::user_orgs(victim),
                gatehouse_core::keyspace::api_keys_of(victim),
                gatehouse_core::keyspace::passkeys_of(victim),
                gatehouse_core::keyspace::user_ssos(victim),
                gatehouse_core::keyspace::subscriptions_of(victim),
                gatehouse_core::keyspace::aliases_of(victim),
            ] {
                left += tx
                    .get_range(&range, Default::default())
                    .await?
                    .entries
                    .len();
            }
            if gatehouse_core::keyspace::api_key_by_hash(key_hash)
                .get(&tx)
                .await?
                .is_some()
                || gatehouse_core::keyspace::api_key(key_id)
                    .get(&tx)
                    .await?
                    .is_some()
            {
                left += 1;
            }
            Ok::<_, gatehouse_storage::TxError<gatehouse_core::Error>>(left)
        })
        .await
        .unwrap();
    assert_eq!(
        left, 0,
        "every record of the organization and the account went"
    );
}
