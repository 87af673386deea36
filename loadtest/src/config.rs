//! [`LoadConfig`]: everything a run needs, with its bounds and defaults.

use std::path::PathBuf;
use std::time::Duration;

use crate::error::LoadError;
use crate::mix::{DEFAULT_METHOD_MIX, DEFAULT_TXN_MIX, Method, Mix, TxnType};

/// Requests one connection may have outstanding, whatever `--depth` or the server's window say.
pub const OUTSTANDING_PER_CONNECTION_MAX: usize = 4096;
/// Approved orders each connection keeps for later captures, cancels, refunds and inquiries
/// (per pool: authorized, and sold or captured). The oldest is dropped when full.
pub const APPROVED_POOL_PER_CONNECTION_MAX: usize = 1024;
/// Connections one run may open.
pub const CONNECTIONS_MAX: usize = 10_000;
/// Points of every time series in the report; past it, neighbouring points are merged and the
/// interval doubles, so a long run keeps a bounded report.
pub const SERIES_POINTS_MAX: usize = 600;
/// Highest open-loop rate, requests per second over all connections.
pub const RATE_PER_SECOND_MAX: u64 = 10_000_000;
/// Longest run (warm-up included).
pub const RUN_SECONDS_MAX: u64 = 7 * 24 * 3600;
/// Most requests a `--count` run may ask for.
pub const COUNT_MAX: u64 = 1_000_000_000_000;
/// Run length when neither a duration nor a count is given.
pub const DURATION_DEFAULT_MS: u64 = 10_000;
/// Time to open one connection (TCP and TLS handshake).
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Time for the server to answer LOGIN.
pub const LOGIN_TIMEOUT_MS: u64 = 5_000;
/// After the last request is sent, how long the harness waits for outstanding answers before
/// counting them unanswered.
pub const DRAIN_TIMEOUT_MS: u64 = 5_000;
/// A connection with requests outstanding and no answer for this long is given up (its
/// requests count as unanswered), so that a `--count` run against a hung server still ends.
pub const STALL_TIMEOUT_MS: u64 = 30_000;
/// Merchants a run may spread over (`M000001`..`M999999`).
pub const MERCHANTS_MAX: u32 = 999_999;
/// BIN ranges a run may spread card numbers over.
pub const BINS_MAX: usize = 64;
/// Digits of a BIN (bank identification number: the first six digits of a card number).
pub const BIN_DIGITS: usize = 6;

/// The BIN ranges of the router's example routes: VAN, card company, bank.
pub const DEFAULT_BINS: [&str; 3] = ["411111", "540000", "620000"];

/// What the target speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Peer {
    /// A PayMesh router: answers are decoded and checked field by field.
    Paymesh,
    /// The harness's echo server: answers are checked by frame (type, correlation id, size).
    Echo,
}

/// When a run stops sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// Send for this long after the warm-up.
    Duration(Duration),
    /// Send this many requests after the warm-up.
    Count(u64),
}

/// TLS settings of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsOptions {
    /// CA certificates (PEM file) to trust; without a CA and without `insecure_skip_verify`, the
    /// run refuses to start.
    pub ca: Option<PathBuf>,
    /// CA certificates as PEM text (for callers in the same process, such as `paymesh demo`);
    /// takes precedence over `ca`.
    pub ca_pem: Option<String>,
    /// Accepts any server certificate (for the router's self-signed dev certificate).
    pub insecure_skip_verify: bool,
    /// Client certificate chain (PEM) for mutual TLS.
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM) for mutual TLS.
    pub client_key: Option<PathBuf>,
    /// Name to verify the server certificate against (SNI).
    pub server_name: String,
}

impl Default for TlsOptions {
    /// Verifies nothing yet (give a CA or `insecure_skip_verify`); server name `localhost`.
    fn default() -> Self {
        TlsOptions {
            ca: None,
            ca_pem: None,
            insecure_skip_verify: false,
            client_cert: None,
            client_key: None,
            server_name: "localhost".to_owned(),
        }
    }
}

