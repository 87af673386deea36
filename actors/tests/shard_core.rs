//! The shard state machine, driven directly (sans-IO): idempotency, transitions, limits, routing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::Bytes;
use paymesh_actors::core::access::{AccessTable, Origin};
use paymesh_actors::core::config::{
    CoreSettings, DeviceConfig, DeviceSignaturePolicy, MerchantConfig, RouteConfig, RouteMethod,
};
use paymesh_actors::core::shard::{Output, REVERSAL_RETRY_MS, ShardCore};
use paymesh_actors::core::upstream::{
    OriginalRef, UpstreamKind, UpstreamOutcome, UpstreamRequest, UpstreamResult, not_sent,
};
use paymesh_actors::error::MeshError;
use paymesh_codecs::message::{DeviceSignature, PaymentMethod, TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, ResultCode};

/// The network every request of these tests comes from (granted every merchant).
const NET: &[u8] = b"NET";

const NOW: u64 = 1_795_729_196_000;

fn merchant(id: &str) -> MerchantConfig {
    MerchantConfig {
        id: id.into(),
        enabled: true,
        single_limit_minor: Some(1_000_000),
        daily_limit_minor: Some(1_500_000),
        currencies: vec![410],
        follow_ups: Default::default(),
        devices: Vec::new(),
        device_signature: DeviceSignaturePolicy::Optional,
    }
}

fn core() -> ShardCore<u32> {
    core_with(false)
}

/// A shard whose hosts take captures online (or not).
fn core_with(capture_online: bool) -> ShardCore<u32> {
    core_adjusted(|s| s.capture_online = vec![capture_online; 3])
}

/// A shard whose settings `adjust` changed.
fn core_adjusted(adjust: impl FnOnce(&mut CoreSettings)) -> ShardCore<u32> {
    let mut disabled = merchant("OFF");
    disabled.enabled = false;
    let routes = vec![
        RouteConfig {
            method: RouteMethod::Card,
            bin_from: Some(400_000),
            bin_to: Some(499_999),
            key: None,
            host: "van".into(),
            failover: Vec::new(),
        },
        RouteConfig {
            method: RouteMethod::Card,
            bin_from: Some(510_000),
            bin_to: Some(559_999),
            key: None,
            host: "card".into(),
            failover: Vec::new(),
        },
        RouteConfig {
            method: RouteMethod::Carrier,
            bin_from: None,
            bin_to: None,
            key: None,
            host: "carrier".into(),
            failover: Vec::new(),
        },
    ];
    let hosts = vec!["van".to_string(), "card".to_string(), "carrier".to_string()];
    // M1's phone signs its wallet-token payments (they must be signed).
    let mut m1 = merchant("M1");
    m1.devices.push(DeviceConfig {
        id: "phone-1".into(),
        public_key: hex::encode(phone_key().verifying_key().to_bytes()),
    });
    let mut settings =
        CoreSettings::new(&[m1, merchant("M2"), disabled], &routes, &hosts, 540).unwrap();
    let s = std::sync::Arc::get_mut(&mut settings).unwrap();
    s.access = AccessTable::grant_all(&[NET]);
    adjust(s);
    ShardCore::new(0, settings, 1)
}

fn phone_key() -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&[7; 32])
}

/// `r` signed by M1's phone with `counter` (docs/PROTOCOL.md, "Device signatures").
fn signed(mut r: TxnRequest, counter: u64) -> TxnRequest {
    use ed25519_dalek::Signer;
    r.device_signature = Some(DeviceSignature {
        device_id: Bytes::from_static(b"phone-1"),
        counter,
        signature: Bytes::new(),
    });
    let mut message = bytes::BytesMut::new();
    r.device_signed_bytes(&mut message);
    let signature = phone_key().sign(&message).to_bytes();
    if let Some(d) = &mut r.device_signature {
        d.signature = Bytes::copy_from_slice(&signature);
    }
    r
}

fn card(pan: &str) -> PaymentMethod {
    PaymentMethod::Card {
        pan: Pan::new(Bytes::copy_from_slice(pan.as_bytes())).unwrap(),
        expiry: Bytes::from_static(b"3012"),
        cvv: None,
    }
}

fn req(kind: TxnKind, merchant: &str, order: &str, amount: Option<u64>) -> TxnRequest {
    let mut r = TxnRequest::new(
        kind,
        Bytes::copy_from_slice(merchant.as_bytes()),
        Bytes::copy_from_slice(order.as_bytes()),
    );
    r.amount = amount;
    if matches!(kind, TxnKind::Authorize | TxnKind::Sale) {
        r.currency = Some(410);
        r.payment = Some(card("4111111111111111"));
    }
    r
}

/// Splits outputs into answers (by requester) and upstream requests.
fn split(out: Vec<Output<u32>>) -> (Vec<(u32, TxnAnswer)>, Vec<UpstreamRequest>) {
    let mut answers = Vec::new();
    let mut upstream = Vec::new();
    for o in out {
        match o {
            Output::Reply(to, a) | Output::Replay(to, a) => answers.push((to, *a)),
            Output::Upstream(r) => upstream.push(*r),
        }
    }
    (answers, upstream)
}

fn step(
    core: &mut ShardCore<u32>,
    to: u32,
    r: &TxnRequest,
) -> (Vec<(u32, TxnAnswer)>, Vec<UpstreamRequest>) {
    let mut out = Vec::new();
    let _ = core.handle_request(NOW, to, Origin::Network(NET), r, &mut out);
    split(out)
}

fn answer_upstream(
    core: &mut ShardCore<u32>,
    req: &UpstreamRequest,
    code: &str,
) -> Vec<(u32, TxnAnswer)> {
    let sent = OriginalRef {
        mti: 100,
        stan: 7,
        transmitted: Bytes::from_static(b"1126213956"),
        rrn: Bytes::from_static(b"633021000007"),
        terminal: bytes::Bytes::new(),
    };
    let outcome = UpstreamOutcome::Answered {
        result: paymesh_actors::core::upstream::map_response_code(code.as_bytes()),
        response_code: Bytes::copy_from_slice(code.as_bytes()),
        approval_code: if code == "00" {
            Bytes::from_static(b"A1B2C3")
        } else {
            Bytes::new()
        },
        sent,
        balance: None,
    };
    let mut out = Vec::new();
    core.handle_upstream(
        NOW + 5,
        UpstreamResult {
            op_id: req.op_id,
            outcome,
        },
        &mut out,
    );
    split(out).0
}

fn authorized(core: &mut ShardCore<u32>, order: &str, amount: u64, kind: TxnKind) -> TxnAnswer {
    let (a, up) = step(core, 1, &req(kind, "M1", order, Some(amount)));
    assert!(a.is_empty());
    let answers = answer_upstream(core, &up[0], "00");
    answers[0].1.clone()
}

#[test]
fn authorize_goes_upstream_once_and_a_retransmission_gets_the_first_answer() {
    let mut c = core();
    let r = req(TxnKind::Authorize, "M1", "O1", Some(5_000));
    let (a, up) = step(&mut c, 1, &r);
    assert!(a.is_empty());
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].kind, UpstreamKind::Authorize);
    assert_eq!(up[0].host, 0, "BIN 411111 routes to the VAN");
    // A retransmission while pending waits for the same answer: no second upstream request.
    let (a, up2) = step(&mut c, 2, &r);
    assert!(a.is_empty() && up2.is_empty());
    let answers = answer_upstream(&mut c, &up[0], "00");
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].1, answers[1].1);
    let first = answers[0].1.clone();
    assert_eq!(first.result, ResultCode::Approved);
    assert_eq!(first.approval_code.as_deref(), Some(&b"A1B2C3"[..]));
    // Later retransmission: the stored answer, still no upstream request.
    let (a, up3) = step(&mut c, 3, &r);
    assert!(up3.is_empty());
    assert_eq!(a[0].1, first);
}

#[test]
fn same_key_with_other_content_is_a_duplicate() {
    let mut c = core();
    authorized(&mut c, "O1", 5_000, TxnKind::Authorize);
    let (a, up) = step(&mut c, 2, &req(TxnKind::Authorize, "M1", "O1", Some(6_000)));
    assert!(up.is_empty());
    assert_eq!(a[0].1.result, ResultCode::DuplicateOrder);
    let (a, _) = step(&mut c, 2, &req(TxnKind::Sale, "M1", "O1", Some(5_000)));
    assert_eq!(a[0].1.result, ResultCode::DuplicateOrder);
}

