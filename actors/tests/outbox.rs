//! The per-Arbiter outbox with real actors: one tick of requests from several sessions leaves as one
//! message per shard, and a batch the shard's mailbox refuses is answered BUSY exactly once per
//! request through its own session, which clears it from its in-flight window (a session then logs
//! out cleanly). The shard is a mailbox nobody drains, so "full" and "closed" are exact states, not
//! races.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use paymesh_actors::mesh::messages::{AnswerBatch, ReplyTo};
use paymesh_actors::mesh::outbox::{self, OutboxItem};
use paymesh_actors::mesh::session::{
    Authenticator, LoginAttempt, LoginCheck, LoginVerdict, PeerInfo, Session, SessionDeps,
    SessionSettings,
};
use paymesh_actors::mesh::shard::{ShardActor, Shards};
use paymesh_actors::metrics::Metrics;
use paymesh_codecs::frame::decode_frame;
use paymesh_codecs::message::{Login, Message as Wire, TxnKind, TxnRequest};
use paymesh_codecs::types::{ResultCode, Secret};
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::sync::mpsc;

/// Guards a test against hanging; nothing asserts how long anything took.
const HANG_GUARD: Duration = Duration::from_secs(20);
const MAX_BODY_BYTES: u32 = 64 * 1024;

/// A shard whose mailbox nobody drains, holding `capacity` messages. The context owns the receiver:
/// dropping it closes the mailbox.
fn idle_shard(capacity: usize) -> (Context<ShardActor>, Shards) {
    let mut ctx = Context::<ShardActor>::new();
    ctx.set_mailbox_capacity(capacity);
    let shards = Shards {
        addrs: Arc::new(vec![ctx.address()]),
    };
    (ctx, shards)
}

/// Stands in for a session: forwards each answer batch it gets.
struct Collector(mpsc::Sender<AnswerBatch>);

impl Actor for Collector {
    type Context = Context<Self>;
}

impl Handler<AnswerBatch> for Collector {
    type Result = ();
    fn handle(&mut self, batch: AnswerBatch, _ctx: &mut Context<Self>) {
        self.0.try_send(batch).expect("the test reads every batch");
    }
}

fn collector() -> (Recipient<AnswerBatch>, mpsc::Receiver<AnswerBatch>) {
    let (tx, rx) = mpsc::channel(16);
    (Collector(tx).start().recipient(), rx)
}

fn inquiry(correlation_id: u64) -> TxnRequest {
    TxnRequest::new(
        TxnKind::Inquiry,
        Bytes::from_static(b"M000001"),
        Bytes::from(format!("ORDER{correlation_id}")),
    )
}

fn item(session: &Recipient<AnswerBatch>, session_id: u64, correlation_id: u64) -> OutboxItem {
    let to = ReplyTo {
        network: bytes::Bytes::from_static(b"NET"),
        session: session.clone(),
        session_id,
        correlation_id,
    };
    (to, inquiry(correlation_id))
}

async fn next_batch(rx: &mut mpsc::Receiver<AnswerBatch>) -> AnswerBatch {
    tokio::time::timeout(HANG_GUARD, rx.recv())
        .await
        .expect("an answer batch")
        .expect("collector alive")
}

/// Correlation ids of a batch, checking every answer is a fresh BUSY.
fn busy_ids(batch: &AnswerBatch) -> Vec<u64> {
    for a in &batch.items {
        assert_eq!(a.answer.result, ResultCode::Busy, "{a:?}");
        assert!(!a.retransmit);
    }
    batch.items.iter().map(|a| a.correlation_id).collect()
}

#[actix::test]
async fn one_tick_of_requests_from_two_sessions_is_one_shard_message() {
    let (_shard, shards) = idle_shard(16);
    let metrics = Arc::new(Metrics::new(1));
    // A second mesh whose shard is gone: its BUSY answer tells the test the scheduled flush ran.
    let (closed, probe_shards) = idle_shard(16);
    drop(closed);
    let probe_metrics = Arc::new(Metrics::new(1));
    let (a, _ra) = collector();
    let (b, _rb) = collector();
    let (probe, mut probe_rx) = collector();

    for correlation_id in 1..=3 {
        outbox::push(&shards, &metrics, 0, item(&a, 1, correlation_id));
        outbox::push(&shards, &metrics, 0, item(&b, 2, correlation_id));
    }
    outbox::push(&probe_shards, &probe_metrics, 0, item(&probe, 3, 1));
    assert_eq!(outbox::pending(), 7);

    assert_eq!(busy_ids(&next_batch(&mut probe_rx).await), vec![1]);
    assert_eq!(outbox::pending(), 0);
    assert_eq!(
        metrics.shard_queued[0].get(),
        1,
        "six requests, one message"
    );
    assert_eq!(metrics.busy_shard.get(), 0);
    assert_eq!(probe_metrics.busy_shard.get(), 1);
    assert_eq!(probe_metrics.shard_queued[0].get(), 0);
}

