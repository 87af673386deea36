//! The bundled load harness of PayMesh: it speaks PayMesh's inbound protocol (docs/PROTOCOL.md)
//! over TCP or TLS exactly as an outside client would, and measures what the router does with it.
//!
//! Use it as the `loadtest` binary (`loadtest --help`), or in-process: [`run`] takes a
//! [`LoadConfig`] and returns a [`Report`] (`paymesh demo` does this), on a tokio runtime.
//!
//! # Layout
//!
//! Sans-IO parts (no sockets, no clock: time is passed in), each unit-tested on its own:
//!
//! - [`config`]: [`LoadConfig`], its defaults, checks and every bound (`*_MAX` constants).
//! - [`mix`]: weighted mixes of transaction types and payment methods (`authorize=60,sale=20`).
//! - [`workload`]: the requests of one connection: Luhn-valid card numbers over the BIN ranges,
//!   carrier and bank instruments, unique order ids, and the bounded pool of approved orders that
//!   captures, cancels, refunds and inquiries refer to.
//! - [`schedule`]: the open-loop schedule of intended send times (latency counts from them, so a
//!   stall cannot hide: no coordinated omission) and the closed loop's stop conditions.
//! - [`check`]: the table of outstanding requests (correlation ids) and the check of every answer:
//!   matching request, answer type, echoed order id and amount, known result code.
//! - [`stats`]: per-connection figures (hdrhistogram latencies, counts by type and result code,
//!   mismatches, protocol errors) and the bounded per-second series.
//! - [`report`]: [`Report`]: terminal summary, JSON; [`html`]: the self-contained HTML report with
//!   inline SVG plots.
//!
//! The async shell:
//!
//! - [`conn`]: one connection: connect, TLS, LOGIN, then the pipelined send/receive loop.
//! - [`run`](mod@run): resolving (127.0.0.0/8 only unless allowed), opening every connection,
//!   driving them together, the progress bar, the echo baseline, the files.
//! - [`echo`]: the minimal framed echo server, the baseline PayMesh's throughput is compared with.
//! - [`tls`]: rustls client and server set-up (ring provider).
//! - [`cli`]: the clap options of a run, reusable by other binaries.
//! - [`error`]: the crate's one error type, [`LoadError`].
//!
//! # Napkin math
//!
//! A request frame is ~110-150 bytes and its answer ~80-120; a connection's loop costs one
//! `read` per batch of answers and one `write` per batch of requests, so at depth 64 a core moves
//! a few hundred thousand requests a second through loopback before the harness itself is the
//! limit. The echo baseline measures exactly that ceiling on the machine at hand.

pub mod check;
pub mod cli;
pub mod config;
pub mod conn;
pub mod echo;
pub mod error;
pub mod html;
pub mod mix;
pub mod report;
pub mod run;
pub mod schedule;
pub mod stats;
pub mod tls;
pub mod workload;

pub use config::{LoadConfig, Peer, Stop, TlsOptions};
pub use echo::EchoServer;
pub use error::LoadError;
pub use mix::{Method, Mix, TxnType};
pub use report::Report;
pub use run::run;
