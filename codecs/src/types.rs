//! Domain values shared by the codecs and the transaction core: money, currencies, card numbers,
//! secrets and the protocol's result codes.
//!
//! None of these types can print a full card number, a CVV or a credential: their `Debug` and
//! `Display` mask, and the clear value is only reachable through an explicitly named accessor
//! ([`Pan::digits`], [`Secret::expose`]).

use std::fmt;

use bytes::Bytes;

/// An ISO 4217 numeric currency code (`410` is the Korean won).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency(pub u16);

impl Currency {
    /// Korean won: no minor unit.
    pub const KRW: Currency = Currency(410);
    /// US dollar: cents.
    pub const USD: Currency = Currency(840);
    /// Euro: cents.
    pub const EUR: Currency = Currency(978);
    /// Japanese yen: no minor unit.
    pub const JPY: Currency = Currency(392);

    /// The numeric code.
    pub const fn code(self) -> u16 {
        self.0
    }

    /// The ISO 4217 alphabetic code, for an active currency.
    pub fn alpha(self) -> Option<&'static str> {
        iso_currency::Currency::from_numeric(self.0).map(|c| c.code())
    }

    /// Digits after the decimal point (KRW and JPY 0, USD 2, BHD 3), for an active ISO 4217
    /// currency that has a minor unit scheme; `None` for an unknown code and for units such as
    /// gold (XAU) that are not a payment currency.
    pub fn minor_digits(self) -> Option<u8> {
        let exponent = iso_currency::Currency::from_numeric(self.0)?.exponent()?;
        u8::try_from(exponent).ok()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.alpha() {
            Some(alpha) => f.write_str(alpha),
            None => write!(f, "{:03}", self.0),
        }
    }
}

/// Largest amount a request may carry, in minor units: twelve digits, the width of ISO 8583 field 4
/// (amount, transaction) that every upstream host receives it in.
pub const AMOUNT_MINOR_MAX: u64 = 999_999_999_999;

/// An amount of money: integer minor units (cents, or whole won) in a currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    /// Amount in the currency's minor unit.
    pub minor: u64,
    /// Currency of the amount.
    pub currency: Currency,
}

impl Money {
    /// `minor` units of `currency`.
    pub const fn new(minor: u64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    /// The sum, or `None` when the currencies differ or the sum overflows.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        let minor = self.minor.checked_add(other.minor)?;
        Some(Money {
            minor,
            currency: self.currency,
        })
    }

    /// The difference, or `None` when the currencies differ or `other` is larger.
    pub fn checked_sub(self, other: Money) -> Option<Money> {
        if self.currency != other.currency {
            return None;
        }
        let minor = self.minor.checked_sub(other.minor)?;
        Some(Money {
            minor,
            currency: self.currency,
        })
    }
}

/// Shortest and longest card number (PAN: primary account number), in digits.
pub const PAN_DIGITS_MIN: usize = 12;
/// Longest PAN, in digits.
pub const PAN_DIGITS_MAX: usize = 19;
/// Digits of the BIN (bank identification number): the PAN's first six.
const BIN_DIGITS: usize = 6;
/// Last digits a masked PAN shows.
const PAN_TAIL_DIGITS: usize = 4;
/// Digits a masked PAN hides at least, so that a short PAN is not nearly all shown.
const PAN_HIDDEN_DIGITS_MIN: usize = 6;

/// A card number: 12 to 19 ASCII digits, held as a zero-copy slice of the frame it came in.
///
/// `Debug` and `Display` show the masked form (`411111******1111`). The Luhn check digit is not
/// enforced here (issuers and test cards differ); ask [`Pan::luhn_valid`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Pan(Bytes);

impl Pan {
    /// Checks that `digits` is 12..=19 ASCII digits.
    pub fn new(digits: Bytes) -> Option<Pan> {
        let length_ok = (PAN_DIGITS_MIN..=PAN_DIGITS_MAX).contains(&digits.len());
        (length_ok && digits.iter().all(u8::is_ascii_digit)).then_some(Pan(digits))
    }

    /// A PAN from digits the caller has already checked (12..=19 ASCII digits).
    pub(crate) fn from_checked(digits: Bytes) -> Pan {
        debug_assert!(Pan::new(digits.clone()).is_some());
        Pan(digits)
    }

    /// The clear digits. Named so that every place that handles a clear PAN is easy to find.
    pub fn digits(&self) -> &[u8] {
        &self.0
    }

