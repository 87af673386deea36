//! [`IsoMessage`]: an MTI plus the present fields, decoded from and encoded to one message.
//!
//! Layout for speed: a `u128` of present fields (bit `f - 1` for field `f`) and a `Vec` of their
//! values in field order, so the value of field `f` is at the number of present fields below `f`
//! (one popcount). A decoded message keeps the received `Bytes` and, when the profile converts
//! values (BCD digits, hex text), one buffer of converted values; each value is a 12-byte span of
//! one of them. `Bytes` handles for decoded values are made on the first [`IsoMessage::get`]:
//! making one per field while decoding (an atomic reference count increment each, a decrement on
//! drop, and a 32-byte copy that stalls on store forwarding) cost more than the rest of the
//! decode, and most fields of a forwarded message are never looked at alone. Encoding reads the
//! spans directly.

use std::fmt;
use std::sync::OnceLock;

use bytes::{Bytes, BytesMut};

use super::error::IsoError;
use super::mti::Mti;
use super::spec::{ContentClass, Profile};
use super::wire;

/// Fields whose values are never shown by `Debug`: extended PAN, track 2, track 3, track 1, PIN
/// block, ICC data (it carries track 2 equivalent data), message security code.
const FULLY_MASKED: [u8; 7] = [34, 35, 36, 45, 52, 55, 96];

/// One ISO 8583 message, tied to the profile its values were checked against.
#[derive(Clone)]
pub struct IsoMessage {
    profile: &'static Profile,
    mti: Mti,
    /// Bit `f - 1` is set when field `f` (2..=128) is present. Bit 0 (field 1, the secondary
    /// bitmap) is never set: it is derived when encoding.
    present: u128,
    /// The message this one was decoded from (empty for a built message).
    wire: Bytes,
    /// Values converted while decoding (BCD digits, bytes from hex text).
    converted: Bytes,
    /// Where the values of the present fields are, in ascending field order.
    values: Vec<Value>,
    /// Values given to [`IsoMessage::set`].
    owned: Vec<Bytes>,
    /// `Bytes` handles of decoded values, index for index with `values`, made on first `get`.
    /// Any change to the fields drops them (indexes move).
    handles: OnceLock<Box<[OnceLock<Bytes>]>>,
}

/// Where one value is.
#[derive(Debug, Clone, Copy)]
struct Value {
    start: u32,
    end: u32,
    source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// `start..end` of the decoded message.
    Wire,
    /// `start..end` of the converted values.
    Converted,
    /// Index `start` of `owned`.
    Owned,
}

static EMPTY: Bytes = Bytes::new();

impl IsoMessage {
    /// An empty message of type `mti` whose values will be checked against `profile`.
    pub fn new(profile: &'static Profile, mti: Mti) -> IsoMessage {
        IsoMessage {
            profile,
            mti,
            present: 0,
            wire: Bytes::new(),
            converted: Bytes::new(),
            values: Vec::with_capacity(16),
            owned: Vec::with_capacity(16),
            handles: OnceLock::new(),
        }
    }

    /// Decodes one whole message (its length header already removed, see `IsoFramer`).
    /// A message that ends early, has bytes left over or breaks the profile is an error.
    pub fn decode(profile: &'static Profile, msg: Bytes) -> Result<IsoMessage, IsoError> {
        if u32::try_from(msg.len()).is_err() {
            return Err(IsoError::MessageTooLarge {
                length: msg.len(),
                max: u32::MAX as usize,
            });
        }
        let mut pos = 0;
        let mti = wire::read_mti(profile, &msg, &mut pos)?;
        let primary = wire::read_bitmap(profile, &msg, &mut pos)?;
        let secondary = if primary >> 63 == 1 {
            wire::read_bitmap(profile, &msg, &mut pos)?
        } else {
            0
        };
        // Wire bitmaps put field 1 in the most significant bit; reversed, field f is bit f - 1.
        let present = (u128::from(primary.reverse_bits())
            | (u128::from(secondary.reverse_bits()) << 64))
            & !1;
        let mut values = Vec::with_capacity(present.count_ones() as usize);
        let mut scratch = BytesMut::new();
        let mut remaining = present;
        while remaining != 0 {
            let field = remaining.trailing_zeros() as u8 + 1;
            remaining &= remaining - 1;
            let span = wire::read_field(profile, field, &msg, &mut pos, &mut scratch)?;
            let source = match span.converted {
                true => Source::Converted,
                false => Source::Wire,
            };
            values.push(Value {
                start: span.start,
                end: span.end,
                source,
            });
        }
        if pos != msg.len() {
            return Err(IsoError::TrailingBytes {
                offset: pos,
                count: msg.len().saturating_sub(pos),
            });
        }
        Ok(IsoMessage {
            profile,
            mti,
            present,
            wire: msg,
            converted: scratch.freeze(),
            values,
            owned: Vec::new(),
            handles: OnceLock::new(),
        })
    }

