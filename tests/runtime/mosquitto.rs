//! The same device code over a real Mosquitto (the Debian package), with x-sim joined to it
//! as a client (`--broker` mode): the login, reports and commands; the broker killed and
//! restarted under a reporting device; and `mqtts://` through Mosquitto's TLS listener with a
//! CA of the test's own (and a device that does not trust the broker's certificate).
#![allow(clippy::unwrap_used)]

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
use crate::plug;

use std::time::Duration;

use crate::support;

use plug::{SmartPlug, SmartPlugReport, SmartPlugService};
use serde_json::json;
use support::WAIT;
use x_sdk::protocol::DeviceIdentity;
use x_sdk::runtime::{BackoffConfig, ConnectionState, Device, DeviceBuilder};
use x_sim::mosquitto::Mosquitto;
use x_sim::platform::Command;

fn plug(
    url: &str,
    product_id: &str,
    key: &str,
    node_eui: &str,
) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    Device::<SmartPlug, SmartPlugService>::builder(id, key.parse().unwrap())
        .broker(url)
        .unwrap()
        .backoff(BackoffConfig {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            jitter: 1.0,
        })
        .ack_timeout(Duration::from_secs(3))
}

#[tokio::test]
async fn the_same_device_code_runs_over_mosquitto_and_survives_a_broker_restart() {
    let mut broker = Mosquitto::start().unwrap();
    let sim = support::sim_on(&broker).await;
    let p = sim.platform();
    let device = plug(
        &broker.url(),
        "5E7A0B32",
        "00112233445566778899AABBCCDDEEFF",
        "ENCMQ001",
    )
    .registration(x_sdk::protocol::RegistrationType::ProductSecretUnregistered)
    .encrypted(true)
    .connect()
    .await
    .unwrap();
    let id = sim.device("5E7A0B32", "ENCMQ001").unwrap();
    // The auth connection, once closed, stays closed (rumqttc reconnects an event loop
    // polled after its DISCONNECT: the runtime never does that).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let auth_connects = broker.log().matches("as 5E7A0B32-ENCMQ001 ").count();
    assert_eq!(auth_connects, 1, "{}", broker.log());
    device
        .report(SmartPlugReport::default().with_power(1.0))
        .await
        .unwrap()
        .await
        .unwrap();
    let answer = p
        .send_command(&id, Command::SetProperties(json!({"countdown": 60})), None)
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success());

    // The broker goes away under a reporting device and comes back on the same port.
    let mut states = device.connection();
    broker.kill();
    tokio::time::timeout(WAIT, async {
        while !matches!(*states.borrow_and_update(), ConnectionState::Offline { .. }) {
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    let offline = device
        .report(SmartPlugReport::default().with_power(2.0))
        .await;
    assert!(offline.is_err(), "{offline:?}");
    broker.restart().unwrap();
    device.wait_online_for(WAIT).await.unwrap();
    // The platform rejoins too; reports flow again once it is subscribed.
    let mut acked: u8 = 0;
    let until = std::time::Instant::now() + WAIT;
    while acked < 5 && std::time::Instant::now() < until {
        let d = device
            .report(SmartPlugReport::default().with_power(10.0 + f32::from(acked)))
            .await;
        if let Ok(d) = d
            && d.await.is_ok()
        {
            acked += 1;
        }
    }
    assert_eq!(acked, 5, "{}", broker.log());
    assert_eq!(p.latest_properties(&id)["power"].value, json!(14.0));
}

#[tokio::test]
async fn mqtts_with_a_ca_file_and_a_broker_it_does_not_trust() {
    let dir = std::env::temp_dir().join(format!("x-sdk-tls-{}", std::process::id()));
    let (ca_file, files) = support::certificates(&dir);
    let broker = Mosquitto::start_with_tls(files).unwrap();
    let sim = support::sim_on(&broker).await;
    let url = broker.tls_url().unwrap();
    let device = plug(
        &url,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .ca_file(&ca_file)
    .connect()
    .await
    .unwrap();
    device.report_all().await.unwrap().await.unwrap();
    let id = sim.device("AA30C505", "PLUG0001").unwrap();
    assert!(sim.platform().latest_properties(&id).contains_key("switch"));

    // Another CA: the handshake fails, the device stays offline and says why.
    let (other_ca, _) = support::certificates(&dir.join("other"));
    let stranger = plug(
        &url,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .ca_file(&other_ca)
    .start()
    .unwrap();
    let mut states = stranger.connection();
    let reason = tokio::time::timeout(WAIT, async {
        loop {
            if let ConnectionState::Offline { reason, .. } = states.borrow_and_update().clone() {
                return reason;
            }
            states.changed().await.unwrap();
        }
    })
    .await
    .unwrap();
    assert!(reason.to_lowercase().contains("certificate"), "{reason}");
    // A CA file that is not PEM is refused up front, naming the file.
    let bad = dir.join("bad.pem");
    std::fs::write(&bad, "not a certificate").unwrap();
    let err = plug(
        &url,
        "AA30C505",
        "DB6FACEF35BEBA0517712F0E4BE32936",
        "PLUG0001",
    )
    .ca_file(&bad)
    .start()
    .unwrap_err();
    assert!(err.to_string().contains("bad.pem"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A scripted platform on Mosquitto that answers every auth request with `code`.
async fn auth_answering(broker: &Mosquitto, code: i64) -> tokio::task::JoinHandle<()> {
    use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
    let mut options = MqttOptions::new(format!("fake-platform-{code}"), "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 16);
    client
        .subscribe("/sys/device/auth", QoS::AtLeastOnce)
        .await
        .unwrap();
    let task = tokio::spawn(async move {
        while let Ok(event) = events.poll().await {
            let Event::Incoming(Packet::Publish(p)) = event else {
                continue;
            };
            let Ok(request) = x_sdk::protocol::Frame::decode(&p.payload) else {
                continue;
            };
            let auth: x_sdk::protocol::payload::AuthRequest = request.payload_as().unwrap();
            let id = DeviceIdentity::new(auth.open_id, auth.product_id, auth.node_eui);
            let reply = x_sdk::protocol::Frame::new(
                request.message_id,
                x_sdk::protocol::HeaderCtrl::Auth,
                json!({ "Code": code }),
            );
            let topic = format!("{}/downlink", id.topic_prefix());
            client
                .publish(topic, QoS::AtLeastOnce, false, reply.encode())
                .await
                .unwrap();
        }
    });
    // Subscribed before any device asks.
    let until = std::time::Instant::now() + WAIT;
    while !broker
        .log()
        .contains(&format!("fake-platform-{code} 1 /sys/device/auth"))
        && std::time::Instant::now() < until
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task
}

#[tokio::test]
async fn every_auth_code_is_a_typed_refusal_and_only_busy_retries_soon() {
    use x_sdk::protocol::payload::AuthCode;
    use x_sdk::runtime::Refusal;
    let broker = Mosquitto::start().unwrap();
    for (code, expected) in [
        (1, AuthCode::Busy),
        (2, AuthCode::ProductNotRegistered),
        (4, AuthCode::DeviceRejected),
        (5, AuthCode::TypeMismatch),
        (6, AuthCode::VersionMismatch),
        (9, AuthCode::Unknown(9)),
    ] {
        let platform = auth_answering(&broker, code).await;
        let device = plug(
            &broker.url(),
            "AA30C505",
            "DB6FACEF35BEBA0517712F0E4BE32936",
            "PLUG0001",
        )
        .start()
        .unwrap();
        let mut states = device.connection();
        let (reason, retry_in) = tokio::time::timeout(WAIT, async {
            loop {
                if let ConnectionState::Refused { reason, retry_in } =
                    states.borrow_and_update().clone()
                {
                    return (reason, retry_in);
                }
                states.changed().await.unwrap();
            }
        })
        .await
        .unwrap();
        assert_eq!(reason, Refusal::Auth(expected), "code {code}");
        // Busy backs off from the base (0.1 s here); the others wait at least half the cap (1 s).
        if code == 1 {
            assert!(retry_in <= Duration::from_millis(100), "{retry_in:?}");
        } else {
            assert!(
                retry_in >= Duration::from_millis(500),
                "code {code}: {retry_in:?}"
            );
        }
        assert!(!reason.to_string().is_empty());
        device.shutdown().await;
        platform.abort();
    }
}
