//! Who may act for which merchant, and who may follow an order up.
//!
//! A network (a VAN or carrier, one login identity) acts only for the merchants it is granted:
//! every request naming another merchant is answered exactly as if that merchant were not
//! configured, so a network learns nothing about merchants it does not serve. Every order records
//! the network that created it; follow-ups (capture, cancel, refund, inquiry, retransmission) come
//! from that network, or from any network granted the merchant where the merchant's
//! [`FollowUps`] policy says so. An order the network may not touch is answered exactly as a
//! missing order is.
//!
//! The shards keep the creating network as a small number ([`NetworkNames`]) rather than its id,
//! since every order carries one.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::MeshError;

/// Which networks may follow up a merchant's orders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FollowUps {
    /// Only the network that created the order (the default: a VAN's orders are its own).
    #[default]
    Creator,
    /// Any network granted the merchant (a merchant served by several VANs that share orders).
    AnyGrantedNetwork,
}

/// The merchants one network may act for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    /// Every configured merchant (must be written explicitly in the config).
    AllMerchants,
    /// These merchants only.
    Merchants(HashSet<Bytes>),
}

/// Most networks one router serves: a shard numbers them in a `u16`, one value of which marks an
/// order whose creator was not recorded.
pub const NETWORKS_MAX: usize = 4_096;

/// Every network's grant, by network id.
#[derive(Debug, Default, Clone)]
pub struct AccessTable {
    grants: HashMap<Bytes, Grant>,
}

impl AccessTable {
    /// A table from (network id, grant) pairs.
    pub fn new(rows: impl IntoIterator<Item = (Bytes, Grant)>) -> Result<Self, MeshError> {
        let mut grants = HashMap::new();
        for (network, grant) in rows {
            if grants.insert(network.clone(), grant).is_some() {
                return Err(MeshError::Config(format!(
                    "network {:?} configured twice",
                    String::from_utf8_lossy(&network)
                )));
            }
        }
        if grants.len() > NETWORKS_MAX {
            return Err(MeshError::Config(format!(
                "{} networks configured; at most {NETWORKS_MAX}",
                grants.len()
            )));
        }
        Ok(Self { grants })
    }

    /// A table granting each of `networks` every merchant (benchmarks, the simulation, tests).
    pub fn grant_all(networks: &[&[u8]]) -> Self {
        let grants = networks
            .iter()
            .map(|n| (Bytes::copy_from_slice(n), Grant::AllMerchants))
            .collect();
        Self { grants }
    }

    /// Whether `network` is granted `merchant` (whether the merchant is configured is the
    /// caller's to check).
    pub fn grants(&self, network: &[u8], merchant: &[u8]) -> bool {
        match self.grants.get(network) {
            Some(Grant::AllMerchants) => true,
            Some(Grant::Merchants(set)) => set.contains(merchant),
            None => false,
        }
    }

    /// Whether the table knows `network`.
    pub fn knows(&self, network: &[u8]) -> bool {
        self.grants.contains_key(network)
    }
}

/// Who sent a request a shard handles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin<'a> {
    /// A logged-in network, by id: its grants and the orders' creators are checked.
    Network(&'a [u8]),
    /// A request replayed from the journal, from this network. Only requests that passed the
    /// checks were journaled, so replay does not check them again: grants may have changed since,
    /// and what was acknowledged then must come back as it was.
    Replayed(&'a [u8]),
    /// A request replayed from a journal written before requests recorded their network: it was
    /// admitted when it was written, and the order it creates has no recorded creator.
    Unrecorded,
}

/// What a shard's step did with a request, for the shell: whether to journal it.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The request may have changed the shard: journal it before its outputs leave.
    Journal,
    /// The request changed nothing (refused by the access checks, or an inquiry): nothing to
    /// journal, and replay must never see it (it would be checked against today's grants).
    Skip,
}

