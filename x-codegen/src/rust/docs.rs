//! Doc comments of generated items: a field's name, identifier, access and constraints; an
//! event's and a service's summary.

use crate::ir::{Access, DataType, Event, Field, Numeric, Service};

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

pub(super) fn event_doc(e: &Event) -> String {
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

pub(super) fn service_doc(s: &Service) -> String {
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
