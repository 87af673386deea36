//! [`JournalConfig`], [`Durability`] and the hard limits every configuration value is checked
//! against.

use std::path::PathBuf;

use crate::error::JournalError;
use crate::record::{RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};

/// Default size at which a segment is closed and a new one started: 64 MiB.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;
/// Largest `segment_bytes_max` accepted: 1 GiB (recovery reads a whole segment into memory).
pub const SEGMENT_BYTES_LIMIT: u64 = 1024 * 1024 * 1024;
/// Default records per group commit.
pub const BATCH_RECORDS_DEFAULT: usize = 4096;
/// Largest `batch_records_max` accepted.
pub const BATCH_RECORDS_LIMIT: usize = 65_536;
/// Default encoded bytes per group commit: 4 MiB.
pub const BATCH_BYTES_DEFAULT: usize = 4 * 1024 * 1024;
/// Largest `batch_bytes_max` accepted: 64 MiB (one write buffer of this size is kept).
pub const BATCH_BYTES_LIMIT: usize = 64 * 1024 * 1024;
/// Default submissions waiting for the writer.
pub const QUEUE_SUBMISSIONS_DEFAULT: usize = 4096;
/// Largest `queue_batches_max` accepted.
pub const QUEUE_SUBMISSIONS_LIMIT: usize = 1 << 20;
/// Default encoded bytes waiting for the writer: 64 MiB.
pub const QUEUE_BYTES_DEFAULT: usize = 64 * 1024 * 1024;
/// Largest `queue_bytes_max` accepted: 1 GiB.
pub const QUEUE_BYTES_LIMIT: usize = 1024 * 1024 * 1024;
/// Default closed segments kept behind the newest checkpoint (for inspection and audit).
pub const SEGMENTS_RETAINED_DEFAULT: usize = 2;
/// Largest `segments_retained_max` accepted.
pub const SEGMENTS_RETAINED_LIMIT: usize = 1 << 16;
/// Largest segment file recovery will read: a segment may pass `segment_bytes_max` by one batch.
pub const SEGMENT_FILE_BYTES_MAX: u64 = SEGMENT_BYTES_LIMIT + BATCH_BYTES_LIMIT as u64;
/// Largest snapshot state accepted from the caller and read back at recovery: 16 GiB (a router's
/// shards at full windows of a million orders each write about 450 MB per shard).
pub const SNAPSHOT_BYTES_MAX: usize = 16 * 1024 * 1024 * 1024;

/// When an append counts as durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// One `fdatasync` per batch before any of its callbacks runs, `fsync` of the directory after
    /// creating, renaming or deleting files. The only mode for production.
    #[default]
    Fsync,
    /// **UNSAFE: NO FSYNC AT ALL.** Callbacks run as soon as the batch is in the page cache; a
    /// power loss or kernel crash loses acknowledged records (a process crash does not). For tests
    /// and for benchmarks measuring everything but the disk. Never in production.
    Relaxed,
}

/// Where the journal lives and its limits. [`JournalConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalConfig {
    /// Directory holding segments and checkpoints, created if missing. One journal per directory.
    pub dir: PathBuf,
    /// A segment is closed once it reaches this size (it may pass it by up to one batch).
    pub segment_bytes_max: u64,
    /// Records written with one write and one `fdatasync`.
    pub batch_records_max: usize,
    /// Encoded bytes written with one write and one `fdatasync`.
    pub batch_bytes_max: usize,
    /// Submissions waiting for the writer; when full, `submit` answers `Busy`.
    pub queue_batches_max: usize,
    /// Encoded bytes waiting for the writer; when reached, `submit` answers `Busy`. With
    /// `queue_batches_max` this bounds the memory a burst can pin.
    pub queue_bytes_max: usize,
    /// See [`Durability`]: `Fsync` unless you are benchmarking or testing.
    pub durability: Durability,
    /// Closed segments kept although the newest checkpoint covers them. Older ones are deleted,
    /// which bounds the disk footprint to about `(segments_retained_max + 1) * segment_bytes_max`
    /// plus the records since the last checkpoint.
    pub segments_retained_max: usize,
}

impl JournalConfig {
    /// The defaults, in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        JournalConfig {
            dir: dir.into(),
            segment_bytes_max: SEGMENT_BYTES_DEFAULT,
            batch_records_max: BATCH_RECORDS_DEFAULT,
            batch_bytes_max: BATCH_BYTES_DEFAULT,
            queue_batches_max: QUEUE_SUBMISSIONS_DEFAULT,
            queue_bytes_max: QUEUE_BYTES_DEFAULT,
            durability: Durability::Fsync,
            segments_retained_max: SEGMENTS_RETAINED_DEFAULT,
        }
    }

    /// Checks every value against its limit.
    pub fn validate(&self) -> Result<(), JournalError> {
        let one_record = RECORD_HEADER_BYTES + 1;
        let checks: [(bool, String); 6] = [
            (
                (1..=SEGMENT_BYTES_LIMIT).contains(&self.segment_bytes_max),
                format!("segment_bytes_max must be 1..={SEGMENT_BYTES_LIMIT}"),
            ),
            (
                (1..=BATCH_RECORDS_LIMIT).contains(&self.batch_records_max),
                format!("batch_records_max must be 1..={BATCH_RECORDS_LIMIT}"),
            ),
            (
                (one_record..=BATCH_BYTES_LIMIT).contains(&self.batch_bytes_max),
                format!("batch_bytes_max must be {one_record}..={BATCH_BYTES_LIMIT}"),
            ),
            (
                (1..=QUEUE_SUBMISSIONS_LIMIT).contains(&self.queue_batches_max),
                format!("queue_batches_max must be 1..={QUEUE_SUBMISSIONS_LIMIT}"),
            ),
            (
                (self
                    .batch_bytes_max
                    .min(RECORD_HEADER_BYTES + RECORD_PAYLOAD_BYTES_MAX)
                    ..=QUEUE_BYTES_LIMIT)
                    .contains(&self.queue_bytes_max),
                format!(
                    "queue_bytes_max must hold one full batch (or record) and be <= {QUEUE_BYTES_LIMIT}"
                ),
            ),
            (
                self.segments_retained_max <= SEGMENTS_RETAINED_LIMIT,
                format!("segments_retained_max must be <= {SEGMENTS_RETAINED_LIMIT}"),
            ),
        ];
        match checks.into_iter().find(|(ok, _)| !ok) {
            Some((_, message)) => Err(JournalError::InvalidConfig(message)),
            None => Ok(()),
        }
    }
}
