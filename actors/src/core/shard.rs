//! The application shard's transaction state machine, sans-IO: requests and upstream outcomes go in
//! with the time, answers and upstream requests come out as values ([`Output`]). The actix shard actor
//! only moves these values; the deterministic simulation drives the same code with a virtual clock.
//!
//! Invariants kept here: one upstream authorization per (merchant, order id); capture at most once and
//! never above the authorized amount; refunds never above the captured amount; every request answered
//! exactly once (retransmissions of a pending request wait for its answer); a request that reuses a key
//! with other content is refused as DUPLICATE_ORDER.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use paymesh_codecs::message::{PaymentMethod, TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;

use super::access::{Caller, NetworkNames, NetworkNo, Origin, Step};
use super::config::CoreSettings;
use super::device::DeviceCounters;
use super::order::{
    Fnv, OpStatus, Operation, Order, OrderKey, OrderState, Reversal, ReversalState, StoredAnswer,
    find_op, wire_state,
};
use super::route::{HostId, RouteKey};
use super::upstream::{
    Account, OriginalRef, UpstreamKind, UpstreamOutcome, UpstreamRequest, UpstreamResult, stan_for,
    trace_of,
};
use super::window::{OrderWindow, Slot};
use stans::{Purpose, StanBook};

/// First delay before a reversal is sent again (the default of `forward_retry_ms`).
pub use super::config::FORWARD_RETRY_MS as REVERSAL_RETRY_MS;
use crate::shared_of;

mod ownership;
pub(crate) mod snapshot;
pub mod stans;
mod vault;

/// The shards' hash maps: keyed by what clients send (merchant and order ids), so seeded per
/// process; foldhash rather than SipHash for speed.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// What the shard core asks its shell to do.
#[derive(Debug)]
pub enum Output<R> {
    /// Send this answer to this requester.
    Reply(R, Box<TxnAnswer>),
    /// Send this stored answer of an earlier identical request (sent with the RETRANSMIT flag).
    Replay(R, Box<TxnAnswer>),
    /// Send this request to an upstream host.
    Upstream(Box<UpstreamRequest>),
}

/// Running totals a shard keeps per merchant.
#[derive(Debug, Default, Clone, Copy)]
struct DailyTotal {
    day: u64,
    total: u64,
}

/// A card held by the server wallet vault, usable by the merchant that tokenized it only.
#[derive(Debug, Clone)]
struct VaultEntry {
    account: Account,
    masked: Bytes,
    merchant: Bytes,
    /// The customer the merchant tokenized the card for (`customer_ref`), if it named one: a
    /// payment with the token must name the same customer.
    customer: Option<Bytes>,
}

/// One application shard: owns the orders of the merchants hashed to it.
#[derive(Debug)]
pub struct ShardCore<R> {
    shard: u16,
    settings: Arc<CoreSettings>,
    /// The orders, by transaction id and by key, oldest first (see [`super::window`]).
    orders: OrderWindow<R>,
    /// Operations waiting for a host: op id → transaction id.
    by_op_id: HashMap<u64, u64>,
    daily: HashMap<Bytes, DailyTotal>,
    vault: HashMap<Bytes, VaultEntry>,
    next_seq: u64,
    /// Reversals waiting to be sent again: (due ms, op id) → transaction id.
    reversal_due: BTreeMap<(u64, u64), u64>,
    /// Changes to the count of unacknowledged reversals per host, for the shell's gauges.
    reversal_deltas: Vec<(HostId, i64)>,
    /// How many shards there are (STANs are partitioned between them).
    shards: u16,
    /// Reversals and capture advices not yet acknowledged.
    forwards_pending: usize,
    /// The networks that created this shard's orders, numbered.
    networks: NetworkNames,
    /// Orders each network holds in the window that cannot leave it (see
    /// [`Order::holds_window`]), for the per-network quota.
    open_by_network: HashMap<NetworkNo, usize>,
    /// Device counters seen, against replayed signed requests (see [`super::device`]).
    devices: DeviceCounters,
    /// STANs used today per host and terminal (see [`stans`]).
    stans: StanBook,
    /// The journal record format whose rules requests and outcomes are handled by: this build's
    /// ([`RECORD_FORMAT`]) for live traffic; an older one while replaying what an older build
    /// journaled, so that replay reaches the state that build reached (see
    /// [`ShardCore::set_record_format`]).
    rules: u8,
}

/// The record format this build's rules are (see [`super::journal_codec::META_FORMAT`]).
/// Format 1's rules differ: one capture per authorization, an attempt that was never sent is
/// forgotten (a retry makes a new order), and a host's "issuer unavailable" is a decline.
/// Formats 1 and 2 assigned STANs by the op id on the host's own terminal
/// ([`crate::core::upstream::stan_for`]) rather than from the per-terminal books.
pub const RECORD_FORMAT: u8 = super::journal_codec::META_FORMAT;

/// Orders a shard's window tables are sized for at start (see [`ShardCore::new`]).
pub const WINDOW_RESERVE_MAX: usize = 4_000_000;

/// Bits of a server transaction id that carry the sequence; the shard index sits above them.
pub const TXN_SEQ_BITS: u32 = 48;

