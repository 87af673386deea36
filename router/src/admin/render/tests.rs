//! The renderer's output checked line by line against the exposition format.

use std::collections::{HashMap, HashSet};

use paymesh_actors::metrics::BreakerState;

use super::*;

/// A parsed sample line.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: Vec<(String, String)>,
    value: String,
}

impl Sample {
    fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses `name{k="v",...}` with the format's escapes; panics on anything malformed.
fn parse_sample(line: &str) -> Sample {
    let name_end = line.find(['{', ' ']).expect("a sample has a value");
    let name = &line[..name_end];
    assert!(
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
        "bad metric name in {line:?}"
    );
    let mut labels = Vec::new();
    let mut chars = line[name_end..].chars().peekable();
    if chars.peek() == Some(&'{') {
        chars.next();
        loop {
            let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
            assert!(
                !key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                "bad label name in {line:?}"
            );
            assert_eq!(
                chars.next(),
                Some('"'),
                "label value must be quoted: {line:?}"
            );
            let mut value = String::new();
            loop {
                match chars.next().expect("unterminated label value") {
                    '\\' => match chars.next() {
                        Some('\\') => value.push('\\'),
                        Some('"') => value.push('"'),
                        Some('n') => value.push('\n'),
                        other => panic!("bad escape {other:?} in {line:?}"),
                    },
                    '"' => break,
                    '\n' => panic!("raw line feed in a label value"),
                    c => value.push(c),
                }
            }
            labels.push((key, value));
            match chars.next() {
                Some(',') => continue,
                Some('}') => break,
                other => panic!("expected , or }} after a label, got {other:?} in {line:?}"),
            }
        }
    }
    assert_eq!(
        chars.next(),
        Some(' '),
        "one space before the value: {line:?}"
    );
    let value: String = chars.collect();
    assert!(
        value == "+Inf" || value.parse::<f64>().is_ok(),
        "bad value {value:?} in {line:?}"
    );
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

/// Checks `text` line by line against the exposition format and returns its samples.
fn parse(text: &str) -> Vec<Sample> {
    assert!(text.ends_with('\n'), "the last line ends with a line feed");
    let mut types: HashMap<String, String> = HashMap::new();
    let mut current: Option<String> = None;
    let mut samples = Vec::new();
    let mut series = HashSet::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        assert!(!line.is_empty(), "no blank lines");
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').expect("HELP has text");
            assert!(!help.is_empty());
            let type_line = lines.next().expect("TYPE follows HELP");
            let kind = type_line
                .strip_prefix(&format!("# TYPE {name} "))
                .unwrap_or_else(|| panic!("TYPE for {name} right after its HELP"));
            assert!(
                ["counter", "gauge", "histogram"].contains(&kind),
                "type {kind}"
            );
            if kind == "counter" {
                assert!(name.ends_with("_total"), "counter {name} ends in _total");
            } else {
                assert!(
                    !name.ends_with("_total"),
                    "{kind} {name} must not end in _total"
                );
            }
            assert!(
                types.insert(name.to_owned(), kind.to_owned()).is_none(),
                "family {name} declared twice (samples must be grouped)"
            );
            current = Some(name.to_owned());
            continue;
        }
        assert!(!line.starts_with('#'), "unexpected comment {line:?}");
        let s = parse_sample(line);
        let family = current.as_deref().expect("a sample before any HELP/TYPE");
        let kind = &types[family];
        if kind == "histogram" {
            let suffix = s
                .name
                .strip_prefix(family)
                .expect("sample of the current family");
            assert!(
                ["_bucket", "_sum", "_count"].contains(&suffix),
                "{} in histogram {family}",
                s.name
            );
            assert_eq!(
                suffix == "_bucket",
                s.label("le").is_some(),
                "le only on buckets"
            );
        } else {
            assert_eq!(s.name, family, "sample {} outside its family", s.name);
        }
        let mut key = s.labels.clone();
        key.sort();
        assert!(
            series.insert((s.name.clone(), key)),
            "duplicate series {line:?}"
        );
        samples.push(s);
    }
    check_histograms(&types, &samples);
    samples
}

/// Bucket samples of one histogram series, grouped by their labels other than `le`.
type BucketGroups<'a> = Vec<(Vec<(String, String)>, Vec<&'a Sample>)>;

