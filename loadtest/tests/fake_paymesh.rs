//! The harness against a small scripted PayMesh server written with the real codec, over loopback
//! TCP: login and its window, answers decoded and checked, declines counted apart from
//! mismatches, and captures, cancels and refunds referring only to orders the server approved.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Bytes, BytesMut};
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, decode_frame};
use paymesh_codecs::message::{LoginAnswer, Message, TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;
use paymesh_loadtest::{LoadConfig, Stop, run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const WINDOW: u32 = 8;
/// Every this many requests the server declines an authorization or sale.
const DECLINE_EVERY: u64 = 10;
/// Every this many requests the server echoes a wrong amount (a bug the harness must catch).
const CORRUPT_EVERY: u64 = 499;

#[derive(Default)]
struct Counters {
    corrupted: AtomicU64,
    /// Most requests received in one read: never more than the window if the client obeys it.
    max_batch: AtomicUsize,
    logouts: AtomicU64,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    Authorized,
    Settled,
    Closed,
}

fn answer(
    request: &paymesh_codecs::message::TxnRequest,
    orders: &mut HashMap<Bytes, State>,
    n: u64,
) -> ResultCode {
    let state = orders.get(&request.order_id).copied();
    match request.kind {
        TxnKind::Authorize | TxnKind::Sale if n.is_multiple_of(DECLINE_EVERY) => {
            ResultCode::InsufficientFunds
        }
        TxnKind::Authorize | TxnKind::Sale if state.is_some() => ResultCode::DuplicateOrder,
        TxnKind::Authorize => {
            orders.insert(request.order_id.clone(), State::Authorized);
            ResultCode::Approved
        }
        TxnKind::Sale => {
            orders.insert(request.order_id.clone(), State::Settled);
            ResultCode::Approved
        }
        TxnKind::Capture | TxnKind::Cancel if state != Some(State::Authorized) => {
            ResultCode::InvalidState
        }
        TxnKind::Capture => {
            orders.insert(request.order_id.clone(), State::Settled);
            ResultCode::Approved
        }
        TxnKind::Refund if state != Some(State::Settled) => ResultCode::InvalidState,
        TxnKind::Cancel | TxnKind::Refund => {
            orders.insert(request.order_id.clone(), State::Closed);
            ResultCode::Approved
        }
        TxnKind::Inquiry if state.is_none() => ResultCode::NotFound,
        _ => ResultCode::Approved,
    }
}

async fn serve(mut stream: TcpStream, counters: Arc<Counters>, served: Arc<AtomicU64>) {
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut out = BytesMut::new();
    let mut orders: HashMap<Bytes, State> = HashMap::new();
    loop {
        if stream.read_buf(&mut buf).await.unwrap_or(0) == 0 {
            return;
        }
        let mut batch = 0;
        while let Some(frame) = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX).unwrap() {
            let id = frame.header.correlation_id;
            let reply = match Message::decode(&frame).unwrap() {
                Message::Login(_) => Message::LoginAnswer(LoginAnswer {
                    session_id: Some(1),
                    inflight_window: Some(WINDOW),
                    heartbeat_interval_ms: Some(30_000),
                    idle_timeout_ms: Some(90_000),
                    max_body_bytes: Some(FRAME_BODY_BYTES_MAX),
                    server_time_ms: Some(0),
                    ..LoginAnswer::refused(ResultCode::Approved)
                }),
                Message::Heartbeat => Message::HeartbeatAnswer,
                Message::Logout => {
                    counters.logouts.fetch_add(1, Ordering::Relaxed);
                    Message::LogoutAnswer
                }
                Message::Request(request) => {
                    batch += 1;
                    let n = served.fetch_add(1, Ordering::Relaxed) + 1;
                    let result = answer(&request, &mut orders, n);
                    let mut reply = TxnAnswer::echo(&request, result);
                    if n.is_multiple_of(CORRUPT_EVERY) && reply.amount.is_some() {
                        reply.amount = reply.amount.map(|a| a + 1);
                        counters.corrupted.fetch_add(1, Ordering::Relaxed);
                    }
                    Message::Answer(reply)
                }
                other => panic!("unexpected {other:?}"),
            };
            reply.encode(id, 0, &mut out);
        }
        counters.max_batch.fetch_max(batch, Ordering::Relaxed);
        if stream.write_all(&out).await.is_err() {
            return;
        }
        out.clear();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checks_answers_from_a_paymesh_server() {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let counters = Arc::new(Counters::default());
    let served = Arc::new(AtomicU64::new(0));
    let server_counters = counters.clone();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(serve(stream, server_counters.clone(), served.clone()));
        }
    });
    let config = LoadConfig {
        target: addr.to_string(),
        connections: 2,
        depth: 64,
        stop: Stop::Count(3_000),
        merchants: 20,
        ..LoadConfig::default()
    };
    let report = run(config).await.unwrap();
    server.abort();

    let summary = report.summary();
    assert_eq!(report.setup.server_window, Some(WINDOW));
    assert_eq!(report.setup.effective_depth, WINDOW as usize);
    assert!(
        counters.max_batch.load(Ordering::Relaxed) <= WINDOW as usize,
        "window exceeded"
    );
    assert_eq!(
        counters.logouts.load(Ordering::Relaxed),
        2,
        "each connection logs out"
    );
    let t = &report.totals;
    assert_eq!(
        (t.sent, t.answered, t.unanswered, t.protocol_errors),
        (3_000, 3_000, 0, 0)
    );
    let corrupted = counters.corrupted.load(Ordering::Relaxed);
    assert!(corrupted > 0);
    assert_eq!(t.mismatches, corrupted, "{summary}");
    assert_eq!(report.mismatches.get("amount"), Some(&corrupted));
    // Mismatched answers are not results: measured answers are the rest.
    assert_eq!(report.measured_answers, 3_000 - corrupted);
    assert!(
        report.outcomes.declined > 0,
        "declines are counted as outcomes"
    );
    for refused in [
        "2006 DUPLICATE_ORDER",
        "2007 INVALID_STATE",
        "2008 NOT_FOUND",
    ] {
        assert_eq!(report.by_code.get(refused), None, "{refused}: {summary}");
    }
    for txn_type in ["capture", "cancel", "refund", "inquiry"] {
        let row = report
            .by_type
            .iter()
            .find(|r| r.txn_type.name() == txn_type)
            .unwrap();
        assert!(row.approved > 0, "no approved {txn_type}: {summary}");
    }
}

