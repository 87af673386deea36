//! The sans-IO transaction core: no sockets, no clocks, no actors. Everything here is driven by
//! values and the time passed in (`now_ms`; the pool core takes microseconds, for upstream
//! latencies), so the deterministic simulation and the actors share it.
//!
//! - [`config`]: merchants, routes, limits, upstream hosts and their dialects.
//! - [`access`]: which network may act for which merchant, and who may follow an order up.
//! - [`ids`]: transaction ids and wallet tokens no client can guess (keyed permutation, PRF).
//! - [`device`]: device signatures on requests: the registered devices' keys, Ed25519
//!   verification over a request's signed bytes, the per-device anti-replay counter windows.
//! - [`route`]: the route table (method and BIN range → host, failover by host availability).
//! - [`order`]: orders and operations, the records behind idempotency, and the store-and-forward
//!   reversal (or capture advice) an order may carry.
//! - [`window`]: the shard's order window (orders by id and by key, oldest first, bounded) and the
//!   keys of evicted orders, so an old key is never authorized twice.
//! - [`shard`]: the shard state machine, its reversal queue (`poll_reversals`), who may do what
//!   to its orders (`shard/ownership.rs`), its wallet vault (`shard/vault.rs`) and its snapshot
//!   (`shard/snapshot.rs`, for journal checkpoints).
//! - [`upstream`]: the shard ↔ upstream-pool contract, response-code mapping, STANs the shards
//!   assign (`stan_for`, so replay knows what was sent).
//! - [`pool`]: one upstream host's links: sign-on, echo and sign-off, STANs, matching, timeouts,
//!   reconnect backoff, circuit breaker, host limits, dialects.
//! - [`recovery`]: rebuilding shards from the newest checkpoint and the records after it;
//!   in-doubt operations and their reversals.
//! - [`versions`]: merchants and grants as versioned data, journaled where each shard switches,
//!   so replay applies the version in force when a record was written.
//! - [`journal_codec`]: the shard inputs as journal records (requests encrypted, CVV never written).

pub mod access;
pub mod clock;
pub mod config;
pub mod device;
pub mod ids;
pub mod journal_codec;
pub mod order;
pub mod pool;
pub mod recovery;
pub mod route;
pub mod shard;
pub mod upstream;
pub mod versions;
pub mod window;
