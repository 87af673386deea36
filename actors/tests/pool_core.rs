//! The upstream pool core, sans-IO: sign-on before traffic, echo tests, sign-off, reconnect
//! backoff with jitter, the circuit breaker, host limits, STAN allocation, ISO 8583 encoding in
//! the host's profile and dialect, answer matching (STAN + MTI class + answer MTI + terminal id),
//! timeouts, links going down. Time is virtual (microseconds); nothing here sleeps.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use paymesh_actors::core::config::HostConfig;
use paymesh_actors::core::pool::{HostSpec, LinkAction, PoolCore, ShardResult};
use paymesh_actors::core::upstream::{
    Account, UpstreamKind, UpstreamOutcome, UpstreamRequest, stan_for, trace_of,
};
use paymesh_actors::metrics::{BreakerState, LinkState};
use paymesh_codecs::iso8583::{IsoMessage, Profile};
use paymesh_codecs::types::{Pan, ResultCode};

/// 2026-11-26T21:39:56Z, in microseconds.
const NOW: u64 = 1_795_729_196_000_000;
const MS: u64 = 1_000;

fn host(extra: &str) -> HostSpec {
    let c: HostConfig = toml::from_str(&format!(
        "name = \"van\"\naddress = \"127.0.0.1:1\"\nlinks = 2\ntimeout_ms = 100\ninflight_per_link_max = 2\n{extra}"
    ))
    .unwrap();
    HostSpec::from_config(&c).unwrap()
}

fn pool(extra: &str) -> PoolCore {
    PoolCore::new(host(extra))
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
        installments: 0,
        original: None,
        original_approval: Bytes::new(),
        terminal: Bytes::new(),
        repeat: false,
        stan: 0,
        sent_at_ms: 0,
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
    if code == "00" && !req.contains(70) {
        a.set(38, Bytes::from_static(b"AP0001")).unwrap();
    }
    a.to_bytes()
}

fn actions(pool: &mut PoolCore) -> Vec<LinkAction> {
    std::iter::from_fn(|| pool.poll_action()).collect()
}

fn poll(pool: &mut PoolCore, now: u64) -> Vec<ShardResult> {
    let mut out = Vec::new();
    pool.poll(now, &mut out);
    out
}

fn refused(r: Result<(), Box<ShardResult>>) -> ResultCode {
    match r.unwrap_err().1.outcome {
        UpstreamOutcome::NotSent { result } => result,
        other => panic!("{other:?}"),
    }
}

/// Connects `link` and answers its sign-on: the link is up.
fn sign_on(pool: &mut PoolCore, link: usize, now: u64) {
    pool.link_connected(link, now);
    let sent = written(pool, link);
    assert_eq!(sent.len(), 1, "only the sign-on goes out first");
    assert_eq!(sent[0].mti().number(), 800);
    assert_eq!(sent[0].network_management_code().unwrap(), Some(1));
    assert!(
        pool.on_message(link, now, answer_to(&sent[0], "00"))
            .unwrap()
            .is_none()
    );
    assert!(pool.is_up(link));
}

