//! Passwords: the policy that accepts them and argon2id hashes that store them.

use std::collections::HashSet;
use std::sync::LazyLock;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::{Error, Result};

/// Argon2id with OWASP's recommended minimum: 19 MiB, 2 passes, 1 lane.
pub const MEMORY_KIB: u32 = 19_456;
pub const ITERATIONS: u32 = 2;
pub const PARALLELISM: u32 = 1;
pub const MAX_CHARS: usize = 128;

static COMMON: LazyLock<HashSet<&'static str>> = LazyLock::new(|| {
    include_str!("../../data/common-passwords.txt")
        .lines()
        .collect()
});

/// Which passwords are acceptable.
#[derive(Debug, Clone, Copy)]
pub struct PasswordPolicy {
    /// Fewest Unicode characters (at least 8).
    pub min_chars: usize,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy { min_chars: 8 }
    }
}

impl PasswordPolicy {
    /// Checks length (in characters, not bytes) and the common-password list.
    pub fn check(&self, password: &str) -> Result<()> {
        let chars = password.chars().count();
        if chars < self.min_chars || chars > MAX_CHARS {
            return Err(Error::invalid_input(format!(
                "passwords are {} to {MAX_CHARS} characters long",
                self.min_chars
            )));
        }
        if COMMON.contains(password.to_lowercase().as_str()) {
            return Err(Error::invalid_input(
                "this password is too common; choose another",
            ));
        }
        Ok(())
    }
}

fn argon2() -> Argon2<'static> {
    // The constants are valid parameters, so this cannot fail.
    let params = Params::new(MEMORY_KIB, ITERATIONS, PARALLELISM, None)
        .unwrap_or_else(|_| Params::default());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes `password` with a fresh 16-byte `salt` into a PHC string.
pub fn hash(password: &str, salt: &[u8; 16]) -> Result<String> {
    let salt = SaltString::encode_b64(salt).map_err(Error::internal)?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(Error::internal)
}

/// The outcome of checking a password against a stored hash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    No,
    Yes,
    /// Correct, but hashed with other parameters: store a new hash.
    YesRehash,
}

/// Verifies `password` against a stored PHC string.
pub fn verify(password: &str, stored: &str) -> Verified {
    let Ok(parsed) = PasswordHash::new(stored) else {
        return Verified::No;
    };
    if argon2()
        .verify_password(password.as_bytes(), &parsed)
        .is_err()
    {
        return Verified::No;
    }
    let current = parsed.algorithm.as_str() == "argon2id"
        && parsed.params.get_decimal("m") == Some(MEMORY_KIB)
        && parsed.params.get_decimal("t") == Some(ITERATIONS)
        && parsed.params.get_decimal("p") == Some(PARALLELISM);
    if current {
        Verified::Yes
    } else {
        Verified::YesRehash
    }
}

/// A hash of a password nobody has, verified against when the account does not
/// exist so that both cases take the same time.
pub static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash("no account has this password", &[7; 16]).unwrap_or_default());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_counts_characters_and_refuses_common_passwords() {
        let policy = PasswordPolicy::default();
        assert!(policy.check("short").is_err());
        assert!(
            policy.check("ñandú-ñandú").is_ok(),
            "11 characters, 13 bytes"
        );
        assert!(policy.check("ééééééé").is_err(), "7 characters, 14 bytes");
        assert!(policy.check(&"x".repeat(129)).is_err());
        assert!(policy.check("Password1").is_err(), "common, any case");
        assert!(policy.check("iloveyou").is_err());
        assert!(policy.check("correct horse battery staple").is_ok());
        assert_eq!(COMMON.len(), 10_000);
        let strict = PasswordPolicy { min_chars: 12 };
        assert!(strict.check("eleven-char").is_err());
    }

    #[test]
    fn hashes_are_argon2id_with_the_set_parameters() {
        let stored = hash("correct horse battery staple", &[1; 16]).unwrap();
        assert!(
            stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{stored}"
        );
        assert_eq!(
            verify("correct horse battery staple", &stored),
            Verified::Yes
        );
        assert_eq!(verify("wrong", &stored), Verified::No);
        assert_eq!(verify("x", "not a hash"), Verified::No);
    }

    #[test]
    fn older_parameters_ask_for_a_rehash() {
        let weak = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(8192, 1, 1, None).unwrap(),
        );
        let salt = SaltString::encode_b64(&[2; 16]).unwrap();
        let old = weak
            .hash_password(b"correct horse", &salt)
            .unwrap()
            .to_string();
        assert_eq!(verify("correct horse", &old), Verified::YesRehash);
        assert_eq!(verify("wrong horse", &old), Verified::No);
    }
}