/// Everything one load run needs. [`LoadConfig::default`] is a 10-second closed-loop run of 4
/// connections at depth 64 against `127.0.0.1:7400` with the default mixes.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// `host:port` of the server (a name is resolved; only 127.0.0.0/8 unless `allow_remote`).
    pub target: String,
    /// Allows targets outside 127.0.0.0/8.
    pub allow_remote: bool,
    /// What the target speaks.
    pub peer: Peer,
    /// TLS, or plain TCP when `None`.
    pub tls: Option<TlsOptions>,
    /// Persistent connections.
    pub connections: usize,
    /// Requests outstanding per connection (also bounded by the server's window).
    pub depth: usize,
    /// Open loop at this many requests per second over all connections; closed loop when `None`.
    pub rate: Option<u64>,
    /// When to stop sending.
    pub stop: Stop,
    /// Time at the start whose requests are sent and checked but left out of the figures.
    pub warmup: Duration,
    /// Network id sent in LOGIN.
    pub network_id: String,
    /// Credential sent in LOGIN.
    pub credential: String,
    /// Transaction types and their weights.
    pub mix: Mix<TxnType>,
    /// Payment methods and their weights.
    pub methods: Mix<Method>,
    /// Merchants `M000001`..: orders are spread over this many.
    pub merchants: u32,
    /// Six-digit BINs that card numbers start with.
    pub bins: Vec<String>,
    /// ISO 4217 numeric currency of every order.
    pub currency: u16,
    /// Smallest and largest order amount, minor units.
    pub amount_minor: (u64, u64),
    /// Also runs the same load against an in-process echo server and reports the ratio.
    pub echo_baseline: bool,
    /// Certificate and key for the baseline's echo server, so that a TLS run is compared with a
    /// TLS baseline; without it the baseline is plain TCP (and the report says so).
    pub echo_identity: Option<crate::tls::PemIdentity>,
    /// Shows a progress bar (the binary turns it off for `--quiet` or when stderr is no tty).
    pub progress: bool,
    /// Seed of the workload's random numbers; fixed seed, same requests.
    pub seed: u64,
    /// Writes the JSON result here.
    pub json: Option<PathBuf>,
    /// Writes the HTML report here.
    pub html: Option<PathBuf>,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            target: "127.0.0.1:7400".to_owned(),
            allow_remote: false,
            peer: Peer::Paymesh,
            tls: None,
            connections: 4,
            depth: 64,
            rate: None,
            stop: Stop::Duration(Duration::from_millis(DURATION_DEFAULT_MS)),
            warmup: Duration::ZERO,
            network_id: "VAN01".to_owned(),
            credential: "change-me".to_owned(),
            mix: default_mix(),
            methods: default_methods(),
            merchants: 1,
            bins: DEFAULT_BINS.iter().map(|b| (*b).to_owned()).collect(),
            currency: 410,
            amount_minor: (1_000, 50_000),
            echo_baseline: false,
            echo_identity: None,
            progress: false,
            seed: 1,
            json: None,
            html: None,
        }
    }
}

/// The default transaction mix (all-authorize if the constant ever stopped parsing; a unit test
/// makes sure it parses).
pub fn default_mix() -> Mix<TxnType> {
    Mix::parse(DEFAULT_TXN_MIX).unwrap_or_else(|_| Mix::single(TxnType::Authorize))
}

/// The default method mix.
pub fn default_methods() -> Mix<Method> {
    Mix::parse(DEFAULT_METHOD_MIX).unwrap_or_else(|_| Mix::single(Method::Card))
}

