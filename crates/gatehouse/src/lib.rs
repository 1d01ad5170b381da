//! The Gatehouse binary's library half: configuration, logging, secrets, and the
//! wiring of storage, core services and the servers. `main.rs` only parses the
//! command line; tests build the same [`Gatehouse`] in-process.

pub mod admin;
pub mod cluster;
pub mod config;
pub mod mail;
pub mod secrets;
pub mod telemetry;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use gatehouse_api::Application;
use gatehouse_core::Env;
use gatehouse_core::accounts::AccountSettings;
use gatehouse_core::accounts::password::PasswordPolicy;
use gatehouse_core::blocking::BlockingPool;
use gatehouse_core::crypto::KeyRing;
use gatehouse_core::env::{Clock, OsRandom, SystemClock};
use gatehouse_core::model::sessions::SessionPolicy;
use gatehouse_core::services::cluster::ClusterService;
use gatehouse_core::services::{CatalogSettings, Services, VaultSettings};
use gatehouse_core::vaults::tokens::TokenSettings;
use gatehouse_storage::Engine;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WorkerId};

/// A fully wired server, bound and ready to run.
pub struct Gatehouse {
    pub app: Application,
    pub services: Services,
    pub worker_id: u16,
    lease: Duration,
    jobs: Vec<cluster::Job>,
    keys: config::KeysConfig,
    usage: config::UsageConfig,
    endpoints: config::EndpointsConfig,
}

impl Gatehouse {
    /// Opens storage, initializes the store, and binds the servers.
    pub async fn build(config: &Config) -> anyhow::Result<Self> {
        let Opened {
            services,
            worker_id,
            engine,
        } = open_services(config).await?;
        let lease = Duration::from_secs(config.cluster.lease_secs);
        let installation = services.system.initialize().await?;
        let admin_password = config
            .bootstrap
            .admin_password
            .as_ref()
            .map(|p| p.0.as_str());
        if let Some(created) = services
            .accounts
            .bootstrap_admin(&config.bootstrap.admin_email, admin_password)
            .await
            .context("creating the first admin (bootstrap.admin_email)")?
        {
            match created.generated_password {
                // SPEC §2: a generated password is printed once, to be changed at first login.
                Some(password) => tracing::warn!(
                    email = %created.admin.email,
                    password = %password,
                    "created the first admin with a generated password; it is shown only now and must be changed at first login"
                ),
                None => tracing::info!(email = %created.admin.email, "created the first admin"),
            }
        }
        // Accounts made before projects existed get their default project.
        let made = services
            .work
            .ensure_default_projects()
            .await
            .context("giving personal organizations their default project")?;
        if made > 0 {
            tracing::info!(
                projects = made,
                "created default projects for existing accounts"
            );
        }
        tracing::info!(
            installation_id = %installation.id,
            engine = engine.as_str(),
            worker_id,
            "store ready"
        );
        apply_catalog(&services, &config.catalog).await?;
        services
            .keys
            .index()
            .load()
            .await
            .context("loading the API-key access index")?;
        services
            .usage
            .load_spend()
            .await
            .context("loading budget spend")?;
        services
            .tokens
            .ensure_signing_key()
            .await
            .context("creating the first token-signing key")?;
        let app = Application::build(&config.server_settings()?, services.clone()).await?;
        let mailer: Arc<dyn gatehouse_core::email::Mailer> =
            match config.email.smtp_url.as_deref().filter(|u| !u.is_empty()) {
                Some(url) => Arc::new(mail::SmtpMailer::new(url, &config.email.from)?),
                None => Arc::new(mail::NoMailer),
            };
        let policy_engine = match config.vaults.engine_url() {
            Some(url) => Some(Arc::new(upstream::GrpcPolicyEngine::new(
                url,
                Duration::from_millis(config.vaults.policy_engine_timeout_ms),
            )?)
                as Arc<dyn gatehouse_core::vaults::PolicyEngine>),
            None => None,
        };
        let jobs = cluster::jobs(
            &services,
            &config.usage,
            (&config.tokens, &config.vaults, policy_engine),
            config.cluster.change_feed_keep,
            mailer,
            Duration::from_secs(config.email.outbox_interval_secs),
        );
        Ok(Gatehouse {
            app,
            services,
            worker_id,
            lease,
            jobs,
            keys: config.keys.clone(),
            usage: config.usage.clone(),
            endpoints: config.endpoints.clone(),
        })
    }

    pub fn http_addr(&self) -> std::io::Result<SocketAddr> {
        self.app.http_addr()
    }

    pub fn grpc_addr(&self) -> std::io::Result<SocketAddr> {
        self.app.grpc_addr()
    }

