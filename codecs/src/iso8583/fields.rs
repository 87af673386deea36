//! Typed accessors and setters for the fields an authorization flow uses, and request/response
//! matching.
//!
//! Text fields hand out their zero-copy `Bytes`; numeric and date fields are parsed into integers and
//! small structs. A getter returns `Ok(None)` when the field is absent and `Err` when its value,
//! although well-formed for the profile, is out of range (month 13, hour 24). Setters check ranges
//! and then go through [`IsoMessage::set`], which checks the profile.

use bytes::Bytes;

use super::error::IsoError;
use super::message::IsoMessage;
use super::mti::{Mti, MtiClass};

/// Field numbers, named after their ISO 8583:1987 titles.
pub mod field {
    /// 2: primary account number (PAN), n..19 LLVAR.
    pub const PAN: u8 = 2;
    /// 3: processing code, n 6.
    pub const PROCESSING_CODE: u8 = 3;
    /// 4: transaction amount in minor units, n 12.
    pub const AMOUNT: u8 = 4;
    /// 7: transmission date and time (UTC), MMDDhhmmss.
    pub const TRANSMISSION_DATE_TIME: u8 = 7;
    /// 11: system trace audit number (STAN), n 6.
    pub const STAN: u8 = 11;
    /// 12: local transaction time, hhmmss.
    pub const LOCAL_TIME: u8 = 12;
    /// 13: local transaction date, MMDD.
    pub const LOCAL_DATE: u8 = 13;
    /// 14: card expiry date, YYMM.
    pub const EXPIRY: u8 = 14;
    /// 22: point-of-service entry mode, n 3.
    pub const POS_ENTRY_MODE: u8 = 22;
    /// 32: acquiring institution id, n..11 LLVAR.
    pub const ACQUIRER_ID: u8 = 32;
    /// 33: forwarding institution id, n..11 LLVAR.
    pub const FORWARDING_ID: u8 = 33;
    /// 35: track 2 data, z..37 LLVAR.
    pub const TRACK_2: u8 = 35;
    /// 37: retrieval reference number (RRN), an 12.
    pub const RRN: u8 = 37;
    /// 38: approval (authorization id response) code, an 6.
    pub const APPROVAL_CODE: u8 = 38;
    /// 39: response code, an 2.
    pub const RESPONSE_CODE: u8 = 39;
    /// 41: card acceptor terminal id, ans 8.
    pub const TERMINAL_ID: u8 = 41;
    /// 42: card acceptor (merchant) id, ans 15.
    pub const MERCHANT_ID: u8 = 42;
    /// 49: transaction currency (ISO 4217 numeric), n 3.
    pub const CURRENCY: u8 = 49;
    /// 52: PIN block, b 64.
    pub const PIN_BLOCK: u8 = 52;
    /// 70: network management information code, n 3.
    pub const NETWORK_MANAGEMENT_CODE: u8 = 70;
    /// 90: original data elements, n 42.
    pub const ORIGINAL_DATA_ELEMENTS: u8 = 90;
}

/// Field 7: transmission date and time, MMDDhhmmss (no year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TransmissionDateTime {
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// Field 12: local time, hhmmss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalTime {
    /// 0..=23.
    pub hour: u8,
    /// 0..=59.
    pub minute: u8,
    /// 0..=59.
    pub second: u8,
}

/// Field 13: local date, MMDD.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MonthDay {
    /// 1..=12.
    pub month: u8,
    /// 1..=31.
    pub day: u8,
}

/// Field 14: card expiry, YYMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Expiry {
    /// Two-digit year, 0..=99.
    pub year: u8,
    /// 1..=12.
    pub month: u8,
}

/// Field 90: identifies the message a reversal or advice refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OriginalDataElements {
    /// MTI of the original message.
    pub mti: Mti,
    /// STAN (field 11) of the original message.
    pub stan: u32,
    /// Transmission date and time (field 7) of the original message.
    pub transmission: TransmissionDateTime,
    /// Acquiring institution id (field 32) of the original, zero-padded to 11 digits on the wire.
    pub acquirer_id: u64,
    /// Forwarding institution id (field 33) of the original, zero-padded to 11 digits.
    pub forwarding_id: u64,
}

/// Where a response is matched to its request: STAN, terminal id and message class.
pub type MatchKey = (u32, Bytes, MtiClass);

