//! The SQL the writer thread runs: one transaction per batch, prepared statements reused.

use rusqlite::{CachedStatement, Connection, TransactionBehavior, params};

use crate::pan::is_masked_pan_safe;
use crate::row::{MerchantRow, NetworkRow, TxnRow};

/// The upsert of one transaction row, as a macro so that both statements below share its text.
/// Insert, or update when this state is not older than the stored one. Fields an answer does
/// not carry (a refusal names only the payment) keep their stored value. The key
/// (merchant_id, order_id) of a payment never changes, so it is not updated.
macro_rules! upsert_txn {
    () => {
        "INSERT INTO transactions (server_txn_id, merchant_id, order_id, kind, result_code, \
         state, amount, currency, authorized_amount, captured_amount, refunded_amount, \
         approval_code, rrn, upstream_response_code, masked_pan, token, updated_at_ms, network, \
         installment_months) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, \
         ?19) \
         ON CONFLICT (server_txn_id) DO UPDATE SET \
           kind = excluded.kind, \
           result_code = excluded.result_code, \
           state = coalesce(excluded.state, state), \
           amount = coalesce(excluded.amount, amount), \
           currency = coalesce(excluded.currency, currency), \
           authorized_amount = coalesce(excluded.authorized_amount, authorized_amount), \
           captured_amount = coalesce(excluded.captured_amount, captured_amount), \
           refunded_amount = coalesce(excluded.refunded_amount, refunded_amount), \
           approval_code = coalesce(excluded.approval_code, approval_code), \
           rrn = coalesce(excluded.rrn, rrn), \
           upstream_response_code = coalesce(excluded.upstream_response_code, \
             upstream_response_code), \
           masked_pan = coalesce(excluded.masked_pan, masked_pan), \
           token = coalesce(excluded.token, token), \
           network = coalesce(network, excluded.network), \
           installment_months = max(installment_months, excluded.installment_months), \
           updated_at_ms = excluded.updated_at_ms \
         WHERE excluded.updated_at_ms >= transactions.updated_at_ms"
    };
}

/// The common case: fails with a unique-index error when the order belongs to another payment.
const UPSERT_TXN: &str = upsert_txn!();

/// The rare case, after [`DELETE_SUPERSEDED`]: ignores the row when its order still belongs to
/// another, newer payment.
const UPSERT_TXN_OR_IGNORE: &str = concat!(upsert_txn!(), " ON CONFLICT DO NOTHING");

/// A newer payment under the same (merchant, order) replaces the older one: when the switch
/// forgot a declined order, a retry with that order id creates a new payment.
const DELETE_SUPERSEDED: &str = "DELETE FROM transactions \
     WHERE merchant_id = ?1 AND order_id = ?2 AND server_txn_id <> ?3 AND updated_at_ms <= ?4";

const UPSERT_MERCHANT: &str = "INSERT INTO merchants (id, enabled, single_limit_minor, \
     daily_limit_minor) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (id) DO UPDATE SET \
     enabled = excluded.enabled, single_limit_minor = excluded.single_limit_minor, \
     daily_limit_minor = excluded.daily_limit_minor";

const UPSERT_NETWORK: &str = "INSERT INTO networks (id, description) VALUES (?1, ?2) \
     ON CONFLICT (id) DO UPDATE SET description = excluded.description";

/// What one batch of transaction rows did.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchOutcome {
    /// Rows inserted or updated.
    pub written: u64,
    /// Rows older than the stored state.
    pub stale: u64,
    /// Rows SQLite refused.
    pub failed: u64,
    /// Rows whose masked_pan was replaced by NULL.
    pub rejected_pan: u64,
}

/// Writes `rows` in one transaction. A row SQLite refuses is logged and counted and the others
/// are still written; an error is returned only when the transaction itself fails.
pub(crate) fn write_txn_rows(
    conn: &mut Connection,
    rows: &[TxnRow],
) -> Result<BatchOutcome, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut outcome = BatchOutcome::default();
    {
        let mut upsert = tx.prepare_cached(UPSERT_TXN)?;
        for row in rows {
            let masked_pan = match row.masked_pan.as_deref() {
                Some(m) if !is_masked_pan_safe(m) => {
                    outcome.rejected_pan += 1;
                    None
                }
                other => other,
            };
            match write_one(&tx, &mut upsert, row, masked_pan) {
                Ok(0) => outcome.stale += 1,
                Ok(_) => outcome.written += 1,
                Err(error) => {
                    outcome.failed += 1;
                    tracing::warn!(
                        server_txn_id = row.server_txn_id,
                        %error,
                        "query store refused a transaction row"
                    );
                }
            }
        }
    }
    tx.commit()?;
    Ok(outcome)
}

/// The rows changed by the upsert (0 when the stored state is newer).
fn write_one(
    tx: &Connection,
    upsert: &mut CachedStatement<'_>,
    row: &TxnRow,
    masked_pan: Option<&str>,
) -> Result<usize, rusqlite::Error> {
    let values = params![
        row.server_txn_id,
        row.merchant_id,
        row.order_id,
        row.kind,
        row.result_code,
        row.state,
        row.amount,
        row.currency,
        row.authorized_amount,
        row.captured_amount,
        row.refunded_amount,
        row.approval_code,
        row.rrn,
        row.upstream_response_code,
        masked_pan,
        row.token,
        row.updated_at_ms,
        row.network,
        row.installment_months,
    ];
    match upsert.execute(values) {
        Err(error) if is_unique_violation(&error) => {
            // The order belongs to another payment: replace it if it is older, else ignore.
            tx.prepare_cached(DELETE_SUPERSEDED)?.execute(params![
                row.merchant_id,
                row.order_id,
                row.server_txn_id,
                row.updated_at_ms
            ])?;
            tx.prepare_cached(UPSERT_TXN_OR_IGNORE)?.execute(values)
        }
        other => other,
    }
}

/// Whether `error` is a UNIQUE index violation (the primary key is handled by the upsert, so
/// this is the (merchant_id, order_id) index).
fn is_unique_violation(error: &rusqlite::Error) -> bool {
    error
        .sqlite_error()
        .is_some_and(|e| e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE)
}

/// Upserts merchants in one transaction.
pub(crate) fn write_merchants(
    conn: &mut Connection,
    rows: &[MerchantRow],
) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut upsert = tx.prepare_cached(UPSERT_MERCHANT)?;
        for m in rows {
            upsert.execute(params![
                m.id,
                m.enabled,
                m.single_limit_minor,
                m.daily_limit_minor
            ])?;
        }
    }
    tx.commit()?;
    Ok(rows.len() as u64)
}

/// Upserts networks in one transaction.
pub(crate) fn write_networks(
    conn: &mut Connection,
    rows: &[NetworkRow],
) -> Result<u64, rusqlite::Error> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    {
        let mut upsert = tx.prepare_cached(UPSERT_NETWORK)?;
        for n in rows {
            upsert.execute(params![n.id, n.description])?;
        }
    }
    tx.commit()?;
    Ok(rows.len() as u64)
}
