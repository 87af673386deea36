//! One router → shard → pool hop and back through real actix actors: a client actor standing in
//! for the session sends authorizations as `ShardBatch` messages to a real [`ShardActor`] (no
//! journal), whose upstream requests go as `UpstreamBatch` messages to a fake host actor, whose
//! approvals come back as `UpstreamResults`, and the shard's answers reach the client as
//! `AnswerBatch` messages: four mailbox hops per transaction, as in the router.
//!
//! The fake host stands in for the `PoolActor`: it answers every request at once, approved,
//! without building, encoding or decoding ISO 8583 (`mesh_step`'s `pool_step` measures that), so
//! these figures are the mesh's own cost: the shard core plus moving messages between actors.
//!
//! Each iteration sends `REQUESTS` authorizations with fresh order ids (built outside the timed
//! part) with at most `WINDOW` in flight (the demo's 8 connections × 64), in `ShardBatch`es of 1
//! (unbatched: every request its own message at every hop) or 64 (batched: one message per hop
//! per 64 requests), and is timed until the last answer arrives. Throughput is in transactions.
//!
//! Topologies: `one_arbiter` runs client, shard and host on one Arbiter (one thread: the CPU
//! cost, without cross-thread wake-ups); `three_arbiters` gives each its own, as the router places
//! sessions, shards and pools on different Arbiters (every hop crosses threads).
//!
//! Iterations are timed from the main thread (which only waits meanwhile). After each benchmark
//! a line gives the process's CPU time per transaction (every Arbiter thread) next to the wall
//! time: with three Arbiters the CPU time is the sum over threads.
//!
//! `cargo bench -p paymesh-benches --bench mesh_hop`
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod fixtures;

// The router's allocator (router/src/main.rs), so allocation costs what it costs there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use fixtures::CpuMeter;

use std::sync::mpsc;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use actix::{Actor, Addr, Arbiter, AsyncContext, Context, Handler, Message, Recipient, System};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use paymesh_actors::core::shard::ShardCore;
use paymesh_actors::mesh::messages::{
    AnswerBatch, ReplyTo, ShardBatch, UpstreamBatch, UpstreamResults,
};
use paymesh_actors::mesh::pool::POOL_MAILBOX_MAX;
use paymesh_actors::mesh::shard::ShardActor;
use paymesh_actors::metrics::Metrics;
use paymesh_codecs::message::TxnRequest;
use paymesh_codecs::types::ResultCode;

/// Transactions per timed iteration.
const REQUESTS: usize = 4_096;
/// Transactions in flight at most (sent, not yet answered).
const WINDOW: usize = 512;

/// A fake host: answers every upstream request at once, approved. It isolates the mesh's own
/// cost; the real `PoolActor` would build, frame and write ISO 8583, and read and match answers.
struct FakeHost {
    shard: Arc<OnceLock<Recipient<UpstreamResults>>>,
}

impl Actor for FakeHost {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(POOL_MAILBOX_MAX);
    }
}

impl Handler<UpstreamBatch> for FakeHost {
    type Result = ();

    fn handle(&mut self, batch: UpstreamBatch, _ctx: &mut Context<Self>) {
        let items = batch
            .items
            .iter()
            .map(|r| fixtures::approved(r.op_id))
            .collect();
        self.shard.get().unwrap().do_send(UpstreamResults { items });
    }
}

/// One run: send `requests` in `ShardBatch`es of `batch`, say on `done` when the last answer
/// has arrived.
#[derive(Message)]
#[rtype(result = "()")]
struct Run {
    requests: Vec<TxnRequest>,
    batch: usize,
    done: mpsc::Sender<()>,
}

/// Stands in for the session actor: sends requests to the shard within the window, counts the
/// answers.
struct Client {
    shard: Addr<ShardActor>,
    metrics: Arc<Metrics>,
    me: Option<Recipient<AnswerBatch>>,
    requests: std::vec::IntoIter<TxnRequest>,
    batch: usize,
    sent: usize,
    answered: usize,
    approved: usize,
    total: usize,
    done: Option<mpsc::Sender<()>>,
}

impl Client {
    fn new(shard: Addr<ShardActor>, metrics: Arc<Metrics>) -> Self {
        Self {
            shard,
            metrics,
            me: None,
            requests: Vec::new().into_iter(),
            batch: 1,
            sent: 0,
            answered: 0,
            approved: 0,
            total: 0,
            done: None,
        }
    }

