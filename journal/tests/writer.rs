//! Group commit through the writer thread, on real files with real fsync.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::{open, relaxed, small_config};
use crossbeam::channel;
use paymesh_journal::{BATCH_HISTOGRAM_BUCKETS, JournalConfig, JournalError, Lsn};

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn many_threads_commit_in_groups_and_recover_everything() {
    let temp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        segment_bytes_max: 64 * 1024,
        ..small_config(temp.path())
    };
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    let (done_sender, done_receiver) = channel::unbounded();
    let threads: Vec<_> = (0..4_u64)
        .map(|thread| {
            let handle = handle.clone();
            let done_sender = done_sender.clone();
            std::thread::spawn(move || {
                for sequence in 0..300_u64 {
                    let records: Vec<_> = (0..1 + sequence % 3)
                        .map(|part| {
                            let tag = thread << 32 | sequence << 8 | part;
                            (thread as u8, Bytes::from(tag.to_be_bytes().to_vec()))
                        })
                        .collect();
                    let count = records.len() as u64;
                    let sender = done_sender.clone();
                    let on_durable = Box::new(move |result: Result<Lsn, JournalError>| {
                        sender.send((thread, sequence, count, result)).unwrap();
                    });
                    // The queue is large enough here; Busy would be a failure of this test.
                    handle.submit(records, on_durable).unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let mut last_per_thread = [0_u64; 4];
    let mut total_records = 0;
    for _ in 0..1200 {
        let (thread, _, count, result) = done_receiver.recv_timeout(WAIT).unwrap();
        let lsn = result.unwrap();
        assert!(
            lsn.0 > last_per_thread[thread as usize],
            "a thread's submissions stay in order"
        );
        last_per_thread[thread as usize] = lsn.0;
        total_records += count;
    }
    handle.shutdown().unwrap();
    let stats = handle.stats();
    assert_eq!(stats.records, total_records);
    assert_eq!(stats.submissions, 1200);
    assert_eq!(stats.fsyncs, stats.batches);
    assert!(stats.batches <= 1200);
    assert_eq!(
        stats.batch_records_histogram.iter().sum::<u64>(),
        stats.batches
    );
    assert_eq!(stats.batch_records_histogram.len(), BATCH_HISTOGRAM_BUCKETS);
    assert!(stats.fsync_micros_max > 0 && stats.fsync_micros_sum >= stats.fsync_micros_max);

    let (_, recovered) = open(&config);
    assert_eq!(recovered.records.len() as u64, total_records);
    assert_eq!(recovered.next_lsn, Lsn(total_records + 1));
    let mut seen: Vec<u64> = recovered
        .records
        .iter()
        .map(|record| u64::from_be_bytes(record.payload[..].try_into().unwrap()))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(
        seen.len() as u64,
        total_records,
        "every record exactly once"
    );
}

#[test]
fn callbacks_run_in_lsn_order_after_the_batch_is_written() {
    let temp = tempfile::tempdir().unwrap();
    let (journal, _) = open(&small_config(temp.path()));
    let handle = journal.start_writer().unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    for index in 0..500_u64 {
        let order = order.clone();
        let record = vec![(1, Bytes::from(vec![index as u8; 30]))];
        handle
            .submit(
                record,
                Box::new(move |result| order.lock().unwrap().push(result.unwrap())),
            )
            .unwrap();
    }
    handle.shutdown().unwrap();
    let order = order.lock().unwrap();
    assert_eq!(order.len(), 500);
    assert!(order.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(order.last(), Some(&Lsn(500)));
}

/// Blocks the writer inside the first callback, so that the queue fills up.
fn blocked_writer(config: JournalConfig) -> (paymesh_journal::JournalHandle, channel::Sender<()>) {
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    let (release_sender, release_receiver) = channel::bounded::<()>(1);
    let (entered_sender, entered_receiver) = channel::bounded::<()>(1);
    let block = Box::new(move |_: Result<Lsn, JournalError>| {
        entered_sender.send(()).unwrap();
        release_receiver.recv().unwrap();
    });
    handle
        .submit(vec![(1, Bytes::from_static(b"first"))], block)
        .unwrap();
    entered_receiver.recv_timeout(WAIT).unwrap();
    (handle, release_sender)
}

#[test]
fn full_queue_answers_busy_at_once() {
    let temp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        queue_batches_max: 2,
        ..small_config(temp.path())
    };
    let (handle, release) = blocked_writer(config);
    let (done_sender, done_receiver) = channel::unbounded();
    for _ in 0..2 {
        let sender = done_sender.clone();
        let record = vec![(1, Bytes::from_static(b"queued"))];
        handle
            .submit(record, Box::new(move |result| sender.send(result).unwrap()))
            .unwrap();
    }
    let refused = handle.submit(
        vec![(1, Bytes::from_static(b"refused"))],
        Box::new(|_| panic!("a refused submission's callback must not run")),
    );
    assert!(matches!(refused, Err(JournalError::Busy)), "{refused:?}");
    assert!(matches!(
        handle.checkpoint(Lsn(1), Bytes::new(), Box::new(|_| {})),
        Err(JournalError::Busy)
    ));
    assert_eq!(handle.stats().busy, 2);
    release.send(()).unwrap();
    let lsns: Vec<_> = (0..2)
        .map(|_| done_receiver.recv_timeout(WAIT).unwrap().unwrap())
        .collect();
    assert_eq!(lsns, [Lsn(2), Lsn(3)]);
    handle.shutdown().unwrap();
}

#[test]
fn a_reservation_holds_its_room_until_used_or_dropped() {
    let temp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        queue_batches_max: 2,
        ..small_config(temp.path())
    };
    let (handle, release) = blocked_writer(config);
    let record = || vec![(1, Bytes::from_static(b"reserved"))];
    let bytes = handle.submission_bytes(&record()).unwrap();
    let first = handle.reserve(bytes).unwrap();
    let second = handle.reserve(bytes).unwrap();
    // Both places are held: plain submissions and further reservations are refused at once...
    assert!(matches!(handle.reserve(bytes), Err(JournalError::Busy)));
    assert!(matches!(
        handle.submit(record(), Box::new(|_| {})),
        Err(JournalError::Busy)
    ));
    // ...a dropped reservation gives its place back...
    drop(second);
    let third = handle.reserve(bytes).unwrap();
    // ...and a reserved submission is never refused, though nothing else fits.
    assert!(matches!(handle.reserve(bytes), Err(JournalError::Busy)));
    let (done_sender, done_receiver) = channel::unbounded();
    for reservation in [first, third] {
        let sender = done_sender.clone();
        handle
            .submit_reserved(
                reservation,
                record(),
                Box::new(move |r| sender.send(r).unwrap()),
            )
            .unwrap();
    }
    // More than was reserved is refused without queueing anything.
    release.send(()).unwrap();
    let lsns: Vec<_> = (0..2)
        .map(|_| done_receiver.recv_timeout(WAIT).unwrap().unwrap())
        .collect();
    assert_eq!(lsns, [Lsn(2), Lsn(3)]);
    let small = handle.reserve(1).unwrap();
    assert!(matches!(
        handle.submit_reserved(small, record(), Box::new(|_| {})),
        Err(JournalError::Busy)
    ));
    handle.shutdown().unwrap();
    assert_eq!(handle.stats().records, 3);
}

#[test]
fn queued_bytes_limit_answers_busy() {
    let temp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        batch_bytes_max: 4096,
        queue_bytes_max: 4096,
        ..small_config(temp.path())
    };
    let (handle, release) = blocked_writer(config);
    let big = || vec![(1, Bytes::from(vec![7; 3000]))];
    handle
        .submit(big(), Box::new(|result| assert!(result.is_ok())))
        .unwrap();
    assert!(matches!(
        handle.submit(big(), Box::new(|_| {})),
        Err(JournalError::Busy)
    ));
    release.send(()).unwrap();
    handle.shutdown().unwrap();
    assert_eq!(handle.stats().records, 2);
}

#[test]
fn shutdown_completes_queued_work_then_refuses() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    let (sender, receiver) = channel::unbounded();
    for _ in 0..50 {
        let sender = sender.clone();
        let record = vec![(2, Bytes::from_static(b"before shutdown"))];
        handle
            .submit(record, Box::new(move |result| sender.send(result).unwrap()))
            .unwrap();
    }
    handle.shutdown().unwrap();
    assert_eq!(receiver.try_iter().filter(Result::is_ok).count(), 50);
    let late = handle.submit(vec![(2, Bytes::new())], Box::new(|_| {}));
    assert!(matches!(late, Err(JournalError::Closed)), "{late:?}");
    handle.shutdown().unwrap();
    let (_, recovered) = open(&config);
    assert_eq!(recovered.records.len(), 50);
}

#[test]
fn checkpoint_through_the_handle_is_ordered_with_submissions() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    for index in 0..100_u8 {
        handle
            .submit(vec![(1, Bytes::from(vec![index; 50]))], Box::new(|_| {}))
            .unwrap();
    }
    let (sender, receiver) = channel::bounded(1);
    let state = Bytes::from_static(b"shard state at 100");
    handle
        .checkpoint(
            Lsn(100),
            state,
            Box::new(move |result| sender.send(result).unwrap()),
        )
        .unwrap();
    receiver.recv_timeout(WAIT).unwrap().unwrap();
    handle
        .submit(vec![(1, Bytes::from_static(b"after"))], Box::new(|_| {}))
        .unwrap();
    handle.shutdown().unwrap();
    let (_, recovered) = open(&config);
    assert_eq!(
        recovered.snapshot,
        Some((Lsn(100), b"shard state at 100".to_vec()))
    );
    assert_eq!(recovered.records.len(), 1);
    assert_eq!(recovered.records[0].lsn, Lsn(101));
}

