//! The Prometheus text exposition (format 0.0.4) of the router's counters: a pure function from the
//! metric sources to text, with no I/O and no clock, so it is tested by parsing its output.
//!
//! Every family gets `# HELP` and `# TYPE` lines and its samples together; counters end in
//! `_total`; histograms have cumulative `_bucket{le=...}` series ending in `le="+Inf"` (equal to
//! `_count`), `_sum` and `_count`, latencies in seconds. Only names and counts are rendered: no
//! address, credential or card data is among the sources.

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use paymesh_actors::metrics::{
    BreakerState, HostMetrics, LATENCY_BUCKETS_US, LinkMetrics, LinkState, Metrics,
};
use paymesh_codecs::message::TxnKind;
use paymesh_journal::{BATCH_HISTOGRAM_BUCKETS, FSYNC_LATENCY_BUCKETS_US, JournalStats};

/// The journal as the renderer sees it: a copy of its counters and its queue depth.
#[derive(Debug, Clone, Copy)]
pub struct JournalView {
    /// The writer's counters.
    pub stats: JournalStats,
    /// Submissions waiting for the writer ([`paymesh_journal::JournalHandle::queued`]).
    pub queued: usize,
}

/// What a scrape renders.
#[derive(Debug, Clone, Copy)]
pub struct Sources<'a> {
    /// The mesh's counters.
    pub metrics: &'a Metrics,
    /// One entry per upstream host.
    pub hosts: &'a [Arc<HostMetrics>],
    /// The journal, when one is configured.
    pub journal: Option<JournalView>,
}

/// Prometheus metric types used here.
#[derive(Debug, Clone, Copy)]
enum Type {
    Counter,
    Gauge,
    Histogram,
}

impl Type {
    fn name(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
        }
    }
}

/// Writes every metric of `sources` to `out`.
pub fn render(sources: &Sources<'_>, out: &mut String) {
    render_router(sources.metrics, out);
    render_connections(sources.metrics, out);
    render_pool_totals(sources.metrics, out);
    if let Some(journal) = &sources.journal {
        render_journal(journal, out);
    }
    render_links(sources.hosts, out);
    render_hosts(sources.hosts, out);
}

fn render_router(m: &Metrics, out: &mut String) {
    use Type::{Counter, Gauge};
    scalar(
        out,
        "paymesh_connections",
        Gauge,
        "Open client connections.",
        m.connections.get(),
    );
    scalar(
        out,
        "paymesh_sessions",
        Gauge,
        "Logged-in client sessions.",
        m.sessions.get(),
    );
    scalar(
        out,
        "paymesh_failed_closed",
        Gauge,
        "1 once the journal failed and the shards failed closed: transactions are refused INTERNAL_ERROR until a restart.",
        m.journal_failed.get(),
    );
    scalar(
        out,
        "paymesh_settings_version",
        Gauge,
        "Version of the merchants and grants the shards run (journaled; a reload makes the next).",
        m.settings_version.get(),
    );
    let name = "paymesh_requests_total";
    header(
        out,
        name,
        Counter,
        "Transaction requests accepted into the mesh, by type.",
    );
    for kind in TxnKind::ALL {
        let label = kind.name().to_ascii_lowercase();
        sample(out, name, &[("kind", &label)], m.requests_of_kind(kind));
    }
    let help = "Transaction answers written to clients.";
    scalar(out, "paymesh_answers_total", Counter, help, m.answers.get());
    let name = "paymesh_busy_total";
    let help =
        "Requests answered BUSY, by cause: session window, shard mailbox, pool mailbox full.";
    header(out, name, Counter, help);
    let causes = [
        ("window", &m.busy_window),
        ("shard", &m.busy_shard),
        ("pool", &m.busy_pool),
    ];
    for (cause, c) in causes {
        sample(out, name, &[("cause", cause)], c.get());
    }
    let help = "Frames rejected at the protocol level.";
    scalar(out, "paymesh_rejects_total", Counter, help, m.rejects.get());
    let help = "Answer batches the query store's full queue dropped (the journal has them).";
    scalar(
        out,
        "paymesh_store_dropped_total",
        Counter,
        help,
        m.store_dropped.get(),
    );
    let name = "paymesh_shard_mailbox_messages";
    header(
        out,
        name,
        Gauge,
        "Messages queued to each shard's mailbox, not yet handled.",
    );
    for (shard, g) in m.shard_queued.iter().enumerate() {
        sample(out, name, &[("shard", &shard.to_string())], g.get());
    }
    for (name, help, gauges) in [
        (
            "paymesh_shard_orders",
            "Orders in each shard's in-memory window (at most orders_per_shard_max).",
            &m.shard_orders,
        ),
        (
            "paymesh_shard_evicted_keys",
            "Keys of orders evicted from each shard's window it still remembers.",
            &m.shard_evicted_keys,
        ),
    ] {
        header(out, name, Gauge, help);
        for (shard, g) in gauges.iter().enumerate() {
            sample(out, name, &[("shard", &shard.to_string())], g.get());
        }
    }
}

