//! Rebuilding the shards from the journal at start-up, sans-IO: the records go in, shard cores and
//! the records that resolve what was left in doubt come out.
//!
//! Operations that were sent upstream (or may have been) but have no journaled outcome are in
//! doubt: recovery resolves each with an `Unknown` outcome (order state IN_DOUBT, answered 3004 to
//! inquiries and retries, never authorized a second time) and journals that resolution before the
//! router serves anyone, so a later replay reaches the same state. Reversing them at the host comes
//! with the Service Gateway's reversal queue.

use std::sync::Arc;

use bytes::Bytes;
use paymesh_journal::Record;

use super::config::CoreSettings;
use super::journal_codec::{
    JournalKey, RECORD_META, RECORD_REQUEST, RECORD_UPSTREAM, decode_meta, decode_request,
    decode_upstream, encode_upstream,
};
use super::shard::{ShardCore, shard_for_merchant, shard_of_txn_id};
use super::upstream::{UpstreamOutcome, UpstreamResult};
use crate::error::MeshError;

/// What a replay produced.
#[derive(Debug)]
pub struct Replayed<R> {
    /// One core per shard, in shard order.
    pub cores: Vec<ShardCore<R>>,
    /// Records to journal before serving: a META record for a new journal, and the in-doubt
    /// resolutions.
    pub to_append: Vec<(u8, Bytes)>,
    /// Request records replayed.
    pub requests: u64,
    /// Upstream outcome records replayed.
    pub outcomes: u64,
    /// Operations found in doubt and resolved.
    pub in_doubt: u64,
}

/// Replays `records` into `shards` fresh cores. `placeholder` stands for the requester of every
/// replayed request (their answers were given before the crash, or never: they are not resent).
pub fn replay<R: Clone>(
    records: &[Record],
    keys: &[JournalKey],
    settings: &Arc<CoreSettings>,
    shards: usize,
    placeholder: R,
    now_ms: u64,
) -> Result<Replayed<R>, MeshError> {
    let count = u16::try_from(shards).map_err(|_| MeshError::Config("too many shards".into()))?;
    let mut cores: Vec<ShardCore<R>> = (0..count)
        .map(|i| ShardCore::new(i, settings.clone(), 0))
        .collect();
    let mut replayed = Replayed {
        cores: Vec::new(),
        to_append: Vec::new(),
        requests: 0,
        outcomes: 0,
        in_doubt: 0,
    };
    let mut scratch = Vec::new();
    let mut meta_seen = false;
    for record in records {
        let at = |e: MeshError| MeshError::Journal(format!("record {}: {e}", record.lsn.0));
        match record.kind {
            RECORD_META => {
                let journaled = decode_meta(&record.payload).map_err(at)?;
                if usize::from(journaled) != shards {
                    return Err(MeshError::Config(format!(
                        "the journal was written with {journaled} shards; configure shards = {journaled} (it is fixed for a journal)"
                    )));
                }
                meta_seen = true;
            }
            RECORD_REQUEST => {
                let (at_ms, req) = decode_request(keys, &record.payload).map_err(at)?;
                let index = shard_for_merchant(&req.merchant_id, shards);
                if let Some(core) = cores.get_mut(index) {
                    core.handle_request(at_ms, placeholder.clone(), &req, &mut scratch);
                }
                replayed.requests += 1;
            }
            RECORD_UPSTREAM => {
                let (at_ms, result) = decode_upstream(&record.payload).map_err(at)?;
                let index = usize::from(shard_of_txn_id(result.op_id));
                if let Some(core) = cores.get_mut(index) {
                    core.handle_upstream(at_ms, result, &mut scratch);
                }
                replayed.outcomes += 1;
            }
            other => {
                return Err(MeshError::Journal(format!(
                    "record {}: unknown type {other}",
                    record.lsn.0
                )));
            }
        }
        scratch.clear();
    }
    if !meta_seen {
        if !records.is_empty() {
            return Err(MeshError::Journal(
                "journal has records but no meta record".into(),
            ));
        }
        replayed
            .to_append
            .push((RECORD_META, super::journal_codec::encode_meta(count)));
    }
    for core in &mut cores {
        for op_id in core.pending_ops() {
            let result = UpstreamResult {
                op_id,
                outcome: UpstreamOutcome::Unknown,
            };
            replayed
                .to_append
                .push((RECORD_UPSTREAM, encode_upstream(now_ms, &result)));
            core.handle_upstream(now_ms, result, &mut scratch);
            scratch.clear();
            replayed.in_doubt += 1;
        }
    }
    replayed.cores = cores;
    Ok(replayed)
}
