//! [`Journal::open`] and [`Journal::open_with`]: recovery. Loads the newest snapshot, replays the
//! segments after it, truncates a torn tail of the last segment and refuses to start on any other
//! damage.

use std::collections::VecDeque;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use crate::config::{Durability, JournalConfig};
use crate::error::{CorruptReason, JournalError};
use crate::files::{
    Listing, check_format, create_private_dir, list_dir, read_segment, read_snapshot,
    segment_file_name, sync_dir,
};
use crate::journal::{ActiveSegment, Journal};
use crate::record::{Lsn, Record, RecordView};
use crate::scan::scan_segment_with;
use crate::stats::Counters;

/// What [`Journal::open`] found on disk, for the caller to rebuild its state from.
#[derive(Clone, PartialEq, Eq)]
pub struct Recovered {
    /// The newest checkpoint: its LSN and the caller's state bytes (every record up to and
    /// including that LSN applied).
    pub snapshot: Option<(Lsn, Vec<u8>)>,
    /// Every record after the snapshot (all records when there is none), in LSN order. Empty
    /// with [`Journal::open_with`], which hands them to its visitor instead.
    pub records: Vec<Record>,
    /// Bytes of a torn tail cut off the last segment (0 after a clean shutdown).
    pub truncated_tail_bytes: u64,
    /// The LSN the next append gets.
    pub next_lsn: Lsn,
}

impl std::fmt::Debug for Recovered {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Recovered")
            .field("snapshot_lsn", &self.snapshot.as_ref().map(|(lsn, _)| *lsn))
            .field("records", &self.records.len())
            .field("truncated_tail_bytes", &self.truncated_tail_bytes)
            .field("next_lsn", &self.next_lsn)
            .finish()
    }
}

/// Receives the newest snapshot before the records after it.
type OnSnapshot<'a> = &'a mut dyn FnMut(Lsn, &[u8]);

/// Where replayed records go.
enum Target<'a> {
    /// Into a vector, payloads sliced from each segment read (memory: the log since the snapshot).
    Collect(&'a mut Vec<Record>),
    /// To a visitor, borrowed from one reused buffer (memory: one segment).
    Visit(&'a mut dyn FnMut(RecordView<'_>)),
}

/// The outcome of replaying the segments.
struct Replay {
    records: u64,
    next_lsn: Lsn,
    truncated_tail_bytes: u64,
    /// Valid bytes of the last segment, where appending resumes.
    last_len: u64,
}

impl Journal {
    /// Opens (creating if needed) the journal in `config.dir` and recovers it: the newest
    /// snapshot and every record after it, in memory. See the crate documentation for the rules;
    /// in short, a torn tail of the last segment is truncated and logged, any other damage is
    /// [`JournalError::Corrupt`].
    pub fn open(config: JournalConfig) -> Result<(Journal, Recovered), JournalError> {
        let mut records = Vec::new();
        let (journal, mut recovered) = Self::recover(config, Target::Collect(&mut records), None)?;
        recovered.records = records;
        Ok((journal, recovered))
    }

