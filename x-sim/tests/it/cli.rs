//! The `x-sim` binary as a user runs it: `creds` on the notes' vectors, `crypt` both ways,
//! and bad input exiting 2 with one line on stderr that names the flag.

#![allow(clippy::unwrap_used)] // a failed unwrap is a failed test

use std::io::Write;
use std::process::{Command, Output, Stdio};

const TYPE0_PASSWORD: &str = "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F05876680DBB4A7CB546B1EE27FF10134B";
const TYPE1_PASSWORD: &str = "5EB6BBC8DE5233E632389FA3E8E133F14DC0378BDDE5EDD73E64F682A79D14515CF9C8D4C5A0F469AD773DF9F4BFC8F0725CDE013D77D74F22A59C33F8FE51622BE8CFAD9396E7811545F61CEDA9E4F9";

fn run(args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_x-sim"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A child that rejects its arguments exits without reading stdin: a broken pipe here is
    // expected, not a failure.
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

fn creds_args(connect_type: &'static str) -> Vec<&'static str> {
    vec![
        "creds",
        "--open-id",
        "7ED01E2A",
        "--product-id",
        "AA30C505",
        "--node-eui",
        "20MQTTJ000121",
        "--product-key",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "--device-secret",
        "326086233FAB8A96566796551EB1DFF8",
        "--timestamp",
        "1675404867",
        "--type",
        connect_type,
    ]
}

/// Asserts a failed run: exit code 2, nothing on stdout, one line on stderr.
fn fails_with(args: &[&str], stdin: &[u8], expected: &str) -> String {
    let out = run(args, stdin);
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(out.stdout.is_empty(), "{args:?}");
    assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    assert!(stderr.ends_with('\n'));
    assert!(stderr.contains(expected), "{args:?}: {stderr}");
    stderr
}

#[test]
fn creds_type0_prints_the_notes_vector() {
    let out = run(&creds_args("0"), b"");
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        format!(
            "AuthClientID: AA30C505-20MQTTJ000121\n\
             AuthUserName: AUTH-7ED01E2A-AA30C505\n\
             AuthPassword: DB6FACEF35BEBA0517712F0E4BE32936\n\
             MqttClientID: V2_AA30C505.20MQTTJ000121_0_1675404867\n\
             MqttUserName: 7ED01E2A-AA30C505-20MQTTJ000121\n\
             MqttPassword: {TYPE0_PASSWORD}\n"
        )
    );
}

#[test]
fn creds_type1_with_session_prints_the_session_key_last() {
    let mut args = creds_args("1");
    args.extend(["--session-id", "3788433", "--nonce", "4"]);
    let out = run(&args, b"");
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(
        lines[3],
        "MqttClientID: V2_AA30C505.20MQTTJ000121_1_1675404867"
    );
    assert_eq!(lines[5], format!("MqttPassword: {TYPE1_PASSWORD}"));
    // The same value the library derives (x-protocol/tests/vectors.rs).
    assert_eq!(lines[6], "SessionKey: E9FD1F6A5003A3807A081BC1416F6413");
}

#[test]
fn crypt_encrypts_the_seed_example_and_decrypts_it_back() {
    let plain = br#"{"deviceId":"10000001","power":99}"#;
    let key = "A9AB8E82D2D4A60E67C99D3A446D6088";
    let out = run(&["crypt", "encrypt", "--key", key], plain);
    assert!(out.status.success());
    let hex = String::from_utf8(out.stdout).unwrap();
    assert!(hex.starts_with("CB96395F5065FD121D88B1593EFE"), "{hex}");
    assert_eq!(hex.trim_end().len(), 96);
    let back = run(
        &["crypt", "decrypt", "--key", key],
        hex.to_lowercase().as_bytes(),
    );
    assert!(back.status.success());
    assert_eq!(back.stdout, plain);
}

#[test]
fn bad_input_exits_2_with_one_line_naming_the_flag() {
    let with = |flag: &str, value: &'static str| {
        let mut args = creds_args("0");
        let i = args.iter().position(|a| *a == flag).unwrap();
        args[i + 1] = value;
        args
    };
    fails_with(
        &with("--open-id", "7ED01E2"),
        b"",
        "--open-id: expected 8 characters, got 7",
    );
    fails_with(
        &with("--product-id", "AA30C50Z"),
        b"",
        "--product-id: hex digit expected",
    );
    fails_with(
        &with("--node-eui", "dev/1234"),
        b"",
        "--node-eui: ASCII letter or digit expected, found '/'",
    );
    let e = fails_with(
        &with("--product-key", "DB6FACEF35BEBA0517712F0E4BE3293"),
        b"",
        "--product-key: expected 32 hex characters (16 bytes), got 31 characters",
    );
    assert!(!e.contains("DB6FACEF"), "secrets are never echoed: {e}");
    let e = fails_with(
        &with("--device-secret", "326086233FAB8A96566796551EB1DFFX"),
        b"",
        "--device-secret: expected hex digits",
    );
    assert!(!e.contains("3260"), "secrets are never echoed: {e}");
    fails_with(
        &with("--timestamp", "yesterday"),
        b"",
        "--timestamp: expected Unix seconds",
    );
    fails_with(
        &with("--type", "2"),
        b"",
        "--type: expected 0 or 1, got \"2\"",
    );
    let mut args = creds_args("0");
    args.extend(["--session-id", "3788433"]);
    fails_with(&args, b"", "--nonce: required with --session-id");
    args.extend(["--nonce", "lots"]);
    fails_with(&args, b"", "--nonce: expected a 32-bit integer");
    fails_with(&["creds", "--open-id", "7ED01E2A"], b"", "--product-id");
    fails_with(&["creds", "--bogus"], b"", "--bogus");
    fails_with(&[], b"", "missing subcommand");
    fails_with(
        &["crypt", "encrypt", "--key", "00"],
        b"x",
        "--key: expected 32 hex characters",
    );
    fails_with(
        &[
            "crypt",
            "decrypt",
            "--key",
            "A9AB8E82D2D4A60E67C99D3A446D6088",
        ],
        b"CB96395F5065FD121D88B1593EFE",
        "stdin: ciphertext: 14 bytes is not a positive multiple",
    );
    fails_with(
        &[
            "crypt",
            "decrypt",
            "--key",
            "A9AB8E82D2D4A60E67C99D3A446D6088",
        ],
        b"not hex",
        "stdin: ciphertext: not hex",
    );
}

#[test]
fn help_exits_0() {
    let out = run(&["--help"], b"");
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8(out.stdout).unwrap().contains("creds"));
}
