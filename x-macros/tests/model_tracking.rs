//! `#[thing(model = "..")]` tracks its file: a crate whose derive names a model file is
//! built with cargo, the file is edited, and the second build must run the derive again and
//! see the edit (without the derive's `include_bytes!`, cargo would call the crate fresh).
//!
//! The probe crate is built in the workspace's own target directory, so its dependencies
//! (x-macros, x-protocol and theirs) are the ones `cargo test` has just built.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A model with one property, `temperature` or whatever `identifier` says.
fn model(identifier: &str) -> String {
    format!(
        r#"{{
  "properties": [
    {{
      "identifier": "{identifier}",
      "name": "Temperature",
      "accessMode": "r",
      "dataType": {{ "type": "int", "specs": {{ "min": "-40", "max": "85" }} }}
    }}
  ]
}}
"#
    )
}

const LIB: &str = r#"//! Probe crate of x-macros/tests/model_tracking.rs.
#![allow(dead_code, missing_docs)]

use x_macros::ThingModel;

#[derive(Debug, Default, ThingModel)]
#[thing(model = "models/probe.json", crate = "::x_protocol")]
pub struct Probe {
    pub temperature: i32,
}
"#;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("x-macros lives in the workspace")
        .to_path_buf()
}

/// The target directory cargo builds this test in (`CARGO_TARGET_TMPDIR` is `<target>/tmp`).
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_TARGET_TMPDIR"))
            .parent()
            .expect("CARGO_TARGET_TMPDIR is inside the target directory")
            .to_path_buf(),
    }
}

/// Writes the probe crate (a workspace of its own, with the workspace's lock file so that
/// it resolves to the same, already built, dependency versions).
fn write_probe(dir: &Path) {
    let root = workspace_root();
    let manifest = format!(
        r#"[package]
name = "model-tracking-probe"
version = "0.0.0"
edition = "2021"
publish = false

[lib]
path = "src/lib.rs"

[dependencies]
x-macros = {{ path = {macros:?} }}
x-protocol = {{ path = {protocol:?} }}

[workspace]
"#,
        macros = root.join("x-macros").display().to_string(),
        protocol = root.join("x-protocol").display().to_string(),
    );
    std::fs::create_dir_all(dir.join("src")).expect("probe src");
    std::fs::create_dir_all(dir.join("models")).expect("probe models");
    std::fs::write(dir.join("Cargo.toml"), manifest).expect("probe manifest");
    std::fs::write(dir.join("src/lib.rs"), LIB).expect("probe lib.rs");
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock")).expect("probe lock file");
}

/// `cargo build` of the probe: whether it succeeded, and cargo's and rustc's output.
fn build(dir: &Path) -> (bool, String) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "--offline", "--quiet", "--lib"])
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", target_dir())
        .output()
        .expect("cargo runs");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[test]
fn editing_the_model_file_reruns_the_derive() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-tracking-probe");
    let _ = std::fs::remove_dir_all(&dir);
    write_probe(&dir);
    let json = dir.join("models/probe.json");

    std::fs::write(&json, model("temperature")).expect("model file");
    let (ok, text) = build(&dir);
    assert!(ok, "the probe matches its model file, yet:\n{text}");

    // Nothing but the model file changes: the derive must run again and refuse the field.
    std::fs::write(&json, model("humidity")).expect("model file");
    let (ok, text) = build(&dir);
    assert!(
        !ok,
        "the model file no longer has `temperature`, yet the probe still built (was the file tracked?)"
    );
    assert!(
        text.contains("`temperature` is not a property in models/probe.json (it has `humidity`)"),
        "the second build failed for another reason:\n{text}"
    );

    // And back: the edit is seen again and the probe builds.
    std::fs::write(&json, model("temperature")).expect("model file");
    let (ok, text) = build(&dir);
    assert!(ok, "the model file matches again, yet:\n{text}");

    let _ = std::fs::remove_dir_all(&dir);
}
