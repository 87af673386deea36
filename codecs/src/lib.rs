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
//! A typical AUTHORIZE (card with CVV) is 124 bytes: the 24-byte header and nine fields; its approved
//! answer ~195 bytes. Per frame each way the codec computes a CRC-32C over header and body with
//! the SSE4.2 instruction, a chain of 8-byte steps at 3 cycles each (~20 ns for 124 bytes; a small
//! frame is copied to an aligned stack buffer first, which beats two unaligned passes). Typed
//! decoding adds one scan of the field headers and one atomic reference-count increment (and, on
//! drop, decrement) per text field kept, ~20 cycles each: the bulk of the ~150 ns a message takes.
//! Measured (`benches/benches/frame.rs`, one 2.4 GHz EPYC vCPU shared with other builds, so
//! pessimistic): frame decode + encode 8.5 million/s (124 B); typed decode + encode 2.9 million/s;
//! request in, answer out 1.8 million/s. A 1 Gbit/s link carries at most ~900 000 such requests a
//! second, so one core of codec keeps up with a saturated link.

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
