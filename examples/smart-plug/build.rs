//! Generates the smart plug's bindings from its exported thing model into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    x_codegen::Builder::new()
        .model("../../models/smart-plug.json")
        .compile()?;
    Ok(())
}
