//! One client connection: connect (TCP or TLS), LOGIN, then the pipelined send/receive loop that
//! keeps up to `depth` requests outstanding, paced by its [`Pacer`], checking every answer.
//!
//! One task per connection owns everything it touches (socket halves, buffers, outstanding table,
//! workload, figures), so the hot path takes no lock: it shares only the once-a-second series and
//! the progress counters.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, Frame, decode_frame};
use paymesh_codecs::message::{Login, Message, msg_type};
use paymesh_codecs::types::Secret;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, timeout};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::check::{Outstanding, Pending, ProtocolFault, Verdict, check_frame};
use crate::config::{
    CONNECT_TIMEOUT_MS, DRAIN_TIMEOUT_MS, LOGIN_TIMEOUT_MS, LoadConfig,
    OUTSTANDING_PER_CONNECTION_MAX, Peer, RUN_SECONDS_MAX, STALL_TIMEOUT_MS,
};
use crate::error::LoadError;
use crate::schedule::{Next, Pacer};
use crate::stats::{ConnStats, Live, SharedSeries};
use crate::workload::{ApprovedOrder, Workload};

/// Read buffer of a connection, bytes.
const READ_BUFFER_BYTES: usize = 64 * 1024;
/// Requests encoded before the write buffer is handed to the socket, bytes.
const WRITE_BUFFER_BYTES_MAX: usize = 64 * 1024;
/// Correlation id of LOGIN, HEARTBEAT and LOGOUT (never one of a request: see `check`).
const SESSION_CORRELATION_ID: u64 = 1;
/// How long to wait for LOGOUT_ANSWER at the end.
const LOGOUT_TIMEOUT_MS: u64 = 1_000;
/// Heartbeat interval used when the server announces none.
const HEARTBEAT_INTERVAL_DEFAULT_MS: u64 = 30_000;
/// The client software name sent in LOGIN.
const CLIENT_SOFTWARE: &str = concat!("paymesh-loadtest/", env!("CARGO_PKG_VERSION"));

/// How to reach the server.
#[derive(Debug, Clone)]
pub struct Dial {
    /// The resolved address.
    pub addr: SocketAddr,
    /// TLS client configuration and server name, for TLS runs.
    pub tls: Option<(Arc<ClientConfig>, ServerName<'static>)>,
}

/// A logged-in connection, ready to drive.
#[derive(Debug)]
pub enum Session {
    /// Plain TCP.
    Plain(LoggedIn<TcpStream>),
    /// TLS over TCP.
    Tls(LoggedIn<Box<TlsStream<TcpStream>>>),
}

/// A stream after a successful LOGIN, with what the server announced.
#[derive(Debug)]
pub struct LoggedIn<S> {
    stream: S,
    /// Bytes read past LOGIN_ANSWER.
    read_buf: BytesMut,
    /// The server's `inflight_window` (none from the echo server).
    pub window: Option<u32>,
    heartbeat: Duration,
}

impl Session {
    /// The window the server announced at login.
    pub fn window(&self) -> Option<u32> {
        match self {
            Session::Plain(s) => s.window,
            Session::Tls(s) => s.window,
        }
    }
}

/// Opens one connection and logs in.
pub async fn open(dial: &Dial, config: &LoadConfig) -> Result<Session, LoadError> {
    let connect = TcpStream::connect(dial.addr);
    let connect_error = |source| LoadError::Connect {
        addr: dial.addr,
        source,
    };
    let tcp = timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect)
        .await
        .map_err(|_| connect_error(std::io::ErrorKind::TimedOut.into()))?
        .map_err(connect_error)?;
    tcp.set_nodelay(true).map_err(connect_error)?;
    match &dial.tls {
        None => Ok(Session::Plain(login(tcp, config).await?)),
        Some((client_config, name)) => {
            let handshake = TlsConnector::from(client_config.clone()).connect(name.clone(), tcp);
            let tls = timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), handshake)
                .await
                .map_err(|_| LoadError::Tls("handshake timed out".to_owned()))?
                .map_err(|e| LoadError::Tls(format!("handshake with {}: {e}", dial.addr)))?;
            Ok(Session::Tls(login(Box::new(tls), config).await?))
        }
    }
}

