//! The transaction path end to end over real loopback TCP and TLS: gateway-sim hosts, the router
//! (actors on Arbiters), and a protocol client, all in this process.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use paymesh_codecs::message::{Message, PaymentMethod, TxnKind};
use paymesh_codecs::types::ResultCode;

#[actix::test]
async fn every_transaction_type_with_every_payment_method() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    // Card: authorize, capture (partial), refund (two partial), inquiry.
    let a = c
        .call(request(
            TxnKind::Authorize,
            "M000001",
            "A1",
            Some(10_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::Approved);
    assert!(a.approval_code.is_some() && a.rrn.is_some() && a.server_txn_id.is_some());
    assert_eq!(a.upstream_response_code.as_deref(), Some(&b"00"[..]));
    let cap = c
        .call(request(
            TxnKind::Capture,
            "M000001",
            "A1",
            Some(8_000),
            None,
        ))
        .await;
    assert_result(&cap, ResultCode::Approved);
    for (id, amount) in [("R1", 5_000), ("R2", 3_000)] {
        let mut r = request(TxnKind::Refund, "M000001", "A1", Some(amount), None);
        r.request_id = Some(Bytes::from_static(id.as_bytes()));
        assert_result(&c.call(r).await, ResultCode::Approved);
    }
    let mut r = request(TxnKind::Refund, "M000001", "A1", Some(1), None);
    r.request_id = Some(Bytes::from_static(b"R3"));
    assert_result(&c.call(r).await, ResultCode::AmountExceedsAvailable);
    let inq = c
        .call(request(TxnKind::Inquiry, "M000001", "A1", None, None))
        .await;
    assert_result(&inq, ResultCode::Approved);
    assert_eq!(
        (inq.captured_amount, inq.refunded_amount, inq.state),
        (Some(8_000), Some(8_000), Some(5))
    );
    // Inquiry by server transaction id alone.
    let mut by_id = request(TxnKind::Inquiry, "", "", None, None);
    by_id.server_txn_id = a.server_txn_id;
    let inq2 = c.call(by_id).await;
    assert_eq!(inq2.order_id.as_deref(), Some(&b"A1"[..]));
    // Sale then cancel (a reversal upstream).
    assert_result(
        &c.call(request(
            TxnKind::Sale,
            "M000001",
            "S1",
            Some(2_000),
            Some(card(CARD_PAN)),
        ))
        .await,
        ResultCode::Approved,
    );
    let cancel = c
        .call(request(TxnKind::Cancel, "M000001", "S1", None, None))
        .await;
    assert_result(&cancel, ResultCode::Approved);
    assert_eq!(cancel.state, Some(4));
    // Tokenize, then pay with the token.
    let t = c
        .call(request(
            TxnKind::Tokenize,
            "M000001",
            "T1",
            None,
            Some(card_without_cvv(VAN_PAN)),
        ))
        .await;
    assert_result(&t, ResultCode::Approved);
    let token = t.token.clone().unwrap();
    assert!(!format!("{t:?}").contains(VAN_PAN));
    // Token payments must be signed by a device of the merchant.
    let w = request(
        TxnKind::Authorize,
        "M000001",
        "W1",
        Some(700),
        Some(PaymentMethod::WalletToken(token)),
    );
    let w = c.call(sign(w, &test_device_key(), TEST_DEVICE, 1)).await;
    assert_result(&w, ResultCode::Approved);
    // Carrier billing and bank transfer.
    let carrier = PaymentMethod::CarrierBilling {
        phone: Bytes::from_static(b"821012345678"),
        carrier: Bytes::from_static(b"SKT"),
    };
    assert_result(
        &c.call(request(
            TxnKind::Sale,
            "M000001",
            "C1",
            Some(3_300),
            Some(carrier),
        ))
        .await,
        ResultCode::Approved,
    );
    let bank = PaymentMethod::BankTransfer {
        bank_code: Bytes::from_static(b"004"),
        account: Bytes::from_static(b"12345678901234"),
    };
    assert_result(
        &c.call(request(
            TxnKind::Sale,
            "M000001",
            "B1",
            Some(50_000),
            Some(bank),
        ))
        .await,
        ResultCode::Approved,
    );
    // Balance inquiry.
    let bal = c
        .call(request(
            TxnKind::BalanceInquiry,
            "M000001",
            "BAL1",
            None,
            Some(card_without_cvv(VAN_PAN)),
        ))
        .await;
    assert_result(&bal, ResultCode::Approved);
    assert!(bal.balance.is_some());
    // Routing: each method reached its own host.
    assert!(
        env.host_saw("van", "A1")
            && env.host_saw("card", "S1")
            && env.host_saw("carrier", "C1")
            && env.host_saw("bank", "B1")
    );
    assert!(!env.host_saw("van", "S1") && !env.host_saw("card", "A1"));
    env.stop().await;
}

#[actix::test]
async fn retransmission_gets_the_first_answer_and_one_upstream_request() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let r = request(
        TxnKind::Authorize,
        "M000001",
        "IDEM1",
        Some(1_234),
        Some(card(VAN_PAN)),
    );
    let first = c.call(r.clone()).await;
    let second = c.call(r.clone()).await;
    assert_eq!(first.server_txn_id, second.server_txn_id);
    assert_eq!(first.approval_code, second.approval_code);
    assert_eq!(env.host_count("van", "IDEM1"), 1);
    // Same key, other content: a clear duplicate error.
    let mut other = r.clone();
    other.amount = Some(9_999);
    assert_result(&c.call(other).await, ResultCode::DuplicateOrder);
    // From another connection too.
    let mut c2 = env.client().await;
    assert_eq!(c2.call(r).await.server_txn_id, first.server_txn_id);
    assert_eq!(env.host_count("van", "IDEM1"), 1);
    env.stop().await;
}

