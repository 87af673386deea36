//! Typed messages: [`Message`] decoded from a [`Frame`] and encoded straight into an output buffer.
//!
//! Session messages (LOGIN, HEARTBEAT, LOGOUT, their answers, REJECT) are defined here; the
//! transaction requests and answers in `message_txn.rs` are re-exported. No message's `Debug` shows
//! a full PAN, a CVV or a credential.

use bytes::{Bytes, BytesMut};

use crate::body::{FieldWriter, Fields, tag};
use crate::error::ProtocolError;
use crate::frame::{Frame, FrameHeader, VERSION, begin_frame, finish_frame};
use crate::message_txn::Need;
pub use crate::message_txn::{
    ANSWER_BIT, DEVICE_SIGNATURE_CONTEXT, DeviceSignature, PaymentMethod, TxnAnswer, TxnKind,
    TxnRequest, TxnState,
};
use crate::types::{ResultCode, Secret};

/// Message type bytes (header byte 3).
pub mod msg_type {
    /// Client opens a session.
    pub const LOGIN: u8 = 0x01;
    /// Server accepts or refuses it.
    pub const LOGIN_ANSWER: u8 = 0x81;
    /// Client keeps an idle session alive.
    pub const HEARTBEAT: u8 = 0x02;
    /// Server's answer to a heartbeat.
    pub const HEARTBEAT_ANSWER: u8 = 0x82;
    /// Client ends the session.
    pub const LOGOUT: u8 = 0x03;
    /// Server: every in-flight request is answered, closing now.
    pub const LOGOUT_ANSWER: u8 = 0x83;
    /// A protocol-level error about one frame.
    pub const REJECT: u8 = 0x7F;
    /// First transaction request type (AUTHORIZE).
    pub const TXN_REQUEST_MIN: u8 = 0x10;
    /// Last transaction request type (TOKENIZE).
    pub const TXN_REQUEST_MAX: u8 = 0x17;
}

/// Room reserved in the output buffer before encoding a message: a typical answer fits, so the
/// buffer grows at most once per message.
const ENCODE_RESERVE_BYTES: usize = 512;

/// LOGIN: the first frame of every session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Login {
    /// The client network's id.
    pub network_id: Bytes,
    /// Its credential; `Debug` prints `***`.
    pub credential: Secret<Bytes>,
    /// Client software name and version.
    pub client_software: Option<Bytes>,
}

/// LOGIN_ANSWER: on success, the session's limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginAnswer {
    /// Approved, or why not (AUTH_FAILED...).
    pub result: ResultCode,
    /// The session's id (required when approved, as are the five below).
    pub session_id: Option<u64>,
    /// Requests the client may have outstanding.
    pub inflight_window: Option<u32>,
    /// The client sends HEARTBEAT after this long without sending.
    pub heartbeat_interval_ms: Option<u32>,
    /// The server closes after this long without receiving.
    pub idle_timeout_ms: Option<u32>,
    /// Largest body the server accepts.
    pub max_body_bytes: Option<u32>,
    /// Server clock, unix ms.
    pub server_time_ms: Option<u64>,
    /// Human-readable detail.
    pub message: Option<Bytes>,
}

impl LoginAnswer {
    /// A refusal carrying only `result`.
    pub fn refused(result: ResultCode) -> LoginAnswer {
        LoginAnswer {
            result,
            session_id: None,
            inflight_window: None,
            heartbeat_interval_ms: None,
            idle_timeout_ms: None,
            max_body_bytes: None,
            server_time_ms: None,
            message: None,
        }
    }
}

/// REJECT: a protocol-level error about one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// Why (4xxx, or 2001 for a malformed non-transaction message).
    pub result: ResultCode,
    /// Human-readable detail (may be empty).
    pub message: Bytes,
    /// Offset of the problem in the rejected frame.
    pub error_offset: Option<u32>,
}

