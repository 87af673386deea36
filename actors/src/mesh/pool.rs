//! The upstream pool actor: one per host, owning its [`PoolCore`] and the host's N persistent TCP
//! links. The core decides everything (sign-on before traffic, echo tests, reconnect backoff, the
//! circuit breaker, host limits, matching and timeouts); this shell opens and closes sockets when
//! the core asks ([`LinkAction`]), runs one reader task (framing what the host sends, handing it
//! over in batches) and one writer task (draining encoded messages) per link, ticks the core every
//! [`POOL_TICK_MS`], and publishes what others read: the host's availability for failover routing
//! ([`HostAvailability`]) and the global [`Metrics`] counters (the per-host [`HostMetrics`] are
//! kept by the core).
//!
//! Shutdown: [`SignOff`] makes the core sign every link off (0800, 002), waits for the answers up
//! to [`SIGN_OFF_WAIT_MS`], then closes the links for good.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::IsoFramer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::messages::{UpstreamBatch, UpstreamResults};
use crate::core::config::HostConfig;
use crate::core::pool::{HostSpec, LinkAction, PoolCore, ShardResult};
use crate::core::route::{HostAvailability, HostId};
use crate::error::MeshError;
use crate::metrics::{HostMetrics, LinkState, Metrics};
use crate::{mono_us, now_ms, now_us};

/// Messages a pool's mailbox holds before shards get BUSY.
pub const POOL_MAILBOX_MAX: usize = 1_024;
/// Encoded chunks queued per link writer.
pub const LINK_WRITE_QUEUE_MAX: usize = 256;
/// Encoded bytes waiting for a link's full writer queue; beyond it the host is not reading and
/// the link is closed.
pub const LINK_BACKLOG_BYTES_MAX: usize = 4 * 1024 * 1024;
/// How often the core is ticked: timeouts, echo tests, probes, reconnects.
pub const POOL_TICK_MS: u64 = 10;
/// Bytes read from a link at a time.
pub const LINK_READ_BYTES: usize = 64 * 1024;
/// How long a connect attempt may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;
/// How long shutdown waits for the hosts' answers to the sign-offs before closing the links.
pub const SIGN_OFF_WAIT_MS: u64 = 1_000;
/// Callers that may wait on one pool's sign-off at once.
pub const SIGN_OFF_WAITERS_MAX: usize = 8;

#[derive(Debug, Default)]
struct LinkIo {
    generation: u64,
    writer: Option<mpsc::Sender<Bytes>>,
    backlog: BytesMut,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl LinkIo {
    /// Forgets the socket: the writer drains what it holds and shuts down, the reader stops, and
    /// anything still in flight from the old connection is ignored (new generation).
    fn close(&mut self) {
        self.generation += 1;
        self.writer = None;
        self.backlog.clear();
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

/// What the pool last added to the global counters (they sum over pools).
#[derive(Debug, Default)]
struct Published {
    links_up: u64,
    sent: u64,
    answered: u64,
    timeouts: u64,
    unmatched: u64,
}

/// Shutdown in progress: when it ends and who waits for it.
#[derive(Debug)]
struct SigningOff {
    deadline_us: u64,
    waiters: Vec<oneshot::Sender<()>>,
}

/// A pool actor.
pub struct PoolActor {
    core: PoolCore,
    address: String,
    host_id: HostId,
    availability: Option<HostAvailability>,
    shards: Arc<OnceLock<Vec<Recipient<UpstreamResults>>>>,
    metrics: Arc<Metrics>,
    links: Vec<LinkIo>,
    results: Vec<ShardResult>,
    published: Published,
    signing_off: Option<SigningOff>,
    closed: bool,
}

impl std::fmt::Debug for PoolActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolActor")
            .field("host", &self.core.spec().name)
            .finish()
    }
}

/// Shutdown: sign every link off, wait for the answers (at most [`SIGN_OFF_WAIT_MS`]), close the
/// links for good. Answered once the links are closed.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct SignOff;

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct LinkFrames {
    link: usize,
    generation: u64,
    frames: Vec<Bytes>,
}

#[derive(Debug, Message)]
#[rtype(result = "()")]
struct LinkClosed {
    link: usize,
    generation: u64,
    reason: String,
}

/// A seed for the reconnect jitter from the operating system's randomness (via the standard
/// library's hasher keys), so that pools and restarts do not reconnect in step.
fn os_seed() -> u64 {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(now_us());
    h.finish()
}

impl PoolActor {
    /// A pool for a configured host; validates the host settings. `host_metrics` is this host's
    /// entry of the router's per-host counters (made with `HostMetrics::new(name, links)`).
    pub fn new(
        host: &HostConfig,
        shards: Arc<OnceLock<Vec<Recipient<UpstreamResults>>>>,
        metrics: Arc<Metrics>,
        host_metrics: Arc<HostMetrics>,
    ) -> Result<Self, MeshError> {
        let spec = HostSpec::from_config(host)?;
        if host_metrics.links.len() != spec.links {
            return Err(MeshError::Config(format!(
                "host {}: metrics for {} links, configured {}",
                spec.name,
                host_metrics.links.len(),
                spec.links
            )));
        }
        let links = (0..spec.links).map(|_| LinkIo::default()).collect();
        Ok(Self {
            core: PoolCore::with_metrics(spec, os_seed(), host_metrics),
            address: host.address.clone(),
            host_id: 0,
            availability: None,
            shards,
            metrics,
            links,
            results: Vec::new(),
            published: Published::default(),
            signing_off: None,
            closed: false,
        })
    }

