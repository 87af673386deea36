//! Device signatures in the shard core (sans-IO): which requests are refused INVALID_SIGNATURE
//! and never reach a host, the anti-replay window, and the windows surviving snapshots and
//! journal replay.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use ed25519_dalek::{Signer, SigningKey};
use paymesh_actors::core::access::{AccessTable, Origin};
use paymesh_actors::core::config::{
    CoreSettings, DeviceConfig, DeviceSignaturePolicy, MerchantConfig, RouteConfig, RouteMethod,
};
use paymesh_actors::core::device::{DEVICE_COUNTER_WINDOW, DeviceRegistry};
use paymesh_actors::core::journal_codec::{
    JournalKey, RECORD_META, RECORD_REQUEST_NETWORK, encode_meta, encode_request,
};
use paymesh_actors::core::recovery::Recovery;
use paymesh_actors::core::shard::{Output, ShardCore};
use paymesh_actors::core::upstream::{
    OriginalRef, UpstreamOutcome, UpstreamRequest, UpstreamResult, map_response_code,
};
use paymesh_codecs::message::{DeviceSignature, PaymentMethod, TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::{Pan, ResultCode, Secret};

const NOW: u64 = 1_795_729_196_000;

/// RFC 8032, section 7.1, TEST 1 and TEST 2.
const KEY_1: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
const KEY_2: &str = "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb";

fn signing_key(secret_hex: &str) -> SigningKey {
    SigningKey::from_bytes(&hex::decode(secret_hex).unwrap().try_into().unwrap())
}

fn device(id: &str, secret_hex: &str) -> DeviceConfig {
    DeviceConfig {
        id: id.into(),
        public_key: hex::encode(signing_key(secret_hex).verifying_key().to_bytes()),
    }
}

fn merchant(id: &str, policy: DeviceSignaturePolicy, devices: Vec<DeviceConfig>) -> MerchantConfig {
    MerchantConfig {
        id: id.into(),
        enabled: true,
        single_limit_minor: None,
        daily_limit_minor: Some(1_000_000),
        currencies: vec![],
        follow_ups: Default::default(),
        devices,
        device_signature: policy,
    }
}

/// M1 signs optionally with phone-1 (key 1) and phone-2 (key 2); MREQ must sign, with phone-1.
fn merchants() -> Vec<MerchantConfig> {
    vec![
        merchant(
            "M1",
            DeviceSignaturePolicy::Optional,
            vec![device("phone-1", KEY_1), device("phone-2", KEY_2)],
        ),
        merchant(
            "MREQ",
            DeviceSignaturePolicy::Required,
            vec![device("phone-1", KEY_1)],
        ),
    ]
}

fn settings() -> std::sync::Arc<CoreSettings> {
    let routes = vec![RouteConfig {
        method: RouteMethod::Card,
        bin_from: None,
        bin_to: None,
        key: None,
        host: "van".into(),
        failover: Vec::new(),
    }];
    let mut settings = CoreSettings::new(&merchants(), &routes, &["van".to_string()], 540).unwrap();
    let s = std::sync::Arc::get_mut(&mut settings).unwrap();
    s.access = AccessTable::grant_all(&[NET]);
    // Fixed identifier keys: two shards built here give the same ids.
    s.secrets = paymesh_actors::core::ids::CoreSecrets::derive(&[7; 32]);
    settings
}

/// The network every request comes from (granted every merchant).
const NET: &[u8] = b"NET";

fn core() -> ShardCore<u32> {
    ShardCore::new(0, settings(), 1)
}

fn authorize(merchant: &str, order: &str, amount: u64) -> TxnRequest {
    let mut r = TxnRequest::new(
        TxnKind::Authorize,
        Bytes::copy_from_slice(merchant.as_bytes()),
        Bytes::copy_from_slice(order.as_bytes()),
    );
    r.amount = Some(amount);
    r.currency = Some(410);
    r.payment = Some(PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: Bytes::from_static(b"3012"),
        cvv: Some(Secret::new(Bytes::from_static(b"123"))),
    });
    r
}

/// `req` signed by `device` with `key` and `counter`, as a device would.
fn signed(mut req: TxnRequest, device: &str, secret_hex: &str, counter: u64) -> TxnRequest {
    req.device_signature = Some(DeviceSignature {
        device_id: Bytes::copy_from_slice(device.as_bytes()),
        counter,
        signature: Bytes::new(),
    });
    let mut message = BytesMut::new();
    req.device_signed_bytes(&mut message);
    let signature = signing_key(secret_hex).sign(&message).to_bytes();
    if let Some(d) = &mut req.device_signature {
        d.signature = Bytes::copy_from_slice(&signature);
    }
    req
}

