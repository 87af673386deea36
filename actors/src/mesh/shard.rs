//! The application shard actor: a thin shell around [`ShardCore`] that timestamps messages, runs the
//! core, and moves its outputs: answers to session actors, upstream requests to pool actors.
//!
//! With a journal, nothing a step produced leaves the shard before the step's inputs are durable:
//! the outputs wait in `held` (in step order) until the journal writer's group commit calls back.
//! So an answer a client heard, and a request a host saw, are always in the journal; after a crash
//! the replay rebuilds exactly the state they came from.
//!
//! Room in the journal's queue is reserved before the core takes a step, so back-pressure never
//! finds a step half done: a full queue answers a batch of requests BUSY having changed nothing,
//! and host outcomes wait in the shard (bounded by the operations in flight) for a timer to try
//! again. Nothing here sleeps or blocks the Arbiter's thread. A journal that fails (disk full, I/O
//! error) fails the shard closed: every later request is answered INTERNAL_ERROR rather than
//! acknowledged without a record, and `paymesh_failed_closed` turns 1 (docs/OPERATIONS.md).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message, Recipient};
use bytes::Bytes;
use paymesh_codecs::message::{TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;
use paymesh_journal::{JournalError, JournalHandle, Reservation};

use super::lookup::StoreLookup;
use super::messages::{
    AnswerBatch, ReplyTo, SessionAnswer, ShardBatch, UpstreamBatch, UpstreamResults,
};
use crate::core::access::{Origin, Step};
use crate::core::config::CoreSettings;
use crate::core::journal_codec::{
    JournalKey, RECORD_MARK, RECORD_REQUEST_NETWORK, RECORD_SETTINGS, RECORD_UPSTREAM, encode_mark,
    encode_request, encode_upstream,
};
use crate::core::recovery::ClearPart;
use crate::core::shard::{Output, ShardCore};
use crate::core::upstream::{UpstreamRequest, UpstreamResult, not_sent};
use crate::metrics::{HostMetrics, Metrics};
use crate::now_ms;

/// Messages a shard's mailbox holds before senders get BUSY.
pub const SHARD_MAILBOX_MAX: usize = 1_024;
/// Journal submissions queued (all shards) above which a shard answers new requests BUSY.
pub const JOURNAL_QUEUE_HIGH_WATER: usize = 1_024;
/// How soon host outcomes that found the journal's queue full are tried again.
pub const JOURNAL_RETRY_MS: u64 = 1;
/// Rounds of not-sent outcomes a failed shard feeds its core to answer waiting requests.
const FAILED_ROUNDS_MAX: usize = 4;
/// How often the shard sends again the reversals that are due.
pub const REVERSAL_POLL_MS: u64 = 100;

/// The shard core as the actors use it: `None` requesters are replayed requests (recovery).
pub type MeshShardCore = ShardCore<Option<ReplyTo>>;

/// What a shard needs to journal its inputs.
#[derive(Clone, Debug)]
pub struct ShardJournal {
    /// The group-commit writer.
    pub handle: JournalHandle,
    /// Encryption key for request records.
    pub key: JournalKey,
    /// Nonce counter shared by every shard using `key`.
    pub counter: Arc<AtomicU64>,
}

/// Answers gathered for one session during one step.
type SessionAnswers = (Recipient<AnswerBatch>, Vec<SessionAnswer>);

fn push_answer(
    answers: &mut HashMap<u64, SessionAnswers>,
    to: ReplyTo,
    answer: Box<TxnAnswer>,
    retransmit: bool,
) {
    answers
        .entry(to.session_id)
        .or_insert_with(|| (to.session.clone(), Vec::new()))
        .1
        .push(SessionAnswer {
            correlation_id: to.correlation_id,
            answer,
            retransmit,
        });
}

/// The journal made a step durable (or failed).
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct Durable {
    step: u64,
    ok: bool,
}

/// Asks a shard for its part of a checkpoint (see [`crate::core::recovery`]): it snapshots its
/// core, journals a MARK record in the same step, and once the mark is durable (and so everything
/// it journaled before) answers on `reply`.
#[derive(Debug, Message)]
#[rtype(result = "()")]
pub struct TakeSnapshot {
    /// Checkpoint round, written in the mark.
    pub round: u64,
    /// Where the part goes.
    pub reply: std::sync::mpsc::Sender<SnapshotPart>,
}

/// Switches a shard to a new version of the business settings ([`crate::core::versions`]): the
/// shard journals the version's record (its `version_record`) and runs every later input under
/// it, in the same step, so replay switches at the same place. Answers why not when the shard's
/// journal failed or its queue is full (nothing changed; the caller tries again).
#[derive(Debug, Message)]
#[rtype(result = "Result<(), String>")]
pub struct ApplySettings {
    /// The shard's settings of the new version.
    pub settings: Arc<CoreSettings>,
}

/// One shard's answer to [`TakeSnapshot`].
#[derive(Debug)]
pub struct SnapshotPart {
    /// The shard.
    pub shard: u16,
    /// The round asked for.
    pub round: u64,
    /// The clear snapshot, its mark and what to seal it with (the checkpointer seals it, off
    /// the shard's thread), or why there is none.
    pub result: Result<ClearPart, String>,
    /// Whether the query store dropped rows of this shard since its previous part.
    pub store_dropped: bool,
}

/// The mark of a snapshot is durable.
#[derive(Debug, Message)]
#[rtype(result = "()")]
struct MarkDurable {
    round: u64,
    result: Result<ClearPart, String>,
    reply: std::sync::mpsc::Sender<SnapshotPart>,
}

/// A shard actor.
pub struct ShardActor {
    core: MeshShardCore,
    /// Upstream pools by host id.
    pools: Arc<Vec<Recipient<UpstreamBatch>>>,
    metrics: Arc<Metrics>,
    journal: Option<ShardJournal>,
    /// The query store, fed with every released answer (never waited for).
    store: Option<paymesh_store::StoreHandle>,
    out: Vec<Output<Option<ReplyTo>>>,
    /// Outputs of steps whose journal records are not yet durable, oldest first.
    held: VecDeque<(u64, Vec<Output<Option<ReplyTo>>>)>,
    next_step: u64,
    failed: bool,
    /// The query store dropped rows of this shard since the last snapshot part.
    store_dropped: bool,
    /// Per-host counters (reversals pending), by host id.
    hosts: Vec<Arc<HostMetrics>>,
    /// Answers INQUIRY for orders not in the window from the query store.
    lookup: Option<StoreLookup>,
    /// Host outcomes waiting for room in the journal's queue, oldest first; at most one per
    /// operation in flight, so bounded by the window.
    deferred: VecDeque<UpstreamResult>,
    /// A retry of `deferred` is scheduled.
    retry_scheduled: bool,
    /// Each host's sign-on count when the shard last looked (see `flush_on_sign_on`).
    sign_ons_seen: Vec<u64>,
}

impl std::fmt::Debug for ShardActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardActor")
            .field("orders", &self.core.order_count())
            .finish()
    }
}

