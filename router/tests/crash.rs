//! Crash tests on real processes: a `paymesh serve` process is killed with SIGKILL at random moments
//! under pipelined load and restarted on the same journal, several times. Then every order is
//! retried by order id and checked: what the client saw approved is there exactly once with the
//! same transaction id and approval code, nothing is doubled, every in-doubt order resolves to one
//! recorded outcome, and the simulated host never saw a second authorization for an order. Every
//! order left in doubt is then reversed at its host through the store-and-forward queue, naming
//! the authorization's STAN, and ends REVERSED. Checkpoints are taken every 20 records, so the
//! restarts recover from a checkpoint plus the records after it (asserted). Also: a
//! journal torn mid-record is truncated at start-up (and logged); a byte corrupted in the middle
//! stops start-up with an error naming the file and offset. Bounded: 4 kills, a few hundred orders.
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::collections::HashMap;
use std::process::Command;
use std::time::Duration;

use common::*;
use paymesh_codecs::message::{Message, TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

const KILLS: usize = 4;
const ORDERS_PER_ROUND: usize = 120;

/// The log text without terminal colour codes.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_escape = false;
    for ch in text.chars() {
        match (in_escape, ch) {
            (false, '\x1b') => in_escape = true,
            (false, c) => out.push(c),
            (true, 'm') => in_escape = false,
            (true, _) => {}
        }
    }
    out
}

fn order_request(n: usize) -> TxnRequest {
    // Amounts avoid the simulator's decline patterns (…51, …05) so most are approved.
    let amount = 1_000 + (n as u64 % 50) * 10;
    let pan = if n.is_multiple_of(3) {
        CARD_PAN
    } else {
        VAN_PAN
    };
    request(
        TxnKind::Authorize,
        "M000001",
        &format!("K{n}"),
        Some(amount),
        Some(card(pan)),
    )
}

