//! HEX products: the generated Rust codec and the generated parsing script agree. Random
//! valid values for every HEX model in models/ go Rust encode -> script decode (equal to the
//! JSON the Rust JSON path produces) and script encode -> Rust decode (equal to the typed
//! value the JSON path decodes); the worked examples of docs/hex-format.md hold both ways;
//! malformed bytes are rejected by both. The script runs in boa, as x-sim runs it.
#![allow(clippy::unwrap_used)]

/// Generated from models/meter-hex.json (positional, little-endian, scaled, fixed text).
#[rustfmt::skip]
#[path = "golden/meter_hex.rs"]
pub mod meter_hex;
/// Generated from models/cold-chain-tracker.json (tagged, big-endian, structs and arrays).
#[rustfmt::skip]
#[path = "golden/cold_chain_tracker.rs"]
pub mod cold_chain_tracker;
/// Generated from models/env-sensor-hex.json (positional, big-endian, signed, enums).
#[rustfmt::skip]
#[path = "golden/env_sensor_hex.rs"]
pub mod env_sensor_hex;

use serde_json::{Map, Value, json};
use x_codegen::ir::{DataType, Field, Model};
use x_sdk::model::hex::{HexEvent, HexModel, HexServices};
use x_sdk::model::{
    FromPayload, PropertyValue, ServiceFailure, ThingModel, ThingServices, ToPayload,
};
use x_sim::script::ParsingScript;

fn load(file: &str) -> (Model, ParsingScript, String) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    let model = x_codegen::load(&text, "M").unwrap();
    let source = x_codegen::script::script(&model, file).unwrap();
    let script = ParsingScript::load(&source).unwrap();
    (model, script, source)
}

/// Numbers compared as f64: JSON `1` and `1.0` are the same value on the wire.
fn norm(v: Value) -> Value {
    match v {
        Value::Number(n) => Value::from(n.as_f64().unwrap()),
        Value::Array(a) => Value::Array(a.into_iter().map(norm).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, norm(v))).collect()),
        other => other,
    }
}

/// A small deterministic generator (xorshift64*), seeded by proptest.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }

    fn chance(&mut self) -> bool {
        self.next().is_multiple_of(2)
    }
}

/// A random value valid under the model and exactly representable by the field's encoding.
fn gen_value(rng: &mut Rng, ty: &DataType, field: &Field) -> Value {
    let enc = x_codegen::hex::resolve(ty, &field.hex).unwrap();
    match ty {
        DataType::Int(n) | DataType::Float(n) | DataType::Double(n) => {
            let lo = n.min.unwrap_or(-1000.0);
            let hi = n.max.unwrap_or(1000.0);
            let (base, step, decimals) = if enc.scaled() {
                let step = n.step.unwrap_or(enc.scale).max(enc.scale);
                let base = enc.offset + ((lo - enc.offset) / enc.scale).ceil() * enc.scale;
                (base, step, enc.decimals.max(x_codegen::hex::decimals(step)))
            } else if let Some(step) = n.step {
                (
                    lo,
                    step,
                    x_codegen::hex::decimals(step).max(x_codegen::hex::decimals(lo)),
                )
            } else if matches!(ty, DataType::Int(_)) {
                (lo, 1.0, 0)
            } else {
                (lo, 0.001, 3)
            };
            let count = ((hi - base) / step).floor() as u64;
            let k = rng.below(count + 1);
            let text = format!("{:.*}", decimals as usize, base + k as f64 * step);
            let v: f64 = text.parse().unwrap();
            match ty {
                DataType::Int(_) => json!(v as i64),
                DataType::Float(_) => x_sdk::model::ThingValue::to_json(&(v as f32)),
                _ => json!(v),
            }
        }
        DataType::Bool(_) => json!(rng.below(2)),
        DataType::Enum(e) => json!(e.variants[rng.below(e.variants.len() as u64) as usize].key),
        DataType::Date => json!(rng.below(4_102_444_800_000) as i64),
        DataType::Text(len) => {
            let fixed = match enc.wire {
                x_codegen::hex::WireForm::TextFixed(n) => Some(n),
                _ => None,
            };
            let max = len.unwrap_or(255).min(fixed.unwrap_or(255)) as usize;
            let alphabet = ['a', 'Z', '0', '9', ' ', '-', '_', '运', '单', 'é', '😀'];
            let mut s = String::new();
            let want = rng.below(max as u64 + 1) as usize;
            while s.len() < want {
                let c = alphabet[rng.below(alphabet.len() as u64) as usize];
                if s.len() + c.len_utf8() > want {
                    break;
                }
                s.push(c);
            }
            json!(s)
        }
        DataType::Struct(st) => Value::Object(gen_params(rng, &st.fields)),
        DataType::Array { size, item } => {
            let n = rng.below(u64::from(size.unwrap_or(4)).min(6) + 1);
            Value::Array((0..n).map(|_| gen_value(rng, item, field)).collect())
        }
        DataType::External(_) => unreachable!("model files have no external types"),
    }
}

fn gen_params(rng: &mut Rng, fields: &[Field]) -> Map<String, Value> {
    fields
        .iter()
        .map(|f| (f.identifier.clone(), gen_value(rng, &f.ty, f)))
        .collect()
}

/// Sometimes sends a number or bool as a string, as platforms do.
fn stringly(rng: &mut Rng, v: Value) -> Value {
    match v {
        Value::Number(n) if rng.below(3) == 0 => Value::from(n.to_string()),
        other => other,
    }
}

const CASES: u32 = 96;

