//! The admin port over real loopback TCP: gateway-sim hosts, the router, real transactions through
//! the protocol client, then `/metrics`, `/health` and an unknown path fetched with plain HTTP/1.1.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::*;
use paymesh_codecs::message::{Message, TxnKind};
use paymesh_codecs::types::ResultCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Largest admin response a test reads.
const RESPONSE_BYTES_MAX: usize = 1024 * 1024;

/// An HTTP response: status, headers (lower-case names), body.
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` with `Connection: close`, read to the end.
async fn get(addr: SocketAddr, path: &str) -> Response {
    send(addr, "GET", path, "").await
}

/// `method path` with `body` and `Connection: close`, read to the end.
async fn send(addr: SocketAddr, method: &str, path: &str, body: &str) -> Response {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let length = body.len();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {length}\r\n\r\n{body}"
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(RECV_TIMEOUT, s.read_to_end(&mut raw))
        .await
        .expect("admin response in time")
        .unwrap();
    assert!(raw.len() < RESPONSE_BYTES_MAX);
    let text = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    assert!(status_line.starts_with("HTTP/1.1 "), "{status_line}");
    let status = status_line[9..12].parse().unwrap();
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_ascii_lowercase(), v.trim().to_owned())
        })
        .collect();
    Response {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// The value of the sample whose name and labels are exactly `series` (as rendered).
fn value(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
        .parse()
        .unwrap()
}

#[actix::test]
async fn metrics_count_real_transactions() {
    let env = Env::start(EnvOptions::default()).await;
    let admin = env.admin.expect("the test config opens the admin port");
    let mut c = env.client().await;
    const AUTHORIZATIONS: u64 = 3;
    for i in 0..AUTHORIZATIONS {
        let order = format!("ADMIN-{i}");
        let req = request(
            TxnKind::Authorize,
            "M000001",
            &order,
            Some(1_000),
            Some(card(VAN_PAN)),
        );
        assert_result(&c.call(req).await, ResultCode::Approved);
    }
    let inquiry = request(TxnKind::Inquiry, "M000001", "ADMIN-0", None, None);
    assert_result(&c.call(inquiry).await, ResultCode::Approved);

    let r = get(admin, "/metrics").await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(
        r.header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "content type {:?}",
        r.header("content-type")
    );
    let m = &r.body;
    assert!(value(m, r#"paymesh_requests_total{kind="authorize"}"#) >= AUTHORIZATIONS);
    assert!(value(m, r#"paymesh_requests_total{kind="inquiry"}"#) >= 1);
    assert!(value(m, "paymesh_answers_total") > AUTHORIZATIONS);
    assert_eq!(value(m, "paymesh_connections"), 1);
    assert_eq!(value(m, "paymesh_sessions"), 1);
    // Every answer came back, so no shard has anything queued.
    for shard in ["0", "1"] {
        let series = format!(r#"paymesh_shard_mailbox_messages{{shard="{shard}"}}"#);
        assert_eq!(value(m, &series), 0);
        value(
            m,
            &format!(r#"paymesh_shard_evicted_keys{{shard="{shard}"}}"#),
        );
    }
    // Every authorization made an order in some shard's window.
    let orders: u64 = ["0", "1"]
        .iter()
        .map(|s| value(m, &format!(r#"paymesh_shard_orders{{shard="{s}"}}"#)))
        .sum();
    assert!(orders >= AUTHORIZATIONS, "{orders} orders in the windows");
    assert!(value(m, "paymesh_pool_sent_total") >= AUTHORIZATIONS);
    assert!(value(m, "paymesh_journal_fsyncs_total") >= 1);
    assert!(value(m, "paymesh_journal_records_total") >= AUTHORIZATIONS);
    assert!(value(m, "paymesh_journal_fsync_seconds_count") >= 1);
    // One series per configured host and link.
    for host in ["van", "card", "bank", "carrier"] {
        let series = format!(r#"paymesh_upstream_requests_total{{host="{host}"}}"#);
        value(m, &series);
        for link in ["0", "1"] {
            let series =
                format!(r#"paymesh_upstream_link_inflight{{host="{host}",link="{link}"}}"#);
            value(m, &series);
        }
    }
    // No credential or card number on the admin port.
    assert!(!m.contains(CREDENTIAL) && !m.contains(VAN_PAN));

    let health = get(admin, "/health").await;
    assert_eq!((health.status, health.body.as_str()), (200, "ok"));
    assert_eq!(get(admin, "/nothing-here").await.status, 404);
    assert_eq!(get(admin, "/metrics/").await.status, 404);
    assert_eq!(send(admin, "POST", "/metrics", "").await.status, 404);
    let big_body = "x".repeat(4 * 1024);
    assert_eq!(send(admin, "GET", "/metrics", &big_body).await.status, 413);
    env.stop().await;
}

/// Needs the pool actor to bump the router's `HostMetrics` (being wired in the pool actor).
#[actix::test]
async fn per_host_counters_move() {
    let env = Env::start(EnvOptions::default()).await;
    let admin = env.admin.unwrap();
    let mut c = env.client().await;
    let req = request(
        TxnKind::Authorize,
        "M000001",
        "ADMIN-HOST",
        Some(1_000),
        Some(card(VAN_PAN)),
    );
    assert_result(&c.call(req).await, ResultCode::Approved);
    let m = get(admin, "/metrics").await.body;
    assert!(value(&m, r#"paymesh_upstream_requests_total{host="van"}"#) >= 1);
    assert!(value(&m, r#"paymesh_upstream_approvals_total{host="van"}"#) >= 1);
    assert!(value(&m, r#"paymesh_upstream_latency_seconds_count{host="van"}"#) >= 1);
    let up = r#"paymesh_upstream_link_state{host="van",link="0",state="up"}"#;
    assert_eq!(value(&m, up), 1);
    env.stop().await;
}

#[actix::test]
async fn health_turns_503_while_draining_and_the_port_closes_after() {
    // A slow card host keeps one request in flight through the start of the shutdown.
    let mut env = Env::start(EnvOptions {
        card_latency_ms: 1_500,
        ..EnvOptions::default()
    })
    .await;
    let admin = env.admin.unwrap();
    assert_eq!(get(admin, "/health").await.status, 200);
    let mut c = env.client().await;
    let id = c.next_id();
    let req = request(
        TxnKind::Authorize,
        "M000001",
        "ADMIN-DRAIN",
        Some(1_000),
        Some(card(CARD_PAN)),
    );
    c.send(id, &Message::Request(req)).await;
    let router = env.take_router();
    let deadline = Instant::now() + Duration::from_secs(5);
    while router.metrics.requests_of_kind(TxnKind::Authorize) == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let shutdown = actix::spawn(router.shutdown());
    let mut status = 200;
    while status == 200 && Instant::now() < deadline {
        status = get(admin, "/health").await.status;
    }
    assert_eq!(status, 503, "/health while draining");
    // The in-flight request is still answered, then the router finishes and the port closes.
    match c.recv().await {
        Some((cid, Message::Answer(a))) => {
            assert_eq!(cid, id);
            assert_result(&a, ResultCode::Approved);
        }
        other => panic!("expected the in-flight answer, got {other:?}"),
    }
    shutdown.await.unwrap();
    assert!(
        TcpStream::connect(admin).await.is_err(),
        "admin port closed"
    );
}
