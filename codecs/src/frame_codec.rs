//! `tokio_util::codec` adapters (feature `tokio-codec`): [`PaymeshCodec`] turns a byte stream into
//! [`Frame`]s and writes messages, frames or pre-encoded frame bytes.
//!
//! The codec's error type is `std::io::Error`, as `Framed` requires. A protocol error travels inside
//! one of kind `InvalidData`; [`PaymeshCodec::protocol_error`] gets it back to build the REJECT.

use std::io;

use bytes::{Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

use crate::error::ProtocolError;
use crate::frame::{FRAME_BODY_BYTES_MAX, Frame, decode_frame, encode_frame};
use crate::message::Message;

/// Frame codec for `tokio_util::codec::Framed`.
#[derive(Debug, Clone, Copy)]
pub struct PaymeshCodec {
    max_body: u32,
}

impl PaymeshCodec {
    /// A codec accepting bodies up to `max_body` bytes (capped at [`FRAME_BODY_BYTES_MAX`]).
    pub fn new(max_body: u32) -> PaymeshCodec {
        PaymeshCodec {
            max_body: max_body.min(FRAME_BODY_BYTES_MAX),
        }
    }

    /// The protocol error inside an error this codec returned, if it is one.
    pub fn protocol_error(error: &io::Error) -> Option<&ProtocolError> {
        error.get_ref()?.downcast_ref::<ProtocolError>()
    }
}

impl Default for PaymeshCodec {
    fn default() -> PaymeshCodec {
        PaymeshCodec::new(FRAME_BODY_BYTES_MAX)
    }
}

impl Decoder for PaymeshCodec {
    type Item = Frame;
    type Error = io::Error;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, io::Error> {
        decode_frame(src, self.max_body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// Encodes a message with this correlation id and no flags.
impl Encoder<(u64, &Message)> for PaymeshCodec {
    type Error = io::Error;

    fn encode(
        &mut self,
        (correlation_id, message): (u64, &Message),
        dst: &mut BytesMut,
    ) -> Result<(), io::Error> {
        message.encode(correlation_id, 0, dst);
        Ok(())
    }
}

/// Encodes a frame: its header (flags included) and body; computes length and checksum.
impl Encoder<&Frame> for PaymeshCodec {
    type Error = io::Error;

    fn encode(&mut self, frame: &Frame, dst: &mut BytesMut) -> Result<(), io::Error> {
        if frame.body.len() > FRAME_BODY_BYTES_MAX as usize {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "frame body over FRAME_BODY_BYTES_MAX",
            ));
        }
        encode_frame(&frame.header, &frame.body, dst);
        Ok(())
    }
}

/// Writes bytes that already hold complete frames (a cached answer, a batch) as they are.
impl Encoder<Bytes> for PaymeshCodec {
    type Error = io::Error;

    fn encode(&mut self, frames: Bytes, dst: &mut BytesMut) -> Result<(), io::Error> {
        dst.extend_from_slice(&frames);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameHeader;
    use crate::message::msg_type;

    #[test]
    fn decodes_what_it_encodes() {
        let mut codec = PaymeshCodec::default();
        let mut buf = BytesMut::new();
        codec.encode((5, &Message::Heartbeat), &mut buf).unwrap();
        let frame = Frame {
            header: FrameHeader::new(msg_type::LOGOUT, 6),
            body: Bytes::new(),
        };
        codec.encode(&frame, &mut buf).unwrap();
        let first = codec.decode(&mut buf).unwrap().unwrap();
        assert_eq!(Message::decode(&first).unwrap(), Message::Heartbeat);
        assert_eq!(codec.decode(&mut buf).unwrap().unwrap(), frame);
        assert!(codec.decode(&mut buf).unwrap().is_none());
    }

    #[test]
    fn protocol_errors_survive_io_error() {
        let mut codec = PaymeshCodec::new(10);
        let mut buf = BytesMut::new();
        Message::Heartbeat.encode(1, 0, &mut buf);
        buf[2] = 9;
        let err = codec.decode(&mut buf).unwrap_err();
        let inner = PaymeshCodec::protocol_error(&err).unwrap();
        assert_eq!(inner.correlation_id(), Some(1));
    }
}
