//! Helpers shared by the integration tests: configurations with small segments, deterministic
//! payloads and directory listings.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use paymesh_journal::{Durability, Journal, JournalConfig, Lsn, Record, Recovered};

/// A configuration with 4 KiB segments, so that a few hundred records rotate many times.
pub fn small_config(dir: &Path) -> JournalConfig {
    JournalConfig {
        segment_bytes_max: 4096,
        segments_retained_max: 1,
        ..JournalConfig::new(dir)
    }
}

pub fn relaxed(mut config: JournalConfig) -> JournalConfig {
    config.durability = Durability::Relaxed;
    config
}

/// The payload of record `index`: its index, then filler of a length that varies with it.
pub fn payload(index: u64) -> Bytes {
    let mut bytes = index.to_be_bytes().to_vec();
    bytes.extend(std::iter::repeat_n(
        (index % 251) as u8,
        (index % 97) as usize,
    ));
    Bytes::from(bytes)
}

pub fn kind(index: u64) -> u8 {
    (index % 5) as u8
}

/// Appends records `from..to` (payload and kind by index, index = LSN), in batches of 1 to 7.
pub fn append_range(journal: &mut Journal, from: u64, to: u64) {
    let mut index = from;
    while index < to {
        let batch_end = (index + 1 + index % 7).min(to);
        let records: Vec<_> = (index..batch_end).map(|i| (kind(i), payload(i))).collect();
        let last = journal.append(&records).unwrap();
        assert_eq!(last, Lsn(batch_end - 1));
        index = batch_end;
    }
}

/// Checks that `records` are exactly the records with LSNs `from..=to` appended by
/// `append_range` (record `i` has LSN `i`, as record indices start at 1).
pub fn assert_records(records: &[Record], from: u64, to: u64) {
    assert_eq!(records.len() as u64, to + 1 - from, "record count");
    for (record, index) in records.iter().zip(from..=to) {
        assert_eq!(record.lsn, Lsn(index));
        assert_eq!(record.kind, kind(index));
        assert_eq!(record.payload, payload(index), "payload of lsn {index}");
    }
}

pub fn open(config: &JournalConfig) -> (Journal, Recovered) {
    Journal::open(config.clone()).unwrap()
}

/// Segment files, oldest first.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    files_with_suffix(dir, ".seg")
}

pub fn snapshots(dir: &Path) -> Vec<PathBuf> {
    files_with_suffix(dir, ".snap")
}

fn files_with_suffix(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_str().unwrap().ends_with(suffix))
        .collect();
    files.sort();
    files
}

/// Flips every bit of the byte at `offset` of `path`.
pub fn flip_byte(path: &Path, offset: u64) {
    let mut bytes = fs::read(path).unwrap();
    bytes[offset as usize] ^= 0xff;
    fs::write(path, bytes).unwrap();
}
