//! The independent reference client (`tests/reference-client/`, Python standard library only,
//! written from docs/PROTOCOL.md alone and sharing no code with the codecs) against a real
//! router and gateway-sim hosts, over TCP and TLS. When the document and the router disagree,
//! the client reports a mismatch and this test fails with the client's report.
//!
//! The client asks for one thing it cannot do from outside: a host that stops answering and
//! starts again (section 8's in-doubt story). It prints `reference client: need carrier-silent`
//! (or `carrier-answers`) and waits for `ok` on its standard input; this test sets the carrier
//! host's latency accordingly.
//!
//! `reference_client_inbound_fixes` runs the client's `inbound-fixes` group: the behaviours an
//! outside implementer found wrong once (echoes, times, offsets, partial captures, in-doubt
//! answers), kept as their own group so a regression names them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use paymesh_gateway_sim::latency::Latency;

/// The carrier host's latency while "silent": well past the hosts' answer timeout.
const SILENT_LATENCY_MS: u64 = 5_000;
/// The hosts' answer timeout in this environment.
const HOST_TIMEOUT_MS: u64 = 1_500;
/// The card host's latency: requests to it stay in flight long enough to fill the window.
const SLOW_CARD_LATENCY_MS: u64 = 300;
/// A merchant that takes only KRW, with a daily limit (2011 and 2005).
const LIMITED_MERCHANT: &str = "MKRW";
const LIMITED_DAILY_MINOR: u64 = 100_000;

fn repo_path(relative: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// What the client printed and how it ended.
struct Outcome {
    success: bool,
    stdout: String,
    stderr: String,
}

enum Event {
    Need(String),
    Done(Outcome),
}

/// Starts the client on its own thread; its requests for host changes and its end come back
/// as events, and `ok` lines go to it through `answers`.
fn spawn_client(
    args: Vec<String>,
) -> (
    tokio::sync::mpsc::UnboundedReceiver<Event>,
    std::sync::mpsc::Sender<()>,
) {
    let (events, receiver) = tokio::sync::mpsc::unbounded_channel();
    let (answers, answered) = std::sync::mpsc::channel::<()>();
    let mut child = match Command::new("python3")
        // -B: no __pycache__ written into the source tree.
        .arg("-B")
        .arg(repo_path("tests/reference-client/ref_client.py"))
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
    {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "python3 is not on PATH: the reference client (tests/reference-client/) needs \
             CPython 3.8 or later, standard library only (apt-get install python3)"
        ),
        Err(e) => panic!("cannot start python3: {e}"),
    };
    std::thread::spawn(move || {
        let mut stdin = child.stdin.take().unwrap();
        let mut stderr = child.stderr.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut printed = String::new();
        for line in stdout.lines() {
            let line = line.unwrap();
            printed.push_str(&line);
            printed.push('\n');
            if let Some(what) = line.strip_prefix("reference client: need ") {
                events.send(Event::Need(what.to_owned())).ok();
                if answered.recv().is_err() {
                    break;
                }
                stdin.write_all(b"ok\n").unwrap();
                stdin.flush().unwrap();
            }
        }
        let mut errors = String::new();
        stderr.read_to_string(&mut errors).ok();
        let status = child.wait().unwrap();
        events
            .send(Event::Done(Outcome {
                success: status.success(),
                stdout: printed,
                stderr: errors,
            }))
            .ok();
    });
    (receiver, answers)
}

async fn run_client(groups: &str) {
    let env = Env::start(EnvOptions {
        tls: true,
        card_latency_ms: SLOW_CARD_LATENCY_MS,
        host_timeout_ms: HOST_TIMEOUT_MS,
        inflight_window: 16,
        merchants_toml: format!(
            "[[merchants]]\nid = \"{LIMITED_MERCHANT}\"\ncurrencies = [410]\ndaily_limit_minor = {LIMITED_DAILY_MINOR}\n"
        ),
        ..EnvOptions::default()
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("router-ca.pem");
    std::fs::write(&ca, env.dev_cert_pem.as_ref().expect("a TLS listener")).unwrap();
    let args: Vec<String> = [
        "--protocol-doc",
        repo_path("docs/PROTOCOL.md").to_str().unwrap(),
        "--groups",
        groups,
        "--tcp",
        &env.tcp.to_string(),
        "--tls",
        &env.tls.unwrap().to_string(),
        "--ca",
        ca.to_str().unwrap(),
        "--network",
        NETWORK,
        "--network-b",
        NETWORK_B,
        "--credential",
        CREDENTIAL,
        "--merchant",
        "M000001",
        "--shared-merchant",
        "M000002",
        "--disabled-merchant",
        "MOFF",
        "--limited-merchant",
        LIMITED_MERCHANT,
        "--limited-daily",
        &LIMITED_DAILY_MINOR.to_string(),
        "--single-limit",
        &MERCHANT_SINGLE_LIMIT.to_string(),
        "--device-id",
        TEST_DEVICE,
        "--device-seed",
        &hex::encode(test_device_key().to_bytes()),
        "--card-pan",
        "6200000000000005",
        "--slow-pan",
        CARD_PAN,
        "--slow-latency-ms",
        &SLOW_CARD_LATENCY_MS.to_string(),
        "--timeout-method",
        "carrier",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let carrier = &env
        .hosts
        .iter()
        .find(|(name, _)| name == "carrier")
        .unwrap()
        .1;
    let (mut events, answers) = spawn_client(args);
    let outcome = loop {
        // The whole run is bounded: a client stuck on a socket fails the test here.
        let event = tokio::time::timeout(Duration::from_secs(600), events.recv())
            .await
            .expect("the reference client did not finish in 10 minutes")
            .expect("the client thread ended without a result");
        match event {
            Event::Need(what) => {
                let ms = match what.as_str() {
                    "carrier-silent" => SILENT_LATENCY_MS,
                    "carrier-answers" => 0,
                    other => panic!("the client asked for {other:?}"),
                };
                carrier.handle.set_latency(Latency::Fixed { ms }).unwrap();
                answers.send(()).unwrap();
            }
            Event::Done(outcome) => break outcome,
        }
    };
    env.stop().await;
    // Shown by the test runner for a failing test: every check's line and the summary.
    println!("{}", outcome.stdout);
    assert!(
        outcome.success,
        "the reference client found the router and docs/PROTOCOL.md disagreeing (or could not \
         run):\n{}\n{}",
        outcome
            .stdout
            .lines()
            .filter(|l| l.starts_with("FAIL") || l.starts_with("reference client"))
            .collect::<Vec<_>>()
            .join("\n"),
        outcome.stderr
    );
    assert!(
        outcome.stdout.contains(" checks passed, 0 failed"),
        "no summary line from the client:\n{}",
        outcome.stdout
    );
}

#[actix::test]
async fn reference_client_over_tcp_and_tls() {
    run_client(
        "self-test,session,transactions,idempotency,protocol-errors,refusals,capacity,ownership",
    )
    .await;
}

#[actix::test]
async fn reference_client_inbound_fixes() {
    run_client("inbound-fixes").await;
}
