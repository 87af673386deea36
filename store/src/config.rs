//! [`StoreConfig`] and the store's bounds: every queue and batch has a named limit.

use std::path::PathBuf;

use crate::error::StoreError;

/// Upper bound of [`StoreConfig::queue_max`]: rows accepted and not yet written, across the
/// queue and the writer's pending batch. 1 Mi rows of ~250 bytes is ~250 MB at worst. The
/// channel preallocates one 32-byte slot per row of `queue_max` (an offer holds at least one
/// row): 2 MiB for the default, 32 MiB at this limit.
pub const QUEUE_ROWS_LIMIT: usize = 1 << 20;
/// Upper bound of [`StoreConfig::batch_max`]: rows per SQLite transaction.
pub const BATCH_ROWS_LIMIT: usize = 1 << 16;
/// Upper bound of [`StoreConfig::flush_interval_ms`]: how long a row may wait for its batch.
pub const FLUSH_INTERVAL_MS_LIMIT: u64 = 60_000;
/// Control messages (flush, shutdown, merchant and network upserts) queued at once; senders
/// wait when it is full.
pub const CONTROL_MESSAGES_MAX: usize = 64;
/// Most rows one [`crate::StoreReader::list_by_merchant`] call returns.
pub const LIST_ROWS_MAX: usize = 1_000;
/// The writer connection's page cache, KiB. SQLite's default (2 MiB) makes the writer re-read
/// index pages from the OS cache on every batch; 64 MiB holds the hot parts of the indexes.
pub const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// How long a connection waits for a lock held by another connection before failing.
pub const BUSY_TIMEOUT_MS: u64 = 5_000;

/// How to open and feed the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    /// The SQLite database file (created if missing; `-wal` and `-shm` files sit beside it).
    pub path: PathBuf,
    /// Rows accepted and not yet written (1..=[`QUEUE_ROWS_LIMIT`]). An offer that would pass
    /// it is dropped and counted, never waited for.
    pub queue_max: usize,
    /// Rows per write transaction (1..=[`BATCH_ROWS_LIMIT`]): a batch is written once it has
    /// this many rows or its first row has waited `flush_interval_ms`.
    pub batch_max: usize,
    /// Longest a row waits for its batch to fill (0..=[`FLUSH_INTERVAL_MS_LIMIT`]). 0 writes
    /// whatever the queue holds as soon as it is drained (group commit without waiting).
    pub flush_interval_ms: u64,
}

impl StoreConfig {
    /// A configuration with the defaults: 65 536 rows queued (1.6 s of 40 k TPS), batches of
    /// 16 384 rows, 250 ms. Larger batches cost the writer less CPU per row (fewer index pages
    /// rewritten per row, fewer commits): see docs/STORE.md for the figures.
    pub fn new(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            path: path.into(),
            queue_max: 1 << 16,
            batch_max: 1 << 14,
            flush_interval_ms: 250,
        }
    }

    /// Checks every value against its bound.
    pub fn validate(&self) -> Result<(), StoreError> {
        let reason = if self.queue_max == 0 || self.queue_max > QUEUE_ROWS_LIMIT {
            "queue_max must be in 1..=QUEUE_ROWS_LIMIT"
        } else if self.batch_max == 0 || self.batch_max > BATCH_ROWS_LIMIT {
            "batch_max must be in 1..=BATCH_ROWS_LIMIT"
        } else if self.flush_interval_ms > FLUSH_INTERVAL_MS_LIMIT {
            "flush_interval_ms must be at most FLUSH_INTERVAL_MS_LIMIT"
        } else {
            return Ok(());
        };
        Err(StoreError::Config { reason })
    }
}