impl ShardActor {
    /// A shard around its core (rebuilt from the journal, or empty).
    pub fn new(
        core: MeshShardCore,
        pools: Arc<Vec<Recipient<UpstreamBatch>>>,
        metrics: Arc<Metrics>,
        journal: Option<ShardJournal>,
    ) -> Self {
        Self {
            core,
            pools,
            metrics,
            journal,
            store: None,
            out: Vec::new(),
            held: VecDeque::new(),
            next_step: 0,
            failed: false,
            store_dropped: false,
            hosts: Vec::new(),
            lookup: None,
            deferred: VecDeque::new(),
            retry_scheduled: false,
            sign_ons_seen: Vec::new(),
        }
    }

    /// INQUIRY for an order this shard does not hold goes to the query store instead of being
    /// answered NOT_FOUND.
    pub fn with_lookup(mut self, lookup: Option<StoreLookup>) -> Self {
        self.lookup = lookup;
        self
    }

    /// Keeps the per-host gauge of unacknowledged reversals current.
    pub fn with_host_metrics(mut self, hosts: Vec<Arc<HostMetrics>>) -> Self {
        self.hosts = hosts;
        self.update_gauges();
        self
    }

    fn update_gauges(&mut self) {
        let shard = usize::from(self.core.shard());
        if let Some(g) = self.metrics.shard_orders.get(shard) {
            g.set(self.core.order_count() as u64);
        }
        if let Some(g) = self.metrics.shard_evicted_keys.get(shard) {
            g.set(self.core.evicted_key_count() as u64);
        }
        for (host, delta) in self.core.take_reversal_deltas() {
            if let Some(h) = self.hosts.get(usize::from(host)) {
                h.reversals_pending.add_signed(delta);
            }
        }
    }

