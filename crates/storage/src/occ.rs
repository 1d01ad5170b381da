//! Optimistic concurrency control shared by the engines that have no conflict
//! detection of their own (memory and embedded).
//!
//! Each attempt reads from an immutable snapshot taken at a commit version,
//! records the ranges it read, and buffers its writes. At commit, under the
//! engine's single commit lock, the read set is checked against the write sets of
//! every transaction that committed after the snapshot (backward validation). If
//! none intersect, the transaction could have run alone at its commit point, which
//! makes the history serializable: no lost updates and no write skew.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::engine::EngineTransaction;
use crate::limits::MAX_TRANSACTION_DURATION;
use crate::range::{KeyValue, key_after, overfetch};
use crate::{KeyRange, RangeOptions, RangePage, StorageError};

/// A buffered mutation of one key.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    Set(Vec<u8>),
    Clear,
    /// Add to whatever value is committed when this transaction commits.
    Add(Addition),
}

/// Additions to the little-endian `i64` lanes of one key's value, pending
/// until commit, with FoundationDB's `ADD` rule for lengths: the result has
/// as many lanes as the last addition; a shorter stored value is
/// zero-extended, a longer one truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Addition {
    /// How many lanes of the committed value survive (an addition of fewer
    /// lanes truncates what came before it).
    keep: usize,
    /// What to add to each lane of the result.
    deltas: Box<[i64]>,
}

impl Addition {
    pub fn new(deltas: &[i64]) -> Self {
        Addition {
            keep: deltas.len(),
            deltas: deltas.into(),
        }
    }

    /// This addition followed by one of `deltas`.
    pub fn then(&self, deltas: &[i64]) -> Self {
        let sum = deltas
            .iter()
            .enumerate()
            .map(|(i, d)| self.deltas.get(i).map_or(*d, |e| e.wrapping_add(*d)))
            .collect();
        Addition {
            keep: self.keep.min(deltas.len()),
            deltas: sum,
        }
    }

    /// The value after the additions to `current` (absent: zero).
    pub fn apply(&self, current: Option<&[u8]>) -> Vec<u8> {
        let current = current.unwrap_or_default();
        let mut out = Vec::with_capacity(self.deltas.len() * 8);
        for (i, delta) in self.deltas.iter().enumerate() {
            let base = if i < self.keep { lane(current, i) } else { 0 };
            out.extend_from_slice(&base.wrapping_add(*delta).to_le_bytes());
        }
        out
    }
}

/// Lane `i` of a stored value: its bytes `8i..8i+8` as a little-endian `i64`,
/// zero-extended where the value is shorter.
pub(crate) fn lane(value: &[u8], i: usize) -> i64 {
    let mut bytes = [0u8; 8];
    if let Some(rest) = value.get(i * 8..) {
        let n = rest.len().min(8);
        bytes[..n].copy_from_slice(&rest[..n]);
    }
    i64::from_le_bytes(bytes)
}

/// A versionstamped write: key prefix, key suffix, value.
pub(crate) type StampedWrite = (Vec<u8>, Vec<u8>, Vec<u8>);

/// The writes of one transaction, in the form commits apply them: first every
/// cleared range, then every per-key operation.
#[derive(Debug, Default)]
pub(crate) struct WriteBuffer {
    pub ops: BTreeMap<Vec<u8>, Op>,
    pub cleared: Vec<KeyRange>,
    /// Versionstamped keys: `(prefix, suffix, value)`, completed at commit.
    pub stamped: Vec<StampedWrite>,
}

