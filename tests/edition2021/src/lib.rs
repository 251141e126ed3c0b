//! Compiles the SDK's generated and derived code in an older edition than the workspace's.
//!
//! `include!` and derive output are compiled in the edition of the crate that uses them, so
//! product crates on edition 2021 (and 2018: `tests/edition2018` builds these same files)
//! need output free of 2024-only syntax. [`generated`] holds the bindings of every model in
//! `models/`, generated in build.rs; [`derived`] holds hand-written models through every
//! derive.

/// The bindings `x_codegen::Builder` generates for each model in `models/`.
pub mod generated {
    include!(concat!(env!("OUT_DIR"), "/models.rs"));
}

pub mod derived;

#[cfg(test)]
mod every_model;
#[cfg(test)]
mod tests;
