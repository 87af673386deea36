//! File names, directory listing and directory fsync, and the snapshot file format (encode and
//! decode sans-IO, write as temporary file + fsync + rename + directory fsync).
//!
//! ```text
//! journal-<first lsn, 20 digits>.seg      records, see `record`
//! checkpoint-<lsn, 20 digits>.snap        snapshot:
//!   offset 0  8  magic "PMJSNAP1"
//!          8  8  lsn        u64 big-endian (equal to the name's)
//!         16  8  length     u64 big-endian: bytes of state
//!         24  4  crc32c     u32 big-endian: CRC-32C of lsn + length + state
//!         28  n  state      the caller's opaque bytes
//! checkpoint-<lsn>.snap.tmp               a checkpoint being written: deleted at open
//! journal.format                          "paymesh-journal 1\n": the layout version
//! ```
//!
//! Versions: `journal.format` names the layout of the directory (file names, segment framing,
//! snapshot header); a directory without it is version 1 (journals from before the file) and
//! gets it at open. The snapshot magic's last digit is the snapshot header's version. A version
//! newer than this build's is refused ([`JournalError::NewerFormat`]), never read as damage or as
//! an empty journal. The caller's payloads carry their own versions.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::config::{Durability, SNAPSHOT_BYTES_MAX};
use crate::error::{CorruptReason, JournalError};
use crate::record::Lsn;

const SEGMENT_PREFIX: &str = "journal-";
const SEGMENT_SUFFIX: &str = ".seg";
const SNAPSHOT_PREFIX: &str = "checkpoint-";
const SNAPSHOT_SUFFIX: &str = ".snap";
const TEMPORARY_SUFFIX: &str = ".tmp";
const LSN_DIGITS: usize = 20;
const SNAPSHOT_MAGIC: [u8; 8] = *b"PMJSNAP1";
/// A snapshot magic is this and one digit of version.
const SNAPSHOT_MAGIC_PREFIX: &[u8; 7] = b"PMJSNAP";
/// The snapshot header version this build writes and the newest it reads.
pub const SNAPSHOT_FILE_FORMAT: u16 = 1;
/// The file holding the directory's layout version.
pub const FORMAT_FILE: &str = "journal.format";
/// The layout version this build writes and the newest it reads.
pub const JOURNAL_FORMAT: u16 = 1;
const FORMAT_TEXT_PREFIX: &str = "paymesh-journal ";
/// Longest format file read: the text is a few bytes; a larger file is not one.
const FORMAT_FILE_BYTES_MAX: u64 = 64;
/// Bytes of a snapshot before the state.
pub const SNAPSHOT_HEADER_BYTES: usize = 28;

/// The file name of the segment whose first record is `first`.
pub fn segment_file_name(first: Lsn) -> String {
    format!("{SEGMENT_PREFIX}{:020}{SEGMENT_SUFFIX}", first.0)
}

/// The file name of the snapshot at `lsn`.
pub fn snapshot_file_name(lsn: Lsn) -> String {
    format!("{SNAPSHOT_PREFIX}{:020}{SNAPSHOT_SUFFIX}", lsn.0)
}

fn parse_lsn(name: &str, prefix: &str, suffix: &str) -> Option<Lsn> {
    let digits = name.strip_prefix(prefix)?.strip_suffix(suffix)?;
    if digits.len() != LSN_DIGITS || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().map(Lsn)
}

/// The journal files of a directory, each list sorted by LSN.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub segments: Vec<(Lsn, PathBuf)>,
    pub snapshots: Vec<(Lsn, PathBuf)>,
    pub temporaries: Vec<PathBuf>,
}

