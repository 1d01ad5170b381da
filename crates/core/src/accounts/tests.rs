//! Tests of the account service on the memory engine with a controlled clock.

use std::sync::Arc;

use gatehouse_storage::memory::MemoryEngine;

use super::sessions::{ClientInfo, SessionKind};
use super::*;
use crate::blocking::InlinePool;
use crate::env::{ManualClock, SeededRandom};
use crate::id::Snowflake;

fn service() -> AccountService {
    service_with_clock(Arc::new(ManualClock::new(1_800_000_000_000)))
}

fn service_with_clock(clock: Arc<ManualClock>) -> AccountService {
    let env = Env {
        ids: Arc::new(Snowflake::new(1, clock.clone()).unwrap()),
        clock,
        random: Arc::new(SeededRandom::new(9)),
    };
    AccountService::new(
        Store::new(Arc::new(MemoryEngine::new())),
        env,
        Arc::new(InlinePool),
        AccountSettings {
            jwt_secret: vec![3; 32],
            jwt_ttl_secs: 3600,
            registration_enabled: true,
            password_policy: PasswordPolicy::default(),
            sessions: SessionPolicy::default(),
        },
    )
}

const PASSWORD: &str = "correct horse battery staple";

#[tokio::test]
async fn register_then_login_by_email_or_username() {
    let s = service();
    s.register("Ada@Example.com", PASSWORD, Some("ada"), Some("Ada L."))
        .await
        .unwrap();
    let (user, token) = s.login("ada@example.COM", PASSWORD).await.unwrap();
    assert_eq!(user.email, "Ada@Example.com");
    assert_eq!(user.roles, BTreeSet::from([Role::User]));
    let (same, claims) = s.authenticate_token(&token).await.unwrap();
    assert_eq!(same.id, user.id);
    assert_eq!(claims.username.as_deref(), Some("ada"));
    assert_eq!(s.login("ADA", PASSWORD).await.unwrap().0.id, user.id);
}

#[tokio::test]
async fn failed_sign_ins_are_indistinguishable() {
    let s = service();
    s.register("ada@example.com", PASSWORD, None, None)
        .await
        .unwrap();
    let unknown = s.login("nobody@example.com", PASSWORD).await.unwrap_err();
    let wrong = s
        .login("ada@example.com", "wrong password!")
        .await
        .unwrap_err();
    let garbage = s
        .login("not an email or name!", PASSWORD)
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
    s.register("ada@example.com", PASSWORD, None, None)
        .await
        .unwrap();
    // Same answer, and the first password still works.
    s.register("ADA@example.com", "another good password", None, None)
        .await
        .unwrap();
    assert!(s.login("ada@example.com", PASSWORD).await.is_ok());
    assert!(
        s.login("ada@example.com", "another good password")
            .await
            .is_err()
    );
    // Bad input is refused before anything happens.
    assert_eq!(
        s.register("ada", PASSWORD, None, None)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::InvalidInput
    );
    assert_eq!(
        s.register("bob@example.com", "password1", None, None)
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
    assert!(s.login("root@example.com", &generated).await.is_ok());
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
    s.register("ada@example.com", PASSWORD, None, None)
        .await
        .unwrap();
    let (user, _) = s.login("ada@example.com", PASSWORD).await.unwrap();
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
    s.login("ada@example.com", PASSWORD).await.unwrap();
    let upgraded = s.get_user(id).await.unwrap().password_hash.unwrap();
    assert!(upgraded.contains("m=19456,t=2,p=1"), "{upgraded}");
}

#[tokio::test]
async fn disabled_accounts_cannot_sign_in_or_use_tokens() {
    let s = service();
    s.register("ada@example.com", PASSWORD, None, None)
        .await
        .unwrap();
    let (user, token) = s.login("ada@example.com", PASSWORD).await.unwrap();
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
        s.login("ada@example.com", PASSWORD)
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
    s.register("ada@example.com", PASSWORD, None, None)
        .await
        .unwrap();
    let (_, session, token) = s
        .login_session(
            "ada@example.com",
            PASSWORD,
            SessionKind::Web,
            ClientInfo::default(),
        )
        .await
        .unwrap();
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
    let (_, _, busy) = s
        .login_session(
            "ada@example.com",
            PASSWORD,
            SessionKind::Cli,
            ClientInfo::default(),
        )
        .await
        .unwrap();
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
    s.register("ada@example.com", PASSWORD, None, None)
        .await
        .unwrap();
    let mut tokens = Vec::new();
    for _ in 0..3 {
        let (user, session, token) = s
            .login_session(
                "ada@example.com",
                PASSWORD,
                SessionKind::Web,
                ClientInfo::default(),
            )
            .await
            .unwrap();
        tokens.push((user.id, session.id, token));
    }
    let user_id = tokens[0].0;
    assert_eq!(s.list_sessions(user_id).await.unwrap().len(), 3);

    s.revoke_session(user_id, tokens[0].1).await.unwrap();
    assert!(s.authenticate_session(&tokens[0].2).await.is_err());
    assert_eq!(
        s.revoke_session(user_id, tokens[0].1)
            .await
            .unwrap_err()
            .code(),
        ErrorCode::NotFound
    );

    s.logout(&tokens[1].2).await.unwrap();
    assert!(s.authenticate_session(&tokens[1].2).await.is_err());

    // A fourth session; changing the password from the third keeps only it.
    let (_, _, other) = s
        .login_session(
            "ada@example.com",
            PASSWORD,
            SessionKind::Cli,
            ClientInfo::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        s.change_password(user_id, "wrong current", "a brand new passphrase", None)
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
    )
    .await
    .unwrap();
    assert!(s.authenticate_session(&other).await.is_err());
    assert!(s.authenticate_session(&tokens[2].2).await.is_ok());
    assert!(s.login("ada@example.com", PASSWORD).await.is_err());
    assert!(
        s.login("ada@example.com", "a brand new passphrase")
            .await
            .is_ok()
    );
}
