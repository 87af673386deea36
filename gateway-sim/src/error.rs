//! [`SimError`], the one error type of the gateway simulator.

use std::net::SocketAddr;
use std::path::PathBuf;

use paymesh_codecs::iso8583::IsoError;

/// Why a simulated host could not be configured, started or fed a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A configuration value is out of its allowed range or inconsistent with another.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The TOML configuration could not be parsed.
    #[error("configuration is not valid TOML for gateway-sim: {0}")]
    Toml(#[from] toml::de::Error),
    /// A configuration file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The host could not listen on its address.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address asked for.
        addr: SocketAddr,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// The record file could not be opened.
    #[error("cannot open record file {path}: {source}")]
    RecordFile {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// A message field could not be read as the rules need it.
    #[error("ISO 8583: {0}")]
    Iso(#[from] IsoError),
}
