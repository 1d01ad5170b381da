//! Outgoing email through an outbox: messages are written in the same
//! transaction as the change that causes them, and a background job hands them
//! to a [`Mailer`], retrying with backoff. Delivery is at least once: a message
//! whose removal fails after sending is sent again.

use async_trait::async_trait;
use gatehouse_storage::{RangeOptions, Store, Tx, TxError};

pub use crate::model::email::{DeliveryStatus, OutboxMessage};
use crate::{Env, Error, Result, keyspace};

/// After this many failed attempts a message is kept as `failed` and not retried.
pub const MAX_ATTEMPTS: u32 = 8;
/// Messages looked at by one drain.
const BATCH: usize = 50;

/// Something that delivers one message (SMTP, or the log in development).
#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, to: &str, subject: &str, body: &str) -> std::result::Result<(), String>;
}

/// Queues a message inside `tx`, so it goes out only if `tx` commits.
pub async fn enqueue(
    tx: &Tx,
    env: &Env,
    to: &str,
    subject: &str,
    body: &str,
) -> std::result::Result<(), TxError<Error>> {
    let message = OutboxMessage {
        id: env.ids.next_id(),
        to: to.to_string(),
        subject: subject.to_string(),
        body: body.to_string(),
        created_at: env.clock.now(),
        status: DeliveryStatus::Pending,
        attempts: 0,
        next_attempt_at_ms: 0,
        last_error: None,
    };
    keyspace::outbox_message(message.id).put(tx, &message).await
}

pub struct Outbox {
    store: Store,
    env: Env,
}

/// What one drain did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub sent: usize,
    pub retried: usize,
    pub given_up: usize,
}

/// How the outbox is doing, from its oldest [`Outbox::STATUS_WINDOW`] messages.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct OutboxStatus {
    /// Messages not yet tried.
    pub waiting: usize,
    /// Messages tried and failed, still being retried.
    pub retrying: usize,
    /// Messages given up on.
    pub failed: usize,
}

impl OutboxStatus {
    /// Mail is not going out: some message failed at least once.
    pub fn stuck(&self) -> bool {
        self.retrying + self.failed > 0
    }
}

impl Outbox {
    /// How many messages [`Self::status`] looks at.
    pub const STATUS_WINDOW: usize = 1000;

    /// Counts the oldest messages by state (bounded: one page).
    pub async fn status(&self) -> Result<OutboxStatus> {
        let mut status = OutboxStatus::default();
        for message in self.pending().await? {
            match (message.status, message.attempts) {
                (DeliveryStatus::Failed, _) => status.failed += 1,
                (DeliveryStatus::Pending, 0) => status.waiting += 1,
                (DeliveryStatus::Pending, _) => status.retrying += 1,
            }
        }
        Ok(status)
    }

    pub fn new(store: Store, env: Env) -> Self {
        Outbox { store, env }
    }

    /// Sends the messages that are due, oldest first.
    pub async fn drain(&self, mailer: &dyn Mailer) -> Result<Drained> {
        let now = self.env.clock.now_millis();
        let page = self
            .store
            .read_range(&keyspace::outbox(), RangeOptions::limit(BATCH))
            .await?;
        let due: Vec<OutboxMessage> = crate::codec::decode_values::<OutboxMessage>(&page.entries)?
            .into_iter()
            .filter(|m| m.status == DeliveryStatus::Pending && m.next_attempt_at_ms <= now)
            .collect();
        let mut drained = Drained::default();
        for message in due {
            let outcome = mailer
                .send(&message.to, &message.subject, &message.body)
                .await;
            let key = keyspace::outbox_message(message.id);
            let updated = match outcome {
                Ok(()) => {
                    drained.sent += 1;
                    None
                }
                Err(error) => {
                    let attempts = message.attempts + 1;
                    let status = if attempts >= MAX_ATTEMPTS {
                        drained.given_up += 1;
                        tracing::error!(message_id = %message.id, %error, "giving up on email");
                        DeliveryStatus::Failed
                    } else {
                        drained.retried += 1;
                        tracing::warn!(message_id = %message.id, %error, attempts, "email delivery failed; will retry");
                        DeliveryStatus::Pending
                    };
                    // 30 s, 1 min, 2 min, … between attempts.
                    let backoff = 30_000i64 << (attempts - 1).min(10);
                    Some(OutboxMessage {
                        attempts,
                        status,
                        next_attempt_at_ms: now + backoff,
                        last_error: Some(error.chars().take(500).collect()),
                        ..message
                    })
                }
            };
            self.store
                .run(|tx| {
                    let (key, updated) = (&key, &updated);
                    async move {
                        match updated {
                            None => key.clear(&tx).await,
                            Some(m) => key.put(&tx, m).await,
                        }
                    }
                })
                .await?;
        }
        Ok(drained)
    }

