//! The check of the `iso8583_decode` target, shared with the corpus replay test
//! (`codecs/tests/fuzz_corpus.rs`).
//!
//! ISO 8583: the input as a byte stream through `IsoFramer` (every length header), each framed
//! message and the whole input through `IsoMessage::decode` in every profile. Nothing may panic, a
//! decoded message must survive encode then decode unchanged, and must encode in every other
//! profile or fail cleanly (translation), then decode to the same fields.

use bytes::{Bytes, BytesMut};
use paymesh_codecs::iso8583::{IsoFramer, IsoMessage, LengthHeader, Profile};

const PROFILES: [fn() -> &'static Profile; 3] = [
    Profile::ascii_1987,
    Profile::pyiso_default,
    Profile::binary_bcd,
];

fn decode_everywhere(msg: &Bytes) {
    for profile in PROFILES {
        let profile = profile();
        let Ok(message) = IsoMessage::decode(profile, msg.clone()) else {
            continue;
        };
        let mut again = BytesMut::new();
        message.encode(profile, &mut again).unwrap();
        // Compared as messages, not bytes: the input may be non-canonical (lowercase hex bitmap,
        // an empty secondary bitmap), which our encoder never writes.
        let reread = IsoMessage::decode(profile, again.freeze()).unwrap();
        assert_eq!(reread, message);
        for target in PROFILES {
            let target = target();
            let mut translated = BytesMut::new();
            if message.encode(target, &mut translated).is_ok() {
                let back = IsoMessage::decode(target, translated.freeze()).unwrap();
                assert!(back.slices().eq(message.slices()));
            }
        }
    }
}

/// Runs one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    decode_everywhere(&Bytes::copy_from_slice(data));
    for header in [
        LengthHeader::Binary2,
        LengthHeader::Ascii4,
        LengthHeader::Bcd2,
    ] {
        let mut framer = IsoFramer::new(header, 4096);
        let mut buf = BytesMut::from(data);
        while let Ok(Some(msg)) = framer.decode(&mut buf) {
            decode_everywhere(&msg);
        }
    }
}
