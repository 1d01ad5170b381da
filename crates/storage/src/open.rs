//! Picks and opens the engine named in configuration.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use thiserror::Error;

use crate::embedded::EmbeddedEngine;
use crate::memory::MemoryEngine;
use crate::{StorageError, Store};

/// The engines Gatehouse knows by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    Memory,
    Embedded,
    Postgres,
    Fdb,
}

impl Engine {
    pub const ALL: [Engine; 4] = [
        Engine::Memory,
        Engine::Embedded,
        Engine::Postgres,
        Engine::Fdb,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Engine::Memory => "memory",
            Engine::Embedded => "embedded",
            Engine::Postgres => "postgres",
            Engine::Fdb => "fdb",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Engine {
    type Err = OpenError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Engine::ALL
            .into_iter()
            .find(|e| e.as_str() == s)
            .ok_or_else(|| OpenError::UnknownEngine(s.to_string()))
    }
}

/// Where and how to open storage.
#[derive(Debug, Clone)]
pub struct StorageConfig {
    pub engine: Engine,
    /// Data directory of the embedded engine.
    pub path: PathBuf,
    /// The embedded engine's page cache, in MiB.
    pub cache_mb: usize,
    pub postgres_url: Option<String>,
    pub fdb_cluster_file: Option<PathBuf>,
}

/// Why storage could not be opened.
#[derive(Debug, Error)]
pub enum OpenError {
    #[error("unknown storage engine `{0}`: expected one of memory, embedded, postgres, fdb")]
    UnknownEngine(String),
    #[error("storage engine `{engine}` is not available in this build: {reason}")]
    NotAvailable {
        engine: Engine,
        reason: &'static str,
    },
    #[error("storage engine `{engine}` needs `{setting}` to be set")]
    MissingSetting {
        engine: Engine,
        setting: &'static str,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// Opens the configured engine.
pub async fn open(config: &StorageConfig) -> Result<Store, OpenError> {
    match config.engine {
        Engine::Memory => Ok(Store::new(Arc::new(MemoryEngine::new()))),
        Engine::Embedded => {
            let path = config.path.clone();
            let cache = config.cache_mb.saturating_mul(1024 * 1024);
            // Opening may replay and check the file: keep it off the async threads.
            let engine =
                tokio::task::spawn_blocking(move || EmbeddedEngine::open_with_cache(&path, cache))
                    .await
                    .map_err(|e| StorageError::Unavailable(format!("open task failed: {e}")))??;
            Ok(Store::new(Arc::new(engine)))
        }
        #[cfg(feature = "postgres")]
        Engine::Postgres => {
            let url = config
                .postgres_url
                .as_deref()
                .ok_or(OpenError::MissingSetting {
                    engine: Engine::Postgres,
                    setting: "storage.postgres_url",
                })?;
            let engine = crate::postgres::PostgresEngine::connect(url).await?;
            Ok(Store::new(Arc::new(engine)))
        }
        #[cfg(not(feature = "postgres"))]
        Engine::Postgres => Err(OpenError::NotAvailable {
            engine: Engine::Postgres,
            reason: "rebuild with `--features postgres`",
        }),
        #[cfg(feature = "fdb")]
        Engine::Fdb => {
            let file = config
                .fdb_cluster_file
                .as_deref()
                .ok_or(OpenError::MissingSetting {
                    engine: Engine::Fdb,
                    setting: "storage.fdb_cluster_file",
                })?;
            let engine = crate::fdb::FdbEngine::open(&file.to_string_lossy())?;
            Ok(Store::new(Arc::new(engine)))
        }
        #[cfg(not(feature = "fdb"))]
        Engine::Fdb => Err(OpenError::NotAvailable {
            engine: Engine::Fdb,
            reason: "rebuild with `--features fdb` (needs libclang to build and libfdb_c to run)",
        }),
    }
}
