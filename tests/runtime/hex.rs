//! The device runtime for HEX and passthrough products against x-sim: the generated meter
//! codec on the device, the generated parsing script on the platform, every HEX command
//! (18/19/26/28 up, 22/24/25 down), encrypted and not; and a passthrough device, encrypted
//! and not. Both also answer the rows every product has (firmware report and ask, config
//! ask and set, time sync, OTA notify), with no bad frame counted.
#![allow(clippy::unwrap_used)]

/// The meter's bindings, as x-codegen generates them from models/meter-hex.json.
use crate::meter;

use crate::support;

use meter::{
    MeterHex, MeterHexReport, MeterHexService, MeterHexServiceHandler, OverloadEvent,
    ReadRegisterOutput, RelayControlOutput, TamperEvent, TamperKind, Tariff,
};
use serde_json::json;
use support::{WAIT, sim, wait_for};
use x_sdk::model::{Date, ServiceFailure, ThingModel, ThingServices};
use x_sdk::protocol::{DeviceIdentity, HeaderCtrl, TopicKind};
use x_sdk::runtime::{Device, DeviceBuilder, NoModel, Request};
use x_sim::platform::Command;
use x_sim::sim::Sim;

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

fn reading() -> MeterHex {
    MeterHex {
        voltage: 220.5,
        current: 5.0,
        active_power: 1.1,
        energy_total: 1234.56,
        frequency: 50.01,
        relay: true,
        tariff: Tariff::default(),
        meter_no: "000123456789".into(),
        report_period: 900,
    }
}

fn meter(
    sim: &Sim,
    product_id: &str,
    key: &str,
    node_eui: &str,
) -> DeviceBuilder<MeterHex, MeterHexService> {
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    let mut chip = Chip;
    Device::<MeterHex, MeterHexService>::builder(id, key.parse().unwrap())
        .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
        .unwrap()
        .firmware(HARD_VER, SOFT_VER)
        .settings(settings())
        .state(reading())
        .hex_services(move |call: MeterHexService, out: &mut [u8]| {
            call.dispatch_hex(&mut chip, out)
        })
}

async fn every_hex_command(
    sim: &Sim,
    device: &Device<MeterHex, MeterHexService>,
    id: &DeviceIdentity,
) {
    let p = sim.platform();
    // 18: the full report, decoded by the generated script on the platform.
    device.report_all().await.unwrap().await.unwrap();
    let latest = p.latest_properties(id);
    assert_eq!(latest["voltage"].value, json!(220.5));
    assert_eq!(latest["meterNo"].value, json!("000123456789"));
    // 19: an event.
    device
        .hex_event(&TamperEvent {
            kind: TamperKind::default(),
            at: Date::from_millis(1_717_401_600_000),
        })
        .await
        .unwrap()
        .await
        .unwrap();
    assert_eq!(p.events(id).pop().unwrap().identifier, "tamper");
    // 20 -> 22: a property set through the script, decoded by the device's codec.
    let answer = p
        .send_command(
            id,
            Command::SetProperties(json!({"reportPeriod": 600})),
            None,
        )
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success(), "{answer:?}");
    assert_eq!(device.state().report_period, 600);
    // 21 -> 24, answered with a HEX service reply (26) that the script decodes.
    let answer = p
        .send_command(
            id,
            Command::CallService {
                service: "readRegister".into(),
                params: json!({"address": 258}),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.header_ctrl, HeaderCtrl::HexServiceReply);
    assert_eq!(answer.payload["Payload"]["Data"], json!({"value": 513}));
    // 23 -> 25, answered with a HEX report (18).
    let answer = p
        .send_command(id, Command::AskProperties(vec!["voltage".into()]), None)
        .await
        .unwrap();
    assert_eq!(answer.payload["Payload"]["voltage"], json!(220.5));
    // A property set the device's codec refuses (read-only voltage through a raw frame).
    let raw = Command::Raw {
        kind: TopicKind::HexDownlink,
        identifier: None,
        header_ctrl: HeaderCtrl::HexPropertySet,
        payload: json!("81ff00"),
    };
    let answer = p.send_command(id, raw, None).await.unwrap();
    assert_eq!(answer.ack().unwrap().code.as_str(), "4001");
    assert!(device.is_online());
    // The same event() call as a JSON product's sends a HEX product's event as HEX (19).
    let overload = OverloadEvent {
        power: 12.5,
        limit: 10.0,
    };
    let before = p.events(id).len();
    device.event(&overload).await.unwrap().await.unwrap();
    let events = p.events(id);
    assert_eq!(events.len(), before + 1);
    assert_eq!(events.last().unwrap().identifier, "overload");
    assert_eq!(events.last().unwrap().value["power"], json!(12.5));
    // The rows every product has: firmware, config, time sync, OTA notify.
    every_common_command(sim, device, id).await;
    // The HEX refusal above was a command refused, not a bad frame.
    assert_eq!(device.counters().session.refused_commands, 1);
}

