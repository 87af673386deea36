//! PayMesh gateway simulator: the upstream hosts the router connects to as a client (a VAN, a card
//! company, a bank, a carrier billing platform), each speaking ISO 8583 with its own profile and
//! length header over real TCP. Tests, the demo and the load harness run against them; the
//! deterministic simulation of the transaction core uses their rules without any socket.
//!
//! # Layout
//!
//! Sans-IO, no clock, no sockets (time and randomness are passed in):
//!
//! - [`rules`]: [`rules::HostRules`] (configuration: balances, limits, Luhn and expiry checks,
//!   amount patterns) and [`rules::Book`] (per-account state) decide a [`rules::SimRequest`]
//!   into a [`rules::Decision`]: response code, approval code, balance. Debits, refunds,
//!   balance inquiries, reversals, network management.
//! - [`host`]: one decoded request in, its answer out ([`host::process`]): the echoed fields,
//!   38, 39, 54. Also the undecodable bytes of the garbage fault.
//! - [`latency`]: [`latency::Latency`], fixed, uniform or long-tailed (log-normal) answer times.
//! - [`faults`]: [`faults::Faults`], probabilities of dropped, late, duplicate and garbage answers
//!   and of disconnects, rolled into a [`faults::FaultAction`] per transaction; and
//!   [`faults::NetworkManagement`]: whether transactions need a signed-on connection, and refused
//!   or unanswered sign-ons and echo tests (network management is otherwise answered at once).
//! - [`record`]: [`record::Record`], a bounded, thread-safe log of everything processed (masked
//!   accounts only), queryable by tests and optionally appended to a JSON-lines file.
//!
//! The thin async shell and the configuration:
//!
//! - [`server`]: [`server::spawn_host`] serves a [`server::SimHostConfig`] on tokio and returns a
//!   [`server::SimHostHandle`]: address, record, balances, runtime fault and latency changes,
//!   pause/resume (host down and back on the same port), shutdown.
//! - [`config`]: the TOML file of the `gateway-sim` binary (`[[hosts]]`), its commented
//!   [`config::EXAMPLE_TOML`] and [`config::default_hosts`].
//! - [`error`]: [`SimError`], the one error type.
//!
//! The binary (`src/main.rs`): `gateway-sim serve --config FILE | --default` and
//! `gateway-sim example-config`.
//!
//! # Napkin math
//!
//! A host does per request one decode (~0.5 µs), one hash lookup and update under a mutex, one
//! encode, one record entry (~200 bytes, a few allocations) and, with a non-zero latency, one
//! timer task. That is a few microseconds: one core answers a few hundred thousand requests a
//! second, more than the router's upstream links carry (real hosts take milliseconds each).
//! Memory is bounded: `RECORD_ENTRIES_MAX` (100 000) entries of ~300 bytes is ~30 MB per host at
//! most; the book keeps at most a million accounts and a million reversible requests.

pub mod config;
pub mod error;
pub mod faults;
pub mod host;
pub mod latency;
pub mod record;
pub mod rules;
pub mod server;

pub use error::SimError;
