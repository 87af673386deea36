//! The check of the `session_stream` target, shared with the corpus replay test
//! (`codecs/tests/fuzz_corpus.rs`).
//!
//! Everything the router's session (`actors/src/mesh/session.rs`) does with a peer's bytes before
//! anything reaches a shard, through the codec calls it makes: its reader splits frames off a
//! buffer that grows one read at a time with `decode_frame` and the session's `max_body_bytes`;
//! `handle_frame` decodes each frame with `Message::decode` and answers by session phase (LOGIN
//! first, then requests, HEARTBEAT, LOGOUT); `admit` refuses a correlation id already in flight
//! and answers BUSY beyond the in-flight window. The session itself needs actix, a credential
//! store and shards, so this check drives the same codec calls through a model of those
//! decisions ([`Session`]) and asserts on everything they produce:
//!
//! - Streaming: the stream cut into several reads gives the same frames, the same error and the
//!   same unconsumed bytes as one read. A decode consumes exactly one frame's bytes or nothing,
//!   never more than it was given, and no body is over the session's limit.
//! - Framing errors close the connection and carry a result code; their REJECT encodes.
//! - Body errors keep the connection, carry a result code and an offset inside the frame that
//!   points at the field named (or at the end of the body for a missing field); the answer or
//!   REJECT the session sends for them encodes and decodes.
//! - A decoded LOGIN or request satisfies the rules of docs/PROTOCOL.md section 5 (required
//!   fields, amount and currency ranges, CVV only with a card on AUTHORIZE and SALE...), re-encodes
//!   to a message equal to itself, only with fields it was given, and to the very same bytes when
//!   the frame was canonical (fields in ascending tag order, none ignored, reserved bytes zero).
//! - `Debug` of a decoded message shows neither a full PAN nor the credential.
//! - Every frame the session writes back decodes, and re-encodes to the same bytes.
//!
//! Input layout: max body (u16, big-endian; the router allows 256..=16384, anything is tried);
//! one byte whose top bit ([`REPAIR_CHECKSUMS`]) asks for the frames' checksums to be set right
//! and whose other bits are the number of cuts `n` (taken modulo [`CUTS_MAX`] + 1); `n` read
//! lengths (u16 each, each taken modulo what is left + 1); then the stream. The last read is what
//! remains. Without the repair, a mutation inside a frame almost always meets a checksum mismatch,
//! and the message decoding behind it is hardly reached.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::ProtocolError;
use paymesh_codecs::body::{FieldIter, RawField, tag};
use paymesh_codecs::frame::{
    FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, Frame, FrameHeader, MAGIC, VERSION, decode_frame,
    encode_frame,
};
use paymesh_codecs::message::{
    Login, LoginAnswer, Message, PaymentMethod, Reject, TxnAnswer, TxnKind, TxnRequest,
};
use paymesh_codecs::types::{AMOUNT_MINOR_MAX, Currency, ResultCode, Secret};

/// Most cuts an input can ask for: the stream arrives in at most this many reads plus one.
pub const CUTS_MAX: usize = 8;
/// The model session's in-flight window: small, so that inputs reach BUSY.
const INFLIGHT_WINDOW: usize = 4;

/// Runs one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let (max_body, stream) = (input.max_body, input.stream.as_slice());
    let whole = decode_stream(&[stream], max_body);
    let split = decode_stream(&input.reads(), max_body);
    assert_eq!(split.frames, whole.frames, "frames differ across reads");
    assert_eq!(split.error, whole.error, "errors differ across reads");
    if whole.error.is_none() {
        assert_eq!(
            split.rest, whole.rest,
            "unconsumed bytes differ across reads"
        );
    }
    let consumed: usize = whole.frames.iter().map(frame_len).sum();
    assert_eq!(consumed + whole.rest.len(), stream.len());

    let mut session = Session::new();
    let mut at = 0;
    for frame in &whole.frames {
        let raw = stream.get(at..at + frame_len(frame)).unwrap_or_default();
        at += frame_len(frame);
        if session.phase == Phase::Closing {
            break;
        }
        session.handle_frame(frame, raw);
    }
    if let Some(error) = &whole.error
        && session.phase != Phase::Closing
    {
        session.read_ended(error, &whole.rest);
    }
    session.check_output();
}

