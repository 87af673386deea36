//! Checkpoints on real files: recovery starts from the snapshot, retention deletes what it covers.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;

use common::{append_range, assert_records, flip_byte, open, segments, small_config, snapshots};
use paymesh_journal::{CorruptReason, Journal, JournalError, Lsn};

/// First LSN of a segment, from its name.
fn first_lsn(path: &std::path::Path) -> u64 {
    let name = path.file_name().unwrap().to_str().unwrap();
    name.trim_start_matches("journal-")
        .trim_end_matches(".seg")
        .parse()
        .unwrap()
}

#[test]
fn reopen_returns_the_snapshot_and_only_later_records() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 601);
    let before = segments(temp.path());
    journal.checkpoint(Lsn(400), b"state after 400").unwrap();
    append_range(&mut journal, 601, 651);
    assert_eq!(journal.stats().checkpoints, 1);
    drop(journal);

    let (_, recovered) = open(&config);
    assert_eq!(
        recovered.snapshot,
        Some((Lsn(400), b"state after 400".to_vec()))
    );
    assert_records(&recovered.records, 401, 650);
    assert_eq!(recovered.next_lsn, Lsn(651));

    // Segments wholly at or below 400 are gone except the newest one (segments_retained_max = 1).
    let after = segments(temp.path());
    let covered_before: Vec<_> = before
        .windows(2)
        .filter(|pair| first_lsn(&pair[1]) <= 401)
        .map(|pair| pair[0].clone())
        .collect();
    assert!(
        covered_before.len() > 3,
        "test needs several covered segments"
    );
    for deleted in &covered_before[..covered_before.len() - 1] {
        assert!(!deleted.exists(), "{} should be deleted", deleted.display());
    }
    assert!(covered_before.last().unwrap().exists());
    assert_eq!(
        first_lsn(&after[0]),
        first_lsn(covered_before.last().unwrap())
    );
}

#[test]
fn retention_bounds_the_disk_footprint() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = small_config(temp.path());
    config.segments_retained_max = 0;
    let (mut journal, _) = open(&config);
    for round in 0..20_u64 {
        append_range(&mut journal, round * 100 + 1, round * 100 + 101);
        journal
            .checkpoint(Lsn(round * 100 + 100), &round.to_be_bytes())
            .unwrap();
        // The active segment, plus at most the one holding the checkpoint's LSN.
        assert!(segments(temp.path()).len() <= 2, "round {round}");
        assert_eq!(snapshots(temp.path()).len(), 1);
    }
    assert!(journal.stats().segments_deleted > 20);
    drop(journal);
    let (_, recovered) = open(&config);
    assert_eq!(
        recovered.snapshot,
        Some((Lsn(2000), 19_u64.to_be_bytes().to_vec()))
    );
    assert!(recovered.records.is_empty());
    assert_eq!(recovered.next_lsn, Lsn(2001));
}

#[test]
fn checkpoint_at_the_last_lsn_then_reopen_and_append() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 101);
    journal.checkpoint(Lsn(100), b"all").unwrap();
    drop(journal);
    let (mut journal, recovered) = open(&config);
    assert_eq!(recovered.snapshot.as_ref().unwrap().0, Lsn(100));
    assert!(recovered.records.is_empty());
    append_range(&mut journal, 101, 111);
    drop(journal);
    let (_, recovered) = open(&config);
    assert_records(&recovered.records, 101, 110);
}

#[test]
fn invalid_checkpoints_are_refused() {
    let temp = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(&small_config(temp.path()));
    append_range(&mut journal, 1, 11);
    assert!(matches!(
        journal.checkpoint(Lsn(11), b"future"),
        Err(JournalError::InvalidCheckpoint { lsn: 11, .. })
    ));
    journal.checkpoint(Lsn(8), b"eight").unwrap();
    assert!(matches!(
        journal.checkpoint(Lsn(7), b"older"),
        Err(JournalError::InvalidCheckpoint { lsn: 7, .. })
    ));
    journal.checkpoint(Lsn(10), b"ten").unwrap();
    let names = snapshots(temp.path());
    assert_eq!(names.len(), 1, "the older snapshot is deleted");
    assert!(names[0].ends_with("checkpoint-00000000000000000010.snap"));
}

#[test]
fn damaged_snapshot_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 11);
    journal.checkpoint(Lsn(5), b"snapshot state").unwrap();
    drop(journal);
    let snapshot = snapshots(temp.path()).pop().unwrap();
    flip_byte(&snapshot, 30);
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(&error, JournalError::Corrupt { file, reason: CorruptReason::SnapshotChecksum, .. } if *file == snapshot),
        "{error}"
    );
}

#[test]
fn unfinished_checkpoint_is_deleted_at_open() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 11);
    drop(journal);
    let temporary = temp.path().join("checkpoint-00000000000000000009.snap.tmp");
    fs::write(&temporary, b"half written").unwrap();
    let (_, recovered) = open(&config);
    assert!(!temporary.exists());
    assert_eq!(recovered.snapshot, None);
    assert_records(&recovered.records, 1, 10);
}

#[test]
fn snapshot_beyond_the_end_of_the_log_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 11);
    journal.checkpoint(Lsn(10), b"ten").unwrap();
    drop(journal);
    // Lose the last record after the checkpoint was taken (only a broken disk or a relaxed
    // journal can do this).
    let last = segments(temp.path()).pop().unwrap();
    let length = fs::metadata(&last).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(length - 3)
        .unwrap();
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(
            &error,
            JournalError::Corrupt {
                reason: CorruptReason::LogEndsBeforeSnapshot {
                    snapshot_lsn: 10,
                    log_end: 9
                },
                ..
            }
        ),
        "{error}"
    );
}
