//! Shared by `tests/protocol_doc.rs` and `examples/protocol_examples.rs`: the worked examples of
//! docs/PROTOCOL.md, turning a frame into annotated hex and into a JSON view of its fields, and
//! reading both back from the document.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    dead_code
)]

use std::fmt::Write as _;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::ProtocolError;
use paymesh_codecs::body::{FieldIter, FieldKind, field_spec};
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, FRAME_HEADER_BYTES, Frame, decode_frame};
use paymesh_codecs::message::{
    DeviceSignature, Login, LoginAnswer, Message, PaymentMethod, Reject, TxnAnswer, TxnKind,
    TxnRequest, TxnState, type_name,
};
use paymesh_codecs::types::{Pan, ResultCode, Secret};
use serde_json::{Map, Value, json};

/// Bytes of a value shown on a field's first hex line; the rest wraps at 16 a line.
const FIRST_LINE_VALUE_BYTES: usize = 12;
const LINE_BYTES: usize = 16;
/// Column where the `#` comments start.
const COMMENT_COLUMN: usize = 50;

/// The device signature of the `authorize_signed` example: Ed25519 with RFC 8032's first test
/// key (docs/PROTOCOL.md, "Device signatures", where the test vector shows the signed bytes; the
/// actors crate checks it verifies under that key, this crate has no Ed25519).
pub const SIGNED_EXAMPLE_SIGNATURE: &str = "0276823e6a7dffd1740bbdf221149657ee8c1ad9740afbfb5e4a2331513fec8d088caafdd07732b91ad1b5fb55123bcbecde72f838b32bdddf11ce80be72600e";

/// The worked examples, in document order: name, one-line caption, correlation id, message.
pub fn examples() -> Vec<(&'static str, &'static str, u64, Message)> {
    let merchant = Bytes::from_static(b"M0001");
    let order = Bytes::from_static(b"ORDER-1001");
    let mut authorize = TxnRequest::new(TxnKind::Authorize, merchant.clone(), order.clone());
    authorize.amount = Some(125_000);
    authorize.currency = Some(410);
    authorize.payment = Some(PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: "2912".into(),
        cvv: Some(Secret::new("123".into())),
    });
    let mut approved = TxnAnswer::echo(&authorize, ResultCode::Approved);
    approved.server_txn_id = Some(0x0001_0000_0000_2A17);
    approved.approval_code = Some("A1B2C3".into());
    approved.rrn = Some("633014000123".into());
    approved.upstream_response_code = Some("00".into());
    approved.received_at_ms = Some(1_795_000_000_000);
    approved.answered_at_ms = Some(1_795_000_000_042);
    approved.state = Some(TxnState::Authorized as u8);
    approved.authorized_amount = Some(125_000);
    approved.masked_pan = Some("411111******1111".into());
    let mut capture = TxnRequest::new(TxnKind::Capture, merchant.clone(), order.clone());
    capture.amount = Some(100_000);
    capture.request_id = Some("CAP-1".into());
    let mut refund = TxnRequest::new(TxnKind::Refund, merchant.clone(), order.clone());
    refund.amount = Some(30_000);
    refund.request_id = Some("RFD-1".into());
    let inquiry = TxnRequest::new(TxnKind::Inquiry, merchant.clone(), order.clone());
    let mut inquiry_answer = TxnAnswer::echo(&inquiry, ResultCode::Approved);
    inquiry_answer.server_txn_id = approved.server_txn_id;
    inquiry_answer.currency = Some(410);
    inquiry_answer.state = Some(TxnState::PartiallyRefunded as u8);
    inquiry_answer.authorized_amount = Some(125_000);
    inquiry_answer.captured_amount = Some(100_000);
    inquiry_answer.refunded_amount = Some(30_000);
    inquiry_answer.masked_pan = approved.masked_pan.clone();
    let mut signed = TxnRequest::new(TxnKind::Authorize, merchant.clone(), "ORDER-1002".into());
    signed.amount = authorize.amount;
    signed.currency = authorize.currency;
    signed.payment = authorize.payment.clone();
    signed.device_signature = Some(DeviceSignature {
        device_id: "phone-0001".into(),
        counter: 1,
        signature: hex::decode(SIGNED_EXAMPLE_SIGNATURE).unwrap().into(),
    });
    let damaged = ProtocolError::ChecksumMismatch {
        carried: 0x1234_5678,
        computed: 0x9ABC_DEF0,
    };
    vec![
        (
            "login",
            "LOGIN of network `carrier-a` (correlation id 1).",
            1,
            Message::Login(Login {
                network_id: "carrier-a".into(),
                credential: Secret::new("example-credential".into()),
                client_software: Some("paymesh-sdk/1.0".into()),
            }),
        ),
        (
            "login_answer",
            "LOGIN_ANSWER: approved, window 256, heartbeat 30 s, idle timeout 90 s.",
            1,
            Message::LoginAnswer(LoginAnswer {
                result: ResultCode::Approved,
                session_id: Some(0x1001),
                inflight_window: Some(256),
                heartbeat_interval_ms: Some(30_000),
                idle_timeout_ms: Some(90_000),
                max_body_bytes: Some(16_384),
                server_time_ms: Some(1_795_000_000_000),
                message: None,
            }),
        ),
        (
            "authorize",
            "AUTHORIZE 125 000 KRW (currency 410) by card, with CVV.",
            2,
            Message::Request(authorize),
        ),
        (
            "authorize_answer",
            "Its AUTHORIZE_ANSWER: approved, state 1 (authorized).",
            2,
            Message::Answer(approved),
        ),
        (
            "capture",
            "CAPTURE of 100 000 of the 125 000 authorized (partial).",
            3,
            Message::Request(capture),
        ),
        (
            "refund",
            "REFUND of 30 000; `request_id` is its idempotency key within the order.",
            4,
            Message::Request(refund),
        ),
        (
            "inquiry",
            "INQUIRY by merchant id and order id.",
            5,
            Message::Request(inquiry),
        ),
        (
            "inquiry_answer",
            "Its answer: state 6 (partially refunded) with the running totals.",
            5,
            Message::Answer(inquiry_answer),
        ),
        (
            "authorize_signed",
            "AUTHORIZE signed by device `phone-0001` with counter 1 (section 5.5: the test vector).",
            6,
            Message::Request(signed),
        ),
        (
            "reject",
            "REJECT of a frame whose checksum did not match (correlation id 0: unknown).",
            0,
            Message::Reject(Reject::from_error(&damaged)),
        ),
    ]
}