/// What the buffer knows about a key, for reads.
pub(crate) enum Lookup<'a> {
    /// The buffer decides the value on its own.
    Known(Option<&'a [u8]>),
    /// The committed value with these additions.
    AddToBase(&'a Addition),
    /// The buffer has nothing to say: read the snapshot.
    Base,
}

impl WriteBuffer {
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.cleared.is_empty() && self.stamped.is_empty()
    }

    /// Whether this buffer writes a key in any of `reads`: how a commit is
    /// validated against the ones before it in the same group commit, which
    /// its snapshot cannot have seen.
    pub fn overlaps(&self, reads: &[KeyRange]) -> bool {
        reads.iter().any(|read| {
            !read.is_empty()
                && (self
                    .ops
                    .range::<[u8], _>((
                        Bound::Included(read.begin.as_slice()),
                        Bound::Excluded(read.end.as_slice()),
                    ))
                    .next()
                    .is_some()
                    || self.cleared.iter().any(|c| c.intersects(read)))
        })
    }

    pub fn set_versionstamped(&mut self, prefix: &[u8], suffix: &[u8], value: &[u8]) {
        self.stamped
            .push((prefix.to_vec(), suffix.to_vec(), value.to_vec()));
    }

    /// Turns versionstamped writes into plain sets under the stamp of commit
    /// `version`, so that they apply and validate like any other write.
    pub fn complete_stamps(&mut self, version: u64) {
        let stamp = versionstamp(version);
        for (prefix, suffix, value) in std::mem::take(&mut self.stamped) {
            let mut key = prefix;
            key.extend_from_slice(&stamp);
            key.extend_from_slice(&suffix);
            self.ops.insert(key, Op::Set(value));
        }
    }

    fn in_cleared(&self, key: &[u8]) -> bool {
        self.cleared.iter().any(|r| r.contains(key))
    }

    pub fn set(&mut self, key: &[u8], value: &[u8]) {
        self.ops.insert(key.to_vec(), Op::Set(value.to_vec()));
    }

    pub fn clear(&mut self, key: &[u8]) {
        self.ops.insert(key.to_vec(), Op::Clear);
    }

    pub fn clear_range(&mut self, range: &KeyRange) {
        if range.is_empty() {
            return;
        }
        let doomed: Vec<Vec<u8>> = self
            .ops
            .range(range.begin.clone()..range.end.clone())
            .map(|(k, _)| k.clone())
            .collect();
        for key in doomed {
            self.ops.remove(&key);
        }
        self.cleared.push(range.clone());
    }

    pub fn add(&mut self, key: &[u8], deltas: &[i64]) {
        let op = match self.ops.get(key) {
            Some(Op::Set(v)) => Op::Set(Addition::new(deltas).apply(Some(v))),
            Some(Op::Clear) => Op::Set(Addition::new(deltas).apply(None)),
            Some(Op::Add(a)) => Op::Add(a.then(deltas)),
            None if self.in_cleared(key) => Op::Set(Addition::new(deltas).apply(None)),
            None => Op::Add(Addition::new(deltas)),
        };
        self.ops.insert(key.to_vec(), op);
    }

    pub fn lookup(&self, key: &[u8]) -> Lookup<'_> {
        match self.ops.get(key) {
            Some(Op::Set(v)) => Lookup::Known(Some(v)),
            Some(Op::Clear) => Lookup::Known(None),
            Some(Op::Add(a)) => Lookup::AddToBase(a),
            None if self.in_cleared(key) => Lookup::Known(None),
            None => Lookup::Base,
        }
    }

    /// Applies the buffer to a committed state.
    pub fn apply_to(&self, target: &mut dyn ApplyTarget) -> Result<(), StorageError> {
        for range in &self.cleared {
            target.clear_range(range)?;
        }
        for (key, op) in &self.ops {
            match op {
                Op::Set(v) => target.set(key, v)?,
                Op::Clear => target.clear(key)?,
                Op::Add(a) => {
                    let current = target.get(key)?;
                    target.set(key, &a.apply(current.as_deref()))?;
                }
            }
        }
        Ok(())
    }
}

/// The 10-byte versionstamp of commit `version`: the version big-endian (so
/// stamps sort in commit order), then two bytes of batch order (always 0: one
/// commit at a time).
pub(crate) fn versionstamp(version: u64) -> [u8; 10] {
    let mut stamp = [0u8; 10];
    stamp[..8].copy_from_slice(&version.to_be_bytes());
    stamp
}