pub(crate) fn list_dir(dir: &Path) -> Result<Listing, JournalError> {
    let mut listing = Listing::default();
    for entry in fs::read_dir(dir).map_err(JournalError::io("read directory", dir))? {
        let entry = entry.map_err(JournalError::io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if let Some(lsn) = parse_lsn(name, SEGMENT_PREFIX, SEGMENT_SUFFIX) {
            listing.segments.push((lsn, path));
        } else if let Some(lsn) = parse_lsn(name, SNAPSHOT_PREFIX, SNAPSHOT_SUFFIX) {
            listing.snapshots.push((lsn, path));
        } else if name.starts_with(SNAPSHOT_PREFIX) && name.ends_with(TEMPORARY_SUFFIX) {
            listing.temporaries.push(path);
        }
    }
    listing.segments.sort();
    listing.snapshots.sort();
    Ok(listing)
}

/// Permissions of every file the journal creates: its owner's only. Segments hold card data
/// (encrypted) beside transaction details in clear; nobody else on the machine needs either.
pub const FILE_MODE: u32 = 0o600;
/// Permissions of the journal directory, set even when it already existed.
pub const DIR_MODE: u32 = 0o700;

/// Options opening a new file with [`FILE_MODE`] (write access; add what else is needed).
pub fn private_file_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.write(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, FILE_MODE);
    options
}

/// Creates `dir` and its missing parents with [`DIR_MODE`]; an existing `dir` that group or
/// others may use is narrowed to it (a warning, not an error, when that is not ours to change:
/// an operator may share it on purpose).
pub fn create_private_dir(dir: &Path) -> Result<(), JournalError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, DIR_MODE);
    builder
        .create(dir)
        .map_err(JournalError::io("create directory", dir))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = fs::metadata(dir)
            .map_err(JournalError::io("stat", dir))?
            .permissions()
            .mode();
        if mode & 0o077 != 0
            && let Err(error) = fs::set_permissions(dir, fs::Permissions::from_mode(DIR_MODE))
        {
            tracing::warn!(
                dir = %dir.display(),
                mode = format!("{:04o}", mode & 0o7777),
                %error,
                "journal directory is open to group or others and cannot be narrowed: chmod 700 it"
            );
        }
    }
    Ok(())
}

/// Makes creations, renames and deletions in `dir` durable (no-op when relaxed).
pub(crate) fn sync_dir(dir: &Path, durability: Durability) -> Result<(), JournalError> {
    if durability == Durability::Relaxed {
        return Ok(());
    }
    File::open(dir)
        .and_then(|handle| handle.sync_all())
        .map_err(JournalError::io("fsync directory", dir))
}

/// Checks the directory's layout version, writing it when absent (a new directory, or a journal
/// from before the file: both version 1).
pub(crate) fn check_format(dir: &Path, durability: Durability) -> Result<(), JournalError> {
    let path = dir.join(FORMAT_FILE);
    let mut text = String::new();
    match File::open(&path) {
        Ok(file) => {
            file.take(FORMAT_FILE_BYTES_MAX)
                .read_to_string(&mut text)
                .map_err(JournalError::io("read", &path))?;
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return write_format(dir, &path, durability);
        }
        Err(error) => return Err(JournalError::io("open", &path)(error)),
    }
    let found = text
        .trim_end()
        .strip_prefix(FORMAT_TEXT_PREFIX)
        .and_then(|version| version.parse::<u16>().ok())
        .filter(|version| *version >= 1);
    match found {
        Some(found) if found > JOURNAL_FORMAT => Err(JournalError::NewerFormat {
            file: path,
            what: "journal directory",
            found,
            known: JOURNAL_FORMAT,
        }),
        Some(_) => Ok(()),
        None => Err(JournalError::Corrupt {
            file: path,
            offset: 0,
            reason: CorruptReason::FormatFile,
        }),
    }
}

/// Writes the format file durably: a temporary file, fsync, rename, directory fsync.
fn write_format(dir: &Path, path: &Path, durability: Durability) -> Result<(), JournalError> {
    let temporary = dir.join(format!("{FORMAT_FILE}{TEMPORARY_SUFFIX}"));
    let mut file = private_file_options()
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(JournalError::io("create", &temporary))?;
    file.write_all(format!("{FORMAT_TEXT_PREFIX}{JOURNAL_FORMAT}\n").as_bytes())
        .map_err(JournalError::io("write", &temporary))?;
    if durability == Durability::Fsync {
        file.sync_all()
            .map_err(JournalError::io("fsync", &temporary))?;
    }
    fs::rename(&temporary, path).map_err(JournalError::io("rename", &temporary))?;
    sync_dir(dir, durability)
}

