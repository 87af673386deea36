//! Reading and writing the parts of a message: MTI, bitmaps, length prefixes and field values.
//!
//! Every read takes the whole message and a cursor, checks the bytes it needs are there before
//! touching them, and reports the field number and byte offset of anything wrong.

use bytes::{BufMut, BytesMut};

use super::error::IsoError;
use super::mti::Mti;
use super::spec::{
    BcdPad, BitmapEncoding, ContentClass, FieldSpec, LengthKind, MtiEncoding, PrefixEncoding,
    Profile, ValueEncoding,
};

const HEX_UPPER: &[u8; 16] = b"0123456789ABCDEF";

/// The `len` bytes at `pos`, or a truncation error naming `field`.
#[inline(always)]
fn take(msg: &[u8], pos: usize, len: usize, field: u8) -> Result<&[u8], IsoError> {
    let end = pos.saturating_add(len);
    match msg.get(pos..end) {
        Some(bytes) => Ok(bytes),
        None => Err(truncated(field, pos, end.saturating_sub(msg.len()))),
    }
}

#[cold]
fn truncated(field: u8, offset: usize, needed: usize) -> IsoError {
    IsoError::Truncated {
        field,
        offset,
        needed,
    }
}

#[inline]
fn hex_value(byte: u8) -> Option<u8> {
    // A table lookup: bitmaps are 16 hex characters in every ASCII message.
    match HEX_VALUES.get(usize::from(byte)) {
        Some(&value) if value < 16 => Some(value),
        _ => None,
    }
}

/// The value of each hex digit, 0xff for every other byte.
// Built at compile time, where an out-of-bounds index fails the build.
#[allow(clippy::indexing_slicing)]
const HEX_VALUES: [u8; 256] = {
    let mut table = [0xff; 256];
    let mut i = 0;
    while i < 10 {
        table[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        table[b'A' as usize + i] = 10 + i as u8;
        table[b'a' as usize + i] = 10 + i as u8;
        i += 1;
    }
    table
};

/// Whether each byte is allowed in an `an` value (letters, digits, space).
#[allow(clippy::indexing_slicing)]
const AN_ALLOWED: [bool; 256] = {
    let mut table = [false; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        table[i] = b.is_ascii_alphanumeric() || b == b' ';
        i += 1;
    }
    table
};

/// The decimal value of packed BCD bytes, or `None` if a nibble is over 9.
#[inline]
fn bcd_number(bytes: &[u8]) -> Option<usize> {
    bytes.iter().try_fold(0usize, |acc, &b| {
        let (high, low) = (b >> 4, b & 0x0f);
        (high <= 9 && low <= 9).then(|| acc * 100 + usize::from(high) * 10 + usize::from(low))
    })
}

/// The decimal value of ASCII digits, or `None` if one is not a digit.
#[inline]
fn ascii_number(bytes: &[u8]) -> Option<usize> {
    bytes.iter().try_fold(0usize, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + usize::from(b - b'0'))
    })
}

pub(crate) fn read_mti(profile: &Profile, msg: &[u8], pos: &mut usize) -> Result<Mti, IsoError> {
    let invalid = IsoError::InvalidMti { offset: *pos };
    let mti = match profile.mti {
        MtiEncoding::Ascii => {
            let raw = take(msg, *pos, 4, 0)?;
            *pos += 4;
            Mti::from_ascii(raw).map_err(|_| invalid)?
        }
        MtiEncoding::Bcd => {
            let raw = take(msg, *pos, 2, 0)?;
            *pos += 2;
            let number = bcd_number(raw).ok_or(invalid)?;
            Mti::from_number(u16::try_from(number).map_err(|_| invalid)?).map_err(|_| invalid)?
        }
    };
    Ok(mti)
}

pub(crate) fn write_mti(profile: &Profile, mti: Mti, dst: &mut BytesMut) {
    let [a, b, c, d] = *mti.as_bytes();
    match profile.mti {
        MtiEncoding::Ascii => dst.put_slice(&[a, b, c, d]),
        MtiEncoding::Bcd => {
            let pack = |high: u8, low: u8| ((high & 0x0f) << 4) | (low & 0x0f);
            dst.put_slice(&[pack(a, b), pack(c, d)]);
        }
    }
}

/// Reads one 64-bit bitmap as it is on the wire: field 1 (or 65) is the most significant bit.
pub(crate) fn read_bitmap(profile: &Profile, msg: &[u8], pos: &mut usize) -> Result<u64, IsoError> {
    match profile.bitmap {
        BitmapEncoding::Binary => {
            let raw = take(msg, *pos, 8, 0)?;
            let bytes: [u8; 8] = raw.try_into().map_err(|_| IsoError::Truncated {
                field: 0,
                offset: *pos,
                needed: 8,
            })?;
            *pos += 8;
            Ok(u64::from_be_bytes(bytes))
        }
        BitmapEncoding::HexAscii => {
            let raw = take(msg, *pos, 16, 0)?;
            let mut bits = 0u64;
            for (i, &c) in raw.iter().enumerate() {
                let nibble = hex_value(c).ok_or(IsoError::InvalidBitmap { offset: *pos + i })?;
                bits = (bits << 4) | u64::from(nibble);
            }
            *pos += 16;
            Ok(bits)
        }
    }
}

