//! Property tests of the PayMesh frame protocol: round trips of every message type, truncation,
//! garbage, oversize bodies, unknown fields, corruption and pipelined streams split anywhere.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{BufMut, Bytes, BytesMut};
use paymesh_codecs::ProtocolError;
use paymesh_codecs::body::{FieldIter, FieldWriter, tag};
use paymesh_codecs::frame::{
    FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, Frame, FrameHeader, decode_frame, encode_frame,
};
use paymesh_codecs::message::{
    DEVICE_SIGNATURE_CONTEXT, DeviceSignature, Login, LoginAnswer, Message, PaymentMethod, Reject,
    TxnAnswer, TxnKind, TxnRequest,
};
use paymesh_codecs::types::{Pan, ResultCode, Secret};
use proptest::prelude::*;
use proptest::strategy::ValueTree;

fn text(min: usize, max: usize) -> impl Strategy<Value = Bytes> {
    proptest::string::string_regex(&format!("[ -~]{{{min},{max}}}"))
        .unwrap()
        .prop_map(Bytes::from)
}

fn digits(min: usize, max: usize) -> impl Strategy<Value = Bytes> {
    proptest::string::string_regex(&format!("[0-9]{{{min},{max}}}"))
        .unwrap()
        .prop_map(Bytes::from)
}

fn opt<T: std::fmt::Debug>(s: impl Strategy<Value = T>) -> impl Strategy<Value = Option<T>> {
    proptest::option::of(s)
}

fn result_code() -> impl Strategy<Value = ResultCode> {
    prop_oneof![
        proptest::sample::select(ResultCode::ALL.to_vec()),
        any::<u16>().prop_map(ResultCode::from_u16),
    ]
}

fn expiry() -> impl Strategy<Value = Bytes> {
    proptest::string::string_regex("[0-9]{2}(0[1-9]|1[0-2])")
        .unwrap()
        .prop_map(Bytes::from)
}

fn card(with_cvv: bool) -> impl Strategy<Value = PaymentMethod> {
    let cvv = if with_cvv {
        opt(digits(3, 4)).boxed()
    } else {
        Just(None).boxed()
    };
    (digits(12, 19), expiry(), cvv).prop_map(|(pan, expiry, cvv)| PaymentMethod::Card {
        pan: Pan::new(pan).unwrap(),
        expiry,
        cvv: cvv.map(Secret::new),
    })
}

fn payment(with_cvv: bool) -> impl Strategy<Value = PaymentMethod> {
    prop_oneof![
        card(with_cvv),
        text(1, 64).prop_map(PaymentMethod::WalletToken),
        (digits(8, 15), text(1, 16))
            .prop_map(|(phone, carrier)| PaymentMethod::CarrierBilling { phone, carrier }),
        (text(1, 11), text(1, 34))
            .prop_map(|(bank_code, account)| PaymentMethod::BankTransfer { bank_code, account }),
    ]
}

