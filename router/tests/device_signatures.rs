//! Device signatures end to end, over real loopback TCP through the router to gateway-sim hosts:
//! junk signatures and replayed counters are refused INVALID_SIGNATURE and never reach a host,
//! good ones are approved, and the counters a device used survive restarts (from the journal,
//! and from a checkpoint).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::Bytes;
use common::*;
use ed25519_dalek::SigningKey;
use paymesh_codecs::message::{TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;

/// The merchant whose requests must be signed.
const MERCHANT: &str = "MDEV";
const DEVICE: &str = "phone-1";

fn device_key() -> SigningKey {
    SigningKey::from_bytes(&[42; 32])
}

/// A merchant requiring signatures, with one device.
fn options() -> EnvOptions {
    let public_key = hex::encode(device_key().verifying_key().to_bytes());
    EnvOptions {
        merchants_toml: format!(
            "[[merchants]]\nid = \"{MERCHANT}\"\ndevice_signature = \"required\"\n\
             [[merchants.devices]]\nid = \"{DEVICE}\"\npublic_key = \"{public_key}\"\n"
        ),
        ..EnvOptions::default()
    }
}

fn authorize(order: &str) -> TxnRequest {
    request(
        TxnKind::Authorize,
        MERCHANT,
        order,
        Some(1_000),
        Some(card(VAN_PAN)),
    )
}

/// `req` signed by the device with `counter`.
fn signed(req: TxnRequest, counter: u64) -> TxnRequest {
    sign(req, &device_key(), DEVICE, counter)
}

fn assert_refused(a: &TxnAnswer, message: &str) {
    assert_result(a, ResultCode::InvalidSignature);
    assert_eq!(a.message.as_deref(), Some(message.as_bytes()), "{a:?}");
    assert_eq!(
        a.server_txn_id, None,
        "no transaction id for a refused request"
    );
}

const USED: &str = "device counter already used";

#[actix::test]
async fn junk_signatures_and_replayed_counters_are_refused_and_good_ones_approved() {
    let env = Env::start(options()).await;
    let mut c = env.client().await;
    assert_refused(&c.call(authorize("U1")).await, "device signature required");
    let mut junk = signed(authorize("J1"), 1);
    if let Some(d) = &mut junk.device_signature {
        d.signature = Bytes::from_static(&[0x5A; 64]);
    }
    assert_refused(&c.call(junk).await, "device signature does not verify");

    let good = signed(authorize("G1"), 1);
    let approved = c.call(good.clone()).await;
    assert_result(&approved, ResultCode::Approved);
    assert!(approved.server_txn_id.is_some());
    // The same signed request again is a retransmission: the first answer, nothing new; a new
    // order under the used counter is refused.
    let again = c.call(good).await;
    assert_eq!(
        (again.result, again.server_txn_id),
        (approved.result, approved.server_txn_id)
    );
    assert_refused(&c.call(signed(authorize("G2"), 1)).await, USED);
    // Pipelined requests may arrive out of order: 3 before 2, each accepted once.
    assert_result(
        &c.call(signed(authorize("G3"), 3)).await,
        ResultCode::Approved,
    );
    assert_result(
        &c.call(signed(authorize("G2"), 2)).await,
        ResultCode::Approved,
    );
    assert_refused(&c.call(signed(authorize("G4"), 2)).await, USED);

    for (order, sent) in [
        ("U1", 0),
        ("J1", 0),
        ("G1", 1),
        ("G2", 1),
        ("G3", 1),
        ("G4", 0),
    ] {
        assert_eq!(env.host_authorizations("van", order), sent, "order {order}");
    }
    env.stop().await;
}

#[actix::test]
async fn used_counters_are_still_refused_after_a_restart_from_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EnvOptions {
        journal_dir: Some(dir.path().join("journal")),
        ..options()
    };
    let env = Env::start(opts.clone()).await;
    let mut c = env.client().await;
    let mut first = Vec::new();
    for (order, counter) in [("R3", 3), ("R1", 1), ("R2", 2)] {
        let a = c.call(signed(authorize(order), counter)).await;
        assert_result(&a, ResultCode::Approved);
        first.push(a);
    }
    env.stop().await;

    // Same journal, fresh hosts: the device's window comes from the journal alone.
    let env = Env::start(opts).await;
    let mut c = env.client().await;
    assert_refused(&c.call(signed(authorize("N1"), 1)).await, USED);
    assert_refused(&c.call(signed(authorize("N2"), 2)).await, USED);
    assert_refused(&c.call(signed(authorize("N3"), 3)).await, USED);
    // A retransmission signed again gets the original answer; a new counter a new approval.
    let again = c.call(signed(authorize("R1"), 4)).await;
    assert_eq!(
        (again.result, again.server_txn_id),
        (first[1].result, first[1].server_txn_id)
    );
    assert_result(
        &c.call(signed(authorize("N5"), 5)).await,
        ResultCode::Approved,
    );
    for (order, sent) in [("R1", 0), ("N1", 0), ("N2", 0), ("N3", 0), ("N5", 1)] {
        assert_eq!(env.host_authorizations("van", order), sent, "order {order}");
    }
    env.stop().await;
}

/// Checkpoint files in a journal directory.
fn snapshots(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".snap")
        })
        .count()
}

#[actix::test]
async fn used_counters_are_still_refused_after_a_restart_from_a_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    let opts = EnvOptions {
        journal_dir: Some(journal_dir.clone()),
        journal_toml: "checkpoint_records = 8\n".into(),
        ..options()
    };
    let env = Env::start(opts.clone()).await;
    let mut c = env.client().await;
    for counter in 1..=12u64 {
        let a = c
            .call(signed(authorize(&format!("C{counter}")), counter))
            .await;
        assert_result(&a, ResultCode::Approved);
    }
    // Wait for the checkpointer (it polls every 50 ms) to have filed one: recovery starts from
    // it and skips the records it covers, so the first counters can only come from the shard's
    // snapshot.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while snapshots(&journal_dir) == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(snapshots(&journal_dir), 1, "a checkpoint was filed");
    env.stop().await;

    let env = Env::start(opts).await;
    let mut c = env.client().await;
    for counter in [1, 2, 12] {
        assert_refused(
            &c.call(signed(authorize(&format!("D{counter}")), counter))
                .await,
            USED,
        );
    }
    assert_result(
        &c.call(signed(authorize("D13"), 13)).await,
        ResultCode::Approved,
    );
    env.stop().await;
}