#[actix::test]
async fn pipelined_answers_come_back_out_of_order_by_correlation_id() {
    let opts = EnvOptions {
        card_latency_ms: 300,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let mut c = env.client().await;
    // The slow host's request goes first; the fast host's answer overtakes it.
    c.send(
        11,
        &Message::Request(request(
            TxnKind::Authorize,
            "M000001",
            "SLOW",
            Some(100),
            Some(card(CARD_PAN)),
        )),
    )
    .await;
    c.send(
        12,
        &Message::Request(request(
            TxnKind::Authorize,
            "M000001",
            "FAST",
            Some(100),
            Some(card(VAN_PAN)),
        )),
    )
    .await;
    let (first, a1) = c.recv().await.unwrap();
    let (second, a2) = c.recv().await.unwrap();
    assert_eq!((first, second), (12, 11));
    for a in [a1, a2] {
        let Message::Answer(a) = a else { panic!() };
        assert_result(&a, ResultCode::Approved);
    }
    env.stop().await;
}

#[actix::test]
async fn an_upstream_timeout_is_answered_within_the_configured_time() {
    let opts = EnvOptions {
        card_latency_ms: 3_000,
        host_timeout_ms: 300,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let mut c = env.client().await;
    let started = Instant::now();
    let a = c
        .call(request(
            TxnKind::Authorize,
            "M000001",
            "TO1",
            Some(100),
            Some(card(CARD_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::UpstreamTimeout);
    assert!(
        started.elapsed() < Duration::from_millis(2_500),
        "answered before the host would have"
    );
    let inq = c
        .call(request(TxnKind::Inquiry, "M000001", "TO1", None, None))
        .await;
    assert_eq!(inq.state, Some(8), "in doubt");
    env.stop().await;
}

#[actix::test]
async fn a_client_beyond_its_window_gets_busy() {
    let opts = EnvOptions {
        card_latency_ms: 300,
        inflight_window: 4,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let mut c = env.client().await;
    for i in 0..10u64 {
        let r = request(
            TxnKind::Authorize,
            "M000001",
            &format!("WIN{i}"),
            Some(100),
            Some(card(CARD_PAN)),
        );
        c.send(100 + i, &Message::Request(r)).await;
    }
    let mut busy = 0;
    let mut approved = 0;
    for _ in 0..10 {
        let (_, m) = c.recv().await.unwrap();
        let Message::Answer(a) = m else {
            panic!("{m:?}")
        };
        match a.result {
            ResultCode::Busy => busy += 1,
            ResultCode::Approved => approved += 1,
            other => panic!("{other:?}"),
        }
    }
    assert_eq!((approved, busy), (4, 6));
    env.stop().await;
}

#[actix::test]
async fn login_rules() {
    let env = Env::start(EnvOptions::default()).await;
    // Anything before LOGIN: refused and closed.
    let mut c = Client::tcp(env.tcp).await;
    c.send(
        1,
        &Message::Request(request(TxnKind::Inquiry, "M000001", "X", None, None)),
    )
    .await;
    match c.recv().await {
        Some((1, Message::Reject(r))) => assert_eq!(r.result, ResultCode::NotLoggedIn),
        other => panic!("{other:?}"),
    }
    assert!(c.recv().await.is_none(), "connection closed");
    // Wrong credential: refused and closed.
    let mut c = Client::tcp(env.tcp).await;
    let a = c.login(NETWORK, "wrong").await;
    assert_eq!(a.result, ResultCode::AuthFailed);
    assert!(c.recv().await.is_none());
    let mut c = Client::tcp(env.tcp).await;
    assert_eq!(
        c.login("NOSUCHNET", CREDENTIAL).await.result,
        ResultCode::AuthFailed
    );
    // Right credential: the window and timers are announced; heartbeat answered; logout closes.
    let mut c = Client::tcp(env.tcp).await;
    let a = c.login(NETWORK, CREDENTIAL).await;
    assert_eq!(a.result, ResultCode::Approved);
    assert!(a.inflight_window.unwrap() >= 1 && a.idle_timeout_ms.is_some());
    c.send(5, &Message::Heartbeat).await;
    assert!(matches!(
        c.recv().await,
        Some((5, Message::HeartbeatAnswer))
    ));
    c.send(6, &Message::Logout).await;
    assert!(matches!(c.recv().await, Some((6, Message::LogoutAnswer))));
    assert!(c.recv().await.is_none());
    env.stop().await;
}

#[actix::test]
async fn garbage_and_oversize_frames_are_rejected_and_others_keep_being_served() {
    let env = Env::start(EnvOptions::default()).await;
    let mut good = env.client().await;
    let mut bad = env.client().await;
    bad.send_raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    match bad.recv().await {
        Some((_, Message::Reject(r))) => assert_eq!(r.result, ResultCode::MalformedFrame),
        other => panic!("{other:?}"),
    }
    assert!(bad.recv().await.is_none());
    // Oversize: a valid header announcing a 1 MiB body.
    let mut big = env.client().await;
    let mut header = Vec::from(&b"PM"[..]);
    header.extend_from_slice(&[1, 0x10, 0, 0, 0, 0]);
    header.extend_from_slice(&77u64.to_be_bytes());
    header.extend_from_slice(&(1u32 << 20).to_be_bytes());
    header.extend_from_slice(&[0, 0, 0, 0]);
    big.send_raw(&header).await.unwrap();
    match big.recv().await {
        Some((77, Message::Reject(r))) => assert_eq!(r.result, ResultCode::FrameTooLarge),
        other => panic!("{other:?}"),
    }
    assert!(big.recv().await.is_none());
    // A well-framed request missing a required field: answered, connection kept.
    let mut r = request(
        TxnKind::Authorize,
        "M000001",
        "NOAMT",
        None,
        Some(card(VAN_PAN)),
    );
    r.currency = Some(410);
    let mut out = bytes::BytesMut::new();
    Message::Request(r).encode(9, 0, &mut out);
    // (The codec refuses to decode it; the router answers INVALID_REQUEST on this connection.)
    good.send_raw(&out).await.unwrap();
    let (cid, m) = good.recv().await.unwrap();
    assert_eq!(cid, 9);
    let Message::Answer(a) = m else {
        panic!("{m:?}")
    };
    assert_eq!(a.result, ResultCode::InvalidRequest);
    assert_result(
        &good
            .call(request(
                TxnKind::Authorize,
                "M000001",
                "STILL",
                Some(1_000),
                Some(card(VAN_PAN)),
            ))
            .await,
        ResultCode::Approved,
    );
    env.stop().await;
}

#[actix::test]
async fn tls_and_mutual_tls() {
    let opts = EnvOptions {
        tls: true,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let ca = env.dev_cert_pem.clone().unwrap();
    let mut c = Client::tls(env.tls.unwrap(), &ca, None).await.unwrap();
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::Approved
    );
    assert_result(
        &c.call(request(
            TxnKind::Authorize,
            "M000001",
            "TLS1",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await,
        ResultCode::Approved,
    );
    env.stop().await;

    let opts = EnvOptions {
        mutual_tls: true,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let (server_ca, client) = (
        env.server_ca_pem.clone().unwrap(),
        env.client_identity.clone().unwrap(),
    );
    // Without a client certificate: the handshake (or the first read) fails.
    let refused = match Client::tls(env.tls.unwrap(), &server_ca, None).await {
        Err(_) => true,
        Ok(mut c) => {
            c.send(1, &Message::Heartbeat).await;
            c.recv().await.is_none()
        }
    };
    assert!(refused, "a client without a certificate was served");
    let mut c = Client::tls(env.tls.unwrap(), &server_ca, Some((&client.0, &client.1)))
        .await
        .unwrap();
    assert_eq!(
        c.login(NETWORK, CREDENTIAL).await.result,
        ResultCode::Approved
    );
    env.stop().await;
}

#[actix::test]
async fn merchant_rules_and_unroutable() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    assert_result(
        &c.call(request(
            TxnKind::Authorize,
            "NOSUCH",
            "X1",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await,
        ResultCode::UnknownMerchant,
    );
    assert_result(
        &c.call(request(
            TxnKind::Authorize,
            "MOFF",
            "X2",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await,
        ResultCode::MerchantDisabled,
    );
    assert_result(
        &c.call(request(
            TxnKind::Authorize,
            "M000001",
            "X3",
            Some(MERCHANT_SINGLE_LIMIT + 1),
            Some(card(VAN_PAN)),
        ))
        .await,
        ResultCode::AmountOverLimit,
    );
    assert_result(
        &c.call(request(
            TxnKind::Authorize,
            "M000001",
            "X4",
            Some(1_000),
            Some(card("3530111333300000")),
        ))
        .await,
        ResultCode::Unroutable,
    );
    assert_result(
        &c.call(request(
            TxnKind::Authorize,
            "M000001",
            "X5",
            Some(1_000),
            Some(card("4111111111111112")),
        ))
        .await,
        ResultCode::InvalidCard,
    );
    assert_result(
        &c.call(request(TxnKind::Capture, "M000001", "NEVER", None, None))
            .await,
        ResultCode::NotFound,
    );
    env.stop().await;
}

#[actix::test]
async fn an_order_older_than_the_window_is_answered_from_the_store_and_never_authorized_again() {
    let opts = EnvOptions {
        server_toml: "orders_per_shard_max = 16\norders_hot_per_shard_max = 4\n".into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let mut c = env.client().await;
    // Sales: completed orders leave the window first (an open authorization stays in it).
    let first = request(
        TxnKind::Sale,
        "M000001",
        "OLD-0",
        Some(1_000),
        Some(card(VAN_PAN)),
    );
    let approved = c.call(first.clone()).await;
    assert_result(&approved, ResultCode::Approved);
    // One merchant, one shard: 40 more orders push OLD-0 out of its window of 16.
    for n in 1..=40 {
        let r = request(
            TxnKind::Sale,
            "M000001",
            &format!("OLD-{n}"),
            Some(1_000),
            Some(card(VAN_PAN)),
        );
        assert_result(&c.call(r).await, ResultCode::Approved);
    }
    // INQUIRY finds it in the query store (its writer commits in batches: ask until it has).
    let inquiry = request(TxnKind::Inquiry, "M000001", "OLD-0", None, None);
    let mut found = c.call(inquiry.clone()).await;
    for _ in 0..250 {
        if found.result != ResultCode::NotFound {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        found = c.call(inquiry.clone()).await;
    }
    assert_result(&found, ResultCode::Approved);
    assert_eq!(found.server_txn_id, approved.server_txn_id);
    assert_eq!(found.state, Some(2), "captured");
    assert_eq!(found.authorized_amount, Some(1_000));
    assert_eq!(found.approval_code, approved.approval_code);
    assert_eq!(found.masked_pan, approved.masked_pan);
    // By server transaction id too.
    let mut by_id = request(TxnKind::Inquiry, "", "", None, None);
    by_id.server_txn_id = approved.server_txn_id;
    assert_eq!(c.call(by_id).await.server_txn_id, approved.server_txn_id);
    // An order that never existed is still not found.
    let none = request(TxnKind::Inquiry, "M000001", "NEVER", None, None);
    assert_result(&c.call(none).await, ResultCode::NotFound);
    // The same sale again is refused, and the host never sees it twice.
    assert_result(&c.call(first).await, ResultCode::DuplicateOrder);
    assert_eq!(env.host_count("van", "OLD-0"), 1);
    env.stop().await;
}