    /// Sends batches while the window has room for a whole one (or for the last, shorter one).
    fn refill(&mut self) {
        let me = self.me.clone().unwrap();
        loop {
            let remaining = self.total - self.sent;
            let size = self.batch.min(remaining);
            if size == 0 || self.sent - self.answered + size > WINDOW {
                return;
            }
            let items: Vec<(ReplyTo, TxnRequest)> = self
                .requests
                .by_ref()
                .take(size)
                .enumerate()
                .map(|(i, req)| {
                    let to = ReplyTo {
                        network: bytes::Bytes::from_static(fixtures::NETWORK),
                        session: me.clone(),
                        session_id: 1,
                        correlation_id: (self.sent + i) as u64,
                    };
                    (to, req)
                })
                .collect();
            self.sent += items.len();
            self.metrics.shard_enqueued(0);
            // The window (512) is below the shard's mailbox bound (1,024): never full.
            self.shard.try_send(ShardBatch { shard: 0, items }).unwrap();
        }
    }
}

impl Actor for Client {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.me = Some(ctx.address().recipient());
    }
}

impl Handler<Run> for Client {
    type Result = ();

    fn handle(&mut self, run: Run, _ctx: &mut Context<Self>) {
        self.total = run.requests.len();
        self.requests = run.requests.into_iter();
        self.batch = run.batch;
        (self.sent, self.answered, self.approved) = (0, 0, 0);
        self.done = Some(run.done);
        self.refill();
    }
}

impl Handler<AnswerBatch> for Client {
    type Result = ();

    fn handle(&mut self, batch: AnswerBatch, _ctx: &mut Context<Self>) {
        self.answered += batch.items.len();
        self.approved += batch
            .items
            .iter()
            .filter(|a| a.answer.result == ResultCode::Approved)
            .count();
        if self.answered < self.total {
            return self.refill();
        }
        assert_eq!(self.approved, self.total, "every answer approved");
        self.done.take().unwrap().send(()).unwrap();
    }
}

/// Client, shard and fake host started on `arbiters` (one Arbiter each, or all on the first).
fn start_mesh(arbiters: &[Arbiter]) -> Addr<Client> {
    let on = |i: usize| arbiters[i.min(arbiters.len() - 1)].handle();
    let metrics = Arc::new(Metrics::new(1));
    let results: Arc<OnceLock<Recipient<UpstreamResults>>> = Arc::new(OnceLock::new());
    let shard_slot = results.clone();
    let host = FakeHost::start_in_arbiter(&on(2), move |_| FakeHost { shard: shard_slot });
    let pools = Arc::new(vec![host.recipient::<UpstreamBatch>()]);
    let shard_metrics = metrics.clone();
    let shard = ShardActor::start_in_arbiter(&on(1), move |_| {
        let core = ShardCore::new(0, fixtures::settings(), 1);
        ShardActor::new(core, pools, shard_metrics, None)
    });
    results.set(shard.clone().recipient()).ok().unwrap();
    Client::start_in_arbiter(&on(0), move |_| Client::new(shard, metrics))
}

fn bench_hop(c: &mut Criterion) {
    // Actors need actix's runtime: a System, and Arbiters (a thread and event loop each).
    let _system = System::new();
    let mut group = c.benchmark_group("mesh_hop");
    group.throughput(Throughput::Elements(REQUESTS as u64));
    let mut next = 0;
    let mut meter = CpuMeter::process();
    for (topology, threads) in [("one_arbiter", 1), ("three_arbiters", 3)] {
        let arbiters: Vec<Arbiter> = (0..threads).map(|_| Arbiter::new()).collect();
        let client = start_mesh(&arbiters);
        // Fill the shard's window first: measured steps also evict the oldest orders.
        let (done, finished) = mpsc::channel();
        client.do_send(Run {
            requests: fixtures::authorizations(&mut next, fixtures::ORDERS_WINDOW),
            batch: 64,
            done,
        });
        finished.recv().unwrap();
        for batch in [1, 64] {
            let id = BenchmarkId::new(topology, format!("batch_{batch}"));
            group.bench_function(id, |b| {
                b.iter_custom(|iterations| {
                    let mut wall = Duration::ZERO;
                    for _ in 0..iterations {
                        let requests = fixtures::authorizations(&mut next, REQUESTS);
                        let (done, finished) = mpsc::channel();
                        let started = meter.start();
                        client.do_send(Run {
                            requests,
                            batch,
                            done,
                        });
                        finished.recv().unwrap();
                        wall += meter.stop(started, REQUESTS);
                    }
                    wall
                })
            });
            meter.report(&format!("mesh_hop/{topology}/batch_{batch}"));
        }
        for arbiter in arbiters {
            arbiter.stop();
            arbiter.join().unwrap();
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = bench_hop
}
criterion_main!(benches);
