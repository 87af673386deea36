//! Reloading merchants and grants without a restart: the file's business data becomes the next
//! settings version ([`paymesh_actors::core::versions`]). Each shard journals its part and
//! switches in one step; the store lookup and the query store's merchant rows follow. One reload
//! at a time.
//!
//! A shard that cannot take the version (its journal queue full) is tried again a bounded number
//! of times; if it still refuses, the reload reports which shards run which version, and the
//! next reload (or restart) brings them level: every shard's record stream stays consistent on
//! its own, so a partial reload is never a wrong replay, only a late one.

use std::sync::Arc;
use std::time::Duration;

use actix::Addr;
use anyhow::Context as _;
use paymesh_actors::core::config::CoreSettings;
use paymesh_actors::core::versions::Seed;
use paymesh_actors::mesh::lookup::SharedSettings;
use paymesh_actors::mesh::shard::{ApplySettings, ShardActor};
use paymesh_actors::metrics::Metrics;

use crate::config::Config;

/// Attempts per shard before a reload gives up on it (its journal queue stayed full).
pub const APPLY_ATTEMPTS_MAX: u32 = 50;
/// Pause between attempts on a shard whose journal queue was full.
pub const APPLY_RETRY_MS: u64 = 20;

/// The running settings versions and what a reload must reach.
pub struct Versions {
    base: Arc<CoreSettings>,
    shards: Vec<Addr<ShardActor>>,
    lookup: SharedSettings,
    store: Option<paymesh_store::StoreHandle>,
    metrics: Arc<Metrics>,
    /// The version every shard runs and the hash of its data.
    current: tokio::sync::Mutex<(u64, [u8; 32])>,
}

impl std::fmt::Debug for Versions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Versions")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Versions {
    /// The versions of a router whose shards run `current` (version, hash).
    pub fn new(
        base: Arc<CoreSettings>,
        shards: Vec<Addr<ShardActor>>,
        lookup: SharedSettings,
        store: Option<paymesh_store::StoreHandle>,
        metrics: Arc<Metrics>,
        current: (u64, [u8; 32]),
    ) -> Self {
        Self {
            base,
            shards,
            lookup,
            store,
            metrics,
            current: tokio::sync::Mutex::new(current),
        }
    }

    /// See [`crate::server::Router::reload`].
    pub async fn reload(&self, config: &Config) -> anyhow::Result<u64> {
        config.validate()?;
        let seed = Seed::new(config.business_data()?)?;
        let mut current = self.current.lock().await;
        if current.1 == seed.hash {
            return Ok(current.0);
        }
        let version = current.0 + 1;
        let count = self.shards.len();
        // Every part is built (and validated) before any shard switches.
        let parts = (0..count)
            .map(|i| {
                let shard = u16::try_from(i).context("shard number")?;
                Ok(seed.part(&self.base, shard, count, version)?.1)
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let whole = seed.whole(&self.base, version)?;
        let mut refused = Vec::new();
        for (i, (shard, settings)) in self.shards.iter().zip(parts).enumerate() {
            if let Err(why) = apply(shard, settings).await {
                refused.push(format!("shard {i}: {why}"));
            }
        }
        if !refused.is_empty() {
            anyhow::bail!(
                "settings version {version} was not taken by every shard ({}); the others run it. \
                 Reload again to bring them level",
                refused.join("; ")
            );
        }
        match self.lookup.write() {
            Ok(mut s) => *s = whole,
            Err(poisoned) => *poisoned.into_inner() = whole,
        }
        if let Some(store) = &self.store {
            store.upsert_merchants(&crate::server::merchant_rows(config))?;
        }
        *current = (version, seed.hash);
        self.metrics.settings_version.set(version);
        tracing::info!(version, "merchants and grants reloaded");
        Ok(version)
    }
}

/// Hands `settings` to one shard, trying again while its journal queue is full.
async fn apply(shard: &Addr<ShardActor>, settings: Arc<CoreSettings>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..APPLY_ATTEMPTS_MAX {
        match shard
            .send(ApplySettings {
                settings: settings.clone(),
            })
            .await
        {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(why)) => last = why,
            Err(e) => return Err(e.to_string()),
        }
        // A retry pause on this task, never on an actor's thread.
        tokio::time::sleep(Duration::from_millis(APPLY_RETRY_MS)).await;
    }
    Err(last)
}
