//! Wallet tokens bound to the customer the merchant named at TOKENIZE: a payment with such a
//! token must name the same customer, or it is answered as an unknown token; the binding
//! survives a restart from the checkpoint a clean shutdown takes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use bytes::Bytes;
use common::*;
use paymesh_codecs::message::{PaymentMethod, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;

fn pay(token: &Bytes, order: &str, customer: Option<&'static str>, counter: u64) -> TxnRequest {
    let mut r = request(
        TxnKind::Authorize,
        "M000001",
        order,
        Some(700),
        Some(PaymentMethod::WalletToken(token.clone())),
    );
    r.customer_ref = customer.map(|c| Bytes::from_static(c.as_bytes()));
    sign(r, &test_device_key(), TEST_DEVICE, counter)
}

#[actix::test]
async fn a_customer_bound_token_pays_only_for_its_customer_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EnvOptions {
        journal_dir: Some(dir.path().join("journal")),
        ..EnvOptions::default()
    };
    let env = Env::start(opts.clone()).await;
    let mut c = env.client().await;
    let mut tokenize = request(
        TxnKind::Tokenize,
        "M000001",
        "CT-1",
        None,
        Some(card_without_cvv(VAN_PAN)),
    );
    tokenize.customer_ref = Some(Bytes::from_static(b"customer-7"));
    let t = c.call(tokenize).await;
    assert_result(&t, ResultCode::Approved);
    let bound = t.token.clone().unwrap();
    let unbound = c
        .call(request(
            TxnKind::Tokenize,
            "M000001",
            "CT-2",
            None,
            Some(card_without_cvv(VAN_PAN)),
        ))
        .await
        .token
        .unwrap();
    let unknown = Bytes::from_static(b"pmt_00000000000000000000000000000000");

    let tokens = Tokens {
        bound,
        unbound,
        unknown,
    };
    check(&mut c, &tokens, 10, "live").await;
    env.stop().await;

    let env = Env::start(opts).await;
    let mut c = env.client().await;
    check(&mut c, &tokens, 100, "restarted").await;
    env.stop().await;
}

struct Tokens {
    bound: Bytes,
    unbound: Bytes,
    unknown: Bytes,
}

async fn check(c: &mut Client, t: &Tokens, counter: u64, label: &str) {
    let never = shape(
        c.call(pay(
            &t.unknown,
            &format!("CT-{label}-0"),
            Some("customer-7"),
            counter,
        ))
        .await,
    );
    assert_eq!(never.result, ResultCode::InvalidCard);
    // Without the customer, or with another: exactly an unknown token's answer.
    for (n, customer) in [(1, None), (2, Some("customer-8"))] {
        let got = c
            .call(pay(
                &t.bound,
                &format!("CT-{label}-{n}"),
                customer,
                counter + n,
            ))
            .await;
        assert_eq!(shape(got), never, "{label}: {customer:?}");
    }
    let ok = c
        .call(pay(
            &t.bound,
            &format!("CT-{label}-3"),
            Some("customer-7"),
            counter + 3,
        ))
        .await;
    assert_result(&ok, ResultCode::Approved);
    // A token tokenized for no customer pays whoever the merchant names.
    let any = c
        .call(pay(
            &t.unbound,
            &format!("CT-{label}-4"),
            Some("anyone"),
            counter + 4,
        ))
        .await;
    assert_result(&any, ResultCode::Approved);
}

/// An answer without what differs between any two answers of one kind and code (order ids,
/// times, the messages naming them).
fn shape(mut a: paymesh_codecs::message::TxnAnswer) -> paymesh_codecs::message::TxnAnswer {
    a.order_id = None;
    a.received_at_ms = None;
    a.answered_at_ms = None;
    a
}

#[test]
fn customer_ref_is_refused_where_no_token_is_involved() {
    let mut r = request(
        TxnKind::Authorize,
        "M000001",
        "CT-X",
        Some(700),
        Some(card(VAN_PAN)),
    );
    r.customer_ref = Some(Bytes::from_static(b"customer-7"));
    let mut buf = bytes::BytesMut::new();
    paymesh_codecs::message::Message::Request(r).encode(1, 0, &mut buf);
    let frame = paymesh_codecs::frame::decode_frame(&mut buf, 16_384)
        .unwrap()
        .unwrap();
    let err = paymesh_codecs::message::Message::decode(&frame).unwrap_err();
    assert_eq!(err.result_code(), ResultCode::InvalidRequest);
}
