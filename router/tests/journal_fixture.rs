//! Upgrades: this build recovers a journal an earlier build wrote. `tests/fixtures/journal-v1/` is
//! the journal of the build that shipped record format 1 and shard snapshot format 3 (see
//! `tests/fixtures/README.md`), written by [`write_the_journal_fixture`] through the real router
//! against gateway-sim. Each run recovers a copy of it, twice: from its checkpoint plus the
//! records after it, and from the records alone (checkpoint left out), and then checks over the
//! wire that every order is there with its state and amounts, that a retransmission gets the
//! stored answer with the RETRANSMIT flag and never reaches the host again, and that follow-ups
//! (capture, refund, paying with a stored token) work.
//!
//! When a build changes a format, this test keeps passing unchanged: that is what it is for. The
//! new build then adds its own fixture (journal-v2, ...) with the same writer.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use common::*;
use paymesh_codecs::frame::flags::RETRANSMIT;
use paymesh_codecs::message::{PaymentMethod, TxnAnswer, TxnKind, TxnRequest, TxnState};
use paymesh_codecs::types::ResultCode;

/// The fixtures directory: the test key and one directory per journal version.
const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
/// The journal version this file's scenario was written as.
const VERSION_DIR: &str = "journal-v1";
/// Where [`write_the_journal_fixture`] writes, when set.
const OUT_VARIABLE: &str = "PAYMESH_JOURNAL_FIXTURE_OUT";
/// The journal settings the fixture was written with: small segments (several files), none
/// deleted, checkpoints only at shutdown.
const JOURNAL_TOML: &str = "segment_bytes_max = 1024\nsegments_retained = 1000\n\
                            checkpoint_records = 1000000\ncheckpoint_interval_secs = 0\n";

