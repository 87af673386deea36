//! Rebuilding the shards from the journal at start-up, sans-IO: the newest checkpoint and the
//! records after it go in, shard cores and the records that resolve what was left in doubt come
//! out.
//!
//! # Checkpoints
//!
//! Shards snapshot themselves one by one, each at its own point of its own record stream: on
//! request a shard encodes its state and, in the same actor step, journals a [`RECORD_MARK`]. Every
//! record that shard journaled before the mark is in its snapshot; every one after is not. The
//! journal checkpoint ([`encode_checkpoint_sealing`]) holds each shard's sealed snapshot with its mark's
//! LSN, and is filed at the smallest of those LSNs; on recovery a record after the checkpoint is
//! applied to its shard only when it is newer than that shard's mark. Records never touch two
//! shards (requests go by merchant hash, outcomes by op id), so no global pause is needed.
//!
//! # In doubt
//!
//! Operations that were sent upstream (or may have been) but have no journaled outcome are in
//! doubt: recovery resolves each with an `Unknown` outcome (order state IN_DOUBT, answered 3004 to
//! inquiries and retries, never authorized a second time) and journals that resolution before the
//! router serves anyone, so a later replay reaches the same state.
//!
//! # Query store
//!
//! [`Recovery::collect_answers`] keeps the answers the replayed records produce (up to a bound), so
//! the router can hand the query store whatever it may have missed at the crash.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use paymesh_codecs::message::TxnAnswer;
use paymesh_journal::Record;

use super::access::Origin;
use super::config::CoreSettings;
use super::journal_codec::{
    JournalKey, META_FORMAT, RECORD_MARK, RECORD_META, RECORD_REQUEST, RECORD_REQUEST_NETWORK,
    RECORD_SETTINGS, RECORD_UPSTREAM, decode_mark, decode_meta, decode_request, decode_upstream,
    encode_meta, encode_upstream, unseal,
};
use super::shard::{Output, ShardCore, shard_for_merchant, shard_of_txn_id};
use super::upstream::{UpstreamOutcome, UpstreamResult};
use super::versions::decode_settings;
use crate::error::MeshError;

/// A checkpoint begins `PMCKPT` and two decimal digits of format version.
/// Format 2 carries each shard's settings version with its snapshot, and says that the records
/// after it are of journal record format 2 (see [`super::journal_codec`]) unless a META record
/// says otherwise. Format 3 has format 2's layout and says that the records after it are of
/// record format 3. Format 1 (no settings versions: the shards ran the configuration file's
/// settings; records of format 1) is still read, and so is 2.
const CHECKPOINT_MAGIC: &[u8; 8] = b"PMCKPT03";
const CHECKPOINT_MAGIC_PREFIX: &[u8; 6] = b"PMCKPT";
/// The checkpoint format this build writes and the newest it reads (the magic's digits).
pub const CHECKPOINT_FORMAT: u16 = 3;

/// The format version a checkpoint's magic names, when it is a checkpoint's magic at all.
fn checkpoint_format(p: &[u8]) -> Option<u16> {
    let digits = p
        .get(..8)?
        .strip_prefix(CHECKPOINT_MAGIC_PREFIX.as_slice())?;
    std::str::from_utf8(digits)
        .ok()
        .filter(|d| d.bytes().all(|b| b.is_ascii_digit()))?
        .parse()
        .ok()
}

/// One shard's part of a checkpoint.
#[derive(Debug, Clone)]
pub struct ShardSnapshot {
    /// LSN of the shard's mark record: its snapshot holds every record of its own before it.
    pub mark_lsn: u64,
    /// The shard's settings record in force at the mark (empty: the file's settings).
    pub settings: Bytes,
    /// The sealed snapshot bytes.
    pub sealed: Bytes,
}

/// A shard's part as the checkpointer receives it: clear, with the key and nonce counter to seal
/// it with (or already sealed, `seal_with` none).
#[derive(Debug)]
pub struct ClearPart {
    /// LSN of the shard's mark record.
    pub mark_lsn: u64,
    /// The shard's settings record in force at the mark (empty: the file's settings).
    pub settings: Bytes,
    /// The snapshot bytes.
    pub bytes: Bytes,
    /// Key and nonce counter; `None` when `bytes` are sealed already.
    pub seal_with: Option<(super::journal_codec::JournalKey, u64)>,
}

