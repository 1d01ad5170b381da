//! Encryption at rest: AES-256-GCM under keys derived from the key-encryption
//! secret. Every sealed value carries the ID of the key that sealed it and a
//! fresh 96-bit nonce; the record it belongs to is bound in as associated
//! data, so a ciphertext copied into another record does not open.
//!
//! A [`KeyRing`] seals with its current key and opens with the current or any
//! previous one, which is how `gatehouse rotate-encryption-key` moves every
//! secret to a new key while the old one still decrypts.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::env::Random;
use crate::{Error, Result};

/// A value encrypted at rest.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// Which key sealed it: the first 8 bytes of SHA-256 of the key, in hex.
    pub key_id: String,
    /// Base64 of the 12-byte nonce.
    pub nonce: String,
    /// Base64 of the ciphertext with its 16-byte tag.
    pub ciphertext: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

struct RingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl RingKey {
    /// Derives the AES key from a configured secret of any length.
    fn derive(secret: &[u8]) -> RingKey {
        let key = Sha256::new()
            .chain_update(b"gatehouse key encryption v1\0")
            .chain_update(secret)
            .finalize();
        let id = Sha256::digest(key)[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        RingKey {
            id,
            cipher: Aes256Gcm::new(&key),
        }
    }
}

/// The current key and the previous ones that still open old values.
pub struct KeyRing {
    current: RingKey,
    previous: Vec<RingKey>,
}

impl KeyRing {
    /// `current` seals; `previous` secrets only open. Secrets shorter than 32
    /// bytes are refused.
    pub fn new(current: &[u8], previous: &[Vec<u8>]) -> Result<KeyRing> {
        for secret in std::iter::once(current).chain(previous.iter().map(Vec::as_slice)) {
            if secret.len() < 32 {
                return Err(Error::invalid_input(
                    "key-encryption secrets are at least 32 bytes",
                ));
            }
        }
        Ok(KeyRing {
            current: RingKey::derive(current),
            previous: previous.iter().map(|s| RingKey::derive(s)).collect(),
        })
    }

    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Encrypts `plaintext` for the record named by `context`.
    pub fn seal(&self, random: &dyn Random, plaintext: &[u8], context: &str) -> Result<Sealed> {
        let mut nonce = [0u8; 12];
        random.fill(&mut nonce);
        let ciphertext = self
            .current
            .cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: plaintext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| Error::internal("encryption failed"))?;
        Ok(Sealed {
            key_id: self.current.id.clone(),
            nonce: BASE64.encode(nonce),
            ciphertext: BASE64.encode(ciphertext),
        })
    }

    /// Decrypts a value sealed for `context` by the current or a previous key.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Vec<u8>> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == sealed.key_id)
            .ok_or_else(|| {
                Error::internal(format!(
                    "a secret is sealed with key {} that is not configured; add it to auth.previous_key_encryption_secrets",
                    sealed.key_id
                ))
            })?;
        let broken = || Error::internal(format!("a sealed secret ({context}) does not open"));
        let nonce = BASE64.decode(&sealed.nonce).map_err(|_| broken())?;
        let ciphertext = BASE64.decode(&sealed.ciphertext).map_err(|_| broken())?;
        let nonce: [u8; 12] = nonce.try_into().map_err(|_| broken())?;
        key.cipher
            .decrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: &ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| broken())
    }

    /// Whether `sealed` was sealed with the current key.
    pub fn is_current(&self, sealed: &Sealed) -> bool {
        sealed.key_id == self.current.id
    }

    /// `sealed` sealed again with the current key, or `None` when it already is.
    pub fn reseal(
        &self,
        random: &dyn Random,
        sealed: &Sealed,
        context: &str,
    ) -> Result<Option<Sealed>> {
        if self.is_current(sealed) {
            return Ok(None);
        }
        let plaintext = self.open(sealed, context)?;
        self.seal(random, &plaintext, context).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::env::SeededRandom;

    #[test]
    fn seals_open_only_for_their_record_and_key() {
        let random = SeededRandom::new(1);
        let ring = KeyRing::new(&[7; 32], &[]).unwrap();
        let a = ring.seal(&random, b"sk-secret", "credential:1").unwrap();
        let b = ring.seal(&random, b"sk-secret", "credential:1").unwrap();
        assert_ne!(a.nonce, b.nonce, "a fresh nonce per seal");
        assert_ne!(a.ciphertext, b.ciphertext);
        assert_eq!(ring.open(&a, "credential:1").unwrap(), b"sk-secret");
        assert!(
            ring.open(&a, "credential:2").is_err(),
            "bound to its record"
        );
        let mut tampered = a.clone();
        tampered.ciphertext = BASE64.encode(b"not the ciphertext at all!!");
        assert!(ring.open(&tampered, "credential:1").is_err());

        // A new key opens old values only while the old key is listed.
        let rotated = KeyRing::new(&[8; 32], &[vec![7; 32]]).unwrap();
        assert_ne!(rotated.current_key_id(), ring.current_key_id());
        assert!(!rotated.is_current(&a));
        assert_eq!(rotated.open(&a, "credential:1").unwrap(), b"sk-secret");
        let without = KeyRing::new(&[8; 32], &[]).unwrap();
        let e = without.open(&a, "credential:1").unwrap_err();
        assert!(e.cause().unwrap_or_default().contains(&a.key_id), "{e:?}");
        assert!(KeyRing::new(&[1; 16], &[]).is_err());
    }
}
