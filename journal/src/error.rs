//! [`JournalError`], the one error of the crate, and [`CorruptReason`], what exactly is wrong with
//! bytes read back from disk.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything that can go wrong in the journal. `Clone` (I/O errors are shared behind an `Arc`) so
/// that one failed batch can answer every submission in it.
#[derive(Debug, Clone, thiserror::Error)]
pub enum JournalError {
    /// An operating-system call on a journal file or directory failed.
    #[error("journal: {operation} {path}: {source}")]
    Io {
        /// What was being done: "open", "write", "fdatasync", "rename", ...
        operation: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: Arc<io::Error>,
    },
    /// Bytes on disk are damaged before the tail of the log (or in a snapshot): start-up stops
    /// rather than skip them silently. Repair needs an operator (restore the file from a replica or
    /// backup, or truncate it knowingly).
    #[error("journal: corrupt {file} at byte {offset}: {reason}")]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset in that file of the first damaged record (0 for whole-file problems).
        offset: u64,
        /// What is wrong there.
        reason: CorruptReason,
    },
    /// A journal file carries a format version newer than this build reads: a newer build wrote
    /// it. Start-up stops rather than misread it; nothing was changed, so the newer build can
    /// still start.
    #[error(
        "journal: {file}: {what} format {found} was written by a newer PayMesh build; this build reads up to format {known}. Start the newer build (nothing was changed)"
    )]
    NewerFormat {
        /// The file.
        file: PathBuf,
        /// Which format: "journal directory", "snapshot file".
        what: &'static str,
        /// The version found.
        found: u16,
        /// The newest version this build reads.
        known: u16,
    },
    /// [`crate::decode_record`] met bytes that are not a record (no file or offset known there:
    /// the recovery scanner turns this into [`JournalError::Corrupt`] or a truncated tail).
    #[error("journal: malformed record: {0}")]
    Malformed(CorruptReason),
    /// A configuration value is outside its limit.
    #[error("journal: invalid configuration: {0}")]
    InvalidConfig(String),
    /// A record payload is larger than [`crate::RECORD_PAYLOAD_BYTES_MAX`].
    #[error("journal: record payload of {payload_bytes} bytes exceeds the maximum of {max} bytes")]
    RecordTooLarge {
        /// The payload size offered.
        payload_bytes: usize,
        /// The limit.
        max: usize,
    },
    /// One submission holds more records or bytes than one batch may (`batch_records_max`,
    /// `batch_bytes_max`): split it.
    #[error("journal: submission of {records} records / {bytes} bytes exceeds one batch")]
    SubmissionTooLarge {
        /// Records in the submission.
        records: usize,
        /// Encoded bytes of the submission.
        bytes: usize,
    },
    /// The submission queue is full (count or bytes): answer BUSY to the client, do not wait.
    #[error("journal: busy, submission queue full")]
    Busy,
    /// The writer has shut down (or was dropped) before this request was made durable.
    #[error("journal: closed")]
    Closed,
    /// An earlier write or fsync failed: after a failed fsync the page cache state is unknown, so
    /// the journal accepts nothing more. Restart the process and let recovery decide.
    #[error("journal: stopped after an earlier failure: {0}")]
    Poisoned(Arc<JournalError>),
    /// A checkpoint was refused (LSN not yet written, older than the last checkpoint, or state
    /// too large).
    #[error("journal: invalid checkpoint at lsn {lsn}: {reason}")]
    InvalidCheckpoint {
        /// The LSN asked for.
        lsn: u64,
        /// Why it was refused.
        reason: &'static str,
    },
}

/// What is wrong with bytes read back from a segment or snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CorruptReason {
    /// The length prefix is below the 9 bytes of type and LSN.
    #[error("record length {length} below the minimum")]
    LengthTooSmall {
        /// The length read.
        length: u32,
    },
    /// The length prefix is above [`crate::RECORD_BYTES_MAX`].
    #[error("record length {length} above the maximum")]
    LengthTooLarge {
        /// The length read.
        length: u32,
    },
    /// The CRC-32C stored does not match the bytes.
    #[error("checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    ChecksumMismatch {
        /// The checksum stored in the record.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// The file ends inside a record.
    #[error("record cut short ({available} of {needed} bytes present)")]
    Truncated {
        /// Bytes the record needs (from its length prefix, or the 8-byte prefix itself).
        needed: u64,
        /// Bytes present until the end of the file.
        available: u64,
    },
    /// A well-formed record carries an LSN other than the next one expected.
    #[error("lsn {found} where {expected} was expected")]
    LsnMismatch {
        /// The LSN expected from the previous record or the segment name.
        expected: u64,
        /// The LSN in the record.
        found: u64,
    },
    /// A segment file is missing: the log has a hole before this LSN.
    #[error("segment holding lsn {expected} is missing")]
    MissingSegment {
        /// The first LSN that no segment holds.
        expected: u64,
    },
    /// A segment or snapshot file is larger than any the journal writes.
    #[error("file of {bytes} bytes is larger than the journal ever writes")]
    FileTooLarge {
        /// The file's size.
        bytes: u64,
    },
    /// A snapshot's header is damaged (magic, length or LSN differing from its name).
    #[error("snapshot header damaged")]
    SnapshotHeader,
    /// The directory's format file does not hold `paymesh-journal <version>`.
    #[error("format file unreadable (expected \"paymesh-journal <version>\")")]
    FormatFile,
    /// A snapshot's CRC-32C does not match its contents.
    #[error("snapshot checksum mismatch")]
    SnapshotChecksum,
    /// The log ends before the LSN of the newest snapshot: records the snapshot covers are gone.
    #[error("log ends at lsn {log_end} before the snapshot's lsn {snapshot_lsn}")]
    LogEndsBeforeSnapshot {
        /// The snapshot's LSN.
        snapshot_lsn: u64,
        /// The last LSN in the log (0 when empty).
        log_end: u64,
    },
}

impl JournalError {
    /// A closure mapping an `io::Error` into [`JournalError::Io`] for `map_err`.
    pub(crate) fn io(
        operation: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(io::Error) -> JournalError {
        let path = path.into();
        move |source| JournalError::Io {
            operation,
            path,
            source: Arc::new(source),
        }
    }
}
