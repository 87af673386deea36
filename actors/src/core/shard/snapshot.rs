//! A shard's state as bytes, for journal checkpoints: every order in the window with its
//! operations and stored answers, the daily totals, the wallet vault and the id sequence. Recovery
//! loads it and replays only the records journaled after it, so start-up time and disk stay
//! bounded however long the router has run.
//!
//! The bytes hold card numbers (for reversals and refunds), so the caller seals them with the
//! journal key ([`crate::core::journal_codec::seal`]) before they reach the disk. Waiters of
//! pending operations are not kept: their answers were given before a crash, or never.
//!
//! Layout (integers big-endian, `bytes` = `u32 length | data`): `format u8 | shard u16 |
//! next_seq u64 | daily count u32 × (merchant bytes, day u64, total u64) | vault count u32 ×
//! (token bytes, account, masked bytes) | order count u32 × order`, orders oldest first (the
//! eviction order). An order: `merchant bytes | order id bytes | txn_id u64 | kind u8 | currency
//! u16 | host u16 (0xFFFF none) | account? | masked? | state u8 | authorized u64 | captured u64 |
//! refunded u64 | refund_in_doubt u64 | approval bytes | sent? | day u64 | received_ms u64 | ops
//! u16 × (kind u8, request id bytes, fingerprint u64, amount u64, status)`, after the times a
//! reversal or capture advice: `0` or `1 | kind u8 (0 reversal, 1 capture) | op_id u64 | attempts u32 | sent_once u8 | 0 (in flight) or 1 | due u64
//! (retry at) or 2 (acknowledged)`; a status is `0 |
//! op_id u64` (pending) or `1 | answer type u8 | answer bytes` (done). Format 2 adds, after
//! the orders, the keys of evicted orders the shard remembers: `count u32 × stable hash u64`,
//! oldest first. Format 3 stores answers as [`StoredAnswer::body`] (a flag byte, then the body
//! without what the order holds); formats 1 and 2 stored whole bodies. Format 4 records who
//! created each order: after `next_seq`, the shard's network numbering (`count u16 × network id
//! bytes`), and in each order, right after its key, the creating network's number `u16`
//! (0xFFFF: not recorded). Orders of formats 1 to 3 load with no recorded creator. Format 4 also
//! binds each vault entry to its merchant (`merchant bytes` after `masked`); an older build's
//! entries are bound to the merchant of the TOKENIZE order that issued them when it is still held.
//! Format 4 adds, at the end, the device counters' anti-replay windows
//! ([`DeviceCounters::encode`]). Format 5 adds what several partial captures and installments
//! need: in each order, after `received_ms`, `installments u8 | capture_closed u8`; in a
//! reversal, after its state, the `amount u64` it names; in each operation, after its amount,
//! `closes u8`, and a pending status is `0 | op_id u64 | received_ms u64`. State code 8 is
//! "failed" (an attempt the issuer never answered, to be attempted again). Orders of formats 1
//! to 4 load as lump-sum payments with capturing not closed, a reversal naming the authorized
//! amount (a capture advice: the captured amount) and pending operations of unknown receipt time.
//! Format 6 adds the terminal id of what was sent (`terminal bytes` at the end of `sent`), the
//! STAN of a reversal or capture advice (`stan u32` after its op id) and, at the very end, the
//! STANs used today ([`StanBook::encode`]); orders of formats 1 to 5 load with no recorded
//! terminal (their follow-ups go from the host's terminal) and their reversals with STAN 0 (the
//! op id's, as those builds sent them), and the shard starts with an empty STAN book.
//! Format 7 binds a vault entry to its customer: `customer bytes` after its merchant (empty:
//! none); entries of older formats are bound to no customer, as their TOKENIZE named none.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use paymesh_codecs::message::TxnKind;
use paymesh_codecs::types::Pan;

