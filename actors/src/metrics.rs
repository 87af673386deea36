//! Counters the actors bump and the router reports (the Prometheus endpoint comes with the Service
//! Gateway issue). Relaxed atomics: each is an independent monotonic count.

use std::sync::atomic::{AtomicU64, Ordering};

/// A monotonic counter.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    /// Removes one (never below zero).
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }
    /// Current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The mesh's counters.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Open client connections.
    pub connections: Gauge,
    /// Logged-in sessions.
    pub sessions: Gauge,
    /// Transaction requests accepted into the mesh.
    pub requests: Counter,
    /// Transaction answers written.
    pub answers: Counter,
    /// Requests refused BUSY because the session's window was full.
    pub busy_window: Counter,
    /// Requests refused BUSY because a shard mailbox was full.
    pub busy_shard: Counter,
    /// Requests refused BUSY because an upstream pool mailbox was full.
    pub busy_pool: Counter,
    /// Answer batches the query store's full queue dropped (the store lags; the journal has them).
    pub store_dropped: Counter,
    /// Frames rejected at the protocol level.
    pub rejects: Counter,
    /// Upstream links connected.
    pub upstream_links_up: Gauge,
    /// Upstream requests sent.
    pub upstream_sent: Counter,
    /// Upstream answers matched.
    pub upstream_answered: Counter,
    /// Upstream requests timed out.
    pub upstream_timeouts: Counter,
    /// Upstream answers that matched nothing (late, duplicate, foreign).
    pub upstream_unmatched: Counter,
}
