//! INQUIRY for orders that have left their shard's window, answered from the query store.
//!
//! A shard answers INQUIRY from memory when it holds the order. When it does not (the order was
//! evicted, or never existed), it hands the request here instead of answering NOT_FOUND: one
//! thread with its own read-only SQLite connection looks the payment up (by server transaction
//! id, or by merchant and order id) and answers the session directly. The store holds each
//! payment's latest state as the router released it; rows the store dropped under pressure
//! (`paymesh_store_dropped_total`) are missing until a restart rebuilds them.
//!
//! The queue is bounded ([`LOOKUPS_QUEUED_MAX`]): when it is full the shard answers BUSY at once.
//! Nothing here blocks a shard.

use std::sync::Arc;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::thread::JoinHandle;

use bytes::Bytes;
use paymesh_codecs::message::{TxnAnswer, TxnKind, TxnRequest};
use paymesh_codecs::types::ResultCode;
use paymesh_store::{StoreReader, TxnRow};

use super::messages::{AnswerBatch, ReplyTo, SessionAnswer};
use crate::core::config::CoreSettings;
use crate::now_ms;

/// The settings the lookup thread answers under, replaced when a new version is applied (a
/// lock read per lookup: the thread is not an actor, and versions change rarely).
pub type SharedSettings = Arc<std::sync::RwLock<Arc<CoreSettings>>>;

/// Lookups queued for the thread; beyond it, inquiries for orders not in memory get BUSY.
pub const LOOKUPS_QUEUED_MAX: usize = 1_024;

/// One INQUIRY to answer from the store.
#[derive(Debug)]
struct Lookup {
    to: ReplyTo,
    network: Bytes,
    merchant_id: Bytes,
    order_id: Bytes,
    server_txn_id: Option<u64>,
    received_ms: u64,
}

/// The sending side, shared by the shards (cheap to clone).
#[derive(Debug, Clone)]
pub struct StoreLookup {
    tx: SyncSender<Lookup>,
}

impl StoreLookup {
    /// Starts the lookup thread on `reader`. It stops when every [`StoreLookup`] is dropped.
    /// `settings` say which network may see which payment.
    pub fn start(
        reader: StoreReader,
        settings: SharedSettings,
    ) -> std::io::Result<(StoreLookup, JoinHandle<()>)> {
        let (tx, rx) = sync_channel(LOOKUPS_QUEUED_MAX);
        let thread = std::thread::Builder::new()
            .name("paymesh-lookup".into())
            .spawn(move || run(&reader, &settings, &rx))?;
        Ok((StoreLookup { tx }, thread))
    }

    /// Queues `req` (an INQUIRY) to be answered on `to`; gives `to` back when the queue is full
    /// or the thread has stopped.
    pub fn submit(&self, to: ReplyTo, req: &TxnRequest, received_ms: u64) -> Result<(), ReplyTo> {
        let lookup = Lookup {
            network: to.network.clone(),
            to,
            merchant_id: req.merchant_id.clone(),
            order_id: req.order_id.clone(),
            server_txn_id: req.server_txn_id,
            received_ms,
        };
        self.tx.try_send(lookup).map_err(|e| match e {
            TrySendError::Full(l) | TrySendError::Disconnected(l) => l.to,
        })
    }
}

fn run(reader: &StoreReader, shared: &SharedSettings, rx: &Receiver<Lookup>) {
    while let Ok(lookup) = rx.recv() {
        let settings = shared
            .read()
            .map_or_else(|poisoned| poisoned.into_inner().clone(), |s| s.clone());
        let found = match lookup.server_txn_id {
            Some(id) => i64::try_from(id)
                .ok()
                .map_or(Ok(None), |id| reader.by_txn_id(id)),
            None => reader.by_order(
                &String::from_utf8_lossy(&lookup.merchant_id),
                &String::from_utf8_lossy(&lookup.order_id),
            ),
        };
        let mut answer = TxnAnswer::new(TxnKind::Inquiry, ResultCode::NotFound);
        answer.merchant_id = Some(lookup.merchant_id.clone());
        answer.order_id = Some(lookup.order_id.clone());
        match found {
            // By id, the row must also be the merchant's (when the request names one), and
            // a payment the network may not see is answered as a missing one.
            Ok(Some(row))
                if (lookup.merchant_id.is_empty()
                    || row.merchant_id.as_bytes() == &lookup.merchant_id[..])
                    && settings.may_see(
                        &lookup.network,
                        row.merchant_id.as_bytes(),
                        row.network.as_deref().map(str::as_bytes),
                    ) =>
            {
                fill_from_row(&mut answer, &row);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %e, "query store lookup failed");
                answer.result = ResultCode::InternalError;
            }
        }
        answer.received_at_ms = Some(lookup.received_ms);
        answer.answered_at_ms = Some(now_ms());
        let item = SessionAnswer {
            correlation_id: lookup.to.correlation_id,
            answer: Box::new(answer),
            retransmit: false,
        };
        // A closed session means the client left.
        lookup.to.session.do_send(AnswerBatch { items: vec![item] });
    }
}

/// An INQUIRY answer from the payment's stored state, with the fields a shard's own INQUIRY
/// answer carries.
fn fill_from_row(a: &mut TxnAnswer, row: &TxnRow) {
    let bytes = |s: &str| Bytes::copy_from_slice(s.as_bytes());
    let amount = |v: Option<i64>| v.and_then(|v| u64::try_from(v).ok());
    a.result = ResultCode::Approved;
    a.merchant_id = Some(bytes(&row.merchant_id));
    a.order_id = Some(bytes(&row.order_id));
    a.server_txn_id = u64::try_from(row.server_txn_id).ok();
    a.state = row.state;
    a.currency = row.currency;
    a.authorized_amount = amount(row.authorized_amount);
    a.captured_amount = amount(row.captured_amount);
    a.refunded_amount = amount(row.refunded_amount);
    a.approval_code = row.approval_code.as_deref().map(bytes);
    a.masked_pan = row.masked_pan.as_deref().map(bytes);
    a.installment_months = (row.installment_months > 0).then_some(row.installment_months);
}
