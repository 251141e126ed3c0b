//! HEX products through the parsing script, as on the real platform: the script generated
//! from the meter's model, and a hand-written script loaded from a file. Device reports (18,
//! 19, 26, 28) are decoded by the script and checked against the model; thing-model commands
//! (20, 21, 23) are encoded by the script and travel as 22, 24, 25 on the HEX downlink.
#![allow(clippy::unwrap_used)]

mod common;

use common::{Device, ack_of, sim};
use serde_json::json;
use x_protocol::{DeviceIdentity, HeaderCtrl, ProductKey, RegistrationType};
use x_sim::platform::Command;
use x_sim::sim::Sim;

const REGISTRY: &str = r#"
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

[[product]]
open_id = "7ED01E2A"
product_id = "7E5A0001"
product_key = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
registration = 1
encrypted = true
format = "hex"
model = "x-sim/tests/fixtures/thermo.json"
script = "x-sim/tests/fixtures/thermo.js"

[[device]]
product_id = "7E5A0001"
node_eui = "THERMO01"
"#;

/// The meter report of docs/hex-format.md.
const METER_REPORT: &str = "019d087d00130140e20100e903010130303031323334353637383984030000";

/// The platform in memory with both products, and `node_eui` of `product_id` (pre-registered,
/// with `product_key`) online and subscribed to the HEX topics.
async fn online(
    product_id: &str,
    product_key: &str,
    node_eui: &str,
) -> (Sim, DeviceIdentity, Device) {
    let sim = sim(REGISTRY).await;
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    let pk: ProductKey = product_key.parse().unwrap();
    let ty = RegistrationType::ProductSecretPreRegistered;
    let mut dev = Device::online(sim.mqtt_addr().unwrap(), &id, &pk, ty).await;
    dev.subscribe(&[
        "model/hex/report_ack",
        "model/hex/downlink",
        "model/hex_ack",
    ])
    .await;
    (sim, id, dev)
}

#[tokio::test]
async fn generated_script_decodes_reports_and_encodes_commands() {
    let (sim, id, mut dev) =
        online("4D455445", "0F1E2D3C4B5A69788796A5B4C3D2E1F0", "MTR00001").await;
    let p = sim.platform();

    // 18: a property report, decoded by the script and stored as thing-model JSON.
    let ack = dev
        .acked(
            "model/hex/report",
            HeaderCtrl::HexPropertyReport,
            json!(METER_REPORT),
        )
        .await;
    assert!(ack.code.is_success(), "{ack:?}");
    let latest = p.latest_properties(&id);
    assert_eq!(latest["voltage"].value, json!(220.5));
    assert_eq!(latest["frequency"].value, json!(50.01));
    assert_eq!(latest["meterNo"].value, json!("000123456789"));
    let stored = p.received_from(&id).pop().unwrap();
    assert_eq!(stored.raw.as_deref(), Some(METER_REPORT));

    // 19: an event report.
    let ack = dev
        .acked(
            "model/hex/report",
            HeaderCtrl::HexEventReport,
            json!("02010100c01cdd8f010000"),
        )
        .await;
    assert!(ack.code.is_success());
    let event = p.events(&id).pop().unwrap();
    assert_eq!(event.identifier, "tamper");
    assert_eq!(event.value, json!({"kind": 1, "at": 1_717_401_600_000_i64}));

    // 28: full HEX, the bare hex string as the MQTT payload; acked with 28.
    let topic = format!("{}/model/hex", id.topic_prefix());
    dev.publish_bytes(&topic, METER_REPORT.as_bytes().to_vec())
        .await;
    let (topic, ack) = dev.next().await;
    assert_eq!(
        (topic.as_str(), ack.header_ctrl),
        ("model/hex_ack", HeaderCtrl::FullHexReport)
    );
    assert!(ack_of(&ack).code.is_success());

    // What the script or the model refuses is a 4001 that says why.
    for (ctrl, hex, reason) in [
        (
            HeaderCtrl::HexPropertyReport,
            "01ff",
            "rawDataToProtocol threw: truncated at byte 1: voltage needs 1 more byte(s)",
        ),
        (
            HeaderCtrl::HexPropertyReport,
            "02010100c01cdd8f010000",
            "HeaderCtrl 18 but the parsing script decoded 17",
        ),
        (HeaderCtrl::HexPropertyReport, "zz", "hex"),
    ] {
        let ack = dev.acked("model/hex/report", ctrl, json!(hex)).await;
        assert_eq!(ack.code.as_str(), "4001", "{hex}");
        assert!(ack.msg.contains(reason), "{hex}: {}", ack.msg);
    }

    // 20 -> 22: the property set of docs/hex-format.md, acked on the HEX downlink ack.
    let set = Command::SetProperties(json!({"tariff": "2", "reportPeriod": 900}));
    let (answer, ()) = tokio::join!(p.send_command(&id, set, None), async {
        let frame = dev
            .expect_payload(
                "model/hex/downlink",
                HeaderCtrl::HexPropertySet,
                json!("8107020984030000"),
            )
            .await;
        dev.ack_success(
            &frame,
            "model/hex/downlink_ack",
            HeaderCtrl::HexPropertySet,
            None,
        )
        .await;
    });
    assert!(answer.unwrap().ack().unwrap().code.is_success());

    // 21 -> 24, answered by a HEX service reply (26) on the report topic, decoded.
    let call = Command::CallService {
        service: "readRegister".into(),
        params: json!({"address": "258"}),
    };
    let (answer, ()) = tokio::join!(p.send_command(&id, call, None), async {
        let frame = dev
            .expect_payload(
                "model/hex/downlink",
                HeaderCtrl::HexServiceCall,
                json!("82110201"),
            )
            .await;
        dev.answer_with_report(
            &frame,
            "model/hex/report",
            HeaderCtrl::HexServiceReply,
            json!("0311000102"),
        )
        .await;
    });
    let answer = answer.unwrap();
    assert_eq!(
        answer.payload,
        json!({"HeaderCtrl": 21, "Service": "readRegister", "Payload": {"Code": "200", "Data": {"value": 513}}})
    );
    assert_eq!(answer.raw.as_deref(), Some("0311000102"));

    // 23 -> 25, answered by a HEX property report (18) with the command's MessageId.
    let ask = Command::AskProperties(vec!["voltage".into()]);
    let (answer, ()) = tokio::join!(p.send_command(&id, ask, None), async {
        let frame = dev
            .expect_payload(
                "model/hex/downlink",
                HeaderCtrl::HexPropertyAsk,
                json!("8301"),
            )
            .await;
        dev.answer_with_report(
            &frame,
            "model/hex/report",
            HeaderCtrl::HexPropertyReport,
            json!(METER_REPORT),
        )
        .await;
    });
    assert_eq!(answer.unwrap().payload["Payload"]["voltage"], json!(220.5));

    // A command the script cannot encode is refused before it is sent.
    let bad = Command::SetProperties(json!({"voltage": 1}));
    let err = p.send_command(&id, bad, None).await.unwrap_err();
    assert!(err.to_string().contains("protocolToRawData threw"), "{err}");
}

