//! Writes seed inputs for the cargo-fuzz targets in `fuzz/`: well-formed PayMesh frames of every
//! client and server message (the worked examples of docs/PROTOCOL.md and one of each request
//! kind and payment method), the ISO 8583 test vectors behind every length header, and session
//! streams (LOGIN, then requests) split into several reads. libFuzzer starts from these instead of
//! from nothing, so it reaches message decoding at once rather than after guessing a CRC-32C.
//!
//! `cargo run -p paymesh-codecs --example fuzz_seeds -- <dir>` writes `<dir>/<target>/<name>`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../tests/support/doc_examples.rs"]
mod doc_examples;

use std::path::Path;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoFramer, LengthHeader};
use paymesh_codecs::message::{
    DeviceSignature, Login, Message, PaymentMethod, TxnKind, TxnRequest,
};
use paymesh_codecs::types::{Pan, Secret};

fn main() {
    let dir = std::env::args().nth(1).expect("usage: fuzz_seeds <dir>");
    let dir = Path::new(&dir);
    let messages = messages();
    write_frame_seeds(&dir.join("frame_decode"), &messages);
    write_iso_seeds(&dir.join("iso8583_decode"));
    write_session_seeds(&dir.join("session_stream"), &messages);
}

fn write(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// The worked examples plus a request of every kind and every payment method, with correlation
/// ids.
fn messages() -> Vec<(String, u64, Message)> {
    let mut all: Vec<(String, u64, Message)> = doc_examples::examples()
        .into_iter()
        .map(|(name, _, correlation_id, message)| (name.to_string(), correlation_id, message))
        .collect();
    let card = || PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: "2912".into(),
        cvv: None,
    };
    let request = |kind, payment: Option<PaymentMethod>| {
        let mut req = TxnRequest::new(kind, "M0001".into(), "ORDER-2002".into());
        req.payment = payment;
        req
    };
    let mut sale = request(
        TxnKind::Sale,
        Some(PaymentMethod::WalletToken("wt_0123456789abcdef".into())),
    );
    sale.amount = Some(5_000);
    sale.currency = Some(840);
    sale.description = Some("coffee".into());
    sale.device_signature = Some(DeviceSignature {
        device_id: "phone-7".into(),
        counter: 7,
        signature: Bytes::from_static(&[0x30, 0x45, 0x02, 0x21, 0x00, 0xff]),
    });
    let mut carrier = request(
        TxnKind::Authorize,
        Some(PaymentMethod::CarrierBilling {
            phone: "821012345678".into(),
            carrier: "carrier-a".into(),
        }),
    );
    carrier.amount = Some(12_000);
    carrier.currency = Some(410);
    let bank = request(
        TxnKind::BalanceInquiry,
        Some(PaymentMethod::BankTransfer {
            bank_code: "004".into(),
            account: "123-456-789012".into(),
        }),
    );
    // Every optional field a request can carry.
    let mut capture_full = request(TxnKind::Capture, None);
    capture_full.amount = Some(1_000);
    capture_full.currency = Some(978);
    capture_full.request_id = Some("CAP-2".into());
    capture_full.server_txn_id = Some(0x0001_0000_0000_2A18);
    capture_full.description = Some("partial capture".into());
    capture_full.device_signature = Some(DeviceSignature {
        device_id: "pos-1".into(),
        counter: 1,
        signature: Bytes::from_static(&[1, 2, 3, 4]),
    });
    let mut inquiry_by_id = TxnRequest::new(TxnKind::Inquiry, Bytes::new(), Bytes::new());
    inquiry_by_id.server_txn_id = Some(0x0001_0000_0000_2A17);
    let extra = [
        ("sale_wallet", 6, Message::Request(sale)),
        ("authorize_carrier", 7, Message::Request(carrier)),
        ("capture_full", 14, Message::Request(capture_full)),
        (
            "cancel",
            8,
            Message::Request(request(TxnKind::Cancel, None)),
        ),
        ("balance_bank", 9, Message::Request(bank)),
        (
            "tokenize",
            10,
            Message::Request(request(TxnKind::Tokenize, Some(card()))),
        ),
        ("inquiry_by_id", 11, Message::Request(inquiry_by_id)),
        ("heartbeat", 12, Message::Heartbeat),
        ("logout", 13, Message::Logout),
        (
            "login_minimal",
            1,
            Message::Login(Login {
                network_id: "n".into(),
                credential: Secret::new("c".into()),
                client_software: None,
            }),
        ),
    ];
    all.extend(
        extra
            .into_iter()
            .map(|(name, correlation_id, message)| (name.to_string(), correlation_id, message)),
    );
    all
}