/// Bit of the input's third byte that asks for every frame's checksum to be set right.
pub const REPAIR_CHECKSUMS: u8 = 0x80;

/// One input, taken apart (see the module docs for the layout).
#[derive(Debug)]
struct Input {
    /// The session's `max_body_bytes`.
    max_body: u32,
    /// Lengths of the reads that deliver the stream, but the last.
    read_lengths: Vec<usize>,
    /// The whole stream.
    stream: Vec<u8>,
}

impl Input {
    fn parse(data: &[u8]) -> Option<Input> {
        let (&[b0, b1, n], rest) = data.split_first_chunk::<3>()?;
        let cuts = usize::from(n & !REPAIR_CHECKSUMS) % (CUTS_MAX + 1);
        let (lengths, stream) = rest.split_at_checked(2 * cuts)?;
        let mut stream = stream.to_vec();
        if n & REPAIR_CHECKSUMS != 0 {
            repair_checksums(&mut stream);
        }
        let mut left = stream.len();
        let mut read_lengths = Vec::with_capacity(cuts);
        for length in lengths.chunks_exact(2) {
            let length = usize::from(u16::from_be_bytes([length[0], length[1]])) % (left + 1);
            read_lengths.push(length);
            left -= length;
        }
        Some(Input {
            max_body: u32::from(u16::from_be_bytes([b0, b1])),
            read_lengths,
            stream,
        })
    }

    /// The stream as the reads that deliver it.
    fn reads(&self) -> Vec<&[u8]> {
        let mut reads = Vec::with_capacity(self.read_lengths.len() + 1);
        let mut left = self.stream.as_slice();
        for &length in &self.read_lengths {
            let (read, after) = left.split_at(length);
            reads.push(read);
            left = after;
        }
        reads.push(left);
        reads
    }
}

/// Sets the checksum of every frame whose header would otherwise pass (magic, version, a body
/// within the stream and under the largest limit), in stream order, writing the header as the
/// encoder does (reserved bytes zero). Stops at the first frame it cannot repair: the decoder
/// stops there too.
fn repair_checksums(stream: &mut [u8]) {
    let mut at = 0;
    while let Some(&header) = stream
        .get(at..)
        .and_then(|s| s.first_chunk::<FRAME_HEADER_BYTES>())
    {
        #[rustfmt::skip]
        let [
            m0, m1, version, msg_type, f0, f1, _, _,
            c0, c1, c2, c3, c4, c5, c6, c7,
            l0, l1, l2, l3, _, _, _, _,
        ] = header;
        let body_len = u32::from_be_bytes([l0, l1, l2, l3]);
        if [m0, m1] != MAGIC || version != VERSION || body_len > FRAME_BODY_BYTES_MAX {
            return;
        }
        let end = at + FRAME_HEADER_BYTES + body_len as usize;
        let Some(body) = stream.get(at + FRAME_HEADER_BYTES..end) else {
            return;
        };
        let header = FrameHeader {
            version,
            msg_type,
            flags: u16::from_be_bytes([f0, f1]),
            correlation_id: u64::from_be_bytes([c0, c1, c2, c3, c4, c5, c6, c7]),
        };
        let mut frame = BytesMut::new();
        encode_frame(&header, body, &mut frame);
        if let Some(slot) = stream.get_mut(at..end) {
            slot.copy_from_slice(&frame);
        }
        at = end;
    }
}

fn frame_len(frame: &Frame) -> usize {
    FRAME_HEADER_BYTES + frame.body.len()
}

/// What the session's reader gets from a stream: frames until the first framing error.
#[derive(Debug)]
struct Decoded {
    frames: Vec<Frame>,
    error: Option<ProtocolError>,
    rest: BytesMut,
}

