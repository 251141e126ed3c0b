//! Generates the smart plug's bindings (the fleet's devices) into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    x_codegen::Builder::new()
        .model("../../models/smart-plug.json")
        .compile()?;
    Ok(())
}