    /// Appends the message, laid out by `profile`, to `dst` (no length header: see `IsoFramer`).
    ///
    /// With the message's own profile this cannot fail, since every value was checked when it was
    /// set or decoded. With another profile (translating between links) each value is checked
    /// first, and on error nothing is written.
    pub fn encode(&self, profile: &Profile, dst: &mut BytesMut) -> Result<(), IsoError> {
        if !std::ptr::eq(profile, self.profile) {
            for (field, value) in self.slices() {
                let spec = profile
                    .field(field)
                    .ok_or(IsoError::UndefinedField { field, offset: 0 })?;
                wire::validate(spec, field, value)?;
            }
        }
        // Room for the worst case (hex doubles a value, prefixes take up to 3 bytes), so that the
        // writes below never grow the buffer.
        let value_bytes: usize = self.slices().map(|(_, value)| value.len()).sum();
        dst.reserve(4 + 32 + 3 * self.values.len() + 2 * value_bytes);
        wire::write_mti(profile, self.mti, dst);
        let secondary = (self.present >> 64) as u64;
        let primary = (self.present as u64) | u64::from(secondary != 0);
        wire::write_bitmap(profile, primary.reverse_bits(), dst);
        if secondary != 0 {
            wire::write_bitmap(profile, secondary.reverse_bits(), dst);
        }
        for (field, value) in self.slices() {
            if let Some(spec) = profile.field(field) {
                wire::write_field(spec, value, dst);
            }
        }
        Ok(())
    }

    /// The encoded message as `Bytes` (see [`IsoMessage::encode`]), with the message's own profile.
    pub fn to_bytes(&self) -> Bytes {
        let mut dst = BytesMut::new();
        // Cannot fail with the message's own profile: values were checked on the way in.
        match self.encode(self.profile, &mut dst) {
            Ok(()) => dst.freeze(),
            Err(_) => Bytes::new(),
        }
    }