/// How a step pays.
#[derive(Debug, Clone, Copy)]
enum Pay {
    Nothing,
    Card(&'static str),
    CardWithoutCvv(&'static str),
    /// The wallet token the TOKENIZE of this order returned.
    TokenOf(&'static str),
}

/// One request of the scenario and the result it got.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// 1: before the checkpoint (recovered from it); 2: after it (recovered from records).
    round: u8,
    kind: TxnKind,
    order: &'static str,
    amount: Option<u64>,
    pay: Pay,
    request_id: Option<&'static str>,
    result: ResultCode,
}

const fn step(
    round: u8,
    kind: TxnKind,
    order: &'static str,
    amount: Option<u64>,
    pay: Pay,
    result: ResultCode,
) -> Step {
    Step {
        round,
        kind,
        order,
        amount,
        pay,
        request_id: None,
        result,
    }
}

use Pay::*;
use ResultCode::{Approved, InsufficientFunds};
use TxnKind::*;

/// The scenario, in order. Amounts ending in 51 are declined by gateway-sim ("51").
const STEPS: [Step; 15] = [
    step(
        1,
        Authorize,
        "F1-AUTH",
        Some(7_000),
        Card(VAN_PAN),
        Approved,
    ),
    step(
        1,
        Authorize,
        "F1-CAPT",
        Some(6_000),
        Card(VAN_PAN),
        Approved,
    ),
    step(1, Capture, "F1-CAPT", Some(4_000), Nothing, Approved),
    step(1, Sale, "F1-SALE", Some(2_500), Card(VAN_PAN), Approved),
    Step {
        request_id: Some("R1"),
        ..step(1, Refund, "F1-SALE", Some(500), Nothing, Approved)
    },
    step(
        1,
        Authorize,
        "F1-DECL",
        Some(2_051),
        Card(VAN_PAN),
        InsufficientFunds,
    ),
    step(
        1,
        Tokenize,
        "F1-TOKEN",
        None,
        CardWithoutCvv(CARD_PAN),
        Approved,
    ),
    step(1, Sale, "F1-CARD", Some(3_300), Card(CARD_PAN), Approved),
    step(
        2,
        Authorize,
        "F2-AUTH",
        Some(8_000),
        Card(CARD_PAN),
        Approved,
    ),
    step(
        2,
        Authorize,
        "F2-CAPT",
        Some(9_000),
        Card(VAN_PAN),
        Approved,
    ),
    step(2, Capture, "F2-CAPT", Some(9_000), Nothing, Approved),
    step(2, Sale, "F2-REFUND", Some(4_400), Card(VAN_PAN), Approved),
    Step {
        request_id: Some("R1"),
        ..step(2, Refund, "F2-REFUND", Some(4_400), Nothing, Approved)
    },
    step(
        2,
        Sale,
        "F2-DECL",
        Some(1_151),
        Card(VAN_PAN),
        InsufficientFunds,
    ),
    step(
        2,
        Sale,
        "F2-WALLET",
        Some(1_200),
        TokenOf("F1-TOKEN"),
        Approved,
    ),
];

/// What an INQUIRY of each payment answers after the scenario: state and the authorized,
/// captured and refunded totals.
const ORDERS: [(&str, TxnState, u64, u64, u64); 10] = [
    ("F1-AUTH", TxnState::Authorized, 7_000, 0, 0),
    ("F1-CAPT", TxnState::PartiallyCaptured, 6_000, 4_000, 0),
    ("F1-SALE", TxnState::PartiallyRefunded, 2_500, 2_500, 500),
    ("F1-DECL", TxnState::Declined, 0, 0, 0),
    ("F1-CARD", TxnState::Captured, 3_300, 3_300, 0),
    ("F2-AUTH", TxnState::Authorized, 8_000, 0, 0),
    ("F2-CAPT", TxnState::Captured, 9_000, 9_000, 0),
    ("F2-REFUND", TxnState::Refunded, 4_400, 4_400, 4_400),
    ("F2-DECL", TxnState::Declined, 0, 0, 0),
    ("F2-WALLET", TxnState::Captured, 1_200, 1_200, 0),
];

/// What a step was answered, as the manifest (`answers.txt`) keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answered {
    order: String,
    kind: String,
    result: u16,
    server_txn_id: Option<u64>,
    approval_code: Option<String>,
    rrn: Option<String>,
    token: Option<String>,
}

impl Answered {
    fn of(step: &Step, a: &TxnAnswer) -> Answered {
        let text = |b: &Option<Bytes>| b.as_ref().map(|b| String::from_utf8(b.to_vec()).unwrap());
        Answered {
            order: step.order.to_string(),
            kind: step.kind.name().to_string(),
            result: a.result.as_u16(),
            server_txn_id: a.server_txn_id,
            approval_code: text(&a.approval_code),
            rrn: text(&a.rrn),
            token: text(&a.token),
        }
    }

    fn line(&self) -> String {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        format!(
            "{} {} {} {} {} {} {}",
            self.order,
            self.kind,
            self.result,
            self.server_txn_id
                .map_or_else(|| "-".into(), |v| v.to_string()),
            or_dash(&self.approval_code),
            or_dash(&self.rrn),
            or_dash(&self.token),
        )
    }

    fn parse(line: &str) -> Answered {
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 7, "manifest line {line:?}");
        let opt = |s: &str| (s != "-").then(|| s.to_string());
        Answered {
            order: fields[0].into(),
            kind: fields[1].into(),
            result: fields[2].parse().unwrap(),
            server_txn_id: opt(fields[3]).map(|v| v.parse().unwrap()),
            approval_code: opt(fields[4]),
            rrn: opt(fields[5]),
            token: opt(fields[6]),
        }
    }
}

/// The request of `step`; `tokens` maps a TOKENIZE order to the token it got.
fn request_of(step: &Step, tokens: &HashMap<String, String>) -> TxnRequest {
    let payment = match step.pay {
        Nothing => None,
        Card(pan) => Some(card(pan)),
        CardWithoutCvv(pan) => Some(card_without_cvv(pan)),
        TokenOf(order) => Some(PaymentMethod::WalletToken(Bytes::from(
            tokens[order].clone().into_bytes(),
        ))),
    };
    let mut r = request(step.kind, "M000001", step.order, step.amount, payment);
    r.request_id = step.request_id.map(|id| Bytes::from_static(id.as_bytes()));
    r
}

