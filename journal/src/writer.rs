//! Group commit: [`Journal::start_writer`] moves the journal into one dedicated thread fed by a
//! bounded queue; [`JournalHandle`] (cheap to clone, shared by every shard) submits to it.
//!
//! The writer blocks for the first submission, then takes everything already queued up to the
//! batch limits, writes the batch with one write call, makes it durable with one `fdatasync`, and
//! only then calls each submission's `on_durable`, in LSN order. While it waits for the disk,
//! new submissions queue up and form the next batch: the slower the disk, the larger the batches.
//! Callbacks run on the writer thread: they must be quick (send on a channel, wake a task).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::thread::JoinHandle;

use bytes::Bytes;
use crossbeam::channel::{self, Receiver, Sender, TrySendError};

use crate::config::JournalConfig;
use crate::error::JournalError;
use crate::journal::{Journal, check_submission};
use crate::record::Lsn;
use crate::stats::{Counters, JournalStats};

/// Called once a submission is durable, with the LSN of its last record, or with the error that
/// prevented it. Runs on the writer thread.
pub type OnDurable = Box<dyn FnOnce(Result<Lsn, JournalError>) + Send>;
/// Called once a checkpoint is durable (and retention applied), or with its error.
pub type OnCheckpoint = Box<dyn FnOnce(Result<(), JournalError>) + Send>;

/// A completion callback of either kind.
type Callback<T> = Box<dyn FnOnce(Result<T, JournalError>) + Send>;

/// A callback that is called exactly once: with the result, or with [`JournalError::Closed`] if
/// it is dropped unanswered (writer gone, shutdown racing the submission).
struct Completion<T> {
    callback: Option<Callback<T>>,
}

impl<T> Completion<T> {
    fn new(callback: Callback<T>) -> Self {
        Completion {
            callback: Some(callback),
        }
    }

    fn complete(mut self, result: Result<T, JournalError>) {
        if let Some(callback) = self.callback.take() {
            run_callback(callback, result);
        }
    }

    /// Drops the callback without calling it: the submitter got an error from `submit` instead.
    fn disarm(mut self) {
        self.callback = None;
    }
}

impl<T> Drop for Completion<T> {
    fn drop(&mut self) {
        if let Some(callback) = self.callback.take() {
            run_callback(callback, Err(JournalError::Closed));
        }
    }
}

/// A panicking callback must not take the writer, and every shard with it, down.
fn run_callback<T>(callback: Callback<T>, result: Result<T, JournalError>) {
    if catch_unwind(AssertUnwindSafe(move || callback(result))).is_err() {
        tracing::error!("journal: a completion callback panicked; the writer carries on");
    }
}

enum Message {
    Submit {
        records: Vec<(u8, Bytes)>,
        bytes: usize,
        done: Completion<Lsn>,
    },
    /// A snapshot the caller's thread wrote to `temporary`, for the writer to adopt.
    Checkpoint {
        lsn: Lsn,
        temporary: std::path::PathBuf,
        state_len: usize,
        done: Completion<()>,
    },
    Shutdown,
}

impl Message {
    fn disarm(self) {
        match self {
            Message::Submit { done, .. } => done.disarm(),
            Message::Checkpoint { done, .. } => done.disarm(),
            Message::Shutdown => {}
        }
    }
}

/// State shared by the writer thread and the handles. Holds no `Sender`, so dropping every
/// handle disconnects the queue and lets the writer finish.
#[derive(Debug)]
struct Shared {
    stats: Arc<Counters>,
    queued_bytes: AtomicUsize,
    /// Queue places taken: by messages in the queue and by [`Reservation`]s not yet used. Never
    /// above the queue's capacity, so a reservation's send always finds room.
    slots: AtomicUsize,
    failure: OnceLock<Arc<JournalError>>,
}

impl Shared {
    /// Takes a queue place, if one of `capacity` is free.
    fn take_slot(&self, capacity: usize) -> bool {
        if self.slots.fetch_add(1, Ordering::AcqRel) >= capacity {
            self.slots.fetch_sub(1, Ordering::AcqRel);
            return false;
        }
        true
    }

