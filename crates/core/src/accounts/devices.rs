//! Device proofs, OWASP's "device cookie": a client that signs in to an
//! account gets a signed token naming the account and a random device ID.
//! Presented at a later sign-in to the same account, it puts the attempt on
//! the device's own failure counter instead of the account's and the IP's, so
//! a burst of wrong passwords from elsewhere cannot lock that client out (and
//! a stolen proof still gets only the free failures before delays).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Id;

/// Signs and checks device proofs with a key derived from the JWT secret.
pub(super) struct Devices {
    key: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8]) -> HmacSha256 {
    // HMAC takes keys of any length: this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!())
}

/// The longest proof looked at (the ones issued are about 90 characters).
const MAX_LEN: usize = 200;

impl Devices {
    pub(super) fn new(secret: &[u8]) -> Self {
        let mut derive = mac(secret);
        derive.update(b"gatehouse device proof v1");
        Devices {
            key: derive.finalize().into_bytes().to_vec(),
        }
    }

    /// The MAC over what a proof names.
    fn signer(&self, user: Id, device: &str) -> HmacSha256 {
        let mut m = mac(&self.key);
        m.update(format!("{}.{device}", user.0).as_bytes());
        m
    }

    /// A proof that `device` signed in to `user`.
    pub(super) fn issue(&self, user: Id, device: &str) -> String {
        let signature = self.signer(user, device).finalize().into_bytes();
        format!("{}.{device}.{}", user.0, crate::codec::hex(&signature))
    }

    /// The account and device ID a genuine proof names.
    pub(super) fn verify(&self, proof: &str) -> Option<(Id, String)> {
        if proof.len() > MAX_LEN {
            return None;
        }
        let mut parts = proof.split('.');
        let (user, device, signature) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || device.is_empty() {
            return None;
        }
        let user = Id(user.parse().ok()?);
        let signature = crate::codec::unhex(signature)?;
        // `verify_slice` compares in constant time.
        self.signer(user, device)
            .verify_slice(&signature)
            .ok()
            .map(|()| (user, device.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proofs_verify_only_untouched_and_with_the_right_key() {
        let devices = Devices::new(&[1; 32]);
        let proof = devices.issue(Id(42), "d3v1c3");
        assert_eq!(devices.verify(&proof), Some((Id(42), "d3v1c3".into())));
        let other_user = proof.replacen("42.", "43.", 1);
        assert_eq!(devices.verify(&other_user), None);
        let mut flipped = proof.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(devices.verify(&flipped), None);
        assert_eq!(Devices::new(&[2; 32]).verify(&proof), None);
        for junk in ["", "42", "42.x", "42..sig", "a.b.c", &"9".repeat(500)] {
            assert_eq!(devices.verify(junk), None, "{junk}");
        }
    }
}
