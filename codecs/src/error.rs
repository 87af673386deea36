//! The one error type of the PayMesh frame protocol.
//!
//! Every variant names the problem and where it is: `offset` is counted from the first byte of the
//! frame (the `P` of the magic), so a body field at body offset `n` is at `24 + n`, the value a
//! REJECT carries in `error_offset`. No variant carries a field's value, so an error can be logged
//! and sent back without leaking a card number or a credential.

use crate::frame::FRAME_HEADER_BYTES;
use crate::types::ResultCode;

/// Why a frame or a message body could not be decoded.
///
/// Framing errors ([`ProtocolError::closes_connection`] is true) mean the byte stream can no longer
/// be trusted: REJECT, then close. Body errors concern one well-framed message: answer it (a
/// transaction answer with [`ProtocolError::result_code`], or a REJECT) and keep the connection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// Bytes 0..2 are not the magic `PM`: the stream is out of step (offset 0).
    #[error("bad magic {found:#06x} at byte 0 (expected 0x504d \"PM\")")]
    BadMagic {
        /// The two bytes found, big-endian.
        found: u16,
    },
    /// Byte 2, the version, is not one this codec speaks (offset 2).
    #[error("unsupported protocol version {version} at byte 2")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
        /// The frame's correlation id (bytes 8..16), not yet verified by the checksum.
        correlation_id: u64,
    },
    /// Bytes 16..20, the body length, exceed the receiver's limit; nothing was allocated (offset 16).
    #[error("body length {body_len} at byte 16 exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The announced body length.
        body_len: u32,
        /// The limit in force.
        limit: u32,
        /// The frame's correlation id (bytes 8..16), not yet verified by the checksum.
        correlation_id: u64,
    },
    /// Bytes 20..24, the CRC-32C, do not match the header and body: damaged in transit (offset 20).
    #[error(
        "checksum mismatch at byte 20: frame carries {carried:#010x}, computed {computed:#010x}"
    )]
    ChecksumMismatch {
        /// The checksum the frame carries.
        carried: u32,
        /// The checksum of the bytes received.
        computed: u32,
    },
    /// Byte 3, the message type, is not a known type (offset 3).
    #[error("unknown message type {msg_type:#04x} at byte 3")]
    UnknownMessageType {
        /// The type byte found.
        msg_type: u8,
    },
    /// A field's 4-byte header or its value runs past the end of the body.
    #[error("field truncated at byte {offset}: the body ends first")]
    TruncatedField {
        /// Offset of the field's tag.
        offset: usize,
    },
    /// A field has tag 0, which is never assigned.
    #[error("reserved tag 0 at byte {offset}")]
    ReservedTag {
        /// Offset of the field's tag.
        offset: usize,
    },
    /// The same tag appears twice in one body.
    #[error("field {tag} appears twice, again at byte {offset}")]
    DuplicateField {
        /// The repeated tag.
        tag: u16,
        /// Offset of the second occurrence.
        offset: usize,
    },
    /// A must-understand tag (0x8000..=0xFFFF) that this receiver does not know.
    #[error("unknown must-understand field {tag:#06x} at byte {offset}")]
    UnknownCriticalField {
        /// The tag.
        tag: u16,
        /// Offset of the field's tag.
        offset: usize,
    },
    /// A field's length is not its type's width or outside its allowed range.
    #[error("field {name} ({tag}) at byte {offset} has length {len}, allowed {min}..={max}")]
    BadFieldLength {
        /// The tag.
        tag: u16,
        /// The field's name in docs/PROTOCOL.md.
        name: &'static str,
        /// Offset of the field's tag.
        offset: usize,
        /// The length found.
        len: usize,
        /// Shortest allowed value.
        min: usize,
        /// Longest allowed value.
        max: usize,
    },
    /// A field's value has a character or a number its type does not allow.
    #[error("field {name} ({tag}) at byte {offset}: {reason}")]
    BadFieldValue {
        /// The tag.
        tag: u16,
        /// The field's name in docs/PROTOCOL.md.
        name: &'static str,
        /// Offset of the field's tag.
        offset: usize,
        /// What is wrong, without the value.
        reason: &'static str,
    },
    /// A field this message type requires is absent (offset: the end of the body).
    #[error("{msg_name} requires field {name} ({tag}); body ends at byte {offset}")]
    MissingField {
        /// The missing tag.
        tag: u16,
        /// The field's name in docs/PROTOCOL.md.
        name: &'static str,
        /// The message type's name.
        msg_name: &'static str,
        /// Offset of the end of the body.
        offset: usize,
    },
    /// A field this message type must not carry (a CVV outside AUTHORIZE and SALE).
    #[error("{msg_name} must not carry field {name} ({tag}) at byte {offset}")]
    FieldNotAllowed {
        /// The tag.
        tag: u16,
        /// The field's name in docs/PROTOCOL.md.
        name: &'static str,
        /// The message type's name.
        msg_name: &'static str,
        /// Offset of the field's tag.
        offset: usize,
    },
    /// `payment_method` is not 1..=4, or not one this message type accepts.
    #[error("payment method {method} at byte {offset} is not supported by {msg_name}")]
    UnsupportedPaymentMethod {
        /// The method number found.
        method: u8,
        /// The message type's name.
        msg_name: &'static str,
        /// Offset of the field's tag.
        offset: usize,
    },
}