/// The committed state an engine applies a [`WriteBuffer`] to.
pub(crate) trait ApplyTarget {
    fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    fn set(&mut self, key: &[u8], value: &[u8]) -> Result<(), StorageError>;
    fn clear(&mut self, key: &[u8]) -> Result<(), StorageError>;
    fn clear_range(&mut self, range: &KeyRange) -> Result<(), StorageError>;
}

/// FoundationDB's `ADD` mutation with an 8-byte operand: the stored value is read
/// as a little-endian integer, zero-extended or truncated to 8 bytes.
#[cfg(test)]
fn add_le(current: Option<&[u8]>, delta: i64) -> Vec<u8> {
    Addition::new(&[delta]).apply(current)
}

/// An immutable view of the committed data at one version.
pub(crate) trait Snapshot: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Calls `visit` on each entry of `range` in order until it returns `false`.
    fn scan(
        &self,
        range: &KeyRange,
        reverse: bool,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StorageError>;
}

/// The engine side of a commit.
#[async_trait]
pub(crate) trait Committer: Send + Sync + 'static {
    /// Validates `reads` against commits after `start_version` and applies `writes`
    /// if they do not conflict, atomically and durably.
    async fn commit(
        &self,
        start_version: u64,
        reads: Vec<KeyRange>,
        writes: WriteBuffer,
    ) -> Result<(), StorageError>;
}

/// How long commit write sets are kept for validation. Transactions live at most
/// [`MAX_TRANSACTION_DURATION`], so twice that leaves a margin.
const LOG_RETENTION: Duration = Duration::from_secs(2 * MAX_TRANSACTION_DURATION.as_secs());

struct LogEntry {
    version: u64,
    at: Instant,
    /// Sorted keys written (set, cleared or added).
    keys: Vec<Vec<u8>>,
    ranges: Vec<KeyRange>,
}

impl LogEntry {
    fn conflicts_with(&self, read: &KeyRange) -> bool {
        let first = self
            .keys
            .partition_point(|k| k.as_slice() < read.begin.as_slice());
        if self.keys.get(first).is_some_and(|k| read.contains(k)) {
            return true;
        }
        self.ranges.iter().any(|r| r.intersects(read))
    }
}

/// The snapshots transactions are reading, so that the commit log keeps
/// exactly the write sets some open transaction may still be validated
/// against. Without it the log kept every write set for [`LOG_RETENTION`]:
/// at 15 000 gateway calls a second (each leaving a request log and usage
/// counters to write) that was 20–40 MB of keys nobody would read again.
#[derive(Default)]
pub(crate) struct LiveSnapshots {
    /// Registered floors (a version at or below each open transaction's
    /// snapshot), with how many transactions registered each.
    floors: Mutex<BTreeMap<u64, usize>>,
    /// The highest version recorded in the commit log.
    recorded: std::sync::atomic::AtomicU64,
}

impl LiveSnapshots {
    /// Registers a transaction about to take its snapshot. The floor is the
    /// last recorded version, which the snapshot taken next is at or above
    /// (a commit is recorded after it is durable).
    pub fn open(self: &Arc<Self>) -> LiveSnapshot {
        let mut floors = self.floors.lock();
        let floor = self.recorded.load(std::sync::atomic::Ordering::Acquire);
        *floors.entry(floor).or_default() += 1;
        LiveSnapshot {
            live: self.clone(),
            floor,
        }
    }

    /// The oldest floor of an open transaction, if any is open.
    fn oldest(&self) -> Option<u64> {
        self.floors.lock().keys().next().copied()
    }
}

/// An open transaction's registration; dropped with the transaction.
pub(crate) struct LiveSnapshot {
    live: Arc<LiveSnapshots>,
    floor: u64,
}

impl Drop for LiveSnapshot {
    fn drop(&mut self) {
        let mut floors = self.live.floors.lock();
        if let Some(count) = floors.get_mut(&self.floor) {
            *count -= 1;
            if *count == 0 {
                floors.remove(&self.floor);
            }
        }
    }
}

/// The write sets of recent commits, for backward validation.
pub(crate) struct CommitLog {
    entries: VecDeque<LogEntry>,
    /// Highest version whose entry was dropped; snapshots older than it cannot be validated.
    pruned_through: u64,
    live: Arc<LiveSnapshots>,
}

