//! The passthrough example as a user runs it: exit 0, both Modbus exchanges relayed, every
//! payload encrypted on the wire.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn the_gateway_relays_modbus_frames_both_ways_encrypted() {
    let out = Command::new(env!("CARGO_BIN_EXE_dtu-passthrough-example"))
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
        "/sys/device/auth",
        "/downlink HeaderCtrl 7",
        "/uplink HeaderCtrl 4",
        "serial: -> 010300000002C40B",
        "220.5 V, 5.12 A",
        "Modbus exception 2",
        "0 bad frames",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}
