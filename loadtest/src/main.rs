//! `loadtest`: the PayMesh load harness (see the library docs for what each part does).

use std::io::IsTerminal as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use paymesh_loadtest::EchoServer;
use paymesh_loadtest::cli::LoadArgs;
use paymesh_loadtest::run::is_loopback_v4;
use paymesh_loadtest::tls::PemIdentity;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit status when the run saw mismatches, protocol errors or unanswered requests.
const EXIT_CHECK_FAILED: u8 = 2;
/// Exit status when the run could not start or finish (connection refused, bad option, login
/// refused): the error is printed as one line, without a backtrace.
const EXIT_ERROR: u8 = 1;

/// What `--help` says about the requests and the checks, beyond the options (kept beside the
/// code in `workload.rs`, `check.rs` and `run.rs` that it describes).
const WORKLOAD_HELP: &str = "\
WHAT IS SENT
  Orders: AUTHORIZE and SALE with a fresh order id each, spread uniformly over the merchants
  M000001..M<merchants>. CAPTURE, CANCEL, REFUND and INQUIRY refer to an order this connection
  had approved (captures and refunds for its full amount, each with a request_id of its own);
  while no such order exists, an AUTHORIZE is sent instead and counted as substituted.
  Card numbers: 16 digits, one of --bins, then random digits and a Luhn check digit, so every
  PAN is Luhn-valid (a host checking Luhn accepts them); expiry December three years ahead, a
  random three-digit CVV. Carrier billing: a phone number and one of SKT, KT, LGU. Bank transfer:
  bank code 004 and a random account number.
  Amounts: drawn uniformly from --amount-min..=--amount-max (minor units, both included), in
  --currency. With gateway-sim's default rules, amounts ending in 51 or 05 are declined (51, 05),
  so about 2% of orders are declined on purpose; declines are counted, not failures.
  Everything is drawn from --seed: the same seed and the same answers give the same requests.

DEPTH
  --depth is what each connection tries to keep outstanding. The router announces its
  inflight_window at login; the effective depth is the smaller of --depth and that window (the
  harness never sends beyond the window, which would only earn 3001 BUSY). The summary and the
  reports show both, and --echo-baseline loads the echo server at the effective depth.

ANSWER CHECKS
  Every frame received is matched to an outstanding request by correlation id. It is a mismatch
  when the correlation id is not outstanding, the message type is not the request's answer type
  (request type | 0x80), the result code is not one docs/PROTOCOL.md defines, or the echoed
  order_id or amount differs from the request's (on an approval both must be present). A REJECT,
  an undecodable answer or a connection closed with requests outstanding is a protocol error;
  requests still unanswered at the end are counted as unanswered. Against --peer echo only the
  answer type and the body size are checked. Any mismatch, protocol error or unanswered request
  makes the exit status 2; a run that cannot start or finish (connection refused, login
  refused) prints one line and exits 1.
";

/// Load PayMesh over its inbound protocol (TCP or TLS) and report throughput and latency.
///
/// Runs a load by default; `echo-server` starts the framed echo server on its own. Exits with 2
/// when any answer mismatched, any protocol error happened or any request went unanswered, and
/// with 1 (one line on stderr) when the run could not start or finish.
#[derive(Debug, Parser)]
#[command(
    version,
    about,
    args_conflicts_with_subcommands = true,
    after_long_help = WORKLOAD_HELP
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    load: LoadArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the minimal framed echo server (answers each frame with type | 0x80, same size).
    EchoServer {
        /// Address to listen on (127.0.0.0/8 unless --allow-remote).
        #[arg(long, default_value = "127.0.0.1:7499")]
        listen: SocketAddr,
        /// Allow listening outside 127.0.0.0/8.
        #[arg(long)]
        allow_remote: bool,
        /// Certificate chain (PEM) to serve TLS with.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// Private key (PEM) to serve TLS with.
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in a file or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            // One line, every cause included ("cannot connect to ...: Connection refused"); a
            // backtrace says nothing to someone whose router is not running.
            eprintln!("loadtest: error: {}", one_line(&error));
            std::process::ExitCode::from(EXIT_ERROR)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    match cli.command {
        Some(Command::EchoServer {
            listen,
            allow_remote,
            tls_cert,
            tls_key,
        }) => {
            if !allow_remote && !is_loopback_v4(listen.ip()) {
                anyhow::bail!(
                    "refusing to listen on {listen}: 127.0.0.0/8 only unless --allow-remote"
                );
            }
            let identity = match (tls_cert, tls_key) {
                (Some(cert), Some(key)) => Some(PemIdentity::read(&cert, &key)?),
                _ => None,
            };
            runtime.block_on(async {
                let server = EchoServer::bind(listen, identity.as_ref()).await?;
                eprintln!(
                    "echo server listening on {}{}",
                    server.local_addr(),
                    if server.is_tls() { " (TLS)" } else { "" }
                );
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = server.wait() => {}
                }
                anyhow::Ok(())
            })?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        None => {
            let config = cli.load.into_config(std::io::stderr().is_terminal())?;
            let report = runtime.block_on(paymesh_loadtest::run(config))?;
            report.print_summary();
            let t = &report.totals;
            let failed = t.mismatches + t.protocol_errors + t.unanswered > 0;
            Ok(if failed {
                std::process::ExitCode::from(EXIT_CHECK_FAILED)
            } else {
                std::process::ExitCode::SUCCESS
            })
        }
    }
}

/// The error and its causes on one line, each cause left out when the message before it already
/// says it (`LoadError::Connect` prints its I/O error, which is also its source).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}
