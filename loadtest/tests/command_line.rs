//! The `loadtest` binary as a user runs it: `--help` says what the workload is and what is
//! checked, and a target that refuses connections gets one line on stderr and exit status 1.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn help_describes_the_workload_depth_and_checks() {
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Luhn-valid",
        "drawn uniformly from --amount-min..=--amount-max",
        "the effective depth is the smaller of --depth and that window",
        "ANSWER CHECKS",
        "echoed\n  order_id or amount",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}

#[test]
fn a_refused_connection_is_one_line_and_exit_status_1() {
    // A port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(["-t", &format!("127.0.0.1:{port}"), "-n", "1", "-q"])
        .env("RUST_BACKTRACE", "1")
        .env("RUST_LIB_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("loadtest: error: cannot connect to 127.0.0.1:"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("refused").count(), 1, "{stderr}");
    assert!(!stderr.contains("backtrace"));
}