/// Logs the client in, reads its first batch of requests and closes without answering.
async fn login_then_close(mut stream: TcpStream) {
    let mut buf = BytesMut::new();
    let mut out = BytesMut::new();
    while stream.read_buf(&mut buf).await.unwrap_or(0) > 0 {
        let mut requests = 0;
        while let Some(frame) = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX).unwrap() {
            match Message::decode(&frame).unwrap() {
                Message::Login(_) => {
                    let answer = LoginAnswer {
                        session_id: Some(1),
                        inflight_window: Some(WINDOW),
                        heartbeat_interval_ms: Some(30_000),
                        idle_timeout_ms: Some(90_000),
                        max_body_bytes: Some(FRAME_BODY_BYTES_MAX),
                        server_time_ms: Some(0),
                        ..LoginAnswer::refused(ResultCode::Approved)
                    };
                    Message::LoginAnswer(answer).encode(frame.header.correlation_id, 0, &mut out);
                }
                _ => requests += 1,
            }
        }
        stream.write_all(&out).await.unwrap();
        out.clear();
        if requests > 0 {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_hangs_up_is_a_protocol_error_not_a_hang() {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(login_then_close(stream));
        }
    });
    let config = LoadConfig {
        target: addr.to_string(),
        connections: 1,
        stop: Stop::Count(1_000),
        ..LoadConfig::default()
    };
    let report = run(config).await.unwrap();
    server.abort();
    let t = &report.totals;
    assert_eq!(report.protocol_errors.get("connection_closed"), Some(&1));
    assert!(t.unanswered > 0 && t.unanswered <= u64::from(WINDOW));
    assert_eq!(t.answered, 0);
    assert_eq!(t.sent, t.unanswered);
}
