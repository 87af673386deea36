//! The query store against real SQLite files in temporary directories.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::Path;

use paymesh_codecs::message::{TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;
use paymesh_store::schema::SCHEMA_VERSION;
use paymesh_store::{
    LIST_ROWS_MAX, MerchantRow, NetworkRow, Store, StoreConfig, StoreError, StoreHandle, TxnRow,
};

fn config(path: &Path) -> StoreConfig {
    StoreConfig {
        path: path.to_path_buf(),
        queue_max: 10_000,
        batch_max: 256,
        flush_interval_ms: 5,
    }
}

fn answer(txn_id: u64, merchant: &str, order: &str) -> TxnAnswer {
    let mut a = TxnAnswer::new(TxnKind::Authorize, ResultCode::Approved);
    a.server_txn_id = Some(txn_id);
    a.merchant_id = Some(merchant.to_owned().into());
    a.order_id = Some(order.to_owned().into());
    a.amount = Some(1_500);
    a.currency = Some(978);
    a.state = Some(1);
    a.authorized_amount = Some(1_500);
    a.captured_amount = Some(0);
    a.refunded_amount = Some(0);
    a.approval_code = Some("A1B2C3".into());
    a.rrn = Some("123456789012".into());
    a.upstream_response_code = Some("00".into());
    a.masked_pan = Some("411111******1111".into());
    a
}

fn row(txn_id: u64, merchant: &str, order: &str, at_ms: u64) -> TxnRow {
    TxnRow::from_answer(&answer(txn_id, merchant, order), at_ms).unwrap()
}

fn open(path: &Path) -> StoreHandle {
    Store::open(config(path)).unwrap()
}

#[test]
fn offered_rows_are_readable_after_flush() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    let rows: Vec<TxnRow> = (1..=100)
        .map(|i| row(i, "m1", &format!("o{i}"), 1_000 + i))
        .collect();
    assert!(store.offer(rows[..60].to_vec()));
    assert!(store.offer(rows[60..].to_vec()));
    store.flush().unwrap();

    let reader = Store::reader(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 100);
    assert_eq!(reader.by_txn_id(42).unwrap().as_ref(), Some(&rows[41]));
    assert_eq!(
        reader.by_order("m1", "o7").unwrap().as_ref(),
        Some(&rows[6])
    );
    assert_eq!(reader.by_order("m1", "nope").unwrap(), None);
    let stats = store.stats();
    assert_eq!(stats.rows_written, 100);
    assert_eq!(
        (stats.dropped, stats.rejected_pan, stats.rows_failed),
        (0, 0, 0)
    );
    assert!(stats.batches >= 1);
    assert_eq!(store.queued_rows(), 0);
    store.shutdown();
}

#[test]
fn upserts_keep_the_newest_state() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    let authorized = row(7, "m1", "o1", 1_000);
    let mut captured = answer(7, "m1", "o1");
    captured.kind = TxnKind::Capture;
    captured.state = Some(2);
    captured.captured_amount = Some(1_500);
    captured.approval_code = None; // not in this answer: the stored one stays
    let captured = TxnRow::from_answer(&captured, 2_000).unwrap();
    // A replay of the authorization, older than the capture, arrives last.
    assert!(store.offer(vec![authorized.clone(), captured]));
    assert!(store.offer(vec![authorized]));
    store.flush().unwrap();

    let got = Store::reader(&path).unwrap().by_txn_id(7).unwrap().unwrap();
    assert_eq!(got.kind, "CAPTURE");
    assert_eq!(got.state, Some(2));
    assert_eq!(got.captured_amount, Some(1_500));
    assert_eq!(got.approval_code.as_deref(), Some("A1B2C3"));
    assert_eq!(got.updated_at_ms, 2_000);
    let stats = store.stats();
    assert_eq!((stats.rows_written, stats.rows_stale), (2, 1));
    store.shutdown();
}

#[test]
fn a_newer_payment_under_the_same_order_replaces_the_older() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    // Declined payment 1 was forgotten by the switch; the retry became payment 2.
    assert!(store.offer(vec![row(1, "m1", "o1", 1_000), row(2, "m1", "o1", 2_000)]));
    // A late copy of payment 1 must not bring it back.
    assert!(store.offer(vec![row(1, "m1", "o1", 1_500)]));
    store.flush().unwrap();
    let reader = Store::reader(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 1);
    assert_eq!(
        reader.by_order("m1", "o1").unwrap().unwrap().server_txn_id,
        2
    );
    assert_eq!(reader.by_txn_id(1).unwrap(), None);
    assert_eq!(store.stats().rows_failed, 0);
    store.shutdown();
}

