//! The HEX codec (docs/hex-format.md): `HexValue` for enum and struct types, `HexModel`,
//! `HexEvent`, `HexServices` and `dispatch_hex`. Values go through `HexValue` with a
//! `HexSpec` per field, so user enum and struct types in derives encode the same way as
//! generated ones.

use proc_macro2::{Ident, Literal, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use super::{CodeGenerator, ident};
use crate::hex::{self as layout, WireForm};
use crate::ir::{Access, ByteOrder, Event, Field, HexLayout, HexMode, Property, Service};

/// A property with its HEX id.
type ById<'a> = (u32, &'a Property);

impl CodeGenerator {
    /// A `&HexSpec` literal for a field's resolved encoding.
    fn hex_spec_expr(&self, f: &Field) -> TokenStream {
        let h = &self.hex;
        let Ok(enc) = layout::resolve(&f.ty, &f.hex) else {
            return quote!(&#h::HexSpec::DEFAULT);
        };
        let (wire, fixed) = match enc.wire {
            WireForm::Number(w) => {
                let v = ident(&w.name().to_uppercase());
                (
                    quote!(::core::option::Option::Some(#h::WireType::#v)),
                    quote!(::core::option::Option::None),
                )
            }
            WireForm::TextFixed(n) => {
                let n = Literal::usize_unsuffixed(n as usize);
                (
                    quote!(::core::option::Option::None),
                    quote!(::core::option::Option::Some(#n)),
                )
            }
            _ => (
                quote!(::core::option::Option::None),
                quote!(::core::option::Option::None),
            ),
        };
        if !enc.scaled()
            && matches!(
                enc.wire,
                WireForm::Bool | WireForm::Text | WireForm::Struct | WireForm::External
            )
        {
            return quote!(&#h::HexSpec::DEFAULT);
        }
        let scale = Literal::f64_unsuffixed(enc.scale);
        let offset = Literal::f64_unsuffixed(enc.offset);
        let decimals = Literal::u32_unsuffixed(enc.decimals);
        quote! {
            &#h::HexSpec {
                wire: #wire,
                scale: #scale,
                offset: #offset,
                decimals: #decimals,
                fixed: #fixed,
            }
        }
    }

    /// A `ByteOrder` value.
    fn order_tokens(&self, order: ByteOrder) -> TokenStream {
        let krate = &self.krate;
        match order {
            ByteOrder::Big => quote!(#krate::model::hex::ByteOrder::Big),
            ByteOrder::Little => quote!(#krate::model::hex::ByteOrder::Little),
        }
    }

    /// Writes one field's value (`value` is a reference expression) to `w`.
    fn hex_write(&self, f: &Field, value: TokenStream, label: &str) -> TokenStream {
        let krate = &self.krate;
        let spec = self.hex_spec_expr(f);
        quote_spanned! {self.span(f.loc)=>
            #krate::model::hex::HexValue::write_hex(#value, w, #spec, #label)?;
        }
    }

    /// Reads one field's value from `r`, checked against the model.
    fn hex_read(&self, f: &Field, label: &str) -> TokenStream {
        let krate = &self.krate;
        let spec = self.hex_spec_expr(f);
        let model_spec = self.spec_expr(&f.ty);
        let ty = self.field_type(f);
        quote_spanned! {self.span(f.loc)=>
            #krate::model::hex::read_checked::<#ty>(r, #spec, #model_spec, #label)?
        }
    }

    /// `HexValue` for a struct type: its fields in declared order.
    pub fn struct_hex_impls(&self, name: &Ident, fields: &[Field]) -> TokenStream {
        let h = &self.hex;
        let writes = fields.iter().map(|f| {
            let fname = ident(&f.rust_name);
            self.hex_write(f, quote!(&self.#fname), &f.identifier)
        });
        let reads = fields.iter().map(|f| {
            let fname = ident(&f.rust_name);
            let read = self.hex_read(f, &f.identifier);
            quote!(#fname: #read,)
        });
        let (w, r) = if fields.is_empty() {
            (quote!(_w), quote!(_r))
        } else {
            (quote!(w), quote!(r))
        };
        quote! {
            impl #h::HexValue for #name {
                fn write_hex(
                    &self,
                    #w: &mut #h::HexWriter<'_>,
                    _: &#h::HexSpec,
                    _: &str,
                ) -> ::core::result::Result<(), #h::HexError> {
                    #(#writes)*
                    ::core::result::Result::Ok(())
                }

                fn read_hex(
                    #r: &mut #h::HexReader<'_>,
                    _: &#h::HexSpec,
                    _: &str,
                ) -> ::core::result::Result<Self, #h::HexError> {
                    ::core::result::Result::Ok(Self { #(#reads)* })
                }
            }
        }
    }

    /// `HexValue` for an enum type: its key.
    pub fn enum_hex_impls(&self, name: &Ident) -> TokenStream {
        let h = &self.hex;
        quote! {
            impl #h::HexValue for #name {
                fn write_hex(
                    &self,
                    w: &mut #h::HexWriter<'_>,
                    spec: &#h::HexSpec,
                    field: &str,
                ) -> ::core::result::Result<(), #h::HexError> {
                    #h::write_key(self.key(), w, spec, field)
                }

                fn read_hex(
                    r: &mut #h::HexReader<'_>,
                    spec: &#h::HexSpec,
                    field: &str,
                ) -> ::core::result::Result<Self, #h::HexError> {
                    #h::read_key(r, spec, field, Self::from_key)
                }
            }
        }
    }

    /// `HexModel` for a HEX product's state type.
    pub fn model_hex_impls(
        &self,
        name: &Ident,
        properties: &[Property],
        ids: &[u32],
        layout: HexLayout,
    ) -> TokenStream {
        let h = &self.hex;
        let report = format_ident!("{}Report", name);
        let set = format_ident!("{}Set", name);
        let order = self.order_tokens(layout.byte_order);
        let mut by_id: Vec<ById> = ids.iter().copied().zip(properties).collect();
        by_id.sort_by_key(|(id, _)| *id);
        let reports = self.hex_report_fns(&report, &by_id, layout.mode, &order);
        let sets = self.hex_set_fns(&set, &by_id, &order);
        let asks = self.hex_ask_fns(&by_id, &order);
        quote! {
            impl #h::HexModel for #name {
                const BYTE_ORDER: #h::ByteOrder = #order;

                #reports

                #sets

                #asks
            }
        }
    }

    /// `HexModel::encode_report` and `decode_report`.
    fn hex_report_fns(
        &self,
        report: &Ident,
        by_id: &[ById],
        mode: HexMode,
        order: &TokenStream,
    ) -> TokenStream {
        let h = &self.hex;
        let report_writes = by_id
            .iter()
            .map(|(id, p)| self.hex_report_write(*id, p, mode));
        let decode_report_body = self.hex_decode_report_body(report, by_id, mode);
        quote! {
            fn encode_report(report: &#report, out: &mut [u8]) -> ::core::result::Result<usize, #h::HexError> {
                let mut writer = #h::HexWriter::new(out, #order);
                let w = &mut writer;
                w.u8(#h::FRAME_PROPERTY_REPORT)?;
                #(#report_writes)*
                ::core::result::Result::Ok(w.len())
            }

            fn decode_report(bytes: &[u8]) -> ::core::result::Result<#report, #h::HexError> {
                let mut reader = #h::HexReader::new(bytes, #order);
                let r = &mut reader;
                r.frame_type(#h::FRAME_PROPERTY_REPORT, "a property report (0x01)")?;
                #decode_report_body
                ::core::result::Result::Ok(out)
            }
        }
    }

    /// One property of a report on the wire: tagged with its id when set, or in its place.
    fn hex_report_write(&self, id: u32, p: &Property, mode: HexMode) -> TokenStream {
        let h = &self.hex;
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let label = &f.identifier;
        let write = self.hex_write(f, quote!(v), label);
        let idl = id_lit(id);
        match mode {
            HexMode::Tagged => quote! {
                if let ::core::option::Option::Some(v) = &report.#fname {
                    w.u8(#idl)?;
                    #write
                }
            },
            HexMode::Positional => quote! {
                match &report.#fname {
                    ::core::option::Option::Some(v) => { #write }
                    ::core::option::Option::None => {
                        return ::core::result::Result::Err(#h::HexError::Incomplete { field: #label.into() });
                    }
                }
            },
        }
    }

    /// The body of `decode_report`, leaving the report in `out`.
    fn hex_decode_report_body(&self, report: &Ident, by_id: &[ById], mode: HexMode) -> TokenStream {
        let h = &self.hex;
        match mode {
            HexMode::Tagged => {
                let all: Vec<&ById> = by_id.iter().collect();
                let arms = self.hex_tagged_arms(&all, quote!(out));
                quote! {
                    let mut out = #report::default();
                    while !r.at_end() {
                        let (at, id) = r.id("property id")?;
                        match id {
                            #(#arms)*
                            _ => return ::core::result::Result::Err(#h::HexError::UnknownId { at, id, what: "property" }),
                        }
                    }
                }
            }
            HexMode::Positional => {
                let reads = by_id.iter().map(|(_, p)| {
                    let f = &p.field;
                    let fname = ident(&f.rust_name);
                    let read = self.hex_read(f, &f.identifier);
                    quote!(#fname: ::core::option::Option::Some(#read),)
                });
                // Struct fields are evaluated in the order written: id order, the wire order.
                quote! {
                    let out = #report { #(#reads)* };
                    r.finish()?;
                }
            }
        }
    }

    /// Match arms reading a tagged property into `target`, once.
    fn hex_tagged_arms(&self, list: &[&ById], target: TokenStream) -> Vec<TokenStream> {
        let h = &self.hex;
        list.iter()
            .map(|(id, p)| {
                let f = &p.field;
                let fname = ident(&f.rust_name);
                let label = &f.identifier;
                let read = self.hex_read(f, label);
                let idl = id_lit(*id);
                quote! {
                    #idl => {
                        if #target.#fname.is_some() {
                            return ::core::result::Result::Err(#h::HexError::Duplicate { at, field: #label.into() });
                        }
                        #target.#fname = ::core::option::Option::Some(#read);
                    }
                }
            })
            .collect()
    }

    /// `HexModel::decode_set_hex` and `encode_set`.
    fn hex_set_fns(&self, set: &Ident, by_id: &[ById], order: &TokenStream) -> TokenStream {
        let h = &self.hex;
        let writable: Vec<&ById> = by_id
            .iter()
            .filter(|(_, p)| p.access == Access::ReadWrite)
            .collect();
        let decode_set_body = self.hex_decode_set_body(set, by_id, &writable);
        let set_writes = writable.iter().map(|(id, p)| {
            let f = &p.field;
            let fname = ident(&f.rust_name);
            let write = self.hex_write(f, quote!(v), &f.identifier);
            let idl = id_lit(*id);
            quote! {
                if let ::core::option::Option::Some(v) = &set.#fname {
                    w.u8(#idl)?;
                    #write
                }
            }
        });
        let unused_set = if writable.is_empty() {
            quote!(let _ = set;)
        } else {
            quote!()
        };
        quote! {
            fn decode_set_hex(bytes: &[u8]) -> ::core::result::Result<#set, #h::HexError> {
                let mut reader = #h::HexReader::new(bytes, #order);
                let r = &mut reader;
                r.frame_type(#h::FRAME_PROPERTY_SET, "a property set (0x81)")?;
                #decode_set_body
            }

            fn encode_set(set: &#set, out: &mut [u8]) -> ::core::result::Result<usize, #h::HexError> {
                #unused_set
                let mut writer = #h::HexWriter::new(out, #order);
                let w = &mut writer;
                w.u8(#h::FRAME_PROPERTY_SET)?;
                #(#set_writes)*
                ::core::result::Result::Ok(w.len())
            }
        }
    }

    /// The body of `decode_set_hex`: writable ids read once each, read-only ones refused.
    fn hex_decode_set_body(&self, set: &Ident, by_id: &[ById], writable: &[&ById]) -> TokenStream {
        let h = &self.hex;
        let readonly_arms: Vec<TokenStream> = by_id.iter().filter(|(_, p)| p.access == Access::ReadOnly).map(|(id, p)| {
            let idl = id_lit(*id);
            let label = &p.field.identifier;
            quote!(#idl => return ::core::result::Result::Err(#h::HexError::ReadOnly { at, field: #label.into() }),)
        }).collect();
        if writable.is_empty() {
            // Nothing is writable: any id is an error.
            return quote! {
                if !r.at_end() {
                    let (at, id) = r.id("property id")?;
                    return ::core::result::Result::Err(match id {
                        #(#readonly_arms)*
                        _ => #h::HexError::UnknownId { at, id, what: "property" },
                    });
                }
                ::core::result::Result::Ok(#set::default())
            };
        }
        let set_arms = self.hex_tagged_arms(writable, quote!(set));
        quote! {
            let mut set = #set::default();
            while !r.at_end() {
                let (at, id) = r.id("property id")?;
                match id {
                    #(#set_arms)*
                    #(#readonly_arms)*
                    _ => return ::core::result::Result::Err(#h::HexError::UnknownId { at, id, what: "property" }),
                }
            }
            ::core::result::Result::Ok(set)
        }
    }

    /// `HexModel::decode_ask` and `encode_ask`.
    fn hex_ask_fns(&self, by_id: &[ById], order: &TokenStream) -> TokenStream {
        let h = &self.hex;
        let ask_arms = by_id.iter().map(|(id, p)| {
            let idl = id_lit(*id);
            let label = &p.field.identifier;
            quote!(#idl => ids.push(#label),)
        });
        let encode_ask_arms = by_id.iter().map(|(id, p)| {
            let idl = id_lit(*id);
            let label = &p.field.identifier;
            quote!(#label => w.u8(#idl)?,)
        });
        quote! {
            fn decode_ask(bytes: &[u8]) -> ::core::result::Result<::std::vec::Vec<&'static str>, #h::HexError> {
                let mut reader = #h::HexReader::new(bytes, #order);
                let r = &mut reader;
                r.frame_type(#h::FRAME_PROPERTY_ASK, "a property ask (0x83)")?;
                let mut ids = ::std::vec::Vec::new();
                while !r.at_end() {
                    let (at, id) = r.id("property id")?;
                    match id {
                        #(#ask_arms)*
                        _ => return ::core::result::Result::Err(#h::HexError::UnknownId { at, id, what: "property" }),
                    }
                }
                ::core::result::Result::Ok(ids)
            }

            fn encode_ask(identifiers: &[&str], out: &mut [u8]) -> ::core::result::Result<usize, #h::HexError> {
                let mut writer = #h::HexWriter::new(out, #order);
                let w = &mut writer;
                w.u8(#h::FRAME_PROPERTY_ASK)?;
                for identifier in identifiers {
                    match *identifier {
                        #(#encode_ask_arms)*
                        other => return ::core::result::Result::Err(#h::HexError::UnknownIdentifier {
                            identifier: other.into(),
                            what: "property",
                        }),
                    }
                }
                ::core::result::Result::Ok(w.len())
            }
        }
    }

    /// `HexEvent` for an event type.
    pub fn event_hex_impls(
        &self,
        name: &Ident,
        event: &Event,
        id: u32,
        order: ByteOrder,
    ) -> TokenStream {
        let h = &self.hex;
        let order = self.order_tokens(order);
        let idl = id_lit(id);
        let writes = event.outputs.iter().map(|f| {
            let fname = ident(&f.rust_name);
            self.hex_write(f, quote!(&self.#fname), &f.identifier)
        });
        let reads = event.outputs.iter().map(|f| {
            let fname = ident(&f.rust_name);
            let read = self.hex_read(f, &f.identifier);
            quote!(#fname: #read,)
        });
        quote! {
            impl #h::HexEvent for #name {
                const HEX_ID: u8 = #idl;

                fn encode_hex(&self, out: &mut [u8]) -> ::core::result::Result<usize, #h::HexError> {
                    let mut writer = #h::HexWriter::new(out, #order);
                    let w = &mut writer;
                    w.u8(#h::FRAME_EVENT_REPORT)?;
                    w.u8(#idl)?;
                    #(#writes)*
                    ::core::result::Result::Ok(w.len())
                }

                fn decode_hex(bytes: &[u8]) -> ::core::result::Result<Self, #h::HexError> {
                    let mut reader = #h::HexReader::new(bytes, #order);
                    let r = &mut reader;
                    r.frame_type(#h::FRAME_EVENT_REPORT, "an event report (0x02)")?;
                    let (at, id) = r.id("event id")?;
                    if id != #idl {
                        return ::core::result::Result::Err(#h::HexError::UnknownId { at, id, what: "event" });
                    }
                    let event = Self { #(#reads)* };
                    r.finish()?;
                    ::core::result::Result::Ok(event)
                }
            }
        }
    }

    /// `HexServices` and `dispatch_hex` for a service enum.
    pub fn services_hex_impls(
        &self,
        name: &Ident,
        services: &[Service],
        ids: &[u32],
        order: ByteOrder,
    ) -> TokenStream {
        let order = self.order_tokens(order);
        let services_impl = self.hex_services_impl(name, services, ids, &order);
        let dispatch = self.hex_dispatch_impl(name, services, ids, &order);
        quote! {
            #services_impl

            #dispatch
        }
    }

    /// `impl HexServices`: calls decoded and encoded, replies decoded.
    fn hex_services_impl(
        &self,
        name: &Ident,
        services: &[Service],
        ids: &[u32],
        order: &TokenStream,
    ) -> TokenStream {
        let h = &self.hex;
        let decode_arms = services.iter().zip(ids).map(|(s, id)| {
            let v = ident(&s.rust_variant);
            let idl = id_lit(*id);
            let reads = s.inputs.iter().map(|f| {
                let fname = ident(&f.rust_name);
                let read = self.hex_read(f, &f.identifier);
                quote!(#fname: #read,)
            });
            quote!(#idl => Self::#v { #(#reads)* },)
        });
        let encode_arms = services.iter().zip(ids).map(|(s, id)| {
            let v = ident(&s.rust_variant);
            let idl = id_lit(*id);
            let names: Vec<Ident> = s.inputs.iter().map(|f| ident(&f.rust_name)).collect();
            let writes = s.inputs.iter().map(|f| {
                let fname = ident(&f.rust_name);
                self.hex_write(f, quote!(#fname), &f.identifier)
            });
            quote!(Self::#v { #(#names),* } => { w.u8(#idl)?; #(#writes)* })
        });
        let reply_arms = services
            .iter()
            .zip(ids)
            .map(|(s, id)| self.hex_reply_arm(s, *id));
        quote! {
            impl #h::HexServices for #name {
                const BYTE_ORDER: #h::ByteOrder = #order;

                fn decode_call_hex(bytes: &[u8]) -> ::core::result::Result<Self, #h::HexError> {
                    let mut reader = #h::HexReader::new(bytes, #order);
                    let r = &mut reader;
                    r.frame_type(#h::FRAME_SERVICE_CALL, "a service call (0x82)")?;
                    let (at, id) = r.id("service id")?;
                    let call = match id {
                        #(#decode_arms)*
                        _ => return ::core::result::Result::Err(#h::HexError::UnknownId { at, id, what: "service" }),
                    };
                    r.finish()?;
                    ::core::result::Result::Ok(call)
                }

                fn encode_call_hex(&self, out: &mut [u8]) -> ::core::result::Result<usize, #h::HexError> {
                    let mut writer = #h::HexWriter::new(out, #order);
                    let w = &mut writer;
                    w.u8(#h::FRAME_SERVICE_CALL)?;
                    match self { #(#encode_arms)* }
                    ::core::result::Result::Ok(w.len())
                }

                fn decode_reply_hex(
                    bytes: &[u8],
                ) -> ::core::result::Result<#h::DecodedReply, #h::HexError> {
                    let mut reader = #h::HexReader::new(bytes, #order);
                    let r = &mut reader;
                    r.frame_type(#h::FRAME_SERVICE_REPLY, "a service reply (0x03)")?;
                    let (at, id) = r.id("service id")?;
                    match id {
                        #(#reply_arms)*
                        _ => ::core::result::Result::Err(#h::HexError::UnknownId { at, id, what: "service" }),
                    }
                }
            }
        }
    }

    /// The `decode_reply_hex` arm of one service: its result byte and outputs.
    fn hex_reply_arm(&self, s: &Service, id: u32) -> TokenStream {
        let m = &self.model;
        let h = &self.hex;
        let idl = id_lit(id);
        let sid = &s.identifier;
        let outputs = match s.output_type.as_ref().map(|t| self.rust_type(t)) {
            Some(out) => quote! {
                let out = <#out as #h::HexValue>::read_hex(r, &#h::HexSpec::DEFAULT, #sid)?;
                #m::ToPayload::to_payload(&out)
            },
            None => quote!(#m::json::Map::new()),
        };
        quote! {
            #idl => {
                let at = r.pos();
                match r.u8("service result")? {
                    0 => {
                        let outputs = { #outputs };
                        r.finish()?;
                        ::core::result::Result::Ok((#sid, ::core::option::Option::Some(outputs)))
                    }
                    1 => {
                        r.finish()?;
                        ::core::result::Result::Ok((#sid, ::core::option::Option::None))
                    }
                    value => ::core::result::Result::Err(#h::HexError::BadResult { at, value }),
                }
            }
        }
    }

    /// `dispatch_hex`: runs a decoded call on a handler and writes the HEX reply.
    fn hex_dispatch_impl(
        &self,
        name: &Ident,
        services: &[Service],
        ids: &[u32],
        order: &TokenStream,
    ) -> TokenStream {
        let h = &self.hex;
        let handler = format_ident!("{}Handler", name);
        let dispatch_arms = services
            .iter()
            .zip(ids)
            .map(|(s, id)| self.hex_dispatch_arm(s, *id));
        quote! {
            impl #name {
                /// Runs the called service on `handler` and writes the HEX service reply
                /// (frame type 0x03: id, result, outputs when it succeeded) into `out`.
                ///
                /// # Errors
                /// An output that does not fit its wire type, or a full buffer.
                pub fn dispatch_hex<H: #handler + ?::core::marker::Sized>(
                    self,
                    handler: &mut H,
                    out: &mut [u8],
                ) -> ::core::result::Result<#h::HexReply, #h::HexError> {
                    let mut writer = #h::HexWriter::new(out, #order);
                    let w = &mut writer;
                    w.u8(#h::FRAME_SERVICE_REPLY)?;
                    let failure = match self { #(#dispatch_arms)* };
                    ::core::result::Result::Ok(#h::HexReply { len: w.len(), failure })
                }
            }
        }
    }

    /// The `dispatch_hex` arm of one service: the handler called, its result written.
    fn hex_dispatch_arm(&self, s: &Service, id: u32) -> TokenStream {
        let h = &self.hex;
        let v = ident(&s.rust_variant);
        let method = ident(&s.rust_method);
        let idl = id_lit(id);
        let sid = &s.identifier;
        let names: Vec<Ident> = s.inputs.iter().map(|f| ident(&f.rust_name)).collect();
        let on_ok = if s.output_type.is_some() {
            quote! {
                ::core::result::Result::Ok(out) => {
                    w.u8(0)?;
                    #h::HexValue::write_hex(&out, w, &#h::HexSpec::DEFAULT, #sid)?;
                    ::core::option::Option::None
                }
            }
        } else {
            quote! {
                ::core::result::Result::Ok(()) => {
                    w.u8(0)?;
                    ::core::option::Option::None
                }
            }
        };
        quote! {
            Self::#v { #(#names),* } => {
                w.u8(#idl)?;
                match handler.#method(#(#names),*) {
                    #on_ok
                    ::core::result::Result::Err(failure) => {
                        w.u8(1)?;
                        ::core::option::Option::Some(failure)
                    }
                }
            }
        }
    }
}

/// A HEX id as a `u8` literal.
fn id_lit(id: u32) -> Literal {
    Literal::u8_unsuffixed(id as u8)
}
