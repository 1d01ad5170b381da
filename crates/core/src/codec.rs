//! How entities become stored bytes: a format-version byte, then JSON.
//!
//! The version byte lets a later release read old values and migrate them
//! (`Record::upgrade`), so the store never needs a stop-the-world rewrite. JSON
//! keeps values readable in a debugger and tolerant of added optional fields.
//!
//! Writing a feed record through [`Key`] also appends a change record in the
//! same transaction (the feed's write side lives here, under the typed keys
//! that need it; [`changes`](crate::changes) reads and trims the feed).

use std::marker::PhantomData;

use gatehouse_storage::tuple::pack;
use gatehouse_storage::{Tx, TxError};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::Error;

/// Declares that a type is stored, at format version 1: `record!(Team, "team");`
/// (its writes go to the change feed) or `record!(Lease, "lease", no_feed);`
/// (high-churn bookkeeping that does not). A type with an older format to
/// upgrade from implements [`Record`] by hand.
macro_rules! record {
    ($ty:ty, $name:literal) => {
        impl $crate::codec::Record for $ty {
            const VERSION: u8 = 1;
            const NAME: &'static str = $name;
        }
    };
    ($ty:ty, $name:literal, no_feed) => {
        impl $crate::codec::Record for $ty {
            const VERSION: u8 = 1;
            const NAME: &'static str = $name;
            const CHANGE_FEED: bool = false;
        }
    };
}
pub(crate) use record;

/// A value stored under a typed key.
pub trait Record: Serialize + DeserializeOwned {
    /// The format version written with new values.
    const VERSION: u8;
    /// What the record is called in errors.
    const NAME: &'static str;
    /// Whether writes of this record append to the change feed. Entities do;
    /// high-churn bookkeeping (leases, counters) does not.
    const CHANGE_FEED: bool = true;

    /// Reads a value written with an older `version`. The default knows none.
    fn upgrade(version: u8, payload: &[u8]) -> Result<Self, Error> {
        let _ = payload;
        Err(Error::internal(format!(
            "{} stored with unknown format version {version}",
            Self::NAME
        )))
    }
}

pub fn encode<T: Record>(value: &T) -> Result<Vec<u8>, Error> {
    let mut bytes = vec![T::VERSION];
    serde_json::to_writer(&mut bytes, value)
        .map_err(|e| Error::internal(format!("encoding {}: {e}", T::NAME)))?;
    Ok(bytes)
}

pub fn decode<T: Record>(bytes: &[u8]) -> Result<T, Error> {
    let Some((&version, payload)) = bytes.split_first() else {
        return Err(Error::internal(format!("empty stored {}", T::NAME)));
    };
    if version != T::VERSION {
        return T::upgrade(version, payload);
    }
    serde_json::from_slice(payload)
        .map_err(|e| Error::internal(format!("decoding stored {}: {e}", T::NAME)))
}

/// Decodes the values of a range read.
pub fn decode_values<T: Record>(entries: &[gatehouse_storage::KeyValue]) -> Result<Vec<T>, Error> {
    entries.iter().map(|(_, v)| decode(v)).collect()
}

/// Reads a whole range inside a transaction and decodes its values.
pub async fn read_all<T: Record>(
    tx: &Tx,
    range: &gatehouse_storage::KeyRange,
) -> Result<Vec<T>, TxError<Error>> {
    let page = tx
        .get_range(range, gatehouse_storage::RangeOptions::default())
        .await?;
    decode_values(&page.entries).map_err(TxError::Abort)
}

/// Reads up to `limit` records of `range` in a transaction of their own;
/// the records and what is left of the range, if anything is. For walking a
/// large subspace a page at a time.
pub async fn read_page<T: Record>(
    store: &gatehouse_storage::Store,
    range: &gatehouse_storage::KeyRange,
    limit: usize,
) -> crate::Result<(Vec<T>, Option<gatehouse_storage::KeyRange>)> {
    let page = store
        .read_range(range, gatehouse_storage::RangeOptions::limit(limit))
        .await?;
    Ok((decode_values(&page.entries)?, page.next))
}