fn run(test: impl Fn(&mut Rng)) {
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: CASES,
        ..Default::default()
    });
    runner
        .run(&proptest::prelude::any::<u64>(), |seed| {
            test(&mut Rng(seed | 1));
            Ok(())
        })
        .unwrap();
}

mod meter {
    use super::meter_hex::*;
    use super::*;

    #[derive(Default)]
    struct Replies {
        relay: Option<RelayControlOutput>,
        register: Option<ReadRegisterOutput>,
    }

    impl MeterHexServiceHandler for Replies {
        fn relay_control(&mut self, _: bool) -> Result<RelayControlOutput, ServiceFailure> {
            self.relay.take().ok_or_else(|| "relay stuck".into())
        }

        fn read_register(&mut self, _: i32) -> Result<ReadRegisterOutput, ServiceFailure> {
            self.register
                .take()
                .ok_or_else(|| "no such register".into())
        }
    }

    #[test]
    fn uplinks_rust_encode_script_decode() {
        let (model, script, _) = load("meter-hex.json");
        let script = std::cell::RefCell::new(script);
        run(|rng| {
            let mut script = script.borrow_mut();
            let mut buf = [0u8; 256];
            // A full (positional) report.
            let props: Vec<Field> = model.properties.iter().map(|p| p.field.clone()).collect();
            let payload = gen_params(rng, &props);
            let report = MeterHexReport::from_payload(&payload).unwrap();
            let n = MeterHex::encode_report(&report, &mut buf).unwrap();
            let decoded = script.raw_data_to_protocol(&buf[..n]).unwrap();
            assert_eq!(
                norm(decoded),
                norm(json!({"HeaderCtrl": 16, "Payload": report.to_payload()}))
            );
            assert_eq!(MeterHex::decode_report(&buf[..n]).unwrap(), report);

            // An event.
            let e = &model.events[rng.below(2) as usize];
            let outputs = gen_params(rng, &e.outputs);
            let (n, canonical) = match e.identifier.as_str() {
                "tamper" => {
                    let ev = TamperEvent::from_payload(&outputs).unwrap();
                    (ev.encode_hex(&mut buf).unwrap(), ev.to_payload())
                }
                _ => {
                    let ev = OverloadEvent::from_payload(&outputs).unwrap();
                    let n = ev.encode_hex(&mut buf).unwrap();
                    assert_eq!(OverloadEvent::decode_hex(&buf[..n]).unwrap(), ev);
                    (n, ev.to_payload())
                }
            };
            assert_eq!(
                norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
                norm(json!({"HeaderCtrl": 17, "Event": e.identifier, "Payload": canonical}))
            );

            // A service reply, succeeded or failed.
            let s = &model.services[rng.below(2) as usize];
            let outputs = gen_params(rng, &s.outputs);
            let mut replies = Replies::default();
            let ok = rng.chance();
            let call = if s.identifier == "relayControl" {
                if ok {
                    replies.relay = Some(RelayControlOutput::from_payload(&outputs).unwrap());
                }
                MeterHexService::RelayControl { on: true }
            } else {
                if ok {
                    replies.register = Some(ReadRegisterOutput::from_payload(&outputs).unwrap());
                }
                MeterHexService::ReadRegister { address: 7 }
            };
            let reply = call.dispatch_hex(&mut replies, &mut buf).unwrap();
            assert_eq!(reply.failure.is_none(), ok);
            let expected = if ok {
                json!({"HeaderCtrl": 21, "Service": s.identifier, "Payload": {"Code": "200", "Data": outputs}})
            } else {
                json!({"HeaderCtrl": 21, "Service": s.identifier, "Payload": {"Code": "4001"}})
            };
            let decoded = script.raw_data_to_protocol(&buf[..reply.len]).unwrap();
            assert_eq!(norm(decoded), norm(expected));
            let (id, data) = MeterHexService::decode_reply_hex(&buf[..reply.len]).unwrap();
            assert_eq!(id, s.identifier);
            assert_eq!(
                data.map(|d| norm(Value::Object(d))),
                ok.then(|| norm(Value::Object(outputs.clone())))
            );
        });
    }

    #[test]
    fn downlinks_script_encode_rust_decode() {
        let (model, script, _) = load("meter-hex.json");
        let script = std::cell::RefCell::new(script);
        run(|rng| {
            let mut script = script.borrow_mut();
            // A property set of some writable properties, values sometimes as strings.
            let mut params = Vec::new();
            for p in model
                .properties
                .iter()
                .filter(|p| p.access == x_codegen::ir::Access::ReadWrite)
            {
                if rng.chance() {
                    let v = gen_value(rng, &p.field.ty, &p.field);
                    let v = stringly(rng, v);
                    params.push(json!({"identify": p.field.identifier, "value": v}));
                }
            }
            let typed: Vec<PropertyValue> =
                serde_json::from_value(Value::Array(params.clone())).unwrap();
            let expected = MeterHex::decode_set(&typed).unwrap();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 20, "Payload": {"params": params}}))
                .unwrap();
            assert_eq!(MeterHex::decode_set_hex(&bytes).unwrap(), expected);

            // A service call.
            let s = &model.services[rng.below(2) as usize];
            let inputs: Map<String, Value> = gen_params(rng, &s.inputs)
                .into_iter()
                .map(|(k, v)| (k, stringly(rng, v)))
                .collect();
            let expected = MeterHexService::decode(&s.identifier, &inputs).unwrap();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 21, "Payload": {"serviceIdentify": s.identifier, "params": inputs}}))
                .unwrap();
            assert_eq!(MeterHexService::decode_call_hex(&bytes).unwrap(), expected);

            // A property ask.
            let ids: Vec<&str> = model
                .properties
                .iter()
                .filter(|_| rng.chance())
                .map(|p| p.field.identifier.as_str())
                .collect();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 23, "Payload": {"params": ids}}))
                .unwrap();
            assert_eq!(MeterHex::decode_ask(&bytes).unwrap(), ids);
        });
    }
}