/// Buckets are cumulative, ascending in `le`, end in +Inf, and +Inf equals `_count`.
fn check_histograms(types: &HashMap<String, String>, samples: &[Sample]) {
    for (family, _) in types.iter().filter(|(_, k)| *k == "histogram") {
        let bucket_name = format!("{family}_bucket");
        let mut groups: BucketGroups<'_> = Vec::new();
        for s in samples.iter().filter(|s| s.name == bucket_name) {
            let rest: Vec<_> = s
                .labels
                .iter()
                .filter(|(k, _)| k != "le")
                .cloned()
                .collect();
            match groups.iter_mut().find(|(l, _)| *l == rest) {
                Some((_, v)) => v.push(s),
                None => groups.push((rest, vec![s])),
            }
        }
        for (labels, buckets) in groups {
            let mut last_le = f64::NEG_INFINITY;
            let mut last_count = 0.0;
            for b in &buckets {
                let le = match b.label("le").unwrap() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse::<f64>().unwrap(),
                };
                let count: f64 = b.value.parse().unwrap();
                assert!(le > last_le, "{family}: le ascending");
                assert!(count >= last_count, "{family}: buckets cumulative");
                (last_le, last_count) = (le, count);
            }
            assert_eq!(last_le, f64::INFINITY, "{family}: ends with +Inf");
            let find = |suffix: &str| {
                samples
                    .iter()
                    .find(|s| s.name == format!("{family}{suffix}") && s.labels == labels)
                    .unwrap_or_else(|| panic!("{family}{suffix} for {labels:?}"))
            };
            assert_eq!(find("_count").value.parse::<f64>().unwrap(), last_count);
            assert!(find("_sum").value.parse::<f64>().unwrap() >= 0.0);
        }
    }
}

fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> String {
    samples
        .iter()
        .find(|s| s.name == name && labels.iter().all(|(k, v)| s.label(k) == Some(*v)))
        .unwrap_or_else(|| panic!("no {name} {labels:?}"))
        .value
        .clone()
}

fn full_sources() -> (Metrics, Vec<Arc<HostMetrics>>, JournalView) {
    let metrics = Metrics::new(2);
    metrics.connections.set(3);
    metrics.login_failures.add(11);
    metrics.login_deadline_closes.add(2);
    metrics.tls_handshake_timeouts.inc();
    for _ in 0..5 {
        metrics.request_accepted(TxnKind::Authorize);
    }
    metrics.request_accepted(TxnKind::BalanceInquiry);
    metrics.busy_shard.add(7);
    metrics.shard_enqueued(1);
    let van = HostMetrics::new("van", 2);
    van.set_link_state(0, LinkState::Up);
    van.set_link_state(1, LinkState::SigningOn);
    van.set_breaker(BreakerState::HalfOpen);
    van.requests.add(4);
    for us in [100, 300, 10_000_000] {
        van.latency.observe_us(us);
    }
    // A host name with every character the format escapes.
    let odd = HostMetrics::new("a\"b\\c\nd", 1);
    let mut stats = JournalStats {
        records: 20,
        batches: 3,
        fsyncs: 2,
        fsync_micros_sum: 1_500,
        fsync_micros_max: 1_200,
        ..JournalStats::default()
    };
    stats.batch_records_histogram[0] = 2;
    stats.batch_records_histogram[4] = 1;
    stats.fsync_micros_histogram[2] = 1;
    stats.fsync_micros_histogram[5] = 1;
    let journal = JournalView { stats, queued: 9 };
    (metrics, vec![Arc::new(van), Arc::new(odd)], journal)
}

