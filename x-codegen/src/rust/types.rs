//! Data types and the code every binding shares: the Rust type of a field, the enum and
//! struct types a model introduces with their `ThingValue` implementations, the payload
//! codecs of parameter objects, and `Spec` literals.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{ToTokens, format_ident, quote, quote_spanned};

use super::docs::field_doc;
use super::{CodeGenerator, ident};
use crate::ir::{DataType, EnumType, Field, StructType};
use crate::names;

impl CodeGenerator {
    /// `ToPayload` and `FromPayload` for a struct whose fields are all required: an event's
    /// or a service's outputs, or a struct type. An unknown key is rejected as an unknown
    /// `what` ("output"), the word x-sim's checks use for the same payload.
    pub fn params_impls(&self, name: &Ident, fields: &[Field], what: &str) -> TokenStream {
        let m = &self.model;
        let to = self.to_params_body(fields, |fname| quote!(&self.#fname));
        let decode = self.decode_params_body(fields, quote!(Self), what);
        quote! {
            impl #m::ToPayload for #name {
                fn to_payload(&self) -> #m::json::Map<::std::string::String, #m::json::Value> {
                    #to
                }
            }

            impl #m::FromPayload for #name {
                fn from_payload(
                    payload: &#m::json::Map<::std::string::String, #m::json::Value>,
                ) -> ::core::result::Result<Self, #m::Rejections> {
                    #decode
                }
            }
        }
    }

    /// `ThingValue`, `ThingStruct` and the payload traits for a struct type (also service
    /// outputs).
    pub fn struct_impls(&self, name: &Ident, fields: &[Field]) -> TokenStream {
        let m = &self.model;
        let hex = self.struct_hex_impls(name, fields);
        // A struct's own payload is only ever a service's outputs: inside a value, unknown
        // keys are reported as unknown fields.
        let params = self.params_impls(name, fields, "output");
        let field_kinds = fields.iter().map(|f| {
            let id = &f.identifier;
            let ty = self.field_type(f);
            quote_spanned!(self.span(f.loc)=> (#id, <#ty as #m::ThingValue>::KIND),)
        });
        quote! {
            #params

            impl #m::ThingValue for #name {
                const KIND: #m::ValueKind = #m::ValueKind::Struct;

                fn to_json(&self) -> #m::json::Value {
                    #m::json::Value::Object(#m::ToPayload::to_payload(self))
                }

                fn from_json(value: &#m::json::Value) -> ::core::result::Result<Self, #m::ValueError> {
                    match value {
                        #m::json::Value::Object(map) => <Self as #m::FromPayload>::from_payload(map)
                            .map_err(#m::Rejections::into_value_error),
                        other => ::core::result::Result::Err(#m::ValueError::type_mismatch("an object", other)),
                    }
                }
            }

            impl #m::ThingStruct for #name {
                const FIELDS: &'static [(&'static str, #m::ValueKind)] = &[#(#field_kinds)*];
            }

            #hex
        }
    }

    /// `key`, `label`, `from_key`, `ThingValue` and `ThingEnum` for an enum type.
    pub fn enum_impls(&self, name: &Ident, e: &EnumType) -> TokenStream {
        let m = &self.model;
        let hex = self.enum_hex_impls(name);
        let inherent = enum_inherent(name, e);
        let table = e.variants.iter().map(|v| {
            let key = Literal::i64_unsuffixed(v.key);
            let label = &v.label;
            quote!((#key, #label),)
        });
        quote! {
            #inherent

            impl #m::ThingValue for #name {
                const KIND: #m::ValueKind = #m::ValueKind::Enum;

                fn to_json(&self) -> #m::json::Value {
                    #m::json::Value::from(self.key())
                }

                fn from_json(value: &#m::json::Value) -> ::core::result::Result<Self, #m::ValueError> {
                    let key = #m::decode_enum_key(value)?;
                    Self::from_key(key).ok_or_else(|| {
                        #m::unknown_enum_key(key, <Self as #m::ThingEnum>::VARIANTS)
                    })
                }
            }

            impl #m::ThingEnum for #name {
                const VARIANTS: &'static [(i64, &'static str)] = &[#(#table)*];
            }

            #hex
        }
    }

    /// Builds a payload map from fields; `access` gives the expression for a field's value.
    pub(super) fn to_params_body(
        &self,
        fields: &[Field],
        access: impl Fn(&Ident) -> TokenStream,
    ) -> TokenStream {
        let m = &self.model;
        let inserts = fields.iter().map(|f| {
            let fname = ident(&f.rust_name);
            let id = &f.identifier;
            let value = access(&fname);
            quote_spanned!(self.span(f.loc)=> map.insert(#id.into(), #m::ThingValue::to_json(#value));)
        });
        let mutability = if fields.is_empty() {
            quote!()
        } else {
            quote!(mut)
        };
        quote! {
            let #mutability map = #m::json::Map::new();
            #(#inserts)*
            map
        }
    }

    /// Decodes every field of a parameter object (each required, unknown keys rejected as an
    /// unknown `what`) and builds `construct { fields }` when all are good. Expects `payload`
    /// in scope.
    pub(super) fn decode_params_body(
        &self,
        fields: &[Field],
        construct: TokenStream,
        what: &str,
    ) -> TokenStream {
        let m = &self.model;
        if fields.is_empty() {
            return quote! {
                let mut rejections = #m::Rejections::default();
                for key in payload.keys() {
                    rejections.push(key.as_str(), #m::RejectionReason::Unknown(#what));
                }
                rejections.into_result(|| #construct {})
            };
        }
        let vars: Vec<Ident> = fields
            .iter()
            .map(|f| format_ident!("__{}", names::unraw(&f.rust_name)))
            .collect();
        let fnames: Vec<Ident> = fields.iter().map(|f| ident(&f.rust_name)).collect();
        let ids: Vec<&str> = fields.iter().map(|f| f.identifier.as_str()).collect();
        let decls = fields.iter().zip(&vars).map(|(f, var)| {
            let ty = self.field_type(f);
            quote!(let mut #var: ::core::option::Option<#ty> = ::core::option::Option::None;)
        });
        let arms = fields.iter().zip(&vars).map(|(f, var)| {
            let id = &f.identifier;
            let decode = self.decode_expr(f, quote!(value));
            quote!(#id => #var = rejections.take(#id, #decode),)
        });
        quote! {
            let mut rejections = #m::Rejections::default();
            #(#decls)*
            for (key, value) in payload {
                match key.as_str() {
                    #(#arms)*
                    other => rejections.push(other, #m::RejectionReason::Unknown(#what)),
                }
            }
            #(rejections.require(#ids, &#vars);)*
            // A match guard rather than a let chain: this code is compiled in the edition of the
            // crate that includes or derives it, and let chains need edition 2024.
            match (#(#vars,)*) {
                (#(::core::option::Option::Some(#vars),)*) if rejections.is_empty() => {
                    ::core::result::Result::Ok(#construct { #(#fnames: #vars),* })
                }
                _ => ::core::result::Result::Err(rejections),
            }
        }
    }

    /// `decode_field::<T>(value, &SPEC)`, spanned at the field so a type without `ThingValue`
    /// is reported there.
    pub(super) fn decode_expr(&self, f: &Field, value: TokenStream) -> TokenStream {
        let krate = &self.krate;
        let ty = self.field_type(f);
        let spec = self.spec_expr(&f.ty);
        quote_spanned! {self.span(f.loc)=>
            #krate::model::decode_field::<#ty>(#value, #spec)
        }
    }

    /// A `&Spec` literal for a data type's constraints.
    pub(super) fn spec_expr(&self, ty: &DataType) -> TokenStream {
        let krate = &self.krate;
        match self.spec_literal(ty) {
            Some(lit) => quote!(&#lit),
            None => quote!(&#krate::model::Spec::NONE),
        }
    }

    /// A `Spec` value for a data type's constraints; `None` when it has none.
    fn spec_literal(&self, ty: &DataType) -> Option<TokenStream> {
        let krate = &self.krate;
        let (min, max, step, length, size, item) = match ty {
            DataType::Int(n) | DataType::Float(n) | DataType::Double(n) => {
                if n.min.is_none() && n.max.is_none() && n.step.is_none() {
                    return None;
                }
                (n.min, n.max, n.step, None, None, None)
            }
            DataType::Text(Some(len)) => (None, None, None, Some(*len), None, None),
            DataType::Array { size, item } => {
                let item = self.spec_literal(item);
                if size.is_none() && item.is_none() {
                    return None;
                }
                (None, None, None, None, *size, item)
            }
            _ => return None,
        };
        let (min, max, step, length, size) = (
            opt_f64(min),
            opt_f64(max),
            opt_f64(step),
            opt_u32(length),
            opt_u32(size),
        );
        let item = match item {
            Some(lit) => quote!(::core::option::Option::Some(&#lit)),
            None => quote!(::core::option::Option::None),
        };
        Some(quote! {
            #krate::model::Spec {
                min: #min,
                max: #max,
                step: #step,
                length: #length,
                size: #size,
                item: #item,
            }
        })
    }

    /// The Rust type of a field.
    pub fn field_type(&self, f: &Field) -> TokenStream {
        match &f.rust_type {
            Some(ty) => self.rust_type(ty),
            None => self.data_type(&f.ty),
        }
    }

    /// The Rust type of a model data type.
    fn data_type(&self, ty: &DataType) -> TokenStream {
        let krate = &self.krate;
        match ty {
            DataType::Int(_) => quote!(i32),
            DataType::Float(_) => quote!(f32),
            DataType::Double(_) => quote!(f64),
            DataType::Bool(_) => quote!(bool),
            DataType::Text(_) => quote!(::std::string::String),
            DataType::Date => quote!(#krate::model::Date),
            DataType::Enum(e) => ident(&e.rust_name).into_token_stream(),
            DataType::Struct(s) => ident(&s.rust_name).into_token_stream(),
            DataType::Array { item, .. } => {
                let item = self.data_type(item);
                quote!(::std::vec::Vec<#item>)
            }
            DataType::External(ty) => self.rust_type(ty),
        }
    }

    /// Definitions of the enum and struct types a data type introduces (model files only).
    pub(super) fn type_defs(&self, ty: &DataType, out: &mut TokenStream) {
        match ty {
            DataType::Enum(e) => out.extend(self.enum_def(e)),
            DataType::Struct(s) => {
                for f in &s.fields {
                    self.type_defs(&f.ty, out);
                }
                out.extend(self.struct_def(s));
            }
            DataType::Array { item, .. } => self.type_defs(item, out),
            _ => {}
        }
    }

    /// A model enum type's definition and implementations.
    fn enum_def(&self, e: &EnumType) -> TokenStream {
        let name = ident(&e.rust_name);
        let variants = e.variants.iter().enumerate().map(|(i, v)| {
            let vn = ident(&v.rust_name);
            let doc = format!("`{}`: {}", v.key, v.label);
            let default = (i == 0).then(|| quote!(#[default]));
            quote!(#[doc = #doc] #default #vn,)
        });
        let doc = format!("An enum of the model: {}.", e.listing());
        let impls = self.enum_impls(&name, e);
        quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
            pub enum #name { #(#variants)* }
            #impls
        }
    }

    /// A model struct type's definition and implementations.
    fn struct_def(&self, s: &StructType) -> TokenStream {
        let name = ident(&s.rust_name);
        let fields = self.struct_fields(&s.fields);
        let doc = format!(
            "A struct of the model with fields {}.",
            s.fields
                .iter()
                .map(|f| format!("`{}`", f.identifier))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let impls = self.struct_impls(&name, &s.fields);
        quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct #name { #fields }
            #impls
        }
    }

    /// Documented `pub` struct fields.
    pub(super) fn struct_fields(&self, fields: &[Field]) -> TokenStream {
        self.fields_with_vis(fields, &quote!(pub))
    }

    /// Documented fields with visibility `vis` (none inside enum variants).
    pub(super) fn fields_with_vis(&self, fields: &[Field], vis: &TokenStream) -> TokenStream {
        fields
            .iter()
            .map(|f| {
                let doc = field_doc(f, None);
                let fname = ident(&f.rust_name);
                let ty = self.field_type(f);
                quote!(#[doc = #doc] #vis #fname: #ty,)
            })
            .collect()
    }
}

/// `key`, `label` and `from_key` of an enum type.
fn enum_inherent(name: &Ident, e: &EnumType) -> TokenStream {
    let keys = e.variants.iter().map(|v| {
        let vn = ident(&v.rust_name);
        let key = Literal::i64_unsuffixed(v.key);
        quote!(Self::#vn => #key,)
    });
    let labels = e.variants.iter().map(|v| {
        let vn = ident(&v.rust_name);
        let label = &v.label;
        quote!(Self::#vn => #label,)
    });
    let from = e.variants.iter().map(|v| {
        let vn = ident(&v.rust_name);
        let key = Literal::i64_unsuffixed(v.key);
        quote!(#key => ::core::option::Option::Some(Self::#vn),)
    });
    quote! {
        impl #name {
            /// The integer key that travels on the wire.
            pub const fn key(self) -> i64 {
                match self { #(#keys)* }
            }

            /// The model's label of this value.
            pub const fn label(self) -> &'static str {
                match self { #(#labels)* }
            }

            /// The value for a wire key, if the model declares it.
            pub const fn from_key(key: i64) -> ::core::option::Option<Self> {
                match key {
                    #(#from)*
                    _ => ::core::option::Option::None,
                }
            }
        }
    }
}

/// `Some(v)` or `None`, as tokens.
fn opt_f64(v: Option<f64>) -> TokenStream {
    match v {
        Some(v) => {
            let lit = Literal::f64_unsuffixed(v);
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    }
}

/// `Some(v)` or `None`, as tokens.
fn opt_u32(v: Option<u32>) -> TokenStream {
    match v {
        Some(v) => {
            let lit = Literal::u32_unsuffixed(v);
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    }
}
