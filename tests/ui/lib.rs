//! Nothing: this package exists for its `ui` test (see `ui.rs` and Cargo.toml's description).