/// Connection slots, TLS handshakes, LOGIN checks and throttling, writer stalls.
fn render_connections(m: &Metrics, out: &mut String) {
    use Type::{Counter, Gauge};
    for (name, kind, help, value) in [
        (
            "paymesh_connections_refused_total",
            Counter,
            "Connections closed at accept: every max_connections slot was taken.",
            m.connections_refused.get(),
        ),
        (
            "paymesh_tls_handshakes",
            Gauge,
            "TLS handshakes in progress.",
            m.tls_handshakes.get(),
        ),
        (
            "paymesh_login_failures_total",
            Counter,
            "LOGINs refused for a wrong network id, credential or client certificate.",
            m.login_failures.get(),
        ),
        (
            "paymesh_login_lockouts_total",
            Counter,
            "Source addresses locked out after too many failed LOGINs.",
            m.login_lockouts.get(),
        ),
        (
            "paymesh_login_checks_queued",
            Gauge,
            "Credential checks waiting for a login thread.",
            m.login_checks_queued.get(),
        ),
        (
            "paymesh_login_tracked_addresses",
            Gauge,
            "Source addresses with recent failed LOGINs being tracked.",
            m.login_tracked_addresses.get(),
        ),
        (
            "paymesh_write_stalls_total",
            Counter,
            "Connections dropped because the client did not read for write_stall_ms_max.",
            m.write_stalls.get(),
        ),
    ] {
        scalar(out, name, kind, help, value);
    }
    let name = "paymesh_tls_handshake_failures_total";
    let help = "TLS handshakes that failed, by cause: error (protocol, certificate), timeout.";
    header(out, name, Counter, help);
    let causes = [
        ("error", &m.tls_handshake_errors),
        ("timeout", &m.tls_handshake_timeouts),
    ];
    for (cause, c) in causes {
        sample(out, name, &[("cause", cause)], c.get());
    }
    let name = "paymesh_login_refused_total";
    let help = "LOGINs refused without a credential check, or connections closed before LOGIN, \
                by cause: locked_out, busy (check queue full or delay past the deadline), \
                deadline (not logged in by login_deadline_ms).";
    header(out, name, Counter, help);
    let causes = [
        ("locked_out", &m.login_locked_refusals),
        ("busy", &m.login_busy),
        ("deadline", &m.login_deadline_closes),
    ];
    for (cause, c) in causes {
        sample(out, name, &[("cause", cause)], c.get());
    }
}

/// The pools' counters summed over hosts (the per-host ones are in [`render_hosts`]).
fn render_pool_totals(m: &Metrics, out: &mut String) {
    use Type::{Counter, Gauge};
    for (name, kind, help, value) in [
        (
            "paymesh_pool_links_up",
            Gauge,
            "Upstream links connected, all hosts.",
            m.upstream_links_up.get(),
        ),
        (
            "paymesh_pool_sent_total",
            Counter,
            "Upstream requests sent, all hosts.",
            m.upstream_sent.get(),
        ),
        (
            "paymesh_pool_answered_total",
            Counter,
            "Upstream answers matched, all hosts.",
            m.upstream_answered.get(),
        ),
        (
            "paymesh_pool_timeouts_total",
            Counter,
            "Upstream requests timed out, all hosts.",
            m.upstream_timeouts.get(),
        ),
        (
            "paymesh_pool_unmatched_total",
            Counter,
            "Upstream answers matching no request, all hosts.",
            m.upstream_unmatched.get(),
        ),
    ] {
        scalar(out, name, kind, help, value);
    }
}

fn render_journal(j: &JournalView, out: &mut String) {
    use Type::{Counter, Gauge};
    let s = &j.stats;
    for (name, kind, help, value) in [
        (
            "paymesh_journal_records_total",
            Counter,
            "Journal records made durable.",
            s.records,
        ),
        (
            "paymesh_journal_submissions_total",
            Counter,
            "Journal submissions completed.",
            s.submissions,
        ),
        (
            "paymesh_journal_batches_total",
            Counter,
            "Journal group commits (one write each).",
            s.batches,
        ),
        (
            "paymesh_journal_bytes_total",
            Counter,
            "Encoded bytes written to journal segments.",
            s.bytes,
        ),
        (
            "paymesh_journal_fsyncs_total",
            Counter,
            "fdatasync calls on journal segments.",
            s.fsyncs,
        ),
        (
            "paymesh_journal_busy_total",
            Counter,
            "Journal submissions refused: queue full.",
            s.busy,
        ),
        (
            "paymesh_journal_checkpoints_total",
            Counter,
            "Journal checkpoints written.",
            s.checkpoints,
        ),
        (
            "paymesh_journal_queue_submissions",
            Gauge,
            "Submissions waiting for the journal writer.",
            j.queued as u64,
        ),
    ] {
        scalar(out, name, kind, help, value);
    }
    render_journal_histograms(s, out);
}

