//! STANs and terminal ids, a room of the shard beside the state machine: one STAN space per
//! terminal id per business day, divided between the shards so that no two messages of a day
//! share a terminal and a STAN, whichever shard sent them.
//!
//! Each host has a pool of terminal ids ([`HostStanPlan`], from `terminal_ids`). With at least as
//! many terminals as shards, shard `s` of `S` owns the terminals `t` with `t % S == s`, each with
//! its whole range; with fewer, the shards with `s % T == t` share terminal `t`, each taking every
//! `m`-th STAN of it (`m` of them, the `r`-th with `r = s / T`). A terminal's range is
//! 1..=999,999, less the top `network_stans` on the terminal that carries network management
//! (`terminal_id`), which the pool keeps for its 0800s.
//!
//! The shard counts the STANs it used today on each of its terminals ([`StanBook`]): a step of
//! its state machine, so journal replay counts the same and assigns the same STANs; the counts
//! are in the snapshot. A new day (the host's local day) starts every count again. A new payment
//! goes to the shard's least used terminal; a follow-up to the original's terminal (a host
//! matches reversals and advices on terminal id + original STAN). When a terminal's STANs run
//! low, the last tenth is kept for store-and-forward (reversals, capture advices and cancels,
//! which must never wait for a new day): payments then answer BUSY, before any STAN could
//! repeat.

use bytes::{BufMut, Bytes, BytesMut};

use super::HashMap;
use crate::core::config::CoreSettings;
use crate::core::route::HostId;
use crate::core::upstream::STAN_MAX;

/// Milliseconds per day.
const DAY_MS: u64 = 86_400_000;
/// Default STANs reserved for network management (`network_stans`).
pub const NETWORK_STANS_DEFAULT: u32 = 20_000;
/// One part in this many of a terminal's STANs is kept for store-and-forward.
const FORWARD_RESERVE_PARTS: u32 = 10;

/// What the shards need to know of a host to assign STANs (from its validated settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostStanPlan {
    /// The terminal ids transactions are sent from; `[""]` when the dialect sends none or derives
    /// it from the merchant (then the pool fills field 41).
    pub terminals: Vec<Bytes>,
    /// The terminal carrying network management (`terminal_id`).
    pub network_terminal: Bytes,
    /// Its first STAN reserved for network management.
    pub network_stan_first: u32,
    /// Offset of the host's local day from UTC, minutes.
    pub local_offset_minutes: i32,
}

impl HostStanPlan {
    /// A host nobody configured a plan for (tests): one terminal the pool chooses, the default
    /// network reserve, the business day.
    pub fn fallback(local_offset_minutes: i32) -> Self {
        Self {
            terminals: vec![Bytes::new()],
            network_terminal: Bytes::new(),
            network_stan_first: STAN_MAX - NETWORK_STANS_DEFAULT + 1,
            local_offset_minutes,
        }
    }

    /// The host's local day of a unix time.
    fn day(&self, now_ms: u64) -> u64 {
        let offset_ms = i64::from(self.local_offset_minutes) * 60_000;
        ((now_ms as i64).saturating_add(offset_ms).max(0) as u64) / DAY_MS
    }

    /// The STANs of `shard` of `shards`: one slot per terminal it owns.
    fn slots(&self, shard: u16, shards: u16) -> Vec<Slot> {
        let (s, n) = (u32::from(shard), u32::from(shards.max(1)));
        let t_count = u32::try_from(self.terminals.len())
            .unwrap_or(u32::MAX)
            .max(1);
        let end = |t: &Bytes| match *t == self.network_terminal {
            // The empty terminal may be anything the pool fills: keep clear of the reserve.
            true => self.network_stan_first,
            false if t.is_empty() => self.network_stan_first,
            false => STAN_MAX + 1,
        };
        let mut out = Vec::new();
        if t_count >= n {
            for (i, t) in self.terminals.iter().enumerate() {
                if (i as u32) % n == s {
                    out.push(Slot::new(t.clone(), 1, 1, end(t) - 1));
                }
            }
        } else if let Some(t) = self.terminals.get((s % t_count) as usize) {
            // The shards s' with s' % T == t share it: m of them, this one the r-th.
            let index = s % t_count;
            let m = (n - 1 - index) / t_count + 1;
            let r = s / t_count;
            let last = end(t) - 1;
            let count = match r < last {
                true => (last - r - 1) / m + 1,
                false => 0,
            };
            out.push(Slot::new(t.clone(), r + 1, m, count));
        }
        out
    }

