//! paymesh-benches: criterion benchmarks, in `benches/benches/` (figures and the napkin math that
//! adds them up: docs/PERFORMANCE.md).
//!
//! - `frame`, `iso8583`: the codecs (PayMesh frames and messages; ISO 8583 0100 in two profiles).
//! - `journal`: journal append and commit, with and without fsync.
//! - `mesh_step`: the sans-IO cores one transaction at a time: the shard state machine
//!   (authorization and approval, retransmission, inquiry, journal records) and the upstream pool
//!   (an authorization submitted and its 0110 answer read back).
//! - `mesh_hop`: one session → shard → pool hop and back through real actix actors, batched and
//!   unbatched, on one Arbiter and across three.
//! - `fixtures/`: what the mesh benches share (settings, requests, a CPU-time meter).
//!
//! `cargo bench -p paymesh-benches` runs them all (about five minutes on 2 cores);
//! `--bench NAME` runs one.