#[tokio::test]
async fn hand_written_script_of_an_encrypted_product() {
    let (sim, id, mut dev) =
        online("7E5A0001", "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF", "THERMO01").await;
    assert!(dev.key.is_some());
    let p = sim.platform();

    // 21.5 degrees (0x00d7), setpoint 20, encrypted like every HEX frame of the product.
    let ack = dev
        .acked(
            "model/hex/report",
            HeaderCtrl::HexPropertyReport,
            json!("0100d714"),
        )
        .await;
    assert!(ack.code.is_success(), "{ack:?}");
    assert_eq!(p.latest_properties(&id)["temp"].value, json!(21.5));

    // The hand-written script's output is still checked against the model.
    let ack = dev
        .acked(
            "model/hex/report",
            HeaderCtrl::HexPropertyReport,
            json!("017fff14"),
        )
        .await;
    assert_eq!(
        (ack.code.as_str(), ack.msg.as_str()),
        ("4001", "temp: 3276.7 is above the maximum 125")
    );
    // And what it throws is the reason.
    let ack = dev
        .acked(
            "model/hex/report",
            HeaderCtrl::HexPropertyReport,
            json!("0100d7"),
        )
        .await;
    assert!(
        ack.msg.contains("report: expected 4 bytes, got 3"),
        "{ack:?}"
    );

    // Commands go through the hand-written protocolToRawData, encrypted.
    let set = Command::SetProperties(json!({"setpoint": 25}));
    let (answer, ()) = tokio::join!(p.send_command(&id, set, None), async {
        let frame = dev
            .expect_payload(
                "model/hex/downlink",
                HeaderCtrl::HexPropertySet,
                json!("8119"),
            )
            .await;
        dev.ack_success(
            &frame,
            "model/hex/downlink_ack",
            HeaderCtrl::HexPropertySet,
            Some(json!({"setpoint": 25})),
        )
        .await;
    });
    let answer = answer.unwrap();
    assert_eq!(answer.ack().unwrap().data, Some(json!({"setpoint": 25})));
    let refused = p
        .send_command(&id, Command::SetProperties(json!({"temp": 3})), None)
        .await
        .unwrap_err();
    assert!(
        refused.to_string().contains("temp cannot be set"),
        "{refused}"
    );
}
