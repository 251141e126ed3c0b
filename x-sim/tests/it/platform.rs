//! The platform over the simulator broker, with real MQTT clients: the two-phase login of an
//! encrypted type-0 product (and a type mismatch), acks of encrypted reports, events and
//! time sync, commands answered. The device is
//! a wire: its session logs in and answers the platform's commands; its reports are the
//! test's frames (fixed MessageIds, a wrong key, payloads the model refuses).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::smart_plug::{SmartPlug, SmartPlugService};
use common::wire::Wire;
use common::{Params, refusal};
use serde_json::{Value, json};
use x_protocol::payload::{AuthCode, TimeSyncData};
use x_protocol::{Frame, HeaderCtrl, RegistrationType, SessionKey, Topic, TopicKind};
use x_runtime::{Event, Persisted, Refusal, Session};
use x_sim::platform::Platform;
use x_sim::sim::Sim;

async fn start() -> (Platform, Sim) {
    let sim = common::sim(&common::encrypted_product()).await;
    (sim.platform().clone(), sim)
}

fn device() -> Params {
    common::encrypted("MTR0001")
}

/// An ack of an encrypted product's message: it travels encrypted under the SessionKey.
fn encrypted_ack(m: &common::wire::Incoming) -> x_protocol::AckPayload {
    let sent = Frame::decode(&m.bytes).unwrap();
    assert!(sent.payload.is_string(), "not encrypted: {sent:?}");
    m.frame.ack().unwrap()
}