    /// Takes `bytes` of the queue's byte budget, if they fit under `max`.
    fn take_bytes(&self, bytes: usize, max: usize) -> bool {
        let queued = self.queued_bytes.fetch_add(bytes, Ordering::AcqRel);
        if queued.saturating_add(bytes) > max {
            self.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return false;
        }
        true
    }
}

/// Room in the writer's queue for one submission of up to a number of bytes, taken before the
/// caller changes any state, so that the submission it then makes cannot be refused `Busy`
/// (only a failed or closed journal refuses it). Dropped unused, it gives the room back.
#[derive(Debug)]
#[must_use]
pub struct Reservation {
    handle: JournalHandle,
    bytes: usize,
    live: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.live {
            let shared = &self.handle.inner.shared;
            shared.queued_bytes.fetch_sub(self.bytes, Ordering::AcqRel);
            shared.slots.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

struct HandleInner {
    sender: Sender<Message>,
    shared: Arc<Shared>,
    config: JournalConfig,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Submits records to the writer thread. `Clone + Send + Sync`; see the module docs.
#[derive(Clone)]
pub struct JournalHandle {
    inner: Arc<HandleInner>,
}

impl std::fmt::Debug for JournalHandle {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("JournalHandle")
            .field("dir", &self.inner.config.dir)
            .field("queued", &self.inner.sender.len())
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Moves the journal into its writer thread (named `paymesh-journal`).
    ///
    /// # Errors
    ///
    /// When the operating system cannot start a thread.
    pub fn start_writer(self) -> Result<JournalHandle, JournalError> {
        let config = self.config.clone();
        let (sender, receiver) = channel::bounded(config.queue_batches_max);
        let shared = Arc::new(Shared {
            stats: self.stats.clone(),
            queued_bytes: AtomicUsize::new(0),
            slots: AtomicUsize::new(0),
            failure: OnceLock::new(),
        });
        let writer_shared = shared.clone();
        let thread = std::thread::Builder::new()
            .name("paymesh-journal".to_owned())
            .spawn(move || run(self, &receiver, &writer_shared))
            .map_err(JournalError::io("spawn writer thread", &config.dir))?;
        let inner = HandleInner {
            sender,
            shared,
            config,
            thread: Mutex::new(Some(thread)),
        };
        Ok(JournalHandle {
            inner: Arc::new(inner),
        })
    }
}

impl JournalHandle {
    /// Queues `records` (type, payload) for the next batch; `on_durable` gets the LSN of the last
    /// one once they are on disk. Never blocks: a full queue (`queue_batches_max` submissions or
    /// `queue_bytes_max` bytes) is [`JournalError::Busy`] at once, so the caller can answer BUSY.
    /// On any `Err`, `on_durable` is dropped without being called.
    pub fn submit(
        &self,
        records: Vec<(u8, Bytes)>,
        on_durable: OnDurable,
    ) -> Result<(), JournalError> {
        let shared = &self.inner.shared;
        let bytes = self.admissible(&records)?;
        if !shared.take_bytes(bytes, self.inner.config.queue_bytes_max) {
            shared.stats.busy();
            return Err(JournalError::Busy);
        }
        let message = Message::Submit {
            records,
            bytes,
            done: Completion::new(on_durable),
        };
        self.send(message).inspect_err(|_| {
            shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        })
    }

    /// Queues a checkpoint: `state` is the caller's state with every record up to and including
    /// `lsn` applied (see [`Journal::checkpoint`]). Ordered with the submissions before it. A full
    /// queue is [`JournalError::Busy`]: try again at the next checkpoint interval.
    pub fn checkpoint(
        &self,
        lsn: Lsn,
        state: Bytes,
        done: OnCheckpoint,
    ) -> Result<(), JournalError> {
        if let Some(cause) = self.inner.shared.failure.get() {
            return Err(JournalError::Poisoned(cause.clone()));
        }
        // The snapshot (hundreds of MB at full windows) is written here, on the caller's
        // thread: written by the writer thread it would hold every group commit behind it for
        // seconds. The writer only checks, renames and adopts it, and applies retention.
        if state.len() > crate::config::SNAPSHOT_BYTES_MAX {
            return Err(JournalError::InvalidCheckpoint {
                lsn: lsn.0,
                reason: "state larger than SNAPSHOT_BYTES_MAX",
            });
        }
        let config = &self.inner.config;
        let temporary =
            crate::files::write_snapshot_temporary(&config.dir, lsn, &state, config.durability)?;
        let state_len = state.len();
        drop(state);
        self.send(Message::Checkpoint {
            lsn,
            temporary: temporary.clone(),
            state_len,
            done: Completion::new(done),
        })
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&temporary);
        })
    }

