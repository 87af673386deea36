//! When each request is due: the open-loop schedule of intended send times and the closed loop's
//! stop conditions. Sans-IO: time is an offset from the run's start, passed in.
//!
//! Open loop: the run's requests are numbered 0, 1, 2, ... over all connections, request `g` is
//! intended at `g / rate` seconds, and connection `c` of `N` sends the requests with `g % N == c`.
//! A request's latency counts from its intended time, so a server that stalls cannot make the
//! harness wait politely and hide the stall (no coordinated omission): requests pile up behind the
//! stall and each one's latency includes its wait.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::config::Stop;

const NANOS_PER_SECOND: u128 = 1_000_000_000;

/// What a connection should do about its next request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Send it now; latency counts from `intended`; `measured` is false during the warm-up.
    Send {
        /// Intended send time (open loop) or now (closed loop), from the run's start.
        intended: Duration,
        /// Whether the request counts in the figures.
        measured: bool,
    },
    /// Nothing is due before this offset from the run's start.
    WaitUntil(Duration),
    /// This connection sends no more requests.
    Done,
}

/// Measured requests a closed-loop `--count` run hands out, shared by its connections.
#[derive(Debug)]
pub struct Tickets {
    taken: AtomicU64,
    count: u64,
}

impl Tickets {
    /// `count` tickets.
    pub fn new(count: u64) -> Arc<Tickets> {
        Arc::new(Tickets {
            taken: AtomicU64::new(0),
            count,
        })
    }

    fn take(&self) -> bool {
        // Relaxed: the counter only has to hand out each ticket once, it orders nothing else.
        self.taken.fetch_add(1, Ordering::Relaxed) < self.count
    }
}

#[derive(Debug)]
enum Mode {
    Closed {
        tickets: Option<Arc<Tickets>>,
    },
    Open {
        rate: u64,
        warmup_requests: u64,
        total_requests: Option<u64>,
    },
}

/// The schedule of one connection.
#[derive(Debug)]
pub struct Pacer {
    mode: Mode,
    connection: u64,
    connections: u64,
    /// Requests this connection has been handed.
    sent: u64,
    warmup: Duration,
    /// End of sending (warm-up included) for a duration run.
    end: Option<Duration>,
}

impl Pacer {
    /// Open loop at `rate` requests per second over `connections` connections.
    pub fn open(
        rate: u64,
        connection: usize,
        connections: usize,
        warmup: Duration,
        stop: Stop,
    ) -> Pacer {
        let rate = rate.max(1);
        let warmup_requests = (warmup.as_nanos() * u128::from(rate)).div_ceil(NANOS_PER_SECOND);
        let warmup_requests = u64::try_from(warmup_requests).unwrap_or(u64::MAX);
        let (total_requests, end) = match stop {
            Stop::Count(count) => (Some(warmup_requests.saturating_add(count)), None),
            Stop::Duration(duration) => (None, Some(warmup + duration)),
        };
        Pacer {
            mode: Mode::Open {
                rate,
                warmup_requests,
                total_requests,
            },
            connection: connection as u64,
            connections: connections.max(1) as u64,
            sent: 0,
            warmup,
            end,
        }
    }

    /// Closed loop: send whenever there is room; `tickets` for a `--count` run.
    pub fn closed(warmup: Duration, stop: Stop, tickets: Option<Arc<Tickets>>) -> Pacer {
        let end = match stop {
            Stop::Duration(duration) => Some(warmup + duration),
            Stop::Count(_) => None,
        };
        Pacer {
            mode: Mode::Closed { tickets },
            connection: 0,
            connections: 1,
            sent: 0,
            warmup,
            end,
        }
    }

