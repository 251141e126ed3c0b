//! Every row of the command table in PROTOCOL-NOTES.md against the simulator, with a plain
//! rumqttc client as the device, for a plain and an encrypted JSON product: device messages
//! get acks on the right topic with the right HeaderCtrl and MessageId, platform commands
//! arrive on the right topic and the device's answers come back to the command, checked.
//! Also: every auth code over MQTT, and SessionKey rotation on demand and on expiry.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{Device, ack_of, authenticate, authenticate_as, plug, plug_device};
use serde_json::{Value, json};
use x_protocol::payload::{AuthCode, OtaNotify, SessionGrant};
use x_protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, ProductKey, RegistrationType, derive_session_key,
};
use x_sim::platform::{Command, CommandError};
use x_sim::sim::{Sim, SimConfig};

/// The smart plug with PLUG0001 and the disabled PLUGOFF1, and the encrypted product.
fn registry() -> String {
    [
        common::plug_product(),
        plug_device("PLUG0001", ""),
        plug_device("PLUGOFF1", "enabled = false"),
        common::encrypted_product(),
    ]
    .concat()
}

/// The platform in memory.
async fn sim() -> Sim {
    common::sim(&registry()).await
}

/// The encrypted product's (self-registering) device.
fn encrypted() -> (DeviceIdentity, ProductKey, RegistrationType) {
    common::encrypted("ENC00001")
}

/// Every topic a device of the smart plug listens on, exactly.
const SUBSCRIPTIONS: &[&str] = &[
    "downlink",
    "uplink_ack",
    "firmware_report_ack",
    "ask_firmware",
    "ota_notify",
    "ask_config",
    "down_config",
    "model/property/report_ack",
    "model/event/overheat/report_ack",
    "model/property/set",
    "model/service/reset",
    "model/property/ask",
    "model/history/data/report_ack",
    "update_time_ack",
];

/// Device -> platform rows: 4, 8, 16, 17, 27, 29.
async fn device_rows(dev: &mut Device) {
    let history = json!({"params": [{
        "properties": [{"power": {"value": 1.5, "time": 1_700_000_000_000_i64}}],
        "events": [{"overheat": {"value": {"temperature": 90, "action": 1}, "time": 1_700_000_001_000_i64}}]
    }]});
    // Each acked on its ack topic (`{topic}_ack`) with its HeaderCtrl and MessageId.
    for (topic, ctrl, payload) in [
        ("uplink", HeaderCtrl::Uplink, json!({"data": "AQID"})),
        (
            "firmware_report",
            HeaderCtrl::FirmwareReport,
            json!({"HardVer": "h1", "SoftVer": "1.0.0", "Type": 2}),
        ),
        (
            "model/property/report",
            HeaderCtrl::PropertyReport,
            json!({"switch": 1, "power": 12.5}),
        ),
        (
            "model/event/overheat/report",
            HeaderCtrl::EventReport,
            json!({"temperature": 96.5, "action": 1}),
        ),
        (
            "model/history/data/report",
            HeaderCtrl::HistoryReport,
            history.clone(),
        ),
        ("update_time", HeaderCtrl::TimeSync, json!("")),
    ] {
        let ack = dev.acked(topic, ctrl, payload).await;
        assert!(ack.code.is_success(), "{topic}: {ack:?}");
        if ctrl == HeaderCtrl::TimeSync {
            let data = ack.data.unwrap();
            assert!(data["timestamp"].as_i64().unwrap() > 1_700_000_000_000);
        }
    }
}

