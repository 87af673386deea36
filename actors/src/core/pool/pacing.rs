//! Pacing, sans-IO (time passed in, microseconds): [`Backoff`], the reconnect delay (exponential
//! with jitter from a seeded [`SplitMix64`], so a seed replays the same delays), and
//! [`TokenBucket`], a host's rate limit.

use crate::core::config::Jitter;

use super::spec::BackoffSpec;

/// A small, fast, seeded pseudo-random generator (Steele, Lea, Flood: SplitMix64). Not for
/// secrets: it spreads reconnects.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with this seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..=max` (the modulo bias is negligible for delays).
    pub fn up_to(&mut self, max: u64) -> u64 {
        match max.checked_add(1) {
            Some(n) => self.next_u64() % n,
            None => self.next_u64(),
        }
    }
}

/// Reconnect delays: `base_ms × 2^attempt`, at most `max_ms`, with jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_us: u64,
    max_us: u64,
    jitter: Jitter,
    rng: SplitMix64,
}

impl Backoff {
    /// Delays as `spec` says, jitter drawn from a generator seeded with `seed`.
    pub fn new(spec: BackoffSpec, seed: u64) -> Self {
        Self {
            base_us: spec.base_ms.saturating_mul(1_000),
            max_us: spec.max_ms.saturating_mul(1_000),
            jitter: spec.jitter,
            rng: SplitMix64::new(seed),
        }
    }

    /// The delay before reconnect attempt `attempt` (0 after a link that worked was lost), before
    /// jitter.
    pub fn ceiling_us(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt.min(63)).unwrap_or(u64::MAX);
        self.base_us.saturating_mul(factor).min(self.max_us)
    }

    /// The delay before reconnect attempt `attempt`, jittered: uniform in `0..=ceiling` (full) or
    /// `ceiling/2..=ceiling` (equal).
    pub fn delay_us(&mut self, attempt: u32) -> u64 {
        let ceiling = self.ceiling_us(attempt);
        match self.jitter {
            Jitter::Full => self.rng.up_to(ceiling),
            Jitter::Equal => {
                let half = ceiling / 2;
                half + self.rng.up_to(ceiling - half)
            }
        }
    }
}

/// Millionths of a token: one token is what one request costs.
const MICRO_TOKENS: u64 = 1_000_000;

/// A token bucket: `rate_per_sec` tokens a second, holding at most one second's worth (so a
/// burst never exceeds the agreed rate over any second). Rate 0 = unlimited.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate_per_sec: u64,
    capacity: u64,
    tokens: u64,
    last_us: Option<u64>,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u32) -> Self {
        let rate = u64::from(rate_per_sec);
        let capacity = rate.saturating_mul(MICRO_TOKENS);
        Self {
            rate_per_sec: rate,
            capacity,
            tokens: capacity,
            last_us: None,
        }
    }

    /// Takes one token if there is one at `now_us`.
    pub fn try_take(&mut self, now_us: u64) -> bool {
        if self.rate_per_sec == 0 {
            return true;
        }
        let elapsed = self.last_us.map_or(0, |last| now_us.saturating_sub(last));
        // Time going backwards (a wall clock stepped) refills nothing and moves nothing.
        if self.last_us.is_none_or(|last| now_us >= last) {
            self.last_us = Some(now_us);
        }
        // rate tokens per 1e6 µs = rate micro-tokens per µs.
        let refill = elapsed.saturating_mul(self.rate_per_sec);
        self.tokens = self.tokens.saturating_add(refill).min(self.capacity);
        if self.tokens >= MICRO_TOKENS {
            self.tokens -= MICRO_TOKENS;
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    fn spec(jitter: Jitter) -> BackoffSpec {
        BackoffSpec {
            base_ms: 100,
            max_ms: 5_000,
            jitter,
        }
    }

    #[test]
    fn backoff_doubles_to_its_ceiling_within_the_jitter_bounds() {
        for jitter in [Jitter::Full, Jitter::Equal] {
            let mut b = Backoff::new(spec(jitter), 42);
            let ceilings: Vec<u64> = (0..10).map(|a| b.ceiling_us(a) / MS).collect();
            assert_eq!(
                ceilings,
                [100, 200, 400, 800, 1_600, 3_200, 5_000, 5_000, 5_000, 5_000]
            );
            assert_eq!(b.ceiling_us(u32::MAX), 5_000 * MS);
            for attempt in 0..12 {
                let ceiling = b.ceiling_us(attempt);
                let floor = match jitter {
                    Jitter::Full => 0,
                    Jitter::Equal => ceiling / 2,
                };
                for _ in 0..200 {
                    let d = b.delay_us(attempt);
                    assert!((floor..=ceiling).contains(&d), "{jitter:?} {attempt}: {d}");
                }
            }
        }
    }

    #[test]
    fn jitter_spreads_and_a_seed_replays() {
        let draws = |seed| {
            let mut b = Backoff::new(spec(Jitter::Full), seed);
            (0..50).map(|_| b.delay_us(3)).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
        let d = draws(7);
        let distinct: std::collections::HashSet<_> = d.iter().collect();
        assert!(distinct.len() > 40, "jitter spreads delays");
        let (min, max) = (d.iter().min().copied(), d.iter().max().copied());
        assert!(
            min < Some(200 * MS) && max > Some(600 * MS),
            "{min:?} {max:?}"
        );
    }

    #[test]
    fn token_bucket_holds_one_second_and_refills_at_the_rate() {
        let mut t = TokenBucket::new(10);
        let start = 1_000_000 * MS;
        assert!((0..10).all(|_| t.try_take(start)), "a full second's burst");
        assert!(!t.try_take(start));
        assert!(!t.try_take(start + 99 * MS));
        assert!(t.try_take(start + 100 * MS), "one token per 100 ms");
        assert!(!t.try_take(start + 100 * MS));
        // A long pause refills at most one second's worth.
        let later = start + 3_600_000 * MS;
        assert_eq!((0..20).filter(|_| t.try_take(later)).count(), 10);
        // A clock stepping back neither refills nor panics.
        assert!(!t.try_take(start));
    }

    #[test]
    fn rate_zero_is_unlimited() {
        let mut t = TokenBucket::new(0);
        assert!((0..100_000).all(|_| t.try_take(0)));
    }
}
