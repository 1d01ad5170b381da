//! What core takes from the outside world: time, randomness and IDs, behind
//! small traits so that tests can control them.

use std::sync::Arc;

use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};

pub use crate::clock::{Clock, ManualClock, SystemClock};
use crate::id::{IdGenerator, Snowflake};

/// A source of cryptographically secure random bytes.
pub trait Random: Send + Sync {
    fn fill(&self, buf: &mut [u8]);

    /// `len` characters of `[A-Za-z0-9]`, uniformly (rejection sampling):
    /// about 5.95 bits each.
    fn alphanumeric(&self, len: usize) -> String {
        const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        let mut out = String::with_capacity(len);
        while out.len() < len {
            let mut byte = [0u8; 1];
            self.fill(&mut byte);
            if usize::from(byte[0]) < ALPHABET.len() * 4 {
                out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
            }
        }
        out
    }

    /// A 256-bit secret as unpadded URL-safe base64 (43 characters), for
    /// tokens sent by email or held by clients.
    fn token(&self) -> String {
        use base64::Engine as _;
        let mut secret = [0u8; 32];
        self.fill(&mut secret);
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret)
    }
}

/// The operating system's generator.
pub struct OsRandom;

impl Random for OsRandom {
    fn fill(&self, buf: &mut [u8]) {
        rand::rng().fill_bytes(buf);
    }
}

/// A deterministic generator for tests. Never use it to make secrets.
pub struct SeededRandom(Mutex<StdRng>);

impl SeededRandom {
    pub fn new(seed: u64) -> Self {
        SeededRandom(Mutex::new(StdRng::seed_from_u64(seed)))
    }
}

impl Random for SeededRandom {
    fn fill(&self, buf: &mut [u8]) {
        self.0.lock().fill_bytes(buf);
    }
}

/// The environment services run in.
#[derive(Clone)]
pub struct Env {
    pub clock: Arc<dyn Clock>,
    pub random: Arc<dyn Random>,
    pub ids: Arc<dyn IdGenerator>,
}

impl Env {
    /// The production environment for snowflake worker `worker_id`.
    pub fn system(worker_id: u16, clock: Arc<dyn Clock>) -> crate::Result<Self> {
        Ok(Env {
            ids: Arc::new(Snowflake::new(worker_id, clock.clone())?),
            clock,
            random: Arc::new(OsRandom),
        })
    }
}
