//! Field tags and what each known field may hold: [`tag`], [`FieldSpec`], [`field_spec`], and the
//! flattened per-tag checks the body scan runs.

/// Generates the tag constants and the spec table from one list.
macro_rules! fields {
    ($($(#[$doc:meta])* $const_name:ident = $tag:literal, $name:literal, $kind:expr;)*) => {
        /// Field tags (docs/PROTOCOL.md, "Fields"). Tag 22 is reserved and never assigned: the
        /// server transaction id is tag 17 in requests and answers alike.
        pub mod tag {
            $($(#[$doc])* pub const $const_name: u16 = $tag;)*
        }

        /// Every field this version knows, in tag order.
        pub const FIELD_SPECS: &[FieldSpec] = &[
            $(FieldSpec { tag: $tag, name: $name, kind: $kind },)*
        ];
    };
}

/// Characters a text (STR) field allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charset {
    /// Printable ASCII, 0x20..=0x7E.
    Printable,
    /// ASCII digits.
    Digits,
    /// Four digits YYMM with the month 01..=12.
    YearMonth,
    /// ASCII digits and `*` (a masked card number).
    MaskedDigits,
}

impl Charset {
    /// Whether `value` is made of this charset's characters.
    #[inline]
    pub fn accepts(self, value: &[u8]) -> bool {
        match self {
            Charset::Printable => all_bytes_in(value, 0x20, 0x7E),
            Charset::Digits => all_bytes_in(value, b'0', b'9'),
            Charset::MaskedDigits => value.iter().all(|&b| b.is_ascii_digit() || b == b'*'),
            Charset::YearMonth => match value {
                &[y0, y1, m0, m1] => {
                    [y0, y1, m0, m1].iter().all(u8::is_ascii_digit)
                        && matches!((m0, m1), (b'0', b'1'..=b'9') | (b'1', b'0'..=b'2'))
                }
                _ => false,
            },
        }
    }

    /// What a value that this charset rejects is missing, for error messages.
    pub const fn describe(self) -> &'static str {
        match self {
            Charset::Printable => "not printable ASCII",
            Charset::Digits => "not all digits",
            Charset::YearMonth => "not YYMM with month 01..12",
            Charset::MaskedDigits => "not digits and '*'",
        }
    }
}

/// Whether every byte of `value` is in `low..=high` (`low` >= 1, `high` <= 0x7E), eight bytes at a
/// time: text fields are checked on every decode, and a byte loop's exit branch mispredicts.
#[inline]
fn all_bytes_in(value: &[u8], low: u8, high: u8) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH_BITS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Exact "some byte < low" and "some byte > high" tests (Bit Twiddling Hacks, hasless/hasmore).
    let outside = |word: u64| {
        let below = word.wrapping_sub(ONES * u64::from(low)) & !word;
        let above = word.wrapping_add(ONES * u64::from(127 - high)) | word;
        (below | above) & HIGH_BITS != 0
    };
    let mut chunks = value.chunks_exact(8);
    for chunk in &mut chunks {
        if let Ok(bytes) = <[u8; 8]>::try_from(chunk)
            && outside(u64::from_ne_bytes(bytes))
        {
            return false;
        }
    }
    if chunks.remainder().is_empty() {
        return true;
    }
    // The tail, read in registers (a copy to the stack then one wide load stalls the pipeline):
    // the last eight bytes overlapping the chunks, or for short values overlapping pieces.
    let word = match (
        value.last_chunk::<8>(),
        value.first_chunk::<4>(),
        value.last_chunk::<4>(),
    ) {
        (Some(last), _, _) => u64::from_ne_bytes(*last),
        (None, Some(first), Some(last)) => {
            u64::from(u32::from_ne_bytes(*first)) << 32 | u64::from(u32::from_ne_bytes(*last))
        }
        _ => {
            let byte = |at: Option<&u8>| u64::from(at.copied().unwrap_or(low));
            let (first, middle, last) = (value.first(), value.get(value.len() / 2), value.last());
            ((ONES * u64::from(low)) & !0xFF_FFFF)
                | byte(first)
                | byte(middle) << 8
                | byte(last) << 16
        }
    };
    !outside(word)
}

/// The type of a field's value, fixed by its tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// One byte.
    U8,
    /// Two bytes, big-endian.
    U16,
    /// Four bytes, big-endian.
    U32,
    /// Eight bytes, big-endian.
    U64,
    /// Text of `min..=max` bytes in a charset.
    Str {
        /// Shortest value.
        min: u16,
        /// Longest value.
        max: u16,
        /// Characters allowed.
        charset: Charset,
    },
    /// Opaque bytes, `min..=max` of them.
    Bytes {
        /// Shortest value.
        min: u16,
        /// Longest value.
        max: u16,
    },
}

