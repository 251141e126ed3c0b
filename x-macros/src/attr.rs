//! `#[thing(...)]` attribute parsing: every key with its span, duplicates and unknown keys
//! reported, and all errors collected in a [`Ctxt`] rather than stopping at the first.

use std::cell::RefCell;

use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::meta::ParseNestedMeta;
use syn::spanned::Spanned as _;
use syn::{Attribute, LitStr, Token};
use x_codegen::ir::{
    Access, ByteOrder, CallType, Diagnostic, EventKind, HexMode, HexType, Loc, RustType, Spelled,
};
use x_codegen::rust::Sources;

/// Collects errors across a whole derive, serde-style, and keeps the derive's side table of
/// spans and type tokens that the plain-data IR refers to by [`Loc`] keys.
#[derive(Default)]
pub struct Ctxt {
    errors: RefCell<Vec<syn::Error>>,
    sources: RefCell<Sources>,
}

impl Ctxt {
    /// The key an IR item carries for `span`.
    pub fn locate(&self, span: Span) -> Loc {
        self.sources.borrow_mut().locate(span)
    }

    /// The plain IR value for a Rust type's tokens, which stay in the side table.
    pub fn rust_type(&self, tokens: TokenStream, span: Span) -> RustType {
        self.sources.borrow_mut().rust_type(tokens, span)
    }

    /// The span `loc` keys.
    pub fn span(&self, loc: Loc) -> Span {
        self.sources.borrow().span(loc)
    }

    /// The original tokens of a Rust type of the IR.
    pub fn type_tokens(&self, ty: &RustType) -> TokenStream {
        self.sources.borrow().tokens(ty)
    }

    /// A copy of the side table, for the emitter.
    pub fn sources(&self) -> Sources {
        self.sources.borrow().clone()
    }

    /// Records a validation diagnostic at the span its location key names.
    pub fn diagnostic(&self, d: Diagnostic) {
        self.error(self.span(d.loc), d.message);
    }

    /// Records an error at `span`.
    pub fn error(&self, span: Span, message: impl std::fmt::Display) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new(span, message));
    }

    /// Records an error covering all of `tokens` (first to last token).
    pub fn error_spanned(&self, tokens: impl quote::ToTokens, message: impl std::fmt::Display) {
        self.errors
            .borrow_mut()
            .push(syn::Error::new_spanned(tokens, message));
    }

    /// Records a parse error.
    pub fn syn_error(&self, error: syn::Error) {
        self.errors.borrow_mut().push(error);
    }

    /// Whether any error was recorded.
    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    /// The recorded errors, combined into one.
    pub fn finish(self) -> Result<(), syn::Error> {
        let mut errors = self.errors.into_inner().into_iter();
        let Some(mut first) = errors.next() else {
            return Ok(());
        };
        for e in errors {
            first.combine(e);
        }
        Err(first)
    }
}

/// A value with the span of the attribute that gave it.
#[derive(Debug, Clone)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it was written.
    pub span: Span,
}

/// Every key `#[thing(...)]` accepts anywhere; each derive says which apply to it.
#[derive(Default)]
pub struct Attrs {
    pub identifier: Option<Spanned<String>>,
    pub name: Option<Spanned<String>>,
    pub desc: Option<Spanned<String>>,
    pub access: Option<Spanned<Access>>,
    pub required: Option<Spanned<bool>>,
    pub min: Option<Spanned<f64>>,
    pub max: Option<Spanned<f64>>,
    pub step: Option<Spanned<f64>>,
    pub unit: Option<Spanned<String>>,
    pub unit_name: Option<Spanned<String>>,
    pub length: Option<Spanned<u32>>,
    pub size: Option<Spanned<u32>>,
    pub kind: Option<Spanned<EventKind>>,
    pub call: Option<Spanned<CallType>>,
    pub output: Option<Spanned<syn::Type>>,
    pub key: Option<Spanned<i64>>,
    pub label: Option<Spanned<String>>,
    pub model: Option<Spanned<String>>,
    pub krate: Option<Spanned<syn::Path>>,
    pub hex: Option<Spanned<HexAttrs>>,
}

