//! Versioned business settings: merchants (limits, currencies, devices, follow-up policy) and
//! networks' grants as data with a version number, journaled where each shard starts using them.
//!
//! The router's TOML file seeds them; a reload (SIGHUP today, the consoles later) makes a new
//! version. Each shard journals a [`RECORD_SETTINGS`] record holding its part of the version (its
//! own merchants and the grants naming them) in its own record stream, and switches in the same
//! actor step, so every request record that follows was handled under that version. Replay
//! switches at the same records, and a checkpoint carries each shard's version with its snapshot:
//! the version in force when a record was written is the one replay applies, whatever the file
//! says at restart.
//!
//! A version records the hash of the whole data it was made from ([`BusinessData::hash`]). At
//! start-up the file's data is compared with the newest version's hash: equal, the shards stay
//! on it (those a crash left behind catch up); different, the file's data becomes the next
//! version. Without any version (a new journal, or one written before versions existed) the
//! file's data is version 1, and records written before it replay under the file's data.
//!
//! Record payload ([`RECORD_SETTINGS`], in clear: no card data or secrets, only ids, limits and
//! device public keys): `shard u16 | format u8 | version u64 | hash [32] | JSON of the shard's
//! part`. JSON through serde keeps the format open: a field added to the configuration with a
//! default reads older records.

use std::sync::Arc;

use blake2::{Blake2s256, Digest};
use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use super::access::{AccessTable, Grant};
use super::config::{CoreSettings, MerchantConfig};
use super::journal_codec::RECORD_SETTINGS;
use super::shard::{ShardCore, shard_for_merchant};
use crate::error::MeshError;

/// The format of [`RECORD_SETTINGS`] payloads this build writes and the newest it reads.
pub const SETTINGS_FORMAT: u8 = 1;

/// Largest JSON part one shard's settings record holds: a journal record is at most 1 MiB, and
/// a shard's merchants (about 200 bytes each with no devices) must fit in one. Past it start-up
/// and reloads are refused with this limit named, rather than a record the journal refuses.
pub const SETTINGS_JSON_BYTES_MAX: usize = 1_000_000;

/// Written in a grant for "every merchant".
pub const ALL_MERCHANTS: &str = "*";

/// One network's grant as data: merchant ids, or [`ALL_MERCHANTS`] alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NetworkGrant {
    /// Network id (1..32 bytes).
    pub network: String,
    /// Merchant ids the network may act for, or `["*"]`.
    pub merchants: Vec<String>,
}

/// The business settings that versions carry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BusinessData {
    /// Merchants, in configuration order.
    pub merchants: Vec<MerchantConfig>,
    /// Every network's grant, in configuration order.
    pub grants: Vec<NetworkGrant>,
}

impl BusinessData {
    /// A digest of the data (BLAKE2s-256 of its JSON): what start-up compares the file with.
    pub fn hash(&self) -> Result<[u8; 32], MeshError> {
        let json = serde_json::to_vec(self).map_err(|e| MeshError::Config(e.to_string()))?;
        Ok(Blake2s256::digest(&json).into())
    }

    /// The part shard `shard` of `shards` needs: its merchants, and grants naming only them
    /// (every network stays listed, so one granted nothing here is still a known network).
    pub fn for_shard(&self, shard: u16, shards: usize) -> BusinessData {
        let mine = |id: &str| shard_for_merchant(id.as_bytes(), shards) == usize::from(shard);
        BusinessData {
            merchants: self
                .merchants
                .iter()
                .filter(|m| mine(&m.id))
                .cloned()
                .collect(),
            grants: self
                .grants
                .iter()
                .map(|g| NetworkGrant {
                    network: g.network.clone(),
                    merchants: g
                        .merchants
                        .iter()
                        .filter(|m| *m == ALL_MERCHANTS || mine(m))
                        .cloned()
                        .collect(),
                })
                .collect(),
        }
    }

    /// The grants as the shards check them.
    pub fn access(&self) -> Result<AccessTable, MeshError> {
        AccessTable::new(self.grants.iter().map(|g| {
            let grant = if g.merchants.iter().any(|m| m == ALL_MERCHANTS) {
                Grant::AllMerchants
            } else {
                Grant::Merchants(
                    g.merchants
                        .iter()
                        .map(|m| Bytes::copy_from_slice(m.as_bytes()))
                        .collect(),
                )
            };
            (Bytes::copy_from_slice(g.network.as_bytes()), grant)
        }))
    }
}

