//! The in-memory engine: for tests and `--ephemeral` runs. Nothing survives the process.

use std::sync::Arc;

use async_trait::async_trait;
use imbl::OrdMap;
use parking_lot::Mutex;

use crate::engine::{EngineTransaction, KvEngine};
use crate::occ::{
    ApplyTarget, CommitLog, Committer, LiveSnapshots, OccTransaction, Snapshot, WriteBuffer,
};
use crate::{KeyRange, StorageError};

type Map = OrdMap<Vec<u8>, Vec<u8>>;

struct State {
    data: Map,
    version: u64,
    log: CommitLog,
    live: Arc<LiveSnapshots>,
}

/// A serializable in-memory store. Snapshots are O(1) clones of a persistent map.
#[derive(Clone)]
pub struct MemoryEngine {
    state: Arc<Mutex<State>>,
}

impl MemoryEngine {
    pub fn new() -> Self {
        let live = Arc::new(LiveSnapshots::default());
        MemoryEngine {
            state: Arc::new(Mutex::new(State {
                data: Map::new(),
                version: 0,
                log: CommitLog::new(live.clone()),
                live,
            })),
        }
    }
}

impl Default for MemoryEngine {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl KvEngine for MemoryEngine {
    fn name(&self) -> &'static str {
        "memory"
    }

    async fn begin(&self) -> Result<Box<dyn EngineTransaction>, StorageError> {
        let (data, version, live) = {
            let state = self.state.lock();
            let live = state.live.open();
            (state.data.clone(), state.version, live)
        };
        Ok(Box::new(OccTransaction::new(
            MapSnapshot(data),
            version,
            Arc::new(self.clone()),
            live,
        )))
    }
}

#[async_trait]
impl Committer for MemoryEngine {
    async fn commit(
        &self,
        start_version: u64,
        reads: Vec<KeyRange>,
        writes: WriteBuffer,
    ) -> Result<(), StorageError> {
        let mut writes = writes;
        let mut state = self.state.lock();
        state.log.validate(start_version, &reads)?;
        let version = state.version + 1;
        writes.complete_stamps(version);
        // Apply to a copy so that a failure leaves the committed map untouched.
        let mut data = state.data.clone();
        writes.apply_to(&mut MapTarget(&mut data))?;
        state.data = data;
        state.version = version;
        state.log.record(version, &writes);
        Ok(())
    }
}

struct MapSnapshot(Map);

impl Snapshot for MapSnapshot {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.get(key).cloned())
    }

    fn scan(
        &self,
        range: &KeyRange,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError> {
        let iter = self.0.range(range.begin.clone()..range.end.clone());
        if reverse {
            for (k, v) in iter.rev() {
                if !visit(k, v) {
                    break;
                }
            }
        } else {
            for (k, v) in iter {
                if !visit(k, v) {
                    break;
                }
            }
        }
        Ok(())
    }
}

struct MapTarget<'a>(&'a mut Map);

impl ApplyTarget for MapTarget<'_> {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.0.get(key).cloned())
    }

    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError> {
        self.0.insert(key.to_vec(), value.to_vec());
        Ok(())
    }

    fn clear(&mut self, key: &[u8]) -> Result<(), StorageError> {
        self.0.remove(key);
        Ok(())
    }

    fn clear_range(&mut self, range: &KeyRange) -> Result<(), StorageError> {
        let doomed: Vec<Vec<u8>> = self
            .0
            .range(range.begin.clone()..range.end.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.0.remove(&key);
        }
        Ok(())
    }
}
