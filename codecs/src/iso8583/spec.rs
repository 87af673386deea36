//! Profiles: how one link lays out an ISO 8583 message, as data.
//!
//! A [`Profile`] says how the MTI and the bitmaps are encoded and, for each field 2..=128, its
//! content class, length kind (with its limit), length-prefix encoding and value encoding.
//! Lengths in a [`LengthKind`] are always in the field's *logical* units: digits for `n`,
//! characters for `an`/`ans`/`z`, bytes for `b`; the wire size follows from the encodings.
//!
//! The three built-in profiles share the ISO 8583:1987 field table below (classes from the
//! standard, limits from pyiso8583's specs, so that its encoder can produce our test vectors).

/// What characters a field may hold (ISO 8583 "attributes").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentClass {
    /// `n`: decimal digits.
    N,
    /// `an`: letters, digits and space (space is tolerated because links pad RRNs and codes with it).
    An,
    /// `ans`: any byte except ASCII control characters.
    Ans,
    /// `b`: raw bytes; the logical value is the bytes themselves.
    B,
    /// `z`: track 2/3 data, the ISO 7813 set `0`-`9` `:` `;` `<` `=` `>` `?`.
    Z,
}

impl ContentClass {
    /// Whether `byte` is allowed in a logical value of this class.
    #[inline]
    pub fn allows(self, byte: u8) -> bool {
        match self {
            ContentClass::N => byte.is_ascii_digit(),
            ContentClass::An => byte.is_ascii_alphanumeric() || byte == b' ',
            ContentClass::Ans => byte >= 0x20 && byte != 0x7f,
            ContentClass::B => true,
            ContentClass::Z => (b'0'..=b'?').contains(&byte),
        }
    }
}

/// Whether a field has a fixed length or a length prefix, and its limit in logical units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthKind {
    /// Always exactly this many units, no prefix.
    Fixed(u16),
    /// A two-digit (or one-byte) length prefix, then at most this many units.
    LlVar(u16),
    /// A three-digit (or two-byte) length prefix, then at most this many units.
    LllVar(u16),
}

impl LengthKind {
    /// The smallest and largest logical length allowed.
    #[inline]
    pub fn bounds(self) -> (usize, usize) {
        match self {
            LengthKind::Fixed(n) => (usize::from(n), usize::from(n)),
            LengthKind::LlVar(max) | LengthKind::LllVar(max) => (0, usize::from(max)),
        }
    }
}

/// How a length prefix is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixEncoding {
    /// ASCII digits: 2 bytes for LL, 3 for LLL.
    Ascii,
    /// Packed BCD: 1 byte for LL, 2 bytes (`0x0999` at most) for LLL.
    Bcd,
    /// Unsigned big-endian binary: 1 byte for LL, 2 bytes for LLL.
    Binary,
}

/// How a field's logical value is written on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueEncoding {
    /// As is (ASCII text or digits); zero-copy on decode.
    Ascii,
    /// Packed BCD, two digits a byte; the prefix counts digits. Odd lengths take a pad nibble:
    /// `0` on the left for [`BcdPad::Left`], `F` on the right for [`BcdPad::Right`].
    /// Nibbles map to `'0' + nibble`, so `z` track data keeps `=` as nibble `D`.
    Bcd(BcdPad),
    /// Raw bytes; zero-copy on decode.
    Binary,
    /// Bytes written as uppercase hex ASCII (two characters a byte); the prefix counts characters.
    Hex,
}

/// Where the pad nibble of an odd-length BCD value goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BcdPad {
    /// A `0` nibble before the first digit (numeric fields).
    Left,
    /// An `F` nibble after the last digit (track data).
    Right,
}

impl ValueEncoding {
    /// Wire bytes taken by a logical value of `units` length.
    #[inline]
    pub fn wire_bytes(self, units: usize) -> usize {
        match self {
            ValueEncoding::Ascii | ValueEncoding::Binary => units,
            ValueEncoding::Bcd(_) => units.div_ceil(2),
            ValueEncoding::Hex => units.saturating_mul(2),
        }
    }

    /// The number a length prefix carries for a logical value of `units` length.
    #[inline]
    pub fn prefix_count(self, units: usize) -> usize {
        match self {
            ValueEncoding::Hex => units.saturating_mul(2),
            _ => units,
        }
    }
}

/// How the MTI is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MtiEncoding {
    /// Four ASCII digits.
    Ascii,
    /// Two bytes of packed BCD.
    Bcd,
}

/// How the primary and secondary bitmaps are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitmapEncoding {
    /// 8 raw bytes each.
    Binary,
    /// 16 hex ASCII characters each (uppercase when written, either case read).
    HexAscii,
}

