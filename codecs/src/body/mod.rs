//! The body of a frame: a sequence of fields, each `tag u16, len u16, value[len]` (big-endian).
//!
//! - [`tag`]: the tag numbers; [`FieldSpec`] and [`field_spec`]: each known tag's name, type and
//!   length limits (the table of docs/PROTOCOL.md, "Fields").
//! - [`FieldIter`]: the raw fields of a body, in order, for tools and tests.
//! - [`Fields`]: one validating pass over a body that message decoding reads typed values from.
//! - [`FieldWriter`]: appends fields to a `BytesMut`.
//!
//! Unknown tags 0x0001..=0x7FFF are skipped; an unknown tag 0x8000..=0xFFFF ("must-understand")
//! makes the body invalid, as does tag 0, a repeated tag, or a known tag whose value does not fit
//! its type.

use bytes::Bytes;

use crate::error::ProtocolError;
use crate::frame::FRAME_HEADER_BYTES;

/// Length of a field's tag and length.
pub const FIELD_HEADER_BYTES: usize = 4;
/// First must-understand tag: an unknown tag from here on invalidates the message.
pub const TAG_MUST_UNDERSTAND_MIN: u16 = 0x8000;

mod spec;
mod writer;

use spec::{CHECK_BY_TAG, Check, SLOTS, TAG_KNOWN_MAX, length_limits};
pub use spec::{Charset, FIELD_SPECS, FieldKind, FieldSpec, field_spec, tag};
pub use writer::FieldWriter;

/// One raw field of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RawField<'a> {
    /// The tag.
    pub tag: u16,
    /// Offset of the tag from the start of the body.
    pub offset: usize,
    /// The value.
    pub value: &'a [u8],
}

/// The raw fields of a body, in order. Yields `Err(TruncatedField)` once when the body ends inside
/// a field, then stops. Checks nothing else: tags, duplicates and values are [`Fields`]' job.
#[derive(Debug, Clone)]
pub struct FieldIter<'a> {
    body: &'a [u8],
    pos: usize,
}

impl<'a> FieldIter<'a> {
    /// Iterates over `body`.
    pub fn new(body: &'a [u8]) -> FieldIter<'a> {
        FieldIter { body, pos: 0 }
    }
}

impl<'a> Iterator for FieldIter<'a> {
    type Item = Result<RawField<'a>, ProtocolError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        let offset = self.pos;
        let rest = self.body.get(offset..).filter(|rest| !rest.is_empty())?;
        let field = match rest {
            [t0, t1, l0, l1, value @ ..] => {
                let len = usize::from(u16::from_be_bytes([*l0, *l1]));
                value
                    .get(..len)
                    .map(|value| (u16::from_be_bytes([*t0, *t1]), value))
            }
            _ => None,
        };
        match field {
            Some((tag, value)) => {
                self.pos = offset + FIELD_HEADER_BYTES + value.len();
                Some(Ok(RawField { tag, offset, value }))
            }
            None => {
                self.pos = self.body.len();
                Some(Err(ProtocolError::TruncatedField {
                    offset: FRAME_HEADER_BYTES + offset,
                }))
            }
        }
    }
}

/// Where a known field sits in the body: offset of its tag and length of its value.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    offset: u16,
    len: u16,
}

/// A validated body: every known field located, typed and checked, unknown optional fields
/// skipped. Values are read from it as zero-copy `Bytes` slices or integers.
#[derive(Debug)]
pub struct Fields<'a> {
    body: &'a Bytes,
    present: u64,
    slots: [Slot; SLOTS],
}

