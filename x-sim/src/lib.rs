//! The local X platform (`x-sim`): the platform's parameter generation tool (`x-sim creds`),
//! a payload crypt tool (`x-sim crypt`), the runner of HEX parsing scripts, and the
//! platform's registry and login rules. The broker and platform behaviour build on these.

pub mod access;
pub mod api;
pub mod broker;
pub mod cli;
pub mod console;
pub mod firmware;
pub mod link;
pub mod login;
pub mod mosquitto;
pub mod platform;
pub mod registry;
pub mod script;
pub mod sim;
pub mod store;
pub mod stream;
mod sync;
pub mod validate;
pub mod web;