const HARD_VER: &str = "HW-7";
const SOFT_VER: &str = "3.1.0";

/// The config settings the devices start with.
fn settings() -> serde_json::Map<String, serde_json::Value> {
    serde_json::from_value(json!({"interval": 900, "mode": "normal"})).unwrap()
}

/// The command-table rows every product has, whatever its format: the firmware report after
/// the login (8) and on a firmware ask (13), config ask and set (14, the settings as an
/// object and as JSON in a string), time sync (29) and an OTA notify (9). Then: nothing the
/// platform sent was a bad frame.
async fn every_common_command<M, S>(sim: &Sim, device: &Device<M, S>, id: &DeviceIdentity)
where
    M: ThingModel + Send + 'static,
    M::Set: Send,
    S: ThingServices + Send + 'static,
{
    let p = sim.platform();
    // 8 after the login, acked: the platform keeps the versions.
    let key = format!("{id}/default");
    wait_for(|| p.state("firmware", &key).is_some()).await;
    let firmware = p.state("firmware", &key).unwrap();
    assert!(
        firmware.to_string().contains(SOFT_VER) && firmware.to_string().contains(HARD_VER),
        "{firmware}"
    );
    // 13 -> 8 with the ask's MessageId.
    let answer = p
        .send_command(id, Command::AskFirmware, None)
        .await
        .unwrap();
    assert_eq!(answer.header_ctrl, HeaderCtrl::FirmwareReport);
    assert_eq!(
        (
            answer.payload["HardVer"].clone(),
            answer.payload["SoftVer"].clone()
        ),
        (json!(HARD_VER), json!(SOFT_VER))
    );
    // 14: ask, set (object), set (JSON in a string).
    let answer = p.send_command(id, Command::AskConfig, None).await.unwrap();
    assert_eq!(answer.header_ctrl, HeaderCtrl::Config);
    assert_eq!(answer.payload, json!({"Settings": settings()}));
    let answer = p
        .send_command(id, Command::SetConfig(json!({"interval": 60})), None)
        .await
        .unwrap();
    assert_eq!(
        answer.payload["Settings"],
        json!({"interval": 60, "mode": "normal"})
    );
    let answer = p
        .send_command(id, Command::SetConfig(json!("{\"mode\":\"eco\"}")), None)
        .await
        .unwrap();
    assert_eq!(
        answer.payload["Settings"],
        json!({"interval": 60, "mode": "eco"})
    );
    assert_eq!(device.settings()["mode"], json!("eco"));
    // 29: the platform clock, within a minute of ours.
    wait_for(|| device.platform_time().is_some()).await;
    let skew = device.platform_time().unwrap() - x_sdk::model::Date::now().millis();
    assert!(skew.abs() < 60_000, "{skew} ms");
    // 9: acked with its DownID, handed to the application.
    let notify = x_sdk::protocol::payload::OtaNotify {
        upgrade_type: 2,
        url: "http://127.0.0.1:1/fw.bin".into(),
        soft_ver: "3.2.0".into(),
        soft_size: 2048,
        md5: "0123456789abcdef0123456789abcdef".into(),
        down_id: "D-7".into(),
        firmware_name: Some("fw.bin".into()),
        module: None,
    };
    let answer = p
        .send_command(id, Command::NotifyOta(notify), None)
        .await
        .unwrap();
    assert_eq!(answer.header_ctrl, HeaderCtrl::OtaNotify);
    assert_eq!(answer.payload, json!({"DownID": "D-7"}));
    tokio::time::timeout(WAIT, async {
        loop {
            if let Request::OtaNotify(n) = device.next_request().await.unwrap()
                && n.down_id == "D-7"
            {
                return;
            }
        }
    })
    .await
    .expect("the OTA notify handed to the application");
    // Nothing the platform sent was unusable.
    let counters = device.counters().session;
    assert_eq!(counters.bad_frames, 0, "{counters:?}");
    assert!(device.is_online());
}