#[actix::test]
async fn a_full_shard_mailbox_answers_every_request_busy_once_through_its_session() {
    let (_shard, shards) = idle_shard(1);
    let metrics = Arc::new(Metrics::new(1));
    let (filler, _filler_rx) = collector();
    let (a, mut ra) = collector();
    let (b, mut rb) = collector();
    // One message fills the mailbox.
    outbox::push(&shards, &metrics, 0, item(&filler, 9, 1));
    outbox::flush();
    assert_eq!(metrics.shard_queued[0].get(), 1);

    for correlation_id in 1..=4 {
        outbox::push(&shards, &metrics, 0, item(&a, 1, correlation_id));
        if correlation_id <= 3 {
            outbox::push(&shards, &metrics, 0, item(&b, 2, 100 + correlation_id));
        }
    }
    // Each session gets one batch, its requests in the order it sent them.
    assert_eq!(busy_ids(&next_batch(&mut ra).await), vec![1, 2, 3, 4]);
    assert_eq!(busy_ids(&next_batch(&mut rb).await), vec![101, 102, 103]);
    assert_eq!(metrics.busy_shard.get(), 7);
    assert_eq!(
        metrics.shard_queued[0].get(),
        1,
        "only the filler is queued"
    );

    // Exactly once: the next thing session A hears is the answer to its next request.
    outbox::push(&shards, &metrics, 0, item(&a, 1, 5));
    assert_eq!(busy_ids(&next_batch(&mut ra).await), vec![5]);
    assert_eq!(metrics.busy_shard.get(), 8);
}

struct AllowAll;

impl Authenticator for AllowAll {
    fn check(&self, _attempt: LoginAttempt) -> LoginCheck {
        Box::pin(std::future::ready(LoginVerdict::Approved))
    }
}

async fn recv(client: &mut DuplexStream, buf: &mut BytesMut) -> Option<(u64, Wire)> {
    loop {
        if let Some(frame) = decode_frame(buf, MAX_BODY_BYTES).unwrap() {
            return Some((frame.header.correlation_id, Wire::decode(&frame).unwrap()));
        }
        let read = tokio::time::timeout(HANG_GUARD, client.read_buf(buf))
            .await
            .expect("the session answers")
            .unwrap();
        if read == 0 {
            return None;
        }
    }
}

#[actix::test]
async fn a_session_hears_busy_once_per_request_when_the_shard_is_full_then_logs_out() {
    const REQUESTS: u64 = 40;
    let (_shard, shards) = idle_shard(1);
    let metrics = Arc::new(Metrics::new(1));
    let (filler, _filler_rx) = collector();
    outbox::push(&shards, &metrics, 0, item(&filler, 9, 1));
    outbox::flush();
    let deps = SessionDeps {
        settings: Arc::new(SessionSettings {
            inflight_window: 64,
            heartbeat_interval_ms: 30_000,
            idle_timeout_ms: 60_000,
            max_body_bytes: MAX_BODY_BYTES,
            login_deadline_ms: 60_000,
            write_stall_ms_max: 60_000,
        }),
        auth: Arc::new(AllowAll),
        shards,
        metrics: metrics.clone(),
    };
    let (mut client, server) = tokio::io::duplex(64 * 1024);
    let peer = PeerInfo::new("127.0.0.1:9".parse().unwrap());
    let _session = Session::start(1, server, deps, peer);

    let mut out = BytesMut::new();
    let login = Login {
        network_id: Bytes::from_static(b"NET"),
        credential: Secret::new(Bytes::from_static(b"secret")),
        client_software: None,
    };
    Wire::Login(login).encode(1, 0, &mut out);
    for correlation_id in 10..10 + REQUESTS {
        Wire::Request(inquiry(correlation_id)).encode(correlation_id, 0, &mut out);
    }
    client.write_all(&out).await.unwrap();

    let mut buf = BytesMut::new();
    let (id, login_answer) = recv(&mut client, &mut buf).await.unwrap();
    assert!(matches!(login_answer, Wire::LoginAnswer(_)) && id == 1);
    let mut heard = Vec::new();
    for _ in 0..REQUESTS {
        let (id, msg) = recv(&mut client, &mut buf).await.unwrap();
        let Wire::Answer(answer) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(answer.result, ResultCode::Busy);
        heard.push(id);
    }
    assert_eq!(heard, (10..10 + REQUESTS).collect::<Vec<_>>());

    // LOGOUT_ANSWER comes only once nothing is in flight: the BUSY answers cleared the window.
    let mut logout = BytesMut::new();
    Wire::Logout.encode(2, 0, &mut logout);
    client.write_all(&logout).await.unwrap();
    let (id, msg) = recv(&mut client, &mut buf).await.unwrap();
    assert!(matches!(msg, Wire::LogoutAnswer) && id == 2, "{msg:?}");
    assert!(recv(&mut client, &mut buf).await.is_none(), "closed after");
    assert_eq!(metrics.busy_shard.get(), REQUESTS);
    assert_eq!(metrics.answers.get(), REQUESTS);
    assert_eq!(metrics.requests.get(), REQUESTS);
    assert_eq!(
        metrics.shard_queued[0].get(),
        1,
        "only the filler is queued"
    );
}
