//! A smart plug on the X platform: typed bindings generated in build.rs from the platform's
//! exported model, running as a real device on the x-sdk runtime against a local platform
//! (x-sim in-process, its own MQTT broker on a free loopback port).
//!
//! It logs in (auth phase, then the V2 login), reports firmware, syncs time, reports
//! changing values and an event; then the platform side of the same program sends a
//! property set, a property ask, a service call, a config set and passthrough data, and the
//! device answers each; the platform takes the device off for a moment (an outage: its
//! reports wait in the durable outbox and go up as history, with their own times, once it
//! is back); and x-sim's firmware server offers an update, which the device downloads,
//! verifies, installs and reports. Every message is printed as it travels, one line each.
//!
//! Run: `cargo run -p smart-plug-example`
//!
//! With `--broker` it is instead that one device on any platform, answering every command
//! until Ctrl-C or `--seconds N` (see `--help`; every flag also reads an environment
//! variable):
//!
//! ```sh
//! cargo run -p smart-plug-example -- --broker mqtt://127.0.0.1:1883 --open-id 7ED01E2A \
//!     --product-id AA30C505 --node-eui 20MQTTJ000121 \
//!     --product-key DB6FACEF35BEBA0517712F0E4BE32936 --state-dir target/plug-state
//! ```

// The whole generated module, in one line.
x_sdk::include_model!("smart-plug");

use std::path::Path;
use std::time::Duration;

use serde_json::json;
use x_sdk::model::{Date, ServiceFailure};
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::ota::{FileInstaller, OtaEvent};
use x_sdk::runtime::{BackoffConfig, ConnectionState, Device, Request};

mod device_mode;
use x_sim::platform::Command;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

/// The local platform's registry: the plug's product, with this device pre-registered.
const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"

[[device]]
product_id = "AA30C505"
node_eui = "20MQTTJ000121"
"#;

/// The plug's relay: the device side of its services.
struct Relay {
    energy: f64,
}

impl SmartPlugServiceHandler for Relay {
    fn reset(&mut self, scope: ResetScope) -> Result<ResetOutput, ServiceFailure> {
        match scope {
            ResetScope::Key0 => {
                self.energy = 0.0;
                Ok(ResetOutput {
                    result: true,
                    reset_at: Date::now(),
                })
            }
            ResetScope::Key1 => Err("factory reset needs the button held for 5 s".into()),
        }
    }

    fn set_schedule(
        &mut self,
        on_at: Date,
        off_at: Date,
        _repeat: bool,
    ) -> Result<(), ServiceFailure> {
        if off_at <= on_at {
            return Err("offAt must be later than onAt".into());
        }
        Ok(())
    }
}

fn step(what: &str) {
    println!("== {what}");
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let with_flags = !args.is_empty() || std::env::var_os("X_BROKER").is_some();
    let result = if with_flags {
        match device_mode::Flags::parse(&args) {
            Ok(flags) => {
                logging("x_runtime=warn");
                device_mode::run(flags).await
            }
            Err(device_mode::FlagsError::Help(text)) => {
                println!("{text}");
                return std::process::ExitCode::SUCCESS;
            }
            Err(device_mode::FlagsError::Bad(line)) => {
                eprintln!("smart-plug-example: {line}");
                return std::process::ExitCode::from(2);
            }
        }
    } else {
        logging("x_sim=info,x_runtime=warn");
        demo().await
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("smart-plug-example: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One line per event to stdout, colourless when piped.
fn logging(default: &str) {
    let colour = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default.into()),
        )
        .with_ansi(colour)
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout)
        .init();
}