use super::stans::StanBook;
use super::{DailyTotal, ShardCore, TXN_SEQ_BITS, VaultEntry};
use crate::core::access::{NETWORK_UNRECORDED, NetworkNames, NetworkNo};
use crate::core::config::CoreSettings;
use crate::core::device::DeviceCounters;
use crate::core::order::{
    OpStatus, Operation, Order, OrderKey, OrderState, Reversal, ReversalState, StoredAnswer,
};
use crate::core::upstream::{Account, OriginalRef, UpstreamKind};
use crate::error::MeshError;

/// Written now. Still read: 1 (before evicted keys were kept), 2 (stored answers whole), 3
/// (before orders recorded their network and the device counters were kept) and 4 (before
/// partial captures and installments) and 5 (before terminal ids and the shards' STAN books).
const SNAPSHOT_FORMAT: u8 = 7;
const NO_HOST: u16 = u16::MAX;

fn put_bytes(out: &mut BytesMut, b: &[u8]) {
    out.put_u32(b.len() as u32);
    out.put_slice(b);
}

fn put_opt_bytes(out: &mut BytesMut, b: Option<&Bytes>) {
    match b {
        Some(b) => {
            out.put_u8(1);
            put_bytes(out, b);
        }
        None => out.put_u8(0),
    }
}

fn put_account(out: &mut BytesMut, account: &Account) {
    match account {
        Account::Card { pan, expiry } => {
            out.put_u8(1);
            put_bytes(out, pan.digits());
            put_bytes(out, expiry);
        }
        Account::Phone { phone, carrier } => {
            out.put_u8(2);
            put_bytes(out, phone);
            put_bytes(out, carrier);
        }
        Account::Bank { bank_code, account } => {
            out.put_u8(3);
            put_bytes(out, bank_code);
            put_bytes(out, account);
        }
    }
}

fn state_code(state: OrderState) -> u8 {
    match state {
        OrderState::Authorizing => 0,
        OrderState::Authorized => 1,
        OrderState::Captured => 2,
        OrderState::Cancelled => 3,
        OrderState::Declined => 4,
        OrderState::InDoubt => 5,
        OrderState::Done => 6,
        OrderState::Reversed => 7,
        OrderState::Failed => 8,
    }
}

fn state_from(code: u8) -> Option<OrderState> {
    Some(match code {
        0 => OrderState::Authorizing,
        1 => OrderState::Authorized,
        2 => OrderState::Captured,
        3 => OrderState::Cancelled,
        4 => OrderState::Declined,
        5 => OrderState::InDoubt,
        6 => OrderState::Done,
        7 => OrderState::Reversed,
        8 => OrderState::Failed,
        _ => return None,
    })
}

