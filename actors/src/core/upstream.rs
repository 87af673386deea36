//! What a shard asks of an upstream host and what comes back: the contract between the shard core
//! and the pool core (both sans-IO), independent of ISO 8583 details. Which MTI and processing
//! code each operation travels as is the host's dialect (`pool::Dialect`, docs/HOSTS.md).

use bytes::Bytes;
use paymesh_codecs::types::{Pan, ResultCode};

use super::route::HostId;

/// Which upstream operation a shard needs (the MTIs and processing codes are the defaults; a host's
/// dialect may name others).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamKind {
    /// Authorization only (0100).
    Authorize,
    /// Authorization and capture in one message (0200).
    Sale,
    /// Reversal of an earlier authorization or sale (0400; 0401 when `repeat`), e.g. for a
    /// client's cancel or a timed-out authorization.
    Reversal,
    /// Refund of a captured amount (0200, processing code 20).
    Refund,
    /// Balance inquiry (0100, processing code 31).
    BalanceInquiry,
    /// Capture of an authorized amount, for hosts that take captures online (`capture =
    /// "online"`): a completion advice (0220, repeats 0221) by default.
    Capture,
}

/// The account an upstream request charges.
#[derive(Debug, Clone)]
pub enum Account {
    /// A card: PAN (masked in Debug) and expiry YYMM.
    Card {
        /// Primary account number.
        pan: Pan,
        /// Expiry, YYMM.
        expiry: Bytes,
    },
    /// Carrier billing.
    Phone {
        /// Phone number, digits.
        phone: Bytes,
        /// Carrier name.
        carrier: Bytes,
    },
    /// Bank transfer.
    Bank {
        /// Bank code.
        bank_code: Bytes,
        /// Account number.
        account: Bytes,
    },
}

/// Identifies an upstream message already sent, for reversals and refunds (ISO 8583 field 90).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OriginalRef {
    /// The original message type (e.g. 0100).
    pub mti: u16,
    /// The original system trace audit number (field 11).
    pub stan: u32,
    /// The original transmission date and time, MMDDhhmmss (field 7).
    pub transmitted: Bytes,
    /// The original retrieval reference number (field 37).
    pub rrn: Bytes,
    /// The terminal id the original carried (its STAN is unique on that terminal for the day);
    /// empty when not recorded (an older build's order, or a host whose terminal id is derived
    /// from the merchant): follow-ups then carry what the host's `terminal_id_source` gives.
    /// Not journaled with outcomes: the shard that assigned it keeps it.
    pub terminal: Bytes,
}

/// One request from a shard to an upstream host.
#[derive(Debug, Clone)]
pub struct UpstreamRequest {
    /// Unique per shard; the answer carries it back.
    pub op_id: u64,
    /// The shard to answer.
    pub shard: u16,
    /// Host the request goes to.
    pub host: HostId,
    /// Operation.
    pub kind: UpstreamKind,
    /// Amount in minor units.
    pub amount: u64,
    /// ISO 4217 numeric currency.
    pub currency: u16,
    /// Account charged.
    pub account: Account,
    /// Merchant id (field 42).
    pub merchant_id: Bytes,
    /// The merchant's order id (sent in field 48 so the host's records name the order).
    pub order_id: Bytes,
    /// Installment months of the authorization (0: lump sum), in the dialect's installment
    /// field (docs/HOSTS.md); a follow-up carries its authorization's.
    pub installments: u8,
    /// The original message, for reversals, refunds and capture advices.
    pub original: Option<OriginalRef>,
    /// The original's approval code (field 38 of its answer), for follow-ups whose dialect sends
    /// it; empty when there is none.
    pub original_approval: Bytes,
    /// The terminal id to send (one of the host's `terminal_ids`, which the shard assigned with
    /// the STAN); empty: the host's `terminal_id_source` decides.
    pub terminal: Bytes,
    /// A repeat of a reversal already sent once (ISO 8583 0401 instead of 0400).
    pub repeat: bool,
    /// System trace audit number (field 11) the shard assigned with `terminal` (0: the pool picks
    /// one). The shard allocates it from its share of the terminal's STANs for the business day
    /// (see [`super::shard::stans`]) as a step of its state machine, so that replay assigns the
    /// same one and a reversal can name it (field 90).
    pub stan: u32,
    /// The time the message is stamped with (fields 7, 12, 13 and the RRN), unix ms (0: now).
    pub sent_at_ms: u64,
}

