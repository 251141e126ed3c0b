//! HEX products through the parsing script, as on the real platform: the script generated
//! from the meter's model, and a hand-written script loaded from a file. Device reports (18,
//! 19, 26, 28) are decoded by the script and checked against the model; thing-model commands
//! (20, 21, 23) are encoded by the script and travel as 22, 24, 25 on the HEX downlink.
//!
//! The meter is the runtime's session with the generated codec, over a wire: the test sees
//! the script's bytes before the session answers them, and sends what the script must
//! refuse. The thermostat's layout is the hand-written script's own, which no generated
//! codec speaks: its frames are the test's, over a wire the session logged in.
#![allow(clippy::unwrap_used)]

use crate::common;

/// The meter's bindings, as x-codegen generates them from models/meter-hex.json.
#[rustfmt::skip]
#[path = "../../../tests/golden/meter_hex.rs"]
#[allow(dead_code)]
mod meter;

use common::wire::Wire;
use common::{Params, sim};
use meter::{
    MeterHex, MeterHexService, MeterHexServiceHandler, MeterHexSet, ReadRegisterOutput,
    RelayControlOutput, TamperEvent, TamperKind, Tariff,
};
use serde_json::json;
use x_protocol::model::{Date, ServiceFailure};
use x_protocol::{AckPayload, HeaderCtrl, TopicKind};
use x_runtime::{Event, Persisted, Session};
use x_sim::platform::Command;

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

/// The meter's state that [`METER_REPORT`] reports.
fn reading() -> MeterHex {
    MeterHex {
        voltage: 220.5,
        current: 1.25,
        active_power: 0.275,
        energy_total: 1234.56,
        frequency: 50.01,
        relay: true,
        tariff: Tariff::Peak,
        meter_no: "000123456789".into(),
        report_period: 900,
    }
}

/// The metering chip behind the meter's services.
struct Chip;

impl MeterHexServiceHandler for Chip {
    fn relay_control(&mut self, on: bool) -> Result<RelayControlOutput, ServiceFailure> {
        Ok(RelayControlOutput { state: on })
    }

    fn read_register(&mut self, address: i32) -> Result<ReadRegisterOutput, ServiceFailure> {
        match address {
            0x0102 => Ok(ReadRegisterOutput { value: 513 }),
            _ => Err("no such register".into()),
        }
    }
}

/// The next command on the meter's HEX downlink, which must be `ctrl` with the script's
/// bytes `hex`, handed to its session; what the session told the application.
async fn downlink(
    dev: &mut Wire<MeterHex, MeterHexService>,
    ctrl: HeaderCtrl,
    hex: &str,
) -> Vec<Event<MeterHexService, MeterHexSet>> {
    let m = dev.expect(TopicKind::HexDownlink, ctrl).await;
    assert_eq!(m.frame.payload, json!(hex));
    dev.deliver(&m).await
}

