//! The upstream pool actor: one per host, owning its [`PoolCore`] and the host's N persistent TCP
//! links. Each link has a reader task (framing what the host sends, handing it over in batches) and
//! a writer task (draining encoded requests). A tick expires timed-out requests and reconnects
//! dropped links. Sign-on, echo, reversals and failover build on this (Service Gateway issue).

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use super::messages::{UpstreamBatch, UpstreamResults};
use crate::core::config::HostConfig;
use paymesh_codecs::iso8583::IsoFramer;

use crate::core::pool::{HostSpec, PoolCore, ShardResult};
use crate::error::MeshError;
use crate::metrics::Metrics;
use crate::now_ms;

/// Messages a pool's mailbox holds before shards get BUSY.
pub const POOL_MAILBOX_MAX: usize = 1_024;
/// Encoded chunks queued per link writer.
pub const LINK_WRITE_QUEUE_MAX: usize = 256;
/// How often timeouts are checked and dropped links retried.
pub const POOL_TICK_MS: u64 = 10;
/// Bytes read from a link at a time.
pub const LINK_READ_BYTES: usize = 64 * 1024;
/// How long a connect attempt may take.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

#[derive(Debug, Default)]
struct LinkIo {
    generation: u64,
    writer: Option<mpsc::Sender<Bytes>>,
    backlog: BytesMut,
    connecting: bool,
    retry_at_ms: u64,
    reader: Option<tokio::task::JoinHandle<()>>,
}

/// A pool actor.
pub struct PoolActor {
    core: PoolCore,
    address: String,
    reconnect_ms: u64,
    shards: Arc<OnceLock<Vec<Recipient<UpstreamResults>>>>,
    metrics: Arc<Metrics>,
    links: Vec<LinkIo>,
    results: Vec<ShardResult>,
}

impl std::fmt::Debug for PoolActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PoolActor")
            .field("host", &self.core.spec().name)
            .finish()
    }
}

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

impl PoolActor {
    /// A pool for a configured host; validates the host settings.
    pub fn new(
        host: &HostConfig,
        shards: Arc<OnceLock<Vec<Recipient<UpstreamResults>>>>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, MeshError> {
        let spec = HostSpec::from_config(host)?;
        let links = (0..spec.links).map(|_| LinkIo::default()).collect();
        Ok(Self {
            core: PoolCore::new(spec),
            address: host.address.clone(),
            reconnect_ms: host.reconnect_ms,
            shards,
            metrics,
            links,
            results: Vec::new(),
        })
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
        for (i, io) in self.links.iter_mut().enumerate() {
            if let Some(bytes) = self.core.take_output(i) {
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
        }
    }

    fn connect(&mut self, link: usize, ctx: &mut Context<Self>) {
        let Some(io) = self.links.get_mut(link) else {
            return;
        };
        io.generation += 1;
        io.connecting = true;
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
            let Some(io) = act.links.get_mut(link) else {
                return;
            };
            io.connecting = false;
            if io.generation != generation {
                return;
            }
            match res {
                Ok(Ok(stream)) => {
                    let _ = stream.set_nodelay(true);
                    let (read, write) = stream.into_split();
                    let (tx, rx) = mpsc::channel(LINK_WRITE_QUEUE_MAX);
                    io.writer = Some(tx);
                    io.backlog.clear();
                    actix::spawn(link_writer(write, rx));
                    let framer = act.core.framer();
                    io.reader = Some(actix::spawn(link_reader(
                        read,
                        ctx.address(),
                        link,
                        generation,
                        framer,
                    )));
                    act.core.link_up(link);
                    act.metrics.upstream_links_up.inc();
                    tracing::info!(host = %act.core.spec().name, link, "upstream link up");
                }
                Ok(Err(e)) => act.link_failed(link, &e.to_string()),
                Err(_) => act.link_failed(link, "connect timed out"),
            }
        }));
    }

    fn link_failed(&mut self, link: usize, reason: &str) {
        let now = now_ms();
        if let Some(io) = self.links.get_mut(link) {
            io.writer = None;
            if let Some(r) = io.reader.take() {
                r.abort();
            }
            io.retry_at_ms = now + self.reconnect_ms;
        }
        if self.core.is_up(link) {
            self.metrics.upstream_links_up.dec();
            tracing::warn!(host = %self.core.spec().name, link, reason, "upstream link down");
        } else {
            tracing::debug!(host = %self.core.spec().name, link, reason, "upstream connect failed");
        }
        let before = self.results.len();
        self.core.link_down(link, &mut self.results);
        self.metrics
            .upstream_timeouts
            .add((self.results.len() - before) as u64);
        self.deliver();
    }
}

impl Actor for PoolActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(POOL_MAILBOX_MAX);
        for link in 0..self.links.len() {
            self.connect(link, ctx);
        }
        ctx.run_interval(Duration::from_millis(POOL_TICK_MS), |act, ctx| {
            let now = now_ms();
            let before = act.results.len();
            act.core.poll_timeouts(now, &mut act.results);
            act.metrics
                .upstream_timeouts
                .add((act.results.len() - before) as u64);
            act.deliver();
            for link in 0..act.links.len() {
                let retry = act.links.get(link).is_some_and(|io| {
                    io.writer.is_none() && !io.connecting && now >= io.retry_at_ms
                });
                if retry {
                    act.connect(link, ctx);
                }
            }
            act.flush_links();
        });
    }
}

impl Handler<UpstreamBatch> for PoolActor {
    type Result = ();

    fn handle(&mut self, batch: UpstreamBatch, _ctx: &mut Context<Self>) {
        let now = now_ms();
        for req in batch.items {
            match self.core.submit(now, req) {
                Ok(()) => self.metrics.upstream_sent.inc(),
                Err(refused) => self.results.push(*refused),
            }
        }
        self.flush_links();
        self.deliver();
    }
}

impl Handler<LinkFrames> for PoolActor {
    type Result = ();

    fn handle(&mut self, msg: LinkFrames, _ctx: &mut Context<Self>) {
        if self
            .links
            .get(msg.link)
            .is_none_or(|io| io.generation != msg.generation)
        {
            return;
        }
        for frame in msg.frames {
            match self.core.on_message(msg.link, frame) {
                Ok(Some(r)) => {
                    self.metrics.upstream_answered.inc();
                    self.results.push(r);
                }
                Ok(None) => self.metrics.upstream_unmatched.inc(),
                Err(e) => {
                    self.metrics.upstream_unmatched.inc();
                    tracing::warn!(host = %self.core.spec().name, link = msg.link, error = %e, "undecodable message from host; ignored");
                }
            }
        }
        self.deliver();
    }
}

impl Handler<LinkClosed> for PoolActor {
    type Result = ();

    fn handle(&mut self, msg: LinkClosed, _ctx: &mut Context<Self>) {
        if self
            .links
            .get(msg.link)
            .is_some_and(|io| io.generation == msg.generation)
        {
            self.link_failed(msg.link, &msg.reason);
        }
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
