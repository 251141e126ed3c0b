//! `Builder`: generates bindings from model files in a build script, prost-build style:
//! formatted code into `OUT_DIR`, a `cargo:rerun-if-changed` line per model.

use std::path::{Path, PathBuf};

use crate::rust::Options;

/// Why a build step failed. Its `Display` lists every problem, one per line.
#[derive(Debug)]
pub struct BuildError {
    /// The model file, when the problem is in one.
    pub path: Option<PathBuf>,
    /// What went wrong, one entry per problem.
    pub problems: Vec<String>,
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let prefix = self
            .path
            .as_ref()
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{prefix}{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for BuildError {}

/// Generates Rust bindings for thing models from `build.rs`.
///
/// ```no_run
/// // build.rs
/// fn main() -> Result<(), Box<dyn std::error::Error>> {
///     x_codegen::Builder::new().model("models/smart-plug.json").compile()?;
///     Ok(())
/// }
/// // src/main.rs: x_sdk::include_model!("smart-plug");
/// ```
#[derive(Debug, Clone)]
pub struct Builder {
    models: Vec<(PathBuf, Option<String>)>,
    out_dir: Option<PathBuf>,
    options: Options,
}

impl Default for Builder {
    fn default() -> Self {
        Self::new()
    }
}

impl Builder {
    /// A builder with no models, writing to `OUT_DIR`, generating code against `::x_sdk`.
    pub fn new() -> Self {
        Self {
            models: Vec::new(),
            out_dir: None,
            options: Options::default(),
        }
    }

    /// Adds a model file; its state type is named after the file stem
    /// (`smart-plug.json` -> `SmartPlug`) and the output is `{stem}.rs`.
    #[must_use]
    pub fn model(mut self, path: impl AsRef<Path>) -> Self {
        self.models.push((path.as_ref().to_owned(), None));
        self
    }

    /// Adds a model file with an explicit Rust name for its state type.
    #[must_use]
    pub fn model_named(mut self, path: impl AsRef<Path>, name: &str) -> Self {
        self.models
            .push((path.as_ref().to_owned(), Some(name.to_owned())));
        self
    }

    /// Writes to `dir` instead of `OUT_DIR`.
    #[must_use]
    pub fn out_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.out_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Generates code against another crate path (e.g. `::x_protocol`) instead of `::x_sdk`.
    ///
    /// # Errors
    /// If `path` is not a Rust path.
    pub fn crate_path(mut self, path: &str) -> Result<Self, BuildError> {
        let parsed: syn::Path = syn::parse_str(path).map_err(|e| BuildError {
            path: None,
            problems: vec![format!("crate path {path:?}: {e}")],
        })?;
        self.options.krate = quote::quote!(#parsed);
        Ok(self)
    }

    /// Generates every model, writing `{stem}.rs` files, and prints
    /// `cargo:rerun-if-changed` for each model file.
    ///
    /// # Errors
    /// The first model that cannot be read or is invalid, with all its problems.
    pub fn compile(self) -> Result<Vec<PathBuf>, BuildError> {
        let out_dir = match self
            .out_dir
            .clone()
            .or_else(|| std::env::var_os("OUT_DIR").map(PathBuf::from))
        {
            Some(d) => d,
            None => {
                return Err(BuildError {
                    path: None,
                    problems: vec![
                        "OUT_DIR is not set: run from a build script or call out_dir()".into(),
                    ],
                });
            }
        };
        let mut written = Vec::new();
        for (path, name) in &self.models {
            println!("cargo:rerun-if-changed={}", path.display());
            let code = generate_file(path, name.as_deref(), &self.options)?;
            let stem = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".to_owned());
            let out = out_dir.join(format!("{stem}.rs"));
            std::fs::write(&out, code).map_err(|e| BuildError {
                path: Some(out.clone()),
                problems: vec![format!("cannot write: {e}")],
            })?;
            written.push(out);
        }
        Ok(written)
    }
}

/// Reads, validates and generates one model file: formatted Rust with the
/// "generated, do not edit" header.
///
/// # Errors
/// A [`BuildError`] with every problem of the model.
pub fn generate_file(
    path: &Path,
    name: Option<&str>,
    options: &Options,
) -> Result<String, BuildError> {
    let text = std::fs::read_to_string(path).map_err(|e| BuildError {
        path: Some(path.to_owned()),
        problems: vec![format!("cannot read: {e}")],
    })?;
    let name = name.map_or_else(|| crate::model_name_for(path), str::to_owned);
    let model = crate::load(&text, &name).map_err(|diags| BuildError {
        path: Some(path.to_owned()),
        problems: diags.iter().map(ToString::to_string).collect(),
    })?;
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    format(&crate::rust::module(&model, options), &file_name).map_err(|e| BuildError {
        path: Some(path.to_owned()),
        problems: vec![e],
    })
}

/// Formats generated tokens as a file with the generated-code header.
///
/// # Errors
/// If the tokens are not a valid Rust file (a bug in the emitter).
pub fn format(tokens: &proc_macro2::TokenStream, source: &str) -> Result<String, String> {
    let file: syn::File = syn::parse2(tokens.clone())
        .map_err(|e| format!("internal error: generated code does not parse: {e}"))?;
    // prettyplease writes `#[doc = " x"]` as `///x`; give doc comments their usual space.
    let body: String = prettyplease::unparse(&file)
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            match trimmed.strip_prefix("///") {
                Some(rest) if !rest.is_empty() && !rest.starts_with(' ') => {
                    format!("{}/// {rest}\n", &line[..line.len() - trimmed.len()])
                }
                _ => format!("{line}\n"),
            }
        })
        .collect();
    Ok(format!(
        "// @generated by x-codegen from {source}: do not edit.\n// Regenerate with `x-codegen rust {source}`, or from build.rs with x_codegen::Builder.\n\n{body}"
    ))
}
