//! rustls set-up (ring provider, see ../shared/DEPENDENCIES.md): the client configuration of a run
//! (trusted CA, or no verification for the router's dev certificate; optional client certificate)
//! and the echo server's configuration.

use std::fmt;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

use crate::config::TlsOptions;
use crate::error::LoadError;

/// A certificate chain and its private key, PEM text.
#[derive(Clone, PartialEq, Eq)]
pub struct PemIdentity {
    /// Certificate chain, PEM.
    pub cert_pem: String,
    /// Private key, PEM (never printed).
    pub key_pem: String,
}

impl fmt::Debug for PemIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PemIdentity { cert_pem, key_pem: *** }")
    }
}

impl PemIdentity {
    /// Reads a certificate file and a key file.
    pub fn read(cert: &std::path::Path, key: &std::path::Path) -> Result<PemIdentity, LoadError> {
        Ok(PemIdentity {
            cert_pem: read_text(cert)?,
            key_pem: read_text(key)?,
        })
    }
}

fn read_text(path: &std::path::Path) -> Result<String, LoadError> {
    std::fs::read_to_string(path)
        .map_err(|e| LoadError::Tls(format!("cannot read {}: {e}", path.display())))
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| LoadError::Tls(format!("reading certificates: {e}")))?;
    if certs.is_empty() {
        return Err(LoadError::Tls("no certificate in the PEM".to_owned()));
    }
    Ok(certs)
}

fn key(pem: &str) -> Result<PrivateKeyDer<'static>, LoadError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|e| LoadError::Tls(format!("reading the private key: {e}")))?
        .ok_or_else(|| LoadError::Tls("no private key in the PEM".to_owned()))
}

/// The client configuration for `options`.
pub fn client_config(options: &TlsOptions) -> Result<Arc<ClientConfig>, LoadError> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Tls(e.to_string()))?;
    let builder = if options.insecure_skip_verify {
        let algorithms = provider.signature_verification_algorithms;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate { algorithms }))
    } else {
        let ca_pem = match (&options.ca_pem, &options.ca) {
            (Some(pem), _) => pem.clone(),
            (None, Some(path)) => read_text(path)?,
            (None, None) => return Err(LoadError::Tls("no CA to verify the server".to_owned())),
        };
        let mut roots = RootCertStore::empty();
        for cert in certs(&ca_pem)? {
            roots
                .add(cert)
                .map_err(|e| LoadError::Tls(format!("CA certificate: {e}")))?;
        }
        builder.with_root_certificates(roots)
    };
    let config = match (&options.client_cert, &options.client_key) {
        (Some(cert), Some(key_path)) => {
            let identity = PemIdentity::read(cert, key_path)?;
            builder
                .with_client_auth_cert(certs(&identity.cert_pem)?, key(&identity.key_pem)?)
                .map_err(|e| LoadError::Tls(format!("client certificate: {e}")))?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to send in SNI and verify the certificate against.
pub fn server_name(options: &TlsOptions) -> Result<ServerName<'static>, LoadError> {
    ServerName::try_from(options.server_name.clone())
        .map_err(|e| LoadError::Tls(format!("server name {:?}: {e}", options.server_name)))
}

/// A server configuration (for the echo server) from a certificate chain and key.
pub fn server_config(identity: &PemIdentity) -> Result<Arc<ServerConfig>, LoadError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Tls(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs(&identity.cert_pem)?, key(&identity.key_pem)?)
        .map_err(|e| LoadError::Tls(format!("server certificate: {e}")))?;
    Ok(Arc::new(config))
}

/// `--insecure-skip-verify`: accepts any certificate, but still checks the handshake signatures
/// (so the session is encrypted to whoever holds the presented key).
#[derive(Debug)]
struct AcceptAnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
