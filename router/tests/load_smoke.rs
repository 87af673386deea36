//! A short run of the bundled load harness against the real router and gateway-sim hosts: every
//! request of every type is answered, checked and matched (CI keeps the harness working with it).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

mod common;

use std::time::Duration;

use common::*;
use paymesh_loadtest::{LoadConfig, Stop};

#[actix::test]
async fn the_harness_runs_clean_against_the_router() {
    let env = Env::start(EnvOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let config = LoadConfig {
        target: env.tcp.to_string(),
        connections: 2,
        depth: 16,
        stop: Stop::Count(3_000),
        warmup: Duration::ZERO,
        network_id: NETWORK.into(),
        credential: CREDENTIAL.into(),
        merchants: 1,
        json: Some(dir.path().join("run.json")),
        html: Some(dir.path().join("run.html")),
        ..LoadConfig::default()
    };
    let report = paymesh_loadtest::run(config).await.unwrap();
    let t = &report.totals;
    assert_eq!(
        (t.unanswered, t.mismatches, t.protocol_errors),
        (0, 0, 0),
        "{}",
        report.summary()
    );
    assert!(t.answered >= 3_000);
    assert!(
        report.outcomes.approved > 0 && report.outcomes.errors == 0,
        "{}",
        report.summary()
    );
    // Every type of the default mix went through and was approved at least once.
    for by_type in &report.by_type {
        assert!(
            by_type.approved > 0,
            "{:?} never approved: {}",
            by_type.txn_type,
            report.summary()
        );
    }
    assert!(
        std::fs::read_to_string(dir.path().join("run.html"))
            .unwrap()
            .contains("<svg")
    );
    env.stop().await;
}