fn capture_of(amount: u64, request_id: &'static str) -> TxnRequest {
    let mut r = req(TxnKind::Capture, "M1", "O1", Some(amount));
    r.request_id = Some(Bytes::from_static(request_id.as_bytes()));
    r
}

#[test]
fn partial_captures_up_to_the_authorized_amount() {
    let mut c = core();
    authorized(&mut c, "O1", 5_000, TxnKind::Authorize);
    let (a, _) = step(&mut c, 2, &capture_of(6_000, "C0"));
    assert_eq!(a[0].1.result, ResultCode::AmountExceedsAvailable);
    let (a, up) = step(&mut c, 2, &capture_of(3_000, "C1"));
    assert!(up.is_empty(), "capture is settled by file, not online");
    assert_eq!(a[0].1.result, ResultCode::Approved);
    assert_eq!(a[0].1.captured_amount, Some(3_000));
    assert_eq!(a[0].1.state, Some(3), "partially captured");
    // Retransmitted capture: same answer, nothing captured twice.
    let (again, _) = step(&mut c, 2, &capture_of(3_000, "C1"));
    assert_eq!(again[0].1, a[0].1);
    // More than what is left: 2009, not 2007; within it: a second partial capture.
    let (a, _) = step(&mut c, 2, &capture_of(2_001, "C2"));
    assert_eq!(a[0].1.result, ResultCode::AmountExceedsAvailable);
    let (a, _) = step(&mut c, 2, &capture_of(1_500, "C2"));
    assert_eq!(
        (a[0].1.result, a[0].1.state, a[0].1.captured_amount),
        (ResultCode::Approved, Some(3), Some(4_500))
    );
    // Capturing all that is left closes it: state 2, and nothing more.
    let (a, _) = step(&mut c, 2, &capture_of(500, "C3"));
    assert_eq!(
        (a[0].1.state, a[0].1.captured_amount),
        (Some(2), Some(5_000))
    );
    let (a, _) = step(&mut c, 2, &capture_of(1, "C4"));
    assert_eq!(a[0].1.result, ResultCode::InvalidState);
}

#[test]
fn a_final_capture_releases_the_rest() {
    let mut c = core();
    authorized(&mut c, "O1", 5_000, TxnKind::Authorize);
    let mut last = capture_of(1_000, "C1");
    last.final_capture = true;
    let (a, _) = step(&mut c, 2, &last);
    assert_eq!(
        (a[0].1.result, a[0].1.state, a[0].1.captured_amount),
        (ResultCode::Approved, Some(2), Some(1_000))
    );
    // The same request id without the flag is other content.
    let (a, _) = step(&mut c, 2, &capture_of(1_000, "C1"));
    assert_eq!(a[0].1.result, ResultCode::DuplicateOrder);
    let (a, _) = step(&mut c, 2, &capture_of(1, "C2"));
    assert_eq!(
        a[0].1.result,
        ResultCode::InvalidState,
        "capturing is closed"
    );
    // The captured part is refundable; a refund of more is not.
    let mut refund = req(TxnKind::Refund, "M1", "O1", Some(1_001));
    refund.request_id = Some(Bytes::from_static(b"R1"));
    let (a, _) = step(&mut c, 3, &refund);
    assert_eq!(a[0].1.result, ResultCode::AmountExceedsAvailable);
}

#[test]
fn a_refund_closes_capturing() {
    let mut c = core();
    authorized(&mut c, "O1", 5_000, TxnKind::Authorize);
    step(&mut c, 2, &capture_of(2_000, "C1"));
    let mut refund = req(TxnKind::Refund, "M1", "O1", Some(500));
    refund.request_id = Some(Bytes::from_static(b"R1"));
    let (_, up) = step(&mut c, 3, &refund);
    answer_upstream(&mut c, &up[0], "00");
    let (a, _) = step(&mut c, 4, &capture_of(1_000, "C2"));
    assert_eq!(a[0].1.result, ResultCode::InvalidState);
}

#[test]
fn refunds_never_exceed_the_captured_amount() {
    let mut c = core();
    authorized(&mut c, "O1", 10_000, TxnKind::Sale);
    let refund = |id: &str, amount: u64| {
        let mut r = req(TxnKind::Refund, "M1", "O1", Some(amount));
        r.request_id = Some(Bytes::copy_from_slice(id.as_bytes()));
        r
    };
    for (id, amount) in [("R1", 4_000u64), ("R2", 5_000)] {
        let (a, up) = step(&mut c, 3, &refund(id, amount));
        assert!(a.is_empty());
        assert_eq!(up[0].kind, UpstreamKind::Refund);
        let answers = answer_upstream(&mut c, &up[0], "00");
        assert_eq!(answers[0].1.result, ResultCode::Approved);
    }
    let (a, up) = step(&mut c, 3, &refund("R3", 1_001));
    assert!(up.is_empty());
    assert_eq!(a[0].1.result, ResultCode::AmountExceedsAvailable);
    let (a, up) = step(&mut c, 3, &refund("R4", 1_000));
    let answers = answer_upstream(&mut c, &up[0], "00");
    assert!(a.is_empty());
    assert_eq!(answers[0].1.refunded_amount, Some(10_000));
    assert_eq!(answers[0].1.state, Some(5), "fully refunded");
}

#[test]
fn cancel_reverses_at_the_same_host_and_blocks_capture() {
    let mut c = core();
    let mut r = req(TxnKind::Authorize, "M1", "O1", Some(5_000));
    r.payment = Some(card("5400000000000005"));
    let (_, up) = step(&mut c, 1, &r);
    assert_eq!(up[0].host, 1, "BIN 540000 routes to the card company");
    answer_upstream(&mut c, &up[0], "00");
    let (a, up) = step(&mut c, 2, &req(TxnKind::Cancel, "M1", "O1", None));
    assert!(a.is_empty());
    assert_eq!(up[0].kind, UpstreamKind::Reversal);
    assert_eq!(up[0].host, 1);
    assert_eq!(up[0].original.as_ref().unwrap().stan, 7);
    let answers = answer_upstream(&mut c, &up[0], "00");
    assert_eq!(answers[0].1.state, Some(4));
    let (a, _) = step(&mut c, 2, &req(TxnKind::Capture, "M1", "O1", None));
    assert_eq!(a[0].1.result, ResultCode::InvalidState);
}

#[test]
fn merchant_rules_give_specific_codes() {
    let mut c = core();
    let cases = [
        (
            req(TxnKind::Authorize, "NOPE", "O1", Some(1)),
            ResultCode::UnknownMerchant,
        ),
        (
            req(TxnKind::Authorize, "OFF", "O1", Some(1)),
            ResultCode::MerchantDisabled,
        ),
        (
            req(TxnKind::Authorize, "M1", "O1", Some(1_000_001)),
            ResultCode::AmountOverLimit,
        ),
    ];
    for (r, code) in cases {
        let (a, up) = step(&mut c, 1, &r);
        assert!(up.is_empty());
        assert_eq!(a[0].1.result, code);
    }
    let mut usd = req(TxnKind::Authorize, "M1", "O2", Some(1));
    usd.currency = Some(840);
    assert_eq!(
        step(&mut c, 1, &usd).0[0].1.result,
        ResultCode::UnsupportedCurrency
    );
    // Daily limit 1,500,000: 900,000 passes, another 700,000 does not; a decline frees its share.
    authorized(&mut c, "D1", 900_000, TxnKind::Authorize);
    let (a, _) = step(
        &mut c,
        1,
        &req(TxnKind::Authorize, "M1", "D2", Some(700_000)),
    );
    assert_eq!(a[0].1.result, ResultCode::DailyLimitExceeded);
    let (_, up) = step(
        &mut c,
        1,
        &req(TxnKind::Authorize, "M1", "D3", Some(500_000)),
    );
    assert_eq!(
        answer_upstream(&mut c, &up[0], "51")[0].1.result,
        ResultCode::InsufficientFunds
    );
    let (_, up) = step(
        &mut c,
        1,
        &req(TxnKind::Authorize, "M1", "D4", Some(600_000)),
    );
    assert_eq!(up.len(), 1, "the declined 500,000 no longer counts");
}