#[test]
fn a_full_pan_in_masked_pan_is_never_stored() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    let mut leaky = row(1, "m1", "o1", 1_000);
    leaky.masked_pan = Some("4111111111111111".into());
    let mut spaced = row(2, "m1", "o2", 1_000);
    spaced.masked_pan = Some("4111 1111 1111 1111".into());
    assert!(store.offer(vec![leaky, spaced, row(3, "m1", "o3", 1_000)]));
    store.flush().unwrap();

    let reader = Store::reader(&path).unwrap();
    assert_eq!(reader.by_txn_id(1).unwrap().unwrap().masked_pan, None);
    assert_eq!(reader.by_txn_id(2).unwrap().unwrap().masked_pan, None);
    assert_eq!(
        reader.by_txn_id(3).unwrap().unwrap().masked_pan.as_deref(),
        Some("411111******1111")
    );
    assert_eq!(store.stats().rejected_pan, 2);
    assert_eq!(store.stats().rows_written, 3);
    store.shutdown();
    // Nowhere in the files either (WAL checkpointed into the database at close).
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(!bytes.windows(16).any(|w| w == b"4111111111111111"));
    }
}

#[test]
fn a_full_queue_drops_without_blocking() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    // A long interval and a large batch keep the first rows pending in the writer: they
    // count as queued until committed, so the queue stays full until the flush.
    let store = Store::open(StoreConfig {
        path: path.clone(),
        queue_max: 4,
        batch_max: 1_000,
        flush_interval_ms: 60_000,
    })
    .unwrap();
    assert!(store.offer(vec![row(1, "m1", "o1", 1), row(2, "m1", "o2", 1)]));
    assert!(store.offer(vec![row(3, "m1", "o3", 1), row(4, "m1", "o4", 1)]));
    assert!(!store.offer(vec![row(5, "m1", "o5", 1)]));
    assert!(!store.offer(vec![row(6, "m1", "o6", 1), row(7, "m1", "o7", 1)]));
    assert_eq!(store.dropped(), 2);
    assert_eq!(store.stats().dropped_rows, 3);
    store.flush().unwrap();
    assert_eq!(store.queued_rows(), 0);
    assert!(store.offer(vec![row(8, "m1", "o8", 1)]));
    store.flush().unwrap();
    assert_eq!(Store::reader(&path).unwrap().count().unwrap(), 5);
    store.shutdown();
    assert!(!store.offer(vec![row(9, "m1", "o9", 1)]), "after shutdown");
    assert!(matches!(store.flush(), Err(StoreError::Closed)));
}

#[test]
fn offering_faster_than_the_writer_drops_and_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreConfig {
        path: dir.path().join("store.db"),
        queue_max: 64,
        batch_max: 64,
        flush_interval_ms: 0,
    })
    .unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let store = store.clone();
            // Built first, so the offers come back to back.
            let batches: Vec<Vec<TxnRow>> = (0..500u64)
                .map(|i| {
                    let id = t * 1_000_000 + i * 16;
                    (id..id + 16)
                        .map(|n| row(n, "m1", &n.to_string(), n))
                        .collect()
                })
                .collect();
            std::thread::spawn(move || {
                let mut refused = 0;
                for rows in batches {
                    refused += u64::from(!store.offer(rows));
                }
                refused
            })
        })
        .collect();
    let refused: u64 = threads.into_iter().map(|t| t.join().unwrap()).sum();
    store.flush().unwrap();
    let stats = store.stats();
    assert!(refused > 0 && stats.dropped == refused);
    assert_eq!(stats.rows_written + stats.dropped_rows, 4 * 500 * 16);
    store.shutdown();
}

