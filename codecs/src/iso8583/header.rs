//! Length headers: how an upstream TCP link marks where one ISO 8583 message ends.
//!
//! The header counts the message bytes after it (the header itself excluded), as most banks and
//! VANs do. [`IsoFramer`] is sans-IO: it splits a receive buffer into whole messages and prepends
//! headers on the way out. With the `tokio-codec` feature, [`IsoFramer`] is also a
//! `tokio_util::codec` `Decoder`/`Encoder` of `Bytes`, and [`IsoCodec`] one of [`IsoMessage`]s.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::error::IsoError;
#[cfg(feature = "tokio-codec")]
use super::{message::IsoMessage, spec::Profile};

/// The length header in front of each message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LengthHeader {
    /// No header: the whole buffer is one message. Only usable when the caller already knows where
    /// messages end (one message per datagram, per HTTP body, per test case), never on a TCP stream.
    None,
    /// Two bytes, unsigned big-endian (at most 65 535).
    Binary2,
    /// Four ASCII digits, e.g. `0123` (at most 9 999).
    Ascii4,
    /// Two bytes of packed BCD, e.g. `0x01 0x23` (at most 9 999).
    Bcd2,
}

impl LengthHeader {
    /// Bytes the header takes.
    pub fn bytes(self) -> usize {
        match self {
            LengthHeader::None => 0,
            LengthHeader::Binary2 | LengthHeader::Bcd2 => 2,
            LengthHeader::Ascii4 => 4,
        }
    }

    /// The longest message the header can announce.
    pub fn max_message_bytes(self) -> usize {
        match self {
            LengthHeader::None => usize::MAX,
            LengthHeader::Binary2 => 0xffff,
            LengthHeader::Ascii4 | LengthHeader::Bcd2 => 9999,
        }
    }

    /// Reads the announced length from the header bytes, `None` if it is not a number.
    fn read(self, header: &[u8]) -> Option<usize> {
        let digit = |b: u8| b.is_ascii_digit().then(|| usize::from(b - b'0'));
        let bcd = |b: u8| {
            (b >> 4 <= 9 && b & 0x0f <= 9).then(|| usize::from(b >> 4) * 10 + usize::from(b & 0x0f))
        };
        match (self, header) {
            (LengthHeader::None, _) => None,
            (LengthHeader::Binary2, [high, low]) => {
                Some(usize::from(*high) << 8 | usize::from(*low))
            }
            (LengthHeader::Bcd2, [high, low]) => Some(bcd(*high)? * 100 + bcd(*low)?),
            (LengthHeader::Ascii4, [a, b, c, d]) => {
                Some(digit(*a)? * 1000 + digit(*b)? * 100 + digit(*c)? * 10 + digit(*d)?)
            }
            _ => None,
        }
    }

    fn write(self, length: usize, dst: &mut BytesMut) {
        let digit = |divisor: usize| b'0' + (length / divisor % 10) as u8;
        let bcd = |divisor: usize| {
            ((length / divisor / 10 % 10) as u8) << 4 | (length / divisor % 10) as u8
        };
        match self {
            LengthHeader::None => {}
            LengthHeader::Binary2 => dst.put_u16(length as u16),
            LengthHeader::Ascii4 => dst.put_slice(&[digit(1000), digit(100), digit(10), digit(1)]),
            LengthHeader::Bcd2 => dst.put_slice(&[bcd(100), bcd(1)]),
        }
    }
}

/// Splits a byte stream into messages by their length headers, and frames outgoing messages.
///
/// After a decode error the stream position is lost: close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IsoFramer {
    /// The link's length header.
    pub header: LengthHeader,
    /// Longest message accepted or sent, header excluded; checked before any buffer is reserved.
    pub max_message_bytes: usize,
}

impl IsoFramer {
    /// A framer whose limit is `max_message_bytes`, lowered to what `header` can announce.
    pub fn new(header: LengthHeader, max_message_bytes: usize) -> IsoFramer {
        IsoFramer {
            header,
            max_message_bytes: max_message_bytes.min(header.max_message_bytes()),
        }
    }

    /// The next whole message in `buf`, removed from it; `Ok(None)` when more bytes are needed.
    /// A zero-length message (some links send one as a keepalive) comes out as empty `Bytes`.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Bytes>, IsoError> {
        let header_bytes = self.header.bytes();
        if self.header == LengthHeader::None {
            if buf.is_empty() {
                return Ok(None);
            }
            self.check(buf.len())?;
            return Ok(Some(buf.split().freeze()));
        }
        let Some(header) = buf.get(..header_bytes) else {
            return Ok(None);
        };
        let length = self
            .header
            .read(header)
            .ok_or(IsoError::InvalidLengthHeader)?;
        self.check(length)?;
        let total = header_bytes + length;
        if buf.len() < total {
            // The length was checked against the limit just above, so this reservation is bounded.
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        buf.advance(header_bytes);
        Ok(Some(buf.split_to(length).freeze()))
    }

    /// Appends `msg` to `dst` behind its length header; `Err` (and nothing written) if it is longer
    /// than `max_message_bytes` or than the header can announce.
    pub fn encode(&self, msg: &[u8], dst: &mut BytesMut) -> Result<(), IsoError> {
        self.check(msg.len())?;
        dst.reserve(self.header.bytes() + msg.len());
        self.header.write(msg.len(), dst);
        dst.put_slice(msg);
        Ok(())
    }

    fn check(&self, length: usize) -> Result<(), IsoError> {
        let max = self.max_message_bytes.min(self.header.max_message_bytes());
        if length > max {
            return Err(IsoError::MessageTooLarge { length, max });
        }
        Ok(())
    }
}