    /// [`Journal::open`] handing each record after the snapshot to `visit`, in LSN order, as
    /// segments are read (one buffer reused): memory stays bounded by one segment however long
    /// the log. [`Recovered::records`] is then empty. Records are visited before the whole log is
    /// checked: if this returns an error, discard what the visitor built.
    pub fn open_with(
        config: JournalConfig,
        mut visit: impl FnMut(RecordView<'_>),
    ) -> Result<(Journal, Recovered), JournalError> {
        Self::recover(config, Target::Visit(&mut visit), None)
    }

    /// [`Journal::open_with`] for callers that rebuild from a checkpoint: `on_snapshot` gets the
    /// newest snapshot (its LSN and the state bytes) before the first record is visited, so the
    /// visitor can apply records on top of it. The bytes are dropped once it returns:
    /// [`Recovered::snapshot`] then holds the LSN with an empty state, and memory stays bounded by
    /// one snapshot plus one segment.
    pub fn open_with_snapshot(
        config: JournalConfig,
        mut on_snapshot: impl FnMut(Lsn, &[u8]),
        mut visit: impl FnMut(RecordView<'_>),
    ) -> Result<(Journal, Recovered), JournalError> {
        Self::recover(config, Target::Visit(&mut visit), Some(&mut on_snapshot))
    }

    fn recover(
        config: JournalConfig,
        target: Target<'_>,
        on_snapshot: Option<OnSnapshot<'_>>,
    ) -> Result<(Journal, Recovered), JournalError> {
        let started = Instant::now();
        config.validate()?;
        let dir = config.dir.clone();
        let Listing {
            segments,
            mut snapshots,
            ..
        } = prepare_dir(&dir, config.durability)?;
        let newest = snapshots.pop();
        let snapshot = match &newest {
            Some((lsn, path)) => Some((*lsn, read_snapshot(path, *lsn)?)),
            None => None,
        };
        let start = snapshot.as_ref().map_or(Lsn::FIRST, |(lsn, _)| lsn.next());
        let snapshot = match (snapshot, on_snapshot) {
            (Some((lsn, state)), Some(callback)) => {
                callback(lsn, &state);
                Some((lsn, Vec::new()))
            }
            (snapshot, _) => snapshot,
        };
        let replay = replay(&dir, &segments, start, config.durability, target)?;
        if replay.next_lsn < start {
            let (file, offset) = match segments.last() {
                Some((_, path)) => (path.clone(), replay.last_len),
                None => (dir.clone(), 0),
            };
            let reason = CorruptReason::LogEndsBeforeSnapshot {
                snapshot_lsn: start.previous().0,
                log_end: replay.next_lsn.previous().0,
            };
            return Err(JournalError::Corrupt {
                file,
                offset,
                reason,
            });
        }
        let mut closed: VecDeque<(Lsn, PathBuf)> = segments.into();
        let active = match closed.pop_back() {
            Some((first_lsn, path)) => {
                let file = File::options()
                    .append(true)
                    .open(&path)
                    .map_err(JournalError::io("open", &path))?;
                ActiveSegment {
                    file,
                    path,
                    first_lsn,
                    len: replay.last_len,
                }
            }
            None => create_first_segment(&dir, replay.next_lsn, config.durability)?,
        };
        tracing::info!(
            dir = %dir.display(),
            snapshot_lsn = snapshot.as_ref().map_or(0, |(lsn, _)| lsn.0),
            records = replay.records,
            next_lsn = replay.next_lsn.0,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "journal: recovered"
        );
        let journal = Journal {
            config,
            active,
            closed,
            snapshot: newest,
            stale_snapshots: snapshots.into_iter().map(|(_, path)| path).collect(),
            next_lsn: replay.next_lsn,
            durable_next: replay.next_lsn,
            buffer: Vec::new(),
            failure: None,
            stats: Arc::new(Counters::default()),
        };
        let recovered = Recovered {
            snapshot,
            records: Vec::new(),
            truncated_tail_bytes: replay.truncated_tail_bytes,
            next_lsn: replay.next_lsn,
        };
        Ok((journal, recovered))
    }
}

/// Creates the directory if needed (syncing each new directory's parent, so that the journal
/// cannot vanish with its parent's unsynced entry), lists it and deletes unfinished checkpoints.
fn prepare_dir(dir: &Path, durability: Durability) -> Result<Listing, JournalError> {
    let created: Vec<&Path> = dir
        .ancestors()
        .take_while(|ancestor| !ancestor.exists())
        .collect();
    create_private_dir(dir)?;
    for new_dir in created.iter().rev() {
        let parent = match new_dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => parent,
            _ => Path::new("."),
        };
        sync_dir(parent, durability)?;
    }
    check_format(dir, durability)?;
    let listing = list_dir(dir)?;
    for temporary in &listing.temporaries {
        tracing::info!(file = %temporary.display(), "journal: deleting an unfinished checkpoint");
        fs::remove_file(temporary).map_err(JournalError::io("delete", temporary))?;
    }
    Ok(listing)
}

fn create_first_segment(
    dir: &Path,
    first_lsn: Lsn,
    durability: Durability,
) -> Result<ActiveSegment, JournalError> {
    let path = dir.join(segment_file_name(first_lsn));
    let file = crate::files::private_file_options()
        .append(true)
        .create_new(true)
        .open(&path)
        .map_err(JournalError::io("create", &path))?;
    sync_dir(dir, durability)?;
    Ok(ActiveSegment {
        file,
        path,
        first_lsn,
        len: 0,
    })
}

/// Scans the segments from the one holding `start` (older ones are covered by the snapshot and
/// only kept for retention), checking that each begins where the previous one ended.
fn replay(
    dir: &Path,
    segments: &[(Lsn, PathBuf)],
    start: Lsn,
    durability: Durability,
    mut target: Target<'_>,
) -> Result<Replay, JournalError> {
    let mut replay = Replay {
        records: 0,
        next_lsn: start,
        truncated_tail_bytes: 0,
        last_len: 0,
    };
    let Some(first_index) = segments.iter().rposition(|(first, _)| *first <= start) else {
        let file = match segments.first() {
            Some((_, path)) => path.clone(),
            // Segments are never all deleted: without any, records after a snapshot are gone.
            None if start > Lsn::FIRST => dir.to_path_buf(),
            None => return Ok(replay),
        };
        let reason = CorruptReason::MissingSegment { expected: start.0 };
        return Err(JournalError::Corrupt {
            file,
            offset: 0,
            reason,
        });
    };
    let mut buffer = Vec::new();
    let mut expected = None;
    for (index, (first, path)) in segments.iter().enumerate().skip(first_index) {
        let corrupt = |offset, reason| JournalError::Corrupt {
            file: path.clone(),
            offset,
            reason,
        };
        match expected {
            Some(expected) if *first > expected => {
                return Err(corrupt(
                    0,
                    CorruptReason::MissingSegment {
                        expected: expected.0,
                    },
                ));
            }
            Some(expected) if *first < expected => {
                let reason = CorruptReason::LsnMismatch {
                    expected: expected.0,
                    found: first.0,
                };
                return Err(corrupt(0, reason));
            }
            _ => {}
        }
        let mut count = 0_u64;
        let (end, file_bytes) = match &mut target {
            Target::Collect(records) => {
                let mut content = Vec::new();
                read_segment(path, &mut content)?;
                let bytes = Bytes::from(content);
                let end = scan_segment_with(&bytes, *first, start, |view| {
                    count += 1;
                    let payload = bytes.slice_ref(view.payload);
                    records.push(Record {
                        lsn: view.lsn,
                        kind: view.kind,
                        payload,
                    });
                });
                (end, bytes.len() as u64)
            }
            Target::Visit(visit) => {
                read_segment(path, &mut buffer)?;
                let end = scan_segment_with(&buffer, *first, start, |view| {
                    count += 1;
                    visit(view);
                });
                (end, buffer.len() as u64)
            }
        };
        replay.records += count;
        if let Some(defect) = end.defect {
            let is_last = index + 1 == segments.len();
            if !is_last || !defect.is_torn_tail() {
                return Err(corrupt(defect.offset, defect.reason));
            }
            let dropped = file_bytes - end.valid_bytes;
            truncate(path, end.valid_bytes, durability)?;
            tracing::warn!(
                file = %path.display(),
                offset = end.valid_bytes,
                dropped_bytes = dropped,
                reason = %defect.reason,
                "journal: torn tail record truncated ({dropped} bytes dropped)"
            );
            replay.truncated_tail_bytes = dropped;
        }
        replay.last_len = end.valid_bytes;
        expected = Some(end.next_lsn);
    }
    replay.next_lsn = expected.unwrap_or(start);
    Ok(replay)
}

fn truncate(path: &Path, len: u64, durability: Durability) -> Result<(), JournalError> {
    let file = File::options()
        .write(true)
        .open(path)
        .map_err(JournalError::io("open", path))?;
    file.set_len(len)
        .map_err(JournalError::io("truncate", path))?;
    if durability == Durability::Fsync {
        file.sync_all().map_err(JournalError::io("fsync", path))?;
    }
    Ok(())
}