fn request() -> impl Strategy<Value = TxnRequest> {
    proptest::sample::select(TxnKind::ALL.to_vec()).prop_flat_map(|kind| {
        let creates = matches!(kind, TxnKind::Authorize | TxnKind::Sale);
        let payment = match kind {
            TxnKind::Authorize | TxnKind::Sale => payment(true).prop_map(Some).boxed(),
            TxnKind::BalanceInquiry => payment(false).prop_map(Some).boxed(),
            TxnKind::Tokenize => card(false).prop_map(Some).boxed(),
            _ => opt(payment(false)).boxed(),
        };
        let by_txn_id = if kind == TxnKind::Inquiry {
            any::<bool>().boxed()
        } else {
            Just(false).boxed()
        };
        // Valid requests only: amounts of 1..=AMOUNT_MINOR_MAX and active ISO 4217 currencies
        // (the codec refuses others, see `amounts_and_currencies_out_of_range_are_refused`).
        let valid_amount = 1..=paymesh_codecs::types::AMOUNT_MINOR_MAX;
        let valid_currency = prop::sample::select(vec![410u16, 840, 978, 392, 48, 156]);
        let amount = if creates {
            valid_amount.prop_map(Some).boxed()
        } else {
            opt(valid_amount).boxed()
        };
        let currency = if creates {
            valid_currency.prop_map(Some).boxed()
        } else {
            opt(valid_currency).boxed()
        };
        let request_id = if kind == TxnKind::Refund {
            text(1, 40).prop_map(Some).boxed()
        } else {
            opt(text(1, 40)).boxed()
        };
        let device = opt((
            text(1, 64),
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 1..=512),
        )
            .prop_map(|(device_id, counter, signature)| DeviceSignature {
                device_id,
                counter,
                signature: Bytes::from(signature),
            }));
        (
            (text(1, 15), text(1, 40), by_txn_id, any::<u64>()),
            (amount, currency, payment, device),
            (request_id, opt(any::<u64>()), opt(text(0, 128))),
            (
                opt(prop_oneof![Just(0u8), 2u8..=36]),
                any::<bool>(),
                opt(text(1, 64)),
            ),
        )
            .prop_map(move |(ids, money, rest, added)| {
                let wallet = matches!(money.2, Some(PaymentMethod::WalletToken(_)));
                let carded = matches!(
                    money.2,
                    Some(PaymentMethod::Card { .. } | PaymentMethod::WalletToken(_))
                );
                let (merchant_id, order_id, by_txn_id, txn_id) = ids;
                let (merchant_id, order_id, server_txn_id) = if by_txn_id {
                    (Bytes::new(), Bytes::new(), Some(txn_id))
                } else {
                    (merchant_id, order_id, rest.1)
                };
                TxnRequest {
                    kind,
                    merchant_id,
                    order_id,
                    amount: money.0,
                    currency: money.1,
                    payment: money.2,
                    device_signature: money.3,
                    request_id: rest.0,
                    server_txn_id,
                    description: rest.2,
                    // Installments are read in card (or wallet) AUTHORIZE and SALE only.
                    installment_months: added.0.filter(|_| creates && carded),
                    final_capture: added.1 && kind == TxnKind::Capture,
                    // A customer is named in TOKENIZE and in wallet-token payments only.
                    customer_ref: added.2.filter(|_| kind == TxnKind::Tokenize || wallet),
                }
            })
    })
}

fn answer() -> impl Strategy<Value = TxnAnswer> {
    let ids = (
        opt(text(1, 15)),
        opt(text(1, 40)),
        opt(any::<u64>()),
        opt(any::<u16>()),
        opt(text(1, 40)),
    );
    let upstream = (
        opt(any::<u64>()),
        opt(text(6, 6)),
        opt(text(12, 12)),
        opt(text(2, 4)),
    );
    let times = (
        opt(any::<u64>()),
        opt(any::<u64>()),
        opt(any::<u8>()),
        opt(any::<u8>()),
    );
    let amounts = (
        opt(any::<u64>()),
        opt(any::<u64>()),
        opt(any::<u64>()),
        opt(any::<u64>()),
    );
    let extra = (
        opt(text(1, 64)),
        opt(proptest::string::string_regex("[0-9*]{12,19}").unwrap()),
        opt(text(0, 256)),
    );
    let kind = proptest::sample::select(TxnKind::ALL.to_vec());
    (kind, result_code(), ids, upstream, times, amounts, extra).prop_map(
        |(kind, result, i, u, t, a, e)| TxnAnswer {
            merchant_id: i.0,
            order_id: i.1,
            amount: i.2,
            currency: i.3,
            request_id: i.4,
            server_txn_id: u.0,
            approval_code: u.1,
            rrn: u.2,
            upstream_response_code: u.3,
            received_at_ms: t.0,
            answered_at_ms: t.1,
            state: t.2,
            authorized_amount: a.0,
            captured_amount: a.1,
            refunded_amount: a.2,
            balance: a.3,
            token: e.0,
            masked_pan: e.1.map(Bytes::from),
            message: e.2,
            installment_months: t.3,
            ..TxnAnswer::new(kind, result)
        },
    )
}