#[test]
fn reopening_keeps_data_and_schema_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    assert!(store.offer(vec![row(1, "m1", "o1", 1_000)]));
    store
        .upsert_merchants(&[MerchantRow {
            id: "m1".into(),
            enabled: true,
            single_limit_minor: 100_000,
            daily_limit_minor: 1_000_000,
        }])
        .unwrap();
    store
        .upsert_networks(&[NetworkRow {
            id: "net1".into(),
            description: "test network".into(),
        }])
        .unwrap();
    store.shutdown();

    let store = open(&path);
    assert!(store.offer(vec![row(2, "m1", "o2", 2_000)]));
    store
        .upsert_merchants(&[MerchantRow {
            id: "m1".into(),
            enabled: false,
            single_limit_minor: 5,
            daily_limit_minor: 50,
        }])
        .unwrap();
    store.flush().unwrap();
    let reader = Store::reader(&path).unwrap();
    assert_eq!(reader.schema_version().unwrap(), SCHEMA_VERSION);
    assert_eq!(reader.count().unwrap(), 2);
    let merchant = reader.merchant("m1").unwrap().unwrap();
    assert!(!merchant.enabled);
    assert_eq!(merchant.daily_limit_minor, 50);
    assert_eq!(
        reader.network("net1").unwrap().unwrap().description,
        "test network"
    );
    let stats = store.stats();
    assert_eq!((stats.merchants_written, stats.networks_written), (1, 0));
    store.shutdown();
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    open(&path).shutdown();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE schema_version SET version = version + 1", [])
        .unwrap();
    let err = Store::open(config(&path)).unwrap_err();
    assert!(matches!(err, StoreError::SchemaVersion { found, .. } if found == SCHEMA_VERSION + 1));
    assert!(err.to_string().contains("newer PayMesh build"), "{err}");
    assert!(matches!(
        Store::reader(&path),
        Err(StoreError::SchemaVersion { .. })
    ));
}

#[test]
fn list_by_merchant_is_ordered_and_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = open(&path);
    // Offered out of order, two merchants, more rows than LIST_ROWS_MAX.
    let total = LIST_ROWS_MAX as u64 + 200;
    let rows: Vec<TxnRow> = (0..total)
        .map(|i| {
            let at = 10_000 + (i * 7919) % total;
            row(i + 1, "m1", &format!("o{i}"), at)
        })
        .chain((0..10).map(|i| row(100_000 + i, "m2", &format!("o{i}"), 10_000 + i)))
        .collect();
    assert!(store.offer(rows));
    store.flush().unwrap();
    let reader = Store::reader(&path).unwrap();

    let all = reader.list_by_merchant("m1", 0, usize::MAX).unwrap();
    assert_eq!(all.len(), LIST_ROWS_MAX);
    assert!(all.iter().all(|r| r.merchant_id == "m1"));
    assert!(
        all.windows(2)
            .all(|w| w[0].updated_at_ms <= w[1].updated_at_ms)
    );
    assert_eq!(all[0].updated_at_ms, 10_000);

    let recent = reader
        .list_by_merchant("m1", 10_000 + total as i64 - 5, 3)
        .unwrap();
    let times: Vec<i64> = recent.iter().map(|r| r.updated_at_ms).collect();
    let base = 10_000 + total as i64;
    assert_eq!(times, vec![base - 5, base - 4, base - 3]);
    assert_eq!(reader.list_by_merchant("m2", 0, 100).unwrap().len(), 10);
    assert!(reader.list_by_merchant("m3", 0, 100).unwrap().is_empty());
    store.shutdown();
}

#[test]
fn offer_wait_loses_nothing_when_the_queue_is_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.db");
    let store = Store::open(StoreConfig {
        path: path.clone(),
        queue_max: 8,
        batch_max: 8,
        flush_interval_ms: 1,
    })
    .unwrap();
    // As a rebuild would: more rows per call than the queue holds, and many calls.
    for chunk in 0..20u64 {
        let rows = (0..25)
            .map(|i| row(chunk * 100 + i + 1, "m1", &format!("o{chunk}-{i}"), 1))
            .collect();
        store.offer_wait(rows).unwrap();
    }
    store.flush().unwrap();
    assert_eq!(Store::reader(&path).unwrap().count().unwrap(), 500);
    assert_eq!(store.dropped(), 0);
    store.shutdown();
    assert!(matches!(
        store.offer_wait(vec![row(1, "m1", "x", 1)]),
        Err(StoreError::Closed)
    ));
}