/// Appends an order's encoding (the window freezes orders into it, snapshots hold it).
pub(crate) fn encode_order<R>(out: &mut BytesMut, key: &OrderKey, order: &Order<R>) {
    put_bytes(out, key.merchant_bytes());
    put_bytes(out, key.order_id_bytes());
    out.put_u16(order.network);
    // Read without decoding the order: whether eviction must pass it by.
    out.put_u8(u8::from(order.holds_window()));
    out.put_u64(order.txn_id);
    out.put_u8(order.kind.request_type());
    out.put_u16(order.currency);
    out.put_u16(order.host.unwrap_or(NO_HOST));
    match &order.account {
        Some(a) => {
            out.put_u8(1);
            put_account(out, a);
        }
        None => out.put_u8(0),
    }
    put_opt_bytes(out, order.masked_pan.as_ref());
    out.put_u8(state_code(order.state));
    out.put_u64(order.authorized);
    out.put_u64(order.captured);
    out.put_u64(order.refunded);
    out.put_u64(order.refund_in_doubt);
    put_bytes(out, &order.approval_code);
    match &order.sent {
        Some(s) => {
            out.put_u8(1);
            out.put_u16(s.mti);
            out.put_u32(s.stan);
            put_bytes(out, &s.transmitted);
            put_bytes(out, &s.rrn);
            put_bytes(out, &s.terminal);
        }
        None => out.put_u8(0),
    }
    out.put_u64(order.day);
    out.put_u64(order.received_ms);
    out.put_u8(order.installments);
    out.put_u8(u8::from(order.capture_closed));
    match &order.reversal {
        None => out.put_u8(0),
        Some(r) => {
            out.put_u8(1);
            out.put_u8(u8::from(r.kind == UpstreamKind::Capture));
            out.put_u64(r.op_id);
            out.put_u32(r.stan);
            out.put_u32(r.attempts);
            out.put_u8(u8::from(r.sent_once));
            match r.state {
                ReversalState::InFlight => out.put_u8(0),
                ReversalState::RetryAt(due) => {
                    out.put_u8(1);
                    out.put_u64(due);
                }
                ReversalState::Acknowledged => out.put_u8(2),
            }
            out.put_u64(r.amount);
        }
    }
    out.put_u16(order.ops.len() as u16);
    for op in &order.ops {
        out.put_u8(op.kind.request_type());
        put_bytes(out, &op.request_id);
        out.put_u64(op.fingerprint);
        out.put_u64(op.amount);
        out.put_u8(u8::from(op.closes));
        match &op.status {
            OpStatus::Pending {
                op_id, received_ms, ..
            } => {
                out.put_u8(0);
                out.put_u64(*op_id);
                out.put_u64(*received_ms);
            }
            OpStatus::Done(answer) => {
                out.put_u8(1);
                out.put_u8(op.kind.answer_type());
                put_bytes(out, answer.body());
            }
        }
    }
}

/// An order from [`encode_order`]'s bytes (pending operations without waiters).
pub(crate) fn decode_order<R>(bytes: &[u8]) -> Option<(OrderKey, Order<R>)> {
    let mut r = Reader(bytes, Legacy::No);
    let order = r.order()?;
    r.0.is_empty().then_some(order)
}

/// The key at the start of [`encode_order`]'s bytes: (merchant id, order id).
pub(crate) fn encoded_key(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut r = Reader(bytes, Legacy::No);
    Some((r.slice()?, r.slice()?))
}

/// The merchant and creating network at the start of [`encode_order`]'s bytes.
pub(crate) fn encoded_owner(bytes: &[u8]) -> Option<(&[u8], NetworkNo)> {
    let mut r = Reader(bytes, Legacy::No);
    let merchant = r.slice()?;
    r.slice()?;
    Some((merchant, r.u16()?))
}

/// Whether [`encode_order`]'s bytes are of an order that holds the window
/// ([`Order::holds_window`]); unreadable bytes hold it too (never evicted unread).
pub(crate) fn encoded_holds_window(bytes: &[u8]) -> bool {
    let mut r = Reader(bytes, Legacy::No);
    let flag = (|| {
        r.slice()?;
        r.slice()?;
        r.u16()?;
        r.u8()
    })();
    flag != Some(0)
}

/// Bounds-checked reads over the snapshot bytes: `None` means truncated or malformed.
struct Reader<'a>(&'a [u8], Legacy);

/// What an older snapshot format lacks: stored answers are whole bodies (formats 1 and 2), no
/// creating network (1 to 3), no partial captures or installments (1 to 4), no terminal ids,
/// reversal STANs or STAN book (1 to 5), or nothing (the current format). Ordered: each lacks
/// what the later ones lack too.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Legacy {
    WholeAnswers,
    NoNetwork,
    NoCaptures,
    NoTerminals,
    No,
}

