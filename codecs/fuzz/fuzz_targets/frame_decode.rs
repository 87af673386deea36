//! PayMesh frames: the input as a stream of frames and as a type byte and a body. See
//! `../checks/frame.rs` for what is checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/frame.rs"]
mod frame;

fuzz_target!(|data: &[u8]| frame::check(data));