/// The shard owning a merchant: a stable hash of the merchant id (FNV-1a, so it never changes
/// between builds or restarts; the journal's replay relies on it).
pub fn shard_for_merchant(merchant_id: &[u8], shards: usize) -> usize {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in merchant_id {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    (h % shards.max(1) as u64) as usize
}

/// The shard that owns a server transaction id.
pub fn shard_of_txn_id(txn_id: u64) -> u16 {
    (txn_id >> TXN_SEQ_BITS) as u16
}

impl<R: Clone> ShardCore<R> {
    /// A new, empty shard. `seq_start` seeds transaction ids (the journal supplies it after recovery).
    pub fn new(shard: u16, settings: Arc<CoreSettings>, seq_start: u64) -> Self {
        // The window's tables at their full size from the start: growing one that holds hundreds
        // of thousands of orders rehashes every key (a cache miss each) and held the shard for
        // 100-300 ms. Untouched, the reserved pages cost no resident memory.
        let mut orders = OrderWindow::default();
        orders.reserve(settings.orders_per_shard_max.min(WINDOW_RESERVE_MAX));
        Self {
            shard,
            settings,
            orders,
            by_op_id: HashMap::default(),
            daily: HashMap::default(),
            vault: HashMap::default(),
            next_seq: seq_start & ((1 << TXN_SEQ_BITS) - 1),
            reversal_due: BTreeMap::new(),
            reversal_deltas: Vec::new(),
            shards: 1,
            forwards_pending: 0,
            networks: NetworkNames::default(),
            open_by_network: HashMap::default(),
            devices: DeviceCounters::default(),
            stans: StanBook::default(),
            rules: RECORD_FORMAT,
        }
    }

    /// Handles what follows by the rules of journal record format `format` (replay of an older
    /// build's records); [`RECORD_FORMAT`] for live traffic.
    pub fn set_record_format(&mut self, format: u8) {
        self.rules = format;
    }

    /// Whether STANs are assigned as record formats 1 and 2's builds did: by
    /// [`crate::core::upstream::stan_for`] (the op id's, on the host's own terminal), so that
    /// what those builds sent is named right when their records replay.
    fn legacy_stans(&self) -> bool {
        self.rules < 3
    }

    /// Whether format 1's rules apply (see [`RECORD_FORMAT`]).
    fn format_1(&self) -> bool {
        self.rules < 2
    }

    /// Sets the number of shards (default 1): the STANs this shard assigns are unique among
    /// all of them.
    pub fn with_shard_count(mut self, shards: u16) -> Self {
        self.shards = shards.max(1);
        let who = (self.shard, self.shards);
        self.stans.reshape(&self.settings, who);
        self
    }

    /// This shard's index.
    pub fn shard(&self) -> u16 {
        self.shard
    }

    /// The settings it runs with.
    pub fn settings(&self) -> &Arc<CoreSettings> {
        &self.settings
    }

    /// Runs with `settings` from the next input on (a new version of the business settings; see
    /// [`crate::core::versions`]). Orders keep their state: a merchant's limits or a network's
    /// grants apply to what comes after, and an order already created stays its creator's.
    pub fn apply_settings(&mut self, settings: Arc<CoreSettings>) {
        self.settings = settings;
    }

    /// Number of orders held.
    pub fn order_count(&self) -> usize {
        self.orders.len()
    }

    /// Number of operations waiting for an upstream host.
    pub fn pending_count(&self) -> usize {
        self.by_op_id.len()
    }

    /// Operations waiting for an upstream host's answer, in op id order (recovery resolves them
    /// as in doubt). Reversals waiting for their next attempt are not among them.
    pub fn pending_ops(&self) -> Vec<u64> {
        let mut ops: Vec<u64> = self
            .by_op_id
            .iter()
            .filter(|(op_id, txn)| {
                !self
                    .orders
                    .get_hot(**txn)
                    .and_then(|s| s.order.reversal)
                    .is_some_and(|r| {
                        r.op_id == **op_id && matches!(r.state, ReversalState::RetryAt(_))
                    })
            })
            .map(|(op_id, _)| *op_id)
            .collect();
        ops.sort_unstable();
        ops
    }

    /// Reversals (and capture advices) the hosts have not acknowledged yet.
    pub fn reversals_pending(&self) -> usize {
        self.forwards_pending
    }

    /// Changes to the number of unacknowledged reversals per host since the last call.
    pub fn take_reversal_deltas(&mut self) -> Vec<(HostId, i64)> {
        std::mem::take(&mut self.reversal_deltas)
    }

    /// When the next reversal is due to be sent again, if any.
    pub fn next_reversal_due(&self) -> Option<u64> {
        self.reversal_due.keys().next().map(|(due, _)| *due)
    }

    /// After recovery: reversals started while resolving what was in doubt were never sent;
    /// they are due at once (the shell's timer sends them).
    pub fn schedule_unsent_reversals(&mut self, now_ms: u64) {
        for slot in self.orders.hot_mut() {
            let txn_id = slot.order.txn_id;
            if let Some(r) = slot.order.reversal.as_mut()
                && r.state == ReversalState::InFlight
            {
                r.state = ReversalState::RetryAt(now_ms);
                self.reversal_due.insert((now_ms, r.op_id), txn_id);
            }
        }
    }

    /// Sends again the reversals due at `now_ms` (repeats, 0401, once an attempt may have reached
    /// the host).
    pub fn poll_reversals(&mut self, now_ms: u64, out: &mut Vec<Output<R>>) {
        while let Some(entry) = self.reversal_due.first_entry() {
            if entry.key().0 > now_ms {
                break;
            }
            let ((due, op_id), txn_id) = entry.remove_entry();
            let shard = self.shard;
            let Some(Slot { key, order }) = self.orders.get_mut(txn_id) else {
                continue;
            };
            let Some(r) = order.reversal.as_mut() else {
                continue;
            };
            if r.op_id != op_id || r.state != ReversalState::RetryAt(due) {
                continue;
            }
            r.state = ReversalState::InFlight;
            r.attempts = r.attempts.saturating_add(1);
            let repeat = r.sent_once;
            if let Some(req) = reversal_request((shard, self.shards), op_id, repeat, key, order) {
                out.push(Output::Upstream(Box::new(req)));
            }
        }
    }

    /// Looks an order up (for tests and the simulation's invariant checks; thaws it if frozen).
    pub fn order(&mut self, merchant_id: &[u8], order_id: &[u8]) -> Option<&Order<R>> {
        self.orders
            .by_key_mut(merchant_id, order_id)
            .map(|s| &s.order)
    }

    /// Calls `f` with every order, oldest first.
    pub fn for_each_order(&self, f: impl FnMut(&OrderKey, &Order<R>)) {
        self.orders.for_each(f);
    }

    /// Orders held hot (the others are frozen: see [`super::window`]).
    pub fn hot_order_count(&self) -> usize {
        self.orders.hot_len()
    }

    /// Keys of orders evicted from the window that are still remembered.
    pub fn evicted_key_count(&self) -> usize {
        self.orders.evicted_len()
    }

    /// The next operation id (internal: matched against host outcomes, never shown to clients).
    fn next_id(&mut self) -> u64 {
        self.next_seq = (self.next_seq + 1) & ((1 << TXN_SEQ_BITS) - 1);
        (u64::from(self.shard) << TXN_SEQ_BITS) | self.next_seq
    }

    /// The next server transaction id: the shard, and a keyed permutation of the sequence so
    /// that no client can walk from its ids to other networks' (see [`super::ids`]). A request
    /// replayed from an older build's journal gets the sequential id that build gave it.
    fn next_txn_id(&mut self, caller: Caller) -> u64 {
        let seq = self.next_id() & ((1 << TXN_SEQ_BITS) - 1);
        let shard = u64::from(self.shard) << TXN_SEQ_BITS;
        if caller.legacy {
            return shard | seq;
        }
        shard | self.settings.secrets.permute(seq)
    }

    /// Handles one client request from `origin` at `now_ms`, appending what to do to `out`, and
    /// says whether the request is to be journaled.
    pub fn handle_request(
        &mut self,
        now_ms: u64,
        to: R,
        origin: Origin<'_>,
        req: &TxnRequest,
        out: &mut Vec<Output<R>>,
    ) -> Step {
        let caller = match self.admit(origin, req, now_ms) {
            Ok(caller) => caller,
            Err(refusal) => {
                out.push(Output::Reply(to, refusal));
                return Step::Skip;
            }
        };
        let key_txn = |s: &Self| s.orders.find(&req.merchant_id, &req.order_id);
        let before = key_txn(self).and_then(|t| self.orders.holding(t));
        let step = match req.kind {
            TxnKind::Inquiry => {
                let answer = self.inquiry(now_ms, caller, req);
                out.push(Output::Reply(to, Box::new(answer)));
                Step::Skip
            }
            TxnKind::Authorize | TxnKind::Sale | TxnKind::BalanceInquiry | TxnKind::Tokenize => {
                self.create(now_ms, to, caller, req, out)
            }
            TxnKind::Capture | TxnKind::Cancel | TxnKind::Refund => {
                self.follow_up(now_ms, to, caller, req, out)
            }
        };
        if step == Step::Journal {
            let after = key_txn(self).and_then(|t| self.orders.holding(t));
            self.count_open(before, after);
        }
        // Requests for old orders thaw them (inquiries, retransmissions, follow-ups): keep the
        // hot set bounded even when no new order comes to freeze them.
        self.orders
            .freeze(self.settings.orders_hot_per_shard_max, Order::pinned);
        step
    }

    /// Handles an upstream outcome, appending answers (to every waiter) to `out`.
    pub fn handle_upstream(
        &mut self,
        now_ms: u64,
        result: UpstreamResult,
        out: &mut Vec<Output<R>>,
    ) {
        let txn_id = self.by_op_id.get(&result.op_id).copied();
        let before = txn_id.and_then(|t| self.orders.holding(t));
        self.apply_upstream(now_ms, result, out);
        if let Some(t) = txn_id {
            self.count_open(before, self.orders.holding(t));
        }
    }

    fn apply_upstream(&mut self, now_ms: u64, result: UpstreamResult, out: &mut Vec<Output<R>>) {
        if let Some(txn_id) = self.by_op_id.get(&result.op_id).copied()
            && let Some(slot) = self.orders.get_hot(txn_id)
            && slot.order.reversal.is_some_and(|r| r.op_id == result.op_id)
        {
            return self.reversal_outcome(now_ms, txn_id, result);
        }
        let (shard, shards) = (self.shard, self.shards);
        let format_1 = self.format_1();
        let Some(txn_id) = self.by_op_id.remove(&result.op_id) else {
            // Unknown or already resolved op: a late or duplicate outcome changes nothing.
            return;
        };
        let Some(Slot { key, order }) = self.orders.get_mut(txn_id) else {
            return;
        };
        let Some(index) = order.ops.iter().position(
            |o| matches!(o.status, OpStatus::Pending { op_id, .. } if op_id == result.op_id),
        ) else {
            return;
        };
        let Some(op) = order.ops.get_mut(index) else {
            return;
        };
        let (kind, op_amount, closes) = (op.kind, op.amount, op.closes);
        let (waiters, received_ms) = match &mut op.status {
            OpStatus::Pending {
                waiters,
                received_ms,
                ..
            } => (std::mem::take(waiters), *received_ms),
            OpStatus::Done(_) => return,
        };
        let mut answer = base_answer(kind, ResultCode::Approved, key, now_ms);
        answer.received_at_ms = (received_ms > 0).then_some(received_ms);
        let mut forget_order = false;
        let mut forget_op = false;
        let mut release_daily = 0u64;
        // Start a store-and-forward message (a reversal, or a capture's completion advice), and
        // whether an attempt may already have reached the host.
        let mut forward: Option<(UpstreamKind, bool)> = None;
        match result.outcome {
            UpstreamOutcome::Answered {
                result: code,
                response_code,
                approval_code,
                sent,
                balance,
            } => {
                answer.result = code;
                answer.upstream_response_code = Some(response_code);
                answer.rrn = Some(sent.rrn.clone());
                let approved = code == ResultCode::Approved;
                match kind {
                    TxnKind::Authorize | TxnKind::Sale => {
                        if approved {
                            order.state = if kind == TxnKind::Sale {
                                OrderState::Captured
                            } else {
                                OrderState::Authorized
                            };
                            order.authorized = op_amount;
                            if kind == TxnKind::Sale {
                                order.captured = op_amount;
                            }
                            // A copy: the code is a slice of the host's read buffer.
                            order.approval_code = Bytes::copy_from_slice(&approval_code);
                            answer.approval_code = Some(approval_code);
                        } else if !format_1 && issuer_unavailable(code) {
                            // The host was asked and authorized nothing: the order may be
                            // attempted again (see `create`).
                            order.state = OrderState::Failed;
                            release_daily = op_amount;
                        } else {
                            order.state = OrderState::Declined;
                            release_daily = op_amount;
                        }
                        order.sent = Some(match &order.sent {
                            Some(assigned) => keep_terminal(sent, assigned),
                            None => sent,
                        });
                    }
                    TxnKind::Capture if approved => {
                        capture(order, op_amount, closes);
                        answer.approval_code = Some(order.approval_code.clone());
                    }
                    TxnKind::Cancel if approved => {
                        order.state = OrderState::Cancelled;
                        release_daily = order.authorized;
                    }
                    TxnKind::Refund if approved => {
                        order.refunded = order.refunded.saturating_add(op_amount);
                    }
                    TxnKind::BalanceInquiry => {
                        order.state = if !format_1 && issuer_unavailable(code) {
                            OrderState::Failed
                        } else {
                            OrderState::Done
                        };
                        answer.balance = balance;
                    }
                    _ => {}
                }
            }
            outcome @ (UpstreamOutcome::Timeout { .. } | UpstreamOutcome::Unknown) => {
                // Timeout: no answer in time. Unknown: sent before a crash, no answer journaled,
                // and what was sent is known without the pool: the shard assigned the STAN and
                // the stamp time (the request's own).
                let (code, sent, after_crash) = match outcome {
                    UpstreamOutcome::Timeout { sent } => {
                        (ResultCode::UpstreamTimeout, Some(sent), false)
                    }
                    _ => (ResultCode::InDoubt, None, true),
                };
                answer.result = code;
                if let Some(sent) = &sent {
                    answer.rrn = Some(sent.rrn.clone());
                }
                match kind {
                    TxnKind::Authorize | TxnKind::Sale => {
                        order.state = OrderState::InDoubt;
                        order.authorized = op_amount;
                        let upstream_kind = match kind {
                            TxnKind::Sale => UpstreamKind::Sale,
                            _ => UpstreamKind::Authorize,
                        };
                        // What the shard assigned when it sent it (an older build's order: what
                        // that build assigned).
                        let assigned = order.sent.take().unwrap_or_else(|| {
                            let stan = stan_for(result.op_id, shard, shards);
                            trace_of(upstream_kind, Bytes::new(), stan, order.received_ms)
                        });
                        order.sent = Some(match sent {
                            Some(sent) => keep_terminal(sent, &assigned),
                            None => assigned,
                        });
                        forward = Some((UpstreamKind::Reversal, after_crash));
                    }
                    // The reversal or advice may or may not have reached the host: it is repeated
                    // until acknowledged, so the cancel or capture stands.
                    TxnKind::Cancel => {
                        answer.result = ResultCode::Approved;
                        order.state = OrderState::Cancelled;
                        release_daily = order.authorized;
                        forward = Some((UpstreamKind::Reversal, true));
                    }
                    TxnKind::Capture => {
                        answer.result = ResultCode::Approved;
                        capture(order, op_amount, closes);
                        answer.approval_code = Some(order.approval_code.clone());
                        forward = Some((UpstreamKind::Capture, true));
                    }
                    TxnKind::Refund => {
                        order.refund_in_doubt = order.refund_in_doubt.saturating_add(op_amount);
                    }
                    TxnKind::BalanceInquiry => order.state = OrderState::Done,
                    _ => {}
                }
            }
            UpstreamOutcome::NotSent { result } => {
                // Never sent. Format 1 forgot the attempt (a retry made a new order); now the
                // order stays, failed, and a retry attempts it again under the same id.
                answer.result = result;
                match kind {
                    TxnKind::Authorize | TxnKind::Sale | TxnKind::BalanceInquiry => {
                        if format_1 {
                            forget_order = true;
                        } else {
                            order.state = OrderState::Failed;
                        }
                        release_daily = op_amount;
                    }
                    _ => forget_op = true,
                }
            }
        }
        fill_order_fields(&mut answer, order);
        // The operation's amount; a balance inquiry moves none.
        answer.amount = (op_amount > 0).then_some(op_amount);
        if forget_op {
            order.ops.remove(index);
        } else if let Some(op) = order.ops.get_mut(index) {
            let stored = StoredAnswer::new(&answer, &shared_of!(key, order));
            op.status = OpStatus::Done(stored);
        }
        let day = order.day;
        let merchant = key.merchant();
        if forget_order {
            self.orders.remove(txn_id);
        }
        self.release_daily(&merchant, day, release_daily);
        // The first waiter sent the request; the others sent it again while it was in progress
        // and get the same answer as a retransmission (with the RETRANSMIT flag).
        let mut waiters = waiters.into_iter();
        if let Some(first) = waiters.next() {
            out.push(Output::Reply(first, Box::new(answer.clone())));
        }
        for w in waiters {
            out.push(Output::Replay(w, Box::new(answer.clone())));
        }
        if let Some((kind, sent_once)) = forward {
            self.start_reversal(now_ms, txn_id, (kind, op_amount), sent_once, out);
        }
    }

    /// Queues a store-and-forward message for `key` (the reversal of its authorization, or the
    /// completion advice of its capture of `op_amount`) and sends its first attempt.
    fn start_reversal(
        &mut self,
        now_ms: u64,
        txn_id: u64,
        (kind, op_amount): (UpstreamKind, u64),
        sent_once: bool,
        out: &mut Vec<Output<R>>,
    ) {
        let op_id = self.next_id();
        let shard = self.shard;
        let Some(Slot { order, .. }) = self.orders.get_hot(txn_id) else {
            return;
        };
        if order.reversal.is_some_and(|r| r.pending()) {
            return;
        }
        // What it names: the authorized amount (a reversal), or the one capture it advises.
        let amount = match kind {
            UpstreamKind::Capture => op_amount,
            _ => order.authorized,
        };
        // Its own STAN on the original's terminal, the same for every attempt; journal formats 1
        // and 2 derived it from the op id (0 here).
        let (host, terminal) = (order.host, order.sent.as_ref().map(|o| o.terminal.clone()));
        let terminal = terminal.filter(|t| !t.is_empty());
        let stan = match (self.legacy_stans(), host) {
            (false, Some(host)) => {
                let who = (self.shard, self.shards);
                self.stans
                    .assign(
                        &self.settings,
                        who,
                        host,
                        now_ms,
                        terminal.as_ref(),
                        Purpose::Forward,
                    )
                    .map_or(0, |(_, stan)| stan)
            }
            _ => 0,
        };
        let Some(Slot { key, order }) = self.orders.get_mut(txn_id) else {
            return;
        };
        order.reversal = Some(Reversal {
            kind,
            op_id,
            stan,
            amount,
            attempts: 1,
            sent_once,
            state: ReversalState::InFlight,
        });
        if let Some(host) = order.host {
            self.reversal_deltas.push((host, 1));
        }
        self.forwards_pending += 1;
        self.by_op_id.insert(op_id, txn_id);
        if let Some(req) = reversal_request((shard, self.shards), op_id, sent_once, key, order) {
            out.push(Output::Upstream(Box::new(req)));
        }
    }

    /// An outcome of a reversal attempt: acknowledged, or scheduled again with a growing delay.
    fn reversal_outcome(&mut self, now_ms: u64, txn_id: u64, result: UpstreamResult) {
        let Some(Slot { key, order }) = self.orders.get_mut(txn_id) else {
            return;
        };
        let Some(r) = order.reversal.as_mut() else {
            return;
        };
        if r.state == ReversalState::Acknowledged {
            // A duplicate or late outcome: nothing changes.
            return;
        }
        // In flight, or (replaying the journal, where the timer that sent an attempt again does
        // not run) waiting for an attempt the live shard did send: the outcome applies.
        match result.outcome {
            UpstreamOutcome::Answered { result: code, .. }
                if code != ResultCode::UpstreamUnavailable && !issuer_unavailable(code) =>
            {
                // The host answered: acknowledged, whatever its response code (hosts answer
                // reversals of messages they never saw too), except "system unavailable" (91, 92,
                // 96), which asks for a repeat.
                r.state = ReversalState::Acknowledged;
                self.forwards_pending = self.forwards_pending.saturating_sub(1);
                self.by_op_id.remove(&result.op_id);
                if let Some(host) = order.host {
                    self.reversal_deltas.push((host, -1));
                }
                if order.state == OrderState::InDoubt && r.kind == UpstreamKind::Reversal {
                    order.state = OrderState::Reversed;
                    let released = order.authorized;
                    let (day, merchant) = (order.day, key.merchant());
                    let state = wire_state(order);
                    let shared = shared_of!(key, order);
                    // The answers given said "not known yet" (3003, 3004, retryable): now it is
                    // known, and the same request again gets the final word.
                    for op in &mut order.ops {
                        if let OpStatus::Done(stored) = &mut op.status {
                            let mut a = stored.answer(op.kind, &shared);
                            a.state = state;
                            if matches!(a.result, ResultCode::UpstreamTimeout | ResultCode::InDoubt)
                            {
                                a.result = ResultCode::Reversed;
                            }
                            a.authorized_amount = Some(0);
                            a.captured_amount = Some(0);
                            *stored = StoredAnswer::new(&a, &shared);
                        }
                    }
                    self.release_daily(&merchant, day, released);
                }
            }
            UpstreamOutcome::Answered { .. }
            | UpstreamOutcome::Timeout { .. }
            | UpstreamOutcome::Unknown
            | UpstreamOutcome::NotSent { .. } => {
                if !matches!(result.outcome, UpstreamOutcome::NotSent { .. }) {
                    r.sent_once = true;
                }
                let shift = r.attempts.saturating_sub(1).min(16);
                let delay = self
                    .settings
                    .forward_retry_ms
                    .saturating_mul(1 << shift)
                    .min(self.settings.forward_retry_max_ms);
                let due = now_ms.saturating_add(delay);
                r.state = ReversalState::RetryAt(due);
                self.reversal_due.insert((due, r.op_id), txn_id);
            }
        }
    }

    fn inquiry(&mut self, now_ms: u64, network: Caller, req: &TxnRequest) -> TxnAnswer {
        let txn_id = match req.server_txn_id {
            Some(id) => Some(id),
            None => self.orders.find(&req.merchant_id, &req.order_id),
        };
        let visible = txn_id.filter(|t| {
            self.orders.owner(*t).is_some_and(|(merchant, creator)| {
                // By id with a merchant named: the order must be that merchant's.
                (req.merchant_id.is_empty() || merchant == &req.merchant_id[..])
                    && self.may_touch(network, merchant, creator)
            })
        });
        let Some(Slot { key, order }) = visible.and_then(|t| self.orders.get_mut(t)) else {
            let mut answer = echo_answer(TxnKind::Inquiry, ResultCode::NotFound, req, now_ms);
            if self.orders.was_evicted(&req.merchant_id, &req.order_id) {
                answer.message = Some(Bytes::from_static(OLDER_THAN_WINDOW));
            }
            return answer;
        };
        let mut answer = base_answer(TxnKind::Inquiry, ResultCode::Approved, key, now_ms);
        if order.state == OrderState::Authorizing {
            answer.result = ResultCode::InProgress;
        }
        fill_order_fields(&mut answer, order);
        answer
    }

    /// Authorize, sale, balance inquiry, tokenize: requests that create an order.
    fn create(
        &mut self,
        now_ms: u64,
        to: R,
        caller: Caller,
        req: &TxnRequest,
        out: &mut Vec<Output<R>>,
    ) -> Step {
        let fingerprint = fingerprint(req);
        let waiters_max = self.settings.waiters_per_operation_max;
        let (existing, hidden) = self.find_for(caller, req);
        if hidden {
            // Another network's order under a key both may use: the key is taken, and nothing
            // of the order is told.
            let a = echo_answer(req.kind, ResultCode::DuplicateOrder, req, now_ms);
            out.push(Output::Reply(to, Box::new(a)));
            return Step::Skip;
        }
        // An order that failed before the issuer answered (state 9) is attempted again by the
        // same request, under its transaction id; anything else under the key is replayed.
        let mut again: Option<u64> = None;
        if let Some(Slot { key, order }) = existing.and_then(|t| self.orders.get_mut(t)) {
            let same = order
                .ops
                .first()
                .is_some_and(|op| op.kind == req.kind && op.fingerprint == fingerprint);
            if order.state == OrderState::Failed && same && !order.pinned() {
                again = Some(order.txn_id);
            } else {
                out.extend(replay(
                    order,
                    req.kind,
                    b"",
                    fingerprint,
                    &to,
                    waiters_max,
                    key,
                    now_ms,
                ));
                return Step::Journal;
            }
        }
        if again.is_none() && self.orders.was_evicted(&req.merchant_id, &req.order_id) {
            // The key's order left the window: it cannot be replayed, and must not be sent to the
            // host a second time.
            let mut a = echo_answer(req.kind, ResultCode::DuplicateOrder, req, now_ms);
            a.message = Some(Bytes::from_static(OLDER_THAN_WINDOW));
            out.push(Output::Reply(to, Box::new(a)));
            return Step::Journal;
        }
        // A new order: its device signature first (a retransmission above got its stored
        // answer, which makes nothing new and tells its own network nothing new). A new
        // attempt of a failed order repeats content whose signature verified: like a
        // retransmission, its signature is not checked again (its counter is marked used).
        let refused = match again {
            Some(_) => {
                self.devices.replayed(req);
                None
            }
            None => self.check_device(caller, req, now_ms),
        };
        if let Some(refused) = refused {
            out.push(Output::Reply(to, refused));
            return Step::Skip;
        }
        let key = OrderKey::new(&req.merchant_id, &req.order_id);
        let quota = self.settings.open_orders_per_network_max;
        if !caller.replayed
            && self
                .open_by_network
                .get(&caller.network)
                .copied()
                .unwrap_or(0)
                >= quota
        {
            // This network holds its share of the window: its new orders wait, others' do not.
            out.push(Output::Reply(
                to,
                Box::new(base_answer(req.kind, ResultCode::Busy, &key, now_ms)),
            ));
            return Step::Skip;
        }
        let amount = req.amount.unwrap_or(0);
        let day = self.settings.business_day(now_ms);
        // The merchant's rules (enabled, currencies, limits) as configured now. A refusal changes
        // nothing and is not journaled; a replayed request passed them when it was journaled and
        // is not checked again, so changing a merchant's limits between restarts can never undo
        // an acknowledged payment. (An older build journaled its refusals too: its records are
        // checked again, as that build replayed them.)
        if !caller.replayed || caller.legacy {
            let limits = self
                .check_merchant(key.merchant_bytes(), req, now_ms)
                .and_then(|()| self.check_daily(&key, req.kind, amount, day));
            if let Err(code) = limits {
                out.push(Output::Reply(
                    to,
                    Box::new(base_answer(req.kind, code, &key, now_ms)),
                ));
                return Step::Skip;
            }
        }
        // The failed attempt makes way for the new one (same key, same transaction id).
        if let Some(txn_id) = again {
            self.orders.remove(txn_id);
        }
        // A window full of orders that must stay refuses new ones BUSY (not journaled: the
        // completed orders it evicted on the way would have left at the next order anyway). A
        // replayed request was admitted: it is taken whatever the window holds.
        if !self.make_room() && !caller.replayed {
            out.push(Output::Reply(
                to,
                Box::new(base_answer(req.kind, ResultCode::Busy, &key, now_ms)),
            ));
            return Step::Skip;
        }
        let (account, masked) = match self.resolve_account(req) {
            Ok(a) => a,
            Err(code) => {
                out.push(Output::Reply(
                    to,
                    Box::new(base_answer(req.kind, code, &key, now_ms)),
                ));
                return Step::Journal;
            }
        };
        let txn_id = match again {
            Some(txn_id) => txn_id,
            None => self.next_txn_id(caller),
        };
        let mut order = Order {
            txn_id,
            kind: req.kind,
            network: caller.network,
            currency: req.currency.unwrap_or(0),
            host: None,
            account: None,
            masked_pan: masked.clone(),
            state: OrderState::Done,
            authorized: 0,
            captured: 0,
            refunded: 0,
            refund_in_doubt: 0,
            capture_closed: false,
            installments: match req.kind {
                TxnKind::Authorize | TxnKind::Sale => req.installments(),
                _ => 0,
            },
            approval_code: Bytes::new(),
            sent: None,
            day,
            received_ms: now_ms,
            ops: Vec::with_capacity(1),
            reversal: None,
        };
        if req.kind == TxnKind::Tokenize {
            let customer = req.customer_ref.clone();
            let answer = self.tokenize(
                &key,
                txn_id,
                account,
                masked,
                customer,
                caller.legacy,
                now_ms,
            );
            order.ops.push(Operation {
                kind: req.kind,
                request_id: Bytes::new(),
                fingerprint,
                amount: 0,
                closes: false,
                status: OpStatus::Done(StoredAnswer::new(&answer, &shared_of!(&key, order))),
            });
            self.insert(key, order);
            out.push(Output::Reply(to, Box::new(answer)));
            return Step::Journal;
        }
        let Some(host) = self.settings.routes.route(route_key(&account)) else {
            out.push(Output::Reply(
                to,
                Box::new(base_answer(req.kind, ResultCode::Unroutable, &key, now_ms)),
            ));
            return Step::Journal;
        };
        let kind = match req.kind {
            TxnKind::Sale => UpstreamKind::Sale,
            TxnKind::BalanceInquiry => UpstreamKind::BalanceInquiry,
            _ => UpstreamKind::Authorize,
        };
        if self.forwards_pending >= self.settings.forwards_pending_per_shard_max {
            // Hosts are not acknowledging reversals: take no new money until they do.
            out.push(Output::Reply(
                to,
                Box::new(base_answer(req.kind, ResultCode::Busy, &key, now_ms)),
            ));
            return Step::Journal;
        }
        let Some((terminal, stan)) = self.assign_stan(host, now_ms, None, caller.replayed) else {
            // Every STAN of the shard's terminals for this host is used today (but those kept
            // for reversals): nothing changed, not journaled.
            out.push(Output::Reply(
                to,
                Box::new(base_answer(req.kind, ResultCode::Busy, &key, now_ms)),
            ));
            return Step::Skip;
        };
        if kind != UpstreamKind::BalanceInquiry {
            self.add_daily(&key, amount, day);
            order.state = OrderState::Authorizing;
        }
        let op_id = self.next_id();
        let stan = self.legacy_stan(stan, op_id);
        // What identifies the message before its answer comes (a crash in between leaves it in
        // doubt, and its reversal names it).
        order.sent = Some(trace_of(kind, terminal.clone(), stan, now_ms));
        order.host = Some(host);
        order.account = Some(account.clone());
        order.ops.push(Operation {
            kind: req.kind,
            request_id: Bytes::new(),
            fingerprint,
            amount,
            closes: false,
            status: OpStatus::Pending {
                op_id,
                waiters: vec![to],
                received_ms: now_ms,
            },
        });
        self.by_op_id.insert(op_id, txn_id);
        let (merchant_id, order_id) = (key.merchant(), key.order_id());
        self.insert(key, order);
        out.push(Output::Upstream(Box::new(UpstreamRequest {
            op_id,
            shard: self.shard,
            host,
            kind,
            amount,
            currency: req.currency.unwrap_or(0),
            account,
            order_id,
            merchant_id,
            installments: match req.kind {
                TxnKind::Authorize | TxnKind::Sale => req.installments(),
                _ => 0,
            },
            original: None,
            original_approval: Bytes::new(),
            terminal,
            repeat: false,
            stan,
            sent_at_ms: now_ms,
        })));
        Step::Journal
    }

    /// A terminal id and STAN for a message to `host` (see [`stans`]): on `terminal` when given,
    /// else the least used of the shard's. A replayed request was assigned one live, so it gets
    /// one whatever is left.
    fn assign_stan(
        &mut self,
        host: HostId,
        now_ms: u64,
        terminal: Option<&Bytes>,
        replayed: bool,
    ) -> Option<(Bytes, u32)> {
        let who = (self.shard, self.shards);
        let purpose = match replayed {
            true => Purpose::Forward,
            false => Purpose::Payment,
        };
        if self.legacy_stans() {
            return Some((Bytes::new(), 0));
        }
        self.stans
            .assign(&self.settings, who, host, now_ms, terminal, purpose)
    }

    /// `stan`, or (0: assigned under format 1's rule) the op id's.
    fn legacy_stan(&self, stan: u32, op_id: u64) -> u32 {
        match stan {
            0 => stan_for(op_id, self.shard, self.shards),
            s => s,
        }
    }

    /// Store-and-forward: a link to `host` signed on, so the reversals and capture advices
    /// waiting for it are due now rather than at their next backoff time.
    pub fn flush_forwards(&mut self, host: HostId, now_ms: u64) {
        let waiting: Vec<((u64, u64), u64)> = self
            .reversal_due
            .iter()
            .filter(|((due, _), txn_id)| {
                *due > now_ms
                    && self
                        .orders
                        .get_hot(**txn_id)
                        .is_some_and(|slot| slot.order.host == Some(host))
            })
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((due, op_id), txn_id) in waiting {
            self.reversal_due.remove(&(due, op_id));
            if let Some(Slot { order, .. }) = self.orders.get_mut(txn_id)
                && let Some(r) = order.reversal.as_mut()
                && r.state == ReversalState::RetryAt(due)
            {
                r.state = ReversalState::RetryAt(now_ms);
                self.reversal_due.insert((now_ms, op_id), txn_id);
            }
        }
    }

    /// Capture, cancel, refund: operations on an existing order.
    fn follow_up(
        &mut self,
        now_ms: u64,
        to: R,
        caller: Caller,
        req: &TxnRequest,
        out: &mut Vec<Output<R>>,
    ) -> Step {
        // A copy: it is kept with the operation.
        let request_id = req
            .request_id
            .as_deref()
            .map(Bytes::copy_from_slice)
            .unwrap_or_default();
        let fingerprint = fingerprint(req);
        let waiters_max = self.settings.waiters_per_operation_max;
        let (existing, hidden) = self.find_for(caller, req);
        if hidden {
            // Exactly what a missing order gets.
            let a = echo_answer(req.kind, ResultCode::NotFound, req, now_ms);
            out.push(Output::Reply(to, Box::new(a)));
            return Step::Skip;
        }
        let Some(Slot { key, order }) = existing.and_then(|t| self.orders.get_mut(t)) else {
            let code = match self.settings.merchants.get(&req.merchant_id[..]) {
                None => ResultCode::UnknownMerchant,
                Some(_) => ResultCode::NotFound,
            };
            let mut a = echo_answer(req.kind, code, req, now_ms);
            if code == ResultCode::NotFound
                && self.orders.was_evicted(&req.merchant_id, &req.order_id)
            {
                a.message = Some(Bytes::from_static(OLDER_THAN_WINDOW));
            }
            out.push(Output::Reply(to, Box::new(a)));
            return Step::Journal;
        };
        let (key, txn_id) = (key.clone(), order.txn_id);
        if order.op_mut(req.kind, &request_id).is_some() {
            out.extend(replay(
                order,
                req.kind,
                &request_id,
                fingerprint,
                &to,
                waiters_max,
                &key,
                now_ms,
            ));
            return Step::Journal;
        }
        // A new operation: its device signature first (the order is borrowed: the rules of
        // `check_device`, on the fields they need).
        let device_refusal = if caller.replayed {
            self.devices.replayed(req);
            None
        } else {
            self.devices.refuse(&self.settings.devices, req, now_ms)
        };
        if let Some(refused) = device_refusal {
            out.push(Output::Reply(to, refused));
            return Step::Skip;
        }
        let refuse = |code: ResultCode, order: &Order<R>| {
            let mut a = base_answer(req.kind, code, &key, now_ms);
            fill_order_fields(&mut a, order);
            a.amount = req.amount;
            Output::Reply(to.clone(), Box::new(a))
        };
        if order.pinned() {
            // An operation, or a reversal or capture advice, is still on its way to the host.
            out.push(refuse(ResultCode::InProgress, order));
            return Step::Journal;
        }
        if req.currency.is_some_and(|c| c != order.currency) {
            out.push(refuse(ResultCode::InvalidRequest, order));
            return Step::Journal;
        }
        match req.kind {
            TxnKind::Capture => {
                // Format 1 took one capture per authorization.
                let open = match self.rules {
                    0 | 1 => order.state == OrderState::Authorized,
                    _ => order.capture_open(),
                };
                if !open {
                    out.push(refuse(ResultCode::InvalidState, order));
                    return Step::Journal;
                }
                let left = order.capturable();
                let amount = req.amount.unwrap_or(left);
                if amount == 0 || amount > left {
                    out.push(refuse(ResultCode::AmountExceedsAvailable, order));
                    return Step::Journal;
                }
                let closes = req.final_capture || amount == left;
                let online = order.host.is_some_and(|h| self.settings.captures_online(h));
                if online {
                    let op = (to, request_id, fingerprint, req.kind);
                    let Some(req) = self.follow_up_request(
                        now_ms,
                        txn_id,
                        (UpstreamKind::Capture, amount, closes),
                        op,
                    ) else {
                        return Step::Journal;
                    };
                    out.push(req);
                    return Step::Journal;
                }
                // Capture is local: the captured amount goes to the host in the settlement file.
                capture(order, amount, closes);
                let mut a = base_answer(req.kind, ResultCode::Approved, &key, now_ms);
                fill_order_fields(&mut a, order);
                a.amount = Some(amount);
                a.approval_code = Some(order.approval_code.clone());
                order.ops.push(Operation {
                    kind: req.kind,
                    request_id,
                    fingerprint,
                    amount,
                    closes,
                    status: OpStatus::Done(StoredAnswer::new(&a, &shared_of!(&key, order))),
                });
                out.push(Output::Reply(to, Box::new(a)));
            }
            TxnKind::Cancel | TxnKind::Refund => {
                let (kind, amount) = if req.kind == TxnKind::Cancel {
                    let cancellable = order.state == OrderState::Authorized
                        || (order.state == OrderState::Captured
                            && order.refunded == 0
                            && order.refund_in_doubt == 0);
                    if !cancellable {
                        out.push(refuse(ResultCode::InvalidState, order));
                        return Step::Journal;
                    }
                    (UpstreamKind::Reversal, order.authorized)
                } else {
                    if order.state != OrderState::Captured {
                        out.push(refuse(ResultCode::InvalidState, order));
                        return Step::Journal;
                    }
                    let amount = req.amount.unwrap_or(order.refundable());
                    if amount == 0 || amount > order.refundable() {
                        out.push(refuse(ResultCode::AmountExceedsAvailable, order));
                        return Step::Journal;
                    }
                    (UpstreamKind::Refund, amount)
                };
                if order.host.is_none() || order.account.is_none() {
                    out.push(refuse(ResultCode::InvalidState, order));
                    return Step::Journal;
                }
                let op = (to, request_id, fingerprint, req.kind);
                if let Some(req) = self.follow_up_request(now_ms, txn_id, (kind, amount, false), op)
                {
                    out.push(req);
                }
            }
            _ => out.push(refuse(ResultCode::InvalidRequest, order)),
        }
        Step::Journal
    }

    /// Records a pending follow-up operation on `key` (capture, cancel, refund) and returns the
    /// upstream request for it (to the order's host, naming its authorization).
    fn follow_up_request(
        &mut self,
        now_ms: u64,
        txn_id: u64,
        (kind, amount, closes): (UpstreamKind, u64, bool),
        (to, request_id, fingerprint, txn_kind): (R, Bytes, u64, TxnKind),
    ) -> Option<Output<R>> {
        let (host, original) = {
            let order = &self.orders.get_hot(txn_id)?.order;
            (order.host?, order.sent.clone())
        };
        // On the original's terminal: the host matches follow-ups on terminal id + original STAN.
        let terminal = original
            .as_ref()
            .map(|o| o.terminal.clone())
            .filter(|t| !t.is_empty());
        let purpose = match kind {
            UpstreamKind::Reversal => Purpose::Forward,
            _ => Purpose::Payment,
        };
        let who = (self.shard, self.shards);
        let assigned = match self.legacy_stans() {
            true => Some((Bytes::new(), 0)),
            false => self.stans.assign(
                &self.settings,
                who,
                host,
                now_ms,
                terminal.as_ref(),
                purpose,
            ),
        };
        let Slot { key, order } = self.orders.get_mut(txn_id)?;
        let Some((terminal, stan)) = assigned else {
            let mut a = base_answer(txn_kind, ResultCode::Busy, key, now_ms);
            fill_order_fields(&mut a, order);
            a.amount = Some(amount);
            return Some(Output::Reply(to, Box::new(a)));
        };
        let op_id = self.next_id();
        let stan = self.legacy_stan(stan, op_id);
        let Slot { key, order } = self.orders.get_mut(txn_id)?;
        let account = order.account.clone()?;
        order.ops.push(Operation {
            kind: txn_kind,
            request_id,
            fingerprint,
            amount,
            closes,
            status: OpStatus::Pending {
                op_id,
                waiters: vec![to],
                received_ms: now_ms,
            },
        });
        let (currency, original_approval) = (order.currency, order.approval_code.clone());
        let installments = order.installments;
        let (merchant_id, order_id) = (key.merchant(), key.order_id());
        self.by_op_id.insert(op_id, txn_id);
        Some(Output::Upstream(Box::new(UpstreamRequest {
            op_id,
            shard: self.shard,
            host,
            kind,
            amount,
            currency,
            account,
            order_id,
            merchant_id,
            installments,
            original,
            original_approval,
            terminal,
            repeat: false,
            stan,
            sent_at_ms: now_ms,
        })))
    }

    fn check_merchant(
        &self,
        merchant: &[u8],
        req: &TxnRequest,
        _now_ms: u64,
    ) -> Result<(), ResultCode> {
        let m = self
            .settings
            .merchants
            .get(merchant)
            .ok_or(ResultCode::UnknownMerchant)?;
        if !m.enabled {
            return Err(ResultCode::MerchantDisabled);
        }
        if let Some(c) = req.currency
            && !m.currencies.is_empty()
            && !m.currencies.contains(&c)
        {
            return Err(ResultCode::UnsupportedCurrency);
        }
        if let (Some(limit), Some(amount)) = (m.single_limit_minor, req.amount)
            && amount > limit
        {
            return Err(ResultCode::AmountOverLimit);
        }
        Ok(())
    }

    /// Gives back `amount` of a merchant's daily total reserved on business day `day` (nothing
    /// once the day has turned).
    fn release_daily(&mut self, merchant: &[u8], day: u64, amount: u64) {
        if amount > 0
            && let Some(d) = self.daily.get_mut(merchant)
            && d.day == day
        {
            d.total = d.total.saturating_sub(amount);
        }
    }

    /// Whether an authorization or sale of `amount` on business day `day` stays within the
    /// merchant's daily limit (nothing is reserved yet: see [`ShardCore::add_daily`]).
    fn check_daily(
        &self,
        key: &OrderKey,
        kind: TxnKind,
        amount: u64,
        day: u64,
    ) -> Result<(), ResultCode> {
        if !matches!(kind, TxnKind::Authorize | TxnKind::Sale) {
            return Ok(());
        }
        let limit = self
            .settings
            .merchants
            .get(key.merchant_bytes())
            .and_then(|m| m.daily_limit_minor);
        let so_far = self
            .daily
            .get(key.merchant_bytes())
            .filter(|d| d.day == day)
            .map_or(0, |d| d.total);
        let total = so_far
            .checked_add(amount)
            .ok_or(ResultCode::DailyLimitExceeded)?;
        if limit.is_some_and(|l| total > l) {
            return Err(ResultCode::DailyLimitExceeded);
        }
        Ok(())
    }

    /// Adds `amount` to the merchant's total of business day `day` (checked before, when the
    /// request was live: [`ShardCore::check_daily`]).
    fn add_daily(&mut self, key: &OrderKey, amount: u64, day: u64) {
        let entry = self.daily.entry(key.merchant()).or_default();
        if entry.day != day {
            *entry = DailyTotal { day, total: 0 };
        }
        entry.total = entry.total.saturating_add(amount);
    }

    /// Adds an order and keeps the window bounded: past `orders_per_shard_max`, the oldest
    /// orders with nothing pending leave it, their keys remembered (see [`super::window`]).
    fn insert(&mut self, key: OrderKey, order: Order<R>) {
        self.orders.insert(key, order);
        let settings = &self.settings;
        self.orders
            .freeze(settings.orders_hot_per_shard_max, Order::pinned);
        self.orders.evict(
            settings.orders_per_shard_max,
            settings.evicted_keys_per_shard_max,
            Order::holds_window,
        );
    }

    /// Room for one more order: evicts completed orders if the window is full. `false` when
    /// every order looked at must stay (open authorizations, orders in doubt or in progress):
    /// the new order is refused BUSY rather than one of them dropped.
    fn make_room(&mut self) -> bool {
        let max = self.settings.orders_per_shard_max;
        if self.orders.len() < max {
            return true;
        }
        self.orders.evict(
            max.saturating_sub(1),
            self.settings.evicted_keys_per_shard_max,
            Order::holds_window,
        );
        self.orders.len() < max
    }
}

/// Answer to a request whose key is already known: the stored answer, a wait on the pending one, or
/// DUPLICATE_ORDER when the content differs.
#[allow(clippy::too_many_arguments)]
fn replay<R: Clone>(
    order: &mut Order<R>,
    kind: TxnKind,
    request_id: &[u8],
    fingerprint: u64,
    to: &R,
    waiters_max: usize,
    key: &OrderKey,
    now_ms: u64,
) -> Option<Output<R>> {
    let txn_id = order.txn_id;
    let refuse = |code: ResultCode| {
        let mut a = base_answer(kind, code, key, now_ms);
        a.server_txn_id = Some(txn_id);
        Some(Output::Reply(to.clone(), Box::new(a)))
    };
    let shared = shared_of!(key, order);
    let Some(op) = find_op(&mut order.ops, kind, request_id) else {
        return refuse(ResultCode::DuplicateOrder);
    };
    if op.fingerprint != fingerprint {
        return refuse(ResultCode::DuplicateOrder);
    }
    match &mut op.status {
        OpStatus::Done(answer) => {
            let answer = answer.answer(kind, &shared);
            Some(Output::Replay(to.clone(), Box::new(answer)))
        }
        OpStatus::Pending { waiters, .. } if waiters.len() < waiters_max => {
            waiters.push(to.clone());
            None
        }
        OpStatus::Pending { .. } => refuse(ResultCode::InProgress),
    }
}

/// The reversal message of an order's authorization (to the host that had it, for the amount it
/// authorized, naming the original).
fn reversal_request<R>(
    (shard, shards): (u16, u16),
    op_id: u64,
    repeat: bool,
    key: &OrderKey,
    order: &Order<R>,
) -> Option<UpstreamRequest> {
    let (kind, amount) = order
        .reversal
        .map_or((UpstreamKind::Reversal, order.authorized), |r| {
            (r.kind, r.amount)
        });
    let stan = match order.reversal.map_or(0, |r| r.stan) {
        0 => stan_for(op_id, shard, shards),
        stan => stan,
    };
    let terminal = order
        .sent
        .as_ref()
        .map(|o| o.terminal.clone())
        .unwrap_or_default();
    Some(UpstreamRequest {
        op_id,
        shard,
        host: order.host?,
        kind,
        amount,
        currency: order.currency,
        account: order.account.clone()?,
        merchant_id: key.merchant(),
        order_id: key.order_id(),
        installments: order.installments,
        original: order.sent.clone(),
        original_approval: order.approval_code.clone(),
        terminal,
        repeat,
        stan,
        sent_at_ms: 0,
    })
}

/// The outcome's record of what was sent, on the terminal the shard assigned (outcomes are
/// journaled without it).
fn keep_terminal(mut sent: OriginalRef, assigned: &OriginalRef) -> OriginalRef {
    if !assigned.terminal.is_empty() {
        sent.terminal = assigned.terminal.clone();
    }
    sent
}

fn route_key(account: &Account) -> RouteKey<'_> {
    match account {
        Account::Card { pan, .. } => RouteKey::Card { bin: pan.bin() },
        Account::Phone { carrier, .. } => RouteKey::Carrier { carrier },
        Account::Bank { bank_code, .. } => RouteKey::Bank { bank_code },
    }
}

