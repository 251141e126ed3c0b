//! A restart loses nothing: `x-sim serve --data DIR` as a child process is killed with
//! SIGKILL (no shutdown code runs) and started again on the same directory. Self-registered
//! and run-time registrations, received data, sessions, last offline times and firmware
//! survive.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Device, Refused, Serve};
use rumqttc::ConnectReturnCode;
use serde_json::{Value, json};
use x_protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, HeaderCtrl, ProductKey, RegistrationType,
};

const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "5E7A0B32"
product_key = "00112233445566778899AABBCCDDEEFF"
registration = 0
encrypted = true
format = "json"
model = "MODEL"

[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "MODEL"

[[device]]
product_id = "AA30C505"
node_eui = "PLUG0001"
device_secret = "326086233FAB8A96566796551EB1DFF8"
"#;

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn start(dir: &std::path::Path) -> Serve {
    let config = dir.join("registry.toml");
    Serve::start(&[
        "--config",
        config.to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--http",
        "127.0.0.1:0",
        "--data",
        dir.join("data").to_str().unwrap(),
    ])
}

async fn get(serve: &Serve, path: &str) -> Value {
    let url = format!("http://{}{path}", serve.http.unwrap());
    let response = reqwest::get(&url).await.unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_killed_platform_restarts_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    let model = common::root().join("models/smart-plug.json");
    std::fs::write(
        dir.path().join("registry.toml"),
        REGISTRY.replace("MODEL", &model.display().to_string().replace('\\', "/")),
    )
    .unwrap();

    let encrypted = DeviceIdentity::parse("7ED01E2A", "5E7A0B32", "SELF0001").unwrap();
    let enc_key: ProductKey = "00112233445566778899AABBCCDDEEFF".parse().unwrap();
    let plain = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
    let plain_key: ProductKey = "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap();
    let plain_secret: DeviceSecret = "326086233FAB8A96566796551EB1DFF8".parse().unwrap();

    let first = start(dir.path());
    let mqtt = first.mqtt.unwrap();
    // A type-0 device registers itself at auth and reports (encrypted).
    let mut dev = Device::online(
        mqtt,
        &encrypted,
        &enc_key,
        RegistrationType::ProductSecretUnregistered,
    )
    .await;
    let session_key = dev.key.clone().unwrap();
    dev.subscribe(&["model/property/report_ack"]).await;
    let (_, ack) = dev
        .request(
            "model/property/report",
            HeaderCtrl::PropertyReport,
            json!({"switch": 1, "power": 42.5}),
        )
        .await;
    assert_eq!(ack.payload["Code"], "200");
    drop(dev);
    // A type-1 device logs in with a checked timestamp and goes offline.
    let login_at = now();
    let plain_dev = Device::connect(
        mqtt,
        &plain,
        &plain_key,
        &plain_secret,
        ConnectType::TimestampChecked,
        login_at,
    )
    .await
    .unwrap();
    drop(plain_dev);
    // A device registered at run time over the HTTP API.
    let http = first.http.unwrap();
    let client = reqwest::Client::new();
    let created: Value = client
        .post(format!("http://{http}/api/devices"))
        .json(&json!({"product_id": "AA30C505", "node_eui": "RUNTIME1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let runtime_secret = created["device_secret"].as_str().unwrap().to_owned();
    // A firmware image and an OTA task.
    let image = client
        .put(format!(
            "http://{http}/api/firmware/AA30C505/default/2.0.0/plug.bin"
        ))
        .body(vec![7u8; 4096])
        .send()
        .await
        .unwrap();
    assert_eq!(image.status(), 201);
    // The platform saw the type-1 device go offline.
    let wait_offline = async {
        loop {
            let d = get(&first, "/api/devices/AA30C505/PLUG0001").await;
            if d["last_offline"].is_u64() {
                return d["last_offline"].as_u64().unwrap();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let offline_at = tokio::time::timeout(Duration::from_secs(5), wait_offline)
        .await
        .unwrap();
    assert!(offline_at >= login_at);
    first.kill();

    // Started again on the same directory.
    let second = start(dir.path());
    let mqtt = second.mqtt.unwrap();
    let devices = get(&second, "/api/devices").await;
    let names: Vec<&str> = devices
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["node_eui"].as_str().unwrap())
        .collect();
    for name in ["SELF0001", "PLUG0001", "RUNTIME1"] {
        assert!(names.contains(&name), "{name} lost: {devices}");
    }
    let props = get(&second, "/api/devices/5E7A0B32/SELF0001/properties").await;
    assert_eq!(props["power"]["value"], json!(42.5));
    let messages = get(&second, "/api/devices/5E7A0B32/SELF0001/messages").await;
    assert_eq!(messages.as_array().unwrap().len(), 1);
    let firmware = get(&second, "/api/firmware").await;
    assert_eq!(firmware[0]["size"], json!(4096));

    // The last offline time survived: a login stamped before it is refused (CONNACK 5).
    let stale = Device::connect(
        mqtt,
        &plain,
        &plain_key,
        &plain_secret,
        ConnectType::TimestampChecked,
        offline_at - 1,
    )
    .await;
    assert_eq!(
        stale.err(),
        Some(Refused::Code(ConnectReturnCode::NotAuthorized))
    );
    // The run-time device's secret works.
    let runtime = DeviceIdentity::parse("7ED01E2A", "AA30C505", "RUNTIME1").unwrap();
    let secret: DeviceSecret = runtime_secret.parse().unwrap();
    assert!(
        Device::connect(
            mqtt,
            &runtime,
            &plain_key,
            &secret,
            ConnectType::Unchecked,
            1
        )
        .await
        .is_ok()
    );
    // The session survived: the encrypted device goes on under its key without a new auth.
    let secret = x_sim::registry::issued_secret(&enc_key, &encrypted.node_eui);
    let mut dev = Device::connect(
        mqtt,
        &encrypted,
        &enc_key,
        &secret,
        ConnectType::Unchecked,
        1,
    )
    .await
    .unwrap();
    dev.key = Some(session_key);
    dev.subscribe(&["model/property/report_ack"]).await;
    let (_, ack) = dev
        .request(
            "model/property/report",
            HeaderCtrl::PropertyReport,
            json!({"power": 43.0}),
        )
        .await;
    assert_eq!(ack.payload["Code"], "200", "{ack:?}");
    // New data gets sequence numbers after the old ones.
    let messages = get(&second, "/api/devices/5E7A0B32/SELF0001/messages").await;
    let seqs: Vec<u64> = messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 2);
    assert!(seqs[1] > seqs[0], "{seqs:?}");
    // Every message in and out was logged, one line each.
    assert!(second.wait_log("<- /sys/7ED01E2A/5E7A0B32/SELF0001/model/property/report"));
    assert!(second.wait_log("-> /sys/7ED01E2A/5E7A0B32/SELF0001/model/property/report_ack"));
    second.kill();
}
