//! Configuration: `config.yaml`, overridden by `GATEHOUSE__SECTION__KEY`
//! environment variables, overridden by command-line flags; validated as a whole
//! before anything starts, so a bad value stops the start with one line naming
//! the field.

mod factors;
mod sso;
pub use factors::{MfaConfig, PasskeyConfig};
pub use sso::{OAuth2Config, SsoConfig, SsoProviderConfig};

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Yaml};
use gatehouse_storage::{Engine, StorageConfig};
use serde::{Deserialize, Deserializer, Serialize};

/// The prefix of configuration environment variables; `__` separates levels.
pub const ENV_PREFIX: &str = "GATEHOUSE__";
/// Read when `--config` is not given and the file exists.
pub const DEFAULT_CONFIG_FILE: &str = "config.yaml";
/// Decoded secrets must be at least this long.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Development,
    Production,
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub mode: Mode,
    pub server: ServerConfig,
    pub storage: StorageSection,
    pub ids: IdsConfig,
    pub cluster: ClusterConfig,
    pub auth: AuthConfig,
    pub bootstrap: BootstrapConfig,
    pub email: EmailConfig,
    pub keys: KeysConfig,
    pub usage: UsageConfig,
    pub endpoints: EndpointsConfig,
    pub tokens: TokensConfig,
    pub vaults: VaultsConfig,
    pub log: LogConfig,
    pub console: ConsoleConfig,
    /// Endpoints, models and global aliases declared as code, applied at start.
    pub catalog: CatalogConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub http_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// A request taking longer is answered with a `timeout` error.
    pub request_timeout_secs: u64,
    /// After SIGTERM/SIGINT, in-flight requests get this long to finish.
    pub shutdown_grace_secs: u64,
    /// An HTTP/1 request header must arrive within this long.
    pub header_read_timeout_secs: u64,
    /// A connection that carries nothing for this long is closed (a request
    /// in flight finishes first).
    pub idle_timeout_secs: u64,
    /// The most connections each listener (REST, gRPC) holds at once; keep it
    /// under the process's descriptor limit (`ulimit -n`).
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            http_addr: SocketAddr::from(([0, 0, 0, 0], 3000)),
            grpc_addr: SocketAddr::from(([0, 0, 0, 0], 3001)),
            body_limit_bytes: 2 * 1024 * 1024,
            request_timeout_secs: 60,
            shutdown_grace_secs: 30,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 60,
            max_connections: 4096,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StorageSection {
    /// `memory`, `embedded`, `postgres` or `fdb`.
    pub engine: String,
    /// Data directory of the embedded engine.
    pub path: PathBuf,
    /// The embedded engine's page cache, in MiB (fit for a 512 MB container).
    pub cache_mb: usize,
    pub postgres_url: Option<String>,
    pub fdb_cluster_file: Option<PathBuf>,
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            engine: "embedded".to_string(),
            path: PathBuf::from("./data"),
            cache_mb: 32,
            postgres_url: None,
            fdb_cluster_file: None,
        }
    }
}

/// A snowflake worker ID, or `auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WorkerId {
    #[default]
    Auto,
    Fixed(u16),
}

impl Serialize for WorkerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            WorkerId::Auto => s.serialize_str("auto"),
            WorkerId::Fixed(n) => s.serialize_u16(*n),
        }
    }
}

impl<'de> Deserialize<'de> for WorkerId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        let invalid = || {
            serde::de::Error::custom(format!(
                "expected `auto` or a number from 0 to {}",
                gatehouse_core::id::MAX_WORKER_ID
            ))
        };
        let n = match Raw::deserialize(d)? {
            Raw::Text(s) if s == "auto" => return Ok(WorkerId::Auto),
            Raw::Text(s) => s.parse::<i64>().map_err(|_| invalid())?,
            Raw::Number(n) => n,
        };
        u16::try_from(n)
            .ok()
            .filter(|n| *n <= gatehouse_core::id::MAX_WORKER_ID)
            .map(WorkerId::Fixed)
            .ok_or_else(invalid)
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct IdsConfig {
    pub worker_id: WorkerId,
}

/// Coordination of instances that share a database engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterConfig {
    /// Worker-ID and leader leases expire after this long without renewal;
    /// instances renew every third of it.
    pub lease_secs: u64,
    /// How many change-feed records the trimming job keeps.
    pub change_feed_keep: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            lease_secs: 30,
            change_feed_keep: 100_000,
        }
    }
}

