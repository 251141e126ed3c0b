//! Semantic checks on the IR, shared by model files and derives: duplicate identifiers and
//! Rust names, ranges that are empty or do not fit their type, and generated type names that
//! collide. Every problem is collected.

use std::collections::HashMap;

use crate::ir::{DataType, Diagnostic, Field, Loc, Model, Numeric, Service};

/// Checks a whole model.
pub fn validate(model: &Model) -> Vec<Diagnostic> {
    let mut diags = Vec::new();
    let props: Vec<&Field> = model.properties.iter().map(|p| &p.field).collect();
    fields(&props, "property", &mut diags);
    unique(
        model.events.iter().map(|e| (&e.identifier, &e.path, e.loc)),
        "event",
        &mut diags,
    );
    for e in &model.events {
        let outs: Vec<&Field> = e.outputs.iter().collect();
        fields(&outs, "output", &mut diags);
    }
    services(&model.services, &mut diags);
    type_names(model, &mut diags);
    diags
}

/// Checks a model's services (also the `ThingServices` derive's, which sees only them):
/// unique identifiers, and each one's inputs and outputs.
pub fn services(list: &[Service], diags: &mut Vec<Diagnostic>) {
    unique(
        list.iter().map(|s| (&s.identifier, &s.path, s.loc)),
        "service",
        diags,
    );
    for s in list {
        let ins: Vec<&Field> = s.inputs.iter().collect();
        fields(&ins, "input", diags);
        let outs: Vec<&Field> = s.outputs.iter().collect();
        fields(&outs, "output", diags);
    }
}

/// Checks one list of fields (properties, a parameter list, or a struct's fields): unique
/// identifiers and Rust names, and each field's type.
pub fn fields(list: &[&Field], what: &str, diags: &mut Vec<Diagnostic>) {
    unique(
        list.iter().map(|f| (&f.identifier, &f.path, f.loc)),
        what,
        diags,
    );
    let mut rust: HashMap<&str, &Field> = HashMap::new();
    for f in list {
        if let Some(first) = rust.insert(f.rust_name.as_str(), f)
            && first.identifier != f.identifier
        {
            diags.push(
                Diagnostic::new(
                    join(&f.path, "identifier"),
                    format!(
                        "{:?} and {:?} ({}) both become the Rust name `{}`; rename one",
                        f.identifier, first.identifier, first.path, f.rust_name
                    ),
                )
                .at(f.loc),
            );
        }
        data_type(&f.ty, &join(&f.path, "dataType"), f, diags);
    }
}

fn unique<'a>(
    items: impl Iterator<Item = (&'a String, &'a String, Loc)>,
    what: &str,
    diags: &mut Vec<Diagnostic>,
) {
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (id, path, loc) in items {
        if let Some(first) = seen.insert(id.as_str(), path.as_str()) {
            diags.push(
                Diagnostic::new(
                    join(path, "identifier"),
                    format!("duplicate {what} identifier {id:?} (first at {first})"),
                )
                .at(loc),
            );
        }
    }
}

fn data_type(ty: &DataType, path: &str, field: &Field, diags: &mut Vec<Diagnostic>) {
    let specs = join(path, "specs");
    let mut err = |p: String, m: String| diags.push(Diagnostic::new(p, m).at(field.loc));
    match ty {
        DataType::Int(n) => numeric(n, &specs, Bounds::INT, &mut err),
        DataType::Float(n) => numeric(n, &specs, Bounds::FLOAT, &mut err),
        DataType::Double(n) => numeric(n, &specs, Bounds::DOUBLE, &mut err),
        DataType::Text(Some(0)) => err(join(&specs, "length"), "must be at least 1".into()),
        DataType::Array { size, item } => {
            if *size == Some(0) {
                err(join(&specs, "size"), "must be at least 1".into());
            }
            data_type(item, &join(&specs, "item"), field, diags);
        }
        DataType::Struct(s) => {
            let list: Vec<&Field> = s.fields.iter().collect();
            fields(&list, "struct field", diags);
        }
        DataType::Enum(e) => {
            for v in &e.variants {
                if i32::try_from(v.key).is_err() {
                    err(
                        join(&specs, &v.key.to_string()),
                        format!("enum key {} is not a 32-bit integer", v.key),
                    );
                }
            }
        }
        DataType::Bool(_) | DataType::Text(_) | DataType::Date | DataType::External(_) => {}
    }
}

