//! The recovery scanner, sans-IO: walks the bytes of one segment, checks every record's checksum
//! and LSN, and reports where (and why) the valid prefix ends. Deciding whether a defect is a torn
//! tail to truncate or corruption to stop for is left to the caller ([`Defect::is_torn_tail`]),
//! which knows whether this is the last segment.

use bytes::Bytes;

use crate::error::CorruptReason;
use crate::record::{Lsn, Record, RecordView, claimed_len, decode_raw};

/// What [`scan_segment`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentScan {
    /// The valid records with an LSN at or above the `keep_from` asked for, in order.
    pub records: Vec<Record>,
    /// Bytes from the start of the segment up to the end of the last valid record.
    pub valid_bytes: u64,
    /// The LSN after the last valid record (the segment's first LSN when it holds none).
    pub next_lsn: Lsn,
    /// Why the scan stopped before the end of the bytes, if it did.
    pub defect: Option<Defect>,
}

/// Where [`scan_segment_with`] stopped: [`SegmentScan`] without the records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanEnd {
    /// Bytes from the start of the segment up to the end of the last valid record.
    pub valid_bytes: u64,
    /// The LSN after the last valid record (the segment's first LSN when it holds none).
    pub next_lsn: Lsn,
    /// Why the scan stopped before the end of the bytes, if it did.
    pub defect: Option<Defect>,
}

/// A place where the bytes stop being valid records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defect {
    /// Offset of the first invalid byte (the start of the damaged record).
    pub offset: u64,
    /// What is wrong there.
    pub reason: CorruptReason,
    /// Offset of a checksum-valid record found further on, if any: proof that the damage is not
    /// a torn write at the end.
    pub valid_record_after: Option<u64>,
}

impl Defect {
    /// Whether this looks like a write cut short by a crash: nothing valid follows, and the
    /// damage is a short or checksum-failing record rather than a well-formed record with the
    /// wrong LSN (which a crash cannot produce: segment files are never reused).
    pub fn is_torn_tail(&self) -> bool {
        self.valid_record_after.is_none()
            && !matches!(self.reason, CorruptReason::LsnMismatch { .. })
    }
}

/// Scans `bytes`, the whole content of a segment whose first record has LSN `first_lsn`. Records
/// below `keep_from` are checked but not returned (a snapshot covers them). Payloads are
/// zero-copy slices of `bytes`. Never panics, whatever the bytes.
pub fn scan_segment(bytes: &Bytes, first_lsn: Lsn, keep_from: Lsn) -> SegmentScan {
    let mut records = Vec::new();
    let end = scan_segment_with(bytes, first_lsn, keep_from, |view| {
        let payload = bytes.slice_ref(view.payload);
        records.push(Record {
            lsn: view.lsn,
            kind: view.kind,
            payload,
        });
    });
    SegmentScan {
        records,
        valid_bytes: end.valid_bytes,
        next_lsn: end.next_lsn,
        defect: end.defect,
    }
}

/// [`scan_segment`] handing each kept record to `visit` as it is found, borrowed from `bytes`:
/// recovery in memory bounded by one segment.
pub fn scan_segment_with(
    bytes: &[u8],
    first_lsn: Lsn,
    keep_from: Lsn,
    mut visit: impl FnMut(RecordView<'_>),
) -> ScanEnd {
    let mut offset = 0_usize;
    let mut expected = first_lsn;
    let defect = loop {
        let Some(rest) = bytes.get(offset..) else {
            break None;
        };
        if rest.is_empty() {
            break None;
        }
        let reason = match decode_raw(rest) {
            Ok(Some((view, used))) if view.lsn == expected => {
                if view.lsn >= keep_from {
                    visit(view);
                }
                offset += used;
                expected = expected.next();
                continue;
            }
            Ok(Some((view, _))) => CorruptReason::LsnMismatch {
                expected: expected.0,
                found: view.lsn.0,
            },
            Ok(None) => CorruptReason::Truncated {
                needed: claimed_len(rest),
                available: rest.len() as u64,
            },
            Err(reason) => reason,
        };
        break Some(Defect {
            offset: offset as u64,
            reason,
            valid_record_after: find_valid_record(bytes, offset.saturating_add(1)),
        });
    };
    ScanEnd {
        valid_bytes: offset as u64,
        next_lsn: expected,
        defect,
    }
}

/// The offset of the first checksum-valid record at or after `from`, trying every byte offset.
/// After a torn write the tail is short (at most one batch), so this costs little; after real
/// corruption in the middle it stops at the next record boundary.
fn find_valid_record(bytes: &[u8], from: usize) -> Option<u64> {
    let tail = bytes.get(from..)?;
    (0..tail.len()).find_map(|start| {
        let candidate = tail.get(start..)?;
        match decode_raw(candidate) {
            Ok(Some(_)) => Some((from + start) as u64),
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::encode_record;

    fn stream(count: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for lsn in 1..=count {
            encode_record(&mut out, Lsn(lsn), 1, &[lsn as u8; 10]);
        }
        out
    }

    #[test]
    fn clean_stream_has_no_defect() {
        let bytes = Bytes::from(stream(5));
        let scan = scan_segment(&bytes, Lsn(1), Lsn(3));
        assert_eq!(scan.records.len(), 3);
        assert_eq!(scan.next_lsn, Lsn(6));
        assert_eq!(scan.valid_bytes, bytes.len() as u64);
        assert_eq!(scan.defect, None);
    }

    #[test]
    fn zero_filled_tail_is_torn() {
        let mut raw = stream(3);
        let valid = raw.len() as u64;
        raw.extend_from_slice(&[0; 4096]);
        let scan = scan_segment(&Bytes::from(raw), Lsn(1), Lsn(1));
        let defect = scan.defect.unwrap();
        assert_eq!(defect.offset, valid);
        assert!(defect.is_torn_tail());
    }

    #[test]
    fn wrong_first_lsn_is_not_a_torn_tail() {
        let scan = scan_segment(&Bytes::from(stream(2)), Lsn(7), Lsn(1));
        let defect = scan.defect.unwrap();
        assert_eq!(
            defect.reason,
            CorruptReason::LsnMismatch {
                expected: 7,
                found: 1
            }
        );
        assert!(!defect.is_torn_tail());
    }
}
