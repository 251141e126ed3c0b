//! Fuzz target `topic`: see `checks::topic` for what it feeds and what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::topic(data));
