//! The message type indicator (MTI): four digits for version, class, function and origin.
//!
//! `0100` is a 1987 (0) authorization (1) request (0) from the acquirer (0); its answer is `0110`.
//! Upstream matching (QMUX style) pairs a response with its request by STAN, terminal id and
//! [`MtiClass`], which is the same for both (`0100`/`0110`, `0400`/`0410`).

use std::fmt;

use super::error::IsoError;

/// A message type indicator, kept as four ASCII digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Mti([u8; 4]);

/// The message class: the MTI's second digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MtiClass {
    /// `x1xx`: authorization (no funds move yet).
    Authorization,
    /// `x2xx`: financial presentment (funds move).
    Financial,
    /// `x3xx`: file actions.
    FileAction,
    /// `x4xx`: reversal and chargeback.
    Reversal,
    /// `x5xx`: reconciliation.
    Reconciliation,
    /// `x6xx`: administrative.
    Administrative,
    /// `x7xx`: fee collection.
    FeeCollection,
    /// `x8xx`: network management (sign-on, echo, key exchange).
    NetworkManagement,
    /// `x0xx` and `x9xx`: reserved by ISO.
    Reserved,
}

impl Mti {
    /// `0100` authorization request.
    pub const AUTHORIZATION_REQUEST: Mti = Mti(*b"0100");
    /// `0110` authorization response.
    pub const AUTHORIZATION_RESPONSE: Mti = Mti(*b"0110");
    /// `0200` financial request.
    pub const FINANCIAL_REQUEST: Mti = Mti(*b"0200");
    /// `0210` financial response.
    pub const FINANCIAL_RESPONSE: Mti = Mti(*b"0210");
    /// `0400` reversal request.
    pub const REVERSAL_REQUEST: Mti = Mti(*b"0400");
    /// `0410` reversal response.
    pub const REVERSAL_RESPONSE: Mti = Mti(*b"0410");
    /// `0420` reversal advice.
    pub const REVERSAL_ADVICE: Mti = Mti(*b"0420");
    /// `0800` network management request.
    pub const NETWORK_REQUEST: Mti = Mti(*b"0800");
    /// `0810` network management response.
    pub const NETWORK_RESPONSE: Mti = Mti(*b"0810");

    /// Parses four ASCII digits, e.g. `b"0100"`.
    pub fn from_ascii(digits: &[u8]) -> Result<Mti, IsoError> {
        match digits {
            [a, b, c, d] if digits.iter().all(u8::is_ascii_digit) => Ok(Mti([*a, *b, *c, *d])),
            _ => Err(IsoError::InvalidMti { offset: 0 }),
        }
    }

    /// Builds an MTI from its number, e.g. `100` for `0100`.
    pub fn from_number(number: u16) -> Result<Mti, IsoError> {
        if number > 9999 {
            return Err(IsoError::InvalidMti { offset: 0 });
        }
        let digit = |divisor: u16| b'0' + ((number / divisor) % 10) as u8;
        Ok(Mti([digit(1000), digit(100), digit(10), digit(1)]))
    }

    /// The four ASCII digits.
    #[inline]
    pub fn as_bytes(&self) -> &[u8; 4] {
        &self.0
    }

    /// The MTI as a number, e.g. `110` for `0110`.
    pub fn number(&self) -> u16 {
        self.0
            .iter()
            .fold(0u16, |acc, d| acc * 10 + u16::from(d.wrapping_sub(b'0')))
    }

    fn digit(&self, index: usize) -> u8 {
        self.0.get(index).map_or(0, |d| d.wrapping_sub(b'0'))
    }

    /// The message class (second digit).
    pub fn class(&self) -> MtiClass {
        match self.digit(1) {
            1 => MtiClass::Authorization,
            2 => MtiClass::Financial,
            3 => MtiClass::FileAction,
            4 => MtiClass::Reversal,
            5 => MtiClass::Reconciliation,
            6 => MtiClass::Administrative,
            7 => MtiClass::FeeCollection,
            8 => MtiClass::NetworkManagement,
            _ => MtiClass::Reserved,
        }
    }

    /// Whether this answers another message: its function (third digit) is odd
    /// (`1` request response, `3` advice response, `5` notification acknowledgement...).
    pub fn is_response(&self) -> bool {
        self.digit(2) % 2 == 1
    }

    /// Whether the origin (fourth digit) marks a repeat (`0401` is a repeated `0400`).
    pub fn is_repeat(&self) -> bool {
        self.digit(3) % 2 == 1
    }

    /// The MTI that answers this one: function + 1, repeat origin cleared
    /// (`0100`→`0110`, `0220`→`0230`, `0401`→`0410`, `0800`→`0810`). `None` for a response.
    pub fn response_mti(&self) -> Option<Mti> {
        if self.is_response() {
            return None;
        }
        let [version, class, function, origin] = self.0;
        let origin = if self.is_repeat() { origin - 1 } else { origin };
        Some(Mti([version, class, function + 1, origin]))
    }
}

impl fmt::Display for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The four bytes are ASCII digits by construction.
        let [a, b, c, d] = self.0;
        write!(
            f,
            "{}{}{}{}",
            char::from(a),
            char::from(b),
            char::from(c),
            char::from(d)
        )
    }
}

impl fmt::Debug for Mti {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Mti({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mti(s: &str) -> Mti {
        Mti::from_ascii(s.as_bytes()).unwrap()
    }

    #[test]
    fn responses() {
        for (request, response) in [
            ("0100", "0110"),
            ("0200", "0210"),
            ("0400", "0410"),
            ("0401", "0410"),
            ("0420", "0430"),
            ("0800", "0810"),
            ("1100", "1110"),
        ] {
            assert!(!mti(request).is_response());
            assert_eq!(
                mti(request).response_mti(),
                Some(mti(response)),
                "{request}"
            );
            assert!(mti(response).is_response());
            assert_eq!(mti(response).response_mti(), None);
            assert_eq!(mti(request).class(), mti(response).class());
        }
    }

    #[test]
    fn classes_and_numbers() {
        assert_eq!(mti("0100").class(), MtiClass::Authorization);
        assert_eq!(mti("0210").class(), MtiClass::Financial);
        assert_eq!(mti("0400").class(), MtiClass::Reversal);
        assert_eq!(mti("0810").class(), MtiClass::NetworkManagement);
        assert_eq!(mti("0900").class(), MtiClass::Reserved);
        assert_eq!(Mti::from_number(110).unwrap(), Mti::AUTHORIZATION_RESPONSE);
        assert_eq!(mti("0810").number(), 810);
        assert_eq!(mti("0100").to_string(), "0100");
        assert!(Mti::from_ascii(b"01a0").is_err());
        assert!(Mti::from_ascii(b"010").is_err());
        assert!(Mti::from_number(10_000).is_err());
    }
}
