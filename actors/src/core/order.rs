//! An order (one payment at one merchant) and the operations done on it: the records the shard keeps
//! for the state machine and for idempotency.

use bytes::{Bytes, BytesMut};
use paymesh_codecs::body::FieldWriter;
use paymesh_codecs::message::{Message, TxnAnswer, TxnKind};
use paymesh_codecs::types::ResultCode;

use super::access::NetworkNo;
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

/// An answer kept for retransmissions, as its encoded body (PROTOCOL.md's TLV fields) in one
/// allocation, without what it shares with its order (key, transaction id, currency, masked card
/// number, approval code: a flag byte first says which were left out). Replays decode it and put
/// those back from the order.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredAnswer(Box<[u8]>);

/// What an order's stored answers share with it (borrowed field by field, so that its operations
/// can be borrowed for change at the same time).
#[derive(Debug, Clone, Copy)]
pub struct Shared<'a> {
    /// The order's key.
    pub key: &'a OrderKey,
    /// Its server transaction id.
    pub txn_id: u64,
    /// Its currency.
    pub currency: u16,
    /// Its masked card number.
    pub masked_pan: &'a Option<Bytes>,
    /// Its approval code (empty: none).
    pub approval_code: &'a Bytes,
}

/// What `$order` (an `Order`) under `$key` shares with its stored answers.
#[macro_export]
macro_rules! shared_of {
    ($key:expr, $order:expr) => {
        $crate::core::order::Shared {
            key: $key,
            txn_id: $order.txn_id,
            currency: $order.currency,
            masked_pan: &$order.masked_pan,
            approval_code: &$order.approval_code,
        }
    };
}

/// Fields of a stored answer left out because the order holds the same.
mod shared {
    pub const KEY: u8 = 1;
    pub const TXN_ID: u8 = 2;
    pub const CURRENCY: u8 = 4;
    pub const MASKED_PAN: u8 = 8;
    pub const APPROVAL_CODE: u8 = 16;
}

impl StoredAnswer {
    /// Encodes `answer`, given on `order` (under `key`), for keeping.
    pub fn new(answer: &TxnAnswer, order: &Shared<'_>) -> StoredAnswer {
        let key = order.key;
        let mut a = answer.clone();
        let mut flags = 0;
        if a.merchant_id.as_deref() == Some(key.merchant_bytes())
            && a.order_id.as_deref() == Some(key.order_id_bytes())
        {
            (a.merchant_id, a.order_id) = (None, None);
            flags |= shared::KEY;
        }
        if a.server_txn_id == Some(order.txn_id) {
            a.server_txn_id = None;
            flags |= shared::TXN_ID;
        }
        if a.currency == Some(order.currency) {
            a.currency = None;
            flags |= shared::CURRENCY;
        }
        if a.masked_pan.is_some() && a.masked_pan == *order.masked_pan {
            a.masked_pan = None;
            flags |= shared::MASKED_PAN;
        }
        if a.approval_code.as_deref() == Some(&order.approval_code[..])
            && !order.approval_code.is_empty()
        {
            a.approval_code = None;
            flags |= shared::APPROVAL_CODE;
        }
        let mut body = BytesMut::with_capacity(192);
        body.extend_from_slice(&[flags]);
        a.encode_body(&mut FieldWriter::new(&mut body));
        StoredAnswer(Box::from(&body[..]))
    }

    /// From [`StoredAnswer::body`]'s bytes (a snapshot's).
    pub fn from_body(body: &[u8]) -> StoredAnswer {
        StoredAnswer(Box::from(body))
    }

    /// From a whole answer body with nothing left out (snapshots before format 3).
    pub fn from_whole_body(tlv: &[u8]) -> StoredAnswer {
        let mut body = Vec::with_capacity(tlv.len() + 1);
        body.push(0);
        body.extend_from_slice(tlv);
        StoredAnswer(body.into_boxed_slice())
    }

    /// The stored bytes: the flag byte, then the body.
    pub fn body(&self) -> &[u8] {
        &self.0
    }