fn render_journal_histograms(s: &JournalStats, out: &mut String) {
    // Bucket i holds batches of 2^i ..= 2^(i+1) - 1 records; the last one everything above.
    let batch_bounds: Vec<String> = (1..BATCH_HISTOGRAM_BUCKETS)
        .map(|i| ((1_u64 << i) - 1).to_string())
        .collect();
    let batches = Series {
        labels: &[],
        bounds: &batch_bounds,
        counts: &s.batch_records_histogram,
        sum: s.records.to_string(),
    };
    let help = "Records per journal group commit.";
    histogram(out, "paymesh_journal_batch_records", help, &[batches]);
    let fsync_bounds: Vec<String> = FSYNC_LATENCY_BUCKETS_US
        .iter()
        .map(|us| seconds(*us))
        .collect();
    let fsyncs = Series {
        labels: &[],
        bounds: &fsync_bounds,
        counts: &s.fsync_micros_histogram,
        sum: seconds(s.fsync_micros_sum),
    };
    let help = "Duration of each fdatasync of a journal segment.";
    histogram(out, "paymesh_journal_fsync_seconds", help, &[fsyncs]);
    let name = "paymesh_journal_fsync_max_seconds";
    header(
        out,
        name,
        Type::Gauge,
        "Longest fdatasync of a journal segment since start.",
    );
    sample(out, name, &[], seconds(s.fsync_micros_max));
}

/// One value of a link.
type LinkValue = fn(&LinkMetrics) -> u64;

fn render_links(hosts: &[Arc<HostMetrics>], out: &mut String) {
    let name = "paymesh_upstream_link_state";
    header(
        out,
        name,
        Type::Gauge,
        "Upstream link state: 1 for the current state, else 0.",
    );
    for h in hosts {
        for (link, l) in h.links.iter().enumerate() {
            let current = LinkState::from_u8(l.state.load(Ordering::Relaxed));
            let link = link.to_string();
            for state in LinkState::ALL {
                let labels = [
                    ("host", h.name.as_str()),
                    ("link", &link),
                    ("state", state.name()),
                ];
                sample(out, name, &labels, u64::from(state == current));
            }
        }
    }
    let per_link: [(&str, Type, &str, LinkValue); 3] = [
        (
            "paymesh_upstream_link_inflight",
            Type::Gauge,
            "Requests in flight on each upstream link.",
            |l| l.inflight.get(),
        ),
        (
            "paymesh_upstream_link_requests_total",
            Type::Counter,
            "Messages sent on each upstream link.",
            |l| l.requests.get(),
        ),
        (
            "paymesh_upstream_link_connects_total",
            Type::Counter,
            "Times each upstream link connected.",
            |l| l.connects.get(),
        ),
    ];
    for (name, kind, help, get) in per_link {
        header(out, name, kind, help);
        for h in hosts {
            for (link, l) in h.links.iter().enumerate() {
                let link = link.to_string();
                sample(
                    out,
                    name,
                    &[("host", h.name.as_str()), ("link", &link)],
                    get(l),
                );
            }
        }
    }
}

/// One value of a host.
type HostValue = fn(&HostMetrics) -> u64;

/// Per-host gauges and counters: name, type, help, value.
const PER_HOST: [(&str, Type, &str, HostValue); 10] = [
    (
        "paymesh_upstream_inflight",
        Type::Gauge,
        "Requests in flight to each host.",
        |h| h.inflight.get(),
    ),
    (
        "paymesh_upstream_requests_total",
        Type::Counter,
        "Transaction requests sent to each host.",
        |h| h.requests.get(),
    ),
    (
        "paymesh_upstream_approvals_total",
        Type::Counter,
        "Host answers mapped to APPROVED.",
        |h| h.approvals.get(),
    ),
    (
        "paymesh_upstream_declines_total",
        Type::Counter,
        "Host answers mapped to anything else.",
        |h| h.declines.get(),
    ),
    (
        "paymesh_upstream_timeouts_total",
        Type::Counter,
        "Requests with no host answer in time.",
        |h| h.timeouts.get(),
    ),
    (
        "paymesh_upstream_refused_total",
        Type::Counter,
        "Requests refused before sending.",
        |h| h.refused.get(),
    ),
    (
        "paymesh_upstream_unmatched_total",
        Type::Counter,
        "Host answers that matched no request.",
        |h| h.unmatched.get(),
    ),
    (
        "paymesh_upstream_reversals_pending",
        Type::Gauge,
        "Reversals not yet acknowledged.",
        |h| h.reversals_pending.get(),
    ),
    (
        "paymesh_upstream_reversals_sent_total",
        Type::Counter,
        "Reversal messages sent (0400, 0401).",
        |h| h.reversals_sent.get(),
    ),
    (
        "paymesh_upstream_reversals_acknowledged_total",
        Type::Counter,
        "Reversals the host acknowledged.",
        |h| h.reversals_acknowledged.get(),
    ),
];

