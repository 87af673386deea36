//! Resident memory per order in a shard's window: `N` card authorizations, each decoded from the
//! wire the way a session reads them (frames cut from 64 KiB read buffers, so the request's fields
//! are slices of those buffers), approved by the host, and kept by the shard for idempotency. The
//! process's resident set before and after, divided by `N`, is what one order costs; the shard's
//! window (`orders_per_shard_max`) times this is what a shard costs at steady state.
//!
//! Orders past `orders_hot_per_shard_max` (the default, 32 Ki) are frozen: the figure is for a
//! window mostly frozen, as at steady state. `-- N hot` keeps all `N` hot instead.
//!
//! `cargo bench -p paymesh-benches --bench order_memory [-- N [hot]]` (default 200,000)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod fixtures;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::sync::Arc;

use bytes::BytesMut;
use paymesh_actors::core::shard::{Output, ShardCore};
use paymesh_codecs::frame::decode_frame;
use paymesh_codecs::message::Message;
use paymesh_codecs::types::ResultCode;

use fixtures::{NETWORK, NOW_MS, approved, authorize};
use paymesh_actors::core::access::Origin;

/// Bytes read from a socket at a time by a session (`READ_BUF_BYTES`).
const READ_BUF_BYTES: usize = 64 * 1024;

fn resident_bytes() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200_000);
    let mut settings = fixtures::settings();
    let all_hot = std::env::args().any(|a| a == "hot");
    let s = Arc::get_mut(&mut settings).unwrap();
    s.orders_per_shard_max = n;
    if all_hot {
        s.orders_hot_per_shard_max = n;
    }
    let mut core: ShardCore<u32> = ShardCore::new(0, settings, 1);
    let mut out = Vec::new();
    let before = resident_bytes();
    let mut seq = 0u64;
    while (seq as usize) < n {
        // One read buffer's worth of frames, as a session decodes them.
        let mut buf = BytesMut::with_capacity(READ_BUF_BYTES);
        while buf.len() < READ_BUF_BYTES - 512 && (seq as usize) < n {
            seq += 1;
            Message::Request(authorize(seq)).encode(seq, 0, &mut buf);
        }
        while let Some(frame) = decode_frame(&mut buf, 1 << 20).unwrap() {
            let Message::Request(req) = Message::decode(&frame).unwrap() else {
                panic!("not a request")
            };
            out.clear();
            let _ = core.handle_request(NOW_MS, 1, Origin::Network(NETWORK), &req, &mut out);
            let Some(Output::Upstream(up)) = out.pop() else {
                panic!("no upstream request: {out:?}")
            };
            core.handle_upstream(NOW_MS + 5, approved(up.op_id), &mut out);
            match out.last() {
                Some(Output::Reply(_, a)) if a.result == ResultCode::Approved => {}
                other => panic!("not approved: {other:?}"),
            }
        }
    }
    out.clear();
    let after = resident_bytes();
    assert_eq!(core.order_count(), n);
    println!(
        "{n} orders ({} hot): resident {:.1} MiB more, {} bytes per order",
        core.hot_order_count(),
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) / n
    );
}
