//! A HEX environment sensor on the X platform. One declaration, `models/env-sensor-hex.json`,
//! gives both ends of its byte layout: the device's codec (generated in build.rs) and the
//! platform's JavaScript parsing script (generated here from the same model, written to a
//! file and loaded into a local x-sim, which runs it in a JavaScript engine).
//!
//! The sensor reports its readings as HEX (18), raises a HEX event (19), and answers the
//! platform's property set (20 -> 22), service call (21 -> 24, answered with 26) and property
//! ask (23 -> 25, answered with 18), each translated by the script. Every message is printed
//! as it travels.
//!
//! Run: `cargo run -p env-sensor-example`

x_sdk::include_model!("env-sensor-hex");

use std::path::Path;

use serde_json::json;
use x_sdk::model::ServiceFailure;
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::Device;
use x_sim::platform::Command;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

const OPEN_ID: &str = "7ED01E2A";
const PRODUCT_ID: &str = "3F2B91C5";
const PRODUCT_KEY: &str = "4A1B2C3D4E5F60718293A4B5C6D7E8F9";
const NODE_EUI: &str = "EM200H000042";

/// The CO2 sensor: the device side of the `calibrate` service.
struct Co2Sensor {
    raw: i32,
}

impl EnvSensorHexServiceHandler for Co2Sensor {
    fn calibrate(&mut self, reference: i32) -> Result<CalibrateOutput, ServiceFailure> {
        let offset = reference - self.raw;
        if offset.abs() > 500 {
            return Err(format!(
                "reference {reference} ppm is {offset} ppm off the sensor: refused"
            )
            .into());
        }
        Ok(CalibrateOutput { offset })
    }
}

fn step(what: &str) {
    println!("== {what}");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "x_sim=info,x_runtime=warn".into()),
        )
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout)
        .init();
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("env-sensor-example: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model_path = root.join("models/env-sensor-hex.json");
    let work = std::env::temp_dir().join(format!("env-sensor-demo-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;

    step("platform: the parsing script, generated from the model the device's codec came from");
    let text = std::fs::read_to_string(&model_path)?;
    let model = x_codegen::load(&text, "env-sensor-hex").map_err(|errors| {
        errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    })?;
    let script = x_codegen::script::script(&model, "env-sensor-hex")?;
    let script_path = work.join("env-sensor-hex.js");
    std::fs::write(&script_path, &script)?;
    println!(
        "   {} ({} lines of ES5)",
        script_path.display(),
        script.lines().count()
    );

    step("starting the local platform with that script");
    let registry = format!(
        r#"
[[product]]
open_id = "{OPEN_ID}"
product_id = "{PRODUCT_ID}"
product_key = "{PRODUCT_KEY}"
registration = 1
format = "hex"
model = {model:?}
script = {script:?}

[[device]]
product_id = "{PRODUCT_ID}"
node_eui = "{NODE_EUI}"
"#,
        model = model_path.display().to_string(),
        script = script_path.display().to_string(),
    );
    let sim = Sim::start(SimConfig::local(Registry::from_toml(&registry, &root)?)).await?;
    let result = sensor(&sim).await;
    drop(sim);
    let _ = std::fs::remove_dir_all(&work);
    result
}

async fn sensor(sim: &Sim) -> Result<(), Box<dyn std::error::Error>> {
    let platform = sim.platform();
    let broker = sim.mqtt_addr().ok_or("x-sim has no MQTT address")?;
    let identity = DeviceIdentity::parse(OPEN_ID, PRODUCT_ID, NODE_EUI)?;

    step("device: auth phase, V2 login, firmware report, time sync");
    let mut co2 = Co2Sensor { raw: 612 };
    let device = Device::<EnvSensorHex, EnvSensorHexService>::builder(
        identity.clone(),
        PRODUCT_KEY.parse()?,
    )
    .broker(&format!("mqtt://{broker}"))?
    .firmware("EM200H-HW1", "2.3.0")
    .hex(false)
    .state(EnvSensorHex {
        temperature: 23,
        humidity: 41,
        pm25: 12,
        co2: 612,
        air_quality: AirQuality::Good,
        report_interval: 60,
        mode: Mode::Normal,
    })
    .hex_services(move |call: EnvSensorHexService, out: &mut [u8]| call.dispatch_hex(&mut co2, out))
    .connect()
    .await?;

    step("device: readings as HEX (18); the platform decodes them with the script");
    device.report_all().await?.await?;
    // A positional layout carries every property in each report: new readings go into the
    // state, and the whole state is reported.
    device.update(|s| {
        s.temperature = -5;
        s.co2 = 1450;
        s.air_quality = AirQuality::Moderate;
    });
    device.report_all().await?.await?;
    for (id, timed) in platform.latest_properties(&identity) {
        println!("   platform reads {id} = {}", timed.value);
    }

    step("device: a HEX event (19)");
    device
        .hex_event(&SensorFaultEvent { code: 7 })
        .await?
        .await?;
    if let Some(event) = platform.events(&identity).pop() {
        println!(
            "   platform reads event {} {}",
            event.identifier, event.value
        );
    }

    step("platform: property set (20, sent as 22 through the script)");
    let answer = platform
        .send_command(
            &identity,
            Command::SetProperties(json!({"reportInterval": 300, "mode": 1})),
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);
    let state = device.state();
    println!(
        "   device state: reportInterval = {} s, mode = {:?}",
        state.report_interval, state.mode
    );

    step("platform: service call calibrate (21, sent as 24; answered with 26)");
    for reference in [640, 1500] {
        let call = Command::CallService {
            service: "calibrate".into(),
            params: json!({ "reference": reference }),
        };
        let answer = platform.send_command(&identity, call, None).await?;
        println!("   answer: {}", answer.payload);
    }

    step("platform: property ask (23, sent as 25; answered with 18)");
    let answer = platform
        .send_command(
            &identity,
            Command::AskProperties(vec!["co2".into(), "mode".into()]),
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);

    let counters = device.counters().session;
    step(&format!(
        "done: {} frames sent, {} acked, {} received, {} bad frames",
        counters.sent, counters.acked, counters.received, counters.bad_frames
    ));
    device.shutdown().await;
    Ok(())
}
