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
                let mut set = #set::default();
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
        if let (#(::core::option::Option::Some(#vars),)*) = (#(#vars,)*)
            && rejections.is_empty()
        {
            return ::core::result::Result::Ok(#construct { #(#fnames: #vars),* });
        }
        ::core::result::Result::Err(rejections)
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