/// A copy of the committed test key, mode 0600 (git does not keep modes).
fn private_key_copy(dir: &Path) -> PathBuf {
    let path = dir.join("test-journal.key");
    std::fs::copy(Path::new(FIXTURES).join("test-journal.key"), &path).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

fn options(journal_dir: PathBuf, key: &Path) -> EnvOptions {
    EnvOptions {
        journal_dir: Some(journal_dir),
        key_file: Some(key.to_path_buf()),
        journal_toml: JOURNAL_TOML.into(),
        ..EnvOptions::default()
    }
}

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    found.sort();
    found
}

/// Writes a journal fixture with this build into `$PAYMESH_JOURNAL_FIXTURE_OUT` (a directory
/// without a `journal/` in it): `journal/` and `answers.txt`. Round 1 runs the first steps and
/// shuts down cleanly (which files a checkpoint); round 2 restarts on that journal, runs the rest
/// and shuts down; its final checkpoint is then replaced by round 1's, as if the process had died
/// before filing it, so recovery reads a checkpoint and records after it.
#[actix::test]
#[ignore = "writes a fixture: PAYMESH_JOURNAL_FIXTURE_OUT=DIR cargo nextest run -p paymesh-router --test journal_fixture --run-ignored only"]
async fn write_the_journal_fixture() {
    let Some(out) = std::env::var_os(OUT_VARIABLE) else {
        eprintln!("{OUT_VARIABLE} is not set: nothing written");
        return;
    };
    let out = PathBuf::from(out);
    let journal_dir = out.join("journal");
    assert!(
        !journal_dir.exists(),
        "{} exists: a fixture is never overwritten",
        journal_dir.display()
    );
    std::fs::create_dir_all(&out).unwrap();
    let scratch = tempfile::tempdir().unwrap();
    let key = private_key_copy(scratch.path());
    let mut answered = Vec::new();
    let mut tokens = HashMap::new();
    let mut round_one_checkpoint = None;
    for round in [1, 2] {
        let env = Env::start(options(journal_dir.clone(), &key)).await;
        let mut c = env.client().await;
        for step in STEPS.iter().filter(|s| s.round == round) {
            let a = c.call(request_of(step, &tokens)).await;
            assert_result(&a, step.result);
            if let Some(token) = &a.token {
                tokens.insert(
                    step.order.to_string(),
                    String::from_utf8(token.to_vec()).unwrap(),
                );
            }
            answered.push(Answered::of(step, &a));
        }
        env.stop().await;
        let found = checkpoints(&journal_dir);
        let [newest] = found.as_slice() else {
            panic!("one checkpoint after a clean shutdown: {found:?}");
        };
        let newest = newest.clone();
        match &round_one_checkpoint {
            None => {
                let saved = scratch.path().join(newest.file_name().unwrap());
                std::fs::copy(&newest, &saved).unwrap();
                round_one_checkpoint = Some((newest, saved));
            }
            Some((name, saved)) => {
                std::fs::remove_file(&newest).unwrap();
                std::fs::copy(saved, name).unwrap();
            }
        }
    }
    let manifest: String = answered.iter().map(|a| a.line() + "\n").collect();
    std::fs::write(out.join("answers.txt"), manifest).unwrap();
}

fn read_manifest(version_dir: &Path) -> Vec<Answered> {
    std::fs::read_to_string(version_dir.join("answers.txt"))
        .unwrap()
        .lines()
        .filter(|l| !l.is_empty())
        .map(Answered::parse)
        .collect()
}

/// Copies the fixture's journal into `to`, without its checkpoint unless `with_checkpoint`.
fn copy_journal(from: &Path, to: &Path, with_checkpoint: bool) -> usize {
    std::fs::create_dir_all(to).unwrap();
    let mut copied = 0;
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let is_checkpoint = path.extension().is_some_and(|e| e == "snap");
        if is_checkpoint && !with_checkpoint {
            continue;
        }
        std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        copied += 1;
    }
    copied
}

