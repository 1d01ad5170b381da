//! Instances that share one store coordinate through it: each leases a unique
//! snowflake worker ID, and one of them holds a leader lease with a fencing
//! token and runs the background jobs.
//!
//! Leases carry an expiry in wall-clock milliseconds, so instances' clocks must
//! agree to well within the lease time (NTP gives milliseconds; leases last
//! tens of seconds). A lease not renewed before its expiry may be taken over.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use gatehouse_storage::{RangeOptions, Store, TxError};
use parking_lot::RwLock;
use serde::Serialize;

use crate::env::{Clock, Random};
use crate::id::MAX_WORKER_ID;
pub use crate::model::cluster::{LeaderLease, WorkerLease};
use crate::{Error, ErrorCode, Result, keyspace};

/// The last run of one background job on this instance.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobStatus {
    pub name: String,
    pub last_run: Option<DateTime<Utc>>,
    pub last_duration_ms: Option<u64>,
    /// `ok: …` or `error: …`.
    pub last_outcome: Option<String>,
    pub runs: u64,
    pub failures: u64,
}

/// What this instance is in the cluster.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NodeStatus {
    pub instance_id: String,
    pub worker_id: Option<u16>,
    pub leader: bool,
    pub fencing_token: Option<u64>,
    pub jobs: Vec<JobStatus>,
}

/// An instance as the cluster's leases show it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InstanceView {
    pub instance_id: String,
    /// Holds the leader lease.
    pub leader: bool,
    /// This instance is the one answering.
    pub this: bool,
    /// When its worker-ID lease runs out unless renewed (none on a store of
    /// its own).
    pub lease_expires_at: Option<DateTime<Utc>>,
}

pub struct ClusterService {
    store: Store,
    clock: Arc<dyn Clock>,
    instance_id: String,
    lease_ms: i64,
    status: RwLock<NodeStatus>,
}

impl ClusterService {
    /// `lease_ms`: how long a lease lasts without renewal.
    pub fn new(store: Store, clock: Arc<dyn Clock>, random: &dyn Random, lease_ms: i64) -> Self {
        let mut bytes = [0u8; 8];
        random.fill(&mut bytes);
        let instance_id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        ClusterService {
            store,
            clock,
            status: RwLock::new(NodeStatus {
                instance_id: instance_id.clone(),
                worker_id: None,
                leader: false,
                fencing_token: None,
                jobs: Vec::new(),
            }),
            instance_id,
            lease_ms,
        }
    }

    pub fn instance_id(&self) -> &str {
        &self.instance_id
    }

    /// Whether instances must coordinate (several may use the store at once).
    pub fn is_shared(&self) -> bool {
        self.store.is_shared()
    }

    pub fn status(&self) -> NodeStatus {
        self.status.read().clone()
    }

