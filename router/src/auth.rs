//! Network credentials: stored as Argon2id PHC strings in the config, verified at login. A verified
//! credential is remembered as a keyed SHA-256 digest (key random per process) so that a network
//! opening a thousand connections pays for Argon2 once, not a thousand times.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use paymesh_actors::mesh::session::Authenticator;
use sha2::{Digest, Sha256};

/// Networks and their hashed credentials.
pub struct Credentials {
    hashes: HashMap<Vec<u8>, String>,
    cache_key: [u8; 32],
    verified: Mutex<HashMap<Vec<u8>, [u8; 32]>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print hashes or the cache.
        f.debug_struct("Credentials")
            .field("networks", &self.hashes.len())
            .finish()
    }
}

impl Credentials {
    /// From (network id, Argon2 PHC string) pairs; each string is parsed now so a bad one fails start-up.
    pub fn new(networks: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Self> {
        let mut hashes = HashMap::new();
        for (id, phc) in networks {
            PasswordHash::new(&phc).map_err(|e| {
                anyhow::anyhow!("network {id}: credential_hash is not a PHC string: {e}")
            })?;
            hashes.insert(id.into_bytes(), phc);
        }
        let mut cache_key = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut cache_key);
        Ok(Self {
            hashes,
            cache_key,
            verified: Mutex::new(HashMap::new()),
        })
    }

    fn digest(&self, network_id: &[u8], credential: &[u8]) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.cache_key);
        h.update((network_id.len() as u64).to_be_bytes());
        h.update(network_id);
        h.update(credential);
        h.finalize().into()
    }
}

impl Authenticator for Credentials {
    fn verify(&self, network_id: &[u8], credential: &[u8]) -> bool {
        let Some(phc) = self.hashes.get(network_id) else {
            return false;
        };
        let digest = self.digest(network_id, credential);
        if let Ok(cache) = self.verified.lock()
            && let Some(known) = cache.get(network_id)
        {
            // Constant-time compare of two digests.
            if known
                .iter()
                .zip(digest.iter())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
            {
                return true;
            }
        }
        let ok = PasswordHash::new(phc)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(credential, &parsed)
                    .is_ok()
            })
            .unwrap_or(false);
        if ok && let Ok(mut cache) = self.verified.lock() {
            cache.insert(network_id.to_vec(), digest);
        }
        ok
    }
}

/// Hashes a credential for the config file (`paymesh hash-credential`).
pub fn hash_credential(credential: &str) -> anyhow::Result<String> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(credential.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing failed: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn right_credential_passes_wrong_fails_and_cache_does_not_leak_across_networks() {
        let phc = hash_credential("s3cret").unwrap();
        let creds =
            Credentials::new([("VAN1".to_string(), phc.clone()), ("VAN2".to_string(), phc)])
                .unwrap();
        assert!(creds.verify(b"VAN1", b"s3cret"));
        assert!(creds.verify(b"VAN1", b"s3cret"), "cached path");
        assert!(!creds.verify(b"VAN1", b"s3cre"));
        assert!(!creds.verify(b"VAN3", b"s3cret"));
        assert!(creds.verify(b"VAN2", b"s3cret"));
        assert!(!format!("{creds:?}").contains("argon2"));
    }

    #[test]
    fn a_bad_hash_fails_start_up() {
        assert!(Credentials::new([("VAN1".to_string(), "plaintext".to_string())]).is_err());
    }
}
