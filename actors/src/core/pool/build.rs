//! Building the ISO 8583 messages a pool sends, in the host's [`Dialect`]: transaction requests
//! (0100/0200/0400/0401 or whatever the dialect names) and network management requests (0800:
//! sign-on 001, sign-off 002, echo 301).
//!
//! On the hot path: no `format!`. Numbers are written as zero-padded digits into one scratch
//! `BytesMut` per message, and each field is a `Bytes` slice of it (one allocation for all of
//! them); the host's fixed values (terminal id, acquirer id, processing codes) are shared `Bytes`.

use bytes::{BufMut, Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoMessage, Mti};

use super::spec::{Dialect, HostSpec};
use crate::core::clock::Stamp;
use crate::core::config::{CurrencyMode, TerminalIdSource};
use crate::core::upstream::{Account, OriginalRef, UpstreamKind, UpstreamRequest};
use crate::error::MeshError;
use paymesh_codecs::iso8583::IsoError;

/// Scratch bytes reserved per message: every digit field and padded id of one request fits.
pub const SCRATCH_BYTES: usize = 256;
/// Widest number written (u64 has 20 digits).
const DIGITS_MAX: usize = 20;
/// POS entry mode (field 22): manual key entry, PIN capability unknown (card-not-present).
const POS_ENTRY_MODE: &[u8] = b"010";

/// A network management request's information code (field 70).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NetworkCode {
    /// 001: sign-on.
    SignOn,
    /// 002: sign-off.
    SignOff,
    /// 301: echo test.
    Echo,
}

impl NetworkCode {
    /// The code's number.
    pub fn number(self) -> u64 {
        match self {
            NetworkCode::SignOn => 1,
            NetworkCode::SignOff => 2,
            NetworkCode::Echo => 301,
        }
    }

    /// Name for logs.
    pub fn name(self) -> &'static str {
        match self {
            NetworkCode::SignOn => "sign-on",
            NetworkCode::SignOff => "sign-off",
            NetworkCode::Echo => "echo",
        }
    }
}

/// Writes fields into one scratch buffer and hands each out as its own `Bytes`.
#[derive(Debug)]
pub struct FieldWriter<'a> {
    scratch: &'a mut BytesMut,
}

impl<'a> FieldWriter<'a> {
    /// A writer over `scratch`, with room for one message.
    pub fn new(scratch: &'a mut BytesMut) -> Self {
        scratch.clear();
        scratch.reserve(SCRATCH_BYTES);
        Self { scratch }
    }

    fn take(&mut self) -> Bytes {
        self.scratch.split().freeze()
    }

    /// Appends `value` as exactly `width` digits, zero-padded (no field taken yet).
    fn put_digits(&mut self, value: u64, width: usize) -> Option<()> {
        let mut buf = [b'0'; DIGITS_MAX];
        let digits = buf.get_mut(..width)?;
        let mut rest = value;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        if rest != 0 {
            return None;
        }
        self.scratch.put_slice(digits);
        Some(())
    }

    /// `value` as exactly `width` zero-padded digits; `None` if it has more.
    pub fn digits(&mut self, value: u64, width: usize) -> Option<Bytes> {
        self.put_digits(value, width)?;
        Some(self.take())
    }

    /// `value` right-padded with spaces to `width` (as is when it is already as long or longer).
    pub fn padded(&mut self, value: &[u8], width: usize) -> Bytes {
        self.scratch.put_slice(value);
        for _ in value.len()..width {
            self.scratch.put_u8(b' ');
        }
        self.take()
    }
}

/// What a built request is remembered by.
#[derive(Debug)]
pub struct Built {
    /// The message.
    pub msg: IsoMessage,
    /// What identifies it for later reversals.
    pub sent: OriginalRef,
    /// The terminal id it carries (answers must carry the same), empty when none is sent.
    pub terminal: Bytes,
}

fn out_of_range(field: u8) -> MeshError {
    MeshError::Iso(IsoError::ValueOutOfRange { field })
}

/// The terminal id a transaction request carries: the one the shard assigned with its STAN, or
/// (none assigned) what the host's `terminal_id_source` gives; empty when the dialect sends none.
pub fn transaction_terminal(
    spec: &HostSpec,
    req: &UpstreamRequest,
    w: &mut FieldWriter<'_>,
) -> Bytes {
    let d = &spec.dialect;
    if d.terminal_id_field.is_none() {
        return Bytes::new();
    }
    match req.terminal.is_empty() {
        false => req.terminal.clone(),
        true => terminal_id(spec, d, &req.merchant_id, w),
    }
}