/// The checkpoint state stored in the journal: every shard's mark, settings version and sealed
/// snapshot. Layout: magic | parts u16 | store_complete u8 | per part: mark LSN u64 | settings
/// record length u32 | settings record | sealed length u32 | sealed snapshot.
/// `store_complete` says whether the query store had every answer up to the marks (no row was
/// dropped); when false, the next start-up rebuilds the store from the shards. Each part is sealed
/// straight into the checkpoint and dropped: one more copy of the state at most, where sealing
/// each part and then concatenating them held three (hundreds of MB each at full windows).
pub fn encode_checkpoint_sealing(
    parts: Vec<ClearPart>,
    store_complete: bool,
) -> Result<Bytes, MeshError> {
    let sealed_len = |p: &ClearPart| match p.seal_with {
        Some(_) => super::journal_codec::sealed_len(p.bytes.len()),
        None => p.bytes.len(),
    };
    let len = parts
        .iter()
        .map(|p| 16 + p.settings.len() + sealed_len(p))
        .sum::<usize>();
    let mut out = BytesMut::with_capacity(16 + len);
    out.put_slice(CHECKPOINT_MAGIC);
    out.put_u16(parts.len() as u16);
    out.put_u8(u8::from(store_complete));
    for p in parts {
        out.put_u64(p.mark_lsn);
        out.put_u32(p.settings.len() as u32);
        out.put_slice(&p.settings);
        out.put_u32(sealed_len(&p) as u32);
        match &p.seal_with {
            Some((key, nonce)) => super::journal_codec::seal_into(key, *nonce, &p.bytes, &mut out)?,
            None => out.put_slice(&p.bytes),
        }
    }
    Ok(out.freeze())
}

/// A decoded checkpoint: its parts, whether the store was complete, and the journal record
/// format of the records after it (until a META record says otherwise).
pub type Checkpoint = (Vec<ShardSnapshot>, bool, u8);

/// Splits a checkpoint into its parts (sealed; see [`encode_checkpoint_sealing`]).
pub fn decode_checkpoint(mut p: &[u8]) -> Result<Checkpoint, MeshError> {
    let bad = || MeshError::Journal("malformed checkpoint".into());
    let format = checkpoint_format(p);
    if let Some(found) = format.filter(|f| *f > CHECKPOINT_FORMAT) {
        return Err(MeshError::NewerFormat {
            what: "checkpoint",
            found,
            known: CHECKPOINT_FORMAT,
        });
    }
    // The format names the records' after it, and whether parts carry settings versions.
    let (record_format, with_settings) = match format {
        Some(1) => (1, false),
        Some(2) => (2, true),
        Some(3) => (3, true),
        _ => return Err(bad()),
    };
    if p.len() < 11 {
        return Err(bad());
    }
    p.advance(8);
    let count = p.get_u16();
    let store_complete = p.get_u8() == 1;
    let mut parts = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        if p.len() < 12 {
            return Err(bad());
        }
        let mark_lsn = p.get_u64();
        let mut settings = Bytes::new();
        if with_settings {
            let len = p.get_u32() as usize;
            settings = Bytes::copy_from_slice(p.get(..len).ok_or_else(bad)?);
            p.advance(len);
            if p.len() < 4 {
                return Err(bad());
            }
        }
        let len = p.get_u32() as usize;
        let sealed = p.get(..len).ok_or_else(bad)?;
        parts.push(ShardSnapshot {
            mark_lsn,
            settings,
            sealed: Bytes::copy_from_slice(sealed),
        });
        p.advance(len);
    }
    if !p.is_empty() {
        return Err(bad());
    }
    Ok((parts, store_complete, record_format))
}