#[test]
fn timeout_is_in_doubt_and_not_sent_is_retryable() {
    let mut c = core();
    let r = req(TxnKind::Authorize, "M1", "T1", Some(100));
    let (_, up) = step(&mut c, 1, &r);
    let sent = OriginalRef {
        mti: 100,
        stan: 9,
        transmitted: Bytes::from_static(b"1126213956"),
        rrn: Bytes::from_static(b"633021000009"),
        terminal: bytes::Bytes::new(),
    };
    let mut out = Vec::new();
    c.handle_upstream(
        NOW,
        UpstreamResult {
            op_id: up[0].op_id,
            outcome: UpstreamOutcome::Timeout { sent },
        },
        &mut out,
    );
    let (a, _) = split(out);
    assert_eq!(a[0].1.result, ResultCode::UpstreamTimeout);
    let mut inquiry = TxnRequest::new(
        TxnKind::Inquiry,
        Bytes::from_static(b"M1"),
        Bytes::from_static(b"T1"),
    );
    inquiry.amount = None;
    let (a, _) = step(&mut c, 1, &inquiry);
    assert_eq!(a[0].1.state, Some(8), "in doubt");
    // The retry gets the recorded outcome, not a second authorization.
    let (a, up) = step(&mut c, 1, &r);
    assert!(up.is_empty());
    assert_eq!(a[0].1.result, ResultCode::UpstreamTimeout);

    let r2 = req(TxnKind::Authorize, "M1", "N1", Some(100));
    let (_, up) = step(&mut c, 1, &r2);
    let mut out = Vec::new();
    c.handle_upstream(
        NOW,
        UpstreamResult {
            op_id: up[0].op_id,
            outcome: UpstreamOutcome::NotSent {
                result: ResultCode::Busy,
            },
        },
        &mut out,
    );
    assert_eq!(split(out).0[0].1.result, ResultCode::Busy);
    let (_, up) = step(&mut c, 1, &r2);
    assert_eq!(up.len(), 1, "never sent, so a retry is a fresh attempt");
}

#[test]
fn tokens_resolve_to_cards_and_route_by_bin() {
    let mut c = core();
    let mut t = TxnRequest::new(
        TxnKind::Tokenize,
        Bytes::from_static(b"M1"),
        Bytes::from_static(b"TK1"),
    );
    t.payment = Some(card("5400000000000005"));
    let (a, up) = step(&mut c, 1, &t);
    assert!(up.is_empty());
    let token = a[0].1.token.clone().unwrap();
    assert_eq!(a[0].1.masked_pan.as_deref(), Some(&b"540000******0005"[..]));
    let mut r = req(TxnKind::Authorize, "M1", "W1", Some(100));
    r.payment = Some(PaymentMethod::WalletToken(token));
    let (_, up) = step(&mut c, 1, &signed(r, 1));
    assert_eq!(up[0].host, 1);
    let mut r = req(TxnKind::Authorize, "M1", "W2", Some(100));
    r.payment = Some(PaymentMethod::WalletToken(Bytes::from_static(
        b"tok-unknown",
    )));
    assert_eq!(
        step(&mut c, 1, &signed(r, 2)).0[0].1.result,
        ResultCode::InvalidCard
    );
}

#[test]
fn unroutable_methods_get_a_clear_code() {
    let mut c = core();
    let mut r = req(TxnKind::Authorize, "M1", "U1", Some(100));
    r.payment = Some(PaymentMethod::BankTransfer {
        bank_code: Bytes::from_static(b"004"),
        account: Bytes::from_static(b"123"),
    });
    assert_eq!(step(&mut c, 1, &r).0[0].1.result, ResultCode::Unroutable);
    let mut r = req(TxnKind::Authorize, "M1", "U2", Some(100));
    r.payment = Some(card("6200000000000005"));
    assert_eq!(step(&mut c, 1, &r).0[0].1.result, ResultCode::Unroutable);
}

/// Upstream requests in a comparable form (the account is masked in Debug).
fn upstream_view(up: &[UpstreamRequest]) -> Vec<String> {
    up.iter().map(|r| format!("{r:?}")).collect()
}

#[test]
fn a_snapshot_restores_a_shard_that_answers_exactly_like_the_original() {
    let mut c = core();
    // Orders in every state: authorized, captured and partly refunded, cancelled, declined, in
    // doubt, pending, tokenized; a balance spent against the daily limit.
    authorized(&mut c, "AUTH", 5_000, TxnKind::Authorize);
    authorized(&mut c, "SALE", 7_000, TxnKind::Sale);
    let mut refund = req(TxnKind::Refund, "M1", "SALE", Some(2_000));
    refund.request_id = Some(Bytes::from_static(b"R1"));
    let (_, up) = step(&mut c, 1, &refund);
    answer_upstream(&mut c, &up[0], "00");
    authorized(&mut c, "CANCEL", 1_000, TxnKind::Authorize);
    let (_, up) = step(&mut c, 1, &req(TxnKind::Cancel, "M1", "CANCEL", None));
    answer_upstream(&mut c, &up[0], "00");
    let (_, up) = step(
        &mut c,
        1,
        &req(TxnKind::Authorize, "M1", "DECLINE", Some(3_051)),
    );
    answer_upstream(&mut c, &up[0], "51");
    let (_, up) = step(
        &mut c,
        1,
        &req(TxnKind::Authorize, "M1", "DOUBT", Some(900)),
    );
    let mut out = Vec::new();
    let sent = OriginalRef {
        mti: 100,
        stan: 9,
        transmitted: Bytes::from_static(b"1126213956"),
        rrn: Bytes::from_static(b"633021000009"),
        terminal: bytes::Bytes::new(),
    };
    c.handle_upstream(
        NOW + 9,
        UpstreamResult {
            op_id: up[0].op_id,
            outcome: UpstreamOutcome::Timeout { sent },
        },
        &mut out,
    );
    let (_, pending) = step(
        &mut c,
        1,
        &req(TxnKind::Authorize, "M1", "PENDING", Some(4_000)),
    );
    let mut tokenize = req(TxnKind::Tokenize, "M1", "TOKEN", None);
    tokenize.payment = Some(card("4111111111111111"));
    let (token_answer, _) = step(&mut c, 1, &signed(tokenize, 1));
    let token = token_answer[0].1.token.clone().unwrap();

    let bytes = c.encode_snapshot();
    // The snapshot holds card numbers: the caller seals it, but it must hold them to reverse.
    let settings = core().settings().clone();
    let mut restored = ShardCore::<u32>::decode_snapshot(settings, &bytes).unwrap();
    assert_eq!(restored.order_count(), c.order_count());
    assert_eq!(restored.pending_ops(), c.pending_ops());
    assert!(
        ShardCore::<u32>::decode_snapshot(core().settings().clone(), &bytes[..bytes.len() - 1])
            .is_err()
    );
    // A snapshot of a newer format is refused by name, not decoded as damage or as this one.
    let mut newer = bytes.to_vec();
    newer[0] += 1;
    let error = ShardCore::<u32>::decode_snapshot(core().settings().clone(), &newer).unwrap_err();
    assert!(
        matches!(error, MeshError::NewerFormat { what: "shard snapshot", found, known } if found == known + 1),
        "{error}"
    );

    // The same inputs after the snapshot give the same outputs on both shards (requesters from
    // 100 on are new: the original's pre-snapshot waiters are not in a snapshot).
    let mut wallet = req(TxnKind::Authorize, "M1", "BY_TOKEN", Some(100));
    wallet.payment = Some(PaymentMethod::WalletToken(token));
    // Counter 1 was used before the snapshot: refused on both.
    let mut replayed = wallet.clone();
    replayed.order_id = Bytes::from_static(b"BY_TOKEN_AGAIN");
    let (wallet, replayed) = (signed(wallet, 2), signed(replayed, 1));
    let mut capture = req(TxnKind::Capture, "M1", "AUTH", Some(5_000));
    capture.request_id = Some(Bytes::from_static(b"C1"));
    let mut refund2 = req(TxnKind::Refund, "M1", "SALE", Some(6_000));
    refund2.request_id = Some(Bytes::from_static(b"R2"));
    let inputs = [
        req(TxnKind::Authorize, "M1", "AUTH", Some(5_000)),
        req(TxnKind::Authorize, "M1", "AUTH", Some(5_001)),
        req(TxnKind::Sale, "M1", "SALE", Some(7_000)),
        refund.clone(),
        refund2,
        req(TxnKind::Cancel, "M1", "CANCEL", None),
        req(TxnKind::Authorize, "M1", "DECLINE", Some(3_051)),
        req(TxnKind::Authorize, "M1", "DOUBT", Some(900)),
        req(TxnKind::Inquiry, "M1", "DOUBT", None),
        req(TxnKind::Authorize, "M1", "PENDING", Some(4_000)),
        req(TxnKind::Inquiry, "M1", "PENDING", None),
        capture.clone(),
        capture,
        wallet,
        replayed,
        req(TxnKind::Authorize, "M1", "NEW", Some(1_000_000)),
        req(TxnKind::Authorize, "M1", "NEW2", Some(490_000)),
    ];
    for (i, input) in inputs.iter().enumerate() {
        let to = 100 + i as u32;
        let (a1, u1) = step(&mut c, to, input);
        let (a2, u2) = step(&mut restored, to, input);
        assert_eq!(a1, a2, "answers to input {i}");
        assert_eq!(
            upstream_view(&u1),
            upstream_view(&u2),
            "upstream for input {i}"
        );
    }
    // The pending authorization resolves the same way on both.
    let a1 = answer_upstream(&mut c, &pending[0], "00");
    let a2 = answer_upstream(&mut restored, &pending[0], "00");
    let new_waiters = |a: Vec<(u32, TxnAnswer)>| {
        a.into_iter()
            .filter(|(to, _)| *to >= 100)
            .collect::<Vec<_>>()
    };
    let (a1, a2) = (new_waiters(a1), new_waiters(a2));
    assert_eq!(
        a1.len(),
        1,
        "the retransmission after the snapshot waits on both"
    );
    assert_eq!(a1, a2);
}

