//! [`StoreStats`]: counters shared by the handles and the writer (relaxed atomics: they are
//! figures for operators, not synchronisation).

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of the store's counters since it was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Transaction rows inserted or updated.
    pub rows_written: u64,
    /// Transaction rows ignored because the store already held a newer state of that payment.
    pub rows_stale: u64,
    /// Transaction rows SQLite refused (each is logged); the rest of their batch is written.
    pub rows_failed: u64,
    /// Write transactions committed.
    pub batches: u64,
    /// Offers refused because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Rows in those refused offers.
    pub dropped_rows: u64,
    /// Rows whose `masked_pan` looked like a full card number: stored with NULL instead.
    pub rejected_pan: u64,
    /// Merchant rows upserted.
    pub merchants_written: u64,
    /// Network rows upserted.
    pub networks_written: u64,
    /// Time the last batch took, from BEGIN to COMMIT, microseconds.
    pub last_batch_micros: u64,
    /// Time the writer spent in batches since the store was opened, microseconds: against wall
    /// time, how busy the writer is; against `rows_written`, its capacity in rows/s.
    pub write_micros: u64,
}

/// The live counters behind [`StoreStats`].
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub rows_written: AtomicU64,
    pub rows_stale: AtomicU64,
    pub rows_failed: AtomicU64,
    pub batches: AtomicU64,
    pub dropped: AtomicU64,
    pub dropped_rows: AtomicU64,
    pub rejected_pan: AtomicU64,
    pub merchants_written: AtomicU64,
    pub networks_written: AtomicU64,
    pub last_batch_micros: AtomicU64,
    pub write_micros: AtomicU64,
}

impl Counters {
    /// Adds `n` to `counter`.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> StoreStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StoreStats {
            rows_written: get(&self.rows_written),
            rows_stale: get(&self.rows_stale),
            rows_failed: get(&self.rows_failed),
            batches: get(&self.batches),
            dropped: get(&self.dropped),
            dropped_rows: get(&self.dropped_rows),
            rejected_pan: get(&self.rejected_pan),
            merchants_written: get(&self.merchants_written),
            networks_written: get(&self.networks_written),
            last_batch_micros: get(&self.last_batch_micros),
            write_micros: get(&self.write_micros),
        }
    }
}
