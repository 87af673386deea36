//! [`Store::open`] and the [`StoreHandle`] the router's shards feed.
//!
//! [`StoreHandle::offer`] is the only call on the hot path: a compare-and-swap on the queued-row
//! count and a `try_send`, never a wait. Rows count as queued from the offer until their batch
//! is committed, so [`StoreConfig::queue_max`] bounds the rows held in memory across the
//! channel and the writer's batch. The writer is woken at most once per batch: by the first
//! offer into an idle store, or by the offer that fills a batch (see `writer.rs`).

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crossbeam::channel::{self, Sender};

use crate::config::{CONTROL_MESSAGES_MAX, StoreConfig};
use crate::error::StoreError;
use crate::reader::StoreReader;
use crate::row::{MerchantRow, NetworkRow, TxnRow};
use crate::schema;
use crate::stats::{Counters, StoreStats};
use crate::writer::{Control, Writer};

/// How often [`StoreHandle::offer_wait`] looks for room in a full queue.
const OFFER_WAIT_POLL_MS: u64 = 1;

/// Entry points: [`Store::open`] for the writer side, [`Store::reader`] for queries.
#[derive(Debug)]
pub struct Store;

impl Store {
    /// Opens or creates the database at `config.path` (WAL, `synchronous=NORMAL`), migrates it,
    /// and starts the writer thread.
    pub fn open(config: StoreConfig) -> Result<StoreHandle, StoreError> {
        config.validate()?;
        let conn = schema::open_writer(&config.path)?;
        let (data_tx, data_rx) = channel::bounded(config.queue_max);
        let (control_tx, control_rx) = channel::bounded(CONTROL_MESSAGES_MAX);
        let state = Arc::new(State {
            queued_rows: AtomicUsize::new(0),
            queue_max: config.queue_max,
            batch_max: config.batch_max,
            counters: Counters::default(),
        });
        let writer = Writer {
            conn,
            data: data_rx,
            control: control_rx,
            state: Arc::clone(&state),
            batch_max: config.batch_max,
            flush_interval: Duration::from_millis(config.flush_interval_ms),
        };
        let thread = std::thread::Builder::new()
            .name("paymesh-store".into())
            .spawn(move || writer.run())
            .map_err(StoreError::Spawn)?;
        Ok(StoreHandle {
            data: data_tx,
            control: control_tx,
            writer: thread.thread().clone(),
            state,
            thread: Arc::new(Mutex::new(Some(thread))),
        })
    }

    /// Opens the database at `path` read-only for queries. One reader per thread; readers never
    /// block the writer nor wait for it (WAL).
    pub fn reader(path: impl AsRef<Path>) -> Result<StoreReader, StoreError> {
        StoreReader::open(path.as_ref())
    }
}

/// State shared by the handles and the writer (not the channels' senders: the writer must see
/// the channels close when the last handle goes).
#[derive(Debug)]
pub(crate) struct State {
    /// Rows offered and not yet committed.
    pub queued_rows: AtomicUsize,
    pub queue_max: usize,
    pub batch_max: usize,
    pub counters: Counters,
}