impl<'a> Reader<'a> {
    fn u8(&mut self) -> Option<u8> {
        (self.0.remaining() >= 1).then(|| self.0.get_u8())
    }
    fn u16(&mut self) -> Option<u16> {
        (self.0.remaining() >= 2).then(|| self.0.get_u16())
    }
    fn u32(&mut self) -> Option<u32> {
        (self.0.remaining() >= 4).then(|| self.0.get_u32())
    }
    fn u64(&mut self) -> Option<u64> {
        (self.0.remaining() >= 8).then(|| self.0.get_u64())
    }
    fn slice(&mut self) -> Option<&'a [u8]> {
        let len = self.u32()? as usize;
        let data: &'a [u8] = self.0;
        let (head, tail) = (data.get(..len)?, data.get(len..)?);
        self.0 = tail;
        Some(head)
    }
    fn bytes(&mut self) -> Option<Bytes> {
        self.slice().map(Bytes::copy_from_slice)
    }
    fn opt_bytes(&mut self) -> Option<Option<Bytes>> {
        match self.u8()? {
            0 => Some(None),
            1 => Some(Some(self.bytes()?)),
            _ => None,
        }
    }
    fn kind(&mut self) -> Option<TxnKind> {
        TxnKind::from_request_type(self.u8()?)
    }
    fn account(&mut self) -> Option<Account> {
        Some(match self.u8()? {
            1 => Account::Card {
                pan: Pan::new(self.bytes()?)?,
                expiry: self.bytes()?,
            },
            2 => Account::Phone {
                phone: self.bytes()?,
                carrier: self.bytes()?,
            },
            3 => Account::Bank {
                bank_code: self.bytes()?,
                account: self.bytes()?,
            },
            _ => return None,
        })
    }
    /// A stored answer to an operation of `kind` (the seal already vouches for its bytes).
    fn answer(&mut self, kind: TxnKind) -> Option<StoredAnswer> {
        if self.u8()? != kind.answer_type() {
            return None;
        }
        let body = self.slice()?;
        Some(match self.1 {
            Legacy::WholeAnswers => StoredAnswer::from_whole_body(body),
            Legacy::NoNetwork | Legacy::NoCaptures | Legacy::NoTerminals | Legacy::No => {
                StoredAnswer::from_body(body)
            }
        })
    }
    fn order<R>(&mut self) -> Option<(OrderKey, Order<R>)> {
        let merchant = self.slice()?;
        let key = OrderKey::new(merchant, self.slice()?);
        let terminals = self.1 == Legacy::No;
        let network = match self.1 {
            Legacy::NoCaptures | Legacy::NoTerminals | Legacy::No => {
                let network = self.u16()?;
                self.u8()?;
                network
            }
            Legacy::WholeAnswers | Legacy::NoNetwork => NETWORK_UNRECORDED,
        };
        let captures = self.1 >= Legacy::NoTerminals;
        let txn_id = self.u64()?;
        let kind = self.kind()?;
        let currency = self.u16()?;
        let host = Some(self.u16()?).filter(|h| *h != NO_HOST);
        let account = match self.u8()? {
            0 => None,
            1 => Some(self.account()?),
            _ => return None,
        };
        let masked_pan = self.opt_bytes()?;
        let state = state_from(self.u8()?)?;
        let (authorized, captured) = (self.u64()?, self.u64()?);
        let (refunded, refund_in_doubt) = (self.u64()?, self.u64()?);
        let approval_code = self.bytes()?;
        let sent = match self.u8()? {
            0 => None,
            1 => Some(OriginalRef {
                mti: self.u16()?,
                stan: self.u32()?,
                transmitted: self.bytes()?,
                rrn: self.bytes()?,
                terminal: match terminals {
                    true => self.bytes()?,
                    false => Bytes::new(),
                },
            }),
            _ => return None,
        };
        let (day, received_ms) = (self.u64()?, self.u64()?);
        let (installments, capture_closed) = match captures {
            true => (self.u8()?, self.u8()? == 1),
            false => (0, false),
        };
        let reversal = match self.u8()? {
            0 => None,
            1 => {
                let kind = match self.u8()? {
                    0 => UpstreamKind::Reversal,
                    1 => UpstreamKind::Capture,
                    _ => return None,
                };
                let op_id = self.u64()?;
                let stan = match terminals {
                    true => self.u32()?,
                    false => 0,
                };
                let attempts = self.u32()?;
                let sent_once = self.u8()? == 1;
                let state = match self.u8()? {
                    0 => ReversalState::InFlight,
                    1 => ReversalState::RetryAt(self.u64()?),
                    2 => ReversalState::Acknowledged,
                    _ => return None,
                };
                let amount = match (captures, kind) {
                    (true, _) => self.u64()?,
                    (false, UpstreamKind::Capture) => captured,
                    (false, _) => authorized,
                };
                Some(Reversal {
                    kind,
                    op_id,
                    stan,
                    amount,
                    attempts,
                    sent_once,
                    state,
                })
            }
            _ => return None,
        };
        let count = self.u16()?;
        let mut ops = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let kind = self.kind()?;
            let request_id = self.bytes()?;
            let (fingerprint, amount) = (self.u64()?, self.u64()?);
            let closes = captures && self.u8()? == 1;
            let status = match self.u8()? {
                0 => OpStatus::Pending {
                    op_id: self.u64()?,
                    waiters: Vec::new(),
                    received_ms: if captures { self.u64()? } else { 0 },
                },
                1 => OpStatus::Done(self.answer(kind)?),
                _ => return None,
            };
            ops.push(Operation {
                kind,
                request_id,
                fingerprint,
                amount,
                closes,
                status,
            });
        }
        let order = Order {
            txn_id,
            kind,
            network,
            currency,
            host,
            account,
            masked_pan,
            state,
            authorized,
            captured,
            refunded,
            refund_in_doubt,
            capture_closed,
            installments,
            approval_code,
            sent,
            day,
            received_ms,
            ops,
            reversal,
        };
        Some((key, order))
    }
}