    /// Feeds released answers to the query store (off the hot path: a full store queue drops).
    pub fn with_store(mut self, store: Option<paymesh_store::StoreHandle>) -> Self {
        self.store = store;
        self
    }

    /// Reserves room in the journal's queue for `records` before a step: `Ok(None)` without a
    /// journal, `Err(code)` to answer with when there is no room (BUSY) or the journal failed
    /// (INTERNAL_ERROR; the shard fails closed).
    fn reserve(&mut self, records: &[(u8, Bytes)]) -> Result<Option<Reservation>, ResultCode> {
        let Some(journal) = &self.journal else {
            return Ok(None);
        };
        let reserved = journal
            .handle
            .submission_bytes(records)
            .and_then(|bytes| journal.handle.reserve(bytes));
        match reserved {
            Ok(r) => Ok(Some(r)),
            Err(JournalError::Busy) => Err(ResultCode::Busy),
            Err(e) => {
                self.fail_closed(&e);
                Err(ResultCode::InternalError)
            }
        }
    }

    /// Answers what a failed shard's steps produced: every answer becomes INTERNAL_ERROR (nothing
    /// of it is known to be on disk), and every upstream request is dropped unsent and fed back
    /// as not sent, so the request waiting on it is answered too. Bounded by
    /// [`FAILED_ROUNDS_MAX`] rounds (a not-sent outcome may try a failover host once more).
    fn answer_failed(&mut self, mut outputs: Vec<Output<Option<ReplyTo>>>) {
        let now = now_ms();
        for _ in 0..FAILED_ROUNDS_MAX {
            if outputs.is_empty() {
                return;
            }
            let mut unsent = Vec::new();
            for output in outputs.drain(..) {
                match output {
                    Output::Reply(Some(to), a) | Output::Replay(Some(to), a) => {
                        let mut a = *a;
                        a.result = ResultCode::InternalError;
                        a.approval_code = None;
                        session_send(to, a);
                    }
                    Output::Upstream(req) => {
                        unsent.push(not_sent(req.op_id, ResultCode::InternalError));
                    }
                    Output::Reply(None, _) | Output::Replay(None, _) => {}
                }
            }
            for r in unsent {
                self.core.handle_upstream(now, r, &mut outputs);
            }
        }
    }

    /// The journal can no longer make steps durable: stop acknowledging anything.
    fn fail_closed(&mut self, error: &dyn std::fmt::Display) {
        if !self.failed {
            tracing::error!(error = %error, shard = self.core.shard(), "journal failed: the shard answers INTERNAL_ERROR until the router restarts and replays the journal");
            self.metrics.journal_failed.set(1);
        }
        self.failed = true;
    }

