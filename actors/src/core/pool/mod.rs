//! The upstream pool core, sans-IO: one host, N links. Time is passed in (microseconds), outputs
//! are returned: bytes to write per link ([`PoolCore::take_output`]), socket actions
//! ([`PoolCore::poll_action`]) and results for the shards. The pool actor moves the bytes, opens
//! and closes sockets when told, and feeds in what the links read, with the time.
//!
//! What it does, per issue 5 (Service Gateway):
//! - Links: `Down → Connecting → SigningOn → Up`. A connected link first sends a sign-on (0800,
//!   field 70 = 001) and carries no transactions until the host answers 00; an unanswered or
//!   refused sign-on closes it. A link that has sent nothing for `echo_idle_ms` sends an echo
//!   test (301); `echo_misses_max` unanswered in a row close it. Closed and failed links reconnect
//!   after an exponential backoff with jitter ([`pacing::Backoff`], seeded: deterministic).
//!   Shutdown signs every link off (002) ([`PoolCore::sign_off`], then [`PoolCore::close_all`]).
//! - Transactions: the shards assign each request its terminal id and STAN (one STAN space per
//!   terminal per business day, see `core::shard::stans`); network management takes its STANs
//!   from the top of `terminal_id`'s range, reserved for it ([`NetworkStans`]), so the two never
//!   collide. Requests are built in the host's [`Dialect`] ([`build`]), answers matched by STAN +
//!   MTI class + terminal id + the dialect's answer MTI, as jPOS's QMUX does; timeouts per
//!   request. A late, duplicated or foreign answer matches nothing: logged (host, STAN, MTI,
//!   never the PAN) and counted.
//! - Protection: a circuit breaker per host ([`breaker::Breaker`]), a host-wide in-flight bound
//!   and a token-bucket rate ([`pacing::TokenBucket`]); refusals are immediate `NotSent` results.
//!   A timed-out request counts against the breaker only when the host answered nothing at all
//!   since it was sent: one unanswered request among answered ones is a lost answer (the shard
//!   reverses it), not a dead host.
//! - Every [`HostMetrics`] field is kept current.
//!
//! Time: `now_us` is a monotonic clock (deadlines, backoff, breaker, echo idleness, latency);
//! wall time ([`PoolCore::set_wall_ms`]) only stamps fields 7, 12 and 13 and the RRN, so a step
//! of the wall clock never times out what is in flight.
//!
//! Deadlines are kept per link in send order: with one timeout per host they are already sorted,
//! so expiring them is popping a queue's front.
//!
//! Modules: [`spec`] (validated settings and dialect), [`build`] (messages, no `format!`),
//! [`link`] (one link's state), [`breaker`], [`pacing`] (backoff, token bucket).

pub mod breaker;
pub mod build;
pub mod link;
pub mod pacing;
pub mod spec;

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoFramer, IsoMessage, Mti};
use paymesh_codecs::types::ResultCode;

use self::breaker::Breaker;
use self::build::{FieldWriter, NetworkCode};
pub use self::link::STAN_MAX;
use self::link::{Link, NetPending, PendingKey, TxnPending, Want};
use self::pacing::{Backoff, TokenBucket};
pub use self::spec::OriginalFields;
pub use self::spec::{Dialect, HostSpec, PerOperation};
use super::upstream::{
    UpstreamKind, UpstreamOutcome, UpstreamRequest, UpstreamResult, map_response_code, not_sent,
};
use crate::error::MeshError;
use crate::metrics::{BreakerState, HostMetrics, LinkState};

/// Largest ISO 8583 message accepted from a host.
pub const ISO_MESSAGE_BYTES_MAX: usize = 8 * 1024;
/// Bytes of the reused encoding buffer (grows to the largest message once).
const BODY_BYTES: usize = 512;
/// Microseconds per millisecond.
const US_PER_MS: u64 = 1_000;

/// A result addressed to the shard that asked.
pub type ShardResult = (u16, UpstreamResult);

/// What the pool actor must do with a link's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    /// Open a connection (closing any open one first), then report
    /// [`PoolCore::link_connected`] or [`PoolCore::connect_failed`].
    Connect(usize),
    /// Close the socket; the core has already taken the link down.
    Close(usize),
}