/// Up to `limit` records of `begin..end` that `keep` accepts, the last key
/// first (`newest_first`, for IDs that grow with time) or the first key
/// first, read 500 at a time, each page in a transaction of its own. An empty
/// or inverted range holds nothing (a cursor older than a `from`).
pub async fn find_in_range<T: Record>(
    store: &gatehouse_storage::Store,
    begin: Vec<u8>,
    end: Vec<u8>,
    newest_first: bool,
    limit: usize,
    mut keep: impl FnMut(&T) -> bool,
) -> crate::Result<Vec<T>> {
    let mut found = Vec::new();
    if begin >= end {
        return Ok(found);
    }
    let mut next = Some(gatehouse_storage::KeyRange::new(begin, end));
    while let Some(range) = next {
        let options = gatehouse_storage::RangeOptions::limit(500);
        let options = if newest_first {
            options.reversed()
        } else {
            options
        };
        let page = store.read_range(&range, options).await?;
        for record in decode_values::<T>(&page.entries)? {
            if found.len() < limit && keep(&record) {
                found.push(record);
            }
        }
        next = if found.len() < limit { page.next } else { None };
    }
    Ok(found)
}

/// Ends a transaction with a business error (nothing it wrote is kept).
pub fn abort<T>(e: Error) -> Result<T, TxError<Error>> {
    Err(TxError::Abort(e))
}

/// A key that knows the type of its value.
pub struct Key<T> {
    bytes: Vec<u8>,
    _value: PhantomData<fn() -> T>,
}

