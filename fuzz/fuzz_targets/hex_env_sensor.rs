//! Fuzz target `hex_env_sensor`: see `checks::hex_env_sensor` for what it feeds and what it asserts.
#![no_main]

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::hex_env_sensor(data));
