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

/// Load PayMesh over its inbound protocol (TCP or TLS) and report throughput and latency.
///
/// Runs a load by default; `echo-server` starts the framed echo server on its own. Exits with 2
/// when any answer mismatched, any protocol error happened or any request went unanswered.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
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

fn main() -> anyhow::Result<std::process::ExitCode> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
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