/// The ASCII digits of `value`, `width` wide, left-padded with zeros; `None` if it does not fit.
fn digits(value: u64, width: usize) -> Option<Bytes> {
    let mut out = [b'0'; 20];
    let slots = out.get_mut(..width)?;
    let mut rest = value;
    for slot in slots.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    (rest == 0).then(|| Bytes::copy_from_slice(slots))
}

/// The number written by ASCII digits (at most 19 of them).
fn number(field: u8, text: &[u8]) -> Result<u64, IsoError> {
    if text.len() > 19 {
        return Err(IsoError::ValueOutOfRange { field });
    }
    text.iter().enumerate().try_fold(0u64, |acc, (offset, &b)| {
        if b.is_ascii_digit() {
            Ok(acc * 10 + u64::from(b - b'0'))
        } else {
            Err(IsoError::InvalidCharacter { field, offset })
        }
    })
}

/// Splits fixed-width digits into two-digit numbers: `b"0412"` → `[4, 12]`.
fn pairs<const N: usize>(field: u8, text: &[u8]) -> Result<[u8; N], IsoError> {
    let mut out = [0u8; N];
    if text.len() != 2 * N {
        return Err(IsoError::ValueOutOfRange { field });
    }
    for (slot, pair) in out.iter_mut().zip(text.chunks_exact(2)) {
        *slot = number(field, pair)? as u8;
    }
    Ok(out)
}

fn in_range(field: u8, checks: &[(u8, u8, u8)]) -> Result<(), IsoError> {
    match checks.iter().all(|&(v, lo, hi)| (lo..=hi).contains(&v)) {
        true => Ok(()),
        false => Err(IsoError::ValueOutOfRange { field }),
    }
}

fn join_pairs(field: u8, values: &[u8]) -> Result<Bytes, IsoError> {
    let mut text = Vec::with_capacity(values.len() * 2);
    for &v in values {
        if v > 99 {
            return Err(IsoError::ValueOutOfRange { field });
        }
        text.extend_from_slice(&[b'0' + v / 10, b'0' + v % 10]);
    }
    Ok(Bytes::from(text))
}

impl TransmissionDateTime {
    fn parse(field: u8, text: &[u8]) -> Result<Self, IsoError> {
        let [month, day, hour, minute, second] = pairs::<5>(field, text)?;
        let value = TransmissionDateTime {
            month,
            day,
            hour,
            minute,
            second,
        };
        value.check(field)?;
        Ok(value)
    }

    fn check(&self, field: u8) -> Result<(), IsoError> {
        let checks = [
            (self.month, 1, 12),
            (self.day, 1, 31),
            (self.hour, 0, 23),
            (self.minute, 0, 59),
            (self.second, 0, 59),
        ];
        in_range(field, &checks)
    }

    fn text(&self, field: u8) -> Result<Bytes, IsoError> {
        self.check(field)?;
        join_pairs(
            field,
            &[self.month, self.day, self.hour, self.minute, self.second],
        )
    }
}

impl OriginalDataElements {
    /// Field 90 of a reversal or advice for `original`: its MTI and fields 11, 7, 32 and 33
    /// (zero when absent). `Err` if field 11 or 7 is missing or malformed.
    pub fn of(original: &IsoMessage) -> Result<OriginalDataElements, IsoError> {
        let missing = IsoError::ValueOutOfRange {
            field: field::ORIGINAL_DATA_ELEMENTS,
        };
        let id = |field| {
            original
                .get_slice(field)
                .map_or(Ok(0), |v| number(field, v))
        };
        Ok(OriginalDataElements {
            mti: original.mti(),
            stan: original.stan()?.ok_or(missing)?,
            transmission: original.transmission_date_time()?.ok_or(missing)?,
            acquirer_id: id(field::ACQUIRER_ID)?,
            forwarding_id: id(field::FORWARDING_ID)?,
        })
    }
}

/// A getter and setter for a text field whose `Bytes` are handed out as they are.
macro_rules! text_field {
    ($field:expr, $get:ident, $set:ident, $what:literal) => {
        #[doc = concat!("Field ", stringify!($field), ", ", $what, ".")]
        pub fn $get(&self) -> Option<&Bytes> {
            self.get($field)
        }

        #[doc = concat!("Sets field ", stringify!($field), ", ", $what, ".")]
        pub fn $set(&mut self, value: impl Into<Bytes>) -> Result<(), IsoError> {
            self.set($field, value)
        }
    };
}

