//! The command line of a load run ([`LoadArgs`], a clap `Args` that other binaries may flatten)
//! and its translation into a [`LoadConfig`].

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, ValueEnum};

use crate::config::{DEFAULT_BINS, LoadConfig, Peer, Stop, TlsOptions};
use crate::error::LoadError;
use crate::mix::{DEFAULT_METHOD_MIX, DEFAULT_TXN_MIX, Mix};
use crate::tls::PemIdentity;

/// What the target speaks (command-line form of [`Peer`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PeerArg {
    /// A PayMesh router (`paymesh serve`).
    Paymesh,
    /// A `loadtest echo-server`.
    Echo,
}

/// Options of a load run.
#[derive(Debug, Clone, Args)]
pub struct LoadArgs {
    /// Server address, host:port (only 127.0.0.0/8 unless --allow-remote).
    #[arg(long, short = 't', default_value = "127.0.0.1:7400")]
    pub target: String,
    /// Allow a target outside 127.0.0.0/8.
    #[arg(long)]
    pub allow_remote: bool,
    /// What the target speaks.
    #[arg(long, value_enum, default_value = "paymesh")]
    pub peer: PeerArg,
    /// Connect with TLS.
    #[arg(long)]
    pub tls: bool,
    /// CA certificate(s), PEM, to verify the server with.
    #[arg(long, value_name = "FILE", requires = "tls")]
    pub ca: Option<PathBuf>,
    /// Accept any server certificate (the router's self-signed dev certificate).
    #[arg(long, requires = "tls")]
    pub insecure_skip_verify: bool,
    /// Client certificate chain, PEM, for mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "client_key"])]
    pub client_cert: Option<PathBuf>,
    /// Client private key, PEM, for mutual TLS.
    #[arg(long, value_name = "FILE", requires_all = ["tls", "client_cert"])]
    pub client_key: Option<PathBuf>,
    /// Name the server certificate must carry (and SNI).
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Persistent connections.
    #[arg(long, short = 'c', default_value_t = 4)]
    pub connections: usize,
    /// Requests outstanding per connection (bounded by the server's window).
    #[arg(long, short = 'd', default_value_t = 64)]
    pub depth: usize,
    /// Open loop: requests per second over all connections, latency measured from each request's
    /// intended send time. Without it: closed loop, as fast as answers come.
    #[arg(long, short = 'r')]
    pub rate: Option<u64>,
    /// Sending time after the warm-up (10s, 1500ms, 2m; a bare number is seconds). Default 10s.
    #[arg(long, value_parser = parse_duration, conflicts_with = "count")]
    pub duration: Option<Duration>,
    /// Requests to send after the warm-up (instead of --duration).
    #[arg(long, short = 'n')]
    pub count: Option<u64>,
    /// Time at the start whose requests are sent and checked but left out of the figures.
    #[arg(long, value_parser = parse_duration, default_value = "0s")]
    pub warmup: Duration,
    /// Network id for LOGIN.
    #[arg(long, default_value = "VAN01")]
    pub network_id: String,
    /// Credential for LOGIN.
    #[arg(long, default_value = "change-me")]
    pub credential: String,
    /// Transaction mix, type=weight,...
    #[arg(long, default_value = DEFAULT_TXN_MIX)]
    pub mix: String,
    /// Payment-method mix, method=weight,...
    #[arg(long, default_value = DEFAULT_METHOD_MIX)]
    pub methods: String,
    /// Merchants to spread orders over: M000001..
    #[arg(long, default_value_t = 1)]
    pub merchants: u32,
    /// Six-digit BINs that card numbers start with.
    #[arg(long, value_delimiter = ',', default_values_t = DEFAULT_BINS.map(String::from))]
    pub bins: Vec<String>,
    /// ISO 4217 numeric currency of the orders.
    #[arg(long, default_value_t = 410)]
    pub currency: u16,
    /// Smallest order amount, minor units.
    #[arg(long, default_value_t = 1_000)]
    pub amount_min: u64,
    /// Largest order amount, minor units.
    #[arg(long, default_value_t = 50_000)]
    pub amount_max: u64,
    /// Also run the same load against an in-process echo server and report the ratio.
    #[arg(long)]
    pub echo_baseline: bool,
    /// Certificate (PEM) for the baseline's echo server, so a TLS run has a TLS baseline.
    #[arg(long, value_name = "FILE", requires = "echo_key")]
    pub echo_cert: Option<PathBuf>,
    /// Private key (PEM) for the baseline's echo server.
    #[arg(long, value_name = "FILE", requires = "echo_cert")]
    pub echo_key: Option<PathBuf>,
    /// Seed of the workload's random numbers.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Write the JSON result here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Write the self-contained HTML report here.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// No progress bar (also off when stderr is not a terminal).
    #[arg(long, short = 'q')]
    pub quiet: bool,
}

