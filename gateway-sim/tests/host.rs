//! Simulated hosts over real loopback TCP: every profile and length header, approvals and
//! declines, network management, pipelining, reversals, every fault mode, pause/resume, limits
//! and the record. Timeouts are generous; nothing asserts how fast anything is.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoFramer, IsoMessage, LengthHeader, Mti, Profile};
use paymesh_gateway_sim::faults::{FaultAction, Faults};
use paymesh_gateway_sim::latency::Latency;
use paymesh_gateway_sim::rules::AccountRule;
use paymesh_gateway_sim::server::{
    HeaderName, ProfileName, SimHostConfig, SimHostHandle, spawn_host,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Longest wait for something that must happen.
const MUST_MS: u64 = 10_000;
/// How long "nothing arrives" is watched for.
const QUIET_MS: u64 = 300;

const GOOD_PAN: &str = "4111111111111111";
const BAD_PAN: &str = "4111111111111112";
const POOR_PAN: &str = "5555555555554444";

fn config(profile: ProfileName, header: HeaderName) -> SimHostConfig {
    let mut cfg = SimHostConfig::new("test", profile, header);
    cfg.today_yymm = Some(2611);
    cfg.latency = Latency::Fixed { ms: 0 };
    cfg.rules.accounts.push(AccountRule {
        account: POOR_PAN.into(),
        balance: Some(1_000),
        limit: None,
        response_code: None,
    });
    cfg
}

async fn host(profile: ProfileName, header: HeaderName) -> SimHostHandle {
    spawn_host(config(profile, header)).await.unwrap()
}

enum Got {
    Frame(Bytes),
    Closed,
    Nothing,
}

struct Client {
    stream: TcpStream,
    framer: IsoFramer,
    profile: &'static Profile,
    buf: BytesMut,
}

impl Client {
    async fn connect(h: &SimHostHandle, profile: ProfileName, header: HeaderName) -> Client {
        Client::connect_to(h.local_addr(), profile, header)
            .await
            .unwrap()
    }

    async fn connect_to(
        addr: SocketAddr,
        profile: ProfileName,
        header: HeaderName,
    ) -> std::io::Result<Client> {
        Ok(Client {
            stream: TcpStream::connect(addr).await?,
            framer: IsoFramer::new(header.header(), 9_999),
            profile: profile.profile(),
            buf: BytesMut::new(),
        })
    }

    async fn send(&mut self, msg: &IsoMessage) {
        let mut frame = BytesMut::new();
        self.framer.encode(&msg.to_bytes(), &mut frame).unwrap();
        self.stream.write_all(&frame).await.unwrap();
    }

    async fn send_all(&mut self, msgs: &[IsoMessage]) {
        let mut frames = BytesMut::new();
        for msg in msgs {
            self.framer.encode(&msg.to_bytes(), &mut frames).unwrap();
        }
        self.stream.write_all(&frames).await.unwrap();
    }

    async fn next(&mut self, wait_ms: u64) -> Got {
        let deadline = tokio::time::Instant::now() + Duration::from_millis(wait_ms);
        loop {
            if let Some(frame) = self.framer.decode(&mut self.buf).unwrap() {
                return Got::Frame(frame);
            }
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Got::Nothing,
                Ok(Ok(0)) | Ok(Err(_)) => return Got::Closed,
                Ok(Ok(_)) => {}
            }
        }
    }

    async fn recv(&mut self) -> IsoMessage {
        match self.next(MUST_MS).await {
            Got::Frame(frame) => IsoMessage::decode(self.profile, frame).unwrap(),
            Got::Closed => panic!("connection closed"),
            Got::Nothing => panic!("no answer within {MUST_MS} ms"),
        }
    }

    async fn call(&mut self, msg: &IsoMessage) -> IsoMessage {
        self.send(msg).await;
        self.recv().await
    }

    async fn expect_quiet(&mut self) {
        match self.next(QUIET_MS).await {
            Got::Nothing => {}
            Got::Frame(_) => panic!("unexpected frame"),
            Got::Closed => panic!("unexpected close"),
        }
    }

    async fn expect_closed(&mut self) {
        match self.next(MUST_MS).await {
            Got::Closed => {}
            Got::Frame(_) => panic!("frame instead of close"),
            Got::Nothing => panic!("still open after {MUST_MS} ms"),
        }
    }
}