#[test]
fn every_sample_is_in_a_declared_family_and_histograms_are_consistent() {
    let (metrics, hosts, journal) = full_sources();
    let mut out = String::new();
    render(
        &Sources {
            metrics: &metrics,
            hosts: &hosts,
            journal: Some(journal),
        },
        &mut out,
    );
    let samples = parse(&out);
    let v = |name: &str, labels: &[(&str, &str)]| value(&samples, name, labels);
    assert_eq!(v("paymesh_connections", &[]), "3");
    assert_eq!(v("paymesh_login_failures_total", &[]), "11");
    assert_eq!(
        v("paymesh_login_refused_total", &[("cause", "deadline")]),
        "2"
    );
    assert_eq!(
        v(
            "paymesh_tls_handshake_failures_total",
            &[("cause", "timeout")]
        ),
        "1"
    );
    assert_eq!(v("paymesh_requests_total", &[("kind", "authorize")]), "5");
    assert_eq!(
        v("paymesh_requests_total", &[("kind", "balance_inquiry")]),
        "1"
    );
    assert_eq!(v("paymesh_requests_total", &[("kind", "refund")]), "0");
    assert_eq!(v("paymesh_busy_total", &[("cause", "shard")]), "7");
    assert_eq!(v("paymesh_shard_mailbox_messages", &[("shard", "1")]), "1");
    assert_eq!(v("paymesh_shard_mailbox_messages", &[("shard", "0")]), "0");
    assert_eq!(v("paymesh_journal_fsyncs_total", &[]), "2");
    assert_eq!(v("paymesh_journal_queue_submissions", &[]), "9");
    assert_eq!(v("paymesh_journal_fsync_max_seconds", &[]), "0.0012");
    assert_eq!(v("paymesh_journal_fsync_seconds_sum", &[]), "0.0015");
    assert_eq!(v("paymesh_journal_fsync_seconds_count", &[]), "2");
    // Batches of 1, 1 and 16..=31 records.
    let batch = |le| v("paymesh_journal_batch_records_bucket", &[("le", le)]);
    assert_eq!(
        [batch("1"), batch("15"), batch("31"), batch("+Inf")],
        ["2", "2", "3", "3"]
    );
    assert_eq!(v("paymesh_journal_batch_records_sum", &[]), "20");
    // Link and breaker states are one-hot.
    let link = |l, state| {
        v(
            "paymesh_upstream_link_state",
            &[("host", "van"), ("link", l), ("state", state)],
        )
    };
    assert_eq!(
        [
            link("0", "up"),
            link("0", "down"),
            link("1", "signing_on"),
            link("1", "up")
        ],
        ["1", "0", "1", "0"]
    );
    let breaker = |state| {
        v(
            "paymesh_upstream_breaker_state",
            &[("host", "van"), ("state", state)],
        )
    };
    assert_eq!(
        [breaker("half_open"), breaker("closed"), breaker("open")],
        ["1", "0", "0"]
    );
    assert_eq!(
        v("paymesh_upstream_requests_total", &[("host", "van")]),
        "4"
    );
    // 100 µs, 300 µs and 10 s.
    let latency = |le| {
        v(
            "paymesh_upstream_latency_seconds_bucket",
            &[("host", "van"), ("le", le)],
        )
    };
    assert_eq!(
        [
            latency("0.00025"),
            latency("0.0005"),
            latency("5"),
            latency("+Inf")
        ],
        ["1", "2", "2", "3"]
    );
    assert_eq!(
        v("paymesh_upstream_latency_seconds_sum", &[("host", "van")]),
        "10.0004"
    );
    // The odd host name comes back intact through the escapes.
    assert_eq!(
        v("paymesh_upstream_requests_total", &[("host", "a\"b\\c\nd")]),
        "0"
    );
    assert!(out.contains(r#"host="a\"b\\c\nd""#), "escaped on the wire");
}

#[test]
fn without_journal_or_hosts_the_output_is_still_well_formed() {
    let metrics = Metrics::default();
    let mut out = String::new();
    render(
        &Sources {
            metrics: &metrics,
            hosts: &[],
            journal: None,
        },
        &mut out,
    );
    let samples = parse(&out);
    assert!(
        samples
            .iter()
            .all(|s| !s.name.starts_with("paymesh_journal_"))
    );
    assert!(
        samples
            .iter()
            .all(|s| !s.name.starts_with("paymesh_upstream_"))
    );
    assert!(samples.iter().any(|s| s.name == "paymesh_answers_total"));
}

#[test]
fn microseconds_render_as_exact_seconds() {
    assert_eq!(seconds(0), "0");
    assert_eq!(seconds(250), "0.00025");
    assert_eq!(seconds(1_000_000), "1");
    assert_eq!(seconds(2_500_001), "2.500001");
    assert_eq!(seconds(u64::MAX), "18446744073709.551615");
}

#[test]
fn help_text_escapes_backslash_and_line_feed() {
    assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    let mut out = String::new();
    escape_label_into("x\"y", &mut out);
    assert_eq!(out, "x\\\"y");
}

#[test]
fn every_rendered_metric_is_documented_in_operations_md() {
    let doc = include_str!("../../../../docs/OPERATIONS.md");
    let (metrics, hosts, journal) = full_sources();
    let mut out = String::new();
    render(
        &Sources {
            metrics: &metrics,
            hosts: &hosts,
            journal: Some(journal),
        },
        &mut out,
    );
    for line in out.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().unwrap();
            assert!(
                doc.contains(&format!("| `{name}` |")),
                "{name} is not in docs/OPERATIONS.md's tables"
            );
        }
    }
}