/// A printable rendering of a STR value (or hex for bytes outside printable ASCII).
fn show(value: &[u8]) -> String {
    match std::str::from_utf8(value) {
        Ok(s) if s.bytes().all(|b| (0x20..=0x7E).contains(&b)) => format!("{s:?}"),
        _ => format!("0x{}", hex::encode(value)),
    }
}

fn line(out: &mut String, bytes: &[u8], comment: &str) {
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let hex = hex.join(" ");
    if comment.is_empty() {
        writeln!(out, "{hex}").unwrap();
    } else {
        writeln!(out, "{hex:<COMMENT_COLUMN$}# {comment}").unwrap();
    }
}

/// One frame as annotated hex: three header lines, then one line (plus wrapping) per field.
pub fn annotate(wire: &[u8]) -> String {
    let mut out = String::new();
    let (header, body) = wire.split_at(FRAME_HEADER_BYTES);
    let msg_type = header[3];
    let name = type_name(msg_type).unwrap_or("?");
    let flags = u16::from_be_bytes([header[4], header[5]]);
    line(
        &mut out,
        &header[..8],
        &format!("magic \"PM\", version 1, type {msg_type:#04x} {name}, flags {flags}, reserved"),
    );
    let correlation_id = u64::from_be_bytes(header[8..16].try_into().unwrap());
    line(
        &mut out,
        &header[8..16],
        &format!("correlation_id {correlation_id}"),
    );
    let body_len = u32::from_be_bytes(header[16..20].try_into().unwrap());
    let crc = u32::from_be_bytes(header[20..24].try_into().unwrap());
    line(
        &mut out,
        &header[16..24],
        &format!("body_len {body_len}, CRC-32C {crc:#010x}"),
    );
    for field in FieldIter::new(body) {
        let field = field.unwrap();
        let spec = field_spec(field.tag).unwrap();
        let value = match spec.kind {
            FieldKind::Str { .. } => show(field.value),
            FieldKind::Bytes { .. } => format!("0x{}", hex::encode(field.value)),
            _ => json_int(field.value).to_string(),
        };
        let raw = &body[field.offset..field.offset + 4 + field.value.len()];
        let first = raw.len().min(4 + FIRST_LINE_VALUE_BYTES);
        line(
            &mut out,
            &raw[..first],
            &format!("{} {} = {value}", spec.tag, spec.name),
        );
        for chunk in raw[first..].chunks(LINE_BYTES) {
            line(&mut out, chunk, "");
        }
    }
    out
}

