//! Runs this instance's part in the cluster: renews its worker-ID lease,
//! campaigns for leadership, and — while leader — runs the background jobs.
//! The rules (who may hold what) live in `gatehouse_core::services::cluster`;
//! this module only supplies the timers.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::ErrorCode;
use gatehouse_core::email::Mailer;
use gatehouse_core::services::Services;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a job run returns: a short summary, or an error message.
pub type JobFuture = Pin<Box<dyn Future<Output = Result<String, String>> + Send>>;

/// A named periodic job, run only on the leader. It gets the leader's fencing
/// token so that its writes can be refused once another instance leads.
#[derive(Clone)]
pub struct Job {
    pub name: &'static str,
    pub every: Duration,
    pub run: Arc<dyn Fn(u64) -> JobFuture + Send + Sync>,
}

/// The jobs of this release.
pub fn jobs(
    services: &Services,
    usage: &crate::config::UsageConfig,
    (tokens, vaults, policy_engine): (
        &crate::config::TokensConfig,
        &crate::config::VaultsConfig,
        Option<Arc<dyn gatehouse_core::vaults::PolicyEngine>>,
    ),
    change_feed_keep: u64,
    mailer: Arc<dyn Mailer>,
    outbox_every: Duration,
) -> Vec<Job> {
    let changes = services.changes.clone();
    let outbox = services.outbox.clone();
    let (usage_service, audit) = (services.usage.clone(), services.audit.clone());
    let (log_days, audit_days) = (usage.request_log_retention_days, usage.audit_retention_days);
    let retention = Job {
        name: "retention",
        every: Duration::from_secs(3600),
        run: Arc::new(move |_token| {
            let (usage, audit) = (usage_service.clone(), audit.clone());
            Box::pin(async move {
                let logs = if log_days > 0 {
                    usage.trim_logs(log_days).await.map_err(|e| e.to_string())?
                } else {
                    0
                };
                let events = if audit_days > 0 {
                    audit.trim(audit_days).await.map_err(|e| e.to_string())?
                } else {
                    0
                };
                Ok(format!(
                    "deleted {logs} request logs and {events} audit events"
                ))
            })
        }),
    };
    let email = Job {
        name: "email_outbox",
        every: outbox_every,
        run: Arc::new(move |_token| {
            let (outbox, mailer) = (outbox.clone(), mailer.clone());
            Box::pin(async move {
                outbox
                    .drain(mailer.as_ref())
                    .await
                    .map(|d| {
                        format!(
                            "sent {}, retrying {}, gave up {}",
                            d.sent, d.retried, d.given_up
                        )
                    })
                    .map_err(|e| e.to_string())
            })
        }),
    };
    let token_service = services.tokens.clone();
    let rotation_days = tokens.signing_key_rotation_days;
    let signing_keys = Job {
        name: "signing_keys",
        every: Duration::from_secs(3600),
        run: Arc::new(move |_token| {
            let tokens = token_service.clone();
            Box::pin(async move {
                let trimmed = tokens
                    .trim_spent_assertions()
                    .await
                    .map_err(|e| e.to_string())?;
                let rotated = if rotation_days > 0 {
                    tokens
                        .rotate_if_older_than(rotation_days)
                        .await
                        .map_err(|e| e.to_string())?
                } else {
                    None
                };
                Ok(match rotated {
                    Some(kid) => {
                        format!("trimmed {trimmed} spent assertion IDs; new signing key {kid}")
                    }
                    None => format!("trimmed {trimmed} spent assertion IDs"),
                })
            })
        }),
    };
    let accounts = services.accounts.clone();
    let login_throttle = Job {
        name: "login_throttle",
        every: Duration::from_secs(600),
        run: Arc::new(move |_token| {
            let accounts = accounts.clone();
            Box::pin(async move {
                let counters = accounts
                    .prune_login_failures()
                    .await
                    .map_err(|e| e.to_string())?;
                // Single sign-ons whose callback never came.
                let flows = accounts
                    .prune_sso_flows()
                    .await
                    .map_err(|e| e.to_string())?;
                // Passkey ceremonies and second-factor steps nobody finished.
                let challenges = accounts
                    .prune_challenges()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "pruned {counters} expired sign-in failure counters, {flows} abandoned single sign-ons and {challenges} abandoned sign-in challenges"
                ))
            })
        }),
    };
    let idempotency = services.idempotency.clone();
    let idempotent_writes = Job {
        name: "idempotency",
        every: Duration::from_secs(600),
        run: Arc::new(move |_token| {
            let idempotency = idempotency.clone();
            Box::pin(async move {
                idempotency
                    .prune()
                    .await
                    .map(|n| format!("pruned {n} idempotent writes older than 24 hours"))
                    .map_err(|e| e.to_string())
            })
        }),
    };
    let removals = services.clone();
    let purge = Job {
        name: "purge",
        every: Duration::from_secs(60),
        run: Arc::new(move |_token| {
            let services = removals.clone();
            Box::pin(async move {
                // Deleted organizations', accounts', projects' and chats'
                // records, a page per transaction: what deletions and stopped
                // instances left.
                services
                    .finish_removals()
                    .await
                    .map(|n| format!("removed {n} records of deleted organizations, accounts, projects and chats"))
                    .map_err(|e| e.to_string())
            })
        }),
    };
    let records = (services.usage.clone(), services.audit.clone());
    let records_layout = Job {
        name: "records_layout",
        every: Duration::from_secs(60),
        run: Arc::new(move |_token| {
            let (usage, audit) = records.clone();
            Box::pin(async move {
                // What earlier releases stored: logs with bodies inline and no
                // index entries, rollups by (day, user, key, model), rollups
                // of one counter per field, audit events without index
                // entries. Resumes where it stopped; nothing to do once moved.
                let logs = usage.index_old_logs().await.map_err(|e| e.to_string())?;
                let counters = usage.move_old_rollups().await.map_err(|e| e.to_string())?
                    + usage
                        .fold_rollup_fields()
                        .await
                        .map_err(|e| e.to_string())?;
                let events = audit.index_old_events().await.map_err(|e| e.to_string())?;
                let weeks = usage
                    .start_weekly_rollups()
                    .await
                    .map_err(|e| e.to_string())?;
                Ok(format!(
                    "indexed {logs} request logs and {events} audit events of earlier releases, moved {counters} rollup counters{}",
                    if weeks {
                        ", started weekly usage rows"
                    } else {
                        ""
                    }
                ))
            })
        }),
    };
    let mut jobs = vec![
        email,
        records_layout,
        retention,
        signing_keys,
        login_throttle,
        idempotent_writes,
        purge,
        Job {
            name: "change_feed_trim",
            every: Duration::from_secs(60),
            run: Arc::new(move |_token| {
                let changes = changes.clone();
                Box::pin(async move {
                    changes
                        .trim(change_feed_keep)
                        .await
                        .map(|n| format!("trimmed {n} records"))
                        .map_err(|e| e.to_string())
                })
            }),
        },
    ];
    if let Some(engine) = policy_engine {
        let vault_service = services.vaults.clone();
        jobs.push(Job {
            name: "vault_sync",
            every: Duration::from_secs(vaults.sync_interval_secs),
            run: Arc::new(move |_token| {
                let (vaults, engine) = (vault_service.clone(), engine.clone());
                Box::pin(async move {
                    vaults
                        .sync_pending(engine.as_ref())
                        .await
                        .map(|r| format!("synced {}, failed {}", r.synced, r.failed))
                        .map_err(|e| e.to_string())
                })
            }),
        });
    }
    jobs
}