/// Hash of what makes two requests with the same key "the same request" (docs/PROTOCOL.md
/// section 8, "content"): the message type, `amount`, `currency`, `request_id`, the payment
/// method and its fields (the CVV excepted: it is never kept), `installment_months` (0 counts
/// as absent), `final_capture` (0 counts as absent) and `customer_ref`. Not content: `description`, `cvv`, the
/// device fields, `server_txn_id`. A fixed algorithm (FNV-1a over length-prefixed fields), so
/// fingerprints kept in snapshots and rebuilt by replay agree with new requests whatever the
/// toolchain; the fields added later are hashed only when present, so a request without them
/// keeps the fingerprint an older build gave it.
fn fingerprint(req: &TxnRequest) -> u64 {
    let mut h = Fnv::new();
    h.bytes(&[req.kind as u8]);
    h.opt_u64(req.amount);
    h.opt_u64(req.currency.map(u64::from));
    h.opt_bytes(req.request_id.as_deref());
    match &req.payment {
        Some(PaymentMethod::Card { pan, expiry, .. }) => {
            h.bytes(&[1]);
            h.field(pan.digits());
            h.field(expiry);
        }
        Some(PaymentMethod::WalletToken(t)) => {
            h.bytes(&[2]);
            h.field(t);
        }
        Some(PaymentMethod::CarrierBilling { phone, carrier }) => {
            h.bytes(&[3]);
            h.field(phone);
            h.field(carrier);
        }
        Some(PaymentMethod::BankTransfer { bank_code, account }) => {
            h.bytes(&[4]);
            h.field(bank_code);
            h.field(account);
        }
        None => h.bytes(&[0]),
    }
    if req.installments() > 0 {
        h.bytes(&[0x33, req.installments()]);
    }
    if req.final_capture {
        h.bytes(&[0x34, 1]);
    }
    if let Some(customer) = &req.customer_ref {
        h.bytes(&[0x35]);
        h.field(customer);
    }
    h.0
}

