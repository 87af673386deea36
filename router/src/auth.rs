//! Network credentials: stored as Argon2id PHC strings in the config, verified at login. A verified
//! credential is remembered as a keyed SHA-256 digest (key random per process) so that a network
//! opening a thousand connections pays for Argon2 once, not a thousand times.
//!
//! An unknown network id costs the same as a known one with a wrong credential: it is verified
//! against a dummy hash made at start with the configured hashes' parameters, so that the time of
//! a refusal does not tell which network ids exist. (Keep every network's hash at the same
//! parameters, as `paymesh hash-credential` makes them, or their times differ between networks.)
//!
//! With mutual TLS, a network may be bound to its client certificate (by SHA-256 fingerprint or
//! by a name in its subjectAltName): one certificate, one network. A bound network logs in only
//! over a connection whose certificate is bound to it and to no other network.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use rustls::pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};

/// How one network's client certificate is recognised (`[[networks]]` `client_cert_sha256`,
/// `client_cert_name`).
#[derive(Debug, Clone, Default)]
pub struct CertificateBinding {
    /// SHA-256 of the certificate's DER encoding: any of these (several while certificates rotate).
    pub sha256: Vec<[u8; 32]>,
    /// A DNS name or IP address the certificate's subjectAltName must hold.
    pub name: Option<ServerName<'static>>,
}

impl CertificateBinding {
    /// Whether the binding says anything.
    pub fn is_empty(&self) -> bool {
        self.sha256.is_empty() && self.name.is_none()
    }

    fn matches(&self, der: &[u8], fingerprint: &[u8; 32]) -> bool {
        if self.sha256.iter().any(|f| f == fingerprint) {
            return true;
        }
        let Some(name) = &self.name else {
            return false;
        };
        let der = CertificateDer::from(der);
        rustls::server::ParsedCertificate::try_from(&der)
            .is_ok_and(|cert| rustls::client::verify_server_name(&cert, name).is_ok())
    }
}

/// One `[[networks]]` entry as [`Credentials`] takes it.
#[derive(Debug, Clone)]
pub struct NetworkCredential {
    /// Network id.
    pub id: String,
    /// Argon2 PHC string of its credential.
    pub credential_hash: String,
    /// Its client certificate, when bound to one.
    pub binding: CertificateBinding,
}

impl NetworkCredential {
    /// An entry without a certificate binding.
    pub fn new(id: impl Into<String>, credential_hash: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            credential_hash: credential_hash.into(),
            binding: CertificateBinding::default(),
        }
    }
}

struct Network {
    phc: String,
    binding: CertificateBinding,
}

/// Networks, their hashed credentials and certificate bindings.
pub struct Credentials {
    networks: HashMap<Vec<u8>, Network>,
    /// Verified instead of a network's hash when the network id is unknown.
    dummy_phc: String,
    cache_key: [u8; 32],
    verified: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes or the cache.
        f.debug_struct("Credentials")
            .field("networks", &self.networks.len())
            .finish()
    }
}