/// The reader's loop: append a read, split off every whole frame, stop at a framing error.
fn decode_stream(reads: &[&[u8]], max_body: u32) -> Decoded {
    let limit = max_body.min(FRAME_BODY_BYTES_MAX) as usize;
    let mut decoded = Decoded {
        frames: Vec::new(),
        error: None,
        rest: BytesMut::new(),
    };
    for read in reads {
        decoded.rest.extend_from_slice(read);
        loop {
            let before = decoded.rest.len();
            match decode_frame(&mut decoded.rest, max_body) {
                Ok(Some(frame)) => {
                    assert!(frame.body.len() <= limit, "body over the session's limit");
                    assert_eq!(before - decoded.rest.len(), frame_len(&frame));
                    decoded.frames.push(frame);
                }
                Ok(None) => {
                    assert_eq!(decoded.rest.len(), before, "need-more consumed bytes");
                    break;
                }
                Err(error) => {
                    assert_eq!(decoded.rest.len(), before, "an error consumed bytes");
                    decoded.error = Some(error);
                    return decoded;
                }
            }
        }
    }
    decoded
}

/// The session phases of `session.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    AwaitingLogin,
    LoggedIn,
    Draining,
    Closing,
}

/// The decisions of `Session::handle_frame` and `Session::admit`, with every LOGIN accepted and no
/// request ever answered by a shard (so the window fills).
#[derive(Debug)]
struct Session {
    phase: Phase,
    inflight: HashSet<u64>,
    /// Every message written back, with its correlation id and flags, in order.
    sent: Vec<(u64, u16, Message)>,
}

impl Session {
    fn new() -> Session {
        Session {
            phase: Phase::AwaitingLogin,
            inflight: HashSet::new(),
            sent: Vec::new(),
        }
    }

    fn send(&mut self, correlation_id: u64, flags: u16, message: Message) {
        self.sent.push((correlation_id, flags, message));
    }

    fn reject(&mut self, correlation_id: u64, result: ResultCode, message: &str) {
        let reject = Reject {
            result,
            message: Bytes::copy_from_slice(message.as_bytes()),
            error_offset: None,
        };
        self.send(correlation_id, 0, Message::Reject(reject));
    }

    /// `Session::handle_frame`, with the codec-level checks of what it decoded.
    fn handle_frame(&mut self, frame: &Frame, raw: &[u8]) {
        let correlation_id = frame.header.correlation_id;
        let message = match Message::decode(frame) {
            Ok(message) => message,
            Err(error) => {
                check_body_error(&error, frame);
                match TxnKind::from_request_type(frame.header.msg_type) {
                    Some(kind) if self.phase != Phase::AwaitingLogin => {
                        let mut answer = TxnAnswer::new(kind, error.result_code());
                        answer.message = Some(Bytes::from(error.to_string()));
                        self.send(correlation_id, 0, Message::Answer(answer));
                    }
                    _ => self.reject(correlation_id, error.result_code(), &error.to_string()),
                }
                if self.phase == Phase::AwaitingLogin {
                    self.phase = Phase::Closing;
                }
                return;
            }
        };
        check_message(&message, frame, raw);
        match (self.phase, message) {
            (Phase::AwaitingLogin, Message::Login(_)) => {
                self.phase = Phase::LoggedIn;
                let answer = LoginAnswer {
                    result: ResultCode::Approved,
                    session_id: Some(1),
                    inflight_window: Some(INFLIGHT_WINDOW as u32),
                    heartbeat_interval_ms: Some(30_000),
                    idle_timeout_ms: Some(90_000),
                    max_body_bytes: Some(FRAME_BODY_BYTES_MAX),
                    server_time_ms: Some(1_795_000_000_000),
                    message: None,
                };
                self.send(correlation_id, 0, Message::LoginAnswer(answer));
            }
            (Phase::AwaitingLogin, _) => {
                self.reject(
                    correlation_id,
                    ResultCode::NotLoggedIn,
                    "LOGIN must come first",
                );
                self.phase = Phase::Closing;
            }
            (_, Message::Login(_)) => {
                self.reject(
                    correlation_id,
                    ResultCode::AlreadyLoggedIn,
                    "already logged in",
                );
            }
            (_, Message::Heartbeat) => self.send(correlation_id, 0, Message::HeartbeatAnswer),
            (Phase::LoggedIn, Message::Logout) => {
                // Nothing is ever answered here, so LOGOUT_ANSWER waits for in-flight requests
                // only when there are none.
                self.phase = Phase::Draining;
                if self.inflight.is_empty() {
                    self.send(correlation_id, 0, Message::LogoutAnswer);
                    self.phase = Phase::Closing;
                }
            }
            (Phase::LoggedIn, Message::Request(request)) => self.admit(request, correlation_id),
            (Phase::Draining | Phase::Closing, Message::Request(request)) => {
                let answer = TxnAnswer::new(request.kind, ResultCode::ShuttingDown);
                self.send(correlation_id, 0, Message::Answer(answer));
            }
            (phase, other) => {
                let text = format!("{} is not a client message", other.name());
                // Logged in, every client message has its own arm above. (While draining, a
                // second LOGOUT lands here too.)
                assert!(
                    phase != Phase::LoggedIn || !other.is_from_client(),
                    "{text}"
                );
                self.reject(correlation_id, ResultCode::UnknownMessageType, &text);
            }
        }
    }

