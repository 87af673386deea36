//! The `paymesh` server.
//!
//! - [`config`]: the TOML configuration and its defaults (`paymesh.example.toml` is the commented example).
//! - [`auth`]: network credentials (Argon2id hashes) and client-certificate bindings.
//! - [`login`]: LOGIN checks on threads of their own, off the actor threads, with the failed-login
//!   throttle per source address ([`login::throttle`], sans-IO).
//! - [`slots`]: connection slots: `max_connections` counts open sockets, TLS handshakes included.
//! - [`tls`]: rustls server configuration, development certificates, mutual TLS.
//! - [`key_file`]: the journal key file (`paymesh gen-key`), refused when others may read it.
//! - [`journal`]: the journal key, opening, recovering and replaying the durable journal.
//! - [`reload`]: settings versions at run time: a reload (SIGHUP) journals the file's merchants
//!   and grants as the next version in every shard.
//! - [`server`]: starting Arbiters, shards, upstream pools and listeners; graceful shutdown.
//! - [`admin`]: the admin port (HTTP): Prometheus `/metrics` (rendered by the pure
//!   [`admin::render`]) and `/health`.
//! - [`bench_recovery`]: timing journal recovery for N transactions.
//! - [`demo`]: the main job: gateway-sim hosts + router + a short load, on loopback.
//!
//! The binary (`src/main.rs`) is a thin clap front end over these.

pub mod admin;
pub mod auth;
pub mod bench_recovery;
pub mod checkpoint;
pub mod config;
pub mod demo;
pub mod journal;
pub mod key_file;
pub mod login;
pub mod reload;
pub mod server;
pub mod slots;
pub mod tls;

/// Runs `f` inside an actix System (actors need its runtime; see ../shared/DEPENDENCIES.md).
pub fn run_system<F, Fut>(f: F) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    actix::System::new().block_on(f())
}

/// Why [`serve_until_shutdown`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// SIGTERM or Ctrl-C.
    Signal,
    /// The journal failed (disk full, I/O error) and the shards failed closed. The process
    /// should exit with [`EXIT_JOURNAL_FAILED`] so its supervisor starts it again: start-up
    /// re-reads the journal from disk and replays it, which is the only state to trust after a
    /// failed write or fsync (the kernel may have dropped the pages it could not write and
    /// report the next fsync clean). Resuming in the same process would build on memory that
    /// got ahead of the disk.
    JournalFailed,
}

/// Exit status after the journal failed (`EX_TEMPFAIL`): "try again later", for the supervisor
/// (docs/OPERATIONS.md, "When the journal fails").
pub const EXIT_JOURNAL_FAILED: i32 = 75;

/// How often serving checks whether the journal failed.
const JOURNAL_FAILED_POLL_MS: u64 = 250;

/// Serves until SIGTERM or Ctrl-C, or until the journal fails ([`Stopped`]); on SIGHUP re-reads
/// `config_path` and reloads its merchants and grants ([`server::Router::reload`]). A file that
/// does not load or validate changes nothing and is logged.
pub async fn serve_until_shutdown(
    router: &server::Router,
    config_path: &std::path::Path,
    dev: bool,
) -> Stopped {
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    let mut journal_check =
        tokio::time::interval(std::time::Duration::from_millis(JOURNAL_FAILED_POLL_MS));
    #[cfg(unix)]
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let hup = async {
            match hangup.as_mut() {
                Some(h) => h.recv().await,
                None => std::future::pending().await,
            }
        };
        #[cfg(not(unix))]
        let hup = std::future::pending::<Option<()>>();
        tokio::select! {
            () = &mut shutdown => return Stopped::Signal,
            _ = journal_check.tick() => {
                if router.metrics.journal_failed.get() == 1 {
                    tracing::error!(
                        status = EXIT_JOURNAL_FAILED,
                        "the journal failed: draining sessions and exiting, so that the supervisor restarts PayMesh and recovery replays the journal from disk"
                    );
                    return Stopped::JournalFailed;
                }
            }
            _ = hup => {
                let reloaded = match config::Config::load(config_path) {
                    Ok(mut c) => {
                        c.server.dev_mode |= dev;
                        router.reload(&c).await
                    }
                    Err(e) => Err(e),
                };
                match reloaded {
                    Ok(version) => tracing::info!(version, path = %config_path.display(), "SIGHUP: merchants and grants reloaded"),
                    Err(e) => tracing::error!(error = %format!("{e:#}"), "SIGHUP: reload refused; nothing changed"),
                }
            }
        }
    }
}

/// Waits for ctrl-c or SIGTERM.
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
