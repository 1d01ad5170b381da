//! Key ranges, range-read options and pages of results.

use foundationdb_tuple::Subspace;

/// A half-open key range `[begin, end)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct KeyRange {
    pub begin: Vec<u8>,
    pub end: Vec<u8>,
}

impl KeyRange {
    pub fn new(begin: impl Into<Vec<u8>>, end: impl Into<Vec<u8>>) -> Self {
        KeyRange {
            begin: begin.into(),
            end: end.into(),
        }
    }

    /// The range holding exactly `key`.
    pub fn single(key: &[u8]) -> Self {
        KeyRange {
            begin: key.to_vec(),
            end: key_after(key),
        }
    }

    /// Every key that starts with `prefix` (FoundationDB's `strinc` for the end).
    /// A prefix of only `0xff` bytes (or an empty one) reaches to the end of the keyspace.
    pub fn prefix(prefix: &[u8]) -> Self {
        let mut end = prefix.to_vec();
        while let Some(last) = end.last_mut() {
            if *last == 0xff {
                end.pop();
            } else {
                *last += 1;
                break;
            }
        }
        if end.is_empty() {
            end = vec![0xff; MAX_KEY_END_LEN];
        }
        KeyRange {
            begin: prefix.to_vec(),
            end,
        }
    }

    /// The keys of the tuples inside `subspace` (not the bare prefix itself).
    pub fn subspace(subspace: &Subspace) -> Self {
        let (begin, end) = subspace.range();
        KeyRange { begin, end }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.begin.as_slice() && key < self.end.as_slice()
    }

    pub fn intersects(&self, other: &KeyRange) -> bool {
        self.begin < other.end && other.begin < self.end
    }

    pub fn is_empty(&self) -> bool {
        self.begin >= self.end
    }
}

/// Used only for a prefix range of all-`0xff` bytes: larger than any valid key.
const MAX_KEY_END_LEN: usize = crate::limits::MAX_KEY_SIZE + 1;

/// The smallest key strictly greater than `key`.
pub fn key_after(key: &[u8]) -> Vec<u8> {
    let mut next = Vec::with_capacity(key.len() + 1);
    next.extend_from_slice(key);
    next.push(0);
    next
}

/// How to read a range.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RangeOptions {
    /// At most this many entries; `None` reads the whole range.
    pub limit: Option<usize>,
    /// Read from the end of the range backwards.
    pub reverse: bool,
}

impl RangeOptions {
    pub fn limit(limit: usize) -> Self {
        RangeOptions {
            limit: Some(limit),
            reverse: false,
        }
    }

    pub fn reversed(self) -> Self {
        RangeOptions {
            reverse: true,
            ..self
        }
    }
}

/// A key and its value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// One page of a range read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangePage {
    /// Entries in key order (descending when the read was reversed).
    pub entries: Vec<KeyValue>,
    /// The part of the range not read yet, when more entries exist; pass it to the
    /// next `get_range` call with the same options to continue.
    pub next: Option<KeyRange>,
}

impl RangePage {
    /// Builds a page from entries read with one entry past `options.limit` (if
    /// any): that extra entry only tells that a next page exists.
    pub(crate) fn from_overfetch(
        mut entries: Vec<KeyValue>,
        range: &KeyRange,
        options: RangeOptions,
    ) -> RangePage {
        let next = match options.limit {
            Some(limit) if limit > 0 && entries.len() > limit => {
                entries.truncate(limit);
                let last = &entries[limit - 1].0;
                Some(if options.reverse {
                    KeyRange::new(range.begin.clone(), last.clone())
                } else {
                    KeyRange::new(key_after(last), range.end.clone())
                })
            }
            _ => None,
        };
        RangePage { entries, next }
    }
}

/// How many entries an engine reads for `options`: one past the limit.
pub(crate) fn overfetch(options: RangeOptions) -> Option<usize> {
    options.limit.map(|l| l.saturating_add(1))
}
