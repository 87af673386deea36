//! The actix shells around the cores: they read clocks, move bytes and messages, nothing else.
//!
//! - [`messages`]: the batches that travel between actors.
//! - [`session`]: one router actor per client connection; [`login`]: what it asks of the router at
//!   LOGIN; [`writer`]: its writer task, with the stall limit.
//! - [`outbox`]: per-Arbiter coalescing of the sessions' requests into one batch per shard per tick.
//! - [`shard`]: application shard actors.
//! - [`pool`]: upstream pool actors, one per host.
//! - [`lookup`]: INQUIRY for orders no longer in a shard's window, from the query store.

pub mod login;
pub mod lookup;
pub mod messages;
pub mod outbox;
pub mod pool;
pub mod session;
pub mod shard;
pub mod writer;