#[tokio::test]
async fn generated_script_decodes_reports_and_encodes_commands() {
    let sim = sim(REGISTRY).await;
    let params = Params::new("4D455445", "MTR00001", "0F1E2D3C4B5A69788796A5B4C3D2E1F0");
    let id = params.id.clone();
    let session = Session::new(params.config(), reading(), Persisted::default(), 7).with_hex(false);
    let mut dev: Wire<MeterHex, MeterHexService> =
        Wire::start(sim.mqtt_addr().unwrap(), session).await;
    let p = sim.platform();

    // 18: a property report by the device's codec (the docs' bytes), decoded by the script
    // and stored as thing-model JSON.
    dev.run(|s, now| s.report_all(now)).await.unwrap();
    let latest = p.latest_properties(&id);
    assert_eq!(latest["voltage"].value, json!(220.5));
    assert_eq!(latest["frequency"].value, json!(50.01));
    assert_eq!(latest["meterNo"].value, json!("000123456789"));
    let stored = p.received_from(&id).pop().unwrap();
    assert_eq!(stored.raw.as_deref(), Some(METER_REPORT));

    // 19: an event report.
    let tamper = TamperEvent {
        kind: TamperKind::Key1,
        at: Date::from_millis(1_717_401_600_000),
    };
    dev.run(|s, now| s.hex_event(&tamper, now)).await.unwrap();
    let event = p.events(&id).pop().unwrap();
    assert_eq!(event.identifier, "tamper");
    assert_eq!(event.value, json!({"kind": 1, "at": 1_717_401_600_000_i64}));
    let stored = p.received_from(&id).pop().unwrap();
    assert_eq!(stored.raw.as_deref(), Some("02010100c01cdd8f010000"));

    // 28: full HEX, the bare hex string as the MQTT payload; acked with 28.
    let full_hex = dev.topic(TopicKind::FullHex);
    dev.publish(&full_hex, METER_REPORT.as_bytes().to_vec())
        .await;
    let ack = dev
        .expect(TopicKind::FullHexAck, HeaderCtrl::FullHexReport)
        .await;
    assert!(ack.frame.ack().unwrap().code.is_success());

    // What the script or the model refuses (bytes no codec writes) is a 4001 that says why.
    let report = dev.topic(TopicKind::HexReport);
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
        let ack = dev.acked(&report, ctrl, json!(hex)).await;
        assert_eq!(ack.code.as_str(), "4001", "{hex}");
        assert!(ack.msg.contains(reason), "{hex}: {}", ack.msg);
    }

    // 20 -> 22: the property set of docs/hex-format.md, decoded by the device's codec,
    // applied and acked on the HEX downlink ack.
    let set = Command::SetProperties(json!({"tariff": "2", "reportPeriod": 900}));
    let (answer, ()) = tokio::join!(p.send_command(&id, set, None), async {
        downlink(&mut dev, HeaderCtrl::HexPropertySet, "8107020984030000").await;
    });
    assert!(answer.unwrap().ack().unwrap().code.is_success());
    assert_eq!(dev.session.state().tariff, Tariff::Valley);

    // 21 -> 24, answered by the chip through the generated dispatch with a HEX service
    // reply (26) on the report topic, decoded by the script.
    let call = Command::CallService {
        service: "readRegister".into(),
        params: json!({"address": "258"}),
    };
    let (answer, ()) = tokio::join!(p.send_command(&id, call, None), async {
        let events = downlink(&mut dev, HeaderCtrl::HexServiceCall, "82110201").await;
        let Some(Event::ServiceCall { ticket, call }) = events.into_iter().next() else {
            panic!("no service call");
        };
        assert_eq!(call, MeterHexService::ReadRegister { address: 258 });
        let mut out = [0u8; 64];
        let reply = call.dispatch_hex(&mut Chip, &mut out).unwrap();
        dev.session
            .reply_service_hex(ticket, &out[..reply.len])
            .unwrap();
        dev.flush().await;
        // The platform acks the reply.
        dev.deliver_ack(TopicKind::HexReportAck, HeaderCtrl::HexServiceReply)
            .await;
    });
    let answer = answer.unwrap();
    assert_eq!(
        answer.payload,
        json!({"HeaderCtrl": 21, "Service": "readRegister", "Payload": {"Code": "200", "Data": {"value": 513}}})
    );
    assert_eq!(answer.raw.as_deref(), Some("0311000102"));

    // 23 -> 25, answered from the state by a HEX property report (18) with the command's
    // MessageId.
    let ask = Command::AskProperties(vec!["voltage".into()]);
    let (answer, ()) = tokio::join!(p.send_command(&id, ask, None), async {
        downlink(&mut dev, HeaderCtrl::HexPropertyAsk, "8301").await;
        dev.deliver_ack(TopicKind::HexReportAck, HeaderCtrl::HexPropertyReport)
            .await;
    });
    assert_eq!(answer.unwrap().payload["Payload"]["voltage"], json!(220.5));

    // A command the script cannot encode is refused before it is sent.
    let bad = Command::SetProperties(json!({"voltage": 1}));
    let err = p.send_command(&id, bad, None).await.unwrap_err();
    assert!(err.to_string().contains("protocolToRawData threw"), "{err}");
    assert_eq!(dev.session.counters().bad_frames, 0);
}

#[tokio::test]
async fn hand_written_script_of_an_encrypted_product() {
    let sim = sim(REGISTRY).await;
    let mut params = Params::new("7E5A0001", "THERMO01", "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF");
    params.encrypted = true;
    let id = params.id.clone();
    let mut dev = Wire::online(sim.mqtt_addr().unwrap(), &params).await;
    assert!(dev.key.is_some());
    let granted = dev
        .subscribe(&[TopicKind::HexReportAck, TopicKind::HexDownlink])
        .await;
    assert!(granted.iter().all(|g| *g));
    let p = sim.platform();
    let report = dev.topic(TopicKind::HexReport);

    // 21.5 degrees (0x00d7), setpoint 20, encrypted like every HEX frame of the product.
    let ack = dev
        .acked(&report, HeaderCtrl::HexPropertyReport, json!("0100d714"))
        .await;
    assert!(ack.code.is_success(), "{ack:?}");
    assert_eq!(p.latest_properties(&id)["temp"].value, json!(21.5));

    // The hand-written script's output is still checked against the model.
    let ack = dev
        .acked(&report, HeaderCtrl::HexPropertyReport, json!("017fff14"))
        .await;
    assert_eq!(
        (ack.code.as_str(), ack.msg.as_str()),
        ("4001", "temp: 3276.7 is above the maximum 125")
    );
    // And what it throws is the reason.
    let ack = dev
        .acked(&report, HeaderCtrl::HexPropertyReport, json!("0100d7"))
        .await;
    assert!(
        ack.msg.contains("report: expected 4 bytes, got 3"),
        "{ack:?}"
    );

    // Commands go through the hand-written protocolToRawData, encrypted.
    let set = Command::SetProperties(json!({"setpoint": 25}));
    let (answer, ()) = tokio::join!(p.send_command(&id, set, None), async {
        let m = dev
            .expect(TopicKind::HexDownlink, HeaderCtrl::HexPropertySet)
            .await;
        assert_eq!(m.frame.payload, json!("8119"));
        let ack = AckPayload::success(Some(json!({"setpoint": 25})));
        dev.answer(&m, ack.to_value()).await;
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