fn timeout(core: &mut ShardCore<u32>, op_id: u64, at: u64) -> Vec<Output<u32>> {
    let sent = OriginalRef {
        mti: 100,
        stan: 42,
        transmitted: Bytes::from_static(b"1126213956"),
        rrn: Bytes::from_static(b"633021000042"),
        terminal: bytes::Bytes::new(),
    };
    let mut out = Vec::new();
    core.handle_upstream(
        at,
        UpstreamResult {
            op_id,
            outcome: UpstreamOutcome::Timeout { sent },
        },
        &mut out,
    );
    out
}

#[test]
fn a_timed_out_authorization_is_reversed_until_the_host_acknowledges() {
    let mut c = core();
    let auth = req(TxnKind::Authorize, "M1", "T1", Some(1_000_000));
    let (_, up) = step(&mut c, 1, &auth);
    let (answers, reversals) = split(timeout(&mut c, up[0].op_id, NOW + 10));
    assert_eq!(answers[0].1.result, ResultCode::UpstreamTimeout);
    assert_eq!(answers[0].1.state, Some(8), "in doubt");
    // The reversal goes at once to the same host, for the amount, naming the original.
    assert_eq!(reversals.len(), 1);
    let rev = &reversals[0];
    assert_eq!(
        (rev.kind, rev.host, rev.amount, rev.repeat),
        (UpstreamKind::Reversal, up[0].host, 1_000_000, false)
    );
    assert_eq!(rev.original.as_ref().map(|o| o.stan), Some(42));
    assert_eq!(c.reversals_pending(), 1);
    assert_eq!(c.pending_ops(), vec![rev.op_id]);
    // A late answer to the original changes nothing.
    assert!(answer_upstream(&mut c, &up[0], "00").is_empty());
    // The reversal times out too: it waits, then goes again as a repeat (0401), same op id.
    assert!(timeout(&mut c, rev.op_id, NOW + 20).is_empty());
    assert!(c.pending_ops().is_empty(), "waiting, not in flight");
    let mut out = Vec::new();
    c.poll_reversals(NOW + 20 + REVERSAL_RETRY_MS - 1, &mut out);
    assert!(out.is_empty(), "not due yet");
    c.poll_reversals(NOW + 20 + REVERSAL_RETRY_MS, &mut out);
    let (_, again) = split(out);
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].op_id, again[0].repeat), (rev.op_id, true));
    // Not sent (host down): it waits longer, and is still a repeat.
    let mut out = Vec::new();
    c.handle_upstream(
        NOW + 30,
        paymesh_actors::core::upstream::not_sent(rev.op_id, ResultCode::UpstreamUnavailable),
        &mut out,
    );
    assert_eq!(
        c.next_reversal_due(),
        Some(NOW + 30 + 2 * REVERSAL_RETRY_MS)
    );
    // A link of another host signing on changes nothing; one of its own host sends it now.
    c.flush_forwards(up[0].host + 1, NOW + 40);
    assert_eq!(
        c.next_reversal_due(),
        Some(NOW + 30 + 2 * REVERSAL_RETRY_MS)
    );
    c.flush_forwards(up[0].host, NOW + 40);
    assert_eq!(c.next_reversal_due(), Some(NOW + 40));
    let mut out = Vec::new();
    c.poll_reversals(NOW + 40, &mut out);
    let (_, third) = split(out);
    assert_eq!((third[0].op_id, third[0].repeat), (rev.op_id, true));
    // "System unavailable" (96) is not an acknowledgement: it is repeated.
    assert!(answer_upstream(&mut c, &third[0], "96").is_empty());
    assert_eq!(c.reversals_pending(), 1);
    let due = c.next_reversal_due().unwrap();
    let mut out = Vec::new();
    c.poll_reversals(due, &mut out);
    let (_, fourth) = split(out);
    assert_eq!((fourth[0].op_id, fourth[0].repeat), (rev.op_id, true));
    // Acknowledged: reversed, and the daily total is released.
    assert!(answer_upstream(&mut c, &fourth[0], "00").is_empty());
    assert_eq!(c.reversals_pending(), 0);
    assert!(c.pending_ops().is_empty());
    assert!(
        answer_upstream(&mut c, &third[0], "00").is_empty(),
        "duplicate ack"
    );
    let (inq, _) = step(&mut c, 2, &req(TxnKind::Inquiry, "M1", "T1", None));
    assert_eq!(inq[0].1.state, Some(10), "reversed");
    let (retry, up) = step(&mut c, 3, &auth);
    assert!(up.is_empty(), "a retry never goes upstream again");
    // Known now: reversed, nothing authorized, not retryable (a new order id to try again).
    assert_eq!(
        (
            retry[0].1.result,
            retry[0].1.state,
            retry[0].1.authorized_amount
        ),
        (ResultCode::Reversed, Some(10), Some(0))
    );
    // 1,000,000 of the 1,500,000 daily limit was released: another 1,000,000 fits.
    let (a, up) = step(
        &mut c,
        4,
        &req(TxnKind::Authorize, "M1", "T2", Some(1_000_000)),
    );
    assert!(a.is_empty());
    assert_eq!(up.len(), 1);
    let deltas: i64 = c.take_reversal_deltas().iter().map(|(_, d)| d).sum();
    assert_eq!(deltas, 0, "one queued, one acknowledged");
}

#[test]
fn a_cancel_without_an_answer_stands_and_its_reversal_is_repeated() {
    let mut c = core();
    authorized(&mut c, "C1", 5_000, TxnKind::Authorize);
    let (_, up) = step(&mut c, 2, &req(TxnKind::Cancel, "M1", "C1", None));
    assert_eq!(up[0].kind, UpstreamKind::Reversal);
    let (answers, reversals) = split(timeout(&mut c, up[0].op_id, NOW + 10));
    assert_eq!(
        (answers[0].1.result, answers[0].1.state),
        (ResultCode::Approved, Some(4))
    );
    // The first 0400 may have reached the host: what follows are repeats.
    assert_eq!(reversals.len(), 1);
    assert!(reversals[0].repeat);
    assert_eq!(c.reversals_pending(), 1);
    assert!(answer_upstream(&mut c, &reversals[0], "00").is_empty());
    assert_eq!(c.reversals_pending(), 0);
    let (inq, _) = step(&mut c, 3, &req(TxnKind::Inquiry, "M1", "C1", None));
    assert_eq!(inq[0].1.state, Some(4));
}

#[test]
fn a_snapshot_keeps_the_reversal_queue() {
    let mut c = core();
    let (_, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "S1", Some(700)));
    let (_, reversals) = split(timeout(&mut c, up[0].op_id, NOW + 10));
    timeout(&mut c, reversals[0].op_id, NOW + 20);
    let due = c.next_reversal_due().unwrap();
    let mut restored =
        ShardCore::<u32>::decode_snapshot(c.settings().clone(), &c.encode_snapshot()).unwrap();
    assert_eq!(restored.next_reversal_due(), Some(due));
    assert_eq!(restored.reversals_pending(), 1);
    assert_eq!(
        restored
            .take_reversal_deltas()
            .iter()
            .map(|(_, d)| d)
            .sum::<i64>(),
        1,
        "the restored shard counts its pending reversal"
    );
    let mut out = Vec::new();
    restored.poll_reversals(due, &mut out);
    let (_, again) = split(out);
    assert_eq!(
        (again[0].op_id, again[0].repeat),
        (reversals[0].op_id, true)
    );
    assert!(answer_upstream(&mut restored, &again[0], "00").is_empty());
    assert_eq!(restored.reversals_pending(), 0);
}

