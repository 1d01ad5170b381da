//! `auth.passkeys` and `auth.mfa`: where passkeys are bound, and who must
//! have a second factor.

use gatehouse_core::accounts::passkeys::RelyingParty;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PasskeyConfig {
    /// Passkeys may be registered and used.
    pub enabled: bool,
    /// The relying party ID: the domain passkeys are bound to (the origins'
    /// host or a parent of it). Unset: the host of the first origin.
    pub rp_id: Option<String>,
    /// Shown by authenticators when a passkey is made.
    pub rp_name: String,
    /// Web origins that may run passkey ceremonies, e.g.
    /// `https://gatehouse.example.com`. Empty: `auth.sso.public_url`, else
    /// `tokens.issuer`.
    pub origins: Vec<String>,
}

impl Default for PasskeyConfig {
    fn default() -> Self {
        PasskeyConfig {
            enabled: true,
            rp_id: None,
            rp_name: "Gatehouse".to_string(),
            origins: Vec::new(),
        }
    }
}

impl PasskeyConfig {
    /// The relying party, with `fallback_origin` when no origin is set;
    /// `None` when passkeys are off.
    pub fn relying_party(&self, fallback_origin: &str) -> Result<Option<RelyingParty>, String> {
        if !self.enabled {
            return Ok(None);
        }
        let origins = if self.origins.is_empty() {
            vec![fallback_origin.trim_end_matches('/').to_string()]
        } else {
            self.origins.clone()
        };
        let rp_id = match &self.rp_id {
            Some(id) => id.clone(),
            None => origins
                .first()
                .and_then(|o| o.split_once("://"))
                .map(|(_, rest)| {
                    rest.split(['/', ':'])
                        .next()
                        .unwrap_or_default()
                        .to_string()
                })
                .unwrap_or_default(),
        };
        RelyingParty::new(&rp_id, &self.rp_name, &origins)
            .map(Some)
            .map_err(|e| format!("auth.passkeys: {}", e.message()))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MfaConfig {
    /// Holders of `admin` must have a second factor (a TOTP app or a passkey)
    /// before they may do anything but enrol one (OWASP ASVS level 2).
    pub required_for_admins: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_relying_party_defaults_to_the_public_origin_and_bad_ones_are_refused() {
        let config = PasskeyConfig::default();
        assert!(
            config
                .relying_party("http://localhost:3000")
                .unwrap()
                .is_some()
        );
        let off = PasskeyConfig {
            enabled: false,
            ..PasskeyConfig::default()
        };
        assert!(
            off.relying_party("http://localhost:3000")
                .unwrap()
                .is_none()
        );
        // The relying party ID must be the origin's domain or a parent of it.
        let wrong = PasskeyConfig {
            rp_id: Some("example.org".into()),
            origins: vec!["https://gatehouse.example.com".into()],
            ..PasskeyConfig::default()
        };
        let err = wrong.relying_party("").err().unwrap();
        assert!(err.contains("auth.passkeys"), "{err}");
        let parent = PasskeyConfig {
            rp_id: Some("example.com".into()),
            origins: vec!["https://gatehouse.example.com".into()],
            ..PasskeyConfig::default()
        };
        assert!(parent.relying_party("").unwrap().is_some());
        assert!(PasskeyConfig::default().relying_party("not a url").is_err());
    }
}
