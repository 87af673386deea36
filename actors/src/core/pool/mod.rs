//! The upstream pool core, sans-IO: one host, N links. It allocates STANs per link, builds ISO 8583
//! requests in the host's profile, matches answers by STAN + terminal id + MTI class (as jPOS's QMUX
//! does), and times requests out. The pool actor moves the bytes it produces and feeds it what the
//! links read, with the time.
//!
//! Deadlines are kept per link in send order: with one timeout per host they are already sorted, so
//! expiring them is popping a queue's front.

use std::collections::{HashMap, VecDeque};

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoFramer, IsoMessage, LengthHeader, Mti, Profile};
use paymesh_codecs::types::ResultCode;

use super::clock::{civil, day_of_year};
use super::config::HostConfig;
use super::upstream::{
    Account, OriginalRef, UpstreamKind, UpstreamOutcome, UpstreamRequest, UpstreamResult, iso_mti,
    map_response_code, processing_code,
};
use crate::error::MeshError;

/// Largest ISO 8583 message accepted from a host.
pub const ISO_MESSAGE_BYTES_MAX: usize = 8 * 1024;
/// STANs run 1..=999999 (six digits) and wrap.
pub const STAN_MAX: u32 = 999_999;

/// A host's settings as the pool core uses them.
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// Host name (for logs).
    pub name: String,
    /// ISO 8583 profile.
    pub profile: &'static Profile,
    /// Length header on the links.
    pub header: LengthHeader,
    /// Response timeout.
    pub timeout_ms: u64,
    /// In-flight bound per link.
    pub inflight_per_link_max: usize,
    /// Field 41, 8 characters.
    pub terminal_id: Bytes,
    /// Field 32.
    pub acquirer_id: Bytes,
    /// Number of links.
    pub links: usize,
}

impl HostSpec {
    /// Validates a host's configuration.
    pub fn from_config(c: &HostConfig) -> Result<Self, MeshError> {
        let profile = match c.profile.as_str() {
            "ascii_1987" => Profile::ascii_1987(),
            "binary_bcd" => Profile::binary_bcd(),
            other => {
                return Err(MeshError::Config(format!(
                    "host {}: unknown profile {other:?}",
                    c.name
                )));
            }
        };
        let header = match c.length_header.as_str() {
            "binary2" => LengthHeader::Binary2,
            "ascii4" => LengthHeader::Ascii4,
            "bcd2" => LengthHeader::Bcd2,
            other => {
                return Err(MeshError::Config(format!(
                    "host {}: unknown length header {other:?} (a stream needs one)",
                    c.name
                )));
            }
        };
        if c.terminal_id.len() != 8 {
            return Err(MeshError::Config(format!(
                "host {}: terminal_id must be 8 characters",
                c.name
            )));
        }
        if c.acquirer_id.is_empty()
            || c.acquirer_id.len() > 11
            || !c.acquirer_id.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(MeshError::Config(format!(
                "host {}: acquirer_id must be 1..11 digits",
                c.name
            )));
        }
        Ok(Self {
            name: c.name.clone(),
            profile,
            header,
            timeout_ms: c.timeout_ms.max(1),
            inflight_per_link_max: c.inflight_per_link_max.max(1),
            terminal_id: Bytes::copy_from_slice(c.terminal_id.as_bytes()),
            acquirer_id: Bytes::copy_from_slice(c.acquirer_id.as_bytes()),
            links: c.links.max(1),
        })
    }
}

/// MTI class used for matching: the third digit group (1 authorization, 2 financial, 4 reversal, 8
/// network management).
fn mti_class(mti: u16) -> u16 {
    (mti / 100) % 10
}

#[derive(Debug)]
struct Pending {
    op_id: u64,
    shard: u16,
    kind: UpstreamKind,
    sent: OriginalRef,
    deadline_ms: u64,
}

#[derive(Debug, Default)]
struct Link {
    up: bool,
    next_stan: u32,
    pending: HashMap<(u32, u16), Pending>,
    deadlines: VecDeque<(u64, u32, u16)>,
    out: BytesMut,
}

/// Per-host pool state.
#[derive(Debug)]
pub struct PoolCore {
    spec: HostSpec,
    framer: IsoFramer,
    links: Vec<Link>,
    next_link: usize,
}

/// A result addressed to the shard that asked.
pub type ShardResult = (u16, UpstreamResult);

impl PoolCore {
    /// A pool with every link down.
    pub fn new(spec: HostSpec) -> Self {
        let links = (0..spec.links)
            .map(|_| Link {
                next_stan: 1,
                ..Link::default()
            })
            .collect();
        let framer = IsoFramer::new(spec.header, ISO_MESSAGE_BYTES_MAX);
        Self {
            spec,
            framer,
            links,
            next_link: 0,
        }
    }

