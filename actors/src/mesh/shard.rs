//! The application shard actor: a thin shell around [`ShardCore`] that timestamps messages, runs the
//! core, and moves its outputs: answers to session actors, upstream requests to pool actors.

use std::collections::HashMap;
use std::sync::Arc;

use actix::{Actor, Addr, Context, Handler, Recipient};
use paymesh_codecs::message::TxnAnswer;
use paymesh_codecs::types::ResultCode;

use super::messages::{
    AnswerBatch, ReplyTo, SessionAnswer, ShardBatch, UpstreamBatch, UpstreamResults,
};
use crate::core::shard::{Output, ShardCore};
use crate::core::upstream::{UpstreamRequest, UpstreamResult, not_sent};
use crate::metrics::Metrics;
use crate::now_ms;

/// Messages a shard's mailbox holds before senders get BUSY.
pub const SHARD_MAILBOX_MAX: usize = 1_024;

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

/// A shard actor.
pub struct ShardActor {
    core: ShardCore<ReplyTo>,
    /// Upstream pools by host id; set once the pools exist.
    pools: Arc<Vec<Recipient<UpstreamBatch>>>,
    metrics: Arc<Metrics>,
    out: Vec<Output<ReplyTo>>,
}

impl std::fmt::Debug for ShardActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShardActor")
            .field("orders", &self.core.order_count())
            .finish()
    }
}

impl ShardActor {
    /// A shard around its core.
    pub fn new(
        core: ShardCore<ReplyTo>,
        pools: Arc<Vec<Recipient<UpstreamBatch>>>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            core,
            pools,
            metrics,
            out: Vec::new(),
        }
    }

    /// Moves the core's outputs: answers grouped per session, upstream requests grouped per host.
    fn dispatch(&mut self) {
        let mut answers: HashMap<u64, SessionAnswers> = HashMap::new();
        let mut upstream: HashMap<u16, Vec<UpstreamRequest>> = HashMap::new();
        let mut refused: Vec<UpstreamResult> = Vec::new();
        loop {
            for output in self.out.drain(..) {
                match output {
                    Output::Reply(to, answer) => push_answer(&mut answers, to, answer, false),
                    Output::Replay(to, answer) => push_answer(&mut answers, to, answer, true),
                    Output::Upstream(req) => upstream.entry(req.host).or_default().push(*req),
                }
            }
            for (host, items) in upstream.drain() {
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
            if refused.is_empty() {
                break;
            }
            let now = now_ms();
            for r in refused.drain(..) {
                self.core.handle_upstream(now, r, &mut self.out);
            }
        }
        for (_, (session, items)) in answers {
            // Answers are bounded by the session's in-flight window, so this send cannot grow
            // without bound; a closed session means the client left (it can inquire later).
            session.do_send(AnswerBatch { items });
        }
    }
}

impl Actor for ShardActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.set_mailbox_capacity(SHARD_MAILBOX_MAX);
    }
}

impl Handler<ShardBatch> for ShardActor {
    type Result = ();

    fn handle(&mut self, batch: ShardBatch, _ctx: &mut Context<Self>) {
        let now = now_ms();
        for (to, req) in batch.items {
            self.core.handle_request(now, to, &req, &mut self.out);
        }
        self.dispatch();
    }
}

impl Handler<UpstreamResults> for ShardActor {
    type Result = ();

    fn handle(&mut self, batch: UpstreamResults, _ctx: &mut Context<Self>) {
        let now = now_ms();
        for r in batch.items {
            self.core.handle_upstream(now, r, &mut self.out);
        }
        self.dispatch();
    }
}

/// Addresses of all shards, with the rule that picks one.
#[derive(Debug, Clone)]
pub struct Shards {
    /// Shard addresses by index.
    pub addrs: Arc<Vec<Addr<ShardActor>>>,
}

impl Shards {
    /// The shard owning a merchant: a stable hash of the merchant id (FNV-1a, so it never changes
    /// between builds or restarts).
    pub fn index_for_merchant(&self, merchant_id: &[u8]) -> usize {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in merchant_id {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        (h % self.addrs.len().max(1) as u64) as usize
    }
}