impl<R: Clone> ShardCore<R> {
    /// The shard's state as bytes (clear text: seal it before writing it anywhere).
    pub fn encode_snapshot(&self) -> Bytes {
        let mut out =
            // Sized so that it never grows (a copy of hundreds of MB) while the shard waits.
            BytesMut::with_capacity(
                1_024
                    + self.orders.encoded_len_estimate()
                    + self.orders.evicted_len() * 8
                    + self.daily.len() * 64
                    + self.vault.len() * 128
                    + self.devices.encoded_len_estimate(),
            );
        out.put_u8(SNAPSHOT_FORMAT);
        out.put_u16(self.shard);
        out.put_u64(self.next_seq);
        let networks = self.networks.names();
        out.put_u16(networks.len() as u16);
        for name in networks {
            put_bytes(&mut out, name);
        }
        out.put_u32(self.daily.len() as u32);
        for (merchant, d) in &self.daily {
            put_bytes(&mut out, merchant);
            out.put_u64(d.day);
            out.put_u64(d.total);
        }
        out.put_u32(self.vault.len() as u32);
        for (token, v) in &self.vault {
            put_bytes(&mut out, token);
            put_account(&mut out, &v.account);
            put_bytes(&mut out, &v.masked);
            put_bytes(&mut out, &v.merchant);
            // Empty: bound to no customer (a `customer_ref` is never empty).
            put_bytes(&mut out, v.customer.as_deref().unwrap_or_default());
        }
        // Oldest first (the eviction order).
        self.orders.encode_all(&mut out);
        out.put_u32(self.orders.evicted_len() as u32);
        for hash in self.orders.evicted_keys() {
            out.put_u64(hash);
        }
        self.devices.encode(&mut out);
        self.stans.encode(&mut out);
        out.freeze()
    }

    /// Rebuilds a shard from [`ShardCore::encode_snapshot`]'s bytes.
    pub fn decode_snapshot(settings: Arc<CoreSettings>, bytes: &[u8]) -> Result<Self, MeshError> {
        if let Some(&found) = bytes.first().filter(|f| **f > SNAPSHOT_FORMAT) {
            return Err(MeshError::NewerFormat {
                what: "shard snapshot",
                found: u16::from(found),
                known: u16::from(SNAPSHOT_FORMAT),
            });
        }
        Self::decode_inner(settings, bytes)
            .ok_or_else(|| MeshError::Journal("malformed shard snapshot".into()))
    }