impl<'a> Fields<'a> {
    /// Checks every field of `body` (see the module docs for what is invalid).
    #[inline]
    pub fn scan(body: &'a Bytes) -> Result<Fields<'a>, ProtocolError> {
        let mut fields = Fields {
            body,
            present: 0,
            slots: [Slot::default(); SLOTS],
        };
        // Unknown optional tags, kept only to catch a repeat; rare, so allocated lazily.
        let mut unknown: Vec<(u16, usize)> = Vec::new();
        for field in FieldIter::new(body) {
            let RawField { tag, offset, value } = field?;
            let check = CHECK_BY_TAG
                .get(usize::from(tag))
                .copied()
                .unwrap_or(Check::UNKNOWN);
            if !check.known {
                match tag {
                    0 => {
                        return Err(ProtocolError::ReservedTag {
                            offset: FRAME_HEADER_BYTES + offset,
                        });
                    }
                    TAG_MUST_UNDERSTAND_MIN.. => {
                        let offset = FRAME_HEADER_BYTES + offset;
                        return Err(ProtocolError::UnknownCriticalField { tag, offset });
                    }
                    _ => unknown.push((tag, FRAME_HEADER_BYTES + offset)),
                }
                continue;
            }
            let bit = 1u64 << tag;
            if fields.present & bit != 0 || !check.accepts(value) {
                return Err(field_error(tag, offset, value, fields.present & bit != 0));
            }
            fields.present |= bit;
            if let Some(slot) = fields.slots.get_mut(usize::from(tag)) {
                // A body is at most FRAME_BODY_BYTES_MAX long, so offsets fit in u16.
                *slot = Slot {
                    offset: offset as u16,
                    len: value.len() as u16,
                };
            }
        }
        if unknown.len() > 1 {
            return check_unknown_repeats(unknown).map(|()| fields);
        }
        Ok(fields)
    }

    /// Whether the body has the field.
    #[inline]
    pub fn has(&self, tag: u16) -> bool {
        tag <= TAG_KNOWN_MAX && self.present & (1u64 << tag) != 0
    }

    /// Offset in the frame of the field's tag, or of the end of the body when it is absent.
    pub fn offset(&self, tag: u16) -> usize {
        match self.slot(tag) {
            Some(slot) => FRAME_HEADER_BYTES + usize::from(slot.offset),
            None => self.end_offset(),
        }
    }

    /// Offset in the frame of the end of the body.
    pub fn end_offset(&self) -> usize {
        FRAME_HEADER_BYTES + self.body.len()
    }

    #[inline]
    fn slot(&self, tag: u16) -> Option<Slot> {
        if !self.has(tag) {
            return None;
        }
        self.slots.get(usize::from(tag)).copied()
    }

    #[inline]
    fn value(&self, tag: u16) -> Option<&'a [u8]> {
        let slot = self.slot(tag)?;
        let start = usize::from(slot.offset) + FIELD_HEADER_BYTES;
        self.body.get(start..start + usize::from(slot.len))
    }

    /// A STR or BYTES value, as a slice of the body sharing its allocation.
    #[inline]
    pub fn bytes(&self, tag: u16) -> Option<Bytes> {
        let slot = self.slot(tag)?;
        let start = usize::from(slot.offset) + FIELD_HEADER_BYTES;
        Some(self.body.slice(start..start + usize::from(slot.len)))
    }

    /// A U8 value.
    #[inline]
    pub fn u8(&self, tag: u16) -> Option<u8> {
        self.value(tag)?
            .first_chunk()
            .map(|b| u8::from_be_bytes(*b))
    }

    /// A U16 value.
    #[inline]
    pub fn u16(&self, tag: u16) -> Option<u16> {
        self.value(tag)?
            .first_chunk()
            .map(|b| u16::from_be_bytes(*b))
    }

    /// A U32 value.
    #[inline]
    pub fn u32(&self, tag: u16) -> Option<u32> {
        self.value(tag)?
            .first_chunk()
            .map(|b| u32::from_be_bytes(*b))
    }

    /// A U64 value.
    #[inline]
    pub fn u64(&self, tag: u16) -> Option<u64> {
        self.value(tag)?
            .first_chunk()
            .map(|b| u64::from_be_bytes(*b))
    }
}