mod sensor {
    use super::env_sensor_hex::*;
    use super::*;

    struct Reply(Option<CalibrateOutput>);

    impl EnvSensorHexServiceHandler for Reply {
        fn calibrate(&mut self, _: i32) -> Result<CalibrateOutput, ServiceFailure> {
            self.0.take().ok_or_else(|| "refused".into())
        }
    }

    #[test]
    fn uplinks_rust_encode_script_decode() {
        let (model, script, _) = load("env-sensor-hex.json");
        let script = std::cell::RefCell::new(script);
        run(|rng| {
            let mut script = script.borrow_mut();
            let mut buf = [0u8; 256];
            let props: Vec<Field> = model.properties.iter().map(|p| p.field.clone()).collect();
            let payload = gen_params(rng, &props);
            let report = EnvSensorHexReport::from_payload(&payload).unwrap();
            let n = EnvSensorHex::encode_report(&report, &mut buf).unwrap();
            let decoded = script.raw_data_to_protocol(&buf[..n]).unwrap();
            assert_eq!(
                norm(decoded),
                norm(json!({"HeaderCtrl": 16, "Payload": report.to_payload()}))
            );
            assert_eq!(EnvSensorHex::decode_report(&buf[..n]).unwrap(), report);

            let outputs = gen_params(rng, &model.events[0].outputs);
            let ev = SensorFaultEvent::from_payload(&outputs).unwrap();
            let n = ev.encode_hex(&mut buf).unwrap();
            assert_eq!(SensorFaultEvent::decode_hex(&buf[..n]).unwrap(), ev);
            assert_eq!(
                norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
                norm(json!({"HeaderCtrl": 17, "Event": "sensorFault", "Payload": ev.to_payload()}))
            );

            let outputs = gen_params(rng, &model.services[0].outputs);
            let ok = rng.chance();
            let mut reply = Reply(ok.then(|| CalibrateOutput::from_payload(&outputs).unwrap()));
            let call = EnvSensorHexService::Calibrate { reference: 800 };
            let written = call.dispatch_hex(&mut reply, &mut buf).unwrap();
            let expected = if ok {
                json!({"HeaderCtrl": 21, "Service": "calibrate", "Payload": {"Code": "200", "Data": outputs}})
            } else {
                json!({"HeaderCtrl": 21, "Service": "calibrate", "Payload": {"Code": "4001"}})
            };
            let decoded = script.raw_data_to_protocol(&buf[..written.len]).unwrap();
            assert_eq!(norm(decoded), norm(expected));
        });
    }

    #[test]
    fn downlinks_script_encode_rust_decode() {
        let (model, script, _) = load("env-sensor-hex.json");
        let script = std::cell::RefCell::new(script);
        run(|rng| {
            let mut script = script.borrow_mut();
            let mut params = Vec::new();
            for p in model
                .properties
                .iter()
                .filter(|p| p.access == x_codegen::ir::Access::ReadWrite)
            {
                if rng.chance() {
                    let v = gen_value(rng, &p.field.ty, &p.field);
                    params.push(json!({"identify": p.field.identifier, "value": stringly(rng, v)}));
                }
            }
            let typed: Vec<PropertyValue> =
                serde_json::from_value(Value::Array(params.clone())).unwrap();
            let expected = EnvSensorHex::decode_set(&typed).unwrap();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 20, "Payload": {"params": params}}))
                .unwrap();
            assert_eq!(EnvSensorHex::decode_set_hex(&bytes).unwrap(), expected);

            let inputs: Map<String, Value> = gen_params(rng, &model.services[0].inputs)
                .into_iter()
                .map(|(k, v)| (k, stringly(rng, v)))
                .collect();
            let expected = EnvSensorHexService::decode("calibrate", &inputs).unwrap();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 21, "Payload": {"serviceIdentify": "calibrate", "params": inputs}}))
                .unwrap();
            assert_eq!(
                EnvSensorHexService::decode_call_hex(&bytes).unwrap(),
                expected
            );

            let ids: Vec<&str> = model
                .properties
                .iter()
                .filter(|_| rng.chance())
                .map(|p| p.field.identifier.as_str())
                .collect();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 23, "Payload": {"params": ids}}))
                .unwrap();
            assert_eq!(EnvSensorHex::decode_ask(&bytes).unwrap(), ids);
        });
    }
}

mod tracker {
    use super::cold_chain_tracker::*;
    use super::*;

    struct Thresholds(Option<SetThresholdsOutput>);

    impl ColdChainTrackerServiceHandler for Thresholds {
        fn set_thresholds(
            &mut self,
            _: SetThresholdsLimits,
        ) -> Result<SetThresholdsOutput, ServiceFailure> {
            self.0.take().ok_or_else(|| "limits rejected".into())
        }
    }