/// The message of answers about a key whose order has left the window.
const OLDER_THAN_WINDOW: &[u8] = b"order is older than the shard's in-memory window";

fn base_answer(kind: TxnKind, result: ResultCode, key: &OrderKey, now_ms: u64) -> TxnAnswer {
    answer_for(kind, result, key.merchant(), key.order_id(), now_ms)
}

/// An answer naming the request's merchant and order, for a request that made no order.
fn echo_answer(kind: TxnKind, result: ResultCode, req: &TxnRequest, now_ms: u64) -> TxnAnswer {
    answer_for(
        kind,
        result,
        req.merchant_id.clone(),
        req.order_id.clone(),
        now_ms,
    )
}

fn answer_for(
    kind: TxnKind,
    result: ResultCode,
    merchant_id: Bytes,
    order_id: Bytes,
    now_ms: u64,
) -> TxnAnswer {
    let mut a = TxnAnswer::new(kind, result);
    a.merchant_id = Some(merchant_id);
    a.order_id = Some(order_id);
    a.received_at_ms = Some(now_ms);
    a.answered_at_ms = Some(now_ms);
    a
}

/// Whether a host's answer says the issuer or its switch is unavailable (91, 92, 96): it was
/// asked, and authorized nothing.
fn issuer_unavailable(code: ResultCode) -> bool {
    code == ResultCode::IssuerUnavailable
}

