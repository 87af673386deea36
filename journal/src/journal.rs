//! [`Journal`]: the open journal, owning its files. Appends (staged into one buffer, written with
//! one write call and made durable with one `fdatasync`), rotation, checkpoints and retention.
//! Used directly by one thread, or moved into the writer thread by [`Journal::start_writer`].

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File};
use std::io::{ErrorKind, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::config::{Durability, JournalConfig, SNAPSHOT_BYTES_MAX};
use crate::error::JournalError;
use crate::files::{segment_file_name, sync_dir, write_snapshot};
use crate::record::{Lsn, RECORD_PAYLOAD_BYTES_MAX, encode_record, encoded_len};
use crate::stats::{Counters, JournalStats};

/// The segment being appended to.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub file: File,
    pub path: PathBuf,
    pub first_lsn: Lsn,
    pub len: u64,
}

/// The open journal. Not shared: one owner appends (see [`crate::JournalHandle`] for many).
pub struct Journal {
    pub(crate) config: JournalConfig,
    pub(crate) active: ActiveSegment,
    /// Closed segments, oldest first: candidates for retention.
    pub(crate) closed: VecDeque<(Lsn, PathBuf)>,
    /// The newest snapshot, and older ones left by a crash, deleted at the next checkpoint.
    pub(crate) snapshot: Option<(Lsn, PathBuf)>,
    pub(crate) stale_snapshots: Vec<PathBuf>,
    /// The LSN the next staged record gets.
    pub(crate) next_lsn: Lsn,
    /// The first LSN not yet written and synced (the first one in `buffer`).
    pub(crate) durable_next: Lsn,
    /// Records staged for the next write, already encoded.
    pub(crate) buffer: Vec<u8>,
    pub(crate) failure: Option<Arc<JournalError>>,
    pub(crate) stats: Arc<Counters>,
}

impl fmt::Debug for Journal {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter
            .debug_struct("Journal")
            .field("dir", &self.config.dir)
            .field("active", &self.active.path)
            .field("closed_segments", &self.closed.len())
            .field("next_lsn", &self.next_lsn)
            .field("failed", &self.failure.is_some())
            .finish_non_exhaustive()
    }
}

/// Checks one submission against the record and batch limits; returns its encoded size.
pub(crate) fn check_submission(
    records: &[(u8, Bytes)],
    config: &JournalConfig,
) -> Result<usize, JournalError> {
    let mut bytes = 0_usize;
    for (_, payload) in records {
        if payload.len() > RECORD_PAYLOAD_BYTES_MAX {
            let max = RECORD_PAYLOAD_BYTES_MAX;
            return Err(JournalError::RecordTooLarge {
                payload_bytes: payload.len(),
                max,
            });
        }
        bytes = bytes.saturating_add(encoded_len(payload.len()));
    }
    if records.len() > config.batch_records_max || bytes > config.batch_bytes_max {
        return Err(JournalError::SubmissionTooLarge {
            records: records.len(),
            bytes,
        });
    }
    Ok(bytes)
}

impl Journal {
    /// Appends `records` and makes them durable (one write, one `fdatasync`) before returning the
    /// LSN of the last one (the last LSN written so far when `records` is empty). The synchronous
    /// path, for one owner; [`Journal::start_writer`] gives group commit across threads.
    pub fn append(&mut self, records: &[(u8, Bytes)]) -> Result<Lsn, JournalError> {
        check_submission(records, &self.config)?;
        for (kind, payload) in records {
            self.stage(*kind, payload);
        }
        self.commit(1)
    }

