//! The PayMesh actor mesh (actix).
//!
//! A transaction travels: client connection → [`mesh::session::Session`] (the router actor of that
//! connection: session rules, parsing, validation, window) → [`mesh::shard::ShardActor`] chosen by a
//! hash of the merchant id (the transaction state machine and idempotency) →
//! [`mesh::pool::PoolActor`] of the routed host (ISO 8583 over persistent links) and back the same
//! way. Work moves in batches; every mailbox is bounded and a full one answers BUSY.
//!
//! Layout:
//! - [`core`]: the sans-IO parts: shard state machine, pool (sign-on, echo and sign-off, STAN,
//!   matching, timeouts, reconnect backoff, circuit breaker, host limits, dialects), routes with
//!   failover, config, calendar fields. Deterministic and testable without sockets or actors.
//! - [`mesh`]: the actix shells: messages, session, shard and pool actors.
//! - [`metrics`]: counters. [`error`]: the crate's error enum.
//!
//! Actors need actix's runtime: start them on `Arbiter`s inside an `actix::System` (see
//! ../shared/DEPENDENCIES.md), as the router does.

pub mod core;
pub mod error;
pub mod mesh;
pub mod metrics;

/// Wall-clock unix time in milliseconds: read by the actor shells only, passed into the cores.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Monotonic microseconds since the first call in this process: the pool core's time (deadlines,
/// backoff, breaker, latencies), which a step of the wall clock cannot move.
pub fn mono_us() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_micros() as u64
}

/// Wall-clock unix time in microseconds.
pub fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}
