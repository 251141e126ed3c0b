//! The Rust emitter: IR -> tokens. [`CodeGenerator::module`] writes a whole model file's
//! bindings (type definitions and trait implementations); the `*_impls` methods write only
//! the implementations and are what the derive macros call, so both ways in share one codec.
//!
//! Split by concern, as prost-build's `code_generator` is: [`CodeGenerator`] (here) carries
//! the crate path and the paths derived from it, and assembles a model file; `model` writes
//! a state type's report and set types and `ThingModel`; `events` and `services` their
//! traits; `types` data types, payload codecs and specs, which all of them share; `hex` the
//! HEX codec; `docs` the doc comments.
//!
//! The IR names Rust types by their text and derive locations by [`Loc`] keys; a derive
//! hands the emitter its [`Sources`] (the spans and type tokens behind those keys), so that
//! what it emits points at the user's code as before, while the IR stays plain data.

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;

use crate::ir::{Loc, Model, RustType};

mod docs;
mod events;
mod hex;
mod model;
mod services;
mod types;

pub use crate::doc::type_summary;
pub use docs::field_doc;

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
    /// The derive's spans and type tokens behind the IR's location keys (empty for model
    /// files).
    sources: Sources,
}

impl CodeGenerator {
    /// An emitter for `options`.
    pub fn new(options: &Options) -> Self {
        let krate = options.krate.clone();
        Self {
            model: quote!(#krate::model),
            hex: quote!(#krate::model::hex),
            krate,
            sources: Sources::default(),
        }
    }

    /// The same emitter reading a derive's side table: items with a [`Loc`] are emitted at
    /// its span, and [`RustType`]s with one as their original tokens.
    #[must_use]
    pub fn with_sources(mut self, sources: Sources) -> Self {
        self.sources = sources;
        self
    }

    /// The span of the item `loc` keys (the call site when there is none).
    fn span(&self, loc: Loc) -> Span {
        self.sources.span(loc)
    }

    /// The tokens of a Rust type named by the IR.
    fn rust_type(&self, ty: &RustType) -> TokenStream {
        self.sources.tokens(ty)
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

/// A derive's side table of source locations: the span of every item it put in the IR
/// under a [`Loc`] key, and the original tokens of the Rust types it named. The IR keeps
/// only the keys and type texts, so it stays plain data; the emitter maps them back here.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// Entry `n - 1` is what `Loc(n)` keys: a span, and the tokens of a type.
    entries: Vec<(Span, Option<TokenStream>)>,
}

impl Sources {
    /// Records a span: the key an IR item carries to be reported and emitted there.
    pub fn locate(&mut self, span: Span) -> Loc {
        self.entries.push((span, None));
        Loc(u32::try_from(self.entries.len()).unwrap_or(u32::MAX))
    }

    /// Records a type's tokens (spanned at `span`, for messages about the whole type): the
    /// plain [`RustType`] the IR carries for them.
    pub fn rust_type(&mut self, tokens: TokenStream, span: Span) -> RustType {
        let text = tokens.to_string();
        self.entries.push((span, Some(tokens)));
        RustType {
            text,
            loc: Loc(u32::try_from(self.entries.len()).unwrap_or(u32::MAX)),
        }
    }

    fn entry(&self, loc: Loc) -> Option<&(Span, Option<TokenStream>)> {
        let index = usize::try_from(loc.0).ok()?.checked_sub(1)?;
        self.entries.get(index)
    }

    /// The span `loc` keys; the call site for [`Loc::NONE`] or a key of another table.
    pub fn span(&self, loc: Loc) -> Span {
        self.entry(loc)
            .map_or_else(Span::call_site, |(span, _)| *span)
    }

    /// The tokens of `ty`: the recorded originals (with their spans) when this table has
    /// them, else its text parsed; a `compile_error!` naming the text if that does not lex.
    pub fn tokens(&self, ty: &RustType) -> TokenStream {
        if let Some((_, Some(tokens))) = self.entry(ty.loc) {
            return tokens.clone();
        }
        match ty.text.parse::<TokenStream>() {
            Ok(tokens) => tokens,
            Err(_) => {
                let message = format!("the IR names a Rust type that does not lex: {:?}", ty.text);
                quote!(::core::compile_error!(#message))
            }
        }
    }
}

/// An identifier token, raw (`r#type`) when the name says so.
pub fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}