/// Parses `10s`, `1500ms`, `2m`, `1h`, `0.5s` or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 10s"))?;
    let seconds = match unit.trim() {
        "" | "s" => value,
        "ms" => value / 1_000.0,
        "m" | "min" => value * 60.0,
        "h" => value * 3_600.0,
        other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

impl LoadArgs {
    /// The configuration these options describe; `progress` says whether a bar may be drawn.
    pub fn into_config(self, progress: bool) -> Result<LoadConfig, LoadError> {
        let stop = match (self.duration, self.count) {
            (_, Some(count)) => Stop::Count(count),
            (Some(duration), None) => Stop::Duration(duration),
            (None, None) => LoadConfig::default().stop,
        };
        let tls = self.tls.then_some(TlsOptions {
            ca: self.ca,
            ca_pem: None,
            insecure_skip_verify: self.insecure_skip_verify,
            client_cert: self.client_cert,
            client_key: self.client_key,
            server_name: self.server_name,
        });
        let echo_identity = match (&self.echo_cert, &self.echo_key) {
            (Some(cert), Some(key)) => Some(PemIdentity::read(cert, key)?),
            _ => None,
        };
        let config = LoadConfig {
            target: self.target,
            allow_remote: self.allow_remote,
            peer: match self.peer {
                PeerArg::Paymesh => Peer::Paymesh,
                PeerArg::Echo => Peer::Echo,
            },
            tls,
            connections: self.connections,
            depth: self.depth,
            rate: self.rate,
            stop,
            warmup: self.warmup,
            network_id: self.network_id,
            credential: self.credential,
            mix: Mix::parse(&self.mix)?,
            methods: Mix::parse(&self.methods)?,
            merchants: self.merchants,
            bins: self.bins,
            currency: self.currency,
            amount_minor: (self.amount_min, self.amount_max),
            echo_baseline: self.echo_baseline,
            echo_identity,
            progress: progress && !self.quiet,
            seed: self.seed,
            json: self.json,
            html: self.html,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        load: LoadArgs,
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1500ms"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5 days").is_err());
    }

    #[test]
    fn defaults_and_flags_become_a_config() {
        let cli = Cli::try_parse_from(["loadtest"]).unwrap();
        let config = cli.load.into_config(true).unwrap();
        assert_eq!(config.stop, Stop::Duration(Duration::from_secs(10)));
        assert_eq!(config.bins, vec!["411111", "540000", "620000"]);
        assert!(config.progress);
        let cli = Cli::try_parse_from([
            "loadtest",
            "-c",
            "2",
            "-d",
            "16",
            "-n",
            "2000",
            "--rate",
            "5000",
            "--tls",
            "--insecure-skip-verify",
            "--mix",
            "sale=1",
            "--bins",
            "411111,520000",
            "-q",
        ])
        .unwrap();
        let config = cli.load.into_config(true).unwrap();
        assert_eq!(
            (config.connections, config.depth, config.rate),
            (2, 16, Some(5000))
        );
        assert_eq!(config.stop, Stop::Count(2000));
        assert!(config.tls.unwrap().insecure_skip_verify);
        assert_eq!(config.bins.len(), 2);
        assert!(!config.progress);
        assert!(Cli::try_parse_from(["loadtest", "--duration", "1s", "--count", "5"]).is_err());
        assert!(
            Cli::try_parse_from(["loadtest", "--ca", "x.pem"]).is_err(),
            "--ca needs --tls"
        );
        let bad_mix = Cli::try_parse_from(["loadtest", "--mix", "buy=1"]).unwrap();
        assert!(bad_mix.load.into_config(false).is_err());
    }
}