impl FieldKind {
    /// Shortest and longest value, in bytes.
    pub const fn len_range(self) -> (usize, usize) {
        match self {
            FieldKind::U8 => (1, 1),
            FieldKind::U16 => (2, 2),
            FieldKind::U32 => (4, 4),
            FieldKind::U64 => (8, 8),
            FieldKind::Str { min, max, .. } | FieldKind::Bytes { min, max } => {
                (min as usize, max as usize)
            }
        }
    }

    /// The type's name in docs/PROTOCOL.md (`U64`, `STR`, `BYTES`).
    pub const fn name(self) -> &'static str {
        match self {
            FieldKind::U8 => "U8",
            FieldKind::U16 => "U16",
            FieldKind::U32 => "U32",
            FieldKind::U64 => "U64",
            FieldKind::Str { .. } => "STR",
            FieldKind::Bytes { .. } => "BYTES",
        }
    }
}

/// One known field: tag, name and value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// The tag.
    pub tag: u16,
    /// The name in docs/PROTOCOL.md.
    pub name: &'static str,
    /// The value's type and limits.
    pub kind: FieldKind,
}

const fn text(min: u16, max: u16) -> FieldKind {
    FieldKind::Str {
        min,
        max,
        charset: Charset::Printable,
    }
}

const fn digits(min: u16, max: u16) -> FieldKind {
    FieldKind::Str {
        min,
        max,
        charset: Charset::Digits,
    }
}

