//! From the Rust item to x-codegen's IR: field types mapped to model data types, attribute
//! specs placed on them, identifiers checked. Every problem goes to the [`Ctxt`] with the
//! span of the field, type or attribute at fault.

use quote::ToTokens;
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Fields, FieldsNamed};
use x_codegen::ir::{Access, DataType, Field, HexField, Numeric};
use x_codegen::names;

use crate::attr::{self, Attrs, Ctxt, Place, Spanned};

/// A property field: the IR field, and the access and `required` given (if any).
pub struct PropertyField {
    pub field: Field,
    pub access: Option<Spanned<Access>>,
    pub required: bool,
}

/// The named fields of a struct, or an error saying the derive needs them.
pub fn named_fields<'a>(
    cx: &Ctxt,
    input: &'a DeriveInput,
    derive: &str,
) -> Option<&'a FieldsNamed> {
    if !input.generics.params.is_empty() {
        cx.error(
            input.generics.span(),
            format!("{derive} does not support generic types"),
        );
        return None;
    }
    match &input.data {
        Data::Struct(s) => match &s.fields {
            Fields::Named(named) => Some(named),
            Fields::Unit => {
                // A unit struct is an empty parameter list; only valid for params.
                None
            }
            Fields::Unnamed(_) => {
                cx.error(
                    input.ident.span(),
                    format!("{derive} derives only on structs with named fields"),
                );
                None
            }
        },
        _ => {
            cx.error(
                input.ident.span(),
                format!("{derive} derives only on structs with named fields"),
            );
            None
        }
    }
}

/// The property fields of a `ThingModel` struct.
pub fn properties(cx: &Ctxt, fields: &FieldsNamed) -> Vec<PropertyField> {
    fields
        .named
        .iter()
        .filter_map(|f| {
            let attrs = attr::parse(cx, &f.attrs, Place::Property);
            let field = field(cx, f, &attrs)?;
            Some(PropertyField {
                field,
                access: attrs.access,
                required: attrs.required.is_some_and(|r| r.value),
            })
        })
        .collect()
}

/// The parameter fields of an event, a service input list or a struct type.
pub fn params<'a>(cx: &Ctxt, fields: impl IntoIterator<Item = &'a syn::Field>) -> Vec<Field> {
    fields
        .into_iter()
        .filter_map(|f| {
            let attrs = attr::parse(cx, &f.attrs, Place::Param);
            field(cx, f, &attrs)
        })
        .collect()
}

/// One field of the IR from a Rust field and its attributes.
fn field(cx: &Ctxt, f: &syn::Field, attrs: &Attrs) -> Option<Field> {
    let ident = f.ident.as_ref()?;
    let rust_name = ident.to_string();
    let (identifier, id_span) = match &attrs.identifier {
        Some(id) => (id.value.clone(), id.span),
        None => (names::unraw(&rust_name).to_owned(), ident.span()),
    };
    if !valid_identifier(&identifier) {
        cx.error(
            id_span,
            format!(
                "{identifier:?} is not a valid thing-model identifier ({}); set one with #[thing(identifier = \"..\")]",
                names::IDENTIFIER_RULE
            ),
        );
    }
    let mut ty = map_type(cx, &f.ty)?;
    apply_specs(cx, &mut ty, attrs);
    Some(Field {
        name: attrs
            .name
            .as_ref()
            .map_or_else(|| identifier.clone(), |n| n.value.clone()),
        identifier,
        desc: attrs.desc.as_ref().map(|d| d.value.clone()),
        ty,
        rust_name,
        rust_type: Some(cx.rust_type(f.ty.to_token_stream(), f.ty.span())),
        path: format!("field `{ident}`"),
        loc: cx.locate(ident.span()),
        hex: hex_field(attrs),
    })
}

/// A field's `hex(...)` settings.
pub fn hex_field(attrs: &Attrs) -> HexField {
    let Some(h) = &attrs.hex else {
        return HexField::default();
    };
    let h = &h.value;
    HexField {
        id: h.id.as_ref().map(|s| s.value),
        ty: h.ty.as_ref().map(|s| s.value),
        scale: h.scale.as_ref().map(|s| s.value),
        offset: h.offset.as_ref().map(|s| s.value),
    }
}

/// The thing model's identifier rule: `x_protocol::check_identifier`, as for model files.
pub fn valid_identifier(id: &str) -> bool {
    names::check_identifier(id).is_ok()
}