    fn send(&self, message: Message) -> Result<(), JournalError> {
        let shared = &self.inner.shared;
        if !shared.take_slot(self.inner.config.queue_batches_max) {
            message.disarm();
            shared.stats.busy();
            return Err(JournalError::Busy);
        }
        self.send_in_slot(message)
    }

    /// Sends a message that holds a queue place already (the queue has room for it).
    fn send_in_slot(&self, message: Message) -> Result<(), JournalError> {
        match self.inner.sender.try_send(message) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(message) | TrySendError::Disconnected(message)) => {
                self.inner.shared.slots.fetch_sub(1, Ordering::AcqRel);
                message.disarm();
                Err(JournalError::Closed)
            }
        }
    }

    /// Reserves room for one later submission of at most `bytes` (encoded) bytes: `Busy` at once
    /// when the queue is full, `Poisoned` once the journal has failed. See [`Reservation`] and
    /// [`JournalHandle::submit_reserved`].
    pub fn reserve(&self, bytes: usize) -> Result<Reservation, JournalError> {
        let shared = &self.inner.shared;
        if let Some(cause) = shared.failure.get() {
            return Err(JournalError::Poisoned(cause.clone()));
        }
        if !shared.take_bytes(bytes, self.inner.config.queue_bytes_max) {
            shared.stats.busy();
            return Err(JournalError::Busy);
        }
        if !shared.take_slot(self.inner.config.queue_batches_max) {
            shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
            shared.stats.busy();
            return Err(JournalError::Busy);
        }
        Ok(Reservation {
            handle: self.clone(),
            bytes,
            live: true,
        })
    }

    /// The bytes `records` take in the queue, if the journal has not failed and they form one
    /// submission within the batch limits.
    fn admissible(&self, records: &[(u8, Bytes)]) -> Result<usize, JournalError> {
        if let Some(cause) = self.inner.shared.failure.get() {
            return Err(JournalError::Poisoned(cause.clone()));
        }
        check_submission(records, &self.inner.config)
    }

    /// Encoded bytes `records` take in the queue (what to [`JournalHandle::reserve`] for them).
    pub fn submission_bytes(&self, records: &[(u8, Bytes)]) -> Result<usize, JournalError> {
        check_submission(records, &self.inner.config)
    }

    /// [`JournalHandle::submit`] in the room `reservation` holds: never `Busy`. Records beyond
    /// the reserved bytes are refused (`Busy`, nothing queued): reserve what will be written.
    pub fn submit_reserved(
        &self,
        mut reservation: Reservation,
        records: Vec<(u8, Bytes)>,
        on_durable: OnDurable,
    ) -> Result<(), JournalError> {
        let shared = &self.inner.shared;
        let bytes = self.admissible(&records)?;
        if bytes > reservation.bytes {
            return Err(JournalError::Busy);
        }
        // The unused part of the byte budget goes back now; the place goes with the message.
        shared
            .queued_bytes
            .fetch_sub(reservation.bytes - bytes, Ordering::AcqRel);
        reservation.live = false;
        let message = Message::Submit {
            records,
            bytes,
            done: Completion::new(on_durable),
        };
        self.send_in_slot(message).inspect_err(|_| {
            shared.queued_bytes.fetch_sub(bytes, Ordering::AcqRel);
        })
    }

    /// A copy of the counters.
    pub fn stats(&self) -> JournalStats {
        self.inner.shared.stats.snapshot()
    }

    /// Submissions waiting for the writer.
    pub fn queued(&self) -> usize {
        self.inner.sender.len()
    }

    /// Lets the writer finish everything queued before this call (completing it), then joins
    /// it. Later submissions get [`JournalError::Closed`]. Returns the failure that poisoned the
    /// journal, if one did, so the caller learns that acknowledged work stopped at that point.
    pub fn shutdown(&self) -> Result<(), JournalError> {
        // Blocking send: the writer is draining the queue, so room appears.
        let _ = self.inner.sender.send(Message::Shutdown);
        let thread = self
            .inner
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread
            && thread.join().is_err()
        {
            tracing::error!("journal: the writer thread panicked");
            return Err(JournalError::Closed);
        }
        match self.inner.shared.failure.get() {
            Some(cause) => Err(JournalError::Poisoned(cause.clone())),
            None => Ok(()),
        }
    }
}

