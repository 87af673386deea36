//! ISO 8583: the input as one message in every profile and as a stream behind every length header.
//! See `../checks/iso8583.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/iso8583.rs"]
mod iso8583;

fuzz_target!(|data: &[u8]| iso8583::check(data));
