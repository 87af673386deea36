//! What docs/PROTOCOL.md promises about answers and session errors, over real sockets: the echo
//! of every answer, REJECT offsets and ids, the type-before-body rule, partial and final
//! captures, installment months, and the retry of an attempt the issuer never answered.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::{Bytes, BytesMut};
use common::*;
use paymesh_codecs::frame::{FrameHeader, begin_frame, finish_frame};
use paymesh_codecs::message::{Message, TxnKind, TxnRequest, TxnState};
use paymesh_codecs::types::ResultCode;

/// A frame of `msg_type` with `body` (the codec refuses to encode what a client may not send).
fn raw_frame(msg_type: u8, correlation_id: u64, body: &[u8]) -> Vec<u8> {
    let mut out = BytesMut::new();
    let start = begin_frame(&FrameHeader::new(msg_type, correlation_id), &mut out);
    out.extend_from_slice(body);
    finish_frame(&mut out, start);
    out.to_vec()
}

fn with_request_id(mut r: TxnRequest, id: &'static str) -> TxnRequest {
    r.request_id = Some(Bytes::from_static(id.as_bytes()));
    r
}

async fn reject(c: &mut Client) -> (u64, paymesh_codecs::message::Reject) {
    match c.recv().await {
        Some((id, Message::Reject(r))) => (id, r),
        other => panic!("{other:?}"),
    }
}

