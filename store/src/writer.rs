//! The writer thread: owns the connection, gathers rows into batches, commits them.
//!
//! Its cycle: wait (blocked on both channels) until there is work; let the batch fill, parked,
//! until it holds `batch_max` rows or `flush_interval` has passed since its first row (an offer
//! that fills a batch unparks it; a control message unparks it at once); drain the queue,
//! committing every `batch_max` rows. While parked it is not a waiting receiver, so offers do
//! not wake it one by one: the hot path pays no futex call and the writer no context switch per
//! offer.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender, TryRecvError};
use rusqlite::Connection;

use crate::handle::State;
use crate::row::{MerchantRow, NetworkRow, TxnRow};
use crate::stats::Counters;
use crate::write;

/// Messages other than rows: rare, never dropped, handled after the rows queued before them.
#[derive(Debug)]
pub(crate) enum Control {
    Merchants(Vec<MerchantRow>),
    Networks(Vec<NetworkRow>),
    Flush(Sender<()>),
    Shutdown,
}

/// What to do after a control message.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Continue,
    Stop,
}

pub(crate) struct Writer {
    pub conn: Connection,
    pub data: Receiver<Vec<TxnRow>>,
    pub control: Receiver<Control>,
    pub state: Arc<State>,
    pub batch_max: usize,
    pub flush_interval: Duration,
}

impl Writer {
    pub fn run(mut self) {
        let mut pending: Vec<TxnRow> = Vec::with_capacity(self.batch_max);
        loop {
            // Idle: block until rows or a control message arrive.
            crossbeam::channel::select! {
                recv(self.data) -> rows => match rows {
                    Ok(rows) => pending.extend(rows),
                    // Every handle is gone.
                    Err(_) => break,
                },
                recv(self.control) -> message => match message {
                    Ok(message) => {
                        if self.handle_control(message, &mut pending) == Next::Stop {
                            break;
                        }
                        continue;
                    }
                    Err(_) => break,
                },
            }
            if self.fill(&mut pending) == Next::Stop {
                break;
            }
            self.drain(&mut pending);
        }
        self.drain(&mut pending);
        tracing::info!("query store writer stopped");
    }

    /// Parks until the batch is full, the interval has passed, or a control message comes.
    fn fill(&mut self, pending: &mut Vec<TxnRow>) -> Next {
        let deadline = Instant::now() + self.flush_interval;
        loop {
            match self.control.try_recv() {
                Ok(message) => return self.handle_control(message, pending),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            }
            let now = Instant::now();
            if now >= deadline || self.state.queued_rows.load(Ordering::Acquire) >= self.batch_max {
                return Next::Continue;
            }
            std::thread::park_timeout(deadline - now);
        }
    }

    /// Takes every queued row, committing each `batch_max` of them.
    fn drain(&mut self, pending: &mut Vec<TxnRow>) {
        while let Ok(rows) = self.data.try_recv() {
            pending.extend(rows);
            if pending.len() >= self.batch_max {
                self.write_rows(pending);
            }
        }
        self.write_rows(pending);
    }

    fn handle_control(&mut self, message: Control, pending: &mut Vec<TxnRow>) -> Next {
        // Rows offered before the message come first.
        self.drain(pending);
        let counters = &self.state.counters;
        match message {
            Control::Merchants(rows) => {
                let result = write::write_merchants(&mut self.conn, &rows);
                count_config(result, &counters.merchants_written);
            }
            Control::Networks(rows) => {
                let result = write::write_networks(&mut self.conn, &rows);
                count_config(result, &counters.networks_written);
            }
            Control::Flush(ack) => {
                // The caller may have given up waiting: nothing to do then.
                let _ = ack.send(());
            }
            Control::Shutdown => return Next::Stop,
        }
        Next::Continue
    }

    fn write_rows(&mut self, pending: &mut Vec<TxnRow>) {
        if pending.is_empty() {
            return;
        }
        let counters = &self.state.counters;
        let started = Instant::now();
        match write::write_txn_rows(&mut self.conn, pending) {
            Ok(outcome) => {
                Counters::add(&counters.rows_written, outcome.written);
                Counters::add(&counters.rows_stale, outcome.stale);
                Counters::add(&counters.rows_failed, outcome.failed);
                Counters::add(&counters.rejected_pan, outcome.rejected_pan);
                Counters::add(&counters.batches, 1);
            }
            Err(error) => {
                // The journal still holds these rows: a rebuild recovers them.
                Counters::add(&counters.rows_failed, pending.len() as u64);
                tracing::error!(rows = pending.len(), %error, "query store batch failed");
            }
        }
        let micros = u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX);
        counters.last_batch_micros.store(micros, Ordering::Relaxed);
        Counters::add(&counters.write_micros, micros);
        self.state
            .queued_rows
            .fetch_sub(pending.len(), Ordering::AcqRel);
        pending.clear();
    }
}

/// Counts a merchant or network write, or logs its failure.
fn count_config(result: Result<u64, rusqlite::Error>, counter: &std::sync::atomic::AtomicU64) {
    match result {
        Ok(written) => Counters::add(counter, written),
        Err(error) => tracing::error!(%error, "query store configuration write failed"),
    }
}
