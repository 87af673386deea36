//! The router actor of one client connection (one per connection, on the Arbiter that accepted it).
//!
//! It owns the session rules of PROTOCOL.md: login first, heartbeats and idle timeout, logout; it
//! parses and validates each frame, enforces the in-flight window (BUSY beyond it, and a duplicate
//! correlation id is rejected) and appends each admitted transaction request to its Arbiter's
//! [`outbox`](super::outbox), which sends every session's requests for a shard in one batch per
//! tick. A batch the shard refuses comes back as BUSY answers, like any other answer.
//!
//! LOGIN is checked by the router's [`Authenticator`] off this thread (see [`super::login`]): the
//! session waits for the verdict without handling anything else, and its reader reads nothing
//! more meanwhile (frames that came in the same read as the LOGIN are held and handled after it),
//! so a client not yet logged in makes the session hold one read's worth of bytes at most. A
//! connection that has not logged in by the login deadline, counted from accept, is closed.
//!
//! Answers come back in batches and are encoded into one output buffer. The buffer is handed to the
//! writer once per mailbox drain (a `FlushNow` the actor notifies itself of, at most one pending),
//! so answer batches from several shards that arrive together leave as one chunk. A client that
//! stops reading is disconnected once [`OUTPUT_BYTES_MAX`] waits for it (in the buffer and the
//! writer together), or once the writer made no progress for the write stall limit. On LOGOUT (or a drain at shutdown) the session takes no new
//! requests and writes LOGOUT_ANSWER after the answers of the requests still in flight, then closes.
//!
//! Two small tasks on the same Arbiter move bytes: the reader decodes frames from the socket and
//! hands each read's frames to the actor (waiting when its mailbox is full, which stops reading and
//! lets TCP push back on the client); the [writer](super::writer) writes what the actor queues.
//! The socket closes when both have let go of it: the reader is stopped with the actor, the writer
//! when its queue is written or the peer stalls it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use actix::prelude::*;
use bytes::{Bytes, BytesMut};
use paymesh_codecs::error::ProtocolError;
use paymesh_codecs::frame::{Frame, decode_frame, flags};
use paymesh_codecs::message::{
    Login, LoginAnswer, Message as Wire, Reject, TxnAnswer, TxnKind, TxnRequest, msg_type,
};
use paymesh_codecs::types::ResultCode;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

pub use super::login::{Authenticator, LoginAttempt, LoginCheck, LoginVerdict, PeerInfo};
use super::messages::{AnswerBatch, ReplyTo};
use super::outbox;
use super::shard::Shards;
pub use super::writer::{Unwritten, WRITE_BATCH_CHUNKS_MAX, WRITE_QUEUE_CHUNKS_MAX, WriteEnd};
use crate::core::shard::shard_of_txn_id;
use crate::metrics::Metrics;
use crate::now_ms;

/// Bytes read from the socket at a time (the buffer grows for a larger frame). A connection holds
/// this much while it lives: 16 KiB × 1,000 connections is 16 MiB of the router's memory.
pub const READ_BUF_BYTES: usize = 16 * 1024;
/// How soon a flush the writer's full queue refused is tried again.
const FLUSH_RETRY: Duration = Duration::from_millis(1);
/// Output bytes a session holds for a client that does not read before it is disconnected: its
/// buffer and what its writer has not written yet, together.
pub const OUTPUT_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Frames from one read handed to the actor at once (a bounded batch).
pub const FRAMES_PER_BATCH_MAX: usize = 1_024;
/// Session mailbox size; the reader waits when it is full.
pub const SESSION_MAILBOX_MAX: usize = 64;
/// The `message` of a LOGIN_ANSWER refusing a locked-out source address.
pub const LOCKED_OUT_MESSAGE: &str = "too many failed logins from this address; retry later";

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
    /// Time from accept (TLS handshake included) within which LOGIN must have been approved,
    /// milliseconds; the connection is closed then, so a silent client cannot hold its slot.
    pub login_deadline_ms: u32,
    /// How long the writer may make no progress before the connection is dropped, milliseconds.
    pub write_stall_ms_max: u32,
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
    /// LOGIN received, its check under way: nothing else is handled until the verdict.
    Authenticating,
    LoggedIn,
    /// LOGOUT received: no new requests; LOGOUT_ANSWER once in-flight ones are answered.
    Draining {
        correlation_id: u64,
    },
    Closing,
}

