//! The derive example as a user runs it: exit 0, the hand-written model talks to a platform
//! validating against the model file, and a value out of the model's range never leaves.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_hand_written_model_runs_against_the_platform() {
    let out = Command::new(env!("CARGO_BIN_EXE_env-sensor-derive-example"))
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
        "model/property/report",
        "platform reads co2 = 1350, airQuality = 2",
        "humidity: 140 is above the maximum 100",
        "model/event/threshold/report",
        "device state: mode = Boost, reportInterval = 30 s",
        "\"offset\":10",
        "0 bad frames",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // The refused value never reached the platform.
    assert!(!stdout.contains("\"humidity\":140"), "{stdout}");
}