/// Sends LOGIN and waits for LOGIN_ANSWER.
async fn login<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    config: &LoadConfig,
) -> Result<LoggedIn<S>, LoadError> {
    let message = Message::Login(Login {
        network_id: Bytes::from(config.network_id.clone()),
        credential: Secret::new(Bytes::from(config.credential.clone())),
        client_software: Some(Bytes::from_static(CLIENT_SOFTWARE.as_bytes())),
    });
    let mut out = BytesMut::new();
    message.encode(SESSION_CORRELATION_ID, 0, &mut out);
    stream.write_all(&out).await?;
    stream.flush().await?;
    let mut read_buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let frame = timeout(
        Duration::from_millis(LOGIN_TIMEOUT_MS),
        read_frame(&mut stream, &mut read_buf),
    )
    .await
    .map_err(|_| LoadError::Login("no LOGIN_ANSWER in time".to_owned()))??;
    let default_heartbeat = Duration::from_millis(HEARTBEAT_INTERVAL_DEFAULT_MS);
    if config.peer == Peer::Echo {
        if frame.header.msg_type != msg_type::LOGIN_ANSWER {
            return Err(LoadError::Login(format!(
                "echo answered type {:#04x}",
                frame.header.msg_type
            )));
        }
        return Ok(LoggedIn {
            stream,
            read_buf,
            window: None,
            heartbeat: default_heartbeat,
        });
    }
    match Message::decode(&frame) {
        Ok(Message::LoginAnswer(answer)) if answer.result.is_approved() => Ok(LoggedIn {
            stream,
            read_buf,
            window: answer.inflight_window,
            heartbeat: answer
                .heartbeat_interval_ms
                .map_or(default_heartbeat, |ms| {
                    Duration::from_millis(u64::from(ms.max(1)))
                }),
        }),
        Ok(Message::LoginAnswer(answer)) => {
            Err(LoadError::Login(format!("refused: {}", answer.result)))
        }
        Ok(Message::Reject(reject)) => {
            Err(LoadError::Login(format!("rejected: {}", reject.result)))
        }
        Ok(other) => Err(LoadError::Login(format!("answered with {}", other.name()))),
        Err(e) => Err(LoadError::Login(format!("undecodable LOGIN_ANSWER: {e}"))),
    }
}

/// Reads until one whole frame is buffered.
async fn read_frame<S: AsyncRead + Unpin>(
    stream: &mut S,
    buf: &mut BytesMut,
) -> Result<Frame, LoadError> {
    loop {
        match decode_frame(buf, FRAME_BODY_BYTES_MAX) {
            Ok(Some(frame)) => return Ok(frame),
            Ok(None) => {}
            Err(e) => return Err(LoadError::Login(format!("broken frame: {e}"))),
        }
        if stream.read_buf(buf).await? == 0 {
            return Err(LoadError::Login(
                "the server closed the connection".to_owned(),
            ));
        }
    }
}

/// What a connection's driver shares with the run.
#[derive(Debug, Clone)]
pub struct Shared {
    /// The run's configuration.
    pub config: Arc<LoadConfig>,
    /// The run's time series.
    pub series: SharedSeries,
    /// Progress counters.
    pub live: Arc<Live>,
    /// When the run started (time zero of every offset).
    pub start: Instant,
}

/// Drives a logged-in session until its pacer is done and its answers are in.
pub async fn drive(
    session: Session,
    pacer: Pacer,
    workload: Workload,
    shared: Shared,
) -> ConnStats {
    match session {
        Session::Plain(s) => {
            let (driver, stream) = Driver::new(s, pacer, workload, shared);
            driver.run(stream).await
        }
        Session::Tls(s) => {
            let (driver, stream) = Driver::new(s, pacer, workload, shared);
            driver.run(stream).await
        }
    }
}

/// What [`Driver::fill`] stopped at.
enum Fill {
    /// The next request is due at this offset from the run's start.
    Due(Duration),
    /// No room (outstanding table or write buffer full): wait for answers or the socket.
    Full,
    /// The pacer is done: no more requests.
    Done,
}

struct Driver {
    read_buf: BytesMut,
    heartbeat: Duration,
    pacer: Pacer,
    workload: Workload,
    shared: Shared,
    outstanding: Outstanding,
    stats: ConnStats,
    /// Figures not yet added to the progress counters: sent, answered, errors.
    unreported: (u64, u64, u64),
}

impl Driver {
    fn new<S>(session: LoggedIn<S>, pacer: Pacer, workload: Workload, shared: Shared) -> (Self, S) {
        let LoggedIn {
            stream,
            read_buf,
            window,
            heartbeat,
        } = session;
        let window = window.map_or(usize::MAX, |w| w.max(1) as usize);
        let depth = shared
            .config
            .depth
            .min(window)
            .min(OUTSTANDING_PER_CONNECTION_MAX);
        let driver = Driver {
            read_buf,
            heartbeat,
            pacer,
            workload,
            shared,
            outstanding: Outstanding::new(depth),
            stats: ConnStats::default(),
            unreported: (0, 0, 0),
        };
        (driver, stream)
    }

