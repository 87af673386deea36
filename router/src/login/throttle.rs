//! Failed-login throttling per source address: a sans-IO state machine (time is passed in as unix
//! milliseconds; nothing here reads a clock, sleeps or logs).
//!
//! Throttling is per source address, never per network: a per-network lockout would let anyone
//! who knows a VAN's network id lock the real VAN out. For one address:
//! - no failure in the current window: its LOGINs are checked at once, as many as it sends;
//! - after `k` failures within `failure_window_ms`, its LOGINs are spaced at least
//!   `delay_ms × 2^(k-1)` apart (capped at `delay_ms_max`): each attempt reserves the next free
//!   time, and one that would have to wait longer than its session can is refused at once;
//! - at `failures_max` failures within the window, it is locked out for `lockout_ms`: its LOGINs
//!   are refused without being checked, whatever they carry.
//!
//! An IPv6 client usually holds a whole /64, so IPv6 addresses are tracked by their /64 prefix
//! (IPv4-mapped ones as IPv4). Only addresses that failed are tracked, in a table bounded by
//! `addresses_max`; when it is full the address touched least recently is forgotten. Someone with
//! more addresses than that can make the router forget a lockout, which bounds the table's memory
//! (about 100 bytes an address) at the price of that.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::net::IpAddr;

/// The throttle's settings (the `[login]` section of the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleSettings {
    /// Failures within the window that lock an address out.
    pub failures_max: u32,
    /// The window failures are counted in, milliseconds.
    pub failure_window_ms: u64,
    /// How long a lockout lasts, milliseconds.
    pub lockout_ms: u64,
    /// Spacing of an address's LOGINs after its first failure, milliseconds; it doubles with
    /// each further failure.
    pub delay_ms: u64,
    /// Cap of that spacing, milliseconds.
    pub delay_ms_max: u64,
    /// Addresses tracked at once.
    pub addresses_max: usize,
    /// At most one log line per this many milliseconds about failed logins.
    pub log_interval_ms: u64,
}

/// The source of a LOGIN as the throttle counts it: an IPv4 address or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AddressKey {
    /// An IPv4 address (or an IPv4-mapped IPv6 one).
    V4([u8; 4]),
    /// The first 64 bits of an IPv6 address.
    V6Prefix([u8; 8]),
}

impl AddressKey {
    /// The key of `ip`.
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => AddressKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => AddressKey::V4(v4.octets()),
                None => {
                    let o = v6.octets();
                    AddressKey::V6Prefix([o[0], o[1], o[2], o[3], o[4], o[5], o[6], o[7]])
                }
            },
        }
    }
}

impl fmt::Display for AddressKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AddressKey::V4(o) => write!(f, "{}", std::net::Ipv4Addr::from(*o)),
            AddressKey::V6Prefix(p) => {
                let mut o = [0u8; 16];
                for (to, from) in o.iter_mut().zip(p.iter()) {
                    *to = *from;
                }
                write!(f, "{}/64", std::net::Ipv6Addr::from(o))
            }
        }
    }
}

/// May a LOGIN from an address be checked?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Check it now.
    Now,
    /// Check it after waiting this many milliseconds (its turn is reserved).
    After(u64),
    /// Its turn would come later than it can wait: refuse it (BUSY), unchecked.
    TooLate,
    /// The address is locked out: refuse it, unchecked.
    LockedOut,
}

/// What a recorded failure led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FailureOutcome {
    /// This failure locked the address out.
    pub locked_out: bool,
    /// Time for a log line: failures and lockouts since the last one (this one included).
    pub log: Option<LogLine>,
}

/// Counts for one rate-limited log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogLine {
    /// Failed logins since the previous line.
    pub failures: u64,
    /// Lockouts since the previous line.
    pub lockouts: u64,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Failures in the current window.
    failures: u32,
    /// When the current window began.
    window_start_ms: u64,
    /// Locked out until then (0: not locked).
    locked_until_ms: u64,
    /// The earliest time the address's next LOGIN may be checked.
    next_turn_ms: u64,
    /// Its position in the touch order (see [`LoginThrottle::order`]).
    touched: u64,
}

/// The per-address throttle; see the module doc.
#[derive(Debug)]
pub struct LoginThrottle {
    settings: ThrottleSettings,
    entries: HashMap<AddressKey, Entry>,
    /// (touch number, address) in touch order. An address touched again is pushed again and its
    /// older pairs are skipped when met (its entry's `touched` no longer matches).
    order: VecDeque<(u64, AddressKey)>,
    touches: u64,
    log_next_ms: u64,
    log_failures: u64,
    log_lockouts: u64,
}

impl LoginThrottle {
    /// An empty throttle.
    pub fn new(settings: ThrottleSettings) -> Self {
        Self {
            settings,
            entries: HashMap::new(),
            order: VecDeque::new(),
            touches: 0,
            log_next_ms: 0,
            log_failures: 0,
            log_lockouts: 0,
        }
    }