    /// Ends a step: its outputs leave now (no journal) or once `records` are durable.
    /// `reservation` holds the queue room taken for them before the step.
    fn commit(
        &mut self,
        records: Vec<(u8, Bytes)>,
        reservation: Option<Reservation>,
        ctx: &mut Context<Self>,
    ) {
        self.update_gauges();
        let outputs = std::mem::take(&mut self.out);
        let Some(journal) = &self.journal else {
            self.release(outputs, ctx);
            return;
        };
        if records.is_empty() {
            // Nothing new to write: these outputs follow the step before them, if it is still
            // waiting for the disk, or leave now.
            match self.held.back_mut() {
                Some((_, last)) => last.extend(outputs),
                None => self.release(outputs, ctx),
            }
            return;
        }
        self.next_step += 1;
        let step = self.next_step;
        self.held.push_back((step, outputs));
        let addr = ctx.address();
        let on_durable = Box::new(move |r: Result<_, JournalError>| {
            addr.do_send(Durable {
                step,
                ok: r.is_ok(),
            });
        });
        let submitted = match reservation {
            Some(reservation) => journal
                .handle
                .submit_reserved(reservation, records, on_durable),
            // Every caller reserves before its step; without a reservation the step's records
            // could be refused after the core moved, which must fail closed, never be dropped.
            None => Err(JournalError::Closed),
        };
        if let Err(e) = submitted {
            self.fail_closed(&e);
            ctx.address().do_send(Durable { step, ok: false });
        }
    }

    /// Sends answers to sessions and requests to pools; requests a pool refused come back as
    /// outcomes, which are a new (journaled) step.
    fn release(&mut self, outputs: Vec<Output<Option<ReplyTo>>>, ctx: &mut Context<Self>) {
        let mut answers: HashMap<u64, SessionAnswers> = HashMap::new();
        let mut upstream: HashMap<u16, Vec<UpstreamRequest>> = HashMap::new();
        if let Some(store) = &self.store {
            let now = now_ms();
            let rows: Vec<_> = outputs
                .iter()
                .filter_map(|o| match o {
                    Output::Reply(to, a) => {
                        let mut row = paymesh_store::TxnRow::from_answer(a, now)?;
                        // Who asked; the store keeps the first row's network, the creator's.
                        row.network = to
                            .as_ref()
                            .map(|t| String::from_utf8_lossy(&t.network).into_owned());
                        Some(row)
                    }
                    _ => None,
                })
                .collect();
            if !rows.is_empty() && !store.offer(rows) {
                self.metrics.store_dropped.inc();
                self.store_dropped = true;
            }
        }
        for output in outputs {
            match output {
                Output::Reply(Some(to), answer) => push_answer(&mut answers, to, answer, false),
                Output::Replay(Some(to), answer) => push_answer(&mut answers, to, answer, true),
                Output::Reply(None, _) | Output::Replay(None, _) => {}
                Output::Upstream(req) => upstream.entry(req.host).or_default().push(*req),
            }
        }
        let mut refused: Vec<UpstreamResult> = Vec::new();
        for (host, items) in upstream {
            let Some(pool) = self.pools.get(usize::from(host)) else {
                refused.extend(
                    items
                        .iter()
                        .map(|r| not_sent(r.op_id, ResultCode::Unroutable)),
                );
                continue;
            };
            if let Err(e) = pool.try_send(UpstreamBatch { items }) {
                let (actix::prelude::SendError::Full(batch)
                | actix::prelude::SendError::Closed(batch)) = e;
                self.metrics.busy_pool.inc();
                refused.extend(
                    batch
                        .items
                        .iter()
                        .map(|r| not_sent(r.op_id, ResultCode::Busy)),
                );
            }
        }
        for (_, (session, items)) in answers {
            // Answers are bounded by the session's in-flight window, so this send cannot grow
            // without bound; a closed session means the client left (it can inquire later).
            session.do_send(AnswerBatch { items });
        }
        if !refused.is_empty() {
            self.apply_upstream(refused, ctx);
        }
    }

