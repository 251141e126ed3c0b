//! `#[thing(model = "models/x.json")]`: compares a derived item with an exported model file.
//! Every mismatch is reported at the offending field; specs the Rust side leaves out are
//! inherited from the model, so the file stays the one source of truth. User enum and struct
//! types are compared by `const` assertions the compiler evaluates.

use std::path::Path;

use proc_macro2::{Literal, Span, TokenStream};
use quote::{quote, quote_spanned};
use x_codegen::Model;
use x_codegen::ir::{DataType, EnumType, Field, Numeric, StructType};

use crate::attr::{Ctxt, Spanned};

/// A model file read by a derive: the validated model, and the tokens that make the
/// compiler track the file.
pub struct Loaded {
    /// The file's model, validated.
    pub model: Model,
    /// `const _: &[u8] = include_bytes!("<absolute path>");`: the compiler records the file
    /// as an input of the crate, so editing it re-runs the derive (procedural macros have no
    /// stable way to declare the files they read).
    pub track: TokenStream,
}

/// Reads and validates the model file named by `path`: relative to the crate's manifest
/// directory, or else to the nearest ancestor directory that has it (so a workspace member
/// can name `models/x.json` at the workspace root).
pub fn load_model(cx: &Ctxt, path: &Spanned<String>) -> Option<Loaded> {
    let base = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let file = base
        .ancestors()
        .map(|dir| dir.join(&path.value))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| base.join(&path.value));
    let text = match std::fs::read_to_string(&file) {
        Ok(t) => t,
        Err(e) => {
            cx.error(
                path.span,
                format!("cannot read model file {:?}: {e}", path.value),
            );
            return None;
        }
    };
    match x_codegen::load(&text, "Model") {
        Ok(model) => Some(Loaded {
            model,
            track: track(&file),
        }),
        Err(diags) => {
            let list = diags.iter().map(|d| format!("\n  {d}")).collect::<String>();
            cx.error(
                path.span,
                format!("model file {:?} is invalid:{list}", path.value),
            );
            None
        }
    }
}

/// The `include_bytes!` of `file` by its absolute path (`include_bytes!` resolves relative
/// paths against the source file, not the manifest directory). Nothing for a path that is
/// not UTF-8, which a string literal cannot name.
fn track(file: &Path) -> TokenStream {
    let absolute = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    match absolute.to_str() {
        Some(p) => {
            let p = Literal::string(p);
            quote!(
                const _: &[u8] = ::core::include_bytes!(#p);
            )
        }
        None => TokenStream::new(),
    }
}

/// Compares derived fields with the model's, inheriting specs the derive leaves out.
/// `noun` says what the fields are ("property", "input", "output"), `owner` whose they are
/// (empty, or e.g. " of event `overheat`"). Returns `const` checks for user types.
#[allow(clippy::too_many_arguments)]
pub fn fields(
    cx: &Ctxt,
    derived: &mut [Field],
    model: &[Field],
    file: &str,
    owner_span: Span,
    noun: &str,
    owner: &str,
    krate: &TokenStream,
) -> TokenStream {
    let mut consts = TokenStream::new();
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    for d in derived.iter_mut() {
        match model.iter().find(|m| m.identifier == d.identifier) {
            None => {
                let known = model
                    .iter()
                    .map(|m| format!("`{}`", m.identifier))
                    .collect::<Vec<_>>()
                    .join(", ");
                cx.error(
                    cx.span(d.loc),
                    format!(
                        "`{}` is not {article} {noun}{owner} in {file} (it has {})",
                        d.identifier,
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known
                        }
                    ),
                );
            }
            Some(m) => field(cx, d, m, file, krate, &mut consts),
        }
    }
    for m in model {
        if !derived.iter().any(|d| d.identifier == m.identifier) {
            cx.error(
                owner_span,
                format!(
                    "{noun} `{}`{owner} in {file} has no field here; add a field `{}` of {}",
                    m.identifier,
                    x_codegen::names::field_name(&m.identifier),
                    suggestion(&m.ty)
                ),
            );
        }
    }
    consts
}