/// The layout of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    /// Allowed characters.
    pub class: ContentClass,
    /// Fixed or variable length and its limit, in logical units.
    pub length: LengthKind,
    /// Encoding of the length prefix (unused for fixed fields).
    pub prefix: PrefixEncoding,
    /// Encoding of the value.
    pub value: ValueEncoding,
}

/// Everything needed to read and write the messages of one upstream link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Profile {
    /// A short name for logs and test vectors, e.g. `"ascii_1987"`.
    pub name: &'static str,
    /// How the MTI is written.
    pub mti: MtiEncoding,
    /// How the bitmaps are written.
    pub bitmap: BitmapEncoding,
    /// Spec of field `i` at index `i`; indexes 0 and 1 (the secondary bitmap) are `None`.
    /// A field that is `None` is rejected when a bitmap announces it.
    pub fields: [Option<FieldSpec>; 129],
}

impl Profile {
    /// ISO 8583:1987 all ASCII: ASCII MTI, 16-character hex bitmaps, ASCII length prefixes and values
    /// (`b` fields as hex text). Byte for byte pyiso8583's `iso8583.specs.default_ascii`.
    pub fn ascii_1987() -> &'static Profile {
        &ASCII_1987
    }

    /// ISO 8583:1987 with binary bitmaps, ASCII MTI, ASCII length prefixes and values and raw `b`
    /// fields (52, 55, 64, 65, 96, 128). Byte for byte pyiso8583's `iso8583.specs.default`.
    pub fn pyiso_default() -> &'static Profile {
        &PYISO_DEFAULT
    }

    /// ISO 8583:1987 packed: BCD MTI, binary bitmaps, BCD length prefixes, `n` fields in BCD
    /// (left-padded with `0`), `z` fields in BCD (right-padded with `F`), raw `b` fields, and
    /// `an`/`ans` fields in ASCII. The usual layout of card-scheme and bank host links.
    pub fn binary_bcd() -> &'static Profile {
        &BINARY_BCD
    }

    /// The spec of `field`, if the profile defines it.
    #[inline]
    pub fn field(&self, field: u8) -> Option<&FieldSpec> {
        self.fields.get(usize::from(field)).and_then(Option::as_ref)
    }
}

static ASCII_1987: Profile = derive_profile(
    "ascii_1987",
    MtiEncoding::Ascii,
    BitmapEncoding::HexAscii,
    Flavour::Ascii,
);
static PYISO_DEFAULT: Profile = derive_profile(
    "pyiso_default",
    MtiEncoding::Ascii,
    BitmapEncoding::Binary,
    Flavour::AsciiBinary,
);
static BINARY_BCD: Profile = derive_profile(
    "binary_bcd",
    MtiEncoding::Bcd,
    BitmapEncoding::Binary,
    Flavour::Bcd,
);

/// How [`derive_profile`] turns the 1987 table into wire encodings.
#[derive(Clone, Copy)]
enum Flavour {
    Ascii,
    AsciiBinary,
    Bcd,
}

// Evaluated at compile time only (the statics above): an index out of bounds would fail the build,
// and `get` is not usable in a `const fn`.
#[allow(clippy::indexing_slicing)]
const fn derive_profile(
    name: &'static str,
    mti: MtiEncoding,
    bitmap: BitmapEncoding,
    flavour: Flavour,
) -> Profile {
    let mut fields: [Option<FieldSpec>; 129] = [None; 129];
    let mut i = 2;
    while i < 129 {
        let (class, length) = ISO_1987[i];
        let prefix = match flavour {
            Flavour::Ascii | Flavour::AsciiBinary => PrefixEncoding::Ascii,
            Flavour::Bcd => PrefixEncoding::Bcd,
        };
        let value = match (flavour, class) {
            (Flavour::Ascii, ContentClass::B) => ValueEncoding::Hex,
            (_, ContentClass::B) => ValueEncoding::Binary,
            (Flavour::Bcd, ContentClass::N) => ValueEncoding::Bcd(BcdPad::Left),
            (Flavour::Bcd, ContentClass::Z) => ValueEncoding::Bcd(BcdPad::Right),
            _ => ValueEncoding::Ascii,
        };
        fields[i] = Some(FieldSpec {
            class,
            length,
            prefix,
            value,
        });
        i += 1;
    }
    Profile {
        name,
        mti,
        bitmap,
        fields,
    }
}

use ContentClass::{An, Ans, B, N, Z};
use LengthKind::{Fixed as F, LlVar as LL, LllVar as LLL};

