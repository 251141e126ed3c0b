//! The fleet tool as CI runs it: 100 devices against x-sim in-process for a few seconds, every
//! report acked, no errors; bad flags exit 2 with one line.
#![allow(clippy::unwrap_used)]

use std::process::Command;

#[test]
fn a_hundred_devices_report_with_no_errors() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--devices", "100", "--reports", "5", "--seconds", "60"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "100 devices x 5 reports",
        "connected 100/100",
        "acked 500/500 reports",
        "ack latency p50",
        "errors: none",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn the_same_load_against_x_sim_in_memory_and_with_a_store_gives_a_ratio() {
    let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--devices", "20", "--reports", "3", "--compare-store"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains("in memory"), "{stdout}");
    assert!(stdout.contains("with a store (--data)"), "{stdout}");
    assert_eq!(stdout.matches("acked 60/60 reports").count(), 2, "{stdout}");
    assert!(
        stdout.contains("ratio acked reports/s with a store / in memory: "),
        "{stdout}"
    );
}

#[test]
fn bad_flags_exit_2_and_bad_files_1_with_one_line() {
    let cases: [(&[&str], i32); 5] = [
        (&["--devices", "many"], 2),
        (&["--devices-file", "x.csv"], 2),
        (&["--type", "7"], 2),
        (&["--compare-store", "--broker", "mqtt://127.0.0.1:1"], 2),
        (
            &[
                "--broker",
                "mqtt://127.0.0.1:1",
                "--devices-file",
                "/nonexistent",
            ],
            1,
        ),
    ];
    for (args, code) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
            .args(args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{args:?}: {stderr}");
    }
}
