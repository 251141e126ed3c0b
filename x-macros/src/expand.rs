//! Expansion: each derive parses its item into the IR, validates it, checks it against a
//! model file when asked, and emits through `x_codegen::rust`, the emitter generated code
//! uses too.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned as _;
use syn::{Data, DeriveInput, Fields};
use x_codegen::ir::{
    Access, ByteOrder, CallType, EnumType, Event, EventKind, Field, HexLayout, Model, Property,
    Service, Variant,
};
use x_codegen::names;
use x_codegen::rust::{CodeGenerator, Options};

use crate::ast;
use crate::attr::{self, Attrs, Ctxt, Place, Spanned};
use crate::check;

/// Runs a derive body with a fresh error context: its tokens, or every error it recorded.
fn run(input: &DeriveInput, body: impl FnOnce(&Ctxt, &DeriveInput) -> TokenStream) -> TokenStream {
    let cx = Ctxt::default();
    let out = body(&cx, input);
    match cx.finish() {
        Ok(()) => out,
        Err(e) => e.to_compile_error(),
    }
}

fn krate(attrs: &Attrs) -> TokenStream {
    match &attrs.krate {
        Some(p) => {
            let path = &p.value;
            quote!(#path)
        }
        None => quote!(::x_sdk),
    }
}

/// The emitter, naming the SDK by `krate`, reading the derive's spans and type tokens.
fn codegen(cx: &Ctxt, krate: &TokenStream) -> CodeGenerator {
    CodeGenerator::new(&Options {
        krate: krate.clone(),
    })
    .with_sources(cx.sources())
}

/// The derive's own section of a product's model: what it puts in place of the model file's.
enum Section {
    /// A `ThingModel`'s properties, under its Rust name.
    Properties(String, Vec<Property>),
    /// One `ThingEvent`.
    Event(Event),
    /// A `ThingServices` enum's services.
    Services(Vec<Service>),
}

/// The whole model a derive sees, as serde_derive's `Container` before `check`: with a
/// model file (its path as written, and its model), the file's model with the derive's
/// section in place of the file's (an event in place of the file's event of its
/// identifier, after the file's others, every file event keeping its HEX id and named by
/// identifier and file in messages); without one, the derive's section alone under `name`.
/// It goes through the model file's checks ([`check_whole`]) before it is returned.
fn whole_model(
    cx: &Ctxt,
    name: &str,
    file: Option<(&str, &x_codegen::Model)>,
    section: Section,
    hex: Option<HexLayout>,
    span: Span,
) -> x_codegen::Model {
    let mut model = file
        .map(|(_, m)| m.clone())
        .unwrap_or_else(|| x_codegen::Model {
            name: name.to_owned(),
            properties: Vec::new(),
            events: Vec::new(),
            services: Vec::new(),
            hex: None,
        });
    model.hex = hex;
    match section {
        Section::Properties(name, properties) => {
            model.name = name;
            model.properties = properties;
        }
        Section::Event(event) => {
            // The file's ids made explicit, so that a default (position + 1) does not move
            // when the derive's event leaves its place.
            let ids = x_codegen::hex::event_ids(&model);
            for (e, id) in model.events.iter_mut().zip(ids) {
                e.hex_id = Some(id);
                if let Some((path, _)) = file {
                    e.path = format!("event `{}` of {path}", e.identifier);
                }
            }
            model.events.retain(|e| e.identifier != event.identifier);
            model.events.push(event);
        }
        Section::Services(services) => model.services = services,
    }
    check_whole(cx, &model, file.map(|(path, _)| path), span);
    model
}

/// Runs the model file's checks on a derive's whole model (`validate` and `hex::validate`,
/// as `x_codegen::load` does): a problem of the derive's own items at its span; one of the
/// file's items (which only the derive's items can cause: the file itself was valid) at
/// `fallback`, naming the file and the path.
fn check_whole(cx: &Ctxt, model: &x_codegen::Model, file: Option<&str>, fallback: Span) {
    let mut diags = x_codegen::validate::validate(model);
    x_codegen::hex::validate(model, &mut diags);
    for d in diags {
        match file {
            Some(file) if d.loc.is_none() => cx.error(fallback, format!("{file}: {d}")),
            _ => cx.diagnostic(d),
        }
    }
}

/// Reports validation diagnostics (duplicates, empty ranges, ...) at their spans.
fn validate(cx: &Ctxt, fields: &[Field], what: &str) {
    let refs: Vec<&Field> = fields.iter().collect();
    let mut diags = Vec::new();
    x_codegen::validate::fields(&refs, what, &mut diags);
    diags.into_iter().for_each(|d| cx.diagnostic(d));
}

/// `#[derive(ThingModel)]`.
pub fn model(input: DeriveInput) -> TokenStream {
    run(&input, |cx, input| {
        let attrs = attr::parse(cx, &input.attrs, Place::ModelContainer);
        let krate = krate(&attrs);
        let Some(named) = ast::named_fields(cx, input, "ThingModel") else {
            if !cx.has_errors() {
                cx.error(
                    input.ident.span(),
                    "ThingModel needs at least one property field",
                );
            }
            return TokenStream::new();
        };
        let mut props = ast::properties(cx, named);
        let mut consts = TokenStream::new();
        let mut file_layout = None;
        let mut file_model = None;
        if let Some(path) = &attrs.model
            && let Some(check::Loaded { model, track }) = check::load_model(cx, path)
        {
            consts.extend(track);
            file_layout = model.hex;
            let model = &file_model.insert((path.value.clone(), model)).1;
            consts.extend(properties_against_file(
                cx,
                &mut props,
                model,
                &path.value,
                input.ident.span(),
                &krate,
            ));
        }
        let properties: Vec<Property> = props
            .into_iter()
            .map(|p| Property {
                field: p.field,
                access: p.access.map_or(Access::ReadOnly, |a| a.value),
                required: p.required,
            })
            .collect();
        let layout = layout(cx, &attrs, file_layout);
        // The whole model this derive sees (its properties and HEX layout in place of the
        // file's, whose events and services are derives of their own), through the same
        // checks as a model file: identifiers, Rust names, ranges, generated type names, HEX
        // ids and encodings.
        let model = whole_model(
            cx,
            "",
            file_model.as_ref().map(|(p, m)| (p.as_str(), m)),
            Section::Properties(input.ident.to_string(), properties),
            layout,
            input.ident.span(),
        );
        let ids = x_codegen::hex::property_ids(&model);
        let properties = model.properties;
        if cx.has_errors() {
            return TokenStream::new();
        }
        let vis = input.vis.to_token_stream_owned();
        let impls = codegen(cx, &krate).model_impls(&input.ident, &vis, &properties);
        let hex = match layout {
            Some(layout) => {
                codegen(cx, &krate).model_hex_impls(&input.ident, &properties, &ids, layout)
            }
            None => TokenStream::new(),
        };
        quote!(#impls #hex #consts)
    })
}

/// Compares a `ThingModel` derive's properties with the model file `path`: each access not
/// given is taken from the file, one given differently is an error, and the fields are
/// checked (and completed) against the file's. Returns the comparison's compile-time checks.
fn properties_against_file(
    cx: &Ctxt,
    props: &mut [ast::PropertyField],
    model: &Model,
    path: &str,
    span: Span,
    krate: &TokenStream,
) -> TokenStream {
    for p in props.iter_mut() {
        let Some(mp) = model
            .properties
            .iter()
            .find(|m| m.field.identifier == p.field.identifier)
        else {
            continue;
        };
        match &p.access {
            Some(a) if a.value != mp.access => cx.error(
                a.span,
                format!(
                    "`{}` is {:?} in {path}, but access = {:?} here",
                    p.field.identifier,
                    mp.access.model_name(),
                    a.value.model_name()
                ),
            ),
            Some(_) => {}
            None => {
                p.access = Some(attr::Spanned {
                    value: mp.access,
                    span: cx.span(p.field.loc),
                });
            }
        }
    }
    let mut fields: Vec<Field> = props.iter().map(|p| p.field.clone()).collect();
    // A HEX file's ids as the platform's script resolves them (declared, or the position
    // in the file), so that the derive's field order cannot move them.
    let file_ids = x_codegen::hex::property_ids(model);
    let model_fields: Vec<Field> = model
        .properties
        .iter()
        .zip(file_ids)
        .map(|(p, id)| {
            let mut f = p.field.clone();
            if model.hex.is_some() {
                f.hex.id = Some(id);
            }
            f
        })
        .collect();
    let consts = check::fields(
        cx,
        &mut fields,
        &model_fields,
        path,
        span,
        "property",
        "",
        krate,
    );
    for (p, f) in props.iter_mut().zip(fields) {
        p.field = f;
    }
    consts
}

/// The HEX layout of a derive: `hex(..)` on the container, else the model file's.
fn layout(cx: &Ctxt, attrs: &Attrs, file: Option<HexLayout>) -> Option<HexLayout> {
    let Some(h) = &attrs.hex else {
        return file;
    };
    let mut layout = file.unwrap_or_default();
    if let Some(m) = &h.value.mode {
        if file.is_some_and(|f| f.mode != m.value) {
            cx.error(m.span, "hex mode differs from the model file's");
        }
        layout.mode = m.value;
    }
    if let Some(o) = &h.value.byte_order {
        if file.is_some_and(|f| f.byte_order != o.value) {
            cx.error(o.span, "byte_order differs from the model file's");
        }
        layout.byte_order = o.value;
    }
    Some(layout)
}

/// `#[derive(ThingEvent)]`.
pub fn event(input: DeriveInput) -> TokenStream {
    run(&input, |cx, input| {
        let attrs = attr::parse(cx, &input.attrs, Place::EventContainer);
        let krate = krate(&attrs);
        let mut outputs = match ast::named_fields(cx, input, "ThingEvent") {
            Some(named) => ast::params(cx, &named.named),
            None => Vec::new(),
        };
        let identifier = attrs.identifier.as_ref().map_or_else(
            || names::identifier_for(&input.ident.to_string()),
            |i| i.value.clone(),
        );
        if !ast::valid_identifier(&identifier) {
            cx.error(
                attrs.identifier.as_ref().map_or(input.ident.span(), |i| i.span),
                format!("{identifier:?} is not a valid event identifier; set one with #[thing(identifier = \"..\")]"),
            );
        }
        let mut kind = attrs.kind.as_ref().map(|k| k.value);
        let mut name = attrs.name.as_ref().map(|n| n.value.clone());
        let mut consts = TokenStream::new();
        let mut file_layout = None;
        let mut file_id = None;
        let mut file_model = None;
        if let Some(path) = &attrs.model
            && let Some(check::Loaded { model, track }) = check::load_model(cx, path)
        {
            consts.extend(track);
            file_layout = model.hex;
            let model = &file_model.insert((path.value.clone(), model)).1;
            if let Some(i) = model.events.iter().position(|e| e.identifier == identifier) {
                file_id = Some(x_codegen::hex::event_ids(model)[i]);
            }
            let mut parts = EventParts {
                identifier: &identifier,
                kind: &mut kind,
                name: &mut name,
                outputs: &mut outputs,
            };
            consts.extend(event_against_file(
                cx,
                &attrs,
                &mut parts,
                model,
                &path.value,
                input.ident.span(),
                &krate,
            ));
        }
        let hex_attr_id = attrs.hex.as_ref().and_then(|h| h.value.id.as_ref());
        let hex_id = hex_id(cx, hex_attr_id, file_id);
        let hex_order = hex_byte_order(&attrs, file_layout);
        if hex_order.is_some() && hex_id.is_none() {
            cx.error(
                input.ident.span(),
                "a HEX event needs its id: #[thing(hex(id = N))] or a model file that has it",
            );
        }
        let event = Event {
            hex_id,
            name: name.unwrap_or_else(|| identifier.clone()),
            identifier,
            desc: attrs.desc.as_ref().map(|d| d.value.clone()),
            kind: kind.unwrap_or(EventKind::Info),
            outputs,
            rust_name: input.ident.to_string(),
            path: format!("event `{}`", input.ident),
            loc: cx.locate(input.ident.span()),
        };
        // The whole model with this event among the file's (or alone), through the model
        // file's checks: unique event identifiers and HEX ids, the outputs' identifiers, Rust
        // names, ranges and HEX encodings.
        let layout = hex_order.map(|byte_order| HexLayout {
            byte_order,
            mode: file_layout.map(|l| l.mode).unwrap_or_default(),
        });
        let whole = whole_model(
            cx,
            &input.ident.to_string(),
            file_model.as_ref().map(|(p, m)| (p.as_str(), m)),
            Section::Event(event),
            layout,
            input.ident.span(),
        );
        if cx.has_errors() {
            return TokenStream::new();
        }
        let impls = event_impls(cx, &krate, &input.ident, &whole, hex_order.zip(hex_id));
        quote!(#impls #consts)
    })
}

/// The impls of a `ThingEvent` derive for its event (the last of the `whole` model), with
/// the HEX ones when it is a HEX event (its byte order and id).
fn event_impls(
    cx: &Ctxt,
    krate: &TokenStream,
    ident: &syn::Ident,
    whole: &Model,
    hex: Option<(ByteOrder, u32)>,
) -> TokenStream {
    let Some(event) = whole.events.last() else {
        return TokenStream::new();
    };
    let impls = codegen(cx, krate).event_impls(ident, event, hex.is_some());
    let hex = match hex {
        Some((order, id)) => codegen(cx, krate).event_hex_impls(ident, event, id, order),
        None => TokenStream::new(),
    };
    quote!(#impls #hex)
}

/// What a `ThingEvent` derive has read of its event, for the comparison with a model file.
struct EventParts<'a> {
    identifier: &'a str,
    kind: &'a mut Option<EventKind>,
    name: &'a mut Option<String>,
    outputs: &'a mut Vec<Field>,
}

/// Compares a derived event with the model file's event of its identifier (at `owner`):
/// its kind, name and outputs, inheriting what the derive leaves out. Returns the `const`
/// checks of user types.
fn event_against_file(
    cx: &Ctxt,
    attrs: &Attrs,
    parts: &mut EventParts<'_>,
    model: &x_codegen::Model,
    file: &str,
    owner: Span,
    krate: &TokenStream,
) -> TokenStream {
    let identifier = parts.identifier;
    let Some(me) = model.events.iter().find(|e| e.identifier == identifier) else {
        cx.error(
            owner,
            format!(
                "event `{identifier}` is not in {file} (it has {})",
                listing(model.events.iter().map(|e| &e.identifier))
            ),
        );
        return TokenStream::new();
    };
    match (&attrs.kind, *parts.kind) {
        (Some(k), Some(given)) if given != me.kind => cx.error(
            k.span,
            format!(
                "event `{identifier}` is {:?} in {file}, but kind = {:?} here",
                me.kind.model_name(),
                given.model_name()
            ),
        ),
        _ => *parts.kind = Some(me.kind),
    }
    parts.name.get_or_insert_with(|| me.name.clone());
    check::fields(
        cx,
        parts.outputs,
        &me.outputs,
        file,
        owner,
        "output",
        &format!(" of event `{identifier}`"),
        krate,
    )
}

/// `#[derive(ThingStruct)]`.
pub fn structure(input: DeriveInput) -> TokenStream {
    run(&input, |cx, input| {
        let attrs = attr::parse(cx, &input.attrs, Place::TypeContainer);
        let krate = krate(&attrs);
        let fields = match ast::named_fields(cx, input, "ThingStruct") {
            Some(named) => ast::params(cx, &named.named),
            None => Vec::new(),
        };
        validate(cx, &fields, "struct field");
        if cx.has_errors() {
            return TokenStream::new();
        }
        codegen(cx, &krate).struct_impls(&input.ident, &fields)
    })
}

/// `#[derive(ThingEnum)]`.
pub fn enumeration(input: DeriveInput) -> TokenStream {
    run(&input, |cx, input| {
        let attrs = attr::parse(cx, &input.attrs, Place::TypeContainer);
        let krate = krate(&attrs);
        let Data::Enum(data) = &input.data else {
            cx.error(input.ident.span(), "ThingEnum derives only on enums");
            return TokenStream::new();
        };
        if !input.generics.params.is_empty() {
            cx.error(
                input.generics.span(),
                "ThingEnum does not support generic types",
            );
        }
        if data.variants.is_empty() {
            cx.error(input.ident.span(), "a ThingEnum needs at least one variant");
        }
        let mut variants: Vec<(Variant, proc_macro2::Span)> = Vec::new();
        for (i, v) in data.variants.iter().enumerate() {
            let va = attr::parse(cx, &v.attrs, Place::EnumVariant);
            if !matches!(v.fields, Fields::Unit) {
                cx.error(v.ident.span(), "ThingEnum variants cannot carry data");
                continue;
            }
            let key = match (&va.key, &v.discriminant) {
                (Some(k), _) => k.value,
                (None, Some((_, expr))) => {
                    match discriminant(expr) {
                        Some(k) => k,
                        None => {
                            cx.error(expr.span(), "the discriminant must be an integer literal; or set #[thing(key = N)]");
                            continue;
                        }
                    }
                }
                (None, None) => i as i64,
            };
            let label = va
                .label
                .as_ref()
                .map_or_else(|| v.ident.to_string(), |l| l.value.clone());
            if let Some((first, _)) = variants.iter().find(|(x, _)| x.key == key) {
                cx.error(
                    v.ident.span(),
                    format!("enum key {key} is also the key of `{}`", first.rust_name),
                );
            }
            variants.push((
                Variant {
                    key,
                    label,
                    rust_name: v.ident.to_string(),
                },
                v.ident.span(),
            ));
        }
        if cx.has_errors() {
            return TokenStream::new();
        }
        let e = EnumType {
            rust_name: input.ident.to_string(),
            variants: variants.into_iter().map(|(v, _)| v).collect(),
        };
        codegen(cx, &krate).enum_impls(&input.ident, &e)
    })
}

fn discriminant(expr: &syn::Expr) -> Option<i64> {
    match expr {
        syn::Expr::Lit(syn::ExprLit {
            lit: syn::Lit::Int(i),
            ..
        }) => i.base10_parse().ok(),
        syn::Expr::Unary(syn::ExprUnary {
            op: syn::UnOp::Neg(_),
            expr,
            ..
        }) => discriminant(expr).map(|v| -v),
        _ => None,
    }
}

/// `#[derive(ThingServices)]`.
pub fn services(input: DeriveInput) -> TokenStream {
    run(&input, |cx, input| {
        let attrs = attr::parse(cx, &input.attrs, Place::ServicesContainer);
        let krate = krate(&attrs);
        let Data::Enum(data) = &input.data else {
            cx.error(
                input.ident.span(),
                "ThingServices derives only on enums, one variant per service",
            );
            return TokenStream::new();
        };
        if !input.generics.params.is_empty() {
            cx.error(
                input.generics.span(),
                "ThingServices does not support generic types",
            );
        }
        let mut consts = TokenStream::new();
        let model = attrs.model.as_ref().and_then(|path| {
            let loaded = check::load_model(cx, path)?;
            consts.extend(loaded.track);
            Some((path, loaded.model))
        });
        let file = model.as_ref().map(|(p, m)| (p.value.as_str(), m));
        let services: Vec<Service> = data
            .variants
            .iter()
            .filter_map(|v| service(cx, v, file, &krate, &mut consts))
            .collect();
        if let Some((path, model)) = file {
            variants_for_every_service(cx, &services, path, model, input.ident.span());
        }
        // The whole model with these services in place of the file's (or alone), through the
        // same checks as a model file: identifiers, inputs, and for HEX their ids and
        // encodings.
        let file_layout = file.and_then(|(_, m)| m.hex);
        let order = hex_byte_order(&attrs, file_layout);
        let seen = whole_model(
            cx,
            &input.ident.to_string(),
            file,
            Section::Services(services),
            order.map(|byte_order| HexLayout {
                byte_order,
                mode: file_layout.map(|l| l.mode).unwrap_or_default(),
            }),
            input.ident.span(),
        );
        let hex_ids = x_codegen::hex::service_ids(&seen);
        let services = seen.services;
        if cx.has_errors() {
            return TokenStream::new();
        }
        let vis = input.vis.to_token_stream_owned();
        let impls = codegen(cx, &krate).services_impls(&input.ident, &vis, &services);
        let hex = match order {
            Some(order) => {
                codegen(cx, &krate).services_hex_impls(&input.ident, &services, &hex_ids, order)
            }
            None => TokenStream::new(),
        };
        quote!(#impls #hex #consts)
    })
}

/// One variant of a `ThingServices` enum as a service, compared with the model `file`
/// (path and model) when there is one (the comparison's compile-time checks go to
/// `consts`); `None` when the variant cannot be a service.
fn service(
    cx: &Ctxt,
    v: &syn::Variant,
    file: Option<(&str, &Model)>,
    krate: &TokenStream,
    consts: &mut TokenStream,
) -> Option<Service> {
    let va = attr::parse(cx, &v.attrs, Place::Service);
    let mut inputs = match &v.fields {
        Fields::Named(named) => ast::params(cx, &named.named),
        Fields::Unit => Vec::new(),
        Fields::Unnamed(_) => {
            cx.error(
                v.ident.span(),
                "service variants name their inputs: use `Variant { input: Type }` or a unit variant",
            );
            return None;
        }
    };
    let identifier = va.identifier.as_ref().map_or_else(
        || names::identifier_for(&v.ident.to_string()),
        |i| i.value.clone(),
    );
    if !ast::valid_identifier(&identifier) {
        cx.error(
            va.identifier.as_ref().map_or(v.ident.span(), |i| i.span),
            format!("{identifier:?} is not a valid service identifier"),
        );
    }
    let mut call = va.call.as_ref().map(|c| c.value);
    let mut name = va.name.as_ref().map(|n| n.value.clone());
    let output = va
        .output
        .as_ref()
        .map(|o| cx.rust_type(quote::ToTokens::to_token_stream(&o.value), o.span));
    let in_file = file.and_then(|(path, model)| {
        let found = model
            .services
            .iter()
            .position(|s| s.identifier == identifier);
        if found.is_none() {
            cx.error(
                v.ident.span(),
                format!(
                    "service `{identifier}` is not in {path} (it has {})",
                    listing(model.services.iter().map(|s| &s.identifier))
                ),
            );
        }
        found.map(|i| (path, model, i))
    });
    if let Some((path, model, i)) = in_file {
        let mut parts = ServiceParts {
            identifier: &identifier,
            call: &mut call,
            name: &mut name,
            inputs: &mut inputs,
        };
        let checks = service_against_file(cx, &va, v, &mut parts, &model.services[i], path, krate);
        consts.extend(checks);
    }
    let file_id = in_file.map(|(_, model, i)| x_codegen::hex::service_ids(model)[i]);
    let given = va.hex.as_ref().and_then(|h| h.value.id.as_ref());
    Some(Service {
        hex_id: hex_id(cx, given, file_id),
        name: name.unwrap_or_else(|| identifier.clone()),
        identifier,
        desc: va.desc.as_ref().map(|d| d.value.clone()),
        call: call.unwrap_or(CallType::Sync),
        inputs,
        outputs: Vec::new(),
        rust_variant: v.ident.to_string(),
        rust_method: names::field_name(&v.ident.to_string()),
        output_type: output,
        path: format!("variant `{}`", v.ident),
        loc: cx.locate(v.ident.span()),
    })
}

/// What a `ThingServices` derive has read of one service, for the comparison with a model
/// file.
struct ServiceParts<'a> {
    identifier: &'a str,
    call: &'a mut Option<CallType>,
    name: &'a mut Option<String>,
    inputs: &'a mut Vec<Field>,
}

/// Compares a service variant `v` (its attributes `va`) with the model file's service `ms`
/// of its identifier: its call type, name, inputs and output, inheriting what the variant
/// leaves out. Returns the `const` checks of user types.
fn service_against_file(
    cx: &Ctxt,
    va: &Attrs,
    v: &syn::Variant,
    parts: &mut ServiceParts<'_>,
    ms: &Service,
    path: &str,
    krate: &TokenStream,
) -> TokenStream {
    let identifier = parts.identifier;
    match (&va.call, *parts.call) {
        (Some(c), Some(given)) if given != ms.call => cx.error(
            c.span,
            format!(
                "service `{identifier}` is {:?} in {path}, but call = {:?} here",
                ms.call.model_name(),
                given.model_name()
            ),
        ),
        _ => *parts.call = Some(ms.call),
    }
    parts.name.get_or_insert_with(|| ms.name.clone());
    let mut consts = check::fields(
        cx,
        parts.inputs,
        &ms.inputs,
        path,
        v.ident.span(),
        "input",
        &format!(" of service `{identifier}`"),
        krate,
    );
    consts.extend(output_check(cx, va, identifier, ms, path, krate, v));
    consts
}

/// Reports each service of the model file `path` that has no variant among `services`.
fn variants_for_every_service(
    cx: &Ctxt,
    services: &[Service],
    path: &str,
    model: &Model,
    span: Span,
) {
    for ms in &model.services {
        if !services.iter().any(|s| s.identifier == ms.identifier) {
            cx.error(
                span,
                format!(
                    "service `{}` of {path} has no variant here; add `{} {{ .. }}`",
                    ms.identifier, ms.rust_variant
                ),
            );
        }
    }
}

/// An event's or service's HEX id: the one `given` in its `hex(id = ..)`, else the model
/// file's; a `given` id that differs from the file's is an error at the attribute.
fn hex_id(cx: &Ctxt, given: Option<&Spanned<u32>>, file: Option<u32>) -> Option<u32> {
    if let (Some(given), Some(file)) = (given, file)
        && given.value != file
    {
        cx.error(
            given.span,
            format!("hex id {} here but {file} in the model file", given.value),
        );
    }
    given.map(|g| g.value).or(file)
}

/// The byte order of a HEX event or service enum: `hex(byte_order = ..)`, else the model
/// file's, else big-endian when `hex` is given; `None` when the item is not HEX at all.
fn hex_byte_order(attrs: &Attrs, file: Option<HexLayout>) -> Option<ByteOrder> {
    match (&attrs.hex, file) {
        (None, None) => None,
        (Some(h), file) => Some(
            h.value
                .byte_order
                .as_ref()
                .map(|o| o.value)
                .or(file.map(|f| f.byte_order))
                .unwrap_or_default(),
        ),
        (None, Some(f)) => Some(f.byte_order),
    }
}

/// Checks a variant's `output = Type` against the model service's outputs.
fn output_check(
    cx: &Ctxt,
    va: &Attrs,
    identifier: &str,
    ms: &Service,
    file: &str,
    krate: &TokenStream,
    v: &syn::Variant,
) -> TokenStream {
    match (&va.output, ms.outputs.is_empty()) {
        (None, true) => TokenStream::new(),
        (None, false) => {
            cx.error(
                v.ident.span(),
                format!(
                    "service `{identifier}` has outputs in {file} ({}); add #[thing(output = Type)] with a #[derive(ThingStruct)] type",
                    ms.outputs
                        .iter()
                        .map(|f| format!("{}: {}", f.identifier, f.ty.model_name()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            TokenStream::new()
        }
        (Some(o), true) => {
            cx.error(
                o.span,
                format!("service `{identifier}` has no outputs in {file}; remove `output`"),
            );
            TokenStream::new()
        }
        (Some(o), false) => {
            let ty = &o.value;
            let m = quote!(#krate::model);
            let fields = ms.outputs.iter().map(|f| {
                let id = &f.identifier;
                let kind = check::kind_tokens(&f.ty, &m);
                quote!((#id, #kind))
            });
            let msg =
                format!("service `{identifier}`: the output type's fields differ from {file}");
            quote::quote_spanned! {o.span=>
                const _: () = if !#m::check::fields_eq(
                    <#ty as #m::ThingStruct>::FIELDS,
                    &[#(#fields),*],
                ) {
                    ::core::panic!("{}", #msg)
                };
            }
        }
    }
}

fn listing<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let list: Vec<String> = ids.map(|i| format!("`{i}`")).collect();
    if list.is_empty() {
        "none".to_owned()
    } else {
        list.join(", ")
    }
}

/// `Visibility` to tokens without importing `ToTokens` everywhere.
trait VisTokens {
    fn to_token_stream_owned(&self) -> TokenStream;
}

impl VisTokens for syn::Visibility {
    fn to_token_stream_owned(&self) -> TokenStream {
        quote::ToTokens::to_token_stream(self)
    }
}
