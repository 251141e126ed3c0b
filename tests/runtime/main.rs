//! The device runtime against real brokers (x-sim's embedded one and Mosquitto), one module
//! per subject, linked into one test binary: a binary per file linked the whole runtime and
//! simulator each time, which cost CI most of its disk.
//!
//! Run one subject with a filter: `cargo test --test runtime outbox::`.

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
#[rustfmt::skip]
#[path = "../golden/smart_plug.rs"]
#[allow(dead_code)]
pub mod plug;

/// The meter's bindings, as x-codegen generates them from models/meter-hex.json.
#[rustfmt::skip]
#[path = "../golden/meter_hex.rs"]
#[allow(dead_code)]
pub mod meter;

mod support;

mod crash;
mod delivery;
mod device;
mod hex;
mod hostile;
mod login;
mod midstream;
mod mosquitto;
mod ota;
mod outbox;
mod secrets;
