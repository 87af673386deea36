//! Framing: the 24-byte header, the CRC-32C, splitting a byte stream into frames and writing
//! frames (docs/PROTOCOL.md, "Frame").
//!
//! ```text
//! off 0  magic "PM"   off 2 version   off 3 msg_type   off 4 flags u16   off 6 reserved u16
//! off 8  correlation_id u64           off 16 body_len u32                 off 20 CRC-32C u32
//! off 24 body (body_len bytes of tag-length-value fields)
//! ```
//!
//! The checksum is CRC-32C (Castagnoli, as in iSCSI) over header bytes 0..20 followed by the body.
//! Decoding splits each frame off the read buffer without copying: the body is a `Bytes` sharing the
//! buffer's allocation, and every field value decoded from it is a slice of that.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::ProtocolError;

/// The two magic bytes, `PM`.
pub const MAGIC: [u8; 2] = *b"PM";
/// The protocol version this codec speaks.
pub const VERSION: u8 = 1;
/// Length of the frame header.
pub const FRAME_HEADER_BYTES: usize = 24;
/// Largest body any peer may send; a session may announce a smaller `max_body_bytes`.
pub const FRAME_BODY_BYTES_MAX: u32 = 16_384;
/// Largest frame, header included.
pub const FRAME_BYTES_MAX: usize = FRAME_HEADER_BYTES + FRAME_BODY_BYTES_MAX as usize;
/// Header bytes the checksum covers (all but the checksum itself).
const CHECKSUM_COVERED_HEADER_BYTES: usize = 20;
/// Offset of `body_len` in the header.
const BODY_LEN_OFFSET: usize = 16;

/// Flag bits of the header's `flags` field.
pub mod flags {
    /// The client resends a request whose answer it never got; in an answer, the server replays
    /// the original answer to an already-processed request.
    pub const RETRANSMIT: u16 = 0x0001;
}

/// The header fields a receiver acts on (magic, length and checksum are checked, not kept).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Protocol version (byte 2).
    pub version: u8,
    /// Message type (byte 3).
    pub msg_type: u8,
    /// Flag bits (bytes 4..6); see [`flags`]. Reserved bits are kept as received.
    pub flags: u16,
    /// The client's id for matching an answer to its request (bytes 8..16).
    pub correlation_id: u64,
}

impl FrameHeader {
    /// A version-1 header with no flags.
    pub const fn new(msg_type: u8, correlation_id: u64) -> FrameHeader {
        FrameHeader {
            version: VERSION,
            msg_type,
            flags: 0,
            correlation_id,
        }
    }

    /// Whether the RETRANSMIT flag is set.
    pub const fn is_retransmit(&self) -> bool {
        self.flags & flags::RETRANSMIT != 0
    }
}

/// One decoded frame: its header and its body, a zero-copy slice of the read buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// The header.
    pub header: FrameHeader,
    /// The body: tag-length-value fields, checksum verified.
    pub body: Bytes,
}

/// Splits the next frame off the front of `buf`.
///
/// `Ok(None)`: `buf` holds no complete frame yet; nothing was consumed, read more and call again.
/// `Ok(Some(frame))`: the frame's bytes were removed from `buf` without copying.
/// `Err(_)`: the stream is broken (see [`ProtocolError::closes_connection`]); nothing was consumed
/// and the connection should be closed after a REJECT. Checks run in this order: magic, version,
/// body length against `max_body` (capped at [`FRAME_BODY_BYTES_MAX`]; before any byte of the body
/// is awaited or memory reserved), completeness, checksum.
#[inline]
pub fn decode_frame(buf: &mut BytesMut, max_body: u32) -> Result<Option<Frame>, ProtocolError> {
    let Some(header) = buf.first_chunk::<FRAME_HEADER_BYTES>() else {
        return Ok(None);
    };
    #[rustfmt::skip]
    let [
        m0, m1, version, msg_type, f0, f1, _, _,
        c0, c1, c2, c3, c4, c5, c6, c7,
        l0, l1, l2, l3, k0, k1, k2, k3,
    ] = *header;
    if [m0, m1] != MAGIC {
        return Err(ProtocolError::BadMagic {
            found: u16::from_be_bytes([m0, m1]),
        });
    }
    let correlation_id = u64::from_be_bytes([c0, c1, c2, c3, c4, c5, c6, c7]);
    if version != VERSION {
        return Err(ProtocolError::UnsupportedVersion {
            version,
            correlation_id,
        });
    }
    let body_len = u32::from_be_bytes([l0, l1, l2, l3]);
    let limit = max_body.min(FRAME_BODY_BYTES_MAX);
    if body_len > limit {
        return Err(ProtocolError::BodyTooLarge {
            body_len,
            limit,
            correlation_id,
        });
    }
    let frame_len = FRAME_HEADER_BYTES + body_len as usize;
    let Some(frame) = buf.get(..frame_len) else {
        return Ok(None);
    };
    let carried = u32::from_be_bytes([k0, k1, k2, k3]);
    let computed = checksum(frame);
    if carried != computed {
        return Err(ProtocolError::ChecksumMismatch { carried, computed });
    }
    let header = FrameHeader {
        version,
        msg_type,
        flags: u16::from_be_bytes([f0, f1]),
        correlation_id,
    };
    buf.advance(FRAME_HEADER_BYTES);
    let body = buf.split_to(body_len as usize).freeze();
    Ok(Some(Frame { header, body }))
}

