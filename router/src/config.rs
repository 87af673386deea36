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
    /// LOGIN checks and the failed-login throttle.
    #[serde(default)]
    pub login: LoginSection,
}

/// `[login]`: where credential checks run and how failed logins are throttled, per source address
/// (`login` module; docs/OPERATIONS.md).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoginSection {
    /// Threads running Argon2 credential checks, off the actor threads (1..=16).
    pub threads: usize,
    /// Checks waiting for a thread at most; beyond it LOGIN is answered BUSY at once.
    pub checks_queued_max: usize,
    /// Failed logins from one address within `failure_window_ms` that lock it out.
    pub failures_max: u32,
    /// The window failed logins are counted in, milliseconds.
    pub failure_window_ms: u64,
    /// How long a locked-out address is refused, milliseconds.
    pub lockout_ms: u64,
    /// After its first failure, an address's LOGINs are checked at least this far apart,
    /// milliseconds; the spacing doubles with each further failure.
    pub failure_delay_ms: u64,
    /// Cap of that spacing, milliseconds.
    pub failure_delay_ms_max: u64,
    /// Addresses with failures tracked at once (about 100 bytes each); the least recently
    /// active is forgotten beyond it.
    pub addresses_max: usize,
}

/// Default of [`LoginSection::threads`]: one core at most for Argon2, whatever the guessing.
pub const LOGIN_THREADS: usize = 1;
/// Default of [`LoginSection::checks_queued_max`]: about 0.35 s of checks for one thread.
pub const LOGIN_CHECKS_QUEUED_MAX: usize = 32;
/// Default of [`LoginSection::failures_max`].
pub const LOGIN_FAILURES_MAX: u32 = 10;
/// Default of [`LoginSection::failure_window_ms`].
pub const LOGIN_FAILURE_WINDOW_MS: u64 = 60_000;
/// Default of [`LoginSection::lockout_ms`].
pub const LOGIN_LOCKOUT_MS: u64 = 300_000;
/// Default of [`LoginSection::failure_delay_ms`].
pub const LOGIN_FAILURE_DELAY_MS: u64 = 250;
/// Default of [`LoginSection::failure_delay_ms_max`] (under the default login deadline, so a
/// delayed LOGIN can still be checked in time).
pub const LOGIN_FAILURE_DELAY_MS_MAX: u64 = 4_000;
/// Default of [`LoginSection::addresses_max`]: about 6.5 MiB at most.
pub const LOGIN_ADDRESSES_MAX: usize = 65_536;

impl Default for LoginSection {
    fn default() -> Self {
        Self {
            threads: LOGIN_THREADS,
            checks_queued_max: LOGIN_CHECKS_QUEUED_MAX,
            failures_max: LOGIN_FAILURES_MAX,
            failure_window_ms: LOGIN_FAILURE_WINDOW_MS,
            lockout_ms: LOGIN_LOCKOUT_MS,
            failure_delay_ms: LOGIN_FAILURE_DELAY_MS,
            failure_delay_ms_max: LOGIN_FAILURE_DELAY_MS_MAX,
            addresses_max: LOGIN_ADDRESSES_MAX,
        }
    }
}

