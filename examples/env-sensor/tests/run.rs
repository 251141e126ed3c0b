//! The HEX sensor example as a user runs it: it exits 0, the platform reads every value
//! through the script generated from the same model, and each HEX command goes both ways.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_hex_sensor_example_runs_every_command_through_the_generated_script() {
    let out = Command::new(env!("CARGO_BIN_EXE_env-sensor-example"))
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "lines of ES5",
        "model/hex/report HeaderCtrl 18",
        "platform reads temperature = -5",
        "platform reads co2 = 1450",
        "HeaderCtrl 19",
        "platform reads event sensorFault {\"code\":7}",
        "model/hex/downlink HeaderCtrl 22",
        "device state: reportInterval = 300 s, mode = Eco",
        "HeaderCtrl 26",
        "\"Data\":{\"offset\":28}",
        "\"Code\":\"4001\"",
        "model/hex/downlink HeaderCtrl 25",
        "\"reportInterval\":300",
        "0 bad frames",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
}