impl CommitLog {
    pub fn validate(&self, start_version: u64, reads: &[KeyRange]) -> Result<(), StorageError> {
        if start_version < self.pruned_through {
            return Err(StorageError::TransactionTooOld {
                limit_secs: MAX_TRANSACTION_DURATION.as_secs(),
            });
        }
        let newer = self.entries.iter().filter(|e| e.version > start_version);
        for entry in newer {
            if reads.iter().any(|r| entry.conflicts_with(r)) {
                return Err(StorageError::Conflict);
            }
        }
        Ok(())
    }

    /// A log whose transactions register in `live`.
    pub fn new(live: Arc<LiveSnapshots>) -> Self {
        CommitLog {
            entries: VecDeque::new(),
            pruned_through: 0,
            live,
        }
    }

    /// Records the write set of the commit at `version` (called under the
    /// commit lock, after the commit is durable), and drops the entries no
    /// open transaction can need: those at or below every open snapshot,
    /// and in any case those older than [`LOG_RETENTION`].
    pub fn record(&mut self, version: u64, writes: &WriteBuffer) {
        let now = Instant::now();
        self.entries.push_back(LogEntry {
            version,
            at: now,
            keys: writes.ops.keys().cloned().collect(),
            ranges: writes.cleared.clone(),
        });
        self.live
            .recorded
            .store(version, std::sync::atomic::Ordering::Release);
        // Transactions that register from here on take snapshots at
        // `version` or later: with none open, no entry is needed.
        let needed_after = self.live.oldest().unwrap_or(version);
        while let Some(front) = self.entries.front() {
            if front.version > needed_after && now.duration_since(front.at) < LOG_RETENTION {
                break;
            }
            self.pruned_through = self.pruned_through.max(front.version);
            self.entries.pop_front();
        }
    }

    /// How many write sets the log holds.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }
}

struct TxState {
    buffer: WriteBuffer,
    reads: Vec<KeyRange>,
    committed: bool,
}

/// A transaction attempt over a snapshot, committed through a [`Committer`].
pub(crate) struct OccTransaction<S: Snapshot, C: Committer> {
    snapshot: S,
    version: u64,
    committer: Arc<C>,
    state: Mutex<TxState>,
    /// Keeps the write sets this transaction validates against in the log.
    _live: LiveSnapshot,
}

impl<S: Snapshot, C: Committer> OccTransaction<S, C> {
    /// `live` must have been taken before `snapshot` was.
    pub fn new(snapshot: S, version: u64, committer: Arc<C>, live: LiveSnapshot) -> Self {
        OccTransaction {
            _live: live,
            snapshot,
            version,
            committer,
            state: Mutex::new(TxState {
                buffer: WriteBuffer::default(),
                reads: Vec::new(),
                committed: false,
            }),
        }
    }

    fn check_open(&self, state: &TxState) -> Result<(), StorageError> {
        if state.committed {
            return Err(StorageError::AlreadyCommitted);
        }
        Ok(())
    }
}

