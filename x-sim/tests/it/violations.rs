//! The violation log (issue 11, item 6): every rule a device breaks is recorded per device
//! with the frame as it came, served by `GET /api/devices/{product}/{node}/violations` and
//! counted in `GET /api/devices`, so that a CI run can assert "no violations" in one call.
//!
//! The misbehaving devices are wires (the runtime's session logs them in; the test sends the
//! bad frames), the behaving ones the runtime's `Device`. Also: the log survives a killed
//! `x-sim serve --data`, and it keeps only the newest violations of a device.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::smart_plug::{SmartPlug, SmartPlugService};
use common::wire::{Mqtt, Wire};
use common::{Api, Params, acked, object, online, plug, plug_device, refusal};
use reqwest::StatusCode;
use serde_json::{Value, json};
use x_protocol::payload::{AuthCode, OtaNotify};
use x_protocol::{
    AckPayload, Frame, HeaderCtrl, MqttLogin, Publisher, SessionKey, Topic, TopicKind,
};
use x_runtime::{Persisted, Refusal, Request};
use x_sim::platform::{Command, CommandError, Rule};
use x_sim::sim::{Sim, SimConfig};

/// The meter's HEX product and device (docs/hex-format.md).
const METER: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "4D455445"
product_key = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
format = "hex"
model = "models/meter-hex.json"

[[device]]
product_id = "4D455445"
node_eui = "MTR00001"
"#;

/// The meter report of docs/hex-format.md (a property report, 16, once decoded).
const METER_REPORT: &str = "019d087d00130140e20100e903010130303031323334353637383984030000";

/// The smart plug with PLUG0001 and PLUG0002, the encrypted product, the meter.
fn registry() -> String {
    [
        common::plug_product(),
        plug_device("PLUG0001", ""),
        plug_device("PLUG0002", ""),
        common::encrypted_product(),
        METER.to_owned(),
    ]
    .concat()
}

fn meter() -> Params {
    Params::new("4D455445", "MTR00001", "0F1E2D3C4B5A69788796A5B4C3D2E1F0")
}

/// `GET .../violations` of a device.
async fn violations(api: &Api, params: &Params) -> Value {
    api.ok(&path(params)).await
}

fn path(params: &Params) -> String {
    format!(
        "/api/devices/{}/{}/violations",
        params.id.product_id, params.id.node_eui
    )
}

/// Waits until the device has `n` violations; the API's answer.
async fn until_violations(api: &Api, params: &Params, n: u64) -> Value {
    api.until(&path(params), |v| v["total"] == json!(n)).await
}

/// The rule names of an API answer, in order.
fn rules(answer: &Value) -> Vec<&str> {
    common::each(&answer["violations"], |v| v["rule"].as_str())
}

/// A frame as JSON, as it travels.
fn sent(frame: &Frame) -> Value {
    serde_json::from_slice(&frame.encode()).unwrap()
}

/// The `violations` count of every device in `GET /api/devices`, by NodeEui.
async fn counts(api: &Api) -> Vec<(String, u64)> {
    common::each(&api.ok("/api/devices").await, |d| {
        Some((
            d["node_eui"].as_str()?.to_owned(),
            d["violations"].as_u64()?,
        ))
    })
}

/// Sends `frame` on `topic` (encrypted where the wire's product is) and takes its ack,
/// which must be a "4001"; its Msg.
async fn refused(wire: &mut Wire, topic: &Topic, frame: &Frame) -> String {
    wire.send(topic, frame.clone()).await;
    let ack = wire.next().await;
    assert_eq!(ack.frame.message_id, frame.message_id, "{ack:?}");
    let ack = ack.frame.ack().unwrap();
    assert_eq!(ack.code.as_str(), "4001", "{}", ack.msg);
    ack.msg
}

/// Checks a violation record: its rule, reason, topic, HeaderCtrl, MessageId and frame.
#[track_caller]
fn check(v: &Value, rule: Rule, reason: &str, topic: &str, frame: &Frame) {
    assert_eq!(v["rule"], json!(rule.name()), "{v:#}");
    assert_eq!(v["reason"], json!(reason), "{v:#}");
    assert_eq!(v["topic"], json!(topic), "{v:#}");
    assert_eq!(v["HeaderCtrl"], json!(frame.header_ctrl.code()), "{v:#}");
    assert_eq!(v["MessageId"], json!(frame.message_id), "{v:#}");
    assert_eq!(v["frame"], sent(frame), "{v:#}");
    assert_eq!(v["truncated"], json!(false), "{v:#}");
    assert!(v["time"].as_i64().unwrap() > 1_700_000_000_000, "{v:#}");
}