pub(crate) fn write_bitmap(profile: &Profile, bits: u64, dst: &mut BytesMut) {
    match profile.bitmap {
        BitmapEncoding::Binary => dst.put_u64(bits),
        BitmapEncoding::HexAscii => {
            let mut text = [0u8; 16];
            for (i, c) in text.iter_mut().enumerate() {
                let nibble = (bits >> (60 - 4 * i)) & 0x0f;
                *c = HEX_UPPER.get(nibble as usize).copied().unwrap_or(b'0');
            }
            dst.put_slice(&text);
        }
    }
}

/// Bytes a length prefix takes.
#[inline]
fn prefix_bytes(length: LengthKind, encoding: PrefixEncoding) -> usize {
    match (length, encoding) {
        (LengthKind::Fixed(_), _) => 0,
        (LengthKind::LlVar(_), PrefixEncoding::Ascii) => 2,
        (LengthKind::LllVar(_), PrefixEncoding::Ascii) => 3,
        (LengthKind::LlVar(_), _) => 1,
        (LengthKind::LllVar(_), _) => 2,
    }
}

/// The largest count a length prefix can carry.
pub(crate) fn prefix_capacity(length: LengthKind, encoding: PrefixEncoding) -> usize {
    match (length, encoding) {
        (LengthKind::Fixed(_), _) => usize::MAX,
        (LengthKind::LlVar(_), PrefixEncoding::Binary) => 0xff,
        (LengthKind::LllVar(_), PrefixEncoding::Binary) => 0xffff,
        (LengthKind::LlVar(_), _) => 99,
        (LengthKind::LllVar(_), PrefixEncoding::Ascii) => 999,
        (LengthKind::LllVar(_), PrefixEncoding::Bcd) => 9999,
    }
}

/// Checks a logical value against a field spec: length bounds, prefix capacity, content class.
pub(crate) fn validate(spec: &FieldSpec, field: u8, value: &[u8]) -> Result<(), IsoError> {
    let (min, max) = spec.length.bounds();
    let capacity = prefix_capacity(spec.length, spec.prefix);
    if value.len() < min || value.len() > max || spec.value.prefix_count(value.len()) > capacity {
        return Err(IsoError::InvalidLength {
            field,
            offset: 0,
            length: value.len(),
            min,
            max,
        });
    }
    let bcd = matches!(spec.value, ValueEncoding::Bcd(_));
    match first_invalid(spec.class, value) {
        Some(offset) => Err(IsoError::InvalidCharacter { field, offset }),
        // BCD carries only nibbles, `'0' + nibble`.
        None if bcd => match value.iter().position(|b| !(b'0'..=b'?').contains(b)) {
            Some(offset) => Err(IsoError::InvalidCharacter { field, offset }),
            None => Ok(()),
        },
        None => Ok(()),
    }
}

#[cold]
fn invalid_character(field: u8, offset: usize) -> IsoError {
    IsoError::InvalidCharacter { field, offset }
}

/// Index of the first byte of `value` that `class` does not allow.
///
/// Digits, `ans` and `z` are checked eight bytes at a time (SWAR: SIMD within a register), since
/// validation is most of the work of decoding an ASCII message.
#[inline]
fn first_invalid(class: ContentClass, value: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH_BITS: u64 = ONES * 0x80;
    const HIGH_NIBBLES: u64 = ONES * 0xf0;
    match class {
        // Every byte 0x30..=0x39: high nibble 3, and adding 6 does not carry out of the low one.
        ContentClass::N => first_invalid_by(
            value,
            |x| x & HIGH_NIBBLES == ONES * 0x30 && (x + ONES * 0x06) & HIGH_NIBBLES == ONES * 0x30,
            |b| b.is_ascii_digit(),
        ),
        // No byte below 0x20 and none equal to 0x7f ("has less than" and "has zero" bit tricks).
        ContentClass::Ans => first_invalid_by(
            value,
            |x| {
                let below_space = x.wrapping_sub(ONES * 0x20) & !x & HIGH_BITS;
                let del = x ^ (ONES * 0x7f);
                let has_del = del.wrapping_sub(ONES) & !del & HIGH_BITS;
                below_space | has_del == 0
            },
            |b| b >= 0x20 && b != 0x7f,
        ),
        ContentClass::Z => first_invalid_by(
            value,
            |x| x & HIGH_NIBBLES == ONES * 0x30,
            |b| (b'0'..=b'?').contains(&b),
        ),
        ContentClass::An => value
            .iter()
            .position(|&b| !AN_ALLOWED.get(usize::from(b)).copied().unwrap_or(false)),
        ContentClass::B => None,
    }
}

