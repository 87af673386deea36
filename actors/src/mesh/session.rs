//! The router actor of one client connection (one per connection, on the Arbiter that accepted it).
//!
//! It owns the session rules of PROTOCOL.md: login first, heartbeats and idle timeout, logout; it
//! parses and validates each frame, enforces the in-flight window (BUSY beyond it, and a duplicate
//! correlation id is rejected) and appends each admitted transaction request to its Arbiter's
//! [`outbox`](super::outbox), which sends every session's requests for a shard in one batch per
//! tick. A batch the shard refuses comes back as BUSY answers, like any other answer.
//!
//! Answers come back in batches and are encoded into one output buffer. The buffer is handed to the
//! writer once per mailbox drain (a `FlushNow` the actor notifies itself of, at most one pending),
//! so answer batches from several shards that arrive together leave as one chunk. A client that
//! stops reading is disconnected once [`OUTPUT_BYTES_MAX`] waits for it. On LOGOUT (or a drain at
//! shutdown) the session takes no new requests and writes LOGOUT_ANSWER after the answers of the
//! requests still in flight, then closes.
//!
//! Two small tasks on the same Arbiter move bytes: the reader decodes frames from the socket and
//! hands each read's frames to the actor (waiting when its mailbox is full, which stops reading and
//! lets TCP push back on the client); the writer takes every chunk that is ready (up to
//! [`WRITE_BATCH_CHUNKS_MAX`]) and writes them with one vectored write per wakeup (`writev` on TCP;
//! rustls encrypts the slices as one payload, in records of up to 16 KiB), handling partial writes.

use std::collections::{HashMap, VecDeque};
use std::io::IoSlice;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Buf, Bytes, BytesMut};
use paymesh_codecs::frame::{Frame, decode_frame, flags};
use paymesh_codecs::message::{
    LoginAnswer, Message as Wire, Reject, TxnAnswer, TxnKind, TxnRequest,
};
use paymesh_codecs::types::ResultCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::messages::{AnswerBatch, ReplyTo};
use super::outbox;
use super::shard::Shards;
use crate::core::shard::shard_of_txn_id;
use crate::metrics::Metrics;
use crate::now_ms;

/// Bytes read from the socket at a time (the buffer grows for a larger frame). A connection holds
/// this much while it lives: 16 KiB × 1,000 connections is 16 MiB of the router's memory.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// How soon a flush the writer's full queue refused is tried again.
const FLUSH_RETRY: Duration = Duration::from_millis(1);
/// Encoded chunks queued for the writer; past it the output buffer grows up to [`OUTPUT_BYTES_MAX`].
pub const WRITE_QUEUE_CHUNKS_MAX: usize = 64;
/// Chunks the writer hands to one vectored write (well under Linux's `IOV_MAX` of 1,024).
pub const WRITE_BATCH_CHUNKS_MAX: usize = WRITE_QUEUE_CHUNKS_MAX;
/// Output bytes a session holds for a client that does not read before it is disconnected.
pub const OUTPUT_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Frames from one read handed to the actor at once (a bounded batch).
pub const FRAMES_PER_BATCH_MAX: usize = 1_024;
/// Session mailbox size; the reader waits when it is full.
pub const SESSION_MAILBOX_MAX: usize = 64;

/// Checks a network's credential (the router stores them hashed).
pub trait Authenticator: Send + Sync {
    /// Whether `credential` is right for `network_id`.
    fn verify(&self, network_id: &[u8], credential: &[u8]) -> bool;
}

/// Session settings announced in LOGIN_ANSWER.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Requests in flight per connection.
    pub inflight_window: u32,
    /// Heartbeat interval the client should keep, milliseconds.
    pub heartbeat_interval_ms: u32,
    /// Silence after which the server closes the connection, milliseconds.
    pub idle_timeout_ms: u32,
    /// Largest frame body accepted.
    pub max_body_bytes: u32,
}

/// What a session needs from the router.
#[derive(Clone)]
pub struct SessionDeps {
    /// Settings.
    pub settings: Arc<SessionSettings>,
    /// Credential checker.
    pub auth: Arc<dyn Authenticator>,
    /// The shards.
    pub shards: Shards,
    /// Counters.
    pub metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SessionDeps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionDeps")
            .field("settings", &self.settings)
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingLogin,
    LoggedIn,
    /// LOGOUT received: no new requests; LOGOUT_ANSWER once in-flight ones are answered.
    Draining {
        correlation_id: u64,
    },
    Closing,
}

/// Frames decoded from one read.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Frames(Vec<Frame>);