/// The version a snapshot file's magic names, when it is a snapshot's magic at all.
fn snapshot_file_format(bytes: &[u8]) -> Option<u16> {
    let digit = *bytes
        .get(..8)?
        .strip_prefix(SNAPSHOT_MAGIC_PREFIX.as_slice())?
        .first()?;
    digit.is_ascii_digit().then(|| u16::from(digit - b'0'))
}

/// The header of a snapshot holding `state` at `lsn`.
pub fn encode_snapshot_header(lsn: Lsn, state: &[u8]) -> [u8; SNAPSHOT_HEADER_BYTES] {
    let mut header = [0_u8; SNAPSHOT_HEADER_BYTES];
    let (magic, rest) = header.split_at_mut(8);
    magic.copy_from_slice(&SNAPSHOT_MAGIC);
    let (checked, checksum) = rest.split_at_mut(16);
    let (lsn_bytes, length) = checked.split_at_mut(8);
    lsn_bytes.copy_from_slice(&lsn.0.to_be_bytes());
    length.copy_from_slice(&(state.len() as u64).to_be_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(checked), state);
    checksum.copy_from_slice(&crc.to_be_bytes());
    header
}

/// Checks a whole snapshot file's bytes and returns its LSN and state.
pub fn decode_snapshot(bytes: &[u8]) -> Result<(Lsn, &[u8]), CorruptReason> {
    let Some((header, state)) = bytes.split_first_chunk::<SNAPSHOT_HEADER_BYTES>() else {
        return Err(CorruptReason::SnapshotHeader);
    };
    let (magic, rest) = header.split_at(8);
    let (checked, checksum) = rest.split_at(16);
    let (lsn_bytes, length) = checked.split_at(8);
    let word = |slice: &[u8]| slice.try_into().map(u64::from_be_bytes).unwrap_or(u64::MAX);
    if magic != SNAPSHOT_MAGIC || word(length) != state.len() as u64 {
        return Err(CorruptReason::SnapshotHeader);
    }
    let stored = checksum.try_into().map(u32::from_be_bytes).unwrap_or(0);
    if crc32c::crc32c_append(crc32c::crc32c(checked), state) != stored {
        return Err(CorruptReason::SnapshotChecksum);
    }
    Ok((Lsn(word(lsn_bytes)), state))
}

/// Snapshot bytes written between two flushes. One large flush at the end would leave hundreds of
/// MB dirty, and the filesystem writes them back together with the next segment fdatasync, which
/// then takes seconds instead of a millisecond; small flushes keep each one short.
pub const SNAPSHOT_FLUSH_BYTES: usize = 8 << 20;

/// Writes a snapshot durably: temporary file, fsync, rename, directory fsync. A crash at any point
/// leaves either the previous snapshot alone or both, never a half-written `.snap`.
pub(crate) fn write_snapshot(
    dir: &Path,
    lsn: Lsn,
    state: &[u8],
    durability: Durability,
) -> Result<PathBuf, JournalError> {
    let temporary = write_snapshot_temporary(dir, lsn, state, durability)?;
    publish_snapshot(dir, lsn, &temporary, durability)
}

/// The first half of [`write_snapshot`], which may run on any thread: the temporary file,
/// written in [`SNAPSHOT_FLUSH_BYTES`] steps and flushed.
pub(crate) fn write_snapshot_temporary(
    dir: &Path,
    lsn: Lsn,
    state: &[u8],
    durability: Durability,
) -> Result<PathBuf, JournalError> {
    let temporary = dir.join(format!("{}{TEMPORARY_SUFFIX}", snapshot_file_name(lsn)));
    let mut file = private_file_options()
        .create(true)
        .truncate(true)
        .open(&temporary)
        .map_err(JournalError::io("create", &temporary))?;
    file.write_all(&encode_snapshot_header(lsn, state))
        .map_err(JournalError::io("write", &temporary))?;
    for chunk in state.chunks(SNAPSHOT_FLUSH_BYTES) {
        file.write_all(chunk)
            .map_err(JournalError::io("write", &temporary))?;
        if durability == Durability::Fsync {
            file.sync_data()
                .map_err(JournalError::io("fsync", &temporary))?;
        }
    }
    if durability == Durability::Fsync {
        file.sync_all()
            .map_err(JournalError::io("fsync", &temporary))?;
    }
    Ok(temporary)
}

