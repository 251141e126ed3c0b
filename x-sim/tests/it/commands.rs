//! Every row of the command table in PROTOCOL-NOTES.md against the simulator, for a plain
//! and an encrypted JSON product, with the SDK's runtime as the device: its messages are
//! acked on the right topic with the right HeaderCtrl and MessageId (a runtime delivery
//! resolves on nothing else), platform commands reach it and its answers come back to the
//! command, checked. Wrong answers (a wrong DownID, set data the model refuses, missing
//! service outputs) come from the application or from a wire. Also: every auth code over
//! MQTT, and SessionKey rotation on demand and on expiry.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::smart_plug::{ResetScope, SmartPlug, SmartPlugReport, SmartPlugService};
use common::wire::{Mqtt, Wire};
use common::{Params, acked, object, online, plug, plug_device, refusal, request, wait_for};
use serde_json::{Value, json};
use x_protocol::model::ServiceFailure;
use x_protocol::payload::{AuthCode, AuthReply, AuthRequest, OtaNotify, SessionGrant};
use x_protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, MqttLogin, RegistrationType, SessionKey, Topic,
    TopicKind, derive_session_key,
};
use x_runtime::{Firmware, NoModel, NoServices, Persisted, Refusal, Request};
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
fn encrypted() -> Params {
    common::encrypted("ENC00001")
}

/// The firmware every device here reports.
fn firmware() -> Value {
    json!({"HardVer": "h1", "SoftVer": "1.0.1", "Type": 2})
}

/// Device -> platform rows: 4, 8, 16, 17, 27, 29.
async fn device_rows(sim: &Sim, device: &common::Plug, id: &DeviceIdentity) {
    let p = sim.platform();
    // 8 and 29 after the login: the firmware report is kept, the time sync answered with
    // the platform's clock.
    let key = format!("{id}/default");
    wait_for("firmware reported", || {
        p.state("firmware", &key) == Some(firmware())
    })
    .await;
    wait_for("time synced", || device.platform_time().is_some()).await;
    assert!(device.platform_time().unwrap() > 1_700_000_000_000);
    // 4, 16, 17, 27: each acked "200".
    acked(device.passthrough(json!("AQID"))).await.unwrap();
    common::report_and_event(device).await;
    let history = json!({"params": [{
        "properties": [{"power": {"value": 1.5, "time": 1_700_000_000_000_i64}}],
        "events": [{"overheat": {"value": {"temperature": 90, "action": 1}, "time": 1_700_000_001_000_i64}}]
    }]});
    acked(device.history(history)).await.unwrap();
}