/// Frames decoded from one read. The answer may hold the reader back: see [`ReadGate`].
#[derive(Debug, Message)]
#[rtype(result = "ReadGate")]
struct Frames(Vec<Frame>);

/// When a LOGIN is under check the reader reads no further until the verdict (this fires, or is
/// dropped when the session closes): an unauthenticated client can make the session hold one
/// read's worth of frames, not a mailbox full of them.
type ReadGate = Option<oneshot::Receiver<()>>;

/// The reader stopped: peer closed, I/O error, or a framing error that ends the stream.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct ReadEnded {
    /// Frame-level error to REJECT before closing, with the offending correlation id.
    reject: Option<(u64, ProtocolError)>,
}

/// Hands the output buffer to the writer: notified once per mailbox drain.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct FlushNow;

/// Asks a session to finish: answer what is in flight, then close (graceful shutdown).
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct Drain;

/// What an answer echoes of its request (docs/PROTOCOL.md section 5.3), kept while the request
/// is in flight: the shards answer from what they keep, which is not always what this request
/// sent (a retransmission's `request_id`, an INQUIRY's, a refusal that made no order). Copied
/// out of the read buffer, so that it does not keep the buffer (and a CVV in it) alive.
#[derive(Debug)]
struct Echo {
    kind: TxnKind,
    request_id: Option<Bytes>,
    amount: Option<u64>,
    currency: Option<u16>,
    installment_months: Option<u8>,
}

impl Echo {
    fn of(req: &TxnRequest) -> Echo {
        Echo {
            kind: req.kind,
            request_id: req.request_id.as_deref().map(Bytes::copy_from_slice),
            amount: req.amount,
            currency: req.currency,
            installment_months: req.installment_months,
        }
    }

    /// Puts back what the answer leaves out and the request sent: an answer that states its own
    /// value (the amount a CAPTURE without one took) keeps it.
    fn fill(&self, a: &mut TxnAnswer) {
        if a.request_id.is_none() {
            a.request_id.clone_from(&self.request_id);
        }
        a.amount = a.amount.or(self.amount);
        a.currency = a.currency.or(self.currency);
        a.installment_months = a.installment_months.or(self.installment_months);
    }
}

/// Whether a client may send message type `msg_type` (docs/PROTOCOL.md section 4).
fn client_type(msg_type: u8) -> bool {
    use paymesh_codecs::message::msg_type as t;
    matches!(msg_type, t::LOGIN | t::HEARTBEAT | t::LOGOUT)
        || (t::TXN_REQUEST_MIN..=t::TXN_REQUEST_MAX).contains(&msg_type)
}

/// Offsets in a frame that a REJECT names (docs/PROTOCOL.md section 1).
const MSG_TYPE_OFFSET: u32 = 3;
const CORRELATION_ID_OFFSET: u32 = 8;

