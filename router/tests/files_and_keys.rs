//! Files and keys: everything the router writes is its user's only (0600 files in 0700
//! directories), a journal key file others may read is refused, and outside development mode a
//! missing journal key or TLS certificate stops start-up with how to make one (`paymesh
//! gen-key`, an openssl command), in process and as `paymesh serve`.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use paymesh_codecs::message::TxnKind;
use paymesh_codecs::types::ResultCode;

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o7777
}

fn journal_dir_of(env: &Env) -> PathBuf {
    let line = env
        .config_text
        .lines()
        .find_map(|l| l.strip_prefix("dir = \""))
        .unwrap();
    PathBuf::from(line.trim_end_matches('"'))
}

/// Every file of the journal directory, with its mode, and the directory's mode.
fn assert_journal_private(dir: &Path) {
    assert_eq!(mode(dir), 0o700, "{}", dir.display());
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert!(files >= 2, "a segment and the format file at least");
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

#[actix::test]
async fn everything_the_router_writes_is_private_to_its_user() {
    let mut env = Env::start(EnvOptions::default()).await;
    let mut c = env.client().await;
    let a = c
        .call(request(
            TxnKind::Sale,
            "M000001",
            "P1",
            Some(1_000),
            Some(card(VAN_PAN)),
        ))
        .await;
    assert_result(&a, ResultCode::Approved);
    let journal = journal_dir_of(&env);
    // While it runs: the journal, the store and SQLite's -wal and -shm beside it.
    assert_journal_private(&journal);
    for suffix in ["", "-wal", "-shm"] {
        let path = with_suffix(&env.store_path, suffix);
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    assert_eq!(mode(&with_suffix(&journal, ".key")), 0o600);
    env.stop_router().await;
    // After a clean shutdown: its checkpoint too.
    let checkpoints = std::fs::read_dir(&journal)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "snap")
        })
        .count();
    assert_eq!(checkpoints, 1, "shutdown files a checkpoint");
    assert_journal_private(&journal);
    assert_eq!(mode(&env.store_path), 0o600);
}

/// The test environment's configuration without its key file line, and with `server_line` in
/// `[server]`.
fn config_without_key_file(env: &Env, server_line: &str) -> String {
    env.config_text
        .lines()
        .filter(|l| !l.starts_with("key_file"))
        .map(|l| {
            if l == "[server]" {
                format!("{l}\n{server_line}")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn start_error(config_text: &str) -> String {
    let config = paymesh_router::config::Config::parse(config_text).unwrap();
    match paymesh_router::server::Router::start(config).await {
        Ok(_) => panic!("the router started"),
        Err(error) => format!("{error:#}"),
    }
}

#[actix::test]
async fn a_key_file_others_can_read_is_refused_with_the_fix() {
    let scratch = tempfile::tempdir().unwrap();
    let key = scratch.path().join("journal.key");
    paymesh_router::key_file::generate(&key).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let env = Env::start(EnvOptions {
        start_router: false,
        key_file: Some(key.clone()),
        ..EnvOptions::default()
    })
    .await;
    let error = start_error(&env.config_text).await;
    assert!(
        error.contains(&format!("chmod 600 {}", key.display())) && error.contains("0644"),
        "{error}"
    );
    assert!(
        !journal_dir_of(&env).exists(),
        "the journal was opened before the key was checked"
    );
}

#[actix::test]
async fn a_journal_without_a_key_file_starts_only_in_development_mode() {
    let env = Env::start(EnvOptions {
        start_router: false,
        ..EnvOptions::default()
    })
    .await;
    let error = start_error(&config_without_key_file(&env, "")).await;
    assert!(
        error.contains("key_file is not set") && error.contains("paymesh gen-key --out"),
        "{error}"
    );
    let journal = journal_dir_of(&env);
    assert!(!journal.exists(), "nothing is created before the refusal");

    // Development mode: a key generated beside the journal, private.
    let config = config_without_key_file(&env, "dev_mode = true");
    let router = paymesh_router::server::Router::start(
        paymesh_router::config::Config::parse(&config).unwrap(),
    )
    .await
    .unwrap();
    router.shutdown().await;
    assert_eq!(mode(&journal.join("dev-journal.key")), 0o600);
    assert_journal_private(&journal);
    // One that an earlier build left readable by all is narrowed (it is ours) and still used.
    std::fs::set_permissions(
        journal.join("dev-journal.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let router = paymesh_router::server::Router::start(
        paymesh_router::config::Config::parse(&config).unwrap(),
    )
    .await
    .unwrap();
    router.shutdown().await;
    assert_eq!(mode(&journal.join("dev-journal.key")), 0o600);
}

#[actix::test]
async fn a_tls_listener_without_a_certificate_starts_only_in_development_mode() {
    let env = Env::start(EnvOptions {
        start_router: false,
        ..EnvOptions::default()
    })
    .await;
    let config = env
        .config_text
        .replace("[server]\n", "[server]\ntls_listen = \"127.0.0.1:0\"\n");
    let error = start_error(&config).await;
    assert!(
        error.contains("needs a certificate")
            && error.contains("tls_cert")
            && error.contains("openssl req -x509"),
        "{error}"
    );
    let router = paymesh_router::server::Router::start(
        paymesh_router::config::Config::parse(
            &config.replace("[server]\n", "[server]\ndev_mode = true\n"),
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(router.tls_addr.is_some() && router.dev_cert_pem.is_some());
    router.shutdown().await;
}

fn paymesh(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_paymesh"))
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

#[actix::test]
async fn paymesh_serve_refuses_a_journal_without_a_key_and_gen_key_makes_one() {
    let env = Env::start(EnvOptions {
        start_router: false,
        ..EnvOptions::default()
    })
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let config_path = scratch.path().join("paymesh.toml");
    std::fs::write(&config_path, config_without_key_file(&env, "")).unwrap();
    let out = paymesh(&["serve", "--config", config_path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "served without a key: {stderr}");
    assert!(
        stderr.contains("key_file is not set") && stderr.contains("paymesh gen-key --out"),
        "{stderr}"
    );
    assert!(!journal_dir_of(&env).exists());

    let key = scratch.path().join("journal.key");
    let out = paymesh(&["gen-key", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(mode(&key), 0o600);
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(
        text.len() == 65
            && text.ends_with('\n')
            && text.trim().bytes().all(|b| b.is_ascii_hexdigit()),
        "{text:?}"
    );
    // Never over an existing key: the journal written with it would be lost.
    let out = paymesh(&["gen-key", "--out", key.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("never overwritten"));
    assert_eq!(std::fs::read_to_string(&key).unwrap(), text);
}