/// Compares a derived field with the model file's field of its identifier: its type
/// (user types get `const` checks in `consts`), HEX id, type, scale and offset, inheriting
/// what the derive leaves out (and the file's description and name).
fn field(
    cx: &Ctxt,
    d: &mut Field,
    m: &Field,
    file: &str,
    krate: &TokenStream,
    consts: &mut TokenStream,
) {
    let rust_ty = d
        .rust_type
        .as_ref()
        .and_then(|t| syn::parse2::<syn::Type>(cx.type_tokens(t)).ok());
    let id = d.identifier.clone();
    let c = Ctx {
        id: &id,
        file,
        span: cx.span(d.loc),
        krate,
    };
    compare(cx, &mut d.ty, &m.ty, rust_ty.as_ref(), &c, consts);
    inherit(cx, &mut d.hex.id, &m.hex.id, "hex id", &c);
    inherit(cx, &mut d.hex.ty, &m.hex.ty, "hex type", &c);
    inherit_f64(cx, &mut d.hex.scale, m.hex.scale, "hex scale", &c);
    inherit_f64(cx, &mut d.hex.offset, m.hex.offset, "hex offset", &c);
    if d.desc.is_none() {
        d.desc = m.desc.clone();
    }
    if d.name == d.identifier {
        d.name = m.name.clone();
    }
}

struct Ctx<'a> {
    id: &'a str,
    file: &'a str,
    span: Span,
    krate: &'a TokenStream,
}