#[test]
fn an_authorization_lost_in_a_crash_is_reversed_naming_what_was_sent() {
    let mut c = core();
    let (_, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "U1", Some(800)));
    assert_ne!(up[0].stan, 0, "the shard assigns the STAN");
    assert_eq!(up[0].sent_at_ms, NOW);
    // Recovery found it sent, with no outcome journaled.
    let mut out = Vec::new();
    c.handle_upstream(
        NOW + 60_000,
        UpstreamResult {
            op_id: up[0].op_id,
            outcome: UpstreamOutcome::Unknown,
        },
        &mut out,
    );
    let (answers, reversals) = split(out);
    assert_eq!(answers[0].1.result, ResultCode::InDoubt);
    let original = reversals[0].original.clone().expect("field 90 data");
    assert_eq!(
        original,
        paymesh_actors::core::upstream::trace_of(
            UpstreamKind::Authorize,
            up[0].terminal.clone(),
            up[0].stan,
            NOW
        )
    );
    // Possibly seen by the host: a repeat.
    assert!(reversals[0].repeat);
    assert_eq!(reversals[0].host, up[0].host);
}

#[test]
fn replay_applies_the_outcome_of_an_attempt_its_timer_never_sent() {
    // Live: timeout, reversal times out, the timer sends it again, the host acknowledges. The
    // journal holds the outcomes only; replaying them (no timer) must reach the same state.
    let mut c = core();
    let (_, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "P1", Some(300)));
    let (_, reversals) = split(timeout(&mut c, up[0].op_id, NOW + 10));
    timeout(&mut c, reversals[0].op_id, NOW + 20);
    assert_eq!(c.reversals_pending(), 1);
    assert!(answer_upstream(&mut c, &reversals[0], "00").is_empty());
    assert_eq!(c.reversals_pending(), 0);
    let (inq, _) = step(&mut c, 2, &req(TxnKind::Inquiry, "M1", "P1", None));
    assert_eq!(inq[0].1.state, Some(10));
}

#[test]
fn a_host_taking_captures_online_gets_each_capture_and_an_unanswered_one_stands() {
    let mut c = core_with(true);
    authorized(&mut c, "OC1", 5_000, TxnKind::Authorize);
    let mut capture = req(TxnKind::Capture, "M1", "OC1", Some(4_000));
    capture.request_id = Some(Bytes::from_static(b"C1"));
    let (a, up) = step(&mut c, 2, &capture);
    assert!(a.is_empty(), "the answer waits for the host");
    assert_eq!(
        (up[0].kind, up[0].amount, up[0].repeat),
        (UpstreamKind::Capture, 4_000, false)
    );
    // A second capture while the first is with the host: in progress.
    let mut other = capture.clone();
    other.request_id = Some(Bytes::from_static(b"C2"));
    assert_eq!(
        step(&mut c, 3, &other).0[0].1.result,
        ResultCode::InProgress
    );
    let answers = answer_upstream(&mut c, &up[0], "00");
    assert_eq!(
        (
            answers[0].1.result,
            answers[0].1.captured_amount,
            answers[0].1.state
        ),
        (ResultCode::Approved, Some(4_000), Some(3))
    );

    // No answer: the capture stands and its advice is repeated (0221) until acknowledged.
    authorized(&mut c, "OC2", 2_000, TxnKind::Authorize);
    let (_, up) = step(&mut c, 4, &req(TxnKind::Capture, "M1", "OC2", None));
    let (answers, advice) = split(timeout(&mut c, up[0].op_id, NOW + 10));
    assert_eq!(
        (answers[0].1.result, answers[0].1.captured_amount),
        (ResultCode::Approved, Some(2_000))
    );
    assert_eq!(
        (advice[0].kind, advice[0].amount, advice[0].repeat),
        (UpstreamKind::Capture, 2_000, true)
    );
    assert_eq!(c.reversals_pending(), 1);
    // A refund waits for the advice to be acknowledged.
    let mut refund = req(TxnKind::Refund, "M1", "OC2", Some(500));
    refund.request_id = Some(Bytes::from_static(b"R1"));
    assert_eq!(
        step(&mut c, 5, &refund).0[0].1.result,
        ResultCode::InProgress
    );
    assert!(answer_upstream(&mut c, &advice[0], "00").is_empty());
    assert_eq!(c.reversals_pending(), 0);
    let (inq, _) = step(&mut c, 6, &req(TxnKind::Inquiry, "M1", "OC2", None));
    assert_eq!(
        (inq[0].1.state, inq[0].1.captured_amount),
        (Some(2), Some(2_000))
    );
    let (_, up) = step(&mut c, 7, &refund);
    assert_eq!(up[0].kind, UpstreamKind::Refund);
}

#[test]
fn a_full_reversal_queue_refuses_new_money_busy_until_hosts_acknowledge() {
    let mut c = core_adjusted(|s| s.forwards_pending_per_shard_max = 1);
    let (_, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "Q1", Some(100)));
    let (_, reversals) = split(timeout(&mut c, up[0].op_id, NOW + 10));
    assert_eq!(c.reversals_pending(), 1);
    let (a, up2) = step(&mut c, 2, &req(TxnKind::Authorize, "M1", "Q2", Some(100)));
    assert!(up2.is_empty());
    assert_eq!(a[0].1.result, ResultCode::Busy);
    // Inquiries still work, and the refusal was not recorded: the same key works later.
    let (inq, _) = step(&mut c, 3, &req(TxnKind::Inquiry, "M1", "Q1", None));
    assert_eq!(inq[0].1.state, Some(8));
    assert!(answer_upstream(&mut c, &reversals[0], "00").is_empty());
    let (a, up3) = step(&mut c, 4, &req(TxnKind::Authorize, "M1", "Q2", Some(100)));
    assert!(a.is_empty());
    assert_eq!(up3.len(), 1);
}

#[test]
fn a_key_evicted_from_the_window_is_never_authorized_again() {
    let mut c = core_adjusted(|s| {
        s.orders_per_shard_max = 2;
        s.evicted_keys_per_shard_max = 100;
    });
    // Sales: completed orders, which leave the window (open authorizations stay).
    for n in 1..=4 {
        authorized(&mut c, &format!("O{n}"), 1_000, TxnKind::Sale);
    }
    assert_eq!(c.order_count(), 2);
    assert_eq!(c.evicted_key_count(), 2);
    assert!(c.order(b"M1", b"O1").is_none(), "O1 left the window");
    // The same authorization again: refused, nothing sent to the host.
    let (a, up) = step(&mut c, 9, &req(TxnKind::Authorize, "M1", "O1", Some(1_000)));
    assert!(up.is_empty(), "an evicted key went upstream again: {up:?}");
    assert_eq!(a[0].1.result, ResultCode::DuplicateOrder);
    assert_eq!(a[0].1.order_id.as_deref(), Some(&b"O1"[..]));
    assert!(a[0].1.message.is_some());
    // Inquiry and follow-ups say the order is not here, and why.
    let (a, _) = step(&mut c, 9, &req(TxnKind::Inquiry, "M1", "O2", None));
    assert_eq!(a[0].1.result, ResultCode::NotFound);
    assert!(a[0].1.message.is_some());
    let (a, up) = step(&mut c, 9, &req(TxnKind::Capture, "M1", "O2", None));
    assert!(up.is_empty());
    assert_eq!(a[0].1.result, ResultCode::NotFound);
    // Orders still in the window answer as before; new keys are authorized.
    let (a, _) = step(&mut c, 9, &req(TxnKind::Inquiry, "M1", "O4", None));
    assert_eq!(a[0].1.result, ResultCode::Approved);
    let (a, up) = step(&mut c, 9, &req(TxnKind::Authorize, "M1", "O5", Some(1_000)));
    assert!(a.is_empty());
    assert_eq!(up.len(), 1);
    // A snapshot keeps the evicted keys.
    let restored =
        ShardCore::<u32>::decode_snapshot(c.settings().clone(), &c.encode_snapshot()).unwrap();
    let mut restored = restored;
    assert_eq!(restored.evicted_key_count(), c.evicted_key_count());
    let (a, up) = step(
        &mut restored,
        9,
        &req(TxnKind::Authorize, "M1", "O2", Some(1_000)),
    );
    assert!(up.is_empty());
    assert_eq!(a[0].1.result, ResultCode::DuplicateOrder);
}