impl LoginSection {
    /// The login module's settings.
    pub fn settings(&self) -> crate::login::LoginSettings {
        crate::login::LoginSettings {
            threads: self.threads,
            checks_queued_max: self.checks_queued_max,
            throttle: crate::login::throttle::ThrottleSettings {
                failures_max: self.failures_max,
                failure_window_ms: self.failure_window_ms,
                lockout_ms: self.lockout_ms,
                delay_ms: self.failure_delay_ms,
                delay_ms_max: self.failure_delay_ms_max,
                addresses_max: self.addresses_max,
                log_interval_ms: crate::login::LOGIN_LOG_INTERVAL_MS,
            },
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            (1..=crate::login::LOGIN_THREADS_MAX).contains(&self.threads),
            "[login] threads must be 1..={}",
            crate::login::LOGIN_THREADS_MAX
        );
        anyhow::ensure!(
            self.checks_queued_max >= 1,
            "[login] checks_queued_max must be at least 1"
        );
        anyhow::ensure!(
            self.failures_max >= 1,
            "[login] failures_max must be at least 1"
        );
        anyhow::ensure!(
            self.addresses_max >= 1,
            "[login] addresses_max must be at least 1"
        );
        anyhow::ensure!(
            self.failure_delay_ms <= self.failure_delay_ms_max,
            "[login] failure_delay_ms must not exceed failure_delay_ms_max"
        );
        Ok(())
    }
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
    /// Sockets open at once, TLS handshakes and sockets still being written to after their
    /// session ended included; beyond it new connections are closed at accept.
    pub max_connections: usize,
    /// Time a TLS handshake may take, milliseconds.
    pub tls_handshake_timeout_ms: u64,
    /// Time from accept (TLS handshake included) within which LOGIN must be approved,
    /// milliseconds; a connection not logged in by then is closed.
    pub login_deadline_ms: u32,
    /// Time a connection's writer may make no progress (a client that does not read) before the
    /// connection is dropped, milliseconds. After its session ended, what is still queued gets
    /// this long in all to leave.
    pub write_stall_ms_max: u32,
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
    /// Orders one network may hold in a shard's window that cannot leave it (open
    /// authorizations, orders in doubt or in progress); beyond it that network's new orders are
    /// answered BUSY, so no tenant fills the window for all. 0 = half of `orders_per_shard_max`.
    pub open_orders_per_network_per_shard_max: usize,
    /// Store-and-forward (reversals and capture advices the host has not acknowledged): delay
    /// before the second attempt, ms; it doubles with each attempt up to `forward_retry_max_ms`.
    /// A link of the host signing on sends everything waiting for it at once, whatever the delay.
    pub forward_retry_ms: u64,
    /// Store-and-forward: longest delay between two attempts, ms.
    pub forward_retry_max_ms: u64,
}

