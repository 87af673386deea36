//! The mesh's sans-IO cores, one transaction step at a time (no actors, no sockets, no clock):
//!
//! - `shard_step/authorize_approved`: `ShardCore::handle_request` of a new card authorization
//!   (idempotency lookup, merchant checks, daily total, routing by BIN, the order and its upstream
//!   request), then `handle_upstream` of the host's approval (the order's new state, the stored
//!   answer, the client's answer). A long-lived shard whose window of `ORDERS_WINDOW` orders is
//!   full, so each new order also evicts the oldest, as in steady state.
//! - `shard_step/authorize_approved_empty_shard`: the same on an empty shard for every batch of
//!   `BATCH` (small maps in cache, nothing to evict): the lower bound.
//! - `shard_step/journal_records`: the two journal records of an authorization (the request,
//!   sealed with ChaCha20-Poly1305, and the host's outcome), which a shard with a journal encodes
//!   in the same step (`mesh_hop` runs without a journal).
//! - `shard_step/retransmit_replay`: the same request again for an answered order: the stored
//!   answer, replayed.
//! - `shard_step/inquiry`: an INQUIRY by merchant and order id.
//! - `pool_step/<profile>`: `PoolCore::submit` of an authorization (the ISO 8583 0100 built in the
//!   host's dialect, encoded and framed, the match entry and deadline) and, once a batch has been
//!   written, the host's 0110 answers read back: framing, `IsoMessage` decode, match, response
//!   code mapping, the result for the shard. The answers are encoded outside the timed loop; the
//!   link has signed on (0800 answered 00) in setup.
//!
//! Requests are built outside the timed loop, `BATCH` at a time with order ids never used
//! before; throughput is in transactions. After each benchmark a line gives the thread's CPU time
//! per transaction next to the wall time (they differ when other work shares the cores).
//!
//! `cargo bench -p paymesh-benches --bench mesh_step`
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

use std::hint::black_box;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{Bencher, Criterion, Throughput, criterion_group, criterion_main};
use paymesh_actors::core::journal_codec::{JournalKey, encode_request, encode_upstream};
use paymesh_actors::core::pool::{HostSpec, PoolCore, ShardResult};
use paymesh_actors::core::shard::{Output, ShardCore};
use paymesh_actors::core::upstream::{Account, UpstreamKind, UpstreamRequest};
use paymesh_codecs::iso8583::IsoMessage;
use paymesh_codecs::message::{TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, ResultCode};

use fixtures::{CpuMeter, NETWORK, NOW_MS, ORDERS_WINDOW, approved, authorizations, authorize};
use paymesh_actors::core::access::Origin;

/// Transactions per measured batch.
const BATCH: usize = 256;
/// The pool core's clock, microseconds.
const NOW_US: u64 = NOW_MS * 1_000;

/// Times `routine` on what `setup` made (setup and the input's drop are not timed), recording
/// its CPU time in `meter`; each run is `BATCH` transactions.
fn timed<I>(
    b: &mut Bencher,
    meter: &mut CpuMeter,
    mut setup: impl FnMut() -> I,
    mut routine: impl FnMut(&mut I),
) {
    b.iter_custom(|iterations| {
        let mut wall = Duration::ZERO;
        for _ in 0..iterations {
            let mut input = setup();
            let started = meter.start();
            routine(&mut input);
            wall += meter.stop(started, BATCH);
        }
        wall
    })
}

/// A shard whose window is already full of answered orders.
fn full_shard(next: &mut u64) -> ShardCore<u32> {
    let mut core = ShardCore::new(0, fixtures::settings(), 1);
    let mut out = Vec::new();
    for req in authorizations(next, ORDERS_WINDOW) {
        authorize_approved(&mut core, &req, &mut out);
    }
    assert_eq!(core.order_count(), ORDERS_WINDOW);
    core
}