/// Books a capture of `amount` on `order` (within what is capturable: checked when the CAPTURE
/// was taken); `closes`: nothing more may be captured.
fn capture<R>(order: &mut Order<R>, amount: u64, closes: bool) {
    order.captured = order.captured.saturating_add(amount).min(order.authorized);
    order.capture_closed |= closes;
    order.state = OrderState::Captured;
}

/// The order's fields of an answer: its id, state and totals as they stand now. The totals say
/// what is held or charged: nothing in states 4 (cancelled), 9 (failed) and 10 (reversed), and
/// not known in state 8 (in doubt: left out). A TOKENIZE's or BALANCE_INQUIRY's record is no
/// payment: no state and no totals.
fn fill_order_fields<R>(a: &mut TxnAnswer, order: &Order<R>) {
    a.server_txn_id = Some(order.txn_id);
    a.state = wire_state(order);
    a.currency = (order.currency != 0).then_some(order.currency);
    a.installment_months = (order.installments > 0).then_some(order.installments);
    let (authorized, captured, refunded) = match order.state {
        OrderState::Done | OrderState::InDoubt | OrderState::Authorizing => (None, None, None),
        OrderState::Cancelled
        | OrderState::Failed
        | OrderState::Reversed
        | OrderState::Declined => (Some(0), Some(0), Some(0)),
        _ => (
            Some(order.authorized),
            Some(order.captured),
            Some(order.refunded),
        ),
    };
    a.authorized_amount = authorized;
    a.captured_amount = captured;
    a.refunded_amount = refunded;
    if let Some(m) = &order.masked_pan {
        a.masked_pan = Some(m.clone());
    }
    if !order.approval_code.is_empty() {
        a.approval_code = Some(order.approval_code.clone());
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn request(amount: u64) -> TxnRequest {
        let mut r = TxnRequest::new(
            TxnKind::Authorize,
            Bytes::from_static(b"M1"),
            Bytes::from_static(b"O1"),
        );
        r.amount = Some(amount);
        r.currency = Some(410);
        r.payment = Some(PaymentMethod::Card {
            pan: paymesh_codecs::types::Pan::new(Bytes::from_static(b"4111111111111111")).unwrap(),
            expiry: Bytes::from_static(b"3012"),
            cvv: None,
        });
        r
    }

    #[test]
    fn fingerprints_are_a_fixed_function_of_the_request() {
        // Pinned: snapshots keep fingerprints across restarts and toolchain upgrades, so the
        // function must never change silently.
        assert_eq!(fingerprint(&request(1_000)), 0xe115_74d8_55f4_2481);
        assert_ne!(fingerprint(&request(1_000)), fingerprint(&request(1_001)));
    }
}
