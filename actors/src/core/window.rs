//! The shard's window of orders: every order it keeps in memory, oldest first, bounded by count,
//! and the keys of orders evicted from it.
//!
//! Memory per order is what bounds a router's resident set, so the layout is lean. The newest
//! orders (at most `orders_hot_per_shard_max`, plus any with something pending) are **hot**: boxed
//! with their key (a copy, never a slice of a read buffer), ready to change. Older ones are
//! **frozen**: kept as their snapshot encoding (`shard/snapshot.rs`), about half the size, and
//! thawed back into a hot box when a request touches them again. Orders are found by server
//! transaction id (a map of ids to entries) or by key (a table of ids hashed by key, 8 bytes a
//! slot, compared through the entry); `age` lists ids oldest first for eviction.
//! `benches/benches/order_memory.rs` measures what an order costs.
//!
//! Past `orders_per_shard_max`, the oldest completed orders leave the window: an order with
//! something pending, an open authorization (its capture or cancel still to come) or one in doubt
//! stays, and a window full of those refuses new orders BUSY instead. Evicted orders' keys
//! stay, as a 64-bit stable hash (about 19 bytes each with the table), in two generations of at
//! most half of `evicted_keys_per_shard_max` each: when the newer one is full, the older one is
//! dropped and the newer one takes its place. So the newest half of that many evicted keys at
//! least, and at most all of them, are remembered: a request that would create an order under such
//! a key again is refused as a duplicate instead of being sent to the host a second time. Older
//! than that, a key is forgotten.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use bytes::{BufMut, BytesMut};
use hashbrown::HashTable;

use super::access::NetworkNo;
use super::order::{Order, OrderKey, stable_key_hash};
use super::shard::snapshot::{
    decode_order, encode_order, encoded_holds_window, encoded_key, encoded_owner,
};

/// Orders one eviction looks at before giving up: bounds the work a request does when the
/// window is full of orders that must stay.
pub const EVICT_SCAN_MAX: usize = 256;

type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
type HashSet<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

/// An order with its key.
#[derive(Debug)]
pub struct Slot<R> {
    /// Its idempotency key.
    pub key: OrderKey,
    /// The order.
    pub order: Order<R>,
}

/// An order as the window holds it.
enum Entry<R> {
    Hot(Box<Slot<R>>),
    /// The snapshot encoding of an order with nothing pending.
    Frozen(Box<[u8]>),
}

/// The orders of one shard, and the keys of the ones it evicted.
pub struct OrderWindow<R> {
    slots: HashMap<u64, Entry<R>>,
    /// Hot orders held.
    hot: usize,
    /// Bytes of frozen orders held.
    frozen_bytes: usize,
    /// Transaction ids, hashed by their order's key.
    by_key: HashTable<u64>,
    /// Transaction ids, oldest first; ids of removed orders are skipped (and compacted away).
    age: VecDeque<u64>,
    /// Ids of hot orders, the longest hot first (may hold ids no longer hot: skipped).
    hot_age: VecDeque<u64>,
    hasher: foldhash::fast::RandomState,
    /// Stable hashes of evicted keys: the newer generation, and the older one.
    evicted: HashSet<u64>,
    evicted_older: HashSet<u64>,
    /// Reused for freezing.
    scratch: BytesMut,
}

impl<R> std::fmt::Debug for OrderWindow<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderWindow")
            .field("orders", &self.slots.len())
            .field("hot", &self.hot)
            .field("evicted_keys", &self.evicted_len())
            .finish()
    }
}

impl<R> Default for OrderWindow<R> {
    fn default() -> Self {
        Self {
            slots: HashMap::default(),
            hot: 0,
            frozen_bytes: 0,
            by_key: HashTable::new(),
            age: VecDeque::new(),
            hot_age: VecDeque::new(),
            hasher: foldhash::fast::RandomState::default(),
            evicted: HashSet::default(),
            evicted_older: HashSet::default(),
            scratch: BytesMut::new(),
        }
    }
}

fn key_hash(hasher: &foldhash::fast::RandomState, merchant_id: &[u8], order_id: &[u8]) -> u64 {
    let mut h = hasher.build_hasher();
    h.write_usize(merchant_id.len());
    h.write(merchant_id);
    h.write(order_id);
    h.finish()
}