    /// The answer to a request of `kind` on `order` (under `key`). A body this shard encoded
    /// always decodes; one that does not gives INTERNAL_ERROR rather than a made-up answer.
    pub fn answer(&self, kind: TxnKind, order: &Shared<'_>) -> TxnAnswer {
        let key = order.key;
        let Some((&flags, tlv)) = self.0.split_first() else {
            return TxnAnswer::new(kind, ResultCode::InternalError);
        };
        let body = Bytes::copy_from_slice(tlv);
        let mut a = match Message::decode_body(kind.answer_type(), &body) {
            Ok(Message::Answer(a)) => a,
            _ => return TxnAnswer::new(kind, ResultCode::InternalError),
        };
        if flags & shared::KEY != 0 {
            (a.merchant_id, a.order_id) = (Some(key.merchant()), Some(key.order_id()));
        }
        if flags & shared::TXN_ID != 0 {
            a.server_txn_id = Some(order.txn_id);
        }
        if flags & shared::CURRENCY != 0 {
            a.currency = Some(order.currency);
        }
        if flags & shared::MASKED_PAN != 0 {
            a.masked_pan.clone_from(order.masked_pan);
        }
        if flags & shared::APPROVAL_CODE != 0 {
            a.approval_code = Some(order.approval_code.clone());
        }
        a
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
    /// Not authorized, nothing charged: never sent (no link, breaker open, pool full) or the host
    /// answered that the issuer is unavailable. The same request again is attempted again,
    /// under the same transaction id.
    Failed,
}

/// State code sent to clients in the `state` answer field (PROTOCOL.md); `None` for what is
/// not a payment (a TOKENIZE's or BALANCE_INQUIRY's record): their answers carry no state.
pub fn wire_state(order: &Order<impl Sized>) -> Option<u8> {
    Some(match order.state {
        OrderState::Authorizing => 0,
        OrderState::Authorized => 1,
        OrderState::Captured if order.refunded > 0 && order.refunded >= order.captured => 5,
        OrderState::Captured if order.refunded > 0 => 6,
        OrderState::Captured if order.capture_open() => 3,
        OrderState::Captured => 2,
        OrderState::Cancelled => 4,
        OrderState::Declined => 7,
        OrderState::InDoubt => 8,
        OrderState::Failed => 9,
        OrderState::Reversed => 10,
        OrderState::Done => return None,
    })
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
    /// Its STAN (field 11), the same for every attempt, on the original's terminal; 0 for an
    /// older build's reversal (which used [`crate::core::upstream::stan_for`]).
    pub stan: u32,
    /// The amount it names: the authorized amount (a reversal), or the one capture it advises.
    pub amount: u64,
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
        /// When the request was received, unix ms (0: not known, an older snapshot's).
        received_ms: u64,
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
    /// A capture that closes capturing: the final flag, or all that was left.
    pub closes: bool,
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
    /// The network that created it, numbered by its shard (see [`crate::core::access`]).
    pub network: NetworkNo,
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
    /// A final capture was made: nothing more may be captured (the rest is released).
    pub capture_closed: bool,
    /// Installment months (0: lump sum), as authorized.
    pub installments: u8,
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

    /// Whether the order must stay in the window: something is unfinished, or it is an open
    /// authorization (its capture or cancel is still to come) or in doubt. Completed orders leave
    /// the window first; these never leave it (a full window of them refuses new orders BUSY).
    pub fn holds_window(&self) -> bool {
        self.pinned()
            || matches!(
                self.state,
                OrderState::Authorizing | OrderState::Authorized | OrderState::InDoubt
            )
    }

    /// Whether another CAPTURE may come: authorized and nothing captured, or partly captured
    /// with no final capture and no refund yet (a refund closes capturing).
    pub fn capture_open(&self) -> bool {
        match self.state {
            OrderState::Authorized => true,
            OrderState::Captured => {
                !self.capture_closed
                    && self.refunded == 0
                    && self.refund_in_doubt == 0
                    && self.captured < self.authorized
            }
            _ => false,
        }
    }

    /// What is authorized and not captured yet.
    pub fn capturable(&self) -> u64 {
        self.authorized.saturating_sub(self.captured)
    }

    /// Amount that can still be refunded.
    pub fn refundable(&self) -> u64 {
        self.captured
            .saturating_sub(self.refunded)
            .saturating_sub(self.refund_in_doubt)
    }

    /// Finds an operation by its idempotency key.
    pub fn op_mut(&mut self, kind: TxnKind, request_id: &[u8]) -> Option<&mut Operation<R>> {
        find_op(&mut self.ops, kind, request_id)
    }
}

/// [`Order::op_mut`] over the operations alone (so the order's other fields stay borrowable).
pub fn find_op<'a, R>(
    ops: &'a mut [Operation<R>],
    kind: TxnKind,
    request_id: &[u8],
) -> Option<&'a mut Operation<R>> {
    ops.iter_mut()
        .find(|op| op.kind == kind && op.request_id == request_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(masked: Option<&'static [u8]>, approval: &'static [u8]) -> Order<u32> {
        Order {
            txn_id: 77,
            kind: TxnKind::Authorize,
            network: 0,
            currency: 410,
            host: Some(0),
            account: None,
            masked_pan: masked.map(Bytes::from_static),
            state: OrderState::Authorized,
            authorized: 5_000,
            captured: 0,
            refunded: 0,
            refund_in_doubt: 0,
            capture_closed: false,
            installments: 0,
            approval_code: Bytes::from_static(approval),
            sent: None,
            day: 1,
            received_ms: 1,
            ops: Vec::new(),
            reversal: None,
        }
    }

    fn answer(merchant: &'static [u8], txn_id: u64, currency: u16) -> TxnAnswer {
        let mut a = TxnAnswer::new(TxnKind::Authorize, ResultCode::Approved);
        a.merchant_id = Some(Bytes::from_static(merchant));
        a.order_id = Some(Bytes::from_static(b"O1"));
        a.server_txn_id = Some(txn_id);
        a.currency = Some(currency);
        a.amount = Some(5_000);
        a.masked_pan = Some(Bytes::from_static(b"411111******1111"));
        a.approval_code = Some(Bytes::from_static(b"A1B2C3"));
        a.rrn = Some(Bytes::from_static(b"633021000007"));
        a.state = Some(1);
        a
    }

    #[test]
    fn a_stored_answer_leaves_out_what_its_order_holds_and_comes_back_whole() {
        let key = OrderKey::new(b"M1", b"O1");
        let o = order(Some(b"411111******1111"), b"A1B2C3");
        let shared = Shared {
            key: &key,
            txn_id: o.txn_id,
            currency: o.currency,
            masked_pan: &o.masked_pan,
            approval_code: &o.approval_code,
        };
        let a = answer(b"M1", 77, 410);
        let stored = StoredAnswer::new(&a, &shared);
        let mut whole = BytesMut::new();
        a.encode_body(&mut FieldWriter::new(&mut whole));
        assert!(
            stored.body().len() + 30 < whole.len(),
            "{} stored vs {} whole",
            stored.body().len(),
            whole.len()
        );
        assert_eq!(stored.answer(TxnKind::Authorize, &shared), a);
        // Fields that differ from the order's are kept as they were.
        let other = answer(b"M2", 78, 840);
        let stored = StoredAnswer::new(&other, &shared);
        assert_eq!(stored.answer(TxnKind::Authorize, &shared), other);
        // So are absent ones: an answer without approval code or masked card number.
        let mut bare = answer(b"M1", 77, 410);
        bare.approval_code = None;
        bare.masked_pan = None;
        let stored = StoredAnswer::new(&bare, &shared);
        assert_eq!(stored.answer(TxnKind::Authorize, &shared), bare);
        // A whole body from an older snapshot reads the same.
        let legacy = StoredAnswer::from_whole_body(&whole);
        assert_eq!(legacy.answer(TxnKind::Authorize, &shared), a);
    }
}
