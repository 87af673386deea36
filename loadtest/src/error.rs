//! The crate's one error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why a load run (or the echo server) could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A setting is out of range or contradicts another one.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// A `--mix` or `--methods` list could not be parsed.
    #[error("invalid mix: {0}")]
    Mix(String),
    /// The target resolved to an address outside 127.0.0.0/8 and `--allow-remote` was not given.
    #[error("refusing to load {0}: only 127.0.0.0/8 targets unless --allow-remote")]
    RemoteTarget(String),
    /// The target name did not resolve to any usable address.
    #[error("cannot resolve {target}: {reason}")]
    Resolve {
        /// The name as given.
        target: String,
        /// What went wrong.
        reason: String,
    },
    /// A TCP connection could not be opened (or timed out).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Where the harness tried to connect.
        addr: SocketAddr,
        /// The underlying error.
        source: std::io::Error,
    },
    /// TLS set-up (certificates, keys) or the handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The server refused the login or answered it with something else.
    #[error("login failed: {0}")]
    Login(String),
    /// A local socket failed (binding the echo server, reading, writing).
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    /// Writing the JSON or HTML report failed.
    #[error("cannot write {path}: {source}")]
    WriteReport {
        /// The file being written.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}