/// The `by_key` hash of the order with transaction id `txn` (for rehashing the table).
fn hash_of<R>(
    slots: &HashMap<u64, Entry<R>>,
    hasher: &foldhash::fast::RandomState,
    txn: u64,
) -> u64 {
    slots
        .get(&txn)
        .and_then(Entry::key)
        .map_or(0, |(m, o)| key_hash(hasher, m, o))
}

impl<R> Entry<R> {
    /// The key, borrowed (a frozen order's is at the start of its encoding).
    fn key(&self) -> Option<(&[u8], &[u8])> {
        match self {
            Entry::Hot(s) => Some((s.key.merchant_bytes(), s.key.order_id_bytes())),
            Entry::Frozen(b) => encoded_key(b),
        }
    }
}

impl<R> OrderWindow<R> {
    /// Orders held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no order is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Hot orders held (the others are frozen).
    pub fn hot_len(&self) -> usize {
        self.hot
    }

    /// Bytes a snapshot of the orders takes, about (frozen ones exactly, hot ones estimated).
    pub fn encoded_len_estimate(&self) -> usize {
        self.frozen_bytes + self.hot * 640
    }

    /// Keys of evicted orders remembered.
    pub fn evicted_len(&self) -> usize {
        self.evicted.len() + self.evicted_older.len()
    }