    /// Addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.entries.len()
    }

    /// Whether `key` is locked out at `now_ms`.
    pub fn locked_out(&self, key: AddressKey, now_ms: u64) -> bool {
        self.entries
            .get(&key)
            .is_some_and(|e| e.locked_until_ms > now_ms)
    }

    /// Decides when a LOGIN from `key` arriving at `now_ms` may be checked, reserving its turn;
    /// `wait_ms_max` is how long it can wait.
    pub fn admit(&mut self, key: AddressKey, now_ms: u64, wait_ms_max: u64) -> Admission {
        let settings = self.settings;
        let Some(entry) = self.entries.get_mut(&key) else {
            return Admission::Now;
        };
        if entry.locked_until_ms > now_ms {
            return Admission::LockedOut;
        }
        expire(entry, &settings, now_ms);
        if entry.failures == 0 {
            return Admission::Now;
        }
        let turn = entry.next_turn_ms.max(now_ms);
        let wait = turn - now_ms;
        if wait > wait_ms_max {
            return Admission::TooLate;
        }
        entry.next_turn_ms = turn.saturating_add(spacing_ms(&settings, entry.failures));
        self.touch(key);
        if wait == 0 {
            Admission::Now
        } else {
            Admission::After(wait)
        }
    }

    /// Records a failed LOGIN from `key` at `now_ms`.
    pub fn record_failure(&mut self, key: AddressKey, now_ms: u64) -> FailureOutcome {
        let settings = self.settings;
        if !self.entries.contains_key(&key) {
            self.make_room();
            self.entries.insert(
                key,
                Entry {
                    failures: 0,
                    window_start_ms: now_ms,
                    locked_until_ms: 0,
                    next_turn_ms: now_ms,
                    touched: 0,
                },
            );
        }
        let mut locked_out = false;
        if let Some(entry) = self.entries.get_mut(&key) {
            expire(entry, &settings, now_ms);
            if entry.failures == 0 {
                entry.window_start_ms = now_ms;
            }
            entry.failures = entry.failures.saturating_add(1);
            let spaced = now_ms.saturating_add(spacing_ms(&settings, entry.failures));
            entry.next_turn_ms = entry.next_turn_ms.max(spaced);
            if entry.failures >= settings.failures_max && entry.locked_until_ms <= now_ms {
                entry.locked_until_ms = now_ms.saturating_add(settings.lockout_ms);
                locked_out = true;
            }
        }
        self.touch(key);
        self.log_failures += 1;
        self.log_lockouts += u64::from(locked_out);
        let log = (now_ms >= self.log_next_ms).then(|| {
            self.log_next_ms = now_ms.saturating_add(settings.log_interval_ms);
            LogLine {
                failures: std::mem::take(&mut self.log_failures),
                lockouts: std::mem::take(&mut self.log_lockouts),
            }
        });
        FailureOutcome { locked_out, log }
    }

    fn touch(&mut self, key: AddressKey) {
        self.touches += 1;
        let touch = self.touches;
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.touched = touch;
        }
        self.order.push_back((touch, key));
        // Stale pairs accumulate when the same addresses are touched again and again: rebuild
        // the order from the entries before it outgrows them by much.
        if self.order.len() > 2 * self.settings.addresses_max.max(self.entries.len()) + 16 {
            let mut live: Vec<(u64, AddressKey)> =
                self.entries.iter().map(|(k, e)| (e.touched, *k)).collect();
            live.sort_unstable_by_key(|(touched, _)| *touched);
            self.order = live.into();
        }
    }

    /// Forgets the least recently touched addresses until there is room for one more.
    fn make_room(&mut self) {
        while self.entries.len() >= self.settings.addresses_max.max(1) {
            let Some((touch, key)) = self.order.pop_front() else {
                // Cannot happen (every entry has a pair in the order); stay bounded anyway.
                self.entries.clear();
                return;
            };
            if self.entries.get(&key).is_some_and(|e| e.touched == touch) {
                self.entries.remove(&key);
            }
        }
    }
}

/// Ends a lockout or a failure window that is over.
fn expire(entry: &mut Entry, settings: &ThrottleSettings, now_ms: u64) {
    if entry.locked_until_ms != 0 && entry.locked_until_ms <= now_ms {
        // A lockout served starts the address afresh.
        entry.locked_until_ms = 0;
        entry.failures = 0;
    }
    if now_ms.saturating_sub(entry.window_start_ms) >= settings.failure_window_ms {
        entry.failures = 0;
    }
}