#[actix::test]
async fn this_build_recovers_the_previous_builds_journal() {
    let version_dir = Path::new(FIXTURES).join(VERSION_DIR);
    let manifest = read_manifest(&version_dir);
    assert_eq!(manifest.len(), STEPS.len(), "one manifest line per step");
    assert_eq!(
        checkpoints(&version_dir.join("journal")).len(),
        1,
        "the fixture holds one checkpoint"
    );
    for with_checkpoint in [true, false] {
        recover_and_check(&version_dir, &manifest, with_checkpoint).await;
    }
}

async fn recover_and_check(version_dir: &Path, manifest: &[Answered], with_checkpoint: bool) {
    let scratch = tempfile::tempdir().unwrap();
    let journal_dir = scratch.path().join("journal");
    copy_journal(&version_dir.join("journal"), &journal_dir, with_checkpoint);
    let key = private_key_copy(scratch.path());
    let env = Env::start(options(journal_dir, &key)).await;
    let mut c = env.client().await;
    let tokens: HashMap<String, String> = manifest
        .iter()
        .filter_map(|a| Some((a.order.clone(), a.token.clone()?)))
        .collect();
    let context = if with_checkpoint {
        "from the checkpoint and records"
    } else {
        "from the records alone"
    };

    // Every request sent again is a retransmission: the stored answer, flagged, not sent upstream.
    for (step, original) in STEPS.iter().zip(manifest) {
        assert_eq!(
            (step.order, step.kind.name()),
            (original.order.as_str(), original.kind.as_str()),
            "the manifest follows the scenario"
        );
        let (again, flags) = c.call_flagged(request_of(step, &tokens)).await;
        assert_eq!(
            Answered::of(step, &again),
            *original,
            "{} {} {context}",
            step.order,
            step.kind.name()
        );
        assert_ne!(
            flags & RETRANSMIT,
            0,
            "{} {}: a stored answer carries RETRANSMIT ({context})",
            step.order,
            step.kind.name()
        );
    }
    for (order, ..) in ORDERS {
        assert_eq!(
            env.host_count("van", order) + env.host_count("card", order),
            0,
            "{order} reached the host again ({context})"
        );
    }

    // Every payment answers INQUIRY with its id, state and totals.
    let txn_ids: HashMap<&str, Option<u64>> = manifest
        .iter()
        .filter(|a| a.kind == Authorize.name() || a.kind == Sale.name())
        .map(|a| (a.order.as_str(), a.server_txn_id))
        .collect();
    for (order, state, authorized, captured, refunded) in ORDERS {
        let inq = c.call(request(Inquiry, "M000001", order, None, None)).await;
        assert_result(&inq, Approved);
        assert_eq!(
            (
                inq.server_txn_id,
                inq.state,
                inq.authorized_amount.unwrap_or(0),
                inq.captured_amount.unwrap_or(0),
                inq.refunded_amount.unwrap_or(0),
            ),
            (
                txn_ids[order],
                Some(state as u8),
                authorized,
                captured,
                refunded
            ),
            "{order} {context}"
        );
    }

    // Follow-ups on recovered payments.
    let cap = c
        .call(request(Capture, "M000001", "F1-AUTH", Some(7_000), None))
        .await;
    assert_result(&cap, Approved);
    assert_eq!(cap.state, Some(TxnState::Captured as u8), "{context}");
    let cap = c
        .call(request(Capture, "M000001", "F2-AUTH", Some(3_000), None))
        .await;
    assert_result(&cap, Approved);
    assert_eq!(
        (cap.state, cap.captured_amount),
        (Some(TxnState::PartiallyCaptured as u8), Some(3_000)),
        "{context}"
    );
    let mut refund = request(Refund, "M000001", "F1-SALE", Some(2_001), None);
    refund.request_id = Some(Bytes::from_static(b"R2"));
    assert_result(&c.call(refund).await, ResultCode::AmountExceedsAvailable);
    let mut refund = request(Refund, "M000001", "F1-SALE", Some(2_000), None);
    refund.request_id = Some(Bytes::from_static(b"R2"));
    let refund = c.call(refund).await;
    assert_result(&refund, Approved);
    assert_eq!(refund.state, Some(TxnState::Refunded as u8), "{context}");
    // The wallet vault came back: the token pays again.
    let wallet = c
        .call(sign(
            request(
                Sale,
                "M000001",
                "F3-WALLET",
                Some(900),
                Some(PaymentMethod::WalletToken(Bytes::from(
                    tokens["F1-TOKEN"].clone().into_bytes(),
                ))),
            ),
            &test_device_key(),
            TEST_DEVICE,
            1,
        ))
        .await;
    assert_result(&wallet, Approved);
    // A new payment gets an id no recovered payment has.
    let fresh = c
        .call(request(
            Authorize,
            "M000001",
            "F3-NEW",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&fresh, Approved);
    assert!(
        manifest
            .iter()
            .all(|a| a.server_txn_id != fresh.server_txn_id),
        "a recovered id was given again ({context})"
    );
    env.stop().await;
}

/// Starts a router on `journal_dir` (with the test key) and returns its start-up error.
async fn start_error(journal_dir: PathBuf, key: &Path) -> String {
    let env = Env::start(EnvOptions {
        start_router: false,
        ..options(journal_dir, key)
    })
    .await;
    let config = paymesh_router::config::Config::parse(&env.config_text).unwrap();
    match paymesh_router::server::Router::start(config).await {
        Ok(_) => panic!("the router started on a journal of a newer format"),
        Err(error) => format!("{error:#}"),
    }
}

#[actix::test]
async fn journals_of_a_newer_format_are_refused_by_name_and_left_alone() {
    let version_dir = Path::new(FIXTURES).join(VERSION_DIR);
    let scratch = tempfile::tempdir().unwrap();
    let key = private_key_copy(scratch.path());

    // The META record (LSN 1) names a record format newer than this build's.
    let newer_records = paymesh_actors::core::journal_codec::META_FORMAT + 1;
    let journal_dir = scratch.path().join("newer-records");
    copy_journal(&version_dir.join("journal"), &journal_dir, false);
    let first = journal_dir.join("journal-00000000000000000001.seg");
    let mut bytes = std::fs::read(&first).unwrap();
    let (meta, used) = paymesh_journal::decode_record(&bytes).unwrap().unwrap();
    assert_eq!(
        (meta.lsn.0, meta.kind),
        (1, paymesh_actors::core::journal_codec::RECORD_META)
    );
    let mut payload = meta.payload.to_vec();
    payload[0] = paymesh_actors::core::journal_codec::META_FORMAT + 1;
    let mut record = Vec::new();
    paymesh_journal::encode_record(&mut record, meta.lsn, meta.kind, &payload);
    bytes.splice(..used, record);
    std::fs::write(&first, &bytes).unwrap();
    let error = start_error(journal_dir, &key).await;
    assert!(
        error.contains(&format!(
            "journal record format {newer_records} was written by a newer PayMesh build"
        )),
        "{error}"
    );
    assert_eq!(std::fs::read(&first).unwrap(), bytes, "the journal changed");

    // The checkpoint names a checkpoint format newer than this build's.
    let newer_checkpoint = paymesh_actors::core::recovery::CHECKPOINT_FORMAT + 1;
    let journal_dir = scratch.path().join("newer-checkpoint");
    copy_journal(&version_dir.join("journal"), &journal_dir, true);
    let [snapshot] = checkpoints(&journal_dir).try_into().unwrap();
    let file = std::fs::read(&snapshot).unwrap();
    let (lsn, state) = paymesh_journal::decode_snapshot(&file).unwrap();
    let mut state = state.to_vec();
    assert_eq!(&state[..8], b"PMCKPT01");
    state.splice(..8, format!("PMCKPT{newer_checkpoint:02}").into_bytes());
    let mut file = paymesh_journal::encode_snapshot_header(lsn, &state).to_vec();
    file.extend_from_slice(&state);
    std::fs::write(&snapshot, &file).unwrap();
    let error = start_error(journal_dir, &key).await;
    assert!(
        error.contains(&format!(
            "checkpoint format {newer_checkpoint} was written by a newer PayMesh build"
        )),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&snapshot).unwrap(),
        file,
        "the checkpoint changed"
    );
}
