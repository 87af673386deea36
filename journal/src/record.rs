//! The record format, sans-IO: [`encode_record`] into any `BufMut`, [`decode_record`] and
//! [`decode_record_view`] off a byte slice ("need more" is `Ok(None)`).
//!
//! ```text
//! offset  size  field
//!      0     4  length   u32 big-endian: bytes after the checksum (type + lsn + payload)
//!      4     4  crc32c   u32 big-endian: CRC-32C (Castagnoli) of type + lsn + payload
//!      8     1  type     the caller's record type
//!      9     8  lsn      u64 big-endian log sequence number, consecutive from 1
//!     17     n  payload  opaque bytes (n = length - 9)
//! ```

use std::fmt;

use bytes::{BufMut, Bytes};

use crate::error::{CorruptReason, JournalError};

/// Bytes before the payload: length, checksum, type and LSN.
pub const RECORD_HEADER_BYTES: usize = 17;
/// Bytes the length field covers besides the payload: type and LSN.
const RECORD_BODY_FIXED_BYTES: usize = 9;
/// Bytes before the checksummed part: length and checksum.
const RECORD_PREFIX_BYTES: usize = 8;
/// The largest value the length field may hold (type + LSN + payload). Checked before any bytes
/// are waited for or allocated, so a damaged length cannot make recovery allocate gigabytes.
pub const RECORD_BYTES_MAX: usize = 1024 * 1024;
/// The largest payload of one record.
pub const RECORD_PAYLOAD_BYTES_MAX: usize = RECORD_BYTES_MAX - RECORD_BODY_FIXED_BYTES;

/// A log sequence number: records are numbered 1, 2, 3, ... without gaps, across segments.
/// `Lsn(0)` means "nothing yet".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// The LSN of the first record ever written.
    pub const FIRST: Lsn = Lsn(1);

    /// The following LSN (saturating: 2^64 records are never written, but a damaged file name
    /// must not be able to overflow).
    pub fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }

    /// The preceding LSN (saturating at 0).
    pub fn previous(self) -> Lsn {
        Lsn(self.0.saturating_sub(1))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(formatter)
    }
}

/// One journaled record, owning its payload (a zero-copy slice of the segment read at recovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its position in the log.
    pub lsn: Lsn,
    /// The caller's record type (request accepted, upstream sent, answer given, ...).
    pub kind: u8,
    /// The caller's bytes.
    pub payload: Bytes,
}

/// A record borrowed from the buffer it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// Its position in the log.
    pub lsn: Lsn,
    /// The caller's record type.
    pub kind: u8,
    /// The caller's bytes.
    pub payload: &'a [u8],
}

/// Encoded size of a record with a payload of `payload_bytes`.
pub const fn encoded_len(payload_bytes: usize) -> usize {
    RECORD_HEADER_BYTES + payload_bytes
}

/// Appends one record to `out`. Cannot fail.
///
/// # Panics
///
/// When `payload` is longer than [`RECORD_PAYLOAD_BYTES_MAX`]: callers check sizes when records
/// are submitted ([`JournalError::RecordTooLarge`]), so a longer payload here is a programming
/// error.
pub fn encode_record(out: &mut impl BufMut, lsn: Lsn, kind: u8, payload: &[u8]) {
    assert!(
        payload.len() <= RECORD_PAYLOAD_BYTES_MAX,
        "record payload above the maximum"
    );
    let mut fixed = [0_u8; RECORD_BODY_FIXED_BYTES];
    let (kind_byte, lsn_bytes) = fixed.split_at_mut(1);
    kind_byte.copy_from_slice(&[kind]);
    lsn_bytes.copy_from_slice(&lsn.0.to_be_bytes());
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&fixed), payload);
    // Fits in u32: bounded by RECORD_BYTES_MAX above.
    out.put_u32((RECORD_BODY_FIXED_BYTES + payload.len()) as u32);
    out.put_u32(checksum);
    out.put_slice(&fixed);
    out.put_slice(payload);
}