impl<T: Record> Key<T> {
    pub fn new(bytes: Vec<u8>) -> Self {
        Key {
            bytes,
            _value: PhantomData,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    pub async fn get(&self, tx: &Tx) -> Result<Option<T>, TxError<Error>> {
        match tx.get(&self.bytes).await? {
            Some(bytes) => decode(&bytes).map(Some).map_err(TxError::Abort),
            None => Ok(None),
        }
    }

    /// Reads the value and deletes it: a single-use record is taken once.
    pub async fn take(&self, tx: &Tx) -> Result<Option<T>, TxError<Error>> {
        let value = self.get(tx).await?;
        if value.is_some() {
            self.clear(tx).await?;
        }
        Ok(value)
    }

    /// Writes the value, and a change record in the same transaction. A
    /// value larger than the store takes is the caller's input to shorten
    /// (a list of a thousand long model names, a huge secret): refused as
    /// `invalid_input`, and the transaction changes nothing.
    pub async fn put(&self, tx: &Tx, value: &T) -> Result<(), TxError<Error>> {
        let bytes = encode(value).map_err(TxError::Abort)?;
        if bytes.len() > gatehouse_storage::limits::MAX_VALUE_SIZE {
            return Err(TxError::Abort(Error::invalid_input(format!(
                "this {} is too large to store: {} bytes as stored, at most {}",
                T::NAME,
                bytes.len(),
                gatehouse_storage::limits::MAX_VALUE_SIZE
            ))));
        }
        tx.set(&self.bytes, &bytes)?;
        if T::CHANGE_FEED {
            append(tx, &self.bytes, ChangeKind::Put).await?;
        }
        Ok(())
    }

    /// Deletes the value, and records the change in the same transaction.
    pub async fn clear(&self, tx: &Tx) -> Result<(), TxError<Error>> {
        tx.clear(&self.bytes)?;
        if T::CHANGE_FEED {
            append(tx, &self.bytes, ChangeKind::Delete).await?;
        }
        Ok(())
    }
}

/// Deletes the first keys of `range`, at most 10 000 per call.
pub async fn trim_range(
    store: &gatehouse_storage::Store,
    range: &gatehouse_storage::KeyRange,
) -> crate::Result<usize> {
    Ok(store
        .run(|tx| async move {
            let page = tx
                .get_range(range, gatehouse_storage::RangeOptions::limit(10_000))
                .await?;
            let count = page.entries.len();
            if let Some((last, _)) = page.entries.last() {
                let upto = gatehouse_storage::key_after(last);
                tx.clear_range(&gatehouse_storage::KeyRange::new(range.begin.clone(), upto))?;
            }
            Ok::<_, TxError<Error>>(count)
        })
        .await?)
}

/// Deletes every record of `range` that `expired` says is, a page of 500
/// per transaction (so a large subspace never makes one huge transaction);
/// returns how many went. The pruning jobs use it.
pub async fn prune_range<T: Record>(
    store: &gatehouse_storage::Store,
    range: gatehouse_storage::KeyRange,
    expired: impl Fn(&T) -> bool,
) -> crate::Result<usize> {
    const PAGE: usize = 500;
    let (mut range, expired) = (range, &expired);
    let mut pruned = 0;
    loop {
        let current = &range;
        let (gone, next) = store
            .run(|tx| async move {
                let page = tx
                    .get_range(current, gatehouse_storage::RangeOptions::limit(PAGE))
                    .await?;
                let mut gone = 0;
                for (key, value) in &page.entries {
                    if expired(&decode::<T>(value).map_err(TxError::Abort)?) {
                        tx.clear(key)?;
                        gone += 1;
                    }
                }
                Ok::<_, TxError<Error>>((gone, page.next))
            })
            .await?;
        pruned += gone;
        match next {
            Some(next) => range = next,
            None => return Ok(pruned),
        }
    }
}

// The change feed's write side: every `Key::put` and `Key::clear` of a
// feed record appends one of these in the same transaction. Reading and
// trimming the feed is [`changes`](crate::changes).

/// The bytes before the versionstamp of `("change", versionstamp) = ChangeRecord`:
/// the tuple `("change",)` and the type code of a tuple-layer versionstamp
/// (0x33), followed at commit by 10 stamp bytes and 2 bytes of order within
/// the transaction, so each key is a valid FoundationDB tuple. Listed, with
/// its golden bytes, in [`keyspace`](crate::keyspace).
pub fn change_prefix() -> Vec<u8> {
    let mut prefix = pack(&(CHANGE,));
    prefix.push(0x33);
    prefix
}

/// The subspace of change records.
pub const CHANGE: &str = "change";

/// `("change_count", name)`: how many change records were appended or trimmed.
pub fn change_count(name: &str) -> Vec<u8> {
    pack(&("change_count", name))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    Put,
    Delete,
}

/// What a change record stores.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeRecord {
    /// The subspace written, e.g. `setting`.
    pub subspace: String,
    /// The full key, hex-encoded.
    pub key: String,
    pub kind: ChangeKind,
}

record!(ChangeRecord, "change", no_feed);

impl ChangeRecord {
    /// The stored key the change is about (`None` if the record is damaged).
    pub fn key_bytes(&self) -> Option<Vec<u8>> {
        unhex(&self.key)
    }
}

/// Appends a change record for `key` to the feed, inside `tx`. Reads nothing,
/// so writers of different entities do not conflict over the feed.
pub async fn append(tx: &Tx, key: &[u8], kind: ChangeKind) -> Result<(), TxError<Error>> {
    let record = ChangeRecord {
        subspace: subspace_of(key),
        key: hex(key),
        kind,
    };
    let value = encode(&record).map_err(TxError::Abort)?;
    let order = tx.next_local_sequence().to_be_bytes();
    tx.set_versionstamped_key(&change_prefix(), &order, &value)?;
    tx.atomic_add(&change_count("appended"), 1)?;
    Ok(())
}

fn subspace_of(key: &[u8]) -> String {
    use gatehouse_storage::tuple::{Element, unpack};
    match unpack::<Vec<Element>>(key)
        .ok()
        .and_then(|t| t.into_iter().next())
    {
        Some(Element::String(s)) => s.into_owned(),
        _ => String::new(),
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

/// A page of the records in `range`, in key order, after the key `after`:
/// at most `limit`, and whether more follow. For lists too long to read
/// whole in one answer (an organization's members, a team's, invitations).
pub async fn read_page_after<T: Record>(
    tx: &Tx,
    range: &gatehouse_storage::KeyRange,
    after: Option<&[u8]>,
    limit: usize,
) -> Result<(Vec<T>, bool), TxError<Error>> {
    let begin = match after {
        Some(key) => gatehouse_storage::key_after(key),
        None => range.begin.clone(),
    };
    if begin >= range.end {
        return Ok((Vec::new(), false));
    }
    let rest = gatehouse_storage::KeyRange::new(begin, range.end.clone());
    let page = tx
        .get_range(&rest, gatehouse_storage::RangeOptions::limit(limit + 1))
        .await?;
    let mut values = decode_values::<T>(&page.entries).map_err(TxError::Abort)?;
    let more = values.len() > limit;
    values.truncate(limit);
    Ok((values, more))
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::ErrorCode;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Thing {
        n: u32,
    }

    impl Record for Thing {
        const VERSION: u8 = 2;
        const NAME: &'static str = "thing";

        fn upgrade(version: u8, payload: &[u8]) -> Result<Self, Error> {
            match version {
                1 => Ok(Thing {
                    n: std::str::from_utf8(payload)
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| Error::internal("bad v1 thing"))?,
                }),
                _ => Err(Error::internal("unknown")),
            }
        }
    }

    #[test]
    fn values_carry_their_format_version() {
        let bytes = encode(&Thing { n: 7 }).unwrap();
        assert_eq!(bytes, b"\x02{\"n\":7}");
        assert_eq!(decode::<Thing>(&bytes).unwrap(), Thing { n: 7 });
        assert_eq!(decode::<Thing>(b"\x0142").unwrap(), Thing { n: 42 });
        assert_eq!(
            decode::<Thing>(b"\x09").unwrap_err().code(),
            ErrorCode::Internal
        );
        assert_eq!(
            decode::<Thing>(b"").unwrap_err().code(),
            ErrorCode::Internal
        );
    }
}