impl IsoMessage {
    text_field!(2, pan, set_pan, "the PAN digits (masked by `Debug`)");
    // TODO(lead): wrap in types::Pan once the frame codec's masked PAN type lands.
    text_field!(
        3,
        processing_code,
        set_processing_code,
        "processing code (6 digits)"
    );
    text_field!(
        22,
        pos_entry_mode,
        set_pos_entry_mode,
        "POS entry mode (3 digits)"
    );
    text_field!(
        32,
        acquirer_id,
        set_acquirer_id,
        "acquiring institution id (up to 11 digits)"
    );
    text_field!(37, rrn, set_rrn, "retrieval reference number (an 12)");
    text_field!(38, approval_code, set_approval_code, "approval code (an 6)");
    text_field!(39, response_code, set_response_code, "response code (an 2)");
    text_field!(
        41,
        terminal_id,
        set_terminal_id,
        "card acceptor terminal id (ans 8)"
    );
    text_field!(
        42,
        merchant_id,
        set_merchant_id,
        "card acceptor id (ans 15)"
    );

    fn number_of(&self, field: u8) -> Result<Option<u64>, IsoError> {
        self.get_slice(field).map(|v| number(field, v)).transpose()
    }

    fn set_number(&mut self, field: u8, value: u64, width: usize) -> Result<(), IsoError> {
        let text = digits(value, width).ok_or(IsoError::ValueOutOfRange { field })?;
        self.set(field, text)
    }

    /// Field 4, the amount in minor units of the field 49 currency.
    pub fn amount(&self) -> Result<Option<u64>, IsoError> {
        self.number_of(field::AMOUNT)
    }

    /// Sets field 4; at most 999 999 999 999 minor units.
    pub fn set_amount(&mut self, minor_units: u64) -> Result<(), IsoError> {
        self.set_number(field::AMOUNT, minor_units, 12)
    }

    /// Field 11, the STAN.
    pub fn stan(&self) -> Result<Option<u32>, IsoError> {
        Ok(self.number_of(field::STAN)?.map(|n| n as u32))
    }

    /// Sets field 11; at most 999 999.
    pub fn set_stan(&mut self, stan: u32) -> Result<(), IsoError> {
        self.set_number(field::STAN, u64::from(stan), 6)
    }

    /// Field 49, the ISO 4217 numeric currency code (410 for KRW, 840 for USD).
    pub fn currency(&self) -> Result<Option<u16>, IsoError> {
        Ok(self.number_of(field::CURRENCY)?.map(|n| n as u16))
    }

    /// Sets field 49; at most 999.
    pub fn set_currency(&mut self, code: u16) -> Result<(), IsoError> {
        self.set_number(field::CURRENCY, u64::from(code), 3)
    }

    /// Field 70, the network management code (001 sign-on, 002 sign-off, 301 echo).
    pub fn network_management_code(&self) -> Result<Option<u16>, IsoError> {
        Ok(self
            .number_of(field::NETWORK_MANAGEMENT_CODE)?
            .map(|n| n as u16))
    }

    /// Sets field 70; at most 999.
    pub fn set_network_management_code(&mut self, code: u16) -> Result<(), IsoError> {
        self.set_number(field::NETWORK_MANAGEMENT_CODE, u64::from(code), 3)
    }

    /// Field 7, the transmission date and time.
    pub fn transmission_date_time(&self) -> Result<Option<TransmissionDateTime>, IsoError> {
        let field = field::TRANSMISSION_DATE_TIME;
        self.get_slice(field)
            .map(|v| TransmissionDateTime::parse(field, v))
            .transpose()
    }

    /// Sets field 7.
    pub fn set_transmission_date_time(&mut self, at: TransmissionDateTime) -> Result<(), IsoError> {
        let field = field::TRANSMISSION_DATE_TIME;
        self.set(field, at.text(field)?)
    }

    /// Field 12, the local time.
    pub fn local_time(&self) -> Result<Option<LocalTime>, IsoError> {
        let field = field::LOCAL_TIME;
        let Some(text) = self.get_slice(field) else {
            return Ok(None);
        };
        let [hour, minute, second] = pairs::<3>(field, text)?;
        in_range(field, &[(hour, 0, 23), (minute, 0, 59), (second, 0, 59)])?;
        Ok(Some(LocalTime {
            hour,
            minute,
            second,
        }))
    }

    /// Sets field 12.
    pub fn set_local_time(&mut self, time: LocalTime) -> Result<(), IsoError> {
        let field = field::LOCAL_TIME;
        let checks = [
            (time.hour, 0, 23),
            (time.minute, 0, 59),
            (time.second, 0, 59),
        ];
        in_range(field, &checks)?;
        self.set(
            field,
            join_pairs(field, &[time.hour, time.minute, time.second])?,
        )
    }

