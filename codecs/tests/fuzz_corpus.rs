//! Replays the committed fuzz corpus (`codecs/fuzz/corpus/<target>/`) through the very checks
//! the cargo-fuzz targets run (`codecs/fuzz/checks/`, included below, one copy for both), on the
//! stable toolchain, so every test run (and CI) holds the codecs to what fuzzing found: each
//! input that once reached new code must still neither panic nor break an invariant.
//!
//! The corpus is libFuzzer's, minimized with `cargo fuzz cmin` (docs/SECURITY.md, "Fuzzing").
//! Its size is bounded here, so that it stays a regression set and not an archive.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "../fuzz/checks/frame.rs"]
mod frame;
#[path = "../fuzz/checks/iso8583.rs"]
mod iso8583;
#[path = "../fuzz/checks/session.rs"]
mod session;

use std::path::{Path, PathBuf};

/// Most corpus files replayed per target: a minimized corpus holds a few hundred.
const CORPUS_FILES_PER_TARGET_MAX: usize = 1_000;
/// Largest corpus file: libFuzzer's default `-max_len` is 4096; a seed may be a little longer.
const CORPUS_FILE_BYTES_MAX: u64 = 16 * 1024;
/// Fewest files a target's corpus may have: fewer means it went missing.
const CORPUS_FILES_PER_TARGET_MIN: usize = 10;

fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        (CORPUS_FILES_PER_TARGET_MIN..=CORPUS_FILES_PER_TARGET_MAX).contains(&files.len()),
        "{}: {} files; keep the minimized corpus between {CORPUS_FILES_PER_TARGET_MIN} and \
         {CORPUS_FILES_PER_TARGET_MAX} (cargo fuzz cmin)",
        dir.display(),
        files.len()
    );
    files
}

fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus(target) {
        let size = std::fs::metadata(&path).unwrap().len();
        assert!(
            size <= CORPUS_FILE_BYTES_MAX,
            "{}: {size} bytes, over {CORPUS_FILE_BYTES_MAX}",
            path.display()
        );
        let data = std::fs::read(&path).unwrap();
        // The file's name in the panic message: `cargo fuzz run TARGET FILE` reproduces it.
        if let Err(panic) = std::panic::catch_unwind(|| check(&data)) {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("a panic");
            panic!("{target} corpus file {}: {what}", path.display());
        }
    }
}

#[test]
fn frame_decode_corpus() {
    replay("frame_decode", frame::check);
}

#[test]
fn iso8583_decode_corpus() {
    replay("iso8583_decode", iso8583::check);
}

#[test]
fn session_stream_corpus() {
    replay("session_stream", session::check);
}