#[tokio::test]
async fn a_hex_meter_speaks_every_hex_command() {
    let sim = sim().await;
    let device = meter(
        &sim,
        "4D455445",
        "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
        "MTR00001",
    )
    .hex(false)
    .connect()
    .await
    .unwrap();
    let id = sim.device("4D455445", "MTR00001").unwrap();
    every_hex_command(&sim, &device, &id).await;
}

#[tokio::test]
async fn an_encrypted_hex_meter_speaks_every_hex_command() {
    let sim = sim().await;
    let device = meter(
        &sim,
        "4D455446",
        "1F1E2D3C4B5A69788796A5B4C3D2E1F0",
        "MTRENC01",
    )
    .hex(false)
    .encrypted(true)
    .connect()
    .await
    .unwrap();
    let id = sim.device("4D455446", "MTRENC01").unwrap();
    every_hex_command(&sim, &device, &id).await;
}

#[tokio::test]
async fn full_hex_reports_are_acked_in_order() {
    let sim = sim().await;
    let device = meter(
        &sim,
        "4D455445",
        "0F1E2D3C4B5A69788796A5B4C3D2E1F0",
        "MTR00002",
    )
    .hex(true)
    .connect()
    .await
    .unwrap();
    let id = sim.device("4D455445", "MTR00002").unwrap();
    let mut deliveries = Vec::new();
    for i in 0..10 {
        let report = MeterHexReport::default()
            .with_voltage(220.0 + i as f32)
            .with_current(1.0)
            .with_active_power(0.2)
            .with_energy_total(10.0)
            .with_frequency(50.0)
            .with_relay(true)
            .with_tariff(Tariff::default())
            .with_meter_no("000123456789".into())
            .with_report_period(900);
        deliveries.push(device.report(report).await.unwrap());
    }
    for d in deliveries {
        d.await.unwrap();
    }
    let full: Vec<_> = sim
        .platform()
        .received_from(&id)
        .into_iter()
        .filter(|r| r.kind == TopicKind::FullHex)
        .collect();
    assert_eq!(full.len(), 10);
    assert_eq!(
        sim.platform().latest_properties(&id)["voltage"].value,
        json!(229)
    );
}

#[tokio::test]
async fn a_passthrough_device_moves_application_data_both_ways() {
    passthrough(
        "9A55A55A",
        "2F1E2D3C4B5A69788796A5B4C3D2E1F0",
        "DTU00001",
        false,
    )
    .await;
}

#[tokio::test]
async fn an_encrypted_passthrough_device_moves_application_data_both_ways() {
    passthrough(
        "9A55A55B",
        "3F1E2D3C4B5A69788796A5B4C3D2E1F0",
        "DTUENC01",
        true,
    )
    .await;
}

async fn passthrough(product_id: &str, key: &str, node_eui: &str, encrypted: bool) {
    let sim = sim().await;
    let id = DeviceIdentity::parse("7ED01E2A", product_id, node_eui).unwrap();
    let device = Device::<NoModel>::builder(id.clone(), key.parse().unwrap())
        .encrypted(encrypted)
        .broker(&format!("mqtt://{}", sim.mqtt_addr().unwrap()))
        .unwrap()
        .firmware(HARD_VER, SOFT_VER)
        .settings(settings())
        .connect()
        .await
        .unwrap();
    device
        .passthrough(json!("68AA0011"))
        .await
        .unwrap()
        .await
        .unwrap();
    let got = sim.platform().received_from(&id).pop().unwrap();
    assert_eq!(got.payload, json!({"data": "68AA0011"}));
    let answer = sim
        .platform()
        .send_command(&id, Command::Passthrough(json!("16FF")), None)
        .await
        .unwrap();
    assert!(answer.ack().unwrap().code.is_success());
    let request = tokio::time::timeout(WAIT, async {
        loop {
            if let Some(Request::Passthrough(data)) = device.next_request().await {
                return data;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(request, json!("16FF"));
    // A property set on a product without a model is refused, not crashed on.
    let answer = sim
        .platform()
        .send_command(
            &id,
            Command::Raw {
                kind: TopicKind::PropertySet,
                identifier: None,
                header_ctrl: HeaderCtrl::PropertySet,
                payload: json!({"params":[{"identify":"x","value":1}]}),
            },
            None,
        )
        .await
        .unwrap();
    assert_eq!(answer.ack().unwrap().code.as_str(), "4001");
    every_common_command(&sim, &device, &id).await;
    assert_eq!(device.counters().session.refused_commands, 1);
}
