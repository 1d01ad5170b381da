//! The server's secrets: taken from configuration, or — in development mode only
//! — generated on first start. Generated secrets are kept in the embedded data
//! directory (`dev-secrets.json`, readable by the owner only) so that tokens and
//! encrypted credentials survive restarts; with the memory engine they live as
//! long as the process.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand::RngCore;
use serde::{Deserialize, Serialize};

use crate::config::{Config, Mode, Secret, decode_secret};

pub const DEV_SECRETS_FILE: &str = "dev-secrets.json";

/// Decoded secrets, ready for use.
pub struct Secrets {
    pub jwt: Vec<u8>,
    pub key_encryption: Vec<u8>,
    /// Earlier key-encryption secrets, which only decrypt.
    pub previous_key_encryption: Vec<Vec<u8>>,
}

#[derive(Serialize, Deserialize, Default)]
struct DevSecrets {
    jwt_secret: Option<String>,
    key_encryption_secret: Option<String>,
}

/// Resolves the secrets for `config`, generating missing ones in development mode.
pub fn resolve(config: &Config, persist_in: Option<&Path>) -> anyhow::Result<Secrets> {
    let file = persist_in.map(|dir| dir.join(DEV_SECRETS_FILE));
    let mut stored: DevSecrets = match &file {
        Some(path) if path.exists() => serde_json::from_slice(&std::fs::read(path)?)
            .map_err(|e| anyhow::anyhow!("{} is unreadable: {e}", path.display()))?,
        _ => DevSecrets::default(),
    };
    let mut generated = Vec::new();
    let mut pick = |field: &'static str, configured: &Option<Secret>, slot: &mut Option<String>| {
        if let Some(secret) = configured {
            return decode_secret(secret).map_err(|p| anyhow::anyhow!("{field}: {p}"));
        }
        if config.mode == Mode::Production {
            anyhow::bail!("{field}: is required in production mode");
        }
        let value = slot.get_or_insert_with(|| {
            generated.push(field);
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            BASE64.encode(bytes)
        });
        decode_secret(&Secret(value.clone()))
            .map_err(|p| anyhow::anyhow!("{field} in dev secrets: {p}"))
    };
    let jwt = pick(
        "auth.jwt_secret",
        &config.auth.jwt_secret,
        &mut stored.jwt_secret,
    )?;
    let key_encryption = pick(
        "auth.key_encryption_secret",
        &config.auth.key_encryption_secret,
        &mut stored.key_encryption_secret,
    )?;
    if !generated.is_empty() {
        match &file {
            Some(path) => {
                write_private(path, &serde_json::to_vec_pretty(&stored)?)?;
                tracing::warn!(
                    secrets = ?generated,
                    file = %path.display(),
                    "development mode: generated missing secrets and saved them; set them explicitly in production"
                );
            }
            None => tracing::warn!(
                secrets = ?generated,
                "development mode: generated missing secrets for this process only; set them explicitly in production"
            ),
        }
    }
    let previous_key_encryption = config
        .auth
        .previous_key_encryption_secrets
        .iter()
        .map(|s| {
            decode_secret(s)
                .map_err(|p| anyhow::anyhow!("auth.previous_key_encryption_secrets: {p}"))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Secrets {
        jwt,
        key_encryption,
        previous_key_encryption,
    })
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    let mut f = options.open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}