    /// Room for `n` more orders without growing.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        let Self {
            slots,
            by_key,
            hasher,
            ..
        } = self;
        by_key.reserve(n, |t| hash_of(slots, hasher, *t));
        self.age.reserve(n);
    }

    /// The transaction id of the order under (`merchant_id`, `order_id`).
    pub fn find(&self, merchant_id: &[u8], order_id: &[u8]) -> Option<u64> {
        let hash = key_hash(&self.hasher, merchant_id, order_id);
        let slots = &self.slots;
        self.by_key
            .find(hash, |txn| {
                slots
                    .get(txn)
                    .and_then(Entry::key)
                    .is_some_and(|k| k == (merchant_id, order_id))
            })
            .copied()
    }

    /// The merchant and creating network of the order with transaction id `txn_id`, without
    /// thawing it.
    pub fn owner(&self, txn_id: u64) -> Option<(&[u8], NetworkNo)> {
        match self.slots.get(&txn_id)? {
            Entry::Hot(s) => Some((s.key.merchant_bytes(), s.order.network)),
            Entry::Frozen(b) => encoded_owner(b),
        }
    }

    /// The creating network of the order with transaction id `txn_id`, and whether the order
    /// holds the window ([`Order::holds_window`]), without thawing it.
    pub fn holding(&self, txn_id: u64) -> Option<(NetworkNo, bool)> {
        match self.slots.get(&txn_id)? {
            Entry::Hot(s) => Some((s.order.network, s.order.holds_window())),
            Entry::Frozen(b) => Some((encoded_owner(b)?.1, encoded_holds_window(b))),
        }
    }

    /// Calls `f` with every order's creating network and whether it holds the window (no order
    /// is thawed).
    pub fn for_each_holding(&self, mut f: impl FnMut(NetworkNo, bool)) {
        for entry in self.slots.values() {
            match entry {
                Entry::Hot(s) => f(s.order.network, s.order.holds_window()),
                Entry::Frozen(b) => {
                    if let Some((_, network)) = encoded_owner(b) {
                        f(network, encoded_holds_window(b));
                    }
                }
            }
        }
    }

    /// The order with transaction id `txn_id` if it is hot (orders with something pending always
    /// are).
    pub fn get_hot(&self, txn_id: u64) -> Option<&Slot<R>> {
        match self.slots.get(&txn_id)? {
            Entry::Hot(s) => Some(s),
            Entry::Frozen(_) => None,
        }
    }

    /// The order with transaction id `txn_id`, to change (thawed if it was frozen).
    pub fn get_mut(&mut self, txn_id: u64) -> Option<&mut Slot<R>> {
        let entry = self.slots.get_mut(&txn_id)?;
        if let Entry::Frozen(bytes) = entry {
            let Some((key, order)) = decode_order::<R>(bytes) else {
                tracing::error!(txn_id, "a frozen order does not decode");
                return None;
            };
            self.frozen_bytes = self.frozen_bytes.saturating_sub(bytes.len());
            *entry = Entry::Hot(Box::new(Slot { key, order }));
            self.hot += 1;
            self.hot_age.push_back(txn_id);
        }
        match entry {
            Entry::Hot(s) => Some(s),
            Entry::Frozen(_) => None,
        }
    }

    /// The order under (`merchant_id`, `order_id`), to change (thawed if it was frozen).
    pub fn by_key_mut(&mut self, merchant_id: &[u8], order_id: &[u8]) -> Option<&mut Slot<R>> {
        let txn = self.find(merchant_id, order_id)?;
        self.get_mut(txn)
    }

    /// Whether an order under this key was evicted (and is still remembered).
    pub fn was_evicted(&self, merchant_id: &[u8], order_id: &[u8]) -> bool {
        if self.evicted.is_empty() && self.evicted_older.is_empty() {
            return false;
        }
        let hash = stable_key_hash(merchant_id, order_id);
        self.evicted.contains(&hash) || self.evicted_older.contains(&hash)
    }

    fn index(&mut self, txn: u64, merchant_id: &[u8], order_id: &[u8]) {
        let Self {
            slots,
            by_key,
            hasher,
            ..
        } = self;
        let hash = key_hash(hasher, merchant_id, order_id);
        by_key.insert_unique(hash, txn, |t| hash_of(slots, hasher, *t));
    }

    fn push_age(&mut self, txn: u64) {
        self.age.push_back(txn);
        if self.age.len() > 2 * self.slots.len() + 1_024 {
            let slots = &self.slots;
            self.age.retain(|t| slots.contains_key(t));
        }
    }

    /// Adds a hot order as the newest. The caller has checked that its key is not held.
    pub fn insert(&mut self, key: OrderKey, order: Order<R>) {
        let txn = order.txn_id;
        self.index(txn, key.merchant_bytes(), key.order_id_bytes());
        self.slots
            .insert(txn, Entry::Hot(Box::new(Slot { key, order })));
        self.hot += 1;
        self.hot_age.push_back(txn);
        self.push_age(txn);
    }

    /// Adds an order already encoded (a snapshot's, with nothing pending) as the newest, frozen.
    pub fn insert_frozen(&mut self, txn: u64, key: &OrderKey, encoded: &[u8]) {
        self.index(txn, key.merchant_bytes(), key.order_id_bytes());
        self.slots.insert(txn, Entry::Frozen(Box::from(encoded)));
        self.frozen_bytes += encoded.len();
        self.push_age(txn);
    }

    /// Takes the order with transaction id `txn_id` out (a forgotten attempt: its key is free).
    pub fn remove(&mut self, txn_id: u64) {
        let Some(entry) = self.slots.remove(&txn_id) else {
            return;
        };
        match &entry {
            Entry::Hot(_) => self.hot -= 1,
            Entry::Frozen(b) => self.frozen_bytes = self.frozen_bytes.saturating_sub(b.len()),
        }
        if let Some((m, o)) = entry.key() {
            let hash = key_hash(&self.hasher, m, o);
            if let Ok(found) = self.by_key.find_entry(hash, |t| *t == txn_id) {
                found.remove();
            }
        }
    }

    /// Calls `f` with every order, oldest first (frozen ones decoded for the call).
    pub fn for_each(&self, mut f: impl FnMut(&OrderKey, &Order<R>)) {
        for txn in &self.age {
            match self.slots.get(txn) {
                Some(Entry::Hot(s)) => f(&s.key, &s.order),
                Some(Entry::Frozen(b)) => {
                    if let Some((key, order)) = decode_order::<R>(b) {
                        f(&key, &order);
                    }
                }
                None => {}
            }
        }
    }

    /// Every hot order (all orders with something pending), in no particular order, to change.
    pub fn hot_mut(&mut self) -> impl Iterator<Item = &mut Slot<R>> {
        self.slots.values_mut().filter_map(|e| match e {
            Entry::Hot(s) => Some(&mut **s),
            Entry::Frozen(_) => None,
        })
    }

    /// Appends every order's snapshot encoding, oldest first, after its count (`u32`).
    pub fn encode_all(&self, out: &mut BytesMut) {
        out.put_u32(self.slots.len() as u32);
        for txn in &self.age {
            match self.slots.get(txn) {
                Some(Entry::Hot(s)) => encode_order(out, &s.key, &s.order),
                Some(Entry::Frozen(b)) => out.put_slice(b),
                None => {}
            }
        }
    }

    /// Freezes the longest-hot orders `pinned` lets go until at most `hot_max` are hot.
    pub fn freeze(&mut self, hot_max: usize, pinned: impl Fn(&Order<R>) -> bool) {
        let mut scanned = 0;
        while self.hot > hot_max && scanned < 2 * hot_max.max(1) {
            scanned += 1;
            let Some(txn) = self.hot_age.pop_front() else {
                break;
            };
            let Some(entry) = self.slots.get_mut(&txn) else {
                continue;
            };
            let Entry::Hot(slot) = entry else { continue };
            if pinned(&slot.order) {
                self.hot_age.push_back(txn);
                continue;
            }
            self.scratch.clear();
            encode_order(&mut self.scratch, &slot.key, &slot.order);
            *entry = Entry::Frozen(Box::from(&self.scratch[..]));
            self.frozen_bytes += self.scratch.len();
            self.hot -= 1;
        }
    }

    /// Evicts the oldest orders `pinned` lets go (and, frozen, that do not hold the window:
    /// [`Order::holds_window`]) until at most `max` are held, and remembers their keys (see the
    /// module doc, `keys_max`). Orders kept move to the newest end. Looks at most at
    /// [`EVICT_SCAN_MAX`] orders: a window of orders that must stay costs a bounded scan, and the
    /// caller refuses the new order (see `ShardCore::make_room`).
    pub fn evict(&mut self, max: usize, keys_max: usize, pinned: impl Fn(&Order<R>) -> bool) {
        let mut scanned = 0;
        while self.slots.len() > max && scanned < EVICT_SCAN_MAX {
            scanned += 1;
            let Some(txn) = self.age.pop_front() else {
                break;
            };
            let hash = match self.slots.get(&txn) {
                None => continue,
                Some(Entry::Hot(s)) if pinned(&s.order) => {
                    self.age.push_back(txn);
                    continue;
                }
                Some(Entry::Frozen(b)) if encoded_holds_window(b) => {
                    self.age.push_back(txn);
                    continue;
                }
                Some(e) => e.key().map(|(m, o)| stable_key_hash(m, o)),
            };
            self.remove(txn);
            if let Some(hash) = hash {
                self.remember_evicted(hash, keys_max);
            }
        }
    }

    /// Remembers an evicted key's stable hash in the newer generation; a full one (half of
    /// `keys_max`) becomes the older one, and the older one is forgotten.
    pub fn remember_evicted(&mut self, hash: u64, keys_max: usize) {
        let generation_max = keys_max / 2;
        if generation_max == 0 {
            return;
        }
        if self.evicted.len() >= generation_max {
            self.evicted_older = std::mem::take(&mut self.evicted);
        }
        self.evicted.insert(hash);
    }

    /// Stable hashes of remembered evicted keys, the older generation first (for snapshots).
    pub fn evicted_keys(&self) -> impl Iterator<Item = u64> + '_ {
        self.evicted_older
            .iter()
            .chain(self.evicted.iter())
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::order::OrderState;
    use paymesh_codecs::message::TxnKind;

    fn order(txn_id: u64) -> Order<u32> {
        Order {
            txn_id,
            kind: TxnKind::Authorize,
            network: 0,
            currency: 410,
            host: None,
            account: None,
            masked_pan: None,
            state: OrderState::Authorized,
            authorized: 100,
            captured: 0,
            refunded: 0,
            refund_in_doubt: 0,
            capture_closed: false,
            installments: 0,
            approval_code: bytes::Bytes::new(),
            sent: None,
            day: 0,
            received_ms: 0,
            ops: Vec::new(),
            reversal: None,
        }
    }

    fn key(n: u64) -> OrderKey {
        OrderKey::new(b"M1", format!("O{n}").as_bytes())
    }

    #[test]
    fn finds_by_key_and_id_and_forgets_removed_ones() {
        let mut w = OrderWindow::default();
        for n in 1..=100 {
            w.insert(key(n), order(n));
        }
        assert_eq!(w.len(), 100);
        assert_eq!(w.find(b"M1", b"O42"), Some(42));
        assert_eq!(w.find(b"M1", b"O101"), None);
        // The merchant/order split is part of the key.
        assert_eq!(w.find(b"M", b"1O42"), None);
        w.remove(42);
        assert_eq!(w.find(b"M1", b"O42"), None);
        assert!(w.get_mut(42).is_none());
        assert!(!w.was_evicted(b"M1", b"O42"), "removed is not evicted");
        let mut ids = Vec::new();
        w.for_each(|_, o| ids.push(o.txn_id));
        assert_eq!(ids.len(), 99);
        assert!(ids.windows(2).all(|p| p[0] < p[1]), "oldest first");
    }

    #[test]
    fn evicts_oldest_unpinned_and_remembers_a_bounded_number_of_keys() {
        let mut w = OrderWindow::default();
        for n in 1..=10 {
            w.insert(key(n), order(n));
        }
        // Order 1 is pinned (say, a reversal pending): it stays; 2..=5 go.
        w.evict(6, 2, |o| o.txn_id == 1);
        assert_eq!(w.len(), 6);
        assert!(w.get_hot(1).is_some());
        for n in 2..=5 {
            assert!(w.get_mut(n).is_none(), "{n} evicted");
        }
        // Two generations of one key each: 4 is the older, 5 the newer; 2 and 3 were forgotten.
        assert!(!w.was_evicted(b"M1", b"O2"));
        assert!(!w.was_evicted(b"M1", b"O3"));
        for n in 4..=5 {
            assert!(w.was_evicted(b"M1", format!("O{n}").as_bytes()));
        }
        assert_eq!(w.evicted_len(), 2);
        let mut ids = Vec::new();
        w.for_each(|_, o| ids.push(o.txn_id));
        assert_eq!(
            ids,
            vec![6, 7, 8, 9, 10, 1],
            "the pinned order moved to the newest end"
        );
    }

    #[test]
    fn old_orders_freeze_and_thaw_unchanged() {
        let mut w = OrderWindow::default();
        for n in 1..=10 {
            let mut o = order(n);
            o.authorized = 100 * n;
            // Completed: only those leave the window (an open authorization stays).
            o.state = OrderState::Captured;
            w.insert(key(n), o);
        }
        // Order 2 is pinned: it stays hot; 1 and 3..=7 freeze.
        w.freeze(4, |o| o.txn_id == 2);
        assert_eq!(w.hot_len(), 4);
        assert!(w.get_hot(1).is_none(), "1 is frozen");
        assert!(w.get_hot(2).is_some(), "pinned stays hot");
        // Found by key while frozen, and thawed intact.
        assert_eq!(w.find(b"M1", b"O3"), Some(3));
        let thawed = w.by_key_mut(b"M1", b"O3").unwrap();
        assert_eq!(thawed.order.authorized, 300);
        assert_eq!(thawed.key, key(3));
        assert_eq!(w.hot_len(), 5);
        assert!(w.get_hot(3).is_some());
        // Every order still listed once, oldest first.
        let mut ids = Vec::new();
        w.for_each(|_, o| ids.push(o.txn_id));
        assert_eq!(ids, (1..=10).collect::<Vec<_>>());
        // Frozen orders are evicted like hot ones, keys remembered.
        w.evict(5, 100, |_| false);
        assert_eq!(w.len(), 5);
        assert!(w.was_evicted(b"M1", b"O1"));
        assert_eq!(w.find(b"M1", b"O1"), None);
        assert_eq!(w.find(b"M1", b"O6"), Some(6));
    }

    #[test]
    fn stale_age_entries_are_compacted() {
        let mut w = OrderWindow::default();
        for n in 1..=5_000 {
            w.insert(key(n), order(n));
            w.remove(n);
        }
        assert!(w.age.len() <= 1_025, "age holds {} stale ids", w.age.len());
    }
}
