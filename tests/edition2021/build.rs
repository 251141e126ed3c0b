//! Generates the bindings of every model in the workspace's models/ into OUT_DIR, plus
//! `models.rs`, which includes each one in a module of its own, so that all of them compile
//! in this crate's edition.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut models: Vec<PathBuf> = std::fs::read_dir(&dir)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    models.retain(|p| p.extension().is_some_and(|e| e == "json"));
    models.sort();

    let mut builder = x_codegen::Builder::new();
    let mut index = String::new();
    for path in &models {
        builder = builder.model(path);
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        writeln!(
            index,
            "/// Generated from models/{stem}.json.\npub mod {} {{\n    x_sdk::include_model!({stem:?});\n}}",
            stem.replace('-', "_")
        )?;
    }
    builder.compile()?;
    let out = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
    std::fs::write(out.join("models.rs"), index)?;
    Ok(())
}