#[tokio::test]
async fn two_phase_login_and_encrypted_reports() {
    let (platform, sim) = start().await;
    let addr = sim.mqtt_addr().unwrap();
    // Type 0: the device registers itself and gets its secret and a session, then logs in
    // with the issued secret (phase 2).
    let state = SmartPlug {
        power: 3.5,
        ..SmartPlug::default()
    };
    let session = Session::new(device().config(), state, Persisted::default(), 7);
    let mut dev: Wire<SmartPlug, SmartPlugService> = Wire::start(addr, session).await;
    assert!(dev.persisted.device_secret.is_some());
    let key: SessionKey = dev.key.clone().unwrap();
    assert_eq!(platform.session_key(&device().id), Some(key));

    // An encrypted property report: acked with its MessageId, recorded decrypted.
    let report = dev.topic(TopicKind::PropertyReport);
    let frame = Frame::new(
        77u32,
        HeaderCtrl::PropertyReport,
        json!({"switch": 1, "power": 12.5}),
    );
    dev.send(&report, frame).await;
    let ack = dev
        .expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
        .await;
    assert_eq!(ack.frame.message_id, 77u32.into());
    assert!(encrypted_ack(&ack).code.is_success());
    let got = platform.received();
    assert_eq!(
        got.last().unwrap().payload,
        json!({"switch": 1, "power": 12.5})
    );

    // Under another key: a 4001 that says why.
    let mut wrong = Frame::new(78u32, HeaderCtrl::PropertyReport, json!({"switch": 0}));
    wrong.encrypt_payload(&SessionKey::from_bytes([7; 16]));
    dev.publish(&report, wrong.encode()).await;
    let ack = dev.next().await;
    let ack = encrypted_ack(&ack);
    assert_eq!(ack.code.as_str(), "4001");
    // Usually the padding is wrong; about once in 256 SessionKeys the garbage happens to end
    // in valid padding and is refused as a Payload that is not JSON instead.
    assert!(
        ack.msg.contains("padding") || ack.msg.contains("Payload"),
        "{}",
        ack.msg
    );

    // An event: acked on its own report_ack topic.
    let overheat = dev.topic_of(TopicKind::EventReport, "overheat");
    let event = Frame::new(
        79u32,
        HeaderCtrl::EventReport,
        json!({"temperature": 96.5, "action": 1}),
    );
    dev.send(&overheat, event).await;
    let ack = dev.next().await;
    assert_eq!(
        ack.topic,
        dev.topic_of(TopicKind::EventReportAck, "overheat")
    );
    assert_eq!(ack.frame.message_id, 79u32.into());

    // Reports and events are checked against the thing model: 4001 with the reasons.
    for (topic, payload, reason) in [
        (
            report.clone(),
            json!({"colour": 1, "power": 9999}),
            "colour: unknown property; power: 9999 is above the maximum 3500",
        ),
        (
            report.clone(),
            json!({"switch": "on"}),
            "switch: expected 0 or 1, got \"on\"",
        ),
        (
            overheat.clone(),
            json!({"temperature": 96.5}),
            "action: missing",
        ),
        (
            dev.topic_of(TopicKind::EventReport, "meltdown"),
            json!({"level": 1}),
            "meltdown: unknown event",
        ),
    ] {
        let ctrl = topic.kind().spec().header_ctrls[0];
        dev.send(&topic, Frame::new(81u32, ctrl, payload)).await;
        let ack = dev.next().await;
        let ack = encrypted_ack(&ack);
        assert_eq!(
            (ack.code.as_str(), ack.msg.as_str()),
            ("4001", reason),
            "{topic}"
        );
    }

    // Time sync: never encrypted; the ack carries the platform's time.
    let sync = Frame::new(80u32, HeaderCtrl::TimeSync, Value::String(String::new()));
    dev.send(&dev.topic(TopicKind::UpdateTime), sync).await;
    let ack = dev
        .expect(TopicKind::UpdateTimeAck, HeaderCtrl::TimeSync)
        .await;
    assert!(Frame::decode(&ack.bytes).unwrap().payload.is_object());
    let data = ack.frame.ack().unwrap().data.unwrap();
    let data: TimeSyncData = serde_json::from_value(data).unwrap();
    assert!(data.timestamp > 1_700_000_000_000);
    assert_eq!(data.timezone, "Asia/Shanghai");

    // Platform commands, answered by the device's session with the same MessageId.
    let device_side = async {
        let m = dev
            .expect(TopicKind::PropertySet, HeaderCtrl::PropertySet)
            .await;
        assert!(Frame::decode(&m.bytes).unwrap().payload.is_string());
        assert_eq!(
            m.frame.payload,
            json!({"params": [{"identify": "switch", "value": "1"}]})
        );
        let events = dev.deliver(&m).await;
        assert!(
            matches!(events[..], [Event::PropertiesSet(_)]),
            "{events:?}"
        );
        let m = dev
            .expect(TopicKind::PropertyAsk, HeaderCtrl::PropertyAsk)
            .await;
        assert_eq!(m.frame.payload, json!({"params": ["power"]}));
        dev.deliver(&m).await;
        // The platform acks the report that answered.
        dev.deliver_ack(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
            .await;
    };
    let platform_side = async {
        let set = platform
            .command(
                &Topic::new(device().id, TopicKind::PropertySet).unwrap(),
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
                &Topic::new(device().id, TopicKind::PropertyAsk).unwrap(),
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
    tokio::join!(device_side, platform_side);
    assert_eq!(dev.session.counters().bad_frames, 0);
    // A command nobody answers times out.
    let reset = dev.topic_of(TopicKind::ServiceCall, "reset");
    let silent = platform.command(
        &reset,
        HeaderCtrl::ServiceCall,
        json!({"serviceIdentify": "reset", "params": {"scope": 0}}),
        Duration::from_millis(200),
    );
    let (result, call) = tokio::join!(silent, dev.next());
    assert_eq!(call.topic, reset);
    assert!(matches!(
        result,
        Err(x_sim::platform::CommandError::Timeout { .. })
    ));
    dev.disconnect().await;

    // A type mismatch is refused with code 5 (a runtime device: it never sends one).
    let mismatch = device()
        .builder::<SmartPlug, SmartPlugService>(addr)
        .registration(RegistrationType::ProductSecretPreRegistered);
    assert_eq!(
        refusal(mismatch).await,
        Refusal::Auth(AuthCode::TypeMismatch)
    );
}