/// One authorization through the shard: request in, upstream request out, approval in, answer out.
fn authorize_approved(core: &mut ShardCore<u32>, req: &TxnRequest, out: &mut Vec<Output<u32>>) {
    out.clear();
    let _ = core.handle_request(NOW_MS, 1, Origin::Network(NETWORK), req, out);
    let Some(Output::Upstream(up)) = out.pop() else {
        panic!("no upstream request: {out:?}")
    };
    core.handle_upstream(NOW_MS + 5, approved(up.op_id), out);
    match out.last() {
        Some(Output::Reply(_, a)) if a.result == ResultCode::Approved => {}
        other => panic!("not approved: {other:?}"),
    }
}

fn bench_shard(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard_step");
    group.throughput(Throughput::Elements(BATCH as u64));
    let mut next = 0;
    let mut core = full_shard(&mut next);
    let mut out = Vec::with_capacity(4);
    let mut meter = CpuMeter::thread();
    group.bench_function("authorize_approved", |b| {
        timed(
            b,
            &mut meter,
            || authorizations(&mut next, BATCH),
            |requests| {
                for req in requests.iter() {
                    authorize_approved(&mut core, req, &mut out);
                }
                black_box(out.len());
            },
        )
    });
    meter.report("shard_step/authorize_approved");
    assert_eq!(
        core.order_count(),
        ORDERS_WINDOW,
        "the window stays bounded"
    );

    // Answered orders spread over the window, asked again (the same request) and inquired.
    let newest = next;
    let step = (ORDERS_WINDOW / BATCH) as u64;
    let again: Vec<TxnRequest> = (0..BATCH as u64)
        .map(|i| authorize(newest - i * step))
        .collect();
    let inquiries: Vec<TxnRequest> = again
        .iter()
        .map(|r| TxnRequest::new(TxnKind::Inquiry, r.merchant_id.clone(), r.order_id.clone()))
        .collect();
    for (name, requests) in [("retransmit_replay", &again), ("inquiry", &inquiries)] {
        group.bench_function(name, |b| {
            timed(
                b,
                &mut meter,
                || (),
                |()| {
                    for req in requests {
                        out.clear();
                        let _ = core.handle_request(
                            NOW_MS + 10,
                            1,
                            Origin::Network(NETWORK),
                            req,
                            &mut out,
                        );
                        match out.last() {
                            Some(Output::Replay(_, a) | Output::Reply(_, a))
                                if a.result == ResultCode::Approved => {}
                            other => panic!("{name}: {other:?}"),
                        }
                    }
                    black_box(out.len());
                },
            )
        });
        meter.report(&format!("shard_step/{name}"));
    }
    // The same with an empty shard for every batch: small, cache-hot maps and no eviction (a
    // lower bound; in a 5 s demo run the shards hold tens of thousands of orders and evict none).
    group.bench_function("authorize_approved_empty_shard", |b| {
        timed(
            b,
            &mut meter,
            || {
                let core = ShardCore::new(0, fixtures::settings(), 1);
                (core, authorizations(&mut next, BATCH))
            },
            |(core, requests)| {
                for req in requests.iter() {
                    authorize_approved(core, req, &mut out);
                }
                black_box(out.len());
            },
        )
    });
    meter.report("shard_step/authorize_approved_empty_shard");
    // What the shard actor journals for one authorization (with a journal): the request, sealed
    // (ChaCha20-Poly1305; the CVV is never written), and the host's outcome.
    let key = JournalKey::new(1, &[7; 32], [1, 2, 3, 4]);
    let mut counter = 0;
    group.bench_function("journal_records", |b| {
        timed(
            b,
            &mut meter,
            || {
                (
                    authorizations(&mut next, BATCH),
                    Vec::with_capacity(2 * BATCH),
                )
            },
            |(requests, records)| {
                for (op_id, req) in (0..).zip(requests.iter()) {
                    counter += 1;
                    records.push(encode_request(&key, counter, NOW_MS, NETWORK, req).unwrap());
                    records.push(encode_upstream(NOW_MS + 5, &approved(op_id)));
                }
            },
        )
    });
    meter.report("shard_step/journal_records");
    group.finish();
}

