//! The platform over the simulator broker, with real MQTT clients: the two-phase login of an
//! encrypted type-0 product, acks of encrypted reports, events and time sync.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use serde_json::{Value, json};
use x_protocol::payload::{AuthCode, AuthReply, AuthRequest, TimeSyncData};
use x_protocol::{
    ConnectType, DeviceIdentity, Frame, HeaderCtrl, MqttLogin, ProductKey, RegistrationType,
    SessionKey, Topic, TopicKind, derive_session_key,
};
use x_sim::broker::BrokerHandle;
use x_sim::platform::Platform;
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "5E7A0B32"
product_key = "00112233445566778899AABBCCDDEEFF"
registration = 0
encrypted = true
format = "json"
model = "models/smart-plug.json"
"#;

async fn start() -> (BrokerHandle, Platform, Sim) {
    let registry = Registry::from_toml(
        REGISTRY,
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    )
    .unwrap();
    let sim = Sim::start(SimConfig::local(registry)).await.unwrap();
    (sim.broker().unwrap().clone(), sim.platform().clone(), sim)
}

fn device() -> DeviceIdentity {
    DeviceIdentity::parse("7ED01E2A", "5E7A0B32", "MTR0001").unwrap()
}

fn product_key() -> ProductKey {
    "00112233445566778899AABBCCDDEEFF".parse().unwrap()
}

fn client(broker: &BrokerHandle, login: &MqttLogin) -> (AsyncClient, EventLoop) {
    let mut options = MqttOptions::new(
        &login.client_id,
        broker.addr().ip().to_string(),
        broker.addr().port(),
    );
    options.set_credentials(&login.username, login.password.expose());
    AsyncClient::new(options, 16)
}

/// Polls until a PUBLISH arrives; fails on a connection error or after two seconds.
async fn next_publish(events: &mut EventLoop) -> (String, Frame) {
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    return (p.topic, Frame::decode(&p.payload).unwrap());
                }
                Err(e) => panic!("connection failed: {e}"),
                _ => {}
            }
        }
    })
    .await
    .expect("no message within two seconds")
}

