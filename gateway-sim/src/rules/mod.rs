//! The host's decisions, sans-IO: [`HostRules`] (configuration) and [`Book`] (per-account state)
//! turn a [`SimRequest`] into a [`Decision`]. No sockets, no clock (today's date is passed in), no
//! randomness: the same requests in the same order always get the same answers, which is what the
//! deterministic simulation in `actors/tests/simulation.rs` relies on.
//!
//! # What a host decides
//!
//! - `0100`/`0200` debits (processing code `00xxxx`, `01xxxx`, `09xxxx`), in this order: account
//!   present (else "30"), an account rule forcing a code, Luhn on a card PAN ("14"), card expiry
//!   ("54"), amount patterns (e.g. amounts ending in 51 → "51"), the single-transaction limit
//!   ("61"), the balance ("51"). Approved: the balance is debited and an approval code given.
//! - Refunds (`20xxxx`) pass the same account checks and amount patterns, then credit.
//! - Balance inquiries (`30xxxx`, `31xxxx`) answer the balance (field 54, see [`balance_field`]).
//! - Reversals (`04xx`) undo what the original (account + original STAN from field 90) did, once,
//!   and are always answered "00": hosts acknowledge reversals even of requests they never saw.
//! - Network management (`08xx`): sign-on `001`, sign-off `002`, echo `301` → "00"; no field 70
//!   → "30"; another code → "12".
//! - Anything else → "12" (invalid transaction).

mod book;
mod request;

use serde::{Deserialize, Serialize};

pub use book::{BOOK_ACCOUNTS_MAX, BOOK_EFFECTS_MAX, Book, Effect};
pub use request::{AccountKind, Operation, SimRequest, mask_account};

use crate::error::SimError;

/// Explicit account rules a host may have. They are looked up by a linear scan: they are meant
/// for the few accounts a test or a demo singles out.
pub const ACCOUNT_RULES_MAX: usize = 1_000;
/// Amount patterns a host may have.
pub const PATTERNS_MAX: usize = 100;
/// The largest balance field 54 can show (12 digits); larger balances are shown as this.
pub const BALANCE_SHOWN_MAX: u64 = 999_999_999_999;

/// An ISO 8583 response code (field 39): two alphanumeric characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ResponseCode(pub [u8; 2]);

impl ResponseCode {
    /// "00" approved.
    pub const APPROVED: ResponseCode = ResponseCode(*b"00");
    /// "05" do not honour.
    pub const DO_NOT_HONOUR: ResponseCode = ResponseCode(*b"05");
    /// "12" invalid transaction.
    pub const INVALID_TRANSACTION: ResponseCode = ResponseCode(*b"12");
    /// "14" invalid card number.
    pub const INVALID_CARD: ResponseCode = ResponseCode(*b"14");
    /// "30" format error.
    pub const FORMAT_ERROR: ResponseCode = ResponseCode(*b"30");
    /// "51" insufficient funds.
    pub const INSUFFICIENT_FUNDS: ResponseCode = ResponseCode(*b"51");
    /// "54" expired card.
    pub const EXPIRED_CARD: ResponseCode = ResponseCode(*b"54");
    /// "61" exceeds withdrawal amount limit.
    pub const LIMIT_EXCEEDED: ResponseCode = ResponseCode(*b"61");
    /// "91" issuer or switch inoperative (also: a link that has not signed on).
    pub const ISSUER_UNAVAILABLE: ResponseCode = ResponseCode(*b"91");
}

impl TryFrom<String> for ResponseCode {
    type Error = String;
    fn try_from(text: String) -> Result<ResponseCode, String> {
        match text.as_bytes() {
            &[a, b] if a.is_ascii_alphanumeric() && b.is_ascii_alphanumeric() => {
                Ok(ResponseCode([a, b]))
            }
            _ => Err(format!(
                "response code {text:?} is not two letters or digits"
            )),
        }
    }
}

impl From<ResponseCode> for String {
    fn from(code: ResponseCode) -> String {
        String::from_utf8_lossy(&code.0).into_owned()
    }
}

