//! An order (one payment at one merchant) and the operations done on it: the records the shard keeps
//! for the state machine and for idempotency.

use bytes::Bytes;
use paymesh_codecs::message::{TxnAnswer, TxnKind};

use super::route::HostId;
use super::upstream::{Account, OriginalRef, UpstreamKind};

/// Idempotency key of an order: (merchant id, order id).
pub type OrderKey = (Bytes, Bytes);

/// Where an order stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderState {
    /// The authorization (or sale) is with the upstream host.
    Authorizing,
    /// Authorized, nothing captured yet.
    Authorized,
    /// Captured (fully or partially); refunds may follow.
    Captured,
    /// Cancelled (voided) before settlement.
    Cancelled,
    /// Declined by the host.
    Declined,
    /// Sent upstream, no answer in time: outcome unknown until reversed or resolved.
    InDoubt,
    /// A local record only (tokenize, balance inquiry).
    Done,
    /// Was in doubt; the host acknowledged its reversal: nothing is charged.
    Reversed,
}

/// State code sent to clients in the `state` answer field (PROTOCOL.md).
pub fn wire_state(order: &Order<impl Sized>) -> u8 {
    match order.state {
        OrderState::Authorizing => 0,
        OrderState::Authorized => 1,
        OrderState::Captured if order.refunded > 0 && order.refunded >= order.captured => 5,
        OrderState::Captured if order.refunded > 0 => 6,
        OrderState::Captured if order.captured < order.authorized => 3,
        OrderState::Captured => 2,
        OrderState::Cancelled => 4,
        OrderState::Declined => 7,
        OrderState::InDoubt => 8,
        OrderState::Done => 9,
        OrderState::Reversed => 10,
    }
}

/// Where an automatic reversal stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReversalState {
    /// Sent; waiting for the host's answer.
    InFlight,
    /// Not acknowledged yet: sent again (0401) at this time, unix ms.
    RetryAt(u64),
    /// The host answered it: done.
    Acknowledged,
}

/// The store-and-forward reversal of an authorization whose outcome is unknown (timed out, in doubt
/// at recovery) or of a client's cancel whose reversal got no answer: repeated until the host
/// that had the original acknowledges it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reversal {
    /// The message: a reversal, or a capture's completion advice (hosts taking captures online).
    pub kind: UpstreamKind,
    /// Upstream op id, the same for every attempt.
    pub op_id: u64,
    /// Attempts sent so far.
    pub attempts: u32,
    /// Whether an attempt may have reached the host (later ones are repeats, 0401).
    pub sent_once: bool,
    /// Progress.
    pub state: ReversalState,
}

impl Reversal {
    /// Whether the host has not acknowledged it yet.
    pub fn pending(&self) -> bool {
        self.state != ReversalState::Acknowledged
    }
}

/// Progress of one operation.
#[derive(Debug)]
pub enum OpStatus<R> {
    /// Waiting for the upstream host; retransmissions of the same request wait here too.
    Pending {
        /// Upstream op id.
        op_id: u64,
        /// Who to answer when it completes: the original requester, then retransmitters.
        waiters: Vec<R>,
    },
    /// Answered: retransmissions get this answer again.
    Done(Box<TxnAnswer>),
}

/// One operation on an order, identified by (kind, request id).
#[derive(Debug)]
pub struct Operation<R> {
    /// Message type.
    pub kind: TxnKind,
    /// Client's request id (empty when the kind needs none).
    pub request_id: Bytes,
    /// Hash of the request's content: same key + other content = DUPLICATE_ORDER.
    pub fingerprint: u64,
    /// Amount this operation moves (for refunds and captures).
    pub amount: u64,
    /// Progress.
    pub status: OpStatus<R>,
}

/// One payment at one merchant.
#[derive(Debug)]
pub struct Order<R> {
    /// Server transaction id.
    pub txn_id: u64,
    /// The kind that created it (authorize, sale, tokenize, balance inquiry).
    pub kind: TxnKind,
    /// Currency, ISO 4217 numeric.
    pub currency: u16,
    /// The host that authorized it (reversals and refunds go there too).
    pub host: Option<HostId>,
    /// The account, kept in memory for reversals and refunds (masked in Debug).
    pub account: Option<Account>,
    /// Masked PAN for answers.
    pub masked_pan: Option<Bytes>,
    /// Where the order stands.
    pub state: OrderState,
    /// Authorized amount.
    pub authorized: u64,
    /// Captured amount.
    pub captured: u64,
    /// Refunded amount (acknowledged).
    pub refunded: u64,
    /// Refunds whose outcome is unknown: blocked from being refunded again.
    pub refund_in_doubt: u64,
    /// Approval code from the host.
    pub approval_code: Bytes,
    /// The authorization message as sent, for reversals.
    pub sent: Option<OriginalRef>,
    /// Business day of the authorization (daily limit accounting).
    pub day: u64,
    /// When the order was created, unix ms.
    pub received_ms: u64,
    /// Operations on the order, the creating one first.
    pub ops: Vec<Operation<R>>,
    /// The automatic reversal, once one was needed.
    pub reversal: Option<Reversal>,
}

impl<R> Order<R> {
    /// Whether some operation is still waiting for the host.
    pub fn busy(&self) -> bool {
        self.ops
            .iter()
            .any(|op| matches!(op.status, OpStatus::Pending { .. }))
    }

    /// Whether the order must stay in memory: an operation or a reversal is unfinished.
    pub fn pinned(&self) -> bool {
        self.busy() || self.reversal.is_some_and(|r| r.pending())
    }

    /// Amount that can still be refunded.
    pub fn refundable(&self) -> u64 {
        self.captured
            .saturating_sub(self.refunded)
            .saturating_sub(self.refund_in_doubt)
    }

    /// Finds an operation by its idempotency key.
    pub fn op_mut(&mut self, kind: TxnKind, request_id: &[u8]) -> Option<&mut Operation<R>> {
        self.ops
            .iter_mut()
            .find(|op| op.kind == kind && op.request_id == request_id)
    }
}