/// The keys of `hex(...)`.
#[derive(Default)]
pub struct HexAttrs {
    pub mode: Option<Spanned<HexMode>>,
    pub byte_order: Option<Spanned<ByteOrder>>,
    pub id: Option<Spanned<u32>>,
    pub ty: Option<Spanned<HexType>>,
    pub scale: Option<Spanned<f64>>,
    pub offset: Option<Spanned<f64>>,
}

/// Where an attribute sits, which decides the keys it accepts.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On a `ThingModel` struct.
    ModelContainer,
    /// On a `ThingModel` field (a property).
    Property,
    /// On a `ThingEvent` struct.
    EventContainer,
    /// On a `ThingServices` enum.
    ServicesContainer,
    /// On a `ThingServices` variant (a service).
    Service,
    /// On a field of an event, a service input, or a struct.
    Param,
    /// On a `ThingStruct` struct or `ThingEnum` enum.
    TypeContainer,
    /// On a `ThingEnum` variant.
    EnumVariant,
}

const SPEC_KEYS: &[&str] = &[
    "identifier",
    "name",
    "desc",
    "min",
    "max",
    "step",
    "unit",
    "unit_name",
    "length",
    "size",
];

impl Place {
    /// The keys `hex(...)` takes here.
    fn hex_keys(self) -> &'static [&'static str] {
        match self {
            Place::ModelContainer => &["mode", "byte_order"],
            Place::Property => &["id", "type", "scale", "offset"],
            Place::Param => &["type", "scale", "offset"],
            Place::EventContainer => &["id", "byte_order"],
            Place::ServicesContainer => &["byte_order"],
            Place::Service => &["id"],
            Place::TypeContainer | Place::EnumVariant => &[],
        }
    }

    fn keys(self) -> Vec<&'static str> {
        let mut keys: Vec<&str> = match self {
            Place::ModelContainer => vec!["model", "crate"],
            Place::Property => [SPEC_KEYS, &["access", "required", "rename"]].concat(),
            Place::EventContainer => vec!["identifier", "name", "desc", "kind", "model", "crate"],
            Place::ServicesContainer => vec!["model", "crate"],
            Place::Service => vec!["identifier", "name", "desc", "call", "output"],
            Place::Param => [SPEC_KEYS, &["rename"]].concat(),
            Place::TypeContainer => vec!["crate"],
            Place::EnumVariant => vec!["key", "label"],
        };
        if !self.hex_keys().is_empty() {
            keys.push("hex");
        }
        keys.sort_unstable();
        keys
    }
}

/// Parses every `#[thing(...)]` among `attrs` for an item at `place`.
pub fn parse(cx: &Ctxt, attrs: &[Attribute], place: Place) -> Attrs {
    let mut out = Attrs::default();
    for attr in attrs.iter().filter(|a| a.path().is_ident("thing")) {
        if let Err(e) = attr.parse_nested_meta(|meta| parse_key(cx, &meta, place, &mut out)) {
            cx.syn_error(e);
        }
    }
    out
}

