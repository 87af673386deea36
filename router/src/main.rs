//! `paymesh`: the PayMesh server binary.

use std::io::{IsTerminal as _, Read as _};
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use paymesh_router::config::Config;
use paymesh_router::server::Router;
use paymesh_router::{EXIT_JOURNAL_FAILED, Stopped, auth, demo, run_system, serve_until_shutdown};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// PayMesh: a mobile-payment transaction router.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve clients with a config file (see `paymesh example-config`).
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Development mode (as `[server] dev_mode = true`): generate a journal key beside the
        /// journal and a self-signed TLS certificate where none is configured. Never in
        /// production.
        #[arg(long)]
        dev: bool,
    },
    /// Writes a new random journal key (64 hex digits) to a file created mode 0600, for
    /// `[journal] key_file`. Never overwrites an existing file.
    GenKey {
        /// The key file to create.
        #[arg(long)]
        out: PathBuf,
    },
    /// The main job on the embedded default: gateway-sim hosts, the router and a short load over
    /// loopback, ending with a summary.
    Demo(demo::DemoArgs),
    /// Prints the Argon2id hash of a credential (read from stdin) for a `[[networks]]` entry.
    HashCredential,
    /// Prints the commented example configuration.
    ExampleConfig,
    /// Times journal recovery and replay of N journaled transactions (docs/PERFORMANCE.md).
    BenchRecovery(paymesh_router::bench_recovery::BenchRecoveryArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour codes only for a terminal: in a log file or a pipe they are noise.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // One line with every cause ("opening the query store ...: ..."), no backtrace: an
            // operating error, not a bug.
            eprintln!("paymesh: error: {}", one_line(&error));
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve { config, dev } => {
            let path = config;
            let mut config = Config::load(&path)?;
            config.server.dev_mode |= dev;
            run_system(|| async move {
                let router = Router::start(config).await?;
                let stopped = serve_until_shutdown(&router, &path, dev).await;
                tracing::info!("shutting down: draining sessions");
                router.shutdown().await;
                actix::System::current().stop();
                if stopped == Stopped::JournalFailed {
                    std::process::exit(EXIT_JOURNAL_FAILED);
                }
                Ok(())
            })
        }
        Command::Demo(args) => demo::run(args),
        Command::HashCredential => {
            let mut credential = String::new();
            std::io::stdin().read_to_string(&mut credential)?;
            println!(
                "{}",
                auth::hash_credential(credential.trim_end_matches(['\r', '\n']))?
            );
            Ok(())
        }
        Command::GenKey { out } => {
            paymesh_router::key_file::generate(&out)?;
            println!(
                "wrote a new journal key to {} (mode 0600). Set key_file = \"{}\" in [journal], and keep a copy in a safe place: the journal's card data cannot be read without it.",
                out.display(),
                out.display()
            );
            Ok(())
        }
        Command::BenchRecovery(args) => paymesh_router::bench_recovery::run(args),
        Command::ExampleConfig => {
            print!("{}", include_str!("../paymesh.example.toml"));
            Ok(())
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