    /// Serves, and takes part in the cluster, until `shutdown` completes (or
    /// this instance loses its worker ID).
    pub async fn run_until_stopped(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let stop = CancellationToken::new();
        let driver = tokio::spawn(cluster::drive(
            self.services.clone(),
            self.worker_id,
            self.lease,
            self.jobs,
            stop.clone(),
        ));
        let follower = tokio::spawn(follow_keys(
            self.services.clone(),
            Duration::from_millis(self.keys.index_poll_ms),
            Duration::from_secs(self.keys.last_used_flush_secs),
            stop.clone(),
        ));
        let usage = tokio::spawn(write_usage(
            self.services.clone(),
            Duration::from_millis(self.usage.flush_ms),
            stop.clone(),
        ));
        let probes = (self.endpoints.health_probe_secs > 0).then(|| {
            tokio::spawn(probe_endpoints(
                self.services.clone(),
                Duration::from_secs(self.endpoints.health_probe_secs),
                stop.clone(),
            ))
        });
        let server_stop = stop.clone();
        let served = self
            .app
            .run_until_stopped(async move {
                tokio::select! {
                    _ = shutdown => {}
                    _ = server_stop.cancelled() => {}
                }
            })
            .await;
        stop.cancel();
        follower.await.context("access index task")?;
        usage.await.context("usage writer task")?;
        if let Some(probes) = probes {
            probes.await.context("endpoint probe task")?;
        }
        let driven = driver.await.context("cluster driver task")?;
        served?;
        Ok(driven?)
    }
}

/// Storage and core services, with a leased worker ID, before any listener.
pub struct Opened {
    pub services: Services,
    pub worker_id: u16,
    pub engine: Engine,
}

impl Opened {
    /// Gives the worker ID back when a maintenance command is done.
    async fn release(&self) {
        if let Err(e) = self
            .services
            .cluster
            .release_worker_id(self.worker_id)
            .await
        {
            tracing::warn!(error = %e, "could not release the worker ID; its lease expires on its own");
        }
    }
}

/// Opens storage, resolves secrets, leases a worker ID and builds the
/// services: what `serve` and the maintenance commands share.
pub async fn open_services(config: &Config) -> anyhow::Result<Opened> {
    let storage = config.storage_config()?;
    let store = gatehouse_storage::open(&storage)
        .await
        .with_context(|| format!("opening storage engine `{}`", storage.engine))?;
    let persist = (storage.engine == Engine::Embedded).then_some(storage.path.as_path());
    let secrets = secrets::resolve(config, persist)?;

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let cluster = Arc::new(ClusterService::new(
        store.clone(),
        clock.clone(),
        &OsRandom,
        Duration::from_secs(config.cluster.lease_secs).as_millis() as i64,
    ));
    let preferred = match config.ids.worker_id {
        WorkerId::Auto => None,
        WorkerId::Fixed(id) => Some(id),
    };
    let worker_id = cluster
        .lease_worker_id(preferred)
        .await
        .context("leasing a snowflake worker ID (ids.worker_id)")?;
    let env = Env::system(worker_id, clock)?;
    let services = Services::new(
        store,
        env,
        cluster,
        Arc::new(TokioBlockingPool::new()),
        AccountSettings {
            jwt_secret: secrets.jwt,
            jwt_ttl_secs: config.auth.jwt_ttl_secs as i64,
            registration_enabled: config.auth.registration_enabled,
            sso_required_domains: config
                .auth
                .sso
                .required_for_domains
                .iter()
                .map(|d| d.to_ascii_lowercase())
                .collect(),
            password_policy: PasswordPolicy {
                min_chars: config.auth.password_min_chars,
            },
            sessions: SessionPolicy {
                idle_secs: config.auth.session_idle_secs as i64,
                absolute_secs: config.auth.session_absolute_secs as i64,
            },
            mfa_required_for_admins: config.auth.mfa.required_for_admins,
            passkeys: config.relying_party().map_err(anyhow::Error::msg)?,
            console_url: Some(config.console_url()),
        },
        CatalogSettings {
            keys: Arc::new(
                KeyRing::new(&secrets.key_encryption, &secrets.previous_key_encryption)
                    .context("auth.key_encryption_secret")?,
            ),
            lister: Arc::new(upstream::HttpModelLister::new()?),
            key_prefix: config.keys.prefix.clone(),
        },
        VaultSettings {
            tokens: TokenSettings {
                issuer: config.tokens.issuer.trim_end_matches('/').to_string(),
                access_ttl_secs: config.tokens.access_ttl_secs as i64,
                user_refresh_ttl_secs: config.tokens.user_refresh_ttl_secs as i64,
                client_refresh_ttl_secs: config.tokens.client_refresh_ttl_secs as i64,
            },
            policy_engine: config.vaults.engine_url().is_some(),
        },
    );
    Ok(Opened {
        services,
        worker_id,
        engine: storage.engine,
    })
}

/// `gatehouse rotate-signing-key`: makes a new token-signing key current.
/// Tokens signed with the previous key stay verifiable (it stays in the JWKS
/// document for a day).
pub async fn rotate_signing_key(config: &Config) -> anyhow::Result<String> {
    let opened = open_services(config).await?;
    let kid = opened.services.tokens.rotate_signing_key().await;
    opened.release().await;
    kid.context("rotating the signing key")
}