/// Reads one `key` or `key = value` of a `#[thing(..)]` into `out`: an error for a key not
/// allowed at `place`, or given twice.
fn parse_key(cx: &Ctxt, meta: &ParseNestedMeta, place: Place, out: &mut Attrs) -> syn::Result<()> {
    let key = meta
        .path
        .get_ident()
        .map(ToString::to_string)
        .unwrap_or_else(|| meta.path.to_token_stream().to_string());
    let allowed = place.keys();
    let canonical = if key == "rename" {
        "identifier"
    } else {
        key.as_str()
    };
    if !allowed.contains(&key.as_str()) {
        return refuse_key(cx, meta, &key, &allowed);
    }
    let span = meta.path.span();
    let dup = |present: bool| duplicate(cx, span, canonical, present);
    let string_slot = match canonical {
        "identifier" => Some(&mut out.identifier),
        "name" => Some(&mut out.name),
        "desc" => Some(&mut out.desc),
        "label" => Some(&mut out.label),
        "unit" => Some(&mut out.unit),
        "unit_name" => Some(&mut out.unit_name),
        "model" => Some(&mut out.model),
        _ => None,
    };
    if let Some(slot) = string_slot {
        dup(slot.is_some());
        *slot = Some(string(meta, span)?);
        return Ok(());
    }
    match canonical {
        "access" => {
            dup(out.access.is_some());
            let s = string(meta, span)?;
            out.access = choice(cx, &s, "access");
        }
        "kind" => {
            dup(out.kind.is_some());
            let s = string(meta, span)?;
            out.kind = choice(cx, &s, "kind");
        }
        "call" => {
            dup(out.call.is_some());
            let s = string(meta, span)?;
            out.call = choice(cx, &s, "call");
        }
        "required" => {
            dup(out.required.is_some());
            let value = if meta.input.peek(Token![=]) {
                meta.value()?.parse::<syn::LitBool>()?.value
            } else {
                true
            };
            out.required = Some(Spanned { value, span });
        }
        "min" | "max" | "step" | "length" | "size" | "key" => {
            parse_number_key(cx, meta, canonical, span, out)?;
        }
        "hex" => {
            dup(out.hex.is_some());
            let mut hex = HexAttrs::default();
            if meta.input.peek(syn::token::Paren) {
                meta.parse_nested_meta(|inner| parse_hex_key(cx, &inner, place, &mut hex))?;
            }
            out.hex = Some(Spanned { value: hex, span });
        }
        "output" => {
            dup(out.output.is_some());
            let ty: syn::Type = meta.value()?.parse()?;
            out.output = Some(Spanned { value: ty, span });
        }
        "crate" => {
            dup(out.krate.is_some());
            let s: LitStr = meta.value()?.parse()?;
            match s.parse::<syn::Path>() {
                Ok(p) => out.krate = Some(Spanned { value: p, span }),
                Err(e) => cx.syn_error(e),
            }
        }
        _ => {}
    }
    Ok(())
}

/// An error at `span` when `key` is `present` already (given twice).
fn duplicate(cx: &Ctxt, span: Span, key: &str, present: bool) {
    if present {
        cx.error(span, format!("duplicate thing attribute `{key}`"));
    }
}

/// A key not allowed at this place: an error naming the keys that are, its value skipped so
/// that parsing goes on to the next key.
fn refuse_key(cx: &Ctxt, meta: &ParseNestedMeta, key: &str, allowed: &[&str]) -> syn::Result<()> {
    if meta.input.peek(Token![=]) {
        let _: proc_macro2::TokenStream = meta.value()?.parse()?;
    } else if meta.input.peek(syn::token::Paren) {
        let _ = meta.parse_nested_meta(|_| Ok(()));
    }
    let hint = if is_known(key) {
        "is not allowed here"
    } else {
        "is not a thing attribute"
    };
    cx.error(
        meta.path.span(),
        format!("`{key}` {hint}; expected one of: {}", allowed.join(", ")),
    );
    Ok(())
}

/// Reads a numeric key (`min`, `max`, `step`, `length`, `size` or `key`) into `out`.
fn parse_number_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    key: &str,
    span: Span,
    out: &mut Attrs,
) -> syn::Result<()> {
    let dup = |present: bool| duplicate(cx, span, key, present);
    match key {
        "min" | "max" | "step" => {
            let n = number(meta, span)?;
            let slot = match key {
                "min" => &mut out.min,
                "max" => &mut out.max,
                _ => &mut out.step,
            };
            dup(slot.is_some());
            *slot = Some(n);
        }
        "length" | "size" => {
            let n = number(meta, span)?;
            if n.value.fract() != 0.0 || n.value < 1.0 || n.value > f64::from(u32::MAX) {
                cx.error(n.span, format!("`{key}` must be a positive whole number"));
                return Ok(());
            }
            let v = Spanned {
                value: n.value as u32,
                span,
            };
            let slot = if key == "length" {
                &mut out.length
            } else {
                &mut out.size
            };
            dup(slot.is_some());
            *slot = Some(v);
        }
        _ => {
            dup(out.key.is_some());
            let n = number(meta, span)?;
            if n.value.fract() != 0.0 || i32::try_from(n.value as i64).is_err() {
                cx.error(n.span, "`key` must be a 32-bit integer");
                return Ok(());
            }
            out.key = Some(Spanned {
                value: n.value as i64,
                span,
            });
        }
    }
    Ok(())
}

