//! Per-Arbiter coalescing of session → shard requests.
//!
//! Every session actor of an Arbiter thread appends the requests it admits to one thread-local
//! outbox, in a buffer per shard. The first append after a flush spawns a flush task on the same
//! thread; it yields once (`tokio::task::yield_now` hands its waker to the scheduler, which wakes it
//! only after the tasks already queued on this thread have run), then sends one [`ShardBatch`] per
//! shard with `try_send`. So 1,000 sessions at pipelining depth 4 cost the shards one message per
//! Arbiter per tick instead of one per session read. A buffer that reaches
//! [`OUTBOX_ITEMS_PER_SHARD_MAX`] leaves at once.
//!
//! Order: a session's requests to a shard are appended in order and buffers leave in order (a full
//! buffer before the later items), through a FIFO mailbox, so the shard sees them in order.
//!
//! A batch the shard's mailbox refuses (full or closed) is answered BUSY item by item, like the
//! session's own window: the answers go back to each item's session as an [`AnswerBatch`] (one per
//! session), and the session removes the request from its in-flight map when it writes the answer.
//!
//! The outbox holds nothing between ticks: a flush takes every buffer, so no shard address
//! outlives the tick that used it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use actix::Recipient;
use actix::prelude::SendError;
use paymesh_codecs::message::{TxnAnswer, TxnRequest};
use paymesh_codecs::types::ResultCode;

use super::messages::{AnswerBatch, ReplyTo, SessionAnswer, ShardBatch};
use super::shard::Shards;
use crate::metrics::Metrics;

/// Requests buffered for one shard before they leave without waiting for the end of the tick.
pub const OUTBOX_ITEMS_PER_SHARD_MAX: usize = 4_096;
/// Meshes (sets of shards) one thread buffers for at once; the router has one. Past it, the
/// buffers leave at once.
pub const OUTBOX_MESHES_MAX: usize = 4;

/// One request on its way to a shard, with where to answer it.
pub type OutboxItem = (ReplyTo, TxnRequest);

/// What [`ShardBuffers::push`] did with an item.
#[derive(Debug)]
pub enum Pushed<T> {
    /// Buffered.
    Queued,
    /// Buffered, and the shard's buffer reached [`OUTBOX_ITEMS_PER_SHARD_MAX`]: here it is, to send.
    Full(Vec<T>),
    /// The shard index is not one of this mesh's shards: the item is handed back.
    NoShard(T),
}

/// Items waiting for the shards of one mesh, one buffer per shard (no I/O: the outbox sends them).
#[derive(Debug)]
pub struct ShardBuffers<T> {
    buffers: Vec<Vec<T>>,
}

impl<T> ShardBuffers<T> {
    /// Empty buffers for `shards` shards.
    pub fn new(shards: usize) -> Self {
        Self {
            buffers: (0..shards).map(|_| Vec::new()).collect(),
        }
    }

    /// Appends `item` to shard `shard`'s buffer.
    pub fn push(&mut self, shard: usize, item: T) -> Pushed<T> {
        let Some(buffer) = self.buffers.get_mut(shard) else {
            return Pushed::NoShard(item);
        };
        buffer.push(item);
        if buffer.len() >= OUTBOX_ITEMS_PER_SHARD_MAX {
            Pushed::Full(std::mem::take(buffer))
        } else {
            Pushed::Queued
        }
    }

    /// Takes every non-empty buffer with its shard index, in shard order.
    pub fn drain(&mut self) -> impl Iterator<Item = (usize, Vec<T>)> + '_ {
        self.buffers
            .iter_mut()
            .enumerate()
            .filter(|(_, b)| !b.is_empty())
            .map(|(i, b)| (i, std::mem::take(b)))
    }

    /// Items buffered over all shards.
    pub fn len(&self) -> usize {
        self.buffers.iter().map(Vec::len).sum()
    }

    /// Whether nothing is buffered.
    pub fn is_empty(&self) -> bool {
        self.buffers.iter().all(Vec::is_empty)
    }
}

/// The buffers of one mesh on this thread.
struct Lane {
    shards: Shards,
    metrics: Arc<Metrics>,
    buffers: ShardBuffers<OutboxItem>,
}

#[derive(Default)]
struct Outbox {
    lanes: Vec<Lane>,
    flush_scheduled: bool,
}

thread_local! {
    static OUTBOX: RefCell<Outbox> = RefCell::new(Outbox::default());
}

/// A batch to send now, decided while the outbox was borrowed and sent after.
type Ready = (Shards, Arc<Metrics>, usize, Vec<OutboxItem>);