impl Reject {
    /// The REJECT for a decoding error: its code, text and offset.
    pub fn from_error(error: &ProtocolError) -> Reject {
        Reject {
            result: error.result_code(),
            message: Bytes::from(error.to_string()),
            error_offset: u32::try_from(error.offset()).ok(),
        }
    }
}

/// Any message of the protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// 0x01.
    Login(Login),
    /// 0x81.
    LoginAnswer(LoginAnswer),
    /// 0x02.
    Heartbeat,
    /// 0x82.
    HeartbeatAnswer,
    /// 0x03.
    Logout,
    /// 0x83.
    LogoutAnswer,
    /// 0x10..=0x17.
    Request(TxnRequest),
    /// 0x90..=0x97.
    Answer(TxnAnswer),
    /// 0x7F.
    Reject(Reject),
}

impl Message {
    /// The message type byte.
    pub const fn msg_type(&self) -> u8 {
        match self {
            Message::Login(_) => msg_type::LOGIN,
            Message::LoginAnswer(_) => msg_type::LOGIN_ANSWER,
            Message::Heartbeat => msg_type::HEARTBEAT,
            Message::HeartbeatAnswer => msg_type::HEARTBEAT_ANSWER,
            Message::Logout => msg_type::LOGOUT,
            Message::LogoutAnswer => msg_type::LOGOUT_ANSWER,
            Message::Request(request) => request.kind.request_type(),
            Message::Answer(answer) => answer.kind.answer_type(),
            Message::Reject(_) => msg_type::REJECT,
        }
    }

