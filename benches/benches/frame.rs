//! PayMesh frame protocol: decode and encode of a typical AUTHORIZE (card with CVV; `_signed` adds a
//! device id and a 64-byte signature) and of its approved answer. Each iteration handles a read
//! buffer of `BATCH` pipelined frames, as one socket read would; throughput is in messages.
//!
//! - `frame_only`: `decode_frame` + `encode_frame` (framing and CRC-32C both ways, no fields).
//! - `typed`: `decode_frame` + `Message::decode` + `Message::encode`.
//! - `server_path`: decode the request (frame and fields), encode its answer: a switch's codec work
//!   per transaction.
//!
//! `cargo bench -p paymesh-benches --bench frame -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, decode_frame, encode_frame};
use paymesh_codecs::message::{
    DeviceSignature, Message, PaymentMethod, TxnAnswer, TxnKind, TxnRequest, TxnState,
};
use paymesh_codecs::types::{Pan, ResultCode, Secret};

/// Frames per simulated socket read.
const BATCH: usize = 256;

fn authorize(signed: bool) -> TxnRequest {
    let mut req = TxnRequest::new(
        TxnKind::Authorize,
        "M000000000001".into(),
        "ORD-2026-11-26-000001".into(),
    );
    req.amount = Some(125_000);
    req.currency = Some(410);
    req.payment = Some(PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: "2912".into(),
        cvv: Some(Secret::new("123".into())),
    });
    if signed {
        req.device_signature = Some(DeviceSignature {
            device_id: "dev-8f14e45fceea167a".into(),
            counter: 1,
            signature: Bytes::from_static(&[0xA5; 64]),
        });
    }
    req
}

fn approved(req: &TxnRequest) -> TxnAnswer {
    let mut answer = TxnAnswer::echo(req, ResultCode::Approved);
    answer.server_txn_id = Some(0x0001_0000_0000_2a17);
    answer.approval_code = Some("A1B2C3".into());
    answer.rrn = Some("633014000123".into());
    answer.upstream_response_code = Some("00".into());
    answer.received_at_ms = Some(1_795_000_000_000);
    answer.answered_at_ms = Some(1_795_000_000_042);
    answer.state = Some(TxnState::Authorized as u8);
    answer.authorized_amount = Some(125_000);
    answer.masked_pan = Some("411111******1111".into());
    answer
}

/// `BATCH` copies of `message`, pipelined, with distinct correlation ids; and one frame's size.
fn stream(message: &Message) -> (BytesMut, usize) {
    let mut buf = BytesMut::new();
    for i in 0..BATCH {
        message.encode(i as u64, 0, &mut buf);
    }
    let frame_bytes = buf.len() / BATCH;
    (buf, frame_bytes)
}

/// A fresh copy of the read buffer and an empty output buffer, outside the measured time.
fn setup(input: &BytesMut) -> impl FnMut() -> (BytesMut, BytesMut) + '_ {
    move || (input.clone(), BytesMut::with_capacity(input.len() * 2))
}

/// A measured loop over one read buffer, writing to an output buffer.
type Routine = fn(&mut BytesMut, &mut BytesMut) -> usize;

/// Frame layer only: split each frame off, write it back out.
fn frame_only(input: &mut BytesMut, out: &mut BytesMut) -> usize {
    while let Some(frame) = decode_frame(input, FRAME_BODY_BYTES_MAX).unwrap() {
        encode_frame(&frame.header, &frame.body, out);
    }
    out.len()
}

/// Frame and fields: decode each message, encode it back.
fn typed(input: &mut BytesMut, out: &mut BytesMut) -> usize {
    while let Some(frame) = decode_frame(input, FRAME_BODY_BYTES_MAX).unwrap() {
        let message = Message::decode(&frame).unwrap();
        message.encode(frame.header.correlation_id, 0, out);
    }
    out.len()
}

fn bench(c: &mut Criterion) {
    let plain = Message::Request(authorize(false));
    let signed = Message::Request(authorize(true));
    let reply = approved(&authorize(false));
    let answer = Message::Answer(reply.clone());
    let (plain_in, plain_bytes) = stream(&plain);
    let (signed_in, signed_bytes) = stream(&signed);
    let (answer_in, answer_bytes) = stream(&answer);

    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(BATCH as u64));
    let cases: [(&str, &BytesMut, usize, Routine); 5] = [
        ("frame_only/authorize", &plain_in, plain_bytes, frame_only),
        (
            "frame_only/authorize_signed",
            &signed_in,
            signed_bytes,
            frame_only,
        ),
        ("typed/authorize", &plain_in, plain_bytes, typed),
        ("typed/authorize_signed", &signed_in, signed_bytes, typed),
        ("typed/authorize_answer", &answer_in, answer_bytes, typed),
    ];
    for (name, input, frame_bytes, routine) in cases {
        group.bench_function(format!("{name}_{frame_bytes}B"), |b| {
            b.iter_batched_ref(
                setup(input),
                |(input, out)| black_box(routine(input, out)),
                BatchSize::LargeInput,
            )
        });
    }
    group.bench_function("server_path/authorize_in_answer_out", |b| {
        b.iter_batched_ref(
            setup(&plain_in),
            |(input, out)| {
                while let Some(frame) = decode_frame(input, FRAME_BODY_BYTES_MAX).unwrap() {
                    let Message::Request(request) = Message::decode(&frame).unwrap() else {
                        unreachable!()
                    };
                    let mut a = reply.clone();
                    a.order_id = Some(request.order_id);
                    Message::Answer(a).encode(frame.header.correlation_id, 0, out);
                }
                black_box(out.len())
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
