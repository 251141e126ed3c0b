//! The Rust emitter: IR -> tokens. [`module`] writes a whole model file's bindings (type
//! definitions and trait implementations); the `*_impls` functions write only the
//! implementations and are what the derive macros call, so both ways in share one codec.

use proc_macro2::{Ident, Literal, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};

use crate::ir::{
    Access, CallType, DataType, EnumType, Event, EventKind, Field, Model, Numeric, Property,
    Service, StructType,
};
use crate::names;

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

/// Every item of a model file's bindings: the state, report and set types, property enum
/// and struct types, one type per event, the service enum, outputs and handler trait.
pub fn module(model: &Model, opts: &Options) -> TokenStream {
    let krate = &opts.krate;
    let name = ident(&model.name);
    let vis = quote!(pub);
    let props: Vec<&Field> = model.properties.iter().map(|p| &p.field).collect();
    let state_fields = props.iter().map(|f| {
        let doc = field_doc(f, access_of(model, f));
        let fname = ident(&f.rust_name);
        let ty = field_type(f, krate);
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
    items.extend(model_impls(&name, &vis, &model.properties, krate));
    if let Some(layout) = model.hex {
        let ids = hexlayout::property_ids(model);
        items.extend(model_hex_impls(
            &name,
            &model.properties,
            &ids,
            layout,
            krate,
        ));
    }

    let mut types = TokenStream::new();
    for f in &props {
        type_defs(&f.ty, krate, &mut types);
    }
    for e in &model.events {
        for f in &e.outputs {
            type_defs(&f.ty, krate, &mut types);
        }
        let ename = ident(&e.rust_name);
        let doc = event_doc(e);
        let fields = struct_fields(&e.outputs, krate);
        types.extend(quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq, Default)]
            pub struct #ename { #fields }
        });
        types.extend(event_impls(&ename, e, krate));
        if let Some(layout) = model.hex {
            let id = hexlayout::event_ids(model)[model
                .events
                .iter()
                .position(|x| x.identifier == e.identifier)
                .unwrap_or(0)];
            types.extend(event_hex_impls(&ename, e, id, layout.byte_order, krate));
        }
    }
    if !model.services.is_empty() {
        let enum_name = format_ident!("{}Service", model.name);
        let variants = model.services.iter().map(|s| {
            let doc = service_doc(s);
            let v = ident(&s.rust_variant);
            let fields = fields_with_vis(&s.inputs, krate, &quote!());
            quote!(#[doc = #doc] #v { #fields },)
        });
        let doc = format!(
            "A service call of the `{}` thing model, with its typed inputs.",
            model.name
        );
        types.extend(quote! {
            #[doc = #doc]
            #[derive(Debug, Clone, PartialEq)]
            pub enum #enum_name { #(#variants)* }
        });
        for s in &model.services {
            for f in s.inputs.iter().chain(&s.outputs) {
                type_defs(&f.ty, krate, &mut types);
            }
            if let Some(out) = &s.output_type {
                let doc = format!("The outputs of service `{}` ({}).", s.identifier, s.name);
                let fields = struct_fields(&s.outputs, krate);
                types.extend(quote! {
                    #[doc = #doc]
                    #[derive(Debug, Clone, PartialEq, Default)]
                    pub struct #out { #fields }
                });
                types.extend(struct_impls(&ident(&out.to_string()), &s.outputs, krate));
            }
        }
        types.extend(services_impls(&enum_name, &vis, &model.services, krate));
        if let Some(layout) = model.hex {
            let ids = hexlayout::service_ids(model);
            types.extend(services_hex_impls(
                &enum_name,
                &model.services,
                &ids,
                layout.byte_order,
                krate,
            ));
        }
    }
    items.extend(types);
    items
}