/// Largest STAN (six digits).
pub const STAN_MAX: u32 = 999_999;

/// The STAN of an operation: shards take disjoint residues modulo the shard count, and within a
/// shard consecutive sequence numbers get distinct STANs for `999_999 / shards` operations.
pub fn stan_for(op_id: u64, shard: u16, shards: u16) -> u32 {
    let shards = u64::from(shards.max(1));
    let per_shard = u64::from(STAN_MAX) / shards;
    let seq = op_id & ((1 << super::shard::TXN_SEQ_BITS) - 1);
    let stan = (seq % per_shard) * shards + u64::from(shard) % shards + 1;
    u32::try_from(stan).unwrap_or(1)
}

/// What identifies a message the shard asked for: its MTI by the default dialect (a host's own
/// dialect may differ; the pool reports the real one in outcomes), its STAN, transmission time
/// and RRN as the pool stamps them.
pub fn trace_of(kind: UpstreamKind, terminal: Bytes, stan: u32, at_ms: u64) -> OriginalRef {
    let stamp = super::clock::Stamp::at(at_ms, 0);
    let transmitted = format!("{:010}", stamp.transmitted);
    let rrn = format!("{:012}", stamp.rrn_prefix * 1_000_000 + u64::from(stan));
    OriginalRef {
        mti: match kind {
            UpstreamKind::Authorize | UpstreamKind::BalanceInquiry => 100,
            UpstreamKind::Sale | UpstreamKind::Refund => 200,
            UpstreamKind::Capture => 220,
            UpstreamKind::Reversal => 400,
        },
        stan,
        transmitted: Bytes::from(transmitted),
        rrn: Bytes::from(rrn),
        terminal,
    }
}

/// Outcome of an upstream request.
#[derive(Debug, Clone)]
pub enum UpstreamOutcome {
    /// The host answered (approved or declined).
    Answered {
        /// Internal result mapped from the host's response code.
        result: ResultCode,
        /// The host's response code (field 39).
        response_code: Bytes,
        /// Approval code (field 38); empty when declined.
        approval_code: Bytes,
        /// What identifies the message sent, for later reversals.
        sent: OriginalRef,
        /// Balance, for balance inquiries.
        balance: Option<u64>,
    },
    /// Sent, but no answer arrived in time: the outcome is unknown.
    Timeout {
        /// What identifies the message sent, for the reversal.
        sent: OriginalRef,
    },
    /// Found pending at recovery after a crash: it may or may not have reached the host.
    Unknown,
    /// Never sent (no link up: UPSTREAM_UNAVAILABLE; pool full: BUSY): safe to retry.
    NotSent {
        /// What the client is told.
        result: ResultCode,
    },
}

/// An outcome addressed to the operation that asked for it.
#[derive(Debug, Clone)]
pub struct UpstreamResult {
    /// The request's op id.
    pub op_id: u64,
    /// What happened.
    pub outcome: UpstreamOutcome,
}

/// Maps an ISO 8583 response code (field 39) to PayMesh's result: the one place this happens.
/// docs/HOSTS.md has this table ("Response codes"); a test walks it against this function.
/// 08 (honour with identification), 10 (approved for a partial amount), 11 (approved, VIP) and
/// 16 (approved, update track 3) approve. 91, 92 and 96 say the issuer, its switch or the host
/// system cannot answer now: nothing was authorized, and the same request may be tried again.
pub fn map_response_code(code: &[u8]) -> ResultCode {
    match code {
        b"00" | b"08" | b"10" | b"11" | b"16" => ResultCode::Approved,
        b"51" => ResultCode::InsufficientFunds,
        b"54" | b"33" => ResultCode::ExpiredCard,
        b"14" | b"15" | b"56" => ResultCode::InvalidCard,
        b"61" | b"65" => ResultCode::IssuerLimitExceeded,
        b"05" | b"57" | b"62" => ResultCode::DoNotHonor,
        b"52" | b"53" | b"76" | b"78" => ResultCode::InvalidAccount,
        b"91" | b"96" | b"92" => ResultCode::IssuerUnavailable,
        _ => ResultCode::Declined,
    }
}

/// Outcome for an operation the pool could not place.
pub fn not_sent(op_id: u64, result: ResultCode) -> UpstreamResult {
    UpstreamResult {
        op_id,
        outcome: UpstreamOutcome::NotSent { result },
    }
}