    #[test]
    fn uplinks_rust_encode_script_decode() {
        let (model, script, _) = load("cold-chain-tracker.json");
        let script = std::cell::RefCell::new(script);
        run(|rng| {
            let mut script = script.borrow_mut();
            let mut buf = [0u8; 1024];
            // A partial (tagged) report.
            let props: Vec<Field> = model
                .properties
                .iter()
                .filter(|_| rng.chance())
                .map(|p| p.field.clone())
                .collect();
            let payload = gen_params(rng, &props);
            let report = ColdChainTrackerReport::from_payload(&payload).unwrap();
            let n = ColdChainTracker::encode_report(&report, &mut buf).unwrap();
            assert_eq!(
                norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
                norm(json!({"HeaderCtrl": 16, "Payload": report.to_payload()}))
            );
            assert_eq!(ColdChainTracker::decode_report(&buf[..n]).unwrap(), report);

            let outputs = gen_params(rng, &model.events[0].outputs);
            let ev = ExcursionEvent::from_payload(&outputs).unwrap();
            let n = ev.encode_hex(&mut buf).unwrap();
            assert_eq!(
                norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
                norm(json!({"HeaderCtrl": 17, "Event": "excursion", "Payload": ev.to_payload()}))
            );
            assert_eq!(ExcursionEvent::decode_hex(&buf[..n]).unwrap(), ev);

            let outputs = gen_params(rng, &model.services[0].outputs);
            let out = SetThresholdsOutput::from_payload(&outputs).unwrap();
            let call = ColdChainTrackerService::SetThresholds {
                limits: SetThresholdsLimits {
                    low: -25.0,
                    high: -15.0,
                },
            };
            let reply = call
                .dispatch_hex(&mut Thresholds(Some(out.clone())), &mut buf)
                .unwrap();
            assert_eq!(
                norm(script.raw_data_to_protocol(&buf[..reply.len]).unwrap()),
                norm(
                    json!({"HeaderCtrl": 21, "Service": "setThresholds", "Payload": {"Code": "200", "Data": out.to_payload()}})
                )
            );
        });
    }

    #[test]
    fn downlinks_script_encode_rust_decode() {
        let (model, script, _) = load("cold-chain-tracker.json");
        let script = std::cell::RefCell::new(script);
        run(|rng| {
            let mut script = script.borrow_mut();
            let mut params = Vec::new();
            for p in model
                .properties
                .iter()
                .filter(|p| p.access == x_codegen::ir::Access::ReadWrite)
            {
                if rng.chance() {
                    let v = gen_value(rng, &p.field.ty, &p.field);
                    params.push(json!({"identify": p.field.identifier, "value": stringly(rng, v)}));
                }
            }
            let typed: Vec<PropertyValue> =
                serde_json::from_value(Value::Array(params.clone())).unwrap();
            let expected = ColdChainTracker::decode_set(&typed).unwrap();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 20, "Payload": {"params": params}}))
                .unwrap();
            assert_eq!(ColdChainTracker::decode_set_hex(&bytes).unwrap(), expected);

            let inputs = gen_params(rng, &model.services[0].inputs);
            let expected = ColdChainTrackerService::decode("setThresholds", &inputs).unwrap();
            let bytes = script
                .protocol_to_raw_data(&json!({"HeaderCtrl": 21, "Payload": {"serviceIdentify": "setThresholds", "params": inputs}}))
                .unwrap();
            assert_eq!(
                ColdChainTrackerService::decode_call_hex(&bytes).unwrap(),
                expected
            );
        });
    }
}

#[test]
fn script_is_plain_es5_and_a_commonjs_module() {
    for file in [
        "meter-hex.json",
        "cold-chain-tracker.json",
        "env-sensor-hex.json",
    ] {
        let (_, _, source) = load(file);
        for forbidden in [
            "let ",
            "const ",
            "=>",
            "class ",
            "`",
            "(...",
            "[...",
            "{...",
            "Uint8Array",
            "DataView",
            "Math.fround",
        ] {
            let code: String = source
                .lines()
                .filter(|l| !l.trim_start().starts_with("//") && !l.trim_start().starts_with('*'))
                .collect::<Vec<_>>()
                .join("\n");
            assert!(
                !code.contains(forbidden),
                "{file}: the script uses {forbidden:?}"
            );
        }
        assert!(source.contains("function rawDataToProtocol(bytes)"));
        assert!(source.contains("function protocolToRawData(obj)"));
        assert!(source.contains("module.exports = { rawDataToProtocol: rawDataToProtocol, protocolToRawData: protocolToRawData }"));
    }
}

#[test]
fn script_takes_signed_arrays_and_uint8array() {
    let (_, mut script, _) = load("cold-chain-tracker.json");
    // doorOpen (id 4) = 1, setpoint (id 5) = -18.5 as f32 0xC1940000.
    let expected = json!({"HeaderCtrl": 16, "Payload": {"doorOpen": 1, "setpoint": -18.5}});
    let unsigned = script
        .raw_data_to_protocol(&[0x01, 4, 1, 5, 0xC1, 0x94, 0, 0])
        .unwrap();
    assert_eq!(norm(unsigned), norm(expected.clone()));
    let signed = script
        .raw_data_to_protocol_js("[1, 4, 1, 5, -63, -108, 0, 0]")
        .unwrap();
    assert_eq!(norm(signed), norm(expected.clone()));
    let typed = script
        .raw_data_to_protocol_js("new Uint8Array([1, 4, 1, 5, 193, 148, 0, 0])")
        .unwrap();
    assert_eq!(norm(typed), norm(expected));
}

fn bytes(hex: &str) -> Vec<u8> {
    x_sdk::model::hex::from_hex(hex).unwrap()
}

fn hex_of(b: &[u8]) -> String {
    x_sdk::model::hex::to_hex(b)
}

