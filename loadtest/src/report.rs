//! [`Report`]: the result of a run, as a terminal summary, JSON and (via [`crate::html`]) HTML.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use paymesh_codecs::types::ResultCode;
use serde::Serialize;

use crate::config::{LoadConfig, Peer, Stop};
use crate::error::LoadError;
use crate::mix::TxnType;
use crate::stats::{ConnStats, LatencyHistogram, Percentiles, Series, SeriesPoint};

/// Ratio between neighbouring buckets of the latency distribution (four buckets per doubling).
const DISTRIBUTION_BUCKET_RATIO: f64 = 1.189_207_115;
const MICROS_PER_SECOND: f64 = 1_000_000.0;

/// How a run was set up, as far as the figures depend on it.
#[derive(Debug, Clone, Serialize)]
pub struct RunSetup {
    /// Address loaded (resolved).
    pub target: String,
    /// What it speaks.
    pub peer: Peer,
    /// Whether the connections used TLS.
    pub tls: bool,
    /// `closed` or `open`.
    pub mode: String,
    /// Open-loop rate, requests per second over all connections.
    pub rate_per_second: Option<u64>,
    /// Persistent connections.
    pub connections: usize,
    /// Requested pipelining depth per connection.
    pub depth: usize,
    /// Depth used: the requested one bounded by the server's window.
    pub effective_depth: usize,
    /// The window the server announced at login (smallest over connections).
    pub server_window: Option<u32>,
    /// Warm-up, seconds.
    pub warmup_s: f64,
    /// Sending time after the warm-up, for a duration run.
    pub duration_s: Option<f64>,
    /// Measured requests, for a count run.
    pub count: Option<u64>,
    /// Transaction mix.
    pub mix: String,
    /// Payment-method mix.
    pub methods: String,
    /// Merchants spread over.
    pub merchants: u32,
    /// Mean request frame size (header included), bytes.
    pub request_frame_bytes_mean: f64,
}

impl RunSetup {
    /// The setup of `config` against `target`; depth, window and frame size are filled in later.
    pub fn new(config: &LoadConfig, target: String) -> RunSetup {
        RunSetup {
            target,
            peer: config.peer,
            tls: config.tls.is_some(),
            mode: if config.rate.is_some() {
                "open"
            } else {
                "closed"
            }
            .to_owned(),
            rate_per_second: config.rate,
            connections: config.connections,
            depth: config.depth,
            effective_depth: config.depth,
            server_window: None,
            warmup_s: config.warmup.as_secs_f64(),
            duration_s: config.stop_duration().map(|d| d.as_secs_f64()),
            count: match config.stop {
                Stop::Count(count) => Some(count),
                Stop::Duration(_) => None,
            },
            mix: config.mix.to_string(),
            methods: config.methods.to_string(),
            merchants: config.merchants,
            request_frame_bytes_mean: 0.0,
        }
    }
}

/// Whole-run counts, warm-up included: every request sent is either answered or unanswered.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    /// Requests sent.
    pub sent: u64,
    /// Answers matched to a sent request and checked (including mismatched and rejected ones).
    pub answered: u64,
    /// Requests never answered (connection lost, or the drain timeout passed).
    pub unanswered: u64,
    /// Answers that contradict their request, or match none.
    pub mismatches: u64,
    /// REJECTs, undecodable answers, broken streams, connections lost.
    pub protocol_errors: u64,
}

/// Answers of one transaction type (measured part of the run).
#[derive(Debug, Clone, Serialize)]
pub struct TypeResult {
    /// The type.
    pub txn_type: TxnType,
    /// Requests sent.
    pub sent: u64,
    /// Requests of this type sent in place of a capture/cancel/refund/inquiry the pool could not
    /// serve yet.
    pub substituted: u64,
    /// Matching answers.
    pub answers: u64,
    /// Approved answers.
    pub approved: u64,
    /// Answers per result code (`"0 APPROVED"`).
    pub codes: BTreeMap<String, u64>,
}