    /// The host's settings.
    pub fn spec(&self) -> &HostSpec {
        &self.spec
    }

    /// Requests in flight on all links.
    pub fn inflight(&self) -> usize {
        self.links.iter().map(|l| l.pending.len()).sum()
    }

    /// Marks a link connected.
    pub fn link_up(&mut self, link: usize) {
        if let Some(l) = self.links.get_mut(link) {
            l.up = true;
            l.out.clear();
        }
    }

    /// Marks a link down: what was in flight on it has an unknown outcome.
    pub fn link_down(&mut self, link: usize, out: &mut Vec<ShardResult>) {
        let Some(l) = self.links.get_mut(link) else {
            return;
        };
        l.up = false;
        l.out.clear();
        l.deadlines.clear();
        for (_, p) in l.pending.drain() {
            out.push((
                p.shard,
                UpstreamResult {
                    op_id: p.op_id,
                    outcome: UpstreamOutcome::Timeout { sent: p.sent },
                },
            ));
        }
    }

    /// Whether a link is up.
    pub fn is_up(&self, link: usize) -> bool {
        self.links.get(link).is_some_and(|l| l.up)
    }

    /// Bytes ready to write on a link.
    pub fn take_output(&mut self, link: usize) -> Option<Bytes> {
        let l = self.links.get_mut(link)?;
        (!l.out.is_empty()).then(|| l.out.split().freeze())
    }

    /// Places a request on a link, or says why it cannot be sent.
    pub fn submit(&mut self, now_ms: u64, req: UpstreamRequest) -> Result<(), Box<ShardResult>> {
        let refuse = |req: &UpstreamRequest, result| {
            Box::new((req.shard, super::upstream::not_sent(req.op_id, result)))
        };
        let n = self.links.len();
        let mut chosen = None;
        let mut any_up = false;
        for i in 0..n {
            let idx = (self.next_link + i) % n;
            if let Some(l) = self.links.get(idx) {
                any_up |= l.up;
                if l.up && l.pending.len() < self.spec.inflight_per_link_max {
                    chosen = Some(idx);
                    break;
                }
            }
        }
        let Some(idx) = chosen else {
            let code = if any_up {
                ResultCode::Busy
            } else {
                ResultCode::UpstreamUnavailable
            };
            return Err(refuse(&req, code));
        };
        self.next_link = idx + 1;
        let Some(link) = self.links.get_mut(idx) else {
            return Err(refuse(&req, ResultCode::UpstreamUnavailable));
        };
        let mti = iso_mti(req.kind);
        let class = mti_class(mti);
        let mut stan = link.next_stan;
        let mut tries = 0;
        while link.pending.contains_key(&(stan, class)) && tries < STAN_MAX {
            stan = if stan >= STAN_MAX { 1 } else { stan + 1 };
            tries += 1;
        }
        link.next_stan = if stan >= STAN_MAX { 1 } else { stan + 1 };
        let msg = match build_request(&self.spec, now_ms, mti, stan, &req) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(host = %self.spec.name, error = %e, "request does not fit the host's profile");
                return Err(refuse(&req, ResultCode::InvalidRequest));
            }
        };
        let mut body = BytesMut::with_capacity(256);
        if msg.0.encode(self.spec.profile, &mut body).is_err()
            || self.framer.encode(&body, &mut link.out).is_err()
        {
            return Err(refuse(&req, ResultCode::InvalidRequest));
        }
        let deadline_ms = now_ms + self.spec.timeout_ms;
        link.deadlines.push_back((deadline_ms, stan, class));
        link.pending.insert(
            (stan, class),
            Pending {
                op_id: req.op_id,
                shard: req.shard,
                kind: req.kind,
                sent: msg.1,
                deadline_ms,
            },
        );
        Ok(())
    }

    /// The framer of this host's links (each link reader keeps a copy).
    pub fn framer(&self) -> IsoFramer {
        self.framer
    }

    /// Matches one message read from a link. Unmatched answers (late, duplicate, foreign) return
    /// `Ok(None)`: they change nothing.
    pub fn on_message(
        &mut self,
        link: usize,
        bytes: Bytes,
    ) -> Result<Option<ShardResult>, MeshError> {
        let msg = IsoMessage::decode(self.spec.profile, bytes)?;
        let mti = msg.mti().number();
        let Some(stan) = msg.stan()? else {
            return Ok(None);
        };
        if msg
            .terminal_id()
            .is_some_and(|t| t.as_ref() != self.spec.terminal_id.as_ref())
        {
            return Ok(None);
        }
        let Some(l) = self.links.get_mut(link) else {
            return Ok(None);
        };
        let Some(p) = l.pending.remove(&(stan, mti_class(mti))) else {
            return Ok(None);
        };
        if mti != iso_mti(p.kind) + 10 {
            // Right STAN, wrong answer type: not ours after all.
            l.pending.insert((stan, mti_class(mti)), p);
            return Ok(None);
        }
        let response_code = msg
            .response_code()
            .cloned()
            .unwrap_or_else(|| Bytes::from_static(b"96"));
        let result = map_response_code(&response_code);
        let approval_code = msg.approval_code().cloned().unwrap_or_default();
        let balance = msg.get(54).and_then(|v| parse_balance(v));
        let outcome = UpstreamOutcome::Answered {
            result,
            response_code,
            approval_code,
            sent: p.sent,
            balance,
        };
        Ok(Some((
            p.shard,
            UpstreamResult {
                op_id: p.op_id,
                outcome,
            },
        )))
    }

    /// Times out what is due at `now_ms`.
    pub fn poll_timeouts(&mut self, now_ms: u64, out: &mut Vec<ShardResult>) {
        for l in &mut self.links {
            while let Some(&(deadline, stan, class)) = l.deadlines.front() {
                if deadline > now_ms {
                    break;
                }
                l.deadlines.pop_front();
                let due = l
                    .pending
                    .get(&(stan, class))
                    .is_some_and(|p| p.deadline_ms == deadline);
                if due && let Some(p) = l.pending.remove(&(stan, class)) {
                    out.push((
                        p.shard,
                        UpstreamResult {
                            op_id: p.op_id,
                            outcome: UpstreamOutcome::Timeout { sent: p.sent },
                        },
                    ));
                }
            }
        }
    }
}

