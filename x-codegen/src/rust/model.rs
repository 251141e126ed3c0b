//! The property state of a model: the state type of a model file, its `{Name}Report` and
//! `{Name}Set` types and its `ThingModel` implementation.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::docs::field_doc;
use super::{CodeGenerator, ident};
use crate::hex as layout;
use crate::ir::{Access, Field, Model, Property};
use crate::names;

impl CodeGenerator {
    /// A model file's state type, its report and set types and their implementations (HEX
    /// too, for a HEX product).
    pub(super) fn state_items(&self, model: &Model) -> TokenStream {
        let name = ident(&model.name);
        let state_fields = model.properties.iter().map(|p| {
            let f = &p.field;
            let doc = field_doc(f, access_of(model, f));
            let fname = ident(&f.rust_name);
            let ty = self.field_type(f);
            quote!(#[doc = #doc] pub #fname: #ty,)
        });
        let state_doc = format!(
            "The property state of the `{}` thing model: every property's current value.",
            model.name
        );
        let mut items = quote! {
            #[doc = #state_doc]
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct #name { #(#state_fields)* }
        };
        items.extend(self.model_impls(&name, &quote!(pub), &model.properties));
        if let Some(hex) = model.hex {
            let ids = layout::property_ids(model);
            items.extend(self.model_hex_impls(&name, &model.properties, &ids, hex));
        }
        items
    }

    /// The report and set types of a model and its `ThingModel` implementation.
    pub fn model_impls(
        &self,
        name: &Ident,
        vis: &TokenStream,
        properties: &[Property],
    ) -> TokenStream {
        let all: Vec<&Property> = properties.iter().collect();
        let writable: Vec<&Property> = all
            .iter()
            .copied()
            .filter(|p| p.access == Access::ReadWrite)
            .collect();
        let report = self.report_type(name, vis, &all);
        let set = self.set_type(name, vis, &writable);
        let thing_model = self.thing_model_impl(name, &all, &writable);
        quote! {
            #report

            #set

            #thing_model
        }
    }

    /// `{Name}Report`: every property optional, with builders and both payload traits.
    fn report_type(&self, name: &Ident, vis: &TokenStream, all: &[&Property]) -> TokenStream {
        let m = &self.model;
        let report = format_ident!("{}Report", name);
        let report_fields = self.option_fields(all);
        let builders = all.iter().map(|p| self.builder(&p.field));
        let report_to_payload = self.to_payload_fn(all);
        let report_decode_arms = all.iter().map(|p| {
            let f = &p.field;
            let fname = ident(&f.rust_name);
            let id = &f.identifier;
            let decode = self.decode_expr(f, quote!(value));
            quote!(#id => out.#fname = rejections.take(#id, #decode),)
        });
        let report_doc = format!(
            "A full or partial property report of `{name}` (HeaderCtrl 16): only the fields that are set go on the wire."
        );
        quote! {
            #[doc = #report_doc]
            #[derive(Debug, Clone, PartialEq, Default)]
            #vis struct #report { #report_fields }

            impl #report {
                #(#builders)*
            }

            impl #m::ToPayload for #report {
                #report_to_payload
            }

            impl #m::FromPayload for #report {
                fn from_payload(
                    payload: &#m::json::Map<::std::string::String, #m::json::Value>,
                ) -> ::core::result::Result<Self, #m::Rejections> {
                    let mut rejections = #m::Rejections::default();
                    let mut out = Self::default();
                    for (key, value) in payload {
                        match key.as_str() {
                            #(#report_decode_arms)*
                            other => rejections.push(other, #m::RejectionReason::Unknown("property")),
                        }
                    }
                    rejections.into_result(|| out)
                }
            }
        }
    }

    /// `{Name}Set`: the writable properties, optional, and `ToPayload`.
    fn set_type(&self, name: &Ident, vis: &TokenStream, writable: &[&Property]) -> TokenStream {
        let m = &self.model;
        let set = format_ident!("{}Set", name);
        let set_fields = self.option_fields(writable);
        let set_to_payload = self.to_payload_fn(writable);
        let set_doc = format!(
            "A decoded property set of `{name}` (HeaderCtrl 20): the writable properties it sets."
        );
        quote! {
            #[doc = #set_doc]
            #[derive(Debug, Clone, PartialEq, Default)]
            #vis struct #set { #set_fields }

            impl #m::ToPayload for #set {
                #set_to_payload
            }
        }
    }

    /// Documented `pub` fields of type `Option<T>`, one per property.
    fn option_fields(&self, list: &[&Property]) -> TokenStream {
        list.iter()
            .map(|p| {
                let f = &p.field;
                let fname = ident(&f.rust_name);
                let ty = self.field_type(f);
                let doc = field_doc(f, Some(p.access));
                quote!(#[doc = #doc] pub #fname: ::core::option::Option<#ty>,)
            })
            .collect()
    }

    /// A report's `with_{field}` builder.
    fn builder(&self, f: &Field) -> TokenStream {
        let fname = ident(&f.rust_name);
        let method = format_ident!("with_{}", names::unraw(&f.rust_name));
        let ty = self.field_type(f);
        let doc = format!("Sets `{}` in this report.", f.identifier);
        quote! {
            #[doc = #doc]
            #[must_use]
            pub fn #method(mut self, value: #ty) -> Self {
                self.#fname = ::core::option::Option::Some(value);
                self
            }
        }
    }

    /// `to_payload` of a type of optional property fields: the fields that are set.
    fn to_payload_fn(&self, list: &[&Property]) -> TokenStream {
        let m = &self.model;
        if list.is_empty() {
            return quote! {
                fn to_payload(&self) -> #m::json::Map<::std::string::String, #m::json::Value> {
                    #m::json::Map::new()
                }
            };
        }
        let inserts = list.iter().map(|p| {
            let f = &p.field;
            let fname = ident(&f.rust_name);
            let id = &f.identifier;
            quote_spanned! {self.span(f.loc)=>
                if let ::core::option::Option::Some(v) = &self.#fname {
                    map.insert(#id.into(), #m::ThingValue::to_json(v));
                }
            }
        });
        quote! {
            fn to_payload(&self) -> #m::json::Map<::std::string::String, #m::json::Value> {
                let mut map = #m::json::Map::new();
                #(#inserts)*
                map
            }
        }
    }

    /// `impl ThingModel`: the property table, `report`, `decode_set`, `apply`, `merge` and
    /// `ask`.
    fn thing_model_impl(
        &self,
        name: &Ident,
        all: &[&Property],
        writable: &[&Property],
    ) -> TokenStream {
        let m = &self.model;
        let report = format_ident!("{}Report", name);
        let set = format_ident!("{}Set", name);
        let descs = all.iter().map(|p| self.property_desc(p));
        let report_all = all.iter().map(|p| {
            let fname = ident(&p.field.rust_name);
            quote!(#fname: ::core::option::Option::Some(::core::clone::Clone::clone(&self.#fname)),)
        });
        let decode_set = self.decode_set_fn(&set, all, writable);
        let apply = self.apply_fn(&set, writable);
        let merge = all.iter().map(|p| {
            let fname = ident(&p.field.rust_name);
            quote! {
                if let ::core::option::Option::Some(v) = &report.#fname {
                    self.#fname = ::core::clone::Clone::clone(v);
                }
            }
        });
        let ask = self.ask_fn(all);
        quote! {
            impl #m::ThingModel for #name {
                type Report = #report;
                type Set = #set;

                const PROPERTIES: &'static [#m::PropertyDesc] = &[#(#descs)*];

                fn report(&self) -> #report {
                    #report { #(#report_all)* }
                }

                #decode_set

                #apply

                fn merge(&mut self, report: &#report) {
                    #(#merge)*
                }

                #ask
            }
        }
    }

    /// A property's `PropertyDesc`.
    fn property_desc(&self, p: &Property) -> TokenStream {
        let m = &self.model;
        let f = &p.field;
        let id = &f.identifier;
        let display = &f.name;
        let ty = self.field_type(f);
        let access = match p.access {
            Access::ReadOnly => quote!(#m::Access::ReadOnly),
            Access::ReadWrite => quote!(#m::Access::ReadWrite),
        };
        quote_spanned! {self.span(f.loc)=>
            #m::PropertyDesc {
                identifier: #id,
                name: #display,
                access: #access,
                kind: <#ty as #m::ThingValue>::KIND,
            },
        }
    }

    /// `ThingModel::decode_set`: writable properties decoded once each, read-only and
    /// unknown ones rejected.
    fn decode_set_fn(&self, set: &Ident, all: &[&Property], writable: &[&Property]) -> TokenStream {
        let m = &self.model;
        let set_arms = writable.iter().map(|p| {
            let f = &p.field;
            let fname = ident(&f.rust_name);
            let id = &f.identifier;
            let decode = self.decode_expr(f, quote!(&param.value));
            quote! {
                #id => if rejections.once(#id, &set.#fname) {
                    set.#fname = rejections.take(#id, #decode);
                },
            }
        });
        let readonly_ids: Vec<&str> = all
            .iter()
            .filter(|p| p.access == Access::ReadOnly)
            .map(|p| p.field.identifier.as_str())
            .collect();
        let readonly_arm = if readonly_ids.is_empty() {
            quote!()
        } else {
            quote! {
                #(#readonly_ids)|* => rejections.push(
                    param.identify.as_str(),
                    #m::RejectionReason::ReadOnly,
                ),
            }
        };
        let mut_json_set = if writable.is_empty() {
            quote!()
        } else {
            quote!(mut)
        };
        quote! {
            fn decode_set(
                params: &[#m::PropertyValue],
            ) -> ::core::result::Result<#set, #m::Rejections> {
                let mut rejections = #m::Rejections::default();
                let #mut_json_set set = #set::default();
                for param in params {
                    match param.identify.as_str() {
                        #(#set_arms)*
                        #readonly_arm
                        other => rejections.push(other, #m::RejectionReason::Unknown("property")),
                    }
                }
                rejections.into_result(|| set)
            }
        }
    }

    /// `ThingModel::apply`: the set's writable properties into the state.
    fn apply_fn(&self, set: &Ident, writable: &[&Property]) -> TokenStream {
        let apply = writable.iter().map(|p| {
            let fname = ident(&p.field.rust_name);
            quote! {
                if let ::core::option::Option::Some(v) = &set.#fname {
                    self.#fname = ::core::clone::Clone::clone(v);
                }
            }
        });
        let unused_set = if writable.is_empty() {
            quote!(let _ = set;)
        } else {
            quote!()
        };
        quote! {
            fn apply(&mut self, set: &#set) {
                #unused_set
                #(#apply)*
            }
        }
    }

    /// `ThingModel::ask`: the current values of the asked properties.
    fn ask_fn(&self, all: &[&Property]) -> TokenStream {
        let m = &self.model;
        let ask_arms = all.iter().map(|p| {
            let f = &p.field;
            let fname = ident(&f.rust_name);
            let id = &f.identifier;
            quote_spanned!(self.span(f.loc)=> #id => { map.insert(#id.into(), #m::ThingValue::to_json(&self.#fname)); })
        });
        quote! {
            fn ask(
                &self,
                identifiers: &[::std::string::String],
            ) -> ::core::result::Result<
                #m::json::Map<::std::string::String, #m::json::Value>,
                #m::Rejections,
            > {
                let mut rejections = #m::Rejections::default();
                let mut map = #m::json::Map::new();
                for id in identifiers {
                    match id.as_str() {
                        #(#ask_arms)*
                        other => rejections.push(other, #m::RejectionReason::Unknown("property")),
                    }
                }
                rejections.into_result(|| map)
            }
        }
    }
}

/// The access of a model's property `f`, for its doc comment.
fn access_of(model: &Model, f: &Field) -> Option<Access> {
    model
        .properties
        .iter()
        .find(|p| p.field.identifier == f.identifier)
        .map(|p| p.access)
}