/// What a replay produced.
#[derive(Debug)]
pub struct Replayed<R> {
    /// One core per shard, in shard order.
    pub cores: Vec<ShardCore<R>>,
    /// Records to journal before serving: a META record for a new journal, and the in-doubt
    /// resolutions.
    pub to_append: Vec<(u8, Bytes)>,
    /// LSN of the checkpoint recovery started from (0: none).
    pub checkpoint_lsn: u64,
    /// Request records replayed.
    pub requests: u64,
    /// Upstream outcome records replayed.
    pub outcomes: u64,
    /// Records after the checkpoint that its snapshots already held.
    pub skipped: u64,
    /// Operations found in doubt and resolved.
    pub in_doubt: u64,
    /// Answers the replayed records produced, oldest first (with [`Recovery::collect_answers`]).
    pub answers: Vec<Box<TxnAnswer>>,
    /// Whether `answers` holds everything the query store may lack: false when the checkpoint
    /// says the store dropped rows, or more answers came than the bound. Then the caller rebuilds
    /// the store from every order in `cores`.
    pub store_complete: bool,
}

/// A replay in progress: feed it the checkpoint (if any), then every record after it in LSN order,
/// then [`Recovery::finish`].
#[derive(Debug)]
pub struct Recovery<R> {
    keys: Vec<JournalKey>,
    settings: Arc<CoreSettings>,
    placeholder: R,
    marks: Vec<u64>,
    meta_seen: bool,
    /// The journal record format of the records being read (their rules: see
    /// [`ShardCore::set_record_format`]).
    format: u8,
    records_seen: u64,
    answers_max: usize,
    scratch: Vec<Output<R>>,
    replayed: Replayed<R>,
}

impl<R: Clone> Recovery<R> {
    /// A replay into `shards` empty cores. `placeholder` stands for the requester of every
    /// replayed request (their answers were given before the crash, or never: they are not resent).
    pub fn new(
        keys: &[JournalKey],
        settings: &Arc<CoreSettings>,
        shards: usize,
        placeholder: R,
    ) -> Result<Self, MeshError> {
        let count =
            u16::try_from(shards).map_err(|_| MeshError::Config("too many shards".into()))?;
        let cores = (0..count)
            .map(|i| ShardCore::new(i, settings.clone(), 0).with_shard_count(count))
            .collect();
        Ok(Self {
            keys: keys.to_vec(),
            settings: settings.clone(),
            placeholder,
            marks: vec![0; shards],
            meta_seen: false,
            format: META_FORMAT,
            records_seen: 0,
            answers_max: 0,
            scratch: Vec::new(),
            replayed: Replayed {
                cores,
                to_append: Vec::new(),
                checkpoint_lsn: 0,
                requests: 0,
                outcomes: 0,
                skipped: 0,
                in_doubt: 0,
                answers: Vec::new(),
                store_complete: true,
            },
        })
    }

    /// Keeps up to `max` answers produced by replayed records (for the query store).
    pub fn collect_answers(&mut self, max: usize) {
        self.answers_max = max;
    }

    /// Loads a checkpoint filed at `lsn` (before any record).
    pub fn checkpoint(&mut self, lsn: u64, state: &[u8]) -> Result<(), MeshError> {
        let (parts, store_complete, format) = decode_checkpoint(state)?;
        if parts.len() != self.marks.len() {
            return Err(MeshError::Config(format!(
                "the journal was written with {} shards; configure shards = {} (it is fixed for a journal)",
                parts.len(),
                parts.len()
            )));
        }
        for (index, part) in parts.iter().enumerate() {
            let clear = unseal(&self.keys, &part.sealed)?;
            let shards = self.marks.len() as u16;
            let settings = if part.settings.is_empty() {
                self.settings.clone()
            } else {
                self.settings.with_record(&part.settings)?
            };
            let core = ShardCore::decode_snapshot(settings, &clear)?.with_shard_count(shards);
            if usize::from(core.shard()) != index {
                return Err(MeshError::Journal(format!(
                    "checkpoint part {index} holds shard {}",
                    core.shard()
                )));
            }
            if let (Some(slot), Some(mark)) = (
                self.replayed.cores.get_mut(index),
                self.marks.get_mut(index),
            ) {
                *slot = core;
                *mark = part.mark_lsn;
            }
        }
        self.meta_seen = true;
        self.set_format(format);
        self.replayed.checkpoint_lsn = lsn;
        self.replayed.store_complete = store_complete;
        Ok(())
    }