    /// Applies host outcomes, oldest first: journaled before their answers leave. When the
    /// journal's queue has no room they wait (in order) and a timer tries again; a host's
    /// answer is never dropped.
    fn apply_upstream(&mut self, results: Vec<UpstreamResult>, ctx: &mut Context<Self>) {
        self.deferred.extend(results);
        if self.failed {
            // They go in no journal: replay after the restart resolves their operations as in
            // doubt (reversing what a host approved). Their requesters learn INTERNAL_ERROR now
            // rather than waiting for an answer that cannot come.
            let now = now_ms();
            let mut outputs = Vec::new();
            for r in std::mem::take(&mut self.deferred) {
                self.core.handle_upstream(now, r, &mut outputs);
            }
            self.answer_failed(outputs);
            return;
        }
        if self.deferred.is_empty() {
            return;
        }
        let now = now_ms();
        let records: Vec<(u8, Bytes)> = match self.journal {
            Some(_) => self
                .deferred
                .iter()
                .map(|r| (RECORD_UPSTREAM, encode_upstream(now, r)))
                .collect(),
            None => Vec::new(),
        };
        let reservation = match self.reserve(&records) {
            Ok(r) => r,
            Err(_) => {
                if !self.failed && !self.retry_scheduled {
                    self.retry_scheduled = true;
                    ctx.run_later(Duration::from_millis(JOURNAL_RETRY_MS), |act, ctx| {
                        act.retry_scheduled = false;
                        act.apply_upstream(Vec::new(), ctx);
                    });
                }
                return;
            }
        };
        for r in std::mem::take(&mut self.deferred) {
            self.core.handle_upstream(now, r, &mut self.out);
        }
        self.commit(records, reservation, ctx);
    }

    /// An INQUIRY the core answered NOT_FOUND goes to the query store instead (BUSY when its
    /// queue is full), unless `network` may not inquire there at all (then the answer is the
    /// core's, as for a merchant that is not configured).
    fn look_up_if_missing(
        &mut self,
        network: &Bytes,
        req: &paymesh_codecs::message::TxnRequest,
        now: u64,
    ) {
        let Some(lookup) = &self.lookup else { return };
        if !self.core.settings().may_inquire(network, &req.merchant_id) {
            return;
        }
        if !matches!(self.out.last(), Some(Output::Reply(Some(_), a)) if a.result == ResultCode::NotFound)
        {
            return;
        }
        let Some(Output::Reply(Some(to), _)) = self.out.pop() else {
            return;
        };
        if let Err(to) = lookup.submit(to, req, now) {
            self.metrics.busy_shard.inc();
            let busy = Box::new(TxnAnswer::echo(req, ResultCode::Busy));
            self.out.push(Output::Reply(Some(to), busy));
        }
    }

    /// Store-and-forward: a host whose link signed on since the last tick gets what waits for it
    /// now, not at the next backoff time.
    fn flush_on_sign_on(&mut self) {
        let availability = self.core.settings().routes.availability().clone();
        let now = now_ms();
        self.sign_ons_seen.resize(availability.hosts(), 0);
        for (host, seen) in self.sign_ons_seen.iter_mut().enumerate() {
            let Ok(id) = u16::try_from(host) else { break };
            let count = availability.sign_ons(id);
            if count != *seen {
                *seen = count;
                self.core.flush_forwards(id, now);
            }
        }
    }

    /// Answers every request of a batch with `code`, without touching the core.
    fn refuse_all(batch: ShardBatch, code: ResultCode) {
        let mut answers: HashMap<u64, SessionAnswers> = HashMap::new();
        for (to, req) in batch.items {
            let answer = Box::new(TxnAnswer::echo(&req, code));
            push_answer(&mut answers, to, answer, false);
        }
        for (_, (session, items)) in answers {
            session.do_send(AnswerBatch { items });
        }
    }
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SHARD_MAILBOX_MAX);
        // Store-and-forward: reversals not yet acknowledged are sent again when due.
        ctx.run_interval(Duration::from_millis(REVERSAL_POLL_MS), |act, ctx| {
            act.flush_on_sign_on();
            if act.failed
                || act
                    .core
                    .next_reversal_due()
                    .is_none_or(|due| due > now_ms())
            {
                return;
            }
            act.core.poll_reversals(now_ms(), &mut act.out);
            act.commit(Vec::new(), None, ctx);
        });
    }
}