/// The per-connection router actor.
pub struct Session {
    id: u64,
    deps: SessionDeps,
    phase: Phase,
    peer: PeerInfo,
    /// Correlation id → what its answer echoes, for requests the shards have not answered yet.
    inflight: HashMap<u64, Echo>,
    out: BytesMut,
    /// A [`FlushNow`] is on its way: the output buffer leaves when the mailbox is drained.
    flush_pending: bool,
    writer: Option<mpsc::Sender<Bytes>>,
    /// Output handed to the writer and not written yet.
    unwritten: Unwritten,
    last_frame_ms: u64,
    network_id: Bytes,
    reader: Option<tokio::task::JoinHandle<()>>,
    /// Frames that arrived in the same read as LOGIN, behind it: handled once LOGIN is approved.
    /// At most one read's worth ([`FRAMES_PER_BATCH_MAX`]): the reader waits meanwhile.
    held: Vec<Frame>,
    /// Opens the reader's [`ReadGate`] once LOGIN is approved.
    read_gate: Option<oneshot::Sender<()>>,
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
    /// Starts a session actor for `stream` on the current Arbiter. The listener keeps the
    /// connection count: `stream` carries its slot and gives it back when it is dropped.
    pub fn start<S>(id: u64, stream: S, deps: SessionDeps, peer: PeerInfo) -> Addr<Session>
    where
        S: AsyncRead + AsyncWrite + Unpin + 'static,
    {
        let (read_half, write_half) = tokio::io::split(stream);
        let (tx, rx) = mpsc::channel(WRITE_QUEUE_CHUNKS_MAX);
        let max_body = deps.settings.max_body_bytes;
        let stall = Duration::from_millis(u64::from(deps.settings.write_stall_ms_max));
        let metrics = deps.metrics.clone();
        let unwritten = Unwritten::default();
        let writer_unwritten = unwritten.clone();
        let addr = Session::create(|ctx| {
            ctx.set_mailbox_capacity(SESSION_MAILBOX_MAX);
            Session {
                id,
                deps,
                phase: Phase::AwaitingLogin,
                peer,
                inflight: HashMap::new(),
                out: BytesMut::with_capacity(16 * 1024),
                flush_pending: false,
                writer: Some(tx),
                unwritten,
                last_frame_ms: now_ms(),
                network_id: Bytes::new(),
                reader: None,
                held: Vec::new(),
                read_gate: None,
            }
        });
        actix::spawn(async move {
            let end = super::writer::write_loop(write_half, rx, stall, writer_unwritten).await;
            if end == WriteEnd::Stalled {
                metrics.write_stalls.inc();
                tracing::debug!(session = id, "the client does not read; connection dropped");
            }
        });
        let handle = actix::spawn(read_loop(read_half, addr.clone(), max_body));
        addr.do_send(ReaderHandle(handle));
        addr
    }

    /// When LOGIN must be done by: the login deadline after accept.
    fn login_deadline(&self) -> tokio::time::Instant {
        let deadline = Duration::from_millis(u64::from(self.deps.settings.login_deadline_ms));
        self.peer.accepted_at + deadline
    }

    /// Hands LOGIN to the authenticator and waits for its verdict (see [`super::login`]); the
    /// wait ends at the login deadline at the latest.
    fn start_login(&mut self, login: Login, correlation_id: u64, ctx: &mut Context<Self>) {
        self.phase = Phase::Authenticating;
        let deadline = self.login_deadline();
        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
        let network_id = login.network_id.clone();
        let attempt = LoginAttempt {
            peer: self.peer.addr,
            network_id: login.network_id,
            credential: login.credential,
            certificate: self.peer.certificate.clone(),
            wait_ms_max: u64::try_from(wait.as_millis()).unwrap_or(u64::MAX),
        };
        let check = self.deps.auth.check(attempt);
        let verdict = async move { tokio::time::timeout_at(deadline, check).await.ok() };
        // `wait`, not `spawn`: the mailbox (frames, answers, drain) stays shut until the verdict.
        ctx.wait(verdict.into_actor(self).map(move |verdict, this, ctx| {
            this.finish_login(verdict, correlation_id, network_id, ctx);
        }));
    }

