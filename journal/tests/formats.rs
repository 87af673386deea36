//! Format versions on real files: the directory's layout version is written at open and checked,
//! and a version newer than this build's stops start-up by name, leaving every file as it was.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::path::Path;

use common::{append_range, assert_records, open, small_config, snapshots};
use paymesh_journal::files::{FORMAT_FILE, JOURNAL_FORMAT, SNAPSHOT_FILE_FORMAT};
use paymesh_journal::{CorruptReason, Journal, JournalError, Lsn};

/// Every file of `dir` with its bytes, sorted by name.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

#[test]
fn the_layout_version_is_written_for_new_and_older_journals() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 21);
    drop(journal);
    let format = temp.path().join(FORMAT_FILE);
    assert_eq!(
        fs::read_to_string(&format).unwrap(),
        format!("paymesh-journal {JOURNAL_FORMAT}\n")
    );
    // A journal from before the file is version 1: it opens and gets the file.
    fs::remove_file(&format).unwrap();
    let (_, recovered) = open(&config);
    assert_records(&recovered.records, 1, 20);
    assert!(format.exists());
}

#[test]
fn a_newer_layout_stops_start_up_and_changes_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 21);
    drop(journal);
    let format = temp.path().join(FORMAT_FILE);
    fs::write(&format, format!("paymesh-journal {}\n", JOURNAL_FORMAT + 1)).unwrap();
    let before = contents(temp.path());
    let error = Journal::open(config.clone()).unwrap_err();
    assert!(
        matches!(&error, JournalError::NewerFormat { file, what: "journal directory", found, known }
            if *file == format && *found == JOURNAL_FORMAT + 1 && *known == JOURNAL_FORMAT),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("newer PayMesh build") && message.contains(FORMAT_FILE),
        "{message}"
    );
    assert_eq!(contents(temp.path()), before, "files changed");

    fs::write(&format, "something else\n").unwrap();
    assert!(matches!(
        Journal::open(config).unwrap_err(),
        JournalError::Corrupt {
            reason: CorruptReason::FormatFile,
            ..
        }
    ));
}

#[test]
fn a_newer_snapshot_header_stops_start_up_by_name() {
    let temp = tempfile::tempdir().unwrap();
    let config = small_config(temp.path());
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 11);
    journal.checkpoint(Lsn(5), b"snapshot state").unwrap();
    drop(journal);
    let snapshot = snapshots(temp.path()).pop().unwrap();
    let mut bytes = fs::read(&snapshot).unwrap();
    assert_eq!(&bytes[..8], b"PMJSNAP1");
    bytes[7] = b'0' + u8::try_from(SNAPSHOT_FILE_FORMAT + 1).unwrap();
    fs::write(&snapshot, &bytes).unwrap();
    let error = Journal::open(config).unwrap_err();
    assert!(
        matches!(&error, JournalError::NewerFormat { file, what: "snapshot file", found: 2, known: 1 }
            if *file == snapshot),
        "{error}"
    );
}