/// MTI class used for matching: the second digit (1 authorization, 2 financial, 4 reversal, 8
/// network management).
fn mti_class(mti: u16) -> u16 {
    (mti / 100) % 10
}

fn timeout_result(p: TxnPending) -> ShardResult {
    (
        p.shard,
        UpstreamResult {
            op_id: p.op_id,
            outcome: UpstreamOutcome::Timeout { sent: p.sent },
        },
    )
}

/// Per-host pool state. See the module docs.
#[derive(Debug)]
pub struct PoolCore {
    spec: HostSpec,
    framer: IsoFramer,
    links: Vec<Link>,
    next_link: usize,
    breaker: Breaker,
    bucket: TokenBucket,
    backoff: Backoff,
    metrics: Arc<HostMetrics>,
    scratch: BytesMut,
    body: BytesMut,
    /// Signing off or closed for good: no transactions, no reconnects.
    stopping: bool,
    /// Results of links taken down outside `poll` (handed out by the next `poll`).
    deferred: Vec<ShardResult>,
    /// Wall-clock unix ms of the current step, for the date and time fields (`None`: derived
    /// from `now_us`, for tests that run the core on wall time).
    wall_ms: Option<u64>,
    /// When the host last sent anything that decoded (monotonic microseconds): a timeout of a
    /// request sent before it is a lost answer, not a dead host.
    last_heard_us: u64,
    /// STANs of network management messages.
    network_stans: NetworkStans,
    /// Links that signed on since the pool started (the shards flush store-and-forward on it).
    sign_ons: u64,
}

/// Microseconds per day.
const DAY_MS: u64 = 86_400_000;

/// The STANs of network management: the top `999,999 - first + 1` of `terminal_id`'s range,
/// one counter for every link of the host per local day. The counter never falls behind the
/// share of the day that has passed (STANs advance at least as fast as the clock over the
/// range), so a router restarted the same day does not reuse the STANs of an earlier run unless
/// that run sent network management faster than the range allows (the default leaves 20,000 a
/// day: a link's echo test every 9 s).
#[derive(Debug, Default)]
struct NetworkStans {
    day: u64,
    next: u64,
    exhausted_warned: bool,
}

impl NetworkStans {
    fn allocate(&mut self, local_ms: u64, first: u32) -> (u32, bool) {
        let count = u64::from(STAN_MAX.saturating_sub(first)) + 1;
        let (day, into_day) = (local_ms / DAY_MS, local_ms % DAY_MS);
        let floor = into_day.saturating_mul(count) / DAY_MS;
        if day != self.day {
            *self = Self {
                day,
                next: floor,
                exhausted_warned: false,
            };
        }
        self.next = self.next.max(floor);
        let wrapped = self.next >= count;
        let stan = u64::from(first) + self.next % count;
        self.next += 1;
        let warn = wrapped && !std::mem::replace(&mut self.exhausted_warned, true);
        (u32::try_from(stan).unwrap_or(STAN_MAX), warn)
    }
}

impl PoolCore {
    /// A pool with every link down, jitter seed 0 and metrics of its own.
    pub fn new(spec: HostSpec) -> Self {
        let metrics = Arc::new(HostMetrics::new(spec.name.clone(), spec.links));
        Self::with_metrics(spec, 0, metrics)
    }

    /// A pool with every link down, reconnect jitter drawn from `seed`, counting into `metrics`
    /// (which should have `spec.links` links).
    pub fn with_metrics(spec: HostSpec, seed: u64, metrics: Arc<HostMetrics>) -> Self {
        let links = (0..spec.links).map(|_| Link::default()).collect();
        let framer = IsoFramer::new(spec.header, ISO_MESSAGE_BYTES_MAX);
        for i in 0..spec.links {
            metrics.set_link_state(i, LinkState::Down);
        }
        metrics.set_breaker(BreakerState::Closed);
        Self {
            framer,
            links,
            next_link: 0,
            breaker: Breaker::new(spec.breaker_failures, spec.breaker_open_ms),
            bucket: TokenBucket::new(spec.rate_per_sec),
            backoff: Backoff::new(spec.reconnect, seed),
            metrics,
            scratch: BytesMut::new(),
            body: BytesMut::with_capacity(BODY_BYTES),
            stopping: false,
            deferred: Vec::new(),
            wall_ms: None,
            last_heard_us: 0,
            network_stans: NetworkStans::default(),
            sign_ons: 0,
            spec,
        }
    }