/// Platform -> device rows: 7, 13, 9, 14 (ask and set), 20, 21, 23; each answered by the
/// device, the answer checked.
async fn platform_rows(sim: &Sim, dev: &mut Device) {
    let p = sim.platform();
    let id = dev.id.clone();

    // 7: passthrough downlink, acked on downlink_ack.
    let (answer, ()) = tokio::join!(
        p.send_command(&id, Command::Passthrough(json!("AQID")), None),
        dev.answer_downlink(json!({"data": "AQID"}))
    );
    assert!(answer.unwrap().ack().unwrap().code.is_success());

    // 13: firmware ask, answered by a firmware report (8) that is also acked.
    let report = json!({"HardVer": "h1", "SoftVer": "1.0.1", "Type": 2});
    let (answer, ()) = tokio::join!(p.send_command(&id, Command::AskFirmware, None), async {
        let frame = dev.expect("ask_firmware", HeaderCtrl::AskFirmware).await;
        dev.answer_with_report(
            &frame,
            "firmware_report",
            HeaderCtrl::FirmwareReport,
            report.clone(),
        )
        .await;
    });
    assert_eq!(answer.unwrap().payload, report);
    assert_eq!(p.state("firmware", &format!("{id}/default")), Some(report));

    // 9: OTA notify, acked with its DownID; a wrong DownID is a bad answer.
    let notify = OtaNotify {
        upgrade_type: 2,
        url: "http://127.0.0.1:1/firmware/x.bin".into(),
        soft_ver: "1.0.2".into(),
        soft_size: 1000,
        md5: "00112233445566778899aabbccddeeff".into(),
        down_id: "D0000001".into(),
        firmware_name: Some("x.bin".into()),
        module: None,
    };
    for (echo, good) in [("D0000001", true), ("WRONG", false)] {
        let (answer, ()) = tokio::join!(
            p.send_command(&id, Command::NotifyOta(notify.clone()), None),
            async {
                let frame = dev.expect("ota_notify", HeaderCtrl::OtaNotify).await;
                assert_eq!(frame.payload["DownID"], "D0000001");
                dev.ack_ota_notify(&frame, echo).await;
            }
        );
        match answer {
            Ok(_) => assert!(good),
            Err(CommandError::BadAnswer { reason, .. }) => {
                assert!(!good);
                assert!(reason.contains("DownID"), "{reason}");
            }
            Err(e) => panic!("{e}"),
        }
    }

    // 14: config ask and set, both answered by a config report.
    let settings = json!({"reportPeriod": 60});
    for (command, topic) in [
        (Command::AskConfig, "ask_config"),
        (Command::SetConfig(settings.clone()), "down_config"),
    ] {
        let (answer, ()) = tokio::join!(
            p.send_command(&id, command, None),
            dev.answer_config(topic, settings.clone())
        );
        assert_eq!(answer.unwrap().payload, json!({"Settings": settings}));
    }
    assert_eq!(
        p.state("config", &id.to_string()),
        Some(json!({"Settings": settings}))
    );

    // 20: property set; the ack's Data is checked against the model.
    for (data, good) in [
        (json!({"switch": 1}), true),
        (json!({"power": 99_999}), false),
    ] {
        let (answer, ()) = tokio::join!(
            p.send_command(&id, Command::SetProperties(json!({"switch": 1})), None),
            dev.answer_property_set(json!([{"identify": "switch", "value": 1}]), data)
        );
        match answer {
            Ok(a) => {
                assert!(good);
                assert_eq!(a.ack().unwrap().data, Some(json!({"switch": 1})));
            }
            Err(CommandError::BadAnswer { reason, .. }) => {
                assert!(!good);
                assert_eq!(reason, "Data: power: 99999 is above the maximum 3500");
            }
            Err(e) => panic!("{e}"),
        }
    }

    // 21: service call; outputs checked (all present, valid). A refusal is a valid answer.
    for (reply, expect) in [
        (
            AckPayload::success(Some(json!({"result": 1, "resetAt": 1_700_000_000_000_i64}))),
            Ok(()),
        ),
        (
            AckPayload::success(Some(json!({"result": 1}))),
            Err("Data: resetAt: missing"),
        ),
        (AckPayload::failure("busy"), Ok(())),
    ] {
        let call = Command::CallService {
            service: "reset".into(),
            params: json!({"scope": 0}),
        };
        let (answer, ()) = tokio::join!(
            p.send_command(&id, call, None),
            dev.answer_service_call("reset", json!({"scope": 0}), &reply)
        );
        match (answer, expect) {
            (Ok(_), Ok(())) => {}
            (Err(CommandError::BadAnswer { reason, .. }), Err(want)) => assert_eq!(reason, want),
            (got, want) => panic!("{got:?}, expected {want:?}"),
        }
    }

    // 23: property ask, answered by a report (16) with the same MessageId (also acked).
    let (answer, ()) = tokio::join!(
        p.send_command(&id, Command::AskProperties(vec!["power".into()]), None),
        dev.answer_property_ask(json!(["power"]), json!({"power": 3.5}))
    );
    let answer = answer.unwrap();
    assert_eq!(
        (answer.header_ctrl, answer.payload),
        (HeaderCtrl::PropertyReport, json!({"power": 3.5}))
    );

    // A command nobody answers times out.
    let silent = p.send_command(&id, Command::AskConfig, Some(Duration::from_millis(200)));
    let (result, _) = tokio::join!(silent, dev.next());
    assert!(
        matches!(result, Err(CommandError::Timeout { .. })),
        "{result:?}"
    );
}