    /// Publishes this host's availability (a link signed on, breaker closed) as host `host_id` of
    /// `availability`, which the route tables read for failover.
    pub fn with_availability(mut self, availability: HostAvailability, host_id: HostId) -> Self {
        self.availability = Some(availability);
        self.host_id = host_id;
        self
    }

    /// The core's time for the step about to run: monotonic microseconds (deadlines), with the
    /// wall clock handed over for the date and time fields only.
    fn clock(&mut self) -> u64 {
        self.core.set_wall_ms(now_ms());
        mono_us()
    }

    /// After anything that may have changed the core: socket actions, bytes to write, results to
    /// deliver, shutdown progress, published state.
    fn after_core(&mut self, ctx: &mut Context<Self>) {
        self.finish_sign_off();
        while let Some(action) = self.core.poll_action() {
            match action {
                LinkAction::Connect(link) => self.connect(link, ctx),
                LinkAction::Close(link) => {
                    if let Some(io) = self.links.get_mut(link) {
                        io.close();
                    }
                }
            }
        }
        self.flush_links();
        self.deliver();
        self.publish();
    }

    fn finish_sign_off(&mut self) {
        let now = self.clock();
        let done = self
            .signing_off
            .as_ref()
            .is_some_and(|s| !self.core.signing_off() || now >= s.deadline_us);
        if !done {
            return;
        }
        if self.core.signing_off() {
            tracing::warn!(host = %self.core.spec().name, "sign-off unanswered; closing the links");
        }
        self.core.close_all(now, &mut self.results);
        self.closed = true;
        if let Some(s) = self.signing_off.take() {
            for w in s.waiters {
                let _ = w.send(());
            }
        }
    }

    fn deliver(&mut self) {
        if self.results.is_empty() {
            return;
        }
        let Some(shards) = self.shards.get() else {
            self.results.clear();
            return;
        };
        let mut by_shard: HashMap<u16, Vec<_>> = HashMap::new();
        for (shard, r) in self.results.drain(..) {
            by_shard.entry(shard).or_default().push(r);
        }
        for (shard, items) in by_shard {
            if let Some(s) = shards.get(usize::from(shard)) {
                // Bounded by the pool's in-flight limits: every result answers a request the pool holds.
                s.do_send(UpstreamResults { items });
            }
        }
    }