fn step(core: &mut ShardCore<u32>, r: &TxnRequest) -> (Vec<TxnAnswer>, Vec<UpstreamRequest>) {
    let mut out = Vec::new();
    let _ = core.handle_request(NOW, 1, Origin::Network(NET), r, &mut out);
    let (mut answers, mut upstream) = (Vec::new(), Vec::new());
    for o in out {
        match o {
            Output::Reply(_, a) | Output::Replay(_, a) => answers.push(*a),
            Output::Upstream(u) => upstream.push(*u),
        }
    }
    (answers, upstream)
}

/// The request went on to its host.
fn proceeds(core: &mut ShardCore<u32>, r: &TxnRequest) -> UpstreamRequest {
    let (answers, mut upstream) = step(core, r);
    assert!(answers.is_empty(), "answered at once: {answers:?}");
    assert_eq!(upstream.len(), 1);
    upstream.remove(0)
}

/// The request is a retransmission of one in progress: it waits for that answer, nothing new
/// is made or sent.
fn retransmitted(core: &mut ShardCore<u32>, r: &TxnRequest) {
    let orders = core.order_count();
    let (answers, upstream) = step(core, r);
    assert!(upstream.is_empty() && answers.is_empty(), "{answers:?}");
    assert_eq!(core.order_count(), orders);
}

/// The request was refused INVALID_SIGNATURE with `message`, and nothing went upstream.
fn refused(core: &mut ShardCore<u32>, r: &TxnRequest, message: &str) {
    let orders = core.order_count();
    let (answers, upstream) = step(core, r);
    assert!(upstream.is_empty(), "sent upstream: {upstream:?}");
    assert_eq!(answers.len(), 1);
    let a = &answers[0];
    assert_eq!(a.result, ResultCode::InvalidSignature, "{a:?}");
    assert_eq!(a.message.as_deref(), Some(message.as_bytes()));
    assert_eq!(
        a.server_txn_id, r.server_txn_id,
        "no transaction id allocated"
    );
    assert_eq!(a.order_id.as_ref(), Some(&r.order_id));
    assert_eq!(core.order_count(), orders, "no order recorded");
}

fn approve(core: &mut ShardCore<u32>, up: &UpstreamRequest) -> TxnAnswer {
    let outcome = UpstreamOutcome::Answered {
        result: map_response_code(b"00"),
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
    };
    let mut out = Vec::new();
    let result = UpstreamResult {
        op_id: up.op_id,
        outcome,
    };
    core.handle_upstream(NOW + 5, result, &mut out);
    match out.pop() {
        Some(Output::Reply(_, a)) => *a,
        other => panic!("{other:?}"),
    }
}

const BAD: &str = "device signature does not verify";
const USED: &str = "device counter already used";
const OLD: &str = "device counter too old";

#[test]
fn a_good_signature_is_approved_and_a_junk_one_refused_without_a_transaction_id() {
    let mut c = core();
    let mut junk = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    if let Some(d) = &mut junk.device_signature {
        d.signature = Bytes::from_static(&[0x5A; 64]);
    }
    refused(&mut c, &junk, BAD);
    let mut short = junk.clone();
    if let Some(d) = &mut short.device_signature {
        d.signature = Bytes::from_static(b"junk");
    }
    refused(&mut c, &short, BAD);
    // Refusals allocated nothing: the good request gets the id a fresh shard would give it.
    let good = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    let up = proceeds(&mut c, &good);
    let answer = approve(&mut c, &up);
    assert_eq!(answer.result, ResultCode::Approved);
    let mut fresh = core();
    let up = proceeds(&mut fresh, &good);
    let first = approve(&mut fresh, &up);
    assert_eq!(answer.server_txn_id, first.server_txn_id);
}