    /// STANs of a business day, per terminal and in all (the capacity docs/HOSTS.md states).
    pub fn capacity(&self) -> u64 {
        self.terminals
            .iter()
            .map(|t| match *t == self.network_terminal || t.is_empty() {
                true => u64::from(self.network_stan_first - 1),
                false => u64::from(STAN_MAX),
            })
            .sum()
    }
}

/// One terminal's STANs for one shard: `first + k * step` for `k` in `0..count`.
#[derive(Debug, Clone)]
struct Slot {
    terminal: Bytes,
    first: u32,
    step: u32,
    count: u32,
    used: u32,
}

impl Slot {
    fn new(terminal: Bytes, first: u32, step: u32, count: u32) -> Self {
        Self {
            terminal,
            first,
            step,
            count,
            used: 0,
        }
    }

    fn room(&self, purpose: Purpose) -> bool {
        let reserve = match purpose {
            Purpose::Payment => self.count / FORWARD_RESERVE_PARTS,
            Purpose::Forward => 0,
        };
        self.used.saturating_add(reserve) < self.count
    }

    /// The next STAN; past the end (a forward with every STAN of the day used) it starts again
    /// from the first, which a forward must rather do than never be sent.
    fn take(&mut self) -> u32 {
        let k = self.used % self.count.max(1);
        self.used = self.used.saturating_add(1);
        self.first + k * self.step
    }
}

/// What a STAN is for: payments give way to store-and-forward when STANs run low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// A new payment or a client's follow-up (refund, capture).
    Payment,
    /// A reversal (a cancel, a timed-out authorization) or a capture advice.
    Forward,
}

#[derive(Debug, Clone)]
struct HostBook {
    day: u64,
    slots: Vec<Slot>,
}

/// The STANs a shard used today, per host and terminal. See the module docs.
#[derive(Debug, Default)]
pub struct StanBook {
    hosts: HashMap<HostId, HostBook>,
}

impl StanBook {
    /// A terminal id and STAN for a message to `host` at `now_ms`: on `terminal` when given (a
    /// follow-up names its original's), else on the shard's least used terminal. `None`: none
    /// left today for `purpose` (the caller answers BUSY).
    pub fn assign(
        &mut self,
        settings: &CoreSettings,
        (shard, shards): (u16, u16),
        host: HostId,
        now_ms: u64,
        terminal: Option<&Bytes>,
        purpose: Purpose,
    ) -> Option<(Bytes, u32)> {
        let plan = settings.stan_plan(host);
        let day = plan.day(now_ms);
        let book = self.hosts.entry(host).or_insert_with(|| HostBook {
            day,
            slots: plan.slots(shard, shards),
        });
        if book.day != day {
            book.day = day;
            book.slots.iter_mut().for_each(|s| s.used = 0);
        }
        let slot = match terminal {
            // The original's terminal, when this shard owns it; otherwise (an older build's
            // order, a changed terminal pool) any terminal of the shard.
            Some(t) if book.slots.iter().any(|s| s.terminal == *t) => {
                book.slots.iter_mut().find(|s| s.terminal == *t)?
            }
            _ => book
                .slots
                .iter_mut()
                .filter(|s| s.count > 0)
                .min_by_key(|s| s.used)?,
        };
        if !slot.room(purpose) {
            if purpose == Purpose::Payment {
                return None;
            }
            tracing::error!(
                host,
                "every STAN of a terminal used today: a reversal repeats one"
            );
        }
        Some((slot.terminal.clone(), slot.take()))
    }

