//! The installation record and system settings.
//!
//! The installation is created on the first start against an empty store and
//! identifies that store for its whole life (operators use it to tell which
//! data directory or database an instance is serving).

use gatehouse_storage::{RangeOptions, Store};

pub use crate::model::system::{Installation, Setting, SettingName};
use crate::{Env, Error, Result, keyspace};

/// The version of this build.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Largest JSON value of one setting, in bytes.
pub const MAX_SETTING_SIZE: usize = 16 * 1024;
/// At most this many settings are listed.
const MAX_SETTINGS: usize = 1000;

pub struct SystemService {
    store: Store,
    env: Env,
}

impl SystemService {
    pub fn new(store: Store, env: Env) -> Self {
        SystemService { store, env }
    }

    /// Returns the installation, creating it on the first start.
    #[tracing::instrument(skip(self))]
    pub async fn initialize(&self) -> Result<Installation> {
        let fresh = Installation {
            id: self.env.ids.next_id(),
            created_at: self.env.clock.now(),
            created_by_version: VERSION.to_string(),
        };
        let installation = self
            .store
            .run(|tx| {
                let fresh = &fresh;
                async move {
                    let key = keyspace::installation();
                    if let Some(existing) = key.get(&tx).await? {
                        return Ok(existing);
                    }
                    key.put(&tx, fresh).await?;
                    crate::timeline::mark_indexed(&tx, fresh.created_at).await?;
                    Ok(fresh.clone())
                }
            })
            .await?;
        if installation.id == fresh.id {
            tracing::info!(installation_id = %installation.id, "initialized a new store");
        }
        Ok(installation)
    }

    /// Whether storage answers; `/ready` and the gRPC health service report this.
    pub async fn check_ready(&self) -> Result<()> {
        Ok(self.store.ping().await?)
    }

    pub async fn installation(&self) -> Result<Installation> {
        self.store
            .run(|tx| async move { keyspace::installation().get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("installation"))
    }

    #[tracing::instrument(skip(self, value), fields(name = name.as_str()))]
    pub async fn put_setting(
        &self,
        name: &SettingName,
        value: serde_json::Value,
    ) -> Result<Setting> {
        let size = serde_json::to_vec(&value).map_err(Error::internal)?.len();
        if size > MAX_SETTING_SIZE {
            return Err(Error::invalid_input(format!(
                "setting value is {size} bytes, over the limit of {MAX_SETTING_SIZE}"
            )));
        }
        let setting = Setting {
            name: name.as_str().to_string(),
            value,
            updated_at: self.env.clock.now(),
        };
        self.store
            .run(|tx| {
                let setting = &setting;
                async move { keyspace::setting(name).put(&tx, setting).await }
            })
            .await?;
        Ok(setting)
    }

    pub async fn get_setting(&self, name: &SettingName) -> Result<Setting> {
        self.store
            .run(|tx| async move { keyspace::setting(name).get(&tx).await })
            .await?
            .ok_or_else(|| Error::not_found("setting"))
    }

    pub async fn list_settings(&self) -> Result<Vec<Setting>> {
        let page = self
            .store
            .read_range(&keyspace::settings(), RangeOptions::limit(MAX_SETTINGS))
            .await?;
        crate::codec::decode_values(&page.entries)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use gatehouse_storage::memory::MemoryEngine;

    use super::*;
    use crate::ErrorCode;
    use crate::env::{ManualClock, SeededRandom};
    use crate::id::Snowflake;

    fn service() -> SystemService {
        let clock = Arc::new(ManualClock::new(1_800_000_000_000));
        let env = Env {
            ids: Arc::new(Snowflake::new(3, clock.clone()).unwrap()),
            clock,
            random: Arc::new(SeededRandom::new(1)),
        };
        SystemService::new(Store::new(Arc::new(MemoryEngine::new())), env)
    }

    #[tokio::test]
    async fn installation_is_created_once() {
        let s = service();
        assert_eq!(
            s.installation().await.unwrap_err().code(),
            ErrorCode::NotFound
        );
        let first = s.initialize().await.unwrap();
        let second = s.initialize().await.unwrap();
        assert_eq!(first, second);
        assert_eq!(first.id.worker_id(), 3);
        assert_eq!(s.installation().await.unwrap(), first);
        // A new store has no records of earlier releases to re-index.
        for name in [crate::timeline::LOG_INDEX, crate::timeline::AUDIT_INDEX] {
            let marker = s
                .store
                .run(|tx| async move { keyspace::migration(name).get(&tx).await })
                .await
                .unwrap()
                .unwrap();
            assert_eq!(marker.value["done"], true, "{name}");
        }
    }

    #[tokio::test]
    async fn settings_round_trip_and_validate() {
        let s = service();
        let name = SettingName::parse("ui.theme").unwrap();
        assert_eq!(
            s.get_setting(&name).await.unwrap_err().code(),
            ErrorCode::NotFound
        );
        s.put_setting(&name, serde_json::json!({"dark": true}))
            .await
            .unwrap();
        assert_eq!(
            s.get_setting(&name).await.unwrap().value,
            serde_json::json!({"dark": true})
        );
        assert_eq!(s.list_settings().await.unwrap().len(), 1);
        for bad in ["", "Upper", "9lives", "has space", &"x".repeat(65)] {
            assert!(SettingName::parse(bad).is_err(), "{bad:?}");
        }
        let huge = serde_json::Value::String("x".repeat(MAX_SETTING_SIZE));
        assert_eq!(
            s.put_setting(&name, huge).await.unwrap_err().code(),
            ErrorCode::InvalidInput
        );
    }
}
