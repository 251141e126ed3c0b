//! The X platform device SDK: one dependency for product teams.
//!
//! - [`protocol`]: identities, credentials, crypto, frames and topics of the MQTT access
//!   protocol v2.0 (the `x-protocol` crate);
//! - `runtime`: the tokio + rumqttc device runtime (the `x-runtime` crate);
//! - the thing-model derive macros (the `x-macros` crate).

pub use x_protocol as protocol;
pub use x_runtime as runtime;

/// The README's Rust examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