fn frame(correlation_id: u64, message: &Message) -> BytesMut {
    let mut wire = BytesMut::new();
    message.encode(correlation_id, 0, &mut wire);
    wire
}

/// `frame_decode` reads its input as a stream of frames and, separately, as a type byte and a body.
fn write_frame_seeds(dir: &Path, messages: &[(String, u64, Message)]) {
    let mut stream = Vec::new();
    for (name, correlation_id, message) in messages {
        let wire = frame(*correlation_id, message);
        write(dir, &format!("{name}.frame"), &wire);
        let mut typed = vec![message.msg_type()];
        typed.extend_from_slice(&wire[24..]);
        write(dir, &format!("{name}.body"), &typed);
        stream.extend_from_slice(&wire);
    }
    write(dir, "all.stream", &stream);
}

/// `iso8583_decode` reads its input as one message and as a stream behind each length header.
fn write_iso_seeds(dir: &Path) {
    let vectors = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors");
    for profile in ["ascii_1987", "pyiso_default", "binary_bcd"] {
        let text = std::fs::read_to_string(vectors.join(format!("{profile}.json"))).unwrap();
        let file: serde_json::Value = serde_json::from_str(&text).unwrap();
        let vectors = file["vectors"].as_array().unwrap();
        for (i, vector) in vectors.iter().enumerate() {
            let Some(hex) = vector["hex"].as_str() else {
                continue;
            };
            let msg = hex::decode(hex).unwrap();
            write(dir, &format!("{profile}_{i:02}"), &msg);
            for header in [
                LengthHeader::Binary2,
                LengthHeader::Ascii4,
                LengthHeader::Bcd2,
            ] {
                let mut framed = BytesMut::new();
                IsoFramer::new(header, 4096)
                    .encode(&msg, &mut framed)
                    .unwrap();
                write(dir, &format!("{profile}_{i:02}_{header:?}"), &framed);
            }
        }
    }
}

/// `session_stream` reads a session's max body, where the stream is cut into reads, and the stream
/// (see `fuzz/checks/session.rs`). Seeds: LOGIN then every request, cut in a few ways.
fn write_session_seeds(dir: &Path, messages: &[(String, u64, Message)]) {
    let mut stream = Vec::new();
    for (_, correlation_id, message) in messages {
        if message.is_from_client() {
            stream.extend_from_slice(&frame(*correlation_id, message));
        }
    }
    // A request before LOGIN; a server message from a client after it.
    let mut early = Vec::new();
    for wanted in ["authorize", "login", "authorize_answer"] {
        for (name, correlation_id, message) in messages {
            if name == wanted {
                early.extend_from_slice(&frame(*correlation_id, message));
            }
        }
    }
    let mut late = Vec::new();
    for wanted in ["login", "authorize_answer", "heartbeat", "logout"] {
        for (name, correlation_id, message) in messages {
            if name == wanted {
                late.extend_from_slice(&frame(*correlation_id, message));
            }
        }
    }
    for (name, max_body, cuts, repair) in [
        ("one_read", 16_384u16, &[][..], false),
        ("one_read_repaired", 16_384u16, &[][..], true),
        ("split_in_header", 16_384, &[10, 40][..], true),
        ("split_small", 4_096, &[1, 23, 24, 25, 100][..], true),
        ("limit_256", 256, &[200][..], true),
    ] {
        write(dir, name, &session_input(max_body, cuts, repair, &stream));
    }
    write(
        dir,
        "request_first",
        &session_input(16_384, &[], true, &early),
    );
    write(
        dir,
        "server_message",
        &session_input(16_384, &[30], true, &late),
    );
}

/// The input layout of `fuzz/checks/session.rs`: max body (u16), whether to repair checksums (the
/// top bit) and the number of cuts, each read's length (u16), the stream.
fn session_input(max_body: u16, cuts: &[u16], repair: bool, stream: &[u8]) -> Vec<u8> {
    let mut input = max_body.to_be_bytes().to_vec();
    input.push(cuts.len() as u8 | if repair { 0x80 } else { 0 });
    for cut in cuts {
        input.extend_from_slice(&cut.to_be_bytes());
    }
    input.extend_from_slice(stream);
    input
}