#[test]
fn a_signature_must_be_the_registered_devices_over_these_very_fields() {
    let mut c = core();
    refused(
        &mut c,
        &signed(authorize("M1", "O1", 5_000), "phone-9", KEY_1, 1),
        "device not registered to the merchant",
    );
    // phone-2 is M1's, not MREQ's.
    refused(
        &mut c,
        &signed(authorize("MREQ", "O1", 5_000), "phone-2", KEY_2, 1),
        "device not registered to the merchant",
    );
    // phone-2's key signing as phone-1.
    refused(
        &mut c,
        &signed(authorize("M1", "O1", 5_000), "phone-1", KEY_2, 1),
        BAD,
    );
    // Any covered field changed after signing: the amount, the counter, the message type.
    let mut tampered = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    tampered.amount = Some(500_000);
    refused(&mut c, &tampered, BAD);
    let mut recounted = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    if let Some(d) = &mut recounted.device_signature {
        d.counter = 2;
    }
    refused(&mut c, &recounted, BAD);
    let mut as_sale = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    as_sale.kind = TxnKind::Sale;
    refused(&mut c, &as_sale, BAD);
    // None of the refusals used counter 1, and the CVV is not covered.
    let mut without_cvv = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    if let Some(PaymentMethod::Card { cvv, .. }) = &mut without_cvv.payment {
        *cvv = Some(Secret::new(Bytes::from_static(b"999")));
    }
    proceeds(&mut c, &without_cvv);
}

#[test]
fn signatures_are_required_by_policy_and_for_every_wallet_token_payment() {
    let mut c = core();
    refused(
        &mut c,
        &authorize("MREQ", "O1", 5_000),
        "device signature required",
    );
    proceeds(
        &mut c,
        &signed(authorize("MREQ", "O1", 5_000), "phone-1", KEY_1, 1),
    );
    // The optional merchant takes unsigned card payments and tokenizes unsigned...
    proceeds(&mut c, &authorize("M1", "O2", 5_000));
    let mut tokenize = TxnRequest::new(
        TxnKind::Tokenize,
        Bytes::from_static(b"M1"),
        Bytes::from_static(b"T1"),
    );
    tokenize.payment = Some(PaymentMethod::Card {
        pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
        expiry: Bytes::from_static(b"3012"),
        cvv: None,
    });
    let (answers, _) = step(&mut c, &tokenize);
    let token = answers[0].token.clone().unwrap();
    // ...but a token payment without a signature is refused whatever the policy.
    let mut by_token = authorize("M1", "W1", 5_000);
    by_token.payment = Some(PaymentMethod::WalletToken(token));
    refused(&mut c, &by_token, "device signature required");
    let mut balance = by_token.clone();
    balance.kind = TxnKind::BalanceInquiry;
    refused(&mut c, &balance, "device signature required");
    proceeds(&mut c, &signed(by_token, "phone-2", KEY_2, 1));
}

#[test]
fn a_counter_is_accepted_once_and_never_below_the_window() {
    let mut c = core();
    proceeds(
        &mut c,
        &signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 5),
    );
    // The same frame again is a retransmission (it waits for the first answer; nothing new is
    // made); a new request under a used counter is refused.
    retransmitted(
        &mut c,
        &signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 5),
    );
    refused(
        &mut c,
        &signed(authorize("M1", "O2", 5_000), "phone-1", KEY_1, 5),
        USED,
    );
    // Counters are per device (and per merchant).
    proceeds(
        &mut c,
        &signed(authorize("M1", "O2", 5_000), "phone-2", KEY_2, 5),
    );
    proceeds(
        &mut c,
        &signed(authorize("MREQ", "O2", 5_000), "phone-1", KEY_1, 5),
    );
    let far = 5 + 200;
    proceeds(
        &mut c,
        &signed(authorize("M1", "O3", 5_000), "phone-1", KEY_1, far),
    );
    refused(
        &mut c,
        &signed(authorize("M1", "O4", 5_000), "phone-1", KEY_1, 6),
        OLD,
    );
    refused(
        &mut c,
        &signed(
            authorize("M1", "O4", 5_000),
            "phone-1",
            KEY_1,
            far - DEVICE_COUNTER_WINDOW,
        ),
        OLD,
    );
    refused(
        &mut c,
        &signed(authorize("M1", "O4", 5_000), "phone-1", KEY_1, 0),
        OLD,
    );
    proceeds(
        &mut c,
        &signed(
            authorize("M1", "O4", 5_000),
            "phone-1",
            KEY_1,
            far - DEVICE_COUNTER_WINDOW + 1,
        ),
    );
}

#[test]
fn pipelined_requests_arriving_out_of_order_are_each_accepted_once() {
    let mut c = core();
    let requests: Vec<TxnRequest> = [10u64, 8, 9, 7, 12, 11]
        .iter()
        .map(|&n| {
            signed(
                authorize("M1", &format!("P{n}"), 1_000),
                "phone-1",
                KEY_1,
                n,
            )
        })
        .collect();
    for r in &requests {
        proceeds(&mut c, r);
    }
    // Each counter again, on a new order: used.
    for (n, r) in requests.iter().enumerate() {
        let mut again = r.clone();
        again.order_id = Bytes::from(format!("AGAIN{n}"));
        let counter = again.device_signature.as_ref().map_or(0, |d| d.counter);
        refused(&mut c, &signed(again, "phone-1", KEY_1, counter), USED);
    }
}