    /// Applies one record.
    pub fn record(&mut self, lsn: u64, kind: u8, payload: &[u8]) -> Result<(), MeshError> {
        let at = |e: MeshError| match e {
            // Already says what and why; the record's place adds nothing an operator acts on.
            newer @ MeshError::NewerFormat { .. } => newer,
            e => MeshError::Journal(format!("record {lsn}: {e}")),
        };
        self.records_seen += 1;
        let shards = self.marks.len();
        match kind {
            RECORD_META => {
                let (format, journaled) = decode_meta(payload).map_err(at)?;
                self.set_format(format);
                if usize::from(journaled) != shards {
                    return Err(MeshError::Config(format!(
                        "the journal was written with {journaled} shards; configure shards = {journaled} (it is fixed for a journal)"
                    )));
                }
                self.meta_seen = true;
            }
            RECORD_MARK => {
                decode_mark(payload).map_err(at)?;
            }
            RECORD_SETTINGS => {
                let part = decode_settings(payload).map_err(at)?;
                let index = usize::from(part.shard);
                if index >= shards {
                    return Err(at(MeshError::Journal(format!(
                        "settings record for shard {index} of {shards}"
                    ))));
                }
                if self.covered(index, lsn) {
                    return Ok(());
                }
                let settings = self
                    .settings
                    .with_version(&part, Bytes::copy_from_slice(payload))
                    .map_err(at)?;
                if let Some(core) = self.replayed.cores.get_mut(index) {
                    core.apply_settings(settings);
                }
            }
            RECORD_REQUEST | RECORD_REQUEST_NETWORK => {
                let record = decode_request(&self.keys, kind, payload).map_err(at)?;
                let req = &record.request;
                let index = shard_for_merchant(&req.merchant_id, shards);
                if self.covered(index, lsn) {
                    return Ok(());
                }
                if let Some(core) = self.replayed.cores.get_mut(index) {
                    let to = self.placeholder.clone();
                    let origin = match &record.network {
                        Some(network) => Origin::Replayed(network),
                        None => Origin::Unrecorded,
                    };
                    // Only requests that were admitted were journaled: the step is replayed
                    // whatever it says.
                    let _ = core.handle_request(record.now_ms, to, origin, req, &mut self.scratch);
                }
                self.replayed.requests += 1;
            }
            RECORD_UPSTREAM => {
                let (at_ms, result) = decode_upstream(payload).map_err(at)?;
                let index = usize::from(shard_of_txn_id(result.op_id));
                if self.covered(index, lsn) {
                    return Ok(());
                }
                if let Some(core) = self.replayed.cores.get_mut(index) {
                    core.handle_upstream(at_ms, result, &mut self.scratch);
                }
                self.replayed.outcomes += 1;
            }
            other => {
                return Err(at(MeshError::Journal(format!(
                    "unknown record type {other} (written by a newer PayMesh build?)"
                ))));
            }
        }
        self.keep_answers();
        Ok(())
    }

    /// The records from here on are of journal record format `format`: the cores handle them
    /// by its rules.
    fn set_format(&mut self, format: u8) {
        self.format = format;
        for core in &mut self.replayed.cores {
            core.set_record_format(format);
        }
    }

    /// Whether shard `index`'s snapshot already holds the record at `lsn`.
    fn covered(&mut self, index: usize, lsn: u64) -> bool {
        let covered = self.marks.get(index).is_some_and(|mark| lsn <= *mark);
        self.replayed.skipped += u64::from(covered);
        covered
    }

    fn keep_answers(&mut self) {
        for output in self.scratch.drain(..) {
            if let Output::Reply(_, a) | Output::Replay(_, a) = output {
                if self.replayed.answers.len() < self.answers_max {
                    self.replayed.answers.push(a);
                } else if self.answers_max > 0 {
                    self.replayed.store_complete = false;
                }
            }
        }
    }