    fn now_us(&self) -> u64 {
        self.shared.start.elapsed().as_micros() as u64
    }

    /// Encodes every request that is due and fits into `out`.
    fn fill(&mut self, out: &mut BytesMut) -> Fill {
        while self.outstanding.has_room() && out.len() < WRITE_BUFFER_BYTES_MAX {
            let now = self.shared.start.elapsed();
            let (intended, measured) = match self.pacer.next(now) {
                Next::Send { intended, measured } => (intended, measured),
                Next::WaitUntil(due) => return Fill::Due(due),
                Next::Done => return Fill::Done,
            };
            let planned = self.workload.next_request();
            let request = &planned.request;
            let pending = Pending {
                txn_type: planned.txn_type,
                msg_type: request.kind.request_type(),
                order: planned.order,
                order_id: request.order_id.clone(),
                amount: request.amount,
                body_len: 0,
                intended_us: intended.as_micros() as u64,
                sent_us: now.as_micros() as u64,
                measured,
            };
            let Some(correlation_id) = self.outstanding.insert(pending) else {
                break;
            };
            let start = out.len();
            Message::Request(planned.request).encode(correlation_id, 0, out);
            let frame_len = out.len() - start;
            let body_len = frame_len.saturating_sub(FRAME_HEADER_BYTES);
            self.outstanding
                .set_body_len(correlation_id, body_len as u32);
            self.stats
                .sent(planned.txn_type, measured, planned.substituted, frame_len);
            self.unreported.0 += 1;
        }
        Fill::Full
    }

    /// Checks every buffered frame; false when the stream broke.
    fn receive(&mut self) -> bool {
        let now_us = self.now_us();
        let peer = self.shared.config.peer;
        loop {
            let frame = match decode_frame(&mut self.read_buf, FRAME_BODY_BYTES_MAX) {
                Ok(Some(frame)) => frame,
                Ok(None) => return true,
                Err(_) => {
                    self.stats
                        .fault(ProtocolFault::Framing, false, now_us, &self.shared.series);
                    self.unreported.2 += 1;
                    return false;
                }
            };
            let session_answer = matches!(
                frame.header.msg_type,
                msg_type::HEARTBEAT_ANSWER | msg_type::LOGOUT_ANSWER
            );
            if session_answer && frame.header.correlation_id == SESSION_CORRELATION_ID {
                continue;
            }
            let verdict = check_frame(&mut self.outstanding, &frame, peer);
            self.count(verdict, now_us);
        }
    }

    fn count(&mut self, verdict: Verdict, now_us: u64) {
        let series = &self.shared.series;
        match verdict {
            Verdict::Answered { pending, result } => {
                self.stats
                    .answered(&pending, result.as_u16(), now_us, series);
                self.unreported.1 += 1;
                if result.is_approved() {
                    let order = ApprovedOrder {
                        key: pending.order,
                        amount: pending.amount.unwrap_or(0),
                    };
                    self.workload.pool.approved(pending.txn_type, order);
                }
            }
            Verdict::Mismatch { mismatch, pending } => {
                self.stats
                    .mismatch(mismatch, pending.is_some(), now_us, series);
                self.unreported.1 += u64::from(pending.is_some());
                self.unreported.2 += 1;
            }
            Verdict::Fault { fault, pending } => {
                self.stats.fault(fault, pending.is_some(), now_us, series);
                self.unreported.1 += u64::from(pending.is_some());
                self.unreported.2 += 1;
            }
            Verdict::Ignored => {}
        }
    }

    fn report_progress(&mut self) {
        let (sent, answered, errors) = std::mem::take(&mut self.unreported);
        if sent + answered + errors > 0 {
            self.shared.live.add(sent, answered, errors);
        }
    }

