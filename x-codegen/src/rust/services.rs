//! Services: a model file's service enum and output types, `ThingServices`, the handler
//! trait `{Enum}Handler` and `dispatch`.

use proc_macro2::{Ident, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::docs::service_doc;
use super::{CodeGenerator, ident};
use crate::hex as layout;
use crate::ir::{CallType, Model, Service};

impl CodeGenerator {
    /// A model file's service enum, the types its inputs and outputs introduce, and their
    /// implementations (HEX too, for a HEX product).
    pub(super) fn service_items(&self, model: &Model) -> TokenStream {
        let enum_name = format_ident!("{}Service", model.name);
        let variants = model.services.iter().map(|s| {
            let doc = service_doc(s);
            let v = ident(&s.rust_variant);
            let fields = self.fields_with_vis(&s.inputs, &quote!());
            quote!(#[doc = #doc] #v { #fields },)
        });
        let doc = format!(
            "A service call of the `{}` thing model, with its typed inputs.",
            model.name
        );
        let mut items = quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq)]
            pub enum #enum_name { #(#variants)* }
        };
        for s in &model.services {
            items.extend(self.service_types(s));
        }
        items.extend(self.services_impls(&enum_name, &quote!(pub), &model.services));
        if let Some(hex) = model.hex {
            let ids = layout::service_ids(model);
            items.extend(self.services_hex_impls(
                &enum_name,
                &model.services,
                &ids,
                hex.byte_order,
            ));
        }
        items
    }

    /// The types a service's inputs and outputs introduce, and its output type.
    fn service_types(&self, s: &Service) -> TokenStream {
        let mut items = TokenStream::new();
        for f in s.inputs.iter().chain(&s.outputs) {
            self.type_defs(&f.ty, &mut items);
        }
        if let Some(out_type) = &s.output_type {
            let out = self.rust_type(out_type);
            let doc = format!("The outputs of service `{}` ({}).", s.identifier, s.name);
            let fields = self.struct_fields(&s.outputs);
            items.extend(quote! {
                #[doc = #doc]
                #[derive(Debug, Clone, PartialEq, Default)]
                pub struct #out { #fields }
            });
            items.extend(self.struct_impls(&ident(&out_type.text), &s.outputs));
        }
        items
    }

    /// `ThingServices` for a service enum, its handler trait `{Enum}Handler` and `dispatch`.
    pub fn services_impls(
        &self,
        name: &Ident,
        vis: &TokenStream,
        services: &[Service],
    ) -> TokenStream {
        let services_impl = self.thing_services_impl(name, services);
        let handler = self.handler_trait(name, vis, services);
        let dispatch = self.dispatch_impl(name, services);
        quote! {
            #services_impl

            #handler

            #dispatch
        }
    }

    /// `impl ThingServices`: the service table, `decode`, `identifier` and `to_params`.
    fn thing_services_impl(&self, name: &Ident, services: &[Service]) -> TokenStream {
        let m = &self.model;
        let table = services.iter().map(|s| {
            let id = &s.identifier;
            let call = match s.call {
                CallType::Sync => quote!(#m::CallType::Sync),
                CallType::Async => quote!(#m::CallType::Async),
            };
            quote!((#id, #call),)
        });
        let decode_arms = services.iter().map(|s| {
            let id = &s.identifier;
            let v = ident(&s.rust_variant);
            let body = self.decode_params_body(&s.inputs, quote!(Self::#v), "parameter");
            quote!(#id => { #body })
        });
        let id_arms = services.iter().map(|s| {
            let id = &s.identifier;
            let v = ident(&s.rust_variant);
            quote!(Self::#v { .. } => #id,)
        });
        let to_params_arms = services.iter().map(|s| {
            let v = ident(&s.rust_variant);
            let names: Vec<Ident> = s.inputs.iter().map(|f| ident(&f.rust_name)).collect();
            let body = self.to_params_body(&s.inputs, |fname| quote!(#fname));
            quote!(Self::#v { #(#names),* } => { #body })
        });
        quote! {
            impl #m::ThingServices for #name {
                const SERVICES: &'static [(&'static str, #m::CallType)] = &[#(#table)*];

                fn decode(
                    identifier: &str,
                    payload: &#m::json::Map<::std::string::String, #m::json::Value>,
                ) -> ::core::result::Result<Self, #m::Rejections> {
                    match identifier {
                        #(#decode_arms)*
                        other => ::core::result::Result::Err(#m::Rejections::from(#m::Rejection::new(
                            other,
                            #m::RejectionReason::Unknown("service"),
                        ))),
                    }
                }

                fn identifier(&self) -> &'static str {
                    match self { #(#id_arms)* }
                }

                fn to_params(&self) -> #m::json::Map<::std::string::String, #m::json::Value> {
                    match self { #(#to_params_arms)* }
                }
            }
        }
    }

    /// The handler trait `{Enum}Handler`: one method per service.
    fn handler_trait(&self, name: &Ident, vis: &TokenStream, services: &[Service]) -> TokenStream {
        let m = &self.model;
        let handler = format_ident!("{}Handler", name);
        let methods = services.iter().map(|s| {
            let method = ident(&s.rust_method);
            let args = s.inputs.iter().map(|f| {
                let fname = ident(&f.rust_name);
                let ty = self.field_type(f);
                quote!(#fname: #ty)
            });
            let out = s
                .output_type
                .as_ref()
                .map_or_else(|| quote!(()), |t| self.rust_type(t));
            let doc = service_doc(s);
            quote_spanned! {self.span(s.loc)=>
                #[doc = #doc]
                fn #method(&mut self #(, #args)*) -> ::core::result::Result<#out, #m::ServiceFailure>;
            }
        });
        let handler_doc = format!(
            "The device's implementation of the services of `{name}`: one method per service, \
             taking its inputs and returning its outputs (or a failure, sent as a \"4001\" ack)."
        );
        quote! {
            #[doc = #handler_doc]
            #vis trait #handler {
                #(#methods)*
            }
        }
    }

    /// `dispatch`: runs a decoded call on a handler.
    fn dispatch_impl(&self, name: &Ident, services: &[Service]) -> TokenStream {
        let m = &self.model;
        let handler = format_ident!("{}Handler", name);
        let dispatch_arms = services.iter().map(|s| {
            let v = ident(&s.rust_variant);
            let method = ident(&s.rust_method);
            let names: Vec<Ident> = s.inputs.iter().map(|f| ident(&f.rust_name)).collect();
            let to_map = if s.output_type.is_some() {
                quote!(.map(|out| #m::ToPayload::to_payload(&out)))
            } else {
                quote!(.map(|()| #m::json::Map::new()))
            };
            quote!(Self::#v { #(#names),* } => handler.#method(#(#names),*) #to_map,)
        });
        quote! {
            impl #name {
                /// Runs the called service on `handler`, returning the outputs as the ack's
                /// `Data`.
                ///
                /// # Errors
                /// The handler's failure.
                pub fn dispatch<H: #handler + ?::core::marker::Sized>(
                    self,
                    handler: &mut H,
                ) -> ::core::result::Result<
                    #m::json::Map<::std::string::String, #m::json::Value>,
                    #m::ServiceFailure,
                > {
                    match self { #(#dispatch_arms)* }
                }
            }
        }
    }
}
