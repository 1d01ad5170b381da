//! What every domain shares and none owns: names and slugs, token hashing and
//! money. A leaf: it imports nothing of this crate but the error type.

use sha2::{Digest, Sha256};

use crate::{Error, Result};

/// What `Debug` shows in place of a secret (a token, a password, a
/// credential's plaintext).
pub const REDACTED: &str = "***";

/// Micro-dollars (1e-6 USD): spend is counted in integers.
pub type Micros = i64;

/// US dollars as micro-dollars, rounded to the nearest; beyond `i64` it
/// saturates (and a NaN, which no validated price makes, counts as nothing).
pub fn to_micros(usd: f64) -> Micros {
    // `as` from a float saturates at the integer's bounds and maps NaN to 0.
    (usd * 1e6).round() as Micros
}

/// SHA-256 of a secret token: sessions, API keys, invitations, email and
/// refresh tokens are stored only as this.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// A name for an organization, team or vault: at most 100 characters as
/// sent, no control characters, trimmed, not blank.
pub fn parse_name(name: &str, what: &str) -> Result<String> {
    match trimmed_text(name, 100).filter(|n| !n.is_empty()) {
        Some(name) => Ok(name.to_string()),
        None => Err(Error::invalid_input(format!(
            "{what} names are 1 to 100 characters without control characters"
        ))),
    }
}

/// A one-line text (a name, a label, a model) of at most `max_chars`
/// characters as sent (what a schema's `maxLength` counts), trimmed; `None`
/// when it is longer or holds a control character anywhere — even at the
/// ends, where trimming would have dropped some of them (`\t`, `\n`, `\r`,
/// `\f`).
pub fn trimmed_text(text: &str, max_chars: usize) -> Option<&str> {
    (text.chars().count() <= max_chars && !text.chars().any(char::is_control)).then(|| text.trim())
}

/// A free-text description: at most 1000 characters as sent, trimmed, empty
/// when absent.
pub fn parse_description(description: Option<&str>) -> Result<String> {
    let d = description.unwrap_or_default();
    if d.chars().count() > 1000 {
        return Err(Error::invalid_input(
            "descriptions are at most 1000 characters",
        ));
    }
    Ok(d.trim().to_string())
}

/// The slug of a name: lower-case letters and digits, other runs as one `-`.
pub fn slugify(name: &str) -> Result<String> {
    let mut slug = String::with_capacity(name.len());
    for c in name.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            slug.push(c);
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-').to_string();
    if slug.is_empty() {
        return Err(Error::invalid_input(
            "an organization name needs at least one letter or digit",
        ));
    }
    Ok(slug)
}

/// Whether `a` and `b` are equal, taking the same time wherever they differ.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(parse_name("  Research ", "team").unwrap(), "Research");
        // Control characters are refused at the ends too, where trimming
        // would have dropped them (`\f`, `\r` and `\n` are whitespace).
        for bad in [
            "",
            "   ",
            "a\u{7}b",
            "Lab\u{c}",
            "\r",
            "\nLab",
            &"x".repeat(101),
            // What a schema's `maxLength` counts: the name as sent.
            &format!(" {} ", "x".repeat(99)),
        ] {
            assert!(parse_name(bad, "team").is_err(), "{bad:?}");
        }
        assert_eq!(slugify("  Acme, Inc. ").unwrap(), "acme-inc");
        assert_eq!(slugify("Ünïcode Lab").unwrap(), "ünïcode-lab");
        assert!(slugify("--").is_err());
        assert!(parse_description(Some(&"x".repeat(1001))).is_err());
        assert!(parse_description(Some(&format!("x{}", "\u{c}".repeat(1000)))).is_err());
        assert_eq!(parse_description(Some(" x ")).unwrap(), "x");
        assert_eq!(parse_description(None).unwrap(), "");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        use crate::catalog::{CredentialChange, NewCredential};
        use crate::model::catalog::CredentialKind;
        use crate::model::vaults::VaultRole;
        use crate::vaults::tokens::IssuedTokens;

        let credential = NewCredential {
            scope: None,
            name: "upstream".into(),
            kind: CredentialKind::Openai,
            secret: serde_json::json!({"api_key": "sk-plaintext-1"}),
            metadata: serde_json::Value::Null,
        };
        let change = CredentialChange {
            secret: Some(serde_json::json!({"api_key": "sk-plaintext-2"})),
            ..Default::default()
        };
        let tokens = IssuedTokens {
            access_token: "eyJ.access.token".into(),
            expires_in: 300,
            refresh_token: "rt_plaintext".into(),
            refresh_expires_at: chrono::DateTime::UNIX_EPOCH,
            org_id: crate::Id(1),
            vault_id: crate::Id(2),
            role: VaultRole::Reader,
        };
        let shown = format!("{credential:?} {change:?} {tokens:?}");
        for secret in [
            "sk-plaintext-1",
            "sk-plaintext-2",
            "eyJ.access.token",
            "rt_plaintext",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(
            shown.contains("upstream") && shown.contains(REDACTED),
            "{shown}"
        );
    }

    #[test]
    fn money_is_whole_micro_dollars() {
        assert_eq!(to_micros(0.000_000_4), 0);
        assert_eq!(to_micros(1.5), 1_500_000);
    }
}