#[tokio::test]
async fn refused_frames_are_logged_with_the_frame() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let report = wire.topic(TopicKind::PropertyReport);

    // thing_model: a value outside the model, and an unknown property.
    let out_of_range = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": 99_999}),
    );
    let msg = refused(&mut wire, &report, &out_of_range).await;
    assert_eq!(msg, "power: 99999 is above the maximum 3500");
    let unknown = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"colour": 1}),
    );
    assert_eq!(
        refused(&mut wire, &report, &unknown).await,
        "colour: unknown property"
    );
    // header_ctrl_mismatch: a property report on an event topic.
    let event = wire.topic_of(TopicKind::EventReport, "overheat");
    let misplaced = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": 1}),
    );
    let msg = refused(&mut wire, &event, &misplaced).await;
    assert_eq!(
        msg,
        "HeaderCtrl 16 does not belong on model/event/{id}/report"
    );
    // bad_payload: a firmware report without SoftVer.
    let firmware = Frame::new(
        wire.next_id(),
        HeaderCtrl::FirmwareReport,
        json!({"HardVer": "h1", "Type": 2}),
    );
    let firmware_topic = wire.topic(TopicKind::FirmwareReport);
    let fw_msg = refused(&mut wire, &firmware_topic, &firmware).await;
    assert!(
        fw_msg.starts_with("Payload: not a firmware report"),
        "{fw_msg}"
    );
    // unreadable_frame: not JSON, and a frame of another Version (not acked; what it says
    // is still read: HeaderCtrl and MessageId).
    wire.publish(&report, b"not a frame".to_vec()).await;
    let old = json!({"MessageId": 77, "HeaderCtrl": 16, "Payload": {"power": 1}, "Version": "1.0"});
    wire.publish(&report, serde_json::to_vec(&old).unwrap())
        .await;

    let log = until_violations(&api, &params, 6).await;
    assert_eq!(
        rules(&log),
        [
            "thing_model",
            "thing_model",
            "header_ctrl_mismatch",
            "bad_payload",
            "unreadable_frame",
            "unreadable_frame"
        ]
    );
    assert_eq!(
        (log["total"].clone(), log["dropped"].clone()),
        (json!(6), json!(0))
    );
    let list = log["violations"].as_array().unwrap();
    let prefix = params.id.topic_prefix();
    let reports = format!("{prefix}/model/property/report");
    check(
        &list[0],
        Rule::ThingModel,
        "power: 99999 is above the maximum 3500",
        &reports,
        &out_of_range,
    );
    check(
        &list[1],
        Rule::ThingModel,
        "colour: unknown property",
        &reports,
        &unknown,
    );
    check(
        &list[2],
        Rule::HeaderCtrlMismatch,
        "HeaderCtrl 16 does not belong on model/event/{id}/report",
        &format!("{prefix}/model/event/overheat/report"),
        &misplaced,
    );
    check(
        &list[3],
        Rule::BadPayload,
        &fw_msg,
        &format!("{prefix}/firmware_report"),
        &firmware,
    );
    assert_eq!(list[4]["frame"], json!("not a frame"));
    assert_eq!(
        (&list[4]["HeaderCtrl"], &list[4]["MessageId"]),
        (&Value::Null, &Value::Null)
    );
    assert!(
        list[4]["reason"].as_str().unwrap().ends_with("(not acked)"),
        "{}",
        list[4]
    );
    assert_eq!(list[5]["frame"], old);
    assert_eq!(
        (&list[5]["HeaderCtrl"], &list[5]["MessageId"]),
        (&json!(16), &json!(77))
    );
    assert!(
        list[5]["reason"].as_str().unwrap().contains("Version"),
        "{}",
        list[5]
    );
    // Plain products: no decrypted payload beside the frame.
    assert!(list.iter().all(|v| v["payload"].is_null()));
    // Sequence numbers 1, 2, ...
    assert_eq!(
        common::each(&log["violations"], |v| v["seq"].as_u64()),
        [1, 2, 3, 4, 5, 6]
    );

    // The Rust API says the same; rejected messages are not received data.
    let p = sim.platform();
    let kept = p.violations(&params.id);
    assert_eq!(kept.len(), 6);
    assert_eq!(kept[0].rule, Rule::ThingModel);
    assert_eq!(kept[0].message_id, Some(out_of_range.message_id.clone()));
    assert_eq!(p.violation_count(&params.id), 6);
    assert!(p.received_from(&params.id).is_empty());
    // Counted per device in the device list (the other devices broke nothing).
    let counts = counts(&api).await;
    assert!(counts.contains(&("PLUG0001".to_owned(), 6)), "{counts:?}");
    assert!(counts.contains(&("PLUG0002".to_owned(), 0)), "{counts:?}");
    let one = api.ok("/api/devices/AA30C505/PLUG0001").await;
    assert_eq!(one["violations"], json!(6));
    // Paging as for messages.
    let page = api.ok(&format!("{}?after=4&limit=1", path(&params))).await;
    assert_eq!(
        common::each(&page["violations"], |v| v["seq"].as_u64()),
        [5]
    );
    let (status, body) = api
        .send(api.get(&format!("{}?after=x", path(&params))))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
}

#[tokio::test]
async fn encrypted_products_plaintext_and_undecryptable_payloads() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = common::encrypted("ENC00001");
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let key = wire.key.clone().unwrap();
    let report = wire.topic(TopicKind::PropertyReport);

    // plaintext: published as it is, without the encryption `send` applies. It carries the
    // device's SessionKey and a DeviceSecret field, which the record must not.
    let plain = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": 1, "note": key.expose_hex().to_lowercase(), "DeviceSecret": "0011"}),
    );
    wire.publish(&report, plain.encode()).await;
    let ack = wire
        .expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
        .await;
    assert_eq!(ack.frame.ack().unwrap().code.as_str(), "4001");
    // undecryptable: encrypted under another key.
    let mut wrong = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": 2}),
    );
    let other: SessionKey = "000102030405060708090A0B0C0D0E0F".parse().unwrap();
    wrong.encrypt_payload(&other);
    wire.publish(&report, wrong.encode()).await;
    let ack = wire
        .expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
        .await;
    assert_eq!(ack.frame.ack().unwrap().code.as_str(), "4001");
    // thing_model under the right key: the frame as it came (ciphertext), and its payload
    // decrypted beside it.
    let bad = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": -5}),
    );
    let msg = refused(&mut wire, &report, &bad).await;
    assert_eq!(msg, "power: -5 is below the minimum 0");

    let log = until_violations(&api, &params, 3).await;
    assert_eq!(rules(&log), ["plaintext", "undecryptable", "thing_model"]);
    let list = log["violations"].as_array().unwrap();
    let reports = format!("{}/model/property/report", params.id.topic_prefix());
    assert_eq!(
        list[0]["reason"],
        json!("payload must be encrypted for this product (HeaderCtrl 16 travels encrypted)")
    );
    assert_eq!(
        list[0]["frame"]["Payload"],
        json!({"power": 1, "note": "[redacted]", "DeviceSecret": "[redacted]"})
    );
    assert_eq!(list[0]["payload"], Value::Null);
    check(
        &list[1],
        Rule::Undecryptable,
        list[1]["reason"].as_str().unwrap(),
        &reports,
        &wrong,
    );
    assert_eq!(list[1]["payload"], Value::Null);
    let mut encrypted = bad.clone();
    encrypted.encrypt_payload(&key);
    check(&list[2], Rule::ThingModel, &msg, &reports, &encrypted);
    assert_eq!(list[2]["payload"], json!({"power": -5}));
    // No secret anywhere in what the API serves.
    let text = log.to_string().to_uppercase();
    assert!(!text.contains(&key.expose_hex().to_uppercase()), "{text}");
    assert!(!text.contains(&params.product_key.expose_hex().to_uppercase()));

    // A plain answer to a command is refused too (502), and logged once; a plain config
    // report nobody asked for is logged as well.
    let p = sim.platform();
    let (result, answer) = tokio::join!(
        p.send_command(&params.id, Command::AskConfig, None),
        async {
            let m = wire.expect(TopicKind::AskConfig, HeaderCtrl::Config).await;
            let (to, reply) = m.topic.reply_topic(m.frame.header_ctrl).unwrap();
            let answer = Frame::new(
                m.frame.message_id.clone(),
                reply.header_ctrl,
                json!({"Settings": {"reportPeriod": 60}}),
            );
            wire.publish(&to, answer.encode()).await;
            answer
        }
    );
    let Err(CommandError::BadAnswer { reason, .. }) = result else {
        panic!("{result:?}");
    };
    assert!(reason.starts_with("payload must be encrypted"), "{reason}");
    let unasked = Frame::new(
        wire.next_id(),
        HeaderCtrl::Config,
        json!({"Settings": {"reportPeriod": 30}}),
    );
    wire.publish(&wire.topic(TopicKind::ConfigReport), unasked.encode())
        .await;
    let log = until_violations(&api, &params, 5).await;
    assert_eq!(rules(&log)[3..], ["plaintext", "plaintext"]);
    let configs = format!("{}/config_report", params.id.topic_prefix());
    check(
        &log["violations"][3],
        Rule::Plaintext,
        &reason,
        &configs,
        &answer,
    );
    check(
        &log["violations"][4],
        Rule::Plaintext,
        &reason,
        &configs,
        &unasked,
    );
}

