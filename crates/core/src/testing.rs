//! Shared fixtures for core's unit tests: a controlled environment and
//! accounts written straight to the store (no password hashing).

use std::sync::Arc;

use gatehouse_storage::{Store, TxError};

use crate::env::{ManualClock, SeededRandom};
use crate::id::Snowflake;
use crate::model::accounts::{Role, User};
use crate::{Env, Error, Id, keyspace};

/// An environment with a manual clock at a fixed start, for worker `worker`.
pub fn env(worker: u16, seed: u64) -> (Env, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(1_800_000_000_000));
    let env = Env {
        ids: Arc::new(Snowflake::new(worker, clock.clone()).unwrap()),
        clock: clock.clone(),
        random: Arc::new(SeededRandom::new(seed)),
    };
    (env, clock)
}

/// Stores an active account `<name>@example.com` holding `roles`, with a
/// personal organization when it holds `user` (as registration makes one).
pub async fn user(store: &Store, env: &Env, name: &str, roles: &[Role]) -> User {
    let now = env.clock.now();
    let user = User::new(
        env.ids.next_id(),
        format!("{name}@example.com"),
        name.to_string(),
        roles.iter().copied().collect(),
        now,
    );
    let org = roles
        .contains(&Role::User)
        .then(|| (env.ids.next_id(), env.ids.next_id()));
    store
        .run(|tx| {
            let user = &user;
            async move {
                keyspace::user(user.id).put(&tx, user).await?;
                keyspace::user_by_email(&user.email)
                    .put(&tx, &crate::model::accounts::UserRef { id: user.id })
                    .await?;
                if let Some(org) = org {
                    crate::tenancy::create_personal_org(&tx, org, user, now).await?;
                }
                Ok::<_, TxError<Error>>(())
            }
        })
        .await
        .unwrap();
    user
}

/// The personal organization of `user_id`.
pub async fn personal_org(store: &Store, user_id: Id) -> Id {
    store
        .run(|tx| async move {
            for entry in crate::codec::read_all::<crate::model::tenancy::UserOrgRef>(
                &tx,
                &keyspace::user_orgs(user_id),
            )
            .await?
            {
                if let Some(org) = keyspace::org(entry.org_id).get(&tx).await?
                    && org.personal
                {
                    return Ok(org.id);
                }
            }
            Err(TxError::Abort(Error::not_found("no personal organization")))
        })
        .await
        .unwrap()
}

/// The token in the newest outbox message to `to` (a verification, reset or
/// invitation email: each carries a `token: …` line).
pub async fn mailed_token(store: &Store, env: &Env, to: &str) -> String {
    let outbox = crate::email::Outbox::new(store.clone(), env.clone());
    let message = outbox
        .pending()
        .await
        .unwrap()
        .into_iter()
        .rev()
        .find(|m| m.to == to)
        .expect("a message to this address");
    message
        .body
        .lines()
        .find_map(|l| l.strip_prefix("token: "))
        .expect("a token line")
        .to_string()
}
