//! The rows the store holds: [`TxnRow`] (one per payment), [`MerchantRow`], [`NetworkRow`].

use std::fmt;

use paymesh_codecs::message::{TxnAnswer, TxnKind};

use crate::pan::is_masked_pan_safe;

/// One payment's latest known state, built from an answer the router released.
///
/// Integers are `i64` because that is what SQLite stores; [`TxnRow::from_answer`] refuses an
/// answer whose ids or amounts do not fit rather than wrapping them. Its `Debug` never shows a
/// `masked_pan` that fails the masked-PAN guard.
#[derive(Clone, PartialEq, Eq)]
pub struct TxnRow {
    /// PayMesh's id of the payment (the key: one row per id).
    pub server_txn_id: i64,
    /// The merchant's id.
    pub merchant_id: String,
    /// The merchant's order id; (merchant_id, order_id) is unique.
    pub order_id: String,
    /// The last operation's name (`AUTHORIZE`, `CAPTURE`, ...).
    pub kind: String,
    /// The last operation's result code (`0` = APPROVED, see docs/PROTOCOL.md).
    pub result_code: u16,
    /// The payment's state (`TxnState` numbering), when the answer carried it.
    pub state: Option<u8>,
    /// The last operation's amount, minor units.
    pub amount: Option<i64>,
    /// Currency, ISO 4217 numeric.
    pub currency: Option<u16>,
    /// Total authorized, minor units.
    pub authorized_amount: Option<i64>,
    /// Total captured, minor units.
    pub captured_amount: Option<i64>,
    /// Total refunded, minor units.
    pub refunded_amount: Option<i64>,
    /// Issuer's approval code.
    pub approval_code: Option<String>,
    /// Retrieval reference number (RRN).
    pub rrn: Option<String>,
    /// The upstream's own response code.
    pub upstream_response_code: Option<String>,
    /// Masked card number (`411111******1111`): never the full PAN. The writer stores NULL and
    /// counts `rejected_pan` for a value that fails [`crate::pan::is_masked_pan_safe`].
    pub masked_pan: Option<String>,
    /// Wallet token (TOKENIZE answers).
    pub token: Option<String>,
    /// When this state was reached, unix ms: the newest state wins, an older one never
    /// overwrites it.
    pub updated_at_ms: i64,
    /// The network that created the payment (the first row's wins; `None`: not known to
    /// whoever wrote this row).
    pub network: Option<String>,
    /// Installment months (0: a lump sum).
    pub installment_months: u8,
}

impl TxnRow {
    /// The row for `answer`, stamped `at_ms`. `None` when the answer names no payment (no
    /// `server_txn_id`, merchant id or order id), when it is an INQUIRY answer (a read: it
    /// changes nothing), or when an id, amount or `at_ms` does not fit in an `i64`.
    ///
    /// The router passes the answer's `answered_at_ms` as `at_ms`, so that a replayed old
    /// answer carries its old time and cannot overwrite a newer state.
    pub fn from_answer(answer: &TxnAnswer, at_ms: u64) -> Option<TxnRow> {
        if answer.kind == TxnKind::Inquiry {
            return None;
        }
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        let amount = |a: Option<u64>| a.map(i64::try_from).transpose().ok();
        Some(TxnRow {
            server_txn_id: i64::try_from(answer.server_txn_id?).ok()?,
            merchant_id: text(answer.merchant_id.as_deref()?),
            order_id: text(answer.order_id.as_deref()?),
            kind: answer.kind.name().to_owned(),
            result_code: answer.result.as_u16(),
            state: answer.state,
            amount: amount(answer.amount)?,
            currency: answer.currency,
            authorized_amount: amount(answer.authorized_amount)?,
            captured_amount: amount(answer.captured_amount)?,
            refunded_amount: amount(answer.refunded_amount)?,
            approval_code: answer.approval_code.as_deref().map(text),
            rrn: answer.rrn.as_deref().map(text),
            upstream_response_code: answer.upstream_response_code.as_deref().map(text),
            masked_pan: answer.masked_pan.as_deref().map(text),
            token: answer.token.as_deref().map(text),
            updated_at_ms: i64::try_from(at_ms).ok()?,
            network: None,
            installment_months: answer.installment_months.unwrap_or(0),
        })
    }
}

impl fmt::Debug for TxnRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let masked_pan = match self.masked_pan.as_deref() {
            Some(m) if is_masked_pan_safe(m) => Some(m),
            Some(_) => Some("<refused: not masked>"),
            None => None,
        };
        f.debug_struct("TxnRow")
            .field("server_txn_id", &self.server_txn_id)
            .field("merchant_id", &self.merchant_id)
            .field("order_id", &self.order_id)
            .field("kind", &self.kind)
            .field("result_code", &self.result_code)
            .field("state", &self.state)
            .field("amount", &self.amount)
            .field("currency", &self.currency)
            .field("authorized_amount", &self.authorized_amount)
            .field("captured_amount", &self.captured_amount)
            .field("refunded_amount", &self.refunded_amount)
            .field("approval_code", &self.approval_code)
            .field("rrn", &self.rrn)
            .field("upstream_response_code", &self.upstream_response_code)
            .field("masked_pan", &masked_pan)
            .field("token", &self.token)
            .field("updated_at_ms", &self.updated_at_ms)
            .field("network", &self.network)
            .field("installment_months", &self.installment_months)
            .finish()
    }
}

/// A merchant as the consoles and settlement see it. Limits are minor units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MerchantRow {
    /// The merchant's id.
    pub id: String,
    /// Whether the merchant may transact.
    pub enabled: bool,
    /// Largest single transaction, minor units.
    pub single_limit_minor: i64,
    /// Largest total per business day, minor units.
    pub daily_limit_minor: i64,
}

/// A network (client) that may log in. Only its id and description: never its credential nor
/// the credential's hash, which stay in the router's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    /// The network's id.
    pub id: String,
    /// Free text for the consoles.
    pub description: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use paymesh_codecs::types::ResultCode;

    fn approved() -> TxnAnswer {
        let mut a = TxnAnswer::new(TxnKind::Authorize, ResultCode::Approved);
        a.merchant_id = Some("m1".into());
        a.order_id = Some("o1".into());
        a.server_txn_id = Some(7);
        a.amount = Some(1_000);
        a.masked_pan = Some("411111******1111".into());
        a
    }

    #[test]
    fn from_answer_takes_the_fields() {
        let row = TxnRow::from_answer(&approved(), 5).unwrap();
        assert_eq!(row.server_txn_id, 7);
        assert_eq!(row.kind, "AUTHORIZE");
        assert_eq!(row.result_code, 0);
        assert_eq!(row.amount, Some(1_000));
        assert_eq!(row.updated_at_ms, 5);
    }

    #[test]
    fn from_answer_refuses_what_names_no_payment() {
        let mut a = approved();
        a.server_txn_id = None;
        assert!(TxnRow::from_answer(&a, 5).is_none());
        let mut a = approved();
        a.kind = TxnKind::Inquiry;
        assert!(TxnRow::from_answer(&a, 5).is_none());
        let mut a = approved();
        a.amount = Some(u64::MAX);
        assert!(TxnRow::from_answer(&a, 5).is_none());
        assert!(TxnRow::from_answer(&approved(), u64::MAX).is_none());
    }

    #[test]
    fn debug_hides_an_unmasked_pan() {
        let mut a = approved();
        a.masked_pan = Some("4111111111111111".into());
        let row = TxnRow::from_answer(&a, 5).unwrap();
        assert!(!format!("{row:?}").contains("4111111111111111"));
    }
}
