//! The derive crates of env-sensor, env-sensor-hex and meter-hex at work, each against the
//! bindings generated from the same model file: the same payloads, the same HEX frames, the
//! same verdicts, in this crate's edition.

use serde_json::{json, Map, Value};
use x_sdk::model::hex::{HexEvent, HexModel, HexServices};
use x_sdk::model::{
    Date, FromPayload, PropertyValue, ThingEvent, ThingModel, ThingServices, ToPayload,
};

use crate::derived::{env_sensor, env_sensor_hex, meter_hex};
use crate::generated::{
    env_sensor as gen_sensor, env_sensor_hex as gen_sensor_hex, meter_hex as gen_meter,
};

fn params(v: Value) -> Vec<PropertyValue> {
    serde_json::from_value(v).expect("property set params")
}

fn map(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).expect("a JSON object")
}

#[test]
fn env_sensor_derived_matches_generated() {
    let derived = env_sensor::EnvSensor {
        temperature: 21,
        humidity: 40,
        co2: 800,
        air_quality: env_sensor::AirQuality::Moderate,
        location: "机房 B2".into(),
        mode: env_sensor::SensorMode::Eco,
        ..env_sensor::EnvSensor::default()
    };
    let generated = gen_sensor::EnvSensor {
        temperature: 21,
        humidity: 40,
        co2: 800,
        air_quality: gen_sensor::AirQuality::Moderate,
        location: "机房 B2".into(),
        mode: gen_sensor::Mode::Eco,
        ..gen_sensor::EnvSensor::default()
    };
    let payload = derived.report().to_payload();
    assert_eq!(payload, generated.report().to_payload());
    assert_eq!(payload["airQuality"], json!(2));
    assert_eq!(payload["location"], json!("机房 B2"));

    // Property sets: the same values taken, the same refusals (read-only, range, step).
    let ok = json!([{"identify":"reportInterval","value":"120"},{"identify":"mode","value":2}]);
    let set = env_sensor::EnvSensor::decode_set(&params(ok.clone())).unwrap();
    assert_eq!(set.report_interval, Some(120));
    assert_eq!(set.mode, Some(env_sensor::SensorMode::Boost));
    assert_eq!(
        gen_sensor::EnvSensor::decode_set(&params(ok))
            .unwrap()
            .report_interval,
        Some(120)
    );
    for bad in [
        json!([{"identify":"temperature","value":20}]),
        json!([{"identify":"reportInterval","value":125}]),
        json!([{"identify":"reportInterval","value":5}]),
        json!([{"identify":"location","value":"x".repeat(65)}]),
    ] {
        assert_eq!(
            env_sensor::EnvSensor::decode_set(&params(bad.clone()))
                .unwrap_err()
                .to_string(),
            gen_sensor::EnvSensor::decode_set(&params(bad))
                .unwrap_err()
                .to_string()
        );
    }

    // Events: identifiers and kinds from the file, the same payloads and refusals.
    assert_eq!(env_sensor::Threshold::IDENTIFIER, "threshold");
    assert_eq!(
        env_sensor::Threshold::KIND,
        gen_sensor::ThresholdEvent::KIND
    );
    assert_eq!(
        env_sensor::SensorFault::KIND,
        gen_sensor::SensorFaultEvent::KIND
    );
    let event = env_sensor::Threshold {
        param: "co2".into(),
        value: 1800,
    };
    let generated_event = gen_sensor::ThresholdEvent {
        param: "co2".into(),
        value: 1800,
    };
    assert_eq!(event.to_payload(), generated_event.to_payload());
    let bad = map(json!({"code": 300, "detail": "光学腔"}));
    assert_eq!(
        env_sensor::SensorFault::from_payload(&bad)
            .unwrap_err()
            .to_string(),
        gen_sensor::SensorFaultEvent::from_payload(&bad)
            .unwrap_err()
            .to_string()
    );

    // The async service: decoded, dispatched, its outputs the file's.
    let call =
        env_sensor::EnvSensorService::decode("calibrate", &map(json!({"reference": 400}))).unwrap();
    assert_eq!(
        call,
        env_sensor::EnvSensorService::Calibrate { reference: 400 }
    );
    assert_eq!(
        env_sensor::EnvSensorService::SERVICES,
        gen_sensor::EnvSensorService::SERVICES
    );
    assert_eq!(
        Value::Object(call.dispatch(&mut env_sensor::EnvSensorDevice).unwrap()),
        json!({"offset": 20, "calibratedAt": 7})
    );
    let out = map(json!({"offset": 20, "calibratedAt": 7}));
    assert_eq!(
        env_sensor::Calibrated::from_payload(&out).unwrap(),
        env_sensor::Calibrated {
            offset: 20,
            calibrated_at: Date::from_millis(7)
        }
    );
    let err = env_sensor::EnvSensorService::decode("calibrate", &map(json!({"reference": 100})))
        .unwrap_err();
    let generated_err =
        gen_sensor::EnvSensorService::decode("calibrate", &map(json!({"reference": 100})))
            .unwrap_err();
    assert_eq!(err.to_string(), generated_err.to_string());
}

