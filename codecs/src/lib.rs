//! PayMesh codecs: sans-IO encoders and decoders for the two wire protocols the switch speaks. They
//! do no I/O and read no clock: bytes in, values out, values in, bytes out. Nothing here panics on
//! a peer's bytes.
//!
//! # Layout
//!
//! The PayMesh inbound protocol (phones, carriers and VANs to PayMesh; specified in
//! `docs/PROTOCOL.md`):
//!
//! - [`frame`]: the 24-byte header, the CRC-32C, [`frame::decode_frame`] splitting frames off a
//!   read buffer without copying, [`frame::encode_frame`] and the begin/finish pair that lets a
//!   message be written straight into the output buffer.
//! - [`body`]: the tag-length-value fields of a body: tag numbers and their specs, a validating
//!   scan ([`body::Fields`]), a raw iterator and [`body::FieldWriter`].
//! - [`message`]: typed messages ([`message::Message`]): LOGIN, HEARTBEAT, LOGOUT, REJECT and
//!   (in `message_txn.rs`) the eight transaction requests and their answers.
//! - [`types`]: [`types::Money`], [`types::Currency`], [`types::Pan`] (masked when printed),
//!   [`types::Secret`] and [`types::ResultCode`].
//! - [`error`]: [`ProtocolError`], the one error of the protocol, naming problem and byte offset.
//! - `frame_codec` (feature `tokio-codec`, on by default): [`PaymeshCodec`] for
//!   `tokio_util::codec::Framed`.
//!
//! ISO 8583 for upstream links (banks, card companies, VANs):
//!
//! - [`iso8583`]: profiles, messages, length-header framing (see its own module docs).
//!
//! # Napkin math (PayMesh frames)
//!
//! A typical AUTHORIZE is about 130 bytes: a 24-byte header and ten fields. Decoding it is two
//! CRC-32C passes with the SSE4.2 instruction (~10 ns), one scan of ten field headers, and one
//! reference-count increment per text field kept; encoding its answer writes ~200 bytes in place.
//! One core therefore handles millions of frames a second, while a 1 Gbit/s link carries at most
//! ~900 000 such requests a second: the codec is not where the switch's time goes.

pub mod body;
pub mod error;
pub mod frame;
#[cfg(feature = "tokio-codec")]
mod frame_codec;
pub mod message;
mod message_txn;
pub mod types;

pub mod iso8583;

pub use error::ProtocolError;
#[cfg(feature = "tokio-codec")]
pub use frame_codec::PaymeshCodec;