/// One shard's part of one version, as journaled.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardSettings {
    /// The shard.
    pub shard: u16,
    /// The version (1 and up).
    pub version: u64,
    /// [`BusinessData::hash`] of the whole data the version was made from.
    pub hash: [u8; 32],
    /// The shard's part ([`BusinessData::for_shard`]).
    pub data: BusinessData,
}

/// Encodes a [`RECORD_SETTINGS`] payload.
pub fn encode_settings(s: &ShardSettings) -> Result<Bytes, MeshError> {
    let json = serde_json::to_vec(&s.data).map_err(|e| MeshError::Config(e.to_string()))?;
    if json.len() > SETTINGS_JSON_BYTES_MAX {
        return Err(MeshError::Config(format!(
            "shard {}'s merchants and grants take {} bytes, more than one journal record holds \
             ({SETTINGS_JSON_BYTES_MAX}); configure more shards for this many merchants",
            s.shard,
            json.len()
        )));
    }
    let mut b = BytesMut::with_capacity(43 + json.len());
    b.put_u16(s.shard);
    b.put_u8(SETTINGS_FORMAT);
    b.put_u64(s.version);
    b.put_slice(&s.hash);
    b.put_slice(&json);
    Ok(b.freeze())
}

/// Decodes a [`RECORD_SETTINGS`] payload; a newer format is refused by name.
pub fn decode_settings(mut p: &[u8]) -> Result<ShardSettings, MeshError> {
    let bad = |why: &str| MeshError::Journal(format!("malformed settings record: {why}"));
    if p.len() < 43 {
        return Err(bad("truncated"));
    }
    let shard = p.get_u16();
    let format = p.get_u8();
    if format > SETTINGS_FORMAT {
        return Err(MeshError::NewerFormat {
            what: "settings record",
            found: u16::from(format),
            known: u16::from(SETTINGS_FORMAT),
        });
    }
    let version = p.get_u64();
    let mut hash = [0u8; 32];
    p.copy_to_slice(&mut hash);
    let data = serde_json::from_slice(p).map_err(|e| bad(&e.to_string()))?;
    Ok(ShardSettings {
        shard,
        version,
        hash,
        data,
    })
}

impl CoreSettings {
    /// These settings with the business data of `part` (validated as at start-up) in place of
    /// their own; everything else (routes, capacities, keys) is kept. `record` is the part's
    /// encoded payload, which the shard's checkpoint carries.
    pub fn with_version(
        &self,
        part: &ShardSettings,
        record: Bytes,
    ) -> Result<Arc<Self>, MeshError> {
        // Everything but the business data is carried over as it is (routes, capacities, keys,
        // STAN plans...), whatever fields the settings grow.
        Ok(Arc::new(Self {
            merchants: super::config::merchants_by_id(&part.data.merchants)?,
            access: part.data.access()?,
            devices: super::device::DeviceRegistry::new(&part.data.merchants)?,
            version: part.version,
            version_hash: part.hash,
            version_record: record,
            ..self.clone()
        }))
    }

    /// Settings for the payload of a [`RECORD_SETTINGS`] record, on these as the base.
    pub fn with_record(&self, record: &[u8]) -> Result<Arc<Self>, MeshError> {
        let part = decode_settings(record)?;
        self.with_version(&part, Bytes::copy_from_slice(record))
    }
}

/// The file's business data, to be made the shards' version at start-up or on reload.
#[derive(Debug)]
pub struct Seed {
    /// The whole data.
    pub data: BusinessData,
    /// Its [`BusinessData::hash`].
    pub hash: [u8; 32],
}

impl Seed {
    /// A seed of `data`.
    pub fn new(data: BusinessData) -> Result<Self, MeshError> {
        let hash = data.hash()?;
        Ok(Self { data, hash })
    }

    /// The version the shards must run: the newest one among `versions` (each shard's, with its
    /// hash) when it was made from this same data, the next one otherwise.
    pub fn target_version(&self, versions: impl IntoIterator<Item = (u64, [u8; 32])>) -> u64 {
        let newest = versions.into_iter().max_by_key(|(v, _)| *v);
        match newest {
            Some((v, hash)) if v > 0 && hash == self.hash => v,
            Some((v, _)) => v + 1,
            None => 1,
        }
    }

