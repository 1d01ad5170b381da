//! Compact JWS with EdDSA (Ed25519), the only algorithm Gatehouse signs with or
//! accepts from clients: `base64url(header) . base64url(claims) .
//! base64url(signature)` (RFC 7515, RFC 8037).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// The JOSE header Gatehouse reads and writes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typ: Option<String>,
}

/// Signs `claims` with `key`, naming it `kid`.
pub fn sign(key: &SigningKey, kid: &str, claims: &Value) -> String {
    let header = Header {
        alg: "EdDSA".into(),
        kid: Some(kid.to_string()),
        typ: Some("JWT".into()),
    };
    // Serializing these types into JSON cannot fail.
    let header = serde_json::to_vec(&header).unwrap_or_default();
    let claims = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = URL_SAFE_NO_PAD.encode(header);
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(claims));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(signature.to_bytes()));
    token
}

/// A token split into its parts, its signature not yet checked.
pub struct Unverified<'a> {
    pub header: Header,
    pub claims: Value,
    signing_input: &'a str,
    signature: Signature,
}

/// Splits and decodes a compact JWS. Anything malformed is `unauthenticated`.
pub fn parse(token: &str) -> Result<Unverified<'_>> {
    let bad = |what: &str| {
        Error::new(
            crate::ErrorCode::Unauthenticated,
            format!("the assertion {what}"),
        )
    };
    if token.len() > 8 * 1024 {
        return Err(bad("is too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(claims), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("is not a compact JWS (three dot-separated parts)"));
    };
    let decode = |part: &str| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| bad("is not base64url"))
    };
    let header: Header =
        serde_json::from_slice(&decode(header)?).map_err(|_| bad("has an unreadable header"))?;
    let claims: Value =
        serde_json::from_slice(&decode(claims)?).map_err(|_| bad("has unreadable claims"))?;
    if !claims.is_object() {
        return Err(bad("claims are not a JSON object"));
    }
    let signature: [u8; 64] = decode(signature)?
        .try_into()
        .map_err(|_| bad("signature is not 64 bytes"))?;
    let signing_input = &token[..token.rfind('.').unwrap_or(0)];
    Ok(Unverified {
        header,
        claims,
        signing_input,
        signature: Signature::from_bytes(&signature),
    })
}

impl Unverified<'_> {
    /// Whether `key` made the signature (strict verification: no malleable
    /// signatures, no weak keys).
    pub fn verify(&self, key: &VerifyingKey) -> bool {
        self.header.alg == "EdDSA"
            && key
                .verify_strict(self.signing_input.as_bytes(), &self.signature)
                .is_ok()
    }
}

/// A public key as it appears in a JWK's `x`.
pub fn encode_public_key(key: &VerifyingKey) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

/// An Ed25519 public key as a JWK (RFC 8037), for EdDSA signatures; `x` is
/// the key as [`encode_public_key`] writes it.
pub fn public_jwk(kid: &str, x: &str) -> Value {
    serde_json::json!({
        "kty": "OKP",
        "crv": "Ed25519",
        "x": x,
        "kid": kid,
        "alg": "EdDSA",
        "use": "sig",
    })
}

/// Reads a JWK `x` value back into a key.
pub fn decode_public_key(x: &str) -> Result<VerifyingKey> {
    let bytes: [u8; 32] = URL_SAFE_NO_PAD
        .decode(x.trim().trim_end_matches('='))
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::invalid_input("the public key is not 32 bytes of base64url"))?;
    VerifyingKey::from_bytes(&bytes)
        .map_err(|_| Error::invalid_input("the public key is not a valid Ed25519 key"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn signs_and_verifies_and_refuses_tampering() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let token = sign(&key, "k1", &json!({"sub": "a"}));
        let parsed = parse(&token).unwrap();
        assert_eq!(parsed.header.kid.as_deref(), Some("k1"));
        assert_eq!(parsed.claims["sub"], "a");
        assert!(parsed.verify(&key.verifying_key()));
        let other = SigningKey::from_bytes(&[8u8; 32]);
        assert!(!parsed.verify(&other.verifying_key()));
        // Change one claim, keep the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"b"}"#);
        parts[1] = &forged;
        let forged = parts.join(".");
        assert!(!parse(&forged).unwrap().verify(&key.verifying_key()));
        for bad in ["", "a.b", "a.b.c.d", "!!.!!.!!", &token.replace('.', "")] {
            assert!(parse(bad).is_err(), "{bad}");
        }
        let round = decode_public_key(&encode_public_key(&key.verifying_key())).unwrap();
        assert_eq!(round, key.verifying_key());
        assert!(decode_public_key("short").is_err());
    }
}
