//! The harness against its own echo server over real loopback TCP: every request answered and
//! checked, no mismatch, and the JSON and HTML files written with their plots.

// Helpers outside `#[test]` functions unwrap too: this is test code.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use paymesh_loadtest::{EchoServer, LoadConfig, Peer, Stop, run};

const REQUESTS: u64 = 2_000;

fn out_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn echo_config(server: &EchoServer, dir: &std::path::Path) -> LoadConfig {
    LoadConfig {
        target: server.local_addr().to_string(),
        peer: Peer::Echo,
        connections: 2,
        depth: 16,
        stop: Stop::Count(REQUESTS),
        json: Some(dir.join("report.json")),
        html: Some(dir.join("report.html")),
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_against_the_echo_server() {
    let server = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let dir = out_dir("echo-closed");
    let report = run(echo_config(&server, &dir)).await.unwrap();
    server.shutdown().await;

    let t = &report.totals;
    assert_eq!(t.sent, REQUESTS, "{}", report.summary());
    assert_eq!(t.answered, REQUESTS);
    assert_eq!((t.unanswered, t.mismatches, t.protocol_errors), (0, 0, 0));
    assert_eq!(report.measured_answers, REQUESTS);
    assert_eq!(report.outcomes.approved, REQUESTS);
    assert_eq!(report.latency.count, REQUESTS);
    let by_type: u64 = report.by_type.iter().map(|r| r.answers).sum();
    assert_eq!(by_type, REQUESTS);
    assert!(
        report.by_type.iter().filter(|r| r.answers > 0).count() >= 4,
        "the mix is used"
    );
    assert!(report.setup.request_frame_bytes_mean > 24.0);

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("report.json")).unwrap()).unwrap();
    assert_eq!(json["totals"]["answered"], REQUESTS);
    assert_eq!(json["totals"]["mismatches"], 0);
    assert!(
        json["latency"]["p99_us"].as_u64().unwrap() >= json["latency"]["p50_us"].as_u64().unwrap()
    );
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert_eq!(
        html.matches("<svg class=\"plot\"").count(),
        3,
        "three plots"
    );
    for title in [
        "Throughput over time",
        "Latency percentiles over time",
        "Latency distribution",
    ] {
        assert!(html.contains(title), "missing {title}");
    }
    assert!(html.contains("<polyline") && html.contains("class=\"bar\""));
    assert!(!html.contains("<script"), "no JavaScript");
    // The start as a UTC date and time, not a count of milliseconds.
    assert!(
        html.contains(" UTC.</p>"),
        "no UTC start time in the report"
    );
    assert!(!html.contains("after the Unix epoch"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_with_warmup_counts_only_measured_requests() {
    let server = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let dir = out_dir("echo-open");
    let config = LoadConfig {
        rate: Some(20_000),
        warmup: Duration::from_millis(50),
        stop: Stop::Count(500),
        ..echo_config(&server, &dir)
    };
    let report = run(config).await.unwrap();
    server.shutdown().await;
    // 50 ms of warm-up at 20 000/s is 1000 requests, then the 500 measured ones.
    assert_eq!(report.totals.sent, 1_500);
    assert_eq!(report.totals.answered, 1_500);
    assert_eq!(report.measured_answers, 500);
    assert_eq!(report.latency.count, 500);
    assert_eq!(report.latency_from, "intended send time");
    assert_eq!(report.totals.mismatches + report.totals.protocol_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_baseline_is_attached_with_its_ratio() {
    let server = EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), None)
        .await
        .unwrap();
    let dir = out_dir("echo-baseline");
    let config = LoadConfig {
        echo_baseline: true,
        ..echo_config(&server, &dir)
    };
    let report = run(config).await.unwrap();
    server.shutdown().await;
    let baseline = report.baseline.as_ref().expect("baseline report");
    assert_eq!(baseline.totals.answered, REQUESTS);
    assert_eq!(baseline.setup.depth, 16);
    assert!(report.baseline_ratio.is_some_and(|r| r > 0.0));
    assert!(report.summary().contains("echo baseline"));
    let html = std::fs::read_to_string(dir.join("report.html")).unwrap();
    assert!(html.contains("echo baseline"));
    // The baseline has a throughput plot of its own, so the run's line keeps its own scale.
    assert_eq!(
        html.matches("<svg class=\"plot\"").count(),
        4,
        "the run's three plots and the baseline's throughput"
    );
    let plots: Vec<&str> = html.split("<svg class=\"plot\"").skip(1).collect();
    let (run_plot, baseline_plot) = (plots.first().unwrap(), plots.get(1).unwrap());
    assert!(run_plot.contains("Throughput over time") && !run_plot.contains("echo baseline"));
    assert_eq!(run_plot.matches("<polyline").count(), 1);
    assert!(baseline_plot.contains("Echo baseline: the same load"));
    assert_eq!(baseline_plot.matches("<polyline").count(), 1);
}

#[tokio::test]
async fn a_remote_target_is_refused_before_connecting() {
    let config = LoadConfig {
        target: "192.0.2.10:7400".to_owned(),
        ..LoadConfig::default()
    };
    let error = run(config).await.unwrap_err();
    assert!(
        matches!(error, paymesh_loadtest::LoadError::RemoteTarget(_)),
        "{error}"
    );
}

#[test]
fn run_can_be_spawned_on_another_runtime() {
    // `paymesh demo` spawns the harness on its own runtime: the future must be Send + 'static.
    fn spawnable<F: std::future::Future + Send + 'static>(_: &F) {}
    spawnable(&run(LoadConfig::default()));
}