#[tokio::test]
async fn hex_frames_the_script_refuses() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = meter();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    // A session without the meter's model subscribes to no HEX acks.
    let granted = wire
        .subscribe(&[TopicKind::HexReportAck, TopicKind::FullHexAck])
        .await;
    assert_eq!(granted, [true, true]);
    let hex_report = wire.topic(TopicKind::HexReport);
    // hex_parse: no hex at all.
    let garbage = Frame::new(wire.next_id(), HeaderCtrl::HexPropertyReport, json!("zz"));
    let parse_msg = refused(&mut wire, &hex_report, &garbage).await;
    // header_ctrl_mismatch: a property report sent as an event report (19).
    let as_event = Frame::new(
        wire.next_id(),
        HeaderCtrl::HexEventReport,
        json!(METER_REPORT),
    );
    let msg = refused(&mut wire, &hex_report, &as_event).await;
    assert_eq!(msg, "HeaderCtrl 19 but the parsing script decoded 16");
    // hex_parse of a full-HEX report (28): the bare text as it came, HeaderCtrl 28.
    let full = wire.topic(TopicKind::FullHex);
    wire.publish(&full, b"0102zz".to_vec()).await;
    let ack = wire
        .expect(TopicKind::FullHexAck, HeaderCtrl::FullHexReport)
        .await;
    assert_eq!(ack.frame.ack().unwrap().code.as_str(), "4001");

    let log = until_violations(&api, &params, 3).await;
    assert_eq!(
        rules(&log),
        ["hex_parse", "header_ctrl_mismatch", "hex_parse"]
    );
    let list = log["violations"].as_array().unwrap();
    let prefix = params.id.topic_prefix();
    let reports = format!("{prefix}/model/hex/report");
    check(&list[0], Rule::HexParse, &parse_msg, &reports, &garbage);
    check(
        &list[1],
        Rule::HeaderCtrlMismatch,
        &msg,
        &reports,
        &as_event,
    );
    assert_eq!(list[2]["topic"], json!(format!("{prefix}/model/hex")));
    assert_eq!(list[2]["HeaderCtrl"], json!(28));
    assert_eq!(list[2]["MessageId"], Value::Null);
    assert_eq!(list[2]["frame"], json!("0102zz"));
    // A good report is no violation.
    let good = Frame::new(
        wire.next_id(),
        HeaderCtrl::HexPropertyReport,
        json!(METER_REPORT),
    );
    wire.send(&hex_report, good).await;
    let ack = wire
        .expect(TopicKind::HexReportAck, HeaderCtrl::HexPropertyReport)
        .await;
    assert!(ack.frame.ack().unwrap().code.is_success());
    assert_eq!(violations(&api, &params).await["total"], json!(3));
}

/// The OTA notify of the bad-answer test.
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

#[tokio::test]
async fn bad_answers_are_logged_and_502() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let set = "/api/devices/AA30C505/PLUG0001/properties";
    let prefix = params.id.topic_prefix();
    let mut answers = Vec::new();
    // answer_off_table: a property set answered with a passthrough ack (7 on downlink_ack),
    // and with HeaderCtrl 21 on its own ack topic (one violation, not two); bad_answer: set
    // Data the model refuses.
    for (kind, ctrl, data) in [
        (
            TopicKind::DownlinkAck,
            HeaderCtrl::Downlink,
            json!({"countdown": 5}),
        ),
        (
            TopicKind::PropertySetAck,
            HeaderCtrl::ServiceCall,
            json!({"countdown": 5}),
        ),
        (
            TopicKind::PropertySetAck,
            HeaderCtrl::PropertySet,
            json!({"power": 99_999}),
        ),
    ] {
        let ((status, body), answer) = tokio::join!(
            api.send(api.post(set).json(&json!({"countdown": 5}))),
            async {
                let m = wire
                    .expect(TopicKind::PropertySet, HeaderCtrl::PropertySet)
                    .await;
                let ack = Frame::new(
                    m.frame.message_id.clone(),
                    ctrl,
                    AckPayload::success(Some(data)).to_value(),
                );
                let to = wire.topic(kind);
                wire.send(&to, ack.clone()).await;
                (to, ack)
            }
        );
        assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
        answers.push((answer, body["error"].as_str().unwrap().to_owned()));
    }
    // bad_answer through the Rust API: an OTA ack with another DownID.
    let (result, ota_ack) = tokio::join!(
        sim.platform()
            .send_command(&params.id, Command::NotifyOta(notify()), None),
        async {
            let m = wire
                .expect(TopicKind::OtaNotify, HeaderCtrl::OtaNotify)
                .await;
            let (to, reply) = m.topic.reply_topic(m.frame.header_ctrl).unwrap();
            let ack = Frame::new(
                m.frame.message_id.clone(),
                reply.header_ctrl,
                json!({"DownID": "WRONG"}),
            );
            wire.send(&to, ack.clone()).await;
            ack
        }
    );
    let Err(CommandError::BadAnswer {
        reason: ota_reason, ..
    }) = result
    else {
        panic!("{result:?}");
    };

    let log = violations(&api, &params).await;
    assert_eq!(
        rules(&log),
        [
            "answer_off_table",
            "answer_off_table",
            "bad_answer",
            "bad_answer"
        ]
    );
    let list = log["violations"].as_array().unwrap();
    for (v, ((topic, frame), error)) in list.iter().zip(&answers) {
        // The reason is the 502's.
        let reason = v["reason"].as_str().unwrap();
        assert!(error.ends_with(reason), "{error} / {reason}");
        check(
            v,
            v["rule"].as_str().unwrap().parse().unwrap(),
            reason,
            &topic.to_string(),
            frame,
        );
    }
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .contains("the command table says HeaderCtrl 20 on"),
        "{}",
        list[0]
    );
    assert_eq!(
        list[2]["reason"],
        json!("Data: power: 99999 is above the maximum 3500")
    );
    check(
        &list[3],
        Rule::BadAnswer,
        &ota_reason,
        &format!("{prefix}/ota_notify_ack"),
        &ota_ack,
    );
}