#[actix::test]
async fn answers_echo_the_request_and_say_when_it_was_received() {
    let env = Env::start(EnvOptions {
        card_latency_ms: 30,
        ..EnvOptions::default()
    })
    .await;
    let mut c = env.client().await;
    // An approval: request_id, amount and currency echoed; received before answered (the card
    // host takes 30 ms).
    let auth = with_request_id(
        request(
            TxnKind::Authorize,
            "M000001",
            "E-1",
            Some(1_000),
            Some(card(CARD_PAN)),
        ),
        "REQ-1",
    );
    let a = c.call(auth).await;
    assert_result(&a, ResultCode::Approved);
    assert_eq!(a.request_id.as_deref(), Some(&b"REQ-1"[..]));
    assert_eq!((a.amount, a.currency), (Some(1_000), Some(410)));
    let (received, answered) = (a.received_at_ms.unwrap(), a.answered_at_ms.unwrap());
    assert!(received < answered, "{received} {answered}");
    // Refusals that make no order echo what was sent: 2002 and 2004.
    let a = c
        .call(with_request_id(
            request(
                TxnKind::Authorize,
                "NOPE",
                "E-2",
                Some(7),
                Some(card(VAN_PAN)),
            ),
            "REQ-2",
        ))
        .await;
    assert_result(&a, ResultCode::UnknownMerchant);
    assert_eq!(
        (a.amount, a.currency, a.request_id.as_deref()),
        (Some(7), Some(410), Some(&b"REQ-2"[..]))
    );
    let over = MERCHANT_SINGLE_LIMIT + 1;
    let a = c
        .call(request(
            TxnKind::Authorize,
            "M000001",
            "E-3",
            Some(over),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::AmountOverLimit);
    assert_eq!((a.amount, a.currency), (Some(over), Some(410)));
    // Refused 2004: not stored, so the key is free for a payment within the limit.
    let a = c
        .call(request(
            TxnKind::Authorize,
            "M000001",
            "E-3",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::Approved);
    // A balance inquiry: no amount or currency invented, no state.
    let mut b = request(
        TxnKind::BalanceInquiry,
        "M000001",
        "E-4",
        None,
        Some(card_without_cvv(VAN_PAN)),
    );
    b.currency = None;
    let a = c.call(b).await;
    assert_result(&a, ResultCode::Approved);
    assert_eq!((a.amount, a.currency, a.state), (None, None, None));
    env.stop().await;
}

#[actix::test]
async fn rejects_name_the_byte_and_the_type_comes_before_the_body() {
    let env = Env::start(EnvOptions::default()).await;
    // Before LOGIN: an unknown type is NOT_LOGGED_IN (4001), and the connection closes.
    let mut c = Client::tcp(env.tcp).await;
    c.send_raw(&raw_frame(0x55, 9, b"")).await.unwrap();
    let (id, r) = reject(&mut c).await;
    assert_eq!(
        (id, r.result, r.error_offset),
        (9, ResultCode::NotLoggedIn, Some(3))
    );
    assert!(c.read_to_close().await.is_empty());

    let mut c = env.client().await;
    // A server-to-client type with a body that is not even valid: 4006, at byte 3.
    c.send_raw(&raw_frame(0x90, 11, &[0, 0, 0, 9]))
        .await
        .unwrap();
    let (id, r) = reject(&mut c).await;
    assert_eq!(
        (id, r.result, r.error_offset),
        (11, ResultCode::UnknownMessageType, Some(3))
    );
    // A LOGIN with a bad body, logged in: its field error's offset.
    c.send_raw(&raw_frame(0x01, 12, &[0, 0, 0, 0]))
        .await
        .unwrap();
    let (_, r) = reject(&mut c).await;
    assert_eq!(
        (r.result, r.error_offset),
        (ResultCode::InvalidRequest, Some(24))
    );
    // The session stays: an approval still works.
    let a = c
        .call(request(
            TxnKind::Authorize,
            "M000001",
            "R-1",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::Approved);
    env.stop().await;
}

#[actix::test]
async fn a_duplicate_correlation_id_is_rejected_under_id_0() {
    let env = Env::start(EnvOptions {
        card_latency_ms: 200,
        ..EnvOptions::default()
    })
    .await;
    let mut c = env.client().await;
    let slow = request(
        TxnKind::Authorize,
        "M000001",
        "D-1",
        Some(1_000),
        Some(card(CARD_PAN)),
    );
    c.send(77, &Message::Request(slow.clone())).await;
    let other = request(
        TxnKind::Authorize,
        "M000001",
        "D-2",
        Some(1_000),
        Some(card(CARD_PAN)),
    );
    c.send(77, &Message::Request(other)).await;
    // The REJECT comes first (the original waits for its host) and names no request.
    let (id, r) = reject(&mut c).await;
    assert_eq!(
        (id, r.result, r.error_offset),
        (0, ResultCode::MalformedFrame, Some(8))
    );
    assert!(String::from_utf8_lossy(&r.message).contains("77"));
    match c.recv().await {
        Some((77, Message::Answer(a))) => {
            assert_eq!(a.order_id.as_deref(), Some(&b"D-1"[..]));
            assert_result(&a, ResultCode::Approved);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        env.host_count("card", "D-2"),
        0,
        "the duplicate was not processed"
    );
    env.stop().await;
}

#[actix::test]
async fn partial_captures_a_final_flag_and_cancel_after_them() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let auth = request(
        TxnKind::Authorize,
        "M000001",
        "C-1",
        Some(10_000),
        Some(card(VAN_PAN)),
    );
    assert_result(&c.call(auth).await, ResultCode::Approved);
    let capture = |id: &'static str, amount: u64, last: bool| {
        let mut r = with_request_id(
            request(TxnKind::Capture, "M000001", "C-1", Some(amount), None),
            id,
        );
        r.final_capture = last;
        r
    };
    let a = c.call(capture("S1", 3_000, false)).await;
    assert_eq!(
        (
            a.result,
            a.state,
            a.captured_amount,
            a.request_id.as_deref()
        ),
        (
            ResultCode::Approved,
            Some(TxnState::PartiallyCaptured as u8),
            Some(3_000),
            Some(&b"S1"[..])
        )
    );
    let a = c.call(capture("S2", 7_001, false)).await;
    assert_result(&a, ResultCode::AmountExceedsAvailable);
    let a = c.call(capture("S2", 2_000, true)).await;
    assert_eq!(
        (a.result, a.state, a.captured_amount),
        (
            ResultCode::Approved,
            Some(TxnState::Captured as u8),
            Some(5_000)
        )
    );
    assert_result(
        &c.call(capture("S3", 1, false)).await,
        ResultCode::InvalidState,
    );
    // The second partial capture again: the stored answer, flagged.
    let (again, flags) = c.call_flagged(capture("S2", 2_000, true)).await;
    assert_eq!(again.captured_amount, Some(5_000));
    assert_ne!(flags & paymesh_codecs::frame::flags::RETRANSMIT, 0);
    // CANCEL voids the whole payment, captures included: totals 0.
    let a = c
        .call(request(TxnKind::Cancel, "M000001", "C-1", None, None))
        .await;
    assert_eq!(
        (
            a.result,
            a.state,
            a.captured_amount,
            a.authorized_amount,
            a.amount
        ),
        (
            ResultCode::Approved,
            Some(TxnState::Cancelled as u8),
            Some(0),
            Some(0),
            Some(10_000)
        )
    );
    env.stop().await;
}

#[actix::test]
async fn issuer_unavailable_is_retried_under_the_same_id() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let r = request(
        TxnKind::Authorize,
        "M000001",
        "U-1",
        Some(1_091),
        Some(card(VAN_PAN)),
    );
    let first = c.call(r.clone()).await;
    assert_eq!(
        (
            first.result,
            first.state,
            first.upstream_response_code.as_deref()
        ),
        (
            ResultCode::IssuerUnavailable,
            Some(TxnState::Failed as u8),
            Some(&b"91"[..])
        )
    );
    let (again, flags) = c.call_flagged(r).await;
    assert_eq!(flags, 0, "a new attempt, not a replay");
    assert_eq!(
        again.server_txn_id, first.server_txn_id,
        "no new server_txn_id"
    );
    assert_eq!(
        env.host_authorizations("van", "U-1"),
        2,
        "the host was asked again"
    );
    env.stop().await;
}

#[actix::test]
async fn installment_months_are_validated_echoed_stored_and_sent_upstream() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let mut r = request(
        TxnKind::Authorize,
        "M000001",
        "I-1",
        Some(300_000),
        Some(card(VAN_PAN)),
    );
    r.installment_months = Some(1);
    let a = c.call(r.clone()).await;
    assert_result(&a, ResultCode::InvalidRequest);
    assert!(String::from_utf8_lossy(a.message.as_deref().unwrap()).contains("installment_months"));
    r.installment_months = Some(3);
    let a = c.call(r).await;
    assert_result(&a, ResultCode::Approved);
    assert_eq!(a.installment_months, Some(3));
    let inq = c
        .call(request(TxnKind::Inquiry, "M000001", "I-1", None, None))
        .await;
    assert_eq!(inq.installment_months, Some(3), "kept with the order");
    assert!(env.host_saw("van", "I-1"));
    env.stop().await;
}