/// The second half of [`write_snapshot`]: the temporary file becomes the snapshot for `lsn`.
pub(crate) fn publish_snapshot(
    dir: &Path,
    lsn: Lsn,
    temporary: &Path,
    durability: Durability,
) -> Result<PathBuf, JournalError> {
    let path = dir.join(snapshot_file_name(lsn));
    fs::rename(temporary, &path).map_err(JournalError::io("rename", temporary))?;
    sync_dir(dir, durability)?;
    Ok(path)
}

/// Reads and checks the snapshot at `path`, named for `lsn`.
pub(crate) fn read_snapshot(path: &Path, lsn: Lsn) -> Result<Vec<u8>, JournalError> {
    let corrupt = |reason| JournalError::Corrupt {
        file: path.to_path_buf(),
        offset: 0,
        reason,
    };
    let mut file = File::open(path).map_err(JournalError::io("open", path))?;
    let bytes = file
        .metadata()
        .map_err(JournalError::io("stat", path))?
        .len();
    if bytes > (SNAPSHOT_HEADER_BYTES + SNAPSHOT_BYTES_MAX) as u64 {
        return Err(corrupt(CorruptReason::FileTooLarge { bytes }));
    }
    let mut content = Vec::with_capacity(bytes as usize);
    file.read_to_end(&mut content)
        .map_err(JournalError::io("read", path))?;
    if let Some(found) = snapshot_file_format(&content).filter(|f| *f > SNAPSHOT_FILE_FORMAT) {
        return Err(JournalError::NewerFormat {
            file: path.to_path_buf(),
            what: "snapshot file",
            found,
            known: SNAPSHOT_FILE_FORMAT,
        });
    }
    let (stored_lsn, state) = decode_snapshot(&content).map_err(corrupt)?;
    if stored_lsn != lsn {
        return Err(corrupt(CorruptReason::SnapshotHeader));
    }
    Ok(state.to_vec())
}

/// Reads a whole segment file into `content` (cleared first, capacity kept), refusing sizes the
/// journal never writes.
pub(crate) fn read_segment(path: &Path, content: &mut Vec<u8>) -> Result<(), JournalError> {
    let mut file = File::open(path).map_err(JournalError::io("open", path))?;
    let bytes = file
        .metadata()
        .map_err(JournalError::io("stat", path))?
        .len();
    if bytes > crate::config::SEGMENT_FILE_BYTES_MAX {
        let reason = CorruptReason::FileTooLarge { bytes };
        return Err(JournalError::Corrupt {
            file: path.to_path_buf(),
            offset: 0,
            reason,
        });
    }
    content.clear();
    content.reserve_exact(bytes as usize);
    file.read_to_end(content)
        .map_err(JournalError::io("read", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_lsn() {
        assert_eq!(
            segment_file_name(Lsn(42)),
            "journal-00000000000000000042.seg"
        );
        assert_eq!(
            parse_lsn(&segment_file_name(Lsn(u64::MAX)), "journal-", ".seg"),
            Some(Lsn(u64::MAX))
        );
        assert_eq!(parse_lsn("journal-42.seg", "journal-", ".seg"), None);
        assert!(segment_file_name(Lsn(9)) < segment_file_name(Lsn(10)));
    }

    #[test]
    fn snapshot_round_trips_and_detects_damage() {
        let mut bytes = encode_snapshot_header(Lsn(7), b"state").to_vec();
        bytes.extend_from_slice(b"state");
        assert_eq!(decode_snapshot(&bytes), Ok((Lsn(7), &b"state"[..])));
        bytes[30] ^= 1;
        assert_eq!(
            decode_snapshot(&bytes),
            Err(CorruptReason::SnapshotChecksum)
        );
        assert_eq!(
            decode_snapshot(&bytes[..20]),
            Err(CorruptReason::SnapshotHeader)
        );
    }
}