    /// The wall-clock time (unix ms) of the step about to run: it stamps fields 7, 12 and 13
    /// and RRNs only; deadlines run on the monotonic `now_us` the calls take.
    pub fn set_wall_ms(&mut self, wall_ms: u64) {
        self.wall_ms = Some(wall_ms);
    }

    fn stamp_ms(&self, now_us: u64) -> u64 {
        self.wall_ms.unwrap_or(now_us / US_PER_MS)
    }

    /// How many times a link signed on since the pool started: when it grows, the shards send
    /// the store-and-forward messages waiting for this host at once.
    pub fn sign_ons(&self) -> u64 {
        self.sign_ons
    }

    /// The host's settings.
    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }

    /// The framer of this host's links (each link reader keeps a copy).
    pub fn framer(&self) -> IsoFramer {
        self.framer
    }

    /// The host's counters.
    pub fn metrics(&self) -> &Arc<HostMetrics> {
        &self.metrics
    }

    /// Transactions in flight on all links.
    pub fn inflight(&self) -> usize {
        self.links.iter().map(|l| l.pending.len()).sum()
    }

    /// A link's state.
    pub fn link_state(&self, link: usize) -> LinkState {
        self.links.get(link).map_or(LinkState::Down, |l| l.state)
    }

    /// Whether a link carries transactions (signed on, not signing off).
    pub fn is_up(&self, link: usize) -> bool {
        self.links.get(link).is_some_and(Link::carries_transactions)
    }

    /// When a down link will ask to reconnect, microseconds; `None` unless it is down and may.
    pub fn reconnect_at_us(&self, link: usize) -> Option<u64> {
        let l = self.links.get(link)?;
        (l.state == LinkState::Down && !self.stopping).then_some(l.retry_at_us)
    }

    /// The circuit breaker's state.
    pub fn breaker_state(&self) -> BreakerState {
        self.breaker.state()
    }

    /// Whether routes should send transactions here: a link signed on and the breaker closed. A
    /// half-open breaker is probed by the pool itself (an echo test), not by routed traffic.
    pub fn is_available(&self) -> bool {
        !self.stopping
            && self.breaker.state() == BreakerState::Closed
            && self.links.iter().any(Link::carries_transactions)
    }

    /// The next socket action for the actor, if any.
    pub fn poll_action(&mut self) -> Option<LinkAction> {
        self.links
            .iter_mut()
            .enumerate()
            .find_map(|(i, l)| match std::mem::take(&mut l.want) {
                Want::Nothing => None,
                Want::Close => Some(LinkAction::Close(i)),
                Want::Connect => Some(LinkAction::Connect(i)),
            })
    }

    /// Bytes ready to write on a link.
    pub fn take_output(&mut self, link: usize) -> Option<Bytes> {
        let l = self.links.get_mut(link)?;
        (!l.out.is_empty()).then(|| l.out.split().freeze())
    }

    /// A link's TCP connection is open: it signs on (or, for hosts without network management,
    /// is up at once).
    pub fn link_connected(&mut self, link: usize, now_us: u64) {
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        l.out.clear();
        l.want = Want::Nothing;
        l.last_sent_us = now_us;
        if let Some(m) = self.metrics.links.get(link) {
            m.connects.inc();
        }
        if self.stopping {
            self.down(link, now_us, false, Want::Close);
            return;
        }
        if !self.spec.sign_on {
            self.signed_on(link);
            return;
        }
        self.set_state(link, LinkState::SigningOn);
        if !self.send_network(link, now_us, NetworkCode::SignOn) {
            self.down(link, now_us, true, Want::Close);
        }
    }

    /// A connect attempt failed: retry after the backoff.
    pub fn connect_failed(&mut self, link: usize, now_us: u64) {
        self.down(link, now_us, true, Want::Nothing);
    }

    /// The link's connection closed or failed: what was in flight on it has an unknown outcome.
    pub fn link_lost(&mut self, link: usize, now_us: u64, out: &mut Vec<ShardResult>) {
        let busy = self.links.get(link).is_some_and(Link::awaits_answers);
        self.down(link, now_us, busy, Want::Nothing);
        out.append(&mut self.deferred);
        self.publish_gauges();
    }

    /// Places a request on a link, or says at once why it cannot be sent (`NotSent`).
    pub fn submit(&mut self, now_us: u64, req: UpstreamRequest) -> Result<(), Box<ShardResult>> {
        let placed = self.place(now_us, &req);
        self.publish_gauges();
        match placed {
            Ok(()) => Ok(()),
            Err(code) => {
                self.metrics.refused.inc();
                Err(Box::new((req.shard, not_sent(req.op_id, code))))
            }
        }
    }

    /// A link signed on with room, on which `key` (a STAN the shard assigned, with its MTI class
    /// and terminal) is not already pending.
    fn choose_link(&self, key: Option<&PendingKey>) -> Result<usize, ResultCode> {
        let n = self.links.len();
        let mut any_up = false;
        for i in 0..n {
            let idx = (self.next_link + i) % n;
            if let Some(l) = self.links.get(idx)
                && l.carries_transactions()
            {
                any_up = true;
                let free = key.is_none_or(|k| !l.pending.contains_key(k));
                if free && l.pending.len() < self.spec.inflight_per_link_max {
                    return Ok(idx);
                }
            }
        }
        Err(match any_up {
            true => ResultCode::Busy,
            false => ResultCode::UpstreamUnavailable,
        })
    }

    /// The link a request may go on now, or why it may not go at all: the host's currency, a
    /// link signed on with room, the host's in-flight bound, the breaker.
    fn admit(
        &mut self,
        now_us: u64,
        req: &UpstreamRequest,
        key: Option<&PendingKey>,
    ) -> Result<usize, ResultCode> {
        if self
            .spec
            .dialect
            .host_currency
            .is_some_and(|c| req.currency != 0 && req.currency != c)
        {
            return Err(ResultCode::UnsupportedCurrency);
        }
        if self.stopping {
            return Err(ResultCode::UpstreamUnavailable);
        }
        let idx = self.choose_link(key)?;
        if self.inflight() >= self.spec.inflight_max {
            return Err(ResultCode::Busy);
        }
        if self.breaker.tick(now_us) {
            self.metrics.set_breaker(self.breaker.state());
        }
        if !self.breaker.allows() {
            return Err(ResultCode::UpstreamUnavailable);
        }
        Ok(idx)
    }

    /// Builds, checks and queues a request on an admitted link; then the rate limit applies.
    fn place(&mut self, now_us: u64, req: &UpstreamRequest) -> Result<(), ResultCode> {
        let mti = self.spec.dialect.request_mti(req.kind, req.repeat);
        let class = mti_class(mti);
        let at_ms = match req.sent_at_ms {
            0 => self.stamp_ms(now_us),
            at => at,
        };
        let mut w = FieldWriter::new(&mut self.scratch);
        let terminal = build::transaction_terminal(&self.spec, req, &mut w);
        // The shard's STAN when it assigned one (so replay knows it), else the link's next.
        let assigned = (req.stan != 0).then(|| (req.stan, class, terminal.clone()));
        let idx = self.admit(now_us, req, assigned.as_ref())?;
        let d = &self.spec.dialect;
        let Some(link) = self.links.get_mut(idx) else {
            return Err(ResultCode::UpstreamUnavailable);
        };
        let stan = match assigned {
            Some((stan, _, _)) => stan,
            None => link.allocate_stan(class, &terminal, self.spec.network_stan_first),
        };
        let mut w = FieldWriter::new(&mut self.scratch);
        let built = build::transaction(&self.spec, at_ms, mti, stan, req, terminal, &mut w)
            .map_err(|e| {
                tracing::warn!(host = %self.spec.name, kind = ?req.kind, error = %e, "request does not fit the host's dialect; refused");
                ResultCode::InvalidRequest
            })?;
        // Reversals are exempt: they carry what identifies the original (field 90), and refusing
        // one would leave the original standing.
        if req.kind != UpstreamKind::Reversal
            && let Some(field) = d.required_fields.iter().find(|f| !built.msg.contains(**f))
        {
            tracing::warn!(host = %self.spec.name, kind = ?req.kind, field, "request lacks a field the host requires; refused");
            return Err(ResultCode::InvalidRequest);
        }
        if !self.bucket.try_take(now_us) {
            return Err(ResultCode::Busy);
        }
        self.body.clear();
        if built.msg.encode(self.spec.profile, &mut self.body).is_err()
            || self.framer.encode(&self.body, &mut link.out).is_err()
        {
            return Err(ResultCode::InvalidRequest);
        }
        self.breaker.on_sent();
        let deadline_us = now_us.saturating_add(self.spec.timeout_ms.saturating_mul(US_PER_MS));
        let key = (stan, class, built.terminal.clone());
        link.deadlines.push_back((deadline_us, key.clone()));
        link.pending.insert(
            key,
            TxnPending {
                op_id: req.op_id,
                shard: req.shard,
                kind: req.kind,
                sent: built.sent,
                answer_mti: d.answer_mti(req.kind),
                terminal: built.terminal,
                sent_us: now_us,
                deadline_us,
            },
        );
        link.last_sent_us = now_us;
        link.compact_deadlines(self.spec.inflight_per_link_max);
        self.next_link = idx + 1;
        if let Some(m) = self.metrics.links.get(idx) {
            m.requests.inc();
        }
        match req.kind {
            UpstreamKind::Reversal => self.metrics.reversals_sent.inc(),
            _ => self.metrics.requests.inc(),
        }
        Ok(())
    }

    /// Matches one message read from a link. Network management answers drive the link and return
    /// `Ok(None)`; so do answers that match nothing (late, duplicate, foreign), which are logged
    /// and counted. A message that does not decode is an error (counted as unmatched).
    pub fn on_message(
        &mut self,
        link: usize,
        now_us: u64,
        bytes: Bytes,
    ) -> Result<Option<ShardResult>, MeshError> {
        let msg = match IsoMessage::decode(self.spec.profile, bytes) {
            Ok(m) => m,
            Err(e) => {
                self.metrics.unmatched.inc();
                return Err(e.into());
            }
        };
        // The host is alive, whatever the message answers.
        self.last_heard_us = self.last_heard_us.max(now_us);
        let Ok(Some(stan)) = msg.stan() else {
            self.unmatched(link, None, msg.mti());
            return Ok(None);
        };
        if mti_class(msg.mti().number()) == 8 {
            if !self.on_network_answer(link, now_us, stan, &msg) {
                self.unmatched(link, Some(stan), msg.mti());
            }
            self.publish_gauges();
            return Ok(None);
        }
        let result = self.match_transaction(link, now_us, stan, &msg);
        if result.is_none() {
            self.unmatched(link, Some(stan), msg.mti());
        }
        self.publish_gauges();
        Ok(result)
    }

    fn unmatched(&self, link: usize, stan: Option<u32>, mti: Mti) {
        self.metrics.unmatched.inc();
        tracing::info!(host = %self.spec.name, link, stan = ?stan, mti = %mti, "answer matches nothing pending (late, duplicate or foreign); ignored");
    }

    fn match_transaction(
        &mut self,
        link: usize,
        now_us: u64,
        stan: u32,
        msg: &IsoMessage,
    ) -> Option<ShardResult> {
        let mti = msg.mti().number();
        let terminal_field = self.spec.dialect.terminal_id_field;
        // The answer's terminal id picks among requests of the same STAN on other terminals; an
        // answer without one can only be the request sent without one... or, for hosts that
        // drop field 41 from answers, the one request of that STAN in flight on the link.
        let terminal = terminal_field
            .and_then(|f| msg.get(f).cloned())
            .unwrap_or_default();
        let l = self.links.get_mut(link)?;
        let key = match l
            .pending
            .contains_key(&(stan, mti_class(mti), terminal.clone()))
        {
            true => (stan, mti_class(mti), terminal),
            false if terminal.is_empty() => {
                let mut same = l
                    .pending
                    .keys()
                    .filter(|k| k.0 == stan && k.1 == mti_class(mti));
                match (same.next(), same.next()) {
                    (Some(k), None) => k.clone(),
                    _ => return None,
                }
            }
            false => return None,
        };
        let p = l.pending.get(&key)?;
        if mti != p.answer_mti {
            // Right STAN, wrong answer type: not ours after all.
            return None;
        }
        let p = l.pending.remove(&key)?;
        l.echo_misses = 0;
        let response_code = msg
            .response_code()
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"96"));
        let result = map_response_code(&response_code);
        self.metrics
            .latency
            .observe_us(now_us.saturating_sub(p.sent_us));
        let host_failing = result == ResultCode::IssuerUnavailable;
        match (p.kind, result) {
            (UpstreamKind::Reversal, _) if !host_failing => {
                self.metrics.reversals_acknowledged.inc()
            }
            (UpstreamKind::Reversal, _) => {}
            (_, ResultCode::Approved) => self.metrics.approvals.inc(),
            _ => self.metrics.declines.inc(),
        }
        match host_failing {
            true => self.failure(now_us),
            false => self.success(),
        }
        let outcome = UpstreamOutcome::Answered {
            result,
            response_code,
            approval_code: msg.approval_code().cloned().unwrap_or_default(),
            sent: p.sent,
            balance: msg.get(54).and_then(|v| parse_balance(v)),
        };
        Some((
            p.shard,
            UpstreamResult {
                op_id: p.op_id,
                outcome,
            },
        ))
    }

    /// An 0810: the answer to a sign-on, echo or sign-off out on this link, or nothing.
    fn on_network_answer(&mut self, link: usize, now_us: u64, stan: u32, msg: &IsoMessage) -> bool {
        let code = msg.response_code().cloned().unwrap_or_default();
        let approved = code.as_ref() == b"00";
        let Some(l) = self.links.get_mut(link) else {
            return false;
        };
        let is = |p: Option<NetPending>| p.is_some_and(|p| p.stan == stan);
        if is(l.sign_on) {
            l.sign_on = None;
            if approved && l.state == LinkState::SigningOn {
                self.signed_on(link);
                self.success();
                tracing::info!(host = %self.spec.name, link, "upstream link signed on");
            } else {
                tracing::warn!(host = %self.spec.name, link, code = %String::from_utf8_lossy(&code), "sign-on refused; closing the link");
                self.down(link, now_us, true, Want::Close);
            }
        } else if is(l.echo) {
            l.echo = None;
            l.echo_misses = 0;
            self.success();
        } else if is(l.sign_off) {
            l.sign_off = None;
            tracing::info!(host = %self.spec.name, link, "upstream link signed off");
            self.down(link, now_us, false, Want::Close);
        } else {
            return false;
        }
        true
    }

    /// Expires what is due at `now_us`, sends echo tests and probes, schedules reconnects, and
    /// hands out every result produced since the last call.
    pub fn poll(&mut self, now_us: u64, out: &mut Vec<ShardResult>) {
        self.expire_transactions(now_us);
        self.expire_network(now_us);
        if self.breaker.tick(now_us) {
            self.metrics.set_breaker(self.breaker.state());
            tracing::info!(host = %self.spec.name, "circuit breaker half-open: probing the host");
        }
        self.send_probes_and_echoes(now_us);
        self.schedule_connects(now_us);
        out.append(&mut self.deferred);
        self.publish_gauges();
    }

    fn expire_transactions(&mut self, now_us: u64) {
        for i in 0..self.links.len() {
            while let Some(l) = self.links.get_mut(i)
                && l.deadlines.front().is_some_and(|(d, _)| *d <= now_us)
            {
                let Some((deadline, key)) = l.deadlines.pop_front() else {
                    break;
                };
                let due = l
                    .pending
                    .get(&key)
                    .is_some_and(|p| p.deadline_us == deadline);
                if due && let Some(p) = l.pending.remove(&key) {
                    self.metrics.timeouts.inc();
                    // Answers to later requests came while this one waited: the host is up and
                    // this answer was lost (or the host dropped it). The shard reverses it; the
                    // breaker is for hosts that answer nothing.
                    let host_silent = self.last_heard_us <= p.sent_us;
                    self.deferred.push(timeout_result(p));
                    if host_silent {
                        self.failure(now_us);
                    }
                }
            }
        }
    }

    fn expire_network(&mut self, now_us: u64) {
        let due = |p: Option<NetPending>| p.is_some_and(|p| p.deadline_us <= now_us);
        for i in 0..self.links.len() {
            let Some(l) = self.links.get_mut(i) else {
                continue;
            };
            if due(l.sign_on) {
                tracing::warn!(host = %self.spec.name, link = i, "sign-on unanswered; closing the link");
                self.down(i, now_us, true, Want::Close);
                continue;
            }
            if due(l.sign_off) {
                l.sign_off = None;
                self.down(i, now_us, false, Want::Close);
                continue;
            }
            if due(l.echo) {
                l.echo = None;
                l.echo_misses = l.echo_misses.saturating_add(1);
                let misses = l.echo_misses;
                self.failure(now_us);
                if misses >= self.spec.echo_misses_max {
                    tracing::warn!(host = %self.spec.name, link = i, misses, "echo tests unanswered; closing the link");
                    self.down(i, now_us, false, Want::Close);
                }
            }
        }
    }

    fn send_probes_and_echoes(&mut self, now_us: u64) {
        if !self.spec.sign_on || self.stopping {
            return;
        }
        if self.breaker.state() == BreakerState::HalfOpen
            && self.breaker.allows()
            && let Some(i) = self
                .links
                .iter()
                .position(|l| l.carries_transactions() && l.echo.is_none())
            && self.send_network(i, now_us, NetworkCode::Echo)
        {
            self.breaker.on_sent();
        }
        if self.spec.echo_idle_ms == 0 {
            return;
        }
        let idle_us = self.spec.echo_idle_ms.saturating_mul(US_PER_MS);
        for i in 0..self.links.len() {
            let due = self.links.get(i).is_some_and(|l| {
                l.carries_transactions()
                    && l.echo.is_none()
                    && now_us.saturating_sub(l.last_sent_us) >= idle_us
            });
            if due {
                self.send_network(i, now_us, NetworkCode::Echo);
            }
        }
    }

    fn schedule_connects(&mut self, now_us: u64) {
        if self.stopping {
            return;
        }
        for i in 0..self.links.len() {
            let due = self
                .links
                .get(i)
                .is_some_and(|l| l.state == LinkState::Down && now_us >= l.retry_at_us);
            if due {
                self.set_state(i, LinkState::Connecting);
                if let Some(l) = self.links.get_mut(i) {
                    l.want = Want::Connect;
                }
            }
        }
    }

    /// Shutdown, first step: no more transactions or reconnects; every signed-on link sends a
    /// sign-off (0800, 002) and closes when it is answered or times out; links not yet signed on
    /// close now. Returns the sign-offs sent.
    pub fn sign_off(&mut self, now_us: u64) -> usize {
        self.stopping = true;
        let mut sent = 0;
        for i in 0..self.links.len() {
            match self.link_state(i) {
                LinkState::Up if self.spec.sign_on => {
                    if self.send_network(i, now_us, NetworkCode::SignOff) {
                        if let Some(l) = self.links.get_mut(i) {
                            l.signing_off = true;
                        }
                        sent += 1;
                    } else {
                        self.down(i, now_us, false, Want::Close);
                    }
                }
                LinkState::Up | LinkState::Down => {}
                LinkState::Connecting | LinkState::SigningOn => {
                    self.down(i, now_us, false, Want::Close)
                }
            }
        }
        self.publish_gauges();
        sent
    }

    /// Whether a sign-off is still waiting for its answer.
    pub fn signing_off(&self) -> bool {
        self.links.iter().any(|l| l.sign_off.is_some())
    }

    /// Shutdown, last step: every link closes for good; what was in flight has an unknown outcome.
    pub fn close_all(&mut self, now_us: u64, out: &mut Vec<ShardResult>) {
        self.stopping = true;
        for i in 0..self.links.len() {
            if self.link_state(i) != LinkState::Down {
                self.down(i, now_us, false, Want::Close);
            }
        }
        out.append(&mut self.deferred);
        self.publish_gauges();
    }

    /// Encodes and queues an 0800 on `link`, remembering it as out. `false` if it could not be
    /// built (a host setting the profile refuses: a bug caught at start-up).
    fn send_network(&mut self, link: usize, now_us: u64, code: NetworkCode) -> bool {
        let deadline_us = now_us.saturating_add(self.spec.timeout_ms.saturating_mul(US_PER_MS));
        let wall_ms = self.stamp_ms(now_us);
        let local_ms = local_ms(wall_ms, self.spec.local_offset_minutes);
        let first = self.spec.network_stan_first;
        let (stan, warn) = self.network_stans.allocate(local_ms, first);
        if warn {
            tracing::warn!(host = %self.spec.name, first, "network management STANs of the day used up; they start again from the first (raise network_stans)");
        }
        let Some(l) = self.links.get_mut(link) else {
            return false;
        };
        let mut w = FieldWriter::new(&mut self.scratch);
        let msg = match build::network(&self.spec, wall_ms, stan, code, &mut w) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(host = %self.spec.name, link, error = %e, what = code.name(), "cannot build a network management message");
                return false;
            }
        };
        self.body.clear();
        if msg.encode(self.spec.profile, &mut self.body).is_err()
            || self.framer.encode(&self.body, &mut l.out).is_err()
        {
            return false;
        }
        let out = Some(NetPending { stan, deadline_us });
        match code {
            NetworkCode::SignOn => l.sign_on = out,
            NetworkCode::SignOff => l.sign_off = out,
            NetworkCode::Echo => l.echo = out,
        }
        l.last_sent_us = now_us;
        if let Some(m) = self.metrics.links.get(link) {
            m.requests.inc();
        }
        true
    }

    fn signed_on(&mut self, link: usize) {
        if let Some(l) = self.links.get_mut(link) {
            l.failed_attempts = 0;
            l.echo_misses = 0;
        }
        self.sign_ons += 1;
        self.set_state(link, LinkState::Up);
    }

    /// Takes a link down: in-flight transactions time out (unknown outcome), a reconnect is
    /// scheduled after the backoff, and the actor is told `want`.
    fn down(&mut self, link: usize, now_us: u64, failure: bool, want: Want) {
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        let lost = l.reset();
        l.want = want;
        let delay_us = self.backoff.delay_us(l.failed_attempts);
        l.failed_attempts = l.failed_attempts.saturating_add(1);
        l.retry_at_us = now_us.saturating_add(delay_us);
        self.set_state(link, LinkState::Down);
        for p in lost {
            self.metrics.timeouts.inc();
            self.deferred.push(timeout_result(p));
        }
        if failure {
            self.failure(now_us);
        }
    }

    fn set_state(&mut self, link: usize, state: LinkState) {
        if let Some(l) = self.links.get_mut(link) {
            l.state = state;
        }
        self.metrics.set_link_state(link, state);
    }

    fn failure(&mut self, now_us: u64) {
        if self.breaker.on_failure(now_us) {
            self.metrics.set_breaker(self.breaker.state());
            tracing::warn!(host = %self.spec.name, open_ms = self.spec.breaker_open_ms, "circuit breaker open: refusing transactions");
        }
    }

    fn success(&mut self) {
        if self.breaker.on_success() {
            self.metrics.set_breaker(self.breaker.state());
            tracing::info!(host = %self.spec.name, "circuit breaker closed");
        }
    }

    fn publish_gauges(&self) {
        let mut total = 0;
        for (l, m) in self.links.iter().zip(&self.metrics.links) {
            total += l.pending.len();
            m.inflight.set(l.pending.len() as u64);
        }
        self.metrics.inflight.set(total as u64);
    }
}

/// Unix ms shifted to local time (for the local day), never below zero.
fn local_ms(wall_ms: u64, offset_minutes: i32) -> u64 {
    let offset_ms = i64::from(offset_minutes) * 60_000;
    (wall_ms as i64).saturating_add(offset_ms).max(0) as u64
}

/// Field 54 additional amounts: account type (2), amount type (2), currency (3), sign C/D (1),
/// amount (12).
fn parse_balance(v: &[u8]) -> Option<u64> {
    let digits = v.get(8..20)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