#[test]
fn an_order_keeps_nothing_of_the_clients_read_buffer() {
    use bytes::BytesMut;
    use paymesh_codecs::frame::decode_frame;
    use paymesh_codecs::message::Message;
    use paymesh_codecs::types::Secret;
    let mut c = core();
    // A request decoded from a read buffer, as a session does: its fields are slices of it,
    // CVV included.
    let mut r = req(TxnKind::Authorize, "M1", "O1", Some(5_000));
    r.request_id = None;
    r.payment = Some(PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: Bytes::from_static(b"3012"),
        cvv: Some(Secret::new(Bytes::from_static(b"123"))),
    });
    let mut buf = BytesMut::new();
    Message::Request(r).encode(1, 0, &mut buf);
    let frame = decode_frame(&mut buf, 1 << 16).unwrap().unwrap();
    drop(buf);
    let read_buffer = frame.body.clone();
    let Message::Request(decoded) = Message::decode(&frame).unwrap() else {
        panic!("not a request")
    };
    drop(frame);
    let (_, up) = step(&mut c, 1, &decoded);
    answer_upstream(&mut c, &up[0], "00");
    drop((decoded, up));
    // Only the test's own handle is left: the order copied what it keeps.
    assert!(
        read_buffer.is_unique(),
        "the shard still holds a slice of the client's read buffer"
    );
    assert!(c.order(b"M1", b"O1").is_some());
}

#[test]
fn old_orders_stay_frozen_however_often_they_are_read() {
    let mut c = core_adjusted(|s| s.orders_hot_per_shard_max = 4);
    for n in 0..20 {
        authorized(&mut c, &format!("F{n}"), 1_000, TxnKind::Authorize);
    }
    assert!(c.hot_order_count() <= 4);
    // Inquiries and retransmissions of every old order, and no new order: still at most 4 hot,
    // and each answer is the order's.
    for n in 0..20 {
        let order = format!("F{n}");
        let (a, _) = step(&mut c, 1, &req(TxnKind::Inquiry, "M1", &order, None));
        assert_eq!(a[0].1.order_id.as_deref(), Some(order.as_bytes()));
        assert_eq!(a[0].1.authorized_amount, Some(1_000));
        let (a, up) = step(
            &mut c,
            1,
            &req(TxnKind::Authorize, "M1", &order, Some(1_000)),
        );
        assert!(up.is_empty());
        assert_eq!(a[0].1.result, ResultCode::Approved, "{order} replayed");
        assert!(c.hot_order_count() <= 4, "{} hot", c.hot_order_count());
    }
}

fn step_from(
    core: &mut ShardCore<u32>,
    origin: Origin<'_>,
    r: &TxnRequest,
) -> (
    paymesh_actors::core::access::Step,
    Vec<(u32, TxnAnswer)>,
    Vec<UpstreamRequest>,
) {
    let mut out = Vec::new();
    let step = core.handle_request(NOW, 1, origin, r, &mut out);
    let (answers, upstream) = split(out);
    (step, answers, upstream)
}

#[test]
fn access_refusals_change_nothing_and_are_not_journaled() {
    use paymesh_actors::core::access::Step;
    let mut core = core_adjusted(|s| s.access = AccessTable::grant_all(&[NET]));
    let auth = req(TxnKind::Authorize, "M1", "O1", Some(1_000));
    // A network the table does not know: the unconfigured merchant's answer, nothing to journal.
    let (step, answers, upstream) = step_from(&mut core, Origin::Network(b"STRANGER"), &auth);
    assert_eq!(step, Step::Skip);
    assert!(upstream.is_empty());
    assert_eq!(answers[0].1.result, ResultCode::UnknownMerchant);
    assert_eq!(core.order_count(), 0);
    // The granted network's request is journaled.
    let (step, _, upstream) = step_from(&mut core, Origin::Network(NET), &auth);
    assert_eq!((step, upstream.len()), (Step::Journal, 1));
}

#[test]
fn replay_applies_what_was_admitted_whatever_the_grants_say_now() {
    // The table grants only NET; the journal holds an authorization from a network since removed.
    let mut core = core_adjusted(|s| s.access = AccessTable::grant_all(&[NET]));
    let auth = req(TxnKind::Authorize, "M1", "GONE-1", Some(1_000));
    let (_, _, upstream) = step_from(&mut core, Origin::Replayed(b"GONE"), &auth);
    assert_eq!(upstream.len(), 1, "replayed as it was acknowledged");
    let answers = answer_upstream(&mut core, &upstream[0], "00");
    assert_eq!(answers[0].1.result, ResultCode::Approved);
    // The order stays its creator's: NET, granted M1 today, does not see it.
    let (_, answers, _) = step_from(
        &mut core,
        Origin::Network(NET),
        &req(TxnKind::Inquiry, "M1", "GONE-1", None),
    );
    assert_eq!(answers[0].1.result, ResultCode::NotFound);
    // An order from a journal that recorded no network is any granted network's.
    let old = req(TxnKind::Authorize, "M1", "OLD-1", Some(1_000));
    let (_, _, upstream) = step_from(&mut core, Origin::Unrecorded, &old);
    let _ = answer_upstream(&mut core, &upstream[0], "00");
    let (_, answers, _) = step_from(
        &mut core,
        Origin::Network(NET),
        &req(TxnKind::Inquiry, "M1", "OLD-1", None),
    );
    assert_eq!(answers[0].1.result, ResultCode::Approved);
}

#[test]
fn a_token_works_for_the_merchant_that_made_it_only() {
    let mut core = core_adjusted(|s| s.access = AccessTable::grant_all(&[NET]));
    let token_of = |core: &mut ShardCore<u32>, merchant: &str, order: &str| {
        let mut tokenize = req(TxnKind::Tokenize, merchant, order, None);
        tokenize.payment = Some(card("4111111111111111"));
        let (answers, _) = step(core, 1, &tokenize);
        answers[0].1.token.clone().unwrap()
    };
    let theirs = token_of(&mut core, "M2", "T2");
    let mine = token_of(&mut core, "M1", "T1");
    assert!(mine.len() >= 32 && mine != theirs, "{mine:?}");
    // Token payments are signed (M1's phone-1): only the token decides the answer below.
    let pay = |order: &str, token: &Bytes, counter: u64| {
        let mut r = req(TxnKind::Authorize, "M1", order, Some(500));
        r.payment = Some(PaymentMethod::WalletToken(token.clone()));
        signed(r, counter)
    };
    let (foreign, upstream) = step(&mut core, 1, &pay("P1", &theirs, 1));
    assert_eq!(foreign[0].1.result, ResultCode::InvalidCard);
    assert!(upstream.is_empty());
    let (unknown, _) = step(&mut core, 1, &pay("P2", &Bytes::from_static(b"pmt_0"), 2));
    assert_eq!(
        (unknown[0].1.result, &unknown[0].1.message),
        (foreign[0].1.result, &foreign[0].1.message),
        "another merchant's token answers as an unknown one"
    );
    let (_, upstream) = step(&mut core, 1, &pay("P3", &mine, 3));
    assert_eq!(upstream.len(), 1, "the tokenizing merchant pays with it");
}

#[test]
fn a_flood_of_authorizations_never_pushes_out_an_open_authorization() {
    const WINDOW: usize = 16;
    let mut core = core_adjusted(|s| {
        s.access = AccessTable::grant_all(&[NET]);
        s.orders_per_shard_max = WINDOW;
        s.orders_hot_per_shard_max = 4;
    });
    // Another tenant's open authorization, the oldest order of the window.
    let (_, upstream) = step(
        &mut core,
        1,
        &req(TxnKind::Authorize, "M2", "KEEP", Some(900)),
    );
    assert_result(
        &answer_upstream(&mut core, &upstream[0], "00"),
        ResultCode::Approved,
    );
    // A flood of one-won authorizations, every one left open: once the window is full of open
    // authorizations, new ones are refused BUSY, and none of the window's orders is dropped.
    let mut busy = 0;
    for n in 0..3 * WINDOW {
        let (answers, upstream) = step(
            &mut core,
            2,
            &req(TxnKind::Authorize, "M1", &format!("F{n}"), Some(1)),
        );
        match upstream.first() {
            Some(up) => {
                let _ = answer_upstream(&mut core, up, "00");
            }
            None => {
                assert_eq!(answers[0].1.result, ResultCode::Busy);
                assert!(answers[0].1.server_txn_id.is_none());
                busy += 1;
            }
        }
        assert!(core.order_count() <= WINDOW);
    }
    assert_eq!(
        busy,
        2 * WINDOW + 1,
        "a window of {WINDOW} holds {} floods",
        WINDOW - 1
    );
    assert_eq!(core.evicted_key_count(), 0, "no open authorization left");
    let (answers, _) = step(
        &mut core,
        1,
        &req(TxnKind::Capture, "M2", "KEEP", Some(900)),
    );
    assert_eq!(answers[0].1.result, ResultCode::Approved);
    // Completed orders leave first: the captured one makes room for one new order.
    let (_, upstream) = step(
        &mut core,
        2,
        &req(TxnKind::Authorize, "M1", "NEXT", Some(1)),
    );
    assert_eq!(upstream.len(), 1);
    assert_eq!(core.evicted_key_count(), 1);
}