/// The worked examples of docs/hex-format.md, both ways.
#[test]
fn documented_vectors_tracker() {
    use cold_chain_tracker::*;
    let (_, mut script, _) = load("cold-chain-tracker.json");
    let mut buf = [0u8; 256];

    let report = ColdChainTrackerReport::default()
        .with_door_open(true)
        .with_setpoint(-18.5)
        .with_alarm_levels(vec![10, 50, 90]);
    let n = ColdChainTracker::encode_report(&report, &mut buf).unwrap();
    assert_eq!(
        hex_of(&buf[..n]),
        "01040105c194000007030000000a000000320000005a"
    );
    assert_eq!(
        norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
        norm(
            json!({"HeaderCtrl":16,"Payload":{"doorOpen":1,"setpoint":-18.5,"alarmLevels":[10,50,90]}})
        )
    );

    let report = ColdChainTrackerReport::default()
        .with_position(Position {
            lat: 30.27,
            lng: 120.15,
            alt: 12.5,
        })
        .with_shipment_id("SF-1".into());
    let n = ColdChainTracker::encode_report(&report, &mut buf).unwrap();
    assert_eq!(
        hex_of(&buf[..n]),
        "0101403e451eb851eb85405e09999999999a41480000060453462d31"
    );
    assert_eq!(
        norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
        norm(
            json!({"HeaderCtrl":16,"Payload":{"position":{"lat":30.27,"lng":120.15,"alt":12.5},"shipmentId":"SF-1"}})
        )
    );

    let event = ExcursionEvent {
        probe: 2,
        temperature: 8.5,
        window: ExcursionWindow {
            start: x_sdk::model::Date::from_millis(1_717_401_600_000),
            end: x_sdk::model::Date::from_millis(1_717_402_500_000),
        },
    };
    let n = event.encode_hex(&mut buf).unwrap();
    assert_eq!(
        hex_of(&buf[..n]),
        "020100000002410800000000018fdd1cc0000000018fdd2a7ba0"
    );
    assert_eq!(
        norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
        norm(
            json!({"HeaderCtrl":17,"Event":"excursion","Payload":{"probe":2,"temperature":8.5,"window":{"start":1_717_401_600_000i64,"end":1_717_402_500_000i64}}})
        )
    );

    let set = json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"setpoint","value":"-20"},{"identify":"shipmentId","value":"SF-1"}]}});
    let b = script.protocol_to_raw_data(&set).unwrap();
    assert_eq!(hex_of(&b), "8105c1a00000060453462d31");
    let decoded = ColdChainTracker::decode_set_hex(&bytes("8105c1a00000060453462d31")).unwrap();
    assert_eq!(decoded.setpoint, Some(-20.0));
    assert_eq!(decoded.shipment_id.as_deref(), Some("SF-1"));

    let call = json!({"HeaderCtrl":21,"Payload":{"serviceIdentify":"setThresholds","params":{"limits":{"low":-25,"high":"-15.5"}}}});
    assert_eq!(
        hex_of(&script.protocol_to_raw_data(&call).unwrap()),
        "8201c1c80000c1780000"
    );
    assert_eq!(
        ColdChainTrackerService::decode_call_hex(&bytes("8201c1c80000c1780000")).unwrap(),
        ColdChainTrackerService::SetThresholds {
            limits: SetThresholdsLimits {
                low: -25.0,
                high: -15.5
            }
        }
    );

    let ask = json!({"HeaderCtrl":23,"Payload":{"params":["setpoint","position"]}});
    assert_eq!(
        hex_of(&script.protocol_to_raw_data(&ask).unwrap()),
        "830501"
    );
    assert_eq!(
        ColdChainTracker::decode_ask(&bytes("830501")).unwrap(),
        ["setpoint", "position"]
    );
}

#[test]
fn documented_vectors_meter() {
    use meter_hex::*;
    let (_, mut script, _) = load("meter-hex.json");
    let mut buf = [0u8; 256];
    let report = MeterHexReport {
        voltage: Some(220.5),
        current: Some(1.25),
        active_power: Some(0.275),
        energy_total: Some(1234.56),
        frequency: Some(50.01),
        relay: Some(true),
        tariff: Some(Tariff::Peak),
        meter_no: Some("000123456789".into()),
        report_period: Some(900),
    };
    let n = MeterHex::encode_report(&report, &mut buf).unwrap();
    let wire = "019d087d00130140e20100e903010130303031323334353637383984030000";
    assert_eq!(hex_of(&buf[..n]), wire);
    assert_eq!(
        norm(script.raw_data_to_protocol(&bytes(wire)).unwrap()),
        norm(
            json!({"HeaderCtrl":16,"Payload":{"voltage":220.5,"current":1.25,"activePower":0.275,"energyTotal":1234.56,"frequency":50.01,"relay":1,"tariff":1,"meterNo":"000123456789","reportPeriod":900}})
        )
    );
    // Scaling is exact: 220.5, not 220.50000000000003.
    assert_eq!(MeterHex::decode_report(&bytes(wire)).unwrap(), report);

    let tamper = TamperEvent {
        kind: TamperKind::Key1,
        at: x_sdk::model::Date::from_millis(1_717_401_600_000),
    };
    let n = tamper.encode_hex(&mut buf).unwrap();
    assert_eq!(hex_of(&buf[..n]), "02010100c01cdd8f010000");
    assert_eq!(
        norm(script.raw_data_to_protocol(&buf[..n]).unwrap()),
        norm(
            json!({"HeaderCtrl":17,"Event":"tamper","Payload":{"kind":1,"at":1_717_401_600_000i64}})
        )
    );

    let set = json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"tariff","value":"2"},{"identify":"reportPeriod","value":900}]}});
    assert_eq!(
        hex_of(&script.protocol_to_raw_data(&set).unwrap()),
        "8107020984030000"
    );
    let decoded = MeterHex::decode_set_hex(&bytes("8107020984030000")).unwrap();
    assert_eq!(
        (decoded.tariff, decoded.report_period),
        (Some(Tariff::Valley), Some(900))
    );

    let call = json!({"HeaderCtrl":21,"Payload":{"serviceIdentify":"readRegister","params":{"address":"258"}}});
    assert_eq!(
        hex_of(&script.protocol_to_raw_data(&call).unwrap()),
        "82110201"
    );
    assert_eq!(
        MeterHexService::decode_call_hex(&bytes("82110201")).unwrap(),
        MeterHexService::ReadRegister { address: 258 }
    );

    struct Registers;
    impl MeterHexServiceHandler for Registers {
        fn relay_control(&mut self, _: bool) -> Result<RelayControlOutput, ServiceFailure> {
            Err("relay stuck".into())
        }
        fn read_register(&mut self, address: i32) -> Result<ReadRegisterOutput, ServiceFailure> {
            if address == 0 {
                Err("no register 0".into())
            } else {
                Ok(ReadRegisterOutput { value: 513 })
            }
        }
    }
    let reply = MeterHexService::ReadRegister { address: 258 }
        .dispatch_hex(&mut Registers, &mut buf)
        .unwrap();
    assert_eq!(hex_of(&buf[..reply.len]), "0311000102");
    assert_eq!(
        norm(script.raw_data_to_protocol(&buf[..reply.len]).unwrap()),
        norm(
            json!({"HeaderCtrl":21,"Service":"readRegister","Payload":{"Code":"200","Data":{"value":513}}})
        )
    );
    let reply = MeterHexService::ReadRegister { address: 0 }
        .dispatch_hex(&mut Registers, &mut buf)
        .unwrap();
    assert_eq!(hex_of(&buf[..reply.len]), "031101");
    assert_eq!(reply.failure.unwrap().to_string(), "no register 0");
    assert_eq!(
        script.raw_data_to_protocol(&buf[..reply.len]).unwrap(),
        json!({"HeaderCtrl":21,"Service":"readRegister","Payload":{"Code":"4001"}})
    );
}