/// Every row for a device online (with a SessionKey when `encrypted`) and subscribed to
/// every topic; the device, still connected.
async fn every_row(
    sim: &Sim,
    id: &DeviceIdentity,
    pk: &ProductKey,
    ty: RegistrationType,
    encrypted: bool,
) -> Device {
    let mut dev = Device::online(sim.mqtt_addr().unwrap(), id, pk, ty).await;
    assert_eq!(dev.key.is_some(), encrypted);
    assert!(dev.subscribe(SUBSCRIPTIONS).await.iter().all(|g| *g));
    device_rows(&mut dev).await;
    platform_rows(sim, &mut dev).await;
    dev
}

#[tokio::test]
async fn every_row_plain_product() {
    let sim = sim().await;
    let (id, pk, ty) = plug();
    let _dev = every_row(&sim, &id, &pk, ty, false).await;

    // What was received is stored and queryable.
    let p = sim.platform();
    let latest = p.latest_properties(&id);
    assert_eq!(latest["switch"].value, json!(1));
    // The answer to the ask (3.5) is the latest power; the history entry (1.5) keeps its
    // own, older time.
    assert_eq!(latest["power"].value, json!(3.5));
    let history: Vec<Value> = p
        .property_history(&id, Some("power"))
        .into_iter()
        .map(|(_, t)| t.value)
        .collect();
    assert_eq!(history, vec![json!(1.5), json!(12.5), json!(3.5)]);
    let events: Vec<(String, i64)> = p
        .events(&id)
        .into_iter()
        .map(|e| (e.identifier, e.time))
        .collect();
    assert_eq!(events[0], ("overheat".into(), 1_700_000_001_000));
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn every_row_encrypted_product() {
    let sim = sim().await;
    let (id, pk, ty) = encrypted();
    let _dev = every_row(&sim, &id, &pk, ty, true).await;
    // The platform stored plain payloads.
    let last_report = sim
        .platform()
        .received_from(&id)
        .into_iter()
        .find(|r| r.header_ctrl == HeaderCtrl::PropertyReport)
        .unwrap();
    assert_eq!(last_report.payload, json!({"switch": 1, "power": 12.5}));
}

#[tokio::test]
async fn commands_to_encrypted_devices_travel_encrypted() {
    let sim = sim().await;
    let addr = sim.mqtt_addr().unwrap();
    let (id, pk, ty) = encrypted();
    let mut dev = Device::online(addr, &id, &pk, ty).await;
    dev.subscribe(&["ask_config"]).await;
    let key = dev.key.take().unwrap();
    let p = sim.platform();
    let (result, ()) = tokio::join!(
        p.send_command(&id, Command::AskConfig, Some(Duration::from_millis(300))),
        async {
            let (_, frame) = dev.next().await;
            assert!(frame.payload.is_string(), "{:?}", frame.payload);
            assert_eq!(frame.decrypted_payload(&key).unwrap(), json!({}));
        }
    );
    assert!(matches!(result, Err(CommandError::Timeout { .. })));
}

#[tokio::test]
async fn every_auth_code_over_mqtt() {
    let sim = sim().await;
    let addr = sim.mqtt_addr().unwrap();
    let (id, pk, ty) = plug();
    // 0: a pre-registered type-1 device gets its secret (no session: a plain product).
    let ok = authenticate(addr, &id, &pk, ty).await;
    assert_eq!(ok.code, AuthCode::Ok);
    assert!(ok.device_secret().is_ok() && ok.session().is_none());
    // 2: the request names a product this login is not for.
    let other = DeviceIdentity::parse("11111111", "AA30C505", "PLUG0001").unwrap();
    let r = authenticate_as(addr, &id, &other, &pk, ty).await;
    assert_eq!(r.code, AuthCode::ProductNotRegistered);
    // 4: not pre-registered (type 1), or disabled.
    let unknown = DeviceIdentity::parse("7ED01E2A", "AA30C505", "NOSUCH01").unwrap();
    assert_eq!(
        authenticate(addr, &unknown, &pk, ty).await.code,
        AuthCode::DeviceRejected
    );
    let disabled = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUGOFF1").unwrap();
    assert_eq!(
        authenticate(addr, &disabled, &pk, ty).await.code,
        AuthCode::DeviceRejected
    );
    // 5: the request's Type is not the product's.
    let r = authenticate(addr, &id, &pk, RegistrationType::ProductSecretUnregistered).await;
    assert_eq!(r.code, AuthCode::TypeMismatch);
    // An encrypted product's Code 0 carries SessionID and Nonce.
    let (eid, epk, ety) = encrypted();
    let r = authenticate(addr, &eid, &epk, ety).await;
    let grant = r.session().unwrap();
    assert!(grant.session_id.len() + format!("{:x}", grant.nonce).len() < 16);
    assert_eq!(
        sim.platform().session_key(&eid),
        Some(derive_session_key(&epk, &grant.session_id, grant.nonce).unwrap())
    );
}

/// Sends a property report encrypted under `key` and returns the ack's code.
async fn report_under(dev: &mut Device, key: &x_protocol::SessionKey) -> String {
    let mut frame = Frame::new(
        dev.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"switch": 0}),
    );
    frame.encrypt_payload(key);
    let saved = dev.key.take();
    dev.send("model/property/report", frame).await;
    dev.key = saved;
    let (topic, ack) = dev.next().await;
    assert_eq!(topic, "model/property/report_ack");
    ack_of(&ack).code.as_str().to_owned()
}