fn render_hosts(hosts: &[Arc<HostMetrics>], out: &mut String) {
    use Type::Gauge;
    let name = "paymesh_upstream_breaker_state";
    header(
        out,
        name,
        Gauge,
        "Circuit breaker of each host: 1 for the current state, else 0.",
    );
    for h in hosts {
        let current = BreakerState::from_u8(h.breaker.load(Ordering::Relaxed));
        for state in BreakerState::ALL {
            let labels = [("host", h.name.as_str()), ("state", state.name())];
            sample(out, name, &labels, u64::from(state == current));
        }
    }
    for (name, kind, help, get) in PER_HOST {
        header(out, name, kind, help);
        for h in hosts {
            sample(out, name, &[("host", h.name.as_str())], get(h));
        }
    }
    render_latency(hosts, out);
}

fn render_latency(hosts: &[Arc<HostMetrics>], out: &mut String) {
    let bounds: Vec<String> = LATENCY_BUCKETS_US.iter().map(|us| seconds(*us)).collect();
    let labels: Vec<[(&str, &str); 1]> =
        hosts.iter().map(|h| [("host", h.name.as_str())]).collect();
    let counts: Vec<_> = hosts.iter().map(|h| h.latency.buckets()).collect();
    let series: Vec<Series<'_>> = hosts
        .iter()
        .zip(&labels)
        .zip(&counts)
        .map(|((h, labels), counts)| Series {
            labels,
            bounds: &bounds,
            counts,
            sum: seconds(h.latency.sum_us()),
        })
        .collect();
    let help = "Request to answer latency of answered requests, per host.";
    histogram(out, "paymesh_upstream_latency_seconds", help, &series);
}

/// A family with one unlabelled sample.
fn scalar(out: &mut String, name: &str, kind: Type, help: &str, value: u64) {
    header(out, name, kind, help);
    sample(out, name, &[], value);
}

/// One labelled series of a histogram.
struct Series<'a> {
    labels: &'a [(&'a str, &'a str)],
    /// The `le` values of every bucket but the last, ascending.
    bounds: &'a [String],
    /// Per-bucket counts, not cumulative: one more than `bounds`, the last counting the rest.
    counts: &'a [u64],
    /// Sum of the observations, already formatted.
    sum: String,
}

fn histogram(out: &mut String, name: &str, help: &str, series: &[Series<'_>]) {
    header(out, name, Type::Histogram, help);
    let (bucket, sum, count) = (
        format!("{name}_bucket"),
        format!("{name}_sum"),
        format!("{name}_count"),
    );
    for s in series {
        debug_assert_eq!(s.bounds.len() + 1, s.counts.len());
        let mut cumulative = 0_u64;
        for (bound, n) in s.bounds.iter().zip(s.counts) {
            cumulative = cumulative.saturating_add(*n);
            sample_with(out, &bucket, s.labels, Some(("le", bound)), cumulative);
        }
        // The count is the sum of the buckets (not a separately read counter), so `+Inf` always
        // equals `_count` even when a scrape races an observation.
        let total = s.counts.iter().fold(0_u64, |a, n| a.saturating_add(*n));
        sample_with(out, &bucket, s.labels, Some(("le", "+Inf")), total);
        sample(out, &sum, s.labels, &s.sum);
        sample(out, &count, s.labels, total);
    }
}

fn header(out: &mut String, name: &str, kind: Type, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {}", kind.name());
}

fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    sample_with(out, name, labels, None, value);
}

fn sample_with(
    out: &mut String,
    name: &str,
    labels: &[(&str, &str)],
    extra: Option<(&str, &str)>,
    value: impl std::fmt::Display,
) {
    out.push_str(name);
    let mut first = true;
    for (key, text) in labels.iter().copied().chain(extra) {
        out.push(if first { '{' } else { ',' });
        first = false;
        out.push_str(key);
        out.push_str("=\"");
        escape_label_into(text, out);
        out.push('"');
    }
    if !first {
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

/// Label values escape backslash, double quote and line feed (format 0.0.4).
fn escape_label_into(value: &str, out: &mut String) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// HELP text escapes backslash and line feed.
fn escape_help(help: &str) -> String {
    help.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Microseconds as decimal seconds, exactly (no floating point): 250 -> "0.00025".
pub fn seconds(us: u64) -> String {
    let (whole, fraction) = (us / 1_000_000, us % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:06}");
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests;