#[inline(always)]
fn first_invalid_by(
    value: &[u8],
    word_ok: impl Fn(u64) -> bool,
    byte_ok: impl Fn(u8) -> bool,
) -> Option<usize> {
    let mut words = value.chunks_exact(8);
    let mut offset = 0;
    for word in &mut words {
        let bytes: [u8; 8] = word.try_into().unwrap_or([0; 8]);
        if !word_ok(u64::from_le_bytes(bytes)) {
            return word.iter().position(|&b| !byte_ok(b)).map(|i| offset + i);
        }
        offset += 8;
    }
    let tail = words.remainder();
    tail.iter().position(|&b| !byte_ok(b)).map(|i| offset + i)
}

/// Reads a variable field's prefix at `*pos` and returns the field's logical length.
fn read_length(
    spec: &FieldSpec,
    field: u8,
    msg: &[u8],
    pos: &mut usize,
) -> Result<usize, IsoError> {
    let start = *pos;
    let width = prefix_bytes(spec.length, spec.prefix);
    let raw = take(msg, start, width, field)?;
    let invalid = IsoError::InvalidLengthPrefix {
        field,
        offset: start,
    };
    let count = match spec.prefix {
        PrefixEncoding::Ascii => ascii_number(raw).ok_or(invalid)?,
        PrefixEncoding::Bcd => bcd_number(raw).ok_or(invalid)?,
        PrefixEncoding::Binary => raw
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b)),
    };
    let units = match spec.value {
        ValueEncoding::Hex if count % 2 != 0 => return Err(invalid),
        ValueEncoding::Hex => count / 2,
        _ => count,
    };
    let (_, max) = spec.length.bounds();
    if units > max {
        return Err(IsoError::InvalidLength {
            field,
            offset: start,
            length: units,
            min: 0,
            max,
        });
    }
    *pos = start + width;
    Ok(units)
}

/// Where a decoded value lies: `start..end` of the message, or of the conversion buffer when
/// `converted` (BCD digits, bytes from hex text).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub(crate) start: u32,
    pub(crate) end: u32,
    pub(crate) converted: bool,
}

/// Decodes field `field` at `*pos`, checking it, and returns where its logical value lies. BCD
/// and hex values are converted into `scratch`, one buffer for the whole message. The caller
/// makes the `Bytes` once the whole message is known to be good (fewer refcount round trips on
/// errors, and no 32-byte value passing through a returned `Result`).
#[inline(always)]
pub(crate) fn read_field(
    profile: &Profile,
    field: u8,
    msg: &[u8],
    pos: &mut usize,
    scratch: &mut BytesMut,
) -> Result<Span, IsoError> {
    let offset = *pos;
    let spec = profile
        .field(field)
        .ok_or(IsoError::UndefinedField { field, offset })?;
    let units = match spec.length {
        LengthKind::Fixed(n) => usize::from(n),
        LengthKind::LlVar(_) | LengthKind::LllVar(_) => read_length(spec, field, msg, pos)?,
    };
    let start = *pos;
    let wire = spec.value.wire_bytes(units);
    let raw = take(msg, start, wire, field)?;
    // `IsoMessage::decode` refuses messages of u32::MAX bytes or more, so offsets fit a u32.
    let span = |start: usize, end: usize, converted: bool| Span {
        start: start as u32,
        end: end as u32,
        converted,
    };
    let value = match spec.value {
        ValueEncoding::Ascii | ValueEncoding::Binary => {
            if let Some(i) = first_invalid(spec.class, raw) {
                return Err(invalid_character(field, start + i));
            }
            span(start, start + wire, false)
        }
        ValueEncoding::Bcd(pad) => {
            reserve_scratch(scratch, units, msg.len());
            let from = scratch.len();
            unpack_bcd(spec.class, pad, field, raw, units, start, scratch)?;
            span(from, scratch.len(), true)
        }
        ValueEncoding::Hex => {
            reserve_scratch(scratch, units, msg.len());
            let from = scratch.len();
            for (i, pair) in raw.chunks_exact(2).enumerate() {
                let nibble = |j: usize| {
                    pair.get(j)
                        .copied()
                        .and_then(hex_value)
                        .ok_or(IsoError::InvalidCharacter {
                            field,
                            offset: start + 2 * i + j,
                        })
                };
                scratch.put_u8((nibble(0)? << 4) | nibble(1)?);
            }
            span(from, scratch.len(), true)
        }
    };
    *pos = start + wire;
    Ok(value)
}