#[tokio::test]
async fn session_key_rotation_on_demand() {
    let sim = sim().await;
    let addr = sim.mqtt_addr().unwrap();
    let (id, pk, ty) = encrypted();
    let mut dev = Device::online(addr, &id, &pk, ty).await;
    dev.subscribe(&["downlink", "model/property/report_ack"])
        .await;
    let old = dev.key.clone().unwrap();
    let grant = sim.platform().rotate_key(&id).unwrap();
    // HeaderCtrl 3 on the downlink, encrypted under the old key.
    let frame = dev.expect("downlink", HeaderCtrl::SessionKeyUpdate).await;
    let sent: SessionGrant = serde_json::from_value(frame.payload).unwrap();
    assert_eq!(sent, grant);
    let new = derive_session_key(&pk, &grant.session_id, grant.nonce).unwrap();
    assert_eq!(sim.platform().session_key(&id), Some(new.clone()));
    dev.key = Some(new.clone());
    // The new key works; the old one still does until the next rotation.
    assert_eq!(report_under(&mut dev, &new).await, "200");
    assert_eq!(report_under(&mut dev, &old).await, "200");
    sim.platform().rotate_key(&id).unwrap();
    let (_, frame) = dev.next().await;
    let next: SessionGrant = serde_json::from_value(frame.payload).unwrap();
    dev.key = Some(derive_session_key(&pk, &next.session_id, next.nonce).unwrap());
    assert_eq!(report_under(&mut dev, &old).await, "4001");
    // A plain product has no session to rotate.
    assert!(matches!(
        sim.platform().rotate_key(&plug().0),
        Err(CommandError::NoSession(_))
    ));
}

#[tokio::test]
async fn session_keys_rotate_when_they_expire() {
    let mut config = SimConfig::local(common::registry(&registry()));
    config.platform.session_ttl = Duration::from_millis(1500);
    let sim = Sim::start(config).await.unwrap();
    let (id, pk, ty) = encrypted();
    let mut dev = Device::online(sim.mqtt_addr().unwrap(), &id, &pk, ty).await;
    dev.subscribe(&["downlink"]).await;
    let first = sim.platform().session_grant(&id).unwrap();
    let frame = dev.expect("downlink", HeaderCtrl::SessionKeyUpdate).await;
    let rotated: SessionGrant = serde_json::from_value(frame.payload).unwrap();
    assert_ne!(rotated, first);
}
