//! Starting the mesh and the listeners: Arbiters (one event-loop thread per core), shards and upstream
//! pools spread over them, accepted connections handed to an Arbiter round-robin where their session
//! actor and TLS handshake run. Shutdown: stop accepting, ask every session to drain (answer what is
//! in flight, then close), wait up to the grace period, stop.
//!
//! Each accepted socket first takes a connection slot ([`crate::slots`]) or is closed at once; the
//! slot goes with the socket through the TLS handshake (which has a deadline) into the session,
//! and comes back when the socket is closed. LOGIN is checked by the [`crate::login`] threads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use actix::{Actor, Arbiter, ArbiterHandle, Recipient};
use anyhow::Context as _;
use paymesh_actors::core::config::CoreSettings;
use paymesh_actors::core::pool::HostSpec;
use paymesh_actors::core::shard::ShardCore;
use paymesh_actors::core::versions::Seed;
use paymesh_actors::mesh::lookup::SharedSettings;
use paymesh_actors::mesh::messages::{UpstreamBatch, UpstreamResults};
use paymesh_actors::mesh::pool::{PoolActor, SIGN_OFF_WAIT_MS, SignOff};
use paymesh_actors::mesh::session::{Drain, PeerInfo, Session, SessionDeps, SessionSettings};
use paymesh_actors::mesh::shard::{ShardActor, Shards};
use paymesh_actors::metrics::{HostMetrics, Metrics};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::auth::Credentials;
use crate::config::Config;
use crate::login::{LoginService, LoginThreads};
use crate::slots::{ConnectionSlots, SlotStream};
use crate::tls;

/// At most one warning per this many milliseconds about connections refused at the limit (a
/// flood of connects must not become a flood of log lines).
pub const REFUSED_LOG_INTERVAL_MS: u64 = 10_000;

/// A running router.
pub struct Router {
    /// Address of the plain TCP listener, if any.
    pub tcp_addr: Option<SocketAddr>,
    /// Address of the TLS listener, if any.
    pub tls_addr: Option<SocketAddr>,
    /// The self-signed certificate generated in development mode when none was configured
    /// (clients in tests trust it).
    pub dev_cert_pem: Option<String>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Per-host and per-link counters of the upstream pools, in configuration order.
    pub host_metrics: Vec<Arc<HostMetrics>>,
    /// Address of the admin port (`/metrics`, `/health`), if any.
    pub admin_addr: Option<SocketAddr>,
    shutdown: watch::Sender<bool>,
    arbiters: Vec<Arbiter>,
    /// The upstream pools, signed off at shutdown.
    sign_offs: Vec<Recipient<SignOff>>,
    journal: Option<paymesh_journal::JournalHandle>,
    checkpointer: Option<crate::checkpoint::Checkpointer>,
    store: Option<paymesh_store::StoreHandle>,
    /// The thread answering INQUIRY for orders no longer in memory from the store.
    lookup: Option<std::thread::JoinHandle<()>>,
    /// The threads checking LOGIN credentials.
    login_threads: Option<LoginThreads>,
    grace: Duration,
    admin: Option<crate::admin::AdminServer>,
    /// The settings versions: reloads of merchants and grants.
    versions: crate::reload::Versions,
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("tcp", &self.tcp_addr)
            .field("tls", &self.tls_addr)
            .field("admin", &self.admin_addr)
            .finish()
    }
}