    /// Leases a worker ID: `preferred` if it is free (or refuses, naming the
    /// holder's expiry), otherwise the lowest free one.
    ///
    /// On a store only this process can open, there is nothing to coordinate
    /// with: the preferred ID (or 0) is taken as is, and this instance leads.
    #[tracing::instrument(skip(self))]
    pub async fn lease_worker_id(&self, preferred: Option<u16>) -> Result<u16> {
        if !self.is_shared() {
            let id = preferred.unwrap_or(0);
            let mut status = self.status.write();
            status.worker_id = Some(id);
            status.leader = true;
            status.fencing_token = Some(0);
            return Ok(id);
        }
        let now = self.clock.now_millis();
        let mine = WorkerLease {
            instance_id: self.instance_id.clone(),
            expires_at_ms: now + self.lease_ms,
        };
        let id = self
            .store
            .run(|tx| {
                let mine = &mine;
                async move {
                    let chosen = match preferred {
                        Some(id) => {
                            if let Some(held) = keyspace::worker_lease(id).get(&tx).await?
                                && held.instance_id != mine.instance_id
                                && held.expires_at_ms > now
                            {
                                return Err(TxError::Abort(Error::new(
                                    ErrorCode::Conflict,
                                    format!(
                                        "worker ID {id} is held by another live instance; its lease expires in {} ms",
                                        held.expires_at_ms - now
                                    ),
                                )));
                            }
                            id
                        }
                        None => {
                            let page = tx
                                .get_range(&keyspace::worker_leases(), RangeOptions::default())
                                .await?;
                            let mut taken = vec![false; usize::from(MAX_WORKER_ID) + 1];
                            for (key, value) in &page.entries {
                                let lease: WorkerLease =
                                    crate::codec::decode(value).map_err(TxError::Abort)?;
                                let id: (String, String, u16) =
                                    gatehouse_storage::tuple::unpack(key).map_err(|e| {
                                        TxError::Abort(Error::internal(format!("worker lease key: {e}")))
                                    })?;
                                if lease.expires_at_ms > now {
                                    taken[usize::from(id.2)] = true;
                                }
                            }
                            let free = taken.iter().position(|t| !t).ok_or_else(|| {
                                TxError::Abort(Error::new(
                                    ErrorCode::Unavailable,
                                    "all 1024 worker IDs are leased by live instances",
                                ))
                            })?;
                            free as u16
                        }
                    };
                    keyspace::worker_lease(chosen).put(&tx, mine).await?;
                    Ok(chosen)
                }
            })
            .await?;
        self.status.write().worker_id = Some(id);
        tracing::info!(worker_id = id, instance_id = %self.instance_id, "leased worker ID");
        Ok(id)
    }

