//! Property tests of the ISO 8583 codec: round trips of random valid messages in every profile,
//! truncation at every offset, garbage, oversize length prefixes, and framing at every split point.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{
    ContentClass, IsoError, IsoFramer, IsoMessage, LengthHeader, LengthKind, Mti, PrefixEncoding,
    Profile,
};
use proptest::prelude::*;

const PROFILES: [fn() -> &'static Profile; 3] = [
    Profile::ascii_1987,
    Profile::pyiso_default,
    Profile::binary_bcd,
];

/// Variable fields get at most this many units, so that messages stay small and tests fast;
/// `long` fields use their full limit.
const SHORT_UNITS_MAX: usize = 40;

/// A deterministic byte source for building values from one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn pick(&mut self, alphabet: &[u8]) -> u8 {
        alphabet[(self.next() % alphabet.len() as u64) as usize]
    }
}

fn alphabet(class: ContentClass) -> Vec<u8> {
    match class {
        ContentClass::N => (b'0'..=b'9').collect(),
        ContentClass::An => (b'0'..=b'9')
            .chain(b'A'..=b'Z')
            .chain(b'a'..=b'z')
            .chain([b' '])
            .collect(),
        ContentClass::Ans => (0x20..=0x7e).chain(0x80..=0xff).collect(),
        ContentClass::B => (0..=0xff).collect(),
        ContentClass::Z => (b'0'..=b'?').collect(),
    }
}

/// A valid value for `field` of `profile`.
fn value_for(profile: &Profile, field: u8, seed: u64, long: bool) -> Vec<u8> {
    let spec = profile.field(field).unwrap();
    let mut rng = Rng(seed | 1);
    let length = match spec.length {
        LengthKind::Fixed(n) => usize::from(n),
        LengthKind::LlVar(max) | LengthKind::LllVar(max) => {
            let max = usize::from(max);
            let cap = if long { max } else { max.min(SHORT_UNITS_MAX) };
            (rng.next() % (cap as u64 + 1)) as usize
        }
    };
    let alphabet = alphabet(spec.class);
    (0..length).map(|_| rng.pick(&alphabet)).collect()
}

/// Field numbers with seeds: up to 24 fields over 2..=128, some with full-length values.
fn field_seeds() -> impl Strategy<Value = Vec<(u8, u64, bool)>> {
    prop::collection::vec((2u8..=128, any::<u64>(), prop::bool::weighted(0.05)), 0..24)
}

fn build(profile: &'static Profile, mti: u16, fields: &[(u8, u64, bool)]) -> IsoMessage {
    let mut message = IsoMessage::new(profile, Mti::from_number(mti).unwrap());
    for &(field, seed, long) in fields {
        message
            .set(field, value_for(profile, field, seed, long))
            .unwrap();
    }
    message
}

fn encode(message: &IsoMessage) -> Bytes {
    let mut out = BytesMut::new();
    message.encode(message.profile(), &mut out).unwrap();
    out.freeze()
}

