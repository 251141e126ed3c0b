//! A restart loses nothing: `x-sim serve --data DIR` as a child process is killed with
//! SIGKILL (no shutdown code runs) and started again on the same directory. Self-registered
//! and run-time registrations, received data, sessions, last offline times and firmware
//! survive.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{SystemTime, UNIX_EPOCH};

use common::smart_plug::SmartPlugReport;
use common::wire::{Mqtt, Refused};
use common::{Api, PLUG_SECRET, Params, Serve, acked, online};
use rumqttc::ConnectReturnCode;
use serde_json::json;
use x_protocol::{ConnectType, DeviceSecret, MqttLogin};

/// The encrypted product, and the smart plug with PLUG0001 (given its secret).
fn registry() -> String {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    [
        common::encrypted_product(),
        common::plug_product(),
        common::plug_device("PLUG0001", &secret),
    ]
    .concat()
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn start(dir: &std::path::Path) -> Serve {
    let data = dir.join("data");
    Serve::local(
        &dir.join("registry.toml"),
        &["--data", data.to_str().unwrap()],
    )
}

/// The HeaderCtrl of each of a device's messages in the API.
fn header_ctrls(messages: &serde_json::Value) -> Vec<i64> {
    common::each(messages, |m| m["HeaderCtrl"].as_i64())
}

#[tokio::test]
async fn a_killed_platform_restarts_with_everything() {
    let dir = tempfile::tempdir().unwrap();
    common::registry_file(dir.path(), &registry());
    let encrypted = common::encrypted("SELF0001");
    let plain = common::plug();
    // The runtime devices keep what they learn (secrets, sessions) in state directories.
    let (enc_state, plain_state) = (dir.path().join("enc"), dir.path().join("plain"));

    let first = start(dir.path());
    let mqtt = first.mqtt.unwrap();
    // A type-0 device registers itself at auth and reports (encrypted).
    let dev = encrypted.plug(mqtt).time_sync(false).state_dir(&enc_state);
    let dev = online(dev).await;
    let report = SmartPlugReport::default()
        .with_switch(true)
        .with_power(42.5);
    acked(dev.report(report)).await.unwrap();
    let session = dev.persisted().unwrap().unwrap().session.unwrap();
    dev.shutdown().await;
    // A type-1 device logs in with a checked timestamp and goes offline.
    let before = now();
    let plain_dev = online(plain.plug(mqtt).state_dir(&plain_state)).await;
    let login_at = plain_dev.persisted().unwrap().unwrap().last_login_timestamp;
    assert!(login_at >= before, "{login_at} < {before}");
    plain_dev.shutdown().await;
    // A device registered at run time over the HTTP API.
    let api = Api::at(first.http.unwrap());
    let new_device = json!({"product_id": "AA30C505", "node_eui": "RUNTIME1"});
    let (_, created) = api.send(api.post("/api/devices").json(&new_device)).await;
    let runtime_secret = created["device_secret"].as_str().unwrap().to_owned();
    // A firmware image and an OTA task.
    let (status, image) = api
        .send(
            api.put("/api/firmware/AA30C505/default/2.0.0/plug.bin")
                .body(vec![7u8; 4096]),
        )
        .await;
    assert_eq!(status, 201, "{image}");
    // The platform saw the type-1 device go offline.
    let plug = api
        .until("/api/devices/AA30C505/PLUG0001", |d| {
            d["last_offline"].is_u64()
        })
        .await;
    let offline_at = plug["last_offline"].as_u64().unwrap();
    assert!(offline_at >= login_at);
    first.kill();

    // Started again on the same directory.
    let second = start(dir.path());
    let mqtt = second.mqtt.unwrap();
    let api = Api::at(second.http.unwrap());
    let devices = api.ok("/api/devices").await;
    let names = common::node_euis(&devices);
    for name in ["SELF0001", "PLUG0001", "RUNTIME1"] {
        assert!(names.contains(&name), "{name} lost: {devices}");
    }
    let props = api.ok("/api/devices/5E7A0B32/SELF0001/properties").await;
    assert_eq!(props["power"]["value"], json!(42.5));
    // Its firmware report at login and its property report.
    let messages = api.ok("/api/devices/5E7A0B32/SELF0001/messages").await;
    assert_eq!(header_ctrls(&messages), [8, 16]);
    let firmware = api.ok("/api/firmware").await;
    assert_eq!(firmware[0]["size"], json!(4096));

    // The last offline time survived: a login stamped before it (which no runtime device
    // sends) is refused (CONNACK 5).
    let secret: DeviceSecret = PLUG_SECRET.parse().unwrap();
    let stale = MqttLogin::connect(
        &plain.id,
        &plain.product_key,
        &secret,
        ConnectType::TimestampChecked,
        offline_at - 1,
    );
    assert_eq!(
        Mqtt::open(mqtt, &stale).await.err(),
        Some(Refused::Code(ConnectReturnCode::NotAuthorized))
    );
    // The run-time device's secret works.
    let runtime = Params::new("AA30C505", "RUNTIME1", "DB6FACEF35BEBA0517712F0E4BE32936");
    let runtime_dev = runtime
        .plug(mqtt)
        .device_secret(runtime_secret.parse().unwrap());
    online(runtime_dev).await.shutdown().await;
    // The session survived: the encrypted device goes on under its key, no new auth.
    let dev = encrypted.plug(mqtt).time_sync(false).state_dir(&enc_state);
    let dev = online(dev).await;
    let report = SmartPlugReport::default().with_power(43.0);
    acked(dev.report(report)).await.unwrap();
    assert_eq!(dev.persisted().unwrap().unwrap().session, Some(session));
    assert!(
        !second.log().iter().any(|l| l.contains("/sys/device/auth")),
        "{:#?}",
        second.log()
    );
    // New data gets sequence numbers after the old ones.
    let messages = api.ok("/api/devices/5E7A0B32/SELF0001/messages").await;
    assert_eq!(header_ctrls(&messages), [8, 16, 8, 16]);
    let seqs = common::seqs(&messages);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // Every message in and out was logged, one line each.
    assert!(second.wait_log("<- /sys/7ED01E2A/5E7A0B32/SELF0001/model/property/report"));
    assert!(second.wait_log("-> /sys/7ED01E2A/5E7A0B32/SELF0001/model/property/report_ack"));
    second.kill();
}

/// An ack means the message is durable: a platform killed (SIGKILL) right after acking a
/// burst of pipelined reports has every one of them after the restart.
#[tokio::test]
async fn reports_acked_right_before_a_kill_survive_it() {
    let dir = tempfile::tempdir().unwrap();
    common::registry_file(dir.path(), &registry());
    let first = start(dir.path());
    let dev = online(common::plug().plug(first.mqtt.unwrap())).await;
    let mut deliveries = Vec::new();
    for n in 0..20u8 {
        let report = SmartPlugReport::default().with_power(f32::from(n));
        deliveries.push(dev.report(report).await.unwrap());
    }
    for delivery in deliveries {
        tokio::time::timeout(std::time::Duration::from_secs(20), delivery)
            .await
            .expect("no ack in time")
            .unwrap();
    }
    first.kill();

    let second = start(dir.path());
    let api = Api::at(second.http.unwrap());
    let messages = api.ok("/api/devices/AA30C505/PLUG0001/messages").await;
    let reports = header_ctrls(&messages)
        .into_iter()
        .filter(|c| *c == 16)
        .count();
    assert_eq!(reports, 20, "{messages}");
    second.kill();
}

/// A device that stays up while the platform process is killed (SIGKILL) and started again
/// on the same directory and port: it goes offline, retries at the pace its connection watch
/// announces (each `Offline { retry_in }` is followed by the next attempt `retry_in` later),
/// logs in again, and its reports keep flowing, those made during the outage included.
#[tokio::test]
async fn a_live_device_reconnects_to_a_restarted_platform_at_the_announced_pace() {
    use std::time::{Duration, Instant};
    use x_runtime::{BackoffConfig, ConnectionState};

    let dir = tempfile::tempdir().unwrap();
    let config = common::registry_file(dir.path(), &registry());
    let data = dir.path().join("data");
    let serve = |listen: &str| {
        Serve::start(&[
            "--config",
            config.to_str().unwrap(),
            "--listen",
            listen,
            "--http",
            "127.0.0.1:0",
            "--data",
            data.to_str().unwrap(),
        ])
    };
    let first = serve("127.0.0.1:0");
    let mqtt = first.mqtt.unwrap();
    // No jitter: delays of 200 ms doubling to 1.6 s, each announced exactly. (Logins with
    // checked timestamps also wait for the next second: that is announced too, but makes
    // the delays depend on the clock.)
    let device = common::plug()
        .plug(mqtt)
        .connect_type(ConnectType::Unchecked)
        .state_dir(dir.path().join("device"))
        .backoff(BackoffConfig {
            base: Duration::from_millis(200),
            cap: Duration::from_millis(1600),
            jitter: 0.0,
        });
    let device = online(device).await;
    let report = |n: i32| SmartPlugReport::default().with_countdown(n);
    acked(device.report(report(1))).await.unwrap();

    // Every state the watch shows, with when it was seen.
    let mut states = device.connection();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(
        Vec::<(Instant, ConnectionState)>::new(),
    ));
    let recorder = {
        let seen = seen.clone();
        tokio::spawn(async move {
            while states.changed().await.is_ok() {
                let state = states.borrow_and_update().clone();
                seen.lock().unwrap().push((Instant::now(), state));
            }
        })
    };

    first.kill();
    // Made during the outage: stored, sent once the platform is back.
    let during = device.report(report(2)).await.unwrap();
    // Long enough for several attempts (200 + 400 + 800 ms of waiting, and the fourth delay).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(!device.is_online());
    let second = serve(&mqtt.to_string());
    assert_eq!(second.mqtt, Some(mqtt));
    device.wait_online_for(2 * common::WAIT).await.unwrap();
    tokio::time::timeout(2 * common::WAIT, during)
        .await
        .expect("the report made during the outage is acked")
        .unwrap();
    acked(device.report(report(3))).await.unwrap();
    let api = Api::at(second.http.unwrap());
    let props = api.ok("/api/devices/AA30C505/PLUG0001/properties").await;
    assert_eq!(props["countdown"]["value"], json!(3));
    recorder.abort();

    // The actual delay after each announced one: from the Offline state to the next state
    // (the next attempt; the session does nothing while it waits).
    let seen = seen.lock().unwrap().clone();
    let mut checked = Vec::new();
    for pair in seen.windows(2) {
        let ((at, ConnectionState::Offline { retry_in, .. }), (next, _)) = (&pair[0], &pair[1])
        else {
            continue;
        };
        let actual = next.duration_since(*at);
        assert!(
            actual + Duration::from_millis(20) >= *retry_in
                && actual <= *retry_in + Duration::from_secs(1),
            "announced {retry_in:?}, retried after {actual:?}: {seen:?}"
        );
        checked.push(*retry_in);
    }
    // The first delays of the backoff were announced and kept.
    assert!(
        checked.starts_with(&[
            Duration::from_millis(200),
            Duration::from_millis(400),
            Duration::from_millis(800)
        ]),
        "{checked:?}: {seen:?}"
    );
    assert_eq!(device.counters().session.reconnects, 1);
    device.shutdown().await;
    second.kill();
}