/// A secret given as base64. Never printed: `Debug` and `Serialize` (what
/// `gatehouse check-config` prints) both show `***`.
#[derive(Clone, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str("***")
    }
}

/// `url` with the password of its user information (`scheme://user:password@host`)
/// or a `password=` setting (PostgreSQL's `key=value` form) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@')
            && let Some((user, _password)) = userinfo.split_once(':')
        {
            return redact_settings(&format!("{scheme}://{user}:***@{host}{tail}"));
        }
        return redact_settings(url);
    }
    redact_settings(url)
}

/// `password=…` settings (query parameters or `key=value` words) as `password=***`.
fn redact_settings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("password=") {
        let value_start = at + "password=".len();
        out.push_str(&rest[..value_start]);
        out.push_str("***");
        let value_len = rest[value_start..]
            .find(['&', ' ', '#'])
            .unwrap_or(rest.len() - value_start);
        rest = &rest[value_start + value_len..];
    }
    out.push_str(rest);
    out
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    pub jwt_secret: Option<Secret>,
    pub key_encryption_secret: Option<Secret>,
    /// Earlier key-encryption secrets: they still decrypt, never encrypt
    /// (see `gatehouse rotate-encryption-key`).
    pub previous_key_encryption_secrets: Vec<Secret>,
    /// Lifetime of JWTs from `POST /api/v1/auth/login`.
    pub jwt_ttl_secs: u64,
    /// Whether anyone may create an account with `POST /api/v1/auth/register`.
    pub registration_enabled: bool,
    /// Fewest characters in a password (at least 8).
    pub password_min_chars: usize,
    /// A session unused for this long ends.
    pub session_idle_secs: u64,
    /// A session ends this long after sign-in, used or not.
    pub session_absolute_secs: u64,
    /// Mark session cookies `Secure`; unset means: in production mode.
    pub cookie_secure: Option<bool>,
    /// Single sign-on providers.
    pub sso: SsoConfig,
    /// Passkeys (WebAuthn).
    pub passkeys: PasskeyConfig,
    /// Second factors.
    pub mfa: MfaConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            jwt_secret: None,
            key_encryption_secret: None,
            previous_key_encryption_secrets: Vec::new(),
            jwt_ttl_secs: 24 * 60 * 60,
            registration_enabled: true,
            password_min_chars: 8,
            session_idle_secs: 2 * 3600,
            session_absolute_secs: 7 * 24 * 3600,
            cookie_secure: None,
            sso: SsoConfig::default(),
            passkeys: PasskeyConfig::default(),
            mfa: MfaConfig::default(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BootstrapConfig {
    pub admin_email: String,
    pub admin_password: Option<Secret>,
}

impl Default for BootstrapConfig {
    fn default() -> Self {
        BootstrapConfig {
            admin_email: "admin@localhost".to_string(),
            admin_password: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmailConfig {
    /// SMTP server URL; empty writes emails to the log.
    pub smtp_url: Option<String>,
    /// The sender of every email.
    pub from: String,
    /// How often the outbox is drained (at most once per cluster tick).
    pub outbox_interval_secs: u64,
}

impl Default for EmailConfig {
    fn default() -> Self {
        EmailConfig {
            smtp_url: None,
            from: "Gatehouse <gatehouse@localhost>".to_string(),
            outbox_interval_secs: 5,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KeysConfig {
    /// What every API key starts with: 1-16 of `a-z`, `0-9`, `_`, `-`.
    pub prefix: String,
    /// How often the access index reads changes other instances made.
    pub index_poll_ms: u64,
    /// How often keys' last-use times are written (in one batch).
    pub last_used_flush_secs: u64,
}

impl Default for KeysConfig {
    fn default() -> Self {
        KeysConfig {
            prefix: "ak_".to_string(),
            index_poll_ms: 250,
            last_used_flush_secs: 10,
        }
    }
}

/// Inference endpoints' health.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EndpointsConfig {
    /// Every instance probes the enabled endpoints that no call has reached
    /// for this long with `GET /v1/models` (0: never; health then comes from
    /// calls alone).
    pub health_probe_secs: u64,
    /// The largest non-streamed answer read from an endpoint; a larger one is
    /// a 502 (streams pass through piece by piece and are not limited).
    pub max_answer_bytes: usize,
}

impl Default for EndpointsConfig {
    fn default() -> Self {
        EndpointsConfig {
            health_probe_secs: 30,
            max_answer_bytes: 32 * 1024 * 1024,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UsageConfig {
    /// How often each instance writes buffered request logs and rollups and
    /// syncs budget spend with the others.
    pub flush_ms: u64,
    /// Request logs older than this are deleted (0 keeps them).
    pub request_log_retention_days: u64,
    /// Audit events older than this are deleted (0 keeps them).
    pub audit_retention_days: u64,
}

impl Default for UsageConfig {
    fn default() -> Self {
        UsageConfig {
            flush_ms: 1000,
            request_log_retention_days: 30,
            audit_retention_days: 365,
        }
    }
}

/// Vault tokens (service clients and users).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TokensConfig {
    /// Gatehouse's public base URL: the `iss` of its tokens; client assertions
    /// must name `{issuer}/api/v1/token` as their audience.
    pub issuer: String,
    /// Lifetime of a vault access token.
    pub access_ttl_secs: u64,
    /// Absolute lifetime of a user's refresh tokens (rotation never extends it).
    pub user_refresh_ttl_secs: u64,
    /// Absolute lifetime of a service client's refresh tokens.
    pub client_refresh_ttl_secs: u64,
    /// A signing key older than this is replaced (0: only by command).
    pub signing_key_rotation_days: u64,
}

impl Default for TokensConfig {
    fn default() -> Self {
        TokensConfig {
            issuer: "http://localhost:3000".into(),
            access_ttl_secs: 300,
            user_refresh_ttl_secs: 3600,
            client_refresh_ttl_secs: 7 * 24 * 3600,
            signing_key_rotation_days: 30,
        }
    }
}

/// The catalogue as code (SPEC §5 `catalog`): applied idempotently at each
/// start; entries removed here are left in place (delete them through the API).
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CatalogConfig {
    pub endpoints: Vec<CatalogEndpoint>,
    pub aliases: Vec<CatalogAlias>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEndpoint {
    pub name: String,
    /// With or without a trailing `/v1`.
    pub base_url: String,
    /// `openai` (default) or `anthropic`.
    #[serde(default)]
    pub flavour: CatalogFlavour,
    /// The environment variable holding the upstream's API key (the key
    /// itself never goes in the file); kept as the platform credential
    /// `catalog: <name>`.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub proxy_url: Option<String>,
    #[serde(default)]
    pub connect_timeout_ms: Option<u64>,
    #[serde(default)]
    pub request_timeout_ms: Option<u64>,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub models: Vec<CatalogModel>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CatalogFlavour {
    #[default]
    Openai,
    Anthropic,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    /// The name clients ask for.
    pub name: String,
    /// The upstream's name for it (default: `name`).
    #[serde(default)]
    pub upstream_name: Option<String>,
    #[serde(default)]
    pub provider: Option<String>,
    #[serde(default)]
    pub context_length: Option<u32>,
    /// US dollars per token.
    #[serde(default)]
    pub input_cost_per_token: f64,
    #[serde(default)]
    pub output_cost_per_token: f64,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Needs an approved subscription.
    #[serde(default)]
    pub restricted: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogAlias {
    pub alias: String,
    pub model: String,
}

fn yes() -> bool {
    true
}

impl CatalogConfig {
    /// The declaration for core, with each endpoint's key read from its
    /// environment variable (a variable that is named but unset stops the start).
    pub fn declared(&self) -> anyhow::Result<gatehouse_core::catalog::declared::DeclaredCatalog> {
        use gatehouse_core::catalog::declared::{
            DeclaredAlias, DeclaredCatalog, DeclaredEndpoint, DeclaredModel,
        };
        use gatehouse_core::model::catalog::ApiFlavour;
        let mut endpoints = Vec::with_capacity(self.endpoints.len());
        for (i, e) in self.endpoints.iter().enumerate() {
            let api_key = match &e.api_key_env {
                None => None,
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    anyhow::anyhow!(
                        "catalog.endpoints[{i}].api_key_env names {var}, which is not set"
                    )
                })?),
            };
            endpoints.push(DeclaredEndpoint {
                name: e.name.clone(),
                base_url: e.base_url.clone(),
                flavour: match e.flavour {
                    CatalogFlavour::Openai => ApiFlavour::Openai,
                    CatalogFlavour::Anthropic => ApiFlavour::Anthropic,
                },
                api_key,
                proxy_url: e.proxy_url.clone(),
                connect_timeout_ms: e.connect_timeout_ms,
                request_timeout_ms: e.request_timeout_ms,
                enabled: e.enabled,
                models: e
                    .models
                    .iter()
                    .map(|m| DeclaredModel {
                        name: m.name.clone(),
                        upstream_name: m.upstream_name.clone(),
                        provider: m.provider.clone(),
                        context_length: m.context_length,
                        input_cost_per_token: m.input_cost_per_token,
                        output_cost_per_token: m.output_cost_per_token,
                        enabled: m.enabled,
                        restricted: m.restricted,
                    })
                    .collect(),
            });
        }
        Ok(DeclaredCatalog {
            endpoints,
            aliases: self
                .aliases
                .iter()
                .map(|a| DeclaredAlias {
                    alias: a.alias.clone(),
                    model: a.model.clone(),
                })
                .collect(),
        })
    }
}

/// Vault sync towards the deployment's policy engine.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct VaultsConfig {
    /// The policy engine's gRPC address (`http://host:port`, implementing
    /// `gatehouse.v1.PolicyEngine`); empty: vaults show `not_configured`.
    pub policy_engine_url: Option<String>,
    /// Connect and call timeout towards the engine.
    pub policy_engine_timeout_ms: u64,
    /// How often the leader delivers pending vault changes.
    pub sync_interval_secs: u64,
}

impl Default for VaultsConfig {
    fn default() -> Self {
        VaultsConfig {
            policy_engine_url: None,
            policy_engine_timeout_ms: 5000,
            sync_interval_secs: 5,
        }
    }
}

impl VaultsConfig {
    /// The engine's URL, if one is configured.
    pub fn engine_url(&self) -> Option<&str> {
        self.policy_engine_url
            .as_deref()
            .map(str::trim)
            .filter(|u| !u.is_empty())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Pretty when standard error is a terminal, plain lines otherwise.
    #[default]
    Auto,
    Pretty,
    Plain,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A `tracing` filter, e.g. `info` or `gatehouse=debug,tower_http=info`.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Auto,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsoleConfig {
    /// The web console's path prefix: empty (the console at `/`) or like
    /// `/console`.
    pub base_path: String,
}

/// Flags that override files and environment.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub ephemeral: bool,
    pub http_addr: Option<SocketAddr>,
    pub grpc_addr: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
}

/// A configuration problem, as one line: the field, where its value came from,
/// and what is wrong.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration: {}", self.0)
    }
}

impl std::error::Error for ConfigError {}

fn field_error(field: &str, problem: impl fmt::Display) -> ConfigError {
    ConfigError(format!("{field}: {problem}"))
}

impl Config {
    /// The effective configuration as YAML, as `gatehouse check-config`
    /// prints it: secrets as `***`, and the passwords in the URLs of storage,
    /// email and the policy engine too.
    pub fn redacted_yaml(&self) -> Result<String, String> {
        let mut config = self.clone();
        for url in [
            &mut config.storage.postgres_url,
            &mut config.email.smtp_url,
            &mut config.vaults.policy_engine_url,
        ]
        .into_iter()
        .flatten()
        {
            *url = redact_url(url);
        }
        yaml_serde::to_string(&config).map_err(|e| e.to_string())
    }

    /// Loads and validates the configuration from file, environment and flags.
    pub fn load(overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut figment = Figment::from(Serialized::defaults(Config::default()));
        match &overrides.config_file {
            Some(path) if !path.exists() => {
                return Err(ConfigError(format!(
                    "config file {} does not exist",
                    path.display()
                )));
            }
            Some(path) => figment = figment.merge(Yaml::file_exact(path)),
            None if Path::new(DEFAULT_CONFIG_FILE).exists() => {
                figment = figment.merge(Yaml::file_exact(DEFAULT_CONFIG_FILE));
            }
            None => {}
        }
        figment = figment.merge(Env::prefixed(ENV_PREFIX).split("__"));
        let mut config: Config = figment.extract().map_err(describe_figment_error)?;
        config.apply(overrides);
        config.validate()?;
        Ok(config)
    }

    fn apply(&mut self, overrides: &Overrides) {
        if overrides.ephemeral {
            self.storage.engine = "memory".to_string();
        }
        if let Some(addr) = overrides.http_addr {
            self.server.http_addr = addr;
        }
        if let Some(addr) = overrides.grpc_addr {
            self.server.grpc_addr = addr;
        }
        if let Some(dir) = &overrides.data_dir {
            self.storage.path = dir.clone();
        }
    }

    /// Gatehouse's address as people reach it: `auth.sso.public_url`, else
    /// `tokens.issuer`.
    pub fn public_url(&self) -> &str {
        self.auth
            .sso
            .public_url
            .as_deref()
            .unwrap_or(&self.tokens.issuer)
    }

    /// The web console's address, for links in emails.
    pub fn console_url(&self) -> String {
        let base = gatehouse_api::console::ConsoleSettings::new(&self.console.base_path)
            .map(|c| c.base_path)
            .unwrap_or_default();
        format!("{}{base}", self.public_url().trim_end_matches('/'))
    }

    /// Where passkeys are bound (`None`: off): `auth.passkeys`, its origins
    /// defaulting to Gatehouse's public URL.
    pub fn relying_party(
        &self,
    ) -> Result<Option<gatehouse_core::accounts::passkeys::RelyingParty>, String> {
        self.auth.passkeys.relying_party(self.public_url())
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.auth
            .sso
            .validate(self.mode == Mode::Production)
            .map_err(ConfigError)?;
        self.relying_party().map_err(ConfigError)?;
        let prefix = &self.keys.prefix;
        if !(1..=16).contains(&prefix.len())
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
        {
            return Err(field_error(
                "keys.prefix",
                "must be 1-16 of a-z, 0-9, '_' and '-'",
            ));
        }
        let issuer = &self.tokens.issuer;
        if !(issuer.starts_with("http://") || issuer.starts_with("https://"))
            || issuer.contains(['?', '#', ' '])
        {
            return Err(field_error(
                "tokens.issuer",
                "must be an http:// or https:// URL without query or fragment",
            ));
        }
        if !(30..=86_400).contains(&self.tokens.access_ttl_secs)
            || self.tokens.user_refresh_ttl_secs == 0
            || self.tokens.client_refresh_ttl_secs == 0
        {
            return Err(field_error(
                "tokens",
                "access_ttl_secs must be 30-86400 and the refresh lifetimes at least 1",
            ));
        }
        if let Some(url) = self.vaults.engine_url()
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(field_error(
                "vaults.policy_engine_url",
                "must be an http:// or https:// gRPC address",
            ));
        }
        if self.vaults.sync_interval_secs == 0 || self.vaults.policy_engine_timeout_ms == 0 {
            return Err(field_error(
                "vaults",
                "sync_interval_secs and policy_engine_timeout_ms must be at least 1",
            ));
        }
        if self.usage.flush_ms == 0 {
            return Err(field_error("usage.flush_ms", "must be at least 1"));
        }
        if self.keys.index_poll_ms == 0 || self.keys.last_used_flush_secs == 0 {
            return Err(field_error(
                "keys",
                "index_poll_ms and last_used_flush_secs must be at least 1",
            ));
        }
        let engine = self.engine()?;
        match engine {
            Engine::Embedded if self.storage.path.as_os_str().is_empty() => {
                return Err(field_error(
                    "storage.path",
                    "must not be empty for the embedded engine",
                ));
            }
            Engine::Postgres if self.storage.postgres_url.is_none() => {
                return Err(field_error(
                    "storage.postgres_url",
                    "is required when storage.engine is `postgres`",
                ));
            }
            Engine::Fdb if self.storage.fdb_cluster_file.is_none() => {
                return Err(field_error(
                    "storage.fdb_cluster_file",
                    "is required when storage.engine is `fdb`",
                ));
            }
            _ => {}
        }
        if self.cluster.lease_secs < 3 {
            return Err(field_error("cluster.lease_secs", "must be at least 3"));
        }
        if self.server.body_limit_bytes == 0 {
            return Err(field_error(
                "server.body_limit_bytes",
                "must be greater than 0",
            ));
        }
        for (field, value) in [
            (
                "server.header_read_timeout_secs",
                self.server.header_read_timeout_secs,
            ),
            ("server.idle_timeout_secs", self.server.idle_timeout_secs),
            ("server.max_connections", self.server.max_connections as u64),
        ] {
            if value == 0 {
                return Err(field_error(field, "must be at least 1"));
            }
        }
        if self.storage.cache_mb == 0 {
            return Err(field_error("storage.cache_mb", "must be at least 1"));
        }
        if self.endpoints.max_answer_bytes == 0 {
            return Err(field_error(
                "endpoints.max_answer_bytes",
                "must be at least 1",
            ));
        }
        if self.server.request_timeout_secs == 0 {
            return Err(field_error(
                "server.request_timeout_secs",
                "must be greater than 0",
            ));
        }
        if self.server.http_addr == self.server.grpc_addr && self.server.http_addr.port() != 0 {
            return Err(field_error(
                "server.grpc_addr",
                "must differ from server.http_addr",
            ));
        }
        for secret in &self.auth.previous_key_encryption_secrets {
            decode_secret(secret)
                .map_err(|problem| field_error("auth.previous_key_encryption_secrets", problem))?;
        }
        for (field, secret) in [
            ("auth.jwt_secret", &self.auth.jwt_secret),
            (
                "auth.key_encryption_secret",
                &self.auth.key_encryption_secret,
            ),
        ] {
            match secret {
                Some(secret) => {
                    decode_secret(secret).map_err(|problem| field_error(field, problem))?;
                }
                None if self.mode == Mode::Production => {
                    return Err(field_error(
                        field,
                        "is required in production mode (base64 of at least 32 random bytes)",
                    ));
                }
                None => {}
            }
        }
        if !(60..=30 * 24 * 3600).contains(&self.auth.jwt_ttl_secs) {
            return Err(field_error(
                "auth.jwt_ttl_secs",
                "must be from 60 seconds to 30 days",
            ));
        }
        if let Err(e) = self.email.from.parse::<lettre::message::Mailbox>() {
            return Err(field_error("email.from", e));
        }
        if let Some(url) = self.email.smtp_url.as_deref().filter(|u| !u.is_empty())
            && let Err(e) = lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::from_url(url)
        {
            return Err(field_error("email.smtp_url", e));
        }
        if self.auth.session_idle_secs < 60 {
            return Err(field_error("auth.session_idle_secs", "must be at least 60"));
        }
        if self.auth.session_absolute_secs < self.auth.session_idle_secs {
            return Err(field_error(
                "auth.session_absolute_secs",
                "must be at least auth.session_idle_secs",
            ));
        }
        if !(8..=128).contains(&self.auth.password_min_chars) {
            return Err(field_error(
                "auth.password_min_chars",
                "must be from 8 to 128",
            ));
        }
        if !self.bootstrap.admin_email.contains('@') {
            return Err(field_error(
                "bootstrap.admin_email",
                "is not an email address",
            ));
        }
        if let Some(password) = &self.bootstrap.admin_password
            && password.0.chars().count() < 12
        {
            return Err(field_error(
                "bootstrap.admin_password",
                "must be at least 12 characters",
            ));
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.level) {
            return Err(field_error("log.level", e));
        }
        if let Err(e) = gatehouse_api::console::ConsoleSettings::new(&self.console.base_path) {
            return Err(field_error("console.base_path", e));
        }
        Ok(())
    }

    pub fn engine(&self) -> Result<Engine, ConfigError> {
        self.storage
            .engine
            .parse()
            .map_err(|e| field_error("storage.engine", e))
    }

    pub fn storage_config(&self) -> Result<StorageConfig, ConfigError> {
        Ok(StorageConfig {
            engine: self.engine()?,
            path: self.storage.path.clone(),
            cache_mb: self.storage.cache_mb,
            postgres_url: self.storage.postgres_url.clone(),
            fdb_cluster_file: self.storage.fdb_cluster_file.clone(),
        })
    }

    pub fn server_settings(&self) -> anyhow::Result<gatehouse_api::ServerSettings> {
        Ok(gatehouse_api::ServerSettings {
            http_addr: self.server.http_addr,
            grpc_addr: self.server.grpc_addr,
            body_limit_bytes: self.server.body_limit_bytes,
            max_answer_bytes: self.endpoints.max_answer_bytes,
            request_timeout: Duration::from_secs(self.server.request_timeout_secs),
            shutdown_grace: Duration::from_secs(self.server.shutdown_grace_secs),
            connections: gatehouse_api::listener::ConnectionLimits {
                header_read_timeout: Duration::from_secs(self.server.header_read_timeout_secs),
                idle_timeout: Duration::from_secs(self.server.idle_timeout_secs),
                max_connections: self.server.max_connections,
            },
            secure_cookies: self
                .auth
                .cookie_secure
                .unwrap_or(self.mode == Mode::Production),
            sso: self.auth.sso.settings()?,
            console: gatehouse_api::console::ConsoleSettings::new(&self.console.base_path)
                .map_err(anyhow::Error::msg)?,
        })
    }
}

/// Decodes a base64 secret of at least [`MIN_SECRET_BYTES`].
pub fn decode_secret(secret: &Secret) -> Result<Vec<u8>, String> {
    let bytes = BASE64
        .decode(secret.0.trim())
        .map_err(|_| "is not valid base64".to_string())?;
    if bytes.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "decodes to {} bytes; at least {MIN_SECRET_BYTES} are required",
            bytes.len()
        ));
    }
    Ok(bytes)
}

/// Turns figment's error into one line naming the field and, for environment
/// variables, the variable.
fn describe_figment_error(error: figment::Error) -> ConfigError {
    let Some(first) = error.into_iter().next() else {
        return ConfigError("unreadable configuration".to_string());
    };
    let field = first.path.join(".");
    let source = first.metadata.as_ref().map(|m| match &m.source {
        Some(figment::Source::File(path)) => path.display().to_string(),
        _ if m.name.contains("environment") => {
            let parts: Vec<String> = first.path.iter().map(|p| p.to_uppercase()).collect();
            format!("{ENV_PREFIX}{}", parts.join("__"))
        }
        _ => m.name.to_string(),
    });
    let what = first.kind.to_string();
    match (field.is_empty(), source) {
        (true, _) => ConfigError(what),
        (false, Some(source)) => ConfigError(format!("{field}: {what} (from {source})")),
        (false, _) => ConfigError(format!("{field}: {what}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker(yaml: &str) -> Result<WorkerId, String> {
        #[derive(Deserialize)]
        struct W {
            worker_id: WorkerId,
        }
        Figment::from(Yaml::string(yaml))
            .extract::<W>()
            .map(|w| w.worker_id)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn worker_id_is_auto_or_in_range() {
        assert_eq!(worker("worker_id: auto"), Ok(WorkerId::Auto));
        assert_eq!(worker("worker_id: 0"), Ok(WorkerId::Fixed(0)));
        assert_eq!(worker("worker_id: 1023"), Ok(WorkerId::Fixed(1023)));
        assert_eq!(worker("worker_id: '17'"), Ok(WorkerId::Fixed(17)));
        for bad in ["worker_id: 1024", "worker_id: -1", "worker_id: manual"] {
            assert!(worker(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_must_be_base64_of_32_bytes() {
        let ok = Secret("MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=".into());
        assert_eq!(decode_secret(&ok).unwrap().len(), 32);
        assert!(
            decode_secret(&Secret("c2hvcnQ=".into()))
                .unwrap_err()
                .contains("32")
        );
        assert!(
            decode_secret(&Secret("!!!".into()))
                .unwrap_err()
                .contains("base64")
        );
        assert_eq!(format!("{ok:?}"), "Secret(***)");
    }

    #[test]
    fn defaults_validate_and_match_the_spec() {
        let config = Config::default();
        config.validate().unwrap();
        assert_eq!(config.server.http_addr.port(), 3000);
        assert_eq!(config.server.grpc_addr.port(), 3001);
        assert_eq!(config.engine().unwrap(), Engine::Embedded);
        assert_eq!(config.storage.path, PathBuf::from("./data"));
        assert_eq!(config.bootstrap.admin_email, "admin@localhost");
        assert_eq!(config.mode, Mode::Development);
    }

    #[test]
    fn checked_in_config_yaml_is_valid_and_complete() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config.yaml");
        let from_file: Config = Figment::from(Serialized::defaults(Config::default()))
            .merge(Yaml::file_exact(path))
            .extract()
            .unwrap();
        from_file.validate().unwrap();
        // Every setting appears in the file, so operators see them all.
        let text = std::fs::read_to_string(path).unwrap();
        let defaults = serde_json::to_value(Config::default()).unwrap();
        for (section, fields) in defaults.as_object().unwrap() {
            match fields.as_object() {
                Some(fields) => {
                    for field in fields.keys() {
                        assert!(
                            text.contains(&format!("{field}:")),
                            "config.yaml lacks {section}.{field}"
                        );
                    }
                }
                None => assert!(
                    text.contains(&format!("{section}:")),
                    "config.yaml lacks {section}"
                ),
            }
        }
    }
}
