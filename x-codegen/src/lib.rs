//! The thing-model compiler: exported thing-model JSON -> validated model IR -> Rust code and
//! the HEX parsing script. Filled by the thing-model issue; this crate is its home.
