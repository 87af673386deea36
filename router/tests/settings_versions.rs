//! Merchants and grants as journaled settings versions, over real sockets: a reload changes who
//! may act for whom and the merchants' limits without a restart; a restart on an unchanged file
//! keeps the version, a changed file makes the next one; what was approved under an older
//! version replays as it was.
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
use paymesh_codecs::message::TxnKind;
use paymesh_codecs::types::ResultCode;

const NETWORK_C: &str = "VANTEST-C";

fn network_c(granted: &str) -> String {
    let hash = paymesh_router::auth::hash_credential(CREDENTIAL).unwrap();
    format!(
        "[[networks]]\nid = \"{NETWORK_C}\"\ncredential_hash = \"{hash}\"\nmerchants = [{granted}]\n"
    )
}

fn merchant_limit(limit: u64) -> String {
    format!("[[merchants]]\nid = \"MLIMIT\"\nsingle_limit_minor = {limit}\n")
}

async fn client_c(env: &Env) -> Client {
    let mut c = Client::tcp(env.tcp).await;
    assert_eq!(
        c.login(NETWORK_C, CREDENTIAL).await.result,
        ResultCode::Approved
    );
    c
}

fn authorize(merchant: &str, order: &str, amount: u64) -> paymesh_codecs::message::TxnRequest {
    request(
        TxnKind::Authorize,
        merchant,
        order,
        Some(amount),
        Some(card(VAN_PAN)),
    )
}

#[actix::test]
async fn a_reload_changes_grants_and_limits_at_once_and_restarts_replay_under_the_version_in_force()
{
    let dir = tempfile::tempdir().unwrap();
    let first = EnvOptions {
        journal_dir: Some(dir.path().join("journal")),
        networks_toml: network_c("\"M000002\", \"MLIMIT\""),
        merchants_toml: merchant_limit(10_000),
        ..EnvOptions::default()
    };
    let changed = EnvOptions {
        networks_toml: network_c("\"MLIMIT\""),
        merchants_toml: merchant_limit(5_000),
        ..first.clone()
    };
    let env = Env::start(first.clone()).await;
    assert_eq!(env.metrics().settings_version.get(), 1, "a new journal");
    let mut c = client_c(&env).await;
    let v1 = c.call(authorize("M000002", "V-1", 5_000)).await;
    assert_result(&v1, ResultCode::Approved);
    assert_result(
        &c.call(authorize("MLIMIT", "V-2", 8_000)).await,
        ResultCode::Approved,
    );

    // The file's grant and limit change; the reload takes them at once, same session.
    let changed_text = env
        .config_text
        .replace(&first.networks_toml, &changed.networks_toml)
        .replace(&first.merchants_toml, &changed.merchants_toml);
    assert_ne!(changed_text, env.config_text);
    assert_eq!(env.reload(&changed_text).await.unwrap(), 2);
    assert_eq!(env.metrics().settings_version.get(), 2);
    let refused = c.call(authorize("M000002", "V-3", 5_000)).await;
    assert_result(&refused, ResultCode::UnknownMerchant);
    assert!(refused.server_txn_id.is_none());
    // A follow-up of its own order at a merchant no longer granted: the unconfigured merchant's
    // answer, as for any request naming it.
    let capture = request(TxnKind::Capture, "M000002", "V-1", Some(5_000), None);
    let refused = c.call(capture).await;
    assert_result(&refused, ResultCode::UnknownMerchant);
    assert!(refused.server_txn_id.is_none() && refused.state.is_none());
    assert_result(
        &c.call(authorize("MLIMIT", "V-4", 8_000)).await,
        ResultCode::AmountOverLimit,
    );
    assert_result(
        &c.call(authorize("MLIMIT", "V-5", 4_000)).await,
        ResultCode::Approved,
    );
    // The same data again is no new version; a file that does not validate changes nothing.
    assert_eq!(env.reload(&changed_text).await.unwrap(), 2);
    let broken = changed_text.replace("merchants = [\"MLIMIT\"]", "merchants = [\"MNOBODY\"]");
    assert!(env.reload(&broken).await.is_err());
    assert_eq!(env.metrics().settings_version.get(), 2);
    assert_result(
        &c.call(authorize("MLIMIT", "V-6", 4_000)).await,
        ResultCode::Approved,
    );
    env.stop().await;

    // A restart on the file as reloaded keeps version 2; the order approved under version 1's
    // limit is still there to capture.
    let env = Env::start(changed.clone()).await;
    assert_eq!(env.metrics().settings_version.get(), 2);
    let mut c = client_c(&env).await;
    assert_result(
        &c.call(authorize("M000002", "V-7", 5_000)).await,
        ResultCode::UnknownMerchant,
    );
    let capture = request(TxnKind::Capture, "MLIMIT", "V-2", Some(8_000), None);
    assert_result(&c.call(capture).await, ResultCode::Approved);
    env.stop().await;

    // Back to the first file: a change, so version 3; the grant is back, and the order C made
    // under version 1 replayed as it was (same transaction id).
    let env = Env::start(first).await;
    assert_eq!(env.metrics().settings_version.get(), 3);
    let mut c = client_c(&env).await;
    let inquiry = c
        .call(request(TxnKind::Inquiry, "M000002", "V-1", None, None))
        .await;
    assert_result(&inquiry, ResultCode::Approved);
    assert_eq!(inquiry.server_txn_id, v1.server_txn_id);
    env.stop().await;
}