    /// Answers LOGIN with the verdict (`None`: the login deadline passed first).
    fn finish_login(
        &mut self,
        verdict: Option<LoginVerdict>,
        correlation_id: u64,
        network_id: Bytes,
        ctx: &mut Context<Self>,
    ) {
        if self.phase != Phase::Authenticating {
            return;
        }
        let network = String::from_utf8_lossy(&network_id).into_owned();
        let refusal = match verdict {
            Some(LoginVerdict::Approved) => {
                self.phase = Phase::LoggedIn;
                self.network_id = network_id;
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
                tracing::info!(session = self.id, %network, "logged in");
                if let Some(gate) = self.read_gate.take() {
                    let _ = gate.send(());
                }
                // What came behind LOGIN in the same read, in order.
                for frame in std::mem::take(&mut self.held) {
                    if self.phase == Phase::Closing {
                        break;
                    }
                    self.handle_frame(frame, ctx);
                }
                self.schedule_flush(ctx);
                return;
            }
            // One answer, with no detail, whatever was wrong: see `LoginVerdict::Refused`.
            Some(LoginVerdict::Refused) => LoginAnswer::refused(ResultCode::AuthFailed),
            Some(LoginVerdict::LockedOut) => LoginAnswer {
                message: Some(Bytes::from_static(LOCKED_OUT_MESSAGE.as_bytes())),
                ..LoginAnswer::refused(ResultCode::AuthFailed)
            },
            Some(LoginVerdict::Busy) => LoginAnswer {
                message: Some(Bytes::from_static(b"login checks at capacity; retry later")),
                ..LoginAnswer::refused(ResultCode::Busy)
            },
            None => {
                self.deps.metrics.login_deadline_closes.inc();
                LoginAnswer {
                    message: Some(Bytes::from_static(b"login not completed in time")),
                    ..LoginAnswer::refused(ResultCode::Busy)
                }
            }
        };
        // Debug only: failed logins are counted, and logged at a bounded rate, by the router.
        tracing::debug!(session = self.id, %network, result = ?refusal.result, "login refused");
        self.held.clear();
        self.send_frame(correlation_id, &Wire::LoginAnswer(refusal));
        self.close(ctx);
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

    fn reject(&mut self, correlation_id: u64, code: ResultCode, message: &str, offset: u32) {
        self.deps.metrics.rejects.inc();
        let reject = Reject {
            result: code,
            message: Bytes::copy_from_slice(message.as_bytes()),
            error_offset: Some(offset),
        };
        self.send_frame(correlation_id, &Wire::Reject(reject));
    }

    /// A REJECT about a frame's body or framing: the error's code, text and offset.
    fn reject_error(&mut self, correlation_id: u64, error: &ProtocolError) {
        self.deps.metrics.rejects.inc();
        self.send_frame(correlation_id, &Wire::Reject(Reject::from_error(error)));
    }

    /// An answer the session gives itself (BUSY, SHUTTING_DOWN): the request's echo, received
    /// and answered now.
    fn answer_here(&mut self, correlation_id: u64, req: &TxnRequest, code: ResultCode) {
        let mut a = TxnAnswer::echo(req, code);
        let now = now_ms();
        (a.received_at_ms, a.answered_at_ms) = (Some(now), Some(now));
        self.answer(correlation_id, a, 0);
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

    /// Hands the output buffer to the writer; disconnects a client that stopped reading: one
    /// with more than [`OUTPUT_BYTES_MAX`] of output waiting, here and in the writer together.
    fn flush(&mut self, ctx: &mut Context<Self>) {
        if self.out.is_empty() {
            return;
        }
        let Some(writer) = &self.writer else { return };
        let waiting = self.out.len() + self.unwritten.load(Ordering::Relaxed);
        let stalled = match writer.try_reserve() {
            _ if waiting > OUTPUT_BYTES_MAX => true,
            Ok(permit) => {
                let chunk = self.out.split().freeze();
                self.unwritten.fetch_add(chunk.len(), Ordering::Relaxed);
                permit.send(chunk);
                false
            }
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
            // Debug only: anyone can cause this; the writer counts the connections it drops
            // (paymesh_write_stalls_total).
            tracing::debug!(
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
        // The type before the body (docs/PROTOCOL.md section 9): before LOGIN anything else is
        // NOT_LOGGED_IN and closes, whatever its type or body; after it, a type a client may
        // not send is UNKNOWN_MESSAGE_TYPE, whatever its body.
        if self.phase == Phase::AwaitingLogin && msg_type != msg_type::LOGIN {
            self.reject(
                correlation_id,
                ResultCode::NotLoggedIn,
                "LOGIN must come first",
                MSG_TYPE_OFFSET,
            );
            self.close(ctx);
            return;
        }
        if !client_type(msg_type) {
            let text = match paymesh_codecs::message::type_name(msg_type) {
                Some(name) => {
                    format!("{name} (type {msg_type:#04x} at byte 3) is not a client message")
                }
                None => format!("unknown message type {msg_type:#04x} at byte 3"),
            };
            self.reject(
                correlation_id,
                ResultCode::UnknownMessageType,
                &text,
                MSG_TYPE_OFFSET,
            );
            return;
        }
        let msg = match Wire::decode(&frame) {
            Ok(m) => m,
            Err(e) => {
                // A well-framed but invalid body: answer it and keep the connection.
                match TxnKind::from_request_type(msg_type) {
                    Some(kind) if self.phase != Phase::AwaitingLogin => {
                        // A method the router does not take is a well-formed body: its answer
                        // echoes like any other. Other body errors echo nothing they name.
                        let mut a = match e.result_code() {
                            code @ ResultCode::UnsupportedPaymentMethod => {
                                TxnAnswer::echo_body(kind, code, &frame.body)
                            }
                            code => TxnAnswer::new(kind, code),
                        };
                        a.message = Some(Bytes::from(e.to_string()));
                        self.answer(correlation_id, a, 0);
                    }
                    _ => self.reject_error(correlation_id, &e),
                }
                if self.phase == Phase::AwaitingLogin {
                    self.close(ctx);
                }
                return;
            }
        };
        match (self.phase, msg) {
            (Phase::AwaitingLogin, Wire::Login(login)) => {
                self.start_login(login, correlation_id, ctx);
            }
            (Phase::AwaitingLogin | Phase::Authenticating, _) => {
                // Frames behind a LOGIN under check are held, never handled here.
                self.reject(
                    correlation_id,
                    ResultCode::NotLoggedIn,
                    "LOGIN must come first",
                    MSG_TYPE_OFFSET,
                );
                self.close(ctx);
            }
            (_, Wire::Login(_)) => self.reject(
                correlation_id,
                ResultCode::AlreadyLoggedIn,
                "already logged in",
                MSG_TYPE_OFFSET,
            ),
            (_, Wire::Heartbeat) => self.send_frame(correlation_id, &Wire::HeartbeatAnswer),
            (Phase::LoggedIn, Wire::Logout) => {
                self.phase = Phase::Draining { correlation_id };
                self.maybe_finish_logout(ctx);
            }
            (Phase::LoggedIn, Wire::Request(req)) => self.admit(req, correlation_id, ctx),
            (Phase::Draining { .. } | Phase::Closing, Wire::Request(req)) => {
                self.answer_here(correlation_id, &req, ResultCode::ShuttingDown);
            }
            (_, other) => {
                let name = other.name();
                self.reject(
                    correlation_id,
                    ResultCode::UnknownMessageType,
                    &format!("{name} is not a client message"),
                    MSG_TYPE_OFFSET,
                );
            }
        }
    }

    fn admit(&mut self, req: TxnRequest, correlation_id: u64, ctx: &mut Context<Self>) {
        if self.inflight.contains_key(&correlation_id) {
            // Correlation id 0, not the frame's: a client matching answers by id must not take
            // this for the answer of the request still in flight under that id (which is
            // answered as usual). The id is in the text.
            self.reject(
                0,
                ResultCode::MalformedFrame,
                &format!(
                    "correlation id {correlation_id} at byte 8 is already in flight; this request was not processed"
                ),
                CORRELATION_ID_OFFSET,
            );
            return;
        }
        if self.inflight.len() >= self.deps.settings.inflight_window as usize {
            self.deps.metrics.busy_window.inc();
            self.answer_here(correlation_id, &req, ResultCode::Busy);
            return;
        }
        let shards = &self.deps.shards;
        let index = match (req.kind, req.server_txn_id) {
            (TxnKind::Inquiry, Some(id)) if req.merchant_id.is_empty() => {
                usize::from(shard_of_txn_id(id)) % shards.addrs.len().max(1)
            }
            _ => shards.index_for_merchant(&req.merchant_id),
        };
        self.inflight.insert(correlation_id, Echo::of(&req));
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
        // While a LOGIN check is awaited this timer waits too; the check's own wait ends at the
        // same deadline.
        let until_deadline = self
            .login_deadline()
            .saturating_duration_since(tokio::time::Instant::now());
        ctx.run_later(until_deadline, |this, ctx| {
            if matches!(this.phase, Phase::AwaitingLogin | Phase::Authenticating) {
                this.deps.metrics.login_deadline_closes.inc();
                tracing::debug!(session = this.id, "no LOGIN by the login deadline; closing");
                this.close(ctx);
            }
        });
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
            let chunk = self.out.split().freeze();
            let len = chunk.len();
            // Counted before the send, so that the writer's subtraction can never come first.
            self.unwritten.fetch_add(len, Ordering::Relaxed);
            if w.try_send(chunk).is_err() {
                self.unwritten.fetch_sub(len, Ordering::Relaxed);
            }
        }
        self.writer = None;
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
    type Result = ReadGate;

    fn handle(&mut self, frames: Frames, ctx: &mut Context<Self>) -> ReadGate {
        self.last_frame_ms = now_ms();
        let mut frames = frames.0.into_iter();
        while let Some(frame) = frames.next() {
            match self.phase {
                Phase::Closing => break,
                Phase::Authenticating => {
                    // A LOGIN of this read is being checked: the rest waits for its verdict.
                    self.held.push(frame);
                    self.held.extend(frames);
                    break;
                }
                _ => self.handle_frame(frame, ctx),
            }
        }
        self.schedule_flush(ctx);
        if self.phase == Phase::Authenticating && self.read_gate.is_none() {
            let (open, gate) = oneshot::channel();
            self.read_gate = Some(open);
            return Some(gate);
        }
        None
    }
}

impl Handler<AnswerBatch> for Session {
    type Result = ();

    fn handle(&mut self, batch: AnswerBatch, ctx: &mut Context<Self>) {
        for item in batch.items {
            if let Some(echo) = self.inflight.remove(&item.correlation_id) {
                let flags = if item.retransmit {
                    flags::RETRANSMIT
                } else {
                    0
                };
                let mut answer = *item.answer;
                if answer.kind == echo.kind {
                    echo.fill(&mut answer);
                }
                self.answer(item.correlation_id, answer, flags);
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
        if let Some((correlation_id, error)) = msg.reject {
            self.reject_error(correlation_id, &error);
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
            Phase::AwaitingLogin | Phase::Authenticating => self.close(ctx),
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
                        && !hand_over(&addr, std::mem::take(&mut frames)).await
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    if !frames.is_empty() {
                        let _ = addr.send(Frames(frames)).await;
                    }
                    let reject = Some((e.correlation_id().unwrap_or(0), e));
                    let _ = addr.send(ReadEnded { reject }).await;
                    return;
                }
            }
        }
        if !frames.is_empty() && !hand_over(&addr, frames).await {
            return;
        }
    }
}

/// Hands frames to the session, then waits while it holds the reader back (a LOGIN under
/// check). False when the session is gone.
async fn hand_over(addr: &Addr<Session>, frames: Vec<Frame>) -> bool {
    match addr.send(Frames(frames)).await {
        Ok(Some(gate)) => {
            // Dropped unopened: the session closed, and this task is about to be stopped.
            let _ = gate.await;
            true
        }
        Ok(None) => true,
        Err(_) => false,
    }
}
