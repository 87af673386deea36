//! What a run counts: per-connection figures merged at the end, the per-second time series
//! (bounded: [`SERIES_POINTS_MAX`] points, coarsened as the run grows) and the live counters
//! the progress bar reads.
//!
//! Each connection owns its [`ConnStats`] and touches shared state only once per second of run
//! time (its slice of the series) and once per read batch (the live counters).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::{Mismatch, Pending, ProtocolFault};
use crate::config::SERIES_POINTS_MAX;
use crate::mix::TxnType;

/// Highest latency a histogram records, microseconds (one hour); longer ones count as this.
pub const LATENCY_MAX_US: u64 = 3_600_000_000;
/// Significant digits of the run-wide latency histograms (0.1% resolution).
const LATENCY_SIGNIFICANT_DIGITS: u8 = 3;
/// Significant digits of the per-interval histograms of the series (1% resolution).
const SERIES_SIGNIFICANT_DIGITS: u8 = 2;
const MICROS_PER_SECOND: u64 = 1_000_000;

/// A latency histogram in microseconds.
pub type LatencyHistogram = Histogram<u64>;

/// An empty latency histogram with `digits` significant digits.
#[allow(clippy::expect_used)]
fn histogram(digits: u8) -> LatencyHistogram {
    // The bounds are constants that hdrhistogram accepts: failing here is a programmer error.
    Histogram::new_with_bounds(1, LATENCY_MAX_US, digits).expect("valid histogram bounds")
}

/// Latency percentiles, microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Values recorded.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// 99.9th percentile.
    pub p999_us: u64,
    /// Largest.
    pub max_us: u64,
}

impl Percentiles {
    /// The percentiles of `histogram` (all zero when it is empty).
    pub fn of(histogram: &LatencyHistogram) -> Percentiles {
        if histogram.is_empty() {
            return Percentiles::default();
        }
        Percentiles {
            count: histogram.len(),
            mean_us: histogram.mean(),
            p50_us: histogram.value_at_quantile(0.50),
            p90_us: histogram.value_at_quantile(0.90),
            p99_us: histogram.value_at_quantile(0.99),
            p999_us: histogram.value_at_quantile(0.999),
            max_us: histogram.max(),
        }
    }
}

/// One interval of the time series, as it goes into the report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the interval, seconds from the run's start.
    pub start_s: f64,
    /// Length of the interval covered by the run, seconds (the last one is usually partial).
    pub seconds: f64,
    /// Answers received in the interval (warm-up included).
    pub answers: u64,
    /// Answers per second over the interval.
    pub tps: f64,
    /// Mismatches and protocol faults in the interval.
    pub errors: u64,
    /// Latency percentiles of the interval's answers.
    pub latency: Percentiles,
}

#[derive(Debug)]
struct Bucket {
    answers: u64,
    errors: u64,
    latency: LatencyHistogram,
}

impl Bucket {
    fn new() -> Bucket {
        Bucket {
            answers: 0,
            errors: 0,
            latency: histogram(SERIES_SIGNIFICANT_DIGITS),
        }
    }
}

/// The run's time series. Intervals start one second wide; when the series would pass
/// [`SERIES_POINTS_MAX`] points, neighbours are merged and the width doubles.
#[derive(Debug)]
pub struct Series {
    width_s: u64,
    buckets: Vec<Bucket>,
}

impl Default for Series {
    fn default() -> Self {
        Series {
            width_s: 1,
            buckets: Vec::new(),
        }
    }
}

impl Series {
    /// Adds one connection's figures for second `second` of the run.
    fn add(&mut self, second: u64, answers: u64, errors: u64, latency: &LatencyHistogram) {
        let mut index = second / self.width_s;
        while index >= SERIES_POINTS_MAX as u64 {
            self.coarsen();
            index = second / self.width_s;
        }
        let index = index as usize;
        while self.buckets.len() <= index {
            self.buckets.push(Bucket::new());
        }
        if let Some(bucket) = self.buckets.get_mut(index) {
            bucket.answers += answers;
            bucket.errors += errors;
            // Both histograms have the same bounds, so adding cannot fail.
            let _ = bucket.latency.add(latency);
        }
    }

    /// Merges neighbouring intervals, doubling the width.
    fn coarsen(&mut self) {
        let old = std::mem::take(&mut self.buckets);
        let mut iter = old.into_iter();
        while let Some(mut first) = iter.next() {
            if let Some(second) = iter.next() {
                first.answers += second.answers;
                first.errors += second.errors;
                let _ = first.latency.add(&second.latency);
            }
            self.buckets.push(first);
        }
        self.width_s *= 2;
    }

    /// Width of an interval, seconds.
    pub fn width_s(&self) -> u64 {
        self.width_s
    }