/// The CRC-32C of a whole frame (`frame` starts with the header): over bytes 0..20 and 24.. .
#[inline]
fn checksum(frame: &[u8]) -> u32 {
    let (covered, rest) = frame.split_at(CHECKSUM_COVERED_HEADER_BYTES.min(frame.len()));
    let body = rest
        .get(FRAME_HEADER_BYTES - CHECKSUM_COVERED_HEADER_BYTES..)
        .unwrap_or_default();
    checksum_parts(covered, body)
}

/// Frames up to this size are checksummed from an aligned copy, in one pass.
const CHECKSUM_COPY_BYTES_MAX: usize = 256;

/// Stack room for [`checksum_parts`]' copy, aligned for the CRC instruction's 8-byte steps.
#[repr(align(8))]
struct ChecksumScratch([u8; CHECKSUM_COPY_BYTES_MAX]);

/// CRC-32C of `covered` followed by `body`. The SSE4.2 CRC steps 8 aligned bytes at a time and
/// single bytes before and after; checksumming two unaligned pieces separately costs up to 28
/// single-byte steps, more than copying a typical frame into one aligned piece.
#[inline]
fn checksum_parts(covered: &[u8], body: &[u8]) -> u32 {
    let total = covered.len() + body.len();
    if total <= CHECKSUM_COPY_BYTES_MAX {
        let mut scratch = ChecksumScratch([0; CHECKSUM_COPY_BYTES_MAX]);
        if let Some(joined) = scratch.0.get_mut(..total) {
            let (head, tail) = joined.split_at_mut(covered.len());
            head.copy_from_slice(covered);
            tail.copy_from_slice(body);
            return crc32c::crc32c(joined);
        }
    }
    crc32c::crc32c_append(crc32c::crc32c(covered), body)
}

/// Appends one frame with `body` to `dst`.
///
/// # Panics
///
/// When `body` is longer than [`FRAME_BODY_BYTES_MAX`]: a programmer error, since every body this
/// crate encodes is bounded by its fields' limits.
pub fn encode_frame(header: &FrameHeader, body: &[u8], dst: &mut BytesMut) {
    assert!(
        body.len() <= FRAME_BODY_BYTES_MAX as usize,
        "frame body over FRAME_BODY_BYTES_MAX"
    );
    // The body is at hand: checksum first, then write header and body once, no back-patching.
    let mut bytes = header_bytes(header);
    if let Some(len_field) = bytes.get_mut(BODY_LEN_OFFSET..CHECKSUM_COVERED_HEADER_BYTES) {
        len_field.copy_from_slice(&(body.len() as u32).to_be_bytes());
    }
    let covered = bytes
        .first_chunk::<CHECKSUM_COVERED_HEADER_BYTES>()
        .map_or(&[][..], |c| c);
    let crc = checksum_parts(covered, body);
    if let Some(crc_field) = bytes.get_mut(CHECKSUM_COVERED_HEADER_BYTES..) {
        crc_field.copy_from_slice(&crc.to_be_bytes());
    }
    dst.reserve(FRAME_HEADER_BYTES + body.len());
    dst.put_slice(&bytes);
    dst.put_slice(body);
}

/// The header with body length and checksum zero.
#[inline]
fn header_bytes(header: &FrameHeader) -> [u8; FRAME_HEADER_BYTES] {
    let [m0, m1] = MAGIC;
    let [f0, f1] = header.flags.to_be_bytes();
    let [c0, c1, c2, c3, c4, c5, c6, c7] = header.correlation_id.to_be_bytes();
    #[rustfmt::skip]
    let bytes = [
        m0, m1, header.version, header.msg_type, f0, f1, 0, 0,
        c0, c1, c2, c3, c4, c5, c6, c7,
        0, 0, 0, 0, 0, 0, 0, 0,
    ];
    bytes
}

