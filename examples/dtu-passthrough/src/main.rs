//! A passthrough product on the X platform: a DTU, the serial-to-MQTT gateway in front of a
//! Modbus meter. The product has no thing model; the platform and the gateway exchange the
//! meter's own bytes: a Modbus RTU request goes down as passthrough data (7), the gateway
//! puts it on the serial line, and the meter's answer goes up as passthrough data (4). The
//! product is encrypted: every payload travels under the session's AES key.
//!
//! Run: `cargo run -p dtu-passthrough-example`

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::{Device, NoModel, Request};
use x_sim::platform::Command;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

const PRODUCT_ID: &str = "9A55A55B";
const PRODUCT_KEY: &str = "3F1E2D3C4B5A69788796A5B4C3D2E1F0";
const NODE_EUI: &str = "DTU20240001";

const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "9A55A55B"
product_key = "3F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
encrypted = true
format = "passthrough"

[[device]]
product_id = "9A55A55B"
node_eui = "DTU20240001"
"#;

/// The Modbus CRC-16 (polynomial 0xA001, initial 0xFFFF), sent low byte first.
fn crc16(bytes: &[u8]) -> [u8; 2] {
    let mut crc: u16 = 0xFFFF;
    for &b in bytes {
        crc ^= u16::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xA001
            } else {
                crc >> 1
            };
        }
    }
    crc.to_le_bytes()
}

/// The meter on the serial line: answers "read holding registers" (function 3) for its two
/// registers, voltage (0.1 V) and current (0.01 A); registers it does not have get exception
/// 2 (illegal data address), other functions exception 1.
fn meter(request: &[u8]) -> Vec<u8> {
    let registers: [u16; 2] = [2205, 512];
    let valid = request.len() == 8 && crc16(&request[..6]) == request[6..8];
    let mut answer = match request {
        [slave, 3, 0, start, 0, count, ..] if valid => {
            let (start, count) = (usize::from(*start), usize::from(*count));
            match registers.get(start..start + count) {
                Some(held) => {
                    let mut a = vec![*slave, 3, (count * 2) as u8];
                    for r in held {
                        a.extend_from_slice(&r.to_be_bytes());
                    }
                    a
                }
                None => vec![*slave, 0x83, 2],
            }
        }
        [slave, function, ..] => vec![*slave, function | 0x80, 1],
        _ => vec![0, 0x80, 1],
    };
    let crc = crc16(&answer);
    answer.extend_from_slice(&crc);
    answer
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
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
            eprintln!("dtu-passthrough-example: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    step("starting the local platform (x-sim): an encrypted passthrough product");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let sim = Sim::start(SimConfig::local(Registry::from_toml(REGISTRY, &root)?)).await?;
    let platform = sim.platform();
    let broker = sim.mqtt_addr().ok_or("x-sim has no MQTT address")?;
    let identity = DeviceIdentity::parse("7ED01E2A", PRODUCT_ID, NODE_EUI)?;

    step("gateway: auth phase (it gets its SessionKey), V2 login");
    let gateway = Device::<NoModel>::builder(identity.clone(), PRODUCT_KEY.parse()?)
        .broker(&format!("mqtt://{broker}"))?
        .encrypted(true)
        .firmware("DTU-HW3", "4.2.1")
        .connect()
        .await?;

    // The gateway's relay: passthrough data from the platform goes to the meter, and the
    // meter's answer goes back up.
    let relay = {
        let gateway = gateway.clone();
        tokio::spawn(async move {
            while let Some(request) = gateway.next_request().await {
                let Request::Passthrough(data) = request else {
                    continue;
                };
                let Some(frame) = data.as_str().and_then(unhex) else {
                    println!("   gateway: not a hex frame, dropped: {data}");
                    continue;
                };
                let answer = meter(&frame);
                println!("   serial: -> {}  <- {}", hex(&frame), hex(&answer));
                match gateway.passthrough(Value::String(hex(&answer))).await {
                    Ok(delivery) => {
                        if let Err(e) = delivery.await {
                            println!("   gateway: uplink not acked: {e}");
                        }
                    }
                    Err(e) => println!("   gateway: cannot send: {e}"),
                }
            }
        })
    };

    for (what, request) in [
        (
            "read voltage and current (registers 0-1)",
            [1u8, 3, 0, 0, 0, 2],
        ),
        (
            "read a register the meter does not have (5)",
            [1u8, 3, 0, 5, 0, 1],
        ),
    ] {
        step(&format!("platform: {what}"));
        let mut frame = request.to_vec();
        frame.extend_from_slice(&crc16(&request));
        let before = platform.received_from(&identity).len();
        platform
            .send_command(&identity, Command::Passthrough(json!(hex(&frame))), None)
            .await?;
        let answer = tokio::time::timeout(Duration::from_secs(5), async {
            loop {
                let received = platform.received_from(&identity);
                if let Some(r) = received[before.min(received.len())..]
                    .iter()
                    .find(|r| r.payload.get("data").is_some())
                {
                    return r.payload["data"].clone();
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await?;
        let bytes = answer.as_str().and_then(unhex).unwrap_or_default();
        let reading = match bytes.as_slice() {
            [_, 3, 4, v1, v2, c1, c2, ..] => format!(
                "{:.1} V, {:.2} A",
                f64::from(u16::from_be_bytes([*v1, *v2])) / 10.0,
                f64::from(u16::from_be_bytes([*c1, *c2])) / 100.0
            ),
            [_, f, code, ..] if f & 0x80 != 0 => format!("Modbus exception {code}"),
            _ => "unreadable".to_owned(),
        };
        println!("   platform got {answer}: {reading}");
    }

    let counters = gateway.counters().session;
    step(&format!(
        "done: {} frames sent, {} acked, {} received, {} bad frames",
        counters.sent, counters.acked, counters.received, counters.bad_frames
    ));
    relay.abort();
    gateway.shutdown().await;
    Ok(())
}
