//! [`Breaker`]: a host's circuit breaker, sans-IO (time passed in, microseconds).
//!
//! Closed: traffic flows; `failures_max` consecutive failures open it. Open: transactions are
//! refused at once (UPSTREAM_UNAVAILABLE) for `open_ms`; then it half-opens. Half-open: exactly one
//! probe (a transaction or an echo test) may be out; its success closes the breaker, its failure
//! opens it again for another `open_ms`. A success while open changes nothing: the breaker waits
//! its time and probes.

use crate::metrics::BreakerState;

/// A circuit breaker. See the module docs.
#[derive(Debug, Clone)]
pub struct Breaker {
    failures_max: u32,
    open_us: u64,
    state: BreakerState,
    consecutive: u32,
    opened_at_us: u64,
    probe_out: bool,
}

impl Breaker {
    /// A closed breaker that opens after `failures_max` consecutive failures (0 = never) and stays
    /// open `open_ms`.
    pub fn new(failures_max: u32, open_ms: u64) -> Self {
        Self {
            failures_max,
            open_us: open_ms.saturating_mul(1_000),
            state: BreakerState::Closed,
            consecutive: 0,
            opened_at_us: 0,
            probe_out: false,
        }
    }

    /// The current state (as of the last [`Breaker::tick`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Consecutive failures counted while closed.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Half-opens an open breaker whose time is up. Returns whether the state changed.
    pub fn tick(&mut self, now_us: u64) -> bool {
        if self.state == BreakerState::Open
            && now_us >= self.opened_at_us.saturating_add(self.open_us)
        {
            self.state = BreakerState::HalfOpen;
            self.probe_out = false;
            return true;
        }
        false
    }

    /// Whether a request may be sent now: always when closed, never when open, and when half-open
    /// only while no probe is out.
    pub fn allows(&self) -> bool {
        match self.state {
            BreakerState::Closed => true,
            BreakerState::Open => false,
            BreakerState::HalfOpen => !self.probe_out,
        }
    }

    /// A request was sent: when half-open, it is the probe.
    pub fn on_sent(&mut self) {
        if self.state == BreakerState::HalfOpen {
            self.probe_out = true;
        }
    }

    /// The host answered. Returns whether the state changed.
    pub fn on_success(&mut self) -> bool {
        self.consecutive = 0;
        if self.state == BreakerState::HalfOpen {
            self.state = BreakerState::Closed;
            self.probe_out = false;
            return true;
        }
        false
    }

    /// A timeout, a lost link with requests in flight, a failed connect or sign-on, or an answer
    /// saying the host cannot serve. Returns whether the state changed.
    pub fn on_failure(&mut self, now_us: u64) -> bool {
        if self.failures_max == 0 {
            return false;
        }
        match self.state {
            BreakerState::Closed => {
                self.consecutive = self.consecutive.saturating_add(1);
                if self.consecutive >= self.failures_max {
                    self.open(now_us);
                    return true;
                }
                false
            }
            BreakerState::HalfOpen => {
                self.open(now_us);
                true
            }
            BreakerState::Open => false,
        }
    }

    fn open(&mut self, now_us: u64) {
        self.state = BreakerState::Open;
        self.opened_at_us = now_us;
        self.consecutive = 0;
        self.probe_out = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    #[test]
    fn closed_counts_consecutive_failures_and_a_success_resets_them() {
        let mut b = Breaker::new(3, 100);
        assert!(!b.on_failure(0) && !b.on_failure(0));
        assert_eq!(b.consecutive_failures(), 2);
        assert!(!b.on_success());
        assert_eq!(b.consecutive_failures(), 0);
        assert!(!b.on_failure(0) && !b.on_failure(0));
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allows());
        assert!(b.on_failure(5 * MS), "the third in a row opens it");
        assert_eq!(b.state(), BreakerState::Open);
    }

    #[test]
    fn open_refuses_until_its_time_is_up_then_half_opens() {
        let mut b = Breaker::new(1, 100);
        assert!(b.on_failure(10 * MS));
        assert!(!b.allows());
        assert!(!b.tick(109 * MS));
        assert!(!b.allows());
        // Failures and successes while open change nothing.
        assert!(!b.on_failure(50 * MS));
        assert!(!b.on_success());
        assert_eq!(b.state(), BreakerState::Open);
        assert!(b.tick(110 * MS));
        assert_eq!(b.state(), BreakerState::HalfOpen);
        assert!(!b.tick(111 * MS), "no change twice");
    }

    #[test]
    fn half_open_lets_one_probe_through_and_its_success_closes() {
        let mut b = Breaker::new(1, 100);
        b.on_failure(0);
        b.tick(100 * MS);
        assert!(b.allows());
        b.on_sent();
        assert!(!b.allows(), "one probe at a time");
        assert!(b.on_success());
        assert_eq!(b.state(), BreakerState::Closed);
        assert!(b.allows());
    }

    #[test]
    fn a_failed_probe_opens_again_for_another_period() {
        let mut b = Breaker::new(2, 100);
        b.on_failure(0);
        b.on_failure(0);
        b.tick(100 * MS);
        b.on_sent();
        assert!(b.on_failure(150 * MS));
        assert_eq!(b.state(), BreakerState::Open);
        assert!(!b.tick(249 * MS));
        assert!(b.tick(250 * MS));
        assert!(b.allows(), "a new probe may go");
    }

    #[test]
    fn zero_failures_max_never_opens() {
        let mut b = Breaker::new(0, 100);
        for _ in 0..1_000 {
            assert!(!b.on_failure(0));
        }
        assert!(b.allows());
    }
}