#[actix::test]
async fn sighup_reloads_the_file_and_a_broken_file_changes_nothing() {
    let opts = EnvOptions {
        start_router: false,
        listen: format!("127.0.0.1:{}", free_port()),
        networks_toml: network_c("\"M000002\""),
        ..EnvOptions::default()
    };
    let env = Env::start(opts.clone()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("paymesh.toml");
    let log = dir.path().join("router.log");
    std::fs::write(&config, &env.config_text).unwrap();
    let child = spawn_router(&config, &log);
    let mut c = connect_as(env.tcp, NETWORK_C).await;
    assert_result(
        &c.call(authorize("M000002", "H-1", 1_000)).await,
        ResultCode::Approved,
    );

    let hangup = |expect_line: &str, count: usize| {
        let pid = child.0.id().to_string();
        assert!(
            Command::new("kill")
                .args(["-HUP", &pid])
                .status()
                .unwrap()
                .success()
        );
        // The router logs the outcome of each SIGHUP; wait for this one's line.
        for _ in 0..400 {
            let text = std::fs::read_to_string(&log).unwrap();
            if text.matches(expect_line).count() >= count {
                return text;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("no {expect_line:?} in the log");
    };
    // A file that does not validate: logged, nothing changes.
    std::fs::write(
        &config,
        env.config_text
            .replace("merchants = [\"M000002\"]", "merchants = [\"MNOBODY\"]"),
    )
    .unwrap();
    hangup("SIGHUP: reload refused", 1);
    assert_result(
        &c.call(authorize("M000002", "H-2", 1_000)).await,
        ResultCode::Approved,
    );
    // C loses M000002 and gains MSHARED.
    std::fs::write(
        &config,
        env.config_text
            .replace("merchants = [\"M000002\"]", "merchants = [\"MSHARED\"]"),
    )
    .unwrap();
    // The log is a file, not a terminal: no colour codes between the words.
    let text = hangup("SIGHUP: merchants and grants reloaded", 1);
    assert!(text.contains("reloaded version=2"), "{text}");
    assert_result(
        &c.call(authorize("M000002", "H-3", 1_000)).await,
        ResultCode::UnknownMerchant,
    );
    assert_result(
        &c.call(authorize("MSHARED", "H-4", 1_000)).await,
        ResultCode::Approved,
    );
    drop(child);
}