/// The error for a known field that is repeated or fails its check.
#[cold]
fn field_error(tag: u16, body_offset: usize, value: &[u8], repeated: bool) -> ProtocolError {
    let offset = FRAME_HEADER_BYTES + body_offset;
    let Some(spec) = field_spec(tag) else {
        return ProtocolError::ReservedTag { offset };
    };
    let (name, len, (min, max)) = (spec.name, value.len(), spec.kind.len_range());
    match spec.kind {
        _ if repeated => ProtocolError::DuplicateField { tag, offset },
        _ if len < min || len > max => ProtocolError::BadFieldLength {
            tag,
            name,
            offset,
            len,
            min,
            max,
        },
        FieldKind::Str { charset, .. } => ProtocolError::BadFieldValue {
            tag,
            name,
            offset,
            reason: charset.describe(),
        },
        _ => ProtocolError::BadFieldValue {
            tag,
            name,
            offset,
            reason: "invalid value",
        },
    }
}

/// Finds a repeated unknown optional tag.
#[cold]
fn check_unknown_repeats(mut unknown: Vec<(u16, usize)>) -> Result<(), ProtocolError> {
    unknown.sort_unstable();
    let repeat = unknown
        .windows(2)
        .find(|pair| matches!(pair, [a, b] if a.0 == b.0));
    match repeat {
        Some(&[_, (tag, offset)]) => Err(ProtocolError::DuplicateField { tag, offset }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;

    fn body(build: impl FnOnce(&mut FieldWriter<'_>)) -> Bytes {
        let mut dst = BytesMut::new();
        build(&mut FieldWriter::new(&mut dst));
        dst.freeze()
    }

    #[test]
    fn scan_reads_known_and_skips_unknown() {
        let b = body(|w| {
            w.put_str(tag::MERCHANT_ID, b"M1");
            w.put_raw(0x1234, b"future");
            w.put_u64(tag::AMOUNT, 1000);
            w.put_u16(tag::CURRENCY, 410);
        });
        let f = Fields::scan(&b).unwrap();
        assert_eq!(f.bytes(tag::MERCHANT_ID).unwrap().as_ref(), b"M1");
        assert_eq!(f.u64(tag::AMOUNT), Some(1000));
        assert_eq!(f.u16(tag::CURRENCY), Some(410));
        assert!(!f.has(tag::ORDER_ID));
        assert_eq!(f.offset(tag::AMOUNT), 24 + 6 + 10);
    }

    #[test]
    fn scan_rejects() {
        let dup = body(|w| {
            w.put_raw(0x0100, b"a");
            w.put_raw(0x0100, b"b");
        });
        assert_eq!(
            Fields::scan(&dup).unwrap_err(),
            ProtocolError::DuplicateField {
                tag: 0x100,
                offset: 24 + 5
            }
        );
        let critical = body(|w| w.put_raw(0x8001, b""));
        assert!(matches!(
            Fields::scan(&critical),
            Err(ProtocolError::UnknownCriticalField {
                tag: 0x8001,
                offset: 24
            })
        ));
        let short = body(|w| w.put_raw(tag::AMOUNT, &[0; 7]));
        assert!(matches!(
            Fields::scan(&short),
            Err(ProtocolError::BadFieldLength { .. })
        ));
        let letters = body(|w| w.put_raw(tag::PAN, b"41111111111a1111"));
        assert!(matches!(
            Fields::scan(&letters),
            Err(ProtocolError::BadFieldValue { .. })
        ));
        let month = body(|w| w.put_raw(tag::EXPIRY, b"2913"));
        assert!(matches!(
            Fields::scan(&month),
            Err(ProtocolError::BadFieldValue { .. })
        ));
        let zero = body(|w| w.put_raw(0, b""));
        assert!(matches!(
            Fields::scan(&zero),
            Err(ProtocolError::ReservedTag { .. })
        ));
        let cut = Bytes::from_static(&[0, 1, 0, 5, b'a']);
        assert_eq!(
            Fields::scan(&cut).unwrap_err(),
            ProtocolError::TruncatedField { offset: 24 }
        );
    }
}