    /// The profile the values were checked against.
    pub fn profile(&self) -> &'static Profile {
        self.profile
    }

    /// The message type indicator.
    pub fn mti(&self) -> Mti {
        self.mti
    }

    /// Changes the message type indicator (e.g. turning a request into its response).
    pub fn set_mti(&mut self, mti: Mti) {
        self.mti = mti;
    }

    /// Index in `values` of field `field`, counting the present fields below it.
    #[inline]
    fn index(&self, field: u8) -> usize {
        let below = (1u128 << (field - 1)) - 1;
        (self.present & below).count_ones() as usize
    }

    #[inline]
    fn bit(field: u8) -> Option<u128> {
        (2..=128).contains(&field).then(|| 1u128 << (field - 1))
    }

    /// A value's bytes without making a `Bytes` handle.
    #[inline]
    fn slice_of(&self, value: Value) -> &[u8] {
        let range = value.start as usize..value.end as usize;
        let found = match value.source {
            Source::Wire => self.wire.get(range),
            Source::Converted => self.converted.get(range),
            Source::Owned => self.owned.get(value.start as usize).map(|b| &b[..]),
        };
        found.unwrap_or_default()
    }

    /// A value's `Bytes`; for a decoded value, a zero-copy slice made the first time.
    fn bytes_of(&self, index: usize, value: Value) -> &Bytes {
        let backing = match value.source {
            Source::Owned => return self.owned.get(value.start as usize).unwrap_or(&EMPTY),
            Source::Wire => &self.wire,
            Source::Converted => &self.converted,
        };
        let handles = self
            .handles
            .get_or_init(|| self.values.iter().map(|_| OnceLock::new()).collect());
        let Some(cell) = handles.get(index) else {
            return &EMPTY;
        };
        cell.get_or_init(|| {
            let (start, end) = (value.start as usize, value.end as usize);
            // Always true: spans come from `read_field`, which took them out of these buffers.
            match start <= end && end <= backing.len() {
                true => backing.slice(start..end),
                false => Bytes::new(),
            }
        })
    }

    /// Whether field `field` is present.
    pub fn contains(&self, field: u8) -> bool {
        Self::bit(field).is_some_and(|bit| self.present & bit != 0)
    }

    /// Index and place of field `field`'s value, if present.
    fn value(&self, field: u8) -> Option<(usize, Value)> {
        let bit = Self::bit(field)?;
        if self.present & bit == 0 {
            return None;
        }
        let index = self.index(field);
        self.values.get(index).map(|value| (index, *value))
    }

    /// The logical value of field `field`: ASCII digits for `n` (also when BCD on the wire), text
    /// for `an`/`ans`/`z`, raw bytes for `b` (also when hex on the wire). Zero-copy: a slice of the
    /// decoded message (or of its converted values).
    #[inline]
    pub fn get(&self, field: u8) -> Option<&Bytes> {
        self.value(field)
            .map(|(index, value)| self.bytes_of(index, value))
    }

    /// [`IsoMessage::get`] as a plain slice, without making a `Bytes` handle.
    #[inline]
    pub fn get_slice(&self, field: u8) -> Option<&[u8]> {
        self.value(field).map(|(_, value)| self.slice_of(value))
    }

    /// Sets field `field` to a logical value (see [`IsoMessage::get`]) after checking it against the
    /// profile: field number, length limits and content class.
    pub fn set(&mut self, field: u8, value: impl Into<Bytes>) -> Result<(), IsoError> {
        let bit = Self::bit(field).ok_or(IsoError::InvalidFieldNumber { field })?;
        let spec = self
            .profile
            .field(field)
            .ok_or(IsoError::UndefinedField { field, offset: 0 })?;
        let value = value.into();
        wire::validate(spec, field, &value)?;
        self.handles = OnceLock::new();
        let index = self.index(field);
        let existing = self.values.get(index).copied();
        match existing {
            Some(old) if self.present & bit != 0 && old.source == Source::Owned => {
                if let Some(slot) = self.owned.get_mut(old.start as usize) {
                    *slot = value;
                }
            }
            _ => {
                let owned = Value {
                    start: self.owned.len() as u32,
                    end: 0,
                    source: Source::Owned,
                };
                self.owned.push(value);
                if self.present & bit != 0 {
                    if let Some(slot) = self.values.get_mut(index) {
                        *slot = owned;
                    }
                } else {
                    self.values.insert(index.min(self.values.len()), owned);
                    self.present |= bit;
                }
            }
        }
        Ok(())
    }

    /// [`IsoMessage::set`] for building a message in one expression.
    pub fn with(mut self, field: u8, value: impl Into<Bytes>) -> Result<IsoMessage, IsoError> {
        self.set(field, value)?;
        Ok(self)
    }

    /// Removes field `field`, returning its value if it was present.
    pub fn remove(&mut self, field: u8) -> Option<Bytes> {
        let bit = Self::bit(field)?;
        if self.present & bit == 0 {
            return None;
        }
        let index = self.index(field);
        self.present &= !bit;
        self.handles = OnceLock::new();
        if index >= self.values.len() {
            return None;
        }
        let value = self.values.remove(index);
        let range = value.start as usize..value.end as usize;
        match value.source {
            // The slot stays, empty: the other values' indexes into `owned` do not move.
            Source::Owned => self.owned.get_mut(value.start as usize).map(std::mem::take),
            Source::Wire => self.wire.get(range.clone()).map(|_| self.wire.slice(range)),
            Source::Converted => self
                .converted
                .get(range.clone())
                .map(|_| self.converted.slice(range)),
        }
    }

    /// Field numbers of the present fields, ascending.
    fn numbers(&self) -> impl Iterator<Item = u8> + use<> {
        let mut remaining = self.present;
        std::iter::from_fn(move || {
            if remaining == 0 {
                return None;
            }
            let field = remaining.trailing_zeros() as u8 + 1;
            remaining &= remaining - 1;
            Some(field)
        })
    }

    /// The present fields and their logical values, in ascending field order.
    pub fn fields(&self) -> impl Iterator<Item = (u8, &Bytes)> + '_ {
        self.numbers().zip(
            self.values
                .iter()
                .enumerate()
                .map(|(index, value)| self.bytes_of(index, *value)),
        )
    }

    /// [`IsoMessage::fields`] as plain slices, without making `Bytes` handles.
    pub fn slices(&self) -> impl Iterator<Item = (u8, &[u8])> + '_ {
        self.numbers()
            .zip(self.values.iter().map(|value| self.slice_of(*value)))
    }

    /// How many fields are present.
    pub fn field_count(&self) -> usize {
        self.values.len()
    }
}