#[test]
fn a_retransmission_of_the_same_frame_gets_the_original_answer() {
    let mut c = core();
    let frame = signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1);
    let up = proceeds(&mut c, &frame);
    let first = approve(&mut c, &up);
    let (answers, upstream) = step(&mut c, &frame);
    assert!(upstream.is_empty());
    assert_eq!(answers, vec![first]);
}

#[test]
fn a_retransmission_signed_again_gets_the_original_answer() {
    let mut c = core();
    let up = proceeds(
        &mut c,
        &signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 1),
    );
    let first = approve(&mut c, &up);
    let (answers, upstream) = step(
        &mut c,
        &signed(authorize("M1", "O1", 5_000), "phone-1", KEY_1, 2),
    );
    assert!(upstream.is_empty());
    assert_eq!(answers, vec![first]);
}

#[test]
fn follow_ups_are_checked_and_inquiries_are_not() {
    let mut c = core();
    let up = proceeds(
        &mut c,
        &signed(authorize("MREQ", "O1", 5_000), "phone-1", KEY_1, 1),
    );
    approve(&mut c, &up);
    let mut capture = TxnRequest::new(
        TxnKind::Capture,
        Bytes::from_static(b"MREQ"),
        Bytes::from_static(b"O1"),
    );
    capture.amount = Some(4_000);
    refused(&mut c, &capture, "device signature required");
    let mut junk = signed(capture.clone(), "phone-1", KEY_1, 2);
    if let Some(d) = &mut junk.device_signature {
        d.signature = Bytes::from_static(&[7; 64]);
    }
    refused(&mut c, &junk, BAD);
    refused(&mut c, &signed(capture.clone(), "phone-1", KEY_1, 1), USED);
    let order = c.order(b"MREQ", b"O1").unwrap();
    assert_eq!(order.captured, 0, "the refused captures changed nothing");
    let (answers, _) = step(&mut c, &signed(capture, "phone-1", KEY_1, 2));
    assert_eq!(answers[0].result, ResultCode::Approved);
    assert_eq!(answers[0].captured_amount, Some(4_000));
    // INQUIRY changes nothing: its device fields are carried and ignored.
    let mut inquiry = TxnRequest::new(
        TxnKind::Inquiry,
        Bytes::from_static(b"MREQ"),
        Bytes::from_static(b"O1"),
    );
    inquiry.device_signature = junk.device_signature.clone();
    let (answers, _) = step(&mut c, &inquiry);
    assert_eq!(answers[0].result, ResultCode::Approved);
}

#[test]
fn the_windows_survive_a_snapshot_and_older_snapshots_still_load() {
    let mut c = core();
    for n in [3, 1] {
        proceeds(
            &mut c,
            &signed(
                authorize("M1", &format!("S{n}"), 1_000),
                "phone-1",
                KEY_1,
                n,
            ),
        );
    }
    let snapshot = c.encode_snapshot();
    let mut back = ShardCore::<u32>::decode_snapshot(settings(), &snapshot).unwrap();
    for n in [3, 1] {
        refused(
            &mut back,
            &signed(
                authorize("M1", &format!("R{n}"), 1_000),
                "phone-1",
                KEY_1,
                n,
            ),
            USED,
        );
    }
    proceeds(
        &mut back,
        &signed(authorize("M1", "R2", 1_000), "phone-1", KEY_1, 2),
    );

    // Format 3 had no network numbering (after the shard and sequence: an empty one is a zero
    // count) and no device section at the end (a zero count); its windows start empty.
    // Formats 4 and 5 had no STAN book at the end (an empty one is a zero count).
    // Format 6 differs only in vault entries (no customer), of which an empty core has none.
    let empty = core().encode_snapshot();
    assert_eq!(empty[0], 7);
    let mut six = empty.to_vec();
    six[0] = 6;
    ShardCore::<u32>::decode_snapshot(settings(), &six).unwrap();
    assert_eq!(empty[11..13], [0, 0]);
    assert_eq!(empty[empty.len() - 6..], [0, 0, 0, 0, 0, 0]);
    for format in [4, 5] {
        let mut older = empty[..empty.len() - 2].to_vec();
        older[0] = format;
        ShardCore::<u32>::decode_snapshot(settings(), &older).unwrap();
    }
    let mut old = [&empty[..11], &empty[13..empty.len() - 6]].concat();
    old[0] = 3;
    ShardCore::<u32>::decode_snapshot(settings(), &old).unwrap();
    assert!(
        ShardCore::<u32>::decode_snapshot(settings(), &snapshot[..snapshot.len() - 1]).is_err()
    );
}