#[test]
fn env_sensor_hex_derived_frames_match_generated() {
    let derived = env_sensor_hex::EnvSensorHex {
        temperature: -12,
        humidity: 55,
        pm25: 35,
        co2: 1200,
        air_quality: env_sensor::AirQuality::Good,
        report_interval: 60,
        mode: env_sensor::SensorMode::Boost,
    };
    let generated = gen_sensor_hex::EnvSensorHex {
        temperature: -12,
        humidity: 55,
        pm25: 35,
        co2: 1200,
        air_quality: gen_sensor_hex::AirQuality::Good,
        report_interval: 60,
        mode: gen_sensor_hex::Mode::Boost,
    };
    let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
    let n = env_sensor_hex::EnvSensorHex::encode_report(&derived.report(), &mut a).unwrap();
    let m = gen_sensor_hex::EnvSensorHex::encode_report(&generated.report(), &mut b).unwrap();
    assert_eq!(a[..n], b[..m]);
    // Positional, big-endian, in the file's order although the struct's differs.
    assert_eq!(a[..n], [0x01, 0xf4, 55, 0, 35, 0x04, 0xb0, 1, 0, 60, 2]);
    let mut back = env_sensor_hex::EnvSensorHex::default();
    back.merge(&env_sensor_hex::EnvSensorHex::decode_report(&a[..n]).unwrap());
    assert_eq!(back, derived);

    // A property set frame from the generated encoder, decoded by the derive.
    let set = gen_sensor_hex::EnvSensorHexSet {
        report_interval: Some(300),
        mode: Some(gen_sensor_hex::Mode::Eco),
    };
    let n = gen_sensor_hex::EnvSensorHex::encode_set(&set, &mut a).unwrap();
    let decoded = env_sensor_hex::EnvSensorHex::decode_set_hex(&a[..n]).unwrap();
    assert_eq!(decoded.report_interval, Some(300));
    assert_eq!(decoded.mode, Some(env_sensor::SensorMode::Eco));

    let event = env_sensor_hex::SensorFault { code: 7 };
    let n = event.encode_hex(&mut a).unwrap();
    let m = gen_sensor_hex::SensorFaultEvent { code: 7 }
        .encode_hex(&mut b)
        .unwrap();
    assert_eq!(a[..n], b[..m]);
    assert_eq!(
        env_sensor_hex::SensorFault::decode_hex(&a[..n]).unwrap(),
        event
    );

    let call = gen_sensor_hex::EnvSensorHexService::Calibrate { reference: 600 };
    let n = call.encode_call_hex(&mut a).unwrap();
    let derived_call = env_sensor_hex::EnvSensorHexService::decode_call_hex(&a[..n]).unwrap();
    assert_eq!(
        derived_call,
        env_sensor_hex::EnvSensorHexService::Calibrate { reference: 600 }
    );
    let reply = derived_call
        .dispatch_hex(&mut env_sensor_hex::EnvSensorHexDevice, &mut b)
        .unwrap();
    let (id, outputs) =
        gen_sensor_hex::EnvSensorHexService::decode_reply_hex(&b[..reply.len]).unwrap();
    assert_eq!(id, "calibrate");
    assert_eq!(outputs.map(Value::Object), Some(json!({"offset": -180})));
}