    /// The intended send time of the run-wide request number `global` at `rate` per second.
    pub fn intended_time(global: u64, rate: u64) -> Duration {
        let nanos = u128::from(global) * NANOS_PER_SECOND / u128::from(rate.max(1));
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// What to do about the next request at `now`; a `Send` hands the request out (call only
    /// when there is room to send it).
    pub fn next(&mut self, now: Duration) -> Next {
        match &self.mode {
            Mode::Open {
                rate,
                warmup_requests,
                total_requests,
            } => {
                let global = self.sent.saturating_mul(self.connections) + self.connection;
                if total_requests.is_some_and(|total| global >= total) {
                    return Next::Done;
                }
                let intended = Pacer::intended_time(global, *rate);
                if self.end.is_some_and(|end| intended >= end) {
                    return Next::Done;
                }
                if intended > now {
                    return Next::WaitUntil(intended);
                }
                let measured = global >= *warmup_requests;
                self.sent += 1;
                Next::Send { intended, measured }
            }
            Mode::Closed { tickets } => {
                if self.end.is_some_and(|end| now >= end) {
                    return Next::Done;
                }
                let measured = now >= self.warmup;
                if measured
                    && let Some(tickets) = tickets
                    && !tickets.take()
                {
                    return Next::Done;
                }
                self.sent += 1;
                Next::Send {
                    intended: now,
                    measured,
                }
            }
        }
    }

    /// End of sending (warm-up included) for a duration run.
    pub fn end(&self) -> Option<Duration> {
        self.end
    }

    /// Requests handed out so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn intended_times_interleave_connections() {
        // 1000/s over 2 connections: connection 1 owns requests 1, 3, 5... at 1, 3, 5 ms.
        let mut pacer = Pacer::open(1000, 1, 2, Duration::ZERO, Stop::Count(10));
        assert_eq!(pacer.next(ms(0)), Next::WaitUntil(ms(1)));
        let mut times = Vec::new();
        while let Next::Send { intended, .. } = pacer.next(ms(1_000)) {
            times.push(intended);
        }
        assert_eq!(times, vec![ms(1), ms(3), ms(5), ms(7), ms(9)]);
        assert_eq!(pacer.next(ms(1_000)), Next::Done);
    }

    #[test]
    fn late_sends_keep_their_intended_time() {
        // A stalled connection that wakes at 50 ms still reports each request's intended time:
        // latency then includes the stall instead of hiding it.
        let mut pacer = Pacer::open(100, 0, 1, Duration::ZERO, Stop::Duration(ms(1_000)));
        let due: Vec<_> = std::iter::from_fn(|| match pacer.next(ms(50)) {
            Next::Send { intended, .. } => Some(intended),
            _ => None,
        })
        .collect();
        assert_eq!(due, vec![ms(0), ms(10), ms(20), ms(30), ms(40), ms(50)]);
        assert_eq!(pacer.next(ms(50)), Next::WaitUntil(ms(60)));
    }

    #[test]
    fn every_request_is_sent_once_over_all_connections() {
        let (rate, connections) = (7_000, 3);
        let mut all = Vec::new();
        for c in 0..connections {
            let mut pacer = Pacer::open(rate, c, connections, ms(100), Stop::Count(1000));
            while let Next::Send { intended, measured } = pacer.next(Duration::MAX) {
                all.push((intended, measured));
            }
        }
        all.sort();
        // 100 ms of warm-up at 7000/s is 700 requests, then 1000 measured ones.
        assert_eq!(all.len(), 1700);
        assert_eq!(all.iter().filter(|(_, measured)| *measured).count(), 1000);
        for (g, (intended, measured)) in all.iter().enumerate() {
            assert_eq!(*intended, Pacer::intended_time(g as u64, rate));
            assert_eq!(*measured, *intended >= ms(100), "request {g}");
        }
    }

    #[test]
    fn duration_runs_end_at_warmup_plus_duration() {
        let mut pacer = Pacer::open(10, 0, 1, ms(200), Stop::Duration(ms(300)));
        let mut sent = Vec::new();
        while let Next::Send { intended, measured } = pacer.next(Duration::MAX) {
            sent.push((intended.as_millis(), measured));
        }
        assert_eq!(
            sent,
            vec![
                (0, false),
                (100, false),
                (200, true),
                (300, true),
                (400, true)
            ]
        );
    }

    #[test]
    fn closed_loop_counts_only_measured_tickets() {
        let tickets = Tickets::new(3);
        let mut a = Pacer::closed(ms(10), Stop::Count(3), Some(tickets.clone()));
        let mut b = Pacer::closed(ms(10), Stop::Count(3), Some(tickets));
        assert_eq!(
            a.next(ms(5)),
            Next::Send {
                intended: ms(5),
                measured: false
            }
        );
        assert_eq!(
            a.next(ms(10)),
            Next::Send {
                intended: ms(10),
                measured: true
            }
        );
        assert_eq!(
            b.next(ms(11)),
            Next::Send {
                intended: ms(11),
                measured: true
            }
        );
        assert_eq!(
            a.next(ms(12)),
            Next::Send {
                intended: ms(12),
                measured: true
            }
        );
        assert_eq!(b.next(ms(13)), Next::Done);
        assert_eq!(a.sent(), 3);
        let mut timed = Pacer::closed(ms(0), Stop::Duration(ms(20)), None);
        assert!(matches!(timed.next(ms(19)), Next::Send { .. }));
        assert_eq!(timed.next(ms(20)), Next::Done);
    }
}