/// Default of [`ServerConfig::tls_handshake_timeout_ms`].
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// Default of [`ServerConfig::login_deadline_ms`].
pub const LOGIN_DEADLINE_MS: u32 = 5_000;
/// Default of [`ServerConfig::write_stall_ms_max`]: a client that reads nothing for this long is
/// gone or hostile; one that reads slowly keeps its connection.
pub const WRITE_STALL_MS_MAX: u32 = 10_000;

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
            tls_handshake_timeout_ms: TLS_HANDSHAKE_TIMEOUT_MS,
            login_deadline_ms: LOGIN_DEADLINE_MS,
            write_stall_ms_max: WRITE_STALL_MS_MAX,
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
            open_orders_per_network_per_shard_max: 0,
            forward_retry_ms: paymesh_actors::core::config::FORWARD_RETRY_MS,
            forward_retry_max_ms: paymesh_actors::core::config::FORWARD_RETRY_MAX_MS,
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
    /// With mutual TLS: SHA-256 fingerprints (hex, `:` allowed) of the client certificates this
    /// network logs in with; any of them (several while certificates rotate).
    #[serde(default)]
    pub client_cert_sha256: Vec<String>,
    /// With mutual TLS: a DNS name or IP address the client certificate's subjectAltName holds.
    #[serde(default)]
    pub client_cert_name: Option<String>,
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

    /// Its certificate binding, checked (fingerprints are 32 bytes of hex, the name is a DNS name
    /// or an IP address).
    pub fn binding(&self) -> anyhow::Result<crate::auth::CertificateBinding> {
        let mut binding = crate::auth::CertificateBinding::default();
        for text in &self.client_cert_sha256 {
            let digits: String = text.chars().filter(|c| *c != ':').collect();
            let bytes = hex::decode(&digits)
                .ok()
                .and_then(|b| <[u8; 32]>::try_from(b).ok())
                .with_context(|| {
                    format!(
                        "network {}: client_cert_sha256 {text:?} is not 64 hex digits",
                        self.id
                    )
                })?;
            binding.sha256.push(bytes);
        }
        if let Some(name) = &self.client_cert_name {
            let parsed = rustls::pki_types::ServerName::try_from(name.clone()).map_err(|_| {
                anyhow::anyhow!(
                    "network {}: client_cert_name {name:?} is not a DNS name or IP address",
                    self.id
                )
            })?;
            binding.name = Some(parsed);
        }
        Ok(binding)
    }

    /// As [`crate::auth::Credentials`] takes it.
    pub fn credential(&self) -> anyhow::Result<crate::auth::NetworkCredential> {
        Ok(crate::auth::NetworkCredential {
            id: self.id.clone(),
            credential_hash: self.credential_hash.clone(),
            binding: self.binding()?,
        })
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
        let mut config: Config = toml::from_str(text)?;
        config.validate()?;
        // A host's local time (fields 12 and 13, its STANs' day) is the business day's unless
        // it says otherwise.
        let offset = config.server.day_offset_minutes;
        for h in &mut config.hosts {
            h.local_time_offset_minutes.get_or_insert(offset);
        }
        Ok(config)
    }

    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        let s = &self.server;
        anyhow::ensure!(
            (1..=3_600_000).contains(&s.forward_retry_ms)
                && (s.forward_retry_ms..=86_400_000).contains(&s.forward_retry_max_ms),
            "forward_retry_ms must be 1..=3600000 and forward_retry_max_ms forward_retry_ms..=86400000"
        );
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
        anyhow::ensure!(s.max_connections >= 1, "max_connections must be at least 1");
        anyhow::ensure!(
            s.login_deadline_ms >= 1
                && s.write_stall_ms_max >= 1
                && s.tls_handshake_timeout_ms >= 1,
            "login_deadline_ms, write_stall_ms_max and tls_handshake_timeout_ms must be at least 1"
        );
        self.login.validate()?;
        self.validate_certificate_bindings()?;
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

    /// The merchants and grants as the data settings versions carry (validated as at start-up).
    pub fn business_data(&self) -> anyhow::Result<paymesh_actors::core::versions::BusinessData> {
        self.access()?;
        Ok(paymesh_actors::core::versions::BusinessData {
            merchants: self.merchants.clone(),
            grants: self
                .networks
                .iter()
                .map(|n| paymesh_actors::core::versions::NetworkGrant {
                    network: n.id.clone(),
                    merchants: n.merchants.clone().unwrap_or_default(),
                })
                .collect(),
        })
    }

    /// One certificate, one network: bindings need mutual TLS, mutual TLS needs bindings, and no
    /// two networks name the same fingerprint or name.
    fn validate_certificate_bindings(&self) -> anyhow::Result<()> {
        let mutual_tls = self.server.tls_client_ca.is_some() && !self.server.tls_listen.is_empty();
        let mut seen = std::collections::HashMap::new();
        let mut bound = 0;
        for n in &self.networks {
            let binding = n.binding()?;
            if binding.is_empty() {
                continue;
            }
            anyhow::ensure!(
                mutual_tls,
                "network {}: a client certificate binding needs tls_listen and tls_client_ca",
                n.id
            );
            bound += 1;
            let keys = binding
                .sha256
                .iter()
                .map(hex::encode)
                .chain(binding.name.iter().map(|s| s.to_str().to_ascii_lowercase()));
            for key in keys {
                if let Some(other) = seen.insert(key.clone(), n.id.clone()) {
                    anyhow::bail!(
                        "networks {other} and {} are bound to the same client certificate {key}",
                        n.id
                    );
                }
            }
        }
        anyhow::ensure!(
            !mutual_tls || bound > 0,
            "tls_client_ca is set but no [[networks]] entry has client_cert_sha256 or \
             client_cert_name: no client certificate could log in"
        );
        Ok(())
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
        assert_eq!(
            (
                c.server.max_connections,
                c.server.tls_handshake_timeout_ms,
                c.server.login_deadline_ms,
                c.server.write_stall_ms_max
            ),
            (
                d.max_connections,
                d.tls_handshake_timeout_ms,
                d.login_deadline_ms,
                d.write_stall_ms_max
            )
        );
        assert_eq!(
            format!("{:?}", c.login.settings()),
            format!("{:?}", LoginSection::default().settings())
        );
        assert_eq!(
            (c.server.forward_retry_ms, c.server.forward_retry_max_ms),
            (d.forward_retry_ms, d.forward_retry_max_ms)
        );
        // The first host shows every host key at its default (but the example's own values).
        let van = &c.hosts[0];
        let mut defaults: paymesh_actors::core::config::HostConfig =
            toml::from_str("name = \"van\"\naddress = \"127.0.0.1:7501\"").unwrap();
        defaults.links = van.links;
        defaults.local_time_offset_minutes = van.local_time_offset_minutes;
        assert_eq!(format!("{van:?}"), format!("{defaults:?}"));
    }

    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$Ah6bCqvINkRKLQlqsXjrQw$qqj9qlE/b6czuWx1W0HvfMORYWkEW6OiBbGezEEbtk0";

    fn with_networks(mutual_tls: bool, networks: &str) -> anyhow::Result<Config> {
        let tls = if mutual_tls {
            "tls_listen = \"127.0.0.1:0\"\ntls_client_ca = \"ca.pem\"\n"
        } else {
            ""
        };
        Config::parse(&format!("[server]\n{tls}\n{networks}"))
    }

    fn network(id: &str, binding: &str) -> String {
        format!(
            "[[networks]]\nid = \"{id}\"\ncredential_hash = \"{HASH}\"\nmerchants = [\"*\"]\n{binding}\n"
        )
    }

    #[test]
    fn every_network_needs_written_grants_of_configured_merchants() {
        let merchant = "[[merchants]]\nid = \"M1\"\n";
        let net = |grant: &str| {
            Config::parse(&format!(
                "{merchant}[[networks]]\nid = \"V\"\ncredential_hash = \"{HASH}\"\n{grant}\n"
            ))
        };
        let err = net("").unwrap_err().to_string();
        assert!(err.contains("no merchants granted"), "{err}");
        assert!(net("merchants = []").is_err());
        assert!(
            net("merchants = [\"M2\"]").is_err(),
            "an unconfigured merchant"
        );
        assert!(
            net("merchants = [\"*\", \"M1\"]").is_err(),
            "\"*\" goes alone"
        );
        assert!(net("merchants = [\"M1\"]").is_ok());
        assert!(net("merchants = [\"*\"]").is_ok());
    }

    #[test]
    fn one_certificate_one_network() {
        let fingerprint = |b: &str| format!("client_cert_sha256 = [\"{}\"]", b.repeat(32));
        let a = network("A", &fingerprint("ab"));
        let b = network("B", "client_cert_name = \"b.clients.example\"");
        let plain = network("P", "");
        let c = with_networks(true, &format!("{a}{b}{plain}")).unwrap();
        let binding = c.networks[0].binding().unwrap();
        assert_eq!(binding.sha256, vec![[0xab; 32]]);
        // Colons as openssl prints them, upper case.
        let colons = vec!["AB"; 32].join(":");
        let c = with_networks(
            true,
            &network("A", &format!("client_cert_sha256 = [\"{colons}\"]")),
        )
        .unwrap();
        assert_eq!(c.networks[0].binding().unwrap().sha256, vec![[0xab; 32]]);
        // A binding without mutual TLS could never log in.
        assert!(with_networks(false, &a).is_err());
        // Mutual TLS with no binding at all: no certificate could log in.
        assert!(with_networks(true, &plain).is_err());
        // Two networks on one certificate.
        let a2 = network("A2", &fingerprint("ab"));
        assert!(with_networks(true, &format!("{a}{a2}")).is_err());
        let b2 = network("B2", "client_cert_name = \"B.clients.example\"");
        assert!(with_networks(true, &format!("{b}{b2}")).is_err());
        // Not a fingerprint, not a name.
        assert!(with_networks(true, &network("X", &fingerprint("a"))).is_err());
        assert!(with_networks(true, &network("X", "client_cert_name = \"not a name\"")).is_err());
    }

    #[test]
    fn login_and_connection_limits_are_checked() {
        assert!(Config::parse("[login]\nthreads = 0\n").is_err());
        assert!(Config::parse("[login]\nthreads = 17\n").is_err());
        assert!(Config::parse("[login]\nchecks_queued_max = 0\n").is_err());
        assert!(
            Config::parse("[login]\nfailure_delay_ms = 5\nfailure_delay_ms_max = 4\n").is_err()
        );
        assert!(Config::parse("[server]\nmax_connections = 0\n").is_err());
        assert!(Config::parse("[server]\nlogin_deadline_ms = 0\n").is_err());
        assert!(Config::parse("[login]\nlisen = 1\n").is_err());
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