#[test]
fn meter_hex_derived_frames_match_generated() {
    let derived = meter_hex::Meter {
        voltage: 229.8,
        current: 12.34,
        active_power: 2.835,
        energy_total: 10234.56,
        frequency: 49.98,
        relay: true,
        tariff: meter_hex::Tariff::Valley,
        meter_no: "MTR-0042".into(),
        report_period: 900,
    };
    let generated = gen_meter::MeterHex {
        voltage: 229.8,
        current: 12.34,
        active_power: 2.835,
        energy_total: 10234.56,
        frequency: 49.98,
        relay: true,
        tariff: gen_meter::Tariff::Valley,
        meter_no: "MTR-0042".into(),
        report_period: 900,
    };
    let (mut a, mut b) = ([0u8; 128], [0u8; 128]);
    let n = meter_hex::Meter::encode_report(&derived.report(), &mut a).unwrap();
    let m = gen_meter::MeterHex::encode_report(&generated.report(), &mut b).unwrap();
    assert_eq!(a[..n], b[..m]);
    // Little-endian: 229.8 V is 2298 = 0x08fa on u16, low byte first.
    assert_eq!(a[..3], [0x01, 0xfa, 0x08]);
    let mut back = meter_hex::Meter::default();
    back.merge(&meter_hex::Meter::decode_report(&a[..n]).unwrap());
    assert_eq!(back.meter_no, "MTR-0042");
    assert_eq!(back.tariff, meter_hex::Tariff::Valley);
    assert_eq!(back.report_period, 900);

    let tamper = meter_hex::Tamper {
        kind: meter_hex::TamperKind::Magnet,
        at: Date::from_millis(1_700_000_000_000),
    };
    let n = tamper.encode_hex(&mut a).unwrap();
    let m = gen_meter::TamperEvent {
        kind: gen_meter::TamperKind::Key1,
        at: Date::from_millis(1_700_000_000_000),
    }
    .encode_hex(&mut b)
    .unwrap();
    assert_eq!(a[..n], b[..m]);
    assert_eq!(meter_hex::Tamper::decode_hex(&a[..n]).unwrap(), tamper);
    assert_eq!(tamper.to_payload()["kind"], json!(1), "the key of 强磁干扰");

    let overload = meter_hex::Overload {
        power: 31.5,
        limit: 30.0,
    };
    let m = gen_meter::OverloadEvent {
        power: 31.5,
        limit: 30.0,
    };
    // 31.5 kW is outside the model's 0 ..= 30 but fits the u16: both write the same frame.
    assert_eq!(
        overload.encode_hex(&mut a).map(|n| a[..n].to_vec()),
        m.encode_hex(&mut b).map(|n| b[..n].to_vec())
    );
    let overload = meter_hex::Overload {
        power: 29.5,
        limit: 30.0,
    };
    let n = overload.encode_hex(&mut a).unwrap();
    let m = gen_meter::OverloadEvent {
        power: 29.5,
        limit: 30.0,
    }
    .encode_hex(&mut b)
    .unwrap();
    assert_eq!(a[..n], b[..m]);
    assert_eq!(a[1], 2, "overload is event id 2");
    // Through ThingEvent as the runtime's event() sees it, derived and generated alike: the
    // same HEX frame; an event of a JSON model has none.
    let n = ThingEvent::encode_hex_event(&overload, &mut a)
        .unwrap()
        .unwrap();
    let m = ThingEvent::encode_hex_event(
        &gen_meter::OverloadEvent {
            power: 29.5,
            limit: 30.0,
        },
        &mut b,
    )
    .unwrap()
    .unwrap();
    assert_eq!(a[..n], b[..m]);
    let json_event = env_sensor::SensorFault {
        code: 7,
        detail: "probe".into(),
    };
    assert!(ThingEvent::encode_hex_event(&json_event, &mut a).is_none());

    // Services with declared ids 16 and 17.
    for call in [
        gen_meter::MeterHexService::RelayControl { on: true },
        gen_meter::MeterHexService::ReadRegister { address: 0x1234 },
    ] {
        let n = call.encode_call_hex(&mut a).unwrap();
        let derived_call = meter_hex::MeterService::decode_call_hex(&a[..n]).unwrap();
        let mut device = meter_hex::MeterDevice::default();
        let reply = derived_call
            .clone()
            .dispatch_hex(&mut device, &mut b)
            .unwrap();
        let (id, outputs) = gen_meter::MeterHexService::decode_reply_hex(&b[..reply.len]).unwrap();
        match derived_call {
            meter_hex::MeterService::RelayControl { on } => {
                assert!(on && device.relay);
                assert_eq!(id, "relayControl");
                assert_eq!(outputs.map(Value::Object), Some(json!({"state": 1})));
            }
            meter_hex::MeterService::ReadRegister { address } => {
                assert_eq!(address, 0x1234);
                assert_eq!(id, "readRegister");
                assert_eq!(outputs.map(Value::Object), Some(json!({"value": 0x2468})));
            }
        }
    }
    assert_eq!(
        meter_hex::MeterService::SERVICES,
        gen_meter::MeterHexService::SERVICES
    );
}
