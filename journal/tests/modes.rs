//! File permissions: everything the journal creates is its owner's only, and an existing journal
//! directory open to others is narrowed at open.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::{append_range, open, segments, small_config, snapshots};
use paymesh_journal::Lsn;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o7777
}

#[test]
fn segments_checkpoints_and_directories_are_private() {
    let temp = tempfile::tempdir().unwrap();
    let parent = temp.path().join("new");
    let dir = parent.join("journal");
    let config = small_config(&dir);
    let (mut journal, _) = open(&config);
    append_range(&mut journal, 1, 301);
    journal.checkpoint(Lsn(150), b"state").unwrap();
    drop(journal);
    assert!(segments(&dir).len() > 1, "rotated");
    assert_eq!(snapshots(&dir).len(), 1);
    assert_eq!((mode(&parent), mode(&dir)), (0o700, 0o700));
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
}

#[test]
fn an_existing_directory_open_to_others_is_narrowed() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("journal");
    fs::create_dir(&dir).unwrap();
    fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
    let _ = open(&small_config(&dir));
    assert_eq!(mode(&dir), 0o700);
}