    /// The points of the report; the last interval's rate counts only up to `end_us`.
    pub fn points(&self, end_us: u64) -> Vec<SeriesPoint> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, bucket)| {
                let start_us = i as u64 * self.width_s * MICROS_PER_SECOND;
                let full_us = self.width_s * MICROS_PER_SECOND;
                let span_us = end_us.saturating_sub(start_us).clamp(1, full_us);
                SeriesPoint {
                    start_s: start_us as f64 / MICROS_PER_SECOND as f64,
                    seconds: span_us as f64 / MICROS_PER_SECOND as f64,
                    answers: bucket.answers,
                    tps: bucket.answers as f64 * MICROS_PER_SECOND as f64 / span_us as f64,
                    errors: bucket.errors,
                    latency: Percentiles::of(&bucket.latency),
                }
            })
            .collect()
    }
}

/// The series shared by a run's connections.
pub type SharedSeries = Arc<Mutex<Series>>;

/// Counters the progress bar reads while the run goes.
#[derive(Debug, Default)]
pub struct Live {
    /// Requests sent.
    pub sent: AtomicU64,
    /// Answers received.
    pub answered: AtomicU64,
    /// Mismatches and protocol faults.
    pub errors: AtomicU64,
}

impl Live {
    /// Adds a batch of figures.
    pub fn add(&self, sent: u64, answered: u64, errors: u64) {
        // Relaxed: progress display only, nothing is ordered by these.
        self.sent.fetch_add(sent, Ordering::Relaxed);
        self.answered.fetch_add(answered, Ordering::Relaxed);
        self.errors.fetch_add(errors, Ordering::Relaxed);
    }
}

/// Figures of one connection (and, merged, of the run).
#[derive(Debug)]
pub struct ConnStats {
    /// Requests sent, warm-up included.
    pub sent: u64,
    /// Bytes of the request frames sent (header included).
    pub request_bytes: u64,
    /// Answers matched to a request (answered, mismatched or rejected), warm-up included.
    pub answered: u64,
    /// Requests still outstanding at the end.
    pub unanswered: u64,
    /// Measured (post-warm-up) requests sent, per type.
    pub measured_sent: [u64; 6],
    /// Measured requests the mix wanted as another type but the pool could not serve yet.
    pub substituted: [u64; 6],
    /// Measured answers per type and result code.
    pub codes: BTreeMap<(TxnType, u16), u64>,
    /// Mismatches by kind, warm-up included.
    pub mismatches: BTreeMap<Mismatch, u64>,
    /// Protocol faults by kind, warm-up included.
    pub faults: BTreeMap<ProtocolFault, u64>,
    /// Latency of measured answers from the intended send time, microseconds.
    pub latency: LatencyHistogram,
    /// Latency of measured answers from the actual send time, microseconds.
    pub service: LatencyHistogram,
    /// First and last measured answer, microseconds from the run's start.
    pub measured_window_us: Option<(u64, u64)>,
    /// Second of the run the interval figures below belong to.
    interval_second: u64,
    interval_answers: u64,
    interval_errors: u64,
    interval_latency: LatencyHistogram,
}

impl Default for ConnStats {
    fn default() -> Self {
        ConnStats {
            sent: 0,
            request_bytes: 0,
            answered: 0,
            unanswered: 0,
            measured_sent: [0; 6],
            substituted: [0; 6],
            codes: BTreeMap::new(),
            mismatches: BTreeMap::new(),
            faults: BTreeMap::new(),
            latency: histogram(LATENCY_SIGNIFICANT_DIGITS),
            service: histogram(LATENCY_SIGNIFICANT_DIGITS),
            measured_window_us: None,
            interval_second: 0,
            interval_answers: 0,
            interval_errors: 0,
            interval_latency: histogram(SERIES_SIGNIFICANT_DIGITS),
        }
    }
}

impl ConnStats {
    /// A request was sent.
    pub fn sent(&mut self, txn_type: TxnType, measured: bool, substituted: bool, bytes: usize) {
        self.sent += 1;
        self.request_bytes += bytes as u64;
        if measured {
            if let Some(n) = self.measured_sent.get_mut(txn_type.index()) {
                *n += 1;
            }
            if substituted && let Some(n) = self.substituted.get_mut(txn_type.index()) {
                *n += 1;
            }
        }
    }

    /// A request got a matching answer with `code` at `now_us`.
    pub fn answered(&mut self, pending: &Pending, code: u16, now_us: u64, series: &SharedSeries) {
        self.answered += 1;
        let latency_us = now_us.saturating_sub(pending.intended_us).max(1);
        self.tick(now_us, series);
        self.interval_answers += 1;
        self.interval_latency.saturating_record(latency_us);
        if !pending.measured {
            return;
        }
        *self.codes.entry((pending.txn_type, code)).or_insert(0) += 1;
        self.latency.saturating_record(latency_us);
        self.service
            .saturating_record(now_us.saturating_sub(pending.sent_us).max(1));
        self.measured_window_us = Some(match self.measured_window_us {
            Some((first, last)) => (first.min(now_us), last.max(now_us)),
            None => (now_us, now_us),
        });
    }

    /// An answer contradicted its request (`matched`: it named an outstanding request).
    pub fn mismatch(
        &mut self,
        mismatch: Mismatch,
        matched: bool,
        now_us: u64,
        series: &SharedSeries,
    ) {
        *self.mismatches.entry(mismatch).or_insert(0) += 1;
        self.error(matched, now_us, series);
    }