fn compare(
    cx: &Ctxt,
    derived: &mut DataType,
    model: &DataType,
    rust_ty: Option<&syn::Type>,
    c: &Ctx,
    consts: &mut TokenStream,
) {
    let m = {
        let krate = c.krate;
        quote!(#krate::model)
    };
    match (derived, model) {
        (DataType::Int(d), DataType::Int(n))
        | (DataType::Float(d), DataType::Float(n))
        | (DataType::Double(d), DataType::Double(n)) => numeric(cx, d, n, c),
        (DataType::Bool(d), DataType::Bool(n)) => *d = n.clone(),
        (DataType::Text(d), DataType::Text(n)) => inherit(cx, d, n, "length", c),
        (DataType::Date, DataType::Date) => {}
        (DataType::Array { size: ds, item: di }, DataType::Array { size: ms, item: mi }) => {
            inherit(cx, ds, ms, "size", c);
            let item_ty = rust_ty.and_then(vec_item);
            compare(cx, di, mi, item_ty, c, consts);
        }
        (DataType::External(ty), DataType::Enum(e)) => {
            consts.extend(enum_check(&cx.type_tokens(ty), e, &m, c));
        }
        (DataType::External(ty), DataType::Struct(s)) => {
            consts.extend(struct_check(&cx.type_tokens(ty), s, &m, c));
        }
        (d, n) => {
            let here = match d {
                DataType::External(ty) => format!("`{}`", ty.display()),
                other => other.model_name().to_owned(),
            };
            cx.error(
                c.span,
                format!(
                    "`{}` is {} in {}, but this field is {here}; use {}",
                    c.id,
                    n.model_name(),
                    c.file,
                    suggestion(n)
                ),
            );
        }
    }
}

/// A `const` check that the user's enum type `ts` has the model's keys and labels.
fn enum_check(ts: &TokenStream, e: &EnumType, m: &TokenStream, c: &Ctx) -> TokenStream {
    let keys = e.variants.iter().map(|v| {
        let key = proc_macro2::Literal::i64_unsuffixed(v.key);
        let label = &v.label;
        quote!((#key, #label))
    });
    let msg = format!(
        "`{}`: the enum's keys differ from {} (expected {})",
        c.id,
        c.file,
        e.listing()
    );
    quote_spanned! {c.span=>
        const _: () = if !#m::check::variants_eq(
            <#ts as #m::ThingEnum>::VARIANTS,
            &[#(#keys),*],
        ) {
            ::core::panic!("{}", #msg)
        };
    }
}

/// A `const` check that the user's struct type `ts` has the model's fields and types.
fn struct_check(ts: &TokenStream, s: &StructType, m: &TokenStream, c: &Ctx) -> TokenStream {
    let fields = s.fields.iter().map(|f| {
        let id = &f.identifier;
        let kind = kind_tokens(&f.ty, m);
        quote!((#id, #kind))
    });
    let listing = s
        .fields
        .iter()
        .map(|f| format!("{}: {}", f.identifier, f.ty.model_name()))
        .collect::<Vec<_>>()
        .join(", ");
    let msg = format!(
        "`{}`: the struct's fields differ from {} (expected {listing})",
        c.id, c.file
    );
    quote_spanned! {c.span=>
        const _: () = if !#m::check::fields_eq(
            <#ts as #m::ThingStruct>::FIELDS,
            &[#(#fields),*],
        ) {
            ::core::panic!("{}", #msg)
        };
    }
}

fn numeric(cx: &Ctxt, d: &mut Numeric, n: &Numeric, c: &Ctx) {
    inherit_f64(cx, &mut d.min, n.min, "min", c);
    inherit_f64(cx, &mut d.max, n.max, "max", c);
    inherit_f64(cx, &mut d.step, n.step, "step", c);
    inherit(cx, &mut d.unit, &n.unit, "unit", c);
    inherit(cx, &mut d.unit_name, &n.unit_name, "unit_name", c);
}

fn inherit_f64(cx: &Ctxt, d: &mut Option<f64>, n: Option<f64>, key: &str, c: &Ctx) {
    match (*d, n) {
        (Some(a), Some(b)) if (a - b).abs() > 1e-12 * a.abs().max(1.0) => cx.error(
            c.span,
            format!("`{}`: `{key}` is {a} here but {b} in {}", c.id, c.file),
        ),
        (Some(a), None) => cx.error(
            c.span,
            format!(
                "`{}`: `{key}` is {a} here but {} declares none",
                c.id, c.file
            ),
        ),
        (None, b) => *d = b,
        _ => {}
    }
}

fn inherit<T: Clone + PartialEq + std::fmt::Debug>(
    cx: &Ctxt,
    d: &mut Option<T>,
    n: &Option<T>,
    key: &str,
    c: &Ctx,
) {
    match (d.as_ref(), n) {
        (Some(a), Some(b)) if a != b => cx.error(
            c.span,
            format!("`{}`: `{key}` is {a:?} here but {b:?} in {}", c.id, c.file),
        ),
        (Some(a), None) => cx.error(
            c.span,
            format!(
                "`{}`: `{key}` is {a:?} here but {} declares none",
                c.id, c.file
            ),
        ),
        (None, b) => *d = b.clone(),
        _ => {}
    }
}

fn vec_item(ty: &syn::Type) -> Option<&syn::Type> {
    let syn::Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(t) => Some(t),
        _ => None,
    }
}

/// The `ValueKind` of a model data type, as tokens.
pub fn kind_tokens(ty: &DataType, m: &TokenStream) -> TokenStream {
    match ty {
        DataType::Int(_) => quote!(#m::ValueKind::Int),
        DataType::Float(_) => quote!(#m::ValueKind::Float),
        DataType::Double(_) => quote!(#m::ValueKind::Double),
        DataType::Bool(_) => quote!(#m::ValueKind::Bool),
        DataType::Enum(_) => quote!(#m::ValueKind::Enum),
        DataType::Text(_) => quote!(#m::ValueKind::Text),
        DataType::Date => quote!(#m::ValueKind::Date),
        DataType::Struct(_) => quote!(#m::ValueKind::Struct),
        DataType::Array { .. } | DataType::External(_) => quote!(#m::ValueKind::Array),
    }
}

/// The Rust type a model data type takes in a derive, as advice.
fn suggestion(ty: &DataType) -> String {
    match ty {
        DataType::Int(_) => "type `i32`".into(),
        DataType::Float(_) => "type `f32`".into(),
        DataType::Double(_) => "type `f64`".into(),
        DataType::Bool(_) => "type `bool`".into(),
        DataType::Text(_) => "type `String`".into(),
        DataType::Date => "type `Date`".into(),
        DataType::Enum(e) => format!("a #[derive(ThingEnum)] type with keys {}", e.listing()),
        DataType::Struct(s) => format!(
            "a #[derive(ThingStruct)] type with fields {}",
            s.fields
                .iter()
                .map(|f| format!("{}: {}", f.identifier, f.ty.model_name()))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::Array { item, .. } => format!("`Vec<T>`, T being {}", suggestion(item)),
        DataType::External(ty) => format!("type `{}`", ty.text),
    }
}