/// The representable range of a numeric type and whether it holds only whole numbers.
struct Bounds {
    name: &'static str,
    low: f64,
    high: f64,
    integral: bool,
}

impl Bounds {
    const INT: Bounds = Bounds {
        name: "int (i32)",
        low: i32::MIN as f64,
        high: i32::MAX as f64,
        integral: true,
    };
    const FLOAT: Bounds = Bounds {
        name: "float (f32)",
        low: f32::MIN as f64,
        high: f32::MAX as f64,
        integral: false,
    };
    const DOUBLE: Bounds = Bounds {
        name: "double (f64)",
        low: f64::MIN,
        high: f64::MAX,
        integral: false,
    };
}

fn numeric(n: &Numeric, specs: &str, b: Bounds, err: &mut impl FnMut(String, String)) {
    for (key, v) in [("min", n.min), ("max", n.max), ("step", n.step)] {
        let Some(v) = v else { continue };
        if v < b.low || v > b.high {
            err(join(specs, key), format!("{v} does not fit in {}", b.name));
        } else if b.integral && v.fract() != 0.0 {
            err(
                join(specs, key),
                format!("{v} is not a whole number, as {} requires", b.name),
            );
        }
    }
    if let (Some(min), Some(max)) = (n.min, n.max)
        && min > max
    {
        err(
            join(specs, "max"),
            format!("max ({max}) is less than min ({min})"),
        );
    }
    if let Some(step) = n.step
        && step <= 0.0
    {
        err(
            join(specs, "step"),
            format!("step must be positive, got {step}"),
        );
    }
}

/// Generated type names must not collide. Types a derive named (its event structs and
/// `output = Type`s, which carry a location) are the user's own and not generated, so only
/// the names generated for model-file items and the derived model's report and set types
/// take part.
fn type_names(model: &Model, diags: &mut Vec<Diagnostic>) {
    let mut names: Vec<(String, String)> = vec![
        (model.name.clone(), "the model".into()),
        (format!("{}Report", model.name), "the model's report".into()),
        (
            format!("{}Set", model.name),
            "the model's property set".into(),
        ),
    ];
    if !model.services.is_empty() {
        names.push((format!("{}Service", model.name), "the service enum".into()));
        names.push((
            format!("{}ServiceHandler", model.name),
            "the service handler trait".into(),
        ));
    }
    fn walk(ty: &DataType, path: &str, names: &mut Vec<(String, String)>) {
        match ty {
            DataType::Enum(e) => names.push((e.rust_name.clone(), path.to_owned())),
            DataType::Struct(s) => {
                names.push((s.rust_name.clone(), path.to_owned()));
                for f in &s.fields {
                    walk(&f.ty, &f.path, names);
                }
            }
            DataType::Array { item, .. } => walk(item, path, names),
            _ => {}
        }
    }
    for p in &model.properties {
        walk(&p.field.ty, &p.field.path, &mut names);
    }
    for e in &model.events {
        if e.loc.is_none() {
            names.push((e.rust_name.clone(), e.path.clone()));
        }
        for f in &e.outputs {
            walk(&f.ty, &f.path, &mut names);
        }
    }
    for s in &model.services {
        if let Some(out) = s.output_type.as_ref().filter(|o| o.loc.is_none()) {
            names.push((out.text.clone(), s.path.clone()));
        }
        for f in s.inputs.iter().chain(&s.outputs) {
            walk(&f.ty, &f.path, &mut names);
        }
    }
    let mut seen: HashMap<&str, &str> = HashMap::new();
    for (name, path) in &names {
        if let Some(first) = seen.insert(name.as_str(), path.as_str()) {
            diags.push(Diagnostic::new(
                path.clone(),
                format!(
                    "the generated Rust type name `{name}` is also generated for {first}; rename one identifier"
                ),
            ));
        }
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}