#[test]
fn oversize_submissions_are_refused_by_submit() {
    let temp = tempfile::tempdir().unwrap();
    let config = JournalConfig {
        batch_records_max: 8,
        ..small_config(temp.path())
    };
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    let nine: Vec<_> = (0..9).map(|_| (1, Bytes::new())).collect();
    assert!(matches!(
        handle.submit(nine, Box::new(|_| {})),
        Err(JournalError::SubmissionTooLarge { records: 9, .. })
    ));
    let huge = vec![(
        1,
        Bytes::from(vec![0; paymesh_journal::RECORD_PAYLOAD_BYTES_MAX + 1]),
    )];
    assert!(matches!(
        handle.submit(huge, Box::new(|_| {})),
        Err(JournalError::RecordTooLarge { .. })
    ));
    handle.shutdown().unwrap();
}

#[test]
fn relaxed_mode_never_fsyncs_and_a_panicking_callback_is_contained() {
    let temp = tempfile::tempdir().unwrap();
    let config = relaxed(small_config(temp.path()));
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    handle
        .submit(
            vec![(1, Bytes::from_static(b"x"))],
            Box::new(|_| panic!("callback bug")),
        )
        .unwrap();
    let (sender, receiver) = channel::bounded(1);
    let record = vec![(1, Bytes::from_static(b"y"))];
    handle
        .submit(record, Box::new(move |result| sender.send(result).unwrap()))
        .unwrap();
    assert_eq!(receiver.recv_timeout(WAIT).unwrap().unwrap(), Lsn(2));
    handle.shutdown().unwrap();
    let stats = handle.stats();
    assert_eq!((stats.fsyncs, stats.records), (0, 2));
}

#[test]
fn a_refused_checkpoint_through_the_handle_leaves_no_file() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (journal, _) = open(&config);
    let handle = journal.start_writer().unwrap();
    let (sender, receiver) = channel::bounded(1);
    handle
        .submit(
            vec![(1, Bytes::from_static(b"one"))],
            Box::new(move |r| sender.send(r).unwrap()),
        )
        .unwrap();
    receiver.recv_timeout(WAIT).unwrap().unwrap();
    // LSN 50 was never written: the snapshot the handle wrote must not survive the refusal.
    let (sender, receiver) = channel::bounded(1);
    handle
        .checkpoint(
            Lsn(50),
            Bytes::from_static(b"from the future"),
            Box::new(move |result| sender.send(result).unwrap()),
        )
        .unwrap();
    assert!(matches!(
        receiver.recv_timeout(WAIT).unwrap(),
        Err(JournalError::InvalidCheckpoint { .. })
    ));
    handle.shutdown().unwrap();
    let files: Vec<_> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        files.iter().all(|n| !n.starts_with("checkpoint-")),
        "left behind: {files:?}"
    );
    let (_, recovered) = open(&config);
    assert_eq!(recovered.snapshot, None);
}
