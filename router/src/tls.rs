//! TLS for client listeners (rustls, ring provider): the server certificate from PEM files, or a
//! dev certificate generated with rcgen when none is configured; optional client-certificate
//! verification (mutual TLS) against a CA bundle.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};

/// A certificate chain and key as PEM text (what the dev certificate generator returns).
#[derive(Clone)]
pub struct PemPair {
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM (never printed).
    pub key_pem: String,
}

impl std::fmt::Debug for PemPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PemPair { cert_pem, key_pem: *** }")
    }
}

/// Installs the process-wide crypto provider (ring); harmless when already installed.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A self-signed certificate for `localhost`/127.0.0.1, for development and tests.
pub fn dev_certificate() -> anyhow::Result<PemPair> {
    let names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    let cert =
        rcgen::generate_simple_self_signed(names).context("generating the dev certificate")?;
    Ok(PemPair {
        cert_pem: cert.cert.pem(),
        key_pem: cert.key_pair.serialize_pem(),
    })
}

fn certs_from_pem(pem: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("reading certificates")
}

fn key_from_pem(pem: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .context("reading the private key")?
        .context("no private key in the PEM")
}

/// Reads a PEM file into a string.
pub fn read_pem(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Server config from a certificate chain and key, with client certificates required and checked
/// against `client_ca_pem` when given.
pub fn server_config(
    pair: &PemPair,
    client_ca_pem: Option<&str>,
) -> anyhow::Result<Arc<ServerConfig>> {
    install_provider();
    let certs = certs_from_pem(&pair.cert_pem)?;
    let key = key_from_pem(&pair.key_pem)?;
    let builder = ServerConfig::builder();
    let builder = match client_ca_pem {
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for c in certs_from_pem(ca)? {
                roots.add(c).context("adding a client CA")?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .context("client verifier")?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let config = builder
        .with_single_cert(certs, key)
        .context("server certificate")?;
    Ok(Arc::new(config))
}