fn request(profile: ProfileName, mti: &[u8; 4], fields: &[(u8, &str)]) -> IsoMessage {
    let mut m = IsoMessage::new(profile.profile(), Mti::from_ascii(mti).unwrap());
    for (f, v) in fields {
        m.set(*f, Bytes::copy_from_slice(v.as_bytes())).unwrap();
    }
    m
}

fn auth(profile: ProfileName, pan: &str, amount: u64, stan: u32) -> IsoMessage {
    let amount = format!("{amount:012}");
    let stan = format!("{stan:06}");
    let order = format!("ORDER-{stan}");
    request(
        profile,
        b"0100",
        &[
            (2, pan),
            (3, "000000"),
            (4, &amount),
            (7, "1126120000"),
            (11, &stan),
            (12, "120000"),
            (13, "1126"),
            (14, "3012"),
            (22, "010"),
            (32, "123456"),
            (37, "633012000001"),
            (41, "TERM0001"),
            (42, "MERCHANT0000001"),
            (48, &order),
            (49, "410"),
        ],
    )
}

fn echo(profile: ProfileName, stan: u32) -> IsoMessage {
    let stan = format!("{stan:06}");
    request(
        profile,
        b"0800",
        &[(7, "1126120000"), (11, &stan), (70, "301")],
    )
}

fn code(answer: &IsoMessage) -> &[u8] {
    answer.get_slice(39).unwrap()
}

