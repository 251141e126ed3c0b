//! The thing-model compiler: exported thing-model JSON (or a Rust type, through the
//! `x-macros` derives) -> validated model IR -> Rust code, Markdown docs and, for HEX
//! products, the platform's parsing script.
//!
//! Three front ends share one path: the `x-codegen` CLI, [`Builder`] for build.rs, and the
//! derive macros. Like prost-build, the IR comes first and every emitter reads only the IR.
//!
//! The IR ([`ir`]) is plain data; the Rust emitter ([`rust`], feature `rust`) and the
//! pretty-printer ([`Builder`], feature `format`) are optional, so that a consumer of models
//! alone (x-sim) builds no compiler-token crates.

pub mod doc;
pub mod hex;
pub mod ir;
pub mod json;
pub mod names;
#[cfg(feature = "rust")]
pub mod rust;
pub mod script;
pub mod validate;

#[cfg(feature = "format")]
mod builder;
#[cfg(feature = "format")]
pub use builder::{BuildError, Builder, format, generate_file};

pub use ir::{Diagnostic, Model};

/// Reads and validates a model file's text: every structural and semantic problem, or the
/// IR. `name` is the Rust name of the property state type.
///
/// # Errors
/// Every problem found, each naming its JSON path.
pub fn load(text: &str, name: &str) -> Result<Model, Vec<Diagnostic>> {
    let (model, mut diags) = json::parse_partial(text, name);
    if let Some(m) = &model {
        diags.extend(validate::validate(m));
        hex::validate(m, &mut diags);
    }
    match model {
        Some(m) if diags.is_empty() => Ok(m),
        _ => {
            // In document order: `properties[2]` before `properties[10]`.
            diags.sort_by_cached_key(|d| path_key(&d.path));
            Err(diags)
        }
    }
}

/// A sort key for JSON paths: properties, events, services in that order, list indices
/// numerically.
fn path_key(path: &str) -> Vec<(String, u64)> {
    path.split(['.', '['])
        .enumerate()
        .map(
            |(i, seg)| match seg.strip_suffix(']').and_then(|n| n.parse().ok()) {
                Some(n) => (String::new(), n),
                None if i == 0 => {
                    let rank = ["", "properties", "events", "services"]
                        .iter()
                        .position(|top| *top == seg)
                        .unwrap_or(4);
                    (String::new(), rank as u64)
                }
                None => (seg.to_owned(), 0),
            },
        )
        .collect()
}

/// The Rust type name for a model file: its file stem in UpperCamelCase
/// (`models/smart-plug.json` -> `SmartPlug`).
pub fn model_name_for(path: &std::path::Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    names::type_name(&[&stem])
}
