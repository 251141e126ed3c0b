//! Generates the sensor's bindings (state, reports, HEX codec, services) into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    x_codegen::Builder::new()
        .model("../../models/env-sensor-hex.json")
        .compile()?;
    Ok(())
}
