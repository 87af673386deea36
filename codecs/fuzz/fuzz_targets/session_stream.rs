//! The session's login and request path: a peer's byte stream, cut into several reads, through
//! `decode_frame` with the session's max body, `Message::decode` and the session's decisions up to
//! the hand-over to a shard. See `../checks/session.rs` for the input layout and the invariants.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/session.rs"]
mod session;

fuzz_target!(|data: &[u8]| session::check(data));