/// Makes room for `units` more bytes; the first reservation covers the worst case of the whole
/// message (two digits a byte), so one allocation serves every converted field.
#[inline]
fn reserve_scratch(scratch: &mut BytesMut, units: usize, message_bytes: usize) {
    if scratch.capacity() - scratch.len() < units {
        scratch.reserve(units.max(message_bytes.saturating_mul(2)));
    }
}

fn unpack_bcd(
    class: ContentClass,
    pad: BcdPad,
    field: u8,
    raw: &[u8],
    units: usize,
    start: usize,
    scratch: &mut BytesMut,
) -> Result<(), IsoError> {
    let odd = units % 2 == 1;
    let last = raw.len().saturating_sub(1);
    // A digit's character is `'0' + nibble`: `n` takes nibbles 0-9, `z` all sixteen.
    let digit = |nibble: u8, offset: usize| {
        let c = b'0' + nibble;
        match class.allows(c) {
            true => Ok(c),
            false => Err(invalid_character(field, offset)),
        }
    };
    let check_pad = |nibble: u8, expected: u8, offset: usize| match nibble == expected {
        true => Ok(()),
        false => Err(IsoError::InvalidPadding { field, offset }),
    };
    for (i, &byte) in raw.iter().enumerate() {
        let offset = start + i;
        let (high, low) = (byte >> 4, byte & 0x0f);
        if odd && pad == BcdPad::Left && i == 0 {
            check_pad(high, 0, offset)?;
            scratch.put_u8(digit(low, offset)?);
        } else if odd && pad == BcdPad::Right && i == last {
            scratch.put_u8(digit(high, offset)?);
            check_pad(low, 0x0f, offset)?;
        } else {
            scratch.put_slice(&[digit(high, offset)?, digit(low, offset)?]);
        }
    }
    Ok(())
}

/// Writes a value already validated against `spec`.
#[inline]
pub(crate) fn write_field(spec: &FieldSpec, value: &[u8], dst: &mut BytesMut) {
    let count = spec.value.prefix_count(value.len());
    match (spec.length, spec.prefix) {
        (LengthKind::Fixed(_), _) => {}
        (LengthKind::LlVar(_), PrefixEncoding::Ascii) => {
            dst.put_slice(&[b'0' + (count / 10 % 10) as u8, b'0' + (count % 10) as u8]);
        }
        (LengthKind::LllVar(_), PrefixEncoding::Ascii) => dst.put_slice(&[
            b'0' + (count / 100 % 10) as u8,
            b'0' + (count / 10 % 10) as u8,
            b'0' + (count % 10) as u8,
        ]),
        (LengthKind::LlVar(_), PrefixEncoding::Bcd) => dst.put_u8(bcd_byte(count)),
        (LengthKind::LllVar(_), PrefixEncoding::Bcd) => {
            dst.put_slice(&[bcd_byte(count / 100), bcd_byte(count)]);
        }
        (LengthKind::LlVar(_), PrefixEncoding::Binary) => dst.put_u8(count as u8),
        (LengthKind::LllVar(_), PrefixEncoding::Binary) => dst.put_u16(count as u16),
    }
    match spec.value {
        ValueEncoding::Ascii | ValueEncoding::Binary => dst.put_slice(value),
        ValueEncoding::Bcd(pad) => pack_bcd(pad, value, dst),
        ValueEncoding::Hex => {
            for &b in value {
                let hex = |n: u8| {
                    HEX_UPPER
                        .get(usize::from(n & 0x0f))
                        .copied()
                        .unwrap_or(b'0')
                };
                dst.put_slice(&[hex(b >> 4), hex(b)]);
            }
        }
    }
}

/// The last two decimal digits of `n` as one BCD byte.
#[inline]
fn bcd_byte(n: usize) -> u8 {
    (((n / 10 % 10) as u8) << 4) | (n % 10) as u8
}

fn pack_bcd(pad: BcdPad, digits: &[u8], dst: &mut BytesMut) {
    let nibble = |c: &u8| c.wrapping_sub(b'0') & 0x0f;
    let (head, pairs) = match (digits.len() % 2 == 1, pad) {
        (true, BcdPad::Left) => digits.split_at_checked(1).unwrap_or((&[], digits)),
        _ => (&[][..], digits),
    };
    if let Some(c) = head.first() {
        dst.put_u8(nibble(c));
    }
    let mut chunks = pairs.chunks_exact(2);
    for pair in &mut chunks {
        if let [high, low] = pair {
            dst.put_u8((nibble(high) << 4) | nibble(low));
        }
    }
    if let Some(c) = chunks.remainder().first() {
        dst.put_u8((nibble(c) << 4) | 0x0f);
    }
}