impl Handler<ShardBatch> for ShardActor {
    type Result = ();

    fn handle(&mut self, batch: ShardBatch, ctx: &mut Context<Self>) {
        self.metrics.shard_dequeued(batch.shard);
        if self.failed {
            return Self::refuse_all(batch, ResultCode::InternalError);
        }
        if let Some(j) = &self.journal
            && j.handle.queued() >= JOURNAL_QUEUE_HIGH_WATER
        {
            self.metrics.busy_shard.add(batch.items.len() as u64);
            return Self::refuse_all(batch, ResultCode::Busy);
        }
        let now = now_ms();
        // Every record is encoded before any step (a request that cannot be journaled must not
        // change the shard), and room for all of them reserved: a full queue answers the whole
        // batch BUSY with nothing changed. A step the core says changed nothing (an access
        // refusal) keeps its record out of the journal; the reservation shrinks to fit.
        let mut encoded: Vec<Option<Bytes>> = Vec::with_capacity(batch.items.len());
        let mut items = Vec::with_capacity(batch.items.len());
        for (to, req) in batch.items {
            let mut record = None;
            if let Some(j) = &self.journal
                && req.kind != TxnKind::Inquiry
            {
                let n = j.counter.fetch_add(1, Ordering::Relaxed);
                match encode_request(&j.key, n, now, &to.network, &req) {
                    Ok(rec) => record = Some(rec),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot journal a request");
                        let a = Box::new(TxnAnswer::echo(&req, ResultCode::InternalError));
                        self.out.push(Output::Reply(Some(to), a));
                        continue;
                    }
                }
            }
            encoded.push(record);
            items.push((to, req));
        }
        let all: Vec<(u8, Bytes)> = encoded
            .iter()
            .flatten()
            .map(|r| (RECORD_REQUEST_NETWORK, r.clone()))
            .collect();
        let reservation = match self.reserve(&all) {
            Ok(r) => r,
            Err(code) => {
                if code == ResultCode::Busy {
                    self.metrics.busy_shard.add(items.len() as u64);
                }
                // Answers already decided (records that could not be encoded) leave too.
                self.commit(Vec::new(), None, ctx);
                let shard = batch.shard;
                return Self::refuse_all(ShardBatch { shard, items }, code);
            }
        };
        drop(all);
        let mut records = Vec::new();
        for ((to, req), record) in items.into_iter().zip(encoded) {
            let network = to.network.clone();
            let origin = Origin::Network(&network);
            let step = self
                .core
                .handle_request(now, Some(to), origin, &req, &mut self.out);
            if let (Step::Journal, Some(rec)) = (step, record) {
                records.push((RECORD_REQUEST_NETWORK, rec));
            }
            if req.kind == TxnKind::Inquiry {
                self.look_up_if_missing(&network, &req, now);
            }
        }
        self.commit(records, reservation, ctx);
    }
}

impl Handler<UpstreamResults> for ShardActor {
    type Result = ();

    fn handle(&mut self, batch: UpstreamResults, ctx: &mut Context<Self>) {
        self.apply_upstream(batch.items, ctx);
    }
}

impl Handler<Durable> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: Durable, ctx: &mut Context<Self>) {
        if !msg.ok {
            self.fail_closed(&"a group commit failed (write or fsync)");
            // Nothing of these steps is known to be on disk: answer INTERNAL_ERROR, send nothing
            // upstream. Their outcome after a restart is what the journal holds.
            let outputs: Vec<_> = self.held.drain(..).flat_map(|(_, o)| o).collect();
            self.answer_failed(outputs);
            return;
        }
        while self.held.front().is_some_and(|(step, _)| *step <= msg.step) {
            if let Some((_, outputs)) = self.held.pop_front() {
                self.release(outputs, ctx);
            }
        }
    }
}

