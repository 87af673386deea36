//! The upstream pool core, sans-IO: STAN allocation, ISO 8583 encoding in the host's profile,
//! answer matching (STAN + terminal id + MTI class), timeouts, links going down.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use paymesh_actors::core::config::HostConfig;
use paymesh_actors::core::pool::{HostSpec, PoolCore};
use paymesh_actors::core::upstream::{Account, UpstreamKind, UpstreamOutcome, UpstreamRequest};
use paymesh_codecs::iso8583::IsoMessage;
use paymesh_codecs::types::{Pan, ResultCode};

const NOW: u64 = 1_795_729_196_000;

fn host(profile: &str, header: &str) -> HostSpec {
    let c: HostConfig = toml::from_str(&format!(
        "name = \"van\"\naddress = \"127.0.0.1:1\"\nprofile = \"{profile}\"\nlength_header = \"{header}\"\nlinks = 2\ntimeout_ms = 100\ninflight_per_link_max = 2\n"
    ))
    .unwrap();
    HostSpec::from_config(&c).unwrap()
}

fn request(op_id: u64, kind: UpstreamKind) -> UpstreamRequest {
    UpstreamRequest {
        op_id,
        shard: 3,
        host: 0,
        kind,
        amount: 12_345,
        currency: 410,
        account: Account::Card {
            pan: Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
            expiry: Bytes::from_static(b"3012"),
        },
        merchant_id: Bytes::from_static(b"M000001"),
        order_id: Bytes::from_static(b"ORDER-1"),
        original: None,
        repeat: false,
    }
}

/// Reads every message the pool wrote on `link`.
fn written(pool: &mut PoolCore, link: usize) -> Vec<IsoMessage> {
    let mut framer = pool.framer();
    let mut buf = BytesMut::from(&pool.take_output(link).unwrap_or_default()[..]);
    let mut out = Vec::new();
    while let Some(m) = framer.decode(&mut buf).unwrap() {
        out.push(IsoMessage::decode(pool.spec().profile, m).unwrap());
    }
    out
}

fn answer_to(req: &IsoMessage, code: &str) -> Bytes {
    let mut a = req.response_template().unwrap();
    a.set(39, Bytes::copy_from_slice(code.as_bytes())).unwrap();
    if code == "00" {
        a.set(38, Bytes::from_static(b"AP0001")).unwrap();
    }
    a.to_bytes()
}

#[test]
fn requests_are_encoded_matched_and_answered_in_both_profiles() {
    for (profile, header) in [
        ("ascii_1987", "binary2"),
        ("binary_bcd", "bcd2"),
        ("ascii_1987", "ascii4"),
    ] {
        let mut pool = PoolCore::new(host(profile, header));
        assert!(
            pool.submit(NOW, request(1, UpstreamKind::Authorize))
                .is_err(),
            "no link up yet"
        );
        pool.link_up(0);
        pool.submit(NOW, request(1, UpstreamKind::Authorize))
            .unwrap();
        pool.submit(NOW, request(2, UpstreamKind::Sale)).unwrap();
        let sent = written(&mut pool, 0);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].mti().number(), 100);
        assert_eq!(sent[1].mti().number(), 200);
        assert_eq!(sent[0].pan().unwrap().as_ref(), b"4111111111111111");
        assert_eq!(sent[0].amount().unwrap(), Some(12_345));
        assert_eq!(sent[0].get(48).unwrap().as_ref(), b"ORDER-1");
        assert_ne!(sent[0].stan().unwrap(), sent[1].stan().unwrap());
        // Answers out of order are matched by STAN + terminal id + class.
        let r2 = pool
            .on_message(0, answer_to(&sent[1], "51"))
            .unwrap()
            .unwrap();
        let r1 = pool
            .on_message(0, answer_to(&sent[0], "00"))
            .unwrap()
            .unwrap();
        assert_eq!((r1.0, r1.1.op_id, r2.1.op_id), (3, 1, 2));
        match r1.1.outcome {
            UpstreamOutcome::Answered {
                result,
                approval_code,
                sent: s,
                ..
            } => {
                assert_eq!(result, ResultCode::Approved);
                assert_eq!(approval_code.as_ref(), b"AP0001");
                assert_eq!(s.stan, sent[0].stan().unwrap().unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            r2.1.outcome,
            UpstreamOutcome::Answered {
                result: ResultCode::InsufficientFunds,
                ..
            }
        ));
        // A duplicate answer matches nothing.
        assert!(
            pool.on_message(0, answer_to(&sent[0], "00"))
                .unwrap()
                .is_none()
        );
    }
}

#[test]
fn reversal_carries_original_data_elements() {
    let mut pool = PoolCore::new(host("ascii_1987", "binary2"));
    pool.link_up(0);
    pool.submit(NOW, request(1, UpstreamKind::Authorize))
        .unwrap();
    let auth = written(&mut pool, 0).remove(0);
    let answered = pool.on_message(0, answer_to(&auth, "00")).unwrap().unwrap();
    let UpstreamOutcome::Answered { sent, .. } = answered.1.outcome else {
        panic!()
    };
    let mut rev = request(2, UpstreamKind::Reversal);
    rev.original = Some(sent.clone());
    pool.submit(NOW + 1_000, rev).unwrap();
    let reversal = written(&mut pool, 0).remove(0);
    assert_eq!(reversal.mti().number(), 400);
    assert_eq!(
        reversal.rrn(),
        auth.rrn(),
        "a reversal keeps the original RRN"
    );
    let ode = reversal.original_data_elements().unwrap().unwrap();
    assert_eq!(ode.mti.number(), 100);
    assert_eq!(ode.stan, sent.stan);
    let ok = pool
        .on_message(0, answer_to(&reversal, "00"))
        .unwrap()
        .unwrap();
    assert_eq!(ok.1.op_id, 2);
}

#[test]
fn window_timeouts_and_link_loss() {
    let mut pool = PoolCore::new(host("ascii_1987", "binary2"));
    pool.link_up(0);
    pool.submit(NOW, request(1, UpstreamKind::Authorize))
        .unwrap();
    pool.submit(NOW + 10, request(2, UpstreamKind::Authorize))
        .unwrap();
    let busy = pool
        .submit(NOW, request(3, UpstreamKind::Authorize))
        .unwrap_err();
    assert!(matches!(
        busy.1.outcome,
        UpstreamOutcome::NotSent {
            result: ResultCode::Busy
        }
    ));
    let sent = written(&mut pool, 0);
    let mut out = Vec::new();
    pool.poll_timeouts(NOW + 99, &mut out);
    assert!(out.is_empty());
    pool.poll_timeouts(NOW + 100, &mut out);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].1.outcome, UpstreamOutcome::Timeout { .. }));
    // The late answer to the timed-out request changes nothing.
    assert!(
        pool.on_message(0, answer_to(&sent[0], "00"))
            .unwrap()
            .is_none()
    );
    // Losing the link makes the other request's outcome unknown, and leaves no link to send on.
    out.clear();
    pool.link_down(0, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.op_id, 2);
    let down = pool
        .submit(NOW, request(4, UpstreamKind::Authorize))
        .unwrap_err();
    assert!(matches!(
        down.1.outcome,
        UpstreamOutcome::NotSent {
            result: ResultCode::UpstreamUnavailable
        }
    ));
    assert_eq!(pool.inflight(), 0);
}
