//! [`Record`]: everything a host processed, for tests to query and, optionally, as JSON lines in
//! a file (the raw material of settlement files). Thread-safe and bounded: past
//! [`RECORD_ENTRIES_MAX`] entries the oldest are dropped and counted. A full PAN is never stored:
//! accounts are masked by [`mask_account`] before they get here.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use paymesh_codecs::iso8583::{IsoMessage, field};
use serde::{Deserialize, Serialize};

use crate::error::SimError;
use crate::faults::FaultAction;
use crate::rules::{Decision, SimRequest, mask_account};

/// Entries kept in memory per host; older ones are dropped first.
pub const RECORD_ENTRIES_MAX: usize = 100_000;
/// Entries waiting for the file writer; beyond it new lines are dropped and counted.
pub const RECORD_FILE_QUEUE_MAX: usize = 10_000;
/// Field 48, additional data (private): the router puts the merchant's order id there.
const ORDER_REF: u8 = 48;

/// One processed request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordEntry {
    /// The host's name.
    pub host: String,
    /// The request's MTI as a number (`100` for `0100`).
    pub mti: u16,
    /// Field 3.
    pub processing_code: String,
    /// Field 11.
    pub stan: u32,
    /// Field 37, the retrieval reference number (RRN).
    pub rrn: Option<String>,
    /// The account, masked (first 6 and last 4 digits at most).
    pub account: String,
    /// Field 4, minor units.
    pub amount: u64,
    /// Field 49.
    pub currency: u16,
    /// Field 39 of the answer (whether or not it was delivered).
    pub response_code: String,
    /// Field 38 of the answer.
    pub approval_code: Option<String>,
    /// Field 48: the merchant's order id, as the router sends it.
    pub order_ref: Option<String>,
    /// The reversed request's STAN (field 90).
    pub original_stan: Option<u32>,
    /// What happened to the answer.
    pub fault: FaultAction,
    /// The latency drawn for the answer, milliseconds (late answers add `late_answer_ms`).
    pub latency_ms: u64,
    /// When the request was processed, Unix milliseconds.
    pub at_unix_ms: u64,
    /// Field 70 of a network management request (1 sign-on, 2 sign-off, 301 echo).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network_code: Option<u16>,
    /// The connection it came on, numbered from 0 in accept order since the host started (so a
    /// test can see what each link sent first).
    #[serde(default)]
    pub connection: u64,
}

impl RecordEntry {
    /// The entry for request `msg` (read as `req`) answered with `decision`.
    pub fn new(
        host: &str,
        msg: &IsoMessage,
        req: &SimRequest,
        decision: &Decision,
        fault: FaultAction,
        latency_ms: u64,
        at_unix_ms: u64,
    ) -> RecordEntry {
        let text = |f: u8| {
            msg.get_slice(f)
                .map(|v| String::from_utf8_lossy(v).into_owned())
        };
        RecordEntry {
            host: host.to_string(),
            mti: req.mti,
            processing_code: String::from_utf8_lossy(&req.processing_code).into_owned(),
            stan: req.stan,
            rrn: text(field::RRN),
            account: mask_account(&req.account),
            amount: req.amount,
            currency: req.currency,
            response_code: String::from_utf8_lossy(&decision.response_code).into_owned(),
            approval_code: decision
                .approval_code
                .map(|code| String::from_utf8_lossy(&code).into_owned()),
            order_ref: text(ORDER_REF),
            original_stan: req.original_stan,
            fault,
            latency_ms,
            at_unix_ms,
            network_code: req.network_code,
            connection: 0,
        }
    }
}

/// What the file writer thread is asked to do.
enum FileCommand {
    Line(String),
    /// Write and flush everything before, then answer.
    Flush(SyncSender<()>),
}

/// The JSON-lines file and the thread writing it.
#[derive(Debug)]
struct FileSink {
    path: PathBuf,
    queue: SyncSender<FileCommand>,
    writer: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Entries {
    entries: VecDeque<RecordEntry>,
    dropped: u64,
    file_dropped: u64,
}

/// The processed requests of one host. See the module docs.
#[derive(Debug)]
pub struct Record {
    inner: Mutex<Entries>,
    capacity: usize,
    file: Option<FileSink>,
}

impl Default for Record {
    fn default() -> Record {
        Record::new()
    }
}

impl Record {
    /// An in-memory record of at most [`RECORD_ENTRIES_MAX`] entries.
    pub fn new() -> Record {
        Record::with_capacity(RECORD_ENTRIES_MAX)
    }

    /// An in-memory record of at most `capacity` entries (at least 1).
    pub fn with_capacity(capacity: usize) -> Record {
        Record {
            inner: Mutex::new(Entries::default()),
            capacity: capacity.max(1),
            file: None,
        }
    }

