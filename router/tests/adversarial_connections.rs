//! Hostile clients over real loopback TCP and TLS: credential guessing, enumeration of network ids,
//! clients that never read, TLS handshake floods, connect storms, silent connections, a client
//! certificate used for another network. Every limit is configured small so that each test ends
//! in a few seconds; tests wait on observable events (counters, answers, closed sockets) with
//! bounded polling, never on fixed sleeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::*;
use paymesh_actors::mesh::session::LOCKED_OUT_MESSAGE;
use paymesh_codecs::frame::decode_frame;
use paymesh_codecs::message::{LoginAnswer, Message, TxnKind};
use paymesh_codecs::types::ResultCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How long a test waits for something it polls for before failing.
const POLL_LIMIT: Duration = Duration::from_secs(20);

/// Polls `condition` every 10 ms until it holds; fails after [`POLL_LIMIT`].
async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(start.elapsed() < POLL_LIMIT, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends a LOGIN and returns the answer, or `None` when the server closed the connection.
async fn try_login(c: &mut Client, network: &str, credential: &str) -> Option<LoginAnswer> {
    c.send_raw(&login_frame(1, network, credential))
        .await
        .ok()?;
    match c.recv().await {
        Some((1, Message::LoginAnswer(a))) => Some(a),
        None => None,
        other => panic!("expected LOGIN_ANSWER, got {other:?}"),
    }
}

/// Whether the server closes a fresh connection at once (the connection limit).
async fn refused_at_accept(env: &Env) -> bool {
    let mut c = Client::tcp(env.tcp).await;
    try_login(&mut c, NETWORK, CREDENTIAL).await.is_none()
}

fn locked_out(a: &LoginAnswer) -> bool {
    a.result == ResultCode::AuthFailed
        && a.message.as_deref() == Some(LOCKED_OUT_MESSAGE.as_bytes())
}

/// What one guessing client saw.
#[derive(Debug, Default)]
struct Guesses {
    refused: u64,
    busy: u64,
}

/// Guesses credentials from `ip` until the address is locked out, then checks that even the
/// right credential is refused.
async fn guess_until_locked_out(env_tcp: std::net::SocketAddr, ip: [u8; 4]) -> Guesses {
    let mut seen = Guesses::default();
    for attempt in 0..2_000 {
        let mut c = Client::tcp_from(env_tcp, ip).await.unwrap();
        let a = try_login(&mut c, NETWORK, &format!("guess-{attempt}"))
            .await
            .expect("a LOGIN_ANSWER");
        if locked_out(&a) {
            let mut c = Client::tcp_from(env_tcp, ip).await.unwrap();
            let a = try_login(&mut c, NETWORK, CREDENTIAL).await.unwrap();
            assert!(
                locked_out(&a),
                "the right credential from a locked-out address: {a:?}"
            );
            return seen;
        }
        match a.result {
            ResultCode::AuthFailed => seen.refused += 1,
            ResultCode::Busy => seen.busy += 1,
            other => panic!("a guess got {other:?}"),
        }
    }
    panic!("{ip:?} was never locked out");
}

#[actix::test]
async fn a_login_flood_does_not_stall_an_honest_session_and_its_sources_get_locked_out() {
    const FLOODERS: u8 = 4;
    const FAILURES_MAX: u64 = 15;
    const APPROVALS_MIN: u64 = 20;
    let opts = EnvOptions {
        login_toml: format!(
            "threads = 1\nchecks_queued_max = 4\nfailures_max = {FAILURES_MAX}\n\
             failure_delay_ms = 1\nfailure_delay_ms_max = 2\nlockout_ms = 600000\n"
        ),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let metrics = env.metrics();
    let mut honest = env.client().await;

    let flooding = Arc::new(AtomicBool::new(true));
    let flood = {
        let (tcp, flooding) = (env.tcp, flooding.clone());
        tokio::spawn(async move {
            let guessers: Vec<_> = (0..FLOODERS)
                .map(|i| tokio::spawn(guess_until_locked_out(tcp, [127, 0, 0, 2 + i])))
                .collect();
            let mut all = Vec::new();
            for g in guessers {
                all.push(g.await.unwrap());
            }
            flooding.store(false, Ordering::SeqCst);
            all
        })
    };
    // The honest session keeps authorizing for as long as the flood lasts.
    let mut approvals = 0;
    while flooding.load(Ordering::SeqCst) {
        let order = format!("FLOOD-{approvals}");
        let a = honest
            .call(request(
                TxnKind::Authorize,
                "M000001",
                &order,
                Some(1_000),
                Some(card(VAN_PAN)),
            ))
            .await;
        assert_result(&a, ResultCode::Approved);
        if flooding.load(Ordering::SeqCst) {
            approvals += 1;
        }
    }
    let guesses = flood.await.unwrap();
    let refused: u64 = guesses.iter().map(|g| g.refused).sum();
    assert!(
        approvals >= APPROVALS_MIN,
        "only {approvals} approvals during a flood of {refused} checked guesses"
    );
    // Every guess was really checked and counted, each guessing address locked out once.
    assert_eq!(refused, u64::from(FLOODERS) * FAILURES_MAX, "{guesses:?}");
    assert_eq!(metrics.login_failures.get(), refused);
    assert_eq!(metrics.login_lockouts.get(), u64::from(FLOODERS));
    assert!(metrics.login_locked_refusals.get() >= 2 * u64::from(FLOODERS));
    assert_eq!(metrics.login_tracked_addresses.get(), u64::from(FLOODERS));
    assert_eq!(metrics.login_checks_queued.get(), 0);
    // The honest address was never throttled: it logs in again at once.
    let mut again = env.client().await;
    let a = again
        .call(request(TxnKind::Inquiry, "M000001", "FLOOD-0", None, None))
        .await;
    assert_result(&a, ResultCode::Approved);
    env.stop().await;
}

#[actix::test]
async fn an_unknown_network_and_a_wrong_credential_get_the_same_bytes() {
    let env = Env::start(EnvOptions::default()).await;
    let mut unknown = Client::tcp_from(env.tcp, [127, 0, 0, 2]).await.unwrap();
    unknown
        .send_raw(&login_frame(7, "NOSUCHNETWORK", CREDENTIAL))
        .await
        .unwrap();
    let mut wrong = Client::tcp_from(env.tcp, [127, 0, 0, 3]).await.unwrap();
    wrong
        .send_raw(&login_frame(7, NETWORK, "not-the-credential"))
        .await
        .unwrap();
    let (unknown, wrong) = (unknown.read_to_close().await, wrong.read_to_close().await);
    assert_eq!(unknown, wrong);
    // One LOGIN_ANSWER saying AUTH_FAILED and nothing else, then the close.
    let mut buf = BytesMut::from(&unknown[..]);
    let frame = decode_frame(&mut buf, 16_384).unwrap().unwrap();
    assert!(buf.is_empty());
    let Message::LoginAnswer(a) = Message::decode(&frame).unwrap() else {
        panic!("not a LOGIN_ANSWER")
    };
    assert_eq!(a, LoginAnswer::refused(ResultCode::AuthFailed));
    assert_eq!(env.metrics().login_failures.get(), 2);
    env.stop().await;
}

/// A logged-in connection from a socket with a small receive buffer that never reads after
/// LOGIN: it sends `heartbeats` HEARTBEATs (whose answers pile up on the server) and LOGOUT.
async fn non_reader(env: &Env, heartbeats: usize) -> TcpStream {
    let mut s = connect_from(env.tcp, [127, 0, 0, 1], Some(4 * 1024))
        .await
        .unwrap();
    s.write_all(&login_frame(1, NETWORK, CREDENTIAL))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let frame = loop {
        if let Some(frame) = decode_frame(&mut buf, 16_384).unwrap() {
            break frame;
        }
        let n = tokio::time::timeout(RECV_TIMEOUT, s.read_buf(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "closed before LOGIN_ANSWER");
    };
    let Message::LoginAnswer(a) = Message::decode(&frame).unwrap() else {
        panic!("not a LOGIN_ANSWER")
    };
    assert_eq!(a.result, ResultCode::Approved);
    let mut out = BytesMut::new();
    for i in 0..heartbeats {
        Message::Heartbeat.encode(10 + i as u64, 0, &mut out);
    }
    Message::Logout.encode(9, 0, &mut out);
    // The server may stop reading before it has all of this (its session closes when too much
    // output waits for this client): bound the write rather than wait for it.
    let _ = tokio::time::timeout(Duration::from_secs(5), s.write_all(&out)).await;
    s
}

#[actix::test]
async fn clients_that_never_read_give_their_sockets_back_at_the_write_deadline() {
    // 6 MiB of answers each: more than the kernel can buffer (tcp_wmem's default maximum is
    // 4 MiB, and the client's receive buffer is 4 KiB), so the writer is stuck.
    const HEARTBEATS: usize = 6 * 1024 * 1024 / 24;
    let opts = EnvOptions {
        max_connections: 2,
        server_toml: "write_stall_ms_max = 3000\n".into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let metrics = env.metrics();
    let _a = non_reader(&env, HEARTBEATS).await;
    let _b = non_reader(&env, HEARTBEATS).await;
    // Their sessions end (LOGOUT, or too much output waiting), but the sockets are still held,
    // by writers that cannot deliver: they count against the limit...
    wait_until("sessions ended with their sockets held", || {
        metrics.sessions.get() == 0 && metrics.connections.get() == 2
    })
    .await;
    assert!(refused_at_accept(&env).await, "a third socket was served");
    assert!(metrics.connections_refused.get() >= 1);
    // ...until the writers give up at the stall limit and the sockets are closed.
    wait_until("stalled sockets closed", || metrics.connections.get() == 0).await;
    assert_eq!(metrics.write_stalls.get(), 2);
    let mut fresh = env.client().await;
    fresh.send(3, &Message::Heartbeat).await;
    assert!(matches!(
        fresh.recv().await,
        Some((3, Message::HeartbeatAnswer))
    ));
    env.stop().await;
}

#[actix::test]
async fn tls_handshake_floods_hold_at_most_max_connections_until_the_handshake_deadline() {
    let opts = EnvOptions {
        tls: true,
        max_connections: 4,
        server_toml: "tls_handshake_timeout_ms = 1500\n".into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let metrics = env.metrics();
    let tls_addr = env.tls.unwrap();
    let ca = env.dev_cert_pem.clone().unwrap();
    // Two connect and say nothing; two send the start of a ClientHello (a record header
    // announcing 512 bytes, then 4 of them) and stop.
    let mut flood = Vec::new();
    for i in 0..4 {
        let mut s = TcpStream::connect(tls_addr).await.unwrap();
        if i % 2 == 1 {
            s.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc])
                .await
                .unwrap();
        }
        flood.push(s);
    }
    wait_until("four handshakes holding four slots", || {
        metrics.tls_handshakes.get() == 4 && metrics.connections.get() == 4
    })
    .await;
    // A fifth connection, TLS or plain, is refused while they are held.
    assert!(Client::tls(tls_addr, &ca, None).await.is_err());
    assert!(refused_at_accept(&env).await);
    assert_eq!(metrics.connections_refused.get(), 2);
    assert_eq!(metrics.connections.get(), 4);
    // The handshake deadline closes them and frees their slots.
    for mut s in flood {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(RECV_TIMEOUT, s.read_to_end(&mut rest)).await;
        assert!(read.is_ok(), "a stalled handshake was never closed");
    }
    wait_until("slots freed", || metrics.connections.get() == 0).await;
    assert_eq!(metrics.tls_handshake_timeouts.get(), 4);
    assert_eq!(metrics.tls_handshakes.get(), 0);
    let mut c = Client::tls(tls_addr, &ca, None).await.unwrap();
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::Approved
    );
    env.stop().await;
}

#[actix::test]
async fn simultaneous_logins_admit_exactly_the_limit() {
    const LIMIT: usize = 16;
    const CLIENTS: usize = 48;
    let opts = EnvOptions {
        max_connections: LIMIT,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let metrics = env.metrics();
    // Every client connects and logs in at once; the ones let in hold their connection until
    // every client has its answer, so no slot is given back before the count.
    let all_answered = Arc::new(tokio::sync::Barrier::new(CLIENTS + 1));
    let done = Arc::new(tokio::sync::Notify::new());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            let (tcp, all_answered, done) = (env.tcp, all_answered.clone(), done.clone());
            let released = done.notified_owned();
            tokio::spawn(async move {
                let mut c = Client::tcp(tcp).await;
                let answer = try_login(&mut c, NETWORK, CREDENTIAL).await;
                let approved = answer.is_some_and(|a| a.result == ResultCode::Approved);
                all_answered.wait().await;
                released.await;
                approved
            })
        })
        .collect();
    all_answered.wait().await;
    assert_eq!(metrics.connections.get(), LIMIT as u64);
    assert_eq!(metrics.sessions.get(), LIMIT as u64);
    done.notify_waiters();
    let mut approved = 0;
    for c in clients {
        approved += usize::from(c.await.unwrap());
    }
    assert_eq!(approved, LIMIT);
    assert_eq!(metrics.connections_refused.get(), (CLIENTS - LIMIT) as u64);
    env.stop().await;
}

#[actix::test]
async fn connections_that_do_not_log_in_are_closed_at_the_login_deadline() {
    let opts = EnvOptions {
        max_connections: 3,
        server_toml: "login_deadline_ms = 1000\n".into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let metrics = env.metrics();
    let mut honest = env.client().await;
    // One says nothing; one sends half a LOGIN frame.
    let silent = TcpStream::connect(env.tcp).await.unwrap();
    let mut partial = TcpStream::connect(env.tcp).await.unwrap();
    let login = login_frame(1, NETWORK, CREDENTIAL);
    partial.write_all(&login[..login.len() / 2]).await.unwrap();
    wait_until("three slots taken", || metrics.connections.get() == 3).await;
    assert!(
        refused_at_accept(&env).await,
        "a fourth connection was served"
    );
    for mut s in [silent, partial] {
        let mut got = Vec::new();
        let read = tokio::time::timeout(RECV_TIMEOUT, s.read_to_end(&mut got)).await;
        assert!(read.is_ok(), "a connection without LOGIN was never closed");
        assert!(
            got.is_empty(),
            "the server answered a connection that never logged in"
        );
    }
    wait_until("their slots freed", || metrics.connections.get() == 1).await;
    assert_eq!(metrics.login_deadline_closes.get(), 2);
    // The honest session was opened first, so its deadline passed too: logged in, it stays.
    honest.send(5, &Message::Heartbeat).await;
    assert!(matches!(
        honest.recv().await,
        Some((5, Message::HeartbeatAnswer))
    ));
    let _fresh = env.client().await;
    env.stop().await;
}

#[actix::test]
async fn a_client_certificate_logs_in_only_as_the_network_bound_to_it() {
    const OTHER: &str = "VANOTHER";
    const OTHER_CREDENTIAL: &str = "other-credential";
    let other_hash = paymesh_router::auth::hash_credential(OTHER_CREDENTIAL).unwrap();
    let opts = EnvOptions {
        mutual_tls: true,
        // Failures from one address are spaced out; keep that short here.
        login_toml: "failure_delay_ms = 1\nfailure_delay_ms_max = 1\n".into(),
        networks_toml: format!(
            "[[networks]]\nid = \"{OTHER}\"\ncredential_hash = \"{other_hash}\"\n\
             merchants = [\"M000001\"]\nclient_cert_sha256 = [\"{}\"]\n",
            "ab".repeat(32)
        ),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let metrics = env.metrics();
    let tls = env.tls.unwrap();
    let ca = env.server_ca_pem.clone().unwrap();
    let (cert, key) = env.client_identity.clone().unwrap();
    let mine = Some((cert.as_str(), key.as_str()));
    let answer_bytes = |network: &'static str, credential: &'static str| {
        let ca = ca.clone();
        async move {
            let mut c = Client::tls(tls, &ca, mine).await.unwrap();
            c.send_raw(&login_frame(1, network, credential))
                .await
                .unwrap();
            c.read_to_close().await
        }
    };
    // VANTEST's certificate with VANOTHER's own credential: refused exactly like a wrong one.
    let as_other = answer_bytes(OTHER, OTHER_CREDENTIAL).await;
    let wrong = answer_bytes(NETWORK, "not-the-credential").await;
    assert_eq!(as_other, wrong);
    let mut buf = BytesMut::from(&wrong[..]);
    let frame = decode_frame(&mut buf, 16_384).unwrap().unwrap();
    assert!(matches!(
        Message::decode(&frame).unwrap(),
        Message::LoginAnswer(a) if a == LoginAnswer::refused(ResultCode::AuthFailed)
    ));
    // As its own network it logs in.
    let mut c = Client::tls(tls, &ca, mine).await.unwrap();
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::Approved
    );
    // A certificate from the same CA bound to no network, or none at all (the plain listener),
    // cannot log in as the bound network, even with its credential (now cached as verified).
    let (cert, key) = env.unbound_client_identity.clone().unwrap();
    let mut c = Client::tls(tls, &ca, Some((&cert, &key))).await.unwrap();
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::AuthFailed
    );
    let mut c = Client::tcp(env.tcp).await;
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::AuthFailed
    );
    assert_eq!(metrics.login_failures.get(), 4);
    env.stop().await;
}