fn json_int(value: &[u8]) -> u64 {
    value.iter().fold(0, |n, &b| n << 8 | u64::from(b))
}

/// The JSON view of a frame: header fields and every body field by name (STR as a string, BYTES as
/// hex, integers as numbers).
pub fn frame_json(frame: &Frame) -> Value {
    let mut fields = Map::new();
    for field in FieldIter::new(&frame.body) {
        let field = field.unwrap();
        let spec = field_spec(field.tag).unwrap();
        let value = match spec.kind {
            FieldKind::Str { .. } => {
                Value::String(String::from_utf8(field.value.to_vec()).unwrap())
            }
            FieldKind::Bytes { .. } => Value::String(hex::encode(field.value)),
            _ => json!(json_int(field.value)),
        };
        fields.insert(spec.name.to_string(), value);
    }
    json!({
        "msg_type": type_name(frame.header.msg_type).unwrap_or("?"),
        "correlation_id": frame.header.correlation_id,
        "flags": frame.header.flags,
        "fields": fields,
    })
}

/// Decodes exactly one frame from `wire`.
pub fn single_frame(wire: &[u8]) -> Frame {
    let mut buf = BytesMut::from(wire);
    let frame = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
        .unwrap()
        .expect("a complete frame");
    assert!(buf.is_empty(), "{} bytes after the frame", buf.len());
    frame
}

/// The bytes of an annotated hex block: everything before `#` on each line, as hex pairs.
pub fn parse_hex(block: &str) -> Vec<u8> {
    let digits: String = block
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .flat_map(|l| l.split_whitespace())
        .collect();
    hex::decode(digits).expect("hex pairs")
}

/// Fenced blocks labelled ```` ```LANG example=NAME ````: (lang, name, content).
pub fn example_blocks(doc: &str) -> Vec<(String, String, String)> {
    let mut blocks = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut words = info.split_whitespace();
        let (Some(lang), Some(label)) = (words.next(), words.next()) else {
            continue;
        };
        let Some(name) = label.strip_prefix("example=") else {
            continue;
        };
        let content: Vec<&str> = lines
            .by_ref()
            .take_while(|l| !l.starts_with("```"))
            .collect();
        blocks.push((lang.to_string(), name.to_string(), content.join("\n")));
    }
    blocks
}

/// The bytes of the fenced block labelled ```` ```hex vector=NAME ```` (the device signature test
/// vector of section 5.5).
pub fn vector_block(doc: &str, name: &str) -> Vec<u8> {
    let opening = format!("```hex vector={name}");
    let start = doc
        .lines()
        .position(|l| l.trim_end() == opening)
        .unwrap_or_else(|| panic!("no block {opening}"));
    let block: Vec<&str> = doc
        .lines()
        .skip(start + 1)
        .take_while(|l| !l.starts_with("```"))
        .collect();
    parse_hex(&block.join("\n"))
}

/// The examples section of the document, as the example program writes it.
pub fn render_examples() -> String {
    let mut out = String::new();
    for (name, caption, correlation_id, message) in examples() {
        let mut wire = BytesMut::new();
        message.encode(correlation_id, 0, &mut wire);
        let json = frame_json(&single_frame(&wire));
        writeln!(out, "### `{name}`\n\n{caption}\n").unwrap();
        writeln!(out, "```hex example={name}\n{}```\n", annotate(&wire)).unwrap();
        writeln!(
            out,
            "```json example={name}\n{}\n```\n",
            serde_json::to_string_pretty(&json).unwrap()
        )
        .unwrap();
    }
    out
}

/// Markers around the generated examples in docs/PROTOCOL.md.
pub const BEGIN_MARKER: &str = "<!-- examples:begin (generated: cargo run -p paymesh-codecs --example protocol_examples -- --write) -->";
/// End marker.
pub const END_MARKER: &str = "<!-- examples:end -->";

/// Path of docs/PROTOCOL.md.
pub fn doc_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PROTOCOL.md")
}
