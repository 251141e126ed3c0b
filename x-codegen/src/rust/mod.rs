//! The Rust emitter: IR -> tokens. [`CodeGenerator::module`] writes a whole model file's
//! bindings (type definitions and trait implementations); the `*_impls` methods write only
//! the implementations and are what the derive macros call, so both ways in share one codec.
//!
//! Split by concern, as prost-build's `code_generator` is: [`CodeGenerator`] (here) carries
//! the crate path and the paths derived from it, and assembles a model file; `model` writes
//! a state type's report and set types and `ThingModel`; `events` and `services` their
//! traits; `types` data types, payload codecs and specs, which all of them share; `hex` the
//! HEX codec; `docs` the doc comments.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use crate::ir::Model;

mod docs;
mod events;
mod hex;
mod model;
mod services;
mod types;

pub use docs::{field_doc, type_summary};

/// Where the generated code finds the SDK: the path of a crate with a `model` module
/// (`::x_sdk` by default, `::x_protocol` works too).
#[derive(Debug, Clone)]
pub struct Options {
    /// The crate path, e.g. `::x_sdk`.
    pub krate: TokenStream,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            krate: quote!(::x_sdk),
        }
    }
}

/// The Rust emitter for one set of [`Options`]: every method writes tokens that name the
/// SDK through the options' crate path.
#[derive(Debug, Clone)]
pub struct CodeGenerator {
    /// The crate path, e.g. `::x_sdk`.
    krate: TokenStream,
    /// `#krate::model`: the traits and helpers generated code calls.
    model: TokenStream,
    /// `#krate::model::hex`: the HEX codec's.
    hex: TokenStream,
}

impl CodeGenerator {
    /// An emitter for `options`.
    pub fn new(options: &Options) -> Self {
        let krate = options.krate.clone();
        Self {
            model: quote!(#krate::model),
            hex: quote!(#krate::model::hex),
            krate,
        }
    }

    /// Every item of a model file's bindings: the state, report and set types, property
    /// enum and struct types, one type per event, the service enum, outputs and handler
    /// trait.
    pub fn module(&self, model: &Model) -> TokenStream {
        let mut items = self.state_items(model);
        for p in &model.properties {
            self.type_defs(&p.field.ty, &mut items);
        }
        for e in &model.events {
            items.extend(self.event_items(model, e));
        }
        if !model.services.is_empty() {
            items.extend(self.service_items(model));
        }
        items
    }
}

/// Every item of a model file's bindings, written with `opts`: see
/// [`CodeGenerator::module`].
pub fn module(model: &Model, opts: &Options) -> TokenStream {
    CodeGenerator::new(opts).module(model)
}

/// An identifier token, raw (`r#type`) when the name says so.
pub fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}
