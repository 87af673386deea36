//! Journal append + commit through the writer thread: one submission of `BATCH` records of 200
//! bytes at a time, waiting until it is durable (`Fsync`: one `fdatasync` per submission) or merely
//! written (`Relaxed`, UNSAFE, no fsync). Throughput is in records. With one submission in flight
//! this measures what one batch costs; `journal-bench` measures group commit under concurrent
//! load.
//!
//! The journal lives under the system temp directory (same disk as the workspace here); a
//! checkpoint after each sample, outside the timing, keeps its disk footprint to a segment or two.
//!
//! `cargo bench -p paymesh-benches --bench journal -- --warm-up-time 1 --measurement-time 3`
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use paymesh_journal::{Durability, Journal, JournalConfig, JournalHandle, Lsn};

const RECORD_BYTES: usize = 200;

/// Submits `records` and waits for its `on_durable`; returns the last LSN.
fn commit(handle: &JournalHandle, records: Vec<(u8, Bytes)>) -> Lsn {
    let (sender, receiver) = mpsc::sync_channel(1);
    handle
        .submit(
            records,
            Box::new(move |result| sender.send(result).unwrap()),
        )
        .unwrap();
    receiver.recv().unwrap().unwrap()
}

/// Lets retention delete what the sample wrote.
fn checkpoint(handle: &JournalHandle, lsn: Lsn) {
    let (sender, receiver) = mpsc::sync_channel(1);
    handle
        .checkpoint(
            lsn,
            Bytes::new(),
            Box::new(move |result| sender.send(result).unwrap()),
        )
        .unwrap();
    receiver.recv().unwrap().unwrap();
}

fn bench_journal(c: &mut Criterion) {
    let mut group = c.benchmark_group("journal_append_commit");
    group.sample_size(10);
    let payload = Bytes::from(vec![0x5A; RECORD_BYTES]);
    for (name, durability) in [
        ("fsync", Durability::Fsync),
        ("relaxed", Durability::Relaxed),
    ] {
        for batch in [1_usize, 64, 1024] {
            let dir: PathBuf = std::env::temp_dir().join(format!(
                "paymesh-journal-bench-{}-{name}-{batch}",
                std::process::id()
            ));
            let config = JournalConfig {
                durability,
                segments_retained_max: 0,
                ..JournalConfig::new(&dir)
            };
            let (journal, _) = Journal::open(config).unwrap();
            let handle = journal.start_writer().unwrap();
            let records = vec![(1_u8, payload.clone()); batch];
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(BenchmarkId::new(name, batch), |b| {
                b.iter_custom(|iterations| {
                    let started = Instant::now();
                    let mut last = Lsn(0);
                    for _ in 0..iterations {
                        last = commit(&handle, records.clone());
                    }
                    let elapsed: Duration = started.elapsed();
                    checkpoint(&handle, last);
                    elapsed
                })
            });
            handle.shutdown().unwrap();
            std::fs::remove_dir_all(&dir).unwrap();
        }
    }
    group.finish();
}

criterion_group!(benches, bench_journal);
criterion_main!(benches);