/// A request's sender as the shard checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caller {
    /// Its number in the shard ([`NETWORK_UNRECORDED`] when not recorded).
    pub(crate) network: NetworkNo,
    /// A replayed request: admitted when it was journaled, not checked again.
    pub(crate) replayed: bool,
    /// Replayed from a journal of a build before networks owned orders: the ids and tokens it
    /// made were that build's (sequential ids, `tok` tokens), and replay must make the same.
    pub(crate) legacy: bool,
}

/// A network's number in one shard ([`NetworkNames`]).
pub type NetworkNo = u16;

/// The number of an order whose creating network was not recorded (an older journal or
/// snapshot): any network granted its merchant may follow it up.
pub const NETWORK_UNRECORDED: NetworkNo = u16::MAX;

/// A shard's numbering of the networks that created its orders, in first-seen order. It only
/// grows, and only with networks of the access table, so it is bounded by [`NETWORKS_MAX`].
#[derive(Debug, Default, Clone)]
pub struct NetworkNames {
    names: Vec<Bytes>,
    numbers: HashMap<Bytes, NetworkNo>,
}

impl NetworkNames {
    /// The number of `network`, numbering it if it is new; `None` once [`NETWORKS_MAX`] are
    /// numbered.
    pub fn number(&mut self, network: &[u8]) -> Option<NetworkNo> {
        if let Some(n) = self.numbers.get(network) {
            return Some(*n);
        }
        if self.names.len() >= NETWORKS_MAX {
            return None;
        }
        let n = NetworkNo::try_from(self.names.len()).ok()?;
        let name = Bytes::copy_from_slice(network);
        self.names.push(name.clone());
        self.numbers.insert(name, n);
        Some(n)
    }

    /// The number of `network` if it has one.
    pub fn get(&self, network: &[u8]) -> Option<NetworkNo> {
        self.numbers.get(network).copied()
    }

    /// The id of network number `n`.
    pub fn name(&self, n: NetworkNo) -> Option<&Bytes> {
        self.names.get(usize::from(n))
    }

    /// Every numbered network id, by number.
    pub fn names(&self) -> &[Bytes] {
        &self.names
    }

    /// Rebuilds the numbering from [`NetworkNames::names`] (a snapshot).
    pub fn from_names(names: Vec<Bytes>) -> Option<Self> {
        if names.len() > NETWORKS_MAX {
            return None;
        }
        let mut numbers = HashMap::with_capacity(names.len());
        for (i, name) in names.iter().enumerate() {
            if numbers
                .insert(name.clone(), NetworkNo::try_from(i).ok()?)
                .is_some()
            {
                return None;
            }
        }
        Some(Self { names, numbers })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_per_network_and_all_is_explicit() {
        let only_m1 = Grant::Merchants([Bytes::from_static(b"M1")].into_iter().collect());
        let table = AccessTable::new([
            (Bytes::from_static(b"VAN-A"), only_m1),
            (Bytes::from_static(b"VAN-B"), Grant::AllMerchants),
        ])
        .unwrap();
        assert!(table.grants(b"VAN-A", b"M1"));
        assert!(!table.grants(b"VAN-A", b"M2"));
        assert!(table.grants(b"VAN-B", b"M2"));
        assert!(!table.grants(b"VAN-C", b"M1"));
        let twice = AccessTable::new([
            (Bytes::from_static(b"VAN-A"), Grant::AllMerchants),
            (Bytes::from_static(b"VAN-A"), Grant::AllMerchants),
        ]);
        assert!(twice.is_err());
    }

    #[test]
    fn network_numbers_are_stable_and_survive_a_round_trip() {
        let mut names = NetworkNames::default();
        assert_eq!(names.number(b"A"), Some(0));
        assert_eq!(names.number(b"B"), Some(1));
        assert_eq!(names.number(b"A"), Some(0));
        let again = NetworkNames::from_names(names.names().to_vec()).unwrap();
        assert_eq!(again.get(b"B"), Some(1));
        assert_eq!(again.name(0).map(|b| &b[..]), Some(&b"A"[..]));
        assert!(NetworkNames::from_names(vec![Bytes::from_static(b"A"); 2]).is_none());
    }
}
