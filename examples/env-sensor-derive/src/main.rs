//! An environment sensor written by hand: the state struct, its enums, the service enum and
//! an event are plain Rust types with `#[derive(ThingModel, ThingEnum, ThingServices,
//! ThingEvent, ThingStruct)]` instead of bindings generated in build.rs. With
//! `#[thing(model = "models/env-sensor.json")]` the derives check them against the product's
//! exported model at compile time (a property missing, a type or range that disagrees, a
//! misspelt identifier is a compile error pointing at the field), and take ranges and units
//! from it. The same model file is what the local platform validates against.
//!
//! Run: `cargo run -p env-sensor-derive-example`

use std::path::Path;

use serde_json::json;
use x_sdk::model::{Date, ServiceFailure};
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::{Device, Request};
use x_sdk::{ThingEnum, ThingEvent, ThingModel, ThingServices, ThingStruct};
use x_sim::platform::Command;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

/// The sensor's properties, as the model declares them.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(model = "models/env-sensor.json")]
pub struct Sensor {
    /// °C.
    pub temperature: i32,
    /// %RH.
    pub humidity: i32,
    /// µg/m³.
    pub pm25: i32,
    /// ppm.
    pub co2: i32,
    /// Computed from pm25 and co2.
    #[thing(identifier = "airQuality")]
    pub air_quality: Quality,
    /// Seconds between periodic reports.
    #[thing(identifier = "reportInterval")]
    pub report_interval: i32,
    /// Set by the installer.
    pub location: String,
    /// When the CO2 sensor was last calibrated.
    #[thing(identifier = "lastCalibration")]
    pub last_calibration: Date,
    /// Working mode.
    pub mode: Mode,
}

/// Air quality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum Quality {
    /// 0.
    #[default]
    Excellent,
    /// 1.
    Good,
    /// 2.
    Moderate,
    /// 3.
    Poor,
}

/// Working mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum Mode {
    /// 0.
    #[default]
    Normal,
    /// 1.
    Eco,
    /// 2.
    Boost,
}

/// A measured value crossed its threshold.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(identifier = "threshold", model = "models/env-sensor.json")]
pub struct Threshold {
    /// Which value.
    pub param: String,
    /// Its value now.
    pub value: i32,
}

/// What a calibration found.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct Calibrated {
    /// ppm added to the raw reading.
    pub offset: i32,
    /// When.
    #[thing(identifier = "calibratedAt")]
    pub calibrated_at: Date,
}

/// The sensor's services.
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(model = "models/env-sensor.json")]
pub enum SensorService {
    /// CO2 calibration against a reference concentration.
    #[thing(output = Calibrated)]
    Calibrate {
        /// The reference, ppm.
        reference: i32,
    },
}

/// The CO2 sensor.
struct Co2 {
    raw: i32,
}

impl SensorServiceHandler for Co2 {
    fn calibrate(&mut self, reference: i32) -> Result<Calibrated, ServiceFailure> {
        Ok(Calibrated {
            offset: reference - self.raw,
            calibrated_at: Date::now(),
        })
    }
}

const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "3F2B91C4"
product_key = "5B6C7D8E9FA0B1C2D3E4F5061728394A"
registration = 1
format = "json"
model = "models/env-sensor.json"

[[device]]
product_id = "3F2B91C4"
node_eui = "EM200000007"
"#;

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
            eprintln!("env-sensor-derive-example: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    step("starting the local platform (x-sim), validating against models/env-sensor.json");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sim = Sim::start(SimConfig::local(Registry::from_toml(REGISTRY, &root)?)).await?;
    let platform = sim.platform();
    let broker = sim.mqtt_addr().ok_or("x-sim has no MQTT address")?;
    let identity = DeviceIdentity::parse("7ED01E2A", "3F2B91C4", "EM200000007")?;

    step("device: the hand-written model, online");
    let mut co2 = Co2 { raw: 590 };
    let device = Device::<Sensor, SensorService>::builder(
        identity.clone(),
        "5B6C7D8E9FA0B1C2D3E4F5061728394A".parse()?,
    )
    .broker(&format!("mqtt://{broker}"))?
    .firmware("EM200-HW1", "1.0.3")
    .state(Sensor {
        temperature: 22,
        humidity: 45,
        pm25: 8,
        co2: 590,
        air_quality: Quality::Good,
        report_interval: 60,
        location: "3F 会议室 A".into(),
        last_calibration: Date::from_millis(1_717_401_600_000),
        mode: Mode::Normal,
    })
    .services(move |call: SensorService| call.dispatch(&mut co2))
    .connect()
    .await?;

    step("device: a full report, then a partial one (only what changed)");
    device.report_all().await?.await?;
    device
        .report(
            SensorReport::default()
                .with_co2(1350)
                .with_air_quality(Quality::Moderate),
        )
        .await?
        .await?;
    let latest = platform.latest_properties(&identity);
    println!(
        "   platform reads co2 = {}, airQuality = {}, location = {}",
        latest["co2"].value, latest["airQuality"].value, latest["location"].value
    );

    step("device: a value the model does not allow is refused before it is sent");
    let refused = device
        .report(SensorReport::default().with_humidity(140))
        .await;
    match refused {
        Err(e) => println!("   refused on the device: {e}"),
        Ok(_) => return Err("a humidity of 140 % was accepted".into()),
    }

    step("device: an event");
    device
        .event(&Threshold {
            param: "co2".into(),
            value: 1350,
        })
        .await?
        .await?;

    step("platform: property set, and a service call");
    let answer = platform
        .send_command(
            &identity,
            Command::SetProperties(json!({"mode": 2, "reportInterval": 30})),
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);
    let answer = platform
        .send_command(
            &identity,
            Command::CallService {
                service: "calibrate".into(),
                params: json!({"reference": 600}),
            },
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);
    let state = device.state();
    println!(
        "   device state: mode = {:?}, reportInterval = {} s",
        state.mode, state.report_interval
    );
    while let Ok(Some(request)) =
        tokio::time::timeout(std::time::Duration::from_millis(100), device.next_request()).await
    {
        if let Request::PropertiesSet(set) = request {
            println!("   the application is told: {set:?}");
        }
    }

    let counters = device.counters().session;
    step(&format!(
        "done: {} frames sent, {} acked, {} received, {} bad frames",
        counters.sent, counters.acked, counters.received, counters.bad_frames
    ));
    device.shutdown().await;
    Ok(())
}