    /// The send/receive loop; returns the connection's figures.
    async fn run<S: AsyncRead + AsyncWrite + Unpin>(mut self, stream: S) -> ConnStats {
        let start = tokio::time::Instant::from_std(self.shared.start);
        let far = tokio::time::Instant::now() + Duration::from_secs(RUN_SECONDS_MAX * 2);
        let at = |offset: Duration| start.checked_add(offset).unwrap_or(far);
        let end = self.pacer.end().map_or(far, at);
        let stall = Duration::from_millis(STALL_TIMEOUT_MS);
        let (mut reader, mut writer) = tokio::io::split(stream);
        let mut out = BytesMut::with_capacity(2 * WRITE_BUFFER_BYTES_MAX);
        let (mut sending, mut flushing, mut broken, mut closed) = (true, false, false, false);
        let mut drain_deadline = far;
        let mut last_write = tokio::time::Instant::now();
        let mut last_answer = last_write;
        loop {
            let mut due = far;
            if sending {
                let was_idle = self.outstanding.is_empty();
                match self.fill(&mut out) {
                    Fill::Due(offset) => due = at(offset),
                    Fill::Full => {}
                    Fill::Done => sending = false,
                }
                // The stall clock starts when the first request of a quiet spell goes out, so that a
                // slow open-loop rate does not look like a stalled server.
                if was_idle && !self.outstanding.is_empty() {
                    last_answer = tokio::time::Instant::now();
                }
                if !sending {
                    drain_deadline =
                        tokio::time::Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
                }
            }
            if !sending && self.outstanding.is_empty() && out.is_empty() {
                break;
            }
            let must_write = !out.is_empty() || flushing;
            if self.read_buf.capacity() - self.read_buf.len() < READ_BUFFER_BYTES / 4 {
                // Reclaims the space of frames already checked (or grows once for a big frame).
                self.read_buf.reserve(READ_BUFFER_BYTES);
            }
            tokio::select! {
                read = reader.read_buf(&mut self.read_buf) => {
                    if !matches!(read, Ok(n) if n > 0) {
                        (broken, closed) = (true, true);
                        break;
                    }
                    if !self.receive() {
                        // Counted as a framing fault; the stream cannot be trusted any more.
                        broken = true;
                        break;
                    }
                    last_answer = tokio::time::Instant::now();
                    self.report_progress();
                }
                written = write_some(&mut writer, &mut out), if must_write => {
                    match written {
                        Ok(WriteStep::Wrote) => {
                            last_write = tokio::time::Instant::now();
                            flushing = out.is_empty();
                            if flushing {
                                out.clear();
                            }
                        }
                        Ok(WriteStep::Flushed) => flushing = false,
                        Err(_) => {
                            (broken, closed) = (true, true);
                            break;
                        }
                    }
                }
                _ = sleep_until(due), if sending && due != far => {}
                _ = sleep_until(end), if sending => {
                    sending = false;
                    drain_deadline = tokio::time::Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
                }
                _ = sleep_until(drain_deadline), if !sending => break,
                _ = sleep_until(last_answer + stall), if !self.outstanding.is_empty() => {
                    tracing::warn!("no answer for {STALL_TIMEOUT_MS} ms: giving up this connection");
                    break;
                }
                _ = sleep_until(last_write + self.heartbeat), if out.is_empty() && !flushing => {
                    Message::Heartbeat.encode(SESSION_CORRELATION_ID, 0, &mut out);
                }
            }
        }
        let now_us = self.now_us();
        let left = self.outstanding.drain().len() as u64;
        // A connection the server closed before the run was done is a fault, whether or not
        // requests were outstanding; those that were are also counted unanswered.
        if closed {
            self.stats.fault(
                ProtocolFault::ConnectionClosed,
                false,
                now_us,
                &self.shared.series,
            );
        }
        self.stats.unanswered += left;
        if !broken {
            logout(&mut reader, &mut writer, &mut self.read_buf).await;
        }
        self.stats.flush(&self.shared.series);
        self.report_progress();
        self.stats
    }
}

/// One step of writing: some bytes of `out`, or the flush once it is empty.
enum WriteStep {
    Wrote,
    Flushed,
}

async fn write_some<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut BytesMut,
) -> std::io::Result<WriteStep> {
    if out.is_empty() {
        writer.flush().await?;
        return Ok(WriteStep::Flushed);
    }
    // `write_buf` is one write call: cancelled by select!, it has written nothing.
    match writer.write_buf(out).await? {
        0 => Err(std::io::ErrorKind::WriteZero.into()),
        _ => Ok(WriteStep::Wrote),
    }
}

/// LOGOUT, then waits briefly for LOGOUT_ANSWER or the close; failures do not matter any more.
async fn logout<R: AsyncRead + Unpin, W: AsyncWrite + Unpin>(
    reader: &mut R,
    writer: &mut W,
    buf: &mut BytesMut,
) {
    let mut out = BytesMut::new();
    Message::Logout.encode(SESSION_CORRELATION_ID, 0, &mut out);
    let exchange = async {
        writer.write_all(&out).await?;
        writer.flush().await?;
        loop {
            while let Ok(Some(frame)) = decode_frame(buf, FRAME_BODY_BYTES_MAX) {
                if frame.header.msg_type == msg_type::LOGOUT_ANSWER {
                    return Ok(());
                }
            }
            if reader.read_buf(buf).await? == 0 {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    let _ = timeout(Duration::from_millis(LOGOUT_TIMEOUT_MS), exchange).await;
    let _ = writer.shutdown().await;
}
