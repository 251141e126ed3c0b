//! Secrets stay out of the device's log: an encrypted, self-registering plug runs the auth
//! phase (its reply carries the DeviceSecret, SessionID and Nonce), logs in, reports, has its
//! SessionKey rotated (HeaderCtrl 3 carries a new SessionID and Nonce) and reports again,
//! while the runtime's log is captured at TRACE level. No secret value is in it.
//!
//! Everything runs on one current-thread runtime under a tracing subscriber of the test's
//! own (as in `hostile.rs`), so every line the device task logs is captured.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use crate::plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use crate::support::{self, Captured, WAIT};

use x_sdk::protocol::{DeviceIdentity, RegistrationType};
use x_sdk::runtime::{BackoffConfig, Device, Request};

const PRODUCT_KEY: &str = "00112233445566778899AABBCCDDEEFF";

#[test]
fn no_secret_reaches_the_log_over_an_auth_phase_a_login_and_a_rotation() {
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(captured.clone())
        .with_ansi(false)
        .with_env_filter(tracing_subscriber::EnvFilter::new("x_runtime=trace"))
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _logs = tracing_subscriber::util::SubscriberInitExt::set_default(subscriber);
    let secrets = rt.block_on(run());
    let log = captured.text();

    // The log is there, with both directions of the exchange, in their spans.
    assert!(log.contains("auth phase done"), "{log}");
    assert!(log.contains("SessionKey rotated"), "{log}");
    assert!(log.contains("downlink{"), "no downlink span: {log}");
    assert!(log.contains("uplink{"), "no uplink span: {log}");
    // Each uplink frame in its span: device, topic, HeaderCtrl, MessageId.
    for (topic, header_ctrl) in [
        ("/sys/device/auth", 1),
        ("firmware_report", 8),
        ("model/property/report", 16),
    ] {
        let span = format!(
            "uplink{{device=7ED01E2A/5E7A0B32/SECRET01 topic=\"{topic}\" header_ctrl={header_ctrl} message_id="
        );
        assert!(log.contains(&span), "no {span}: {log}");
    }
    assert!(
        log.contains("header_ctrl=3"),
        "the rotation frame is logged: {log}"
    );
    // The auth reply and the rotation were logged, their secrets as "[redacted]".
    assert!(log.contains("\"DeviceSecret\":\"[redacted]\""), "{log}");
    assert!(log.contains("\"SessionID\":\"[redacted]\""), "{log}");
    assert!(log.contains("\"Nonce\":\"[redacted]\""), "{log}");

    let upper = log.to_ascii_uppercase();
    for (what, value) in &secrets.texts {
        assert!(
            !upper.contains(&value.to_ascii_uppercase()),
            "{what} {value} is in the log:\n{log}"
        );
    }
    for nonce in &secrets.nonces {
        for shape in [
            format!("\"Nonce\":{nonce}"),
            format!("\"Nonce\": {nonce}"),
            format!("nonce: {nonce}"),
            format!("nonce={nonce}"),
        ] {
            assert!(!log.contains(&shape), "Nonce {nonce} is in the log:\n{log}");
        }
    }
}

/// The secret values of the run: texts (hex keys, SessionIDs) and Nonces.
struct Secrets {
    texts: Vec<(&'static str, String)>,
    nonces: Vec<i32>,
}

async fn run() -> Secrets {
    let sim = support::sim().await;
    let p = sim.platform();
    let id = DeviceIdentity::parse("7ED01E2A", "5E7A0B32", "SECRET01").unwrap();
    let dir = std::env::temp_dir().join(format!("x-sdk-secrets-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let device =
        Device::<SmartPlug, SmartPlugService>::builder(id.clone(), PRODUCT_KEY.parse().unwrap())
            .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
            .unwrap()
            .registration(RegistrationType::ProductSecretUnregistered)
            .encrypted(true)
            .state_dir(&dir)
            .backoff(BackoffConfig {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(2),
                jitter: 1.0,
            })
            .connect()
            .await
            .unwrap();
    let first_grant = p.session_grant(&id).unwrap();
    let first_key = p.session_key(&id).unwrap();
    let report = SmartPlugReport::default().with_power(1.5);
    device.report(report).await.unwrap().await.unwrap();

    let second_grant = p.rotate_key(&id).unwrap();
    tokio::time::timeout(WAIT, async {
        while !matches!(device.next_request().await, Some(Request::KeyRotated)) {}
    })
    .await
    .unwrap();
    let second_key = p.session_key(&id).unwrap();
    let report = SmartPlugReport::default().with_power(2.5);
    device.report(report).await.unwrap().await.unwrap();

    let secret = device
        .persisted()
        .unwrap()
        .unwrap()
        .device_secret
        .unwrap()
        .expose()
        .to_owned();
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_ne!(first_grant.session_id, second_grant.session_id);
    Secrets {
        texts: vec![
            ("ProductKey", PRODUCT_KEY.to_owned()),
            ("DeviceSecret", secret),
            ("SessionKey", first_key.expose_hex().to_owned()),
            ("SessionKey", second_key.expose_hex().to_owned()),
            ("SessionID", first_grant.session_id),
            ("SessionID", second_grant.session_id),
        ],
        nonces: vec![first_grant.nonce, second_grant.nonce],
    }
}