#[tokio::test]
async fn refused_auth_requests_are_logged() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let addr = sim.mqtt_addr().unwrap();
    let login = plug();
    let mut mqtt = Mqtt::open(addr, &MqttLogin::auth(&login.id, &login.product_key))
        .await
        .unwrap();
    mqtt.subscribe(&[TopicKind::Downlink.filter(&login.id)])
        .await;
    // auth_refused: Version 1.0 gets code 6.
    let old = json!({
        "MessageId": 61, "HeaderCtrl": 1, "Version": "1.0",
        "Payload": {"OpenID": "7ED01E2A", "ProductID": "AA30C505", "NodeEui": "PLUG0001", "Type": 1},
    });
    let auth = Topic::auth().to_string();
    mqtt.publish(&auth, serde_json::to_vec(&old).unwrap()).await;
    let (_, reply) = mqtt.next().await;
    let reply: x_protocol::payload::AuthReply =
        Frame::decode(&reply).unwrap().payload_as().unwrap();
    assert_eq!(reply.code, AuthCode::VersionMismatch);
    // header_ctrl_mismatch: a property report on the auth topic (not answered).
    let report = Frame::new(62u32, HeaderCtrl::PropertyReport, json!({"power": 1}));
    mqtt.publish(&auth, report.encode()).await;
    assert!(mqtt.quiet_for(Duration::from_millis(300)).await);
    let log = until_violations(&api, &login, 2).await;
    assert_eq!(rules(&log), ["auth_refused", "header_ctrl_mismatch"]);
    let list = log["violations"].as_array().unwrap();
    assert_eq!(list[0]["topic"], json!("/sys/device/auth"));
    assert_eq!(
        (&list[0]["HeaderCtrl"], &list[0]["MessageId"]),
        (&json!(1), &json!(61))
    );
    assert_eq!(list[0]["frame"], old);
    assert!(
        list[0]["reason"]
            .as_str()
            .unwrap()
            .ends_with("refused with code 6")
    );
    check(
        &list[1],
        Rule::HeaderCtrlMismatch,
        list[1]["reason"].as_str().unwrap(),
        "/sys/device/auth",
        &report,
    );

    // A runtime device that is not pre-registered is refused (4): logged under its
    // identity, which the API serves although the device is not registered.
    let stranger = common::plug_named("NOSUCH01");
    assert_eq!(
        refusal(stranger.plug(addr)).await,
        Refusal::Auth(AuthCode::DeviceRejected)
    );
    let log = api
        .until(&path(&stranger), |v| v["total"].as_u64() >= Some(1))
        .await;
    assert_eq!(rules(&log)[0], "auth_refused");
    assert_eq!(
        log["violations"][0]["reason"],
        json!(
            "refused with code 4: the device is disabled, not pre-registered, or not the device the login named"
        )
    );
    // An unknown device that broke nothing is not found; nor is one of an unknown product.
    for unknown in [
        "/api/devices/AA30C505/NEVER001/violations",
        "/api/devices/00000000/PLUG0001/violations",
    ] {
        let (status, body) = api.send(api.get(unknown)).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{unknown}: {body}");
    }
    // The device list holds registered devices only.
    let counts = counts(&api).await;
    assert!(!counts.iter().any(|(n, _)| n == "NOSUCH01"), "{counts:?}");
}

#[tokio::test]
async fn forbidden_topics_and_subscriptions_are_logged() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    // forbidden_subscription: another device's topics.
    let other = plug_device_filter("PLUG0002");
    let codes = wire.mqtt().subscribe(std::slice::from_ref(&other)).await;
    assert_eq!(codes, [rumqttc::SubscribeReasonCode::Failure]);
    // forbidden_topic: the platform's own property set topic; the connection closes.
    let set = wire.topic(TopicKind::PropertySet);
    let frame = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertySet,
        json!({"params": []}),
    );
    wire.publish(&set, frame.encode()).await;
    assert!(wire.mqtt().closed_within(common::WAIT).await.is_some());

    let log = until_violations(&api, &params, 2).await;
    assert_eq!(rules(&log), ["forbidden_subscription", "forbidden_topic"]);
    let list = log["violations"].as_array().unwrap();
    assert_eq!(list[0]["topic"], json!(other));
    assert_eq!(list[0]["frame"], Value::Null);
    assert!(
        list[0]["reason"].as_str().unwrap().ends_with("SUBACK 0x80"),
        "{}",
        list[0]
    );
    check(
        &list[1],
        Rule::ForbiddenTopic,
        list[1]["reason"].as_str().unwrap(),
        &set.to_string(),
        &frame,
    );
    assert!(
        list[1]["reason"]
            .as_str()
            .unwrap()
            .ends_with("connection closed")
    );
}

/// A subscription filter of every topic of another plug.
fn plug_device_filter(node: &str) -> String {
    format!("{}/#", common::plug_named(node).id.topic_prefix())
}

