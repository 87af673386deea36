//! PayMesh's durable transaction journal: an acknowledged approval is never lost. A shard appends
//! what it needs to rebuild itself (requests accepted, upstream requests and answers, state
//! transitions, idempotency keys with the answers given) and answers a client only once the
//! record is durable. Records are grouped so that one `fdatasync` (~0.3 ms on this disk) commits
//! many of them: durability comes from batching, not from weaker guarantees.
//!
//! # Layout
//!
//! Sans-IO core (no files, no clock; property-tested):
//!
//! - [`record`]: [`Lsn`], [`Record`], [`encode_record`], [`decode_record`] (`Ok(None)` = need more
//!   bytes; the length prefix is checked against [`RECORD_BYTES_MAX`] before anything else).
//! - [`scan`]: [`scan_segment`] / [`scan_segment_with`], the recovery scanner over one segment's
//!   bytes, reporting the valid prefix and a [`Defect`] (offset, reason, whether anything valid
//!   follows).
//! - [`files`]: file names, the snapshot format ([`encode_snapshot_header`],
//!   [`decode_snapshot`]), and the small I/O helpers (directory fsync, atomic snapshot write).
//!
//! The I/O shell:
//!
//! - [`config`]: [`JournalConfig`], [`Durability`] and the hard limits (`*_LIMIT`, `*_MAX`).
//! - `journal.rs`: [`Journal`], owning the files: [`Journal::append`] (one write + one
//!   `fdatasync`), rotation, [`Journal::checkpoint`] and retention.
//! - `recover.rs`: [`Journal::open`] (every record since the snapshot in memory),
//!   [`Journal::open_with`] (streamed to a visitor, memory bounded by one segment) and
//!   [`Recovered`].
//! - `writer.rs`: group commit. [`Journal::start_writer`] moves the journal into one thread;
//!   [`JournalHandle::submit`] queues records with an `on_durable` callback over a bounded queue
//!   ([`JournalError::Busy`] at once when full).
//! - [`stats`]: [`JournalStats`], counters kept with relaxed atomics (records, batches, fsyncs,
//!   bytes, batch-size histogram, fsync latency sum, maximum and histogram).
//! - [`error`]: [`JournalError`], the one error enum, and [`CorruptReason`].
//! - `bin/journal-bench.rs`: a load generator printing records/s, fsyncs/s and batch sizes.
//!
//! # On disk
//!
//! One directory per journal holding:
//!
//! - `journal-<first LSN, 20 digits>.seg`: append-only segments. A segment is a sequence of
//!   records, nothing else: `length u32 BE | crc32c u32 BE | type u8 | lsn u64 BE | payload`,
//!   where `length` counts type + lsn + payload and the CRC-32C covers the same bytes. LSNs run
//!   1, 2, 3, ... without gaps across segments; a segment's name is its first record's LSN. Once
//!   a segment reaches `segment_bytes_max` the next batch starts a new file, and the directory
//!   is fsynced so the new name survives a crash.
//! - `checkpoint-<LSN, 20 digits>.snap`: the caller's state with every record up to that LSN
//!   applied, behind a 28-byte header (magic `PMJSNAP1`, LSN, length, CRC-32C). Written as
//!   `.snap.tmp`, fsynced, renamed, directory fsynced. After it, older snapshots and the closed
//!   segments it covers are deleted, except the newest `segments_retained_max` of them.
//! - `journal.format`: `paymesh-journal 1`, the layout's version (absent in journals written
//!   before it: version 1, added at open). With the snapshot magic's digit it lets a build refuse
//!   a journal from a newer one ([`JournalError::NewerFormat`]) instead of misreading it.
//!
//! # Recovery ([`Journal::open`])
//!
//! Loads the newest snapshot, then scans the segments from the one holding the LSN after it:
//! every record's CRC and LSN are checked, and each segment must start where the previous one
//! ended. Damage at the end of the **last** segment with no valid record after it (a write cut
//! short by a crash: short record or checksum failure) is truncated, fsynced and logged with
//! `tracing::warn!` giving the bytes dropped ([`Recovered::truncated_tail_bytes`]). Any other
//! damage (in an earlier segment, with valid records after it, a missing segment, a damaged
//! snapshot) stops start-up with [`JournalError::Corrupt`] naming the file and byte offset:
//! never a silent skip. Recovery reads each segment whole (bounded by
//! [`config::SEGMENT_FILE_BYTES_MAX`]); its time and memory grow with the records since the last
//! checkpoint, which the caller bounds by checkpointing regularly.
//!
//! # Durability
//!
//! [`Durability::Fsync`] (the default): `on_durable` runs only after `fdatasync` of the batch
//! returned. [`Durability::Relaxed`] skips every fsync and is **unsafe**: for tests and
//! benchmarks only. A failed write or fsync poisons the journal ([`JournalError::Poisoned`]):
//! the process must restart and recover.
//!
//! # Napkin math
//!
//! A ~200-byte record is 217 bytes encoded. One `fdatasync` of a small append costs ~0.3 ms here,
//! so one record per fsync caps a journal near 3 000 records/s; at 100 records per batch the same
//! fsync rate carries ~300 000 records/s (~65 MB/s of appends, within the disk's sequential
//! bandwidth). The writer batches whatever queued during the previous fsync, so batch size grows
//! with load until `batch_records_max`. CRC-32C runs on the SSE4.2 instruction at several GB/s:
//! ~50 ns per record, noise next to the fsync. Recovery reads and checks segments at memory speed;
//! what costs is holding the records: [`Journal::open`] keeps every one since the checkpoint
//! (fresh pages: the kernel zeroes them), [`Journal::open_with`] reuses one buffer.
//!
//! # Measured (2 vCPUs shared with other builds, this VM's disk, 200-byte payloads)
//!
//! `cargo run --release -p paymesh-journal --bin journal-bench -- --seconds 5` (4 producers):
//! ~610 000-840 000 durable records/s, ~150-210 fsyncs/s of ~4 090-record batches (the batch
//! limit), fdatasync mean ~2.3-3.6 ms for ~0.9 MB; `--durability relaxed`: ~1.3-1.45 million
//! records/s. Paced at `--rate 20000`: mean batch 8.7, fdatasync mean 0.41 ms, ack p50 0.6 ms
//! (p99 ~30 ms: this disk has occasional 50-300 ms fsync stalls); `--rate 100000`: mean batch
//! 65, ack p50 0.9 ms. Recovery of 4.2 million records (843 MB of payload): 3.0 s with `open`,
//! 0.37 s with `open_with`.
//!
//! `cargo bench -p paymesh-benches --bench journal -- --warm-up-time 1 --measurement-time 3`
//! (one submission in flight): fsync batch 1: ~2 400 records/s (0.42 ms); batch 64: ~99 000/s;
//! batch 1024: ~950 000/s (1.08 ms). Relaxed: 76 000/s, 1.8 million/s, 3.9 million/s.
//!
//! # Limits
//!
//! Memory: the queue holds at most `queue_batches_max` submissions and `queue_bytes_max` encoded
//! bytes; the writer one batch (`batch_bytes_max`); recovery one segment with `open_with`. Disk:
//! see [`JournalConfig::segments_retained_max`]. Known gap: after a power loss (not a process
//! crash) the kernel may have persisted pages of the last, unacknowledged batch out of order;
//! a hole followed by valid records then reads as corruption, and start-up stops (safe, but it
//! needs an operator) where truncation would have been correct.

pub mod config;
pub mod error;
pub mod files;
mod journal;
pub mod record;
mod recover;
pub mod scan;
pub mod stats;
mod writer;

pub use config::{Durability, JournalConfig};
pub use error::{CorruptReason, JournalError};
pub use files::{decode_snapshot, encode_snapshot_header};
pub use journal::Journal;
pub use record::{
    Lsn, RECORD_BYTES_MAX, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX, Record, RecordView,
    decode_record, decode_record_view, encode_record, encoded_len,
};
pub use recover::Recovered;
pub use scan::{Defect, ScanEnd, SegmentScan, scan_segment, scan_segment_with};
pub use stats::{
    BATCH_HISTOGRAM_BUCKETS, FSYNC_HISTOGRAM_BUCKETS, FSYNC_LATENCY_BUCKETS_US, JournalStats,
};
pub use writer::{JournalHandle, OnCheckpoint, OnDurable, Reservation};
