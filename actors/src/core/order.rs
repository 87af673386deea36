//! An order (one payment at one merchant) and the operations done on it: the records the shard keeps
//! for the state machine and for idempotency.

use bytes::{Bytes, BytesMut};
use paymesh_codecs::body::FieldWriter;
use paymesh_codecs::message::{Message, TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;

use super::route::HostId;
use super::upstream::{Account, OriginalRef, UpstreamKind};

/// Idempotency key of an order: (merchant id, order id), in one allocation of its own. It is never a
/// slice of a session's read buffer: a key kept for the order's life would keep that whole buffer
/// alive, and with it everything else the client sent (card numbers, CVVs).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct OrderKey {
    bytes: Bytes,
    merchant_len: usize,
}

impl OrderKey {
    /// The key of `order_id` at `merchant_id` (both copied).
    pub fn new(merchant_id: &[u8], order_id: &[u8]) -> OrderKey {
        let mut bytes = Vec::with_capacity(merchant_id.len() + order_id.len());
        bytes.extend_from_slice(merchant_id);
        bytes.extend_from_slice(order_id);
        OrderKey {
            bytes: Bytes::from(bytes),
            merchant_len: merchant_id.len(),
        }
    }

    /// The merchant id (shares the key's allocation).
    pub fn merchant(&self) -> Bytes {
        self.bytes.slice(..self.merchant_len)
    }

    /// The order id (shares the key's allocation).
    pub fn order_id(&self) -> Bytes {
        self.bytes.slice(self.merchant_len..)
    }

    /// The merchant id, borrowed.
    pub fn merchant_bytes(&self) -> &[u8] {
        self.bytes.get(..self.merchant_len).unwrap_or_default()
    }

    /// The order id, borrowed.
    pub fn order_id_bytes(&self) -> &[u8] {
        self.bytes.get(self.merchant_len..).unwrap_or_default()
    }

    /// Whether this is the key of (`merchant_id`, `order_id`).
    pub fn is(&self, merchant_id: &[u8], order_id: &[u8]) -> bool {
        self.merchant_bytes() == merchant_id && self.order_id_bytes() == order_id
    }
}

impl std::fmt::Debug for OrderKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "({:?}, {:?})",
            String::from_utf8_lossy(self.merchant_bytes()),
            String::from_utf8_lossy(self.order_id_bytes())
        )
    }
}

/// A hash of (`merchant_id`, `order_id`) that never changes between builds or restarts (FNV-1a
/// over length-prefixed fields): keys of orders evicted from the window are remembered by it, in
/// memory and in snapshots.
pub fn stable_key_hash(merchant_id: &[u8], order_id: &[u8]) -> u64 {
    let mut h = Fnv::new();
    h.field(merchant_id);
    h.field(order_id);
    h.0
}

/// FNV-1a, 64 bits: a fixed function, for hashes kept in snapshots and journals.
pub(crate) struct Fnv(pub(crate) u64);

impl Fnv {
    pub(crate) fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    pub(crate) fn bytes(&mut self, b: &[u8]) {
        for byte in b {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
    /// A variable-length field: its length first, so fields cannot run into each other.
    pub(crate) fn field(&mut self, b: &[u8]) {
        self.bytes(&(b.len() as u64).to_be_bytes());
        self.bytes(b);
    }
    pub(crate) fn opt_u64(&mut self, v: Option<u64>) {
        match v {
            Some(v) => {
                self.bytes(&[1]);
                self.bytes(&v.to_be_bytes());
            }
            None => self.bytes(&[0]),
        }
    }
    pub(crate) fn opt_bytes(&mut self, v: Option<&[u8]>) {
        match v {
            Some(v) => {
                self.bytes(&[1]);
                self.field(v);
            }
            None => self.bytes(&[0]),
        }
    }
}

/// An answer kept for retransmissions, as its encoded body (PROTOCOL.md's TLV fields): about a
/// third of a [`TxnAnswer`]'s size with its fields, in one allocation. Replays decode it.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAnswer(Box<[u8]>);

impl StoredAnswer {
    /// Encodes `answer` for keeping.
    pub fn new(answer: &TxnAnswer) -> StoredAnswer {
        let mut body = BytesMut::with_capacity(256);
        answer.encode_body(&mut FieldWriter::new(&mut body));
        StoredAnswer(Box::from(&body[..]))
    }

    /// From an encoded body (a snapshot's).
    pub fn from_body(body: &[u8]) -> StoredAnswer {
        StoredAnswer(Box::from(body))
    }

    /// The encoded body.
    pub fn body(&self) -> &[u8] {
        &self.0
    }

    /// The answer to a request of `kind`. A body this shard encoded always decodes; one that
    /// does not (a corrupt snapshot) gives INTERNAL_ERROR rather than a made-up answer.
    pub fn answer(&self, kind: TxnKind) -> TxnAnswer {
        let body = Bytes::copy_from_slice(&self.0);
        match Message::decode_body(kind.answer_type(), &body) {
            Ok(Message::Answer(a)) => a,
            _ => TxnAnswer::new(kind, ResultCode::InternalError),
        }
    }
}

impl std::fmt::Debug for StoredAnswer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The body holds a masked card number at most; its length is enough here.
        write!(f, "StoredAnswer({} bytes)", self.0.len())
    }
}

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
    Done(StoredAnswer),
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