/// Starts a frame in `dst` whose body the caller appends next: writes the header with body length
/// and checksum left zero and returns the frame's start, to hand to [`finish_frame`].
#[inline]
pub fn begin_frame(header: &FrameHeader, dst: &mut BytesMut) -> usize {
    let start = dst.len();
    dst.put_slice(&header_bytes(header));
    start
}

/// Completes the frame begun at `start` by [`begin_frame`]: everything appended to `dst` since is
/// its body. Back-patches the body length and the checksum.
///
/// # Panics
///
/// When the body is longer than [`FRAME_BODY_BYTES_MAX`] (a programmer error), or `start` is not
/// what [`begin_frame`] returned for this `dst`.
#[inline]
pub fn finish_frame(dst: &mut BytesMut, start: usize) {
    assert!(
        start + FRAME_HEADER_BYTES <= dst.len(),
        "finish_frame without begin_frame"
    );
    let Some(frame) = dst.get_mut(start..) else {
        return;
    };
    let body_len = frame.len() - FRAME_HEADER_BYTES;
    assert!(
        body_len <= FRAME_BODY_BYTES_MAX as usize,
        "frame body over FRAME_BODY_BYTES_MAX"
    );
    if let Some(len_field) = frame.get_mut(BODY_LEN_OFFSET..CHECKSUM_COVERED_HEADER_BYTES) {
        len_field.copy_from_slice(&(body_len as u32).to_be_bytes());
    }
    let crc = checksum(frame);
    if let Some(crc_field) = frame.get_mut(CHECKSUM_COVERED_HEADER_BYTES..FRAME_HEADER_BYTES) {
        crc_field.copy_from_slice(&crc.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_is_the_iscsi_one() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn checksum_copy_and_two_pass_agree() {
        let data: Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for len in [0, 1, 7, 8, 100, 236, 237, 580] {
            for offset in 0..8 {
                let (covered, body) = (
                    &data[offset..offset + 20],
                    &data[offset + 20..offset + 20 + len],
                );
                let expected = crc32c::crc32c(&data[offset..offset + 20 + len]);
                assert_eq!(
                    checksum_parts(covered, body),
                    expected,
                    "len {len} offset {offset}"
                );
            }
        }
    }

    #[test]
    fn round_trip_and_need_more() {
        let header = FrameHeader {
            version: 1,
            msg_type: 0x10,
            flags: 1,
            correlation_id: 42,
        };
        let mut buf = BytesMut::new();
        encode_frame(&header, b"\x00\x01\x00\x01A", &mut buf);
        encode_frame(&FrameHeader::new(0x02, 43), b"", &mut buf);
        assert_eq!(buf.len(), 24 + 5 + 24);
        let mut partial = BytesMut::from(buf.get(..28).unwrap());
        assert_eq!(decode_frame(&mut partial, FRAME_BODY_BYTES_MAX), Ok(None));
        assert_eq!(partial.len(), 28);
        let first = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
            .unwrap()
            .unwrap();
        assert_eq!(first.header, header);
        assert!(first.header.is_retransmit());
        assert_eq!(first.body.as_ref(), b"\x00\x01\x00\x01A");
        let second = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX)
            .unwrap()
            .unwrap();
        assert_eq!(second.header.correlation_id, 43);
        assert!(second.body.is_empty());
        assert!(buf.is_empty());
    }

    #[test]
    fn errors_in_order() {
        let mut frame = BytesMut::new();
        encode_frame(&FrameHeader::new(0x10, 7), &[0; 100], &mut frame);
        let mut bad = frame.clone();
        bad[0] = b'X';
        assert!(matches!(
            decode_frame(&mut bad, 16_384),
            Err(ProtocolError::BadMagic { .. })
        ));
        let mut bad = frame.clone();
        bad[2] = 2;
        let err = decode_frame(&mut bad, 16_384).unwrap_err();
        assert_eq!(err.correlation_id(), Some(7));
        let mut bad = frame.clone();
        let err = decode_frame(&mut bad, 99).unwrap_err();
        assert_eq!(
            err,
            ProtocolError::BodyTooLarge {
                body_len: 100,
                limit: 99,
                correlation_id: 7
            }
        );
        let mut bad = frame.clone();
        bad[60] ^= 1;
        let err = decode_frame(&mut bad, 16_384).unwrap_err();
        assert!(matches!(err, ProtocolError::ChecksumMismatch { .. }));
        assert_eq!(bad.len(), frame.len(), "nothing consumed on error");
    }
}