fn assert_result(answers: &[(u32, TxnAnswer)], code: ResultCode) {
    assert_eq!(answers[0].1.result, code, "{:?}", answers[0].1);
}

#[test]
fn one_network_holds_at_most_its_share_of_the_window() {
    const OTHER: &[u8] = b"NET2";
    let mut core = core_adjusted(|s| {
        s.access = AccessTable::grant_all(&[NET, OTHER]);
        s.orders_per_shard_max = 16;
        s.open_orders_per_network_max = 4;
    });
    let open = |core: &mut ShardCore<u32>, origin: &'static [u8], order: &str| {
        let mut out = Vec::new();
        let r = req(TxnKind::Authorize, "M1", order, Some(10));
        let _ = core.handle_request(NOW, 1, Origin::Network(origin), &r, &mut out);
        match split(out) {
            (_, up) if !up.is_empty() => {
                assert_result(&answer_upstream(core, &up[0], "00"), ResultCode::Approved);
                ResultCode::Approved
            }
            (answers, _) => answers[0].1.result,
        }
    };
    for n in 0..4 {
        assert_eq!(open(&mut core, NET, &format!("A{n}")), ResultCode::Approved);
    }
    assert_eq!(
        open(&mut core, NET, "A4"),
        ResultCode::Busy,
        "its share is taken"
    );
    assert_eq!(core.open_orders_of(NET), 4);
    assert_eq!(
        open(&mut core, OTHER, "B0"),
        ResultCode::Approved,
        "others still get in"
    );
    // A capture closes one of NET's authorizations: room for one more of its own.
    let (answers, _) = step(&mut core, 1, &req(TxnKind::Capture, "M1", "A0", Some(10)));
    assert_result(&answers, ResultCode::Approved);
    assert_eq!(core.open_orders_of(NET), 3);
    assert_eq!(open(&mut core, NET, "A5"), ResultCode::Approved);
    // The counts come back from a snapshot.
    let back = ShardCore::<u32>::decode_snapshot(core.settings().clone(), &core.encode_snapshot())
        .unwrap();
    assert_eq!(
        (back.open_orders_of(NET), back.open_orders_of(OTHER)),
        (4, 1)
    );
}

#[test]
fn replay_keeps_what_was_approved_whatever_the_merchant_limits_say_now() {
    use paymesh_actors::core::journal_codec::{
        JournalKey, RECORD_META, RECORD_REQUEST_NETWORK, RECORD_UPSTREAM, encode_meta,
        encode_request, encode_upstream,
    };
    use paymesh_actors::core::recovery::Recovery;
    // Live: M1 (single limit 1,000,000) approves 900,000.
    let mut live = core_adjusted(|s| s.access = AccessTable::grant_all(&[NET]));
    let auth = req(TxnKind::Authorize, "M1", "BIG", Some(900_000));
    let mut out = Vec::new();
    let step = live.handle_request(NOW, 1, Origin::Network(NET), &auth, &mut out);
    assert_eq!(step, paymesh_actors::core::access::Step::Journal);
    let (_, upstream) = split(out);
    let approved = answer_upstream(&mut live, &upstream[0], "00");
    assert_eq!(approved[0].1.result, ResultCode::Approved);
    // A refused one (over the daily limit) is not journaled.
    let mut out = Vec::new();
    let over = req(TxnKind::Authorize, "M1", "OVER", Some(700_000));
    let step = live.handle_request(NOW, 1, Origin::Network(NET), &over, &mut out);
    assert_eq!(step, paymesh_actors::core::access::Step::Skip);

    // The journal of what was admitted, replayed after the merchant's limits were cut and the
    // merchant disabled: the approval comes back as it was acknowledged.
    let key = JournalKey::new(1, &[3; 32], [0, 0, 0, 1]);
    let outcome = paymesh_actors::core::upstream::UpstreamResult {
        op_id: upstream[0].op_id,
        outcome: paymesh_actors::core::upstream::UpstreamOutcome::Answered {
            result: ResultCode::Approved,
            response_code: Bytes::from_static(b"00"),
            approval_code: Bytes::from_static(b"A1B2C3"),
            sent: OriginalRef {
                mti: 100,
                stan: 7,
                transmitted: Bytes::from_static(b"1126213956"),
                rrn: Bytes::from_static(b"633021000007"),
                terminal: bytes::Bytes::new(),
            },
            balance: None,
        },
    };
    let strict = core_adjusted(|s| {
        s.access = AccessTable::grant_all(&[NET]);
        let m1 = s.merchants.get_mut(&b"M1"[..]).unwrap();
        m1.single_limit_minor = Some(1);
        m1.daily_limit_minor = Some(1);
        m1.enabled = false;
    });
    let mut recovery =
        Recovery::new(std::slice::from_ref(&key), strict.settings(), 1, 0u32).unwrap();
    recovery.record(1, RECORD_META, &encode_meta(1)).unwrap();
    let record = encode_request(&key, 2, NOW, NET, &auth).unwrap();
    recovery.record(2, RECORD_REQUEST_NETWORK, &record).unwrap();
    recovery
        .record(3, RECORD_UPSTREAM, &encode_upstream(NOW + 5, &outcome))
        .unwrap();
    let mut replayed = recovery.finish(NOW + 10).unwrap().cores.remove(0);
    let order = replayed
        .order(b"M1", b"BIG")
        .expect("the approval survives replay");
    assert_eq!(order.authorized, 900_000);
}

#[test]
fn a_shard_answers_busy_before_a_stan_of_the_day_would_repeat_and_keeps_some_for_reversals() {
    use paymesh_actors::core::config::HostStanPlan;
    // One terminal with 20 STANs left for transactions (the rest reserved for network
    // management): 18 for payments, the last 2 kept for reversals.
    let plan = HostStanPlan {
        terminals: vec![Bytes::from_static(b"TERM0001")],
        network_terminal: Bytes::from_static(b"TERM0001"),
        network_stan_first: 21,
        local_offset_minutes: 540,
    };
    let mut c = core_adjusted(|s| s.host_stans = vec![plan; 3]);
    let mut stans = std::collections::HashSet::new();
    let mut first_op = 0;
    for i in 0..18 {
        let r = req(TxnKind::Authorize, "M1", &format!("B{i}"), Some(100));
        let (answers, up) = step(&mut c, i, &r);
        assert!(answers.is_empty(), "{answers:?}");
        assert_eq!(up[0].terminal.as_ref(), b"TERM0001");
        assert!(stans.insert(up[0].stan) && (1..=20).contains(&up[0].stan));
        if i == 0 {
            first_op = up[0].op_id;
        }
    }
    let (answers, up) = step(
        &mut c,
        99,
        &req(TxnKind::Authorize, "M1", "BUSY", Some(100)),
    );
    assert!(up.is_empty());
    assert_eq!(answers[0].1.result, ResultCode::Busy);
    // A timed-out authorization is still reversed: on the original's terminal, with a STAN of
    // its own from the reserve, naming the original.
    let (_, reversals) = split(timeout(&mut c, first_op, NOW + 10));
    assert_eq!(reversals.len(), 1);
    let rev = &reversals[0];
    assert_eq!(rev.terminal.as_ref(), b"TERM0001");
    assert!(rev.stan > 18 && rev.stan <= 20 && !stans.contains(&rev.stan));
    assert_eq!(
        rev.original.as_ref().map(|o| (o.terminal.clone(), o.stan)),
        Some((Bytes::from_static(b"TERM0001"), 42))
    );
    // The next business day (Korea) starts every count again.
    let mut out = Vec::new();
    let r = req(TxnKind::Authorize, "M1", "TOMORROW", Some(100));
    let _ = c.handle_request(NOW + 86_400_000, 7, Origin::Network(NET), &r, &mut out);
    let (_, up) = split(out);
    assert_eq!(up.iter().map(|u| u.stan).collect::<Vec<_>>(), vec![1]);
}