async fn subscribed(events: &mut EventLoop) {
    tokio::time::timeout(Duration::from_secs(2), async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) => return,
                Err(e) => panic!("connection failed: {e}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap();
}

/// The auth phase: returns the DeviceSecret's login for the V2 phase and the SessionKey.
async fn authenticate(broker: &BrokerHandle, ty: RegistrationType) -> AuthReply {
    let login = MqttLogin::auth(&device(), &product_key());
    let (c, mut events) = client(broker, &login);
    c.subscribe(
        format!("{}/downlink", device().topic_prefix()),
        QoS::AtLeastOnce,
    )
    .await
    .unwrap();
    subscribed(&mut events).await;
    let request = AuthRequest {
        open_id: device().open_id,
        product_id: device().product_id,
        node_eui: device().node_eui,
        registration_type: ty,
    };
    let frame = Frame::with_payload(1231u32, HeaderCtrl::Auth, &request).unwrap();
    c.publish("/sys/device/auth", QoS::AtLeastOnce, false, frame.encode())
        .await
        .unwrap();
    let (topic, reply) = next_publish(&mut events).await;
    assert_eq!(topic, format!("{}/downlink", device().topic_prefix()));
    assert_eq!(reply.header_ctrl, HeaderCtrl::Auth);
    assert_eq!(reply.message_id, 1231u32.into());
    reply.payload_as().unwrap()
}

/// An ack of an encrypted product's message: its payload is encrypted under the SessionKey.
fn plain_ack(frame: &Frame, key: &SessionKey) -> x_protocol::AckPayload {
    serde_json::from_value(frame.decrypted_payload(key).unwrap()).unwrap()
}

#[tokio::test]
async fn two_phase_login_and_encrypted_reports() {
    let (broker, platform, _sim) = start().await;
    // A type mismatch is refused with code 5.
    let refused = authenticate(&broker, RegistrationType::ProductSecretPreRegistered).await;
    assert_eq!(refused.code, AuthCode::TypeMismatch);

    // Type 0: the device registers itself and gets its secret and a session.
    let reply = authenticate(&broker, RegistrationType::ProductSecretUnregistered).await;
    assert_eq!(reply.code, AuthCode::Ok);
    let secret = reply.device_secret().unwrap();
    let grant = reply.session().unwrap();
    let key: SessionKey =
        derive_session_key(&product_key(), &grant.session_id, grant.nonce).unwrap();
    assert_eq!(platform.session_key(&device()), Some(key.clone()));

    // Phase 2 with the issued secret.
    let login = MqttLogin::connect(
        &device(),
        &product_key(),
        &secret,
        ConnectType::Unchecked,
        1_700_000_000,
    );
    let (c, mut events) = client(&broker, &login);
    let p = device().topic_prefix();
    // Exact ack topics: a wildcard over the device's own uplink topics would echo its
    // publishes back to it (MQTT 3.1.1 has no "no local").
    c.subscribe(format!("{p}/update_time_ack"), QoS::AtLeastOnce)
        .await
        .unwrap();
    c.subscribe(format!("{p}/model/property/report_ack"), QoS::AtLeastOnce)
        .await
        .unwrap();
    c.subscribe(format!("{p}/model/event/+/report_ack"), QoS::AtLeastOnce)
        .await
        .unwrap();
    for _ in 0..3 {
        subscribed(&mut events).await;
    }

    // An encrypted property report: acked with its MessageId, recorded decrypted.
    let mut report = Frame::new(
        77u32,
        HeaderCtrl::PropertyReport,
        json!({"switch": 1, "power": 12.5}),
    );
    report.encrypt_payload(&key);
    c.publish(
        format!("{p}/model/property/report"),
        QoS::AtLeastOnce,
        false,
        report.encode(),
    )
    .await
    .unwrap();
    let (topic, ack) = next_publish(&mut events).await;
    assert_eq!(topic, format!("{p}/model/property/report_ack"));
    assert_eq!(
        (ack.message_id.clone(), ack.header_ctrl),
        (77u32.into(), HeaderCtrl::PropertyReport)
    );
    assert!(plain_ack(&ack, &key).code.is_success());
    let got = platform.received();
    assert_eq!(
        got.last().unwrap().payload,
        json!({"switch": 1, "power": 12.5})
    );

    // Under another key: a 4001 that says why.
    let mut wrong = Frame::new(78u32, HeaderCtrl::PropertyReport, json!({"switch": 0}));
    wrong.encrypt_payload(&SessionKey::from_bytes([7; 16]));
    c.publish(
        format!("{p}/model/property/report"),
        QoS::AtLeastOnce,
        false,
        wrong.encode(),
    )
    .await
    .unwrap();
    let (_, ack) = next_publish(&mut events).await;
    let ack = plain_ack(&ack, &key);
    assert_eq!(ack.code.as_str(), "4001");
    assert!(ack.msg.contains("padding"), "{}", ack.msg);

    // An event: acked on its own report_ack topic.
    let mut event = Frame::new(
        79u32,
        HeaderCtrl::EventReport,
        json!({"temperature": 96.5, "action": 1}),
    );
    event.encrypt_payload(&key);
    c.publish(
        format!("{p}/model/event/overheat/report"),
        QoS::AtLeastOnce,
        false,
        event.encode(),
    )
    .await
    .unwrap();
    let (topic, ack) = next_publish(&mut events).await;
    assert_eq!(topic, format!("{p}/model/event/overheat/report_ack"));
    assert_eq!(ack.message_id, 79u32.into());

    // Reports and events are checked against the thing model: 4001 with the reasons.
    for (topic, payload, reason) in [
        (
            "model/property/report",
            json!({"colour": 1, "power": 9999}),
            "colour: unknown property; power: 9999 is above the maximum 3500",
        ),
        (
            "model/property/report",
            json!({"switch": "on"}),
            "switch: expected 0 or 1, got \"on\"",
        ),
        (
            "model/event/overheat/report",
            json!({"temperature": 96.5}),
            "action: missing",
        ),
        (
            "model/event/meltdown/report",
            json!({"level": 1}),
            "meltdown: unknown event",
        ),
    ] {
        let ctrl = if topic.contains("event") {
            HeaderCtrl::EventReport
        } else {
            HeaderCtrl::PropertyReport
        };
        let mut frame = Frame::new(81u32, ctrl, payload);
        frame.encrypt_payload(&key);
        c.publish(
            format!("{p}/{topic}"),
            QoS::AtLeastOnce,
            false,
            frame.encode(),
        )
        .await
        .unwrap();
        let (_, ack) = next_publish(&mut events).await;
        let ack = plain_ack(&ack, &key);
        assert_eq!(
            (ack.code.as_str(), ack.msg.as_str()),
            ("4001", reason),
            "{topic}"
        );
    }

    // Time sync: never encrypted; the ack carries the platform's time.
    let sync = Frame::new(80u32, HeaderCtrl::TimeSync, Value::String(String::new()));
    c.publish(
        format!("{p}/update_time"),
        QoS::AtLeastOnce,
        false,
        sync.encode(),
    )
    .await
    .unwrap();
    let (topic, ack) = next_publish(&mut events).await;
    assert_eq!(topic, format!("{p}/update_time_ack"));
    let data: TimeSyncData = serde_json::from_value(ack.ack().unwrap().data.unwrap()).unwrap();
    assert!(data.timestamp > 1_700_000_000_000);
    assert_eq!(data.timezone, "Asia/Shanghai");

    // Platform commands, answered by the device with the same MessageId.
    c.subscribe(format!("{p}/model/property/set"), QoS::AtLeastOnce)
        .await
        .unwrap();
    c.subscribe(format!("{p}/model/property/ask"), QoS::AtLeastOnce)
        .await
        .unwrap();
    for _ in 0..2 {
        subscribed(&mut events).await;
    }
    let device_side = async {
        for _ in 0..2 {
            let (topic, frame) = next_publish(&mut events).await;
            let request = frame.decrypted_payload(&key).unwrap();
            let mut answer = if topic.ends_with("/model/property/set") {
                assert_eq!(
                    request,
                    json!({"params": [{"identify": "switch", "value": "1"}]})
                );
                Frame::ack_of(
                    &frame,
                    &x_protocol::AckPayload::success(Some(json!({"switch": 1}))),
                )
            } else {
                assert_eq!(request, json!({"params": ["power"]}));
                Frame::new(
                    frame.message_id.clone(),
                    HeaderCtrl::PropertyReport,
                    json!({"power": 3.5}),
                )
            };
            answer.encrypt_payload(&key);
            let reply_topic = if topic.ends_with("/set") {
                format!("{p}/model/property/set_ack")
            } else {
                format!("{p}/model/property/report")
            };
            c.publish(reply_topic, QoS::AtLeastOnce, false, answer.encode())
                .await
                .unwrap();
        }
        // rumqttc sends queued publishes while its event loop is polled.
        let _ = tokio::time::timeout(Duration::from_millis(500), async {
            loop {
                let _ = events.poll().await;
            }
        })
        .await;
        events
    };
    let platform_side = async {
        let set = platform
            .command(
                &Topic::new(device(), TopicKind::PropertySet).unwrap(),
                HeaderCtrl::PropertySet,
                json!({"params": [{"identify": "switch", "value": "1"}]}),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        let ack = set.ack().unwrap();
        assert!(ack.code.is_success());
        assert_eq!(ack.data, Some(json!({"switch": 1})));
        let asked = platform
            .command(
                &Topic::new(device(), TopicKind::PropertyAsk).unwrap(),
                HeaderCtrl::PropertyAsk,
                json!({"params": ["power"]}),
                Duration::from_secs(2),
            )
            .await
            .unwrap();
        assert_eq!(
            (asked.header_ctrl, asked.payload),
            (HeaderCtrl::PropertyReport, json!({"power": 3.5}))
        );
    };
    let (mut events, ()) = tokio::join!(device_side, platform_side);
    // A command nobody answers times out.
    let reset =
        Topic::with_identifier(device(), TopicKind::ServiceCall, "reset".parse().unwrap()).unwrap();
    let silent = platform.command(
        &reset,
        HeaderCtrl::ServiceCall,
        json!({"serviceIdentify": "reset", "params": {"scope": 0}}),
        Duration::from_millis(200),
    );
    let (result, _) = tokio::join!(silent, async {
        let _ = tokio::time::timeout(Duration::from_millis(300), events.poll()).await;
    });
    assert!(matches!(
        result,
        Err(x_sim::platform::CommandError::Timeout { .. })
    ));
}