#[actix::test]
async fn kill_dash_nine_loses_no_approval_and_doubles_nothing() {
    let port = free_port();
    let opts = EnvOptions {
        start_router: false,
        listen: format!("127.0.0.1:{port}"),
        // Checkpoints during the rounds: recovery starts from one and replays the tail after it.
        journal_toml: "checkpoint_records = 20\n".into(),
        ..EnvOptions::default()
    };
    let env = Env::start(opts).await;
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("paymesh.toml");
    std::fs::write(&config_path, &env.config_text).unwrap();
    let journal_dir = env
        .config_text
        .lines()
        .find_map(|l| l.strip_prefix("dir = \""))
        .unwrap()
        .trim_end_matches('"')
        .to_string();
    let seed: u64 = std::env::var("PAYMESH_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(7);
    eprintln!("crash test seed {seed} (rerun with PAYMESH_CRASH_SEED={seed})");
    let mut rng = SmallRng::seed_from_u64(seed);
    let mut approved: HashMap<usize, TxnAnswer> = HashMap::new();
    let mut sent_orders = 0usize;
    for round in 0..KILLS {
        let mut child = spawn_router(&config_path, &dir.path().join(format!("round{round}.log")));
        let mut c = connect_as(env.tcp, NETWORK).await;
        // Pipeline new orders (and retries of older ones) and read answers until the kill.
        let first = sent_orders;
        for n in first..first + ORDERS_PER_ROUND {
            c.send(n as u64 + 1, &Message::Request(order_request(n)))
                .await;
        }
        sent_orders += ORDERS_PER_ROUND;
        if round == 1 {
            // At least one round must end after a checkpoint (recovery from one is what this
            // checks), whatever the machine's speed: wait for this round's first one.
            let log = dir.path().join(format!("round{round}.log"));
            for _ in 0..400 {
                while let Ok(Some((cid, Message::Answer(a)))) =
                    tokio::time::timeout(Duration::from_millis(1), c.recv()).await
                {
                    if a.result == ResultCode::Approved {
                        approved.insert(cid as usize - 1, a);
                    }
                }
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("journal checkpoint") {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        let kill_after = Duration::from_millis(rng.gen_range(5..120));
        let deadline = tokio::time::Instant::now() + kill_after;
        while let Ok(Some((cid, msg))) = tokio::time::timeout_at(deadline, c.recv()).await {
            if let Message::Answer(a) = msg
                && a.result == ResultCode::Approved
            {
                approved.insert(cid as usize - 1, a);
            }
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    // Final restart: retry every order ever sent, by the same request.
    let mut child = spawn_router(&config_path, &dir.path().join("final.log"));
    let mut c = connect_as(env.tcp, NETWORK).await;
    let log = strip_ansi(&std::fs::read_to_string(dir.path().join("final.log")).unwrap());
    let checkpoint_lsn: u64 = log
        .split("checkpoint_lsn=")
        .nth(1)
        .and_then(|rest| rest.split(|ch: char| !ch.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .expect("recovery log line with checkpoint_lsn");
    assert!(
        checkpoint_lsn > 0,
        "no checkpoint was taken during the rounds: recovery from one is untested\n{log}"
    );
    let mut outcomes: HashMap<ResultCode, usize> = HashMap::new();
    let mut in_doubt = Vec::new();
    for n in 0..sent_orders {
        let a = c.call(order_request(n)).await;
        *outcomes.entry(a.result).or_default() += 1;
        // In doubt, or already reversed (2014: the reversal was acknowledged, final).
        let unresolved = [ResultCode::InDoubt, ResultCode::UpstreamTimeout];
        if unresolved.contains(&a.result) || a.result == ResultCode::Reversed {
            in_doubt.push(n);
        }
        if let Some(seen) = approved.get(&n) {
            assert_eq!(
                a.result,
                ResultCode::Approved,
                "order K{n} was acknowledged approved, now {a:?}"
            );
            assert_eq!(
                (a.server_txn_id, &a.approval_code),
                (seen.server_txn_id, &seen.approval_code),
                "order K{n} changed"
            );
        }
        assert!(
            matches!(
                a.result,
                ResultCode::Approved
                    | ResultCode::InDoubt
                    | ResultCode::UpstreamTimeout
                    | ResultCode::Reversed
            ) || a.result.as_u16() / 1000 == 1,
            "order K{n} did not resolve to a recorded outcome: {a:?}"
        );
        // The same retry again: the same answer (nothing moves any more), except that an order
        // in doubt may have been reversed in between (2014, final).
        let b = c.call(order_request(n)).await;
        let reversed_since = unresolved.contains(&a.result) && b.result == ResultCode::Reversed;
        assert_eq!(
            (
                if reversed_since { a.result } else { b.result },
                b.server_txn_id
            ),
            (a.result, a.server_txn_id),
            "order K{n} not stable"
        );
        let host = if n % 3 == 0 { "card" } else { "van" };
        assert!(
            env.host_authorizations(host, &format!("K{n}")) <= 1,
            "host saw order K{n} authorized twice"
        );
    }
    // Every order left in doubt is reversed at its host through the store-and-forward queue,
    // naming the authorization the host saw (field 90), and ends REVERSED (state 10).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for n in in_doubt.iter().copied() {
        let order = format!("K{n}");
        let host = if n % 3 == 0 { "card" } else { "van" };
        loop {
            let a = c
                .call(request(TxnKind::Inquiry, "M000001", &order, None, None))
                .await;
            if a.state == Some(10) {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{order} not reversed: {a:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let (reversals, auths) = env.host_reversals(host, &order);
        assert!(
            !reversals.is_empty(),
            "{order}: no reversal reached the host"
        );
        if let Some(stan) = auths.first() {
            assert!(
                reversals.iter().all(|r| *r == Some(*stan)),
                "{order}: reversals {reversals:?} do not name the authorization's STAN {stan}"
            );
        }
    }
    eprintln!(
        "after {KILLS} kills: {} orders, {} acknowledged approved before a kill, final outcomes {outcomes:?}",
        sent_orders,
        approved.len()
    );
    assert!(
        !approved.is_empty(),
        "no approval was acknowledged before any kill: the test proved nothing"
    );
    child.kill().unwrap();
    child.wait().unwrap();

    // A torn tail (a partial record at the end of the last segment) is cut off at start-up.
    let mut segments: Vec<_> = std::fs::read_dir(&journal_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segments.sort();
    let last = segments.last().unwrap().clone();
    let len = std::fs::metadata(&last).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    f.set_len(len - 3).unwrap();
    drop(f);
    let log = dir.path().join("torn.log");
    let mut child = spawn_router(&config_path, &log);
    let _c = connect_as(env.tcp, NETWORK).await;
    child.kill().unwrap();
    child.wait().unwrap();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("truncated") || text.contains("torn"),
        "no log line about the torn tail:\n{text}"
    );

    // A corrupt byte before the tail stops start-up, naming the file and offset.
    let first_segment = segments.first().unwrap();
    let mut bytes = std::fs::read(first_segment).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x5a;
    std::fs::write(first_segment, &bytes).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_paymesh"))
        .args(["serve", "--config"])
        .arg(&config_path)
        .output()
        .unwrap();
    assert!(!out.status.success(), "started on a corrupt journal");
    let err = String::from_utf8_lossy(&out.stderr);
    let name = first_segment.file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&*name) && (err.contains("offset") || err.contains("byte")),
        "error does not name file and offset:\n{err}"
    );
}
