//! The check of the `frame_decode` target, shared with the corpus replay test
//! (`codecs/tests/fuzz_corpus.rs`).
//!
//! PayMesh frames: `decode_frame` over the input as a stream, then `Message::decode` of each frame;
//! and, since random bytes rarely carry a right CRC-32C, the input's first byte as a message type
//! and the rest as a body straight into `Message::decode_body`. Nothing may panic, and a decoded
//! message must survive encode then decode unchanged.

use bytes::{Bytes, BytesMut};
use paymesh_codecs::frame::{FRAME_BODY_BYTES_MAX, decode_frame};
use paymesh_codecs::message::Message;

fn round_trip(message: &Message) {
    let mut wire = BytesMut::new();
    message.encode(1, 0, &mut wire);
    let frame = decode_frame(&mut wire, FRAME_BODY_BYTES_MAX)
        .unwrap()
        .unwrap();
    assert_eq!(&Message::decode(&frame).unwrap(), message);
}

/// Runs one input; panics when an invariant does not hold.
pub fn check(data: &[u8]) {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = decode_frame(&mut buf, FRAME_BODY_BYTES_MAX) {
        if let Ok(message) = Message::decode(&frame) {
            round_trip(&message);
        }
    }
    if let Some((&msg_type, body)) = data.split_first()
        && let Ok(message) = Message::decode_body(msg_type, &Bytes::copy_from_slice(body))
    {
        round_trip(&message);
    }
}
