//! Markdown documentation of a model for product documentation: one table of properties,
//! one of events and one of services, with types, ranges and units.

use std::fmt::Write;

use crate::ir::{DataType, Field, Model, Numeric};

/// The model as Markdown.
pub fn markdown(model: &Model, title: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# {title}\n");
    let _ = writeln!(out, "## Properties\n");
    if model.properties.is_empty() {
        let _ = writeln!(out, "None.\n");
    } else {
        let _ = writeln!(
            out,
            "| identifier | name | access | type | constraints | description |"
        );
        let _ = writeln!(out, "|---|---|---|---|---|---|");
        for p in &model.properties {
            let f = &p.field;
            let access = p.access.model_name();
            let _ = writeln!(
                out,
                "| `{}` | {} | {} | {} | {} | {} |",
                f.identifier,
                cell(&f.name),
                access,
                type_cell(&f.ty),
                cell(&constraints(&f.ty)),
                cell(f.desc.as_deref().unwrap_or(""))
            );
        }
        out.push('\n');
    }
    let _ = writeln!(out, "## Events\n");
    if model.events.is_empty() {
        let _ = writeln!(out, "None.\n");
    }
    for e in &model.events {
        let _ = writeln!(
            out,
            "### `{}`: {} ({})\n",
            e.identifier,
            e.name,
            e.kind.model_name()
        );
        if let Some(desc) = &e.desc {
            let _ = writeln!(out, "{}\n", desc.trim());
        }
        params(&mut out, "Outputs", &e.outputs);
    }
    let _ = writeln!(out, "## Services\n");
    if model.services.is_empty() {
        let _ = writeln!(out, "None.\n");
    }
    for s in &model.services {
        let _ = writeln!(
            out,
            "### `{}`: {} ({})\n",
            s.identifier,
            s.name,
            s.call.model_name()
        );
        if let Some(desc) = &s.desc {
            let _ = writeln!(out, "{}\n", desc.trim());
        }
        params(&mut out, "Inputs", &s.inputs);
        params(&mut out, "Outputs", &s.outputs);
    }
    out.trim_end().to_owned() + "\n"
}

fn params(out: &mut String, title: &str, fields: &[Field]) {
    if fields.is_empty() {
        let _ = writeln!(out, "{title}: none.\n");
        return;
    }
    let _ = writeln!(out, "{title}:\n");
    let _ = writeln!(out, "| identifier | name | type | constraints |");
    let _ = writeln!(out, "|---|---|---|---|");
    for f in fields {
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} |",
            f.identifier,
            cell(&f.name),
            type_cell(&f.ty),
            cell(&constraints(&f.ty))
        );
    }
    out.push('\n');
}

fn type_cell(ty: &DataType) -> String {
    match ty {
        DataType::Array { item, .. } => format!("array of {}", type_cell(item)),
        DataType::Struct(s) => format!(
            "struct {{{}}}",
            s.fields
                .iter()
                .map(|f| format!("`{}`: {}", f.identifier, type_cell(&f.ty)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => other.model_name().to_owned(),
    }
}

fn constraints(ty: &DataType) -> String {
    match ty {
        DataType::Enum(e) => e.listing(),
        other => type_summary(other).unwrap_or_default(),
    }
}

/// Escapes a Markdown table cell.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
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