impl Router {
    /// Starts everything. Must run inside an actix `System` (see [`crate::run_system`]).
    pub async fn start(config: Config) -> anyhow::Result<Router> {
        config.validate()?;
        if config.server.dev_mode {
            tracing::warn!(
                "DEVELOPMENT MODE: generated journal key and TLS certificate where none is configured; never in production"
            );
        }
        // Keys and certificates first: a missing or exposed one stops start-up with how to fix
        // it, before anything runs.
        let journal_key = if config.journal.dir.as_os_str().is_empty() {
            None
        } else {
            Some(crate::journal::key_for(
                &config.journal,
                config.server.dev_mode,
            )?)
        };
        let tls_config = if config.server.tls_listen.is_empty() {
            None
        } else {
            Some(tls::listener_config(&config.server)?)
        };
        // First: making the dummy hash for unknown network ids is one Argon2 run (milliseconds
        // of this thread), which must not delay anything already talking to an upstream host.
        let credentials = config
            .networks
            .iter()
            .map(crate::config::NetworkConfig::credential)
            .collect::<anyhow::Result<Vec<_>>>()?;
        let credentials = Arc::new(Credentials::new(credentials)?);
        let metrics = Arc::new(Metrics::new(config.shard_count()));
        let host_metrics: Vec<Arc<HostMetrics>> = config
            .hosts
            .iter()
            .map(|h| Arc::new(HostMetrics::new(h.name.clone(), h.links)))
            .collect();
        let host_names: Vec<String> = config.hosts.iter().map(|h| h.name.clone()).collect();
        let mut settings = CoreSettings::new(
            &config.merchants,
            &config.routes,
            &host_names,
            config.server.day_offset_minutes,
        )?;
        if let Some(s) = Arc::get_mut(&mut settings) {
            s.access = config.access()?;
            if journal_key.is_some() {
                s.secrets = crate::journal::core_secrets(&config.journal, config.server.dev_mode)?;
            }
            s.orders_per_shard_max = config.server.orders_per_shard_max;
            s.orders_hot_per_shard_max = config.server.orders_hot_per_shard_max;
            s.evicted_keys_per_shard_max = config.server.evicted_keys_per_shard_max;
            s.open_orders_per_network_max =
                match config.server.open_orders_per_network_per_shard_max {
                    0 => config.server.orders_per_shard_max / 2,
                    n => n,
                };
            s.capture_online = config
                .hosts
                .iter()
                .map(|h| h.capture == paymesh_actors::core::config::CaptureMode::Online)
                .collect();
            s.host_stans = config
                .hosts
                .iter()
                .map(|h| HostSpec::from_config(h).map(|spec| spec.stan_plan()))
                .collect::<Result<_, _>>()?;
            s.forward_retry_ms = config.server.forward_retry_ms;
            s.forward_retry_max_ms = config.server.forward_retry_max_ms;
        }
        // The file's merchants and grants, as the settings version the shards will run.
        let seed = Seed::new(config.business_data()?)?;
        // The journal before any thread starts: a refused key or journal leaves nothing running.
        let (cores, journal, catch_up, settings_version) = match journal_key {
            None => {
                tracing::warn!(
                    "no journal configured: answers leave without a durable record (tests and benchmarks only)"
                );
                // Without a journal, ids must still not repeat across restarts: start from the clock.
                let seq_start = paymesh_actors::now_ms().saturating_mul(100);
                let mut cores = (0..config.shard_count())
                    .map(|i| {
                        Ok(
                            ShardCore::new(u16::try_from(i)?, settings.clone(), seq_start)
                                .with_shard_count(u16::try_from(config.shard_count())?),
                        )
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                // Nothing to journal the version in: it lives as long as the process.
                let (version, _) = seed.settle(&settings, &mut cores)?;
                (cores, None, None, version)
            }
            Some(key) => {
                let opened = crate::journal::open(
                    &config.journal,
                    key,
                    &settings,
                    &seed,
                    config.shard_count(),
                )?;
                let catch_up = (opened.answers, opened.store_complete);
                let version = opened.settings_version;
                (opened.cores, Some(opened.journal), Some(catch_up), version)
            }
        };
        let arbiters: Vec<Arbiter> = (0..config.arbiter_count())
            .map(|_| Arbiter::new())
            .collect();
        let handles: Vec<ArbiterHandle> = arbiters.iter().map(Arbiter::handle).collect();
        let pick = |i: usize| {
            handles
                .get(i % handles.len())
                .cloned()
                .context("no arbiter")
        };

        // Pools first; they learn the shards' addresses once the shards exist.
        let shard_results: Arc<OnceLock<Vec<Recipient<UpstreamResults>>>> =
            Arc::new(OnceLock::new());
        let mut pools: Vec<Recipient<UpstreamBatch>> = Vec::new();
        let mut sign_offs: Vec<Recipient<SignOff>> = Vec::new();
        for (i, host) in config.hosts.iter().enumerate() {
            let counters = host_metrics.get(i).cloned().context("host metrics")?;
            let pool = PoolActor::new(host, shard_results.clone(), metrics.clone(), counters)?
                .with_availability(settings.routes.availability().clone(), u16::try_from(i)?);
            let addr = PoolActor::start_in_arbiter(&pick(i + 1)?, move |_| pool);
            sign_offs.push(addr.clone().recipient());
            pools.push(addr.recipient());
        }
        let pools = Arc::new(pools);
        let store_existed = config.store.path.exists();
        let store = open_store(&config)?;
        if let (Some(store), Some((answers, complete))) = (&store, &catch_up) {
            let complete = *complete && store_existed;
            let rows = crate::journal::feed_store(store, answers, complete, &cores)?;
            tracing::info!(
                rows,
                rebuilt = !complete,
                "query store caught up from the journal"
            );
        }
        let store_complete = catch_up.is_some_and(|(_, c)| c);
        metrics.settings_version.set(settings_version);
        let lookup_settings: SharedSettings =
            Arc::new(RwLock::new(seed.whole(&settings, settings_version)?));
        let (lookup, lookup_thread) = match &store {
            Some(_) => {
                let reader = paymesh_store::Store::reader(&config.store.path)
                    .context("opening the query store for inquiries")?;
                let (lookup, thread) = paymesh_actors::mesh::lookup::StoreLookup::start(
                    reader,
                    lookup_settings.clone(),
                )
                .context("starting the store lookup thread")?;
                (Some(lookup), Some(thread))
            }
            None => (None, None),
        };
        let mut shard_addrs = Vec::new();
        for (i, core) in cores.into_iter().enumerate() {
            let (p, m, j, st, hm, lk) = (
                pools.clone(),
                metrics.clone(),
                journal.clone(),
                store.clone(),
                host_metrics.clone(),
                lookup.clone(),
            );
            let addr = ShardActor::start_in_arbiter(&pick(i)?, move |_| {
                ShardActor::new(core, p, m, j)
                    .with_store(st)
                    .with_host_metrics(hm)
                    .with_lookup(lk)
            });
            shard_addrs.push(addr);
        }
        let _ = shard_results.set(shard_addrs.iter().map(|a| a.clone().recipient()).collect());
        let checkpointer = match &journal {
            Some(j) => {
                let policy = crate::checkpoint::CheckpointPolicy {
                    records: config.journal.checkpoint_records.max(1),
                    interval: Duration::from_secs(config.journal.checkpoint_interval_secs),
                };
                let c = crate::checkpoint::Checkpointer::start(
                    j.handle.clone(),
                    shard_addrs.clone(),
                    store.clone(),
                    store_complete,
                    policy,
                )
                .context("starting the checkpointer")?;
                Some(c)
            }
            None => None,
        };
        let versions = crate::reload::Versions::new(
            settings.clone(),
            shard_addrs.clone(),
            lookup_settings,
            store.clone(),
            metrics.clone(),
            (settings_version, seed.hash),
        );
        let shards = Shards {
            addrs: Arc::new(shard_addrs),
        };

        let (auth, login_threads) =
            LoginService::start(credentials, config.login.settings(), metrics.clone())?;
        let s = &config.server;
        let deps = SessionDeps {
            settings: Arc::new(SessionSettings {
                inflight_window: s.inflight_window,
                heartbeat_interval_ms: s.heartbeat_interval_ms,
                idle_timeout_ms: s.idle_timeout_ms,
                max_body_bytes: s.max_body_bytes,
                login_deadline_ms: s.login_deadline_ms,
                write_stall_ms_max: s.write_stall_ms_max,
            }),
            auth,
            shards,
            metrics: metrics.clone(),
        };
        let (shutdown, shutdown_rx) = watch::channel(false);
        let accept = Arc::new(Acceptor {
            handles: handles.clone(),
            next: AtomicU64::new(0),
            deps,
            slots: ConnectionSlots::new(s.max_connections, metrics.clone()),
            max_connections: s.max_connections,
            tls_handshake_timeout: Duration::from_millis(s.tls_handshake_timeout_ms),
            refused_log_next_ms: AtomicU64::new(0),
            shutdown: shutdown_rx.clone(),
        });

        let mut tcp_addr = None;
        if !s.listen.is_empty() {
            let listener = TcpListener::bind(&s.listen)
                .await
                .with_context(|| format!("binding {}", s.listen))?;
            tcp_addr = Some(listener.local_addr()?);
            tokio::spawn(accept_loop(
                listener,
                None,
                accept.clone(),
                shutdown_rx.clone(),
            ));
        }
        let mut tls_addr = None;
        let mut dev_cert_pem = None;
        if let Some((server_config, generated_pem)) = tls_config {
            dev_cert_pem = generated_pem;
            let acceptor = TlsAcceptor::from(server_config);
            let listener = TcpListener::bind(&s.tls_listen)
                .await
                .with_context(|| format!("binding {}", s.tls_listen))?;
            tls_addr = Some(listener.local_addr()?);
            tokio::spawn(accept_loop(listener, Some(acceptor), accept, shutdown_rx));
        }
        let admin = crate::admin::start(
            &config.admin,
            crate::admin::AdminState {
                metrics: metrics.clone(),
                hosts: host_metrics.clone(),
                journal: journal.as_ref().map(|j| j.handle.clone()),
                draining: shutdown.subscribe(),
            },
        )?;
        tracing::info!(tcp = ?tcp_addr, tls = ?tls_addr, shards = config.shard_count(), arbiters = handles.len(), "paymesh serving");
        Ok(Router {
            tcp_addr,
            tls_addr,
            dev_cert_pem,
            metrics,
            host_metrics,
            admin_addr: admin.as_ref().map(|a| a.addr),
            admin,
            shutdown,
            arbiters,
            sign_offs,
            journal: journal.map(|j| j.handle),
            checkpointer,
            store,
            lookup: lookup_thread,
            login_threads: Some(login_threads),
            grace: Duration::from_millis(s.shutdown_grace_ms),
            versions,
        })
    }

    /// Applies `config`'s merchants and grants as the next settings version, without a restart
    /// (SIGHUP runs this with the file re-read): each shard journals the version and runs every
    /// later request under it. Other sections are read at start-up only. Returns the version
    /// the shards run (the current one when the file's merchants and grants did not change).
    pub async fn reload(&self, config: &Config) -> anyhow::Result<u64> {
        self.versions.reload(config).await
    }

    /// Graceful shutdown: stop accepting, drain sessions, wait up to the grace period, stop threads.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let deadline = tokio::time::Instant::now() + self.grace;
        while self.metrics.connections.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let left = self.metrics.connections.get();
        if left > 0 {
            tracing::warn!(connections = left, "grace period over; closing the rest");
        }
        // /health answered 503 while draining; the admin port closes before the mesh stops.
        if let Some(admin) = self.admin {
            admin.stop().await;
        }
        if let Some(c) = self.checkpointer {
            // The shards still run: a last checkpoint makes the next start-up quick.
            tokio::task::spawn_blocking(move || c.stop(true)).await.ok();
        }
        // Upstream links sign off (0800, 002) before the threads stop; each pool bounds its wait.
        let sign_offs: Vec<_> = self.sign_offs.iter().map(|p| p.send(SignOff)).collect();
        for s in sign_offs {
            let _ = tokio::time::timeout(Duration::from_millis(2 * SIGN_OFF_WAIT_MS), s).await;
        }
        for a in &self.arbiters {
            a.stop();
        }
        if let Some(st) = &self.store {
            st.shutdown();
        }
        if let Some(j) = &self.journal
            && let Err(e) = j.shutdown()
        {
            tracing::error!(error = %e, "journal shutdown");
        }
        for a in self.arbiters {
            let _ = a.join();
        }
        // The shards held the lookup's senders: with them gone, the thread ends.
        if let Some(t) = self.lookup {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        // Likewise the sessions and listeners held the login service.
        if let Some(t) = self.login_threads {
            t.join().await;
        }
    }
}

/// Opens the query store and records merchants and networks (never credentials) in it.
fn open_store(config: &Config) -> anyhow::Result<Option<paymesh_store::StoreHandle>> {
    if config.store.path.as_os_str().is_empty() {
        return Ok(None);
    }
    let store = paymesh_store::Store::open(paymesh_store::StoreConfig::new(&config.store.path))
        .with_context(|| format!("opening the query store {}", config.store.path.display()))?;
    store.upsert_merchants(&merchant_rows(config))?;
    let networks: Vec<_> = config
        .networks
        .iter()
        .map(|n| paymesh_store::NetworkRow {
            id: n.id.clone(),
            description: String::new(),
        })
        .collect();
    store.upsert_networks(&networks)?;
    Ok(Some(store))
}

struct Acceptor {
    handles: Vec<ArbiterHandle>,
    next: AtomicU64,
    deps: SessionDeps,
    slots: ConnectionSlots,
    max_connections: usize,
    tls_handshake_timeout: Duration,
    /// Unix ms before which no further "connection limit reached" warning is logged.
    refused_log_next_ms: AtomicU64,
    shutdown: watch::Receiver<bool>,
}

impl Acceptor {
    /// Counts a connection refused at the limit; logs it at most once per
    /// [`REFUSED_LOG_INTERVAL_MS`].
    fn refused(&self, peer: SocketAddr) {
        let metrics = &self.deps.metrics;
        metrics.connections_refused.inc();
        let now = paymesh_actors::now_ms();
        let next = self.refused_log_next_ms.load(Ordering::Relaxed);
        if now >= next
            && self
                .refused_log_next_ms
                .compare_exchange(
                    next,
                    now.saturating_add(REFUSED_LOG_INTERVAL_MS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok()
        {
            tracing::warn!(
                %peer,
                max_connections = self.max_connections,
                refused_total = metrics.connections_refused.get(),
                "connection limit reached; closing new connections"
            );
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    acceptor: Arc<Acceptor>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let accepted_at = tokio::time::Instant::now();
        // Taken atomically, before anything else (TLS included) spends on the connection.
        let Some(slot) = acceptor.slots.try_take() else {
            acceptor.refused(peer);
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(std_stream) = stream.into_std() else {
            continue;
        };
        let n = acceptor.next.fetch_add(1, Ordering::Relaxed);
        let Some(handle) = acceptor
            .handles
            .get((n % acceptor.handles.len() as u64) as usize)
        else {
            continue;
        };
        let (deps, tls, shutdown) = (
            acceptor.deps.clone(),
            tls.clone(),
            acceptor.shutdown.clone(),
        );
        let handshake_timeout = acceptor.tls_handshake_timeout;
        handle.spawn(async move {
            let Ok(stream) = TcpStream::from_std(std_stream) else {
                return;
            };
            let stream = SlotStream::new(stream, slot);
            let mut peer = PeerInfo {
                addr: peer,
                certificate: None,
                accepted_at,
            };
            let addr = match tls {
                None => Session::start(n, stream, deps, peer),
                Some(tls) => {
                    let Some(stream) =
                        tls_handshake(&tls, stream, &deps.metrics, handshake_timeout, peer.addr)
                            .await
                    else {
                        return;
                    };
                    // The verified client certificate (mutual TLS): LOGIN checks its binding.
                    peer.certificate = stream
                        .get_ref()
                        .1
                        .peer_certificates()
                        .and_then(|chain| chain.first())
                        .map(|c| bytes::Bytes::copy_from_slice(c.as_ref()));
                    Session::start(n, stream, deps, peer)
                }
            };
            watch_shutdown(addr, shutdown).await;
        });
    }
}

/// Counts a TLS handshake in progress for as long as it lives.
struct Handshaking(Arc<paymesh_actors::metrics::Metrics>);

impl Drop for Handshaking {
    fn drop(&mut self) {
        self.0.tls_handshakes.dec();
    }
}

/// The server side of a TLS handshake, cut off at `timeout`. On failure the stream, and with it
/// its connection slot, is dropped.
async fn tls_handshake(
    tls: &TlsAcceptor,
    stream: SlotStream<TcpStream>,
    metrics: &Arc<paymesh_actors::metrics::Metrics>,
    timeout: Duration,
    peer: SocketAddr,
) -> Option<tokio_rustls::server::TlsStream<SlotStream<TcpStream>>> {
    metrics.tls_handshakes.inc();
    let _handshaking = Handshaking(metrics.clone());
    match tokio::time::timeout(timeout, tls.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            // Debug: anyone can cause these; the counter shows them.
            metrics.tls_handshake_errors.inc();
            tracing::debug!(%peer, error = %e, "TLS handshake refused");
            None
        }
        Err(_) => {
            metrics.tls_handshake_timeouts.inc();
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

async fn watch_shutdown(addr: actix::Addr<Session>, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            addr.do_send(Drain);
            return;
        }
        tokio::select! {
            r = shutdown.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(Duration::from_secs(1)) => if !addr.connected() { return },
        }
    }
}

/// The store's rows of `config`'s merchants.
pub(crate) fn merchant_rows(config: &Config) -> Vec<paymesh_store::MerchantRow> {
    config
        .merchants
        .iter()
        .map(|m| paymesh_store::MerchantRow {
            id: m.id.clone(),
            enabled: m.enabled,
            single_limit_minor: m
                .single_limit_minor
                .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
            daily_limit_minor: m
                .daily_limit_minor
                .map_or(-1, |v| i64::try_from(v).unwrap_or(i64::MAX)),
        })
        .collect()
}
