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
        "online at the platform after the run: 0",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

/// `--seconds` ends a run that would go on much longer: every device stops reporting and
/// disconnects cleanly, the platform sees none of them online, and the run exits 1 (it did
/// not ack every report) within moments of the limit.
#[test]
fn at_the_time_limit_every_device_disconnects_cleanly() {
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args([
            "--devices",
            "20",
            "--reports",
            "10000",
            "--interval-ms",
            "20",
        ])
        .args(["--seconds", "2"])
        .output()
        .unwrap();
    let took = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "connected 20/20",
        "stopped at --seconds 2: 20 of 20 connected devices disconnected cleanly",
        "errors: stopped at --seconds 2: 1",
        "online at the platform after the run: 0",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    // The limit, the stop's grace (5 s at most) and the start-up, with room for a slow machine.
    assert!(took < std::time::Duration::from_secs(20), "took {took:?}");
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

/// `--broker` with `--devices-file`: devices listed in a file, against `x-sim serve` (the
/// command's own code, in a thread of the test) on its embedded broker, with the same
/// devices in its registry.
#[test]
fn devices_from_a_file_against_x_sim_serve() {
    let dir = std::env::temp_dir().join(format!("fleet-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut registry = format!(
        "[[product]]\nopen_id = \"7ED01E2A\"\nproduct_id = \"AA30C505\"\n\
         product_key = \"DB6FACEF35BEBA0517712F0E4BE32936\"\nregistration = 1\n\
         format = \"json\"\nmodel = \"{}\"\n",
        root.join("models/smart-plug.json").display()
    );
    let mut devices = String::from("# open_id,product_id,node_eui,product_key\n");
    for i in 0..10 {
        registry.push_str(&format!(
            "\n[[device]]\nproduct_id = \"AA30C505\"\nnode_eui = \"FILE{i:04}\"\n"
        ));
        devices.push_str(&format!(
            "7ED01E2A,AA30C505,FILE{i:04},DB6FACEF35BEBA0517712F0E4BE32936\n"
        ));
    }
    std::fs::write(dir.join("registry.toml"), registry).unwrap();
    std::fs::write(dir.join("devices.csv"), devices).unwrap();

    let (tx, printed) = std::sync::mpsc::channel::<String>();
    struct Lines(std::sync::mpsc::Sender<String>, Vec<u8>);
    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.1.extend_from_slice(buf);
            while let Some(end) = self.1.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.1.drain(..=end).collect();
                let _ = self
                    .0
                    .send(String::from_utf8_lossy(&line).trim_end().to_owned());
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let args = [
        "x-sim".to_owned(),
        "serve".to_owned(),
        "--config".to_owned(),
        dir.join("registry.toml").display().to_string(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--http".to_owned(),
        "off".to_owned(),
    ];
    // `serve` runs until the process ends.
    std::thread::spawn(move || x_sim::cli::run(args, std::io::empty(), Lines(tx, Vec::new())));
    let broker = loop {
        let line = printed
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("x-sim serve printed its broker address");
        if let Some(a) = line.strip_prefix("x-sim: broker listening on ") {
            break a.to_owned();
        }
    };

    let out = Command::new(env!("CARGO_BIN_EXE_fleet"))
        .args(["--broker", &format!("mqtt://{broker}")])
        .args(["--devices-file", dir.join("devices.csv").to_str().unwrap()])
        .args(["--reports", "5", "--seconds", "60"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for needle in [
        "10 devices x 5 reports",
        "connected 10/10",
        "acked 50/50 reports",
        "errors: none",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