#[test]
fn sign_on_gates_transactions() {
    let mut p = pool("");
    assert_eq!(
        actions(&mut p),
        [],
        "nothing before the first poll asks for it"
    );
    poll(&mut p, NOW);
    assert_eq!(
        actions(&mut p),
        [LinkAction::Connect(0), LinkAction::Connect(1)]
    );
    assert_eq!(p.link_state(0), LinkState::Connecting);
    assert_eq!(
        refused(p.submit(NOW, request(1, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable
    );
    p.link_connected(0, NOW);
    assert_eq!(p.link_state(0), LinkState::SigningOn);
    assert_eq!(
        refused(p.submit(NOW, request(1, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable,
        "a link that is not signed on carries no transactions"
    );
    assert!(!p.is_available());
    let sent = written(&mut p, 0);
    assert_eq!(sent.len(), 1);
    let s = &sent[0];
    assert_eq!(s.mti().number(), 800);
    assert_eq!(s.get_slice(7), Some(&b"1126213956"[..]));
    // Network management's STANs: the top of terminal_id's range, never a transaction's.
    assert_eq!(s.get_slice(11), Some(&b"998054"[..]));
    assert_eq!(s.get_slice(32), Some(&b"123456"[..]));
    assert_eq!(s.get_slice(41), Some(&b"PAYMESH1"[..]));
    assert_eq!(s.get_slice(70), Some(&b"001"[..]));
    p.on_message(0, NOW + MS, answer_to(s, "00")).unwrap();
    assert_eq!(p.link_state(0), LinkState::Up);
    assert_eq!(
        p.metrics().links[0]
            .state
            .load(std::sync::atomic::Ordering::Relaxed),
        LinkState::Up as u8
    );
    assert!(p.is_available());
    p.submit(NOW + MS, request(1, UpstreamKind::Authorize))
        .unwrap();
    let sent = written(&mut p, 0);
    assert_eq!(sent[0].mti().number(), 100);
    assert_eq!(
        sent[0].stan().unwrap(),
        Some(1),
        "transactions have STANs below network management's"
    );
}

#[test]
fn sign_on_matches_a_standard_ascii_1987_encoder() {
    // actors/tests/vectors/gen_sign_on.py: pyiso8583's default_ascii spec, 2-byte binary header.
    let text = include_str!("vectors/sign_on_ascii_1987.txt");
    let hex = text.lines().find(|l| !l.starts_with('#')).unwrap().trim();
    let expected: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let mut p = pool("profile = \"ascii_1987\"\nlength_header = \"binary2\"\n");
    p.link_connected(0, NOW);
    let frame = p.take_output(0).unwrap();
    assert_eq!(
        &frame[..],
        &expected[..],
        "byte for byte pyiso8583's encoding"
    );
    // And it reads back with the standard profile as the fields pyiso8583 was given.
    let body = Bytes::copy_from_slice(&frame[2..]);
    assert_eq!(
        usize::from(u16::from_be_bytes([frame[0], frame[1]])),
        body.len()
    );
    let m = IsoMessage::decode(Profile::ascii_1987(), body).unwrap();
    let fields: Vec<(u8, &[u8])> = m.slices().collect();
    assert_eq!(
        fields,
        [
            (7, &b"1126213956"[..]),
            (11, b"998054"),
            (32, b"123456"),
            (41, b"PAYMESH1"),
            (70, b"001"),
        ]
    );
}

#[test]
fn refused_or_unanswered_sign_on_closes_the_link_and_it_reconnects_after_the_backoff() {
    let mut p = pool("reconnect_ms = 50\nreconnect_max_ms = 400\n");
    poll(&mut p, NOW);
    actions(&mut p);
    // Refused (91): closed at once.
    p.link_connected(0, NOW);
    let s = written(&mut p, 0).remove(0);
    p.on_message(0, NOW, answer_to(&s, "91")).unwrap();
    assert_eq!(p.link_state(0), LinkState::Down);
    assert_eq!(actions(&mut p), [LinkAction::Close(0)]);
    let retry = p.reconnect_at_us(0).unwrap();
    assert!((NOW + 25 * MS..=NOW + 50 * MS).contains(&retry), "{retry}");
    poll(&mut p, retry - 1);
    assert_eq!(actions(&mut p), []);
    poll(&mut p, retry);
    assert_eq!(actions(&mut p), [LinkAction::Connect(0)]);
    // Unanswered within timeout_ms: closed too, and the next delay has doubled.
    p.link_connected(0, retry);
    written(&mut p, 0);
    poll(&mut p, retry + 99 * MS);
    assert_eq!(p.link_state(0), LinkState::SigningOn);
    poll(&mut p, retry + 100 * MS);
    assert_eq!(p.link_state(0), LinkState::Down);
    assert_eq!(actions(&mut p), [LinkAction::Close(0)]);
    let next = p.reconnect_at_us(0).unwrap() - (retry + 100 * MS);
    assert!((50 * MS..=100 * MS).contains(&next), "{next}");
    // A late 0810 for the abandoned sign-on matches nothing.
    assert!(
        p.on_message(0, retry + 101 * MS, answer_to(&s, "00"))
            .unwrap()
            .is_none()
    );
    assert_eq!(p.link_state(0), LinkState::Down);
    assert!(p.metrics().unmatched.get() >= 1);
}

#[test]
fn echo_tests_when_idle_and_missed_echoes_close_the_link() {
    let mut p = pool("echo_idle_ms = 50\necho_misses_max = 2\nbreaker_failures = 0\n");
    sign_on(&mut p, 0, NOW);
    // Traffic keeps the link busy: no echo.
    p.submit(NOW + 40 * MS, request(1, UpstreamKind::Authorize))
        .unwrap();
    let auth = written(&mut p, 0).remove(0);
    p.on_message(0, NOW + 41 * MS, answer_to(&auth, "00"))
        .unwrap();
    poll(&mut p, NOW + 89 * MS);
    assert!(written(&mut p, 0).is_empty());
    // Idle for echo_idle_ms: an echo test; answered, the count of misses restarts.
    poll(&mut p, NOW + 90 * MS);
    let echo = written(&mut p, 0).remove(0);
    assert_eq!(
        (echo.mti().number(), echo.network_management_code().unwrap()),
        (800, Some(301))
    );
    p.on_message(0, NOW + 91 * MS, answer_to(&echo, "00"))
        .unwrap();
    // Two unanswered in a row close the link.
    poll(&mut p, NOW + 140 * MS);
    assert_eq!(written(&mut p, 0).len(), 1, "second echo");
    poll(&mut p, NOW + 240 * MS);
    assert_eq!(p.link_state(0), LinkState::Up, "one miss");
    assert_eq!(
        written(&mut p, 0).len(),
        1,
        "third echo, right after the miss"
    );
    poll(&mut p, NOW + 340 * MS);
    assert_eq!(p.link_state(0), LinkState::Down, "two misses");
    assert!(actions(&mut p).contains(&LinkAction::Close(0)));
}

#[test]
fn breaker_opens_refuses_fast_then_probes_with_an_echo() {
    let mut p = pool("breaker_failures = 2\nbreaker_open_ms = 500\necho_idle_ms = 0\n");
    sign_on(&mut p, 0, NOW);
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    p.submit(NOW, request(2, UpstreamKind::Authorize)).unwrap();
    written(&mut p, 0);
    let timed_out = poll(&mut p, NOW + 100 * MS);
    assert_eq!(timed_out.len(), 2);
    assert_eq!(p.breaker_state(), BreakerState::Open);
    assert!(!p.is_available());
    assert_eq!(
        refused(p.submit(NOW + 100 * MS, request(3, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable
    );
    assert_eq!(p.metrics().refused.get(), 1);
    // Half-open after breaker_open_ms: the pool probes with an echo, and nothing else goes.
    poll(&mut p, NOW + 600 * MS);
    assert_eq!(p.breaker_state(), BreakerState::HalfOpen);
    let probe = written(&mut p, 0).remove(0);
    assert_eq!(probe.network_management_code().unwrap(), Some(301));
    assert_eq!(
        refused(p.submit(NOW + 600 * MS, request(4, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable,
        "one probe at a time"
    );
    // The probe fails: open again for another period.
    poll(&mut p, NOW + 700 * MS);
    assert_eq!(p.breaker_state(), BreakerState::Open);
    poll(&mut p, NOW + 1_199 * MS);
    assert_eq!(p.breaker_state(), BreakerState::Open);
    poll(&mut p, NOW + 1_200 * MS);
    let probe = written(&mut p, 0).remove(0);
    // Answered: closed, and traffic flows.
    p.on_message(0, NOW + 1_201 * MS, answer_to(&probe, "00"))
        .unwrap();
    assert_eq!(p.breaker_state(), BreakerState::Closed);
    assert!(p.is_available());
    p.submit(NOW + 1_201 * MS, request(5, UpstreamKind::Authorize))
        .unwrap();
}

#[test]
fn half_open_lets_one_transaction_probe_through_on_a_host_without_network_management() {
    let mut p =
        pool("sign_on = false\necho_idle_ms = 0\nbreaker_failures = 1\nbreaker_open_ms = 100\n");
    p.link_connected(0, NOW);
    assert!(p.is_up(0), "no sign-on: up at once");
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    written(&mut p, 0);
    poll(&mut p, NOW + 100 * MS);
    assert_eq!(p.breaker_state(), BreakerState::Open);
    poll(&mut p, NOW + 200 * MS);
    assert_eq!(p.breaker_state(), BreakerState::HalfOpen);
    assert!(
        written(&mut p, 0).is_empty(),
        "no echo without network management"
    );
    p.submit(NOW + 200 * MS, request(2, UpstreamKind::Authorize))
        .unwrap();
    assert_eq!(
        refused(p.submit(NOW + 200 * MS, request(3, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable
    );
    let probe = written(&mut p, 0).remove(0);
    let r = p
        .on_message(0, NOW + 201 * MS, answer_to(&probe, "05"))
        .unwrap()
        .unwrap();
    assert_eq!(r.1.op_id, 2);
    assert_eq!(
        p.breaker_state(),
        BreakerState::Closed,
        "a decline is an answer: the host is back"
    );
}

#[test]
fn answers_91_and_96_count_as_failures() {
    let mut p = pool("breaker_failures = 2\n");
    sign_on(&mut p, 0, NOW);
    for (op, code) in [(1, "96"), (2, "91")] {
        p.submit(NOW, request(op, UpstreamKind::Authorize)).unwrap();
        let m = written(&mut p, 0).remove(0);
        let r = p.on_message(0, NOW, answer_to(&m, code)).unwrap().unwrap();
        assert!(matches!(
            r.1.outcome,
            UpstreamOutcome::Answered {
                result: ResultCode::IssuerUnavailable,
                ..
            }
        ));
    }
    assert_eq!(p.breaker_state(), BreakerState::Open);
}

#[test]
fn host_wide_inflight_and_rate_limits_refuse_busy_at_once() {
    let mut p = pool("inflight_max = 3\n");
    sign_on(&mut p, 0, NOW);
    sign_on(&mut p, 1, NOW);
    for op in 1..=3 {
        p.submit(NOW, request(op, UpstreamKind::Authorize)).unwrap();
    }
    assert_eq!(
        refused(p.submit(NOW, request(4, UpstreamKind::Authorize))),
        ResultCode::Busy,
        "room on link 1, none on the host"
    );
    assert_eq!(p.metrics().inflight.get(), 3);
    let first = written(&mut p, 0).remove(0);
    p.on_message(0, NOW, answer_to(&first, "00")).unwrap();
    p.submit(NOW, request(5, UpstreamKind::Authorize)).unwrap();

    let mut p = pool("rate_per_sec = 2\n");
    sign_on(&mut p, 0, NOW);
    sign_on(&mut p, 1, NOW);
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    p.submit(NOW, request(2, UpstreamKind::Authorize)).unwrap();
    assert_eq!(
        refused(p.submit(NOW, request(3, UpstreamKind::Authorize))),
        ResultCode::Busy
    );
    assert_eq!(
        refused(p.submit(NOW + 499 * MS, request(3, UpstreamKind::Authorize))),
        ResultCode::Busy
    );
    p.submit(NOW + 500 * MS, request(3, UpstreamKind::Authorize))
        .unwrap();
}

#[test]
fn requests_are_encoded_matched_and_answered_in_every_profile() {
    for (profile, header) in [
        ("ascii_1987", "binary2"),
        ("binary_bcd", "bcd2"),
        ("ascii_1987", "ascii4"),
    ] {
        let mut p = pool(&format!(
            "profile = \"{profile}\"\nlength_header = \"{header}\"\n"
        ));
        sign_on(&mut p, 0, NOW);
        p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
        p.submit(NOW, request(2, UpstreamKind::Sale)).unwrap();
        let sent = written(&mut p, 0);
        assert_eq!(sent.len(), 2);
        assert_eq!(sent[0].mti().number(), 100);
        assert_eq!(sent[1].mti().number(), 200);
        assert_eq!(sent[0].pan().unwrap().as_ref(), b"4111111111111111");
        assert_eq!(sent[0].amount().unwrap(), Some(12_345));
        assert_eq!(sent[0].get(48).unwrap().as_ref(), b"ORDER-1");
        assert_eq!(sent[0].get(42).unwrap().as_ref(), b"M000001        ");
        assert_eq!(sent[0].get(49).unwrap().as_ref(), b"410");
        assert_eq!(sent[0].get(7).unwrap().as_ref(), b"1126213956");
        assert_eq!(sent[0].get(12).unwrap().as_ref(), b"213956");
        assert_eq!(sent[0].get(13).unwrap().as_ref(), b"1126");
        assert_eq!(sent[0].get(37).unwrap().as_ref(), b"633021000001");
        assert_ne!(sent[0].stan().unwrap(), sent[1].stan().unwrap());
        // Answers out of order are matched by STAN + terminal id + class.
        let r2 = p
            .on_message(0, NOW + 2 * MS, answer_to(&sent[1], "51"))
            .unwrap()
            .unwrap();
        let r1 = p
            .on_message(0, NOW + 3 * MS, answer_to(&sent[0], "00"))
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
        let m = p.metrics();
        assert_eq!(
            (m.approvals.get(), m.declines.get(), m.requests.get()),
            (1, 1, 2)
        );
        assert_eq!(m.latency.count(), 2);
        assert_eq!(m.latency.sum_us(), 5 * MS, "send → answer, microseconds");
        // A duplicate answer matches nothing and is counted.
        assert!(
            p.on_message(0, NOW, answer_to(&sent[0], "00"))
                .unwrap()
                .is_none()
        );
        assert_eq!(p.metrics().unmatched.get(), 1);
    }
}

#[test]
fn reversals_carry_original_data_elements_and_a_repeat_is_0401() {
    let mut p = pool("");
    sign_on(&mut p, 0, NOW);
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    let auth = written(&mut p, 0).remove(0);
    let answered = p
        .on_message(0, NOW, answer_to(&auth, "00"))
        .unwrap()
        .unwrap();
    let UpstreamOutcome::Answered { sent, .. } = answered.1.outcome else {
        panic!()
    };
    for (op, repeat, mti) in [(2, false, 400), (3, true, 401)] {
        let mut rev = request(op, UpstreamKind::Reversal);
        rev.original = Some(sent.clone());
        rev.repeat = repeat;
        p.submit(NOW + 1_000 * MS, rev).unwrap();
        let reversal = written(&mut p, 0).remove(0);
        assert_eq!(reversal.mti().number(), mti);
        assert_eq!(
            reversal.rrn(),
            auth.rrn(),
            "a reversal keeps the original RRN"
        );
        assert!(!reversal.contains(14), "no expiry on a reversal");
        let ode = reversal.original_data_elements().unwrap().unwrap();
        assert_eq!(ode.mti.number(), 100);
        assert_eq!(ode.stan, sent.stan);
        assert_eq!(ode.acquirer_id, 123_456);
        // The answer to 0400 and to 0401 alike is 0410.
        let answer = answer_to(&reversal, "00");
        assert_eq!(
            IsoMessage::decode(Profile::ascii_1987(), answer.clone())
                .unwrap()
                .mti()
                .number(),
            410
        );
        let ok = p.on_message(0, NOW, answer).unwrap().unwrap();
        assert_eq!(ok.1.op_id, op);
    }
    let m = p.metrics();
    assert_eq!(
        (
            m.reversals_sent.get(),
            m.reversals_acknowledged.get(),
            m.requests.get()
        ),
        (2, 2, 1)
    );
}

#[test]
fn a_dialect_with_refunds_as_0220_and_its_own_processing_code() {
    let mut p = pool(
        "[mti]\nrefund = \"0220\"\n[processing_code]\nrefund = \"220000\"\nbalance = \"300000\"\n",
    );
    sign_on(&mut p, 0, NOW);
    p.submit(NOW, request(1, UpstreamKind::Refund)).unwrap();
    p.submit(NOW, request(2, UpstreamKind::BalanceInquiry))
        .unwrap();
    let sent = written(&mut p, 0);
    assert_eq!(sent[0].mti().number(), 220);
    assert_eq!(sent[0].get_slice(3), Some(&b"220000"[..]));
    assert_eq!(sent[1].mti().number(), 100);
    assert_eq!(sent[1].get_slice(3), Some(&b"300000"[..]));
    // An 0210 with the refund's STAN is not its answer; the 0230 is.
    let mut wrong = sent[0].response_template().unwrap();
    wrong.set_mti(paymesh_codecs::iso8583::Mti::FINANCIAL_RESPONSE);
    wrong.set(39, Bytes::from_static(b"00")).unwrap();
    assert!(p.on_message(0, NOW, wrong.to_bytes()).unwrap().is_none());
    let r = p
        .on_message(0, NOW, answer_to(&sent[0], "00"))
        .unwrap()
        .unwrap();
    assert_eq!(r.1.op_id, 1);
}

#[test]
fn a_dialect_chooses_id_fields_currency_and_required_fields() {
    let mut p = pool(
        "acquirer_id_field = 0\nmerchant_id_field = 43\nterminal_id_source = \"merchant\"\n\
         currency = \"omit\"\nhost_currency = 410\nrequired_fields = [14, 43]\n",
    );
    sign_on(&mut p, 0, NOW);
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    let m = written(&mut p, 0).remove(0);
    assert!(!m.contains(32) && !m.contains(42) && !m.contains(49));
    assert_eq!(
        m.get_slice(41),
        Some(&b"M000001 "[..]),
        "terminal from the merchant"
    );
    assert_eq!(m.get_slice(43).map(<[u8]>::len), Some(40));
    assert!(m.get_slice(43).unwrap().starts_with(b"M000001 "));
    // Another currency than the host's: refused before anything is sent.
    let mut usd = request(2, UpstreamKind::Authorize);
    usd.currency = 840;
    assert_eq!(refused(p.submit(NOW, usd)), ResultCode::UnsupportedCurrency);
    // A request without a required field (a phone has no expiry): refused.
    let mut phone = request(3, UpstreamKind::Authorize);
    phone.account = Account::Phone {
        phone: Bytes::from_static(b"01012345678"),
        carrier: Bytes::from_static(b"SKT"),
    };
    assert_eq!(refused(p.submit(NOW, phone)), ResultCode::InvalidRequest);
    assert!(written(&mut p, 0).is_empty());
    // A reversal (no expiry) is never refused for the host's required fields.
    let mut reversal = request(4, UpstreamKind::Reversal);
    reversal.original = Some(paymesh_actors::core::upstream::OriginalRef {
        mti: 100,
        stan: m.stan().unwrap().unwrap(),
        transmitted: m.get(7).unwrap().clone(),
        rrn: m.get(37).unwrap().clone(),
        terminal: bytes::Bytes::new(),
    });
    p.submit(NOW, reversal).unwrap();
    assert!(!written(&mut p, 0).remove(0).contains(14));
    // An answer naming another terminal is not ours.
    let mut other = m.response_template().unwrap();
    other.set(41, Bytes::from_static(b"OTHER001")).unwrap();
    other.set(39, Bytes::from_static(b"00")).unwrap();
    assert!(p.on_message(0, NOW, other.to_bytes()).unwrap().is_none());
    assert!(p.on_message(0, NOW, answer_to(&m, "00")).unwrap().is_some());
}

#[test]
fn a_binary_bcd_host_signs_on_and_transacts() {
    let mut p =
        pool("profile = \"binary_bcd\"\nlength_header = \"bcd2\"\n[mti]\nrefund = \"0220\"\n");
    sign_on(&mut p, 1, NOW);
    p.submit(NOW, request(7, UpstreamKind::Refund)).unwrap();
    let frame = p.take_output(1).unwrap();
    // BCD MTI 0220 after the 2-byte BCD length header.
    assert_eq!(&frame[2..4], &[0x02, 0x20]);
    let body = Bytes::copy_from_slice(&frame[2..]);
    let m = IsoMessage::decode(Profile::binary_bcd(), body).unwrap();
    let r = p.on_message(1, NOW, answer_to(&m, "00")).unwrap().unwrap();
    assert_eq!(r.1.op_id, 7);
}

#[test]
fn timeouts_late_answers_and_link_loss() {
    let mut p = pool("");
    sign_on(&mut p, 0, NOW);
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    p.submit(NOW + 10 * MS, request(2, UpstreamKind::Authorize))
        .unwrap();
    let sent = written(&mut p, 0);
    assert_eq!(
        refused(p.submit(NOW, request(3, UpstreamKind::Authorize))),
        ResultCode::Busy,
        "the one link up is full"
    );
    assert!(poll(&mut p, NOW + 99 * MS).is_empty());
    let out = poll(&mut p, NOW + 100 * MS);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].1.outcome, UpstreamOutcome::Timeout { .. }));
    assert_eq!(p.metrics().timeouts.get(), 1);
    // The late answer to the timed-out request changes nothing.
    assert!(
        p.on_message(0, NOW + 150 * MS, answer_to(&sent[0], "00"))
            .unwrap()
            .is_none()
    );
    assert_eq!(p.metrics().unmatched.get(), 1);
    // Garbage is an error, counted, and changes nothing.
    assert!(
        p.on_message(0, NOW, Bytes::from_static(b"\xff\xffjunk"))
            .is_err()
    );
    assert_eq!(p.metrics().unmatched.get(), 2);
    // Losing the link makes the other request's outcome unknown, and leaves no link to send on.
    let mut out = Vec::new();
    p.link_lost(0, NOW + 150 * MS, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].1.op_id, 2);
    assert_eq!(
        refused(p.submit(NOW, request(4, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable
    );
    assert_eq!(p.inflight(), 0);
    assert_eq!(p.metrics().inflight.get(), 0);
    assert!(
        !actions(&mut p).contains(&LinkAction::Close(0)),
        "the actor already knows the socket is gone"
    );
}

#[test]
fn reconnect_backoff_doubles_with_jitter_and_resets_once_signed_on() {
    for (jitter, floor_half) in [("full", false), ("equal", true)] {
        let mut p = pool(&format!(
            "reconnect_ms = 100\nreconnect_max_ms = 800\nreconnect_jitter = \"{jitter}\"\nbreaker_failures = 0\n"
        ));
        let mut now = NOW;
        poll(&mut p, now);
        assert!(actions(&mut p).contains(&LinkAction::Connect(0)));
        for attempt in 0..8u32 {
            p.connect_failed(0, now);
            let delay = p.reconnect_at_us(0).unwrap() - now;
            let ceiling = ((100 * MS) << attempt).min(800 * MS);
            let floor = if floor_half { ceiling / 2 } else { 0 };
            assert!(
                (floor..=ceiling).contains(&delay),
                "{jitter} attempt {attempt}: {delay}"
            );
            now += delay;
            poll(&mut p, now);
            assert!(actions(&mut p).contains(&LinkAction::Connect(0)));
        }
        sign_on(&mut p, 0, now);
        let mut out = Vec::new();
        p.link_lost(0, now, &mut out);
        let delay = p.reconnect_at_us(0).unwrap() - now;
        assert!(delay <= 100 * MS, "back to the base delay: {delay}");
    }
}

#[test]
fn the_same_seed_reconnects_at_the_same_times() {
    let times = |seed| {
        let spec = host("reconnect_jitter = \"full\"\n");
        let metrics = std::sync::Arc::new(paymesh_actors::metrics::HostMetrics::new("van", 2));
        let mut p = PoolCore::with_metrics(spec, seed, metrics);
        (0..5)
            .map(|_| {
                p.connect_failed(0, NOW);
                p.reconnect_at_us(0).unwrap()
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(times(9), times(9));
    assert_ne!(times(9), times(10));
}

#[test]
fn sign_off_on_every_signed_on_link_then_close() {
    let mut p = pool("");
    sign_on(&mut p, 0, NOW);
    sign_on(&mut p, 1, NOW);
    p.submit(NOW, request(1, UpstreamKind::Authorize)).unwrap();
    written(&mut p, 0);
    assert_eq!(p.sign_off(NOW), 2);
    assert!(p.signing_off());
    assert!(!p.is_available());
    assert_eq!(
        refused(p.submit(NOW, request(2, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable
    );
    let offs: Vec<IsoMessage> = (0..2).map(|l| written(&mut p, l).remove(0)).collect();
    for off in &offs {
        assert_eq!(off.network_management_code().unwrap(), Some(2));
    }
    p.on_message(1, NOW, answer_to(&offs[1], "00")).unwrap();
    assert_eq!(actions(&mut p), [LinkAction::Close(1)]);
    assert!(p.signing_off());
    p.on_message(0, NOW, answer_to(&offs[0], "00")).unwrap();
    assert!(!p.signing_off());
    // The authorization still out on link 0 has an unknown outcome.
    let out = poll(&mut p, NOW + MS);
    assert_eq!(out.len(), 1);
    assert!(matches!(out[0].1.outcome, UpstreamOutcome::Timeout { .. }));
    // Closed for good: no reconnects, ever.
    poll(&mut p, NOW + 3_600_000 * MS);
    let mut out = Vec::new();
    p.close_all(NOW + 3_600_000 * MS, &mut out);
    assert!(
        actions(&mut p)
            .iter()
            .all(|a| matches!(a, LinkAction::Close(0)))
    );
    assert_eq!(p.link_state(0), LinkState::Down);
}

#[test]
fn a_stan_the_shard_assigned_is_used_and_stamps_what_the_shard_expects() {
    let mut p = pool("");
    sign_on(&mut p, 0, NOW);
    sign_on(&mut p, 1, NOW);
    let at_ms = NOW / MS - 250;
    let mut r = request(1, UpstreamKind::Authorize);
    r.stan = 4_242;
    r.sent_at_ms = at_ms;
    p.submit(NOW, r.clone()).unwrap();
    // The same STAN again cannot share the link: it goes on the other one.
    let mut again = request(2, UpstreamKind::Authorize);
    again.stan = 4_242;
    p.submit(NOW, again.clone()).unwrap();
    let (first, second) = (written(&mut p, 0), written(&mut p, 1));
    assert_eq!(first.len() + second.len(), 2);
    for m in first.iter().chain(&second) {
        assert_eq!(m.get_slice(11), Some(&b"004242"[..]));
    }
    // A third with that STAN finds no free link: BUSY, never a clash.
    let mut third = request(3, UpstreamKind::Authorize);
    third.stan = 4_242;
    assert_eq!(refused(p.submit(NOW, third)), ResultCode::Busy);
    // What the pool reports as sent is what the shard computes from the STAN and the time, so
    // a reversal of a request lost in a crash names the original correctly.
    let out = poll(&mut p, NOW + 100 * MS);
    let UpstreamOutcome::Timeout { sent } = &out[0].1.outcome else {
        panic!("{out:?}")
    };
    let expected = trace_of(UpstreamKind::Authorize, Bytes::new(), 4_242, at_ms);
    assert_eq!(
        (sent.stan, &sent.transmitted, &sent.rrn, sent.mti),
        (4_242, &expected.transmitted, &expected.rrn, expected.mti)
    );
}

#[test]
fn shards_assign_distinct_stans() {
    for shards in 1..=4u16 {
        let mut seen = std::collections::HashSet::new();
        let per_shard = 999_999 / u64::from(shards);
        for shard in 0..shards {
            for seq in (0..per_shard).step_by(97).chain([per_shard - 1]) {
                let op_id = (u64::from(shard) << 48) | seq;
                let stan = stan_for(op_id, shard, shards);
                assert!((1..=999_999).contains(&stan));
                assert!(seen.insert(stan), "shards {shards}: {stan} twice");
            }
        }
    }
}

#[test]
fn online_captures_are_completion_advices_and_repeats_are_0221() {
    let mut p = pool("capture = \"online\"\n");
    sign_on(&mut p, 0, NOW);
    p.submit(NOW, request(1, UpstreamKind::Capture)).unwrap();
    let mut repeat = request(2, UpstreamKind::Capture);
    repeat.repeat = true;
    p.submit(NOW, repeat).unwrap();
    let sent = written(&mut p, 0);
    assert_eq!((sent[0].mti().number(), sent[1].mti().number()), (220, 221));
    assert_eq!(sent[0].get_slice(3), Some(&b"000000"[..]));
    assert_eq!(sent[0].get_slice(4), Some(&b"000000012345"[..]));
    // Both are answered 0230.
    for (i, m) in sent.iter().enumerate() {
        let r = p.on_message(0, NOW, answer_to(m, "00")).unwrap().unwrap();
        assert_eq!(r.1.op_id, i as u64 + 1);
    }
}

#[test]
fn follow_ups_carry_the_original_data_elements_their_dialect_names() {
    let original = trace_of(
        UpstreamKind::Authorize,
        Bytes::from_static(b"PAYMESH2"),
        4_242,
        NOW / MS,
    );
    for (extra, with_37, with_38, with_90) in [
        ("", true, true, true),
        (
            "[original_data]\nrefund = [90]\ncapture = []\nreversal = [37, 90]\n",
            false,
            false,
            true,
        ),
    ] {
        let mut p = pool(extra);
        sign_on(&mut p, 0, NOW);
        sign_on(&mut p, 1, NOW);
        for (i, kind) in [
            UpstreamKind::Refund,
            UpstreamKind::Capture,
            UpstreamKind::Reversal,
        ]
        .into_iter()
        .enumerate()
        {
            let mut r = request(10 + i as u64, kind);
            r.original = Some(original.clone());
            r.original_approval = Bytes::from_static(b"A04242");
            r.terminal = original.terminal.clone();
            r.stan = 7 + i as u32;
            p.submit(NOW, r).unwrap();
        }
        let sent: Vec<IsoMessage> = written(&mut p, 0)
            .into_iter()
            .chain(written(&mut p, 1))
            .collect();
        assert_eq!(sent.len(), 3);
        for m in &sent {
            let reversal = m.mti().number() == 400;
            let rrn = m.get_slice(37) == Some(original.rrn.as_ref());
            assert_eq!(rrn, with_37 || reversal, "{extra}: 37 of {}", m.mti());
            let approval = m.get_slice(38) == Some(&b"A04242"[..]);
            assert_eq!(approval, with_38, "{extra}: 38 of {}", m.mti());
            let data = m
                .get_slice(90)
                .is_some_and(|v| v.starts_with(b"0100004242"));
            let refund = m.mti().number() == 200;
            assert_eq!(
                data,
                with_90 && (refund || reversal || extra.is_empty()),
                "{extra}: 90 of {}",
                m.mti()
            );
            assert_eq!(
                m.get_slice(41),
                Some(&b"PAYMESH2"[..]),
                "the original's terminal"
            );
        }
    }
}

#[test]
fn answers_lost_while_the_host_answers_others_leave_the_breaker_closed() {
    // inflight_per_link_max = 2 per link: two links, four requests.
    let mut p = pool("breaker_failures = 2\nbreaker_open_ms = 1000\n");
    sign_on(&mut p, 0, NOW);
    sign_on(&mut p, 1, NOW);
    for op in 1..=4 {
        p.submit(NOW + MS, request(op, UpstreamKind::Authorize))
            .unwrap();
    }
    let sent: Vec<IsoMessage> = written(&mut p, 0)
        .into_iter()
        .chain(written(&mut p, 1))
        .collect();
    // The host answers two of them later; the other two answers are lost (one BIN range the
    // host drops, say).
    let mut answered = 0;
    for (link, m) in [(0, &sent[1]), (1, &sent[3])] {
        let r = p.on_message(link, NOW + 20 * MS, answer_to(m, "00"));
        answered += usize::from(r.unwrap().is_some());
    }
    assert_eq!(answered, 2);
    let out = poll(&mut p, NOW + 200 * MS);
    assert_eq!(out.len(), 2, "the two lost answers time out");
    assert!(
        out.iter()
            .all(|r| matches!(r.1.outcome, UpstreamOutcome::Timeout { .. }))
    );
    assert_eq!(p.breaker_state(), BreakerState::Closed);
    assert!(p.is_available());
}

#[test]
fn timeouts_of_a_host_that_answers_nothing_open_the_breaker() {
    let mut p = pool("breaker_failures = 2\nbreaker_open_ms = 1000\n");
    sign_on(&mut p, 0, NOW);
    p.submit(NOW + MS, request(1, UpstreamKind::Authorize))
        .unwrap();
    p.submit(NOW + MS, request(2, UpstreamKind::Authorize))
        .unwrap();
    assert_eq!(poll(&mut p, NOW + 200 * MS).len(), 2);
    assert_eq!(p.breaker_state(), BreakerState::Open);
    assert_eq!(
        refused(p.submit(NOW + 201 * MS, request(3, UpstreamKind::Authorize))),
        ResultCode::UpstreamUnavailable
    );
}

#[test]
fn deadlines_follow_the_monotonic_clock_not_the_wall_clock() {
    let mut p = pool("");
    sign_on(&mut p, 0, 5 * MS);
    // The wall clock says 2026; the monotonic clock started near zero.
    p.set_wall_ms(NOW / MS);
    p.submit(10 * MS, request(1, UpstreamKind::Authorize))
        .unwrap();
    let sent = written(&mut p, 0);
    assert_eq!(sent[0].get_slice(7), Some(&b"1126213956"[..]));
    // The wall clock steps a day forward: nothing in flight times out for it.
    p.set_wall_ms(NOW / MS + 86_400_000);
    assert!(poll(&mut p, 50 * MS).is_empty());
    // Its own timeout (100 ms) on the monotonic clock does.
    assert_eq!(poll(&mut p, 110 * MS).len(), 1);
}

#[test]
fn installment_months_travel_in_the_dialects_installment_field() {
    let mut p = pool("");
    sign_on(&mut p, 0, NOW);
    let mut r = request(1, UpstreamKind::Authorize);
    r.installments = 3;
    p.submit(NOW, r).unwrap();
    let m = written(&mut p, 0).remove(0);
    assert_eq!(
        m.get_slice(63),
        Some(&b"IM03"[..]),
        "DE 63: IM and two digits"
    );
    // A lump sum sends no installment field.
    p.submit(NOW, request(2, UpstreamKind::Authorize)).unwrap();
    assert_eq!(written(&mut p, 0).remove(0).get_slice(63), None);
    // Another field, by configuration; none: an installment payment is refused, not sent.
    let mut p = pool("installment_field = 62\n");
    sign_on(&mut p, 0, NOW);
    let mut r = request(4, UpstreamKind::Sale);
    r.installments = 12;
    p.submit(NOW, r).unwrap();
    assert_eq!(
        written(&mut p, 0).remove(0).get_slice(62),
        Some(&b"IM12"[..])
    );
    let mut p = pool("installment_field = 0\n");
    sign_on(&mut p, 0, NOW);
    let mut r = request(5, UpstreamKind::Authorize);
    r.installments = 2;
    assert!(p.submit(NOW, r).is_err(), "refused before sending");
    assert!(written(&mut p, 0).is_empty());
}
