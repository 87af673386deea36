//! End to end against an upstream host built on an independent ISO 8583 library: the router
//! talks to `tests/pyiso_host/host.py` (pyiso8583's `default_ascii` spec, none of PayMesh's codec)
//! over a 2-byte binary length header and a 4-digit ASCII one, and the host's log of what it read
//! is checked against docs/HOSTS.md: approvals and declines, timeouts reversed once (field 90
//! naming the original), follow-ups carrying the original-data elements (37, 38, 90), network
//! management on STANs no transaction uses on the same terminal, every (terminal, STAN) of the
//! day used once, fields 12/13 in the acceptor's local time, a breaker that stays closed while one
//! BIN range goes unanswered and opens when the host dies.
//!
//! Needs python3 with pyiso8583 (`pip install -r router/tests/pyiso_host/requirements.txt`,
//! which `.ci/run` does); without them the test fails saying so.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use paymesh_codecs::message::{Message, TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;

const HOST_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/pyiso_host");
/// How long the test waits for something the host must log or the router must do.
const WAIT: Duration = Duration::from_secs(20);

/// The Python host process, killed when dropped.
struct PyHost {
    child: Child,
    binary2: u16,
    ascii4: u16,
    log: PathBuf,
}

impl Drop for PyHost {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_host(dir: &Path) -> PyHost {
    let install = format!(
        "this test needs python3 with pyiso8583: pip install -r {HOST_DIR}/requirements.txt"
    );
    let check = Command::new("python3")
        .args(["-c", "import iso8583"])
        .output()
        .unwrap_or_else(|e| panic!("python3 not found ({e}); {install}"));
    assert!(
        check.status.success(),
        "pyiso8583 is not installed ({}); {install}",
        String::from_utf8_lossy(&check.stderr).trim()
    );
    let log = dir.join("host.log");
    let mut child = Command::new("python3")
        .arg(format!("{HOST_DIR}/host.py"))
        .arg("--log")
        .arg(&log)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let ports: Vec<u16> = line
        .strip_prefix("READY ")
        .unwrap_or_else(|| panic!("host did not start: {line:?}"))
        .split_whitespace()
        .map(|p| p.parse().unwrap())
        .collect();
    PyHost {
        child,
        binary2: ports[0],
        ascii4: ports[1],
        log,
    }
}

/// One message the host read: its length header and fields (`t` is the MTI).
type Logged = HashMap<String, String>;

fn read_log(path: &Path) -> Vec<Logged> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    // A line being written may be cut short: only whole lines (the host ends each with \n).
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .map(|l| {
            l.trim_end_matches('\n')
                .split('\t')
                .filter_map(|pair| pair.split_once('='))
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// Polls the host's log until `done` holds (the host writes as it reads: no fixed sleep).
async fn wait_for_log(path: &Path, what: &str, done: impl Fn(&[Logged]) -> bool) -> Vec<Logged> {
    let deadline = Instant::now() + WAIT;
    loop {
        let log = read_log(path);
        if done(&log) {
            return log;
        }
        assert!(Instant::now() < deadline, "the host never logged {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(host: &PyHost, dir: &Path) -> String {
    let hash = paymesh_router::auth::hash_credential(CREDENTIAL).unwrap();
    let host_toml = |name: &str, port: u16, header: &str, extra: &str| {
        format!(
            "[[hosts]]\nname = \"{name}\"\naddress = \"127.0.0.1:{port}\"\nprofile = \"ascii_1987\"\n\
             length_header = \"{header}\"\nlinks = 2\ntimeout_ms = 700\nterminal_id = \"PAYMESH1\"\n\
             terminal_ids = [\"PAYMESH1\", \"PAYMESH2\", \"PAYMESH3\"]\nlocal_time_offset_minutes = 540\n\
             echo_idle_ms = 200\nbreaker_failures = 3\nbreaker_open_ms = 60000\nreconnect_ms = 50\n\
             reconnect_max_ms = 200\n{extra}\n"
        )
    };
    format!(
        "[journal]\ndir = \"\"\n\n[store]\npath = \"{}\"\n\n[admin]\nlisten = \"\"\n\n\
         [server]\nlisten = \"127.0.0.1:0\"\narbiters = 2\nshards = 1\nshutdown_grace_ms = 500\n\n\
         [[networks]]\nid = \"{NETWORK}\"\ncredential_hash = \"{hash}\"\nmerchants = [\"*\"]\n\n\
         [[merchants]]\nid = \"M000001\"\n\n{}{}\
         [[routes]]\nmethod = \"card\"\nbin_from = 400000\nbin_to = 449999\nhost = \"vanb\"\n\n\
         [[routes]]\nmethod = \"card\"\nbin_from = 450000\nbin_to = 499999\nhost = \"vana\"\n",
        dir.join("store.sqlite").display(),
        host_toml("vanb", host.binary2, "binary2", "capture = \"online\""),
        host_toml("vana", host.ascii4, "ascii4", ""),
    )
}

/// Sends requests without waiting, then collects their answers by correlation id.
async fn call_all(
    c: &mut Client,
    reqs: Vec<paymesh_codecs::message::TxnRequest>,
) -> Vec<TxnAnswer> {
    let mut ids = Vec::new();
    for r in reqs {
        let id = c.next_id();
        c.send(id, &Message::Request(r)).await;
        ids.push(id);
    }
    let mut answers = HashMap::new();
    while answers.len() < ids.len() {
        match c.recv().await {
            Some((id, Message::Answer(a))) => {
                answers.insert(id, a);
            }
            other => panic!("expected an answer, got {other:?}"),
        }
    }
    ids.iter().map(|id| answers.remove(id).unwrap()).collect()
}

fn auth(order: &str, pan: &str, amount: u64) -> paymesh_codecs::message::TxnRequest {
    request(
        TxnKind::Authorize,
        "M000001",
        order,
        Some(amount),
        Some(card(pan)),
    )
}

fn follow(kind: TxnKind, order: &str, amount: Option<u64>) -> paymesh_codecs::message::TxnRequest {
    let mut r = request(kind, "M000001", order, amount, None);
    if kind == TxnKind::Refund {
        // Refunds are told apart by their request id.
        r.request_id = Some(bytes::Bytes::copy_from_slice(
            format!("R-{order}").as_bytes(),
        ));
    }
    r
}

/// The transaction request of the host's log with this order id (field 48) and MTI.
fn find<'a>(log: &'a [Logged], order: &str, mti: &str) -> Vec<&'a Logged> {
    log.iter()
        .filter(|m| m.get("48").map(String::as_str) == Some(order) && m["t"] == mti)
        .collect()
}

/// Field 90 a follow-up of `original` must carry: its MTI, STAN, field 7, the acquirer id
/// (11 digits) and a zero forwarding id.
fn field_90_of(original: &Logged) -> String {
    format!(
        "{}{}{}{:0>11}{}",
        original["t"], original["11"], original["7"], "123456", "00000000000"
    )
}

#[actix::test]
async fn an_independent_iso8583_host_sees_what_hosts_md_promises() {
    let dir = tempfile::tempdir().unwrap();
    let host = start_host(dir.path());
    let config = paymesh_router::config::Config::parse(&config(&host, dir.path())).unwrap();
    let router = paymesh_router::server::Router::start(config).await.unwrap();
    let deadline = Instant::now() + WAIT;
    while router.metrics.upstream_links_up.get() < 4 {
        assert!(Instant::now() < deadline, "links never signed on");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut c = Client::tcp(router.tcp_addr.unwrap()).await;
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::Approved
    );

    // Approvals, a decline, follow-ups on both hosts (binary2: online captures; ascii4: a cancel).
    let a = call_all(
        &mut c,
        vec![
            auth("A1", "4111111111111111", 1_000),
            auth("A2", "4111111111111111", 1_051),
            auth("A3", "4500001234567890", 2_000),
            request(
                TxnKind::Sale,
                "M000001",
                "S1",
                Some(3_000),
                Some(card("4500001234567890")),
            ),
        ],
    )
    .await;
    assert_eq!(a[0].result, ResultCode::Approved);
    assert_eq!(a[1].result, ResultCode::InsufficientFunds);
    assert_eq!(
        (a[2].result, a[3].result),
        (ResultCode::Approved, ResultCode::Approved)
    );
    let f = call_all(
        &mut c,
        vec![
            follow(TxnKind::Capture, "A1", Some(1_000)),
            follow(TxnKind::Cancel, "A3", None),
        ],
    )
    .await;
    assert_eq!(
        (f[0].result, f[1].result),
        (ResultCode::Approved, ResultCode::Approved)
    );
    let r = call_all(
        &mut c,
        vec![
            follow(TxnKind::Refund, "A1", Some(400)),
            follow(TxnKind::Refund, "S1", Some(3_000)),
        ],
    )
    .await;
    assert_eq!(
        (r[0].result, r[1].result),
        (ResultCode::Approved, ResultCode::Approved)
    );

    // One BIN range goes unanswered while the rest of the host's traffic flows: each of those
    // times out and is reversed once, and the breaker (3 failures) stays closed.
    let mut mixed = Vec::new();
    for i in 0..6 {
        mixed.push(auth(&format!("D{i}"), "4999990000000001", 100 + i));
        mixed.push(auth(&format!("N{i}"), "4500001234567890", 100 + i));
    }
    let answers = call_all(&mut c, mixed).await;
    for (i, a) in answers.iter().enumerate() {
        let expected = match i % 2 {
            0 => ResultCode::UpstreamTimeout,
            _ => ResultCode::Approved,
        };
        assert_eq!(a.result, expected, "request {i}");
    }
    let after = call_all(&mut c, vec![auth("N-after", "4500001234567890", 77)]).await;
    assert_eq!(
        after[0].result,
        ResultCode::Approved,
        "the breaker stayed closed"
    );
    assert_eq!(
        router.host_metrics[1]
            .breaker
            .load(std::sync::atomic::Ordering::Relaxed),
        paymesh_actors::metrics::BreakerState::Closed as u8
    );

    let log = wait_for_log(&host.log, "the six reversals", |log| {
        (0..6).all(|i| !find(log, &format!("D{i}"), "0400").is_empty())
    })
    .await;

    // Both length headers carried traffic and network management.
    for header in ["binary2", "ascii4"] {
        let signs_on = log
            .iter()
            .filter(|m| {
                m["header"] == header
                    && m["t"] == "0800"
                    && m.get("70").map(String::as_str) == Some("001")
            })
            .count();
        assert!(signs_on >= 2, "{header}: {signs_on} sign-ons");
        assert!(
            log.iter()
                .any(|m| m["header"] == header && m["t"] == "0100")
        );
    }
    // Network management: on terminal_id, from the top of its range (the default reserve).
    for m in log.iter().filter(|m| m["t"] == "0800") {
        assert_eq!(m["41"], "PAYMESH1");
        assert!(m["11"].parse::<u32>().unwrap() >= 980_000, "{m:?}");
    }
    // Transactions: spread over the terminal pool (one shard owns all three here), below the
    // reserve on PAYMESH1, which network management shares.
    let terminals: HashSet<&str> = log
        .iter()
        .filter(|m| m["t"] == "0100")
        .map(|m| m["41"].as_str())
        .collect();
    assert!(terminals.len() >= 2, "{terminals:?}");
    // Every new message of the day has a (terminal, STAN) of its own, network management
    // included; only repeats (0401, 0221) reuse their first attempt's.
    let mut seen = HashMap::new();
    for m in &log {
        if m["t"].ends_with('1') {
            continue;
        }
        let key = (m["header"].clone(), m["41"].clone(), m["11"].clone());
        if let Some(first) = seen.insert(key.clone(), m["t"].clone()) {
            panic!("{key:?} used twice ({first} and {})", m["t"]);
        }
    }
    // Fields 12 and 13: the acceptor's local time (UTC+9 here), field 7 UTC.
    for m in log.iter().filter(|m| m["t"] == "0100") {
        let utc_hour: u32 = m["7"][4..6].parse().unwrap();
        let local_hour: u32 = m["12"][..2].parse().unwrap();
        assert_eq!(local_hour, (utc_hour + 9) % 24, "{m:?}");
        assert_eq!(m["7"][6..], m["12"][2..], "{m:?}");
    }

    // Follow-ups carry the original-data elements: 37 its RRN, 38 its approval code, 90 its MTI,
    // STAN and time, on its terminal.
    let check_follow_up = |order: &str, original_mti: &str, mti: &str, approved: bool| {
        let original = find(&log, order, original_mti)[0];
        let ups = find(&log, order, mti);
        assert_eq!(ups.len(), 1, "{order}: {mti} sent {} times", ups.len());
        let up = ups[0];
        assert_eq!(up["37"], original["37"], "{order} {mti}: field 37");
        assert_eq!(
            up["41"], original["41"],
            "{order} {mti}: the original's terminal"
        );
        assert_eq!(up["90"], field_90_of(original), "{order} {mti}: field 90");
        match approved {
            true => assert_eq!(
                up["38"],
                format!("A{}", &original["11"][1..]),
                "{order} {mti}: field 38"
            ),
            false => assert!(!up.contains_key("38"), "{order} {mti}: no approval to name"),
        }
        assert_ne!(up["11"], original["11"], "{order} {mti}: a STAN of its own");
    };
    check_follow_up("A1", "0100", "0220", true);
    check_follow_up("A3", "0100", "0400", true);
    for i in 0..6 {
        // Timed out: reversed exactly once (the host acknowledged it), naming the original.
        check_follow_up(&format!("D{i}"), "0100", "0400", false);
        assert!(find(&log, &format!("D{i}"), "0401").is_empty());
    }
    let refunds: Vec<_> = log
        .iter()
        .filter(|m| m["t"] == "0200" && m["3"] == "200000")
        .collect();
    assert_eq!(refunds.len(), 2);
    for up in refunds {
        let order = &up["48"];
        let original = find(&log, order, "0100")
            .into_iter()
            .chain(
                find(&log, order, "0200")
                    .into_iter()
                    .filter(|m| m["3"] == "000000"),
            )
            .next()
            .unwrap();
        assert_eq!(up["37"], original["37"], "refund {order}: field 37");
        assert_eq!(up["90"], field_90_of(original), "refund {order}: field 90");
        assert_eq!(
            up["38"],
            format!("A{}", &original["11"][1..]),
            "refund {order}: field 38"
        );
    }

    // The host dies: lost links and failed reconnects open the breaker, and new authorizations
    // are refused UPSTREAM_UNAVAILABLE without reaching anything.
    drop(host);
    let deadline = Instant::now() + WAIT;
    let mut n = 0;
    loop {
        n += 1;
        let a = call_all(&mut c, vec![auth(&format!("K{n}"), "4111111111111111", 10)]).await;
        if a[0].result == ResultCode::UpstreamUnavailable
            && router.host_metrics[0]
                .breaker
                .load(std::sync::atomic::Ordering::Relaxed)
                == paymesh_actors::metrics::BreakerState::Open as u8
        {
            break;
        }
        assert!(Instant::now() < deadline, "the breaker never opened: {a:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    router.shutdown().await;
}
