//! A journal that fails (here: a file-size limit, as a full disk does) fails the shards closed:
//! nothing is acknowledged without a record, the process exits with status 75 for its
//! supervisor, and a restart once the disk has room replays every acknowledged approval.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use paymesh_codecs::message::{Message, TxnKind};
use paymesh_codecs::types::ResultCode;

/// Largest file the limited router may write, in KiB (`ulimit -f`): a journal segment reaches it
/// after a few hundred authorizations.
const FILE_SIZE_LIMIT_KIB: u32 = 192;
/// Authorizations sent at most before the journal must have failed.
const ORDERS_MAX: usize = 20_000;

fn spawn(config: &std::path::Path, log: &std::path::Path, limit_kib: Option<u32>) -> KillOnDrop {
    let bin = env!("CARGO_BIN_EXE_paymesh");
    let cmd = match limit_kib {
        // SIGXFSZ ignored (inherited through exec), so a write past the limit fails with EFBIG
        // instead of killing the process: the journal sees an I/O error, as on a full disk.
        Some(kib) => {
            let mut c = Command::new("bash");
            c.args([
                "-c",
                &format!("trap '' XFSZ; ulimit -f {kib}; exec \"$0\" serve --config \"$1\""),
                bin,
            ])
            .arg(config);
            c
        }
        None => return spawn_router(config, log),
    };
    spawn_logged(cmd, log)
}

fn order(n: usize) -> String {
    format!("F-{n}")
}

#[actix::test]
async fn a_failed_journal_fails_closed_exits_75_and_a_restart_keeps_every_approval() {
    let env = Env::start(EnvOptions {
        start_router: false,
        listen: format!("127.0.0.1:{}", free_port()),
        ..EnvOptions::default()
    })
    .await;
    // No query store: only the journal meets the limit.
    let store_line = env
        .config_text
        .lines()
        .find(|l| l.starts_with("path = "))
        .unwrap()
        .to_string();
    let config_text = env.config_text.replace(&store_line, "path = \"\"");
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paymesh.toml");
    std::fs::write(&config, &config_text).unwrap();

    let limited_log = dir.path().join("limited.log");
    let mut child = spawn(&config, &limited_log, Some(FILE_SIZE_LIMIT_KIB));
    let mut c = connect_as(env.tcp, NETWORK).await;
    let mut approved = Vec::new();
    let mut refused = None;
    for n in 0..ORDERS_MAX {
        let req = request(
            TxnKind::Authorize,
            "M000001",
            &order(n),
            Some(1_000),
            Some(card(VAN_PAN)),
        );
        c.send(n as u64 + 1, &Message::Request(req)).await;
        match c.recv().await {
            Some((_, Message::Answer(a))) if a.result == ResultCode::Approved => approved.push(n),
            Some((_, Message::Answer(a))) => {
                assert_eq!(a.result, ResultCode::InternalError, "{a:?}");
                assert!(a.approval_code.is_none(), "{a:?}");
                refused = Some(n);
                break;
            }
            other => panic!(
                "order {n}: {other:?}\n{}",
                std::fs::read_to_string(&limited_log).unwrap()
            ),
        }
    }
    let refused = refused.expect("the journal never failed");
    assert!(!approved.is_empty());
    // Everything after the failure is refused too, and the process leaves with status 75.
    let req = request(
        TxnKind::Authorize,
        "M000001",
        "F-after",
        Some(1_000),
        Some(card(VAN_PAN)),
    );
    c.send(u64::MAX >> 8, &Message::Request(req)).await;
    if let Some((_, Message::Answer(a))) = c.recv().await {
        assert_ne!(a.result, ResultCode::Approved, "{a:?}");
    }
    let mut status = None;
    for _ in 0..600 {
        if let Some(s) = child.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let status = status.expect("the router did not exit after its journal failed");
    assert_eq!(
        status.code(),
        Some(paymesh_router::EXIT_JOURNAL_FAILED),
        "{}",
        std::fs::read_to_string(&limited_log).unwrap()
    );
    drop(child);

    // The disk has room again: the restart replays; every approval is there, once.
    let _child = spawn(&config, &dir.path().join("restart.log"), None);
    let mut c = connect_as(env.tcp, NETWORK).await;
    for n in &approved {
        let a = c
            .call(request(TxnKind::Inquiry, "M000001", &order(*n), None, None))
            .await;
        assert_result(&a, ResultCode::Approved);
        assert_eq!(env.host_authorizations("van", &order(*n)), 1, "order {n}");
    }
    // The refused one was never authorized upstream: it is missing, or ended without approval.
    let a = c
        .call(request(
            TxnKind::Inquiry,
            "M000001",
            &order(refused),
            None,
            None,
        ))
        .await;
    assert!(
        a.result == ResultCode::NotFound || a.approval_code.is_none(),
        "{a:?}"
    );
    assert_eq!(env.host_authorizations("van", &order(refused)), 0);
}