/// Outcome classes of the measured answers (docs/PROTOCOL.md, "Result codes").
#[derive(Debug, Clone, Default, Serialize)]
pub struct Outcomes {
    /// 0.
    pub approved: u64,
    /// 1xxx: declined by the issuer.
    pub declined: u64,
    /// 2xxx: refused by PayMesh (request wrong or not allowed).
    pub refused: u64,
    /// 3001: BUSY, beyond the window or a queue.
    pub busy: u64,
    /// Other 3xxx: outcome unknown (timeouts, in doubt).
    pub unknown_outcome: u64,
    /// 4xxx and 9xxx inside a transaction answer.
    pub errors: u64,
}

/// One bucket of the latency distribution.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DistributionBucket {
    /// Upper bound of the bucket, microseconds.
    pub upper_us: u64,
    /// Answers in it.
    pub count: u64,
}

/// The result of a run. Figures under `measured`, `latency`, `by_type` leave the warm-up out;
/// `totals` and `series` include it.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Unique id of the run (the prefix of its order ids).
    pub run_id: String,
    /// Start, unix milliseconds.
    pub started_unix_ms: u64,
    /// The set-up.
    pub setup: RunSetup,
    /// Whole-run counts.
    pub totals: Totals,
    /// Mismatches by kind.
    pub mismatches: BTreeMap<String, u64>,
    /// Protocol errors by kind.
    pub protocol_errors: BTreeMap<String, u64>,
    /// Measured answers.
    pub measured_answers: u64,
    /// From the end of the warm-up to the last measured answer, seconds.
    pub measured_seconds: f64,
    /// Measured answers per second.
    pub tps: f64,
    /// Outcome classes of the measured answers.
    pub outcomes: Outcomes,
    /// Per transaction type.
    pub by_type: Vec<TypeResult>,
    /// Per result code (`"1002 INSUFFICIENT_FUNDS"`), all types.
    pub by_code: BTreeMap<String, u64>,
    /// What latency counts from: the intended send time (open loop) or the send time (closed).
    pub latency_from: String,
    /// Latency percentiles.
    pub latency: Percentiles,
    /// Latency from the actual send time (equals `latency` in closed loop).
    pub service_time: Percentiles,
    /// Width of a series interval, seconds.
    pub series_interval_s: u64,
    /// Throughput and latency over time (warm-up included).
    pub series: Vec<SeriesPoint>,
    /// Latency distribution of the measured answers.
    pub distribution: Vec<DistributionBucket>,
    /// The same load against the in-process echo server (`--echo-baseline`).
    pub baseline: Option<Box<Report>>,
    /// `tps / baseline.tps`.
    pub baseline_ratio: Option<f64>,
}

/// Label of a result code in reports: `"0 APPROVED"`.
pub fn code_label(code: u16) -> String {
    ResultCode::from_u16(code).to_string()
}

fn distribution(histogram: &LatencyHistogram) -> Vec<DistributionBucket> {
    if histogram.is_empty() {
        return Vec::new();
    }
    histogram
        .iter_log(1, DISTRIBUTION_BUCKET_RATIO)
        .map(|v| DistributionBucket {
            upper_us: v.value_iterated_to(),
            count: v.count_since_last_iteration(),
        })
        .skip_while(|b| b.count == 0)
        .collect()
}