/// Which accounts must pass the Luhn check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LuhnCheck {
    /// Card PANs (field 2 with an expiry in field 14).
    #[default]
    Cards,
    /// Every account in field 2 (cards and phone numbers).
    All,
    /// None.
    Never,
}

/// An account the configuration singles out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountRule {
    /// The PAN, phone number or bank account, as sent.
    pub account: String,
    /// Its opening balance (else the host's `default_balance`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<u64>,
    /// Its single-transaction limit (else the host's `default_limit`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
    /// A code every debit, refund and inquiry on it gets (e.g. "62" restricted card).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_code: Option<ResponseCode>,
}

/// Amounts that get a fixed response code: those ending in `amount_suffix` (decimal digits of the
/// 12-digit field 4), or those whose remainder by `amount_mod` is `remainder`. Exactly one of
/// `amount_suffix` and `amount_mod` is given.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AmountPattern {
    /// E.g. "51": amounts 51, 151, 10051...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_suffix: Option<String>,
    /// E.g. 1000 with `remainder` 999.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub amount_mod: Option<u64>,
    /// The remainder that matches, with `amount_mod`.
    #[serde(default)]
    pub remainder: u64,
    /// The code a matching amount gets.
    pub response_code: ResponseCode,
}

impl AmountPattern {
    /// A pattern on the last digits of the amount.
    pub fn suffix(suffix: &str, code: &[u8; 2]) -> AmountPattern {
        AmountPattern {
            amount_suffix: Some(suffix.to_string()),
            amount_mod: None,
            remainder: 0,
            response_code: ResponseCode(*code),
        }
    }

    /// The pattern as a modulus and remainder; `None` if it is not valid.
    fn modulus_remainder(&self) -> Option<(u64, u64)> {
        match (&self.amount_suffix, self.amount_mod) {
            (Some(suffix), None) => {
                let digits = u32::try_from(suffix.len()).ok()?;
                if !(1..=12).contains(&digits) || !suffix.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                Some((10u64.checked_pow(digits)?, suffix.parse().ok()?))
            }
            (None, Some(modulus)) if modulus > 0 && self.remainder < modulus => {
                Some((modulus, self.remainder))
            }
            _ => None,
        }
    }

    fn matches(&self, amount: u64) -> bool {
        self.modulus_remainder()
            .is_some_and(|(modulus, remainder)| amount % modulus == remainder)
    }
}

/// A host's rules: balances, limits, checks and amount patterns. Read-only while serving; the
/// state they act on is a [`Book`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HostRules {
    /// Opening balance of every account without its own, minor units.
    pub default_balance: u64,
    /// Single-transaction limit of every account without its own, minor units (none if absent).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default_limit: Option<u64>,
    /// Which accounts must pass the Luhn check.
    pub luhn: LuhnCheck,
    /// Whether a card's expiry date (field 14) is checked against today.
    pub check_expiry: bool,
    /// Accounts with their own balance, limit or forced response code.
    pub accounts: Vec<AccountRule>,
    /// Amounts with a fixed response code, first match wins.
    pub patterns: Vec<AmountPattern>,
}

impl Default for HostRules {
    /// Balance 1 000 000 000 minor units per account, no limit, Luhn on cards, expiry checked,
    /// amounts ending in 51 → "51" and in 05 → "05".
    fn default() -> HostRules {
        HostRules {
            default_balance: 1_000_000_000,
            default_limit: None,
            luhn: LuhnCheck::Cards,
            check_expiry: true,
            accounts: Vec::new(),
            patterns: vec![
                AmountPattern::suffix("51", b"51"),
                AmountPattern::suffix("05", b"05"),
            ],
        }
    }
}

/// The host's answer to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Field 39.
    pub response_code: [u8; 2],
    /// Field 38, given with every approval of a debit, refund or inquiry.
    pub approval_code: Option<[u8; 6]>,
    /// The balance, for a balance inquiry (field 54).
    pub balance: Option<u64>,
}