proptest! {
    #[test]
    fn round_trip(profile in 0usize..3, mti in 0u16..=9999, fields in field_seeds()) {
        let profile = PROFILES[profile]();
        let message = build(profile, mti, &fields);
        let wire = encode(&message);
        let decoded = IsoMessage::decode(profile, wire.clone()).unwrap();
        prop_assert_eq!(&decoded, &message);
        prop_assert_eq!(encode(&decoded), wire);
    }

    #[test]
    fn translation_round_trip(from in 0usize..3, to in 0usize..3, fields in field_seeds()) {
        let (from, to) = (PROFILES[from](), PROFILES[to]());
        let message = build(from, 200, &fields);
        let mut wire = BytesMut::new();
        message.encode(to, &mut wire).unwrap();
        let decoded = IsoMessage::decode(to, wire.freeze()).unwrap();
        let ours: Vec<_> = message.fields().collect();
        let theirs: Vec<_> = decoded.fields().collect();
        prop_assert_eq!(ours, theirs);
    }

    #[test]
    fn every_truncation_is_an_error(profile in 0usize..3, fields in field_seeds()) {
        let profile = PROFILES[profile]();
        let wire = encode(&build(profile, 100, &fields));
        for cut in 0..wire.len() {
            prop_assert!(IsoMessage::decode(profile, wire.slice(..cut)).is_err(), "cut {}", cut);
        }
    }

    #[test]
    fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        for profile in PROFILES {
            let _ = IsoMessage::decode(profile(), Bytes::from(bytes.clone()));
        }
        for header in [LengthHeader::None, LengthHeader::Binary2, LengthHeader::Ascii4, LengthHeader::Bcd2] {
            let mut framer = IsoFramer::new(header, 4096);
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(msg)) = framer.decode(&mut buf) {
                for profile in PROFILES {
                    let _ = IsoMessage::decode(profile(), msg.clone());
                }
            }
        }
    }

    #[test]
    fn garbage_after_a_valid_head_never_panics(
        profile in 0usize..3,
        bitmap in any::<[u8; 16]>(),
        tail in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        // A valid MTI and random bitmaps get past the first checks into the field readers.
        let profile = PROFILES[profile]();
        let head = encode(&IsoMessage::new(profile, Mti::AUTHORIZATION_REQUEST));
        let mti_bytes = head.len() - if profile.name == "ascii_1987" { 16 } else { 8 };
        let mut wire = head[..mti_bytes].to_vec();
        if profile.name == "ascii_1987" {
            wire.extend(hex::encode_upper(bitmap).into_bytes());
        } else {
            wire.extend_from_slice(&bitmap);
        }
        wire.extend_from_slice(&tail);
        let _ = IsoMessage::decode(profile, Bytes::from(wire));
    }

    #[test]
    fn oversize_field_prefix_is_rejected_before_reading(profile in 0usize..3, field in 2u8..=128, excess in 1usize..200) {
        let profile = PROFILES[profile]();
        let spec = profile.field(field).unwrap();
        let (LengthKind::LlVar(max) | LengthKind::LllVar(max)) = spec.length else {
            return Ok(());
        };
        // A message with only `field`, whose prefix announces more than the limit and no value:
        // the error must be the limit, not a truncation (nothing is reserved or read first).
        let units = usize::from(max) + excess;
        let count = spec.value.prefix_count(units);
        let mut template = IsoMessage::new(profile, Mti::AUTHORIZATION_REQUEST);
        template.set(field, Vec::new()).unwrap();
        let head = encode(&template); // ends with the prefix of an empty value
        let prefix_bytes = match (spec.length, spec.prefix) {
            (LengthKind::LlVar(_), PrefixEncoding::Ascii) => 2,
            (LengthKind::LllVar(_), PrefixEncoding::Ascii) => 3,
            (LengthKind::LlVar(_), _) => 1,
            _ => 2,
        };
        let prefix = match (spec.prefix, prefix_bytes) {
            (PrefixEncoding::Ascii, width) => format!("{count:0width$}").into_bytes(),
            (PrefixEncoding::Bcd, width) => hex::decode(format!("{count:0w$}", w = 2 * width)).unwrap_or_default(),
            (_, width) => count.to_be_bytes()[8 - width..].to_vec(),
        };
        if prefix.len() != prefix_bytes {
            return Ok(()); // the count does not fit the prefix at all
        }
        let mut bad = head[..head.len() - prefix_bytes].to_vec();
        bad.extend_from_slice(&prefix);
        let error = IsoMessage::decode(profile, Bytes::from(bad)).unwrap_err();
        let at_limit = matches!(error, IsoError::InvalidLength { field: f, length, .. } if f == field && length == units);
        prop_assert!(at_limit, "{:?}", error);
    }

    #[test]
    fn framer_needs_more_at_every_split(
        header in 0usize..3,
        sizes in prop::collection::vec(0usize..300, 1..5),
    ) {
        let header = [LengthHeader::Binary2, LengthHeader::Ascii4, LengthHeader::Bcd2][header];
        let framer = IsoFramer::new(header, 1000);
        let messages: Vec<Vec<u8>> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j) as u8).collect())
            .collect();
        let mut stream = BytesMut::new();
        for m in &messages {
            framer.encode(m, &mut stream).unwrap();
        }
        for split in 0..=stream.len() {
            let mut decoder = framer;
            let mut buf = BytesMut::from(&stream[..split]);
            let mut got = Vec::new();
            while let Some(m) = decoder.decode(&mut buf).unwrap() {
                got.push(m.to_vec());
            }
            // Everything before the split that is whole came out; the rest waits for more bytes.
            prop_assert!(got.len() <= messages.len());
            prop_assert_eq!(&got[..], &messages[..got.len()]);
            buf.extend_from_slice(&stream[split..]);
            while let Some(m) = decoder.decode(&mut buf).unwrap() {
                got.push(m.to_vec());
            }
            prop_assert_eq!(&got, &messages);
            prop_assert!(buf.is_empty());
        }
    }

    #[test]
    fn oversize_header_is_rejected_before_reserving(header in 0usize..3, length in 1001usize..=9999) {
        let header = [LengthHeader::Binary2, LengthHeader::Ascii4, LengthHeader::Bcd2][header];
        let mut framer = IsoFramer::new(header, 1000);
        let mut announced = BytesMut::new();
        IsoFramer::new(header, 9999).encode(&vec![0; length], &mut announced).unwrap();
        let mut buf = BytesMut::from(&announced[..header.bytes()]);
        let error = framer.decode(&mut buf).unwrap_err();
        prop_assert_eq!(error, IsoError::MessageTooLarge { length, max: 1000 });
        prop_assert!(buf.capacity() < 1000);
    }
}
