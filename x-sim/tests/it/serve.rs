//! `x-sim serve` as a user runs it: a child process with a registry file, reached by a real
//! MQTT client.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::process::Command;

use common::wire::{Mqtt, Refused};
use common::{PLUG_SECRET, plug_device};
use rumqttc::ConnectReturnCode;
use x_protocol::{ConnectType, DeviceIdentity, MqttLogin};

#[tokio::test]
async fn serve_runs_the_platform_for_real_clients() {
    let dir = tempfile::tempdir().unwrap();
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    let toml = [
        common::plug_product(),
        plug_device("20MQTTJ000121", &secret),
    ]
    .concat();
    let serve = common::Serve::local(&common::registry_file(dir.path(), &toml), &[]);
    let addr = serve.mqtt.unwrap();

    let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "20MQTTJ000121").unwrap();
    let pk = "DB6FACEF35BEBA0517712F0E4BE32936".parse().unwrap();
    let login = |secret: &str| {
        let secret = secret.parse().unwrap();
        MqttLogin::connect(&device, &pk, &secret, ConnectType::Unchecked, 1)
    };
    assert!(Mqtt::open(addr, &login(PLUG_SECRET)).await.is_ok());
    // A wrong secret.
    let bad = login("00000000000000000000000000000000");
    assert_eq!(
        Mqtt::open(addr, &bad).await.err(),
        Some(Refused::Code(ConnectReturnCode::BadUserNamePassword))
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

/// `--firmware-url` names the base of the image URLs devices are sent, as they reach x-sim;
/// a value that is not an HTTP(S) URL exits 2 naming the flag.
#[tokio::test]
async fn firmware_urls_start_with_the_base_given() {
    let dir = tempfile::tempdir().unwrap();
    let toml = [common::plug_product(), plug_device("PLUG0001", "")].concat();
    let config = common::registry_file(dir.path(), &toml);
    let out = Command::new(env!("CARGO_BIN_EXE_x-sim"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--http", "127.0.0.1:0"])
        .args(["--firmware-url", "ftp://firmware.example"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.starts_with("error: --firmware-url: "), "{stderr}");

    let data = dir.path().join("data");
    let serve = common::Serve::local(
        &config,
        &[
            "--data",
            data.to_str().unwrap(),
            "--firmware-url",
            "http://firmware.example:9000",
        ],
    );
    let api = common::Api::at(serve.http.unwrap());
    let (status, _) = api
        .send(
            api.put("/api/firmware/AA30C505/default/1.0.1/plug.bin")
                .body(vec![1u8; 10]),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::CREATED);
    let (status, _) = api
        .send(
            api.put("/api/ota/AA30C505/default")
                .body(r#"{"version":"1.0.1"}"#),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);
    let device = common::online(common::plug().plug(serve.mqtt.unwrap())).await;
    let notify = common::request(&device, |r| match r {
        x_runtime::Request::OtaNotify(n) => Some(n),
        _ => None,
    })
    .await;
    assert_eq!(
        notify.url,
        "http://firmware.example:9000/firmware/AA30C505/default/1.0.1/plug.bin"
    );
    device.shutdown().await;
    serve.kill();
}