/// A runtime device of `params`, through every row a device sends and answers: reports,
/// events, history, passthrough, and the platform's commands answered by the application.
async fn behave(sim: &Sim, params: &Params) {
    let dir = tempfile::tempdir().unwrap();
    let addr = sim.mqtt_addr().unwrap();
    let device = online(
        params
            .builder::<SmartPlug, SmartPlugService>(addr)
            .firmware("h1", "1.0.1")
            .settings(object(json!({"reportPeriod": 60})))
            .services(|call: SmartPlugService| call.dispatch(&mut common::Relay))
            .state_dir(dir.path()),
    )
    .await;
    common::report_and_event(&device).await;
    acked(device.passthrough(json!("AQID"))).await.unwrap();
    let history = json!({"params": [{
        "properties": [{"power": {"value": 1.5, "time": 1_700_000_000_000_i64}}],
    }]});
    acked(device.history(history)).await.unwrap();
    let p = sim.platform();
    let id = &params.id;
    let set = Command::SetProperties(json!({"switch": 1}));
    p.send_command(id, set, None).await.unwrap();
    p.send_command(id, Command::AskProperties(vec!["power".into()]), None)
        .await
        .unwrap();
    p.send_command(id, Command::AskConfig, None).await.unwrap();
    p.send_command(id, Command::AskFirmware, None)
        .await
        .unwrap();
    let call = Command::CallService {
        service: "reset".into(),
        params: json!({"scope": 0}),
    };
    p.send_command(id, call, None).await.unwrap();
    let (answer, ()) = tokio::join!(
        p.send_command(id, Command::Passthrough(json!("AQID")), None),
        async {
            common::request(&device, |r| {
                matches!(r, Request::Passthrough(_)).then_some(())
            })
            .await;
        }
    );
    answer.unwrap();
    assert_eq!(device.counters().session.bad_frames, 0);
    device.shutdown().await;
}

#[tokio::test]
async fn devices_that_behave_have_no_violations() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    behave(&sim, &common::plug_named("PLUG0002")).await;
    behave(&sim, &common::encrypted("ENC00002")).await;
    // A report sent twice under one MessageId (its ack lost, as at-least-once delivery
    // allows) is acked twice and kept once: no violation either.
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let report = wire.topic(TopicKind::PropertyReport);
    let frame = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": 2.5}),
    );
    for _ in 0..2 {
        wire.send(&report, frame.clone()).await;
        let ack = wire
            .expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
            .await;
        assert!(ack.frame.ack().unwrap().code.is_success());
    }
    assert_eq!(sim.platform().received_from(&params.id).len(), 1);
    // One call says it: no device has a violation.
    let counts = counts(&api).await;
    assert!(counts.len() >= 3, "{counts:?}");
    assert!(counts.iter().all(|(_, n)| *n == 0), "{counts:?}");
    let log = violations(&api, &common::encrypted("ENC00002")).await;
    assert_eq!(log, json!({"total": 0, "dropped": 0, "violations": []}));
}

#[tokio::test]
async fn the_log_keeps_the_newest_violations_of_a_device() {
    // The default bound: 1000 per device.
    assert_eq!(
        x_sim::platform::PlatformConfig::default().violations_per_device,
        1000
    );
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let report = wire.topic(TopicKind::PropertyReport);
    for n in 0..1010 {
        wire.publish(&report, format!("garbage {n}").into_bytes())
            .await;
    }
    let log = until_violations(&api, &params, 1010).await;
    assert_eq!(log["dropped"], json!(10));
    let seqs = common::each(&log["violations"], |v| v["seq"].as_u64());
    assert_eq!(seqs, (11..=1010).collect::<Vec<_>>());
    assert_eq!(log["violations"][0]["frame"], json!("garbage 10"));
    let counts = counts(&api).await;
    assert!(
        counts.contains(&("PLUG0001".to_owned(), 1010)),
        "{counts:?}"
    );
    assert!(counts.contains(&("PLUG0002".to_owned(), 0)), "{counts:?}");
}

#[tokio::test]
async fn the_store_keeps_only_the_newest_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = SimConfig::local(common::registry(&registry()));
    config.data_dir = Some(dir.path().to_path_buf());
    config.platform.violations_per_device = 5;
    let sim = Sim::start(config).await.unwrap();
    let api = Api::new(&sim);
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let report = wire.topic(TopicKind::PropertyReport);
    for n in 0..8 {
        let frame = Frame::new(
            wire.next_id(),
            HeaderCtrl::PropertyReport,
            json!({"power": -n - 1}),
        );
        refused(&mut wire, &report, &frame).await;
    }
    let log = until_violations(&api, &params, 8).await;
    assert_eq!(log["dropped"], json!(3));
    assert_eq!(
        common::each(&log["violations"], |v| v["seq"].as_u64()),
        [4, 5, 6, 7, 8]
    );
    let stored = sim.platform().store().unwrap().violations().unwrap();
    let seqs: Vec<(String, u64)> = stored.iter().map(|(d, s, _)| (d.clone(), *s)).collect();
    let device = params.id.to_string();
    assert_eq!(
        seqs,
        (4..=8).map(|s| (device.clone(), s)).collect::<Vec<_>>()
    );
    assert_eq!(stored[0].2["frame"]["Payload"], json!({"power": -4}));
}

fn start(dir: &std::path::Path) -> common::Serve {
    let data = dir.join("data");
    common::Serve::local(
        &dir.join("registry.toml"),
        &["--data", data.to_str().unwrap()],
    )
}