    /// `Session::admit` up to the hand-over to a shard.
    fn admit(&mut self, request: TxnRequest, correlation_id: u64) {
        if self.inflight.contains(&correlation_id) {
            let text = "correlation id already in flight";
            self.reject(correlation_id, ResultCode::MalformedFrame, text);
            return;
        }
        if self.inflight.len() >= INFLIGHT_WINDOW {
            let answer = TxnAnswer::echo(&request, ResultCode::Busy);
            self.send(correlation_id, 0, Message::Answer(answer));
            return;
        }
        if request.kind == TxnKind::Inquiry && request.merchant_id.is_empty() {
            // Routed by the shard that the server transaction id names.
            assert!(request.server_txn_id.is_some());
        }
        self.inflight.insert(correlation_id);
    }

    /// The reader's framing error (`ReadEnded`): REJECT with the frame's correlation id when the
    /// header could be read, then close.
    fn read_ended(&mut self, error: &ProtocolError, rest: &[u8]) {
        assert!(error.closes_connection(), "{error}");
        assert!(matches!(
            error.result_code(),
            ResultCode::MalformedFrame
                | ResultCode::UnsupportedVersion
                | ResultCode::FrameTooLarge
                | ResultCode::ChecksumMismatch
        ));
        assert!(error.offset() < FRAME_HEADER_BYTES);
        if let Some(correlation_id) = error.correlation_id() {
            let carried = rest.get(8..16).and_then(|b| <[u8; 8]>::try_from(b).ok());
            assert_eq!(carried.map(u64::from_be_bytes), Some(correlation_id));
        }
        let code = error.result_code();
        self.reject(
            error.correlation_id().unwrap_or(0),
            code,
            &error.to_string(),
        );
        self.phase = Phase::Closing;
    }

    /// Encodes everything the session wrote into one output buffer, as the session does, and reads
    /// it back as a client would.
    fn check_output(&self) {
        let mut out = BytesMut::new();
        for (correlation_id, flags, message) in &self.sent {
            message.encode(*correlation_id, *flags, &mut out);
        }
        for (correlation_id, flags, sent) in &self.sent {
            let frame = decode_frame(&mut out, FRAME_BODY_BYTES_MAX)
                .unwrap()
                .unwrap();
            assert_eq!(frame.header.correlation_id, *correlation_id);
            assert_eq!(frame.header.flags, *flags);
            let read = Message::decode(&frame).unwrap();
            assert!(!read.is_from_client());
            assert_eq!(read.msg_type(), sent.msg_type());
            let (mut again, mut written) = (BytesMut::new(), BytesMut::new());
            read.encode(*correlation_id, *flags, &mut again);
            encode_frame(&frame.header, &frame.body, &mut written);
            assert_eq!(again, written, "a written frame re-encodes differently");
            match (sent, &read) {
                (Message::Reject(sent), Message::Reject(read)) => {
                    assert_eq!(read.result, sent.result);
                    assert!(sent.message.starts_with(&read.message));
                }
                (Message::Answer(sent), Message::Answer(read)) if sent.message.is_some() => {
                    assert_eq!(read.result, sent.result);
                    let (sent, read) = (sent.message.as_ref(), read.message.as_ref());
                    assert!(sent.zip(read).is_some_and(|(s, r)| s.starts_with(r)));
                }
                _ => assert_eq!(&read, sent),
            }
        }
        assert!(out.is_empty());
    }
}

