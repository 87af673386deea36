//! TLS for client listeners (rustls, ring provider): the server certificate from PEM files (in
//! development mode only, a self-signed one generated with rcgen when none is configured);
//! optional client-certificate verification (mutual TLS) against a CA bundle.

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

/// Why a TLS listener needs a certificate, and how to make one.
fn missing_certificate_error(listen: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "[server] tls_listen = \"{listen}\" needs a certificate: set tls_cert (certificate chain, \
         PEM) and tls_key (its private key, PEM). Use one issued by your CA; for a self-signed test \
         certificate: `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
         -days 365 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
         -keyout server.key -out server.crt && chmod 600 server.key` (or rcgen). To serve plain \
         TCP only, set tls_listen = \"\". For a throwaway local run only, `paymesh serve --dev` \
         (or [server] dev_mode = true) generates a self-signed certificate"
    )
}

/// The TLS listener's server config from `server`'s files: the certificate and key, and the
/// client CA for mutual TLS. Without a certificate, in development mode only, a generated
/// self-signed one, whose PEM is returned too (for clients to trust).
pub fn listener_config(
    server: &crate::config::ServerConfig,
) -> anyhow::Result<(Arc<ServerConfig>, Option<String>)> {
    let (pair, dev_cert_pem) = match (&server.tls_cert, &server.tls_key) {
        (Some(cert), Some(key)) => (
            PemPair {
                cert_pem: read_pem(cert)?,
                key_pem: read_pem(key)?,
            },
            None,
        ),
        _ if server.dev_mode => {
            let pair = dev_certificate()?;
            tracing::warn!(
                "development mode: no tls_cert, using a generated self-signed certificate (never in production)"
            );
            let pem = pair.cert_pem.clone();
            (pair, Some(pem))
        }
        _ => return Err(missing_certificate_error(&server.tls_listen)),
    };
    let ca = match &server.tls_client_ca {
        Some(path) => Some(read_pem(path)?),
        None => None,
    };
    Ok((server_config(&pair, ca.as_deref())?, dev_cert_pem))
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
