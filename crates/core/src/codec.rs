//! How entities become stored bytes: a format-version byte, then JSON.
//!
//! The version byte lets a later release read old values and migrate them
//! (`Record::upgrade`), so the store never needs a stop-the-world rewrite. JSON
//! keeps values readable in a debugger and tolerant of added optional fields.

use std::marker::PhantomData;

use gatehouse_storage::{Tx, TxError};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Error;

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

    /// Writes the value, and a change record in the same transaction.
    pub async fn put(&self, tx: &Tx, value: &T) -> Result<(), TxError<Error>> {
        let bytes = encode(value).map_err(TxError::Abort)?;
        tx.set(&self.bytes, &bytes)?;
        if T::CHANGE_FEED {
            crate::changes::append(tx, &self.bytes, crate::changes::ChangeKind::Put).await?;
        }
        Ok(())
    }

    /// Deletes the value, and records the change in the same transaction.
    pub async fn clear(&self, tx: &Tx) -> Result<(), TxError<Error>> {
        tx.clear(&self.bytes)?;
        if T::CHANGE_FEED {
            crate::changes::append(tx, &self.bytes, crate::changes::ChangeKind::Delete).await?;
        }
        Ok(())
    }
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