    /// Field 13, the local date.
    pub fn local_date(&self) -> Result<Option<MonthDay>, IsoError> {
        let field = field::LOCAL_DATE;
        let Some(text) = self.get_slice(field) else {
            return Ok(None);
        };
        let [month, day] = pairs::<2>(field, text)?;
        in_range(field, &[(month, 1, 12), (day, 1, 31)])?;
        Ok(Some(MonthDay { month, day }))
    }

    /// Sets field 13.
    pub fn set_local_date(&mut self, date: MonthDay) -> Result<(), IsoError> {
        let field = field::LOCAL_DATE;
        in_range(field, &[(date.month, 1, 12), (date.day, 1, 31)])?;
        self.set(field, join_pairs(field, &[date.month, date.day])?)
    }

    /// Field 14, the card expiry.
    pub fn expiry(&self) -> Result<Option<Expiry>, IsoError> {
        let field = field::EXPIRY;
        let Some(text) = self.get_slice(field) else {
            return Ok(None);
        };
        let [year, month] = pairs::<2>(field, text)?;
        in_range(field, &[(month, 1, 12)])?;
        Ok(Some(Expiry { year, month }))
    }

    /// Sets field 14.
    pub fn set_expiry(&mut self, expiry: Expiry) -> Result<(), IsoError> {
        let field = field::EXPIRY;
        in_range(field, &[(expiry.year, 0, 99), (expiry.month, 1, 12)])?;
        self.set(field, join_pairs(field, &[expiry.year, expiry.month])?)
    }

    /// Field 90, the original data elements of a reversal or advice.
    pub fn original_data_elements(&self) -> Result<Option<OriginalDataElements>, IsoError> {
        let field = field::ORIGINAL_DATA_ELEMENTS;
        let Some(text) = self.get_slice(field) else {
            return Ok(None);
        };
        let part = |range: std::ops::Range<usize>| {
            text.get(range).ok_or(IsoError::ValueOutOfRange { field })
        };
        let mti = Mti::from_ascii(part(0..4)?).map_err(|_| IsoError::ValueOutOfRange { field })?;
        Ok(Some(OriginalDataElements {
            mti,
            stan: number(field, part(4..10)?)? as u32,
            transmission: TransmissionDateTime::parse(field, part(10..20)?)?,
            acquirer_id: number(field, part(20..31)?)?,
            forwarding_id: number(field, part(31..42)?)?,
        }))
    }

    /// Sets field 90.
    pub fn set_original_data_elements(
        &mut self,
        original: &OriginalDataElements,
    ) -> Result<(), IsoError> {
        let field = field::ORIGINAL_DATA_ELEMENTS;
        let out_of_range = || IsoError::ValueOutOfRange { field };
        let mut text = Vec::with_capacity(42);
        text.extend_from_slice(original.mti.as_bytes());
        text.extend_from_slice(&digits(u64::from(original.stan), 6).ok_or_else(out_of_range)?);
        text.extend_from_slice(&original.transmission.text(field)?);
        text.extend_from_slice(&digits(original.acquirer_id, 11).ok_or_else(out_of_range)?);
        text.extend_from_slice(&digits(original.forwarding_id, 11).ok_or_else(out_of_range)?);
        self.set(field, text)
    }

    /// The key that pairs a response with its request on an upstream link (QMUX style): STAN
    /// (field 11), terminal id (field 41) and the MTI class, which a request and its response share.
    /// `None` when either field is absent or the STAN is malformed.
    pub fn match_key(&self) -> Option<MatchKey> {
        let stan = self.stan().ok()??;
        let terminal_id = self.terminal_id()?.clone();
        Some((stan, terminal_id, self.mti().class()))
    }

    /// A response skeleton for this request: the response MTI and the fields an answer echoes
    /// (2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90). `None` if this is already a response.
    /// The caller adds 38 and 39.
    pub fn response_template(&self) -> Option<IsoMessage> {
        const ECHOED: [u8; 14] = [2, 3, 4, 7, 11, 12, 13, 32, 37, 41, 42, 49, 70, 90];
        let mut response = IsoMessage::new(self.profile(), self.mti().response_mti()?);
        for (field, value) in self.fields().filter(|(f, _)| ECHOED.contains(f)) {
            // Values were checked against this same profile when they entered `self`.
            response.set(field, value.clone()).ok()?;
        }
        Some(response)
    }
}