    /// The slots again for `shard` of `shards` (the shard count is set after a snapshot loads),
    /// keeping each terminal's count.
    pub fn reshape(&mut self, settings: &CoreSettings, (shard, shards): (u16, u16)) {
        for (host, book) in &mut self.hosts {
            let mut slots = settings.stan_plan(*host).slots(shard, shards);
            for s in &mut slots {
                if let Some(old) = book.slots.iter().find(|o| o.terminal == s.terminal) {
                    s.used = old.used;
                }
            }
            book.slots = slots;
        }
    }

    /// Appends the counts to a snapshot: `hosts u16 × (host u16 | day u64 | terminals u16 ×
    /// (terminal bytes | used u32))`.
    pub fn encode(&self, out: &mut BytesMut) {
        out.put_u16(self.hosts.len() as u16);
        for (host, book) in &self.hosts {
            out.put_u16(*host);
            out.put_u64(book.day);
            out.put_u16(book.slots.len() as u16);
            for s in &book.slots {
                out.put_u32(s.terminal.len() as u32);
                out.put_slice(&s.terminal);
                out.put_u32(s.used);
            }
        }
    }

    /// Reads [`StanBook::encode`]'s bytes, matching the counts to the terminals the settings give
    /// this shard now (a terminal no longer configured is dropped, a new one starts at 0).
    pub fn decode(
        bytes: &mut &[u8],
        settings: &CoreSettings,
        (shard, shards): (u16, u16),
    ) -> Option<Self> {
        use bytes::Buf;
        let mut book = Self::default();
        let need = |b: &&[u8], n: usize| (b.remaining() >= n).then_some(());
        need(bytes, 2)?;
        for _ in 0..bytes.get_u16() {
            need(bytes, 12)?;
            let (host, day, count) = (bytes.get_u16(), bytes.get_u64(), bytes.get_u16());
            let mut slots = settings.stan_plan(host).slots(shard, shards);
            for _ in 0..count {
                need(bytes, 4)?;
                let len = bytes.get_u32() as usize;
                need(bytes, len.checked_add(4)?)?;
                let terminal = bytes.copy_to_bytes(len);
                let used = bytes.get_u32();
                if let Some(s) = slots.iter_mut().find(|s| s.terminal == terminal) {
                    s.used = used;
                }
            }
            book.hosts.insert(host, HostBook { day, slots });
        }
        Some(book)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn plan(terminals: &[&str]) -> HostStanPlan {
        HostStanPlan {
            terminals: terminals
                .iter()
                .map(|t| Bytes::copy_from_slice(t.as_bytes()))
                .collect(),
            network_terminal: Bytes::from_static(b"TERM0000"),
            network_stan_first: 990_000,
            local_offset_minutes: 540,
        }
    }

    fn all_stans(p: &HostStanPlan, shards: u16) -> Vec<(Bytes, u32)> {
        let mut out = Vec::new();
        for s in 0..shards {
            for mut slot in p.slots(s, shards) {
                for _ in 0..slot.count {
                    out.push((slot.terminal.clone(), slot.take()));
                }
            }
        }
        out
    }

    #[test]
    fn shards_divide_every_terminals_stans_without_overlap_or_gap() {
        for (terminals, shards) in [
            (&["TERM0000", "TERM0001", "TERM0002", "TERM0003"][..], 2),
            (&["TERM0000", "TERM0001", "TERM0002"][..], 3),
            (&["TERM0000", "TERM0001"][..], 5),
            (&["TERM0000"][..], 4),
        ] {
            let p = plan(terminals);
            let mut stans = all_stans(&p, shards);
            let total = stans.len() as u64;
            stans.sort();
            stans.dedup();
            assert_eq!(
                stans.len() as u64,
                total,
                "{terminals:?} x {shards}: a repeat"
            );
            assert_eq!(total, p.capacity(), "{terminals:?} x {shards}: a gap");
            assert!(stans.iter().all(|(t, s)| *s >= 1
                && *s <= STAN_MAX
                && (t.as_ref() != b"TERM0000" || *s < 990_000)));
        }
    }

    #[test]
    fn the_capacity_is_999_999_per_terminal_less_the_network_reserve() {
        let p = plan(&["TERM0000", "TERM0001"]);
        assert_eq!(p.capacity(), 989_999 + 999_999);
    }
}
