//! Fuzz target `hex_meter`: see `checks::hex_meter` for what it feeds and what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hex_meter(data));
