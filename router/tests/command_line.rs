//! The `paymesh` binary as a user runs it: `paymesh demo` writes nothing in the working directory
//! and leaves nothing in the temp dir, its log lines carry no colour codes when stderr is not a
//! terminal, and an operating error is one line on stderr with a non-zero exit, no backtrace.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Command;

fn entries(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn demo_leaves_no_files_behind_and_logs_without_colour_codes() {
    let cwd = tempfile::tempdir().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paymesh"))
        .args([
            "demo",
            "--duration-secs",
            "1",
            "--connections",
            "1",
            "--depth",
            "4",
            "--merchants",
            "2",
        ])
        .current_dir(cwd.path())
        .env("TMPDIR", tmp.path())
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed: {stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("journal: "), "{stdout}");
    assert!(stdout.contains("latency"), "no summary: {stdout}");
    // The journal, its key and the query store (with -wal and -shm) lived in the scratch dir
    // under TMPDIR, which is gone; the working directory never saw them.
    assert_eq!(entries(cwd.path()), Vec::<String>::new());
    assert_eq!(entries(tmp.path()), Vec::<String>::new());
    assert!(stderr.contains("INFO"), "no log lines to check: {stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "colour codes in piped log lines: {stderr:?}"
    );
}

#[test]
fn an_operating_error_is_one_line_without_a_backtrace() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_paymesh"))
        .args(["serve", "--config", missing.to_str().unwrap()])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("paymesh: error: "), "{stderr}");
    assert!(stderr.contains("missing.toml"), "{stderr}");
    assert!(!stderr.contains("backtrace") && !stderr.contains("Caused by"));
}