/// The feeding side of the store: cheap to clone, shared by every shard.
#[derive(Debug, Clone)]
pub struct StoreHandle {
    data: Sender<Vec<TxnRow>>,
    control: Sender<Control>,
    /// The writer thread, to wake it when a batch is full or a control message is sent.
    writer: Thread,
    state: Arc<State>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl StoreHandle {
    /// Queues `rows` for writing; never blocks. `false` when the queue is full or the writer
    /// has stopped: the rows are dropped and counted ([`StoreHandle::dropped`]). The journal
    /// still holds them, so a rebuild recovers them.
    pub fn offer(&self, rows: Vec<TxnRow>) -> bool {
        let count = rows.len();
        if count == 0 {
            return true;
        }
        let queue_max = self.state.queue_max;
        let reserved =
            self.state
                .queued_rows
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                    queued
                        .checked_add(count)
                        .filter(|&total| total <= queue_max)
                });
        let Ok(before) = reserved else {
            return self.refuse(count);
        };
        if self.data.try_send(rows).is_err() {
            self.state.queued_rows.fetch_sub(count, Ordering::AcqRel);
            return self.refuse(count);
        }
        // This offer filled a batch: the writer may be waiting for exactly that.
        let batch_max = self.state.batch_max;
        if before < batch_max && before + count >= batch_max {
            self.writer.unpark();
        }
        true
    }

    /// Queues `rows`, waiting for room instead of dropping: for a rebuild from the journal,
    /// where every row matters and nothing waits on the caller. Never on the hot path.
    /// [`StoreError::Closed`] when the writer has stopped.
    pub fn offer_wait(&self, rows: Vec<TxnRow>) -> Result<(), StoreError> {
        let queue_max = self.state.queue_max;
        let mut rows = rows;
        while !rows.is_empty() {
            let rest = rows.split_off(rows.len().min(queue_max));
            let count = rows.len();
            // Room frees up one committed batch at a time: poll rather than add a wake-up to the
            // writer's path.
            while self
                .state
                .queued_rows
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |queued| {
                    queued
                        .checked_add(count)
                        .filter(|&total| total <= queue_max)
                })
                .is_err()
            {
                if self.writer_stopped() {
                    return Err(StoreError::Closed);
                }
                std::thread::sleep(Duration::from_millis(OFFER_WAIT_POLL_MS));
            }
            if self.data.send(rows).is_err() {
                self.state.queued_rows.fetch_sub(count, Ordering::AcqRel);
                return Err(StoreError::Closed);
            }
            self.writer.unpark();
            rows = rest;
        }
        Ok(())
    }

    fn refuse(&self, count: usize) -> bool {
        let counters = &self.state.counters;
        Counters::add(&counters.dropped, 1);
        Counters::add(&counters.dropped_rows, count as u64);
        false
    }

    /// Queues merchant rows. Waits for room in the (small) control queue: this is for
    /// configuration loads, not the hot path.
    pub fn upsert_merchants(&self, rows: &[MerchantRow]) -> Result<(), StoreError> {
        self.send(Control::Merchants(rows.to_vec()))
    }

    /// Queues network rows, like [`StoreHandle::upsert_merchants`].
    pub fn upsert_networks(&self, rows: &[NetworkRow]) -> Result<(), StoreError> {
        self.send(Control::Networks(rows.to_vec()))
    }

    fn send(&self, message: Control) -> Result<(), StoreError> {
        self.control.send(message).map_err(|_| StoreError::Closed)?;
        self.writer.unpark();
        Ok(())
    }

    /// Blocks until every row offered before this call, and every merchant and network row
    /// sent before it, is committed (tests, shutdown).
    pub fn flush(&self) -> Result<(), StoreError> {
        let (ack_tx, ack_rx) = channel::bounded(1);
        self.send(Control::Flush(ack_tx))?;
        ack_rx.recv().map_err(|_| StoreError::Closed)
    }

    /// Writes what is queued, stops the writer thread and waits for it. Later offers return
    /// `false`. Calling it again, or from another clone, does nothing.
    pub fn shutdown(&self) {
        // An error means the writer has already stopped.
        let _ = self.send(Control::Shutdown);
        let thread = match self.thread.lock() {
            Ok(mut guard) => guard.take(),
            Err(poisoned) => poisoned.into_inner().take(),
        };
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("the query store writer thread panicked");
        }
    }

    /// Whether the writer thread has ended (shut down, or every handle but this one dropped).
    fn writer_stopped(&self) -> bool {
        match self.thread.lock() {
            Ok(guard) => guard.as_ref().is_none_or(JoinHandle::is_finished),
            Err(poisoned) => poisoned
                .get_ref()
                .as_ref()
                .is_none_or(JoinHandle::is_finished),
        }
    }

    /// Offers refused so far.
    pub fn dropped(&self) -> u64 {
        self.state.counters.dropped.load(Ordering::Relaxed)
    }

    /// Rows offered and not yet committed.
    pub fn queued_rows(&self) -> usize {
        self.state.queued_rows.load(Ordering::Acquire)
    }

    /// The counters.
    pub fn stats(&self) -> StoreStats {
        self.state.counters.snapshot()
    }
}
