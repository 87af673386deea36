//! [`FieldWriter`]: appends fields to a buffer.

use bytes::{BufMut, Bytes, BytesMut};

use super::length_limits;

/// Appends fields to a buffer, normally the body of a frame begun with
/// [`begin_frame`](crate::frame::begin_frame).
///
/// Writing cannot fail. For a known tag, a STR or BYTES value longer than the field allows is cut
/// to its maximum, and an empty value of a field that needs at least one byte is not written (it
/// counts as absent): so a body this writer makes is always within the frame limit. Values are not
/// otherwise checked: the receiver does that.
#[derive(Debug)]
pub struct FieldWriter<'a> {
    dst: &'a mut BytesMut,
}

impl<'a> FieldWriter<'a> {
    /// Appends to `dst`.
    pub fn new(dst: &'a mut BytesMut) -> FieldWriter<'a> {
        FieldWriter { dst }
    }

    #[inline]
    fn header(&mut self, tag: u16, len: u16) {
        self.dst.put_u32(u32::from(tag) << 16 | u32::from(len));
    }

    /// A U8 field.
    #[inline]
    pub fn put_u8(&mut self, tag: u16, value: u8) {
        self.header(tag, 1);
        self.dst.put_u8(value);
    }

    /// A U16 field.
    #[inline]
    pub fn put_u16(&mut self, tag: u16, value: u16) {
        self.header(tag, 2);
        self.dst.put_u16(value);
    }

    /// A U32 field.
    #[inline]
    pub fn put_u32(&mut self, tag: u16, value: u32) {
        self.header(tag, 4);
        self.dst.put_u32(value);
    }

    /// A U64 field.
    #[inline]
    pub fn put_u64(&mut self, tag: u16, value: u64) {
        self.header(tag, 8);
        self.dst.put_u64(value);
    }

    /// A STR field (see the type docs for cutting and empty values).
    #[inline]
    pub fn put_str(&mut self, tag: u16, value: &[u8]) {
        let (min, max) = length_limits(tag);
        if value.is_empty() && min > 0 {
            return;
        }
        let value = value.get(..usize::from(max)).unwrap_or(value);
        self.header(tag, value.len() as u16);
        self.dst.put_slice(value);
    }

    /// A BYTES field (same rules as [`FieldWriter::put_str`]).
    #[inline]
    pub fn put_bytes(&mut self, tag: u16, value: &[u8]) {
        self.put_str(tag, value);
    }

    /// A free-text STR field (`message`, `description`): like [`FieldWriter::put_str`], and bytes
    /// outside printable ASCII become `?`, so that text from an error message always decodes.
    pub fn put_text(&mut self, tag: u16, value: &[u8]) {
        if value.iter().all(|&b| (0x20..=0x7E).contains(&b)) {
            self.put_str(tag, value);
            return;
        }
        let clean: Vec<u8> = value
            .iter()
            .map(|&b| if (0x20..=0x7E).contains(&b) { b } else { b'?' })
            .collect();
        self.put_str(tag, &clean);
    }

    /// Any field, written as given (cut to 65535 bytes): for tests and for tags this version does
    /// not know.
    pub fn put_raw(&mut self, tag: u16, value: &[u8]) {
        let value = value.get(..usize::from(u16::MAX)).unwrap_or(value);
        self.header(tag, value.len() as u16);
        self.dst.put_slice(value);
    }

    /// A U8 field when `value` is `Some`.
    #[inline]
    pub fn opt_u8(&mut self, tag: u16, value: Option<u8>) {
        if let Some(value) = value {
            self.put_u8(tag, value);
        }
    }

    /// A U16 field when `value` is `Some`.
    #[inline]
    pub fn opt_u16(&mut self, tag: u16, value: Option<u16>) {
        if let Some(value) = value {
            self.put_u16(tag, value);
        }
    }

    /// A U32 field when `value` is `Some`.
    #[inline]
    pub fn opt_u32(&mut self, tag: u16, value: Option<u32>) {
        if let Some(value) = value {
            self.put_u32(tag, value);
        }
    }

    /// A U64 field when `value` is `Some`.
    #[inline]
    pub fn opt_u64(&mut self, tag: u16, value: Option<u64>) {
        if let Some(value) = value {
            self.put_u64(tag, value);
        }
    }

    /// A STR or BYTES field when `value` is `Some`.
    #[inline]
    pub fn opt_str(&mut self, tag: u16, value: Option<&Bytes>) {
        if let Some(value) = value {
            self.put_str(tag, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::{Fields, tag};

    fn body(build: impl FnOnce(&mut FieldWriter<'_>)) -> Bytes {
        let mut dst = BytesMut::new();
        build(&mut FieldWriter::new(&mut dst));
        dst.freeze()
    }

    #[test]
    fn writer_cuts_and_cleans() {
        let b = body(|w| {
            w.put_str(tag::MERCHANT_ID, b"");
            w.put_str(tag::CARRIER, b"ABCDEFGHIJKLMNOPQRSTUVWXYZ");
            w.put_text(tag::MESSAGE, "bad\nvalue é".as_bytes());
        });
        let f = Fields::scan(&b).unwrap();
        assert!(!f.has(tag::MERCHANT_ID));
        assert_eq!(f.bytes(tag::CARRIER).unwrap().as_ref(), b"ABCDEFGHIJKLMNOP");
        assert_eq!(f.bytes(tag::MESSAGE).unwrap().as_ref(), b"bad?value ??");
    }
}
