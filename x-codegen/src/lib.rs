//! The thing-model compiler: exported thing-model JSON (or a Rust type, through the
//! `x-macros` derives) -> validated model IR -> Rust code, Markdown docs and, for HEX
//! products, the platform's parsing script.
//!
//! Three front ends share one path: the `x-codegen` CLI, [`Builder`] for build.rs, and the
//! derive macros. Like prost-build, the IR comes first and every emitter reads only the IR.

pub mod doc;
pub mod ir;
pub mod json;
pub mod names;
pub mod rust;
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
    let model = json::parse(text, name)?;
    let diags = validate::validate(&model);
    if diags.is_empty() {
        Ok(model)
    } else {
        Err(diags)
    }
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