    /// Extends this instance's worker-ID lease. Fails with `conflict` if another
    /// instance took it (this one missed its renewals): IDs could then repeat,
    /// so the caller must stop making IDs.
    pub async fn renew_worker_id(&self, id: u16) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let now = self.clock.now_millis();
        let mine = WorkerLease {
            instance_id: self.instance_id.clone(),
            expires_at_ms: now + self.lease_ms,
        };
        self.store
            .run(|tx| {
                let mine = &mine;
                async move {
                    let key = keyspace::worker_lease(id);
                    match key.get(&tx).await? {
                        Some(held) if held.instance_id != mine.instance_id => {
                            Err(TxError::Abort(Error::conflict(format!(
                                "worker ID {id} was taken over by instance {}",
                                held.instance_id
                            ))))
                        }
                        _ => key.put(&tx, mine).await,
                    }
                }
            })
            .await?;
        Ok(())
    }

    /// Gives the worker ID back (on a clean shutdown).
    pub async fn release_worker_id(&self, id: u16) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let me = self.instance_id.as_str();
        self.store
            .run(|tx| async move {
                let key = keyspace::worker_lease(id);
                if key.get(&tx).await?.is_some_and(|l| l.instance_id == me) {
                    key.clear(&tx).await?;
                }
                Ok::<_, TxError<Error>>(())
            })
            .await?;
        Ok(())
    }

    /// Takes or keeps the leader lease if it is free, expired or ours. Returns
    /// the fencing token while this instance leads.
    pub async fn campaign(&self) -> Result<Option<u64>> {
        if !self.is_shared() {
            return Ok(Some(0));
        }
        let now = self.clock.now_millis();
        let me = self.instance_id.as_str();
        let lease_ms = self.lease_ms;
        let token = self
            .store
            .run(|tx| async move {
                let key = keyspace::leader_lease();
                let current = key.get(&tx).await?;
                let token = match &current {
                    Some(l) if l.instance_id == me => l.fencing_token,
                    Some(l) if l.expires_at_ms > now => return Ok(None),
                    Some(l) => l.fencing_token + 1,
                    None => 1,
                };
                let lease = LeaderLease {
                    instance_id: me.to_string(),
                    fencing_token: token,
                    expires_at_ms: now + lease_ms,
                };
                key.put(&tx, &lease).await?;
                Ok::<_, TxError<Error>>(Some(token))
            })
            .await?;
        let mut status = self.status.write();
        if token.is_some() && !status.leader {
            tracing::info!(fencing_token = ?token, "became leader");
        } else if token.is_none() && status.leader {
            tracing::warn!("lost leadership");
        }
        status.leader = token.is_some();
        status.fencing_token = token;
        Ok(token)
    }

    /// Gives up leadership (on a clean shutdown) so another instance takes over
    /// at once instead of after the lease expires.
    pub async fn resign(&self) -> Result<()> {
        if !self.is_shared() {
            return Ok(());
        }
        let me = self.instance_id.as_str();
        self.store
            .run(|tx| async move {
                let key = keyspace::leader_lease();
                if let Some(mut lease) = key.get(&tx).await?
                    && lease.instance_id == me
                {
                    // Keep the token so the next leader's is higher.
                    lease.expires_at_ms = 0;
                    key.put(&tx, &lease).await?;
                }
                Ok::<_, TxError<Error>>(())
            })
            .await?;
        let mut status = self.status.write();
        status.leader = false;
        status.fencing_token = None;
        Ok(())
    }

    /// Inside a job's transaction: aborts unless `token` is still the leader's,
    /// so a deposed leader's late writes are refused.
    pub async fn check_fencing_token(
        tx: &gatehouse_storage::Tx,
        token: u64,
    ) -> Result<(), TxError<Error>> {
        match keyspace::leader_lease().get(tx).await? {
            Some(lease) if lease.fencing_token != token => Err(TxError::Abort(Error::conflict(
                "this instance is no longer the leader",
            ))),
            _ => Ok(()),
        }
    }

    /// The live instances: those holding an unexpired worker-ID lease (on a
    /// shared store), or this one alone.
    pub async fn instances(&self) -> Result<Vec<InstanceView>> {
        let status = self.status();
        if !self.is_shared() {
            return Ok(vec![InstanceView {
                instance_id: status.instance_id,
                leader: status.leader,
                this: true,
                lease_expires_at: None,
            }]);
        }
        let now = self.clock.now_millis();
        let (leases, leader) = self
            .store
            .run(|tx| async move {
                let leases = crate::codec::read_all::<crate::model::cluster::WorkerLease>(
                    &tx,
                    &keyspace::worker_leases(),
                )
                .await?;
                let leader = keyspace::leader_lease().get(&tx).await?;
                Ok::<_, TxError<Error>>((leases, leader))
            })
            .await?;
        let leader = leader
            .filter(|l| l.expires_at_ms > now)
            .map(|l| l.instance_id);
        let mut found: Vec<InstanceView> = leases
            .into_iter()
            .filter(|l| l.expires_at_ms > now)
            .map(|l| InstanceView {
                leader: leader.as_deref() == Some(l.instance_id.as_str()),
                this: l.instance_id == status.instance_id,
                lease_expires_at: DateTime::from_timestamp_millis(l.expires_at_ms),
                instance_id: l.instance_id,
            })
            .collect();
        found.sort_by(|a, b| b.this.cmp(&a.this).then(a.instance_id.cmp(&b.instance_id)));
        Ok(found)
    }

    /// Records the outcome of a background job run, for `/ready` and `/metrics`.
    pub fn record_job(
        &self,
        name: &str,
        duration_ms: u64,
        outcome: std::result::Result<String, String>,
    ) {
        let now = self.clock.now();
        let mut status = self.status.write();
        let position = status.jobs.iter().position(|j| j.name == name);
        let index = position.unwrap_or_else(|| {
            status.jobs.push(JobStatus {
                name: name.to_string(),
                last_run: None,
                last_duration_ms: None,
                last_outcome: None,
                runs: 0,
                failures: 0,
            });
            status.jobs.len() - 1
        });
        let job = &mut status.jobs[index];
        job.last_run = Some(now);
        job.last_duration_ms = Some(duration_ms);
        job.runs += 1;
        job.last_outcome = Some(match outcome {
            Ok(summary) => format!("ok: {summary}"),
            Err(error) => {
                job.failures += 1;
                format!("error: {error}")
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_storage::KvEngine;
    use gatehouse_storage::engine::EngineTransaction;
    use gatehouse_storage::memory::MemoryEngine;

    use super::*;
    use crate::env::{ManualClock, SeededRandom};

    /// The memory engine, presented as shared so that coordination runs.
    struct Shared(MemoryEngine);

    #[async_trait::async_trait]
    impl KvEngine for Shared {
        fn name(&self) -> &'static str {
            "shared-memory"
        }
        fn is_shared(&self) -> bool {
            true
        }
        async fn begin(
            &self,
        ) -> std::result::Result<Box<dyn EngineTransaction>, gatehouse_storage::StorageError>
        {
            self.0.begin().await
        }
    }

    fn node(store: &Store, clock: &Arc<ManualClock>, seed: u64) -> ClusterService {
        ClusterService::new(
            store.clone(),
            clock.clone(),
            &SeededRandom::new(seed),
            30_000,
        )
    }

    #[tokio::test]
    async fn worker_ids_are_unique_while_leases_live() {
        let store = Store::new(Arc::new(Shared(MemoryEngine::new())));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let a = node(&store, &clock, 1);
        let b = node(&store, &clock, 2);
        let c = node(&store, &clock, 3);
        assert_eq!(a.lease_worker_id(None).await.unwrap(), 0);
        assert_eq!(b.lease_worker_id(None).await.unwrap(), 1);
        let refused = c.lease_worker_id(Some(0)).await.unwrap_err();
        assert_eq!(refused.code(), ErrorCode::Conflict);
        assert!(
            refused.message().contains("worker ID 0"),
            "{}",
            refused.message()
        );
        assert_eq!(c.lease_worker_id(Some(7)).await.unwrap(), 7);

        // A renews, B does not: after 30 s B's ID is free again, A's is not.
        clock.advance(20_000);
        a.renew_worker_id(0).await.unwrap();
        clock.advance(15_000);
        let d = node(&store, &clock, 4);
        assert_eq!(d.lease_worker_id(None).await.unwrap(), 1);
        assert_eq!(
            b.renew_worker_id(1).await.unwrap_err().code(),
            ErrorCode::Conflict
        );
        a.release_worker_id(0).await.unwrap();
        assert_eq!(
            node(&store, &clock, 5)
                .lease_worker_id(Some(0))
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn one_leader_at_a_time_with_growing_fencing_tokens() {
        let store = Store::new(Arc::new(Shared(MemoryEngine::new())));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let a = node(&store, &clock, 1);
        let b = node(&store, &clock, 2);
        assert_eq!(a.campaign().await.unwrap(), Some(1));
        assert_eq!(b.campaign().await.unwrap(), None);
        assert!(a.status().leader && !b.status().leader);

        // A stops renewing; once its lease expires B takes over with token 2.
        clock.advance(30_001);
        assert_eq!(b.campaign().await.unwrap(), Some(2));
        assert_eq!(a.campaign().await.unwrap(), None);
        let stale = store
            .run(|tx| async move { ClusterService::check_fencing_token(&tx, 1).await })
            .await;
        assert!(matches!(stale, Err(TxError::Abort(e)) if e.code() == ErrorCode::Conflict));

        // A clean resignation hands over at once, and the token still grows.
        b.resign().await.unwrap();
        assert_eq!(a.campaign().await.unwrap(), Some(3));
    }

    #[tokio::test]
    async fn a_private_store_needs_no_coordination() {
        let store = Store::new(Arc::new(MemoryEngine::new()));
        let clock = Arc::new(ManualClock::new(1_000_000));
        let a = node(&store, &clock, 1);
        assert_eq!(a.lease_worker_id(Some(9)).await.unwrap(), 9);
        assert_eq!(a.campaign().await.unwrap(), Some(0));
        a.record_job("trim", 3, Ok("2 removed".into()));
        a.record_job("trim", 4, Err("boom".into()));
        let job = &a.status().jobs[0];
        assert_eq!((job.runs, job.failures), (2, 1));
        assert_eq!(job.last_outcome.as_deref(), Some("error: boom"));
    }
}