impl Report {
    /// Builds the report from the merged figures of a run that ended at `end_us`.
    pub fn build(
        run_id: String,
        started_unix_ms: u64,
        setup: RunSetup,
        stats: &ConnStats,
        series: &Series,
        end_us: u64,
    ) -> Report {
        let mut outcomes = Outcomes::default();
        let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
        let mut by_type: Vec<TypeResult> = TxnType::ALL
            .iter()
            .map(|&txn_type| TypeResult {
                txn_type,
                sent: stats
                    .measured_sent
                    .get(txn_type.index())
                    .copied()
                    .unwrap_or(0),
                substituted: stats
                    .substituted
                    .get(txn_type.index())
                    .copied()
                    .unwrap_or(0),
                answers: 0,
                approved: 0,
                codes: BTreeMap::new(),
            })
            .collect();
        for (&(txn_type, code), &n) in &stats.codes {
            let class = match code {
                0 => &mut outcomes.approved,
                1000..=1999 => &mut outcomes.declined,
                2000..=2999 => &mut outcomes.refused,
                3001 => &mut outcomes.busy,
                3000..=3999 => &mut outcomes.unknown_outcome,
                _ => &mut outcomes.errors,
            };
            *class += n;
            *by_code.entry(code_label(code)).or_insert(0) += n;
            if let Some(row) = by_type.get_mut(txn_type.index()) {
                row.answers += n;
                if code == 0 {
                    row.approved += n;
                }
                *row.codes.entry(code_label(code)).or_insert(0) += n;
            }
        }
        let measured_answers: u64 = stats.codes.values().sum();
        let warmup_us = (setup.warmup_s * MICROS_PER_SECOND) as u64;
        let measured_seconds = match stats.measured_window_us {
            Some((_, last)) => last.saturating_sub(warmup_us) as f64 / MICROS_PER_SECOND,
            None => 0.0,
        };
        let tps = if measured_seconds > 0.0 {
            measured_answers as f64 / measured_seconds
        } else {
            0.0
        };
        Report {
            run_id,
            started_unix_ms,
            latency_from: if setup.rate_per_second.is_some() {
                "intended send time".to_owned()
            } else {
                "send time".to_owned()
            },
            setup,
            totals: Totals {
                sent: stats.sent,
                answered: stats.answered,
                unanswered: stats.unanswered,
                mismatches: stats.mismatch_total(),
                protocol_errors: stats.fault_total(),
            },
            mismatches: stats
                .mismatches
                .iter()
                .map(|(k, n)| (snake_name(k), *n))
                .collect(),
            protocol_errors: stats
                .faults
                .iter()
                .map(|(k, n)| (snake_name(k), *n))
                .collect(),
            measured_answers,
            measured_seconds,
            tps,
            outcomes,
            by_type,
            by_code,
            latency: Percentiles::of(&stats.latency),
            service_time: Percentiles::of(&stats.service),
            series_interval_s: series.width_s(),
            series: series.points(end_us),
            distribution: distribution(&stats.latency),
            baseline: None,
            baseline_ratio: None,
        }
    }

    /// Attaches the echo-baseline run and the ratio of the two throughputs.
    pub fn with_baseline(mut self, baseline: Report) -> Report {
        self.baseline_ratio = (baseline.tps > 0.0).then(|| self.tps / baseline.tps);
        self.baseline = Some(Box::new(baseline));
        self
    }