fields! {
    /// Merchant id, STR 1..15.
    MERCHANT_ID = 1, "merchant_id", text(1, 15);
    /// The payment's id at the merchant (the idempotency key), STR 1..40.
    ORDER_ID = 2, "order_id", text(1, 40);
    /// Amount in minor units, U64.
    AMOUNT = 3, "amount", FieldKind::U64;
    /// ISO 4217 numeric currency, U16.
    CURRENCY = 4, "currency", FieldKind::U16;
    /// 1 card, 2 wallet token, 3 carrier billing, 4 bank transfer; U8.
    PAYMENT_METHOD = 5, "payment_method", FieldKind::U8;
    /// Card number, 12..19 digits.
    PAN = 6, "pan", digits(12, 19);
    /// Card expiry YYMM.
    EXPIRY = 7, "expiry", FieldKind::Str { min: 4, max: 4, charset: Charset::YearMonth };
    /// Card verification value, 3..4 digits (AUTHORIZE and SALE only).
    CVV = 8, "cvv", digits(3, 4);
    /// Wallet token from TOKENIZE, STR 1..64.
    WALLET_TOKEN = 9, "wallet_token", text(1, 64);
    /// E.164 number without `+`, 8..15 digits.
    PHONE_NUMBER = 10, "phone_number", digits(8, 15);
    /// Carrier name, STR 1..16.
    CARRIER = 11, "carrier", text(1, 16);
    /// Bank code, STR 1..11.
    BANK_CODE = 12, "bank_code", text(1, 11);
    /// Bank account number, STR 1..34.
    ACCOUNT_NUMBER = 13, "account_number", text(1, 34);
    /// Device id, STR 1..64 (with `device_counter` and `signature`).
    DEVICE_ID = 14, "device_id", text(1, 64);
    /// Device signature, BYTES 1..512 (with `device_id` and `device_counter`); Ed25519's is 64.
    SIGNATURE = 15, "signature", FieldKind::Bytes { min: 1, max: 512 };
    /// Idempotency key of a capture, cancel or refund within its order, STR 1..40.
    REQUEST_ID = 16, "request_id", text(1, 40);
    /// PayMesh's id of the payment, U64 (requests and answers).
    SERVER_TXN_ID = 17, "server_txn_id", FieldKind::U64;
    /// Free text from the merchant, STR 0..128.
    DESCRIPTION = 18, "description", text(0, 128);
    /// The signing device's counter for this request, U64 (with `device_id` and `signature`).
    DEVICE_COUNTER = 19, "device_counter", FieldKind::U64;
    /// Result code, U16.
    RESULT_CODE = 20, "result_code", FieldKind::U16;
    /// Issuer's approval code, STR 6.
    APPROVAL_CODE = 21, "approval_code", text(6, 6);
    /// Retrieval reference number sent upstream, STR 12.
    RRN = 23, "rrn", text(12, 12);
    /// Upstream's own response code (ISO 8583 field 39...), STR 2..4.
    UPSTREAM_RESPONSE_CODE = 24, "upstream_response_code", text(2, 4);
    /// When PayMesh received the request, unix milliseconds, U64.
    RECEIVED_AT_MS = 25, "received_at_ms", FieldKind::U64;
    /// When PayMesh answered, unix milliseconds, U64.
    ANSWERED_AT_MS = 26, "answered_at_ms", FieldKind::U64;
    /// Transaction state (see `TxnState`), U8.
    STATE = 27, "state", FieldKind::U8;
    /// Authorized amount, U64.
    AUTHORIZED_AMOUNT = 28, "authorized_amount", FieldKind::U64;
    /// Captured amount, U64.
    CAPTURED_AMOUNT = 29, "captured_amount", FieldKind::U64;
    /// Refunded amount, U64.
    REFUNDED_AMOUNT = 30, "refunded_amount", FieldKind::U64;
    /// Available balance, U64.
    BALANCE = 31, "balance", FieldKind::U64;
    /// Wallet token issued by TOKENIZE, STR 1..64.
    TOKEN = 32, "token", text(1, 64);
    /// Masked card number, 12..19 digits and `*`.
    MASKED_PAN = 33, "masked_pan", FieldKind::Str { min: 12, max: 19, charset: Charset::MaskedDigits };
    /// Human-readable detail, STR 0..256.
    MESSAGE = 34, "message", text(0, 256);
    /// Network (client) id, STR 1..32.
    NETWORK_ID = 40, "network_id", text(1, 32);
    /// Network credential, STR 1..128 (masked in `Debug`).
    CREDENTIAL = 41, "credential", text(1, 128);
    /// Client software name and version, STR 1..64.
    CLIENT_SOFTWARE = 42, "client_software", text(1, 64);
    /// Session id, U64.
    SESSION_ID = 43, "session_id", FieldKind::U64;
    /// Requests a client may have outstanding, U32.
    INFLIGHT_WINDOW = 44, "inflight_window", FieldKind::U32;
    /// Client heartbeat interval, U32 ms.
    HEARTBEAT_INTERVAL_MS = 45, "heartbeat_interval_ms", FieldKind::U32;
    /// Server closes after this long without a frame, U32 ms.
    IDLE_TIMEOUT_MS = 46, "idle_timeout_ms", FieldKind::U32;
    /// Largest body the server accepts, U32.
    MAX_BODY_BYTES = 47, "max_body_bytes", FieldKind::U32;
    /// Server clock, unix milliseconds, U64.
    SERVER_TIME_MS = 48, "server_time_ms", FieldKind::U64;
    /// Offset in the rejected frame of the problem, U32.
    ERROR_OFFSET = 50, "error_offset", FieldKind::U32;
    /// Installment months (할부) of a card AUTHORIZE or SALE, U8: 0 lump sum, or 2..=36.
    INSTALLMENT_MONTHS = 51, "installment_months", FieldKind::U8;
    /// A CAPTURE's "this is the last capture" flag, U8 0 or 1: 1 releases the uncaptured rest.
    FINAL_CAPTURE = 52, "final_capture", FieldKind::U8;
    /// The merchant's reference of its customer, STR 1..64: binds a wallet token to that
    /// customer (TOKENIZE), and names the customer paying with one.
    CUSTOMER_REF = 53, "customer_ref", text(1, 64);
}

/// Largest known tag; [`Fields`](super::Fields) keeps one slot per tag up to it.
pub(super) const TAG_KNOWN_MAX: u16 = 53;
pub(super) const SLOTS: usize = TAG_KNOWN_MAX as usize + 1;

/// Spec of each known tag, indexed by tag. Built at compile time: a bad index is a build error.
#[allow(clippy::indexing_slicing)]
const SPEC_BY_TAG: [Option<FieldSpec>; SLOTS] = {
    let mut table = [None; SLOTS];
    let mut i = 0;
    while i < FIELD_SPECS.len() {
        let spec = FIELD_SPECS[i];
        table[spec.tag as usize] = Some(spec);
        i += 1;
    }
    table
};

