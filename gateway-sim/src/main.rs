//! `gateway-sim`: runs simulated upstream hosts until interrupted. See the library docs.

use std::io::IsTerminal as _;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use paymesh_gateway_sim::config::{EXAMPLE_TOML, SimConfig};
use paymesh_gateway_sim::server::spawn_host;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Simulated upstream hosts (VAN, card company, bank, carrier billing) speaking ISO 8583 over TCP.
#[derive(Debug, Parser)]
#[command(name = "gateway-sim", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Starts the hosts of a configuration, prints each host's name and address, and serves until
    /// Ctrl-C or SIGTERM.
    Serve {
        /// TOML configuration file (see `gateway-sim example-config`).
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "default",
            conflicts_with = "default"
        )]
        config: Option<PathBuf>,
        /// Use the built-in default: van, card, bank and carrier on 127.0.0.1:7501-7504.
        #[arg(long)]
        default: bool,
    },
    /// Prints a commented example configuration.
    ExampleConfig,
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with every cause ("binding 127.0.0.1:7501: Address in use"), no backtrace.
            eprintln!("gateway-sim: error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::ExampleConfig => {
            print!("{EXAMPLE_TOML}");
            Ok(())
        }
        Command::Serve { config, default } => {
            tracing_subscriber::fmt()
                .with_env_filter(
                    tracing_subscriber::EnvFilter::try_from_default_env()
                        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
                )
                .with_writer(std::io::stderr)
                // Colour codes only for a terminal: in a log file or a pipe they are noise.
                .with_ansi(std::io::stderr().is_terminal())
                .init();
            let config = match (config, default) {
                (Some(path), _) => {
                    SimConfig::load(&path).with_context(|| format!("loading {}", path.display()))?
                }
                (None, _) => SimConfig::default_config(),
            };
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("starting the tokio runtime")?
                .block_on(serve(config))
        }
    }
}

async fn serve(config: SimConfig) -> anyhow::Result<()> {
    let mut handles = Vec::with_capacity(config.hosts.len());
    for host in config.hosts {
        let (name, profile, header) = (host.name.clone(), host.profile, host.length_header);
        let handle = spawn_host(host)
            .await
            .with_context(|| format!("starting host {name}"))?;
        println!("{name} {} ({profile}, {header})", handle.local_addr());
        handles.push(handle);
    }
    shutdown_signal().await?;
    eprintln!("gateway-sim: stopping");
    for handle in handles {
        let record = handle.record();
        handle.shutdown().await;
        record.flush();
    }
    Ok(())
}

/// Waits for Ctrl-C or, on Unix, SIGTERM.
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
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
