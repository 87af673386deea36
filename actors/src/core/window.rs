//! The shard's window of orders: every order it keeps in memory, oldest first, bounded by count,
//! and the keys of orders evicted from it.
//!
//! Memory per order is what bounds a router's resident set, so the layout is lean: each order lives
//! in one box with its key (a copy, never a slice of a read buffer), found by server transaction id
//! (a map of ids to boxes) or by key (a table of ids hashed by key, 8 bytes a slot, compared through
//! the box); `age` lists ids oldest first for eviction. `benches/benches/order_memory.rs` measures
//! the bytes one order costs.
//!
//! Past `orders_per_shard_max`, the oldest orders with nothing pending leave the window. Their keys
//! stay, as a 64-bit stable hash (about 19 bytes each with the table), in two generations of at
//! most half of `evicted_keys_per_shard_max` each: when the newer one is full, the older one is
//! dropped and the newer one takes its place. So the newest half of that many evicted keys at
//! least, and at most all of them, are remembered: a request that would create an order under such
//! a key again is refused as a duplicate instead of being sent to the host a second time. Older
//! than that, a key is forgotten.

use std::collections::VecDeque;
use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;

use super::order::{Order, OrderKey, stable_key_hash};

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

/// The orders of one shard, and the keys of the ones it evicted.
pub struct OrderWindow<R> {
    slots: HashMap<u64, Box<Slot<R>>>,
    /// Transaction ids, hashed by their order's key.
    by_key: HashTable<u64>,
    /// Transaction ids, oldest first; ids of removed orders are skipped (and compacted away).
    age: VecDeque<u64>,
    hasher: foldhash::fast::RandomState,
    /// Stable hashes of evicted keys: the newer generation, and the older one.
    evicted: HashSet<u64>,
    evicted_older: HashSet<u64>,
}

impl<R> std::fmt::Debug for OrderWindow<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OrderWindow")
            .field("orders", &self.slots.len())
            .field("evicted_keys", &self.evicted_len())
            .finish()
    }
}

impl<R> Default for OrderWindow<R> {
    fn default() -> Self {
        Self {
            slots: HashMap::default(),
            by_key: HashTable::new(),
            age: VecDeque::new(),
            hasher: foldhash::fast::RandomState::default(),
            evicted: HashSet::default(),
            evicted_older: HashSet::default(),
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

impl<R> OrderWindow<R> {
    /// Orders held.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether no order is held.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Keys of evicted orders remembered.
    pub fn evicted_len(&self) -> usize {
        self.evicted.len() + self.evicted_older.len()
    }

    /// Room for `n` more orders without growing.
    pub fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.by_key.reserve(n, |_| 0);
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
                    .is_some_and(|s| s.key.is(merchant_id, order_id))
            })
            .copied()
    }

    /// The order with transaction id `txn_id`.
    pub fn get(&self, txn_id: u64) -> Option<&Slot<R>> {
        self.slots.get(&txn_id).map(|b| &**b)
    }

    /// The order with transaction id `txn_id`, to change.
    pub fn get_mut(&mut self, txn_id: u64) -> Option<&mut Slot<R>> {
        self.slots.get_mut(&txn_id).map(|b| &mut **b)
    }

    /// The order under (`merchant_id`, `order_id`).
    pub fn by_key(&self, merchant_id: &[u8], order_id: &[u8]) -> Option<&Slot<R>> {
        self.find(merchant_id, order_id).and_then(|t| self.get(t))
    }

    /// The order under (`merchant_id`, `order_id`), to change.
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

    /// Adds an order as the newest. The caller has checked that its key is not held.
    pub fn insert(&mut self, key: OrderKey, order: Order<R>) {
        let txn = order.txn_id;
        let Self {
            slots,
            by_key,
            hasher,
            age,
            ..
        } = self;
        let hash = key_hash(hasher, key.merchant_bytes(), key.order_id_bytes());
        by_key.insert_unique(hash, txn, |t| {
            slots.get(t).map_or(0, |s| {
                key_hash(hasher, s.key.merchant_bytes(), s.key.order_id_bytes())
            })
        });
        slots.insert(txn, Box::new(Slot { key, order }));
        age.push_back(txn);
        if self.age.len() > 2 * self.slots.len() + 1_024 {
            let slots = &self.slots;
            self.age.retain(|t| slots.contains_key(t));
        }
    }

    /// Takes the order with transaction id `txn_id` out (a forgotten attempt: its key is free).
    pub fn remove(&mut self, txn_id: u64) -> Option<Box<Slot<R>>> {
        let slot = self.slots.remove(&txn_id)?;
        let hash = key_hash(
            &self.hasher,
            slot.key.merchant_bytes(),
            slot.key.order_id_bytes(),
        );
        if let Ok(entry) = self.by_key.find_entry(hash, |t| *t == txn_id) {
            entry.remove();
        }
        Some(slot)
    }

    /// Orders oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &Slot<R>> {
        self.age.iter().filter_map(|t| self.get(*t))
    }

    /// Every order, in no particular order, to change.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Slot<R>> {
        self.slots.values_mut().map(|b| &mut **b)
    }

    /// Evicts the oldest orders `pinned` lets go until at most `max` are held, and remembers
    /// their keys (at most `keys_max` of them, the newest). Pinned orders move to the newest end.
    pub fn evict(&mut self, max: usize, keys_max: usize, pinned: impl Fn(&Order<R>) -> bool) {
        let mut scanned = 0;
        while self.slots.len() > max && scanned < 2 * max.max(1) {
            scanned += 1;
            let Some(txn) = self.age.pop_front() else {
                break;
            };
            match self.slots.get(&txn) {
                None => {}
                Some(s) if pinned(&s.order) => self.age.push_back(txn),
                Some(_) => {
                    if let Some(slot) = self.remove(txn) {
                        self.remember_evicted(
                            stable_key_hash(slot.key.merchant_bytes(), slot.key.order_id_bytes()),
                            keys_max,
                        );
                    }
                }
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
            currency: 410,
            host: None,
            account: None,
            masked_pan: None,
            state: OrderState::Authorized,
            authorized: 100,
            captured: 0,
            refunded: 0,
            refund_in_doubt: 0,
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
        assert!(w.remove(42).is_some());
        assert_eq!(w.find(b"M1", b"O42"), None);
        assert!(w.get(42).is_none());
        assert!(!w.was_evicted(b"M1", b"O42"), "removed is not evicted");
        let ids: Vec<u64> = w.iter().map(|s| s.order.txn_id).collect();
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
        assert!(w.get(1).is_some());
        for n in 2..=5 {
            assert!(w.get(n).is_none(), "{n} evicted");
        }
        // Two generations of one key each: 4 is the older, 5 the newer; 2 and 3 were forgotten.
        assert!(!w.was_evicted(b"M1", b"O2"));
        assert!(!w.was_evicted(b"M1", b"O3"));
        for n in 4..=5 {
            assert!(w.was_evicted(b"M1", format!("O{n}").as_bytes()));
        }
        assert_eq!(w.evicted_len(), 2);
        let ids: Vec<u64> = w.iter().map(|s| s.order.txn_id).collect();
        assert_eq!(
            ids,
            vec![6, 7, 8, 9, 10, 1],
            "the pinned order moved to the newest end"
        );
    }

    #[test]
    fn stale_age_entries_are_compacted() {
        let mut w = OrderWindow::default();
        for n in 1..=5_000 {
            w.insert(key(n), order(n));
            assert!(w.remove(n).is_some());
        }
        assert!(w.age.len() <= 1_025, "age holds {} stale ids", w.age.len());
    }
}
