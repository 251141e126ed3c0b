//! The `x-codegen` command: check a thing model, generate its Rust bindings, or document it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use x_codegen::rust::Options;

/// Thing-model compiler for the X platform.
#[derive(Debug, Parser)]
#[command(name = "x-codegen", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print a self-contained, formatted Rust module of the model's bindings.
    Rust {
        /// The model JSON file.
        model: PathBuf,
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Rust name of the state type (default: the file stem in UpperCamelCase).
        #[arg(long)]
        name: Option<String>,
        /// Path of the SDK crate the code uses.
        #[arg(long = "crate", value_name = "PATH", default_value = "::x_sdk")]
        krate: String,
    },
    /// Check the model: exit 0 when valid, else print every problem and exit 1.
    Check {
        /// The model JSON file.
        model: PathBuf,
    },
    /// Print the platform parsing script (plain ES5) of a HEX product.
    Script {
        /// The model JSON file (with a top-level "hex" layout).
        model: PathBuf,
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print a Markdown description of the model for product documentation.
    Doc {
        /// The model JSON file.
        model: PathBuf,
        /// Write to FILE instead of stdout.
        #[arg(short, long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(problems) => {
            for p in &problems {
                eprintln!("{p}");
            }
            ExitCode::from(1)
        }
    }
}

fn load(path: &Path, name: Option<&str>) -> Result<x_codegen::Model, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| vec![format!("{}: cannot read: {e}", path.display())])?;
    let name = name.map_or_else(|| x_codegen::model_name_for(path), str::to_owned);
    x_codegen::load(&text, &name).map_err(|diags| {
        diags
            .iter()
            .map(|d| format!("{}: {d}", path.display()))
            .collect()
    })
}

fn write(output: Option<&Path>, text: &str) -> Result<(), Vec<String>> {
    match output {
        Some(path) => std::fs::write(path, text)
            .map_err(|e| vec![format!("{}: cannot write: {e}", path.display())]),
        None => {
            print!("{text}");
            Ok(())
        }
    }
}

fn run(command: Command) -> Result<(), Vec<String>> {
    match command {
        Command::Rust {
            model,
            output,
            name,
            krate,
        } => {
            let options = Options {
                krate: syn::parse_str::<syn::Path>(&krate)
                    .map(|p| quote::quote!(#p))
                    .map_err(|e| vec![format!("--crate {krate:?}: {e}")])?,
            };
            let code = x_codegen::generate_file(&model, name.as_deref(), &options)
                .map_err(|e| e.to_string().lines().map(str::to_owned).collect::<Vec<_>>())?;
            write(output.as_deref(), &code)
        }
        Command::Check { model } => {
            let m = load(&model, None)?;
            println!(
                "{}: ok ({} properties, {} events, {} services)",
                model.display(),
                m.properties.len(),
                m.events.len(),
                m.services.len()
            );
            Ok(())
        }
        Command::Script { model, output } => {
            let m = load(&model, None)?;
            let source = model
                .file_name()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let script = x_codegen::script::script(&m, &source)
                .map_err(|e| vec![format!("{}: {e}", model.display())])?;
            write(output.as_deref(), &script)
        }
        Command::Doc { model, output } => {
            let m = load(&model, None)?;
            let title = model
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            write(output.as_deref(), &x_codegen::doc::markdown(&m, &title))
        }
    }
}