/// The report and set types of a model and its `ThingModel` implementation.
pub fn model_impls(
    name: &Ident,
    vis: &TokenStream,
    properties: &[Property],
    krate: &TokenStream,
) -> TokenStream {
    let m = quote!(#krate::model);
    let report = format_ident!("{}Report", name);
    let set = format_ident!("{}Set", name);
    let all: Vec<&Property> = properties.iter().collect();
    let writable: Vec<&Property> = all
        .iter()
        .copied()
        .filter(|p| p.access == Access::ReadWrite)
        .collect();
    let readonly_ids: Vec<&str> = all
        .iter()
        .filter(|p| p.access == Access::ReadOnly)
        .map(|p| p.field.identifier.as_str())
        .collect();

    let option_fields = |list: &[&Property]| -> TokenStream {
        list.iter()
            .map(|p| {
                let f = &p.field;
                let fname = ident(&f.rust_name);
                let ty = field_type(f, krate);
                let doc = field_doc(f, Some(p.access));
                quote!(#[doc = #doc] pub #fname: ::core::option::Option<#ty>,)
            })
            .collect()
    };
    let report_fields = option_fields(&all);
    let set_fields = option_fields(&writable);
    let builders = all.iter().map(|p| {
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let method = format_ident!("with_{}", names::unraw(&f.rust_name));
        let ty = field_type(f, krate);
        let doc = format!("Sets `{}` in this report.", f.identifier);
        quote! {
            #[doc = #doc]
            #[must_use]
            pub fn #method(mut self, value: #ty) -> Self {
                self.#fname = ::core::option::Option::Some(value);
                self
            }
        }
    });
    let to_payload_of = |list: &[&Property]| -> TokenStream {
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
            quote_spanned! {f.span=>
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
    };
    let report_to_payload = to_payload_of(&all);
    let set_to_payload = to_payload_of(&writable);
    let report_decode_arms = all.iter().map(|p| {
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let id = &f.identifier;
        let decode = decode_expr(f, quote!(value), krate);
        quote!(#id => out.#fname = rejections.take(#id, #decode),)
    });
    let set_arms = writable.iter().map(|p| {
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let id = &f.identifier;
        let decode = decode_expr(f, quote!(&param.value), krate);
        quote! {
            #id => if rejections.once(#id, &set.#fname) {
                set.#fname = rejections.take(#id, #decode);
            },
        }
    });
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
    let descs = all.iter().map(|p| {
        let f = &p.field;
        let id = &f.identifier;
        let display = &f.name;
        let ty = field_type(f, krate);
        let access = match p.access {
            Access::ReadOnly => quote!(#m::Access::ReadOnly),
            Access::ReadWrite => quote!(#m::Access::ReadWrite),
        };
        quote_spanned! {f.span=>
            #m::PropertyDesc {
                identifier: #id,
                name: #display,
                access: #access,
                kind: <#ty as #m::ThingValue>::KIND,
            },
        }
    });
    let report_all = all.iter().map(|p| {
        let fname = ident(&p.field.rust_name);
        quote!(#fname: ::core::option::Option::Some(::core::clone::Clone::clone(&self.#fname)),)
    });
    let apply = writable.iter().map(|p| {
        let fname = ident(&p.field.rust_name);
        quote! {
            if let ::core::option::Option::Some(v) = &set.#fname {
                self.#fname = ::core::clone::Clone::clone(v);
            }
        }
    });
    let merge = all.iter().map(|p| {
        let fname = ident(&p.field.rust_name);
        quote! {
            if let ::core::option::Option::Some(v) = &report.#fname {
                self.#fname = ::core::clone::Clone::clone(v);
            }
        }
    });
    let ask_arms = all.iter().map(|p| {
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let id = &f.identifier;
        quote_spanned!(f.span=> #id => { map.insert(#id.into(), #m::ThingValue::to_json(&self.#fname)); })
    });
    let report_doc = format!(
        "A full or partial property report of `{name}` (HeaderCtrl 16): only the fields that are set go on the wire."
    );
    let set_doc = format!(
        "A decoded property set of `{name}` (HeaderCtrl 20): the writable properties it sets."
    );
    let unused_set = if writable.is_empty() {
        quote!(let _ = set;)
    } else {
        quote!()
    };
    let mut_json_set = if writable.is_empty() {
        quote!()
    } else {
        quote!(mut)
    };
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

        #[doc = #set_doc]
        #[derive(Debug, Clone, PartialEq, Default)]
        #vis struct #set { #set_fields }

        impl #m::ToPayload for #set {
            #set_to_payload
        }

        impl #m::ThingModel for #name {
            type Report = #report;
            type Set = #set;

            const PROPERTIES: &'static [#m::PropertyDesc] = &[#(#descs)*];

            fn report(&self) -> #report {
                #report { #(#report_all)* }
            }

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

            fn apply(&mut self, set: &#set) {
                #unused_set
                #(#apply)*
            }

            fn merge(&mut self, report: &#report) {
                #(#merge)*
            }

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

/// `ToPayload` and `FromPayload` for a struct whose fields are all required parameters.
pub fn params_impls(name: &Ident, fields: &[Field], krate: &TokenStream) -> TokenStream {
    let m = quote!(#krate::model);
    let to = to_params_body(fields, krate, |fname| quote!(&self.#fname));
    let decode = decode_params_body(fields, quote!(Self), krate);
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
pub fn struct_impls(name: &Ident, fields: &[Field], krate: &TokenStream) -> TokenStream {
    let m = quote!(#krate::model);
    let hex = struct_hex_impls(name, fields, krate);
    let params = params_impls(name, fields, krate);
    let field_kinds = fields.iter().map(|f| {
        let id = &f.identifier;
        let ty = field_type(f, krate);
        quote_spanned!(f.span=> (#id, <#ty as #m::ThingValue>::KIND),)
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

/// The payload traits and `ThingEvent` for an event type.
pub fn event_impls(name: &Ident, event: &Event, krate: &TokenStream) -> TokenStream {
    let m = quote!(#krate::model);
    let params = params_impls(name, &event.outputs, krate);
    let id = &event.identifier;
    let kind = match event.kind {
        EventKind::Info => quote!(#m::EventKind::Info),
        EventKind::Alert => quote!(#m::EventKind::Alert),
        EventKind::Error => quote!(#m::EventKind::Error),
    };
    quote! {
        #params

        impl #m::ThingEvent for #name {
            const IDENTIFIER: &'static str = #id;
            const KIND: #m::EventKind = #kind;
        }
    }
}

/// `key`, `label`, `from_key`, `ThingValue` and `ThingEnum` for an enum type.
pub fn enum_impls(name: &Ident, e: &EnumType, krate: &TokenStream) -> TokenStream {
    let m = quote!(#krate::model);
    let hex = enum_hex_impls(name, krate);
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
    let table = e.variants.iter().map(|v| {
        let key = Literal::i64_unsuffixed(v.key);
        let label = &v.label;
        quote!((#key, #label),)
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

/// `ThingServices` for a service enum, its handler trait `{Enum}Handler` and `dispatch`.
pub fn services_impls(
    name: &Ident,
    vis: &TokenStream,
    services: &[Service],
    krate: &TokenStream,
) -> TokenStream {
    let m = quote!(#krate::model);
    let handler = format_ident!("{}Handler", name);
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
        let body = decode_params_body(&s.inputs, quote!(Self::#v), krate);
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
        let body = to_params_body(&s.inputs, krate, |fname| quote!(#fname));
        quote!(Self::#v { #(#names),* } => { #body })
    });
    let methods = services.iter().map(|s| {
        let method = ident(&s.rust_method);
        let args = s.inputs.iter().map(|f| {
            let fname = ident(&f.rust_name);
            let ty = field_type(f, krate);
            quote!(#fname: #ty)
        });
        let out = s.output_type.clone().unwrap_or_else(|| quote!(()));
        let doc = service_doc(s);
        quote_spanned! {s.span=>
            #[doc = #doc]
            fn #method(&mut self #(, #args)*) -> ::core::result::Result<#out, #m::ServiceFailure>;
        }
    });
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
    let handler_doc = format!(
        "The device's implementation of the services of `{name}`: one method per service, \
         taking its inputs and returning its outputs (or a failure, sent as a \"4001\" ack)."
    );
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

        #[doc = #handler_doc]
        #vis trait #handler {
            #(#methods)*
        }

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

/// Builds a payload map from fields; `access` gives the expression for a field's value.
fn to_params_body(
    fields: &[Field],
    krate: &TokenStream,
    access: impl Fn(&Ident) -> TokenStream,
) -> TokenStream {
    let m = quote!(#krate::model);
    let inserts = fields.iter().map(|f| {
        let fname = ident(&f.rust_name);
        let id = &f.identifier;
        let value = access(&fname);
        quote_spanned!(f.span=> map.insert(#id.into(), #m::ThingValue::to_json(#value));)
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

/// Decodes every field of a parameter object (each required, unknown keys rejected) and
/// builds `construct { fields }` when all are good. Expects `payload` in scope.
fn decode_params_body(
    fields: &[Field],
    construct: TokenStream,
    krate: &TokenStream,
) -> TokenStream {
    let m = quote!(#krate::model);
    if fields.is_empty() {
        return quote! {
            let mut rejections = #m::Rejections::default();
            for key in payload.keys() {
                rejections.push(key.as_str(), #m::RejectionReason::Unknown("parameter"));
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
        let ty = field_type(f, krate);
        quote!(let mut #var: ::core::option::Option<#ty> = ::core::option::Option::None;)
    });
    let arms = fields.iter().zip(&vars).map(|(f, var)| {
        let id = &f.identifier;
        let decode = decode_expr(f, quote!(value), krate);
        quote!(#id => #var = rejections.take(#id, #decode),)
    });
    quote! {
        let mut rejections = #m::Rejections::default();
        #(#decls)*
        for (key, value) in payload {
            match key.as_str() {
                #(#arms)*
                other => rejections.push(other, #m::RejectionReason::Unknown("parameter")),
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
fn decode_expr(f: &Field, value: TokenStream, krate: &TokenStream) -> TokenStream {
    let ty = field_type(f, krate);
    let spec = spec_expr(&f.ty, krate);
    quote_spanned! {f.span=>
        #krate::model::decode_field::<#ty>(#value, #spec)
    }
}

/// A `&Spec` literal for a data type's constraints.
fn spec_expr(ty: &DataType, krate: &TokenStream) -> TokenStream {
    match spec_literal(ty, krate) {
        Some(lit) => quote!(&#lit),
        None => quote!(&#krate::model::Spec::NONE),
    }
}

fn spec_literal(ty: &DataType, krate: &TokenStream) -> Option<TokenStream> {
    let opt_f64 = |v: Option<f64>| match v {
        Some(v) => {
            let lit = Literal::f64_unsuffixed(v);
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let opt_u32 = |v: Option<u32>| match v {
        Some(v) => {
            let lit = Literal::u32_unsuffixed(v);
            quote!(::core::option::Option::Some(#lit))
        }
        None => quote!(::core::option::Option::None),
    };
    let (min, max, step, length, size, item) = match ty {
        DataType::Int(n) | DataType::Float(n) | DataType::Double(n) => {
            if n.min.is_none() && n.max.is_none() && n.step.is_none() {
                return None;
            }
            (n.min, n.max, n.step, None, None, None)
        }
        DataType::Text(Some(len)) => (None, None, None, Some(*len), None, None),
        DataType::Array { size, item } => {
            let item = spec_literal(item, krate);
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
pub fn field_type(f: &Field, krate: &TokenStream) -> TokenStream {
    match &f.rust_type {
        Some(ty) => ty.clone(),
        None => data_type(&f.ty, krate),
    }
}

fn data_type(ty: &DataType, krate: &TokenStream) -> TokenStream {
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
            let item = data_type(item, krate);
            quote!(::std::vec::Vec<#item>)
        }
        DataType::External(ts) => ts.clone(),
    }
}

use quote::ToTokens;

/// Definitions of the enum and struct types a data type introduces (model files only).
fn type_defs(ty: &DataType, krate: &TokenStream, out: &mut TokenStream) {
    match ty {
        DataType::Enum(e) => out.extend(enum_def(e, krate)),
        DataType::Struct(s) => {
            for f in &s.fields {
                type_defs(&f.ty, krate, out);
            }
            out.extend(struct_def(s, krate));
        }
        DataType::Array { item, .. } => type_defs(item, krate, out),
        _ => {}
    }
}

fn enum_def(e: &EnumType, krate: &TokenStream) -> TokenStream {
    let name = ident(&e.rust_name);
    let variants = e.variants.iter().enumerate().map(|(i, v)| {
        let vn = ident(&v.rust_name);
        let doc = format!("`{}`: {}", v.key, v.label);
        let default = (i == 0).then(|| quote!(#[default]));
        quote!(#[doc = #doc] #default #vn,)
    });
    let listing = e
        .variants
        .iter()
        .map(|v| format!("{} = {}", v.key, v.label))
        .collect::<Vec<_>>()
        .join(", ");
    let doc = format!("An enum of the model: {listing}.");
    let impls = enum_impls(&name, e, krate);
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub enum #name { #(#variants)* }
        #impls
    }
}

fn struct_def(s: &StructType, krate: &TokenStream) -> TokenStream {
    let name = ident(&s.rust_name);
    let fields = struct_fields(&s.fields, krate);
    let doc = format!(
        "A struct of the model with fields {}.",
        s.fields
            .iter()
            .map(|f| format!("`{}`", f.identifier))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let impls = struct_impls(&name, &s.fields, krate);
    quote! {
        #[doc = #doc]
        #[derive(Debug, Clone, PartialEq, Default)]
        pub struct #name { #fields }
        #impls
    }
}

/// Documented `pub` struct fields.
fn struct_fields(fields: &[Field], krate: &TokenStream) -> TokenStream {
    fields_with_vis(fields, krate, &quote!(pub))
}

/// Documented fields with visibility `vis` (none inside enum variants).
fn fields_with_vis(fields: &[Field], krate: &TokenStream, vis: &TokenStream) -> TokenStream {
    fields
        .iter()
        .map(|f| {
            let doc = field_doc(f, None);
            let fname = ident(&f.rust_name);
            let ty = field_type(f, krate);
            quote!(#[doc = #doc] #vis #fname: #ty,)
        })
        .collect()
}

fn access_of(model: &Model, f: &Field) -> Option<Access> {
    model
        .properties
        .iter()
        .find(|p| p.field.identifier == f.identifier)
        .map(|p| p.access)
}

/// The doc comment of a field: name, identifier, access, range, unit, labels, description.
pub fn field_doc(f: &Field, access: Option<Access>) -> String {
    let mut parts = Vec::new();
    if let Some(a) = access {
        parts.push(match a {
            Access::ReadOnly => "read-only".to_owned(),
            Access::ReadWrite => "read-write".to_owned(),
        });
    }
    parts.extend(type_summary(&f.ty));
    let mut doc = format!("{} (`{}`)", f.name, f.identifier);
    if !parts.is_empty() {
        doc.push_str(": ");
        doc.push_str(&parts.join("; "));
    }
    doc.push('.');
    if let Some(desc) = &f.desc {
        doc.push(' ');
        doc.push_str(desc.trim());
    }
    doc
}

/// A short human description of a data type's constraints.
pub fn type_summary(ty: &DataType) -> Option<String> {
    match ty {
        DataType::Int(n) | DataType::Float(n) | DataType::Double(n) => numeric_summary(n),
        DataType::Bool(Some([off, on])) => Some(format!("0 = {off}, 1 = {on}")),
        DataType::Text(Some(len)) => Some(format!("at most {len} bytes")),
        DataType::Date => Some("milliseconds since the Unix epoch".to_owned()),
        DataType::Array {
            size: Some(size),
            item,
        } => Some(match type_summary(item) {
            Some(inner) => format!("at most {size} items, each {inner}"),
            None => format!("at most {size} items"),
        }),
        _ => None,
    }
}

fn numeric_summary(n: &Numeric) -> Option<String> {
    let num = |v: f64| {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            format!("{}", v as i64)
        } else {
            format!("{v}")
        }
    };
    let mut s = match (n.min, n.max) {
        (Some(a), Some(b)) => format!("{} ..= {}", num(a), num(b)),
        (Some(a), None) => format!(">= {}", num(a)),
        (None, Some(b)) => format!("<= {}", num(b)),
        (None, None) => String::new(),
    };
    if let Some(unit) = &n.unit {
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(unit);
        if let Some(name) = &n.unit_name {
            s.push_str(&format!(" ({name})"));
        }
    }
    if let Some(step) = n.step {
        if !s.is_empty() {
            s.push_str(", ");
        }
        s.push_str(&format!("step {}", num(step)));
    }
    (!s.is_empty()).then_some(s)
}

fn event_doc(e: &Event) -> String {
    let mut doc = format!(
        "Event {} (`{}`, {}), reported on `model/event/{}/report`.",
        e.name,
        e.identifier,
        e.kind.model_name(),
        e.identifier
    );
    if let Some(desc) = &e.desc {
        doc.push(' ');
        doc.push_str(desc.trim());
    }
    doc
}

fn service_doc(s: &Service) -> String {
    let mut doc = format!(
        "Service {} (`{}`, {}).",
        s.name,
        s.identifier,
        s.call.model_name()
    );
    if let Some(desc) = &s.desc {
        doc.push(' ');
        doc.push_str(desc.trim());
    }
    doc
}

/// An identifier token, raw (`r#type`) when the name says so.
pub fn ident(name: &str) -> Ident {
    match name.strip_prefix("r#") {
        Some(raw) => Ident::new_raw(raw, Span::call_site()),
        None => Ident::new(name, Span::call_site()),
    }
}

// ---------------------------------------------------------------------------------------
// HEX codec (docs/hex-format.md). Values go through `HexValue` with a `HexSpec` per field,
// so user enum and struct types in derives encode the same way as generated ones.

use crate::hex::{self as hexlayout, WireForm};
use crate::ir::{ByteOrder, HexLayout, HexMode};

/// A `&HexSpec` literal for a field's resolved encoding.
fn hex_spec_expr(f: &Field, krate: &TokenStream) -> TokenStream {
    let h = quote!(#krate::model::hex);
    let Ok(enc) = hexlayout::resolve(&f.ty, &f.hex) else {
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

fn order_tokens(order: ByteOrder, krate: &TokenStream) -> TokenStream {
    match order {
        ByteOrder::Big => quote!(#krate::model::hex::ByteOrder::Big),
        ByteOrder::Little => quote!(#krate::model::hex::ByteOrder::Little),
    }
}

/// Writes one field's value (`value` is a reference expression) to `w`.
fn hex_write(f: &Field, value: TokenStream, label: &str, krate: &TokenStream) -> TokenStream {
    let spec = hex_spec_expr(f, krate);
    quote_spanned! {f.span=>
        #krate::model::hex::HexValue::write_hex(#value, w, #spec, #label)?;
    }
}

/// Reads one field's value from `r`, checked against the model.
fn hex_read(f: &Field, label: &str, krate: &TokenStream) -> TokenStream {
    let spec = hex_spec_expr(f, krate);
    let model_spec = spec_expr(&f.ty, krate);
    let ty = field_type(f, krate);
    quote_spanned! {f.span=>
        #krate::model::hex::read_checked::<#ty>(r, #spec, #model_spec, #label)?
    }
}

/// `HexValue` for a struct type: its fields in declared order.
pub fn struct_hex_impls(name: &Ident, fields: &[Field], krate: &TokenStream) -> TokenStream {
    let h = quote!(#krate::model::hex);
    let writes = fields.iter().map(|f| {
        let fname = ident(&f.rust_name);
        hex_write(f, quote!(&self.#fname), &f.identifier, krate)
    });
    let reads = fields.iter().map(|f| {
        let fname = ident(&f.rust_name);
        let read = hex_read(f, &f.identifier, krate);
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
pub fn enum_hex_impls(name: &Ident, krate: &TokenStream) -> TokenStream {
    let h = quote!(#krate::model::hex);
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
    name: &Ident,
    properties: &[Property],
    ids: &[u32],
    layout: HexLayout,
    krate: &TokenStream,
) -> TokenStream {
    let h = quote!(#krate::model::hex);
    let report = format_ident!("{}Report", name);
    let set = format_ident!("{}Set", name);
    let order = order_tokens(layout.byte_order, krate);
    let mut by_id: Vec<(u32, &Property)> = ids.iter().copied().zip(properties).collect();
    by_id.sort_by_key(|(id, _)| *id);
    let id_lit = |id: u32| Literal::u8_unsuffixed(id as u8);

    let report_writes = by_id.iter().map(|(id, p)| {
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let label = &f.identifier;
        let write = hex_write(f, quote!(v), label, krate);
        let idl = id_lit(*id);
        match layout.mode {
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
    });
    let tagged_arms = |list: &[&(u32, &Property)], target: TokenStream| -> Vec<TokenStream> {
        list.iter()
            .map(|(id, p)| {
                let f = &p.field;
                let fname = ident(&f.rust_name);
                let label = &f.identifier;
                let read = hex_read(f, label, krate);
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
    };
    let all: Vec<&(u32, &Property)> = by_id.iter().collect();
    let writable: Vec<&(u32, &Property)> = by_id
        .iter()
        .filter(|(_, p)| p.access == Access::ReadWrite)
        .collect();
    let decode_report_body = match layout.mode {
        HexMode::Tagged => {
            let arms = tagged_arms(&all, quote!(out));
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
            let reads = all.iter().map(|(_, p)| {
                let f = &p.field;
                let fname = ident(&f.rust_name);
                let read = hex_read(f, &f.identifier, krate);
                quote!(#fname: ::core::option::Option::Some(#read),)
            });
            // Struct fields are evaluated in the order written: id order, the wire order.
            quote! {
                let out = #report { #(#reads)* };
                r.finish()?;
            }
        }
    };
    let set_arms = tagged_arms(&writable, quote!(set));
    let readonly_arms = by_id.iter().filter(|(_, p)| p.access == Access::ReadOnly).map(|(id, p)| {
        let idl = id_lit(*id);
        let label = &p.field.identifier;
        quote!(#idl => return ::core::result::Result::Err(#h::HexError::ReadOnly { at, field: #label.into() }),)
    });
    let set_writes = writable.iter().map(|(id, p)| {
        let f = &p.field;
        let fname = ident(&f.rust_name);
        let write = hex_write(f, quote!(v), &f.identifier, krate);
        let idl = id_lit(*id);
        quote! {
            if let ::core::option::Option::Some(v) = &set.#fname {
                w.u8(#idl)?;
                #write
            }
        }
    });
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
    let readonly_arms: Vec<TokenStream> = readonly_arms.collect();
    let decode_set_body = if writable.is_empty() {
        // Nothing is writable: any id is an error.
        quote! {
            if !r.at_end() {
                let (at, id) = r.id("property id")?;
                return ::core::result::Result::Err(match id {
                    #(#readonly_arms)*
                    _ => #h::HexError::UnknownId { at, id, what: "property" },
                });
            }
            ::core::result::Result::Ok(#set::default())
        }
    } else {
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
    };
    let unused_set = if writable.is_empty() {
        quote!(let _ = set;)
    } else {
        quote!()
    };

    quote! {
        impl #h::HexModel for #name {
            const BYTE_ORDER: #h::ByteOrder = #order;

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
}

/// `HexEvent` for an event type.
pub fn event_hex_impls(
    name: &Ident,
    event: &Event,
    id: u32,
    order: ByteOrder,
    krate: &TokenStream,
) -> TokenStream {
    let h = quote!(#krate::model::hex);
    let order = order_tokens(order, krate);
    let idl = Literal::u8_unsuffixed(id as u8);
    let writes = event.outputs.iter().map(|f| {
        let fname = ident(&f.rust_name);
        hex_write(f, quote!(&self.#fname), &f.identifier, krate)
    });
    let reads = event.outputs.iter().map(|f| {
        let fname = ident(&f.rust_name);
        let read = hex_read(f, &f.identifier, krate);
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
    name: &Ident,
    services: &[Service],
    ids: &[u32],
    order: ByteOrder,
    krate: &TokenStream,
) -> TokenStream {
    let m = quote!(#krate::model);
    let h = quote!(#krate::model::hex);
    let handler = format_ident!("{}Handler", name);
    let order = order_tokens(order, krate);
    let decode_arms = services.iter().zip(ids).map(|(s, id)| {
        let v = ident(&s.rust_variant);
        let idl = Literal::u8_unsuffixed(*id as u8);
        let reads = s.inputs.iter().map(|f| {
            let fname = ident(&f.rust_name);
            let read = hex_read(f, &f.identifier, krate);
            quote!(#fname: #read,)
        });
        quote!(#idl => Self::#v { #(#reads)* },)
    });
    let encode_arms = services.iter().zip(ids).map(|(s, id)| {
        let v = ident(&s.rust_variant);
        let idl = Literal::u8_unsuffixed(*id as u8);
        let names: Vec<Ident> = s.inputs.iter().map(|f| ident(&f.rust_name)).collect();
        let writes = s.inputs.iter().map(|f| {
            let fname = ident(&f.rust_name);
            hex_write(f, quote!(#fname), &f.identifier, krate)
        });
        quote!(Self::#v { #(#names),* } => { w.u8(#idl)?; #(#writes)* })
    });
    let reply_arms = services.iter().zip(ids).map(|(s, id)| {
        let idl = Literal::u8_unsuffixed(*id as u8);
        let sid = &s.identifier;
        let outputs = match &s.output_type {
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
    });
    let dispatch_arms = services.iter().zip(ids).map(|(s, id)| {
        let v = ident(&s.rust_variant);
        let method = ident(&s.rust_method);
        let idl = Literal::u8_unsuffixed(*id as u8);
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
    });
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