/// Field 54 additional amounts: account type (2), amount type (2), currency (3), sign C/D (1),
/// amount (12).
fn parse_balance(v: &[u8]) -> Option<u64> {
    let digits = v.get(8..20)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}

fn build_request(
    spec: &HostSpec,
    now_ms: u64,
    mti: u16,
    stan: u32,
    req: &UpstreamRequest,
) -> Result<(IsoMessage, OriginalRef), MeshError> {
    let (year, month, day, hour, minute, second) = civil(now_ms, 0);
    let transmitted = Bytes::from(format!("{month:02}{day:02}{hour:02}{minute:02}{second:02}"));
    let rrn = match &req.original {
        Some(o) if req.kind == UpstreamKind::Reversal => o.rrn.clone(),
        _ => Bytes::from(format!(
            "{}{:03}{hour:02}{stan:06}",
            year % 10,
            day_of_year(year, month, day)
        )),
    };
    let mut m = IsoMessage::new(spec.profile, Mti::from_number(mti)?);
    match &req.account {
        Account::Card { pan, expiry } => {
            m.set(2, Bytes::copy_from_slice(pan.digits()))?;
            if req.kind != UpstreamKind::Reversal {
                m.set(14, expiry.clone())?;
            }
        }
        Account::Phone { phone, .. } => m.set(2, phone.clone())?,
        Account::Bank { bank_code, account } => {
            m.set(100, bank_code.clone())?;
            m.set(102, account.clone())?;
        }
    }
    m.set(3, Bytes::from_static(processing_code(req.kind)))?;
    m.set(4, Bytes::from(format!("{:012}", req.amount)))?;
    m.set(7, transmitted.clone())?;
    m.set(11, Bytes::from(format!("{stan:06}")))?;
    m.set(12, Bytes::from(format!("{hour:02}{minute:02}{second:02}")))?;
    m.set(13, Bytes::from(format!("{month:02}{day:02}")))?;
    m.set(22, Bytes::from_static(b"010"))?;
    m.set(32, spec.acquirer_id.clone())?;
    m.set(37, rrn.clone())?;
    m.set(41, spec.terminal_id.clone())?;
    m.set(
        42,
        Bytes::from(format!("{:<15}", String::from_utf8_lossy(&req.merchant_id))),
    )?;
    if !req.order_id.is_empty() {
        m.set(48, req.order_id.clone())?;
    }
    m.set(49, Bytes::from(format!("{:03}", req.currency)))?;
    if let (UpstreamKind::Reversal, Some(o)) = (req.kind, &req.original) {
        let acquirer = String::from_utf8_lossy(&spec.acquirer_id).into_owned();
        let original = format!(
            "{:04}{:06}{}{:0>11}{:011}",
            o.mti,
            o.stan,
            String::from_utf8_lossy(&o.transmitted),
            acquirer,
            0
        );
        m.set(90, Bytes::from(original))?;
    }
    let sent = OriginalRef {
        mti,
        stan,
        transmitted,
        rrn,
    };
    Ok((m, sent))
}
