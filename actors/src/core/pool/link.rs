//! One link's state in the pool core: its [`LinkState`], the transactions in flight (matched by
//! STAN + MTI class + terminal id) with their deadlines in send order, the network management
//! requests out (at most one sign-on, one echo and one sign-off), bytes to write, idle time and
//! reconnect schedule. A STAN counter remains for requests that come without one (tests and
//! tools; the shards always assign theirs).

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};

use crate::core::upstream::{OriginalRef, UpstreamKind};
use crate::metrics::LinkState;

/// STANs run 1..=999999 (six digits).
pub use crate::core::upstream::STAN_MAX;

/// What a transaction in flight is matched by: STAN, MTI class, terminal id (empty when the
/// dialect sends none).
pub type PendingKey = (u32, u16, Bytes);

/// A transaction in flight.
#[derive(Debug)]
pub struct TxnPending {
    /// The shard's op id.
    pub op_id: u64,
    /// The shard to answer.
    pub shard: u16,
    /// Operation.
    pub kind: UpstreamKind,
    /// What was sent.
    pub sent: OriginalRef,
    /// The MTI the answer must have.
    pub answer_mti: u16,
    /// The terminal id sent (an answer carrying another is not ours); empty when none is sent.
    pub terminal: Bytes,
    /// When it was sent, microseconds.
    pub sent_us: u64,
    /// When it times out, microseconds.
    pub deadline_us: u64,
}

/// A network management request out.
#[derive(Debug, Clone, Copy)]
pub struct NetPending {
    /// Its STAN.
    pub stan: u32,
    /// When it counts as unanswered, microseconds.
    pub deadline_us: u64,
}

/// What the pool actor should do with a link's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Want {
    /// Nothing.
    #[default]
    Nothing,
    /// Close the socket (the core has already marked the link down).
    Close,
    /// Close the socket if one is open, then connect.
    Connect,
}

/// One link.
#[derive(Debug)]
pub struct Link {
    /// Where the link is.
    pub state: LinkState,
    /// Sign-off sent: no more transactions; closed when answered.
    pub signing_off: bool,
    /// Next STAN to try.
    pub next_stan: u32,
    /// Transactions in flight by (STAN, MTI class, terminal id).
    pub pending: HashMap<PendingKey, TxnPending>,
    /// (deadline, key) in send order; entries of answered requests are skipped lazily.
    pub deadlines: VecDeque<(u64, PendingKey)>,
    /// The sign-on out.
    pub sign_on: Option<NetPending>,
    /// The echo test out.
    pub echo: Option<NetPending>,
    /// The sign-off out.
    pub sign_off: Option<NetPending>,
    /// Encoded messages not yet taken by the actor.
    pub out: BytesMut,
    /// When the link last sent something, microseconds (for echo tests).
    pub last_sent_us: u64,
    /// Echo tests unanswered in a row.
    pub echo_misses: u32,
    /// Failed connects and sign-ons since the link was last up (the backoff exponent).
    pub failed_attempts: u32,
    /// When a down link may connect again, microseconds.
    pub retry_at_us: u64,
    /// What the actor should do with the socket.
    pub want: Want,
}

impl Default for Link {
    fn default() -> Self {
        Self {
            state: LinkState::Down,
            signing_off: false,
            next_stan: 1,
            pending: HashMap::new(),
            deadlines: VecDeque::new(),
            sign_on: None,
            echo: None,
            sign_off: None,
            out: BytesMut::new(),
            last_sent_us: 0,
            echo_misses: 0,
            failed_attempts: 0,
            retry_at_us: 0,
            want: Want::Nothing,
        }
    }
}

impl Link {
    /// Whether transactions may be placed on the link.
    pub fn carries_transactions(&self) -> bool {
        self.state == LinkState::Up && !self.signing_off
    }

    /// Whether anything (transaction or network management request) awaits an answer.
    pub fn awaits_answers(&self) -> bool {
        !self.pending.is_empty()
            || self.sign_on.is_some()
            || self.echo.is_some()
            || self.sign_off.is_some()
    }

    /// Whether a network management request out uses `stan`.
    pub fn network_uses(&self, stan: u32) -> bool {
        [self.sign_on, self.echo, self.sign_off]
            .iter()
            .flatten()
            .any(|p| p.stan == stan)
    }

    /// The next STAN below `stan_end` free for MTI class `class` on `terminal`, for a request
    /// that came without one.
    pub fn allocate_stan(&mut self, class: u16, terminal: &Bytes, stan_end: u32) -> u32 {
        let top = stan_end.saturating_sub(1).max(1);
        let mut stan = self.next_stan.clamp(1, top);
        for _ in 0..top {
            if !self.pending.contains_key(&(stan, class, terminal.clone())) {
                break;
            }
            stan = if stan >= top { 1 } else { stan + 1 };
        }
        self.next_stan = if stan >= top { 1 } else { stan + 1 };
        stan
    }

    /// Forgets the deadlines of answered requests once they outnumber the live ones by far, so
    /// the queue stays bounded by the in-flight limit rather than by the traffic of one timeout.
    pub fn compact_deadlines(&mut self, inflight_max: usize) {
        if self.deadlines.len() <= inflight_max.saturating_mul(2).max(64) {
            return;
        }
        let pending = &self.pending;
        self.deadlines
            .retain(|(deadline, key)| pending.get(key).is_some_and(|p| p.deadline_us == *deadline));
    }

    /// Back to the state of a link that never connected, keeping the STAN counter and the
    /// reconnect schedule. Returns the transactions that were in flight.
    pub fn reset(&mut self) -> Vec<TxnPending> {
        self.state = LinkState::Down;
        self.signing_off = false;
        self.sign_on = None;
        self.echo = None;
        self.sign_off = None;
        self.out.clear();
        self.deadlines.clear();
        self.echo_misses = 0;
        self.pending.drain().map(|(_, p)| p).collect()
    }
}