    /// Every message still in the outbox (pending or failed), oldest first.
    pub async fn pending(&self) -> Result<Vec<OutboxMessage>> {
        let page = self
            .store
            .read_range(
                &keyspace::outbox(),
                RangeOptions::limit(Self::STATUS_WINDOW),
            )
            .await?;
        crate::codec::decode_values(&page.entries)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_storage::memory::MemoryEngine;
    use parking_lot::Mutex;

    use super::*;
    use crate::env::{ManualClock, SeededRandom};
    use crate::id::Snowflake;

    /// Fails the first `failures` sends, then records.
    struct Flaky {
        failures: Mutex<u32>,
        sent: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Mailer for Flaky {
        async fn send(&self, to: &str, _: &str, _: &str) -> std::result::Result<(), String> {
            let mut failures = self.failures.lock();
            if *failures > 0 {
                *failures -= 1;
                return Err("421 try later".into());
            }
            self.sent.lock().push(to.to_string());
            Ok(())
        }
    }

    #[tokio::test]
    async fn messages_are_sent_once_and_retried_with_backoff() {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let env = Env {
            ids: Arc::new(Snowflake::new(1, clock.clone()).unwrap()),
            clock: clock.clone(),
            random: Arc::new(SeededRandom::new(1)),
        };
        let store = Store::new(Arc::new(MemoryEngine::new()));
        let outbox = Outbox::new(store.clone(), env.clone());
        // A message queued by an aborted transaction never exists.
        let _ = store
            .run(|tx| {
                let env = &env;
                async move {
                    enqueue(&tx, env, "ghost@example.com", "s", "b").await?;
                    Err::<(), _>(TxError::Abort(Error::invalid_input("changed my mind")))
                }
            })
            .await;
        store
            .run(|tx| {
                let env = &env;
                async move { enqueue(&tx, env, "ada@example.com", "s", "b").await }
            })
            .await
            .unwrap();
        let mailer = Flaky {
            failures: Mutex::new(1),
            sent: Mutex::new(Vec::new()),
        };
        assert_eq!(
            outbox.drain(&mailer).await.unwrap(),
            Drained {
                sent: 0,
                retried: 1,
                given_up: 0
            }
        );
        // Not due yet.
        assert_eq!(outbox.drain(&mailer).await.unwrap(), Drained::default());
        clock.advance(30_000);
        assert_eq!(outbox.drain(&mailer).await.unwrap().sent, 1);
        assert_eq!(*mailer.sent.lock(), vec!["ada@example.com"]);
        assert!(outbox.pending().await.unwrap().is_empty());

        // A message that always fails is given up after MAX_ATTEMPTS.
        store
            .run(|tx| {
                let env = &env;
                async move { enqueue(&tx, env, "bounce@example.com", "s", "b").await }
            })
            .await
            .unwrap();
        let mailer = Flaky {
            failures: Mutex::new(100),
            sent: Mutex::new(Vec::new()),
        };
        for _ in 0..MAX_ATTEMPTS {
            outbox.drain(&mailer).await.unwrap();
            clock.advance(60 * 60 * 1000 * 24);
        }
        let left = outbox.pending().await.unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].status, left[0].attempts),
            (DeliveryStatus::Failed, MAX_ATTEMPTS)
        );
        assert_eq!(outbox.drain(&mailer).await.unwrap(), Drained::default());
    }
}
