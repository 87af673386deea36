//! The harness over TLS against its echo server: certificate verification with `--ca`, the
//! insecure mode for dev certificates, and a refused handshake when the CA does not match.
//!
//! `fixtures/localhost.{crt,key}` is a self-signed test certificate for `localhost` and 127.0.0.1
//! (ECDSA P-256, valid until 2126), made with
//! `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 36500
//! -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1`. It protects nothing.

#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::path::PathBuf;

use paymesh_loadtest::tls::PemIdentity;
use paymesh_loadtest::{EchoServer, LoadConfig, LoadError, Peer, Stop, TlsOptions, run};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

async fn tls_echo() -> EchoServer {
    let identity = PemIdentity::read(&fixture("localhost.crt"), &fixture("localhost.key")).unwrap();
    EchoServer::bind(SocketAddr::from(([127, 0, 0, 1], 0)), Some(&identity))
        .await
        .unwrap()
}

fn config(server: &EchoServer, tls: TlsOptions) -> LoadConfig {
    LoadConfig {
        target: server.local_addr().to_string(),
        peer: Peer::Echo,
        tls: Some(tls),
        connections: 2,
        depth: 8,
        stop: Stop::Count(300),
        ..LoadConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_tls_with_a_ca_file() {
    let server = tls_echo().await;
    let tls = TlsOptions {
        ca: Some(fixture("localhost.crt")),
        ..TlsOptions::default()
    };
    let report = run(config(&server, tls)).await.unwrap();
    server.shutdown().await;
    assert!(report.setup.tls);
    assert_eq!(report.totals.answered, 300);
    assert_eq!(report.totals.mismatches + report.totals.protocol_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_mode_accepts_a_dev_certificate() {
    let server = tls_echo().await;
    let tls = TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    };
    let report = run(config(&server, tls)).await.unwrap();
    server.shutdown().await;
    assert_eq!(report.totals.answered, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_server_name_fails_the_handshake() {
    let server = tls_echo().await;
    let tls = TlsOptions {
        ca: Some(fixture("localhost.crt")),
        server_name: "paymesh.example".to_owned(),
        ..TlsOptions::default()
    };
    let error = run(config(&server, tls)).await.unwrap_err();
    server.shutdown().await;
    assert!(matches!(error, LoadError::Tls(_)), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_baseline_when_given_an_echo_identity() {
    let server = tls_echo().await;
    let identity = PemIdentity::read(&fixture("localhost.crt"), &fixture("localhost.key")).unwrap();
    let tls = TlsOptions {
        insecure_skip_verify: true,
        ..TlsOptions::default()
    };
    let config = LoadConfig {
        echo_baseline: true,
        echo_identity: Some(identity),
        ..config(&server, tls)
    };
    let report = run(config).await.unwrap();
    server.shutdown().await;
    let baseline = report.baseline.unwrap();
    assert!(baseline.setup.tls, "a TLS run gets a TLS baseline");
    assert_eq!(baseline.totals.answered, 300);
}
