//! Counters the actors bump and the router reports on its admin port (Prometheus text, rendered by
//! `paymesh-router`'s `admin` module). Relaxed atomics: each is an independent count.

use std::sync::atomic::{AtomicU64, Ordering};

use paymesh_codecs::message::TxnKind;

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
    /// Sets the value.
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }
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
    /// Adds `delta`, which may be negative (never below zero).
    pub fn add_signed(&self, delta: i64) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add_signed(delta))
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
    /// Client sockets open: each holds one of the listener's `max_connections` slots from accept
    /// (before any TLS handshake) until the socket is closed, so this counts handshakes in progress
    /// and sockets whose writer is still delivering after their session ended. Kept by the
    /// router's listener, not by the session.
    pub connections: Gauge,
    /// Connections closed at accept because every `max_connections` slot was taken.
    pub connections_refused: Counter,
    /// TLS handshakes in progress.
    pub tls_handshakes: Gauge,
    /// TLS handshakes that failed (a protocol error, a refused or missing client certificate).
    pub tls_handshake_errors: Counter,
    /// TLS handshakes cut off at the handshake deadline.
    pub tls_handshake_timeouts: Counter,
    /// LOGINs refused for a wrong network id, credential or client certificate.
    pub login_failures: Counter,
    /// Source addresses locked out after too many failed LOGINs.
    pub login_lockouts: Counter,
    /// LOGINs refused without a check because their source address was locked out.
    pub login_locked_refusals: Counter,
    /// LOGINs answered BUSY: the credential check queue was full, or the address's delay after
    /// failures ran past the login deadline.
    pub login_busy: Counter,
    /// Connections closed because they had not completed LOGIN by the login deadline.
    pub login_deadline_closes: Counter,
    /// Credential checks waiting for a login thread.
    pub login_checks_queued: Gauge,
    /// Source addresses with recent failed LOGINs the router tracks.
    pub login_tracked_addresses: Gauge,
    /// Connections dropped because their writer made no progress for the write stall limit.
    pub write_stalls: Counter,
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
    /// 1 once the journal failed (disk full, I/O error): shards answer INTERNAL_ERROR until a
    /// restart; alert on it.
    pub journal_failed: Gauge,
    /// The business settings' version every shard runs (the oldest any shard runs, while a
    /// reload is under way).
    pub settings_version: Gauge,
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
    /// Transaction requests accepted into the mesh by kind, indexed as [`TxnKind::ALL`].
    pub requests_by_kind: [Counter; TXN_KINDS],
    /// Messages in each shard's mailbox (sent by sessions, not yet handled), by shard index.
    /// Empty when built with `Default`: see [`Metrics::new`].
    pub shard_queued: Vec<Gauge>,
    /// Orders in each shard's window, by shard index (empty with `Default`).
    pub shard_orders: Vec<Gauge>,
    /// Keys of evicted orders each shard remembers, by shard index (empty with `Default`).
    pub shard_evicted_keys: Vec<Gauge>,
}

/// Transaction kinds counted apart in [`Metrics::requests_by_kind`].
pub const TXN_KINDS: usize = TxnKind::ALL.len();

impl Metrics {
    /// Counters for a mesh of `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            shard_queued: (0..shards).map(|_| Gauge::default()).collect(),
            shard_orders: (0..shards).map(|_| Gauge::default()).collect(),
            shard_evicted_keys: (0..shards).map(|_| Gauge::default()).collect(),
            ..Self::default()
        }
    }

    /// Counts a transaction request accepted into the mesh.
    pub fn request_accepted(&self, kind: TxnKind) {
        self.requests.inc();
        if let Some(counter) = kind_index(kind).and_then(|i| self.requests_by_kind.get(i)) {
            counter.inc();
        }
    }

    /// Requests of `kind` accepted so far.
    pub fn requests_of_kind(&self, kind: TxnKind) -> u64 {
        kind_index(kind)
            .and_then(|i| self.requests_by_kind.get(i))
            .map_or(0, Counter::get)
    }

    /// A session is about to send a message to shard `shard` (counted before the send, so the
    /// shard's decrement can never come first).
    pub fn shard_enqueued(&self, shard: usize) {
        if let Some(gauge) = self.shard_queued.get(shard) {
            gauge.inc();
        }
    }

    /// Shard `shard` took a message from its mailbox, or a send to it failed.
    pub fn shard_dequeued(&self, shard: usize) {
        if let Some(gauge) = self.shard_queued.get(shard) {
            gauge.dec();
        }
    }
}

fn kind_index(kind: TxnKind) -> Option<usize> {
    TxnKind::ALL.iter().position(|k| *k == kind)
}

/// Upper bounds (inclusive, microseconds) of the latency histogram buckets; one more bucket counts
/// everything above the last bound (Prometheus `le="+Inf"`).
pub const LATENCY_BUCKETS_US: [u64; 14] = [
    250, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000, 200_000, 500_000, 1_000_000,
    2_000_000, 5_000_000,
];