impl ProtocolError {
    /// The result code to send back: in a REJECT, or in the transaction answer of a body error.
    pub const fn result_code(&self) -> ResultCode {
        match self {
            ProtocolError::BadMagic { .. } => ResultCode::MalformedFrame,
            ProtocolError::UnsupportedVersion { .. } => ResultCode::UnsupportedVersion,
            ProtocolError::BodyTooLarge { .. } => ResultCode::FrameTooLarge,
            ProtocolError::ChecksumMismatch { .. } => ResultCode::ChecksumMismatch,
            ProtocolError::UnknownMessageType { .. } => ResultCode::UnknownMessageType,
            ProtocolError::UnknownCriticalField { .. } => ResultCode::UnknownCriticalField,
            ProtocolError::UnsupportedPaymentMethod { .. } => ResultCode::UnsupportedPaymentMethod,
            ProtocolError::TruncatedField { .. }
            | ProtocolError::ReservedTag { .. }
            | ProtocolError::DuplicateField { .. }
            | ProtocolError::BadFieldLength { .. }
            | ProtocolError::BadFieldValue { .. }
            | ProtocolError::MissingField { .. }
            | ProtocolError::FieldNotAllowed { .. } => ResultCode::InvalidRequest,
        }
    }

    /// Whether the stream is no longer trustworthy: REJECT, then close the connection.
    pub const fn closes_connection(&self) -> bool {
        matches!(
            self,
            ProtocolError::BadMagic { .. }
                | ProtocolError::UnsupportedVersion { .. }
                | ProtocolError::BodyTooLarge { .. }
                | ProtocolError::ChecksumMismatch { .. }
        )
    }

    /// The correlation id to put in the REJECT of a framing error, when the header could be read
    /// (unverified: the checksum is checked last). `None` for bad magic and checksum mismatch: send
    /// the REJECT with correlation id 0. Body errors return `None`: the caller has the frame.
    pub const fn correlation_id(&self) -> Option<u64> {
        match self {
            ProtocolError::UnsupportedVersion { correlation_id, .. }
            | ProtocolError::BodyTooLarge { correlation_id, .. } => Some(*correlation_id),
            _ => None,
        }
    }

    /// Offset from the first byte of the frame of what is wrong, for REJECT's `error_offset`.
    pub const fn offset(&self) -> usize {
        match self {
            ProtocolError::BadMagic { .. } => 0,
            ProtocolError::UnsupportedVersion { .. } => 2,
            ProtocolError::UnknownMessageType { .. } => 3,
            ProtocolError::BodyTooLarge { .. } => 16,
            ProtocolError::ChecksumMismatch { .. } => FRAME_HEADER_BYTES - 4,
            ProtocolError::TruncatedField { offset }
            | ProtocolError::ReservedTag { offset }
            | ProtocolError::DuplicateField { offset, .. }
            | ProtocolError::UnknownCriticalField { offset, .. }
            | ProtocolError::BadFieldLength { offset, .. }
            | ProtocolError::BadFieldValue { offset, .. }
            | ProtocolError::MissingField { offset, .. }
            | ProtocolError::FieldNotAllowed { offset, .. }
            | ProtocolError::UnsupportedPaymentMethod { offset, .. } => *offset,
        }
    }

    /// The field tag concerned, for body errors about one field.
    pub const fn tag(&self) -> Option<u16> {
        match self {
            ProtocolError::DuplicateField { tag, .. }
            | ProtocolError::UnknownCriticalField { tag, .. }
            | ProtocolError::BadFieldLength { tag, .. }
            | ProtocolError::BadFieldValue { tag, .. }
            | ProtocolError::MissingField { tag, .. }
            | ProtocolError::FieldNotAllowed { tag, .. } => Some(*tag),
            ProtocolError::UnsupportedPaymentMethod { .. } => {
                Some(crate::body::tag::PAYMENT_METHOD)
            }
            _ => None,
        }
    }
}