    /// The message type's name (`LOGIN`, `AUTHORIZE_ANSWER`).
    pub const fn name(&self) -> &'static str {
        match self {
            Message::Request(request) => request.kind.name(),
            Message::Answer(answer) => answer.kind.answer_name(),
            other => match type_name(other.msg_type()) {
                Some(name) => name,
                None => "?",
            },
        }
    }

    /// Whether a client sends this message (a server receives it).
    pub const fn is_from_client(&self) -> bool {
        matches!(
            self,
            Message::Login(_) | Message::Heartbeat | Message::Logout | Message::Request(_)
        )
    }

    /// Decodes the body of `frame` according to its message type. Errors concern this message
    /// only: the connection may stay open (see [`ProtocolError::result_code`] for the answer).
    pub fn decode(frame: &Frame) -> Result<Message, ProtocolError> {
        Message::decode_body(frame.header.msg_type, &frame.body)
    }

    /// Decodes a body of message type `msg_type`.
    pub fn decode_body(msg_type: u8, body: &Bytes) -> Result<Message, ProtocolError> {
        if type_name(msg_type).is_none() {
            return Err(ProtocolError::UnknownMessageType { msg_type });
        }
        let f = Fields::scan(body)?;
        if let Some(kind) = TxnKind::from_request_type(msg_type) {
            return Ok(Message::Request(TxnRequest::decode(kind, &f)?));
        }
        if let Some(kind) = TxnKind::from_answer_type(msg_type) {
            return Ok(Message::Answer(TxnAnswer::decode(kind, &f)?));
        }
        let need = Need {
            f: &f,
            msg_name: type_name(msg_type).unwrap_or("?"),
        };
        Ok(match msg_type {
            msg_type::LOGIN => Message::Login(Login {
                network_id: need.bytes(tag::NETWORK_ID)?,
                credential: Secret::new(need.bytes(tag::CREDENTIAL)?),
                client_software: f.bytes(tag::CLIENT_SOFTWARE),
            }),
            msg_type::LOGIN_ANSWER => Message::LoginAnswer(decode_login_answer(need)?),
            msg_type::HEARTBEAT => Message::Heartbeat,
            msg_type::HEARTBEAT_ANSWER => Message::HeartbeatAnswer,
            msg_type::LOGOUT => Message::Logout,
            msg_type::LOGOUT_ANSWER => Message::LogoutAnswer,
            _ => Message::Reject(Reject {
                result: ResultCode::from_u16(need.u16(tag::RESULT_CODE)?),
                message: need.bytes(tag::MESSAGE)?,
                error_offset: f.u32(tag::ERROR_OFFSET),
            }),
        })
    }

    /// Appends this message as one frame to `dst`, writing the body in place (no intermediate
    /// buffer) and back-patching length and checksum. `flags`: see [`crate::frame::flags`].
    pub fn encode(&self, correlation_id: u64, flags: u16, dst: &mut BytesMut) {
        dst.reserve(ENCODE_RESERVE_BYTES);
        let header = FrameHeader {
            version: VERSION,
            msg_type: self.msg_type(),
            flags,
            correlation_id,
        };
        let start = begin_frame(&header, dst);
        self.encode_body(&mut FieldWriter::new(dst));
        finish_frame(dst, start);
    }

    /// Appends this message's body fields, in tag order.
    pub fn encode_body(&self, w: &mut FieldWriter<'_>) {
        match self {
            Message::Login(login) => {
                w.put_str(tag::NETWORK_ID, &login.network_id);
                w.put_str(tag::CREDENTIAL, login.credential.expose());
                w.opt_str(tag::CLIENT_SOFTWARE, login.client_software.as_ref());
            }
            Message::LoginAnswer(answer) => {
                w.put_u16(tag::RESULT_CODE, answer.result.as_u16());
                if let Some(message) = &answer.message {
                    w.put_text(tag::MESSAGE, message);
                }
                w.opt_u64(tag::SESSION_ID, answer.session_id);
                w.opt_u32(tag::INFLIGHT_WINDOW, answer.inflight_window);
                w.opt_u32(tag::HEARTBEAT_INTERVAL_MS, answer.heartbeat_interval_ms);
                w.opt_u32(tag::IDLE_TIMEOUT_MS, answer.idle_timeout_ms);
                w.opt_u32(tag::MAX_BODY_BYTES, answer.max_body_bytes);
                w.opt_u64(tag::SERVER_TIME_MS, answer.server_time_ms);
            }
            Message::Heartbeat
            | Message::HeartbeatAnswer
            | Message::Logout
            | Message::LogoutAnswer => {}
            Message::Request(request) => request.encode_body(w),
            Message::Answer(answer) => answer.encode_body(w),
            Message::Reject(reject) => {
                w.put_u16(tag::RESULT_CODE, reject.result.as_u16());
                w.put_text(tag::MESSAGE, &reject.message);
                w.opt_u32(tag::ERROR_OFFSET, reject.error_offset);
            }
        }
    }
}

/// LOGIN_ANSWER: `result_code` always; the session's limits when approved.
fn decode_login_answer(need: Need<'_, '_>) -> Result<LoginAnswer, ProtocolError> {
    let f = need.f;
    let result = ResultCode::from_u16(need.u16(tag::RESULT_CODE)?);
    let mut answer = LoginAnswer {
        result,
        session_id: f.u64(tag::SESSION_ID),
        inflight_window: f.u32(tag::INFLIGHT_WINDOW),
        heartbeat_interval_ms: f.u32(tag::HEARTBEAT_INTERVAL_MS),
        idle_timeout_ms: f.u32(tag::IDLE_TIMEOUT_MS),
        max_body_bytes: f.u32(tag::MAX_BODY_BYTES),
        server_time_ms: f.u64(tag::SERVER_TIME_MS),
        message: f.bytes(tag::MESSAGE),
    };
    if result.is_approved() {
        answer.session_id = Some(need.u64(tag::SESSION_ID)?);
        answer.inflight_window = Some(need.u32(tag::INFLIGHT_WINDOW)?);
        answer.heartbeat_interval_ms = Some(need.u32(tag::HEARTBEAT_INTERVAL_MS)?);
        answer.idle_timeout_ms = Some(need.u32(tag::IDLE_TIMEOUT_MS)?);
        answer.max_body_bytes = Some(need.u32(tag::MAX_BODY_BYTES)?);
        answer.server_time_ms = Some(need.u64(tag::SERVER_TIME_MS)?);
    }
    Ok(answer)
}

