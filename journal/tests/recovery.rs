//! Recovery on real files: reopen after clean runs, torn tails, corruption in the middle, missing
//! segments.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;

use bytes::Bytes;
use common::{append_range, assert_records, flip_byte, open, segments, small_config};
use paymesh_journal::{CorruptReason, Journal, JournalError, Lsn, encoded_len};

#[test]
fn fresh_directory_is_created_empty() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("a").join("journal");
    let (journal, recovered) = open(&small_config(&dir));
    assert_eq!(recovered.snapshot, None);
    assert!(recovered.records.is_empty());
    assert_eq!(recovered.truncated_tail_bytes, 0);
    assert_eq!(recovered.next_lsn, Lsn(1));
    assert_eq!(journal.next_lsn(), Lsn(1));
    assert_eq!(segments(&dir).len(), 1);
}

#[test]
fn records_round_trip_across_rotations_and_reopens() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 1001);
    let stats = journal.stats();
    assert_eq!(stats.records, 1000);
    assert_eq!(stats.fsyncs, stats.batches);
    drop(journal);
    let files = segments(temp.path());
    assert!(
        files.len() > 10,
        "expected many rotations, got {}",
        files.len()
    );
    for file in &files {
        // A segment passes segment_bytes_max by at most one batch.
        assert!(fs::metadata(file).unwrap().len() < 4096 + 7 * encoded_len(200) as u64);
    }

    let (mut journal, recovered) = open(&config);
    assert_records(&recovered.records, 1, 1000);
    assert_eq!(recovered.next_lsn, Lsn(1001));
    assert_eq!(recovered.truncated_tail_bytes, 0);
    append_range(&mut journal, 1001, 1501);
    drop(journal);

    let (_, recovered) = open(&config);
    assert_records(&recovered.records, 1, 1500);
    assert_eq!(recovered.next_lsn, Lsn(1501));
}

#[test]
fn empty_append_is_a_barrier_returning_the_last_lsn() {
    let temp = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(&small_config(temp.path()));
    assert_eq!(journal.append(&[]).unwrap(), Lsn(0));
    append_range(&mut journal, 1, 4);
    assert_eq!(journal.append(&[]).unwrap(), Lsn(3));
}

#[test]
fn last_segment_cut_mid_record_is_truncated_and_reported() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 301);
    drop(journal);
    let last = segments(temp.path()).pop().unwrap();
    let full = fs::metadata(&last).unwrap().len();
    let last_record = encoded_len(common::payload(300).len()) as u64;
    fs::File::options()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(full - 5)
        .unwrap();

    let (mut journal, recovered) = open(&config);
    assert_eq!(recovered.truncated_tail_bytes, last_record - 5);
    assert_records(&recovered.records, 1, 299);
    assert_eq!(recovered.next_lsn, Lsn(300));
    assert_eq!(fs::metadata(&last).unwrap().len(), full - last_record);
    // Appending resumes where the valid records end, and the log reads back cleanly.
    append_range(&mut journal, 300, 321);
    drop(journal);
    let (_, recovered) = open(&config);
    assert_eq!(recovered.truncated_tail_bytes, 0);
    assert_records(&recovered.records, 1, 320);
}

#[test]
fn checksum_failure_in_the_last_record_is_a_torn_tail() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 51);
    drop(journal);
    let last = segments(temp.path()).pop().unwrap();
    let full = fs::metadata(&last).unwrap().len();
    flip_byte(&last, full - 1);
    // Zeros after it, as a file extended by a crash may show.
    let mut bytes = fs::read(&last).unwrap();
    bytes.extend_from_slice(&[0; 512]);
    fs::write(&last, bytes).unwrap();

    let (_, recovered) = open(&config);
    let last_record = encoded_len(common::payload(50).len()) as u64;
    assert_eq!(recovered.truncated_tail_bytes, last_record + 512);
    assert_records(&recovered.records, 1, 49);
}

/// Writes `count` records of the same size in one segment and returns the record size.
fn same_size_records(journal: &mut Journal, count: u64) -> u64 {
    for index in 1..=count {
        journal
            .append(&[(1, Bytes::from(vec![index as u8; 40]))])
            .unwrap();
    }
    encoded_len(40) as u64
}

#[test]
fn flipped_byte_in_the_middle_of_the_last_segment_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    let size = same_size_records(&mut journal, 20);
    drop(journal);
    let segment = segments(temp.path()).pop().unwrap();
    flip_byte(&segment, 9 * size + 20);

    match Journal::open(config.clone()) {
        Err(JournalError::Corrupt {
            file,
            offset,
            reason,
        }) => {
            assert_eq!(file, segment);
            assert_eq!(offset, 9 * size);
            assert!(
                matches!(reason, CorruptReason::ChecksumMismatch { .. }),
                "{reason}"
            );
        }
        other => panic!("expected Corrupt, got {other:?}"),
    }
    // Nothing was truncated: the operator still has every byte.
    assert_eq!(fs::metadata(&segment).unwrap().len(), 20 * size);
}

#[test]
fn damaged_length_in_the_middle_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    let size = same_size_records(&mut journal, 20);
    drop(journal);
    let segment = segments(temp.path()).pop().unwrap();
    // The high byte of the length: the record now claims more than RECORD_BYTES_MAX.
    flip_byte(&segment, 5 * size);
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(&error, JournalError::Corrupt { file, offset, .. } if *file == segment && *offset == 5 * size),
        "{error}"
    );
}