#[test]
fn issuer_unavailable_fails_the_order_and_the_same_request_tries_again_under_its_id() {
    let mut c = core();
    let r = req(TxnKind::Authorize, "M1", "U1", Some(700));
    let (_, up) = step(&mut c, 1, &r);
    let a = answer_upstream(&mut c, &up[0], "91");
    let first = &a[0].1;
    assert_eq!(
        (first.result, first.state, first.authorized_amount),
        (ResultCode::IssuerUnavailable, Some(9), Some(0))
    );
    let txn_id = first.server_txn_id;
    // The host was asked and authorized nothing: the same request is attempted again, under
    // the same server_txn_id, and its answer is the new attempt's.
    let (a, up) = step(&mut c, 2, &r);
    assert!(a.is_empty());
    assert_eq!(up.len(), 1, "a new attempt upstream");
    let a = answer_upstream(&mut c, &up[0], "00");
    assert_eq!(
        (a[0].0, a[0].1.result, a[0].1.state, a[0].1.server_txn_id),
        (2, ResultCode::Approved, Some(1), txn_id)
    );
    // Approved now: the same request again is a retransmission.
    let (a, up) = step(&mut c, 3, &r);
    assert!(up.is_empty());
    assert_eq!(
        (a[0].1.result, a[0].1.server_txn_id),
        (ResultCode::Approved, txn_id)
    );
    // Other content under the key of a failed order is still a duplicate.
    let (_, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "U2", Some(700)));
    answer_upstream(&mut c, &up[0], "96");
    let (a, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "U2", Some(701)));
    assert!(up.is_empty());
    assert_eq!(a[0].1.result, ResultCode::DuplicateOrder);
}

#[test]
fn an_attempt_never_sent_keeps_its_id_for_the_retry() {
    let mut c = core();
    let r = req(TxnKind::Authorize, "M1", "N1", Some(100));
    let (_, up) = step(&mut c, 1, &r);
    let mut out = Vec::new();
    let op_id = up[0].op_id;
    c.handle_upstream(
        NOW,
        not_sent(op_id, ResultCode::UpstreamUnavailable),
        &mut out,
    );
    let first = split(out).0.remove(0).1;
    assert_eq!(
        (first.result, first.state),
        (ResultCode::UpstreamUnavailable, Some(9))
    );
    let (_, up) = step(&mut c, 1, &r);
    assert_eq!(up.len(), 1, "attempted again");
    let a = answer_upstream(&mut c, &up[0], "00");
    assert_eq!(
        a[0].1.server_txn_id, first.server_txn_id,
        "no new id per attempt"
    );
}

#[test]
fn retransmissions_held_while_the_original_is_in_progress_are_replays() {
    let mut c = core();
    let r = req(TxnKind::Authorize, "M1", "H1", Some(100));
    let (_, up) = step(&mut c, 1, &r);
    let (a, _) = step(&mut c, 2, &r);
    assert!(a.is_empty(), "held until the original completes");
    let mut out = Vec::new();
    let sent = OriginalRef {
        mti: 100,
        stan: 7,
        transmitted: Bytes::from_static(b"1126213956"),
        rrn: Bytes::from_static(b"633021000007"),
        terminal: Bytes::new(),
    };
    c.handle_upstream(
        NOW + 5,
        UpstreamResult {
            op_id: up[0].op_id,
            outcome: UpstreamOutcome::Answered {
                result: ResultCode::Approved,
                response_code: Bytes::from_static(b"00"),
                approval_code: Bytes::from_static(b"A1B2C3"),
                sent,
                balance: None,
            },
        },
        &mut out,
    );
    let kinds: Vec<(u32, bool)> = out
        .iter()
        .filter_map(|o| match o {
            Output::Reply(to, _) => Some((*to, false)),
            Output::Replay(to, _) => Some((*to, true)),
            Output::Upstream(_) => None,
        })
        .collect();
    assert_eq!(kinds, [(1, false), (2, true)]);
    // The answer says when the request was received, not when it was answered.
    let Some(Output::Reply(_, a)) = out.first() else {
        panic!("{out:?}")
    };
    assert_eq!(
        (a.received_at_ms, a.answered_at_ms),
        (Some(NOW), Some(NOW + 5))
    );
}

#[test]
fn format_1_records_replay_by_format_1_rules() {
    // One capture per authorization, and an attempt never sent forgotten (a retry is a new
    // order): what an older build journaled comes back as that build answered it.
    let mut c = core();
    c.set_record_format(1);
    authorized(&mut c, "O1", 5_000, TxnKind::Authorize);
    step(&mut c, 2, &capture_of(3_000, "C1"));
    let (a, _) = step(&mut c, 2, &capture_of(1_000, "C2"));
    assert_eq!(a[0].1.result, ResultCode::InvalidState);
    let r = req(TxnKind::Authorize, "M1", "N1", Some(100));
    let (_, up) = step(&mut c, 1, &r);
    let mut out = Vec::new();
    c.handle_upstream(NOW, not_sent(up[0].op_id, ResultCode::Busy), &mut out);
    assert!(c.order(b"M1", b"N1").is_none(), "forgotten");
    // This build's rules, once the replay is done: the partly captured order takes more.
    c.set_record_format(paymesh_actors::core::shard::RECORD_FORMAT);
    let (a, _) = step(&mut c, 2, &capture_of(1_000, "C2"));
    assert_eq!(
        (a[0].1.result, a[0].1.captured_amount),
        (ResultCode::Approved, Some(4_000))
    );
}

#[test]
fn format_2_records_replay_by_the_inbound_rules_with_the_op_ids_stans() {
    use paymesh_actors::core::config::HostStanPlan;
    use paymesh_actors::core::upstream::stan_for;
    // Format 2 was written by a build with several partial captures but STANs derived from the
    // op id on the host's own terminal: its records replay with both.
    let term = Bytes::from_static(b"TERM0001");
    let plan = HostStanPlan {
        terminals: vec![term.clone()],
        network_terminal: term.clone(),
        network_stan_first: 900_000,
        local_offset_minutes: 540,
    };
    let mut c = core_adjusted(|s| s.host_stans = vec![plan; 3]);
    c.set_record_format(2);
    let (_, up) = step(&mut c, 1, &req(TxnKind::Authorize, "M1", "O1", Some(5_000)));
    assert_eq!(up[0].stan, stan_for(up[0].op_id, 0, 1), "the op id's STAN");
    assert!(up[0].terminal.is_empty(), "the host's own terminal");
    answer_upstream(&mut c, &up[0], "00");
    step(&mut c, 2, &capture_of(3_000, "C1"));
    let (a, _) = step(&mut c, 2, &capture_of(1_000, "C2"));
    assert_eq!(
        (a[0].1.result, a[0].1.captured_amount),
        (ResultCode::Approved, Some(4_000)),
        "several partial captures"
    );
    // Format 3 (this build): the terminal's own STANs of the business day.
    c.set_record_format(paymesh_actors::core::shard::RECORD_FORMAT);
    let (_, up) = step(&mut c, 3, &req(TxnKind::Authorize, "M1", "O2", Some(100)));
    assert_eq!((up[0].terminal.clone(), up[0].stan), (term, 1));
}

#[test]
fn token_and_balance_answers_carry_no_state() {
    let mut c = core();
    let mut t = TxnRequest::new(
        TxnKind::Tokenize,
        Bytes::from_static(b"M1"),
        Bytes::from_static(b"TK9"),
    );
    t.payment = Some(card("5400000000000005"));
    let (a, _) = step(&mut c, 1, &t);
    assert_eq!(a[0].1.result, ResultCode::Approved);
    assert_eq!((a[0].1.state, a[0].1.authorized_amount), (None, None));
    let mut b = req(TxnKind::BalanceInquiry, "M1", "B9", None);
    b.payment = Some(card("4111111111111111"));
    let (_, up) = step(&mut c, 1, &b);
    let a = answer_upstream(&mut c, &up[0], "00");
    assert_eq!(a[0].1.result, ResultCode::Approved);
    assert_eq!(
        (a[0].1.state, a[0].1.amount, a[0].1.currency),
        (None, None, None),
        "nothing invented"
    );
}