fn login_answer() -> impl Strategy<Value = LoginAnswer> {
    let limits = (
        any::<u64>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u32>(),
        any::<u64>(),
    );
    prop_oneof![
        (limits, opt(text(0, 256))).prop_map(|(l, message)| LoginAnswer {
            result: ResultCode::Approved,
            session_id: Some(l.0),
            inflight_window: Some(l.1),
            heartbeat_interval_ms: Some(l.2),
            idle_timeout_ms: Some(l.3),
            max_body_bytes: Some(l.4),
            server_time_ms: Some(l.5),
            message,
        }),
        (
            result_code().prop_filter("refusal", |c| !c.is_approved()),
            opt(text(0, 256))
        )
            .prop_map(|(result, message)| LoginAnswer {
                message,
                ..LoginAnswer::refused(result)
            }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (text(1, 32), text(1, 128), opt(text(1, 64))).prop_map(
            |(network_id, credential, client_software)| {
                Message::Login(Login {
                    network_id,
                    credential: Secret::new(credential),
                    client_software,
                })
            }
        ),
        login_answer().prop_map(Message::LoginAnswer),
        Just(Message::Heartbeat),
        Just(Message::HeartbeatAnswer),
        Just(Message::Logout),
        Just(Message::LogoutAnswer),
        request().prop_map(Message::Request),
        answer().prop_map(Message::Answer),
        (result_code(), text(0, 256), opt(any::<u32>())).prop_map(
            |(result, message, error_offset)| Message::Reject(Reject {
                result,
                message,
                error_offset
            })
        ),
    ]
}

fn encode(message: &Message, correlation_id: u64, flags: u16) -> BytesMut {
    let mut buf = BytesMut::new();
    message.encode(correlation_id, flags, &mut buf);
    buf
}

/// The body of an encoded single frame.
fn body_of(wire: &[u8]) -> &[u8] {
    &wire[FRAME_HEADER_BYTES..]
}

/// Re-frames `body` with `message`'s header fields.
fn reframe(message: &Message, body: &[u8]) -> Frame {
    let mut buf = BytesMut::new();
    encode_frame(&FrameHeader::new(message.msg_type(), 1), body, &mut buf);
    decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
        .unwrap()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn every_message_round_trips(m in message(), correlation_id in any::<u64>(), flags in any::<u16>()) {
        let wire = encode(&m, correlation_id, flags);
        let mut buf = wire.clone();
        let frame = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX).unwrap().unwrap();
        prop_assert!(buf.is_empty());
        prop_assert_eq!(frame.header, FrameHeader { version: 1, msg_type: m.msg_type(), flags, correlation_id });
        let decoded = Message::decode(&frame).unwrap();
        prop_assert_eq!(&decoded, &m);
        // The encoding is canonical: decoding then encoding gives the same bytes.
        prop_assert_eq!(encode(&decoded, correlation_id, flags), wire);
    }

    #[test]
    fn signed_bytes_are_the_body_without_cvv_and_signature(req in request()) {
        // docs/PROTOCOL.md's definition, computed from the wire: the prefix, the message type,
        // then the encoded body's fields as they are, minus `cvv` and `signature`.
        let message = Message::Request(req.clone());
        let wire = encode(&message, 1, 0);
        let mut expected = DEVICE_SIGNATURE_CONTEXT.to_vec();
        expected.push(req.kind.request_type());
        let body = body_of(&wire);
        for field in FieldIter::new(body) {
            let field = field.unwrap();
            if field.tag != tag::CVV && field.tag != tag::SIGNATURE {
                expected.extend_from_slice(&body[field.offset..field.offset + 4 + field.value.len()]);
            }
        }
        let mut signed = BytesMut::new();
        req.device_signed_bytes(&mut signed);
        prop_assert_eq!(&signed[..], &expected[..]);
        // The router computes them from the request it decoded (or replayed from the journal,
        // without the CVV): the same bytes.
        let frame = decode_frame(&mut wire.clone(), FRAME_BODY_BYTES_MAX).unwrap().unwrap();
        let Message::Request(mut decoded) = Message::decode(&frame).unwrap() else {
            panic!("not a request");
        };
        if let Some(PaymentMethod::Card { cvv, .. }) = &mut decoded.payment {
            *cvv = None;
        }
        let mut again = BytesMut::new();
        decoded.device_signed_bytes(&mut again);
        prop_assert_eq!(again, signed);
    }

    #[test]
    fn every_truncation_needs_more(m in message()) {
        let wire = encode(&m, 7, 0);
        for len in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..len]);
            prop_assert_eq!(decode_frame(&mut buf, FRAME_BODY_BYTES_MAX), Ok(None));
            prop_assert_eq!(buf.len(), len, "nothing consumed");
        }
    }

    #[test]
    fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048), max_body in any::<u32>()) {
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(frame)) = decode_frame(&mut buf, max_body) {
            let _ = Message::decode(&frame);
        }
    }

    #[test]
    fn garbage_bodies_never_panic(msg_type in any::<u8>(), body in proptest::collection::vec(any::<u8>(), 0..600)) {
        let mut buf = BytesMut::new();
        encode_frame(&FrameHeader::new(msg_type, 3), &body, &mut buf);
        let frame = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX).unwrap().unwrap();
        if let Err(e) = Message::decode(&frame) {
            prop_assert!(!e.closes_connection());
            prop_assert!(e.offset() <= FRAME_HEADER_BYTES + body.len());
        }
    }

    #[test]
    fn oversize_is_refused_before_allocating(body_len in (FRAME_BODY_BYTES_MAX + 1).., limit in 0..=FRAME_BODY_BYTES_MAX) {
        let mut buf = BytesMut::with_capacity(FRAME_HEADER_BYTES);
        buf.put_slice(b"PM\x01\x10\x00\x00\x00\x00");
        buf.put_u64(99);
        buf.put_u32(body_len);
        buf.put_u32(0);
        let capacity = buf.capacity();
        let err = decode_frame(&mut buf, u32::MAX).unwrap_err();
        prop_assert_eq!(err, ProtocolError::BodyTooLarge { body_len, limit: FRAME_BODY_BYTES_MAX, correlation_id: 99 });
        prop_assert_eq!(buf.capacity(), capacity);
        // A session's smaller limit applies the same way.
        buf[16..20].copy_from_slice(&(limit + 1).to_be_bytes());
        let err = decode_frame(&mut buf, limit).unwrap_err();
        prop_assert_eq!(err.result_code(), ResultCode::FrameTooLarge);
        prop_assert_eq!(buf.capacity(), capacity);
    }

    // Unknown tags: the gaps of the table and everything above its last tag (53, customer_ref),
    // below the must-understand range. A tag added to the protocol moves this bound.
    #[test]
    fn unknown_optional_fields_are_skipped(
        m in message(),
        tag in prop_oneof![54u16..0x8000, proptest::sample::select(vec![22u16, 35, 39, 49])],
        value in proptest::collection::vec(any::<u8>(), 0..40),
        position in any::<proptest::sample::Index>(),
    ) {
        let wire = encode(&m, 1, 0);
        let body = body_of(&wire);
        let bounds: Vec<usize> = FieldIter::new(body).map(|f| f.unwrap().offset).chain([body.len()]).collect();
        let at = bounds[position.index(bounds.len())];
        let mut patched = BytesMut::from(&body[..at]);
        FieldWriter::new(&mut patched).put_raw(tag, &value);
        patched.put_slice(&body[at..]);
        prop_assert_eq!(Message::decode(&reframe(&m, &patched)).unwrap(), m);
    }

    #[test]
    fn unknown_must_understand_fields_are_refused(m in message(), tag in 0x8000u16..) {
        let wire = encode(&m, 1, 0);
        let mut patched = BytesMut::from(body_of(&wire));
        FieldWriter::new(&mut patched).put_raw(tag, b"x");
        let err = Message::decode(&reframe(&m, &patched)).unwrap_err();
        prop_assert_eq!(err.result_code(), ResultCode::UnknownCriticalField);
        prop_assert_eq!(err.tag(), Some(tag));
    }

    #[test]
    fn repeated_fields_are_refused(m in message(), which in any::<proptest::sample::Index>()) {
        let wire = encode(&m, 1, 0);
        let body = body_of(&wire);
        let fields: Vec<_> = FieldIter::new(body).map(|f| f.unwrap()).collect();
        prop_assume!(!fields.is_empty());
        let field = fields[which.index(fields.len())];
        let mut patched = BytesMut::from(body);
        FieldWriter::new(&mut patched).put_raw(field.tag, field.value);
        let err = Message::decode(&reframe(&m, &patched)).unwrap_err();
        prop_assert_eq!(err, ProtocolError::DuplicateField { tag: field.tag, offset: FRAME_HEADER_BYTES + body.len() });
    }

    #[test]
    fn corrupted_bytes_are_caught(m in message(), position in any::<proptest::sample::Index>(), bit in 0u8..8) {
        let mut wire = encode(&m, 5, 0);
        let at = position.index(wire.len());
        wire[at] ^= 1 << bit;
        let result = decode_frame(&mut wire, FRAME_BODY_BYTES_MAX);
        match at {
            0 | 1 => prop_assert!(matches!(result, Err(ProtocolError::BadMagic { .. })), "{:?}", result),
            2 => prop_assert!(
                matches!(result, Err(ProtocolError::UnsupportedVersion { .. })),
                "{:?}",
                result
            ),
            // A damaged length: too large, waiting for bytes that never come, or a checksum error.
            16..=19 => prop_assert!(!matches!(result, Ok(Some(_)))),
            _ => prop_assert!(matches!(result, Err(ProtocolError::ChecksumMismatch { .. })), "{:?}", result),
        }
    }

    #[test]
    fn pipelined_stream_split_anywhere(
        messages in proptest::collection::vec(message(), 1..12),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..24),
    ) {
        let mut stream = BytesMut::new();
        for (i, m) in messages.iter().enumerate() {
            m.encode(i as u64, 0, &mut stream);
        }
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c.index(stream.len() + 1)).collect();
        cuts.push(stream.len());
        cuts.sort_unstable();
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        let mut from = 0;
        for cut in cuts {
            buf.put_slice(&stream[from..cut]);
            from = cut;
            while let Some(frame) = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX).unwrap() {
                decoded.push((frame.header.correlation_id, Message::decode(&frame).unwrap()));
            }
        }
        prop_assert!(buf.is_empty());
        let expected: Vec<(u64, Message)> = messages.into_iter().enumerate().map(|(i, m)| (i as u64, m)).collect();
        prop_assert_eq!(decoded, expected);
    }
}

#[test]
fn debug_of_any_message_hides_secrets() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    for _ in 0..256 {
        let m = message().new_tree(&mut runner).unwrap().current();
        let text = format!("{m:?}");
        match &m {
            Message::Login(login) if login.credential.expose().len() >= 8 => {
                assert!(
                    !text.contains(&format!("{:?}", login.credential.expose())),
                    "{text}"
                );
                assert!(text.contains("Secret(***)"));
            }
            Message::Request(TxnRequest {
                payment: Some(PaymentMethod::Card { pan, cvv, .. }),
                ..
            }) => {
                assert!(
                    !text.contains(std::str::from_utf8(pan.digits()).unwrap()),
                    "{text}"
                );
                if let Some(cvv) = cvv {
                    assert!(!text.contains(&format!("{:?}", cvv.expose())), "{text}");
                }
            }
            _ => {}
        }
    }
}