/// What the Rust side makes of device bytes: the decoder their frame type calls for.
fn rust_decode_tracker(b: &[u8]) -> Result<(), String> {
    use cold_chain_tracker::*;
    let r = match b.first() {
        Some(0x01) => ColdChainTracker::decode_report(b).map(drop),
        Some(0x02) => ExcursionEvent::decode_hex(b).map(drop),
        Some(0x03) => ColdChainTrackerService::decode_reply_hex(b).map(drop),
        _ => ColdChainTracker::decode_report(b).map(drop),
    };
    r.map_err(|e| e.to_string())
}

fn rust_decode_meter(b: &[u8]) -> Result<(), String> {
    use meter_hex::*;
    let r = match b.first() {
        Some(0x01) => MeterHex::decode_report(b).map(drop),
        Some(0x02) if b.get(1) == Some(&1) => TamperEvent::decode_hex(b).map(drop),
        Some(0x02) => OverloadEvent::decode_hex(b).map(drop),
        Some(0x03) => MeterHexService::decode_reply_hex(b).map(drop),
        _ => MeterHex::decode_report(b).map(drop),
    };
    r.map_err(|e| e.to_string())
}

#[test]
fn malformed_bytes_are_rejected_by_both() {
    let valid_meter = "019d087d00130140e20100e903010130303031323334353637383984030000";
    let cases: &[(&str, &str, &str)] = &[
        // (model, hex, what both must say)
        ("tracker", "", "empty frame"),
        ("tracker", "05", "frame type 0x05"),
        ("tracker", "81", "frame type 0x81"),
        (
            "tracker",
            "0105c194",
            "truncated at byte 2: setpoint needs 2 more byte(s)",
        ),
        ("tracker", "01040163", "unknown property id 99 at byte 3"),
        (
            "tracker",
            "0104010401",
            "property doorOpen appears twice (byte 3)",
        ),
        (
            "tracker",
            "010402",
            "doorOpen: bool byte 2 at byte 2 is not 0 or 1",
        ),
        (
            "tracker",
            "010205000000000000000000000000000000000000000000",
            "probes: 5 elements, at most 4 allowed",
        ),
        (
            "tracker",
            "010602c328",
            "shipmentId: text at byte 3 is not valid UTF-8",
        ),
        ("tracker", "010542c80000", "100 is above the maximum 10"),
        ("tracker", "0107020000000a000000c8", "alarmLevels"),
        (
            "tracker",
            "0101403e451eb851eb85",
            "truncated at byte 10: lng needs 8 more byte(s)",
        ),
        ("tracker", "0209", "unknown event id 9 at byte 1"),
        ("tracker", "020100000009", "probe"),
        (
            "tracker",
            "030102",
            "service result byte 2 at byte 2 is not 0 (ok) or 1 (failed)",
        ),
        ("tracker", "030701", "unknown service id 7 at byte 1"),
        ("tracker", "03010001ff", "trailing byte(s) at byte 4"),
        (
            "meter",
            &format!("{valid_meter}00"),
            "1 trailing byte(s) at byte 31",
        ),
        (
            "meter",
            "019d08",
            "truncated at byte 3: current needs 2 more byte(s)",
        ),
        (
            "meter",
            "01b90b7d00130140e20100e903010130303031323334353637383984030000",
            "voltage",
        ),
        (
            "meter",
            "019d087d00130140e20100e903010530303031323334353637383984030000",
            "tariff: unknown enum key 5 at byte 14",
        ),
        (
            "meter",
            "019d087d00130140e20100e9030101ff30303132333435363738393030",
            "meterNo: text at byte 15 is not valid UTF-8",
        ),
        (
            "meter",
            "0201020000000000000000",
            "kind: unknown enum key 2 at byte 2",
        ),
        // Found by fuzzing: a NaN (and an infinity, little-endian) where the overload event
        // has an f32.
        (
            "meter",
            "02020602ffffffff",
            "limit: the f32 at byte 4 is not a finite number",
        ),
        (
            "meter",
            "020206020000807f",
            "limit: the f32 at byte 4 is not a finite number",
        ),
    ];
    let (_, mut tracker, _) = load("cold-chain-tracker.json");
    let (_, mut meter, _) = load("meter-hex.json");
    for (which, hex, what) in cases {
        let b = bytes(hex);
        let (script, rust) = match *which {
            "tracker" => (tracker.raw_data_to_protocol(&b), rust_decode_tracker(&b)),
            _ => (meter.raw_data_to_protocol(&b), rust_decode_meter(&b)),
        };
        let script_err = script
            .expect_err(&format!("script accepted {which} {hex}"))
            .to_string();
        let rust_err = rust.expect_err(&format!("Rust accepted {which} {hex}"));
        assert!(
            script_err.contains(what),
            "{which} {hex}: script said {script_err:?}"
        );
        assert!(
            rust_err.contains(what),
            "{which} {hex}: Rust said {rust_err:?}"
        );
    }
    assert!(cases.len() >= 15);
}