/// `gatehouse rotate-encryption-key`: re-seals every stored secret with the
/// current key-encryption secret; returns how many were re-sealed. Run it
/// after making the new secret current and listing the old one under
/// `auth.previous_key_encryption_secrets`; remove the old one afterwards.
pub async fn rotate_encryption_key(config: &Config) -> anyhow::Result<usize> {
    let opened = open_services(config).await?;
    let services = &opened.services;
    let resealed = async {
        Ok::<_, gatehouse_core::Error>(
            services.catalog.reseal_all().await?
                + services.vaults.reseal_all().await?
                + services.tokens.reseal_all().await?
                + services.accounts.reseal_totp().await?,
        )
    }
    .await;
    opened.release().await;
    let resealed = resealed.context("re-sealing stored secrets")?;
    opened
        .services
        .audit
        .record(gatehouse_core::audit::NewEvent {
            actor: gatehouse_core::audit::Actor::System,
            action: "secrets.reseal",
            outcome: gatehouse_core::audit::Outcome::Success,
            target: None,
            organization: None,
            client: &Default::default(),
            details: serde_json::json!({"resealed": resealed}),
        })
        .await;
    Ok(resealed)
}

/// Keeps this instance's access index current with what other instances
/// write, and writes keys' last-use times in batches, until `stop`; flushes
/// once more on the way out.
async fn follow_keys(services: Services, poll: Duration, flush: Duration, stop: CancellationToken) {
    let index = services.keys.index().clone();
    let mut next_flush = tokio::time::Instant::now() + flush;
    loop {
        if let Err(e) = index.catch_up().await {
            tracing::warn!(error = %e, "access index could not read the change feed");
        }
        if tokio::time::Instant::now() >= next_flush {
            next_flush = tokio::time::Instant::now() + flush;
            if let Err(e) = services.keys.flush_last_used().await {
                tracing::warn!(error = %e, "could not write API keys' last-use times");
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(poll) => {}
        }
    }
    if let Err(e) = services.keys.flush_last_used().await {
        tracing::warn!(error = %e, "could not write API keys' last-use times");
    }
}

/// Writes buffered request logs, rollups and budget spend, and reads the
/// other instances' spend back, every `every`, until `stop`; then once more.
/// Flushes start `every` apart, and one that took longer is followed at
/// once: under a backlog the writer runs without pause (with larger, so
/// cheaper per log, flushes) instead of idling a whole period after each.
async fn write_usage(services: Services, every: Duration, stop: CancellationToken) {
    loop {
        let started = tokio::time::Instant::now();
        if let Err(e) = services.usage.flush().await {
            tracing::warn!(error = %e, pending = services.usage.pending(), "could not write usage; retrying");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep_until(started + every) => {}
        }
    }
    if let Err(e) = services.usage.flush().await {
        tracing::error!(error = %e, pending = services.usage.pending(), "could not write usage at shutdown");
    }
}

/// Every `idle`, probes the enabled endpoints that no call or probe has heard
/// from for that long, all at once (each within its own timeouts), until `stop`.
async fn probe_endpoints(services: Services, idle: Duration, stop: CancellationToken) {
    let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(idle) => {}
        }
        let endpoints = match services.catalog.endpoints_to_probe(idle_ms).await {
            Ok(endpoints) => endpoints,
            Err(e) => {
                tracing::warn!(error = %e, "could not read the endpoints to probe");
                continue;
            }
        };
        let mut probes = tokio::task::JoinSet::new();
        for endpoint in endpoints {
            let services = services.clone();
            probes.spawn(async move {
                if let Err(e) = services.catalog.probe(&endpoint).await {
                    tracing::warn!(endpoint = %endpoint.id, error = %e, "could not probe the endpoint");
                }
            });
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = probes.join_all() => {}
        }
    }
}

/// Password hashing runs on tokio's blocking threads, at most one job per CPU
/// at a time, so a burst of sign-ins queues instead of taking every thread.
struct TokioBlockingPool {
    permits: Arc<tokio::sync::Semaphore>,
}

impl TokioBlockingPool {
    fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        TokioBlockingPool {
            permits: Arc::new(tokio::sync::Semaphore::new(cpus)),
        }
    }
}

impl BlockingPool for TokioBlockingPool {
    fn execute(&self, job: Box<dyn FnOnce() + Send + 'static>) {
        let permits = self.permits.clone();
        tokio::spawn(async move {
            // The semaphore is never closed, so acquiring only waits.
            let Ok(_permit) = permits.acquire_owned().await else {
                return;
            };
            let _ = tokio::task::spawn_blocking(job).await;
        });
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {},
        _ = terminate => {},
    }
}

/// Applies the `catalog` setting as the first admin; nothing to do when it
/// declares nothing.
async fn apply_catalog(services: &Services, catalog: &config::CatalogConfig) -> anyhow::Result<()> {
    if catalog.endpoints.is_empty() && catalog.aliases.is_empty() {
        return Ok(());
    }
    let declared = catalog.declared()?;
    let admin = services
        .accounts
        .first_admin()
        .await?
        .context("the catalog setting is applied as the first admin, whose account is gone")?;
    let report = services
        .catalog
        .apply_declared(&admin, &declared, &Default::default())
        .await
        .context("applying the catalog setting")?;
    tracing::info!(
        created = ?report.created,
        updated = ?report.updated,
        unchanged = report.unchanged,
        "catalog setting applied"
    );
    Ok(())
}
