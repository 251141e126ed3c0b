//! Events: one type per event of a model file, its payload traits and `ThingEvent`.

use proc_macro2::{Ident, TokenStream};
use quote::quote;

use super::docs::event_doc;
use super::{CodeGenerator, ident};
use crate::hex as layout;
use crate::ir::{Event, EventKind, Model};

impl CodeGenerator {
    /// The type of one event of a model file, the types its outputs introduce and its
    /// implementations (HEX too, for a HEX product).
    pub(super) fn event_items(&self, model: &Model, e: &Event) -> TokenStream {
        let mut items = TokenStream::new();
        for f in &e.outputs {
            self.type_defs(&f.ty, &mut items);
        }
        let ename = ident(&e.rust_name);
        let doc = event_doc(e);
        let fields = self.struct_fields(&e.outputs);
        items.extend(quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct #ename { #fields }
        });
        items.extend(self.event_impls(&ename, e, model.hex.is_some()));
        if let Some(hex) = model.hex {
            let id = layout::event_ids(model)[model
                .events
                .iter()
                .position(|x| x.identifier == e.identifier)
                .unwrap_or(0)];
            items.extend(self.event_hex_impls(&ename, e, id, hex.byte_order));
        }
        items
    }

    /// The payload traits and `ThingEvent` for an event type; with `hex`, its
    /// `encode_hex_event` forwards to the `HexEvent` implementation written beside it.
    pub fn event_impls(&self, name: &Ident, event: &Event, hex: bool) -> TokenStream {
        let m = &self.model;
        let params = self.params_impls(name, &event.outputs, "output");
        let id = &event.identifier;
        let kind = match event.kind {
            EventKind::Info => quote!(#m::EventKind::Info),
            EventKind::Alert => quote!(#m::EventKind::Alert),
            EventKind::Error => quote!(#m::EventKind::Error),
        };
        let hex_event = if hex {
            let h = &self.hex;
            quote! {
                fn encode_hex_event(
                    &self,
                    out: &mut [u8],
                ) -> ::core::option::Option<::core::result::Result<usize, #h::HexError>> {
                    ::core::option::Option::Some(<Self as #h::HexEvent>::encode_hex(self, out))
                }
            }
        } else {
            TokenStream::new()
        };
        quote! {
            #params

            impl #m::ThingEvent for #name {
                const IDENTIFIER: &'static str = #id;
                const KIND: #m::EventKind = #kind;
                #hex_event
            }
        }
    }
}