#[test]
fn malformed_commands_are_rejected_by_the_script() {
    let (_, mut script, _) = load("meter-hex.json");
    for (message, what) in [
        (
            json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"voltage","value":1}]}}),
            "voltage: read-only property",
        ),
        (
            json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"tariff","value":7}]}}),
            "tariff: unknown enum key 7",
        ),
        (
            json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"reportPeriod","value":"1.5"}]}}),
            "reportPeriod: expected an integer",
        ),
        (
            json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"reportPeriod","value":10}]}}),
            "reportPeriod: 10 is below the minimum 60",
        ),
        (
            json!({"HeaderCtrl":20,"Payload":{"params":[{"identify":"nope","value":1}]}}),
            "unknown property \"nope\"",
        ),
        (
            json!({"HeaderCtrl":21,"Payload":{"serviceIdentify":"readRegister","params":{}}}),
            "address: missing",
        ),
        (
            json!({"HeaderCtrl":21,"Payload":{"serviceIdentify":"reboot","params":{}}}),
            "unknown service \"reboot\"",
        ),
        (
            json!({"HeaderCtrl":21,"Payload":{"serviceIdentify":"readRegister","params":{"address":70000}}}),
            "address: 70000 is above the maximum 65535",
        ),
        (
            json!({"HeaderCtrl":23,"Payload":{"params":["voltage","nope"]}}),
            "\"nope\": unknown property",
        ),
        (
            json!({"HeaderCtrl":16,"Payload":{}}),
            "HeaderCtrl 16 is not a platform command",
        ),
    ] {
        let err = script
            .protocol_to_raw_data(&message)
            .unwrap_err()
            .to_string();
        assert!(err.contains(what), "{message}: {err}");
    }
    for bad in ["null", "\"0102\"", "[1, 2.5]", "[300]", "{}"] {
        assert!(script.raw_data_to_protocol_js(bad).is_err(), "{bad}");
    }
}

#[test]
fn hex_frames_and_the_full_hex_report_carry_the_same_bytes() {
    use cold_chain_tracker::*;
    use x_sdk::protocol::{Frame, HeaderCtrl};
    let (_, mut script, _) = load("cold-chain-tracker.json");
    let mut buf = [0u8; 64];
    let n = ColdChainTracker::encode_report(
        &ColdChainTrackerReport::default().with_door_open(false),
        &mut buf,
    )
    .unwrap();
    // HeaderCtrl 18 on model/hex/report: a frame with the hex string as its payload.
    let frame = Frame::hex(7u32, HeaderCtrl::HexPropertyReport, &buf[..n]);
    assert_eq!(
        String::from_utf8(frame.encode()).unwrap(),
        r#"{"MessageId":7,"HeaderCtrl":18,"Payload":"010400","Version":"2.0"}"#
    );
    let bytes = Frame::decode(&frame.encode()).unwrap().hex_bytes().unwrap();
    assert_eq!(bytes, buf[..n]);
    // HeaderCtrl 28 on model/hex: the bare hex string, the same bytes.
    let full = x_sdk::model::hex::to_hex(&buf[..n]);
    assert_eq!(full, "010400");
    assert_eq!(
        script
            .raw_data_to_protocol(&x_sdk::model::hex::from_hex(&full).unwrap())
            .unwrap(),
        json!({"HeaderCtrl":16,"Payload":{"doorOpen":0}})
    );
    // The vendor document's HEX examples are not frames of this layout: both decoders say why.
    let err = Frame::decode(
        br#"{"MessageId":1,"HeaderCtrl":19,"Payload":"00f0ff013FA00000","Version":"2.0"}"#,
    )
    .unwrap()
    .hex_bytes()
    .map(|b| ColdChainTracker::decode_report(&b).unwrap_err().to_string())
    .unwrap();
    assert_eq!(
        err,
        "frame type 0x00 at byte 0 is not a property report (0x01)"
    );
}

/// The property tests above cover every HEX model in models/: adding one means adding its
/// tests (the generated types differ per model, so they are written out per model).
#[test]
fn every_hex_model_is_covered() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut hex_models: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let text = std::fs::read_to_string(p).unwrap();
            x_codegen::load(&text, "M").unwrap().hex.is_some()
        })
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    hex_models.sort();
    assert_eq!(
        hex_models,
        [
            "cold-chain-tracker.json",
            "env-sensor-hex.json",
            "meter-hex.json"
        ]
    );
}