#[tokio::test]
async fn the_log_survives_a_killed_platform() {
    let dir = tempfile::tempdir().unwrap();
    common::registry_file(dir.path(), &registry());
    let first = start(dir.path());
    let mqtt = first.mqtt.unwrap();
    let api = Api::at(first.http.unwrap());
    // A device of the encrypted product (its session is stored too) sends plaintext, a
    // plain product's device an unreadable frame and a forbidden publish.
    let enc = common::encrypted("SELF0001");
    let mut wire = Wire::online(mqtt, &enc).await;
    let persisted: Persisted = wire.persisted.clone();
    let plain = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": 1}),
    );
    wire.publish(&wire.topic(TopicKind::PropertyReport), plain.encode())
        .await;
    wire.expect(TopicKind::PropertyReportAck, HeaderCtrl::PropertyReport)
        .await;
    wire.disconnect().await;
    let params = plug();
    let mut wire = Wire::online(mqtt, &params).await;
    wire.publish(&wire.topic(TopicKind::PropertyReport), b"{".to_vec())
        .await;
    // Taken before the connection closes (the platform reads who sent a message off its
    // connection's login).
    until_violations(&api, &params, 1).await;
    let set = wire.topic(TopicKind::PropertySet);
    wire.publish(&set, b"{}".to_vec()).await;
    assert!(wire.mqtt().closed_within(common::WAIT).await.is_some());
    let before = (
        until_violations(&api, &enc, 1).await,
        until_violations(&api, &params, 2).await,
    );
    assert_eq!(rules(&before.0), ["plaintext"]);
    assert_eq!(rules(&before.1), ["unreadable_frame", "forbidden_topic"]);
    // Violations nobody is answered about are committed with the store's next group
    // commit, not before the API shows them. The writer commits in the order writes came:
    // once a report sent now is acked (after its commit), the violations above are stored.
    let mut wire = Wire::online(mqtt, &params).await;
    let report = wire.topic(TopicKind::PropertyReport);
    let ack = wire
        .acked(&report, HeaderCtrl::PropertyReport, json!({"power": 1}))
        .await;
    assert!(ack.code.is_success(), "{ack:?}");
    first.kill();

    // Started again on the same directory: the same log, counted in the device list.
    let second = start(dir.path());
    let api = Api::at(second.http.unwrap());
    assert_eq!(violations(&api, &enc).await, before.0);
    assert_eq!(violations(&api, &params).await, before.1);
    let counts = counts(&api).await;
    assert!(counts.contains(&("SELF0001".to_owned(), 1)), "{counts:?}");
    assert!(counts.contains(&("PLUG0001".to_owned(), 2)), "{counts:?}");
    // New violations are numbered after the old ones.
    let mut wire = Wire::resume(second.mqtt.unwrap(), &enc, persisted).await;
    let bad = Frame::new(
        wire.next_id(),
        HeaderCtrl::PropertyReport,
        json!({"power": -1}),
    );
    let report = wire.topic(TopicKind::PropertyReport);
    refused(&mut wire, &report, &bad).await;
    let after = until_violations(&api, &enc, 2).await;
    assert_eq!(rules(&after), ["plaintext", "thing_model"]);
    assert_eq!(after["violations"][1]["seq"], json!(2));
    assert_eq!(after["violations"][1]["payload"], json!({"power": -1}));
    second.kill();
}

/// The rule names are the ones docs/x-sim.md documents.
#[test]
fn rule_names_are_documented() {
    let doc = std::fs::read_to_string(common::root().join("docs/x-sim.md")).unwrap();
    for rule in Rule::ALL {
        assert!(
            doc.contains(&format!("| `{}` |", rule.name())),
            "{} is not in docs/x-sim.md",
            rule.name()
        );
    }
}

/// The meter as an encrypted HEX product (the generated script of its model).
const ENCRYPTED_METER: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "4D455446"
product_key = "1F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
encrypted = true
format = "hex"
model = "models/meter-hex.json"

[[device]]
product_id = "4D455446"
node_eui = "MTR00002"
"#;

/// The command whose answer a device sends with `ctrl` on `kind`, and the plain payload of
/// that answer; `None` for a device frame that answers no command the platform sends (25
/// on `model/hex/downlink_ack`: a HEX property ask is answered by a report).
fn command_answered_by(kind: TopicKind, ctrl: HeaderCtrl) -> Option<(Command, Value)> {
    let ack = AckPayload::success(None).to_value();
    let service = Command::CallService {
        service: "reset".into(),
        params: json!({}),
    };
    let hex_service = Command::CallService {
        service: "readRegister".into(),
        params: json!({"address": "258"}),
    };
    Some(match (kind, ctrl) {
        (TopicKind::DownlinkAck, _) => (Command::Passthrough(json!("AQI=")), ack),
        (TopicKind::OtaNotifyAck, _) => (
            Command::NotifyOta(notify()),
            json!({"DownID": notify().down_id}),
        ),
        (TopicKind::ConfigReport, _) => (
            Command::AskConfig,
            json!({"Settings": {"reportPeriod": 60}}),
        ),
        (TopicKind::PropertySetAck, _) => (Command::SetProperties(json!({"countdown": 5})), ack),
        (TopicKind::ServiceCallAck, _) => (service, ack),
        (TopicKind::HexDownlinkAck, HeaderCtrl::HexPropertySet) => (
            Command::SetProperties(json!({"tariff": "2", "reportPeriod": 900})),
            ack,
        ),
        (TopicKind::HexDownlinkAck, HeaderCtrl::HexServiceCall) => (hex_service, ack),
        _ => return None,
    })
}

/// The plain payload of a device frame that the platform acks.
fn plain_report(ctrl: HeaderCtrl) -> Value {
    match ctrl {
        HeaderCtrl::Uplink => json!({"data": "AQI="}),
        HeaderCtrl::FirmwareReport => json!({"SoftVer": "1.0.0", "UpgradeType": 2}),
        HeaderCtrl::PropertyReport => json!({"power": 12.5}),
        HeaderCtrl::EventReport => json!({"temperature": 81.5}),
        HeaderCtrl::HistoryReport => json!({"params": [{"properties": [
            {"power": {"value": 1.5, "time": 1_700_000_000_000_i64}}
        ]}]}),
        // The meter's report, tamper event and readRegister reply, as its script reads them.
        HeaderCtrl::HexPropertyReport => json!(METER_REPORT),
        HeaderCtrl::HexEventReport => json!("02010100c01cdd8f010000"),
        HeaderCtrl::HexServiceReply => json!("0311000102"),
        other => panic!("no plain report of {other}"),
    }
}