    /// A record that also appends each entry as one JSON line to `path` (created if missing),
    /// from a thread of its own.
    pub fn with_file(path: &Path) -> Result<Record, SimError> {
        let error = |source| SimError::RecordFile {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(error)?;
        let (queue, commands) = sync_channel(RECORD_FILE_QUEUE_MAX);
        let writer = std::thread::Builder::new()
            .name("gateway-sim-record".into())
            .spawn(move || write_lines(file, commands))
            .map_err(error)?;
        Ok(Record {
            inner: Mutex::new(Entries::default()),
            capacity: RECORD_ENTRIES_MAX,
            file: Some(FileSink {
                path: path.to_path_buf(),
                queue,
                writer: Some(writer),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic while holding the lock cannot leave the entries inconsistent: keep going.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Adds an entry, dropping the oldest when full.
    pub fn push(&self, entry: RecordEntry) {
        let line = self
            .file
            .as_ref()
            .and_then(|_| serde_json::to_string(&entry).ok());
        let mut inner = self.lock();
        if inner.entries.len() >= self.capacity {
            inner.entries.pop_front();
            inner.dropped = inner.dropped.saturating_add(1);
        }
        inner.entries.push_back(entry);
        // Queued under the lock, so the file has the entries in the order of `entries`.
        if let (Some(file), Some(line)) = (&self.file, line)
            && let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
                file.queue.try_send(FileCommand::Line(line))
        {
            inner.file_dropped = inner.file_dropped.saturating_add(1);
        }
    }

    /// A copy of the entries kept, oldest first.
    pub fn entries(&self) -> Vec<RecordEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// How many kept entries satisfy `predicate`.
    pub fn count(&self, predicate: impl Fn(&RecordEntry) -> bool) -> usize {
        self.lock().entries.iter().filter(|e| predicate(e)).count()
    }

    /// Entries kept.
    pub fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Whether no entry is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entries dropped because the record was full.
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Lines not written to the file because its writer fell behind.
    pub fn file_dropped(&self) -> u64 {
        self.lock().file_dropped
    }

    /// The JSON-lines file, if any.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_ref().map(|file| file.path.as_path())
    }

    /// Blocks until every entry pushed so far is written to the file and flushed (returns at
    /// once without a file). Cheap enough to call from async code at the end of a test.
    pub fn flush(&self) {
        if let Some(file) = &self.file {
            let (done, wait) = sync_channel(1);
            if file.queue.send(FileCommand::Flush(done)).is_ok() {
                // An error means the writer is gone: nothing more will be written anyway.
                let _ = wait.recv();
            }
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if let Some(mut file) = self.file.take() {
            // Closing the queue ends the writer after it has written what is queued.
            drop(file.queue);
            if let Some(writer) = file.writer.take() {
                let _ = writer.join();
            }
        }
    }
}

/// The file writer: one line per entry, flushed whenever the queue runs empty (so a burst of
/// entries costs one write system call, not one each).
fn write_lines(file: std::fs::File, commands: Receiver<FileCommand>) {
    let mut out = std::io::BufWriter::new(file);
    let mut failed = false;
    while let Ok(first) = commands.recv() {
        let mut next = Some(first);
        while let Some(command) = next {
            match command {
                FileCommand::Line(line) => {
                    failed |= writeln!(out, "{line}").is_err();
                }
                FileCommand::Flush(done) => {
                    failed |= out.flush().is_err();
                    let _ = done.send(());
                }
            }
            next = commands.try_recv().ok();
        }
        failed |= out.flush().is_err();
        if failed {
            tracing::warn!("gateway-sim record file: write failed, lines may be missing");
            failed = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(stan: u32, order: Option<&str>) -> RecordEntry {
        RecordEntry {
            host: "van".into(),
            mti: 100,
            processing_code: "000000".into(),
            stan,
            rrn: None,
            account: mask_account(b"4111111111111111"),
            amount: 100,
            currency: 410,
            response_code: "00".into(),
            approval_code: Some("000001".into()),
            order_ref: order.map(str::to_string),
            original_stan: None,
            fault: FaultAction::None,
            latency_ms: 0,
            at_unix_ms: 0,
            network_code: None,
            connection: 0,
        }
    }

    #[test]
    fn bounded_oldest_dropped() {
        let record = Record::with_capacity(3);
        for stan in 1..=5 {
            record.push(entry(stan, Some("A1")));
        }
        assert_eq!(record.len(), 3);
        assert_eq!(record.dropped(), 2);
        let stans: Vec<u32> = record.entries().iter().map(|e| e.stan).collect();
        assert_eq!(stans, [3, 4, 5]);
        assert_eq!(record.count(|e| e.order_ref.as_deref() == Some("A1")), 3);
        assert_eq!(record.count(|e| e.stan > 3), 2);
    }

    #[test]
    fn json_lines_file_never_holds_a_pan() {
        let path = std::env::temp_dir().join(format!(
            "gateway-sim-record-{}-{:?}.jsonl",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let record = Record::with_file(&path).unwrap();
        for stan in 1..=3 {
            record.push(entry(stan, None));
        }
        record.flush();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<RecordEntry> = text
            .lines()
            .map(|line| serde_json::from_str(line).unwrap())
            .collect();
        assert_eq!(lines, record.entries());
        assert!(text.contains("411111****1111") && !text.contains("4111111111111111"));
        drop(record);
        let _ = std::fs::remove_file(&path);
    }
}