/// A body error (`Message::decode` failed on a well-framed message).
fn check_body_error(error: &ProtocolError, frame: &Frame) {
    assert!(!error.closes_connection(), "{error}");
    let code = error.result_code();
    assert!(
        matches!(
            code,
            ResultCode::InvalidRequest
                | ResultCode::UnknownMessageType
                | ResultCode::UnknownCriticalField
                | ResultCode::UnsupportedPaymentMethod
        ),
        "{error}: {code:?}"
    );
    let end = FRAME_HEADER_BYTES + frame.body.len();
    let offset = error.offset();
    if let ProtocolError::UnknownMessageType { msg_type } = error {
        assert_eq!(*msg_type, frame.header.msg_type);
        assert_eq!(offset, 3);
    } else {
        assert!((FRAME_HEADER_BYTES..=end).contains(&offset), "{error}");
    }
    let field_at = |offset: usize| {
        FieldIter::new(&frame.body)
            .map_while(Result::ok)
            .find(|field| FRAME_HEADER_BYTES + field.offset == offset)
    };
    match error {
        ProtocolError::MissingField { tag, .. } => {
            assert_eq!(offset, end);
            assert!(fields(&frame.body).iter().all(|field| field.tag != *tag));
        }
        ProtocolError::TruncatedField { .. } | ProtocolError::ReservedTag { .. } => {
            assert!(offset < end);
        }
        _ => {
            if let Some(tag) = error.tag() {
                let field = field_at(offset);
                assert_eq!(field.map(|f| f.tag), Some(tag), "{error}");
            }
        }
    }
    assert_no_card_number(error);
    let reject = Reject::from_error(error);
    assert_eq!(reject.error_offset, u32::try_from(offset).ok());
}

/// The fields of a body that decoded (so it has no truncated field).
fn fields(body: &Bytes) -> Vec<RawField<'_>> {
    FieldIter::new(body).map_while(Result::ok).collect()
}

/// Besides its fixed wording, an error's text holds only numbers of at most five digits (offsets,
/// tags, lengths), so it cannot carry a card number (12 digits at least) to a REJECT or a log.
fn assert_no_card_number(error: &ProtocolError) {
    let mut text = error.to_string();
    if let ProtocolError::BadFieldValue { reason, .. } = error {
        text = text.replace(reason, "");
    }
    let mut run = 0;
    for c in text.chars() {
        run = if c.is_ascii_digit() { run + 1 } else { 0 };
        assert!(run <= 5, "a number of {run} digits in {text:?}");
    }
}

/// A message `Message::decode` accepted from a client's frame.
fn check_message(message: &Message, frame: &Frame, raw: &[u8]) {
    assert_eq!(message.msg_type(), frame.header.msg_type);
    match message {
        Message::Login(login) => check_login(login),
        Message::Request(request) => check_request(request),
        _ => {}
    }
    check_re_encoding(message, frame, raw);
}

fn check_login(login: &Login) {
    assert!((1..=32).contains(&login.network_id.len()));
    assert!((1..=128).contains(&login.credential.expose().len()));
    let credential = String::from_utf8_lossy(login.credential.expose()).into_owned();
    let masked = Login {
        credential: Secret::new(Bytes::new()),
        ..login.clone()
    };
    // The credential may also be a piece of what is shown anyway ("Login", a network id).
    if !format!("{masked:?}").contains(&credential) {
        let shown = format!("{:?}", Message::Login(login.clone()));
        assert!(!shown.contains(&credential), "Debug shows the credential");
    }
}

