//! The example as a user runs it: the binary against its in-process platform exits 0 within
//! a bound, and its account of the traffic shows every step and every message kind.
#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn the_example_runs_every_step_and_exits_0() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_smart-plug-example"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "{:?}",
        started.elapsed()
    );
    for needle in [
        "/sys/device/auth",
        "<- CONNECT V2_AA30C505.20MQTTJ000121_1_",
        "firmware_report",
        "update_time",
        "model/property/report",
        "model/event/overheat/report",
        "model/property/set_ack",
        "\"countdown\":600",
        "read-only property",
        "model/property/ask HeaderCtrl 23",
        "answer: {\"power\":",
        "model/service/reset/ack",
        "factory reset needs the button held for 5 s",
        "config_report",
        "downlink_ack",
        "uplink",
        "countdown = 600 s",
        "passthrough data: \"A55A0102\"",
        "3 reports waiting for upload",
        "model/history/data/report",
        "platform holds power = 42.0 at",
        "ota_notify_ack",
        "default 1.5.0 installed",
        "\"SoftVer\":\"1.5.0\"",
        "platform sees firmware \"1.5.0\"",
        "0 bad frames",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Piped output carries no colour codes.
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
}

/// Device mode: the same binary as one device on a platform over Mosquitto (x-sim joined to
/// the broker as `--broker` mode does), answering a property set, for a bounded time.
#[tokio::test(flavor = "multi_thread")]
async fn device_mode_runs_against_x_sim_over_mosquitto() {
    use serde_json::json;
    use x_sim::platform::Command as PlatformCommand;

    let broker = x_sim::mosquitto::Mosquitto::start().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let registry = x_sim::registry::Registry::from_toml(
        r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"

[[device]]
product_id = "AA30C505"
node_eui = "FLAGS001"
"#,
        &root,
    )
    .unwrap();
    let mut config = x_sim::sim::SimConfig::local(registry);
    config.mqtt = x_sim::sim::Mqtt::External {
        host: "127.0.0.1".into(),
        port: broker.port(),
    };
    config.http = None;
    let sim = x_sim::sim::Sim::start(config).await.unwrap();
    let until = Instant::now() + Duration::from_secs(10);
    while !broker.log().contains(" 1 /sys/#") && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let state = std::env::temp_dir().join(format!("plug-flags-{}", std::process::id()));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_smart-plug-example"))
        .args([
            "--broker",
            &broker.url(),
            "--open-id",
            "7ED01E2A",
            "--product-id",
            "AA30C505",
        ])
        .args([
            "--node-eui",
            "FLAGS001",
            "--seconds",
            "6",
            "--report-every",
            "1",
        ])
        .arg("--state-dir")
        .arg(&state)
        .env("X_PRODUCT_KEY", "DB6FACEF35BEBA0517712F0E4BE32936")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let id = sim.device("AA30C505", "FLAGS001").unwrap();
    let p = sim.platform();
    let until = Instant::now() + Duration::from_secs(10);
    while !p.latest_properties(&id).contains_key("power") && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = p
        .send_command(
            &id,
            PlatformCommand::SetProperties(json!({"countdown": 90})),
            None,
        )
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success(), "{answer:?}");
    let out = child.wait_with_output().await.unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    for needle in [
        "state: Online",
        ": acked",
        "platform set",
        "countdown: Some(90)",
        "stopping:",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // The DeviceSecret learnt in the auth phase was kept.
    assert!(state.join("device-state.json").exists());
    let _ = std::fs::remove_dir_all(&state);
}

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_flag() {
    for (args, flag) in [
        (vec!["--broker", "ftp://x"], "--broker"),
        (
            vec!["--broker", "mqtt://x:1", "--open-id", "XYZ"],
            "--open-id",
        ),
        (vec!["--broker", "mqtt://x:1", "--type", "7"], "--type"),
        (
            vec!["--broker", "mqtt://x:1", "--product-key", "00"],
            "--product-key",
        ),
        (vec!["--nonsense"], "--nonsense"),
    ] {
        // Good values from the environment; the flag under test overrides its variable.
        let full = args;
        let out = Command::new(env!("CARGO_BIN_EXE_smart-plug-example"))
            .args(&full)
            .env("X_BROKER", "mqtt://127.0.0.1:1")
            .env("X_OPEN_ID", "7ED01E2A")
            .env("X_PRODUCT_ID", "AA30C505")
            .env("X_NODE_EUI", "PLUG0001")
            .env("X_PRODUCT_KEY", "DB6FACEF35BEBA0517712F0E4BE32936")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{flag}: {stderr}");
        assert!(!stderr.contains("DB6FACEF"), "a key was echoed: {stderr}");
    }
    // A required flag missing, with no variable to stand in: named, with its variable.
    let out = Command::new(env!("CARGO_BIN_EXE_smart-plug-example"))
        .args(["--broker", "mqtt://127.0.0.1:1", "--open-id", "7ED01E2A"])
        .env_remove("X_PRODUCT_ID")
        .env_remove("X_NODE_EUI")
        .env_remove("X_PRODUCT_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("--product-id: required (give the flag or set X_PRODUCT_ID)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("also missing: --node-eui, --product-key"),
        "{stderr}"
    );
}
