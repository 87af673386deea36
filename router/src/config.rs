//! The router's TOML configuration, with documented defaults (see `paymesh.example.toml`).

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use paymesh_actors::core::access::{AccessTable, Grant};
use paymesh_actors::core::config::{HostConfig, MerchantConfig, RouteConfig};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listeners and session settings.
    #[serde(default)]
    pub server: ServerConfig,
    /// Networks (VANs, carriers) allowed to log in.
    #[serde(default)]
    pub networks: Vec<NetworkConfig>,
    /// Merchants.
    #[serde(default)]
    pub merchants: Vec<MerchantConfig>,
    /// Upstream hosts.
    #[serde(default)]
    pub hosts: Vec<HostConfig>,
    /// Route table rows.
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    /// The durable journal.
    #[serde(default)]
    pub journal: crate::journal::JournalSection,
    /// The query store.
    #[serde(default)]
    pub store: StoreSection,
    /// The admin port (Prometheus metrics, health).
    #[serde(default)]
    pub admin: AdminSection,
}

/// `[admin]`: HTTP on a port of its own, separate from the transaction listeners: `GET /metrics`
/// (Prometheus text) and `GET /health` (docs/OPERATIONS.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminSection {
    /// Address of the admin port; "" = no admin port.
    pub listen: String,
}

impl Default for AdminSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// `[store]`: the embedded SQLite query store (docs/STORE.md), fed after the journal, off the hot path.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreSection {
    /// SQLite file; "" = no store.
    pub path: PathBuf,
}

impl Default for StoreSection {
    fn default() -> Self {
        Self {
            path: PathBuf::from("paymesh-store.sqlite"),
        }
    }
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Plain TCP listener; empty = none.
    pub listen: String,
    /// TLS listener; empty = none.
    pub tls_listen: String,
    /// Server certificate chain (PEM); required with a TLS listener, except in development
    /// mode, where a self-signed certificate is generated.
    pub tls_cert: Option<PathBuf>,
    /// Server private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// CA bundle (PEM) for client certificates; present = mutual TLS required.
    pub tls_client_ca: Option<PathBuf>,
    /// Development mode (also `paymesh serve --dev`; `paymesh demo` runs in it): without a
    /// journal `key_file` a key is generated beside the journal, and without `tls_cert` a
    /// self-signed certificate is generated, each logged as a warning. Off, either missing stops
    /// start-up with how to make it. Never in production: a key beside the data protects nothing.
    pub dev_mode: bool,
    /// Connections open at once; beyond it new connections are closed at accept.
    pub max_connections: usize,
    /// Requests in flight per connection (announced at login).
    pub inflight_window: u32,
    /// Heartbeat interval the client should keep, milliseconds.
    pub heartbeat_interval_ms: u32,
    /// Silence after which a connection is closed, milliseconds.
    pub idle_timeout_ms: u32,
    /// Largest frame body accepted, bytes (at most 16384).
    pub max_body_bytes: u32,
    /// Actor threads (Arbiters); 0 = one per core.
    pub arbiters: usize,
    /// Application shards; 0 = one per core.
    pub shards: usize,
    /// Business-day offset from UTC in minutes (daily limits reset at its midnight).
    pub day_offset_minutes: i32,
    /// On shutdown, how long in-flight requests may take before connections are closed, ms.
    pub shutdown_grace_ms: u64,
    /// Orders each shard keeps in memory (its idempotency window; retransmissions of these get
    /// their stored answer). About 500 bytes each: this bounds most of the router's memory
    /// (docs/PERFORMANCE.md, `order_memory` bench).
    pub orders_per_shard_max: usize,
    /// Of those, the newest kept hot (about 1 KiB each); older ones are frozen (encoded).
    pub orders_hot_per_shard_max: usize,
    /// Keys of orders evicted from a shard's window it still remembers (about 19 bytes each):
    /// reusing one is refused DUPLICATE_ORDER instead of being authorized again.
    pub evicted_keys_per_shard_max: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:7400".into(),
            tls_listen: String::new(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            dev_mode: false,
            max_connections: 10_000,
            inflight_window: 256,
            heartbeat_interval_ms: 30_000,
            idle_timeout_ms: 90_000,
            max_body_bytes: 16_384,
            arbiters: 0,
            shards: 0,
            day_offset_minutes: 540,
            shutdown_grace_ms: 5_000,
            orders_per_shard_max: paymesh_actors::core::config::ORDERS_PER_SHARD_MAX,
            orders_hot_per_shard_max: paymesh_actors::core::config::ORDERS_HOT_PER_SHARD_MAX,
            evicted_keys_per_shard_max: paymesh_actors::core::config::EVICTED_KEYS_PER_SHARD_MAX,
        }
    }
}

