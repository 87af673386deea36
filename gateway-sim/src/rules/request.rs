//! [`SimRequest`]: the fields of an ISO 8583 request that the rules look at, and the
//! [`Operation`] they ask for.

use bytes::Bytes;
use paymesh_codecs::iso8583::{IsoMessage, field};

use crate::error::SimError;

/// Field 102, account identification 1: the bank account of a bank-account payment.
const ACCOUNT_ID: u8 = 102;

/// What kind of account a request names, which decides the checks that apply to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// No account (network management messages).
    #[default]
    None,
    /// A card: PAN in field 2 with an expiry date in field 14. Luhn and expiry are checked.
    Card,
    /// A phone number for carrier billing: field 2 without an expiry.
    Phone,
    /// A bank account: field 102 (the bank code in field 100 is not looked at).
    BankAccount,
}

/// What a request asks the host to do, from its MTI and processing code (field 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Authorization or financial request that takes money (processing code `00`, `01`, `09`):
    /// purchase, cash, purchase with cash back.
    Debit,
    /// Refund (processing code `20`): money back to the account.
    Credit,
    /// Balance inquiry (processing code `30` or `31`).
    BalanceInquiry,
    /// `04xx`: undo what the original request (field 90) did.
    Reversal,
    /// `08xx`: sign-on, sign-off, echo (field 70).
    NetworkManagement,
    /// `0220`/`0221` with processing code `00`: completion advice (the capture of an earlier
    /// authorization, whose amount is already held): acknowledged, nothing moves again.
    Completion,
    /// Anything else, answered "12" (invalid transaction).
    Unsupported,
}

/// The fields of one request that the rules need, owned (no reference to the received buffer).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SimRequest {
    /// The MTI as a number, e.g. `100` for `0100`.
    pub mti: u16,
    /// Field 3, six ASCII digits (`000000` when absent).
    pub processing_code: [u8; 6],
    /// PAN digits, phone number or bank account (empty when absent). Never logged in full.
    pub account: Bytes,
    /// What kind of account `account` is.
    pub account_kind: AccountKind,
    /// Field 14, the card's expiry date as four ASCII digits `YYMM`.
    pub expiry: Option<Bytes>,
    /// Field 4, minor units (0 when absent).
    pub amount: u64,
    /// Field 49, ISO 4217 numeric currency (0 when absent).
    pub currency: u16,
    /// Field 11, the system trace audit number (STAN; 0 when absent).
    pub stan: u32,
    /// The original request's STAN, from field 90 (original data elements) of a reversal.
    pub original_stan: Option<u32>,
    /// Field 70, the network management code of an `08xx` (`001` sign-on, `002` sign-off,
    /// `301` echo).
    pub network_code: Option<u16>,
}

impl SimRequest {
    /// A card request: MTI `mti`, processing code `000000`, the PAN and expiry given.
    pub fn card(mti: u16, pan: &str, expiry: &str, amount: u64, stan: u32) -> SimRequest {
        SimRequest {
            mti,
            processing_code: *b"000000",
            account: Bytes::copy_from_slice(pan.as_bytes()),
            account_kind: AccountKind::Card,
            expiry: Some(Bytes::copy_from_slice(expiry.as_bytes())),
            amount,
            currency: 410,
            stan,
            original_stan: None,
            network_code: None,
        }
    }

    /// Reads the request out of a decoded message. Fields that the rules do not need may be
    /// missing; numbers the codec has already checked cannot fail to parse, so an error here
    /// means a field too long for its type.
    pub fn from_iso(msg: &IsoMessage) -> Result<SimRequest, SimError> {
        let processing_code = match msg.get_slice(field::PROCESSING_CODE) {
            Some(&[a, b, c, d, e, f]) => [a, b, c, d, e, f],
            _ => *b"000000",
        };
        let expiry = msg.get_slice(field::EXPIRY).map(Bytes::copy_from_slice);
        let (account, account_kind) = match (msg.get_slice(ACCOUNT_ID), msg.get_slice(field::PAN)) {
            (Some(account), _) => (account, AccountKind::BankAccount),
            (None, Some(pan)) if expiry.is_some() => (pan, AccountKind::Card),
            (None, Some(phone)) => (phone, AccountKind::Phone),
            (None, None) => (&[][..], AccountKind::None),
        };
        Ok(SimRequest {
            mti: msg.mti().number(),
            processing_code,
            account: Bytes::copy_from_slice(account),
            account_kind,
            expiry,
            amount: msg.amount()?.unwrap_or(0),
            currency: msg.currency()?.unwrap_or(0),
            stan: msg.stan()?.unwrap_or(0),
            original_stan: msg
                .get_slice(field::ORIGINAL_DATA_ELEMENTS)
                .and_then(original_stan),
            network_code: msg.network_management_code()?,
        })
    }

    /// What the request asks for.
    pub fn operation(&self) -> Operation {
        let class = self.mti / 100 % 10;
        let function = self.mti / 10 % 10;
        if function % 2 == 1 {
            // A response or acknowledgement: nothing for a host to do.
            return Operation::Unsupported;
        }
        match class {
            2 if function == 2 && self.processing_code.starts_with(b"00") => Operation::Completion,
            1 | 2 => match self.processing_code {
                [b'0', b'0' | b'1' | b'9', ..] => Operation::Debit,
                [b'2', b'0', ..] => Operation::Credit,
                [b'3', b'0' | b'1', ..] => Operation::BalanceInquiry,
                _ => Operation::Unsupported,
            },
            4 => Operation::Reversal,
            8 => Operation::NetworkManagement,
            _ => Operation::Unsupported,
        }
    }
}

/// The original STAN in field 90: original MTI (4), STAN (6), transmission date and time (10),
/// acquirer id (11), forwarding id (11). Lenient: only the STAN's six digits must be there.
fn original_stan(field_90: &[u8]) -> Option<u32> {
    let digits = field_90.get(4..10)?;
    digits.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// The account as it may be shown: the first 6 and last 4 digits of a long number (the BIN and
/// the last four, as PCI DSS allows) with `****` between, only the last 4 of a shorter one (phone
/// numbers, short bank accounts), nothing of a number of 8 characters or fewer.
pub fn mask_account(account: &[u8]) -> String {
    let len = account.len();
    let text = |part: Option<&[u8]>| String::from_utf8_lossy(part.unwrap_or_default()).into_owned();
    if len >= 14 {
        format!(
            "{}****{}",
            text(account.get(..6)),
            text(account.get(len - 4..))
        )
    } else if len > 8 {
        format!("****{}", text(account.get(len - 4..)))
    } else {
        "****".to_string()
    }
}