/// The name of every message type this version knows.
pub const fn type_name(msg_type: u8) -> Option<&'static str> {
    if let Some(kind) = TxnKind::from_request_type(msg_type) {
        return Some(kind.name());
    }
    if let Some(kind) = TxnKind::from_answer_type(msg_type) {
        return Some(kind.answer_name());
    }
    Some(match msg_type {
        msg_type::LOGIN => "LOGIN",
        msg_type::LOGIN_ANSWER => "LOGIN_ANSWER",
        msg_type::HEARTBEAT => "HEARTBEAT",
        msg_type::HEARTBEAT_ANSWER => "HEARTBEAT_ANSWER",
        msg_type::LOGOUT => "LOGOUT",
        msg_type::LOGOUT_ANSWER => "LOGOUT_ANSWER",
        msg_type::REJECT => "REJECT",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{FRAME_BODY_BYTES_MAX, decode_frame};
    use crate::types::Pan;

    fn round_trip(message: &Message) -> Message {
        let mut buf = BytesMut::new();
        message.encode(9, 0, &mut buf);
        let frame = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
            .unwrap()
            .unwrap();
        assert!(buf.is_empty());
        Message::decode(&frame).unwrap()
    }

    fn authorize() -> TxnRequest {
        let mut req = TxnRequest::new(TxnKind::Authorize, "M1".into(), "O1".into());
        req.amount = Some(1000);
        req.currency = Some(410);
        req.payment = Some(PaymentMethod::Card {
            pan: Pan::new("4111111111111111".into()).unwrap(),
            expiry: "2912".into(),
            cvv: Some(Secret::new("123".into())),
        });
        req
    }

    #[test]
    fn debug_hides_secrets() {
        let login = Message::Login(Login {
            network_id: "net".into(),
            credential: Secret::new("s3cret-pass".into()),
            client_software: None,
        });
        let text = format!("{login:?} {:?}", Message::Request(authorize()));
        assert!(!text.contains("s3cret"), "{text}");
        assert!(!text.contains("4111111111111111"), "{text}");
        assert!(!text.contains("\"123\""), "{text}");
        assert!(text.contains("411111******1111"), "{text}");
    }

    #[test]
    fn messages_round_trip() {
        let mut answer = TxnAnswer::echo(&authorize(), ResultCode::Approved);
        answer.approval_code = Some("A1B2C3".into());
        answer.state = Some(TxnState::Authorized as u8);
        let reject = Reject {
            result: ResultCode::MalformedFrame,
            message: "".into(),
            error_offset: Some(3),
        };
        for message in [
            Message::Request(authorize()),
            Message::Answer(answer),
            Message::Heartbeat,
            Message::LogoutAnswer,
            Message::LoginAnswer(LoginAnswer::refused(ResultCode::AuthFailed)),
            Message::Reject(reject),
        ] {
            assert_eq!(round_trip(&message), message);
        }
    }

    #[test]
    fn amounts_and_currencies_out_of_range_are_refused() {
        let decode = |req: &TxnRequest| {
            let mut buf = BytesMut::new();
            Message::Request(req.clone()).encode(1, 0, &mut buf);
            let frame = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
                .unwrap()
                .unwrap();
            Message::decode(&frame)
        };
        let cases: [(Option<u64>, Option<u16>, &str); 6] = [
            (Some(0), Some(410), "amount"),
            (Some(1_000_000_000_000), Some(410), "amount"),
            (Some(1 << 63), Some(410), "amount"),
            (Some(1000), Some(0), "currency"),
            (Some(1000), Some(65_535), "currency"),
            (Some(1000), Some(999), "currency"),
        ];
        for (amount, currency, field) in cases {
            let mut req = authorize();
            req.amount = amount;
            req.currency = currency;
            let err = decode(&req).unwrap_err();
            assert_eq!(
                err.result_code(),
                ResultCode::InvalidRequest,
                "{amount:?} {currency:?}"
            );
            let text = err.to_string();
            assert!(text.contains(&format!("field {field} ")), "{text}");
            // A refund of zero is refused as well; a refund without an amount is "all".
            let mut refund = TxnRequest::new(TxnKind::Refund, "M1".into(), "O1".into());
            refund.request_id = Some("R1".into());
            refund.amount = Some(0);
            assert!(decode(&refund).is_err());
            refund.amount = None;
            assert!(decode(&refund).is_ok());
        }
        let mut largest = authorize();
        largest.amount = Some(crate::types::AMOUNT_MINOR_MAX);
        largest.currency = Some(48);
        assert!(decode(&largest).is_ok());
    }

    #[test]
    fn required_fields_and_rules() {
        let decode = |msg_type: u8, build: &dyn Fn(&mut FieldWriter<'_>)| {
            let mut body = BytesMut::new();
            build(&mut FieldWriter::new(&mut body));
            Message::decode_body(msg_type, &body.freeze())
        };
        let err = decode(0x12, &|w| w.put_str(tag::MERCHANT_ID, b"M")).unwrap_err();
        assert!(
            matches!(
                err,
                ProtocolError::MissingField {
                    tag: tag::ORDER_ID,
                    ..
                }
            ),
            "{err}"
        );
        assert_eq!(err.result_code(), ResultCode::InvalidRequest);
        let capture_with_cvv = decode(0x12, &|w| {
            w.put_str(tag::MERCHANT_ID, b"M");
            w.put_str(tag::ORDER_ID, b"O");
            w.put_str(tag::CVV, b"123");
        });
        assert!(matches!(
            capture_with_cvv,
            Err(ProtocolError::FieldNotAllowed { .. })
        ));
        let inquiry = decode(0x15, &|w| w.put_u64(tag::SERVER_TXN_ID, 77)).unwrap();
        let Message::Request(inquiry) = inquiry else {
            panic!("not a request")
        };
        assert!(inquiry.merchant_id.is_empty());
        assert_eq!(inquiry.server_txn_id, Some(77));
        let tokenize_wallet = decode(0x17, &|w| {
            w.put_str(tag::MERCHANT_ID, b"M");
            w.put_str(tag::ORDER_ID, b"O");
            w.put_u8(tag::PAYMENT_METHOD, 2);
        });
        assert_eq!(
            tokenize_wallet.unwrap_err().result_code(),
            ResultCode::UnsupportedPaymentMethod
        );
        let login_ok_without_limits = decode(0x81, &|w| w.put_u16(tag::RESULT_CODE, 0));
        assert!(matches!(
            login_ok_without_limits,
            Err(ProtocolError::MissingField { .. })
        ));
        let unknown = decode(0x42, &|_| {}).unwrap_err();
        assert_eq!(unknown.result_code(), ResultCode::UnknownMessageType);
        let bad_method = decode(0x10, &|w| {
            w.put_str(tag::MERCHANT_ID, b"M");
            w.put_str(tag::ORDER_ID, b"O");
            w.put_u64(tag::AMOUNT, 1);
            w.put_u16(tag::CURRENCY, 410);
            w.put_u8(tag::PAYMENT_METHOD, 9);
        });
        assert_eq!(bad_method.unwrap_err().offset(), 24 + 5 + 5 + 12 + 6);
    }

    fn signed(mut req: TxnRequest, counter: u64) -> TxnRequest {
        req.device_signature = Some(DeviceSignature {
            device_id: "phone-1".into(),
            counter,
            signature: Bytes::from_static(&[0xA5; 64]),
        });
        req
    }

    fn signed_bytes(req: &TxnRequest) -> BytesMut {
        let mut out = BytesMut::new();
        req.device_signed_bytes(&mut out);
        out
    }

    #[test]
    fn device_fields_round_trip_and_come_all_three_or_none() {
        let req = signed(authorize(), 7);
        assert_eq!(
            round_trip(&Message::Request(req.clone())),
            Message::Request(req)
        );
        let all = [tag::DEVICE_ID, tag::DEVICE_COUNTER, tag::SIGNATURE];
        for missing in all {
            let mut body = BytesMut::new();
            let mut w = FieldWriter::new(&mut body);
            w.put_str(tag::MERCHANT_ID, b"M");
            w.put_str(tag::ORDER_ID, b"O");
            for present in all.iter().filter(|t| **t != missing) {
                match *present {
                    tag::DEVICE_COUNTER => w.put_u64(tag::DEVICE_COUNTER, 1),
                    other => w.put_str(other, b"x"),
                }
            }
            let err = Message::decode_body(0x13, &body.freeze()).unwrap_err();
            assert!(
                matches!(err, ProtocolError::MissingField { tag, .. } if tag == missing),
                "{err}"
            );
        }
    }

    #[test]
    fn signed_bytes_cover_every_request_field_but_cvv_and_signature() {
        let req = signed(authorize(), 7);
        let bytes = signed_bytes(&req);
        let (prefix, rest) = bytes.split_at(DEVICE_SIGNATURE_CONTEXT.len());
        assert_eq!(prefix, DEVICE_SIGNATURE_CONTEXT);
        assert_eq!(rest.first(), Some(&TxnKind::Authorize.request_type()));
        let tags: Vec<u16> = crate::body::FieldIter::new(rest.get(1..).unwrap())
            .map(|f| f.unwrap().tag)
            .collect();
        let expected = [1, 2, 3, 4, 5, 6, 7, tag::DEVICE_ID, tag::DEVICE_COUNTER];
        assert_eq!(tags, expected, "tag order, no cvv (8) or signature (15)");

        // The CVV and the signature change nothing; every other field does.
        let mut without_cvv = req.clone();
        if let Some(PaymentMethod::Card { cvv, .. }) = &mut without_cvv.payment {
            *cvv = None;
        }
        assert_eq!(signed_bytes(&without_cvv), bytes);
        let mut other_signature = req.clone();
        if let Some(d) = &mut other_signature.device_signature {
            d.signature = Bytes::from_static(&[1; 64]);
        }
        assert_eq!(signed_bytes(&other_signature), bytes);
        let mut other_amount = req.clone();
        other_amount.amount = Some(1001);
        assert_ne!(signed_bytes(&other_amount), bytes);
        assert_ne!(signed_bytes(&signed(authorize(), 8)), bytes);
        let mut as_sale = req.clone();
        as_sale.kind = TxnKind::Sale;
        assert_ne!(signed_bytes(&as_sale), bytes, "the message type is covered");

        // Fields the server does not read from a request are not covered: another method's
        // field, an answer field.
        let mut body = BytesMut::new();
        req.encode_body(&mut FieldWriter::new(&mut body));
        let mut w = FieldWriter::new(&mut body);
        w.put_str(tag::WALLET_TOKEN, b"tok-stray");
        w.put_u16(tag::RESULT_CODE, 0);
        let Ok(Message::Request(with_stray)) = Message::decode_body(0x10, &body.freeze()) else {
            panic!("not a request");
        };
        assert_eq!(signed_bytes(&with_stray), bytes);
    }

    #[test]
    fn names() {
        assert_eq!(Message::Heartbeat.name(), "HEARTBEAT");
        assert_eq!(
            Message::Answer(TxnAnswer::new(TxnKind::Refund, ResultCode::Busy)).name(),
            "REFUND_ANSWER"
        );
        assert_eq!(TxnKind::from_answer_type(0x97), Some(TxnKind::Tokenize));
        assert_eq!(TxnKind::from_answer_type(0x17), None);
        assert_eq!(type_name(0x18), None);
    }
}
