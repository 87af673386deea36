//! Identifiers a client must not be able to guess: server transaction ids and wallet tokens.
//!
//! A shard numbers its transactions with a sequence (unique, restart-safe: the journal restores
//! it). Handing that sequence out would let one network walk through its neighbours' ids, so the
//! id carries a keyed permutation of it instead: `shard u16 << 48 | 1 << 47 | P(sequence)`, where
//! `P` is a four-round Feistel network over 46 bits whose round function is keyed BLAKE2s. `P` is a
//! bijection, so ids stay unique; bit 47 keeps them apart from the sequential ids older builds gave
//! (which never reached it); the shard stays readable in the top bits (routing, recovery); ids stay
//! below 2^63 (shards < 2^15) and do not change across restarts as long as the key does not. 2^46
//! transactions per shard is the id space. Wallet tokens are 128 bits of keyed BLAKE2s over the token's (unique) transaction id:
//! unguessable, and the same again when the journal is replayed.
//!
//! The keys are derived from the journal's key material ([`CoreSecrets::derive`]), so a replay
//! reproduces every id and token; key management takes them over later.

use blake2::Blake2sMac;
use blake2::digest::consts::{U4, U16, U32};
use blake2::digest::{KeyInit, Mac};

/// Bits of the sequence a transaction id permutes.
const SEQ_BITS: u32 = 46;
/// The bit that marks a permuted id (above every sequential id an older build gave).
const PERMUTED_BIT: u64 = 1 << 47;
const HALF_BITS: u32 = SEQ_BITS / 2;
const HALF_MASK: u64 = (1 << HALF_BITS) - 1;
/// Feistel rounds: four make the permutation indistinguishable from a random one even to a
/// client that can ask for ids and look ids up (Luby–Rackoff).
const ROUNDS: u8 = 4;
/// Characters of a wallet token: a prefix and 128 bits in hex.
pub const TOKEN_PREFIX: &str = "pmt_";

/// Keys for the identifiers of one router. `Debug` never shows them.
#[derive(Clone)]
pub struct CoreSecrets {
    txn_ids: Blake2sMac<U4>,
    tokens: Blake2sMac<U16>,
}

impl std::fmt::Debug for CoreSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CoreSecrets(***)")
    }
}

impl Default for CoreSecrets {
    /// Keys from the OS random source: ids differ after a restart (use without a journal only).
    fn default() -> Self {
        let mut master = [0u8; 32];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut master);
        Self::derive(&master)
    }
}

/// A 32-byte subkey of `master` for `purpose` (keyed BLAKE2s as a PRF).
fn subkey(master: &[u8; 32], purpose: &[u8]) -> [u8; 32] {
    let mut mac = <Blake2sMac<U32> as KeyInit>::new(&(*master).into());
    mac.update(b"paymesh/");
    mac.update(purpose);
    mac.finalize().into_bytes().into()
}

impl CoreSecrets {
    /// The identifier keys derived from 32 bytes of key material.
    pub fn derive(master: &[u8; 32]) -> Self {
        let txn_ids = <Blake2sMac<U4> as KeyInit>::new(&subkey(master, b"txn-id/v1").into());
        let tokens = <Blake2sMac<U16> as KeyInit>::new(&subkey(master, b"token/v1").into());
        Self { txn_ids, tokens }
    }

    fn round(&self, round: u8, half: u64) -> u64 {
        let mut mac = self.txn_ids.clone();
        mac.update(&[round]);
        mac.update(&half.to_be_bytes());
        let out: [u8; 4] = mac.finalize().into_bytes().into();
        u64::from(u32::from_be_bytes(out)) & HALF_MASK
    }

    /// The transaction id bits (below the shard) of sequence number `seq`: the keyed
    /// permutation of its low 46 bits, with bit 47 set.
    pub fn permute(&self, seq: u64) -> u64 {
        let (mut left, mut right) = ((seq >> HALF_BITS) & HALF_MASK, seq & HALF_MASK);
        for round in 0..ROUNDS {
            let next = left ^ self.round(round, right);
            left = right;
            right = next;
        }
        PERMUTED_BIT | (left << HALF_BITS) | right
    }

    /// The inverse of [`CoreSecrets::permute`] (the sequence's low 46 bits).
    pub fn unpermute(&self, permuted: u64) -> u64 {
        let (mut left, mut right) = ((permuted >> HALF_BITS) & HALF_MASK, permuted & HALF_MASK);
        for round in (0..ROUNDS).rev() {
            let previous = right ^ self.round(round, left);
            right = left;
            left = previous;
        }
        (left << HALF_BITS) | right
    }

    /// The wallet token of the TOKENIZE with transaction id `txn_id`.
    pub fn token(&self, txn_id: u64) -> String {
        let mut mac = self.tokens.clone();
        mac.update(&txn_id.to_be_bytes());
        let bits: [u8; 16] = mac.finalize().into_bytes().into();
        let mut token = String::with_capacity(TOKEN_PREFIX.len() + 32);
        token.push_str(TOKEN_PREFIX);
        for b in bits {
            token.push_str(&format!("{b:02x}"));
        }
        token
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permutation_is_a_keyed_bijection_on_48_bits() {
        let a = CoreSecrets::derive(&[1; 32]);
        let b = CoreSecrets::derive(&[2; 32]);
        let mut seen = std::collections::HashSet::new();
        for seq in (0..4_096u64).chain([(1 << SEQ_BITS) - 1]) {
            // Never a sequential id of an older build (they stayed below bit 47).
            let p = a.permute(seq);
            assert!(p < 1 << 48 && p & PERMUTED_BIT != 0);
            assert_eq!(a.unpermute(p), seq);
            assert!(seen.insert(p), "collision at {seq}");
        }
        // Consecutive sequences land far apart, and another key permutes differently.
        let near = (1..1_000u64)
            .filter(|s| a.permute(*s).abs_diff(a.permute(s - 1)) < 1 << 20)
            .count();
        assert!(near < 20, "{near} close neighbours");
        assert_ne!(a.permute(7), b.permute(7));
        assert_eq!(
            a.permute(7),
            CoreSecrets::derive(&[1; 32]).permute(7),
            "stable"
        );
    }

    #[test]
    fn tokens_are_128_bit_keyed_and_stable() {
        let a = CoreSecrets::derive(&[1; 32]);
        let t = a.token(42);
        assert_eq!(t.len(), TOKEN_PREFIX.len() + 32);
        assert!(t.starts_with(TOKEN_PREFIX));
        assert_eq!(t, CoreSecrets::derive(&[1; 32]).token(42));
        assert_ne!(t, a.token(43));
        assert_ne!(t, CoreSecrets::derive(&[2; 32]).token(42));
        assert!(!format!("{a:?}").contains('1'));
    }
}