/// A fixed-bucket latency histogram (cumulative buckets are computed when rendered).
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len() + 1],
    sum_us: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe_us(&self, us: u64) {
        let index = LATENCY_BUCKETS_US
            .iter()
            .position(|bound| us <= *bound)
            .unwrap_or(LATENCY_BUCKETS_US.len());
        if let Some(b) = self.buckets.get(index) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_us.fetch_add(us, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }
    /// Per-bucket counts (not cumulative), the last one being the overflow bucket.
    pub fn buckets(&self) -> [u64; LATENCY_BUCKETS_US.len() + 1] {
        std::array::from_fn(|i| self.buckets.get(i).map_or(0, |b| b.load(Ordering::Relaxed)))
    }
    /// Sum of all observations, microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Ordering::Relaxed)
    }
    /// Number of observations.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

/// State of one upstream link, as [`LinkMetrics::state`] stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LinkState {
    /// Not connected (waiting for the next attempt).
    Down = 0,
    /// TCP connect in progress.
    Connecting = 1,
    /// Connected, sign-on sent, not yet answered: carries no transactions.
    SigningOn = 2,
    /// Signed on: carries transactions.
    Up = 3,
}

impl LinkState {
    /// Every state, for rendering one series per state.
    pub const ALL: [LinkState; 4] = [Self::Down, Self::Connecting, Self::SigningOn, Self::Up];

    /// From the stored byte (unknown values read as `Down`).
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Connecting,
            2 => Self::SigningOn,
            3 => Self::Up,
            _ => Self::Down,
        }
    }
    /// Lower-case name for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Down => "down",
            Self::Connecting => "connecting",
            Self::SigningOn => "signing_on",
            Self::Up => "up",
        }
    }
}

/// Counters of one upstream link.
#[derive(Debug, Default)]
pub struct LinkMetrics {
    /// A [`LinkState`] as u8.
    pub state: std::sync::atomic::AtomicU8,
    /// Requests in flight on the link.
    pub inflight: Gauge,
    /// Requests sent on the link (transactions, reversals and network management).
    pub requests: Counter,
    /// Times the link was (re)connected.
    pub connects: Counter,
}

/// Circuit breaker state, as [`HostMetrics::breaker`] stores it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BreakerState {
    /// Traffic flows.
    Closed = 0,
    /// Refusing traffic after consecutive failures.
    Open = 1,
    /// Letting a probe through.
    HalfOpen = 2,
}

impl BreakerState {
    /// Every state, for rendering one series per state.
    pub const ALL: [BreakerState; 3] = [Self::Closed, Self::Open, Self::HalfOpen];

    /// From the stored byte (unknown values read as `Closed`).
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Open,
            2 => Self::HalfOpen,
            _ => Self::Closed,
        }
    }
    /// Lower-case name for metrics labels.
    pub fn name(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }
}

/// Counters of one upstream host (one pool), labelled by host name when rendered.
#[derive(Debug)]
pub struct HostMetrics {
    /// Host name from the configuration.
    pub name: String,
    /// One entry per configured link.
    pub links: Vec<LinkMetrics>,
    /// A [`BreakerState`] as u8.
    pub breaker: std::sync::atomic::AtomicU8,
    /// Requests in flight on all links.
    pub inflight: Gauge,
    /// Transaction requests sent (not counting reversals and network management).
    pub requests: Counter,
    /// Answers mapped to APPROVED.
    pub approvals: Counter,
    /// Answers mapped to anything else.
    pub declines: Counter,
    /// Requests that got no answer in time (or whose link dropped).
    pub timeouts: Counter,
    /// Requests refused before sending (no link, breaker open, host limits).
    pub refused: Counter,
    /// Answers that matched nothing (late, duplicate, foreign).
    pub unmatched: Counter,
    /// Reversals waiting to be sent or acknowledged (store-and-forward queue).
    pub reversals_pending: Gauge,
    /// Reversal messages sent (0400 and repeats 0401).
    pub reversals_sent: Counter,
    /// Reversals the host acknowledged.
    pub reversals_acknowledged: Counter,
    /// Request → answer latency of answered requests.
    pub latency: Histogram,
}

impl HostMetrics {
    /// Counters for a host with `links` links, all down.
    pub fn new(name: impl Into<String>, links: usize) -> Self {
        Self {
            name: name.into(),
            links: (0..links).map(|_| LinkMetrics::default()).collect(),
            breaker: std::sync::atomic::AtomicU8::new(BreakerState::Closed as u8),
            inflight: Gauge::default(),
            requests: Counter::default(),
            approvals: Counter::default(),
            declines: Counter::default(),
            timeouts: Counter::default(),
            refused: Counter::default(),
            unmatched: Counter::default(),
            reversals_pending: Gauge::default(),
            reversals_sent: Counter::default(),
            reversals_acknowledged: Counter::default(),
            latency: Histogram::default(),
        }
    }
    /// Sets a link's state.
    pub fn set_link_state(&self, link: usize, state: LinkState) {
        if let Some(l) = self.links.get(link) {
            l.state.store(state as u8, Ordering::Relaxed);
        }
    }
    /// Sets the breaker state.
    pub fn set_breaker(&self, state: BreakerState) {
        self.breaker.store(state as u8, Ordering::Relaxed);
    }
}