async fn wait_for_record(h: &SimHostHandle, n: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MUST_MS);
    while h.record().len() < n {
        assert!(
            tokio::time::Instant::now() < deadline,
            "record never reached {n}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

const LINKS: [(ProfileName, HeaderName); 5] = [
    (ProfileName::Ascii1987, HeaderName::Binary2),
    (ProfileName::BinaryBcd, HeaderName::Bcd2),
    (ProfileName::Ascii1987, HeaderName::Ascii4),
    (ProfileName::BinaryBcd, HeaderName::Binary2),
    (ProfileName::PyisoDefault, HeaderName::Ascii4),
];

#[tokio::test]
async fn approvals_and_declines_on_every_profile_and_header() {
    for (profile, header) in LINKS {
        let h = host(profile, header).await;
        let mut c = Client::connect(&h, profile, header).await;

        let a = c.call(&auth(profile, GOOD_PAN, 10_000, 1)).await;
        assert_eq!(a.mti(), Mti::AUTHORIZATION_RESPONSE, "{profile}/{header}");
        assert_eq!(code(&a), b"00");
        assert_eq!(a.get_slice(38).unwrap().len(), 6);
        for f in [3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49] {
            assert_eq!(
                a.get_slice(f),
                auth(profile, GOOD_PAN, 10_000, 1).get_slice(f),
                "field {f}"
            );
        }
        assert!(!a.contains(2), "the PAN is not echoed");

        let a = c.call(&auth(profile, BAD_PAN, 10_000, 2)).await;
        assert_eq!((code(&a), a.contains(38)), (&b"14"[..], false));
        let a = c.call(&auth(profile, POOR_PAN, 1_200, 3)).await;
        assert_eq!(code(&a), b"51");
        let a = c.call(&auth(profile, GOOD_PAN, 10_051, 4)).await;
        assert_eq!(code(&a), b"51", "amount pattern");
        let mut expired = auth(profile, GOOD_PAN, 100, 5);
        expired.set(14, Bytes::from_static(b"2001")).unwrap();
        assert_eq!(code(&c.call(&expired).await), b"54");

        let mut inquiry = auth(profile, POOR_PAN, 0, 6);
        inquiry.set(3, Bytes::from_static(b"310000")).unwrap();
        let a = c.call(&inquiry).await;
        assert_eq!(code(&a), b"00");
        assert_eq!(a.get_slice(54), Some(&b"0002410C000000001000"[..]));

        let a = c.call(&echo(profile, 7)).await;
        assert_eq!(a.mti(), Mti::NETWORK_RESPONSE);
        assert_eq!((code(&a), a.get_slice(70)), (&b"00"[..], Some(&b"301"[..])));
        assert_eq!(a.stan().unwrap(), Some(7));

        let record = h.record();
        assert_eq!(record.len(), 7);
        let first = &record.entries()[0];
        assert_eq!(
            (first.mti, first.stan, first.amount, first.currency),
            (100, 1, 10_000, 410)
        );
        assert_eq!(first.account, "411111****1111");
        assert_eq!(first.order_ref.as_deref(), Some("ORDER-000001"));
        assert_eq!(first.rrn.as_deref(), Some("633012000001"));
        assert_eq!(first.fault, FaultAction::None);
        assert_eq!(record.count(|e| e.response_code == "00"), 3);
        assert!(!format!("{:?}", record.entries()).contains(GOOD_PAN));
        assert_eq!(h.balance(GOOD_PAN), 1_000_000_000 - 10_000);
        h.shutdown().await;
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_by_stan() {
    let profile = ProfileName::BinaryBcd;
    let header = HeaderName::Bcd2;
    let mut cfg = config(profile, header);
    cfg.latency = Latency::Uniform {
        min_ms: 0,
        max_ms: 30,
    };
    cfg.seed = 42;
    let h = spawn_host(cfg).await.unwrap();
    let mut c = Client::connect(&h, profile, header).await;
    let requests: Vec<IsoMessage> = (1..=100)
        .map(|stan| auth(profile, GOOD_PAN, 1_000 + u64::from(stan) * 100, stan))
        .collect();
    c.send_all(&requests).await;
    let mut answers = HashMap::new();
    for _ in 0..requests.len() {
        let a = c.recv().await;
        let stan = a.stan().unwrap().unwrap();
        assert!(answers.insert(stan, a).is_none(), "two answers for {stan}");
    }
    c.expect_quiet().await;
    for (stan, a) in &answers {
        assert_eq!(code(a), b"00");
        assert_eq!(a.amount().unwrap(), Some(1_000 + u64::from(*stan) * 100));
    }
    assert_eq!(answers.len(), 100);
    let record = h.record();
    assert_eq!(
        record.count(|e| e.order_ref.as_deref() == Some("ORDER-000050")),
        1
    );
    assert_eq!(record.count(|e| e.latency_ms <= 30), 100);
    let spent: u64 = (1..=100u64).map(|s| 1_000 + s * 100).sum();
    assert_eq!(h.balance(GOOD_PAN), 1_000_000_000 - spent);
}

#[tokio::test]
async fn a_reversal_restores_the_balance_and_is_acknowledged() {
    let profile = ProfileName::Ascii1987;
    let header = HeaderName::Ascii4;
    let h = host(profile, header).await;
    let mut c = Client::connect(&h, profile, header).await;
    assert_eq!(
        code(&c.call(&auth(profile, GOOD_PAN, 25_000, 11)).await),
        b"00"
    );
    assert_eq!(h.balance(GOOD_PAN), 1_000_000_000 - 25_000);
    let original = "0100000011112612000000000123456000000000000";
    let mut reversal = auth(profile, GOOD_PAN, 25_000, 12);
    reversal.set_mti(Mti::REVERSAL_REQUEST);
    reversal.remove(14);
    reversal
        .set(90, Bytes::copy_from_slice(&original.as_bytes()[..42]))
        .unwrap();
    let a = c.call(&reversal).await;
    assert_eq!((a.mti(), code(&a)), (Mti::REVERSAL_RESPONSE, &b"00"[..]));
    assert_eq!(a.get_slice(90), Some(&original.as_bytes()[..42]));
    assert_eq!(h.balance(GOOD_PAN), 1_000_000_000);
    // Again (a repeat), and for an original the host never saw: acknowledged, nothing restored.
    reversal.set_mti(Mti::from_ascii(b"0401").unwrap());
    assert_eq!(code(&c.call(&reversal).await), b"00");
    reversal
        .set(
            90,
            Bytes::from_static(b"010099999911261200000000012345600000000000"),
        )
        .unwrap();
    assert_eq!(code(&c.call(&reversal).await), b"00");
    assert_eq!(h.balance(GOOD_PAN), 1_000_000_000);
    assert_eq!(h.record().count(|e| e.original_stan == Some(11)), 2);
}

/// Sends one request with `faults` in force, then turns faults off.
async fn with_fault(h: &SimHostHandle, c: &mut Client, faults: Faults, msg: &IsoMessage) {
    let before = h.record().len();
    h.set_faults(faults).unwrap();
    c.send(msg).await;
    wait_for_record(h, before + 1).await;
    h.set_faults(Faults::NONE).unwrap();
}

#[tokio::test]
async fn fault_modes() {
    let profile = ProfileName::Ascii1987;
    let header = HeaderName::Binary2;
    let h = host(profile, header).await;
    let mut c = Client::connect(&h, profile, header).await;

    // Drop: processed, never answered; the connection goes on.
    let drop = Faults {
        drop_answer_p: 1.0,
        ..Faults::NONE
    };
    with_fault(&h, &mut c, drop, &auth(profile, GOOD_PAN, 100, 1)).await;
    c.expect_quiet().await;
    assert_eq!(c.call(&echo(profile, 2)).await.stan().unwrap(), Some(2));
    assert_eq!(
        h.balance(GOOD_PAN),
        1_000_000_000 - 100,
        "processed all the same"
    );

    // Duplicate: two identical answers.
    let duplicate = Faults {
        duplicate_answer_p: 1.0,
        ..Faults::NONE
    };
    with_fault(&h, &mut c, duplicate, &auth(profile, GOOD_PAN, 100, 3)).await;
    let (a, b) = (c.recv().await, c.recv().await);
    assert_eq!(a, b);
    assert_eq!(a.stan().unwrap(), Some(3));
    c.expect_quiet().await;

    // Garbage: a well-framed message that does not decode.
    let garbage = Faults {
        garbage_p: 1.0,
        ..Faults::NONE
    };
    with_fault(&h, &mut c, garbage, &auth(profile, GOOD_PAN, 100, 4)).await;
    let Got::Frame(frame) = c.next(MUST_MS).await else {
        panic!("no garbage frame")
    };
    assert!(IsoMessage::decode(profile.profile(), frame).is_err());
    assert_eq!(c.call(&echo(profile, 5)).await.stan().unwrap(), Some(5));

    // Late: the late answer is overtaken by a later request's.
    let late = Faults {
        late_answer_p: 1.0,
        late_answer_ms: 2_500,
        ..Faults::NONE
    };
    with_fault(&h, &mut c, late, &auth(profile, GOOD_PAN, 100, 6)).await;
    assert_eq!(c.call(&echo(profile, 7)).await.stan().unwrap(), Some(7));
    assert_eq!(c.recv().await.stan().unwrap(), Some(6));

    // Disconnect: no answer, the connection is closed.
    let disconnect = Faults {
        disconnect_p: 1.0,
        ..Faults::NONE
    };
    with_fault(&h, &mut c, disconnect, &auth(profile, GOOD_PAN, 100, 8)).await;
    c.expect_closed().await;
    let mut c = Client::connect(&h, profile, header).await;
    assert_eq!(code(&c.call(&echo(profile, 9)).await), b"00");

    let faults: Vec<(u32, FaultAction)> = h
        .record()
        .entries()
        .iter()
        .map(|e| (e.stan, e.fault))
        .collect();
    assert_eq!(
        faults,
        [
            (1, FaultAction::Drop),
            (2, FaultAction::None),
            (3, FaultAction::Duplicate),
            (4, FaultAction::Garbage),
            (5, FaultAction::None),
            (6, FaultAction::Late),
            (7, FaultAction::None),
            (8, FaultAction::Disconnect),
            (9, FaultAction::None),
        ]
    );
    assert!(
        h.record()
            .count(|e| e.fault == FaultAction::Late && e.latency_ms >= 2_500)
            == 1
    );
}

#[tokio::test]
async fn pause_closes_everything_and_resume_comes_back_on_the_same_port() {
    let profile = ProfileName::BinaryBcd;
    let header = HeaderName::Bcd2;
    let h = host(profile, header).await;
    let addr = h.local_addr();
    let mut c = Client::connect(&h, profile, header).await;
    assert_eq!(code(&c.call(&auth(profile, GOOD_PAN, 500, 1)).await), b"00");
    h.pause().await;
    assert!(h.is_paused().await);
    c.expect_closed().await;
    assert!(
        Client::connect_to(addr, profile, header).await.is_err(),
        "port still open"
    );
    h.resume().await.unwrap();
    assert_eq!(h.local_addr(), addr);
    let mut c = Client::connect_to(addr, profile, header).await.unwrap();
    assert_eq!(code(&c.call(&echo(profile, 2)).await), b"00");
    assert_eq!(
        h.balance(GOOD_PAN),
        1_000_000_000 - 500,
        "the book survives"
    );
    assert_eq!(h.record().len(), 2);
}

#[tokio::test]
async fn limits_close_misbehaving_connections() {
    let profile = ProfileName::Ascii1987;
    let header = HeaderName::Binary2;
    let mut cfg = config(profile, header);
    cfg.limits.frame_bytes_max = 200;
    cfg.limits.connections_max = 2;
    cfg.limits.inflight_per_connection_max = 4;
    let h = spawn_host(cfg).await.unwrap();

    // A frame longer than frame_bytes_max.
    let mut c = Client::connect(&h, profile, header).await;
    c.stream.write_all(&[0x01, 0x00]).await.unwrap();
    c.expect_closed().await;

    // An undecodable message is ignored; the connection goes on.
    let mut c = Client::connect(&h, profile, header).await;
    c.stream
        .write_all(&[0x00, 0x04, b'X', b'Y', b'Z', b'!'])
        .await
        .unwrap();
    c.stream.write_all(&[0x00, 0x00]).await.unwrap();
    assert_eq!(code(&c.call(&echo(profile, 1)).await), b"00");

    // More answers in flight than allowed.
    h.set_latency(Latency::Fixed { ms: 5_000 }).unwrap();
    let burst: Vec<IsoMessage> = (10..20).map(|stan| echo(profile, stan)).collect();
    c.send_all(&burst).await;
    c.expect_closed().await;
    h.set_latency(Latency::Fixed { ms: 0 }).unwrap();

    // connections_max: the third connection is closed at once.
    let mut first = Client::connect(&h, profile, header).await;
    let mut second = Client::connect(&h, profile, header).await;
    assert_eq!(code(&first.call(&echo(profile, 30)).await), b"00");
    assert_eq!(code(&second.call(&echo(profile, 31)).await), b"00");
    let mut third = Client::connect(&h, profile, header).await;
    third.expect_closed().await;
    assert_eq!(h.open_connections(), 2);
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(MUST_MS);
    while h.open_connections() > 1 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut fourth = Client::connect(&h, profile, header).await;
    assert_eq!(code(&fourth.call(&echo(profile, 32)).await), b"00");
}

#[tokio::test]
async fn the_record_file_has_one_masked_line_per_request() {
    let profile = ProfileName::Ascii1987;
    let header = HeaderName::Binary2;
    let path = std::env::temp_dir().join(format!(
        "gateway-sim-host-test-{}.jsonl",
        std::process::id()
    ));
    let _ = std::fs::remove_file(&path);
    let mut cfg = config(profile, header);
    cfg.record_path = Some(path.clone());
    let h = spawn_host(cfg).await.unwrap();
    let mut c = Client::connect(&h, profile, header).await;
    for stan in 1..=3 {
        c.call(&auth(profile, GOOD_PAN, 100, stan)).await;
    }
    let record = h.record();
    h.shutdown().await;
    record.flush();
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 3);
    assert!(text.contains("\"order_ref\":\"ORDER-000002\""));
    assert!(!text.contains(GOOD_PAN));
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn the_default_hosts_start_on_free_ports() {
    let mut handles = Vec::new();
    for mut cfg in paymesh_gateway_sim::config::default_hosts() {
        cfg.listen = "127.0.0.1:0".parse().unwrap();
        let (profile, header) = (cfg.profile, cfg.length_header);
        let h = spawn_host(cfg).await.unwrap();
        let mut c = Client::connect(&h, profile, header).await;
        assert_eq!(code(&c.call(&echo(profile, 1)).await), b"00");
        handles.push(h);
    }
    let names: Vec<&str> = handles.iter().map(|h| h.name()).collect();
    assert_eq!(names, ["van", "card", "bank", "carrier"]);
    // A LengthHeader of the codec and the sim's names agree.
    assert_eq!(HeaderName::Bcd2.header(), LengthHeader::Bcd2);
}