    fn decode_inner(settings: Arc<CoreSettings>, bytes: &[u8]) -> Option<Self> {
        let mut r = Reader(bytes, Legacy::No);
        let format = r.u8()?;
        r.1 = match format {
            1 | 2 => Legacy::WholeAnswers,
            3 => Legacy::NoNetwork,
            4 => Legacy::NoCaptures,
            5 => Legacy::NoTerminals,
            6 | SNAPSHOT_FORMAT => Legacy::No,
            _ => return None,
        };
        let shard = r.u16()?;
        let next_seq = r.u64()? & ((1 << TXN_SEQ_BITS) - 1);
        let mut networks = Vec::new();
        if format >= 4 {
            for _ in 0..r.u16()? {
                networks.push(r.bytes()?);
            }
        }
        let networks = NetworkNames::from_names(networks)?;
        let mut daily = super::HashMap::default();
        for _ in 0..r.u32()? {
            let merchant = r.bytes()?;
            let total = DailyTotal {
                day: r.u64()?,
                total: r.u64()?,
            };
            daily.insert(merchant, total);
        }
        let mut vault = super::HashMap::default();
        for _ in 0..r.u32()? {
            let token = r.bytes()?;
            let (account, masked) = (r.account()?, r.bytes()?);
            // An older build's entry names no merchant: the TOKENIZE order that issued the
            // token does (found once the orders are loaded, below).
            let merchant = if format >= 4 {
                r.bytes()?
            } else {
                Bytes::new()
            };
            // Formats before 7 had no customer binding: their tokens are bound to none.
            let customer = if format >= 7 {
                Some(r.bytes()?).filter(|c| !c.is_empty())
            } else {
                None
            };
            let entry = VaultEntry {
                account,
                masked,
                merchant,
                customer,
            };
            vault.insert(token, entry);
        }
        let count = r.u32()? as usize;
        let mut core = ShardCore::new(shard, settings, 0);
        core.next_seq = next_seq;
        core.networks = networks;
        core.daily = daily;
        core.vault = vault;
        core.orders.reserve(count);
        for _ in 0..count {
            let start = r.0;
            let (key, order) = r.order::<R>()?;
            let encoded = start.get(..start.len() - r.0.len())?;
            let txn_id = order.txn_id;
            for op in &order.ops {
                if let OpStatus::Pending { op_id, .. } = op.status {
                    core.by_op_id.insert(op_id, txn_id);
                }
            }
            if let Some(r) = order.reversal.filter(|r| r.pending()) {
                core.by_op_id.insert(r.op_id, txn_id);
                core.forwards_pending += 1;
                if let Some(host) = order.host {
                    core.reversal_deltas.push((host, 1));
                }
                if let ReversalState::RetryAt(due) = r.state {
                    core.reversal_due.insert((due, r.op_id), txn_id);
                }
            }
            if core
                .orders
                .find(key.merchant_bytes(), key.order_id_bytes())
                .is_some()
            {
                return None;
            }
            // Orders with nothing pending come back frozen, as they were encoded; the newest
            // thaw when a request touches them.
            // (An older format's bytes are not what the window decodes: those come back hot.)
            if order.pinned() || r.1 != Legacy::No {
                core.orders.insert(key, order);
            } else {
                core.orders.insert_frozen(txn_id, &key, encoded);
            }
        }
        if format < 4 {
            core.bind_legacy_tokens();
        }
        core.recount_open();
        if format >= 2 {
            let keys_max = core.settings.evicted_keys_per_shard_max;
            for _ in 0..r.u32()? {
                let hash = r.u64()?;
                core.orders.remember_evicted(hash, keys_max);
            }
        }
        if format >= 4 {
            core.devices = DeviceCounters::decode(&mut r.0)?;
        }
        if format >= 6 {
            let who = (core.shard, core.shards);
            core.stans = StanBook::decode(&mut r.0, &core.settings, who)?;
        }
        r.0.is_empty().then_some(core)
    }
}