/// Decodes the record at the start of `buf`, borrowing its payload: `Ok(None)` when `buf` holds
/// only part of it, `Ok(Some((record, bytes consumed)))`, or [`JournalError::Malformed`].
pub fn decode_record_view(buf: &[u8]) -> Result<Option<(RecordView<'_>, usize)>, JournalError> {
    decode_raw(buf).map_err(JournalError::Malformed)
}

/// [`decode_record_view`] with the bare reason as error (for the scanner).
pub(crate) fn decode_raw(buf: &[u8]) -> Result<Option<(RecordView<'_>, usize)>, CorruptReason> {
    let Some((prefix, rest)) = buf.split_first_chunk::<RECORD_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let [l0, l1, l2, l3, c0, c1, c2, c3] = *prefix;
    let length = u32::from_be_bytes([l0, l1, l2, l3]);
    let stored = u32::from_be_bytes([c0, c1, c2, c3]);
    let body_bytes = length as usize;
    if body_bytes < RECORD_BODY_FIXED_BYTES {
        return Err(CorruptReason::LengthTooSmall { length });
    }
    if body_bytes > RECORD_BYTES_MAX {
        return Err(CorruptReason::LengthTooLarge { length });
    }
    let Some(body) = rest.get(..body_bytes) else {
        return Ok(None);
    };
    let computed = crc32c::crc32c(body);
    if computed != stored {
        return Err(CorruptReason::ChecksumMismatch { stored, computed });
    }
    let Some((fixed, payload)) = body.split_first_chunk::<RECORD_BODY_FIXED_BYTES>() else {
        return Err(CorruptReason::LengthTooSmall { length });
    };
    let [kind, n0, n1, n2, n3, n4, n5, n6, n7] = *fixed;
    let lsn = Lsn(u64::from_be_bytes([n0, n1, n2, n3, n4, n5, n6, n7]));
    Ok(Some((
        RecordView { lsn, kind, payload },
        RECORD_PREFIX_BYTES + body_bytes,
    )))
}

/// Decodes the record at the start of `buf`, copying its payload: `Ok(None)` when `buf` holds only
/// part of it, `Ok(Some((record, bytes consumed)))`, or [`JournalError::Malformed`].
pub fn decode_record(buf: &[u8]) -> Result<Option<(Record, usize)>, JournalError> {
    Ok(decode_record_view(buf)?.map(|(view, consumed)| {
        let record = Record {
            lsn: view.lsn,
            kind: view.kind,
            payload: Bytes::copy_from_slice(view.payload),
        };
        (record, consumed)
    }))
}

/// How many bytes the record starting `buf` claims, when its prefix is readable and plausible:
/// lets the scanner say how much a truncated record is missing.
pub(crate) fn claimed_len(buf: &[u8]) -> u64 {
    match buf.first_chunk::<4>() {
        Some(length) => RECORD_PREFIX_BYTES as u64 + u64::from(u32::from_be_bytes(*length)),
        None => RECORD_PREFIX_BYTES as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_documented_table() {
        let mut out = Vec::new();
        encode_record(&mut out, Lsn(0x0102_0304_0506_0708), 7, b"abc");
        assert_eq!(out.len(), encoded_len(3));
        assert_eq!(&out[0..4], &12_u32.to_be_bytes());
        assert_eq!(&out[4..8], &crc32c::crc32c(&out[8..]).to_be_bytes());
        assert_eq!(out[8], 7);
        assert_eq!(&out[9..17], &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(&out[17..], b"abc");
        let (record, used) = decode_record(&out).unwrap().unwrap();
        assert_eq!(used, out.len());
        assert_eq!(record.lsn, Lsn(0x0102_0304_0506_0708));
        assert_eq!(&record.payload[..], b"abc");
    }

    #[test]
    fn oversize_length_is_refused_before_waiting_for_bytes() {
        let mut buf = vec![0_u8; 8];
        buf[..4].copy_from_slice(&(RECORD_BYTES_MAX as u32 + 1).to_be_bytes());
        assert!(matches!(
            decode_record(&buf),
            Err(JournalError::Malformed(
                CorruptReason::LengthTooLarge { .. }
            ))
        ));
    }
}