    fn flush_links(&mut self) {
        let now = self.clock();
        for link in 0..self.links.len() {
            let Some(io) = self.links.get_mut(link) else {
                continue;
            };
            if let Some(bytes) = self.core.take_output(link) {
                io.backlog.extend_from_slice(&bytes);
            }
            if io.backlog.is_empty() {
                continue;
            }
            if let Some(w) = &io.writer
                && let Ok(permit) = w.try_reserve()
            {
                permit.send(io.backlog.split().freeze());
            }
            if io.backlog.len() > LINK_BACKLOG_BYTES_MAX {
                tracing::warn!(host = %self.core.spec().name, link, "host is not reading; closing the link");
                io.close();
                self.core.link_lost(link, now, &mut self.results);
            }
        }
    }

    fn connect(&mut self, link: usize, ctx: &mut Context<Self>) {
        let Some(io) = self.links.get_mut(link) else {
            return;
        };
        io.close();
        let generation = io.generation;
        let address = self.address.clone();
        let fut = async move {
            tokio::time::timeout(
                Duration::from_millis(CONNECT_TIMEOUT_MS),
                TcpStream::connect(address),
            )
            .await
        };
        ctx.spawn(fut.into_actor(self).map(move |res, act, ctx| {
            if act.links.get(link).is_none_or(|io| io.generation != generation) {
                return;
            }
            let now = act.clock();
            match res {
                Ok(Ok(stream)) => {
                    act.link_open(link, generation, stream, ctx);
                    act.core.link_connected(link, now);
                }
                Ok(Err(e)) => {
                    tracing::debug!(host = %act.core.spec().name, link, error = %e, "upstream connect failed");
                    act.core.connect_failed(link, now);
                }
                Err(_) => {
                    tracing::debug!(host = %act.core.spec().name, link, "upstream connect timed out");
                    act.core.connect_failed(link, now);
                }
            }
            act.after_core(ctx);
        }));
    }

    fn link_open(
        &mut self,
        link: usize,
        generation: u64,
        stream: TcpStream,
        ctx: &mut Context<Self>,
    ) {
        let framer = self.core.framer();
        let Some(io) = self.links.get_mut(link) else {
            return;
        };
        let _ = stream.set_nodelay(true);
        let (read, write) = stream.into_split();
        let (tx, rx) = mpsc::channel(LINK_WRITE_QUEUE_MAX);
        io.writer = Some(tx);
        io.backlog.clear();
        actix::spawn(link_writer(write, rx));
        io.reader = Some(actix::spawn(link_reader(
            read,
            ctx.address(),
            link,
            generation,
            framer,
        )));
        tracing::info!(host = %self.core.spec().name, link, "upstream link connected");
    }

    /// Publishes availability and adds what changed since last time to the global counters.
    fn publish(&mut self) {
        if let Some(a) = &self.availability {
            a.set(self.host_id, self.core.is_available());
            a.set_sign_ons(self.host_id, self.core.sign_ons());
        }
        let hm = self.core.metrics().clone();
        let up = (0..self.links.len())
            .filter(|i| self.core.link_state(*i) == LinkState::Up)
            .count() as u64;
        self.set_links_up(up);
        let p = &mut self.published;
        let m = &self.metrics;
        let add = |last: &mut u64, now: u64, counter: &crate::metrics::Counter| {
            counter.add(now.saturating_sub(*last));
            *last = now;
        };
        add(
            &mut p.sent,
            hm.requests.get() + hm.reversals_sent.get(),
            &m.upstream_sent,
        );
        add(&mut p.answered, hm.latency.count(), &m.upstream_answered);
        add(&mut p.timeouts, hm.timeouts.get(), &m.upstream_timeouts);
        add(&mut p.unmatched, hm.unmatched.get(), &m.upstream_unmatched);
    }

    fn set_links_up(&mut self, up: u64) {
        while self.published.links_up < up {
            self.metrics.upstream_links_up.inc();
            self.published.links_up += 1;
        }
        while self.published.links_up > up {
            self.metrics.upstream_links_up.dec();
            self.published.links_up -= 1;
        }
    }
}

impl Actor for PoolActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(POOL_MAILBOX_MAX);
        let now = self.clock();
        self.core.poll(now, &mut self.results);
        self.after_core(ctx);
        ctx.run_interval(Duration::from_millis(POOL_TICK_MS), |act, ctx| {
            let now = act.clock();
            act.core.poll(now, &mut act.results);
            act.after_core(ctx);
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        self.set_links_up(0);
        if let Some(a) = &self.availability {
            a.set(self.host_id, false);
        }
    }
}

impl Handler<UpstreamBatch> for PoolActor {
    type Result = ();

