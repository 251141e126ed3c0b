//! `x-sim serve` as a user runs it: a child process with a registry file, reached by a real
//! MQTT client.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectReturnCode, ConnectionError, Event, MqttOptions, Packet};
use x_protocol::{ConnectType, DeviceIdentity, MqttLogin};

fn config() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("x-sim-serve-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let model = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/smart-plug.json");
    let file = dir.join("registry.toml");
    std::fs::write(
        &file,
        format!(
            r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "{}"

[[device]]
product_id = "AA30C505"
node_eui = "20MQTTJ000121"
device_secret = "326086233FAB8A96566796551EB1DFF8"
"#,
            model.display()
        ),
    )
    .unwrap();
    file
}

#[tokio::test]
async fn serve_runs_the_platform_for_real_clients() {
    let serve = common::Serve::local(&config(), &[]);
    let addr = serve.mqtt.unwrap();

    let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
    let connect = |login: MqttLogin| async move {
        let mut options = MqttOptions::new(&login.client_id, addr.ip().to_string(), addr.port());
        options.set_credentials(&login.username, login.password.expose());
        let (_c, mut events) = AsyncClient::new(options, 8);
        tokio::time::timeout(Duration::from_secs(5), async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                    Err(ConnectionError::ConnectionRefused(code)) => return Err(code),
                    Err(e) => panic!("{e}"),
                    _ => {}
                }
            }
        })
        .await
        .unwrap()
    };
    let pk = "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap();
    let good = MqttLogin::connect(
        &device,
        &pk,
        &"326086233FAB8A96566796551EB1DFF8".parse().unwrap(),
        ConnectType::Unchecked,
        1,
    );
    assert_eq!(connect(good).await, Ok(()));
    let bad = MqttLogin::connect(
        &device,
        &pk,
        &"00000000000000000000000000000000".parse().unwrap(),
        ConnectType::Unchecked,
        1,
    );
    assert_eq!(
        connect(bad).await,
        Err(ConnectReturnCode::BadUserNamePassword)
    );
    // Every message is logged as one line, the refusal with its CONNACK code.
    assert!(
        serve.wait_log("refused with CONNACK 4"),
        "{:#?}",
        serve.log()
    );
    serve.kill();
}

#[test]
fn serve_refuses_a_bad_config_with_one_line() {
    let dir = std::env::temp_dir().join(format!("x-sim-serve-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(&file, "[[product]]\nopen_id = \"7ED01E2A\"\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_x-sim"))
        .args(["serve", "--config", file.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("error: --config: registry line 1: missing field `product_id`"),
        "{stderr}"
    );
}

/// The registry the README and docs/x-sim.md start the platform with.
#[test]
fn the_example_registry_loads() {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/x-sim-registry.toml");
    let registry = x_sim::registry::Registry::load(&path).unwrap();
    assert_eq!(registry.products().count(), 3);
    let meter = registry.product("4D455445").unwrap();
    assert!(
        meter
            .script
            .as_deref()
            .unwrap()
            .contains("function rawDataToProtocol")
    );
}