#[test]
fn flipped_byte_in_an_earlier_segment_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 501);
    drop(journal);
    let files = segments(temp.path());
    let victim = &files[files.len() / 2];
    let length = fs::metadata(victim).unwrap().len();
    flip_byte(victim, length / 2);

    let error = Journal::open(config).unwrap_err();
    let JournalError::Corrupt { file, offset, .. } = &error else {
        panic!("{error}")
    };
    assert_eq!(file, victim);
    assert!(*offset <= length / 2 && length / 2 - *offset < encoded_len(200) as u64);
    assert!(
        error.to_string().contains(&format!("at byte {offset}")),
        "{error}"
    );
}

#[test]
fn cut_tail_of_an_earlier_segment_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 501);
    drop(journal);
    let files = segments(temp.path());
    let victim = &files[1];
    let length = fs::metadata(victim).unwrap().len();
    fs::File::options()
        .write(true)
        .open(victim)
        .unwrap()
        .set_len(length - 3)
        .unwrap();
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(&error, JournalError::Corrupt { file, reason: CorruptReason::Truncated { .. }, .. } if file == victim),
        "{error}"
    );
}

#[test]
fn missing_segment_stops_start_up() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 501);
    drop(journal);
    let files = segments(temp.path());
    fs::remove_file(&files[2]).unwrap();
    let error = Journal::open(config.clone()).unwrap_err();
    assert!(
        matches!(&error, JournalError::Corrupt { file, reason: CorruptReason::MissingSegment { .. }, .. } if *file == files[3]),
        "{error}"
    );
    fs::remove_file(&files[0]).unwrap();
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(
            &error,
            JournalError::Corrupt {
                reason: CorruptReason::MissingSegment { expected: 1 },
                ..
            }
        ),
        "{error}"
    );
}

#[test]
fn invalid_configuration_is_refused() {
    let temp = tempfile::tempdir().unwrap();
    let mut config = small_config(temp.path());
    config.batch_records_max = 0;
    assert!(matches!(
        Journal::open(config),
        Err(JournalError::InvalidConfig(_))
    ));
}

#[test]
fn oversize_records_are_refused_before_writing() {
    let temp = tempfile::tempdir().unwrap();
    let (mut journal, _) = open(&small_config(temp.path()));
    let huge = Bytes::from(vec![0; paymesh_journal::RECORD_PAYLOAD_BYTES_MAX + 1]);
    assert!(matches!(
        journal.append(&[(1, huge)]),
        Err(JournalError::RecordTooLarge { .. })
    ));
    let many: Vec<_> = (0..5000).map(|_| (1, Bytes::new())).collect();
    assert!(matches!(
        journal.append(&many),
        Err(JournalError::SubmissionTooLarge { .. })
    ));
    assert_eq!(journal.next_lsn(), Lsn(1));
}

#[test]
fn open_with_visits_the_same_records_as_open() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 401);
    journal.checkpoint(Lsn(150), b"state").unwrap();
    drop(journal);
    let last = segments(temp.path()).pop().unwrap();
    let length = fs::metadata(&last).unwrap().len();
    fs::File::options()
        .write(true)
        .open(&last)
        .unwrap()
        .set_len(length - 1)
        .unwrap();

    let mut visited = Vec::new();
    let (_, recovered) = Journal::open_with(config.clone(), |view| {
        visited.push(paymesh_journal::Record {
            lsn: view.lsn,
            kind: view.kind,
            payload: Bytes::copy_from_slice(view.payload),
        });
    })
    .unwrap();
    assert!(recovered.records.is_empty());
    assert_eq!(recovered.snapshot, Some((Lsn(150), b"state".to_vec())));
    assert!(recovered.truncated_tail_bytes > 0);
    assert_eq!(recovered.next_lsn, Lsn(400));
    assert_records(&visited, 151, 399);
    let (_, reopened) = open(&config);
    assert_eq!(reopened.records, visited);
}

#[test]
fn open_with_snapshot_hands_the_snapshot_over_before_the_first_record() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 301);
    journal.checkpoint(Lsn(120), b"state at 120").unwrap();
    drop(journal);

    // One log of events, in the order recovery produced them.
    let events = std::cell::RefCell::new(Vec::new());
    let (_, recovered) = Journal::open_with_snapshot(
        config.clone(),
        |lsn, state| events.borrow_mut().push((lsn.0, state.to_vec())),
        |view| events.borrow_mut().push((view.lsn.0, Vec::new())),
    )
    .unwrap();
    let events = events.into_inner();
    assert_eq!(events.first(), Some(&(120, b"state at 120".to_vec())));
    let lsns: Vec<u64> = events.iter().skip(1).map(|(lsn, _)| *lsn).collect();
    assert_eq!(lsns, (121..=300).collect::<Vec<_>>());
    // The state bytes are not kept twice.
    assert_eq!(recovered.snapshot, Some((Lsn(120), Vec::new())));
    assert_eq!(recovered.next_lsn, Lsn(301));
}

#[test]
fn empty_segment_left_by_a_crash_after_rotation_is_reused() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 101);
    drop(journal);
    let empty = temp.path().join("journal-00000000000000000101.seg");
    fs::File::create(&empty).unwrap();
    let (mut journal, recovered) = open(&config);
    assert_records(&recovered.records, 1, 100);
    append_range(&mut journal, 101, 111);
    drop(journal);
    assert!(fs::metadata(&empty).unwrap().len() > 0);
    let (_, recovered) = open(&config);
    assert_records(&recovered.records, 1, 110);
}
