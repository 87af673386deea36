//! Session-level behaviour over real loopback TCP: graceful shutdown answers what is in flight, the
//! connection limit, every payment method through every transaction type.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use paymesh_codecs::message::{Message, PaymentMethod, TxnKind};
use paymesh_codecs::types::ResultCode;

#[actix::test]
async fn graceful_shutdown_answers_what_is_in_flight_then_closes() {
    let opts = EnvOptions {
        card_latency_ms: 400,
        ..EnvOptions::default()
    };
    let mut env = Env::start(opts).await;
    let mut c = env.client().await;
    let r = request(
        TxnKind::Authorize,
        "M000001",
        "SHUT1",
        Some(1_000),
        Some(card(CARD_PAN)),
    );
    c.send(41, &Message::Request(r)).await;
    // Let the request reach the slow host, then shut down while it is in flight.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let router = env.take_router();
    let shutdown = actix::spawn(router.shutdown());
    let (cid, m) = c.recv().await.unwrap();
    assert_eq!(cid, 41);
    let Message::Answer(a) = m else {
        panic!("{m:?}")
    };
    assert_result(&a, ResultCode::Approved);
    // Then the server says goodbye and closes; new connections are refused.
    assert!(matches!(c.recv().await, Some((0, Message::LogoutAnswer))));
    assert!(c.recv().await.is_none());
    shutdown.await.unwrap();
    assert!(
        tokio::net::TcpStream::connect(env.tcp).await.is_err(),
        "still accepting after shutdown"
    );
    assert_eq!(env.host_count("card", "SHUT1"), 1);
}

#[actix::test]
async fn the_connection_limit_closes_extra_connections() {
    let opts = EnvOptions {
        max_connections: 2,
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let _a = env.client().await;
    let _b = env.client().await;
    let mut extra = Client::tcp(env.tcp).await;
    let login = paymesh_codecs::message::Login {
        network_id: Bytes::from_static(NETWORK.as_bytes()),
        credential: paymesh_codecs::types::Secret::new(Bytes::from_static(CREDENTIAL.as_bytes())),
        client_software: None,
    };
    extra.send(1, &Message::Login(login)).await;
    assert!(
        extra.recv().await.is_none(),
        "a third connection was served"
    );
    env.stop().await;
}

#[actix::test]
async fn every_payment_method_through_sale_authorize_capture_cancel_refund_inquiry() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let t = c
        .call(request(
            TxnKind::Tokenize,
            "M000001",
            "TOK",
            None,
            Some(card_without_cvv(VAN_PAN)),
        ))
        .await;
    let token = t.token.unwrap();
    let methods: Vec<(&str, PaymentMethod)> = vec![
        ("card", card(VAN_PAN)),
        ("wallet", PaymentMethod::WalletToken(token)),
        (
            "carrier",
            PaymentMethod::CarrierBilling {
                phone: Bytes::from_static(b"821012345678"),
                carrier: Bytes::from_static(b"KT"),
            },
        ),
        (
            "bank",
            PaymentMethod::BankTransfer {
                bank_code: Bytes::from_static(b"004"),
                account: Bytes::from_static(b"110123456789"),
            },
        ),
    ];
    // Token payments must be signed by a device of the merchant, each with a new counter.
    let mut counter = 0;
    let mut pay = |kind, order: &str, amount, method: &PaymentMethod| {
        let r = request(kind, "M000001", order, Some(amount), Some(method.clone()));
        match method {
            PaymentMethod::WalletToken(_) => {
                counter += 1;
                sign(r, &test_device_key(), TEST_DEVICE, counter)
            }
            _ => r,
        }
    };
    for (name, method) in methods {
        // Authorize, capture part, refund part of that, inquiry shows the amounts.
        let order = format!("{name}-A");
        assert_result(
            &c.call(pay(TxnKind::Authorize, &order, 9_000, &method))
                .await,
            ResultCode::Approved,
        );
        assert_result(
            &c.call(request(
                TxnKind::Capture,
                "M000001",
                &order,
                Some(6_000),
                None,
            ))
            .await,
            ResultCode::Approved,
        );
        let mut refund = request(TxnKind::Refund, "M000001", &order, Some(2_000), None);
        refund.request_id = Some(Bytes::from_static(b"R1"));
        assert_result(&c.call(refund).await, ResultCode::Approved);
        let inq = c
            .call(request(TxnKind::Inquiry, "M000001", &order, None, None))
            .await;
        assert_eq!(
            (
                inq.authorized_amount,
                inq.captured_amount,
                inq.refunded_amount
            ),
            (Some(9_000), Some(6_000), Some(2_000)),
            "{name}"
        );
        // Authorize then cancel: a reversal; the order is cancelled.
        let order = format!("{name}-C");
        assert_result(
            &c.call(pay(TxnKind::Authorize, &order, 1_000, &method))
                .await,
            ResultCode::Approved,
        );
        let cancel = c
            .call(request(TxnKind::Cancel, "M000001", &order, None, None))
            .await;
        assert_result(&cancel, ResultCode::Approved);
        assert_eq!(cancel.state, Some(4), "{name}");
        // Sale then a full refund.
        let order = format!("{name}-S");
        assert_result(
            &c.call(pay(TxnKind::Sale, &order, 4_000, &method)).await,
            ResultCode::Approved,
        );
        let mut refund = request(TxnKind::Refund, "M000001", &order, None, None);
        refund.request_id = Some(Bytes::from_static(b"ALL"));
        let r = c.call(refund).await;
        assert_result(&r, ResultCode::Approved);
        assert_eq!(
            (r.refunded_amount, r.state),
            (Some(4_000), Some(5)),
            "{name}"
        );
    }
    env.stop().await;
}