impl Decision {
    /// A decision with response code `code` and nothing else.
    pub fn code(code: ResponseCode) -> Decision {
        Decision {
            response_code: code.0,
            approval_code: None,
            balance: None,
        }
    }

    fn approved(book: &mut Book, balance: Option<u64>) -> Decision {
        Decision {
            response_code: ResponseCode::APPROVED.0,
            approval_code: Some(book.next_approval_code()),
            balance,
        }
    }

    /// Whether the response code is "00".
    pub fn is_approved(&self) -> bool {
        self.response_code == ResponseCode::APPROVED.0
    }
}

impl HostRules {
    /// Checks limits and patterns; every host configuration goes through this before serving.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.accounts.len() > ACCOUNT_RULES_MAX {
            return Err(SimError::Config(format!(
                "{} account rules, at most {ACCOUNT_RULES_MAX}",
                self.accounts.len()
            )));
        }
        if self.patterns.len() > PATTERNS_MAX {
            return Err(SimError::Config(format!(
                "{} amount patterns, at most {PATTERNS_MAX}",
                self.patterns.len()
            )));
        }
        if let Some(bad) = self
            .patterns
            .iter()
            .find(|p| p.modulus_remainder().is_none())
        {
            return Err(SimError::Config(format!(
                "amount pattern {bad:?}: give amount_suffix (1 to 12 digits) or amount_mod > 0 \
                 with remainder < amount_mod, not both"
            )));
        }
        Ok(())
    }

    fn account_rule(&self, account: &[u8]) -> Option<&AccountRule> {
        self.accounts
            .iter()
            .find(|rule| rule.account.as_bytes() == account)
    }

    /// Decides `req` and updates `book`. `today_yymm` is today's date as the number `YYMM`
    /// (e.g. 2611 for November 2026), for the expiry check. Never panics.
    pub fn decide(&self, book: &mut Book, today_yymm: u16, req: &SimRequest) -> Decision {
        match req.operation() {
            Operation::NetworkManagement => match req.network_code {
                Some(1 | 2 | 301) => Decision::code(ResponseCode::APPROVED),
                None => Decision::code(ResponseCode::FORMAT_ERROR),
                Some(_) => Decision::code(ResponseCode::INVALID_TRANSACTION),
            },
            Operation::Reversal => {
                if let Some(stan) = req.original_stan {
                    self.reverse(book, &req.account, stan);
                }
                Decision::code(ResponseCode::APPROVED)
            }
            Operation::Completion => Decision::code(ResponseCode::APPROVED),
            Operation::Unsupported => Decision::code(ResponseCode::INVALID_TRANSACTION),
            operation @ (Operation::Debit | Operation::Credit | Operation::BalanceInquiry) => {
                match self.payment(book, today_yymm, req, operation) {
                    Ok(decision) => decision,
                    Err(code) => Decision::code(code),
                }
            }
        }
    }

    /// Undoes the remembered effect of the request `stan` on `account`.
    fn reverse(&self, book: &mut Book, account: &bytes::Bytes, stan: u32) {
        let configured = self.opening_balance(account);
        let Some(effect) = book.forget(account, stan) else {
            return;
        };
        let balance = book.balance(account, configured);
        let restored = match effect {
            Effect::Debit(amount) => balance.saturating_add(amount),
            // A refund being reversed takes the money back, down to zero at most.
            Effect::Credit(amount) => balance.saturating_sub(amount),
        };
        book.set_balance(account, restored);
    }

    fn opening_balance(&self, account: &[u8]) -> u64 {
        self.account_rule(account)
            .and_then(|rule| rule.balance)
            .unwrap_or(self.default_balance)
    }

    fn payment(
        &self,
        book: &mut Book,
        today_yymm: u16,
        req: &SimRequest,
        operation: Operation,
    ) -> Result<Decision, ResponseCode> {
        if req.account.is_empty() {
            return Err(ResponseCode::FORMAT_ERROR);
        }
        let rule = self.account_rule(&req.account);
        if let Some(code) = rule.and_then(|rule| rule.response_code) {
            return Err(code);
        }
        let luhn = match self.luhn {
            LuhnCheck::Cards => req.account_kind == AccountKind::Card,
            LuhnCheck::All => matches!(req.account_kind, AccountKind::Card | AccountKind::Phone),
            LuhnCheck::Never => false,
        };
        if luhn && !luhn_valid(&req.account) {
            return Err(ResponseCode::INVALID_CARD);
        }
        if self.check_expiry
            && req.account_kind == AccountKind::Card
            && let Some(expiry) = &req.expiry
            && is_expired(expiry, today_yymm)
        {
            return Err(ResponseCode::EXPIRED_CARD);
        }
        let configured = self.opening_balance(&req.account);
        let balance = book.balance(&req.account, configured);
        if operation == Operation::BalanceInquiry {
            return Ok(Decision::approved(book, Some(balance)));
        }
        if let Some(pattern) = self.patterns.iter().find(|p| p.matches(req.amount))
            && pattern.response_code != ResponseCode::APPROVED
        {
            return Err(pattern.response_code);
        }
        let effect = if operation == Operation::Credit {
            book.set_balance(&req.account, balance.saturating_add(req.amount));
            Effect::Credit(req.amount)
        } else {
            let limit = rule.and_then(|rule| rule.limit).or(self.default_limit);
            if limit.is_some_and(|limit| req.amount > limit) {
                return Err(ResponseCode::LIMIT_EXCEEDED);
            }
            let Some(left) = balance.checked_sub(req.amount) else {
                return Err(ResponseCode::INSUFFICIENT_FUNDS);
            };
            book.set_balance(&req.account, left);
            Effect::Debit(req.amount)
        };
        book.remember(&req.account, req.stan, effect);
        Ok(Decision::approved(book, None))
    }
}