#[async_trait]
impl<S: Snapshot, C: Committer> EngineTransaction for OccTransaction<S, C> {
    async fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let mut state = self.state.lock();
        self.check_open(&state)?;
        state.reads.push(KeyRange::single(key));
        match state.buffer.lookup(key) {
            Lookup::Known(v) => Ok(v.map(<[u8]>::to_vec)),
            Lookup::AddToBase(a) => Ok(Some(a.apply(self.snapshot.get(key)?.as_deref()))),
            Lookup::Base => self.snapshot.get(key),
        }
    }

    async fn get_range(
        &self,
        range: &KeyRange,
        options: RangeOptions,
    ) -> Result<RangePage, StorageError> {
        let mut state = self.state.lock();
        self.check_open(&state)?;
        let want = overfetch(options).unwrap_or(usize::MAX);
        let (entries, read_through) =
            merged_range(&self.snapshot, &state.buffer, range, options.reverse, want)?;
        state.reads.push(read_through);
        Ok(RangePage::from_overfetch(entries, range, options))
    }

    fn set(&self, key: &[u8], value: &[u8]) {
        self.state.lock().buffer.set(key, value);
    }

    fn clear(&self, key: &[u8]) {
        self.state.lock().buffer.clear(key);
    }

    fn clear_range(&self, range: &KeyRange) {
        self.state.lock().buffer.clear_range(range);
    }

    fn atomic_add(&self, key: &[u8], deltas: &[i64]) {
        self.state.lock().buffer.add(key, deltas);
    }

    fn set_versionstamped_key(&self, prefix: &[u8], suffix: &[u8], value: &[u8]) {
        self.state
            .lock()
            .buffer
            .set_versionstamped(prefix, suffix, value);
    }

    async fn commit(&self) -> Result<(), StorageError> {
        let (reads, writes) = {
            let mut state = self.state.lock();
            self.check_open(&state)?;
            state.committed = true;
            (
                std::mem::take(&mut state.reads),
                std::mem::take(&mut state.buffer),
            )
        };
        // A transaction that wrote nothing read a consistent snapshot, which is
        // already a serializable outcome: there is nothing to validate or apply.
        if writes.is_empty() {
            return Ok(());
        }
        self.committer.commit(self.version, reads, writes).await
    }
}