/// The script's type checks hold for values made in another JavaScript realm: a host binding
/// or another context may hand `protocolToRawData` arrays built by another realm's `Array`,
/// for which `instanceof Array` is false although they are arrays.
mod other_realm {
    use boa_engine::object::builtins::JsArray;
    use boa_engine::{Context, JsString, JsValue, Source, js_string};
    use serde_json::{Value, json};

    /// A boa context that has run the tracker's script.
    fn context() -> Context {
        let (_, _, source) = super::load("cold-chain-tracker.json");
        let mut context = Context::default();
        context.eval(Source::from_bytes(&source)).unwrap();
        context
    }

    /// `make` run in a fresh realm of the same context: what it builds has that realm's
    /// `Array.prototype` and `Object.prototype`.
    fn in_other_realm(
        context: &mut Context,
        make: impl FnOnce(&mut Context) -> JsValue,
    ) -> JsValue {
        let realm = context.create_realm().unwrap();
        let home = context.enter_realm(realm);
        let value = make(context);
        context.enter_realm(home);
        value
    }

    fn global(context: &mut Context, name: &str) -> JsValue {
        context
            .global_object()
            .get(JsString::from(name), context)
            .unwrap()
    }

    /// Calls a global function of the script's realm; its result as JSON, or the message of
    /// what it threw.
    fn call(context: &mut Context, function: &str, arg: JsValue) -> Result<Value, String> {
        let f = global(context, function);
        let f = f.as_callable().unwrap();
        match f.call(&JsValue::undefined(), &[arg], context) {
            Ok(v) => Ok(v.to_json(context).unwrap().unwrap()),
            Err(e) => Err(e.try_native(context).unwrap().message().to_string()),
        }
    }

    /// Whether the script's realm sees `value` as an `instanceof Array`.
    fn instance_of_array(context: &mut Context, value: &JsValue) -> bool {
        context
            .eval(Source::from_bytes(
                "function __instanceOfArray(x) { return x instanceof Array; }",
            ))
            .unwrap();
        call(context, "__instanceOfArray", value.clone()).unwrap() == json!(true)
    }

    /// `protocolToRawData` of a message given as JSON, built in the script's realm and in
    /// another one: the same bytes, or the same error.
    fn both_ways(message: &Value) -> (Result<Value, String>, Result<Value, String>) {
        let mut context = context();
        let native = JsValue::from_json(message, &mut context).unwrap();
        let foreign = in_other_realm(&mut context, |cx| JsValue::from_json(message, cx).unwrap());
        let params = foreign
            .as_object()
            .unwrap()
            .get(js_string!("Payload"), &mut context)
            .unwrap()
            .as_object()
            .unwrap()
            .get(js_string!("params"), &mut context)
            .unwrap();
        // The setup really is cross-realm: the script's realm sees no `instanceof Array`.
        if message["Payload"]["params"].is_array() {
            assert!(!instance_of_array(&mut context, &params));
        }
        (
            call(&mut context, "protocolToRawData", native),
            call(&mut context, "protocolToRawData", foreign),
        )
    }

    #[test]
    fn property_set_with_foreign_arrays() {
        let message = json!({"HeaderCtrl": 20, "Payload": {"params": [
            {"identify": "setpoint", "value": -18.5},
            {"identify": "alarmLevels", "value": [10, 50, 90]}
        ]}});
        let (native, foreign) = both_ways(&message);
        // setpoint (id 5) = -18.5 as f32 0xC1940000, alarmLevels (id 7): 3 x i32.
        let expected = json!([
            0x81, 5, 0xC1, 0x94, 0, 0, 7, 3, 0, 0, 0, 10, 0, 0, 0, 50, 0, 0, 0, 90
        ]);
        assert_eq!(native.unwrap(), expected);
        assert_eq!(foreign.unwrap(), expected);
    }

    #[test]
    fn service_call_with_foreign_objects_and_arrays() {
        let ok = json!({"HeaderCtrl": 21, "Payload": {"serviceIdentify": "setThresholds",
            "params": {"limits": {"low": -25, "high": -15}}}});
        let (native, foreign) = both_ways(&ok);
        assert_eq!(native.unwrap(), foreign.unwrap());
        // An array is not an object of inputs, nor a struct, from whichever realm.
        for (message, error) in [
            (
                json!({"HeaderCtrl": 21, "Payload": {"serviceIdentify": "setThresholds",
                    "params": [1, 2]}}),
                "Payload.params: expected an object of inputs",
            ),
            (
                json!({"HeaderCtrl": 21, "Payload": {"serviceIdentify": "setThresholds",
                    "params": {"limits": [1, 2]}}}),
                "limits: expected an object, got 1,2",
            ),
        ] {
            let (native, foreign) = both_ways(&message);
            assert_eq!(native.unwrap_err(), error, "{message}");
            assert_eq!(foreign.unwrap_err(), error, "{message}");
        }
    }

    #[test]
    fn property_ask_with_a_host_array_of_another_realm() {
        let mut context = context();
        let params = in_other_realm(&mut context, |cx| {
            JsArray::from_iter(
                [js_string!("setpoint").into(), js_string!("doorOpen").into()],
                cx,
            )
            .into()
        });
        assert!(!instance_of_array(&mut context, &params));
        let message =
            JsValue::from_json(&json!({"HeaderCtrl": 23, "Payload": {}}), &mut context).unwrap();
        message
            .as_object()
            .unwrap()
            .get(js_string!("Payload"), &mut context)
            .unwrap()
            .as_object()
            .unwrap()
            .set(js_string!("params"), params, true, &mut context)
            .unwrap();
        assert_eq!(
            call(&mut context, "protocolToRawData", message).unwrap(),
            json!([0x83, 5, 4])
        );
    }
}