/// The reader stopped: peer closed, I/O error, or a framing error that ends the stream.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct ReadEnded {
    /// Frame-level error to REJECT before closing, with the offending correlation id.
    reject: Option<(u64, ResultCode, String)>,
}

/// Hands the output buffer to the writer: notified once per mailbox drain.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct FlushNow;

/// Asks a session to finish: answer what is in flight, then close (graceful shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// The per-connection router actor.
pub struct Session {
    id: u64,
    deps: SessionDeps,
    phase: Phase,
    /// Correlation id → request kind, for requests the shards have not answered yet.
    inflight: HashMap<u64, TxnKind>,
    out: BytesMut,
    /// A [`FlushNow`] is on its way: the output buffer leaves when the mailbox is drained.
    flush_pending: bool,
    writer: Option<mpsc::Sender<Bytes>>,
    last_frame_ms: u64,
    network_id: Bytes,
    reader: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Session {
    /// Starts a session actor for `stream` on the current Arbiter.
    pub fn start<S>(id: u64, stream: S, deps: SessionDeps) -> Addr<Session>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CHUNKS_MAX);
        let max_body = deps.settings.max_body_bytes;
        deps.metrics.connections.inc();
        let addr = Session::create(|ctx| {
            ctx.set_mailbox_capacity(SESSION_MAILBOX_MAX);
            Session {
                id,
                deps,
                phase: Phase::AwaitingLogin,
                inflight: HashMap::new(),
                out: BytesMut::with_capacity(16 * 1024),
                flush_pending: false,
                writer: Some(tx),
                last_frame_ms: now_ms(),
                network_id: Bytes::new(),
                reader: None,
            }
        });
        actix::spawn(write_loop(write_half, rx));
        let handle = actix::spawn(read_loop(read_half, addr.clone(), max_body));
        addr.do_send(ReaderHandle(handle));
        addr
    }

    fn reply_to(&self, ctx: &Context<Self>, correlation_id: u64) -> ReplyTo {
        ReplyTo {
            network: self.network_id.clone(),
            session: ctx.address().recipient(),
            session_id: self.id,
            correlation_id,
        }
    }

    fn send_frame(&mut self, correlation_id: u64, msg: &Wire) {
        msg.encode(correlation_id, 0, &mut self.out);
    }

    fn answer(&mut self, correlation_id: u64, answer: TxnAnswer, flags: u16) {
        self.deps.metrics.answers.inc();
        Wire::Answer(answer).encode(correlation_id, flags, &mut self.out);
    }

    fn reject(&mut self, correlation_id: u64, code: ResultCode, message: &str) {
        self.deps.metrics.rejects.inc();
        let reject = Reject {
            result: code,
            message: Bytes::copy_from_slice(message.as_bytes()),
            error_offset: None,
        };
        self.send_frame(correlation_id, &Wire::Reject(reject));
    }

    /// Flushes the output buffer once the messages already in the mailbox are handled: actix runs
    /// notified messages after it has drained the mailbox.
    fn schedule_flush(&mut self, ctx: &mut Context<Self>) {
        if self.flush_pending || self.out.is_empty() || self.phase == Phase::Closing {
            return;
        }
        self.flush_pending = true;
        ctx.notify(FlushNow);
    }

    /// Hands the output buffer to the writer; disconnects a client that stopped reading.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.out.is_empty() {
            return;
        }
        let Some(writer) = &self.writer else { return };
        let stalled = match writer.try_reserve() {
            Ok(permit) => {
                permit.send(self.out.split().freeze());
                false
            }
            Err(mpsc::error::TrySendError::Full(())) if self.out.len() > OUTPUT_BYTES_MAX => true,
            Err(mpsc::error::TrySendError::Full(())) => {
                // The writer is behind: try again shortly, so that answers already encoded
                // never wait for the next message to this session.
                if !self.flush_pending {
                    self.flush_pending = true;
                    ctx.notify_later(FlushNow, FLUSH_RETRY);
                }
                false
            }
            Err(mpsc::error::TrySendError::Closed(())) => true,
        };
        if stalled {
            tracing::warn!(
                session = self.id,
                "client does not read its answers; closing"
            );
            self.close(ctx);
        }
    }

    fn close(&mut self, ctx: &mut Context<Self>) {
        self.phase = Phase::Closing;
        ctx.stop();
    }

    fn handle_frame(&mut self, frame: Frame, ctx: &mut Context<Self>) {
        let correlation_id = frame.header.correlation_id;
        let msg_type = frame.header.msg_type;
        let msg = match Wire::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                // A well-framed but invalid body: answer it and keep the connection.
                match TxnKind::from_request_type(msg_type) {
                    Some(kind) if self.phase != Phase::AwaitingLogin => {
                        let mut a = TxnAnswer::new(kind, e.result_code());
                        a.message = Some(Bytes::from(e.to_string()));
                        self.answer(correlation_id, a, 0);
                    }
                    _ => self.reject(correlation_id, e.result_code(), &e.to_string()),
                }
                if self.phase == Phase::AwaitingLogin {
                    self.close(ctx);
                }
                return;
            }
        };
        match (self.phase, msg) {
            (Phase::AwaitingLogin, Wire::Login(login)) => {
                if self
                    .deps
                    .auth
                    .verify(&login.network_id, login.credential.expose())
                {
                    self.phase = Phase::LoggedIn;
                    self.network_id = login.network_id.clone();
                    self.deps.metrics.sessions.inc();
                    let s = &self.deps.settings;
                    let answer = LoginAnswer {
                        result: ResultCode::Approved,
                        session_id: Some(self.id),
                        inflight_window: Some(s.inflight_window),
                        heartbeat_interval_ms: Some(s.heartbeat_interval_ms),
                        idle_timeout_ms: Some(s.idle_timeout_ms),
                        max_body_bytes: Some(s.max_body_bytes),
                        server_time_ms: Some(now_ms()),
                        message: None,
                    };
                    self.send_frame(correlation_id, &Wire::LoginAnswer(answer));
                    tracing::info!(session = self.id, network = %String::from_utf8_lossy(&login.network_id), "logged in");
                } else {
                    tracing::warn!(session = self.id, network = %String::from_utf8_lossy(&login.network_id), "login refused");
                    let answer = LoginAnswer::refused(ResultCode::AuthFailed);
                    self.send_frame(correlation_id, &Wire::LoginAnswer(answer));
                    self.close(ctx);
                }
            }
            (Phase::AwaitingLogin, _) => {
                self.reject(
                    correlation_id,
                    ResultCode::NotLoggedIn,
                    "LOGIN must come first",
                );
                self.close(ctx);
            }
            (_, Wire::Login(_)) => self.reject(
                correlation_id,
                ResultCode::AlreadyLoggedIn,
                "already logged in",
            ),
            (_, Wire::Heartbeat) => self.send_frame(correlation_id, &Wire::HeartbeatAnswer),
            (Phase::LoggedIn, Wire::Logout) => {
                self.phase = Phase::Draining { correlation_id };
                self.maybe_finish_logout(ctx);
            }
            (Phase::LoggedIn, Wire::Request(req)) => self.admit(req, correlation_id, ctx),
            (Phase::Draining { .. } | Phase::Closing, Wire::Request(req)) => {
                let a = TxnAnswer::new(req.kind, ResultCode::ShuttingDown);
                self.answer(correlation_id, a, 0);
            }
            (_, other) => {
                let name = other.name();
                self.reject(
                    correlation_id,
                    ResultCode::UnknownMessageType,
                    &format!("{name} is not a client message"),
                );
            }
        }
    }

    fn admit(&mut self, req: TxnRequest, correlation_id: u64, ctx: &mut Context<Self>) {
        if self.inflight.contains_key(&correlation_id) {
            self.reject(
                correlation_id,
                ResultCode::MalformedFrame,
                "correlation id already in flight",
            );
            return;
        }
        if self.inflight.len() >= self.deps.settings.inflight_window as usize {
            self.deps.metrics.busy_window.inc();
            let a = TxnAnswer::echo(&req, ResultCode::Busy);
            self.answer(correlation_id, a, 0);
            return;
        }
        let shards = &self.deps.shards;
        let index = match (req.kind, req.server_txn_id) {
            (TxnKind::Inquiry, Some(id)) if req.merchant_id.is_empty() => {
                usize::from(shard_of_txn_id(id)) % shards.addrs.len().max(1)
            }
            _ => shards.index_for_merchant(&req.merchant_id),
        };
        self.inflight.insert(correlation_id, req.kind);
        self.deps.metrics.request_accepted(req.kind);
        let to = self.reply_to(ctx, correlation_id);
        outbox::push(shards, &self.deps.metrics, index, (to, req));
    }

    fn maybe_finish_logout(&mut self, ctx: &mut Context<Self>) {
        if let Phase::Draining { correlation_id } = self.phase
            && self.inflight.is_empty()
        {
            self.send_frame(correlation_id, &Wire::LogoutAnswer);
            self.flush(ctx);
            self.close(ctx);
        }
    }
}

