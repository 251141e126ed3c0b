//! Doc comments of generated items: a field's name, identifier, access and constraints; an
//! event's and a service's summary.

use crate::doc::type_summary;
use crate::ir::{Access, Event, Field, Service};

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