/// Reads `range` from the snapshot with the buffer's writes laid over it, stopping
/// after `want` entries. Returns the entries and the part of the range that was
/// actually examined (the read set).
fn merged_range(
    snapshot: &dyn Snapshot,
    buffer: &WriteBuffer,
    range: &KeyRange,
    reverse: bool,
    want: usize,
) -> Result<(Vec<KeyValue>, KeyRange), StorageError> {
    let mut local: Vec<(&Vec<u8>, &Op)> = buffer
        .ops
        .range(range.begin.clone()..range.end.clone())
        .collect();
    if reverse {
        local.reverse();
    }
    // `before(a, b)`: a comes before b in the direction of the read.
    let before = |a: &[u8], b: &[u8]| if reverse { a > b } else { a < b };
    let mut out: Vec<KeyValue> = Vec::new();
    let mut next_local = 0;

    let emit_local = |op: &Op, key: &[u8], base: Option<&[u8]>, out: &mut Vec<_>| match op {
        Op::Set(v) => out.push((key.to_vec(), v.clone())),
        Op::Clear => {}
        Op::Add(a) => out.push((key.to_vec(), a.apply(base))),
    };

    snapshot.scan(range, reverse, &mut |key, value| {
        while next_local < local.len() && before(local[next_local].0, key) {
            let (k, op) = local[next_local];
            emit_local(op, k, None, &mut out);
            next_local += 1;
            if out.len() >= want {
                return false;
            }
        }
        if next_local < local.len() && local[next_local].0.as_slice() == key {
            let (k, op) = local[next_local];
            emit_local(op, k, Some(value), &mut out);
            next_local += 1;
        } else if !buffer.in_cleared(key) {
            out.push((key.to_vec(), value.to_vec()));
        }
        out.len() < want
    })?;
    while out.len() < want && next_local < local.len() {
        let (k, op) = local[next_local];
        emit_local(op, k, None, &mut out);
        next_local += 1;
    }

    let read_through = match out.last() {
        Some((last, _)) if out.len() >= want => {
            if reverse {
                KeyRange::new(last.clone(), range.end.clone())
            } else {
                KeyRange::new(range.begin.clone(), key_after(last))
            }
        }
        _ => range.clone(),
    };
    Ok((out, read_through))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_le_treats_absent_as_zero_and_wraps() {
        assert_eq!(add_le(None, 5), 5i64.to_le_bytes().to_vec());
        assert_eq!(
            add_le(Some(&i64::MAX.to_le_bytes()), 1),
            i64::MIN.to_le_bytes().to_vec()
        );
        // Short values are zero-extended, long ones truncated, as in FoundationDB.
        assert_eq!(add_le(Some(&[1]), 1), 2i64.to_le_bytes().to_vec());
        assert_eq!(
            add_le(Some(&[1, 0, 0, 0, 0, 0, 0, 0, 9]), 1),
            2i64.to_le_bytes().to_vec()
        );
    }

    #[test]
    fn additions_of_several_lanes_follow_the_last_ones_length() {
        let value = |lanes: &[i64]| {
            lanes
                .iter()
                .flat_map(|l| l.to_le_bytes())
                .collect::<Vec<_>>()
        };
        let base = value(&[10, 20, 30]);
        assert_eq!(Addition::new(&[1, 2]).apply(None), value(&[1, 2]));
        // Longer than the value: zero-extended; shorter: truncated.
        assert_eq!(
            Addition::new(&[1, 2, 3, 4]).apply(Some(&base)),
            value(&[11, 22, 33, 4])
        );
        assert_eq!(Addition::new(&[1]).apply(Some(&base)), value(&[11]));
        // Buffered additions combine into what applying them one by one gives,
        // whatever their lengths.
        let sequences: [&[&[i64]]; 4] = [
            &[&[1, 2, 3], &[4, 5, 6]],
            &[&[1, 2, 3], &[4]],
            &[&[1], &[4, 5, 6]],
            &[&[1, 2, 3], &[4], &[5, 6, 7, 8]],
        ];
        for sequence in sequences {
            let mut one_by_one = base.clone();
            for deltas in sequence {
                one_by_one = Addition::new(deltas).apply(Some(&one_by_one));
            }
            let mut combined = Addition::new(sequence[0]);
            for deltas in &sequence[1..] {
                combined = combined.then(deltas);
            }
            assert_eq!(combined.apply(Some(&base)), one_by_one, "{sequence:?}");
        }
    }

    #[test]
    fn buffer_add_after_clear_range_starts_from_zero() {
        let mut b = WriteBuffer::default();
        b.clear_range(&KeyRange::new(b"a".to_vec(), b"z".to_vec()));
        b.add(b"k", &[3]);
        assert!(matches!(b.lookup(b"k"), Lookup::Known(Some(v)) if v == 3i64.to_le_bytes()));
        assert!(matches!(b.lookup(b"m"), Lookup::Known(None)));
        assert!(matches!(b.lookup(b"zz"), Lookup::Base));
    }

    #[test]
    fn the_log_keeps_only_what_open_transactions_may_need() {
        let live = Arc::new(LiveSnapshots::default());
        let mut log = CommitLog::new(live.clone());
        let mut w = WriteBuffer::default();
        w.set(b"k", b"v");
        log.record(1, &w);
        assert_eq!(log.len(), 0, "nothing open: nothing kept");
        // Registered after commit 1: its snapshot is at 1 or later.
        let reader = live.open();
        log.record(2, &w);
        log.record(3, &w);
        assert_eq!(log.len(), 2);
        assert_eq!(
            log.validate(1, &[KeyRange::single(b"k")]),
            Err(StorageError::Conflict)
        );
        assert_eq!(log.validate(3, &[KeyRange::single(b"k")]), Ok(()));
        drop(reader);
        log.record(4, &w);
        assert_eq!(log.len(), 0);
        let _later = live.open();
        assert_eq!(log.validate(4, &[KeyRange::single(b"k")]), Ok(()));
    }

    #[test]
    fn log_detects_point_and_range_conflicts() {
        let live = Arc::new(LiveSnapshots::default());
        let mut log = CommitLog::new(live.clone());
        let _open = live.open();
        let mut w = WriteBuffer::default();
        w.set(b"k5", b"v");
        w.clear_range(&KeyRange::new(b"r1".to_vec(), b"r3".to_vec()));
        log.record(2, &w);
        assert_eq!(log.validate(2, &[KeyRange::single(b"k5")]), Ok(()));
        assert_eq!(
            log.validate(1, &[KeyRange::new(b"k0".to_vec(), b"k9".to_vec())]),
            Err(StorageError::Conflict)
        );
        assert_eq!(
            log.validate(1, &[KeyRange::single(b"r2")]),
            Err(StorageError::Conflict)
        );
        assert_eq!(log.validate(1, &[KeyRange::single(b"k6")]), Ok(()));
    }
}
