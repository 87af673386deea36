//! The sans-IO transaction core: no sockets, no clocks, no actors. Everything here is driven by
//! values and a `now_ms` passed in, so the deterministic simulation and the actors share it.
//!
//! - [`config`]: merchants, routes, limits.
//! - [`route`]: the route table (method and BIN range → host).
//! - [`order`]: orders and operations, the records behind idempotency.
//! - [`shard`]: the shard state machine.
//! - [`upstream`]: the shard ↔ upstream-pool contract and response-code mapping.

pub mod clock;
pub mod config;
pub mod order;
pub mod pool;
pub mod route;
pub mod shard;
pub mod upstream;