/// The whole protocol against a local platform in this process.
async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    step("starting the local platform (x-sim, embedded broker, firmware server)");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    // The platform's data and the device's state directory live in a temporary directory
    // removed at the end.
    let work = std::env::temp_dir().join(format!("smart-plug-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let mut config = SimConfig::local(Registry::from_toml(REGISTRY, &root)?);
    config.data_dir = Some(work.join("platform"));
    let sim = Sim::start(config).await?;
    let broker = sim.mqtt_addr().ok_or("x-sim has no MQTT address")?;
    let result = run_device(&sim, &work, broker).await;
    drop(sim);
    let _ = std::fs::remove_dir_all(&work);
    result
}

/// The device's part of the demo, and the platform's commands to it.
async fn run_device(
    sim: &Sim,
    work: &Path,
    broker: std::net::SocketAddr,
) -> Result<(), Box<dyn std::error::Error>> {
    let platform = sim.platform();

    step("device: auth phase, V2 login, firmware report, time sync");
    let identity = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121")?;
    let mut relay = Relay { energy: 12.345 };
    let device = Device::<SmartPlug, SmartPlugService>::builder(
        identity.clone(),
        "DB6FACEF35BEBA0517712F0E4BE32936".parse()?,
    )
    .broker(&format!("mqtt://{broker}"))?
    .state_dir(work.join("device"))
    .backoff(BackoffConfig {
        base: Duration::from_millis(200),
        cap: Duration::from_millis(800),
        jitter: 0.2,
    })
    .firmware("SP16A-HW2", "1.4.0")
    .ota(FileInstaller::new(work.join("device").join("installed")))
    .settings(serde_json::from_value(json!({"reportInterval": 60}))?)
    .state(SmartPlug {
        switch: true,
        voltage: 220.4,
        energy: 12.345,
        ..SmartPlug::default()
    })
    .services(move |call: SmartPlugService| call.dispatch(&mut relay))
    .connect()
    .await?;

    step("device: periodic reports of changing values");
    for i in 0..3u8 {
        let power = 23.7 + f32::from(i) * 1.5;
        let current = power / 220.4;
        let report = SmartPlugReport::default()
            .with_power(power)
            .with_current((current * 100.0).round() / 100.0);
        device.report(report).await?.await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    device.report_all().await?.await?;

    step("device: an event");
    device
        .event(&OverheatEvent {
            temperature: 96.5,
            action: OverheatAction::PowerCut,
        })
        .await?
        .await?;

    step("platform: property set (countdown = \"600\", coerced to an int)");
    let answer = platform
        .send_command(
            &identity,
            Command::SetProperties(json!({"countdown": "600"})),
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);
    println!(
        "   device state: countdown = {} s",
        device.state().countdown
    );

    step("platform: property set of a read-only property (refused by the model)");
    let answer = platform
        .send_command(&identity, Command::SetProperties(json!({"power": 1})), None)
        .await?;
    println!("   answer: {}", answer.payload);

    step("platform: property ask");
    let answer = platform
        .send_command(
            &identity,
            Command::AskProperties(vec!["power".into(), "switch".into()]),
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);

    step("platform: service call reset(scope 0), then reset(scope 1)");
    for scope in [0, 1] {
        let call = Command::CallService {
            service: "reset".into(),
            params: json!({ "scope": scope }),
        };
        let answer = platform.send_command(&identity, call, None).await?;
        println!("   answer: {}", answer.payload);
    }

    step("platform: config set");
    let answer = platform
        .send_command(
            &identity,
            Command::SetConfig(json!({"reportInterval": 30})),
            None,
        )
        .await?;
    println!("   answer: {}", answer.payload);

    step("platform: passthrough downlink; device: passthrough uplink");
    platform
        .send_command(&identity, Command::Passthrough(json!("A55A0102")), None)
        .await?;
    device.passthrough(json!("5AA50304")).await?.await?;

    step("device: what the platform asked or told the application");
    while let Ok(Some(request)) =
        tokio::time::timeout(Duration::from_millis(100), device.next_request()).await
    {
        let text = match request {
            Request::PropertiesSet(set) => format!("properties set: {set:?}"),
            Request::ConfigChanged(settings) => format!("config changed: {settings:?}"),
            Request::Passthrough(data) => format!("passthrough data: {data}"),
            Request::TimeSynced {
                platform_ms,
                timezone,
            } => format!("platform clock: {platform_ms} ms ({timezone})"),
            other => format!("{other:?}"),
        };
        println!("   {text}");
    }

    step("outage: the platform takes the device off; its reports wait in the outbox");
    platform.set_enabled("AA30C505", "20MQTTJ000121", false)?;
    let mut connection = device.connection();
    while device.is_online() {
        connection.changed().await?;
    }
    let mut waiting = Vec::new();
    for i in 0..3u8 {
        let report = SmartPlugReport::default().with_power(40.0 + f32::from(i));
        // Durable when the call returns; acked after the device is back.
        waiting.push(device.report(report).await?);
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    println!("   {} reports waiting for upload", device.waiting_upload());
    step("back online: the waiting reports go up as history (27) with their own times");
    platform.set_enabled("AA30C505", "20MQTTJ000121", true)?;
    for delivery in waiting {
        delivery.await?;
    }
    for (id, timed) in platform.property_history(&identity, Some("power")) {
        if timed.value.as_f64().is_some_and(|v| v >= 40.0) {
            println!(
                "   platform holds {id} = {} at {} ms",
                timed.value, timed.time
            );
        }
    }
    if !matches!(*connection.borrow(), ConnectionState::Online) {
        device.wait_online().await?;
    }

    step("OTA: x-sim's firmware server offers 1.5.0; the device downloads, verifies, installs");
    let image: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let firmware = platform.firmware().ok_or("x-sim has no firmware server")?;
    firmware.upload("AA30C505", "default", "1.5.0", "sp16a-1.5.0.bin", &image)?;
    firmware.set_task("AA30C505", "default", "1.5.0")?;
    let notify = platform.ota_notify_for(&identity, None)?;
    platform.send_ota(&identity, notify, None).await?;
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(request) = device.next_request().await {
            match request {
                Request::Ota(OtaEvent::Progress { done, total, .. }) if done == total => {
                    println!("   downloaded {done} of {total} bytes");
                }
                Request::Ota(OtaEvent::Installed { module, version }) => {
                    return Ok(format!("{module} {version} installed"));
                }
                Request::Ota(OtaEvent::Failed { error, .. }) => return Err(error.to_string()),
                _ => {}
            }
        }
        Err("the device stopped".to_owned())
    })
    .await
    .map_err(|_| "no OTA outcome within 10 s")??;
    println!("   {outcome}; logging in again to report it");
    device.wait_online().await?;
    let reported = loop {
        let firmware = platform.state("firmware", &format!("{identity}/default"));
        if let Some(v) = firmware.and_then(|f| f.get("SoftVer").cloned())
            && v == "1.5.0"
        {
            break v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    println!("   platform sees firmware {reported}");

    let counters = device.counters().session;
    step(&format!(
        "done: {} frames sent, {} acked, {} received, {} refused commands, {} bad frames",
        counters.sent,
        counters.acked,
        counters.received,
        counters.refused_commands,
        counters.bad_frames
    ));
    device.shutdown().await;
    Ok(())
}