#[cfg(feature = "tokio-codec")]
impl tokio_util::codec::Decoder for IsoFramer {
    type Item = Bytes;
    type Error = IsoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, IsoError> {
        IsoFramer::decode(self, src)
    }
}

#[cfg(feature = "tokio-codec")]
impl tokio_util::codec::Encoder<Bytes> for IsoFramer {
    type Error = IsoError;

    fn encode(&mut self, item: Bytes, dst: &mut BytesMut) -> Result<(), IsoError> {
        IsoFramer::encode(self, &item, dst)
    }
}

#[cfg(feature = "tokio-codec")]
impl tokio_util::codec::Encoder<&[u8]> for IsoFramer {
    type Error = IsoError;

    fn encode(&mut self, item: &[u8], dst: &mut BytesMut) -> Result<(), IsoError> {
        IsoFramer::encode(self, item, dst)
    }
}

/// A `tokio_util` codec of whole [`IsoMessage`]s: an [`IsoFramer`] plus a [`Profile`].
#[cfg(feature = "tokio-codec")]
#[derive(Debug, Clone, Copy)]
pub struct IsoCodec {
    /// Splits the stream into messages.
    pub framer: IsoFramer,
    /// Lays out each message.
    pub profile: &'static Profile,
}

#[cfg(feature = "tokio-codec")]
impl tokio_util::codec::Decoder for IsoCodec {
    type Item = IsoMessage;
    type Error = IsoError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<IsoMessage>, IsoError> {
        match self.framer.decode(src)? {
            Some(msg) => IsoMessage::decode(self.profile, msg).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(feature = "tokio-codec")]
impl tokio_util::codec::Encoder<&IsoMessage> for IsoCodec {
    type Error = IsoError;

    fn encode(&mut self, item: &IsoMessage, dst: &mut BytesMut) -> Result<(), IsoError> {
        // Encode behind a placeholder header, then fill it in: one pass, no copy of the body.
        let header_bytes = self.framer.header.bytes();
        let start = dst.len();
        dst.put_bytes(0, header_bytes);
        let encoded = item.encode(self.profile, dst);
        let length = dst.len() - start - header_bytes;
        if let Err(error) = encoded.and_then(|()| self.framer.check(length)) {
            dst.truncate(start);
            return Err(error);
        }
        let mut header = BytesMut::with_capacity(header_bytes);
        self.framer.header.write(length, &mut header);
        if let Some(slot) = dst.get_mut(start..start + header_bytes) {
            slot.copy_from_slice(&header);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_round_trip() {
        for header in [
            LengthHeader::Binary2,
            LengthHeader::Ascii4,
            LengthHeader::Bcd2,
        ] {
            let framer = IsoFramer::new(header, 4096);
            let mut buf = BytesMut::new();
            framer.encode(b"0800hello", &mut buf).unwrap();
            framer.encode(b"", &mut buf).unwrap();
            let mut decoder = framer;
            assert_eq!(
                decoder.decode(&mut buf).unwrap().unwrap(),
                &b"0800hello"[..]
            );
            assert_eq!(decoder.decode(&mut buf).unwrap().unwrap(), &b""[..]);
            assert_eq!(decoder.decode(&mut buf).unwrap(), None);
        }
    }

    #[test]
    fn header_bytes_on_the_wire() {
        let mut buf = BytesMut::new();
        IsoFramer::new(LengthHeader::Ascii4, 9999)
            .encode(&[0; 123], &mut buf)
            .unwrap();
        assert_eq!(&buf[..4], b"0123");
        buf.clear();
        IsoFramer::new(LengthHeader::Bcd2, 9999)
            .encode(&[0; 1234], &mut buf)
            .unwrap();
        assert_eq!(&buf[..2], &[0x12, 0x34]);
        buf.clear();
        IsoFramer::new(LengthHeader::Binary2, 9999)
            .encode(&[0; 300], &mut buf)
            .unwrap();
        assert_eq!(&buf[..2], &[0x01, 0x2c]);
    }

    #[test]
    fn oversize_and_bad_headers() {
        let mut framer = IsoFramer::new(LengthHeader::Binary2, 100);
        let mut buf = BytesMut::from(&[0xff, 0xff][..]);
        assert!(matches!(
            framer.decode(&mut buf),
            Err(IsoError::MessageTooLarge {
                length: 65535,
                max: 100
            })
        ));
        assert!(buf.capacity() < 1000, "reserved before checking the limit");
        let mut framer = IsoFramer::new(LengthHeader::Ascii4, 100);
        assert_eq!(
            framer.decode(&mut BytesMut::from(&b"00x1"[..])),
            Err(IsoError::InvalidLengthHeader)
        );
        let mut framer = IsoFramer::new(LengthHeader::Bcd2, 100);
        assert_eq!(
            framer.decode(&mut BytesMut::from(&[0x0a, 0x00][..])),
            Err(IsoError::InvalidLengthHeader)
        );
        assert!(framer.encode(&[0; 101], &mut BytesMut::new()).is_err());
        assert_eq!(
            IsoFramer::new(LengthHeader::Ascii4, 1 << 20).max_message_bytes,
            9999
        );
    }

    #[test]
    fn no_header_takes_everything() {
        let mut framer = IsoFramer::new(LengthHeader::None, 10);
        assert_eq!(framer.decode(&mut BytesMut::new()).unwrap(), None);
        let mut buf = BytesMut::from(&b"0800abc"[..]);
        assert_eq!(framer.decode(&mut buf).unwrap().unwrap(), &b"0800abc"[..]);
        assert!(buf.is_empty());
        assert!(framer.decode(&mut BytesMut::from(&[0u8; 11][..])).is_err());
    }
}