    /// The clear digits as `Bytes` (a reference count, not a copy), for an upstream message.
    pub fn digits_bytes(&self) -> &Bytes {
        &self.0
    }

    /// Number of digits.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a PAN has at least 12 digits. Present because `len` is.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The BIN: the first six digits as a number (`411111`), which routing looks up.
    pub fn bin(&self) -> u32 {
        self.0
            .iter()
            .take(BIN_DIGITS)
            .fold(0, |bin, digit| bin * 10 + u32::from(digit - b'0'))
    }

    /// The last four digits.
    pub fn last4(&self) -> &[u8] {
        self.0
            .get(self.0.len() - PAN_TAIL_DIGITS..)
            .unwrap_or_default()
    }

    /// Whether the last digit is the Luhn check digit of the others.
    pub fn luhn_valid(&self) -> bool {
        let sum: u32 = self
            .0
            .iter()
            .rev()
            .enumerate()
            .map(|(i, digit)| {
                let d = u32::from(digit - b'0');
                match (i % 2 == 1, d * 2) {
                    (false, _) => d,
                    (true, doubled) if doubled > 9 => doubled - 9,
                    (true, doubled) => doubled,
                }
            })
            .sum();
        sum.is_multiple_of(10)
    }

    /// The masked form: the BIN, `*` for the middle and the last four (`411111******1111`). A PAN
    /// shorter than 16 digits shows fewer leading digits so that at least six stay hidden.
    pub fn masked(&self) -> String {
        let len = self.0.len();
        let head = BIN_DIGITS.min(len.saturating_sub(PAN_HIDDEN_DIGITS_MIN + PAN_TAIL_DIGITS));
        self.0
            .iter()
            .enumerate()
            .map(|(i, &digit)| {
                if i < head || i >= len - PAN_TAIL_DIGITS {
                    char::from(digit)
                } else {
                    '*'
                }
            })
            .collect()
    }
}

impl fmt::Debug for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pan({})", self.masked())
    }
}