#[test]
fn journal_replay_rebuilds_the_windows_from_requests_journaled_without_their_cvv() {
    let key = JournalKey::new(1, &[9; 32], [0, 0, 0, 1]);
    // Only admitted requests are journaled (a refused one changed nothing).
    let requests = [
        signed(authorize("M1", "J1", 1_000), "phone-1", KEY_1, 4),
        signed(authorize("M1", "J2", 1_000), "phone-1", KEY_1, 2),
    ];
    // Replayed with phone-1 removed from M1 since: what was acknowledged comes back all the same.
    let mut revoked = merchants();
    revoked[0].devices.retain(|d| d.id != "phone-1");
    let routes = vec![RouteConfig {
        method: RouteMethod::Card,
        bin_from: None,
        bin_to: None,
        key: None,
        host: "van".into(),
        failover: Vec::new(),
    }];
    let without_phone = CoreSettings::new(&revoked, &routes, &["van".to_string()], 540).unwrap();
    let mut recovery = Recovery::new(std::slice::from_ref(&key), &without_phone, 1, 0u32).unwrap();
    recovery.record(1, RECORD_META, &encode_meta(1)).unwrap();
    for (lsn, r) in (2u64..).zip(&requests) {
        let record = encode_request(&key, lsn, NOW, NET, r).unwrap();
        recovery
            .record(lsn, RECORD_REQUEST_NETWORK, &record)
            .unwrap();
    }
    let replayed = recovery.finish(NOW + 10).unwrap();
    let shard = replayed.cores.into_iter().next().unwrap();
    assert_eq!(
        shard.order_count(),
        2,
        "J1 and J2 replayed without their CVV, though phone-1 is no longer registered"
    );
    // The windows: the replayed counters are used (checked on a shard with phone-1 registered).
    let mut shard =
        ShardCore::<u32>::decode_snapshot(settings(), &shard.encode_snapshot()).unwrap();
    for n in [4, 2] {
        refused(
            &mut shard,
            &signed(authorize("M1", "K1", 1_000), "phone-1", KEY_1, n),
            USED,
        );
    }
    proceeds(
        &mut shard,
        &signed(authorize("M1", "K9", 1_000), "phone-1", KEY_1, 9),
    );
}

#[test]
fn bad_registrations_refuse_the_configuration() {
    let with = |devices: Vec<DeviceConfig>| {
        DeviceRegistry::new(&[merchant("M1", DeviceSignaturePolicy::Optional, devices)])
    };
    let key = device("d", KEY_1).public_key;
    let cases = [
        (
            vec![device("d", KEY_1), device("d", KEY_2)],
            "registered twice",
        ),
        (
            vec![DeviceConfig {
                id: "d".into(),
                public_key: key[..62].into(),
            }],
            "64 hex digits",
        ),
        (
            vec![DeviceConfig {
                id: "d".into(),
                public_key: format!("{}zz", &key[..62]),
            }],
            "64 hex digits",
        ),
        (
            // The identity point: small order, so signatures under it can be forged.
            vec![DeviceConfig {
                id: "d".into(),
                public_key: format!("01{}", "00".repeat(31)),
            }],
            "weak",
        ),
        (
            vec![DeviceConfig {
                id: String::new(),
                public_key: key.clone(),
            }],
            "printable ASCII",
        ),
    ];
    for (devices, why) in cases {
        let err = with(devices).unwrap_err().to_string();
        assert!(err.contains(why), "{err}");
    }
    // Not a point on the curve at all.
    let not_a_point = (0u8..=255)
        .map(|b| format!("{b:02x}{}", "11".repeat(31)))
        .find(|k| {
            with(vec![DeviceConfig {
                id: "d".into(),
                public_key: k.clone(),
            }])
            .is_err()
        })
        .expect("some encoding is not a point");
    let err = with(vec![DeviceConfig {
        id: "d".into(),
        public_key: not_a_point,
    }])
    .unwrap_err()
    .to_string();
    assert!(err.contains("not a valid Ed25519 public key"), "{err}");
    // The same id under two merchants is two devices.
    let two = DeviceRegistry::new(&merchants()).unwrap();
    assert_eq!(two.len(), 3);
}