/// `[[networks]]`: one VAN or carrier network allowed to log in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Network id sent in LOGIN.
    pub id: String,
    /// Argon2id PHC string of the credential (`paymesh hash-credential`).
    pub credential_hash: String,
    /// The merchants this network may act for, by id; `["*"]` = every configured merchant (it
    /// must be written: a network without grants refuses start-up). Any request naming another
    /// merchant is answered as if that merchant were not configured.
    #[serde(default)]
    pub merchants: Option<Vec<String>>,
}

/// The grant written as `merchants = ["*"]`.
pub const ALL_MERCHANTS: &str = "*";

impl NetworkConfig {
    /// The network's grant, checked against the configured merchants.
    pub fn grant(
        &self,
        merchants: &[paymesh_actors::core::config::MerchantConfig],
    ) -> anyhow::Result<Grant> {
        let Some(list) = &self.merchants else {
            anyhow::bail!(
                "network {}: no merchants granted; add `merchants = [\"M...\"]` (or `[\"*\"]` for every merchant) to its [[networks]] entry",
                self.id
            );
        };
        if list.iter().any(|m| m == ALL_MERCHANTS) {
            anyhow::ensure!(
                list.len() == 1,
                "network {}: \"*\" grants every merchant and goes alone",
                self.id
            );
            return Ok(Grant::AllMerchants);
        }
        anyhow::ensure!(
            !list.is_empty(),
            "network {}: `merchants = []` grants nothing; list its merchants",
            self.id
        );
        let mut set = std::collections::HashSet::new();
        for m in list {
            anyhow::ensure!(
                merchants.iter().any(|c| &c.id == m),
                "network {}: merchant {m} is not configured",
                self.id
            );
            set.insert(bytes::Bytes::copy_from_slice(m.as_bytes()));
        }
        Ok(Grant::Merchants(set))
    }
}

