//! Counters the writer updates with relaxed atomics and [`JournalStats`], a copy of them.

use std::sync::atomic::{AtomicU64, Ordering};

/// Buckets of the batch-size histogram: bucket `i` counts batches of `2^i ..= 2^(i+1) - 1`
/// records (1, 2-3, 4-7, ...); the last one counts everything from `2^16` up.
pub const BATCH_HISTOGRAM_BUCKETS: usize = 17;

/// Upper bounds (inclusive, microseconds) of the `fdatasync` latency histogram; one more bucket
/// counts everything above the last bound.
pub const FSYNC_LATENCY_BUCKETS_US: [u64; 14] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000,
];
/// Buckets of the `fdatasync` latency histogram: the bounds plus the overflow bucket.
pub const FSYNC_HISTOGRAM_BUCKETS: usize = FSYNC_LATENCY_BUCKETS_US.len() + 1;

/// The live counters, shared between the writer and every handle.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    records: AtomicU64,
    submissions: AtomicU64,
    batches: AtomicU64,
    fsyncs: AtomicU64,
    bytes: AtomicU64,
    fsync_micros_sum: AtomicU64,
    fsync_micros_max: AtomicU64,
    busy: AtomicU64,
    checkpoints: AtomicU64,
    segments_deleted: AtomicU64,
    batch_records: [AtomicU64; BATCH_HISTOGRAM_BUCKETS],
    fsync_micros: [AtomicU64; FSYNC_HISTOGRAM_BUCKETS],
}

fn bump(counter: &AtomicU64, by: u64) {
    counter.fetch_add(by, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn batch_written(&self, records: u64, submissions: u64, bytes: u64) {
        bump(&self.records, records);
        bump(&self.submissions, submissions);
        bump(&self.batches, 1);
        bump(&self.bytes, bytes);
        if let Some(bucket) = self.batch_records.get(histogram_bucket(records)) {
            bump(bucket, 1);
        }
    }

    pub(crate) fn fsync_done(&self, micros: u64) {
        bump(&self.fsyncs, 1);
        bump(&self.fsync_micros_sum, micros);
        self.fsync_micros_max.fetch_max(micros, Ordering::Relaxed);
        if let Some(bucket) = self.fsync_micros.get(fsync_bucket(micros)) {
            bump(bucket, 1);
        }
    }

    pub(crate) fn busy(&self) {
        bump(&self.busy, 1);
    }

    pub(crate) fn checkpoint_done(&self, segments_deleted: u64) {
        bump(&self.checkpoints, 1);
        bump(&self.segments_deleted, segments_deleted);
    }

    pub(crate) fn snapshot(&self) -> JournalStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        JournalStats {
            records: load(&self.records),
            submissions: load(&self.submissions),
            batches: load(&self.batches),
            fsyncs: load(&self.fsyncs),
            bytes: load(&self.bytes),
            fsync_micros_sum: load(&self.fsync_micros_sum),
            fsync_micros_max: load(&self.fsync_micros_max),
            busy: load(&self.busy),
            checkpoints: load(&self.checkpoints),
            segments_deleted: load(&self.segments_deleted),
            batch_records_histogram: self.batch_records.each_ref().map(load),
            fsync_micros_histogram: self.fsync_micros.each_ref().map(load),
        }
    }
}

/// The bucket of an `fdatasync` that took `micros` microseconds.
pub fn fsync_bucket(micros: u64) -> usize {
    FSYNC_LATENCY_BUCKETS_US
        .iter()
        .position(|bound| micros <= *bound)
        .unwrap_or(FSYNC_LATENCY_BUCKETS_US.len())
}

/// The bucket of a batch of `records` records.
pub fn histogram_bucket(records: u64) -> usize {
    (records.max(1).ilog2() as usize).min(BATCH_HISTOGRAM_BUCKETS - 1)
}

/// A copy of the journal's counters since it was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct JournalStats {
    /// Records made durable (or, relaxed, written).
    pub records: u64,
    /// Submissions completed.
    pub submissions: u64,
    /// Batches written: one write call each.
    pub batches: u64,
    /// `fdatasync` calls on segments (0 when relaxed).
    pub fsyncs: u64,
    /// Encoded bytes written to segments.
    pub bytes: u64,
    /// Sum of the `fdatasync` durations, microseconds.
    pub fsync_micros_sum: u64,
    /// Longest `fdatasync`, microseconds.
    pub fsync_micros_max: u64,
    /// Submissions refused with `Busy`.
    pub busy: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Batches by size in records, see [`BATCH_HISTOGRAM_BUCKETS`].
    pub batch_records_histogram: [u64; BATCH_HISTOGRAM_BUCKETS],
    /// `fdatasync` calls by duration, see [`FSYNC_LATENCY_BUCKETS_US`] (not cumulative; the last
    /// bucket counts everything above the last bound).
    pub fsync_micros_histogram: [u64; FSYNC_HISTOGRAM_BUCKETS],
}

impl JournalStats {
    /// Mean records per batch.
    pub fn mean_batch_records(&self) -> f64 {
        self.records as f64 / self.batches.max(1) as f64
    }

    /// Mean `fdatasync` duration, microseconds.
    pub fn fsync_micros_mean(&self) -> f64 {
        self.fsync_micros_sum as f64 / self.fsyncs.max(1) as f64
    }

    /// The label of histogram bucket `bucket`: "1", "2-3", ..., "65536+".
    pub fn bucket_label(bucket: usize) -> String {
        let low = 1_u64 << bucket.min(63);
        match bucket {
            0 => "1".to_owned(),
            _ if bucket + 1 >= BATCH_HISTOGRAM_BUCKETS => format!("{low}+"),
            _ => format!("{low}-{}", low * 2 - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_powers_of_two() {
        assert_eq!(histogram_bucket(1), 0);
        assert_eq!(histogram_bucket(3), 1);
        assert_eq!(histogram_bucket(4), 2);
        assert_eq!(histogram_bucket(4096), 12);
        assert_eq!(histogram_bucket(u64::MAX), BATCH_HISTOGRAM_BUCKETS - 1);
        assert_eq!(JournalStats::bucket_label(2), "4-7");
        assert_eq!(JournalStats::bucket_label(16), "65536+");
    }

    #[test]
    fn fsync_latencies_fall_in_their_bucket() {
        assert_eq!(fsync_bucket(0), 0);
        assert_eq!(fsync_bucket(50), 0);
        assert_eq!(fsync_bucket(51), 1);
        assert_eq!(fsync_bucket(1_000_000), FSYNC_LATENCY_BUCKETS_US.len() - 1);
        assert_eq!(fsync_bucket(u64::MAX), FSYNC_HISTOGRAM_BUCKETS - 1);
        let counters = Counters::default();
        counters.fsync_done(70);
        counters.fsync_done(2_000_000);
        let stats = counters.snapshot();
        assert_eq!(stats.fsync_micros_histogram[1], 1);
        assert_eq!(stats.fsync_micros_histogram[FSYNC_HISTOGRAM_BUCKETS - 1], 1);
        assert_eq!(
            stats.fsync_micros_histogram.iter().sum::<u64>(),
            stats.fsyncs
        );
    }
}