    /// Resolves what is left in doubt and returns the cores.
    pub fn finish(mut self, now_ms: u64) -> Result<Replayed<R>, MeshError> {
        if !self.meta_seen {
            if self.records_seen > 0 {
                return Err(MeshError::Journal(
                    "journal has records but no meta record".into(),
                ));
            }
            let count = self.marks.len() as u16;
            self.replayed
                .to_append
                .push((RECORD_META, encode_meta(count)));
        } else if self.format < META_FORMAT {
            // An older build's journal: this build's records follow under its own format.
            let count = self.marks.len() as u16;
            self.replayed
                .to_append
                .push((RECORD_META, encode_meta(count)));
        }
        // What follows (the resolutions below, then live traffic) is this build's.
        self.set_format(META_FORMAT);
        for core in &mut self.replayed.cores {
            for op_id in core.pending_ops() {
                let result = UpstreamResult {
                    op_id,
                    outcome: UpstreamOutcome::Unknown,
                };
                self.replayed
                    .to_append
                    .push((RECORD_UPSTREAM, encode_upstream(now_ms, &result)));
                core.handle_upstream(now_ms, result, &mut self.scratch);
                self.replayed.in_doubt += 1;
            }
            // Nothing replayed was sent: reversals still "in flight" now are the ones just
            // started; the shard's timer sends them once the router runs.
            core.schedule_unsent_reversals(now_ms);
        }
        self.keep_answers();
        Ok(self.replayed)
    }
}

/// Replays `records` (no checkpoint) into `shards` fresh cores: [`Recovery`] in one call.
pub fn replay<R: Clone>(
    records: &[Record],
    keys: &[JournalKey],
    settings: &Arc<CoreSettings>,
    shards: usize,
    placeholder: R,
    now_ms: u64,
) -> Result<Replayed<R>, MeshError> {
    let mut recovery = Recovery::new(keys, settings, shards, placeholder)?;
    for record in records {
        recovery.record(record.lsn.0, record.kind, &record.payload)?;
    }
    recovery.finish(now_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checkpoints_round_trip_and_a_newer_format_is_refused_by_name() {
        let part = |mark_lsn, settings: &'static [u8]| ClearPart {
            mark_lsn,
            settings: Bytes::from_static(settings),
            bytes: Bytes::from_static(b"sealed elsewhere"),
            seal_with: None,
        };
        let encoded =
            encode_checkpoint_sealing(vec![part(7, b""), part(9, b"settings")], true).unwrap();
        let (parts, store_complete, format) = decode_checkpoint(&encoded).unwrap();
        assert_eq!(parts.iter().map(|p| p.mark_lsn).collect::<Vec<_>>(), [7, 9]);
        assert_eq!(parts[1].settings, Bytes::from_static(b"settings"));
        assert_eq!(parts[1].sealed, Bytes::from_static(b"sealed elsewhere"));
        assert!(store_complete);
        assert_eq!(format, META_FORMAT, "records after it are this build's");

        // Format 1 (before settings versions): mark, length, sealed bytes.
        let mut v1 = b"PMCKPT01".to_vec();
        v1.extend_from_slice(&[0, 1, 1]);
        v1.extend_from_slice(&5u64.to_be_bytes());
        v1.extend_from_slice(&3u32.to_be_bytes());
        v1.extend_from_slice(b"abc");
        let (parts, _, format) = decode_checkpoint(&v1).unwrap();
        assert_eq!(format, 1, "records after it are of format 1");
        assert_eq!((parts[0].mark_lsn, parts[0].settings.len()), (5, 0));
        assert_eq!(parts[0].sealed, Bytes::from_static(b"abc"));

        // Format 2 (the same layout): the records after it are of format 2.
        let mut older = encoded.to_vec();
        older.splice(..8, *b"PMCKPT02");
        let (parts, _, format) = decode_checkpoint(&older).unwrap();
        assert_eq!(format, 2, "records after it are of format 2");
        assert_eq!(parts[1].settings, Bytes::from_static(b"settings"));

        let mut newer = encoded.to_vec();
        newer.splice(..8, *b"PMCKPT04");
        let error = decode_checkpoint(&newer).unwrap_err();
        assert!(
            matches!(
                error,
                MeshError::NewerFormat {
                    what: "checkpoint",
                    found: 4,
                    known: 3
                }
            ),
            "{error}"
        );
        // Not a checkpoint at all is damage, not a version question.
        newer.splice(..8, *b"PMCKPTxy");
        assert!(matches!(
            decode_checkpoint(&newer),
            Err(MeshError::Journal(_))
        ));
    }
}