impl Config {
    /// Reads and parses a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses config text.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        let s = &self.server;
        anyhow::ensure!(
            !s.listen.is_empty() || !s.tls_listen.is_empty(),
            "no listener configured"
        );
        anyhow::ensure!(s.inflight_window >= 1, "inflight_window must be at least 1");
        anyhow::ensure!(
            s.orders_per_shard_max >= 16,
            "orders_per_shard_max must be at least 16"
        );
        anyhow::ensure!(
            s.max_body_bytes >= 256 && s.max_body_bytes <= 16_384,
            "max_body_bytes must be 256..=16384"
        );
        anyhow::ensure!(
            s.tls_cert.is_some() == s.tls_key.is_some(),
            "tls_cert and tls_key go together"
        );
        anyhow::ensure!(
            s.idle_timeout_ms > s.heartbeat_interval_ms,
            "idle_timeout_ms must exceed heartbeat_interval_ms"
        );
        self.access()?;
        // Device ids and public keys: a bad key refuses the configuration rather than every
        // request signed with it.
        paymesh_actors::core::device::DeviceRegistry::new(&self.merchants)?;
        for h in &self.hosts {
            anyhow::ensure!(h.links >= 1, "host {}: links must be at least 1", h.name);
            // Every host setting and dialect choice, with an error naming the host and the setting.
            paymesh_actors::core::pool::HostSpec::from_config(h)?;
        }
        Ok(())
    }

    /// Which network may act for which merchant.
    pub fn access(&self) -> anyhow::Result<AccessTable> {
        let mut rows = Vec::with_capacity(self.networks.len());
        for n in &self.networks {
            anyhow::ensure!(
                !n.id.is_empty() && n.id.len() <= 32,
                "network id {:?} must be 1..32 bytes",
                n.id
            );
            let id = bytes::Bytes::copy_from_slice(n.id.as_bytes());
            rows.push((id, n.grant(&self.merchants)?));
        }
        Ok(AccessTable::new(rows)?)
    }

    /// Arbiters to start.
    pub fn arbiter_count(&self) -> usize {
        match self.server.arbiters {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        }
    }

    /// Shards to start.
    pub fn shard_count(&self) -> usize {
        match self.server.shards {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../paymesh.example.toml");
        let c = Config::parse(text).unwrap();
        assert!(!c.hosts.is_empty() && !c.routes.is_empty() && !c.merchants.is_empty());
        // It is a production example: a key file and a certificate, no development mode.
        assert!(!c.server.dev_mode && !ServerConfig::default().dev_mode);
        assert!(c.journal.key_file.is_some() && c.server.tls_cert.is_some());
        // The example states the defaults.
        let d = ServerConfig::default();
        assert_eq!(c.server.orders_per_shard_max, d.orders_per_shard_max);
        assert_eq!(
            c.server.orders_hot_per_shard_max,
            d.orders_hot_per_shard_max
        );
        assert_eq!(
            c.server.evicted_keys_per_shard_max,
            d.evicted_keys_per_shard_max
        );
    }

    #[test]
    fn the_load_run_config_parses_with_the_harness_merchants_unlimited() {
        let c = Config::parse(include_str!("../paymesh.bench.toml")).unwrap();
        assert_eq!(c.merchants.len(), 100);
        // Load runs start with no setup: a generated key and certificate.
        assert!(c.server.dev_mode);
        assert!(
            c.merchants
                .iter()
                .all(|m| m.daily_limit_minor.is_none() && m.single_limit_minor.is_none())
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        assert!(Config::parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 1\n").is_err());
        assert!(Config::parse("[server]\ninflight_window = 0\n").is_err());
        assert!(Config::parse("[admin]\nlisen = \"127.0.0.1:1\"\n").is_err());
    }

    #[test]
    fn merchants_register_devices_and_bad_ones_refuse_the_configuration() {
        // RFC 8032's first test public key.
        let key = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
        let merchant = |policy: &str, devices: &[(&str, &str)]| {
            let mut text = format!("[[merchants]]\nid = \"M1\"\ndevice_signature = \"{policy}\"\n");
            for (id, public_key) in devices {
                text.push_str(&format!(
                    "[[merchants.devices]]\nid = \"{id}\"\npublic_key = \"{public_key}\"\n"
                ));
            }
            Config::parse(&text)
        };
        let c = merchant("required", &[("phone-1", key), ("phone-2", key)]).unwrap();
        assert_eq!(c.merchants[0].devices.len(), 2);
        assert_eq!(
            c.merchants[0].device_signature,
            paymesh_actors::core::config::DeviceSignaturePolicy::Required
        );
        let unsigned = Config::parse("[[merchants]]\nid = \"M1\"\n").unwrap();
        assert_eq!(
            unsigned.merchants[0].device_signature,
            paymesh_actors::core::config::DeviceSignaturePolicy::Optional
        );
        for (policy, devices, why) in [
            ("sometimes", vec![("phone-1", key)], "unknown variant"),
            ("optional", vec![("phone-1", &key[..63])], "64 hex digits"),
            (
                "optional",
                vec![("phone-1", &"x".repeat(64)[..])],
                "64 hex digits",
            ),
            (
                "optional",
                vec![("phone-1", key), ("phone-1", key)],
                "registered twice",
            ),
        ] {
            let err = format!("{:#}", merchant(policy, &devices).unwrap_err());
            assert!(err.contains(why), "{err}");
        }
    }

    #[test]
    fn the_admin_port_defaults_to_loopback_and_can_be_disabled() {
        let c = Config::parse("").unwrap();
        assert_eq!(c.admin.listen, "127.0.0.1:9464");
        let c = Config::parse("[admin]\nlisten = \"\"\n").unwrap();
        assert!(c.admin.listen.is_empty());
    }
}