/// ISO 8583:1987 data elements: class and length (bytes for `b`). Index 0 and 1 are placeholders.
/// `x+n` amounts (28-31, 97) are `an`; 49-51 currencies are numeric (ISO 4217) here.
#[rustfmt::skip]
const ISO_1987: [(ContentClass, LengthKind); 129] = [
    (B, F(0)), (B, F(8)),
    /*   2 */ (N, LL(19)), (N, F(6)), (N, F(12)), (N, F(12)), (N, F(12)), (N, F(10)), (N, F(8)),
    /*   9 */ (N, F(8)), (N, F(8)), (N, F(6)), (N, F(6)), (N, F(4)), (N, F(4)), (N, F(4)),
    /*  16 */ (N, F(4)), (N, F(4)), (N, F(4)), (N, F(3)), (N, F(3)), (N, F(3)), (N, F(3)),
    /*  23 */ (N, F(3)), (N, F(3)), (N, F(2)), (N, F(2)), (N, F(1)), (An, F(9)), (An, F(9)),
    /*  30 */ (An, F(9)), (An, F(9)), (N, LL(11)), (N, LL(11)), (Ans, LL(28)), (Z, LL(37)),
    /*  36 */ (Z, LLL(104)), (An, F(12)), (An, F(6)), (An, F(2)), (An, F(3)), (Ans, F(8)),
    /*  42 */ (Ans, F(15)), (Ans, F(40)), (Ans, LL(25)), (Ans, LL(76)), (Ans, LLL(999)),
    /*  47 */ (Ans, LLL(999)), (Ans, LLL(999)), (N, F(3)), (N, F(3)), (N, F(3)), (B, F(8)),
    /*  53 */ (N, F(16)), (Ans, LLL(240)), (B, LLL(255)), (Ans, LLL(999)), (Ans, LLL(999)),
    /*  58 */ (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)),
    /*  62 */ (Ans, LLL(999)), (Ans, LLL(999)), (B, F(8)), (B, F(8)), (N, F(1)), (N, F(2)),
    /*  68 */ (N, F(3)), (N, F(3)), (N, F(3)), (N, F(4)), (N, F(4)), (N, F(6)), (N, F(10)),
    /*  75 */ (N, F(10)), (N, F(10)), (N, F(10)), (N, F(10)), (N, F(10)), (N, F(10)),
    /*  81 */ (N, F(10)), (N, F(12)), (N, F(12)), (N, F(12)), (N, F(12)), (N, F(16)),
    /*  87 */ (N, F(16)), (N, F(16)), (N, F(16)), (N, F(42)), (An, F(1)), (An, F(2)),
    /*  93 */ (An, F(5)), (An, F(7)), (An, F(42)), (B, F(8)), (An, F(17)), (Ans, F(25)),
    /*  99 */ (N, LL(11)), (N, LL(11)), (Ans, LL(17)), (Ans, LL(28)), (Ans, LL(28)),
    /* 104 */ (Ans, LLL(100)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)),
    /* 108 */ (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)),
    /* 112 */ (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)),
    /* 116 */ (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)),
    /* 120 */ (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)),
    /* 124 */ (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (Ans, LLL(999)), (B, F(8)),
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Every variable field's largest prefix count fits its prefix (99 for LL, 999 for LLL).
    #[test]
    fn limits_fit_their_prefixes() {
        for profile in [
            Profile::ascii_1987(),
            Profile::pyiso_default(),
            Profile::binary_bcd(),
        ] {
            for field in 2..=128u8 {
                let spec = profile.field(field).unwrap();
                let count = |max: u16| spec.value.prefix_count(usize::from(max));
                match spec.length {
                    LengthKind::Fixed(_) => {}
                    LengthKind::LlVar(max) => assert!(count(max) <= 99, "{field}"),
                    LengthKind::LllVar(max) => assert!(count(max) <= 999, "{field}"),
                }
                if let ValueEncoding::Bcd(_) = spec.value {
                    assert!(matches!(spec.class, ContentClass::N | ContentClass::Z));
                }
            }
            assert!(profile.field(0).is_none() && profile.field(1).is_none());
            assert!(profile.field(129).is_none());
        }
    }

    #[test]
    fn table_spot_checks() {
        let ascii = Profile::ascii_1987();
        assert_eq!(ascii.field(2).unwrap().length, LengthKind::LlVar(19));
        assert_eq!(ascii.field(52).unwrap().value, ValueEncoding::Hex);
        assert_eq!(ascii.field(90).unwrap().length, LengthKind::Fixed(42));
        let bcd = Profile::binary_bcd();
        assert_eq!(
            bcd.field(4).unwrap().value,
            ValueEncoding::Bcd(BcdPad::Left)
        );
        assert_eq!(
            bcd.field(35).unwrap().value,
            ValueEncoding::Bcd(BcdPad::Right)
        );
        assert_eq!(bcd.field(41).unwrap().value, ValueEncoding::Ascii);
        assert_eq!(
            Profile::pyiso_default().field(55).unwrap().value,
            ValueEncoding::Binary
        );
    }
}
