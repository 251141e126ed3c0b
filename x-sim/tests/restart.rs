//! A restart loses nothing: `x-sim serve --data DIR` as a child process is killed with
//! SIGKILL (no shutdown code runs) and started again on the same directory. Self-registered
//! and run-time registrations, received data, sessions, last offline times and firmware
//! survive.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::{Api, Device, PLUG_SECRET, Refused, Serve};
use rumqttc::ConnectReturnCode;
use serde_json::json;
use x_protocol::{ConnectType, DeviceIdentity, DeviceSecret};

/// The encrypted product, and the smart plug with PLUG0001 (given its secret).
fn registry() -> String {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    [
        common::encrypted_product(),
        common::plug_product(),
        common::plug_device("PLUG0001", &secret),
    ]
    .concat()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn start(dir: &std::path::Path) -> Serve {
    let data = dir.join("data");
    Serve::local(
        &dir.join("registry.toml"),
        &["--data", data.to_str().unwrap()],
    )
}

#[tokio::test]
async fn a_killed_platform_restarts_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    common::registry_file(dir.path(), &registry());

    let (encrypted, enc_key, enc_ty) = common::encrypted("SELF0001");
    let (plain, plain_key, _) = common::plug();
    let plain_secret: DeviceSecret = PLUG_SECRET.parse().unwrap();

    let first = start(dir.path());
    let mqtt = first.mqtt.unwrap();
    // A type-0 device registers itself at auth and reports (encrypted).
    let mut dev = Device::online(mqtt, &encrypted, &enc_key, enc_ty).await;
    let session_key = dev.key.clone().unwrap();
    dev.subscribe(&["model/property/report_ack"]).await;
    let ack = dev
        .report_properties(json!({"switch": 1, "power": 42.5}))
        .await;
    assert_eq!(ack.code.as_str(), "200", "{ack:?}");
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
    let api = Api::at(first.http.unwrap());
    let new_device = json!({"product_id": "AA30C505", "node_eui": "RUNTIME1"});
    let (_, created) = api.send(api.post("/api/devices").json(&new_device)).await;
    let runtime_secret = created["device_secret"].as_str().unwrap().to_owned();
    // A firmware image and an OTA task.
    let (status, image) = api
        .send(
            api.put("/api/firmware/AA30C505/default/2.0.0/plug.bin")
                .body(vec![7u8; 4096]),
        )
        .await;
    assert_eq!(status, 201, "{image}");
    // The platform saw the type-1 device go offline.
    let plug = api
        .until("/api/devices/AA30C505/PLUG0001", |d| {
            d["last_offline"].is_u64()
        })
        .await;
    let offline_at = plug["last_offline"].as_u64().unwrap();
    assert!(offline_at >= login_at);
    first.kill();

    // Started again on the same directory.
    let second = start(dir.path());
    let mqtt = second.mqtt.unwrap();
    let api = Api::at(second.http.unwrap());
    let devices = api.ok("/api/devices").await;
    let names = common::node_euis(&devices);
    for name in ["SELF0001", "PLUG0001", "RUNTIME1"] {
        assert!(names.contains(&name), "{name} lost: {devices}");
    }
    let props = api.ok("/api/devices/5E7A0B32/SELF0001/properties").await;
    assert_eq!(props["power"]["value"], json!(42.5));
    let messages = api.ok("/api/devices/5E7A0B32/SELF0001/messages").await;
    assert_eq!(messages.as_array().unwrap().len(), 1);
    let firmware = api.ok("/api/firmware").await;
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
    let ack = dev.report_properties(json!({"power": 43.0})).await;
    assert_eq!(ack.code.as_str(), "200", "{ack:?}");
    // New data gets sequence numbers after the old ones.
    let messages = api.ok("/api/devices/5E7A0B32/SELF0001/messages").await;
    let seqs = common::seqs(&messages);
    assert_eq!(seqs.len(), 2);
    assert!(seqs[1] > seqs[0], "{seqs:?}");
    // Every message in and out was logged, one line each.
    assert!(second.wait_log("<- /sys/7ED01E2A/5E7A0B32/SELF0001/model/property/report"));
    assert!(second.wait_log("-> /sys/7ED01E2A/5E7A0B32/SELF0001/model/property/report_ack"));
    second.kill();
}
