//! Cluster coordination records: worker-ID leases and the leader lease.

use serde::{Deserialize, Serialize};

use crate::codec::record;

/// Who holds a worker ID, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerLease {
    pub instance_id: String,
    pub expires_at_ms: i64,
}

record!(WorkerLease, "worker lease", no_feed);

/// Who leads, with which fencing token, and until when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaderLease {
    pub instance_id: String,
    /// Grows by one with every change of leader; work done under an older token
    /// is refused by [`ClusterService::check_fencing_token`](crate::services::cluster::ClusterService::check_fencing_token).
    pub fencing_token: u64,
    pub expires_at_ms: i64,
}

record!(LeaderLease, "leader lease", no_feed);