/// Builds a transaction request of type `mti` with STAN `stan` on `terminal` (from
/// [`transaction_terminal`]) at `now_ms`. A follow-up (refund, capture advice, reversal) carries
/// the original-data elements its dialect names: 37 the original's RRN (else its own), 38 the
/// original's approval code, 90 the original data elements.
pub fn transaction(
    spec: &HostSpec,
    now_ms: u64,
    mti: u16,
    stan: u32,
    req: &UpstreamRequest,
    terminal: Bytes,
    w: &mut FieldWriter<'_>,
) -> Result<Built, MeshError> {
    let d = &spec.dialect;
    let stamp = Stamp::at(now_ms, spec.local_offset_minutes);
    let mut number = |field: u8, value: u64, width: usize| {
        w.digits(value, width).ok_or_else(|| out_of_range(field))
    };
    let transmitted = number(7, stamp.transmitted, 10)?;
    let originals = *d.original_data.get(req.kind);
    let original = req.original.as_ref();
    let rrn = match original {
        Some(o) if originals.rrn && !o.rrn.is_empty() => o.rrn.clone(),
        _ => number(37, stamp.rrn_prefix * 1_000_000 + u64::from(stan), 12)?,
    };
    let mut m = IsoMessage::new(spec.profile, Mti::from_number(mti)?);
    set_account(&mut m, req)?;
    m.set(3, d.processing_code.get(req.kind).clone())?;
    m.set(4, number(4, req.amount, 12)?)?;
    m.set(7, transmitted.clone())?;
    m.set(11, number(11, u64::from(stan), 6)?)?;
    m.set(12, number(12, stamp.time, 6)?)?;
    m.set(13, number(13, stamp.date, 4)?)?;
    m.set(22, Bytes::from_static(POS_ENTRY_MODE))?;
    m.set(37, rrn.clone())?;
    if !req.order_id.is_empty() {
        m.set(48, req.order_id.clone())?;
    }
    if d.currency == CurrencyMode::Send {
        let currency = d.host_currency.unwrap_or(req.currency);
        m.set(49, number(49, u64::from(currency), 3)?)?;
    }
    if originals.approval && original.is_some() && !req.original_approval.is_empty() {
        m.set(38, req.original_approval.clone())?;
    }
    if let (true, Some(o)) = (originals.data, original) {
        m.set(90, original_data_elements(spec, o, w)?)?;
    }
    set_ids(&mut m, spec, req, &terminal, w)?;
    set_installments(&mut m, d, req, w)?;
    let sent = OriginalRef {
        mti,
        stan,
        transmitted,
        rrn,
        terminal: terminal.clone(),
    };
    Ok(Built {
        msg: m,
        sent,
        terminal,
    })
}

/// Installment months in the dialect's installment field (`IM` and two digits, e.g. `IM03`),
/// on every message of an installment payment but reversals (field 90 names their original). A
/// lump sum sends nothing. An installment authorization or sale to a host without the field is
/// refused rather than sent as a lump sum.
fn set_installments(
    m: &mut IsoMessage,
    d: &Dialect,
    req: &UpstreamRequest,
    w: &mut FieldWriter<'_>,
) -> Result<(), MeshError> {
    if req.installments == 0 || req.kind == UpstreamKind::Reversal {
        return Ok(());
    }
    let Some(f) = d.installment_field else {
        return match req.kind {
            UpstreamKind::Authorize | UpstreamKind::Sale => Err(MeshError::Config(
                "an installment payment, and the host takes no installments (installment_field = 0)"
                    .into(),
            )),
            _ => Ok(()),
        };
    };
    w.scratch.put_slice(b"IM");
    w.put_digits(u64::from(req.installments), 2)
        .ok_or_else(|| out_of_range(f))?;
    m.set(f, w.take())?;
    Ok(())
}