    fn handle(&mut self, batch: UpstreamBatch, ctx: &mut Context<Self>) {
        let now = self.clock();
        for req in batch.items {
            if let Err(refused) = self.core.submit(now, req) {
                self.results.push(*refused);
            }
        }
        self.after_core(ctx);
    }
}

impl Handler<LinkFrames> for PoolActor {
    type Result = ();

    fn handle(&mut self, msg: LinkFrames, ctx: &mut Context<Self>) {
        if self
            .links
            .get(msg.link)
            .is_none_or(|io| io.generation != msg.generation)
        {
            return;
        }
        let now = self.clock();
        for frame in msg.frames {
            match self.core.on_message(msg.link, now, frame) {
                Ok(Some(r)) => self.results.push(r),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(host = %self.core.spec().name, link = msg.link, error = %e, "undecodable message from host; ignored");
                }
            }
        }
        self.after_core(ctx);
    }
}

impl Handler<LinkClosed> for PoolActor {
    type Result = ();

    fn handle(&mut self, msg: LinkClosed, ctx: &mut Context<Self>) {
        let Some(io) = self.links.get_mut(msg.link) else {
            return;
        };
        if io.generation != msg.generation {
            return;
        }
        io.close();
        if self.core.link_state(msg.link) != LinkState::Down {
            tracing::warn!(host = %self.core.spec().name, link = msg.link, reason = %msg.reason, "upstream link lost");
        }
        let now = self.clock();
        self.core.link_lost(msg.link, now, &mut self.results);
        self.after_core(ctx);
    }
}

impl Handler<SignOff> for PoolActor {
    type Result = ResponseFuture<()>;

    fn handle(&mut self, _msg: SignOff, ctx: &mut Context<Self>) -> Self::Result {
        let (tx, rx) = oneshot::channel();
        if self.closed {
            let _ = tx.send(());
        } else {
            let now = self.clock();
            match &mut self.signing_off {
                Some(s) if s.waiters.len() < SIGN_OFF_WAITERS_MAX => s.waiters.push(tx),
                // Too many callers waiting: this one is answered at once.
                Some(_) => {
                    let _ = tx.send(());
                }
                None => {
                    let sent = self.core.sign_off(now);
                    tracing::info!(host = %self.core.spec().name, links = sent, "signing off");
                    self.signing_off = Some(SigningOff {
                        deadline_us: now.saturating_add(SIGN_OFF_WAIT_MS * 1_000),
                        waiters: vec![tx],
                    });
                }
            }
            self.after_core(ctx);
        }
        Box::pin(async move {
            let _ = rx.await;
        })
    }
}

async fn link_reader(
    mut read: tokio::net::tcp::OwnedReadHalf,
    addr: Addr<PoolActor>,
    link: usize,
    generation: u64,
    mut framer: IsoFramer,
) {
    let mut buf = BytesMut::with_capacity(LINK_READ_BYTES);
    let reason = loop {
        if buf.capacity() - buf.len() < LINK_READ_BYTES / 4 {
            buf.reserve(LINK_READ_BYTES);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) => break "host closed the connection".to_string(),
            Err(e) => break e.to_string(),
            Ok(_) => {}
        }
        let mut frames = Vec::new();
        let mut error = None;
        loop {
            match framer.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => {
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        if !frames.is_empty()
            && addr
                .send(LinkFrames {
                    link,
                    generation,
                    frames,
                })
                .await
                .is_err()
        {
            return;
        }
        if let Some(e) = error {
            break format!("unframeable bytes from host: {e}");
        }
    };
    addr.do_send(LinkClosed {
        link,
        generation,
        reason,
    });
}

async fn link_writer(mut write: tokio::net::tcp::OwnedWriteHalf, mut rx: mpsc::Receiver<Bytes>) {
    while let Some(chunk) = rx.recv().await {
        if write.write_all(&chunk).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}