/// The submissions of the batch being formed.
struct Batch {
    done: Vec<(Lsn, Completion<Lsn>)>,
    records: usize,
    bytes: usize,
}

impl Batch {
    fn fits(&self, records: usize, bytes: usize, config: &JournalConfig) -> bool {
        // An empty submission (a durability barrier) counts as one record so that `done` stays
        // bounded by batch_records_max.
        self.records + records.max(1) <= config.batch_records_max
            && self.bytes + bytes <= config.batch_bytes_max
    }

    fn stage(&mut self, journal: &mut Journal, records: Vec<(u8, Bytes)>, done: Completion<Lsn>) {
        self.records += records.len().max(1);
        for (kind, payload) in &records {
            self.bytes += crate::record::encoded_len(payload.len());
            journal.stage(*kind, payload);
        }
        self.done.push((journal.next_lsn().previous(), done));
    }
}

fn dequeued(shared: &Shared, message: &Message) {
    match message {
        Message::Submit { bytes, .. } => {
            shared.queued_bytes.fetch_sub(*bytes, Ordering::AcqRel);
            shared.slots.fetch_sub(1, Ordering::AcqRel);
        }
        Message::Checkpoint { .. } => {
            shared.slots.fetch_sub(1, Ordering::AcqRel);
        }
        Message::Shutdown => {}
    }
}

/// The writer thread.
fn run(mut journal: Journal, receiver: &Receiver<Message>, shared: &Shared) {
    let config = journal.config().clone();
    let mut batch = Batch {
        done: Vec::new(),
        records: 0,
        bytes: 0,
    };
    let mut carried: Option<Message> = None;
    loop {
        let message = match carried.take() {
            Some(message) => message,
            None => match receiver.recv() {
                Ok(message) => {
                    dequeued(shared, &message);
                    message
                }
                Err(_) => break,
            },
        };
        match message {
            Message::Shutdown => break,
            Message::Checkpoint {
                lsn,
                temporary,
                state_len,
                done,
            } => {
                let result = journal.checkpoint_written(lsn, state_len, &temporary);
                done.complete(result);
            }
            Message::Submit { records, done, .. } => {
                batch.stage(&mut journal, records, done);
                carried = fill(&mut batch, &mut journal, receiver, shared, &config);
                commit(&mut batch, &mut journal, shared);
            }
        }
    }
    // Whatever raced the shutdown is answered Closed by `Completion::drop`.
    while let Ok(message) = receiver.try_recv() {
        dequeued(shared, &message);
    }
    tracing::debug!(next_lsn = journal.next_lsn().0, "journal: writer stopped");
}

/// Adds queued submissions to the batch until it is full or the queue empty; returns a message
/// that must wait for the next round (a checkpoint, a shutdown, a submission that does not fit).
fn fill(
    batch: &mut Batch,
    journal: &mut Journal,
    receiver: &Receiver<Message>,
    shared: &Shared,
    config: &JournalConfig,
) -> Option<Message> {
    loop {
        let message = receiver.try_recv().ok()?;
        dequeued(shared, &message);
        match message {
            Message::Submit {
                records,
                bytes,
                done,
            } if batch.fits(records.len(), bytes, config) => {
                batch.stage(journal, records, done);
            }
            other => return Some(other),
        }
    }
}

fn commit(batch: &mut Batch, journal: &mut Journal, shared: &Shared) {
    let result = journal.commit(batch.done.len() as u64);
    if let Err(error) = &result {
        let cause = match error {
            JournalError::Poisoned(cause) => cause.clone(),
            other => Arc::new(other.clone()),
        };
        let _ = shared.failure.set(cause);
    }
    for (lsn, done) in batch.done.drain(..) {
        done.complete(result.clone().map(|_| lsn));
    }
    batch.records = 0;
    batch.bytes = 0;
}