impl PartialEq for IsoMessage {
    fn eq(&self, other: &IsoMessage) -> bool {
        (std::ptr::eq(self.profile, other.profile) || self.profile == other.profile)
            && self.mti == other.mti
            && self.present == other.present
            && self.slices().eq(other.slices())
    }
}

impl Eq for IsoMessage {}

/// Shows a value as text, or as hex for `b` fields, masked as the field number requires.
struct MaskedValue<'a> {
    field: u8,
    value: &'a [u8],
    binary: bool,
}

impl fmt::Debug for MaskedValue<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if FULLY_MASKED.contains(&self.field) {
            return write!(f, "<masked, {} bytes>", self.value.len());
        }
        if self.field == 2 {
            // PAN: at most the first 6 (the BIN, which names the issuer) and the last 4, as PCI DSS
            // allows; a value too short to hide anything in between is hidden whole.
            // TODO(lead): wrap in types::Pan and use its masking.
            let len = self.value.len();
            return match (self.value.get(..6), self.value.get(len.saturating_sub(4)..)) {
                (Some(bin), Some(last)) if len >= 12 => write!(
                    f,
                    "\"{}{}{}\"",
                    String::from_utf8_lossy(bin),
                    "*".repeat(len - 10),
                    String::from_utf8_lossy(last)
                ),
                _ => write!(f, "<masked, {len} bytes>"),
            };
        }
        if self.binary {
            f.write_str("0x")?;
            return self.value.iter().try_for_each(|b| write!(f, "{b:02X}"));
        }
        write!(f, "\"{}\"", self.value.escape_ascii())
    }
}

impl fmt::Debug for IsoMessage {
    /// Never prints a PAN in full, nor track data, PIN blocks or ICC data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IsoMessage")
            .field("profile", &self.profile.name)
            .field("mti", &self.mti)
            .field("fields", &MaskedFields(self))
            .finish()
    }
}

/// The fields of a message as a map, each value masked as its field number requires.
struct MaskedFields<'a>(&'a IsoMessage);

impl fmt::Debug for MaskedFields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let message = self.0;
        f.debug_map()
            .entries(message.slices().map(|(field, value)| {
                let binary = message
                    .profile
                    .field(field)
                    .is_some_and(|spec| spec.class == ContentClass::B);
                let masked = MaskedValue {
                    field,
                    value,
                    binary,
                };
                (field, masked)
            }))
            .finish()
    }
}
