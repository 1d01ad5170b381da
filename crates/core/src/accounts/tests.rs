//! Tests of the account service on the memory engine with a controlled clock.

use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;

use super::*;
use crate::blocking::InlinePool;
use crate::clock::Clock as _;
use crate::env::{ManualClock, SeededRandom};
use crate::id::Snowflake;
use crate::model::sessions::{ClientInfo, SessionKind};

fn service() -> AccountService {
    service_with_clock(Arc::new(ManualClock::new(1_800_000_000_000)))
}

fn service_with_clock(clock: Arc<ManualClock>) -> AccountService {
    service_with(clock, |_| {})
}

fn service_with(
    clock: Arc<ManualClock>,
    adjust: impl FnOnce(&mut AccountSettings),
) -> AccountService {
    let env = Env {
        ids: Arc::new(Snowflake::new(1, clock.clone()).unwrap()),
        clock,
        random: Arc::new(SeededRandom::new(9)),
    };
    let store = Store::new(Arc::new(MemoryEngine::new()));
    let mut settings = AccountSettings {
        jwt_secret: vec![3; 32],
        jwt_ttl_secs: 3600,
        registration_enabled: true,
        sso_required_domains: Vec::new(),
        password_policy: PasswordPolicy::default(),
        sessions: SessionPolicy::default(),
        mfa_required_for_admins: false,
        passkeys: None,
        console_url: None,
    };
    adjust(&mut settings);
    AccountService::new(
        store.clone(),
        env.clone(),
        Arc::new(InlinePool),
        Arc::new(crate::audit::AuditLog::new(store, env)),
        settings,
        Arc::new(crate::crypto::KeyRing::new(&[4; 32], &[]).unwrap()),
    )
}

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn register_then_login_by_email_or_username() {
    let s = service();
    s.register(
        "Ada@Example.com",
        PASSWORD,
        Some("ada"),
        Some("Ada L."),
        &ClientInfo::default(),
    )
    .await
    .unwrap();
    let (user, token) = s
        .login("ada@example.COM", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    assert_eq!(user.email, "Ada@Example.com");
    assert_eq!(user.roles, BTreeSet::from([Role::User]));
    let (same, claims) = s.authenticate_token(&token).await.unwrap();
    assert_eq!(same.id, user.id);
    assert_eq!(claims.username.as_deref(), Some("ada"));
    assert_eq!(
        s.login("ADA", PASSWORD, &ClientInfo::default())
            .await
            .unwrap()
            .0
            .id,
        user.id
    );
}

#[tokio::test]
async fn failed_sign_ins_are_indistinguishable() {
    let s = service();
    register(&s, "ada@example.com").await;
    let unknown = s
        .login("nobody@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap_err();
    let wrong = s
        .login("ada@example.com", "wrong password!", &ClientInfo::default())
        .await
        .unwrap_err();
    let garbage = s
        .login("not an email or name!", PASSWORD, &ClientInfo::default())
        .await
        .unwrap_err();
    for e in [&unknown, &wrong, &garbage] {
        assert_eq!(e.code(), ErrorCode::Unauthenticated);
        assert_eq!(e.message(), unknown.message());
    }
}

#[tokio::test]
async fn registration_reveals_nothing_and_changes_nothing_for_a_taken_email() {
    let s = service();
    register(&s, "ada@example.com").await;
    // Same answer, and the first password still works.
    s.register(
        "ADA@example.com",
        "another good password",
        None,
        None,
        &ClientInfo::default(),
    )
    .await
    .unwrap();
    assert!(
        s.login("ada@example.com", PASSWORD, &ClientInfo::default())
            .await
            .is_ok()
    );
    assert!(
        s.login(
            "ada@example.com",
            "another good password",
            &ClientInfo::default()
        )
        .await
        .is_err()
    );
    // Bad input is refused before anything happens.
    assert_eq!(
        s.register("ada", PASSWORD, None, None, &ClientInfo::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        s.register(
            "bob@example.com",
            "password1",
            None,
            None,
            &ClientInfo::default()
        )
        .await
        .unwrap_err()
        .code(),
        ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn the_first_admin_is_created_once() {
    let s = service();
    let first = s
        .bootstrap_admin("root@example.com", None)
        .await
        .unwrap()
        .unwrap();
    assert!(first.admin.roles.contains(&Role::Admin));
    assert!(first.admin.must_change_password);
    let generated = first.generated_password.unwrap();
    assert_eq!(generated.len(), 20);
    assert!(
        s.login("root@example.com", &generated, &ClientInfo::default())
            .await
            .is_ok()
    );
    assert!(
        s.bootstrap_admin("root@example.com", None)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        s.bootstrap_admin("other@example.com", Some(PASSWORD))
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn old_hashes_are_upgraded_at_sign_in() {
    use argon2::password_hash::{PasswordHasher, SaltString};
    let s = service();
    register(&s, "ada@example.com").await;
    let (user, _) = s
        .login("ada@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    // Store a hash made with weaker parameters, as an older release would have.
    let weak = argon2::Argon2::new(
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        argon2::Params::new(8192, 1, 1, None).unwrap(),
    );
    let old = weak
        .hash_password(
            PASSWORD.as_bytes(),
            &SaltString::encode_b64(&[5; 16]).unwrap(),
        )
        .unwrap()
        .to_string();
    let id = user.id;
    s.store
        .run(|tx| {
            let old = &old;
            async move {
                let key = keyspace::user(id);
                let mut u = key.get(&tx).await?.unwrap();
                u.password_hash = Some(old.clone());
                key.put(&tx, &u).await
            }
        })
        .await
        .unwrap();
    s.login("ada@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    let upgraded = s.get_user(id).await.unwrap().password_hash.unwrap();
    assert!(upgraded.contains("m=19456,t=2,p=1"), "{upgraded}");
}

#[tokio::test]
async fn disabling_ends_sessions_at_once() {
    let s = service();
    register(&s, "ada@example.com").await;
    let (user, _, token) = sign_in(&s, "ada@example.com", SessionKind::Web).await;
    s.disable_user(user.id).await.unwrap();
    assert!(s.authenticate_session(&token).await.is_err());
    assert!(s.list_sessions(user.id).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_generated_password_must_be_changed_before_acting() {
    let s = service();
    let admin = s
        .bootstrap_admin("root@example.com", None)
        .await
        .unwrap()
        .unwrap();
    let user = s.get_user(admin.admin.id).await.unwrap();
    assert_eq!(
        s.ensure_may_act(&user).unwrap_err().code(),
        ErrorCode::PermissionDenied
    );
    let generated = admin.generated_password.unwrap();
    s.change_password(
        user.id,
        &generated,
        "my own admin passphrase",
        None,
        &ClientInfo::default(),
    )
    .await
    .unwrap();
    let user = s.get_user(user.id).await.unwrap();
    assert!(s.ensure_may_act(&user).is_ok());
}

#[tokio::test]
async fn disabled_accounts_cannot_sign_in_or_use_tokens() {
    let s = service();
    register(&s, "ada@example.com").await;
    let (user, token) = s
        .login("ada@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    let id = user.id;
    s.store
        .run(|tx| async move {
            let key = keyspace::user(id);
            let mut u = key.get(&tx).await?.unwrap();
            u.status = UserStatus::Disabled;
            key.put(&tx, &u).await
        })
        .await
        .unwrap();
    assert_eq!(
        s.login("ada@example.com", PASSWORD, &ClientInfo::default())
            .await
            .unwrap_err()
            .message(),
        "invalid email, username or password"
    );
    assert_eq!(
        s.authenticate_token(&token).await.unwrap_err().code(),
        ErrorCode::Unauthenticated
    );
}

#[tokio::test]
async fn sessions_expire_when_idle_or_old() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    register(&s, "ada@example.com").await;
    let (_, session, token) = sign_in(&s, "ada@example.com", SessionKind::Web).await;
    assert_eq!(token.len(), 43, "256 bits, base64url");
    assert_eq!(
        s.authenticate_session(&token).await.unwrap().1.id,
        session.id
    );

    // Used every hour, it outlives the 2-hour idle timeout...
    for _ in 0..5 {
        clock.advance(3_600_000);
        s.authenticate_session(&token).await.unwrap();
    }
    // ...but not two idle hours.
    clock.advance(2 * 3_600_000);
    assert_eq!(
        s.authenticate_session(&token).await.unwrap_err().code(),
        ErrorCode::Unauthenticated
    );

    // The absolute limit (7 days) ends even a busy session.
    let (_, _, busy) = sign_in(&s, "ada@example.com", SessionKind::Cli).await;
    for _ in 0..(7 * 24) {
        clock.advance(3_600_000);
        let _ = s.authenticate_session(&busy).await;
    }
    assert!(s.authenticate_session(&busy).await.is_err());
    assert!(s.authenticate_session("never-issued").await.is_err());
}

#[tokio::test]
async fn sessions_are_listed_revoked_and_ended_by_a_password_change() {
    let s = service();
    register(&s, "ada@example.com").await;
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (user, session, token) = sign_in(&s, "ada@example.com", SessionKind::Web).await;
        tokens.push((user.id, session.id, token));
    }
    let user_id = tokens[0].0;
    assert_eq!(s.list_sessions(user_id).await.unwrap().len(), 3);

    s.revoke_session(user_id, tokens[0].1, &ClientInfo::default())
        .await
        .unwrap();
    assert!(s.authenticate_session(&tokens[0].2).await.is_err());
    assert_eq!(
        s.revoke_session(user_id, tokens[0].1, &ClientInfo::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );

    s.logout(&tokens[1].2, &ClientInfo::default())
        .await
        .unwrap();
    assert!(s.authenticate_session(&tokens[1].2).await.is_err());

    // A fourth session; changing the password from the third keeps only it.
    let (_, _, other) = sign_in(&s, "ada@example.com", SessionKind::Cli).await;
    assert_eq!(
        s.change_password(
            user_id,
            "wrong current",
            "a brand new passphrase",
            None,
            &ClientInfo::default()
        )
        .await
        .unwrap_err()
        .code(),
        ErrorCode::InvalidInput
    );
    s.change_password(
        user_id,
        PASSWORD,
        "a brand new passphrase",
        Some(tokens[2].1),
        &ClientInfo::default(),
    )
    .await
    .unwrap();
    assert!(s.authenticate_session(&other).await.is_err());
    assert!(s.authenticate_session(&tokens[2].2).await.is_ok());
    assert!(
        s.login("ada@example.com", PASSWORD, &ClientInfo::default())
            .await
            .is_err()
    );
    assert!(
        s.login(
            "ada@example.com",
            "a brand new passphrase",
            &ClientInfo::default()
        )
        .await
        .is_ok()
    );
}

#[tokio::test]
async fn failed_sign_ins_slow_down_and_the_window_forgives() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    register(&s, "ada@example.com").await;
    let client = ClientInfo {
        ip: Some("192.0.2.7".into()),
        user_agent: None,
        ..Default::default()
    };
    for _ in 0..5 {
        let e = s
            .login("ada@example.com", "wrong password!", &client)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unauthenticated);
    }
    // The sixth attempt must wait a second, even with the right password.
    let e = s
        .login("ada@example.com", PASSWORD, &client)
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.retry_after_secs()),
        (ErrorCode::RateLimited, Some(1))
    );
    // Case does not dodge the throttle, and neither does another IP.
    assert!(
        s.login("ADA@example.com", PASSWORD, &ClientInfo::default())
            .await
            .is_err()
    );
    clock.advance(1000);
    assert_eq!(
        s.login("ada@example.com", "wrong again!", &client)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unauthenticated
    );
    let e = s
        .login("ada@example.com", PASSWORD, &client)
        .await
        .unwrap_err();
    assert_eq!(e.retry_after_secs(), Some(2), "the delay doubled");
    clock.advance(2000);
    s.login("ada@example.com", PASSWORD, &client).await.unwrap();
    // Success resets the account's count.
    assert_eq!(
        s.login("ada@example.com", "wrong password!", &client)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Unauthenticated
    );

    // Unknown accounts are throttled exactly the same way.
    for _ in 0..5 {
        s.login("ghost@example.com", PASSWORD, &ClientInfo::default())
            .await
            .unwrap_err();
    }
    let e = s
        .login("ghost@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);

    // Even at the hourly cap, an hour later the user gets in.
    for _ in 0..12 {
        clock.advance(5 * 60 * 1000);
        let _ = s
            .login("ada@example.com", "wrong password!", &ClientInfo::default())
            .await;
    }
    clock.advance(3_600_000);
    s.login("ada@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
}

/// An unknown login and a wrong password cost the same work (one argon2id
/// verification), so their timings match: medians of ten tries each are within
/// 50 % of each other (they differ by one index lookup, microseconds against
/// the hash's tens of milliseconds).
#[tokio::test]
async fn unknown_and_wrong_logins_take_the_same_time() {
    use std::time::Instant;
    let s = service();
    for i in 0..10 {
        s.register(
            &format!("user{i}@example.com"),
            PASSWORD,
            None,
            None,
            &ClientInfo::default(),
        )
        .await
        .unwrap();
    }
    let mut unknown = Vec::new();
    let mut wrong = Vec::new();
    for i in 0..10 {
        let started = Instant::now();
        let a = s
            .login(
                &format!("ghost{i}@example.com"),
                PASSWORD,
                &ClientInfo::default(),
            )
            .await
            .unwrap_err();
        unknown.push(started.elapsed());
        let started = Instant::now();
        let b = s
            .login(
                &format!("user{i}@example.com"),
                "wrong password!",
                &ClientInfo::default(),
            )
            .await
            .unwrap_err();
        wrong.push(started.elapsed());
        assert_eq!((a.code(), a.message()), (b.code(), b.message()));
    }
    unknown.sort();
    wrong.sort();
    let (a, b) = (unknown[5].as_secs_f64(), wrong[5].as_secs_f64());
    assert!(
        (a - b).abs() / a.max(b) < 0.5,
        "unknown {a:.4}s vs wrong {b:.4}s"
    );
}

#[tokio::test]
async fn sign_in_events_are_audited_without_secrets() {
    let s = service();
    let client = ClientInfo {
        ip: Some("198.51.100.4".into()),
        user_agent: Some("curl/8".into()),
        ..Default::default()
    };
    s.register("ada@example.com", PASSWORD, None, None, &client)
        .await
        .unwrap();
    s.login("ada@example.com", "wrong password!", &client)
        .await
        .unwrap_err();
    let (admin_id, _) = {
        let b = s
            .bootstrap_admin("root@example.com", Some(PASSWORD))
            .await
            .unwrap()
            .unwrap();
        (b.admin.id, ())
    };
    let (user, _) = s.login("ada@example.com", PASSWORD, &client).await.unwrap();
    let admin = s.get_user(admin_id).await.unwrap();
    let events = s
        .audit
        .list(&admin, &Default::default(), None, 50)
        .await
        .unwrap()
        .0;
    let summary: Vec<(&str, crate::audit::Outcome)> = events
        .iter()
        .map(|e| (e.action.as_str(), e.outcome))
        .collect();
    use crate::audit::Outcome::*;
    assert_eq!(
        summary,
        vec![
            ("auth.login", Success),
            ("auth.bootstrap_admin", Success),
            ("auth.login", Failure),
            ("auth.register", Success),
        ],
        "newest first"
    );
    assert_eq!(events[0].actor, crate::audit::Actor::User { id: user.id });
    assert_eq!(events[2].ip.as_deref(), Some("198.51.100.4"));
    assert_eq!(events[2].user_agent.as_deref(), Some("curl/8"));
    let all = serde_json::to_string(&events).unwrap();
    assert!(!all.contains(PASSWORD) && !all.contains("wrong password!") && !all.contains("argon2"));
    // Only platform admins read the log.
    assert_eq!(
        s.audit
            .list(&user, &Default::default(), None, 50)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied
    );
    // Paging goes back in time.
    let older = s
        .audit
        .list(&admin, &Default::default(), Some(events[1].id), 50)
        .await
        .unwrap()
        .0;
    assert_eq!(older.len(), 2);
}

/// Registers `email` with [`PASSWORD`].
async fn register(s: &AccountService, email: &str) {
    let c = ClientInfo::default();
    s.register(email, PASSWORD, None, None, &c).await.unwrap();
}

/// Signs `login` in with [`PASSWORD`] for a session of `kind`.
async fn sign_in(s: &AccountService, login: &str, kind: SessionKind) -> (User, Session, String) {
    let c = ClientInfo::default();
    s.login_session(login, PASSWORD, kind, c).await.unwrap()
}

/// The token in the newest outbox message to `to`.
async fn token_sent_to(s: &AccountService, to: &str) -> String {
    crate::testing::mailed_token(&s.store, &s.env, to).await
}

#[tokio::test]
async fn email_verification_tokens_work_once() {
    let s = service();
    register(&s, "ada@example.com").await;
    let (user, _) = s
        .login("ada@example.com", PASSWORD, &ClientInfo::default())
        .await
        .unwrap();
    assert!(!user.email_verified);
    let token = token_sent_to(&s, "ada@example.com").await;
    s.verify_email(&token, &ClientInfo::default())
        .await
        .unwrap();
    assert!(s.get_user(user.id).await.unwrap().email_verified);
    assert_eq!(
        s.verify_email(&token, &ClientInfo::default())
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput,
        "single use"
    );
    // A taken email sends nothing new.
    register(&s, "ada@example.com").await;
    let outbox = crate::email::Outbox::new(s.store.clone(), s.env.clone());
    assert_eq!(outbox.pending().await.unwrap().len(), 1);
}

#[tokio::test]
async fn password_reset_ends_sessions_and_tokens_expire() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    let client = ClientInfo::default();
    s.register("ada@example.com", PASSWORD, None, None, &client)
        .await
        .unwrap();
    let (_, _, session) = s
        .login_session(
            "ada@example.com",
            PASSWORD,
            SessionKind::Web,
            client.clone(),
        )
        .await
        .unwrap();
    // Unknown addresses are answered alike and get nothing.
    s.request_password_reset("nobody@example.com", &client)
        .await
        .unwrap();
    s.request_password_reset("ADA@example.com", &client)
        .await
        .unwrap();
    let token = token_sent_to(&s, "ada@example.com").await;
    assert!(
        s.reset_password(&token, "short", &client).await.is_err(),
        "policy first"
    );
    s.reset_password(&token, "a freshly reset passphrase", &client)
        .await
        .unwrap();
    assert!(
        s.authenticate_session(&session).await.is_err(),
        "sessions ended"
    );
    assert!(
        s.login("ada@example.com", "a freshly reset passphrase", &client)
            .await
            .is_ok()
    );
    assert!(
        s.reset_password(&token, "another new passphrase", &client)
            .await
            .is_err()
    );

    // Reset tokens last an hour.
    s.request_password_reset("ada@example.com", &client)
        .await
        .unwrap();
    let late = token_sent_to(&s, "ada@example.com").await;
    clock.advance(3_600_001);
    assert_eq!(
        s.reset_password(&late, "too late passphrase", &client)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn several_addresses_one_primary() {
    let s = service();
    let c = ClientInfo::default();
    s.register("ada@example.com", PASSWORD, None, None, &c)
        .await
        .unwrap();
    s.register("bob@example.com", PASSWORD, None, None, &c)
        .await
        .unwrap();
    let (ada, _) = s.login("ada@example.com", PASSWORD, &c).await.unwrap();
    s.add_email(ada.id, "Ada@Work.example", &c).await.unwrap();
    // Someone else's address is answered alike and not added.
    s.add_email(ada.id, "bob@example.com", &c).await.unwrap();
    let listed = s.list_emails(ada.id).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|e| (e.email.as_str(), e.primary, e.verified))
            .collect::<Vec<_>>(),
        vec![
            ("ada@example.com", true, false),
            ("Ada@Work.example", false, false)
        ]
    );
    // Unverified addresses cannot become primary; verified ones can.
    assert_eq!(
        s.make_primary(ada.id, "ada@work.example", &c)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    let token = token_sent_to(&s, "Ada@Work.example").await;
    s.verify_email(&token, &c).await.unwrap();
    s.make_primary(ada.id, "ada@work.example", &c)
        .await
        .unwrap();
    let listed = s.list_emails(ada.id).await.unwrap();
    assert_eq!(listed[0].email, "Ada@Work.example");
    assert!(listed[0].primary && listed[0].verified);
    // Either address signs in; the primary cannot be removed, the other can.
    assert!(s.login("ada@work.example", PASSWORD, &c).await.is_ok());
    assert_eq!(
        s.remove_email(ada.id, "ada@work.example", &c)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    s.remove_email(ada.id, "ada@example.com", &c).await.unwrap();
    assert!(s.login("ada@example.com", PASSWORD, &c).await.is_err());
    assert_eq!(s.list_emails(ada.id).await.unwrap().len(), 1);
    // A removed address is free for others.
    s.register("ada@example.com", PASSWORD, None, None, &c)
        .await
        .unwrap();
    assert!(s.login("ada@example.com", PASSWORD, &c).await.is_ok());
}

#[tokio::test]
async fn admins_create_users_and_provider_accounts() {
    let s = service();
    let c = ClientInfo::default();
    let admin = s
        .bootstrap_admin("root@example.com", Some(PASSWORD))
        .await
        .unwrap()
        .unwrap()
        .admin;
    let new = |email: &'static str, provider: bool| AdminNewUser {
        email,
        password: None,
        username: None,
        display_name: None,
        provider,
    };
    let (user, generated) = s
        .admin_create_user(&admin, new("bob@example.com", false), &c)
        .await
        .unwrap();
    assert_eq!(user.roles, BTreeSet::from([Role::User]));
    assert!(user.must_change_password);
    assert!(
        s.login("bob@example.com", &generated.unwrap(), &c)
            .await
            .is_ok()
    );
    let (provider, _) = s
        .admin_create_user(&admin, new("prov@example.com", true), &c)
        .await
        .unwrap();
    assert_eq!(provider.roles, BTreeSet::from([Role::Provider]));
    // Duplicates are a conflict for admins; non-admins may not create users.
    assert_eq!(
        s.admin_create_user(&admin, new("BOB@example.com", false), &c)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::Conflict
    );
    assert_eq!(
        s.admin_create_user(&user, new("eve@example.com", false), &c)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied
    );
}

#[tokio::test]
async fn admins_list_and_read_users_others_see_only_themselves() {
    let s = service();
    let c = ClientInfo::default();
    let admin = s
        .bootstrap_admin("root@example.com", Some(PASSWORD))
        .await
        .unwrap()
        .unwrap()
        .admin;
    for name in ["ada", "bob", "cyd"] {
        s.register(
            &format!("{name}@example.com"),
            PASSWORD,
            Some(name),
            None,
            &c,
        )
        .await
        .unwrap();
    }
    let all = s
        .list_users(&admin, &UserFilter::default(), None, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 4);
    let page = s
        .list_users(&admin, &UserFilter::default(), None, 2)
        .await
        .unwrap();
    let rest = s
        .list_users(&admin, &UserFilter::default(), Some(page[1].id), 10)
        .await
        .unwrap();
    assert_eq!(page.len() + rest.len(), 4);
    assert!(page[1].id < rest[0].id);
    let admins = UserFilter {
        role: Some(Role::Admin),
        ..Default::default()
    };
    assert_eq!(
        s.list_users(&admin, &admins, None, 10).await.unwrap().len(),
        1
    );
    let text = UserFilter {
        text: Some("BO".into()),
        ..Default::default()
    };
    let bob = s.list_users(&admin, &text, None, 10).await.unwrap();
    assert_eq!(bob.len(), 1);
    assert_eq!(bob[0].username.as_deref(), Some("bob"));

    let ada = s.login("ada", PASSWORD, &c).await.unwrap().0;
    assert_eq!(
        s.list_users(&ada, &UserFilter::default(), None, 10)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied
    );
    assert_eq!(s.view_user(&ada, ada.id).await.unwrap().id, ada.id);
    assert_eq!(
        s.view_user(&ada, bob[0].id).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(s.view_user(&admin, bob[0].id).await.unwrap().id, bob[0].id);
}

#[tokio::test]
async fn roles_change_only_by_admins_and_never_lose_user() {
    let s = service();
    let c = ClientInfo::default();
    let admin = s
        .bootstrap_admin("root@example.com", Some(PASSWORD))
        .await
        .unwrap()
        .unwrap()
        .admin;
    let new = |email: &'static str, provider: bool| AdminNewUser {
        email,
        password: Some(PASSWORD),
        username: None,
        display_name: None,
        provider,
    };
    let (ada, _) = s
        .admin_create_user(&admin, new("ada@example.com", false), &c)
        .await
        .unwrap();
    let (prov, _) = s
        .admin_create_user(&admin, new("prov@example.com", true), &c)
        .await
        .unwrap();
    let roles = |r: &[Role]| UserChange {
        roles: Some(r.iter().copied().collect()),
        ..UserChange::default()
    };
    // Nobody gives themself a role, admins included.
    let code = |r: Result<User>| r.unwrap_err().code();
    assert_eq!(
        code(
            s.update_account(&ada, ada.id, roles(&[Role::User, Role::Admin]), &c)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    assert_eq!(
        code(
            s.update_account(&admin, admin.id, roles(&[Role::User]), &c)
                .await
        ),
        ErrorCode::PermissionDenied
    );
    // `user` stays; a provider account holds `provider` alone.
    assert_eq!(
        code(
            s.update_account(&admin, ada.id, roles(&[Role::Admin]), &c)
                .await
        ),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        code(
            s.update_account(&admin, prov.id, roles(&[Role::Provider, Role::User]), &c)
                .await
        ),
        ErrorCode::InvalidInput
    );
    let ada = s
        .update_account(
            &admin,
            ada.id,
            roles(&[Role::User, Role::AdminReadonly]),
            &c,
        )
        .await
        .unwrap();
    assert!(ada.is_platform_reader() && !ada.is_platform_admin());
    // A read-only admin reads everyone and changes nobody else.
    assert_eq!(
        code(
            s.update_account(
                &ada,
                prov.id,
                UserChange {
                    display_name: Some("X".into()),
                    ..UserChange::default()
                },
                &c
            )
            .await
        ),
        ErrorCode::PermissionDenied
    );
    // Users rename themselves; others' accounts are invisible to them.
    let (bob, _) = s
        .admin_create_user(&admin, new("bob@example.com", false), &c)
        .await
        .unwrap();
    let rename = |n: &str| UserChange {
        display_name: Some(n.into()),
        ..UserChange::default()
    };
    assert_eq!(
        s.update_account(&bob, bob.id, rename(" Bob B. "), &c)
            .await
            .unwrap()
            .display_name,
        "Bob B."
    );
    assert_eq!(
        code(s.update_account(&bob, ada.id, rename("Eve"), &c).await),
        ErrorCode::NotFound
    );
    assert_eq!(
        code(s.update_account(&bob, bob.id, rename(" "), &c).await),
        ErrorCode::InvalidInput
    );
}

#[tokio::test]
async fn deleting_a_user_frees_their_addresses_and_ends_their_sessions() {
    let s = service();
    let c = ClientInfo::default();
    let admin = s
        .bootstrap_admin("root@example.com", Some(PASSWORD))
        .await
        .unwrap()
        .unwrap()
        .admin;
    s.register("ada@example.com", PASSWORD, Some("ada"), None, &c)
        .await
        .unwrap();
    let (ada, _, session) = s
        .login_session("ada", PASSWORD, SessionKind::Cli, c.clone())
        .await
        .unwrap();
    assert_eq!(
        s.delete_user(&ada, admin.id, &c).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    assert_eq!(
        s.delete_user(&admin, admin.id, &c)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::PermissionDenied
    );
    s.delete_user(&admin, ada.id, &c).await.unwrap();
    assert_eq!(
        s.authenticate_session(&session).await.unwrap_err().code(),
        ErrorCode::Unauthenticated
    );
    assert_eq!(
        s.get_user(ada.id).await.unwrap_err().code(),
        ErrorCode::NotFound
    );
    // The email and username can be registered again.
    s.register("ada@example.com", PASSWORD, Some("ada"), None, &c)
        .await
        .unwrap();
    assert_ne!(s.login("ada", PASSWORD, &c).await.unwrap().0.id, ada.id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_admins_demoting_each_other_leave_one_admin() {
    let s = Arc::new(service());
    let c = ClientInfo::default();
    let root = s
        .bootstrap_admin("root@example.com", Some(PASSWORD))
        .await
        .unwrap()
        .unwrap()
        .admin;
    let admin_roles = BTreeSet::from([Role::User, Role::Admin]);
    for round in 0..20 {
        let mut admins = Vec::new();
        for who in ["a", "b"] {
            let email = format!("{who}{round}@example.com");
            let new = AdminNewUser::new(&email, Some(PASSWORD));
            let (user, _) = s.admin_create_user(&root, new, &c).await.unwrap();
            let change = UserChange {
                roles: Some(admin_roles.clone()),
                ..UserChange::default()
            };
            admins.push(s.update_account(&root, user.id, change, &c).await.unwrap());
        }
        let demote = |actor: User, target: Id| {
            let s = s.clone();
            tokio::spawn(async move {
                let change = UserChange {
                    roles: Some(BTreeSet::from([Role::User])),
                    ..UserChange::default()
                };
                s.update_account(&actor, target, change, &ClientInfo::default())
                    .await
                    .is_ok()
            })
        };
        let (a, b) = (admins[0].clone(), admins[1].clone());
        let first = demote(a.clone(), b.id);
        let second = demote(b.clone(), a.id);
        let (first, second) = (first.await.unwrap(), second.await.unwrap());
        assert!(first || second, "one demotion succeeds");
        let mut still_admin = 0;
        for id in [a.id, b.id] {
            still_admin += usize::from(s.get_user(id).await.unwrap().is_platform_admin());
        }
        assert_eq!(still_admin, 1, "round {round}");
        assert!(
            !(first && second),
            "round {round}: both demotions went through"
        );
    }
}

#[tokio::test]
async fn logout_password_change_reset_and_disabling_end_every_jwt() {
    let s = service();
    let client = ClientInfo::default();
    s.register("ada@example.com", PASSWORD, None, None, &client)
        .await
        .unwrap();
    let sign_in = |password: &'static str| {
        let (s, client) = (&s, client.clone());
        async move { s.login("ada@example.com", password, &client).await.unwrap() }
    };
    let alive = |token: String| {
        let s = &s;
        async move { s.authenticate_token(&token).await.is_ok() }
    };

    // Logout with a JWT ends that one and every other JWT of the account.
    let (user, laptop) = sign_in(PASSWORD).await;
    let (_, phone) = sign_in(PASSWORD).await;
    assert!(alive(laptop.clone()).await && alive(phone.clone()).await);
    s.logout_token(&user, &client).await.unwrap();
    assert!(!alive(laptop).await);
    let ended = s.authenticate_token(&phone).await.unwrap_err();
    assert_eq!(ended.code(), ErrorCode::Unauthenticated);
    assert!(ended.message().contains("sign in again"), "{ended:?}");
    let (_, fresh) = sign_in(PASSWORD).await;
    assert!(alive(fresh.clone()).await, "a new sign-in works");

    // A password change, even one made from a session.
    let (_, session, _) = s
        .login_session(
            "ada@example.com",
            PASSWORD,
            SessionKind::Web,
            client.clone(),
        )
        .await
        .unwrap();
    s.change_password(
        user.id,
        PASSWORD,
        "second passphrase",
        Some(session.id),
        &client,
    )
    .await
    .unwrap();
    assert!(!alive(fresh).await);

    // A reset.
    let (_, before_reset) = sign_in("second passphrase").await;
    s.request_password_reset("ada@example.com", &client)
        .await
        .unwrap();
    let token = token_sent_to(&s, "ada@example.com").await;
    s.reset_password(&token, "third passphrase", &client)
        .await
        .unwrap();
    assert!(!alive(before_reset).await);

    // Disabling, and the JWT stays dead when the account is enabled again.
    let (_, before_disable) = sign_in("third passphrase").await;
    s.disable_user(user.id).await.unwrap();
    s.update_user(user.id, |u| u.status = UserStatus::Active)
        .await
        .unwrap();
    assert!(!alive(before_disable).await);
    let (_, after) = sign_in("third passphrase").await;
    assert!(alive(after).await);
}

#[tokio::test]
async fn parallel_attempts_are_counted_before_they_are_judged() {
    let s = service();
    let client = ClientInfo::default();
    s.register("ada@example.com", PASSWORD, None, None, &client)
        .await
        .unwrap();
    // Fifty at once, the right password 37th: only the free five are judged.
    let attempts = (0..50).map(|i| {
        let (s, client) = (&s, client.clone());
        let password = if i == 37 { PASSWORD } else { "wrong password!" };
        async move { s.login("ada@example.com", password, &client).await }
    });
    let outcomes = futures_util::future::join_all(attempts).await;
    let judged = outcomes
        .iter()
        .filter(|o| !matches!(o, Err(e) if e.code() == ErrorCode::RateLimited))
        .count();
    assert_eq!(
        judged,
        5,
        "{:?}",
        outcomes
            .iter()
            .map(|o| o.as_ref().err().map(|e| e.code()))
            .collect::<Vec<_>>()
    );
    assert!(outcomes.iter().all(|o| o.is_err()));
}

#[tokio::test]
async fn a_device_that_signed_in_before_is_not_locked_out_by_others() {
    let s = service();
    let home = ClientInfo {
        ip: Some("192.0.2.1".into()),
        ..Default::default()
    };
    s.register("ada@example.com", PASSWORD, None, None, &home)
        .await
        .unwrap();
    let (ada, _) = s.login("ada@example.com", PASSWORD, &home).await.unwrap();
    let proof = s.device_proof(&ada, &home);
    let trusted = ClientInfo {
        device: Some(proof.clone()),
        ..home.clone()
    };

    // An attacker (another IP, no proof) locks the account for everyone else…
    let attacker = ClientInfo {
        ip: Some("203.0.113.9".into()),
        ..Default::default()
    };
    for _ in 0..8 {
        let _ = s.login("ada@example.com", "guess", &attacker).await;
    }
    let locked = s
        .login("ada@example.com", PASSWORD, &home)
        .await
        .unwrap_err();
    assert_eq!(locked.code(), ErrorCode::RateLimited);
    // …but not for Ada's own client.
    s.login("ada@example.com", PASSWORD, &trusted)
        .await
        .unwrap();
    assert_eq!(
        s.device_proof(&ada, &trusted),
        proof,
        "the device keeps its ID"
    );

    // The proof names Ada's account: for another account it counts for nothing.
    s.register("bob@example.com", PASSWORD, None, None, &home)
        .await
        .unwrap();
    for _ in 0..5 {
        let _ = s.login("bob@example.com", "guess", &attacker).await;
    }
    let e = s
        .login("bob@example.com", PASSWORD, &trusted)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);

    // A stolen proof still gets only the free failures.
    for _ in 0..5 {
        let e = s
            .login("ada@example.com", "guess", &trusted)
            .await
            .unwrap_err();
        assert_eq!(e.code(), ErrorCode::Unauthenticated);
    }
    let e = s
        .login("ada@example.com", PASSWORD, &trusted)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);
    // A forged one is no proof at all.
    let forged = ClientInfo {
        device: Some(proof.replacen('.', "0.", 1)),
        ..home
    };
    let e = s
        .login("ada@example.com", PASSWORD, &forged)
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::RateLimited);
}

#[tokio::test]
async fn expired_failure_counters_are_pruned() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    let client = ClientInfo {
        ip: Some("192.0.2.7".into()),
        ..Default::default()
    };
    for login in ["ghost-1", "ghost-2", "ghost-3"] {
        let _ = s.login(login, "a wrong guess", &client).await;
    }
    let count = || async {
        s.store
            .run(|tx| async move {
                let all = keyspace::all_login_failures();
                let page = tx
                    .get_range(&all, gatehouse_storage::RangeOptions::default())
                    .await?;
                Ok::<_, TxError<Error>>(page.entries.len())
            })
            .await
            .unwrap()
    };
    assert_eq!(count().await, 4, "three logins and the IP");
    assert_eq!(s.prune_login_failures().await.unwrap(), 0, "all live");
    clock.advance(30 * 60 * 1000);
    let _ = s
        .login("ghost-4", "a wrong guess", &ClientInfo::default())
        .await;
    clock.advance(31 * 60 * 1000);
    assert_eq!(s.prune_login_failures().await.unwrap(), 4);
    assert_eq!(count().await, 1, "the newer window stays");
}

#[tokio::test]
async fn a_single_sign_on_flow_is_taken_once_by_its_provider_before_it_expires() {
    use crate::model::accounts::SsoFlow;
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    let flow = || SsoFlow {
        provider: "corp".into(),
        nonce: "n".into(),
        pkce_verifier: "v".into(),
        redirect_to: Some("/keys".into()),
        mode: "session".into(),
        expires_at_ms: 0,
    };
    s.start_sso_flow("state-1", flow()).await.unwrap();
    assert!(
        s.take_sso_flow("other", "state-1").await.is_err(),
        "another provider's"
    );
    // Taken by the wrong provider, it is gone: a state is tried once.
    assert!(s.take_sso_flow("corp", "state-1").await.is_err());
    s.start_sso_flow("state-2", flow()).await.unwrap();
    let taken = s.take_sso_flow("corp", "state-2").await.unwrap();
    assert_eq!(taken.redirect_to.as_deref(), Some("/keys"));
    let replayed = s.take_sso_flow("corp", "state-2").await.unwrap_err();
    assert_eq!(replayed.code(), ErrorCode::Unauthenticated);
    // Expired after ten minutes, and pruned.
    s.start_sso_flow("state-3", flow()).await.unwrap();
    s.start_sso_flow("state-4", flow()).await.unwrap();
    clock.advance(sso::SSO_FLOW_TTL_MS + 1);
    assert_eq!(s.prune_sso_flows().await.unwrap(), 2);
    assert!(s.take_sso_flow("corp", "state-3").await.is_err());
}

#[tokio::test]
async fn single_sign_on_creates_links_or_refuses_and_maps_groups() {
    use sso::{SsoProfile, SsoRules};
    let s = service();
    let client = ClientInfo::default();
    let rules = SsoRules {
        provider: "corp".into(),
        role_mapping: [("admins".to_string(), BTreeSet::from([Role::Admin]))].into(),
        default_roles: BTreeSet::new(),
        allowed_email_domains: vec!["example.com".into()],
        org_mapping: Default::default(),
    };
    let profile = |sub: &str, email: &str, verified: bool, groups: &[&str]| SsoProfile {
        subject: sub.into(),
        email: Some(email.into()),
        email_verified: verified,
        name: None,
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    // Just in time, with the mapped role, handing back a JWT.
    let (ada, signed_in) = s
        .sso_sign_in(
            &rules,
            profile("a1", "ada@example.com", true, &["admins"]),
            None,
            &client,
        )
        .await
        .unwrap();
    assert!(matches!(signed_in, Grant::Token(_)));
    assert_eq!(ada.roles, BTreeSet::from([Role::User, Role::Admin]));
    assert_eq!(ada.sso_roles, BTreeSet::from([Role::Admin]));
    assert!(ada.email_verified && ada.password_hash.is_none());
    // The same subject again, out of the group: the same account, without admin.
    let (again, signed_in) = s
        .sso_sign_in(
            &rules,
            profile("a1", "ada@example.com", true, &[]),
            Some(SessionKind::Web),
            &client,
        )
        .await
        .unwrap();
    assert!(matches!(signed_in, Grant::Session(..)));
    assert_eq!(again.id, ada.id);
    assert_eq!(again.roles, BTreeSet::from([Role::User]));
    // Another subject claiming Ada's address without verifying it: refused.
    let refused = s
        .sso_sign_in(
            &rules,
            profile("m1", "ada@example.com", false, &[]),
            None,
            &client,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::Conflict);
    // Another domain: refused.
    let refused = s
        .sso_sign_in(
            &rules,
            profile("e1", "eve@evil.example", true, &[]),
            None,
            &client,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.code(), ErrorCode::PermissionDenied);
    assert_eq!(s.sso_identities(ada.id).await.unwrap().len(), 1);
}

/// The code an authenticator app shows for `secret` (base32) at `ms`.
fn app_code(secret: &str, ms: i64) -> String {
    let bytes = totp_rs::Secret::Encoded(secret.to_string())
        .to_bytes()
        .unwrap();
    totp_rs::TOTP::new_unchecked(
        totp_rs::Algorithm::SHA1,
        6,
        1,
        30,
        bytes,
        None,
        String::new(),
    )
    .generate((ms / 1000) as u64)
}

async fn enrolled(s: &AccountService, clock: &ManualClock, user: &User) -> (String, Vec<String>) {
    let c = ClientInfo::default();
    let wrong = s
        .enrol_totp(user.id, Some("not the password"), None, &c)
        .await;
    assert!(wrong.is_err(), "re-authentication is required");
    let enrolment = s
        .enrol_totp(user.id, Some(PASSWORD), None, &c)
        .await
        .unwrap();
    assert!(
        enrolment
            .otpauth_uri
            .starts_with("otpauth://totp/Gatehouse:")
    );
    assert!(
        enrolment
            .otpauth_uri
            .contains(&format!("secret={}", enrolment.secret))
    );
    assert!(enrolment.qr_svg.contains("<svg"));
    let now = clock.now_millis();
    let right: u32 = app_code(&enrolment.secret, now).parse().unwrap();
    let wrong = format!("{:06}", (right + 1) % 1_000_000);
    assert!(s.confirm_totp(user.id, &wrong, &c).await.is_err());
    let codes = s
        .confirm_totp(user.id, &app_code(&enrolment.secret, now), &c)
        .await
        .unwrap();
    assert_eq!(codes.len(), mfa::RECOVERY_CODES);
    (enrolment.secret, codes)
}

/// Ada, registered with [`PASSWORD`].
async fn ada(s: &AccountService) -> User {
    let c = ClientInfo::default();
    s.register("ada@example.com", PASSWORD, None, None, &c)
        .await
        .unwrap();
    s.login("ada@example.com", PASSWORD, &c).await.unwrap().0
}

async fn second_step_token(s: &AccountService) -> String {
    let c = ClientInfo::default();
    match s
        .password_step("ada@example.com", PASSWORD, None, &c)
        .await
        .unwrap()
    {
        mfa::PasswordStep::SecondFactor {
            token,
            expires_in_secs,
        } => {
            assert_eq!(expires_in_secs, 300);
            token
        }
        mfa::PasswordStep::SignedIn(..) => panic!("the second factor was skipped"),
    }
}

#[tokio::test]
async fn a_totp_account_signs_in_in_two_steps_and_every_code_works_once() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    let c = ClientInfo::default();
    let ada = ada(&s).await;
    let (secret, recovery) = enrolled(&s, &clock, &ada).await;
    let ada = s.get_user(ada.id).await.unwrap();
    assert!(ada.totp_enabled && ada.has_second_factor());
    // The password alone no longer signs in.
    assert!(s.login("ada@example.com", PASSWORD, &c).await.is_err());
    // The code that confirmed the app is spent: its step is used.
    let token = second_step_token(&s).await;
    let spent = app_code(&secret, clock.now_millis());
    let err = s
        .finish_second_factor(&token, &spent, &c)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::Unauthenticated);
    // Thirty seconds on, the next code signs in, once.
    clock.advance(30_000);
    let next = app_code(&secret, clock.now_millis());
    let (user, grant) = s.finish_second_factor(&token, &next, &c).await.unwrap();
    assert_eq!(user.id, ada.id);
    let Grant::Token(jwt) = grant else {
        panic!("a JWT was asked for")
    };
    assert_eq!(s.authenticate_token(&jwt).await.unwrap().0.id, ada.id);
    assert!(
        s.finish_second_factor(&token, &next, &c).await.is_err(),
        "the token is single use"
    );
    // A recovery code (typed in capitals, without its dash) works once.
    let token = second_step_token(&s).await;
    let typed = recovery[3].replace('-', "").to_uppercase();
    s.finish_second_factor(&token, &typed, &c).await.unwrap();
    let token = second_step_token(&s).await;
    let again = s
        .finish_second_factor(&token, &recovery[3], &c)
        .await
        .unwrap_err();
    assert_eq!(again.code(), ErrorCode::Unauthenticated);
    assert_eq!(s.second_factors(&ada).await.unwrap().recovery_codes_left, 9);
    // Five wrong codes and the pending sign-in is gone.
    let token = second_step_token(&s).await;
    for _ in 0..5 {
        let err = s
            .finish_second_factor(&token, "123456x", &c)
            .await
            .unwrap_err();
        assert!(matches!(
            err.code(),
            ErrorCode::Unauthenticated | ErrorCode::RateLimited
        ));
    }
    clock.advance(3_600_000);
    let late = app_code(&secret, clock.now_millis());
    assert!(s.finish_second_factor(&token, &late, &c).await.is_err());
    // Turned off: the password alone signs in again.
    s.disable_totp(ada.id, Some(PASSWORD), None, &c)
        .await
        .unwrap();
    s.login("ada@example.com", PASSWORD, &c).await.unwrap();
}

#[tokio::test]
async fn wrong_second_factor_codes_are_throttled_like_passwords() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    let c = ClientInfo::default();
    let ada = ada(&s).await;
    let (_, recovery) = enrolled(&s, &clock, &ada).await;
    let mut throttled = false;
    for _ in 0..4 {
        let token = second_step_token(&s).await;
        for _ in 0..4 {
            if let Err(e) = s.finish_second_factor(&token, "000000x", &c).await
                && e.code() == ErrorCode::RateLimited
            {
                throttled = true;
            }
        }
    }
    assert!(
        throttled,
        "sixteen wrong codes in a row were never slowed down"
    );
    // Even a right code waits its turn, and is not spent by waiting.
    let token = second_step_token(&s).await;
    let err = s
        .finish_second_factor(&token, &recovery[0], &c)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::RateLimited);
    clock.advance(4 * 60 * 1000);
    s.finish_second_factor(&token, &recovery[0], &c)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_admin_without_a_second_factor_is_told_to_enrol_when_one_is_required() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with(clock.clone(), |settings| {
        settings.mfa_required_for_admins = true
    });
    let c = ClientInfo::default();
    let ada = ada(&s).await;
    assert!(s.ensure_may_act(&ada).is_ok(), "only admins must enrol");
    s.update_user(ada.id, |u| {
        u.roles.insert(Role::Admin);
    })
    .await
    .unwrap();
    let admin = s.get_user(ada.id).await.unwrap();
    let err = s.ensure_may_act(&admin).unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
    assert!(
        err.message().contains("/api/v1/auth/mfa/totp"),
        "{}",
        err.message()
    );
    assert!(s.second_factors(&admin).await.unwrap().required);
    enrolled(&s, &clock, &admin).await;
    let admin = s.get_user(ada.id).await.unwrap();
    s.ensure_may_act(&admin).unwrap();
    // And it may not drop its only second factor.
    let err = s
        .disable_totp(ada.id, Some(PASSWORD), None, &c)
        .await
        .unwrap_err();
    assert_eq!(err.code(), ErrorCode::PermissionDenied);
}

#[tokio::test]
async fn rotating_the_encryption_key_reseals_totp_secrets_and_codes_still_work() {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let s = service_with_clock(clock.clone());
    let c = ClientInfo::default();
    let ada = ada(&s).await;
    let (secret, _) = enrolled(&s, &clock, &ada).await;
    assert_eq!(
        s.reseal_totp().await.unwrap(),
        0,
        "sealed with the current key"
    );
    // The same store, a new current key and the old one as previous.
    let rotated = AccountService {
        keys: Arc::new(crate::crypto::KeyRing::new(&[5; 32], &[vec![4; 32]]).unwrap()),
        ..s
    };
    assert_eq!(rotated.reseal_totp().await.unwrap(), 1);
    assert_eq!(rotated.reseal_totp().await.unwrap(), 0);
    // Only the new key now: the app's codes still sign in.
    let only_new = AccountService {
        keys: Arc::new(crate::crypto::KeyRing::new(&[5; 32], &[]).unwrap()),
        ..rotated
    };
    clock.advance(30_000);
    let token = second_step_token(&only_new).await;
    let code = app_code(&secret, clock.now_millis());
    only_new
        .finish_second_factor(&token, &code, &c)
        .await
        .unwrap();
}

#[test]
fn display_names_refuse_control_characters_even_where_trimming_would_drop_them() {
    let email = crate::model::accounts::Email::parse("ada@example.com").unwrap();
    assert_eq!(display_name_for(None, &email).unwrap(), "ada");
    assert_eq!(display_name_for(Some("  "), &email).unwrap(), "ada");
    assert_eq!(
        display_name_for(Some(" Ada L. "), &email).unwrap(),
        "Ada L."
    );
    let blank = " ".repeat(101);
    for bad in ["\r", "Ada\n", "\u{c}Ada", &blank] {
        assert!(display_name_for(Some(bad), &email).is_err(), "{bad:?}");
    }
}