    /// The LSN the next record will get.
    pub fn next_lsn(&self) -> Lsn {
        self.next_lsn
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    /// Counters since open.
    pub fn stats(&self) -> JournalStats {
        self.stats.snapshot()
    }

    /// Encodes one record into the write buffer and returns its LSN. Sizes are checked by the
    /// caller ([`check_submission`]).
    pub(crate) fn stage(&mut self, kind: u8, payload: &[u8]) -> Lsn {
        let lsn = self.next_lsn;
        if self.failure.is_none() {
            encode_record(&mut self.buffer, lsn, kind, payload);
            self.next_lsn = lsn.next();
        }
        lsn
    }

    /// Writes the staged records with one write call and one `fdatasync`; returns the last LSN
    /// now durable. After a failure the journal is poisoned: the file may hold part of the batch
    /// and the page cache state after a failed fsync is unknown, so nothing more is written.
    pub(crate) fn commit(&mut self, submissions: u64) -> Result<Lsn, JournalError> {
        if let Some(cause) = &self.failure {
            self.buffer.clear();
            return Err(JournalError::Poisoned(cause.clone()));
        }
        if self.buffer.is_empty() {
            return Ok(self.durable_next.previous());
        }
        let result = self.write_buffer(submissions);
        if let Err(error) = &result {
            tracing::error!(%error, "journal: write failed, the journal accepts nothing more");
            self.failure = Some(Arc::new(error.clone()));
            self.buffer.clear();
        }
        result
    }

    fn write_buffer(&mut self, submissions: u64) -> Result<Lsn, JournalError> {
        if self.active.len >= self.config.segment_bytes_max {
            self.rotate()?;
        }
        let path = &self.active.path;
        self.active
            .file
            .write_all(&self.buffer)
            .map_err(JournalError::io("write", path))?;
        self.active.len += self.buffer.len() as u64;
        if self.config.durability == Durability::Fsync {
            let started = Instant::now();
            self.active
                .file
                .sync_data()
                .map_err(JournalError::io("fdatasync", path))?;
            self.stats.fsync_done(started.elapsed().as_micros() as u64);
        }
        let records = self.next_lsn.0 - self.durable_next.0;
        self.stats
            .batch_written(records, submissions, self.buffer.len() as u64);
        self.durable_next = self.next_lsn;
        self.buffer.clear();
        // One oversized burst must not pin its buffer forever.
        if self.buffer.capacity() > self.config.batch_bytes_max {
            self.buffer.shrink_to(self.config.batch_bytes_max);
        }
        Ok(self.durable_next.previous())
    }

    /// Closes the active segment (its last batch is already synced) and starts the next one,
    /// named after the first LSN it will hold; the directory is synced so the new name survives.
    fn rotate(&mut self) -> Result<(), JournalError> {
        let first_lsn = self.durable_next;
        let path = self.config.dir.join(segment_file_name(first_lsn));
        let file = crate::files::private_file_options()
            .append(true)
            .create_new(true)
            .open(&path)
            .map_err(JournalError::io("create", &path))?;
        sync_dir(&self.config.dir, self.config.durability)?;
        tracing::debug!(segment = %path.display(), "journal: rotated");
        let new = ActiveSegment {
            file,
            path,
            first_lsn,
            len: 0,
        };
        let old = std::mem::replace(&mut self.active, new);
        self.closed.push_back((old.first_lsn, old.path));
        Ok(())
    }

    /// Stores `state`, the caller's state with every record up to and including `lsn` applied,
    /// as the checkpoint recovery starts from; then deletes older snapshots and the closed
    /// segments the checkpoint covers beyond `segments_retained_max`. `lsn` must already be
    /// written (durable, unless relaxed) and not older than the previous checkpoint.
    pub fn checkpoint(&mut self, lsn: Lsn, state: &[u8]) -> Result<(), JournalError> {
        self.check_checkpoint(lsn, state.len())?;
        let path = write_snapshot(&self.config.dir, lsn, state, self.config.durability)?;
        self.adopt_snapshot(lsn, path)
    }

    /// [`Journal::checkpoint`] of a snapshot already written to `temporary` by
    /// [`crate::files::write_snapshot_temporary`] (on another thread): checked, published and
    /// adopted, or deleted when refused.
    pub(crate) fn checkpoint_written(
        &mut self,
        lsn: Lsn,
        state_len: usize,
        temporary: &std::path::Path,
    ) -> Result<(), JournalError> {
        let published = self.check_checkpoint(lsn, state_len).and_then(|()| {
            crate::files::publish_snapshot(&self.config.dir, lsn, temporary, self.config.durability)
        });
        match published {
            Ok(path) => self.adopt_snapshot(lsn, path),
            Err(e) => {
                let _ = std::fs::remove_file(temporary);
                Err(e)
            }
        }
    }

    /// Whether a checkpoint at `lsn` of `state_len` bytes may be taken now.
    fn check_checkpoint(&self, lsn: Lsn, state_len: usize) -> Result<(), JournalError> {
        if let Some(cause) = &self.failure {
            return Err(JournalError::Poisoned(cause.clone()));
        }
        let refuse = |reason| Err(JournalError::InvalidCheckpoint { lsn: lsn.0, reason });
        if lsn >= self.durable_next {
            return refuse("lsn not yet durable");
        }
        if self
            .snapshot
            .as_ref()
            .is_some_and(|(previous, _)| lsn < *previous)
        {
            return refuse("older than the previous checkpoint");
        }
        if state_len > SNAPSHOT_BYTES_MAX {
            return refuse("state larger than SNAPSHOT_BYTES_MAX");
        }
        Ok(())
    }

    /// Makes the snapshot at `path` (for `lsn`) the one recovery starts from; deletes older
    /// snapshots and the segments it covers beyond retention.
    fn adopt_snapshot(&mut self, lsn: Lsn, path: std::path::PathBuf) -> Result<(), JournalError> {
        if let Some((_, previous)) = self.snapshot.replace((lsn, path.clone()))
            && previous != path
        {
            self.stale_snapshots.push(previous);
        }
        let mut deleted_files = 0_u64;
        for stale in std::mem::take(&mut self.stale_snapshots) {
            deleted_files += u64::from(remove_file(&stale));
        }
        let segments_deleted = self.apply_retention(lsn);
        deleted_files += segments_deleted;
        if deleted_files > 0 {
            sync_dir(&self.config.dir, self.config.durability)?;
        }
        self.stats.checkpoint_done(segments_deleted);
        Ok(())
    }

    /// Deletes the oldest closed segments wholly covered by a checkpoint at `lsn`, keeping the
    /// newest `segments_retained_max` of them. Returns how many were deleted.
    fn apply_retention(&mut self, lsn: Lsn) -> u64 {
        let mut covered = 0_usize;
        for (index, _) in self.closed.iter().enumerate() {
            let next_first = match self.closed.get(index + 1) {
                Some((first, _)) => *first,
                None => self.active.first_lsn,
            };
            if next_first > lsn.next() {
                break;
            }
            covered += 1;
        }
        let mut deleted = 0;
        for _ in 0..covered.saturating_sub(self.config.segments_retained_max) {
            let Some((_, path)) = self.closed.front() else {
                break;
            };
            if !remove_file(path) {
                break;
            }
            self.closed.pop_front();
            deleted += 1;
        }
        deleted
    }
}

/// Deletes a file; a failure is logged, not returned: retention is best effort and the
/// checkpoint is already durable.
fn remove_file(path: &std::path::Path) -> bool {
    match fs::remove_file(path) {
        Ok(()) => true,
        Err(error) if error.kind() == ErrorKind::NotFound => true,
        Err(error) => {
            tracing::warn!(file = %path.display(), %error, "journal: cannot delete old file");
            false
        }
    }
}