impl Handler<ApplySettings> for ShardActor {
    type Result = Result<(), String>;

    fn handle(&mut self, msg: ApplySettings, _ctx: &mut Context<Self>) -> Self::Result {
        if let Some(journal) = &self.journal {
            if self.failed {
                return Err("the shard's journal failed".into());
            }
            let record = vec![(RECORD_SETTINGS, msg.settings.version_record.clone())];
            // Later steps' answers wait for their own records, which the journal makes durable
            // after this one: nothing is answered under the new version before it is on disk.
            let on_durable = Box::new(|_: Result<paymesh_journal::Lsn, JournalError>| {});
            journal
                .handle
                .submit(record, on_durable)
                .map_err(|e| e.to_string())?;
        }
        self.core.apply_settings(msg.settings);
        Ok(())
    }
}

impl Handler<TakeSnapshot> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: TakeSnapshot, ctx: &mut Context<Self>) {
        let shard = self.core.shard();
        let refuse = |why: String| {
            let _ = msg.reply.send(SnapshotPart {
                shard,
                round: msg.round,
                result: Err(why),
                store_dropped: false,
            });
        };
        let Some(journal) = &self.journal else {
            return refuse("no journal".into());
        };
        if self.failed {
            return refuse("the shard's journal failed".into());
        }
        // Encoding holds this shard for the time it takes (frozen orders are copied as they
        // are; hot ones encoded); nothing else pauses, and the checkpointer seals the bytes on
        // its own thread. Everything this shard journaled before the mark is in the snapshot.
        let clear = self.core.encode_snapshot();
        let settings = self.core.settings().version_record.clone();
        let n = journal.counter.fetch_add(1, Ordering::Relaxed);
        let seal_with = Some((journal.key.clone(), n));
        let addr = ctx.address();
        let (round, reply) = (msg.round, msg.reply.clone());
        let on_durable = Box::new(move |r: Result<paymesh_journal::Lsn, JournalError>| {
            let result = r
                .map(|lsn| ClearPart {
                    mark_lsn: lsn.0,
                    settings,
                    bytes: clear,
                    seal_with,
                })
                .map_err(|e| e.to_string());
            addr.do_send(MarkDurable {
                round,
                result,
                reply,
            });
        });
        let mark = vec![(RECORD_MARK, encode_mark(shard, msg.round))];
        if let Err(e) = journal.handle.submit(mark, on_durable) {
            // A full queue: this round fails, the next one tries again.
            refuse(e.to_string());
        }
    }
}

impl Handler<MarkDurable> for ShardActor {
    type Result = ();

    fn handle(&mut self, msg: MarkDurable, _ctx: &mut Context<Self>) {
        // Every step journaled before the mark was released before this message (the journal
        // completes in order), so the store has been offered all of their answers.
        let _ = msg.reply.send(SnapshotPart {
            shard: self.core.shard(),
            round: msg.round,
            result: msg.result,
            store_dropped: std::mem::take(&mut self.store_dropped),
        });
    }
}

fn session_send(to: ReplyTo, answer: TxnAnswer) {
    let item = SessionAnswer {
        correlation_id: to.correlation_id,
        answer: Box::new(answer),
        retransmit: false,
    };
    to.session.do_send(AnswerBatch { items: vec![item] });
}

/// Addresses of all shards, with the rule that picks one.
#[derive(Debug, Clone)]
pub struct Shards {
    /// Shard addresses by index.
    pub addrs: Arc<Vec<Addr<ShardActor>>>,
}

impl Shards {
    /// The shard owning a merchant (see [`crate::core::shard::shard_for_merchant`]).
    pub fn index_for_merchant(&self, merchant_id: &[u8]) -> usize {
        crate::core::shard::shard_for_merchant(merchant_id, self.addrs.len())
    }
}