/// One of a fixed set of string values, read from its type's one spelling table (the
/// model reader's too), or an error listing them.
fn choice<T: Spelled>(cx: &Ctxt, s: &Spanned<String>, key: &str) -> Option<Spanned<T>> {
    match T::from_spelling(&s.value) {
        Some(value) => Some(Spanned {
            value,
            span: s.span,
        }),
        None => {
            cx.error(
                s.span,
                format!("{key} must be {}, not {:?}", T::choices(), s.value),
            );
            None
        }
    }
}

fn parse_hex_key(
    cx: &Ctxt,
    meta: &ParseNestedMeta,
    place: Place,
    hex: &mut HexAttrs,
) -> syn::Result<()> {
    let key = meta
        .path
        .get_ident()
        .map(|i| i.to_string().trim_start_matches("r#").to_owned())
        .unwrap_or_default();
    let span = meta.path.span();
    let allowed = place.hex_keys();
    if !allowed.contains(&key.as_str()) {
        if meta.input.peek(Token![=]) {
            let _: proc_macro2::TokenStream = meta.value()?.parse()?;
        }
        cx.error(
            span,
            format!(
                "`hex({key})` is not allowed here; expected one of: {}",
                allowed.join(", ")
            ),
        );
        return Ok(());
    }
    match key.as_str() {
        "mode" => {
            let s = string(meta, span)?;
            hex.mode = choice(cx, &s, "hex mode");
        }
        "byte_order" => {
            let s = string(meta, span)?;
            hex.byte_order = choice(cx, &s, "byte_order");
        }
        "id" => {
            let n = number(meta, span)?;
            if n.value.fract() != 0.0 || !(1.0..=255.0).contains(&n.value) {
                cx.error(span, "a hex id is 1..=255");
            } else {
                hex.id = Some(Spanned {
                    value: n.value as u32,
                    span,
                });
            }
        }
        "type" => {
            let s = string(meta, span)?;
            let t = s.value.as_str();
            match HexType::from_model_name(t) {
                Some(value) => hex.ty = Some(Spanned { value, span }),
                None => cx.error(
                    span,
                    format!("unknown hex type {t:?} (expected {})", HexType::choices()),
                ),
            }
        }
        "scale" => hex.scale = Some(number(meta, span)?),
        "offset" => hex.offset = Some(number(meta, span)?),
        _ => {}
    }
    Ok(())
}

fn is_known(key: &str) -> bool {
    [
        "identifier",
        "rename",
        "name",
        "desc",
        "access",
        "required",
        "min",
        "max",
        "step",
        "unit",
        "unit_name",
        "length",
        "size",
        "kind",
        "call",
        "output",
        "key",
        "label",
        "model",
        "crate",
    ]
    .contains(&key)
}

fn string(meta: &ParseNestedMeta, span: Span) -> syn::Result<Spanned<String>> {
    let s: LitStr = meta.value()?.parse()?;
    Ok(Spanned {
        value: s.value(),
        span,
    })
}

/// A number literal: `5`, `-40`, `0.5`, or a string holding one.
fn number(meta: &ParseNestedMeta, span: Span) -> syn::Result<Spanned<f64>> {
    let input = meta.value()?;
    let negative = input.parse::<Option<Token![-]>>()?.is_some();
    let lit: syn::Lit = input.parse()?;
    let value = match &lit {
        syn::Lit::Int(i) => i.base10_parse::<f64>()?,
        syn::Lit::Float(f) => f.base10_parse::<f64>()?,
        syn::Lit::Str(s) => s
            .value()
            .trim()
            .parse::<f64>()
            .map_err(|_| syn::Error::new(s.span(), "expected a number"))?,
        other => return Err(syn::Error::new(other.span(), "expected a number")),
    };
    Ok(Spanned {
        value: if negative { -value } else { value },
        span,
    })
}