/// Whether `digits` is a card number (12 to 19 digits) whose last digit is its Luhn check digit.
pub fn luhn_valid(digits: &[u8]) -> bool {
    if !(12..=19).contains(&digits.len()) || !digits.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(position, &b)| {
            let digit = u32::from(b - b'0');
            match position % 2 {
                0 => digit,
                _ if digit >= 5 => digit * 2 - 9,
                _ => digit * 2,
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// Whether the card expiry `YYMM` is before today's month (a card is good through the end of its
/// expiry month). An expiry that is not a valid `YYMM` counts as expired. Two-digit years are
/// compared on a 100-year circle: up to 50 years ahead is the future, anything else the past.
pub fn is_expired(expiry: &[u8], today_yymm: u16) -> bool {
    let (year, month) = match expiry {
        &[y1, y2, m1, m2] if expiry.iter().all(u8::is_ascii_digit) => (
            i32::from(y1 - b'0') * 10 + i32::from(y2 - b'0'),
            i32::from(m1 - b'0') * 10 + i32::from(m2 - b'0'),
        ),
        _ => return true,
    };
    if !(1..=12).contains(&month) {
        return true;
    }
    let today_year = i32::from(today_yymm / 100 % 100);
    let today_month = i32::from(today_yymm % 100).clamp(1, 12);
    let months_ahead = (year * 12 + month - (today_year * 12 + today_month)).rem_euclid(1200);
    months_ahead >= 600
}

/// Field 54 (additional amounts) holding a balance: account type `00`, amount type `02`
/// (available balance), the currency (3 digits), `C` (credit, i.e. positive), the amount (12
/// digits, at most [`BALANCE_SHOWN_MAX`]).
pub fn balance_field(balance: u64, currency: u16) -> String {
    format!(
        "0002{:03}C{:012}",
        currency % 1000,
        balance.min(BALANCE_SHOWN_MAX)
    )
}

/// Today's date as `YYMM` from a Unix time in milliseconds (UTC), for [`HostRules::decide`].
pub fn yymm_from_unix_ms(unix_ms: u64) -> u16 {
    // Howard Hinnant's days-to-civil: exact for every date of the Gregorian calendar.
    let days = i64::try_from(unix_ms / 86_400_000).unwrap_or(0);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    u16::try_from(year.rem_euclid(100) * 100 + month).unwrap_or(0)
}

#[cfg(test)]
mod tests;