    /// A protocol fault (`matched`: it concerned an outstanding request).
    pub fn fault(
        &mut self,
        fault: ProtocolFault,
        matched: bool,
        now_us: u64,
        series: &SharedSeries,
    ) {
        *self.faults.entry(fault).or_insert(0) += 1;
        self.error(matched, now_us, series);
    }

    fn error(&mut self, matched: bool, now_us: u64, series: &SharedSeries) {
        if matched {
            self.answered += 1;
        }
        self.tick(now_us, series);
        self.interval_errors += 1;
    }

    /// Moves the interval on to the second of `now_us`, handing the finished one to the series.
    fn tick(&mut self, now_us: u64, series: &SharedSeries) {
        let second = now_us / MICROS_PER_SECOND;
        if second != self.interval_second {
            self.flush(series);
            self.interval_second = second;
        }
    }

    /// Hands the current interval to the series (at the end of the run, or when a second ends).
    pub fn flush(&mut self, series: &SharedSeries) {
        if self.interval_answers == 0 && self.interval_errors == 0 {
            return;
        }
        if let Ok(mut series) = series.lock() {
            series.add(
                self.interval_second,
                self.interval_answers,
                self.interval_errors,
                &self.interval_latency,
            );
        }
        self.interval_answers = 0;
        self.interval_errors = 0;
        self.interval_latency.reset();
    }

    /// Total mismatches.
    pub fn mismatch_total(&self) -> u64 {
        self.mismatches.values().sum()
    }

    /// Total protocol faults.
    pub fn fault_total(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Adds another connection's figures (its interval must have been flushed).
    pub fn merge(&mut self, other: &ConnStats) {
        self.sent += other.sent;
        self.request_bytes += other.request_bytes;
        self.answered += other.answered;
        self.unanswered += other.unanswered;
        for (mine, theirs) in self.measured_sent.iter_mut().zip(other.measured_sent) {
            *mine += theirs;
        }
        for (mine, theirs) in self.substituted.iter_mut().zip(other.substituted) {
            *mine += theirs;
        }
        for (key, n) in &other.codes {
            *self.codes.entry(*key).or_insert(0) += n;
        }
        for (key, n) in &other.mismatches {
            *self.mismatches.entry(*key).or_insert(0) += n;
        }
        for (key, n) in &other.faults {
            *self.faults.entry(*key).or_insert(0) += n;
        }
        let _ = self.latency.add(&other.latency);
        let _ = self.service.add(&other.service);
        self.measured_window_us = match (self.measured_window_us, other.measured_window_us) {
            (Some((a, b)), Some((c, d))) => Some((a.min(c), b.max(d))),
            (mine, theirs) => mine.or(theirs),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn pending(intended_us: u64, measured: bool) -> Pending {
        Pending {
            txn_type: TxnType::Sale,
            msg_type: 0x11,
            order: crate::workload::OrderKey::default(),
            order_id: Bytes::new(),
            amount: None,
            body_len: 0,
            intended_us,
            sent_us: intended_us + 100,
            measured,
        }
    }

    #[test]
    fn series_coarsens_instead_of_growing() {
        let mut series = Series::default();
        let one = {
            let mut h = histogram(2);
            h.record(10).unwrap();
            h
        };
        for second in 0..(SERIES_POINTS_MAX as u64 * 3) {
            series.add(second, 10, 0, &one);
        }
        assert!(series.buckets.len() <= SERIES_POINTS_MAX);
        assert_eq!(series.width_s(), 4);
        let total: u64 = series.points(u64::MAX).iter().map(|p| p.answers).sum();
        assert_eq!(total, SERIES_POINTS_MAX as u64 * 30);
        let first = series.points(u64::MAX)[0];
        assert_eq!(first.tps, 10.0);
        assert_eq!(first.latency.count, 4);
    }

    #[test]
    fn warmup_answers_go_to_the_series_only() {
        let series = SharedSeries::default();
        let mut stats = ConnStats::default();
        stats.answered(&pending(0, false), 0, 500, &series);
        stats.answered(&pending(1_000_000, true), 1001, 1_002_000, &series);
        stats.mismatch(Mismatch::Amount, true, 2_500_000, &series);
        stats.flush(&series);
        assert_eq!(stats.answered, 3);
        assert_eq!(stats.latency.len(), 1);
        assert_eq!(stats.latency.max(), 2000);
        assert_eq!(stats.service.max(), 1900);
        assert_eq!(stats.codes.get(&(TxnType::Sale, 1001)), Some(&1));
        assert_eq!(stats.measured_window_us, Some((1_002_000, 1_002_000)));
        let points = series.lock().unwrap().points(3_000_000);
        assert_eq!(
            points.iter().map(|p| p.answers).collect::<Vec<_>>(),
            vec![1, 1, 0]
        );
        assert_eq!(points[2].errors, 1);
        let mut total = ConnStats::default();
        total.merge(&stats);
        total.merge(&stats);
        assert_eq!(total.mismatch_total(), 2);
        assert_eq!(total.latency.len(), 2);
    }
}
