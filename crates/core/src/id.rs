//! Snowflake IDs: 41 bits of milliseconds since [`EPOCH_MILLIS`], 10 bits of
//! worker ID, 12 bits of sequence. Time-ordered, unique per worker, rendered as
//! decimal strings in JSON (JavaScript cannot hold 64-bit integers).

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use parking_lot::Mutex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::clock::Clock;
use crate::{Error, Result};

/// 2024-01-01T00:00:00Z: IDs last 69 years from here.
pub const EPOCH_MILLIS: i64 = 1_704_067_200_000;
pub const MAX_WORKER_ID: u16 = (1 << WORKER_BITS) - 1;
const WORKER_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const MAX_SEQUENCE: u64 = (1 << SEQUENCE_BITS) - 1;
const MAX_TIMESTAMP: u64 = (1 << 41) - 1;

/// A 64-bit entity ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub u64);

impl Id {
    /// Milliseconds since the Unix epoch at which this ID was made.
    pub fn timestamp_millis(self) -> i64 {
        (self.0 >> (WORKER_BITS + SEQUENCE_BITS)) as i64 + EPOCH_MILLIS
    }

    /// The lowest ID made at `millis` (Unix epoch): IDs at or after that time
    /// are `>=` it, so time ranges become ID ranges.
    pub fn first_at(millis: i64) -> Id {
        let since = (millis - EPOCH_MILLIS).clamp(0, MAX_TIMESTAMP as i64) as u64;
        Id(since << (WORKER_BITS + SEQUENCE_BITS))
    }

    pub fn worker_id(self) -> u16 {
        ((self.0 >> SEQUENCE_BITS) & u64::from(MAX_WORKER_ID)) as u16
    }
}

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Id {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        s.parse::<u64>()
            .map(Id)
            .map_err(|_| Error::invalid_input(format!("`{s}` is not a valid ID")))
    }
}

impl Serialize for Id {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse()
            .map_err(|e: Error| serde::de::Error::custom(e.message()))
    }
}

/// Makes IDs.
pub trait IdGenerator: Send + Sync {
    fn next_id(&self) -> Id;
}

struct State {
    last_millis: u64,
    sequence: u64,
}

/// The snowflake generator for one worker.
///
/// If the clock moves backwards, the generator keeps counting from the last
/// timestamp it used instead of reusing one, so it never yields a duplicate; when
/// a millisecond's 4096 sequence numbers run out it borrows the next millisecond.
pub struct Snowflake {
    worker_id: u16,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl Snowflake {
    pub fn new(worker_id: u16, clock: Arc<dyn Clock>) -> Result<Self> {
        if worker_id > MAX_WORKER_ID {
            return Err(Error::invalid_input(format!(
                "worker ID {worker_id} is out of range 0-{MAX_WORKER_ID}"
            )));
        }
        Ok(Snowflake {
            worker_id,
            clock,
            state: Mutex::new(State {
                last_millis: 0,
                sequence: 0,
            }),
        })
    }
}

impl IdGenerator for Snowflake {
    fn next_id(&self) -> Id {
        let now = (self.clock.now_millis() - EPOCH_MILLIS).clamp(0, MAX_TIMESTAMP as i64) as u64;
        let mut state = self.state.lock();
        if now > state.last_millis {
            state.last_millis = now;
            state.sequence = 0;
        } else if state.sequence < MAX_SEQUENCE {
            state.sequence += 1;
        } else {
            state.last_millis += 1;
            state.sequence = 0;
        }
        Id((state.last_millis << (WORKER_BITS + SEQUENCE_BITS))
            | (u64::from(self.worker_id) << SEQUENCE_BITS)
            | state.sequence)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::clock::ManualClock;

    const T0: i64 = EPOCH_MILLIS + 1_000_000;

    #[test]
    fn layout_holds_time_worker_and_sequence() {
        let clock = Arc::new(ManualClock::new(T0));
        let ids = Snowflake::new(513, clock).unwrap();
        let a = ids.next_id();
        let b = ids.next_id();
        assert_eq!(a.timestamp_millis(), T0);
        assert_eq!(a.worker_id(), 513);
        assert_eq!(b.0 - a.0, 1, "same millisecond: sequence + 1");
        assert_eq!(a.0, (1_000_000u64 << 22) | (513 << 12));
    }

    #[test]
    fn backwards_clock_never_repeats_and_stays_ordered() {
        let clock = Arc::new(ManualClock::new(T0));
        let ids = Snowflake::new(1, clock.clone()).unwrap();
        let mut seen = HashSet::new();
        let mut last = Id(0);
        for step in 0..10_000 {
            // Jump back a second every 1000 IDs.
            if step % 1000 == 999 {
                clock.advance(-1000);
            } else if step % 7 == 0 {
                clock.advance(1);
            }
            let id = ids.next_id();
            assert!(seen.insert(id), "duplicate {id}");
            assert!(id > last, "{id} not after {last}");
            last = id;
        }
    }

    #[test]
    fn sequence_overflow_borrows_the_next_millisecond() {
        let clock = Arc::new(ManualClock::new(T0));
        let ids = Snowflake::new(0, clock).unwrap();
        let all: Vec<Id> = (0..5000).map(|_| ids.next_id()).collect();
        assert_eq!(all[4096].timestamp_millis(), T0 + 1);
        assert_eq!(all.iter().collect::<HashSet<_>>().len(), 5000);
    }

    #[test]
    fn worker_id_out_of_range_is_refused() {
        let clock = Arc::new(ManualClock::new(T0));
        assert!(Snowflake::new(1024, clock).is_err());
    }

    #[test]
    fn ids_are_strings_in_json() {
        let id = Id(1234567890123456789);
        assert_eq!(
            serde_json::to_string(&id).unwrap(),
            "\"1234567890123456789\""
        );
        assert_eq!(serde_json::from_str::<Id>("\"42\"").unwrap(), Id(42));
        assert!(serde_json::from_str::<Id>("\"x\"").is_err());
    }
}