impl LoadConfig {
    /// Checks ranges and combinations; called by [`crate::run`] before anything is opened.
    pub fn validate(&self) -> Result<(), LoadError> {
        let bad = |text: String| Err(LoadError::Config(text));
        if self.connections == 0 || self.connections > CONNECTIONS_MAX {
            return bad(format!("connections must be 1..={CONNECTIONS_MAX}"));
        }
        if self.depth == 0 || self.depth > OUTSTANDING_PER_CONNECTION_MAX {
            return bad(format!(
                "depth must be 1..={OUTSTANDING_PER_CONNECTION_MAX}"
            ));
        }
        if let Some(rate) = self.rate
            && (rate == 0 || rate > RATE_PER_SECOND_MAX)
        {
            return bad(format!("rate must be 1..={RATE_PER_SECOND_MAX} per second"));
        }
        match self.stop {
            Stop::Duration(d) if d.is_zero() => return bad("duration must be above 0".to_owned()),
            Stop::Count(0) => return bad("count must be above 0".to_owned()),
            Stop::Count(c) if c > COUNT_MAX => return bad(format!("count must be <= {COUNT_MAX}")),
            _ => {}
        }
        let run = self.warmup + self.stop_duration().unwrap_or_default();
        if run.as_secs() > RUN_SECONDS_MAX {
            return bad(format!(
                "warm-up plus duration must be <= {RUN_SECONDS_MAX} s"
            ));
        }
        if self.merchants == 0 || self.merchants > MERCHANTS_MAX {
            return bad(format!("merchants must be 1..={MERCHANTS_MAX}"));
        }
        if self.bins.is_empty() || self.bins.len() > BINS_MAX {
            return bad(format!("give 1..={BINS_MAX} BINs"));
        }
        for bin in &self.bins {
            if bin.len() != BIN_DIGITS || !bin.bytes().all(|b| b.is_ascii_digit()) {
                return bad(format!("BIN {bin:?} is not {BIN_DIGITS} digits"));
            }
        }
        let (low, high) = self.amount_minor;
        if low == 0 || low > high {
            return bad("amounts must satisfy 0 < min <= max".to_owned());
        }
        if self.network_id.is_empty() || self.network_id.len() > 32 {
            return bad("network id must be 1..=32 characters".to_owned());
        }
        if self.credential.is_empty() || self.credential.len() > 128 {
            return bad("credential must be 1..=128 characters".to_owned());
        }
        if let Some(tls) = &self.tls {
            if tls.ca.is_none() && tls.ca_pem.is_none() && !tls.insecure_skip_verify {
                return bad("TLS needs --ca FILE or --insecure-skip-verify".to_owned());
            }
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                return bad("--client-cert and --client-key go together".to_owned());
            }
        }
        Ok(())
    }

    /// The sending time after the warm-up, for a duration run.
    pub fn stop_duration(&self) -> Option<Duration> {
        match self.stop {
            Stop::Duration(d) => Some(d),
            Stop::Count(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LoadConfig::default().validate().unwrap();
    }

    #[test]
    fn refuses_out_of_range() {
        let base = LoadConfig::default();
        type Change = Box<dyn Fn(&mut LoadConfig)>;
        let cases: Vec<Change> = vec![
            Box::new(|c| c.connections = 0),
            Box::new(|c| c.depth = OUTSTANDING_PER_CONNECTION_MAX + 1),
            Box::new(|c| c.rate = Some(0)),
            Box::new(|c| c.stop = Stop::Count(0)),
            Box::new(|c| c.stop = Stop::Duration(Duration::ZERO)),
            Box::new(|c| c.bins = vec!["41111".into()]),
            Box::new(|c| c.bins = vec!["41111x".into()]),
            Box::new(|c| c.merchants = 0),
            Box::new(|c| c.amount_minor = (10, 5)),
            Box::new(|c| c.tls = Some(TlsOptions::default())),
        ];
        for (i, change) in cases.iter().enumerate() {
            let mut config = base.clone();
            change(&mut config);
            assert!(config.validate().is_err(), "case {i} accepted");
        }
    }
}
