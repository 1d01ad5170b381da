//! Vault sync: delivering changed vaults to the policy engine from the
//! `("vault_sync", vault)` outbox, with backoff on failure.

use super::*;

impl VaultService {
    /// Delivers every due vault's state to the policy engine (the leader runs
    /// this). A delivery confirms only the generation it carried; a failure is
    /// retried with a growing wait (at most five minutes) and shown on the
    /// vault as `failed` with its reason.
    pub async fn sync_pending(&self, engine: &dyn PolicyEngine) -> Result<SyncReport> {
        let now = self.env.clock.now();
        let due: Vec<PendingSync> = self
            .store
            .run(|tx| async move { read_all::<PendingSync>(&tx, &keyspace::vault_syncs()).await })
            .await?
            .into_iter()
            .filter(|p| p.generation > p.synced_generation && p.next_at <= now)
            .collect();
        let mut report = SyncReport::default();
        for pending in due {
            let state = self
                .store
                .run(|tx| {
                    let pending = &pending;
                    async move {
                        let vault = keyspace::vault(pending.org_id, pending.vault_id)
                            .get(&tx)
                            .await?;
                        let grants = match &vault {
                            Some(_) => {
                                read_all::<VaultGrant>(
                                    &tx,
                                    &keyspace::vault_grants(pending.vault_id),
                                )
                                .await?
                            }
                            None => Vec::new(),
                        };
                        Ok::<_, TxError<Error>>(VaultState {
                            vault_id: pending.vault_id,
                            org_id: pending.org_id,
                            name: vault.as_ref().map(|v| v.name.clone()).unwrap_or_default(),
                            deleted: vault.is_none(),
                            grants,
                            generation: pending.generation,
                        })
                    }
                })
                .await?;
            let outcome = engine.sync_vault(&state).await;
            let at = self.env.clock.now();
            match &outcome {
                Ok(()) => report.synced += 1,
                Err(e) => {
                    report.failed += 1;
                    tracing::warn!(vault = %pending.vault_id, error = %e, "vault sync failed; will retry");
                }
            }
            self.store
                .run(|tx| {
                    let (pending, outcome) = (&pending, &outcome);
                    async move {
                        let key = keyspace::vault_sync(pending.vault_id);
                        let Some(mut current) = key.get(&tx).await? else {
                            return Ok(());
                        };
                        let vault_key = keyspace::vault(pending.org_id, pending.vault_id);
                        let vault = vault_key.get(&tx).await?;
                        match outcome {
                            Ok(()) if current.generation == pending.generation => {
                                current.synced_generation = pending.generation;
                                current.attempts = 0;
                                current.last_error = None;
                                if vault.is_none() {
                                    // Deletion confirmed; the ID never returns.
                                    key.clear(&tx).await?;
                                } else {
                                    key.put(&tx, &current).await?;
                                }
                                if let Some(mut vault) = vault {
                                    vault.sync = SyncState {
                                        status: SyncStatus::Synced,
                                        reason: None,
                                        at,
                                    };
                                    vault_key.put(&tx, &vault).await?;
                                }
                            }
                            // Changed meanwhile: the newer state goes next round.
                            Ok(()) => {
                                current.synced_generation = pending.generation;
                                key.put(&tx, &current).await?;
                            }
                            Err(e) => {
                                current.attempts = current.attempts.saturating_add(1);
                                let wait = 1i64
                                    .checked_shl(current.attempts.min(16))
                                    .unwrap_or(MAX_SYNC_BACKOFF_SECS)
                                    .min(MAX_SYNC_BACKOFF_SECS);
                                current.next_at = at + chrono::Duration::seconds(wait);
                                current.last_error = Some(e.clone());
                                key.put(&tx, &current).await?;
                                if let Some(mut vault) = vault {
                                    vault.sync = SyncState {
                                        status: SyncStatus::Failed,
                                        reason: Some(e.clone()),
                                        at,
                                    };
                                    vault_key.put(&tx, &vault).await?;
                                }
                            }
                        }
                        Ok::<_, TxError<Error>>(())
                    }
                })
                .await?;
        }
        Ok(report)
    }
}