#[derive(Message)]
#[rtype(result = "()")]
struct ReaderHandle(tokio::task::JoinHandle<()>);

impl Handler<ReaderHandle> for Session {
    type Result = ();
    fn handle(&mut self, msg: ReaderHandle, _ctx: &mut Context<Self>) {
        self.reader = Some(msg.0);
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        let tick = Duration::from_millis(
            u64::from(self.deps.settings.idle_timeout_ms / 4).clamp(10, 1_000),
        );
        ctx.run_interval(tick, |this, ctx| {
            let idle = now_ms().saturating_sub(this.last_frame_ms);
            if idle > u64::from(this.deps.settings.idle_timeout_ms) {
                tracing::info!(session = this.id, idle_ms = idle, "idle timeout; closing");
                this.close(ctx);
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Context<Self>) {
        if let Some(reader) = self.reader.take() {
            reader.abort();
        }
        // Dropping the sender lets the writer finish what is queued, then shut the socket down.
        if !self.out.is_empty()
            && let Some(w) = &self.writer
        {
            let _ = w.try_send(self.out.split().freeze());
        }
        self.writer = None;
        self.deps.metrics.connections.dec();
        if !self.network_id.is_empty() {
            self.deps.metrics.sessions.dec();
        }
        if !self.inflight.is_empty() {
            tracing::info!(
                session = self.id,
                inflight = self.inflight.len(),
                "closed with requests in flight; they complete and are recorded"
            );
        }
    }
}

impl Handler<Frames> for Session {
    type Result = ();

    fn handle(&mut self, frames: Frames, ctx: &mut Context<Self>) {
        self.last_frame_ms = now_ms();
        for frame in frames.0 {
            if self.phase == Phase::Closing {
                break;
            }
            self.handle_frame(frame, ctx);
        }
        self.schedule_flush(ctx);
    }
}

impl Handler<AnswerBatch> for Session {
    type Result = ();

    fn handle(&mut self, batch: AnswerBatch, ctx: &mut Context<Self>) {
        for item in batch.items {
            if self.inflight.remove(&item.correlation_id).is_some() {
                let flags = if item.retransmit {
                    flags::RETRANSMIT
                } else {
                    0
                };
                self.answer(item.correlation_id, *item.answer, flags);
            }
        }
        self.schedule_flush(ctx);
        self.maybe_finish_logout(ctx);
    }
}

impl Handler<FlushNow> for Session {
    type Result = ();

    fn handle(&mut self, _msg: FlushNow, ctx: &mut Context<Self>) {
        self.flush_pending = false;
        self.flush(ctx);
    }
}

impl Handler<ReadEnded> for Session {
    type Result = ();

    fn handle(&mut self, msg: ReadEnded, ctx: &mut Context<Self>) {
        if let Some((correlation_id, code, text)) = msg.reject {
            self.reject(correlation_id, code, &text);
            self.flush(ctx);
        }
        self.close(ctx);
    }
}

impl Handler<Drain> for Session {
    type Result = ();

    fn handle(&mut self, _msg: Drain, ctx: &mut Context<Self>) {
        match self.phase {
            Phase::LoggedIn => {
                self.phase = Phase::Draining { correlation_id: 0 };
                self.maybe_finish_logout(ctx);
            }
            Phase::AwaitingLogin => self.close(ctx),
            _ => {}
        }
    }
}

async fn read_loop<R: AsyncRead + Unpin>(mut read: R, addr: Addr<Session>, max_body: u32) {
    let mut buf = BytesMut::with_capacity(READ_BUF_BYTES);
    loop {
        if buf.capacity() - buf.len() < READ_BUF_BYTES / 4 {
            buf.reserve(READ_BUF_BYTES);
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = addr.send(ReadEnded { reject: None }).await;
                return;
            }
            Ok(_) => {}
        }
        let mut frames = Vec::new();
        loop {
            match decode_frame(&mut buf, max_body) {
                Ok(Some(frame)) => {
                    frames.push(frame);
                    if frames.len() >= FRAMES_PER_BATCH_MAX
                        && addr
                            .send(Frames(std::mem::take(&mut frames)))
                            .await
                            .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if !frames.is_empty() {
                        let _ = addr.send(Frames(frames)).await;
                    }
                    let reject = Some((
                        e.correlation_id().unwrap_or(0),
                        e.result_code(),
                        e.to_string(),
                    ));
                    let _ = addr.send(ReadEnded { reject }).await;
                    return;
                }
            }
        }
        if !frames.is_empty() && addr.send(Frames(frames)).await.is_err() {
            return;
        }
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(mut write: W, mut rx: mpsc::Receiver<Bytes>) {
    let mut chunks: VecDeque<Bytes> = VecDeque::with_capacity(WRITE_BATCH_CHUNKS_MAX);
    while let Some(chunk) = rx.recv().await {
        chunks.push_back(chunk);
        loop {
            // Coalesce whatever else is ready into this write.
            while chunks.len() < WRITE_BATCH_CHUNKS_MAX {
                match rx.try_recv() {
                    Ok(more) => chunks.push_back(more),
                    Err(_) => break,
                }
            }
            if chunks.is_empty() {
                break;
            }
            if write_some(&mut write, &mut chunks).await.is_err() {
                return;
            }
        }
        if write.flush().await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// One vectored write of the queued chunks; drops what was written, keeps the rest in order.
async fn write_some<W: AsyncWrite + Unpin>(
    write: &mut W,
    chunks: &mut VecDeque<Bytes>,
) -> std::io::Result<()> {
    let written = {
        let mut slices = [IoSlice::new(&[]); WRITE_BATCH_CHUNKS_MAX];
        let mut count = 0;
        for (slice, chunk) in slices.iter_mut().zip(chunks.iter()) {
            *slice = IoSlice::new(chunk);
            count += 1;
        }
        let slices = slices.get(..count).unwrap_or_default();
        write.write_vectored(slices).await?
    };
    if written == 0 {
        return Err(std::io::ErrorKind::WriteZero.into());
    }
    let mut left = written;
    while left > 0 {
        let Some(front) = chunks.front_mut() else {
            break;
        };
        if front.len() <= left {
            left -= front.len();
            chunks.pop_front();
        } else {
            front.advance(left);
            left = 0;
        }
    }
    // Empty chunks (never queued today) would otherwise stay at the front.
    while chunks.front().is_some_and(Bytes::is_empty) {
        chunks.pop_front();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::pin::Pin;
    use std::task::{Context as TaskContext, Poll};

    use super::*;

    /// A socket that takes at most `per_call` bytes per write and records every call.
    struct Recorder {
        per_call: usize,
        bytes: Vec<u8>,
        calls: usize,
        shut: bool,
    }

    impl Recorder {
        fn new(per_call: usize) -> Self {
            Self {
                per_call,
                bytes: Vec::new(),
                calls: 0,
                shut: false,
            }
        }
    }

    impl AsyncWrite for Recorder {
        fn poll_write(
            self: Pin<&mut Self>,
            cx: &mut TaskContext<'_>,
            buf: &[u8],
        ) -> Poll<std::io::Result<usize>> {
            self.poll_write_vectored(cx, &[IoSlice::new(buf)])
        }

        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _cx: &mut TaskContext<'_>,
            bufs: &[IoSlice<'_>],
        ) -> Poll<std::io::Result<usize>> {
            self.calls += 1;
            let mut taken = 0;
            for buf in bufs {
                let n = buf.len().min(self.per_call - taken);
                self.bytes.extend_from_slice(&buf[..n]);
                taken += n;
            }
            Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: Pin<&mut Self>,
            _cx: &mut TaskContext<'_>,
        ) -> Poll<std::io::Result<()>> {
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            mut self: Pin<&mut Self>,
            _cx: &mut TaskContext<'_>,
        ) -> Poll<std::io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    fn queued(chunks: &[&'static [u8]]) -> mpsc::Receiver<Bytes> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CHUNKS_MAX);
        for chunk in chunks {
            tx.try_send(Bytes::from_static(chunk)).unwrap();
        }
        rx
    }

    #[tokio::test]
    async fn chunks_that_are_ready_leave_in_one_write() {
        let chunks: [&[u8]; 4] = [b"one", b"two", b"three", b"four"];
        let mut socket = Recorder::new(usize::MAX / 2);
        write_loop(&mut socket, queued(&chunks)).await;
        assert_eq!(socket.bytes, b"onetwothreefour");
        assert_eq!(socket.calls, 1);
        assert!(socket.shut);
    }

    #[tokio::test]
    async fn partial_writes_resume_where_they_stopped() {
        let chunks: [&[u8]; 5] = [b"abcdefgh", b"", b"ij", b"klmnopqrstuvw", b"xyz"];
        let mut socket = Recorder::new(3);
        write_loop(&mut socket, queued(&chunks)).await;
        assert_eq!(socket.bytes, b"abcdefghijklmnopqrstuvwxyz");
        assert_eq!(socket.calls, 9, "26 bytes, 3 per call");
        assert!(socket.shut);
    }
}
