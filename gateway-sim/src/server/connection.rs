//! One connection: read and frame requests, decide, and hand answers to the writer now or after
//! their latency. Network management (0800) is answered at once, as [`NetworkManagement`] says;
//! the connection remembers whether it signed on.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::IsoMessage;
use rand::rngs::SmallRng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::{Host, lock};
use crate::faults::{FaultAction, NetworkManagement};
use crate::host::{self, Processed};
use crate::record::RecordEntry;
use crate::rules::{Decision, ResponseCode, yymm_from_unix_ms};

/// Bytes read per system call at most (more if a frame is longer).
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Bytes of ready answers gathered into one write at most.
const WRITE_BATCH_BYTES_MAX: usize = 64 * 1024;

/// Why the read loop ended.
enum End {
    /// The peer finished sending: deliver what is pending, then close.
    PeerDone,
    /// Close now, dropping what is pending (stop signal, fault, broken framing, peer misbehaving).
    Abort,
}

/// What one connection remembers.
struct Conn {
    /// Its number (accept order since the host started), recorded with each request.
    number: u64,
    /// An 0800 sign-on was answered 00 and no sign-off since.
    signed_on: bool,
}

/// Decrements the open-connection count however the task ends.
struct OpenGuard(Arc<Host>);

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(super) async fn serve(
    host: Arc<Host>,
    stream: TcpStream,
    mut stop: watch::Receiver<bool>,
    number: u64,
    mut rng: SmallRng,
) {
    host.open.fetch_add(1, Ordering::Relaxed);
    let _open = OpenGuard(host.clone());
    let peer = stream.peer_addr().ok();
    tracing::debug!(host = %host.name, ?peer, "connection opened");
    let (mut reader, writer) = stream.into_split();
    let (out, queue) = mpsc::channel(host.limits.inflight_per_connection_max);
    let mut writer_task = tokio::spawn(write_loop(writer, queue));
    let mut delayed = JoinSet::new();
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut conn = Conn {
        number,
        signed_on: false,
    };
    let end = loop {
        tokio::select! {
            _ = stop.changed() => break End::Abort,
            Some(_) = delayed.join_next(), if !delayed.is_empty() => {}
            read = reader.read_buf(&mut buf) => match read {
                Ok(0) => break End::PeerDone,
                Ok(_) => {
                    if let Err(why) = on_bytes(&host, &mut conn, &mut buf, &mut rng, &out, &mut delayed) {
                        tracing::debug!(host = %host.name, ?peer, why, "closing connection");
                        break End::Abort;
                    }
                }
                Err(_) => break End::Abort,
            }
        }
    };
    let mut writer_done = false;
    if let End::PeerDone = end {
        // Answers still waiting out their latency go out before the socket closes, unless the
        // host is stopped meanwhile.
        let drained = async { while delayed.join_next().await.is_some() {} };
        tokio::select! {
            _ = stop.changed() => {}
            () = drained => {
                drop(out);
                let _ = (&mut writer_task).await;
                writer_done = true;
            }
        }
    }
    delayed.shutdown().await;
    if !writer_done {
        // A JoinHandle must not be polled again once it has completed.
        writer_task.abort();
        let _ = writer_task.await;
    }
    tracing::debug!(host = %host.name, ?peer, "connection closed");
}

/// Handles every whole frame in `buf`. `Err` closes the connection.
fn on_bytes(
    host: &Arc<Host>,
    conn: &mut Conn,
    buf: &mut BytesMut,
    rng: &mut SmallRng,
    out: &mpsc::Sender<Bytes>,
    delayed: &mut JoinSet<()>,
) -> Result<(), &'static str> {
    let mut framer = host.framer;
    loop {
        let raw = match framer.decode(buf) {
            Ok(Some(raw)) => raw,
            Ok(None) => return Ok(()),
            Err(_) => return Err("bad length header or frame too long"),
        };
        if raw.is_empty() {
            // A zero-length frame: a keepalive on some links.
            continue;
        }
        let msg = match IsoMessage::decode(host.profile, raw) {
            Ok(msg) => msg,
            Err(error) => {
                // The framing is intact, so the stream can go on; a host would ignore the message.
                tracing::debug!(host = %host.name, %error, "undecodable message ignored");
                continue;
            }
        };
        on_message(host, conn, &msg, rng, out, delayed)?;
    }
}

fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Decides one request, records it, and queues its answer as faults and latency say.
fn on_message(
    host: &Arc<Host>,
    conn: &mut Conn,
    msg: &IsoMessage,
    rng: &mut SmallRng,
    out: &mpsc::Sender<Bytes>,
    delayed: &mut JoinSet<()>,
) -> Result<(), &'static str> {
    let now_ms = now_unix_ms();
    let behaviour = host.behaviour();
    let network = msg.mti().class() == paymesh_codecs::iso8583::MtiClass::NetworkManagement;
    if !network
        && behaviour.network.require_sign_on
        && !conn.signed_on
        && let Some(processed) = refused(msg, ResponseCode::ISSUER_UNAVAILABLE)
    {
        tracing::debug!(host = %host.name, connection = conn.number, "transaction before sign-on: answered 91");
        return answer_now(host, conn, msg, &processed, FaultAction::None, now_ms, out);
    }
    let today = host.today_yymm.unwrap_or_else(|| yymm_from_unix_ms(now_ms));
    let processed = {
        let mut book = lock(&host.book);
        host::process(&host.rules, &mut book, today, msg)
    };
    let Some(processed) = processed else {
        tracing::debug!(host = %host.name, mti = %msg.mti(), "answer from the peer ignored");
        return Ok(());
    };
    if network {
        return network_management(host, conn, msg, processed, behaviour.network, now_ms, out);
    }
    let fault = behaviour.faults.roll(rng);
    let mut delay = behaviour.latency.sample(rng);
    if fault == FaultAction::Late {
        delay = delay.saturating_add(Duration::from_millis(behaviour.faults.late_answer_ms));
    }
    record(
        host,
        conn,
        msg,
        &processed,
        fault,
        u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        now_ms,
    );
    let body = match fault {
        FaultAction::Drop => return Ok(()),
        FaultAction::Disconnect => return Err("disconnect fault"),
        FaultAction::Garbage => host::garbage(rng),
        FaultAction::None | FaultAction::Late | FaultAction::Duplicate => {
            processed.answer.to_bytes()
        }
    };
    let mut frame = BytesMut::new();
    if host.framer.encode(&body, &mut frame).is_err() {
        tracing::warn!(host = %host.name, "answer longer than frame_bytes_max, not sent");
        return Ok(());
    }
    let frame = frame.freeze();
    let copies = if fault == FaultAction::Duplicate {
        2
    } else {
        1
    };
    if delay.is_zero() {
        for _ in 0..copies {
            // Full: the peer has stopped reading its answers.
            out.try_send(frame.clone())
                .map_err(|_| "write queue full")?;
        }
        return Ok(());
    }
    if delayed.len() >= host.limits.inflight_per_connection_max {
        return Err("inflight_per_connection_max exceeded");
    }
    let out = out.clone();
    delayed.spawn(async move {
        tokio::time::sleep(delay).await;
        for _ in 0..copies {
            if out.send(frame.clone()).await.is_err() {
                return;
            }
        }
    });
    Ok(())
}

/// Records one processed request as coming from `conn`.
fn record(
    host: &Host,
    conn: &Conn,
    msg: &IsoMessage,
    processed: &Processed,
    fault: FaultAction,
    latency_ms: u64,
    now_ms: u64,
) {
    let mut entry = RecordEntry::new(
        &host.name,
        msg,
        &processed.request,
        &processed.decision,
        fault,
        latency_ms,
        now_ms,
    );
    entry.connection = conn.number;
    host.record.push(entry);
}

/// `msg` answered with `code` without being processed; `None` for a message that is an answer.
fn refused(msg: &IsoMessage, code: ResponseCode) -> Option<Processed> {
    let response_mti = msg.mti().response_mti()?;
    let request = crate::rules::SimRequest::from_iso(msg).unwrap_or_default();
    let decision = Decision::code(code);
    let answer = host::answer(msg, response_mti, &decision, request.currency);
    Some(Processed {
        request,
        decision,
        answer,
    })
}

/// Sign-on, sign-off and echo: answered at once (or not, as `network` says); the connection's
/// sign-on state follows.
fn network_management(
    host: &Host,
    conn: &mut Conn,
    msg: &IsoMessage,
    mut processed: Processed,
    network: NetworkManagement,
    now_ms: u64,
    out: &mpsc::Sender<Bytes>,
) -> Result<(), &'static str> {
    let code = processed.request.network_code;
    let dropped = match code {
        Some(1) => network.drop_sign_on,
        Some(301) => network.drop_echo,
        _ => false,
    };
    if dropped {
        record(host, conn, msg, &processed, FaultAction::Drop, 0, now_ms);
        return Ok(());
    }
    if code == Some(1)
        && network.refuse_sign_on
        && let Some(refusal) = refused(msg, ResponseCode::ISSUER_UNAVAILABLE)
    {
        processed = refusal;
    }
    match code {
        Some(1) => conn.signed_on = processed.decision.is_approved(),
        Some(2) => conn.signed_on = false,
        _ => {}
    }
    answer_now(host, conn, msg, &processed, FaultAction::None, now_ms, out)
}

/// Records `processed` and queues its answer without latency.
fn answer_now(
    host: &Host,
    conn: &Conn,
    msg: &IsoMessage,
    processed: &Processed,
    fault: FaultAction,
    now_ms: u64,
    out: &mpsc::Sender<Bytes>,
) -> Result<(), &'static str> {
    record(host, conn, msg, processed, fault, 0, now_ms);
    let mut frame = BytesMut::new();
    if host
        .framer
        .encode(&processed.answer.to_bytes(), &mut frame)
        .is_err()
    {
        tracing::warn!(host = %host.name, "answer longer than frame_bytes_max, not sent");
        return Ok(());
    }
    // Full: the peer has stopped reading its answers.
    out.try_send(frame.freeze()).map_err(|_| "write queue full")
}

/// Writes answers as they become ready, gathering all those ready into one write.
async fn write_loop(mut writer: OwnedWriteHalf, mut queue: mpsc::Receiver<Bytes>) {
    let mut batch = BytesMut::with_capacity(WRITE_BATCH_BYTES_MAX);
    while let Some(first) = queue.recv().await {
        batch.extend_from_slice(&first);
        while batch.len() < WRITE_BATCH_BYTES_MAX {
            match queue.try_recv() {
                Ok(next) => batch.extend_from_slice(&next),
                Err(_) => break,
            }
        }
        if writer.write_all(&batch).await.is_err() {
            return;
        }
        batch.clear();
    }
    let _ = writer.shutdown().await;
}