/// The spec of a known tag.
#[inline]
pub fn field_spec(tag: u16) -> Option<&'static FieldSpec> {
    SPEC_BY_TAG.get(usize::from(tag)).and_then(Option::as_ref)
}

/// The checks of one tag, flattened from its [`FieldSpec`] so that the scan loop has no `match`
/// on the field's type: a length range, then a byte range for text.
#[derive(Debug, Clone, Copy)]
pub(super) struct Check {
    pub(super) known: bool,
    min: u16,
    max: u16,
    /// Every byte must be in `low..=high`; `low == 0`: no byte check.
    low: u8,
    high: u8,
    /// Whether `charset` has more rules than the byte range (YYMM, masked digits).
    special: bool,
    charset: Charset,
}

impl Check {
    pub(super) const UNKNOWN: Check = Check {
        known: false,
        min: 0,
        max: 0,
        low: 0,
        high: 0,
        special: false,
        charset: Charset::Printable,
    };

    const fn of(kind: FieldKind) -> Check {
        let (min, max) = kind.len_range();
        let (min, max) = (min as u16, max as u16);
        let (low, high, special, charset) = match kind {
            FieldKind::Str {
                charset: charset @ Charset::Printable,
                ..
            } => (0x20, 0x7E, false, charset),
            FieldKind::Str {
                charset: charset @ Charset::Digits,
                ..
            } => (b'0', b'9', false, charset),
            FieldKind::Str {
                charset: charset @ Charset::YearMonth,
                ..
            } => (b'0', b'9', true, charset),
            FieldKind::Str {
                charset: charset @ Charset::MaskedDigits,
                ..
            } => (b'*', b'9', true, charset),
            _ => (0, 0, false, Charset::Printable),
        };
        Check {
            known: true,
            min,
            max,
            low,
            high,
            special,
            charset,
        }
    }

    #[inline]
    pub(super) fn accepts(self, value: &[u8]) -> bool {
        let len = value.len() as u16;
        len >= self.min
            && len <= self.max
            && (self.low == 0 || all_bytes_in(value, self.low, self.high))
            && (!self.special || self.charset.accepts(value))
    }
}

/// The checks of each known tag, indexed by tag. Built at compile time.
#[allow(clippy::indexing_slicing)]
pub(super) const CHECK_BY_TAG: [Check; SLOTS] = {
    let mut table = [Check::UNKNOWN; SLOTS];
    let mut i = 0;
    while i < FIELD_SPECS.len() {
        let spec = FIELD_SPECS[i];
        table[spec.tag as usize] = Check::of(spec.kind);
        i += 1;
    }
    table
};

/// Shortest and longest value of a tag: its field's limits, or 0..=65535 for an unknown tag.
#[inline]
pub(super) fn length_limits(tag: u16) -> (u16, u16) {
    match CHECK_BY_TAG.get(usize::from(tag)) {
        Some(check) if check.known => (check.min, check.max),
        _ => (0, u16::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_table_is_sorted_and_fits_the_bitmask() {
        assert!(FIELD_SPECS.windows(2).all(|w| w[0].tag < w[1].tag));
        assert!(
            FIELD_SPECS
                .iter()
                .all(|s| s.tag >= 1 && s.tag <= TAG_KNOWN_MAX)
        );
        const { assert!(TAG_KNOWN_MAX < 64) };
        assert_eq!(field_spec(tag::PAN).unwrap().name, "pan");
        assert!(field_spec(22).is_none());
    }

    #[test]
    fn swar_charset_matches_byte_loop() {
        for len in 0usize..20 {
            for bad in 0..=255u8 {
                for at in [0, len / 2, len.saturating_sub(1)] {
                    let mut value = vec![b'5'; len];
                    if let Some(b) = value.get_mut(at) {
                        *b = bad;
                    }
                    let printable = value.iter().all(|b| (0x20..=0x7E).contains(b));
                    assert_eq!(Charset::Printable.accepts(&value), printable, "{value:?}");
                    let digits = value.iter().all(u8::is_ascii_digit);
                    assert_eq!(Charset::Digits.accepts(&value), digits, "{value:?}");
                }
            }
        }
    }
}
