//! Trust boundaries between networks, over real loopback TCP: a network acts only for the
//! merchants it is granted, follows up only its own orders (unless the merchant shares them), and
//! every refusal is the answer a missing merchant or order gets, so nothing leaks. Holds after a
//! restart from the journal and for orders answered from the query store.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::Bytes;
use common::*;
use paymesh_codecs::message::{TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;

async fn client_b(env: &Env) -> Client {
    let mut c = Client::tcp(env.tcp).await;
    assert_eq!(
        c.login(NETWORK_B, CREDENTIAL).await.result,
        ResultCode::Approved
    );
    c
}

/// An answer without what may differ between two honest answers (its times) and with the
/// merchant and order a request named replaced, so answers to requests naming different keys
/// can be compared field by field.
fn shape(mut a: TxnAnswer) -> TxnAnswer {
    a.received_at_ms = None;
    a.answered_at_ms = None;
    a.merchant_id = a.merchant_id.map(|_| Bytes::from_static(b"*"));
    a.order_id = a.order_id.map(|_| Bytes::from_static(b"*"));
    a
}

fn follow_ups(merchant: &str, order: &str) -> Vec<TxnRequest> {
    let mut refund = request(TxnKind::Refund, merchant, order, Some(100), None);
    refund.request_id = Some(Bytes::from_static(b"R1"));
    vec![
        request(TxnKind::Inquiry, merchant, order, None, None),
        request(TxnKind::Capture, merchant, order, Some(100), None),
        request(TxnKind::Cancel, merchant, order, None, None),
        refund,
    ]
}

fn by_id(txn_id: u64) -> TxnRequest {
    let mut r = request(TxnKind::Inquiry, "", "", None, None);
    r.merchant_id = Bytes::new();
    r.order_id = Bytes::new();
    r.server_txn_id = Some(txn_id);
    r
}

#[actix::test]
async fn a_network_never_reaches_another_networks_merchants_or_orders() {
    let env = Env::start(EnvOptions::default()).await;
    let mut a = env.client().await;
    let mut b = client_b(&env).await;

    // A's order at a merchant only A is granted, and one at a merchant both are granted.
    let auth = request(
        TxnKind::Authorize,
        "M000001",
        "OWN-1",
        Some(5_000),
        Some(card(VAN_PAN)),
    );
    let mine = a.call(auth.clone()).await;
    assert_result(&mine, ResultCode::Approved);
    let txn_id = mine.server_txn_id.unwrap();
    let shared_key = request(
        TxnKind::Authorize,
        "MCREATOR",
        "OWN-2",
        Some(5_000),
        Some(card(VAN_PAN)),
    );
    let creator_only = a.call(shared_key.clone()).await;
    assert_result(&creator_only, ResultCode::Approved);

    // Naming a merchant B is not granted: exactly an unconfigured merchant's answer.
    let mut b_auth = auth.clone();
    b_auth.order_id = Bytes::from_static(b"B-1");
    let mut nobody = b_auth.clone();
    nobody.merchant_id = Bytes::from_static(b"MNOBODY");
    let refused = b.call(b_auth).await;
    assert_result(&refused, ResultCode::UnknownMerchant);
    assert!(refused.server_txn_id.is_none());
    assert_eq!(shape(refused), shape(b.call(nobody).await));
    for (theirs, missing) in follow_ups("M000001", "OWN-1")
        .into_iter()
        .zip(follow_ups("MNOBODY", "OWN-1"))
    {
        let kind = theirs.kind;
        let got = b.call(theirs).await;
        assert!(
            got.server_txn_id.is_none() && got.state.is_none(),
            "{kind:?}"
        );
        assert_eq!(shape(got), shape(b.call(missing).await), "{kind:?}");
    }
    // Retransmitting A's authorization: the unconfigured merchant's answer, not A's stored one.
    let replay = b.call(auth.clone()).await;
    assert_result(&replay, ResultCode::UnknownMerchant);

    // By transaction id alone: A's id and its neighbours answer as an id that never existed.
    let never = shape(b.call(by_id(u64::MAX >> 2)).await);
    assert_result(&never, ResultCode::NotFound);
    for guess in txn_id.saturating_sub(20)..=txn_id + 20 {
        assert_eq!(shape(b.call(by_id(guess)).await), never, "id {guess}");
    }
    // A itself still sees it.
    assert_result(&a.call(by_id(txn_id)).await, ResultCode::Approved);

    // A merchant both are granted, whose orders stay with their creator: B gets a missing order's
    // answers, and a retransmission of A's request tells it nothing of the order.
    for (theirs, missing) in follow_ups("MCREATOR", "OWN-2")
        .into_iter()
        .zip(follow_ups("MCREATOR", "NO-SUCH-ORDER"))
    {
        let kind = theirs.kind;
        let got = b.call(theirs).await;
        assert!(
            got.server_txn_id.is_none() && got.state.is_none(),
            "{kind:?}"
        );
        assert_eq!(shape(got), shape(b.call(missing).await), "{kind:?}");
    }
    let taken = b.call(shared_key.clone()).await;
    assert_result(&taken, ResultCode::DuplicateOrder);
    assert!(taken.server_txn_id.is_none() && taken.approval_code.is_none());
    // None of B's attempts touched A's orders.
    let capture = request(TxnKind::Capture, "MCREATOR", "OWN-2", Some(5_000), None);
    assert_result(&a.call(capture).await, ResultCode::Approved);
    assert_eq!(env.host_authorizations("van", "OWN-2"), 1);
    let own = a
        .call(request(TxnKind::Inquiry, "M000001", "OWN-1", None, None))
        .await;
    assert_eq!(own.captured_amount, Some(0));
}

#[actix::test]
async fn a_merchant_may_share_its_orders_among_its_networks() {
    let env = Env::start(EnvOptions::default()).await;
    let mut a = env.client().await;
    let mut b = client_b(&env).await;
    let auth = request(
        TxnKind::Authorize,
        "MSHARED",
        "S-1",
        Some(4_000),
        Some(card(VAN_PAN)),
    );
    assert_result(&a.call(auth).await, ResultCode::Approved);
    let capture = request(TxnKind::Capture, "MSHARED", "S-1", Some(4_000), None);
    assert_result(&b.call(capture).await, ResultCode::Approved);
    let seen = a
        .call(request(TxnKind::Inquiry, "MSHARED", "S-1", None, None))
        .await;
    assert_eq!(seen.captured_amount, Some(4_000));
}

#[actix::test]
async fn transaction_ids_are_not_sequential() {
    let env = Env::start(EnvOptions::default()).await;
    let mut a = env.client().await;
    let mut ids = Vec::new();
    for n in 0..8 {
        let order = format!("SEQ-{n}");
        let r = request(
            TxnKind::Authorize,
            "M000001",
            &order,
            Some(100),
            Some(card(VAN_PAN)),
        );
        let answer = a.call(r).await;
        assert_result(&answer, ResultCode::Approved);
        ids.push(answer.server_txn_id.unwrap());
    }
    let steps: Vec<i128> = ids
        .windows(2)
        .map(|w| i128::from(w[1]) - i128::from(w[0]))
        .collect();
    // Eight ids from one shard's sequence: were they consecutive, most steps would be small.
    assert!(
        steps.iter().filter(|d| d.abs() < 1_000).count() <= 1,
        "{ids:?}"
    );
    assert!(ids.iter().all(|id| *id < 1 << 63));
}

#[actix::test]
async fn ownership_survives_a_restart_and_the_query_store() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EnvOptions {
        journal_dir: Some(dir.path().join("journal")),
        // A window of 16 orders: the first orders leave memory and are answered from the store.
        server_toml: "orders_per_shard_max = 16\norders_hot_per_shard_max = 4\n".into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts.clone()).await;
    let mut a = env.client().await;
    let first = a
        .call(request(
            TxnKind::Authorize,
            "MCREATOR",
            "R-0",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&first, ResultCode::Approved);
    env.stop().await;

    let env = Env::start(opts).await;
    let mut a = env.client().await;
    let mut b = client_b(&env).await;
    let missing = shape(
        b.call(request(TxnKind::Inquiry, "MCREATOR", "NOPE", None, None))
            .await,
    );
    let theirs = request(TxnKind::Inquiry, "MCREATOR", "R-0", None, None);
    assert_eq!(shape(b.call(theirs.clone()).await), missing, "after replay");
    let capture = request(TxnKind::Capture, "MCREATOR", "R-0", Some(1), None);
    assert_result(&b.call(capture).await, ResultCode::NotFound);
    assert_result(&a.call(theirs.clone()).await, ResultCode::Approved);
    // Complete R-0 (an open authorization never leaves the window), then push it out of memory
    // with A's newer sales: the store answers A, and still not B.
    let capture = request(TxnKind::Capture, "MCREATOR", "R-0", Some(1_000), None);
    assert_result(&a.call(capture).await, ResultCode::Approved);
    for n in 1..=40 {
        let order = format!("R-{n}");
        let r = request(
            TxnKind::Sale,
            "MCREATOR",
            &order,
            Some(100),
            Some(card(VAN_PAN)),
        );
        assert_result(&a.call(r).await, ResultCode::Approved);
    }
    let by_store = a.call(theirs.clone()).await;
    assert_result(&by_store, ResultCode::Approved);
    assert_eq!(by_store.server_txn_id, first.server_txn_id);
    assert_eq!(shape(b.call(theirs).await), missing, "from the store");
    assert_eq!(
        shape(b.call(by_id(first.server_txn_id.unwrap())).await),
        shape(b.call(by_id(u64::MAX >> 2)).await)
    );
}

#[actix::test]
async fn zero_huge_and_unknown_amounts_and_currencies_are_refused_naming_the_field() {
    let env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let cases: [(u64, u16, &str); 6] = [
        (0, 410, "amount"),
        (1_000_000_000_000, 410, "amount"),
        (1 << 63, 410, "amount"),
        (1_000, 0, "currency"),
        (1_000, 65_535, "currency"),
        (1_000, 999, "currency"),
    ];
    for (n, (amount, currency, field)) in cases.into_iter().enumerate() {
        let mut r = request(
            TxnKind::Authorize,
            "M000001",
            &format!("V{n}"),
            Some(amount),
            Some(card(VAN_PAN)),
        );
        r.currency = Some(currency);
        let a = c.call(r).await;
        assert_result(&a, ResultCode::InvalidRequest);
        let message =
            String::from_utf8_lossy(a.message.as_deref().unwrap_or_default()).into_owned();
        assert!(message.contains(&format!("field {field} ")), "{message}");
        assert!(a.server_txn_id.is_none() && a.state.is_none(), "{a:?}");
        assert_eq!(env.host_count("van", &format!("V{n}")), 0);
    }
    // The session goes on: a valid request is served.
    let ok = request(
        TxnKind::Authorize,
        "M000001",
        "V-OK",
        Some(1),
        Some(card(VAN_PAN)),
    );
    assert_result(&c.call(ok).await, ResultCode::Approved);
}
