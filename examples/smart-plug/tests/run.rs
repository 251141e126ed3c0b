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
        "firmware_report",
        "update_time",
        "model/property/report",
        "model/event/overheat/report",
        "model/property/set_ack",
        "\"countdown\":600",
        "read-only property",
        "model/service/reset/ack",
        "factory reset needs the button held for 5 s",
        "config_report",
        "downlink_ack",
        "uplink",
        "countdown = 600 s",
        "passthrough data: \"A55A0102\"",
        "0 bad frames",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // Piped output carries no colour codes.
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
}
