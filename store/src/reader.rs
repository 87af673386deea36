//! [`StoreReader`]: the query side, for inquiry and the consoles.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::config::LIST_ROWS_MAX;
use crate::error::StoreError;
use crate::row::{MerchantRow, NetworkRow, TxnRow};
use crate::schema;

const TXN_COLUMNS: &str = "server_txn_id, merchant_id, order_id, kind, result_code, state, \
     amount, currency, authorized_amount, captured_amount, refunded_amount, approval_code, rrn, \
     upstream_response_code, masked_pan, token, updated_at_ms, network, installment_months";

/// A read-only connection to the store. Each query sees the last committed batch.
#[derive(Debug)]
pub struct StoreReader {
    conn: Connection,
}

impl StoreReader {
    pub(crate) fn open(path: &Path) -> Result<StoreReader, StoreError> {
        Ok(StoreReader {
            conn: schema::open_reader(path)?,
        })
    }

    /// The payment with this server transaction id.
    pub fn by_txn_id(&self, server_txn_id: i64) -> Result<Option<TxnRow>, StoreError> {
        let sql = format!("SELECT {TXN_COLUMNS} FROM transactions WHERE server_txn_id = ?1");
        let mut statement = self.conn.prepare_cached(&sql)?;
        Ok(statement.query_row([server_txn_id], txn_row).optional()?)
    }

    /// The payment with this merchant's order id.
    pub fn by_order(
        &self,
        merchant_id: &str,
        order_id: &str,
    ) -> Result<Option<TxnRow>, StoreError> {
        let sql = format!(
            "SELECT {TXN_COLUMNS} FROM transactions WHERE merchant_id = ?1 AND order_id = ?2"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        Ok(statement
            .query_row([merchant_id, order_id], txn_row)
            .optional()?)
    }

    /// A merchant's payments updated at or after `since_ms`, oldest first (then by id), at most
    /// `limit` of them and never more than [`LIST_ROWS_MAX`]. To page on, ask again from the
    /// last row's `updated_at_ms` and skip the ids already seen.
    pub fn list_by_merchant(
        &self,
        merchant_id: &str,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<TxnRow>, StoreError> {
        let limit = i64::try_from(limit.min(LIST_ROWS_MAX)).unwrap_or(0);
        let sql = format!(
            "SELECT {TXN_COLUMNS} FROM transactions WHERE merchant_id = ?1 AND updated_at_ms >= ?2 \
             ORDER BY updated_at_ms, server_txn_id LIMIT ?3"
        );
        let mut statement = self.conn.prepare_cached(&sql)?;
        let rows = statement.query_map(params![merchant_id, since_ms, limit], txn_row)?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// How many payments the store holds.
    pub fn count(&self) -> Result<u64, StoreError> {
        let count: i64 = self
            .conn
            .query_row("SELECT count(*) FROM transactions", [], |r| r.get(0))?;
        Ok(u64::try_from(count).unwrap_or(0))
    }

    /// A merchant by id.
    pub fn merchant(&self, id: &str) -> Result<Option<MerchantRow>, StoreError> {
        let mut statement = self.conn.prepare_cached(
            "SELECT id, enabled, single_limit_minor, daily_limit_minor FROM merchants WHERE id = ?1",
        )?;
        let row = statement.query_row([id], |r| {
            Ok(MerchantRow {
                id: r.get(0)?,
                enabled: r.get(1)?,
                single_limit_minor: r.get(2)?,
                daily_limit_minor: r.get(3)?,
            })
        });
        Ok(row.optional()?)
    }

    /// A network by id.
    pub fn network(&self, id: &str) -> Result<Option<NetworkRow>, StoreError> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT id, description FROM networks WHERE id = ?1")?;
        let row = statement.query_row([id], |r| {
            Ok(NetworkRow {
                id: r.get(0)?,
                description: r.get(1)?,
            })
        });
        Ok(row.optional()?)
    }

    /// The schema version recorded in the database.
    pub fn schema_version(&self) -> Result<i64, StoreError> {
        schema::schema_version(&self.conn)
    }
}

/// A `transactions` row in [`TXN_COLUMNS`] order.
fn txn_row(r: &Row<'_>) -> rusqlite::Result<TxnRow> {
    Ok(TxnRow {
        server_txn_id: r.get(0)?,
        merchant_id: r.get(1)?,
        order_id: r.get(2)?,
        kind: r.get(3)?,
        result_code: r.get(4)?,
        state: r.get(5)?,
        amount: r.get(6)?,
        currency: r.get(7)?,
        authorized_amount: r.get(8)?,
        captured_amount: r.get(9)?,
        refunded_amount: r.get(10)?,
        approval_code: r.get(11)?,
        rrn: r.get(12)?,
        upstream_response_code: r.get(13)?,
        masked_pan: r.get(14)?,
        token: r.get(15)?,
        updated_at_ms: r.get(16)?,
        network: r.get(17)?,
        installment_months: r.get(18)?,
    })
}
