//! Derive macros for X platform thing models: a thin shell over x-codegen. Each derive reads
//! the Rust item and its `#[thing(...)]` attributes into x-codegen's IR (collecting every
//! error with its span), validates it with the same rules as model files, optionally checks
//! it against an exported model file, and expands through the same emitter as generated code.
//!
//! The layout follows serde_derive: `attr` (attribute parsing), `ast` (Rust item -> IR),
//! `check` (comparison with a model file), `expand` (emission).

mod ast;
mod attr;
mod check;
mod expand;

use proc_macro::TokenStream;

/// Derives `ThingModel` for a property state struct, and generates its `{Name}Report` and
/// `{Name}Set` types.
///
/// Field attributes: `identifier = ".."`, `name = ".."`, `desc = ".."`,
/// `access = "r" | "rw"`, `min`, `max`, `step`, `unit = ".."`, `unit_name = ".."`,
/// `length` (text), `size` (arrays), `required`. Container attributes:
/// `model = "models/x.json"` (check against an exported model, inheriting its specs) and
/// `crate = "::x_sdk"`.
#[proc_macro_derive(ThingModel, attributes(thing))]
pub fn derive_thing_model(input: TokenStream) -> TokenStream {
    expand::model(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}

/// Derives `ThingEvent` (and the payload traits) for an event struct whose fields are the
/// event's outputs. Container attributes: `identifier`, `name`, `desc`,
/// `kind = "info" | "alert" | "error"`, `model`, `crate`.
#[proc_macro_derive(ThingEvent, attributes(thing))]
pub fn derive_thing_event(input: TokenStream) -> TokenStream {
    expand::event(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}

/// Derives `ThingServices` for an enum with one struct-like variant per service (its fields
/// are the inputs), generates the `{Enum}Handler` trait and `dispatch`. Variant attributes:
/// `identifier`, `name`, `desc`, `call = "sync" | "async"`, `output = Type`.
#[proc_macro_derive(ThingServices, attributes(thing))]
pub fn derive_thing_services(input: TokenStream) -> TokenStream {
    expand::services(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}

/// Derives `ThingStruct` (and `ThingValue` and the payload traits) for a struct type of a
/// model, or a service's outputs.
#[proc_macro_derive(ThingStruct, attributes(thing))]
pub fn derive_thing_struct(input: TokenStream) -> TokenStream {
    expand::structure(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}

/// Derives `ThingEnum` (and `ThingValue`, `key`, `label`, `from_key`) for a fieldless enum.
/// Variant attributes: `key = N` (default: the discriminant, else the position) and
/// `label = ".."` (default: the variant name).
#[proc_macro_derive(ThingEnum, attributes(thing))]
pub fn derive_thing_enum(input: TokenStream) -> TokenStream {
    expand::enumeration(syn::parse_macro_input!(input as syn::DeriveInput)).into()
}
