//! The Service Gateway (issue 5) over real loopback sockets: gateway-sim hosts and the router in
//! this process, a protocol client. Sign-on before any transaction and sign-off at shutdown (as
//! the host's record shows them), a host down at start, a host dying mid-load, a slow host, garbage,
//! late and duplicated answers, a disconnect with requests in flight, failover to a secondary host
//! and back, a dialect sending refunds as 0220, unanswered echo tests reopening links, a refused
//! sign-on keeping a link out of traffic. Wherever an authorization timed out, the test waits for
//! it to be REVERSED: the host's record shows a reversal naming the authorization's STAN, and the
//! pool counted exactly one acknowledgement per reversal.
//!
//! Every wait is bounded ([`WAIT`], and the client's own receive timeout); nothing asserts how long
//! anything took. Hosts reconnect and probe quickly here (`QUICK`) so that recovery fits a test.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use paymesh_actors::metrics::{BreakerState, HostMetrics, LinkState};
use paymesh_codecs::message::{Message, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;
use paymesh_gateway_sim::faults::{Faults, NetworkManagement};
use paymesh_gateway_sim::latency::Latency;

/// Longest wait for a state a test expects (generous: CI machines have 2 cores).
const WAIT: Duration = Duration::from_secs(20);
/// Every host's settings here: quick reconnects and breaker probes.
const QUICK: &str = "links = 2\nreconnect_ms = 20\nreconnect_max_ms = 200\nbreaker_open_ms = 200\n";
/// Visa-range cards go to `van`.
const VAN_ROUTE: &str =
    "[[routes]]\nmethod = \"card\"\nbin_from = 400000\nbin_to = 499999\nhost = \"van\"\n";

/// Simulated hosts and, once started, a router routing to them.
struct Gw {
    hosts: Vec<(String, sim::Host)>,
    config_text: String,
    router: Option<paymesh_router::server::Router>,
    tcp: Option<SocketAddr>,
    host_metrics: Vec<Arc<HostMetrics>>,
    _dir: tempfile::TempDir,
}

impl Gw {
    /// Starts one simulated host per `(name, extra [[hosts]] settings)`; the router is not started.
    async fn hosts(hosts: &[(&str, &str)], routes: &str) -> Gw {
        let dir = tempfile::tempdir().unwrap();
        let mut started = Vec::new();
        let mut host_toml = String::new();
        for (name, extra) in hosts {
            let host = sim::start(name, "ascii_1987", "binary2", 0).await;
            host_toml.push_str(&format!(
                "[[hosts]]\nname = \"{name}\"\naddress = \"{}\"\nprofile = \"ascii_1987\"\nlength_header = \"binary2\"\n{QUICK}{extra}\n\n",
                host.addr
            ));
            started.push((name.to_string(), host));
        }
        let hash = paymesh_router::auth::hash_credential(CREDENTIAL).unwrap();
        // Development mode: the scratch journal's key is generated beside it.
        let config_text = format!(
            "[journal]\ndir = \"{}\"\ndurability = \"relaxed\"\n\n[store]\npath = \"\"\n\n[admin]\nlisten = \"\"\n\n\
             [server]\nlisten = \"127.0.0.1:0\"\ndev_mode = true\ninflight_window = 128\narbiters = 2\nshards = 2\nshutdown_grace_ms = 2000\n\n\
             [[networks]]\nid = \"{NETWORK}\"\ncredential_hash = \"{hash}\"\nmerchants = [\"M000001\"]\n\n\
             [[merchants]]\nid = \"M000001\"\n\n{host_toml}{routes}",
            dir.path().join("journal").display()
        );
        Gw {
            hosts: started,
            config_text,
            router: None,
            tcp: None,
            host_metrics: Vec::new(),
            _dir: dir,
        }
    }

    async fn start_router(&mut self) {
        let config = paymesh_router::config::Config::parse(&self.config_text).unwrap();
        let router = paymesh_router::server::Router::start(config).await.unwrap();
        self.tcp = router.tcp_addr;
        self.host_metrics = router.host_metrics.clone();
        self.router = Some(router);
    }

    /// Hosts and router, each host signed on.
    async fn start(hosts: &[(&str, &str)], routes: &str) -> Gw {
        let mut gw = Gw::hosts(hosts, routes).await;
        gw.start_router().await;
        for (name, _) in hosts {
            gw.wait_available(name).await;
        }
        gw
    }

    fn sim(&self, name: &str) -> &sim::Host {
        &self.hosts.iter().find(|(n, _)| n == name).unwrap().1
    }

    fn metrics(&self, name: &str) -> &HostMetrics {
        self.host_metrics.iter().find(|m| m.name == name).unwrap()
    }

    async fn client(&self) -> Client {
        let mut c = Client::tcp(self.tcp.unwrap()).await;
        assert_eq!(
            c.login(NETWORK, CREDENTIAL).await.result,
            ResultCode::Approved
        );
        c
    }

    /// Waits until `name` is available: a link signed on, its breaker closed.
    async fn wait_available(&self, name: &str) {
        let m = self.metrics(name);
        wait_until(&format!("{name} available"), || {
            links(m).contains(&LinkState::Up) && breaker(m) == BreakerState::Closed
        })
        .await;
    }

    /// Waits until no link of `name` is signed on.
    async fn wait_unavailable(&self, name: &str) {
        let m = self.metrics(name);
        wait_until(&format!("{name} down"), || {
            !links(m).contains(&LinkState::Up)
        })
        .await;
    }

    /// Authorizations, sales, refunds and reversals `host` recorded for `order`, as (MTI,
    /// processing code, response code).
    fn seen(&self, host: &str, order: &str) -> Vec<(u16, String, String)> {
        self.sim(host)
            .handle
            .record()
            .entries()
            .into_iter()
            .filter(|e| e.order_ref.as_deref() == Some(order))
            .map(|e| (e.mti, e.processing_code, e.response_code))
            .collect()
    }

    /// Whether `host` approved an authorization for `order`.
    fn approved_at(&self, host: &str, order: &str) -> bool {
        self.seen(host, order)
            .iter()
            .any(|(mti, _, code)| *mti == 100 && code == "00")
    }

    /// Waits until every order in `orders` is REVERSED (state 10: its reversal acknowledged by
    /// `host`), then checks the host's record: each got a reversal naming the STAN of the
    /// authorization the host saw, and the pool counted each acknowledgement once.
    async fn assert_reversed(&self, c: &mut Client, host: &str, orders: &[String]) {
        let deadline = Instant::now() + 2 * WAIT;
        for order in orders {
            loop {
                let inq = c
                    .call(request(TxnKind::Inquiry, "M000001", order, None, None))
                    .await;
                if inq.state == Some(10) {
                    break;
                }
                assert_ne!(inq.state, Some(1), "{order} approved after a timeout");
                assert!(Instant::now() < deadline, "{order} not reversed: {inq:?}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            let entries = self.sim(host).handle.record().entries();
            let mine: Vec<_> = entries
                .iter()
                .filter(|e| e.order_ref.as_deref() == Some(order.as_str()))
                .collect();
            let auth_stan = mine.iter().find(|e| e.mti == 100).map(|e| e.stan);
            let reversals: Vec<_> = mine
                .iter()
                .filter(|e| e.mti == 400 || e.mti == 401)
                .collect();
            assert!(!reversals.is_empty(), "{order}: the host saw no reversal");
            for r in &reversals {
                assert_eq!(
                    r.original_stan, auth_stan,
                    "{order}: field 90 names another message"
                );
            }
        }
        let m = self.metrics(host);
        assert_eq!(m.reversals_pending.get(), 0, "reversals left in the queue");
        assert_eq!(
            m.reversals_acknowledged.get(),
            orders.len() as u64,
            "each reversal acknowledged exactly once"
        );
    }

    async fn stop_router(&mut self) {
        if let Some(r) = self.router.take() {
            r.shutdown().await;
        }
    }
}

async fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !ready() {
        assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn links(m: &HostMetrics) -> Vec<LinkState> {
    m.links
        .iter()
        .map(|l| LinkState::from_u8(l.state.load(Ordering::Relaxed)))
        .collect()
}

fn breaker(m: &HostMetrics) -> BreakerState {
    match m.breaker.load(Ordering::Relaxed) {
        0 => BreakerState::Closed,
        1 => BreakerState::Open,
        _ => BreakerState::HalfOpen,
    }
}

fn auth(order: &str) -> TxnRequest {
    request(
        TxnKind::Authorize,
        "M000001",
        order,
        Some(1_000),
        Some(card(VAN_PAN)),
    )
}

#[actix::test]
async fn sign_on_comes_first_on_every_link_and_shutdown_signs_off() {
    let mut gw = Gw::hosts(&[("van", "")], VAN_ROUTE).await;
    // The host answers 91 to any transaction on a link that has not signed on.
    gw.sim("van").handle.set_network(NetworkManagement {
        require_sign_on: true,
        ..NetworkManagement::default()
    });
    gw.start_router().await;
    gw.wait_available("van").await;
    let mut c = gw.client().await;
    for i in 0..6 {
        assert_result(&c.call(auth(&format!("SO{i}"))).await, ResultCode::Approved);
    }
    let record = gw.sim("van").handle.record();
    let entries = record.entries();
    let connections: BTreeSet<u64> = entries.iter().map(|e| e.connection).collect();
    assert_eq!(connections.len(), 2, "one connection per link");
    for conn in &connections {
        let first = entries.iter().find(|e| e.connection == *conn).unwrap();
        assert_eq!(
            (first.mti, first.network_code, first.response_code.as_str()),
            (800, Some(1), "00"),
            "connection {conn} began with a sign-on"
        );
    }
    assert_eq!(record.count(|e| e.response_code == "91"), 0);
    assert_eq!(record.count(|e| e.mti == 100), 6);
    drop(c);
    gw.stop_router().await;
    // Every signed-on link signed off, and that was the last thing it sent.
    let entries = record.entries();
    for conn in &connections {
        let last = entries
            .iter()
            .rev()
            .find(|e| e.connection == *conn)
            .unwrap();
        assert_eq!(
            (last.mti, last.network_code, last.response_code.as_str()),
            (800, Some(2), "00"),
            "connection {conn} ended with a sign-off"
        );
    }
    assert!(!links(gw.metrics("van")).contains(&LinkState::Up));
}

#[actix::test]
async fn a_host_down_at_start_is_waited_for_and_traffic_flows_once_it_is_up() {
    let mut gw = Gw::hosts(&[("van", "")], VAN_ROUTE).await;
    gw.sim("van").handle.pause().await;
    gw.start_router().await;
    let mut c = gw.client().await;
    // Refused at once: nothing was sent, so nothing is in doubt.
    assert_result(
        &c.call(auth("DOWN1")).await,
        ResultCode::UpstreamUnavailable,
    );
    // Failed connects are failures: the breaker opens.
    let m = gw.metrics("van");
    wait_until("breaker open", || breaker(m) == BreakerState::Open).await;
    assert!(m.refused.get() >= 1);
    gw.sim("van").handle.resume().await.unwrap();
    gw.wait_available("van").await;
    assert_result(&c.call(auth("DOWN2")).await, ResultCode::Approved);
    assert!(gw.seen("van", "DOWN1").is_empty());
    gw.stop_router().await;
}

#[actix::test]
async fn a_host_dying_mid_load_answers_every_client_and_approves_nothing_it_did_not() {
    let mut gw = Gw::start(&[("van", "timeout_ms = 2000\n")], VAN_ROUTE).await;
    gw.sim("van")
        .handle
        .set_latency(Latency::Uniform {
            min_ms: 50,
            max_ms: 400,
        })
        .unwrap();
    let mut c = gw.client().await;
    const REQUESTS: u64 = 80;
    let mut orders = HashMap::new();
    for i in 0..REQUESTS {
        let id = c.next_id();
        let order = format!("LOAD{i}");
        c.send(id, &Message::Request(auth(&order))).await;
        orders.insert(id, order);
    }
    let mut results = HashMap::new();
    while results.len() < orders.len() {
        let Some((cid, Message::Answer(a))) = c.recv().await else {
            panic!("connection closed with answers missing");
        };
        assert!(orders.contains_key(&cid), "answer to nothing sent");
        assert!(
            results.insert(cid, a.result).is_none(),
            "two answers to {cid}"
        );
        if results.len() == 10 {
            // The host dies with requests in flight.
            gw.sim("van").handle.pause().await;
        }
    }
    for (cid, result) in &results {
        let order = &orders[cid];
        assert!(
            matches!(
                result,
                ResultCode::Approved
                    | ResultCode::UpstreamTimeout
                    | ResultCode::UpstreamUnavailable
            ),
            "{order}: {result:?}"
        );
        if *result == ResultCode::Approved {
            assert!(
                gw.approved_at("van", order),
                "{order} approved without the host"
            );
        }
    }
    let approved = results
        .values()
        .filter(|r| **r == ResultCode::Approved)
        .count();
    assert!(approved >= 10 && approved < REQUESTS as usize, "{approved}");
    assert_eq!(
        gw.metrics("van").inflight.get(),
        0,
        "nothing left in flight"
    );
    // The host comes back: the pool recovers.
    gw.sim("van").handle.resume().await.unwrap();
    gw.sim("van")
        .handle
        .set_latency(Latency::Fixed { ms: 0 })
        .unwrap();
    gw.wait_available("van").await;
    assert_result(&c.call(auth("AFTER")).await, ResultCode::Approved);
    // Every authorization that timed out is reversed once the host is back; those never sent
    // (UPSTREAM_UNAVAILABLE) need none.
    let timed_out: Vec<String> = results
        .iter()
        .filter(|(_, r)| **r == ResultCode::UpstreamTimeout)
        .map(|(cid, _)| orders[cid].clone())
        .collect();
    assert!(
        !timed_out.is_empty(),
        "the host died with nothing in flight"
    );
    gw.assert_reversed(&mut c, "van", &timed_out).await;
    gw.stop_router().await;
}

#[actix::test]
async fn a_slow_host_times_out_and_its_late_answer_changes_nothing() {
    let mut gw = Gw::start(
        &[("van", "timeout_ms = 200\nbreaker_failures = 0\n")],
        VAN_ROUTE,
    )
    .await;
    gw.sim("van")
        .handle
        .set_latency(Latency::Fixed { ms: 600 })
        .unwrap();
    let mut c = gw.client().await;
    assert_result(&c.call(auth("SLOW")).await, ResultCode::UpstreamTimeout);
    let m = gw.metrics("van");
    assert!(m.timeouts.get() >= 1);
    // The host's answer arrives after the timeout: it matches nothing.
    wait_until("the late answer", || m.unmatched.get() >= 1).await;
    let inq = c
        .call(request(TxnKind::Inquiry, "M000001", "SLOW", None, None))
        .await;
    assert!(
        matches!(inq.state, Some(8) | Some(10)),
        "in doubt or reversed, never approved: {inq:?}"
    );
    assert_eq!(
        links(m),
        [LinkState::Up, LinkState::Up],
        "a slow host keeps its links"
    );
    // Once the host is quick again, the reversal (repeated meanwhile) is acknowledged.
    gw.sim("van")
        .handle
        .set_latency(Latency::Fixed { ms: 0 })
        .unwrap();
    gw.assert_reversed(&mut c, "van", &["SLOW".to_string()])
        .await;
    gw.stop_router().await;
}

#[actix::test]
async fn late_answers_are_counted_and_ignored() {
    let mut gw = Gw::start(
        &[("van", "timeout_ms = 150\nbreaker_failures = 0\n")],
        VAN_ROUTE,
    )
    .await;
    gw.sim("van")
        .handle
        .set_faults(Faults {
            late_answer_p: 1.0,
            late_answer_ms: 400,
            ..Faults::NONE
        })
        .unwrap();
    let mut c = gw.client().await;
    assert_result(&c.call(auth("LATE")).await, ResultCode::UpstreamTimeout);
    let m = gw.metrics("van");
    wait_until("the late answer", || m.unmatched.get() >= 1).await;
    assert_eq!(m.approvals.get(), 0);
    gw.sim("van").handle.set_faults(Faults::NONE).unwrap();
    assert_result(&c.call(auth("ONTIME")).await, ResultCode::Approved);
    gw.assert_reversed(&mut c, "van", &["LATE".to_string()])
        .await;
    gw.stop_router().await;
}

#[actix::test]
async fn garbage_answers_time_out_and_the_link_stays_up() {
    let mut gw = Gw::start(
        &[("van", "timeout_ms = 200\nbreaker_failures = 0\n")],
        VAN_ROUTE,
    )
    .await;
    let m = gw.metrics("van");
    let connects: u64 = m.links.iter().map(|l| l.connects.get()).sum();
    gw.sim("van")
        .handle
        .set_faults(Faults {
            garbage_p: 1.0,
            ..Faults::NONE
        })
        .unwrap();
    let mut c = gw.client().await;
    assert_result(&c.call(auth("JUNK")).await, ResultCode::UpstreamTimeout);
    assert!(m.unmatched.get() >= 1, "the garbage was read and counted");
    gw.sim("van").handle.set_faults(Faults::NONE).unwrap();
    assert_result(&c.call(auth("CLEAN")).await, ResultCode::Approved);
    gw.assert_reversed(&mut c, "van", &["JUNK".to_string()])
        .await;
    assert_eq!(
        m.links.iter().map(|l| l.connects.get()).sum::<u64>(),
        connects,
        "no reconnect"
    );
    gw.stop_router().await;
}

#[actix::test]
async fn duplicated_answers_give_one_outcome_each() {
    let mut gw = Gw::start(&[("van", "")], VAN_ROUTE).await;
    gw.sim("van")
        .handle
        .set_faults(Faults {
            duplicate_answer_p: 1.0,
            ..Faults::NONE
        })
        .unwrap();
    let mut c = gw.client().await;
    for i in 0..5 {
        // `call` checks that the answer read is this request's: a duplicate never reaches a client.
        assert_result(
            &c.call(auth(&format!("DUP{i}"))).await,
            ResultCode::Approved,
        );
    }
    let m = gw.metrics("van");
    wait_until("the duplicates", || m.unmatched.get() >= 5).await;
    assert_eq!(m.approvals.get(), 5);
    gw.stop_router().await;
}

#[actix::test]
async fn a_disconnect_with_requests_in_flight_times_them_out_and_the_link_signs_on_again() {
    let mut gw = Gw::start(
        &[("van", "timeout_ms = 5000\nbreaker_failures = 0\n")],
        VAN_ROUTE,
    )
    .await;
    gw.sim("van")
        .handle
        .set_faults(Faults {
            disconnect_p: 1.0,
            ..Faults::NONE
        })
        .unwrap();
    let mut c = gw.client().await;
    // Answered as soon as the link drops, well before timeout_ms.
    assert_result(&c.call(auth("CUT")).await, ResultCode::UpstreamTimeout);
    gw.sim("van").handle.set_faults(Faults::NONE).unwrap();
    let record = gw.sim("van").handle.record();
    wait_until("the dropped link to sign on again", || {
        record.count(|e| e.network_code == Some(1) && e.response_code == "00") >= 3
    })
    .await;
    gw.wait_available("van").await;
    assert!(gw.metrics("van").timeouts.get() >= 1);
    assert_result(&c.call(auth("UNCUT")).await, ResultCode::Approved);
    gw.assert_reversed(&mut c, "van", &["CUT".to_string()])
        .await;
    gw.stop_router().await;
}

#[actix::test]
async fn failover_to_the_secondary_host_and_back() {
    let routes = "[[routes]]\nmethod = \"card\"\nbin_from = 400000\nbin_to = 499999\nhost = \"van\"\nfailover = [\"backup\"]\n";
    let mut gw = Gw::start(&[("van", ""), ("backup", "")], routes).await;
    let mut c = gw.client().await;
    assert_result(&c.call(auth("F1")).await, ResultCode::Approved);
    assert!(gw.approved_at("van", "F1") && gw.seen("backup", "F1").is_empty());
    // The primary goes down: new transactions go to the secondary.
    gw.sim("van").handle.pause().await;
    gw.wait_unavailable("van").await;
    let mut n = 0;
    let order = loop {
        n += 1;
        assert!(n < 100, "never failed over");
        let order = format!("F2-{n}");
        let a = c.call(auth(&order)).await;
        match a.result {
            ResultCode::Approved => break order,
            // The pool noticing its host is gone and the route table learning it race by a hair.
            ResultCode::UpstreamUnavailable => tokio::time::sleep(Duration::from_millis(10)).await,
            other => panic!("{other:?}"),
        }
    };
    assert!(gw.approved_at("backup", &order));
    // The primary comes back: traffic returns to it.
    gw.sim("van").handle.resume().await.unwrap();
    gw.wait_available("van").await;
    let mut n = 0;
    loop {
        n += 1;
        assert!(n < 100, "never failed back");
        let order = format!("F3-{n}");
        assert_result(&c.call(auth(&order)).await, ResultCode::Approved);
        if gw.approved_at("van", &order) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    gw.stop_router().await;
}

#[actix::test]
async fn a_dialect_sending_refunds_as_0220() {
    let mut gw = Gw::start(
        &[(
            "van",
            "[hosts.mti]\nrefund = \"0220\"\n[hosts.processing_code]\nrefund = \"200000\"\n",
        )],
        VAN_ROUTE,
    )
    .await;
    let mut c = gw.client().await;
    assert_result(&c.call(auth("R0220")).await, ResultCode::Approved);
    let capture = request(TxnKind::Capture, "M000001", "R0220", Some(1_000), None);
    assert_result(&c.call(capture).await, ResultCode::Approved);
    let mut refund = request(TxnKind::Refund, "M000001", "R0220", Some(400), None);
    refund.request_id = Some(bytes::Bytes::from_static(b"REF1"));
    assert_result(&c.call(refund).await, ResultCode::Approved);
    let seen = gw.seen("van", "R0220");
    assert!(
        seen.contains(&(220, "200000".into(), "00".into())),
        "{seen:?}"
    );
    gw.stop_router().await;
}

#[actix::test]
async fn unanswered_echo_tests_close_and_reopen_the_link() {
    let extra = "echo_idle_ms = 50\necho_misses_max = 2\ntimeout_ms = 100\nbreaker_failures = 0\n";
    let mut gw = Gw::start(&[("van", extra)], VAN_ROUTE).await;
    let record = gw.sim("van").handle.record();
    let sign_ons = || record.count(|e| e.network_code == Some(1) && e.response_code == "00");
    assert_eq!(sign_ons(), 2);
    gw.sim("van").handle.set_network(NetworkManagement {
        drop_echo: true,
        ..NetworkManagement::default()
    });
    // Two echo tests unanswered in a row close a link; it reconnects and signs on again.
    wait_until("both links reopened", || sign_ons() >= 4).await;
    assert!(record.count(|e| e.network_code == Some(301)) >= 4);
    gw.sim("van")
        .handle
        .set_network(NetworkManagement::default());
    gw.wait_available("van").await;
    let mut c = gw.client().await;
    assert_result(&c.call(auth("ECHO")).await, ResultCode::Approved);
    gw.stop_router().await;
}

#[actix::test]
async fn a_refused_sign_on_keeps_the_link_out_of_traffic_until_the_host_accepts() {
    let mut gw = Gw::hosts(&[("van", "breaker_failures = 0\n")], VAN_ROUTE).await;
    gw.sim("van").handle.set_network(NetworkManagement {
        refuse_sign_on: true,
        require_sign_on: true,
        ..NetworkManagement::default()
    });
    gw.start_router().await;
    let record = gw.sim("van").handle.record();
    wait_until("refused sign-ons", || {
        record.count(|e| e.network_code == Some(1) && e.response_code == "91") >= 4
    })
    .await;
    let mut c = gw.client().await;
    assert_result(
        &c.call(auth("REFUSED")).await,
        ResultCode::UpstreamUnavailable,
    );
    assert_eq!(
        record.count(|e| e.mti == 100),
        0,
        "nothing sent on a link not signed on"
    );
    gw.sim("van").handle.set_network(NetworkManagement {
        require_sign_on: true,
        ..NetworkManagement::default()
    });
    gw.wait_available("van").await;
    assert_result(&c.call(auth("ACCEPTED")).await, ResultCode::Approved);
    gw.stop_router().await;
}

#[actix::test]
async fn a_host_taking_captures_online_gets_completion_advices_repeated_until_acknowledged() {
    let mut gw = Gw::start(
        &[(
            "van",
            "capture = \"online\"\ntimeout_ms = 200\nbreaker_failures = 0\n",
        )],
        VAN_ROUTE,
    )
    .await;
    let mut c = gw.client().await;
    assert_result(&c.call(auth("CAP1")).await, ResultCode::Approved);
    let captured = c
        .call(request(
            TxnKind::Capture,
            "M000001",
            "CAP1",
            Some(600),
            None,
        ))
        .await;
    assert_result(&captured, ResultCode::Approved);
    assert!(
        gw.seen("van", "CAP1")
            .iter()
            .any(|(mti, pc, code)| *mti == 220 && pc == "000000" && code == "00"),
        "the capture reached the host as a completion advice: {:?}",
        gw.seen("van", "CAP1")
    );
    // The host turns slow: the capture stands, and its advice is repeated (0221) until the host,
    // quick again, acknowledges it.
    assert_result(&c.call(auth("CAP2")).await, ResultCode::Approved);
    gw.sim("van")
        .handle
        .set_latency(Latency::Fixed { ms: 600 })
        .unwrap();
    let captured = c
        .call(request(TxnKind::Capture, "M000001", "CAP2", None, None))
        .await;
    assert_result(&captured, ResultCode::Approved);
    gw.sim("van")
        .handle
        .set_latency(Latency::Fixed { ms: 0 })
        .unwrap();
    let m = gw.metrics("van");
    wait_until("the advice acknowledged", || {
        m.reversals_pending.get() == 0
            && gw.seen("van", "CAP2").iter().any(|(mti, _, _)| *mti == 221)
    })
    .await;
    let inq = c
        .call(request(TxnKind::Inquiry, "M000001", "CAP2", None, None))
        .await;
    assert_eq!(inq.state, Some(2), "captured in full");
    gw.stop_router().await;
}