/// An authorization as the shard hands it to the pool, with the STAN the shard assigned.
fn upstream_authorize(i: u64) -> UpstreamRequest {
    let req = authorize(i);
    UpstreamRequest {
        op_id: i,
        shard: 0,
        host: 0,
        kind: UpstreamKind::Authorize,
        amount: 125_000,
        currency: 410,
        account: Account::Card {
            pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
            expiry: Bytes::from_static(b"2912"),
        },
        merchant_id: req.merchant_id,
        order_id: req.order_id,
        installments: 0,
        original: None,
        original_approval: Bytes::new(),
        terminal: Bytes::new(),
        repeat: false,
        stan: u32::try_from(i).unwrap(),
        sent_at_ms: NOW_MS,
    }
}

/// The messages `pool` wrote on its link.
fn written(pool: &mut PoolCore) -> Vec<IsoMessage> {
    let mut framer = pool.framer();
    let mut buf = BytesMut::from(&pool.take_output(0).unwrap()[..]);
    std::iter::from_fn(|| framer.decode(&mut buf).unwrap())
        .map(|m| IsoMessage::decode(pool.spec().profile, m).unwrap())
        .collect()
}

/// The host's approval of `request` (sign-on answers carry no approval code).
fn answer_to(request: &IsoMessage) -> Bytes {
    let mut a = request.response_template().unwrap();
    a.set(39, Bytes::from_static(b"00")).unwrap();
    if !request.contains(70) {
        a.set(38, Bytes::from_static(b"A1B2C3")).unwrap();
    }
    a.to_bytes()
}

/// A pool whose one link is connected and signed on.
fn signed_on(spec: &HostSpec) -> PoolCore {
    let mut pool = PoolCore::new(spec.clone());
    pool.poll(NOW_US, &mut Vec::new());
    while pool.poll_action().is_some() {}
    pool.link_connected(0, NOW_US);
    let sign_on = written(&mut pool).remove(0);
    assert_eq!(sign_on.mti().number(), 800);
    assert!(
        pool.on_message(0, NOW_US, answer_to(&sign_on))
            .unwrap()
            .is_none()
    );
    assert!(pool.is_up(0));
    pool
}

fn bench_pool(c: &mut Criterion) {
    let mut group = c.benchmark_group("pool_step");
    let mut meter = CpuMeter::thread();
    group.throughput(Throughput::Elements(BATCH as u64));
    // The demo's VAN and card company: ASCII with a 2-byte binary length, BCD with a BCD length.
    for (profile, header) in [("ascii_1987", "binary2"), ("binary_bcd", "bcd2")] {
        let spec = HostSpec::from_config(&fixtures::host_config(profile, header, BATCH)).unwrap();
        let requests: Vec<UpstreamRequest> = (1..=BATCH as u64).map(upstream_authorize).collect();
        // The host's answers to one batch, as one read from the link (encoded once, here).
        let mut primer = signed_on(&spec);
        for r in requests.iter().cloned() {
            primer.submit(NOW_US, r).unwrap();
        }
        let mut read = BytesMut::new();
        for request in written(&mut primer) {
            primer
                .framer()
                .encode(&answer_to(&request), &mut read)
                .unwrap();
        }
        let mut pool = signed_on(&spec);
        let mut framer = pool.framer();
        let mut now = NOW_US;
        let name = format!("authorize_submit_and_answer/{profile}_{header}");
        group.bench_function(&name, |b| {
            timed(
                b,
                &mut meter,
                || {
                    let results: Vec<ShardResult> = Vec::with_capacity(BATCH);
                    (requests.clone(), read.clone(), results)
                },
                |(requests, read, results)| {
                    // The clock moves on (1 ms a batch): deadlines of answered requests, kept
                    // until the link's queue is compacted, differ from the next batch's.
                    now += 1_000;
                    for r in requests.drain(..) {
                        pool.submit(now, r).unwrap();
                    }
                    black_box(pool.take_output(0).unwrap());
                    while let Some(frame) = framer.decode(read).unwrap() {
                        results.push(pool.on_message(0, now + 500, frame).unwrap().unwrap());
                    }
                    assert_eq!(results.len(), BATCH);
                },
            )
        });
        meter.report(&format!("pool_step/{name}"));
        assert_eq!(pool.inflight(), 0, "every request was answered");
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(2));
    targets = bench_shard, bench_pool
}
criterion_main!(benches);
