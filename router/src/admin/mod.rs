//! The admin port: a small HTTP/1.1 server (actix-web), separate from the transaction listeners,
//! serving `GET /metrics` (Prometheus text, rendered by [`render`]) and `GET /health` (200 while
//! serving, 503 once draining); anything else (other paths or methods) is 404. It runs on one worker thread of its own with
//! bounded connections, so a busy scraper cannot take time from the transaction path.

pub mod render;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use actix_web::{App, HttpResponse, HttpServer, web};
use anyhow::Context as _;
use paymesh_actors::metrics::{HostMetrics, Metrics};
use tokio::sync::watch;

use render::{JournalView, Sources};

/// Worker threads of the admin server.
pub const ADMIN_WORKERS: usize = 1;
/// Blocking-task threads of the admin worker (it runs none; actix wants at least one).
pub const ADMIN_BLOCKING_THREADS_MAX: usize = 1;
/// Admin connections open at once; beyond it the server stops accepting until one closes.
pub const ADMIN_CONNECTIONS_MAX: usize = 16;
/// Connections waiting in the kernel's accept queue.
pub const ADMIN_BACKLOG_MAX: u32 = 16;
/// Request body accepted (the endpoints take none); larger bodies are answered 413. Request heads
/// are bounded by actix-http itself (32 KiB buffer, 96 headers).
pub const ADMIN_REQUEST_BODY_BYTES_MAX: usize = 1_024;
/// Time a client has to send a request head.
pub const ADMIN_REQUEST_TIMEOUT_MS: u64 = 2_000;
/// Idle time before a kept-alive admin connection is closed.
pub const ADMIN_KEEP_ALIVE_MS: u64 = 5_000;
/// Time an admin connection may take to shut down.
pub const ADMIN_DISCONNECT_TIMEOUT_MS: u64 = 1_000;
/// Seconds the admin server waits for open requests at shutdown.
pub const ADMIN_SHUTDOWN_TIMEOUT_S: u64 = 1;
/// Initial capacity of a rendered scrape (a hint, not a limit: it grows with hosts and links).
pub const METRICS_TEXT_BYTES_HINT: usize = 16 * 1024;

/// Content type of the Prometheus text exposition format.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What the admin server reads.
#[derive(Debug, Clone)]
pub struct AdminState {
    /// The mesh's counters.
    pub metrics: Arc<Metrics>,
    /// One entry per upstream host.
    pub hosts: Vec<Arc<HostMetrics>>,
    /// The journal, when one is configured.
    pub journal: Option<paymesh_journal::JournalHandle>,
    /// True once the router is draining (graceful shutdown).
    pub draining: watch::Receiver<bool>,
}

impl AdminState {
    /// The current scrape as Prometheus text.
    pub fn render(&self) -> String {
        let journal = self.journal.as_ref().map(|j| JournalView {
            stats: j.stats(),
            queued: j.queued(),
        });
        let mut out = String::with_capacity(METRICS_TEXT_BYTES_HINT);
        render::render(
            &Sources {
                metrics: &self.metrics,
                hosts: &self.hosts,
                journal,
            },
            &mut out,
        );
        out
    }
}

/// Starts the admin server of `section`, or none when its `listen` is empty.
pub fn start(
    section: &crate::config::AdminSection,
    state: AdminState,
) -> anyhow::Result<Option<AdminServer>> {
    if section.listen.is_empty() {
        return Ok(None);
    }
    AdminServer::start(&section.listen, state).map(Some)
}

/// A running admin server.
#[derive(Debug)]
pub struct AdminServer {
    /// The address it listens on.
    pub addr: SocketAddr,
    handle: ServerHandle,
}

impl AdminServer {
    /// Binds `listen` and serves on a worker thread of its own. Must run inside an actix System.
    pub fn start(listen: &str, state: AdminState) -> anyhow::Result<AdminServer> {
        let state = web::Data::new(state);
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(ADMIN_REQUEST_BODY_BYTES_MAX))
                .route("/metrics", web::get().to(metrics))
                .route("/health", web::get().to(health))
                .default_service(web::to(not_found))
        })
        .workers(ADMIN_WORKERS)
        .worker_max_blocking_threads(ADMIN_BLOCKING_THREADS_MAX)
        .max_connections(ADMIN_CONNECTIONS_MAX)
        .backlog(ADMIN_BACKLOG_MAX)
        .client_request_timeout(Duration::from_millis(ADMIN_REQUEST_TIMEOUT_MS))
        .client_disconnect_timeout(Duration::from_millis(ADMIN_DISCONNECT_TIMEOUT_MS))
        .keep_alive(Duration::from_millis(ADMIN_KEEP_ALIVE_MS))
        .shutdown_timeout(ADMIN_SHUTDOWN_TIMEOUT_S)
        // The router handles SIGTERM/ctrl-c itself and stops this server from `Router::shutdown`.
        .disable_signals()
        .bind(listen)
        .with_context(|| format!("binding the admin port {listen}"))?;
        let addr = server
            .addrs()
            .first()
            .copied()
            .with_context(|| format!("admin port {listen}: no address bound"))?;
        let server = server.run();
        let handle = server.handle();
        tokio::spawn(async move {
            if let Err(e) = server.await {
                tracing::error!(error = %e, "admin server stopped");
            }
        });
        tracing::info!(%addr, "admin port serving /metrics and /health");
        Ok(AdminServer { addr, handle })
    }

    /// Stops accepting, lets open requests finish (up to [`ADMIN_SHUTDOWN_TIMEOUT_S`]), stops.
    pub async fn stop(self) {
        self.handle.stop(true).await;
    }
}

/// `GET /metrics`. The body extractor applies [`ADMIN_REQUEST_BODY_BYTES_MAX`].
async fn metrics(state: web::Data<AdminState>, _body: web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, METRICS_CONTENT_TYPE))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(state.render())
}

/// `GET /health`: 200 "ok" while serving, 503 "draining" once shutdown began.
async fn health(state: web::Data<AdminState>, _body: web::Bytes) -> HttpResponse {
    let (status, text) = if *state.draining.borrow() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (StatusCode::OK, "ok")
    };
    HttpResponse::build(status)
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(text)
}

async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .insert_header((CONTENT_TYPE, "text/plain; charset=utf-8"))
        .body("not found\n")
}
