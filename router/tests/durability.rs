//! Durability over restarts: the journal rebuilds every order, amount and idempotency record, so a
//! retry after a restart gets the original answer and never a second upstream authorization.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use bytes::Bytes;
use common::*;
use paymesh_codecs::message::TxnKind;
use paymesh_codecs::types::ResultCode;

#[actix::test]
async fn a_restart_keeps_approvals_amounts_and_idempotency() {
    let dir = tempfile::tempdir().unwrap();
    let opts = EnvOptions {
        journal_dir: Some(dir.path().join("journal")),
        ..EnvOptions::default()
    };
    let env = Env::start(opts.clone()).await;
    let mut c = env.client().await;
    let auth = request(
        TxnKind::Authorize,
        "M000001",
        "D1",
        Some(7_000),
        Some(card(VAN_PAN)),
    );
    let first = c.call(auth.clone()).await;
    assert_result(&first, ResultCode::Approved);
    assert_result(
        &c.call(request(
            TxnKind::Capture,
            "M000001",
            "D1",
            Some(5_000),
            None,
        ))
        .await,
        ResultCode::Approved,
    );
    let mut refund = request(TxnKind::Refund, "M000001", "D1", Some(1_000), None);
    refund.request_id = Some(Bytes::from_static(b"R1"));
    assert_result(&c.call(refund.clone()).await, ResultCode::Approved);
    env.stop().await;

    // Same journal, fresh hosts (their records start empty): state comes from the journal alone.
    let env = Env::start(opts).await;
    let mut c = env.client().await;
    let again = c.call(auth).await;
    assert_result(&again, ResultCode::Approved);
    assert_eq!(
        (again.server_txn_id, again.approval_code.clone()),
        (first.server_txn_id, first.approval_code.clone())
    );
    assert_eq!(
        env.host_authorizations("van", "D1"),
        0,
        "the retry went upstream again"
    );
    let inq = c
        .call(request(TxnKind::Inquiry, "M000001", "D1", None, None))
        .await;
    assert_eq!(
        (inq.captured_amount, inq.refunded_amount),
        (Some(5_000), Some(1_000))
    );
    // The refund retried is the same refund; a too-large one is still refused.
    assert_result(&c.call(refund).await, ResultCode::Approved);
    let mut big = request(TxnKind::Refund, "M000001", "D1", Some(4_001), None);
    big.request_id = Some(Bytes::from_static(b"R2"));
    assert_result(&c.call(big).await, ResultCode::AmountExceedsAvailable);
    // New orders get new ids.
    let next = c
        .call(request(
            TxnKind::Authorize,
            "M000001",
            "D2",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&next, ResultCode::Approved);
    assert_ne!(next.server_txn_id, first.server_txn_id);
    env.stop().await;
}

#[actix::test]
async fn the_query_store_holds_answers_with_masked_pans_only() {
    let mut env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let a = c
        .call(request(
            TxnKind::Sale,
            "M000001",
            "Q1",
            Some(2_500),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::Approved);
    let mut refund = request(TxnKind::Refund, "M000001", "Q1", Some(500), None);
    refund.request_id = Some(Bytes::from_static(b"R1"));
    assert_result(&c.call(refund).await, ResultCode::Approved);
    env.stop_router().await;
    let reader = paymesh_store::Store::reader(&env.store_path).unwrap();
    let row = reader
        .by_order("M000001", "Q1")
        .unwrap()
        .expect("order in the store");
    assert_eq!(row.server_txn_id, a.server_txn_id.unwrap() as i64);
    assert_eq!(
        (row.captured_amount, row.refunded_amount),
        (Some(2_500), Some(500))
    );
    assert_eq!(row.masked_pan.as_deref(), Some("411111******1111"));
    assert!(reader.merchant("M000001").unwrap().is_some());
    // No full PAN anywhere in the database file.
    let bytes = std::fs::read(&env.store_path).unwrap();
    assert!(
        !bytes.windows(16).any(|w| w == VAN_PAN.as_bytes()),
        "full PAN in the store file"
    );
}

/// Segment and checkpoint files in a journal directory.
fn journal_files(dir: &std::path::Path) -> (usize, usize) {
    let names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let count = |suffix: &str| names.iter().filter(|n| n.ends_with(suffix)).count();
    (count(".seg"), count(".snap"))
}

#[actix::test]
async fn checkpoints_bound_the_journal_and_the_store_is_rebuilt_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let journal_dir = dir.path().join("journal");
    let opts = EnvOptions {
        journal_dir: Some(journal_dir.clone()),
        // A checkpoint every 40 records, 8 KiB segments, one closed segment kept.
        journal_toml: "checkpoint_records = 40\nsegment_bytes_max = 8192\nsegments_retained = 1\n"
            .into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts.clone()).await;
    let mut c = env.client().await;
    const ORDERS: usize = 240;
    let mut first = Vec::new();
    for i in 0..ORDERS {
        let kind = if i % 2 == 0 {
            TxnKind::Authorize
        } else {
            TxnKind::Sale
        };
        let r = request(
            kind,
            "M000001",
            &format!("K{i}"),
            Some(1_000 + 10 * i as u64),
            Some(card(VAN_PAN)),
        );
        let a = c.call(r.clone()).await;
        assert_result(&a, ResultCode::Approved);
        first.push((r, a));
    }
    // Wait for the checkpointer (it polls every 50 ms) to have filed one.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while journal_files(&journal_dir).1 == 0 && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (segments, snapshots) = journal_files(&journal_dir);
    assert_eq!(snapshots, 1, "one checkpoint, older ones deleted");
    // ~480 records of ~250 bytes are ~15 segments of 8 KiB without retention.
    assert!(
        segments <= 4,
        "retention keeps the journal bounded: {segments} segments"
    );
    env.stop().await;

    // A new environment has a new, empty query store: start-up rebuilds it from the checkpoint
    // and the records after it.
    let mut env = Env::start(opts).await;
    let mut c = env.client().await;
    for (r, a) in first.iter().step_by(37) {
        let again = c.call(r.clone()).await;
        assert_eq!(
            (
                again.result,
                again.server_txn_id,
                again.approval_code.clone()
            ),
            (a.result, a.server_txn_id, a.approval_code.clone())
        );
    }
    let inquiry = c
        .call(request(TxnKind::Inquiry, "M000001", "K1", None, None))
        .await;
    assert_eq!(inquiry.captured_amount, Some(1_010));
    for i in 0..ORDERS {
        assert_eq!(
            env.host_authorizations("van", &format!("K{i}")),
            0,
            "K{i} went upstream again after the restart"
        );
    }
    env.stop_router().await;
    let reader = paymesh_store::Store::reader(&env.store_path).unwrap();
    assert_eq!(reader.count().unwrap(), ORDERS as u64);
    let row = reader.by_order("M000001", "K1").unwrap().unwrap();
    assert_eq!(row.captured_amount, Some(1_010));
}