/// Spacing of an address's LOGINs after `failures` failures.
fn spacing_ms(settings: &ThrottleSettings, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(32);
    settings
        .delay_ms
        .saturating_mul(1u64 << doublings)
        .min(settings.delay_ms_max)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SETTINGS: ThrottleSettings = ThrottleSettings {
        failures_max: 4,
        failure_window_ms: 60_000,
        lockout_ms: 300_000,
        delay_ms: 100,
        delay_ms_max: 1_000,
        addresses_max: 3,
        log_interval_ms: 10_000,
    };

    fn key(last: u8) -> AddressKey {
        AddressKey::of(IpAddr::from([192, 0, 2, last]))
    }

    #[test]
    fn a_clean_address_is_never_delayed() {
        let mut t = LoginThrottle::new(SETTINGS);
        for now in 0..100 {
            assert_eq!(t.admit(key(1), now, 0), Admission::Now);
        }
        assert_eq!(
            t.tracked(),
            0,
            "successes and unchecked attempts leave no trace"
        );
    }

    #[test]
    fn failures_space_the_next_attempts_further_and_further_then_lock_out() {
        let mut t = LoginThrottle::new(SETTINGS);
        let a = key(1);
        assert_eq!(t.admit(a, 1_000, 5_000), Admission::Now);
        t.record_failure(a, 1_000);
        // One failure: turns 100 ms apart; concurrent attempts queue behind each other.
        assert_eq!(t.admit(a, 1_000, 5_000), Admission::After(100));
        assert_eq!(t.admit(a, 1_000, 5_000), Admission::After(200));
        // One that cannot wait that long is refused, and reserves nothing.
        assert_eq!(t.admit(a, 1_000, 250), Admission::TooLate);
        assert_eq!(t.admit(a, 1_000, 5_000), Admission::After(300));
        let outcome = t.record_failure(a, 1_300);
        assert!(!outcome.locked_out);
        // Two failures: 200 ms from the failure at least.
        assert_eq!(t.admit(a, 1_400, 5_000), Admission::After(100));
        t.record_failure(a, 1_500);
        assert!(!t.locked_out(a, 1_500));
        let outcome = t.record_failure(a, 1_600);
        assert!(outcome.locked_out, "the fourth failure in the window");
        assert!(t.locked_out(a, 1_600));
        assert_eq!(t.admit(a, 2_000, 5_000), Admission::LockedOut);
        assert_eq!(
            t.admit(key(2), 2_000, 5_000),
            Admission::Now,
            "others unaffected"
        );
        // A further failure (a check admitted before the lockout) does not lock it out again.
        assert!(!t.record_failure(a, 1_700).locked_out);
        // The lockout ends and the address starts afresh.
        assert!(!t.locked_out(a, 301_600));
        assert_eq!(t.admit(a, 301_600, 0), Admission::Now);
    }

    #[test]
    fn the_spacing_is_capped() {
        let mut t = LoginThrottle::new(ThrottleSettings {
            failures_max: 100,
            ..SETTINGS
        });
        let a = key(1);
        for _ in 0..50 {
            t.record_failure(a, 0);
        }
        assert_eq!(t.admit(a, 0, u64::MAX), Admission::After(1_000));
        assert_eq!(t.admit(a, 0, u64::MAX), Admission::After(2_000));
    }

    #[test]
    fn failures_outside_the_window_are_forgotten() {
        let mut t = LoginThrottle::new(SETTINGS);
        let a = key(1);
        for i in 0..3 {
            t.record_failure(a, i * 30_000);
        }
        // 0, 30 s, 60 s: the window restarted at 60 s, so this is the second failure, not the fourth.
        assert!(!t.record_failure(a, 61_000).locked_out);
        assert!(!t.locked_out(a, 61_000));
        // Long after the last failure, no delay.
        assert_eq!(t.admit(a, 200_000, 0), Admission::Now);
    }

    #[test]
    fn the_table_is_bounded_and_forgets_the_least_recently_touched() {
        let mut t = LoginThrottle::new(SETTINGS);
        for last in 1..=3 {
            t.record_failure(key(last), 0);
        }
        // Touch 1 again: 2 is now the least recently touched.
        t.record_failure(key(1), 1);
        t.record_failure(key(4), 2);
        assert_eq!(t.tracked(), 3);
        assert_eq!(t.admit(key(2), 3, 0), Admission::Now, "2 was forgotten");
        assert_eq!(
            t.admit(key(1), 3, 0),
            Admission::TooLate,
            "1 is still delayed"
        );
        for i in 0..10_000u64 {
            t.record_failure(key((i % 250) as u8), 10 + i);
            assert!(t.tracked() <= 3);
            assert!(t.order.len() <= 2 * 3 + 17);
        }
    }

    #[test]
    fn log_lines_are_rate_limited_and_carry_what_they_summarise() {
        let mut t = LoginThrottle::new(SETTINGS);
        let first = t.record_failure(key(1), 0).log.unwrap();
        assert_eq!((first.failures, first.lockouts), (1, 0));
        for i in 1..=5 {
            assert!(t.record_failure(key(1), i).log.is_none());
        }
        let next = t.record_failure(key(2), 10_000).log.unwrap();
        // Failures 2..=6 of key 1 (the fourth locked it out) and this one.
        assert_eq!((next.failures, next.lockouts), (6, 1));
    }

    #[test]
    fn ipv6_is_tracked_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(AddressKey::of(a), AddressKey::of(b));
        assert_ne!(AddressKey::of(a), AddressKey::of(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(AddressKey::of(mapped), key(7));
        assert_eq!(AddressKey::of(a).to_string(), "2001:db8:1:2::/64");
        assert_eq!(key(7).to_string(), "192.0.2.7");
    }
}
