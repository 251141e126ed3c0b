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

/// Lines `x-sim serve` prints, handed over as each is complete.
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

/// One HTTP request to x-sim's API over a plain socket: the status line and the body.
fn http(addr: &str, method: &str, path: &str, body: &str) -> (String, String) {
    use std::io::{Read, Write};
    let mut socket = std::net::TcpStream::connect(addr).unwrap();
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    socket.read_to_string(&mut answer).unwrap();
    let status = answer.lines().next().unwrap_or_default().to_owned();
    let body = answer
        .split("\r\n\r\n")
        .nth(1)
        .unwrap_or_default()
        .to_owned();
    (status, body)
}

/// Device mode: the same binary as one device on a platform over Mosquitto: `x-sim serve
/// --broker` (the command's own code, run in a thread of the test) joined to a real
/// Mosquitto, and a property set sent through x-sim's HTTP API; the device answers it and
/// stops after its time.
#[tokio::test(flavor = "multi_thread")]
async fn device_mode_runs_against_x_sim_serve_over_mosquitto() {
    let broker = x_sim::mosquitto::Mosquitto::start().unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dir = std::env::temp_dir().join(format!("plug-flags-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let registry = dir.join("registry.toml");
    std::fs::write(
        &registry,
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
node_eui = "FLAGS001"
"#,
            root.join("models/smart-plug.json").display()
        ),
    )
    .unwrap();
    let (tx, printed) = std::sync::mpsc::channel();
    let args = [
        "x-sim".to_owned(),
        "serve".to_owned(),
        "--config".to_owned(),
        registry.display().to_string(),
        "--broker".to_owned(),
        broker.url(),
        "--http".to_owned(),
        "127.0.0.1:0".to_owned(),
    ];
    // `serve` runs until the process ends (it waits for Ctrl-C or SIGTERM).
    std::thread::spawn(move || x_sim::cli::run(args, std::io::empty(), Lines(tx, Vec::new())));
    let mut http_addr = None;
    let mut joined = false;
    while http_addr.is_none() || !joined {
        let line = printed
            .recv_timeout(Duration::from_secs(10))
            .expect("x-sim serve printed its addresses");
        joined |= line.starts_with("x-sim: platform joined the broker at ");
        if let Some(a) = line.strip_prefix("x-sim: HTTP API on http://") {
            http_addr = Some(a.to_owned());
        }
    }
    let http_addr = http_addr.unwrap();
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
    let properties = "/api/devices/AA30C505/FLAGS001/properties";
    let until = Instant::now() + Duration::from_secs(10);
    while !http(&http_addr, "GET", properties, "").1.contains("power") {
        assert!(Instant::now() < until, "no report reached x-sim serve");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, body) = http(&http_addr, "POST", properties, r#"{"countdown": 90}"#);
    assert!(status.contains(" 200 "), "{status}: {body}");
    assert!(body.contains(r#""Code":"200""#), "{body}");
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
    let _ = std::fs::remove_dir_all(&dir);
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