/// Every HeaderCtrl a device sends encrypted in an encrypted product, on every topic the
/// command table gives it (JSON and passthrough topics from a JSON product's device, HEX
/// topics from a HEX product's), sent as plaintext: each frame the platform acks gets a
/// "4001", each answer to a command fails the command (HTTP 502), and every one is a
/// `plaintext` violation.
#[tokio::test]
async fn every_encrypted_header_ctrl_refuses_plaintext() {
    let registry = [common::encrypted_product(), ENCRYPTED_METER.to_owned()].concat();
    let sim = common::sim(&registry).await;
    let api = Api::new(&sim);
    let p = sim.platform();
    let json_params = common::encrypted("ENC00009");
    let mut hex_params = Params::new("4D455446", "MTR00002", "1F1E2D3C4B5A69788796A5B4C3D2E1F0");
    hex_params.encrypted = true;
    let mut json_wire = Wire::online(sim.mqtt_addr().unwrap(), &json_params).await;
    let mut hex_wire = Wire::online(sim.mqtt_addr().unwrap(), &hex_params).await;
    assert!(json_wire.key.is_some() && hex_wire.key.is_some());
    let granted = hex_wire
        .subscribe(&[TopicKind::HexReportAck, TopicKind::HexDownlink])
        .await;
    assert_eq!(granted, [true, true]);

    let cases: Vec<(TopicKind, HeaderCtrl)> = TopicKind::ALL
        .iter()
        .filter(|k| k.spec().publisher == Publisher::Device && **k != TopicKind::Auth)
        .flat_map(|k| k.spec().header_ctrls.iter().map(move |c| (*k, *c)))
        .filter(|(_, c)| c.is_encrypted_uplink())
        .collect();
    // The command table's rows, as the issue lists them.
    let codes: Vec<i64> = cases.iter().map(|(_, c)| c.code()).collect();
    for code in [4, 7, 8, 9, 14, 16, 17, 18, 19, 20, 21, 22, 24, 25, 26, 27] {
        assert!(
            codes.contains(&code),
            "HeaderCtrl {code} is not in {codes:?}"
        );
    }
    let mut expected: Vec<(bool, i64)> = Vec::new();
    for (kind, ctrl) in cases {
        let hex = matches!(kind, TopicKind::HexReport | TopicKind::HexDownlinkAck);
        let (wire, params) = if hex {
            (&mut hex_wire, &hex_params)
        } else {
            (&mut json_wire, &json_params)
        };
        let topic = match kind {
            TopicKind::EventReport => wire.topic_of(kind, "overheat"),
            TopicKind::ServiceCallAck => wire.topic_of(kind, "reset"),
            _ => wire.topic(kind),
        };
        let acked = kind.spec().reply_to(ctrl).is_some_and(|r| r.is_ack);
        let reason = format!(
            "payload must be encrypted for this product (HeaderCtrl {} travels encrypted",
            ctrl.code()
        );
        if acked {
            let frame = Frame::new(wire.next_id(), ctrl, plain_report(ctrl));
            wire.publish(&topic, frame.encode()).await;
            let ack = wire.next().await;
            let (want, reply) = topic.reply_topic(ctrl).unwrap();
            assert_eq!(
                (&ack.topic, ack.frame.header_ctrl, &ack.frame.message_id),
                (&want, reply.header_ctrl, &frame.message_id),
                "{kind:?} {ctrl}"
            );
            let ack = ack.frame.ack().unwrap();
            assert_eq!(ack.code.as_str(), "4001", "{kind:?} {ctrl}: {}", ack.msg);
            assert!(ack.msg.starts_with(&reason), "{kind:?} {ctrl}: {}", ack.msg);
        } else if let Some((command, payload)) = command_answered_by(kind, ctrl) {
            let (result, ()) = tokio::join!(p.send_command(&params.id, command, None), async {
                let m = wire.next().await;
                let answer = Frame::new(m.frame.message_id.clone(), ctrl, payload);
                wire.publish(&topic, answer.encode()).await;
            });
            let Err(CommandError::BadAnswer { reason: why, .. }) = result else {
                panic!("{kind:?} {ctrl}: {result:?}");
            };
            assert!(why.starts_with(&reason), "{kind:?} {ctrl}: {why}");
        } else {
            // Not an answer to anything the platform sends: refused all the same.
            let frame = Frame::new(wire.next_id(), ctrl, AckPayload::success(None).to_value());
            wire.publish(&topic, frame.encode()).await;
        }
        expected.push((hex, ctrl.code()));
    }

    for (hex, params) in [(false, &json_params), (true, &hex_params)] {
        let want: Vec<i64> = expected
            .iter()
            .filter(|(h, _)| *h == hex)
            .map(|(_, c)| *c)
            .collect();
        let log = until_violations(&api, params, want.len() as u64).await;
        let list = log["violations"].as_array().unwrap();
        let got: Vec<(&str, i64)> = list
            .iter()
            .map(|v| {
                (
                    v["rule"].as_str().unwrap(),
                    v["HeaderCtrl"].as_i64().unwrap(),
                )
            })
            .collect();
        let want: Vec<(&str, i64)> = want.iter().map(|c| ("plaintext", *c)).collect();
        assert_eq!(got, want, "{log:#}");
    }
}

/// An auth request whose Version is missing, not a string, or not "2.0" gets Code 6 (the
/// document's "protocol versions disagree"), with its MessageId, and is logged; without a
/// MessageId to answer with it goes unanswered and is logged as unreadable.
#[tokio::test]
async fn auth_requests_of_another_version_get_code_6() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let login = plug();
    let mut mqtt = Mqtt::open(
        sim.mqtt_addr().unwrap(),
        &MqttLogin::auth(&login.id, &login.product_key),
    )
    .await
    .unwrap();
    mqtt.subscribe(&[TopicKind::Downlink.filter(&login.id)])
        .await;
    let auth = Topic::auth().to_string();
    let payload =
        json!({"OpenID": "7ED01E2A", "ProductID": "AA30C505", "NodeEui": "PLUG0001", "Type": 1});
    let versions = [
        (None, "no Version"),
        (Some(json!(2.0)), "Version 2.0 is not a string"),
        (Some(json!(null)), "Version null is not a string"),
        (Some(json!(["2.0"])), "Version [\"2.0\"] is not a string"),
        (Some(json!("1.0")), "Version \"1.0\""),
    ];
    for (n, (version, said)) in versions.iter().enumerate() {
        let id = 70 + n;
        let mut request = json!({"MessageId": id, "HeaderCtrl": 1, "Payload": payload});
        if let Some(v) = version {
            request["Version"] = v.clone();
        }
        mqtt.publish(&auth, serde_json::to_vec(&request).unwrap())
            .await;
        let (_, reply) = mqtt.next().await;
        let reply = Frame::decode(&reply).unwrap();
        assert_eq!(
            reply.message_id,
            x_protocol::MessageId::from(id as u32),
            "{said}"
        );
        let reply: x_protocol::payload::AuthReply = reply.payload_as().unwrap();
        assert_eq!(reply.code, AuthCode::VersionMismatch, "{said}");
    }
    // No MessageId: nothing to answer with.
    let anonymous = json!({"HeaderCtrl": 1, "Payload": payload});
    mqtt.publish(&auth, serde_json::to_vec(&anonymous).unwrap())
        .await;
    assert!(mqtt.quiet_for(Duration::from_millis(500)).await);

    let log = until_violations(&api, &login, versions.len() as u64 + 1).await;
    let list = log["violations"].as_array().unwrap();
    for (v, (_, said)) in list.iter().zip(&versions) {
        assert_eq!(v["rule"], json!("auth_refused"), "{v:#}");
        assert_eq!(
            v["reason"],
            json!(format!(
                "{said}, only \"2.0\" is supported: refused with code 6"
            )),
            "{v:#}"
        );
    }
    assert_eq!(list[versions.len()]["rule"], json!("unreadable_frame"));
    assert_eq!(
        list[versions.len()]["reason"],
        json!("no Version, and no MessageId to answer with: not answered")
    );
}