/// The rules of docs/PROTOCOL.md section 5 that decoding enforces.
fn check_request(request: &TxnRequest) {
    let kind = request.kind;
    let creates = matches!(kind, TxnKind::Authorize | TxnKind::Sale);
    if creates {
        assert!(request.amount.is_some() && request.currency.is_some());
    }
    if let Some(amount) = request.amount {
        assert!((1..=AMOUNT_MINOR_MAX).contains(&amount), "amount {amount}");
    }
    if let Some(currency) = request.currency {
        assert!(
            Currency(currency).minor_digits().is_some(),
            "currency {currency}"
        );
    }
    if matches!(
        kind,
        TxnKind::Authorize | TxnKind::Sale | TxnKind::BalanceInquiry
    ) {
        assert!(request.payment.is_some());
    }
    if kind == TxnKind::Tokenize {
        assert!(matches!(request.payment, Some(PaymentMethod::Card { .. })));
    }
    if let Some(PaymentMethod::Card { pan, expiry, cvv }) = &request.payment {
        assert!((12..=19).contains(&pan.len()) && pan.digits().iter().all(u8::is_ascii_digit));
        assert_eq!(expiry.len(), 4);
        assert!(cvv.is_none() || creates, "cvv on {}", kind.name());
        let digits = String::from_utf8_lossy(pan.digits()).into_owned();
        let masked = TxnRequest {
            payment: None,
            ..request.clone()
        };
        if !format!("{masked:?}").contains(&digits) {
            let shown = format!("{:?}", Message::Request(request.clone()));
            assert!(!shown.contains(&digits), "Debug shows the PAN");
        }
    }
    if kind == TxnKind::Refund {
        assert!(request.request_id.is_some());
    }
    if request.merchant_id.is_empty() || request.order_id.is_empty() {
        // Only an INQUIRY by server transaction id names no order.
        assert_eq!(kind, TxnKind::Inquiry);
        assert!(request.merchant_id.is_empty() && request.order_id.is_empty());
        assert!(request.server_txn_id.is_some());
    }
}

/// Decode then encode: an equal message, written only with fields the frame had (TOKENIZE's
/// implied card `payment_method` excepted), and the same bytes when the frame was canonical.
fn check_re_encoding(message: &Message, frame: &Frame, raw: &[u8]) {
    let header = frame.header;
    let mut again = BytesMut::new();
    message.encode(header.correlation_id, header.flags, &mut again);
    let wire = again.clone().freeze();
    let reread = decode_frame(&mut again, FRAME_BODY_BYTES_MAX)
        .unwrap()
        .unwrap();
    assert!(again.is_empty());
    assert_eq!(reread.header, header);
    assert_eq!(&Message::decode(&reread).unwrap(), message);

    let given = fields(&frame.body);
    let written = fields(&reread.body);
    let implied_method = |field: &RawField<'_>| {
        header.msg_type == TxnKind::Tokenize.request_type()
            && field.tag == tag::PAYMENT_METHOD
            && field.value == [1]
            && given.iter().all(|g| g.tag != tag::PAYMENT_METHOD)
    };
    for field in &written {
        let kept = given
            .iter()
            .any(|g| g.tag == field.tag && g.value == field.value);
        assert!(
            kept || implied_method(field),
            "field {} invented",
            field.tag
        );
    }
    let ascending = given.windows(2).all(|w| w[0].tag < w[1].tag);
    let all_kept = given
        .iter()
        .all(|g| written.iter().any(|w| w.tag == g.tag && w.value == g.value));
    let reserved_zero = raw.get(6..8) == Some(&[0, 0][..]);
    if ascending && all_kept && reserved_zero && written.len() == given.len() {
        assert_eq!(
            wire.as_ref(),
            raw,
            "a canonical frame re-encodes differently"
        );
    }
}
