//! The one error type of the ISO 8583 codec.
//!
//! Every variant names what is wrong, and where bytes were involved the field number and the byte
//! offset from the start of the message (the MTI's first byte; a length header is not counted).
//! Field number 0 stands for the MTI and the bitmaps, which are not data fields. No variant carries a
//! field's value, so an error can be logged without leaking a PAN or track data.

/// Why an ISO 8583 message or length header could not be decoded, encoded or built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IsoError {
    /// The message ended before a part that the MTI, a bitmap or a length prefix announced.
    #[error("message truncated in field {field} at byte {offset}: {needed} more bytes needed")]
    Truncated {
        /// Field being read (0 for the MTI and bitmaps).
        field: u8,
        /// Offset of the part that does not fit.
        offset: usize,
        /// How many bytes are missing.
        needed: usize,
    },
    /// The MTI is not four decimal digits in the profile's encoding.
    #[error("invalid MTI at byte {offset}")]
    InvalidMti {
        /// Offset of the offending byte.
        offset: usize,
    },
    /// A hex-ASCII bitmap holds a character that is not a hexadecimal digit.
    #[error("invalid bitmap character at byte {offset}")]
    InvalidBitmap {
        /// Offset of the offending byte.
        offset: usize,
    },
    /// A field's length prefix is not a number in the profile's prefix encoding.
    #[error("invalid length prefix of field {field} at byte {offset}")]
    InvalidLengthPrefix {
        /// Field whose prefix is bad.
        field: u8,
        /// Offset of the prefix.
        offset: usize,
    },
    /// A field's length (from its prefix, or of a value being set) is outside what its spec allows.
    #[error("field {field} has length {length} at byte {offset}, allowed {min}..={max}")]
    InvalidLength {
        /// Field whose length is bad.
        field: u8,
        /// Offset of the prefix (0 when setting a value).
        offset: usize,
        /// The length found, in the field's units (digits, characters or bytes).
        length: usize,
        /// Smallest allowed length.
        min: usize,
        /// Largest allowed length.
        max: usize,
    },
    /// A field's value has a character that its content class (n, an, ans, b, z) does not allow.
    #[error("field {field} has a character outside its content class at byte {offset}")]
    InvalidCharacter {
        /// Field whose value is bad.
        field: u8,
        /// Offset of the offending byte in the message, or in the value when setting it.
        offset: usize,
    },
    /// The pad nibble of an odd-length BCD value is not the one the profile specifies.
    #[error("field {field} has a bad BCD pad nibble at byte {offset}")]
    InvalidPadding {
        /// Field whose value is bad.
        field: u8,
        /// Offset of the byte holding the pad nibble.
        offset: usize,
    },
    /// The bitmap announces a field that the profile does not define.
    #[error("field {field} announced by the bitmap is not defined by profile, at byte {offset}")]
    UndefinedField {
        /// The undefined field.
        field: u8,
        /// Offset where the field would start.
        offset: usize,
    },
    /// A field number outside 2..=128 was used (field 1 is the secondary bitmap, set automatically).
    #[error("field number {field} is outside 2..=128")]
    InvalidFieldNumber {
        /// The field number given.
        field: u8,
    },
    /// Bytes remain after the last field that the bitmaps announce.
    #[error("{count} bytes left over after the last field, at byte {offset}")]
    TrailingBytes {
        /// Offset of the first extra byte.
        offset: usize,
        /// How many extra bytes there are.
        count: usize,
    },
    /// A typed value does not fit its field (amount over 12 digits, month 13, STAN over 999999...).
    #[error("value out of range for field {field}")]
    ValueOutOfRange {
        /// Field the value was meant for.
        field: u8,
    },
    /// A length header announces, or a message to send has, more bytes than the framer allows.
    #[error("message of {length} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Announced or actual message length.
        length: usize,
        /// The framer's maximum.
        max: usize,
    },
    /// A length header is not a number in its encoding (ASCII or BCD digits).
    #[error("invalid length header")]
    InvalidLengthHeader,
    /// The transport failed (only from the tokio_util adapters, which must accept I/O errors).
    #[error("I/O error: {kind}")]
    Io {
        /// What kind of I/O error happened.
        kind: std::io::ErrorKind,
    },
}

impl From<std::io::Error> for IsoError {
    fn from(error: std::io::Error) -> Self {
        IsoError::Io { kind: error.kind() }
    }
}