/// Why the driver stopped the server.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("lost the lease on worker ID {0} to another instance; stopped to avoid duplicate IDs")]
    LostWorkerId(u16),
}

/// Drives leases and jobs until `stop` is cancelled; cancels `stop` itself if
/// this instance loses its worker ID. Releases the worker ID and resigns
/// leadership on the way out, so others take over at once.
pub async fn drive(
    services: Services,
    worker_id: u16,
    lease: Duration,
    jobs: Vec<Job>,
    stop: CancellationToken,
) -> Result<(), DriverError> {
    let cluster = services.cluster.clone();
    let tick = lease / 3;
    let mut due: Vec<Instant> = jobs.iter().map(|_| Instant::now()).collect();
    let mut running: Vec<Option<JoinHandle<()>>> = jobs.iter().map(|_| None).collect();
    let mut outcome = Ok(());
    loop {
        match cluster.renew_worker_id(worker_id).await {
            Err(e) if e.code() == ErrorCode::Conflict => {
                tracing::error!(worker_id, error = %e, "lost worker ID lease");
                outcome = Err(DriverError::LostWorkerId(worker_id));
                stop.cancel();
                break;
            }
            Err(e) => tracing::warn!(worker_id, error = %e, "could not renew worker ID lease"),
            Ok(()) => {}
        }
        match cluster.campaign().await {
            Ok(Some(token)) => {
                for (i, job) in jobs.iter().enumerate() {
                    let idle = running[i].as_ref().is_none_or(|h| h.is_finished());
                    if idle && Instant::now() >= due[i] {
                        due[i] = Instant::now() + job.every;
                        running[i] =
                            Some(tokio::spawn(run_job(services.clone(), job.clone(), token)));
                    }
                }
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "leader election failed"),
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(tick) => {}
        }
    }
    for handle in running.into_iter().flatten() {
        handle.abort();
    }
    if let Err(e) = cluster.resign().await {
        tracing::warn!(error = %e, "could not resign leadership");
    }
    if let Err(e) = cluster.release_worker_id(worker_id).await {
        tracing::warn!(error = %e, "could not release worker ID");
    }
    outcome
}

async fn run_job(services: Services, job: Job, token: u64) {
    let started = Instant::now();
    let outcome = (job.run)(token).await;
    let elapsed = started.elapsed().as_millis() as u64;
    match &outcome {
        Ok(summary) => tracing::info!(
            job = job.name,
            elapsed_ms = elapsed,
            summary,
            "job finished"
        ),
        Err(error) => tracing::error!(job = job.name, elapsed_ms = elapsed, error, "job failed"),
    }
    services.cluster.record_job(job.name, elapsed, outcome);
}