    /// The terminal summary.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let s = &self.setup;
        let t = &self.totals;
        let _ = writeln!(
            out,
            "PayMesh load run {} against {} ({:?}{}), {} loop{}, {} connections x depth {} (effective {})",
            self.run_id,
            s.target,
            s.peer,
            if s.tls { ", TLS" } else { "" },
            s.mode,
            s.rate_per_second
                .map(|r| format!(" at {r}/s"))
                .unwrap_or_default(),
            s.connections,
            s.depth,
            s.effective_depth,
        );
        let _ = writeln!(
            out,
            "  requests: sent {}  answered {}  unanswered {}  mismatches {}  protocol errors {}",
            t.sent, t.answered, t.unanswered, t.mismatches, t.protocol_errors
        );
        let _ = writeln!(
            out,
            "  measured: {} answers in {:.2} s = {:.0} TPS (warm-up {:.1} s excluded)",
            self.measured_answers, self.measured_seconds, self.tps, s.warmup_s
        );
        let o = &self.outcomes;
        let _ = writeln!(
            out,
            "  outcomes: approved {}  declined {}  refused {}  busy {}  unknown {}  errors {}",
            o.approved, o.declined, o.refused, o.busy, o.unknown_outcome, o.errors
        );
        for row in self.by_type.iter().filter(|r| r.sent > 0 || r.answers > 0) {
            let codes: Vec<String> = row.codes.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            let _ = writeln!(
                out,
                "  {:<9} sent {:>9}  answered {:>9}  [{}]{}",
                row.txn_type.name(),
                row.sent,
                row.answers,
                codes.join(", "),
                if row.substituted > 0 {
                    format!(" ({} in place of pool-less types)", row.substituted)
                } else {
                    String::new()
                }
            );
        }
        for (label, map) in [
            ("mismatches", &self.mismatches),
            ("protocol errors", &self.protocol_errors),
        ] {
            if !map.is_empty() {
                let items: Vec<String> = map.iter().map(|(k, n)| format!("{k}: {n}")).collect();
                let _ = writeln!(out, "  {label}: {}", items.join(", "));
            }
        }
        let l = &self.latency;
        let _ = writeln!(
            out,
            "  latency (from {}): p50 {}  p90 {}  p99 {}  p99.9 {}  max {}",
            self.latency_from,
            micros(l.p50_us),
            micros(l.p90_us),
            micros(l.p99_us),
            micros(l.p999_us),
            micros(l.max_us)
        );
        if let (Some(baseline), Some(ratio)) = (&self.baseline, self.baseline_ratio) {
            let _ = writeln!(
                out,
                "  echo baseline: {:.0} TPS, p99 {} over the same connections, depth and frame size: PayMesh is {:.1}% of it",
                baseline.tps,
                micros(baseline.latency.p99_us),
                ratio * 100.0
            );
        }
        out
    }

    /// Prints [`Report::summary`] to stdout.
    pub fn print_summary(&self) {
        print!("{}", self.summary());
    }

    /// Writes the report as pretty JSON.
    pub fn write_json(&self, path: &Path) -> Result<(), LoadError> {
        let text = serde_json::to_string_pretty(self).map_err(|e| LoadError::WriteReport {
            path: path.to_owned(),
            source: e.into(),
        })?;
        std::fs::write(path, text).map_err(|source| LoadError::WriteReport {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the self-contained HTML report.
    pub fn write_html(&self, path: &Path) -> Result<(), LoadError> {
        std::fs::write(path, crate::html::render(self)).map_err(|source| LoadError::WriteReport {
            path: path.to_owned(),
            source,
        })
    }
}

/// A duration in microseconds, in the unit that reads best.
pub fn micros(us: u64) -> String {
    match us {
        0..=999 => format!("{us} us"),
        1_000..=999_999 => format!("{:.2} ms", us as f64 / 1_000.0),
        _ => format!("{:.2} s", us as f64 / MICROS_PER_SECOND),
    }
}

/// The serde name of a unit enum variant (`order_id`), for report keys.
fn snake_name<T: Serialize>(value: &T) -> String {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Mismatch, Pending};
    use crate::stats::SharedSeries;
    use bytes::Bytes;

    #[test]
    fn report_counts_classes_and_labels() {
        let series = SharedSeries::default();
        let mut stats = ConnStats::default();
        let pending = |txn_type, measured| Pending {
            txn_type,
            msg_type: 0x10,
            order: crate::workload::OrderKey::default(),
            order_id: Bytes::new(),
            amount: None,
            body_len: 0,
            intended_us: 1_000_000,
            sent_us: 1_000_000,
            measured,
        };
        stats.sent(TxnType::Authorize, true, false, 100);
        stats.sent(TxnType::Authorize, true, true, 100);
        stats.answered(&pending(TxnType::Authorize, true), 0, 1_500_000, &series);
        stats.answered(&pending(TxnType::Authorize, true), 3001, 2_000_000, &series);
        stats.answered(&pending(TxnType::Refund, false), 0, 2_000_000, &series);
        stats.mismatch(Mismatch::OrderId, true, 2_000_000, &series);
        stats.flush(&series);
        let config = LoadConfig {
            warmup: std::time::Duration::from_secs(1),
            ..Default::default()
        };
        let setup = RunSetup::new(&config, "127.0.0.1:1".into());
        let series = series.lock().unwrap();
        let report = Report::build("r".into(), 0, setup, &stats, &series, 2_000_000);
        assert_eq!(report.measured_answers, 2);
        assert_eq!(report.measured_seconds, 1.0);
        assert_eq!(report.tps, 2.0);
        assert_eq!(report.outcomes.approved, 1);
        assert_eq!(report.outcomes.busy, 1);
        assert_eq!(report.by_code.get("3001 BUSY"), Some(&1));
        assert_eq!(report.by_type[0].substituted, 1);
        assert_eq!(report.mismatches.get("order_id"), Some(&1));
        let text = report.summary();
        assert!(text.contains("mismatches: order_id: 1"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["totals"]["mismatches"], 1);
        assert_eq!(json["by_type"][0]["txn_type"], "authorize");
    }
}