/// A HEX service call (24) may be answered either way the document shows: an ack (24) on
/// `model/hex/downlink_ack`, or a service reply (26) on `model/hex/report` (covered by the
/// HEX products' tests). Any other HEX answer is off the table: the command fails (HTTP
/// 502) and the device has an `answer_off_table` violation.
#[tokio::test]
async fn hex_service_calls_are_answered_as_the_table_says() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = meter();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let granted = wire.subscribe(&[TopicKind::HexDownlink]).await;
    assert_eq!(granted, [true]);
    let call = "/api/devices/4D455445/MTR00001/services/readRegister";
    let body = json!({"address": "258"});
    let ack = AckPayload::success(Some(json!({"value": 513}))).to_value();
    let prefix = params.id.topic_prefix();
    // (the answer's topic, its HeaderCtrl, accepted)
    let answers = [
        (TopicKind::HexDownlinkAck, HeaderCtrl::HexServiceCall, true),
        (TopicKind::HexDownlinkAck, HeaderCtrl::HexPropertySet, false),
        (TopicKind::HexDownlinkAck, HeaderCtrl::HexPropertyAsk, false),
    ];
    let mut off_table = Vec::new();
    for (kind, ctrl, accepted) in answers {
        let ((status, answer), sent) = tokio::join!(api.send(api.post(call).json(&body)), async {
            let m = wire
                .expect(TopicKind::HexDownlink, HeaderCtrl::HexServiceCall)
                .await;
            let frame = Frame::new(m.frame.message_id.clone(), ctrl, ack.clone());
            wire.send(&wire.topic(kind), frame.clone()).await;
            frame
        });
        if accepted {
            assert_eq!(status, StatusCode::OK, "{ctrl}: {answer}");
        } else {
            assert_eq!(status, StatusCode::BAD_GATEWAY, "{ctrl}: {answer}");
            let error = answer["error"].as_str().unwrap().to_owned();
            let said = format!(
                "answered with HeaderCtrl {} on {prefix}/model/hex/downlink_ack, the command table says HeaderCtrl 26 on {prefix}/model/hex/report or HeaderCtrl 24 on {prefix}/model/hex/downlink_ack",
                ctrl.code()
            );
            assert!(error.ends_with(&said), "{error}");
            off_table.push((sent, said));
        }
    }
    let log = until_violations(&api, &params, off_table.len() as u64).await;
    let list = log["violations"].as_array().unwrap();
    let downlink_ack = format!("{prefix}/model/hex/downlink_ack");
    for (v, (frame, said)) in list.iter().zip(&off_table) {
        check(v, Rule::AnswerOffTable, said, &downlink_ack, frame);
    }
}

/// A command the command table gives no answer (a raw frame with a HeaderCtrl that is not
/// its topic's) accepts no answer but a refusal on the topic's ack topic (as x-sim refuses
/// such frames from devices): an ack of success there fails the command and is an
/// `answer_off_table` violation; a "4001" is the device refusing, in order. A frame the
/// topic carries without an answer (a SessionKey update on the downlink) takes no answer at
/// all.
#[tokio::test]
async fn a_command_the_table_does_not_answer_accepts_no_answer() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let params = plug();
    let mut wire = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    let p = sim.platform();
    let prefix = params.id.topic_prefix();
    let raw = |kind, header_ctrl| Command::Raw {
        kind,
        identifier: None,
        header_ctrl,
        payload: json!({"params": []}),
    };
    // (command topic, its HeaderCtrl, the answer's topic, its HeaderCtrl, its payload,
    // accepted)
    let cases = [
        (
            TopicKind::PropertySet,
            HeaderCtrl::ServiceCall,
            TopicKind::PropertySetAck,
            HeaderCtrl::PropertySet,
            AckPayload::success(None).to_value(),
            false,
        ),
        (
            TopicKind::PropertySet,
            HeaderCtrl::ServiceCall,
            TopicKind::PropertySetAck,
            HeaderCtrl::PropertySet,
            AckPayload::failure("HeaderCtrl 21 does not belong here").to_value(),
            true,
        ),
        (
            TopicKind::PropertySet,
            HeaderCtrl::ServiceCall,
            TopicKind::DownlinkAck,
            HeaderCtrl::Downlink,
            AckPayload::failure("no").to_value(),
            false,
        ),
        (
            TopicKind::Downlink,
            HeaderCtrl::SessionKeyUpdate,
            TopicKind::DownlinkAck,
            HeaderCtrl::Downlink,
            AckPayload::failure("no").to_value(),
            false,
        ),
    ];
    let mut off_table = Vec::new();
    for (kind, ctrl, answer_kind, answer_ctrl, payload, accepted) in cases {
        let (result, sent) =
            tokio::join!(p.send_command(&params.id, raw(kind, ctrl), None), async {
                let m = wire.expect(kind, ctrl).await;
                let frame = Frame::new(m.frame.message_id.clone(), answer_ctrl, payload);
                wire.send(&wire.topic(answer_kind), frame.clone()).await;
                frame
            });
        if accepted {
            let answer = result.unwrap();
            assert!(!answer.ack().unwrap().code.is_success());
            continue;
        }
        let Err(CommandError::BadAnswer { reason, .. }) = result else {
            panic!("{kind:?} {ctrl}: {result:?}");
        };
        let expected = format!(
            "answered with HeaderCtrl {} on {prefix}/{}, but the command table has no answer to HeaderCtrl {} on {prefix}/{}",
            answer_ctrl.code(),
            answer_kind.spec().suffix,
            ctrl.code(),
            kind.spec().suffix
        );
        assert!(reason.starts_with(&expected), "{reason}");
        off_table.push((sent, reason, answer_kind));
    }
    let log = until_violations(&api, &params, off_table.len() as u64).await;
    let list = log["violations"].as_array().unwrap();
    for (v, (frame, reason, kind)) in list.iter().zip(&off_table) {
        let topic = format!("{prefix}/{}", kind.spec().suffix);
        check(v, Rule::AnswerOffTable, reason, &topic, frame);
    }
}