/// The model data type a Rust field type stands for.
fn map_type(cx: &Ctxt, ty: &syn::Type) -> Option<DataType> {
    let unsupported = |why: &str| {
        cx.error_spanned(
            ty,
            format!(
                "unsupported field type `{}`: {why}",
                ty.to_token_stream().to_string().replace(' ', "")
            ),
        );
        None
    };
    let path = match ty {
        syn::Type::Path(p) if p.qself.is_none() => &p.path,
        syn::Type::Group(g) => return map_type(cx, &g.elem),
        syn::Type::Paren(p) => return map_type(cx, &p.elem),
        _ => {
            return unsupported(
                "thing-model fields are i32, f32, f64, bool, String, Date, Vec<T>, or a ThingEnum/ThingStruct type",
            );
        }
    };
    let Some(last) = path.segments.last() else {
        return unsupported("empty path");
    };
    let name = last.ident.to_string();
    match name.as_str() {
        "i32" => Some(DataType::Int(Numeric::default())),
        "f32" => Some(DataType::Float(Numeric::default())),
        "f64" => Some(DataType::Double(Numeric::default())),
        "bool" => Some(DataType::Bool(None)),
        "String" => Some(DataType::Text(None)),
        "Date" => Some(DataType::Date),
        "Vec" => {
            let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
                return unsupported("Vec needs its item type");
            };
            let Some(syn::GenericArgument::Type(item)) = args.args.first() else {
                return unsupported("Vec needs its item type");
            };
            let item = map_type(cx, item)?;
            if matches!(item, DataType::Array { .. }) {
                return unsupported("arrays of arrays are not part of the thing model");
            }
            Some(DataType::Array {
                size: None,
                item: Box::new(item),
            })
        }
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" | "i8" | "i16" | "i64" | "i128"
        | "isize" => {
            unsupported("the thing model's int is i32; use i32 with min/max for the range")
        }
        "Option" => unsupported(
            "every property and parameter has a value; partial updates use the generated report type",
        ),
        "char" | "str" => unsupported("text fields are String"),
        "HashMap" | "BTreeMap" | "HashSet" | "BTreeSet" | "Box" | "Rc" | "Arc" => {
            unsupported("use a ThingStruct type for structured values")
        }
        _ => Some(DataType::External(
            cx.rust_type(ty.to_token_stream(), ty.span()),
        )),
    }
}

/// The type that numeric and length specs apply to: the item of an array, else the type.
fn innermost(ty: &mut DataType) -> &mut DataType {
    match ty {
        DataType::Array { item, .. } => innermost(item),
        other => other,
    }
}

fn kind_phrase(ty: &DataType) -> String {
    match ty {
        DataType::External(ty) => format!("`{}`", ty.display()),
        other => other.model_name().to_owned(),
    }
}

fn apply_specs(cx: &Ctxt, ty: &mut DataType, attrs: &Attrs) {
    let numeric_keys = [
        ("min", attrs.min.as_ref().map(|s| s.span)),
        ("max", attrs.max.as_ref().map(|s| s.span)),
        ("step", attrs.step.as_ref().map(|s| s.span)),
        ("unit", attrs.unit.as_ref().map(|s| s.span)),
        ("unit_name", attrs.unit_name.as_ref().map(|s| s.span)),
    ];
    let inner = innermost(ty);
    match inner {
        DataType::Int(n) | DataType::Float(n) | DataType::Double(n) => {
            n.min = attrs.min.as_ref().map(|s| s.value);
            n.max = attrs.max.as_ref().map(|s| s.value);
            n.step = attrs.step.as_ref().map(|s| s.value);
            n.unit = attrs.unit.as_ref().map(|s| s.value.clone());
            n.unit_name = attrs.unit_name.as_ref().map(|s| s.value.clone());
        }
        other => {
            for (key, span) in numeric_keys {
                if let Some(span) = span {
                    cx.error(
                        span,
                        format!(
                            "`{key}` applies only to int, float and double fields (i32, f32, f64, or Vecs of them), not {}",
                            kind_phrase(other)
                        ),
                    );
                }
            }
        }
    }
    if let Some(length) = &attrs.length {
        match innermost(ty) {
            DataType::Text(l) => *l = Some(length.value),
            other => cx.error(
                length.span,
                format!(
                    "`length` applies only to text fields (String, or Vecs of them), not {}",
                    kind_phrase(other)
                ),
            ),
        }
    }
    if let Some(size) = &attrs.size {
        match ty {
            DataType::Array { size: s, .. } => *s = Some(size.value),
            other => cx.error(
                size.span,
                format!(
                    "`size` applies only to array fields (Vec<T>), not {}",
                    kind_phrase(other)
                ),
            ),
        }
    }
}