impl Credentials {
    /// From the configured networks; each hash is parsed now so a bad one fails start-up.
    pub fn new(networks: impl IntoIterator<Item = NetworkCredential>) -> anyhow::Result<Self> {
        let mut by_id = HashMap::new();
        for n in networks {
            PasswordHash::new(&n.credential_hash).map_err(|e| {
                anyhow::anyhow!("network {}: credential_hash is not a PHC string: {e}", n.id)
            })?;
            let network = Network {
                phc: n.credential_hash,
                binding: n.binding,
            };
            anyhow::ensure!(
                by_id.insert(n.id.clone().into_bytes(), network).is_none(),
                "network {} is configured twice",
                n.id
            );
        }
        let dummy_phc = dummy_hash(by_id.values().next().map(|n| n.phc.as_str()))?;
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut cache_key);
        Ok(Self {
            networks: by_id,
            dummy_phc,
            cache_key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    /// A keyed SHA-256 of a network id and credential (the key is random per process, so the
    /// digest reveals nothing outside it): how verified credentials are remembered, and how
    /// identical checks under way are recognised.
    pub fn digest(&self, network_id: &[u8], credential: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((network_id.len() as u64).to_be_bytes());
        h.update(network_id);
        h.update(credential);
        h.finalize().into()
    }

    /// Whether `credential` was verified for `network_id` before (cheap: one SHA-256). Only a
    /// right credential can hit, so answering a hit at once tells nothing about other ids.
    pub fn verified_before(&self, network_id: &[u8], credential: &[u8]) -> bool {
        let digest = self.digest(network_id, credential);
        let Ok(cache) = self.verified.lock() else {
            return false;
        };
        cache.get(network_id).is_some_and(|known| {
            // Constant-time compare of two digests.
            known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
        })
    }

    /// Whether `credential` is right for `network_id`: from the cache when it was verified
    /// before, else one full Argon2 verification, against the dummy hash when the id is unknown
    /// (same work, same answer). Slow on purpose: call it off the actor threads.
    pub fn verify(&self, network_id: &[u8], credential: &[u8]) -> bool {
        self.verified_before(network_id, credential) || self.verify_fully(network_id, credential)
    }

    /// [`Credentials::verify`] without the cache: always the full Argon2 work. For refusals
    /// that must cost the same whether or not the credential is right (a certificate bound to
    /// another network).
    pub fn verify_fully(&self, network_id: &[u8], credential: &[u8]) -> bool {
        let (phc, known) = match self.networks.get(network_id) {
            Some(n) => (n.phc.as_str(), true),
            None => (self.dummy_phc.as_str(), false),
        };
        let ok = PasswordHash::new(phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(credential, &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
            && known;
        if ok && let Ok(mut cache) = self.verified.lock() {
            cache.insert(network_id.to_vec(), self.digest(network_id, credential));
        }
        ok
    }

    /// Whether a connection with `certificate` (DER; none without mutual TLS) may log in as
    /// `network_id`: a bound network needs a certificate bound to it and to no other network; a
    /// certificate bound to nothing, or to other networks, logs in as none.
    pub fn certificate_allows(&self, network_id: &[u8], certificate: Option<&[u8]>) -> bool {
        let Some(network) = self.networks.get(network_id) else {
            return false;
        };
        let Some(der) = certificate else {
            return network.binding.is_empty();
        };
        let fingerprint: [u8; 32] = Sha256::digest(der).into();
        let mut bound_to_it = false;
        for (id, other) in &self.networks {
            if other.binding.matches(der, &fingerprint) {
                if id.as_slice() != network_id {
                    return false;
                }
                bound_to_it = true;
            }
        }
        bound_to_it
    }
}

/// A hash of a random credential with the parameters of `like` (Argon2's defaults without one).
fn dummy_hash(like: Option<&str>) -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut secret);
    let salt = SaltString::generate(&mut OsRng);
    let hashed = match like.map(PasswordHash::new) {
        Some(Ok(parsed)) => {
            let params = argon2::Params::try_from(&parsed)
                .map_err(|e| anyhow::anyhow!("credential hash parameters: {e}"))?;
            Argon2::default().hash_password_customized(
                &secret,
                Some(parsed.algorithm),
                parsed.version,
                params,
                &salt,
            )
        }
        _ => Argon2::default().hash_password(&secret, &salt),
    };
    hashed
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("making the dummy credential hash: {e}"))
}

/// Hashes a credential for the config file (`paymesh hash-credential`).
pub fn hash_credential(credential: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(credential.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

/// SHA-256 of a certificate's DER, as `client_cert_sha256` takes it (lower-case hex).
pub fn certificate_sha256_hex(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn right_credential_passes_wrong_fails_and_cache_does_not_leak_across_networks() {
        let phc = hash_credential("s3cret").unwrap();
        let creds = Credentials::new([
            NetworkCredential::new("VAN1", phc.clone()),
            NetworkCredential::new("VAN2", phc),
        ])
        .unwrap();
        assert!(!creds.verified_before(b"VAN1", b"s3cret"));
        assert!(creds.verify(b"VAN1", b"s3cret"));
        assert!(creds.verified_before(b"VAN1", b"s3cret"), "cached");
        assert!(!creds.verified_before(b"VAN1", b"s3cre"));
        assert!(!creds.verify(b"VAN1", b"s3cre"));
        assert!(!creds.verify(b"VAN3", b"s3cret"));
        assert!(!creds.verified_before(b"VAN2", b"s3cret"));
        assert!(creds.verify(b"VAN2", b"s3cret"));
        assert!(!format!("{creds:?}").contains("argon2"));
    }

    #[test]
    fn unknown_ids_are_verified_against_a_hash_with_the_same_parameters() {
        let phc = hash_credential("s3cret").unwrap();
        let creds = Credentials::new([NetworkCredential::new("VAN1", phc.clone())]).unwrap();
        let params = |p: &str| {
            let h = PasswordHash::new(p).unwrap();
            (h.algorithm.to_string(), h.version, h.params.to_string())
        };
        assert_eq!(params(&creds.dummy_phc), params(&phc));
        assert_ne!(creds.dummy_phc, phc);
        // Even the dummy's own credential cannot log in as an unknown network.
        assert!(!creds.verify(b"NOSUCH", b""));
    }

    #[test]
    fn a_bad_hash_fails_start_up() {
        assert!(Credentials::new([NetworkCredential::new("VAN1", "plaintext")]).is_err());
    }

    fn certificate(names: &[&str]) -> Vec<u8> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        rcgen::generate_simple_self_signed(names)
            .unwrap()
            .cert
            .der()
            .to_vec()
    }

    #[test]
    fn a_certificate_logs_in_only_as_the_one_network_bound_to_it() {
        let phc = hash_credential("x").unwrap();
        let van1 = certificate(&["van1.clients.example"]);
        let van2 = certificate(&["van2.clients.example"]);
        let both = certificate(&["van1.clients.example", "van2.clients.example"]);
        let unbound = certificate(&["other.example"]);
        let mut by_fingerprint = NetworkCredential::new("VAN1", phc.clone());
        by_fingerprint.binding.sha256 = vec![Sha256::digest(&van1).into()];
        let mut by_name = NetworkCredential::new("VAN2", phc.clone());
        by_name.binding.name = Some(ServerName::try_from("van2.clients.example").unwrap());
        let plain = NetworkCredential::new("PLAIN", phc);
        let creds = Credentials::new([by_fingerprint, by_name, plain]).unwrap();

        assert!(creds.certificate_allows(b"VAN1", Some(&van1)));
        assert!(creds.certificate_allows(b"VAN2", Some(&van2)));
        assert!(!creds.certificate_allows(b"VAN2", Some(&van1)));
        assert!(!creds.certificate_allows(b"VAN1", Some(&van2)));
        // A certificate naming two networks' names is bound to VAN2 by name only (VAN1 is bound
        // by fingerprint), so it is VAN2's.
        assert!(creds.certificate_allows(b"VAN2", Some(&both)));
        assert!(!creds.certificate_allows(b"VAN1", Some(&both)));
        // Bound networks need their certificate; a certificate bound to nothing is no one's.
        assert!(!creds.certificate_allows(b"VAN1", None));
        assert!(!creds.certificate_allows(b"PLAIN", Some(&unbound)));
        assert!(creds.certificate_allows(b"PLAIN", None));
        assert!(!creds.certificate_allows(b"NOSUCH", None));
        assert_eq!(certificate_sha256_hex(&van1).len(), 64);
    }

    #[test]
    fn a_certificate_matching_two_networks_logs_in_as_neither() {
        let phc = hash_credential("x").unwrap();
        let cert = certificate(&["shared.example"]);
        let mut a = NetworkCredential::new("A", phc.clone());
        a.binding.name = Some(ServerName::try_from("shared.example").unwrap());
        let mut b = NetworkCredential::new("B", phc);
        b.binding.sha256 = vec![Sha256::digest(&cert).into()];
        let creds = Credentials::new([a, b]).unwrap();
        assert!(!creds.certificate_allows(b"A", Some(&cert)));
        assert!(!creds.certificate_allows(b"B", Some(&cert)));
    }
}