/// Fields 2 and 14 (cards; no expiry on reversals), 2 (phones), 100 and 102 (bank accounts).
fn set_account(m: &mut IsoMessage, req: &UpstreamRequest) -> Result<(), MeshError> {
    match &req.account {
        Account::Card { pan, expiry } => {
            m.set(2, pan.digits_bytes().clone())?;
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
    Ok(())
}

/// The acquirer, terminal and merchant ids in the dialect's fields.
fn set_ids(
    m: &mut IsoMessage,
    spec: &HostSpec,
    req: &UpstreamRequest,
    terminal: &Bytes,
    w: &mut FieldWriter<'_>,
) -> Result<(), MeshError> {
    let d = &spec.dialect;
    if let Some(f) = d.acquirer_id_field {
        m.set(f, spec.acquirer_id.clone())?;
    }
    if let Some(f) = d.merchant_id_field {
        let merchant = match d.merchant_id_width {
            Some(width) => w.padded(&req.merchant_id, width),
            None => req.merchant_id.clone(),
        };
        m.set(f, merchant)?;
    }
    if let Some(f) = d.terminal_id_field {
        m.set(f, terminal.clone())?;
    }
    Ok(())
}

/// The terminal id of a transaction: the host's, or derived from the merchant id.
fn terminal_id(spec: &HostSpec, d: &Dialect, merchant: &Bytes, w: &mut FieldWriter<'_>) -> Bytes {
    match d.terminal_id_source {
        TerminalIdSource::Fixed => spec.terminal_id.clone(),
        TerminalIdSource::Merchant => {
            let tail = merchant.slice(merchant.len().saturating_sub(8)..);
            match d.terminal_id_width {
                Some(width) => w.padded(&tail, width),
                None => tail,
            }
        }
    }
}

/// Field 90: original MTI (4), STAN (6), transmission date and time (10), acquirer id (11,
/// zero-padded), forwarding institution id (11 zeros).
fn original_data_elements(
    spec: &HostSpec,
    o: &OriginalRef,
    w: &mut FieldWriter<'_>,
) -> Result<Bytes, MeshError> {
    const ACQUIRER_DIGITS: usize = 11;
    let bad = || out_of_range(90);
    w.put_digits(u64::from(o.mti), 4).ok_or_else(bad)?;
    w.put_digits(u64::from(o.stan), 6).ok_or_else(bad)?;
    w.scratch.put_slice(&o.transmitted);
    let acquirer = &spec.acquirer_id;
    for _ in acquirer.len()..ACQUIRER_DIGITS {
        w.scratch.put_u8(b'0');
    }
    w.scratch.put_slice(acquirer);
    w.put_digits(0, ACQUIRER_DIGITS).ok_or_else(bad)?;
    Ok(w.take())
}

/// Builds an 0800 with information code `code`: fields 7, 11, 70 and, as the dialect sends them,
/// the acquirer id and the host's terminal id.
pub fn network(
    spec: &HostSpec,
    now_ms: u64,
    stan: u32,
    code: NetworkCode,
    w: &mut FieldWriter<'_>,
) -> Result<IsoMessage, MeshError> {
    let d = &spec.dialect;
    let transmitted = Stamp::at(now_ms, spec.local_offset_minutes).transmitted;
    let mut m = IsoMessage::new(spec.profile, Mti::NETWORK_REQUEST);
    m.set(7, w.digits(transmitted, 10).ok_or_else(|| out_of_range(7))?)?;
    m.set(
        11,
        w.digits(u64::from(stan), 6)
            .ok_or_else(|| out_of_range(11))?,
    )?;
    if let Some(f) = d.acquirer_id_field {
        m.set(f, spec.acquirer_id.clone())?;
    }
    if let Some(f) = d.terminal_id_field {
        m.set(f, spec.terminal_id.clone())?;
    }
    m.set(
        70,
        w.digits(code.number(), 3).ok_or_else(|| out_of_range(70))?,
    )?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn digits_are_zero_padded_and_overflow_is_refused() {
        let mut scratch = BytesMut::new();
        let mut w = FieldWriter::new(&mut scratch);
        assert_eq!(w.digits(42, 6).unwrap().as_ref(), b"000042");
        assert_eq!(w.digits(0, 3).unwrap().as_ref(), b"000");
        assert_eq!(
            w.digits(999_999_999_999, 12).unwrap().as_ref(),
            b"999999999999"
        );
        assert!(w.digits(1_000_000_000_000, 12).is_none());
        assert!(w.digits(1, 21).is_none());
        assert_eq!(
            w.digits(u64::MAX, 20).unwrap().as_ref(),
            b"18446744073709551615"
        );
        assert_eq!(w.padded(b"M1", 5).as_ref(), b"M1   ");
        assert_eq!(w.padded(b"LONGER", 3).as_ref(), b"LONGER");
    }
}