/// Platform -> device rows answered by the device: 7, 13, 9, 14 (ask and set), 20, 21,
/// 23; each answer checked by the platform.
async fn platform_rows(sim: &Sim, device: &common::Plug, id: &DeviceIdentity) {
    let p = sim.platform();

    // 7: passthrough downlink, acked, handed to the application.
    let answer = p.send_command(id, Command::Passthrough(json!("AQID")), None);
    assert!(answer.await.unwrap().ack().unwrap().code.is_success());
    let data = request(device, |r| match r {
        Request::Passthrough(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(data, json!("AQID"));

    // 13: firmware ask, answered by a firmware report (8), which is acked too.
    let answer = p
        .send_command(id, Command::AskFirmware, None)
        .await
        .unwrap();
    assert_eq!(answer.payload, firmware());
    assert_eq!(
        p.state("firmware", &format!("{id}/default")),
        Some(firmware())
    );

    // 9: OTA notify, acked with its DownID (a wrong DownID: see `wrong_answers`).
    let answer = p.send_command(id, Command::NotifyOta(notify()), None).await;
    assert!(answer.is_ok(), "{answer:?}");
    let got = request(device, |r| match r {
        Request::OtaNotify(n) => Some(OtaNotify::clone(&n)),
        _ => None,
    })
    .await;
    assert_eq!(got, notify());

    // 14: config ask and set, both answered by a config report.
    let settings = json!({"reportPeriod": 60});
    for command in [Command::AskConfig, Command::SetConfig(settings.clone())] {
        let answer = p.send_command(id, command, None).await.unwrap();
        assert_eq!(answer.payload, json!({"Settings": settings}));
    }
    assert_eq!(
        p.state("config", &id.to_string()),
        Some(json!({"Settings": settings}))
    );

    // 20: property set; the ack's Data is checked against the model (data the model
    // refuses: see `wrong_answers`).
    let set = Command::SetProperties(json!({"switch": 1}));
    let answer = p.send_command(id, set, None).await.unwrap();
    assert_eq!(answer.ack().unwrap().data, Some(json!({"switch": 1})));
    assert!(device.state().switch);

    // 21: service call, answered by the application; outputs checked (all present, valid).
    // A refusal is a valid answer.
    let full = json!({"result": 1, "resetAt": 1_700_000_000_000_i64});
    for (reply, expect) in [
        (Ok(object(full)), Ok(())),
        (
            Ok(object(json!({"result": 1}))),
            Err("Data: resetAt: missing"),
        ),
        (Err(ServiceFailure("busy".into())), Ok(())),
    ] {
        let call = Command::CallService {
            service: "reset".into(),
            params: json!({"scope": 0}),
        };
        let (answer, ()) = tokio::join!(p.send_command(id, call, None), async {
            let mut r = request(device, |r| match r {
                Request::Service(s) => Some(s),
                _ => None,
            })
            .await;
            assert_eq!(
                r.take_call(),
                Some(SmartPlugService::Reset {
                    scope: ResetScope::Key0
                })
            );
            r.reply(reply);
        });
        match (answer, expect) {
            (Ok(_), Ok(())) => {}
            (Err(CommandError::BadAnswer { reason, .. }), Err(want)) => assert_eq!(reason, want),
            (got, want) => panic!("{got:?}, expected {want:?}"),
        }
    }

    // 23: property ask, answered from the state by a report (16) with the same MessageId
    // (acked too).
    device.update(|s| s.power = 3.5);
    let ask = Command::AskProperties(vec!["power".into()]);
    let answer = p.send_command(id, ask, None).await.unwrap();
    assert_eq!(
        (answer.header_ctrl, answer.payload),
        (HeaderCtrl::PropertyReport, json!({"power": 3.5}))
    );

    // A command nobody answers (a service call the application holds) times out.
    let call = Command::CallService {
        service: "reset".into(),
        params: json!({"scope": 0}),
    };
    let silent = p.send_command(id, call, Some(Duration::from_millis(200)));
    let (result, held) = tokio::join!(
        silent,
        request(device, |r| match r {
            Request::Service(s) => Some(s),
            _ => None,
        })
    );
    assert!(
        matches!(result, Err(CommandError::Timeout { .. })),
        "{result:?}"
    );
    drop(held);
}

/// The OTA notify the platform rows send.
fn notify() -> OtaNotify {
    OtaNotify {
        upgrade_type: 2,
        url: "http://127.0.0.1:1/firmware/x.bin".into(),
        soft_ver: "1.0.2".into(),
        soft_size: 1000,
        md5: "00112233445566778899aabbccddeeff".into(),
        down_id: "D0000001".into(),
        firmware_name: Some("x.bin".into()),
        module: None,
    }
}

/// What a runtime device cannot answer, answered over a wire that logs in with the device's
/// persisted state: a wrong DownID, set data the model refuses. Also the session's own
/// firmware report (8) and time sync (29) at login, acked where the command table says.
async fn wrong_answers(sim: &Sim, params: &Params, persisted: Persisted) {
    let p = sim.platform();
    let id = &params.id;
    let mut config = params.config();
    config.firmware = vec![Firmware::new("h1", "1.0.1")];
    config.timing.time_sync = true;
    let session = x_runtime::Session::<NoModel, NoServices>::new(config, NoModel, persisted, 7);
    let mut wire = Wire::start(sim.mqtt_addr().unwrap(), session).await;
    // Each ack is one the session was waiting for.
    wire.deliver_ack(TopicKind::FirmwareReportAck, HeaderCtrl::FirmwareReport)
        .await;
    let events = wire
        .deliver_ack(TopicKind::UpdateTimeAck, HeaderCtrl::TimeSync)
        .await;
    assert!(
        matches!(events[..], [x_runtime::Event::TimeSynced { .. }]),
        "{events:?}"
    );

    // 9 with another DownID: a bad answer.
    let (answer, ()) = tokio::join!(
        p.send_command(id, Command::NotifyOta(notify()), None),
        async {
            let m = wire
                .expect(TopicKind::OtaNotify, HeaderCtrl::OtaNotify)
                .await;
            assert_eq!(m.frame.payload["DownID"], "D0000001");
            wire.answer(&m, json!({"DownID": "WRONG"})).await;
        }
    );
    match answer {
        Err(CommandError::BadAnswer { reason, .. }) => {
            assert!(reason.contains("DownID"), "{reason}");
        }
        other => panic!("{other:?}"),
    }

    // 20 acked with Data out of the model's range: a bad answer.
    let set = Command::SetProperties(json!({"switch": 1}));
    let (answer, ()) = tokio::join!(p.send_command(id, set, None), async {
        let m = wire
            .expect(TopicKind::PropertySet, HeaderCtrl::PropertySet)
            .await;
        let params = json!({"params": [{"identify": "switch", "value": 1}]});
        assert_eq!(m.frame.payload, params);
        let ack = AckPayload::success(Some(json!({"power": 99_999})));
        wire.answer(&m, ack.to_value()).await;
    });
    match answer {
        Err(CommandError::BadAnswer { reason, .. }) => {
            assert_eq!(reason, "Data: power: 99999 is above the maximum 3500");
        }
        other => panic!("{other:?}"),
    }
    wire.disconnect().await;
}

/// Every row for a runtime device of `params` (services answered by the application),
/// then the wrong answers.
async fn every_row(sim: &Sim, params: &Params) {
    let dir = tempfile::tempdir().unwrap();
    let addr = sim.mqtt_addr().unwrap();
    let device = online(
        params
            .builder::<SmartPlug, SmartPlugService>(addr)
            .firmware("h1", "1.0.1")
            .settings(object(json!({"reportPeriod": 60})))
            .state_dir(dir.path()),
    )
    .await;
    let persisted = device.persisted().unwrap().unwrap();
    assert_eq!(persisted.session.is_some(), params.encrypted);
    device_rows(sim, &device, &params.id).await;
    platform_rows(sim, &device, &params.id).await;
    assert_eq!(device.counters().session.bad_frames, 0);
    device.shutdown().await;
    wrong_answers(sim, params, device.persisted().unwrap().unwrap()).await;
}

#[tokio::test]
async fn every_row_plain_product() {
    let sim = sim().await;
    let params = plug();
    every_row(&sim, &params).await;

    // What was received is stored and queryable.
    let p = sim.platform();
    let id = &params.id;
    let latest = p.latest_properties(id);
    assert_eq!(latest["switch"].value, json!(1));
    // The answer to the ask (3.5) is the latest power; the history entry (1.5) keeps its
    // own, older time.
    assert_eq!(latest["power"].value, json!(3.5));
    let history: Vec<Value> = p
        .property_history(id, Some("power"))
        .into_iter()
        .map(|(_, t)| t.value)
        .collect();
    assert_eq!(history, vec![json!(1.5), json!(12.5), json!(3.5)]);
    let events: Vec<(String, i64)> = p
        .events(id)
        .into_iter()
        .map(|e| (e.identifier, e.time))
        .collect();
    assert_eq!(events[0], ("overheat".into(), 1_700_000_001_000));
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn every_row_encrypted_product() {
    let sim = sim().await;
    let params = encrypted();
    every_row(&sim, &params).await;
    // The platform stored plain payloads.
    let last_report = sim
        .platform()
        .received_from(&params.id)
        .into_iter()
        .find(|r| r.header_ctrl == HeaderCtrl::PropertyReport)
        .unwrap();
    assert_eq!(last_report.payload, json!({"switch": 1, "power": 12.5}));
}

#[tokio::test]
async fn commands_to_encrypted_devices_travel_encrypted() {
    let sim = sim().await;
    let params = encrypted();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let key = wire.key.clone().unwrap();
    let p = sim.platform();
    let (result, ()) = tokio::join!(
        p.send_command(
            &params.id,
            Command::AskConfig,
            Some(Duration::from_millis(300))
        ),
        async {
            let m = wire.expect(TopicKind::AskConfig, HeaderCtrl::Config).await;
            let sent = Frame::decode(&m.bytes).unwrap();
            assert!(sent.payload.is_string(), "{:?}", sent.payload);
            assert_eq!(sent.decrypted_payload(&key).unwrap(), json!({}));
        }
    );
    assert!(matches!(result, Err(CommandError::Timeout { .. })));
}

#[tokio::test]
async fn plaintext_from_a_device_of_an_encrypted_product_is_refused() {
    let sim = sim().await;
    let params = encrypted();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let key = wire.key.clone().unwrap();
    for (kind, ctrl, payload) in [
        (
            TopicKind::PropertyReport,
            HeaderCtrl::PropertyReport,
            json!({"power": 1}),
        ),
        (TopicKind::Uplink, HeaderCtrl::Uplink, json!({"data": "AA"})),
        (
            TopicKind::FirmwareReport,
            HeaderCtrl::FirmwareReport,
            json!({"HardVer": "1", "SoftVer": "1", "Type": 2}),
        ),
    ] {
        let topic = wire.topic(kind);
        let id = wire.next_id();
        // Published as it is, without the encryption `send` would apply.
        let frame = Frame::new(id.clone(), ctrl, payload);
        wire.publish(&topic, frame.encode()).await;
        let ack = wire.next().await;
        let (want, _) = topic.reply_topic(ctrl).unwrap();
        assert_eq!((&ack.topic, &ack.frame.message_id), (&want, &id));
        // The refusal itself travels encrypted, like every ack of the product.
        let plain = ack.frame.decrypted_payload(&key).unwrap();
        let ack: AckPayload = serde_json::from_value(plain).unwrap();
        assert_eq!(ack.code.as_str(), "4001", "{kind:?}");
        assert!(ack.msg.contains("payload must be encrypted"), "{}", ack.msg);
    }
    assert!(
        !sim.platform()
            .latest_properties(&params.id)
            .contains_key("power")
    );
}

/// A misbehaving auth phase: logged in with the product credentials of `login`, a request
/// about `asked`. The reply, on the login's downlink with the request's MessageId.
async fn ask_auth_for(
    addr: std::net::SocketAddr,
    login: &Params,
    asked: &DeviceIdentity,
) -> AuthReply {
    let mut mqtt = Mqtt::open(addr, &MqttLogin::auth(&login.id, &login.product_key))
        .await
        .unwrap();
    mqtt.subscribe(&[TopicKind::Downlink.filter(&login.id)])
        .await;
    let request = AuthRequest {
        open_id: asked.open_id.clone(),
        product_id: asked.product_id.clone(),
        node_eui: asked.node_eui.clone(),
        registration_type: login.registration,
    };
    let frame = Frame::with_payload(4242u32, HeaderCtrl::Auth, &request).unwrap();
    mqtt.publish(&Topic::auth().to_string(), frame.encode())
        .await;
    let (topic, bytes) = mqtt.next().await;
    let downlink = Topic::new(login.id.clone(), TopicKind::Downlink).unwrap();
    assert_eq!(topic, downlink.to_string());
    let reply = Frame::decode(&bytes).unwrap();
    assert_eq!(reply.message_id, 4242u32.into());
    reply.payload_as().unwrap()
}

#[tokio::test]
async fn every_auth_code_over_mqtt() {
    let sim = sim().await;
    let addr = sim.mqtt_addr().unwrap();
    // 0: a pre-registered type-1 device gets its secret (no session: a plain product).
    let dir = tempfile::tempdir().unwrap();
    let device = online(plug().plug(addr).state_dir(dir.path())).await;
    let kept = device.persisted().unwrap().unwrap();
    assert!(
        kept.device_secret.is_some() && kept.session.is_none(),
        "{kept:?}"
    );
    device.shutdown().await;
    // 2: the request names a product this login is not for.
    let other = DeviceIdentity::parse("11111111", "AA30C505", "PLUG0001").unwrap();
    let r = ask_auth_for(addr, &plug(), &other).await;
    assert_eq!(r.code, AuthCode::ProductNotRegistered);
    // 4: not pre-registered (type 1), or disabled.
    for node in ["NOSUCH01", "PLUGOFF1"] {
        let device = common::plug_named(node).plug(addr);
        assert_eq!(
            refusal(device).await,
            Refusal::Auth(AuthCode::DeviceRejected),
            "{node}"
        );
    }
    // 5: the request's Type is not the product's.
    let wrong_type = plug()
        .plug(addr)
        .registration(RegistrationType::ProductSecretUnregistered);
    assert_eq!(
        refusal(wrong_type).await,
        Refusal::Auth(AuthCode::TypeMismatch)
    );
    // An encrypted product's Code 0 carries SessionID and Nonce, the platform's session.
    let params = encrypted();
    let dir = tempfile::tempdir().unwrap();
    let device = online(params.plug(addr).state_dir(dir.path())).await;
    let grant = device.persisted().unwrap().unwrap().session.unwrap();
    assert!(grant.session_id.len() + format!("{:x}", grant.nonce).len() < 16);
    assert_eq!(
        sim.platform().session_key(&params.id),
        Some(derive_session_key(&params.product_key, &grant.session_id, grant.nonce).unwrap())
    );
}

/// Sends a property report encrypted under `key` and returns the ack's code.
async fn report_under(wire: &mut Wire, key: &SessionKey) -> String {
    let mut frame = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"switch": 0}),
    );
    frame.encrypt_payload(key);
    let topic = wire.topic(TopicKind::PropertyReport);
    wire.publish(&topic, frame.encode()).await;
    let ack = wire
        .expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
        .await;
    ack.frame.ack().unwrap().code.as_str().to_owned()
}

#[tokio::test]
async fn session_key_rotation_on_demand() {
    let sim = sim().await;
    let params = encrypted();
    let id = &params.id;
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let old = wire.key.clone().unwrap();
    let grant = sim.platform().rotate_key(id).unwrap();
    // HeaderCtrl 3 on the downlink, encrypted under the old key.
    let m = wire
        .expect(TopicKind::Downlink, HeaderCtrl::SessionKeyUpdate)
        .await;
    assert!(Frame::decode(&m.bytes).unwrap().payload.is_string());
    let sent: SessionGrant = serde_json::from_value(m.frame.payload.clone()).unwrap();
    assert_eq!(sent, grant);
    // The session takes the new key from it.
    wire.deliver(&m).await;
    let new = wire.key.clone().unwrap();
    assert_ne!(new, old);
    assert_eq!(sim.platform().session_key(id), Some(new.clone()));
    // The new key works; the old one still does until the next rotation.
    assert_eq!(report_under(&mut wire, &new).await, "200");
    assert_eq!(report_under(&mut wire, &old).await, "200");
    sim.platform().rotate_key(id).unwrap();
    let m = wire
        .expect(TopicKind::Downlink, HeaderCtrl::SessionKeyUpdate)
        .await;
    wire.deliver(&m).await;
    assert_eq!(report_under(&mut wire, &old).await, "4001");
    // A plain product has no session to rotate.
    assert!(matches!(
        sim.platform().rotate_key(&plug().id),
        Err(CommandError::NoSession(_))
    ));
}

#[tokio::test]
async fn session_keys_rotate_when_they_expire() {
    let mut config = SimConfig::local(common::registry(&registry()));
    config.platform.session_ttl = Duration::from_millis(1500);
    let sim = Sim::start(config).await.unwrap();
    let params = encrypted();
    let dir = tempfile::tempdir().unwrap();
    let device = online(params.plug(sim.mqtt_addr().unwrap()).state_dir(dir.path())).await;
    let first = sim.platform().session_grant(&params.id).unwrap();
    assert_eq!(
        device.persisted().unwrap().unwrap().session,
        Some(first.clone())
    );
    request(&device, |r| matches!(r, Request::KeyRotated).then_some(())).await;
    let rotated = device.persisted().unwrap().unwrap().session.unwrap();
    assert_ne!(rotated, first);
    assert_eq!(sim.platform().session_grant(&params.id), Some(rotated));
    // Reports go on under the new key.
    acked(device.report(SmartPlugReport::default().with_countdown(5)))
        .await
        .unwrap();
}

/// Auth requests that cannot be honoured get the code the document's table gives them, not
/// silence (which a device reads as a retryable timeout).
#[tokio::test]
async fn unreadable_auth_requests_get_their_codes() {
    let sim = sim().await;
    let login = plug();
    let mut mqtt = Mqtt::open(
        sim.mqtt_addr().unwrap(),
        &MqttLogin::auth(&login.id, &login.product_key),
    )
    .await
    .unwrap();
    mqtt.subscribe(&[TopicKind::Downlink.filter(&login.id)])
        .await;
    let request = |message_id: u32, version: &str, node_eui: &str, ty: Value| {
        json!({
            "MessageId": message_id,
            "HeaderCtrl": 1,
            "Payload": {"OpenID": "7ED01E2A", "ProductID": "AA30C505", "NodeEui": node_eui, "Type": ty},
            "Version": version,
        })
    };
    for (id, frame, code) in [
        (
            61,
            request(61, "1.0", "PLUG0001", json!(1)),
            AuthCode::VersionMismatch,
        ),
        (
            62,
            request(62, "2.0", "bad/eui", json!(1)),
            AuthCode::DeviceRejected,
        ),
        (
            63,
            request(63, "2.0", "PLUG0001", json!(9)),
            AuthCode::TypeMismatch,
        ),
        (
            64,
            request(64, "2.0", "PLUG0001", json!("one")),
            AuthCode::TypeMismatch,
        ),
    ] {
        mqtt.publish(
            &Topic::auth().to_string(),
            serde_json::to_vec(&frame).unwrap(),
        )
        .await;
        let (topic, bytes) = mqtt.next().await;
        assert_eq!(topic, TopicKind::Downlink.filter(&login.id));
        let reply = Frame::decode(&bytes).unwrap();
        assert_eq!(reply.message_id, x_protocol::MessageId::from(id as u32));
        let reply: AuthReply = reply.payload_as().unwrap();
        assert_eq!(reply.code, code, "{frame}");
        assert!(reply.device_secret.is_none());
    }
}

/// An answer on the wrong topic or with the wrong HeaderCtrl is a violation the platform
/// reports, not an answer it takes.
#[tokio::test]
async fn answers_off_the_command_table_are_refused() {
    let sim = sim().await;
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let p = sim.platform();
    for (topic, ctrl) in [
        (TopicKind::DownlinkAck, HeaderCtrl::PropertySet),
        (TopicKind::PropertySetAck, HeaderCtrl::ServiceCall),
    ] {
        let set = Command::SetProperties(json!({"countdown": 5}));
        let (result, ()) = tokio::join!(p.send_command(&params.id, set, None), async {
            let m = wire
                .expect(TopicKind::PropertySet, HeaderCtrl::PropertySet)
                .await;
            let ack = Frame::new(
                m.frame.message_id.clone(),
                ctrl,
                AckPayload::success(Some(json!({"countdown": 5}))).to_value(),
            );
            let to = wire.topic(topic);
            wire.send(&to, ack).await;
        });
        let err = result.unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, CommandError::BadAnswer { .. }), "{text}");
        assert!(
            text.contains("the command table says HeaderCtrl 20 on"),
            "{text}"
        );
        assert!(text.contains("model/property/set_ack"), "{text}");
    }
}
