//! PayMesh's embedded query store: transactions, merchants and networks in SQLite, for inquiry,
//! the web consoles and settlement.
//!
//! The store is never on the hot path. A shard, once an answer's journal record is durable,
//! hands the store a copy of each answer it released ([`TxnRow::from_answer`] then
//! [`StoreHandle::offer`]); `offer` never waits: when the bounded queue is full the rows are
//! dropped and counted. One writer thread commits them in batches. The journal is the durable
//! record; the store is a rebuildable view of it (`synchronous=NORMAL`, see docs/STORE.md).
//!
//! No column can hold a full card number (PAN): `masked_pan` only, guarded twice (the writer
//! nulls a value with more than 10 digits in a row or more than 12 in all and counts it, and a
//! SQL `CHECK` refuses 11 digits in a row). Full PANs live only encrypted in the journal; CVVs
//! nowhere.
//!
//! # Layout
//!
//! - [`config`]: [`StoreConfig`] and the bounds (`*_LIMIT`, `*_MAX`).
//! - `handle.rs`: [`Store::open`] (opens, migrates, starts the writer thread) and
//!   [`StoreHandle`] (`offer`, `offer_wait` for rebuilds, `upsert_merchants`,
//!   `upsert_networks`, `flush`, `shutdown`, `stats`).
//! - `writer.rs`: the writer thread's loop: a batch is committed at `batch_max` rows or
//!   `flush_interval_ms` after its first row, and the writer is woken at most once per batch.
//! - `write.rs`: the SQL the writer runs: upsert by `server_txn_id` where the newest
//!   `updated_at_ms` wins, one transaction per batch.
//! - `reader.rs`: [`Store::reader`] gives a read-only [`StoreReader`]: `by_txn_id`, `by_order`,
//!   `list_by_merchant` (bounded by [`LIST_ROWS_MAX`]), `count`, `merchant`, `network`.
//! - [`schema`]: the tables, the `schema_version` migrations, how connections are opened
//!   (WAL, `synchronous=NORMAL`).
//! - [`row`]: [`TxnRow`], [`MerchantRow`], [`NetworkRow`].
//! - [`pan`]: the masked-PAN guard.
//! - [`stats`]: [`StoreStats`] (rows written, batches, dropped offers, rejected PANs, batch time).
//! - [`error`]: [`StoreError`], the one error enum.
//! - `bin/store-bench.rs`: rows/s written and the cost of `offer`.

pub mod config;
pub mod error;
mod handle;
pub mod pan;
mod reader;
pub mod row;
pub mod schema;
pub mod stats;
mod write;
mod writer;

pub use config::{LIST_ROWS_MAX, StoreConfig};
pub use error::StoreError;
pub use handle::{Store, StoreHandle};
pub use reader::StoreReader;
pub use row::{MerchantRow, NetworkRow, TxnRow};
pub use stats::StoreStats;