/// Appends a request for shard `shard` of `shards` to this thread's outbox; it leaves at the end of
/// the tick (or at once when its buffer is full). Must run on an actix Arbiter (it spawns there).
pub fn push(shards: &Shards, metrics: &Arc<Metrics>, shard: usize, item: OutboxItem) {
    let mut ready: Vec<Ready> = Vec::new();
    let mut item = Some(item);
    let scheduled = OUTBOX.try_with(|cell| {
        let mut outbox = cell.borrow_mut();
        let found = outbox
            .lanes
            .iter()
            .position(|l| Arc::ptr_eq(&l.shards.addrs, &shards.addrs));
        let index = match found {
            Some(i) => i,
            None => {
                if outbox.lanes.len() >= OUTBOX_MESHES_MAX {
                    ready.extend(take_all(&mut outbox.lanes));
                }
                outbox.lanes.push(Lane {
                    shards: shards.clone(),
                    metrics: metrics.clone(),
                    buffers: ShardBuffers::new(shards.addrs.len()),
                });
                outbox.lanes.len() - 1
            }
        };
        if let (Some(lane), Some(item)) = (outbox.lanes.get_mut(index), item.take()) {
            match lane.buffers.push(shard, item) {
                Pushed::Queued => {}
                Pushed::Full(items) => ready.push((shards.clone(), metrics.clone(), shard, items)),
                Pushed::NoShard(item) => {
                    ready.push((shards.clone(), metrics.clone(), shard, vec![item]));
                }
            }
        }
        !std::mem::replace(&mut outbox.flush_scheduled, true)
    });
    if matches!(scheduled, Ok(true)) {
        actix::spawn(async {
            tokio::task::yield_now().await;
            flush();
        });
    }
    // Not buffered (the thread is exiting and its outbox is gone): it leaves alone, now.
    if let Some(item) = item {
        ready.push((shards.clone(), metrics.clone(), shard, vec![item]));
    }
    for (shards, metrics, index, items) in ready {
        send(&shards, &metrics, index, items);
    }
}

/// Sends everything this thread's outbox holds: one batch per shard.
pub fn flush() {
    let lanes = OUTBOX
        .try_with(|cell| {
            let mut outbox = cell.borrow_mut();
            outbox.flush_scheduled = false;
            take_all(&mut outbox.lanes)
        })
        .unwrap_or_default();
    for (shards, metrics, index, items) in lanes {
        send(&shards, &metrics, index, items);
    }
}

/// Items buffered on this thread (all meshes, all shards).
pub fn pending() -> usize {
    OUTBOX
        .try_with(|cell| cell.borrow().lanes.iter().map(|l| l.buffers.len()).sum())
        .unwrap_or(0)
}

fn take_all(lanes: &mut Vec<Lane>) -> Vec<Ready> {
    let mut ready = Vec::new();
    for mut lane in lanes.drain(..) {
        for (index, items) in lane.buffers.drain() {
            ready.push((lane.shards.clone(), lane.metrics.clone(), index, items));
        }
    }
    ready
}

/// One batch to one shard; if its mailbox refuses it, every item is answered BUSY.
fn send(shards: &Shards, metrics: &Metrics, index: usize, items: Vec<OutboxItem>) {
    let Some(shard) = shards.addrs.get(index) else {
        return refuse(metrics, items);
    };
    // Counted before the send: the shard may handle (and uncount) it before we return.
    metrics.shard_enqueued(index);
    if let Err(e) = shard.try_send(ShardBatch {
        shard: index,
        items,
    }) {
        metrics.shard_dequeued(index);
        let (SendError::Full(batch) | SendError::Closed(batch)) = e;
        refuse(metrics, batch.items);
    }
}

/// Answers every item BUSY through its session, one [`AnswerBatch`] per session, in item order.
fn refuse(metrics: &Metrics, items: Vec<OutboxItem>) {
    metrics.busy_shard.add(items.len() as u64);
    let mut answers: HashMap<u64, (Recipient<AnswerBatch>, Vec<SessionAnswer>)> = HashMap::new();
    for (to, req) in items {
        let answer = SessionAnswer {
            correlation_id: to.correlation_id,
            answer: Box::new(TxnAnswer::echo(&req, ResultCode::Busy)),
            retransmit: false,
        };
        answers
            .entry(to.session_id)
            .or_insert_with(|| (to.session, Vec::new()))
            .1
            .push(answer);
    }
    for (_, (session, items)) in answers {
        // Bounded by the sessions' in-flight windows; a closed session means the client left.
        session.do_send(AnswerBatch { items });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_buffers_keep_order_and_hand_back_a_full_buffer() {
        let mut buffers = ShardBuffers::new(2);
        assert!(matches!(buffers.push(2, 99), Pushed::NoShard(99)));
        assert!(matches!(buffers.push(1, 0), Pushed::Queued));
        for i in 1..OUTBOX_ITEMS_PER_SHARD_MAX {
            assert!(matches!(buffers.push(0, i), Pushed::Queued), "item {i}");
        }
        assert_eq!(buffers.len(), OUTBOX_ITEMS_PER_SHARD_MAX);
        let Pushed::Full(full) = buffers.push(0, OUTBOX_ITEMS_PER_SHARD_MAX) else {
            panic!("shard 0 reached its limit");
        };
        assert_eq!(full, (1..=OUTBOX_ITEMS_PER_SHARD_MAX).collect::<Vec<_>>());
        assert!(matches!(buffers.push(0, 7), Pushed::Queued));
        assert!(matches!(buffers.push(1, 8), Pushed::Queued));
        let drained: Vec<_> = buffers.drain().collect();
        assert_eq!(drained, vec![(0, vec![7]), (1, vec![0, 8])]);
        assert!(buffers.is_empty());
        assert_eq!(buffers.drain().count(), 0);
    }
}
