//! x-sim's integration tests, one module per subject, linked into one test binary: each test
//! file used to be a binary of its own (some 50 MB each, linking the whole simulator), which
//! cost CI most of its disk and a link per file.
//!
//! Run one subject with a filter: `cargo test -p x-sim --test it store::`.

mod common;

mod broker;
mod cli;
mod commands;
mod console;
mod download_faults;
mod firmware;
mod group_commit;
mod hex_products;
mod http_api;
mod login;
mod mosquitto;
mod mqtt_rules;
mod ota_progress;
mod platform;
mod publish_then_disconnect;
mod restart;
mod serve;
mod slow_script;
mod store;
mod stream;
mod validate;
mod violations;