    /// Shard `shard`'s settings record for `version`, and the settings built on `base`.
    pub fn part(
        &self,
        base: &CoreSettings,
        shard: u16,
        shards: usize,
        version: u64,
    ) -> Result<(Bytes, Arc<CoreSettings>), MeshError> {
        let part = ShardSettings {
            shard,
            version,
            hash: self.hash,
            data: self.data.for_shard(shard, shards),
        };
        let record = encode_settings(&part)?;
        let settings = base.with_version(&part, record.clone())?;
        Ok((record, settings))
    }

    /// The whole data's settings (the store lookup's, which answers for every shard).
    pub fn whole(&self, base: &CoreSettings, version: u64) -> Result<Arc<CoreSettings>, MeshError> {
        let part = ShardSettings {
            shard: u16::MAX,
            version,
            hash: self.hash,
            data: self.data.clone(),
        };
        base.with_version(&part, Bytes::new())
    }

    /// Brings recovered (or new) `cores` to this seed's version at start-up: switches every core
    /// not on it and returns the records to journal before serving, one per switched shard.
    pub fn settle<R: Clone>(
        &self,
        base: &CoreSettings,
        cores: &mut [ShardCore<R>],
    ) -> Result<(u64, Vec<(u8, Bytes)>), MeshError> {
        let target = self.target_version(
            cores
                .iter()
                .map(|c| (c.settings().version, c.settings().version_hash)),
        );
        let shards = cores.len();
        let mut records = Vec::new();
        for core in cores.iter_mut() {
            let current = core.settings();
            if current.version == target && current.version_hash == self.hash {
                continue;
            }
            let (record, settings) = self.part(base, core.shard(), shards, target)?;
            core.apply_settings(settings);
            records.push((RECORD_SETTINGS, record));
        }
        Ok((target, records))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::access::FollowUps;
    use crate::core::config::DeviceSignaturePolicy;
    use crate::core::journal_codec::{JournalKey, RECORD_META, encode_meta};
    use crate::core::recovery::{ClearPart, Recovery, encode_checkpoint_sealing};

    const SHARDS: usize = 2;

    fn merchant(id: &str, single_limit: Option<u64>) -> MerchantConfig {
        MerchantConfig {
            id: id.into(),
            enabled: true,
            single_limit_minor: single_limit,
            daily_limit_minor: None,
            currencies: vec![],
            follow_ups: FollowUps::Creator,
            devices: vec![],
            device_signature: DeviceSignaturePolicy::Optional,
        }
    }

    fn data(limit: u64, granted: &[&str]) -> BusinessData {
        BusinessData {
            merchants: vec![merchant("M1", Some(limit)), merchant("M2", None)],
            grants: vec![NetworkGrant {
                network: "VAN".into(),
                merchants: granted.iter().map(|m| (*m).to_string()).collect(),
            }],
        }
    }

    fn base() -> Arc<CoreSettings> {
        CoreSettings::new(&data(1_000, &["*"]).merchants, &[], &[], 540).unwrap()
    }

    fn key() -> JournalKey {
        JournalKey::new(1, &[7; 32], [0; 4])
    }

    fn shard_of(merchant: &str) -> usize {
        shard_for_merchant(merchant.as_bytes(), SHARDS)
    }

    /// Records: the journal's meta, version 1 in both shards, then version 2 (M1's limit
    /// lowered, the network's grant narrowed) in M1's shard only, as a reload cut short leaves it.
    fn journal(v1: &Seed, v2: &Seed) -> Vec<(u8, Bytes)> {
        let base = base();
        let mut records = vec![(RECORD_META, encode_meta(SHARDS as u16))];
        for shard in 0..SHARDS as u16 {
            records.push((RECORD_SETTINGS, v1.part(&base, shard, SHARDS, 1).unwrap().0));
        }
        let m1 = shard_of("M1") as u16;
        records.push((RECORD_SETTINGS, v2.part(&base, m1, SHARDS, 2).unwrap().0));
        records
    }

    #[test]
    fn replay_switches_each_shard_where_its_record_is_and_checkpoints_keep_it() {
        let v1 = Seed::new(data(1_000, &["*"])).unwrap();
        let v2 = Seed::new(data(50, &["M2"])).unwrap();
        let mut recovery = Recovery::new(&[key()], &base(), SHARDS, ()).unwrap();
        for (lsn, (kind, payload)) in journal(&v1, &v2).iter().enumerate() {
            recovery.record(lsn as u64 + 1, *kind, payload).unwrap();
        }
        let replayed = recovery.finish(0).unwrap();
        let m1 = replayed.cores[shard_of("M1")].settings().clone();
        assert_eq!(m1.version, 2);
        assert_eq!(m1.merchants[&b"M1"[..]].single_limit_minor, Some(50));
        assert!(!m1.may_act(b"VAN", b"M1"), "the narrowed grant is in force");
        let other = replayed.cores[1 - shard_of("M1")].settings().clone();
        assert_eq!(other.version, 1);
        // A shard holds only its own merchants.
        assert!(!other.merchants.contains_key(&b"M1"[..]));

        // A checkpoint carries each shard's version with its snapshot.
        let parts = replayed
            .cores
            .iter()
            .enumerate()
            .map(|(i, core)| ClearPart {
                mark_lsn: 10 + i as u64,
                settings: core.settings().version_record.clone(),
                bytes: core.encode_snapshot(),
                seal_with: Some((key(), i as u64)),
            })
            .collect();
        let checkpoint = encode_checkpoint_sealing(parts, true).unwrap();
        let mut recovery = Recovery::new(&[key()], &base(), SHARDS, ()).unwrap();
        recovery.checkpoint(10, &checkpoint).unwrap();
        let restored = recovery.finish(0).unwrap();
        let versions: Vec<u64> = restored
            .cores
            .iter()
            .map(|c| c.settings().version)
            .collect();
        let mut expected = vec![1; SHARDS];
        expected[shard_of("M1")] = 2;
        assert_eq!(versions, expected);
        assert_eq!(
            restored.cores[shard_of("M1")].settings().merchants[&b"M1"[..]].single_limit_minor,
            Some(50)
        );
    }

    #[test]
    fn start_up_keeps_the_newest_version_of_the_same_data_and_makes_the_next_of_new_data() {
        let v1 = Seed::new(data(1_000, &["*"])).unwrap();
        let v2 = Seed::new(data(50, &["M2"])).unwrap();
        let replay = || {
            let mut recovery = Recovery::new(&[key()], &base(), SHARDS, ()).unwrap();
            for (lsn, (kind, payload)) in journal(&v1, &v2).iter().enumerate() {
                recovery.record(lsn as u64 + 1, *kind, payload).unwrap();
            }
            recovery.finish(0).unwrap().cores
        };
        // The file still says version 2's data: the shard left behind catches up, nothing else.
        let mut cores = replay();
        let (version, records) = v2.settle(&base(), &mut cores).unwrap();
        assert_eq!(version, 2);
        assert_eq!(records.len(), 1);
        let caught_up = decode_settings(&records[0].1).unwrap();
        assert_eq!(usize::from(caught_up.shard), 1 - shard_of("M1"));
        assert!(cores.iter().all(|c| c.settings().version == 2));
        let (again, none) = v2.settle(&base(), &mut cores).unwrap();
        assert_eq!((again, none.len()), (2, 0));

        // The file went back to version 1's data: that is a change, so it is version 3.
        let mut cores = replay();
        let (version, records) = v1.settle(&base(), &mut cores).unwrap();
        assert_eq!((version, records.len()), (3, SHARDS));
        assert!(
            cores.iter().all(
                |c| c.settings().may_act(b"VAN", b"M1") || c.shard() as usize != shard_of("M1")
            )
        );
    }

    #[test]
    fn settings_records_round_trip_and_a_newer_format_is_refused_by_name() {
        let part = ShardSettings {
            shard: 1,
            version: 9,
            hash: [3; 32],
            data: data(5, &["M1", "M2"]),
        };
        let encoded = encode_settings(&part).unwrap();
        assert_eq!(decode_settings(&encoded).unwrap(), part);
        let mut newer = encoded.to_vec();
        newer[2] = SETTINGS_FORMAT + 1;
        assert!(matches!(
            decode_settings(&newer),
            Err(MeshError::NewerFormat {
                what: "settings record",
                ..
            })
        ));
        assert!(decode_settings(&encoded[..20]).is_err());
    }
}