impl fmt::Display for Pan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// A value that must never be printed: a CVV, a network credential, a key.
///
/// `Debug` and `Display` print `***`. [`Secret::expose`] is the one way to the value. Equality is
/// not constant-time: compare credentials with a constant-time function, not `==`.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    /// Wraps `value`.
    pub const fn new(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The clear value.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the clear value.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Secret<T> {
        Secret(value)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Generates [`ResultCode`] with its wire values, names and retry rules from one table.
macro_rules! result_codes {
    ($($(#[$doc:meta])* $variant:ident = $code:literal, $name:literal, $retry:literal;)*) => {
        /// The outcome of a request, as carried in `result_code` (docs/PROTOCOL.md, "Result codes").
        ///
        /// 0 approved; 1xxx declined by the issuer; 2xxx refused by PayMesh (the request is wrong
        /// or not allowed); 3xxx outcome not known or not reached yet; 4xxx protocol errors; 9xxx
        /// internal errors. A code this version does not know is kept as [`ResultCode::Other`].
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u16)]
        pub enum ResultCode {
            $($(#[$doc])* $variant = $code,)*
            /// A code this version does not know (only [`ResultCode::from_u16`] should build it).
            Other(u16) = u16::MAX,
        }

        impl ResultCode {
            /// Every code this version knows, in table order.
            pub const ALL: &'static [ResultCode] = &[$(ResultCode::$variant),*];

            /// The code for a wire value; unknown values become [`ResultCode::Other`].
            pub const fn from_u16(code: u16) -> ResultCode {
                match code {
                    $($code => ResultCode::$variant,)*
                    other => ResultCode::Other(other),
                }
            }

            /// The wire value.
            pub const fn as_u16(self) -> u16 {
                match self {
                    $(ResultCode::$variant => $code,)*
                    ResultCode::Other(code) => code,
                }
            }

            /// The upper-case name used in docs/PROTOCOL.md (`INSUFFICIENT_FUNDS`).
            pub const fn name(self) -> &'static str {
                match self {
                    $(ResultCode::$variant => $name,)*
                    ResultCode::Other(_) => "UNKNOWN",
                }
            }

            /// Whether the client may send the same request again, with the same order id and
            /// request id, and expect it to be processed at most once. Unknown codes follow their
            /// class: 3xxx and 9xxx yes, others no.
            pub const fn is_retryable(self) -> bool {
                match self {
                    $(ResultCode::$variant => $retry,)*
                    ResultCode::Other(code) => matches!(code / 1000, 3 | 9),
                }
            }
        }
    };
}

result_codes! {
    /// The request was carried out.
    Approved = 0, "APPROVED", false;
    /// The issuer declined, with no more specific reason.
    Declined = 1001, "DECLINED", false;
    /// Not enough funds or credit.
    InsufficientFunds = 1002, "INSUFFICIENT_FUNDS", false;
    /// The card has expired.
    ExpiredCard = 1003, "EXPIRED_CARD", false;
    /// The card number is not valid at the issuer.
    InvalidCard = 1004, "INVALID_CARD", false;
    /// An issuer-side amount or count limit was exceeded.
    IssuerLimitExceeded = 1005, "ISSUER_LIMIT_EXCEEDED", false;
    /// The issuer refused without a reason ("do not honor").
    DoNotHonor = 1006, "DO_NOT_HONOR", false;
    /// The account (bank account, phone subscription) is not valid.
    InvalidAccount = 1007, "INVALID_ACCOUNT", false;
    /// A field is missing, malformed or not allowed; `message` says which.
    InvalidRequest = 2001, "INVALID_REQUEST", false;
    /// The merchant id is not known.
    UnknownMerchant = 2002, "UNKNOWN_MERCHANT", false;
    /// The merchant is disabled.
    MerchantDisabled = 2003, "MERCHANT_DISABLED", false;
    /// The amount is over the merchant's single-transaction limit.
    AmountOverLimit = 2004, "AMOUNT_OVER_LIMIT", false;
    /// The merchant's daily total would be exceeded.
    DailyLimitExceeded = 2005, "DAILY_LIMIT_EXCEEDED", false;
    /// The idempotency key was used before with a different request.
    DuplicateOrder = 2006, "DUPLICATE_ORDER", false;
    /// The payment's state does not allow this operation (capture of a cancelled payment...).
    InvalidState = 2007, "INVALID_STATE", false;
    /// No payment has this order id or server transaction id.
    NotFound = 2008, "NOT_FOUND", false;
    /// Capture over the authorized amount, or refund over what is captured and not refunded.
    AmountExceedsAvailable = 2009, "AMOUNT_EXCEEDS_AVAILABLE", false;
    /// No upstream host serves this card, carrier or bank.
    Unroutable = 2010, "UNROUTABLE", false;
    /// The merchant or route does not accept the currency.
    UnsupportedCurrency = 2011, "UNSUPPORTED_CURRENCY", false;
    /// The device signature does not verify.
    InvalidSignature = 2012, "INVALID_SIGNATURE", false;
    /// The payment method is unknown or not offered for this request type.
    UnsupportedPaymentMethod = 2013, "UNSUPPORTED_PAYMENT_METHOD", false;
    /// The authorization's outcome was unknown and PayMesh reversed it at the host: nothing is
    /// charged and the order id is used up (a new attempt needs a new order id).
    Reversed = 2014, "REVERSED", false;
    /// PayMesh is at capacity (window, queue): nothing was done.
    Busy = 3001, "BUSY", true;
    /// No upstream link is up (or the host's circuit breaker is open, or its queue is full):
    /// nothing was sent.
    UpstreamUnavailable = 3002, "UPSTREAM_UNAVAILABLE", true;
    /// The upstream did not answer in time: the outcome is unknown (inquire by order id).
    UpstreamTimeout = 3003, "UPSTREAM_TIMEOUT", true;
    /// The outcome is unknown and being resolved (reversal or inquiry upstream).
    InDoubt = 3004, "IN_DOUBT", true;
    /// PayMesh is shutting down or the session is logging out: nothing was done.
    ShuttingDown = 3005, "SHUTTING_DOWN", true;
    /// The same idempotency key is still being processed.
    InProgress = 3006, "IN_PROGRESS", true;
    /// The host answered that the issuer or its switch is unavailable (ISO 8583 91, 92, 96):
    /// nothing is authorized; the same request again is attempted again.
    IssuerUnavailable = 3007, "ISSUER_UNAVAILABLE", true;
    /// A request came before LOGIN.
    NotLoggedIn = 4001, "NOT_LOGGED_IN", true;
    /// LOGIN's network id or credential is wrong.
    AuthFailed = 4002, "AUTH_FAILED", false;
    /// The frame or its body is malformed (or its correlation id is already in flight).
    MalformedFrame = 4003, "MALFORMED_FRAME", false;
    /// The frame's CRC-32C does not match: damaged in transit; resend on a new connection.
    ChecksumMismatch = 4004, "CHECKSUM_MISMATCH", true;
    /// The frame's version byte is not supported.
    UnsupportedVersion = 4005, "UNSUPPORTED_VERSION", false;
    /// The message type is unknown, or not one a client may send.
    UnknownMessageType = 4006, "UNKNOWN_MESSAGE_TYPE", false;
    /// The body is longer than the announced maximum.
    FrameTooLarge = 4007, "FRAME_TOO_LARGE", false;
    /// LOGIN on a session that is already logged in.
    AlreadyLoggedIn = 4008, "ALREADY_LOGGED_IN", false;
    /// A must-understand field (tag 0x8000..=0xFFFF) is not known to the receiver.
    UnknownCriticalField = 4009, "UNKNOWN_CRITICAL_FIELD", false;
    /// A bug or an unexpected failure inside PayMesh.
    InternalError = 9001, "INTERNAL_ERROR", true;
}

impl ResultCode {
    /// Whether this is [`ResultCode::Approved`].
    pub const fn is_approved(self) -> bool {
        matches!(self, ResultCode::Approved)
    }
}

impl fmt::Display for ResultCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.as_u16(), self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pan(s: &'static str) -> Pan {
        Pan::new(Bytes::from_static(s.as_bytes())).unwrap()
    }

    #[test]
    fn pan_validation_and_masking() {
        let p = pan("4111111111111111");
        assert!(p.luhn_valid());
        assert_eq!(p.bin(), 411_111);
        assert_eq!(p.masked(), "411111******1111");
        assert_eq!(
            format!("{p:?} {p}"),
            "Pan(411111******1111) 411111******1111"
        );
        assert_eq!(p.last4(), b"1111");
        assert!(!pan("4111111111111112").luhn_valid());
        assert_eq!(pan("123456789012").masked(), "12******9012");
        assert_eq!(pan("1234567890123456789").masked(), "123456*********6789");
        assert!(Pan::new(Bytes::from_static(b"12345678901")).is_none());
        assert!(Pan::new(Bytes::from_static(b"12345678901234567890")).is_none());
        assert!(Pan::new(Bytes::from_static(b"41111111111111a1")).is_none());
    }

    #[test]
    fn secret_never_prints() {
        let s = Secret::new(Bytes::from_static(b"hunter2"));
        assert_eq!(format!("{s:?} {s}"), "Secret(***) ***");
        assert_eq!(s.expose().as_ref(), b"hunter2");
    }

    #[test]
    fn money_is_checked() {
        let a = Money::new(u64::MAX, Currency::KRW);
        assert_eq!(a.checked_add(Money::new(1, Currency::KRW)), None);
        assert_eq!(a.checked_add(Money::new(0, Currency::USD)), None);
        assert_eq!(
            Money::new(5, Currency::USD).checked_sub(Money::new(6, Currency::USD)),
            None
        );
        let sum = Money::new(5, Currency::USD).checked_add(Money::new(6, Currency::USD));
        assert_eq!(sum, Some(Money::new(11, Currency::USD)));
        assert_eq!(Currency::KRW.to_string(), "KRW");
        assert_eq!(Currency(124).to_string(), "CAD");
        assert_eq!(Currency(999).to_string(), "XXX");
        assert_eq!(Currency(1).to_string(), "001");
        assert_eq!(Currency(1).minor_digits(), None);
        assert_eq!(Currency::KRW.minor_digits(), Some(0));
        assert_eq!(Currency(48).minor_digits(), Some(3), "Bahraini dinar");
    }

    #[test]
    fn result_codes_round_trip() {
        for &code in ResultCode::ALL {
            assert_eq!(ResultCode::from_u16(code.as_u16()), code);
        }
        assert_eq!(ResultCode::from_u16(3999), ResultCode::Other(3999));
        assert!(ResultCode::Other(3999).is_retryable());
        assert!(!ResultCode::Other(1999).is_retryable());
        assert!(ResultCode::UpstreamTimeout.is_retryable());
        assert!(!ResultCode::InsufficientFunds.is_retryable());
        assert_eq!(ResultCode::DoNotHonor.to_string(), "1006 DO_NOT_HONOR");
    }
}
