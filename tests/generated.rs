//! The bindings generated from every model in models/ (golden files in tests/golden): they
//! compile, they are exactly what the generator produces today, and they move values between
//! JSON payloads and typed Rust with the coercions and rejections of the thing-model rules.
#![allow(clippy::unwrap_used)]

/// Generated from models/cold-chain-tracker.json.
#[rustfmt::skip]
#[path = "golden/cold_chain_tracker.rs"]
pub mod cold_chain_tracker;
/// Generated from models/env-sensor.json.
#[rustfmt::skip]
#[path = "golden/env_sensor.rs"]
pub mod env_sensor;
/// Generated from models/meter-hex.json.
#[rustfmt::skip]
#[path = "golden/meter_hex.rs"]
pub mod meter_hex;
/// Generated from models/smart-plug.json.
#[rustfmt::skip]
#[path = "golden/smart_plug.rs"]
pub mod smart_plug;

use serde_json::{Value, json};
use x_sdk::model::{
    Date, FromPayload, PropertyValue, ServiceFailure, ThingEvent, ThingModel, ThingServices,
    ToPayload, event_history, history_entry,
};

fn map(v: Value) -> serde_json::Map<String, Value> {
    match v {
        Value::Object(m) => m,
        other => panic!("not an object: {other}"),
    }
}

fn set(params: Value) -> Vec<PropertyValue> {
    serde_json::from_value(params).unwrap()
}

/// Every golden file equals what the generator writes for its model now.
#[test]
fn golden_files_are_current() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut checked = 0;
    for entry in std::fs::read_dir(root.join("models")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let rel = path.strip_prefix(root).unwrap();
        let generated =
            x_codegen::generate_file(rel, None, &x_codegen::rust::Options::default()).unwrap();
        let stem = path
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .replace('-', "_");
        let golden_path = root.join("tests/golden").join(format!("{stem}.rs"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&golden_path, &generated).unwrap();
        }
        let golden = std::fs::read_to_string(&golden_path).unwrap_or_default();
        assert!(
            golden == generated,
            "{} is stale: regenerate with UPDATE_GOLDEN=1 cargo test --test generated",
            golden_path.display()
        );
        checked += 1;
    }
    let models = std::fs::read_dir(root.join("models"))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
        .count();
    assert!(
        checked >= 5 && checked == models,
        "one golden file per model"
    );

    // The benchmark's model (benches/hex_report.rs) is generated code too.
    let bench = x_codegen::generate_file(
        std::path::Path::new("benches/models/hex-bench-20.json"),
        Some("Bench"),
        &x_codegen::rust::Options::default(),
    )
    .unwrap();
    let bench_path = root.join("benches/support/hex_bench_model.rs");
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&bench_path, &bench).unwrap();
    }
    assert!(
        std::fs::read_to_string(&bench_path).unwrap_or_default() == bench,
        "{} is stale: regenerate with UPDATE_GOLDEN=1 cargo test --test generated",
        bench_path.display()
    );
}

mod plug {
    use super::smart_plug::*;
    use super::*;

    #[test]
    fn report_round_trip() {
        let state = SmartPlug {
            switch: true,
            power: 23.7,
            voltage: 220.1,
            current: 0.11,
            energy: 1234.567,
            child_lock: false,
            countdown: 60,
        };
        let payload = state.report().to_payload();
        assert_eq!(
            Value::Object(payload.clone()),
            json!({"switch":1,"power":23.7,"voltage":220.1,"current":0.11,"energy":1234.567,"childLock":0,"countdown":60})
        );
        let back = SmartPlugReport::from_payload(&payload).unwrap();
        let mut copy = SmartPlug::default();
        copy.merge(&back);
        assert_eq!(copy, state);
    }

    #[test]
    fn partial_report_sends_only_set_fields() {
        let report = SmartPlugReport::default()
            .with_power(12.5)
            .with_switch(false);
        assert_eq!(
            Value::Object(report.to_payload()),
            json!({"switch":0,"power":12.5})
        );
    }

    #[test]
    fn property_set_coerces_and_applies() {
        let s = SmartPlug::decode_set(&set(json!([
            {"identify":"countdown","value":"100"},
            {"identify":"switch","value":"true"},
            {"identify":"childLock","value":1}
        ])))
        .unwrap();
        assert_eq!(s.countdown, Some(100));
        assert_eq!(s.switch, Some(true));
        assert_eq!(s.child_lock, Some(true));
        let mut state = SmartPlug::default();
        state.apply(&s);
        assert_eq!(state.countdown, 100);
        assert!(state.switch && state.child_lock);
        // The ack's Data: the applied values, in wire form.
        assert_eq!(
            Value::Object(s.to_payload()),
            json!({"switch":1,"childLock":1,"countdown":100})
        );
    }

    #[test]
    fn property_set_rejections_name_identifier_and_reason() {
        let cases = [
            (
                json!([{"identify":"countdown","value":"1.5"}]),
                "countdown: expected a 32-bit integer, got \"1.5\"",
            ),
            (
                json!([{"identify":"countdown","value":90000}]),
                "countdown: 90000 is above the maximum 86400",
            ),
            (
                json!([{"identify":"countdown","value":-1}]),
                "countdown: -1 is below the minimum 0",
            ),
            (
                json!([{"identify":"switch","value":2}]),
                "switch: expected 0 or 1, got 2",
            ),
            (
                json!([{"identify":"power","value":10}]),
                "power: read-only property",
            ),
            (
                json!([{"identify":"colour","value":1}]),
                "colour: unknown property",
            ),
            (
                json!([{"identify":"switch","value":1},{"identify":"switch","value":0}]),
                "switch: given more than once",
            ),
        ];
        for (params, expected) in cases {
            let err = SmartPlug::decode_set(&set(params.clone())).unwrap_err();
            assert_eq!(err.to_string(), expected, "{params}");
        }
        // All or nothing, and every problem is reported.
        let err = SmartPlug::decode_set(&set(json!([
            {"identify":"switch","value":1},
            {"identify":"power","value":1},
            {"identify":"countdown","value":"x"}
        ])))
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "power: read-only property; countdown: expected a 32-bit integer, got \"x\""
        );
    }

    #[test]
    fn property_ask_answers_from_state() {
        let state = SmartPlug {
            power: 5.5,
            switch: true,
            ..SmartPlug::default()
        };
        let answer = state
            .ask(&["power".to_owned(), "switch".to_owned()])
            .unwrap();
        assert_eq!(Value::Object(answer), json!({"power":5.5,"switch":1}));
        assert_eq!(
            state.ask(&["temp".to_owned()]).unwrap_err().to_string(),
            "temp: unknown property"
        );
    }

    #[test]
    fn events_encode_with_identifier_and_decode() {
        let e = OverheatEvent {
            temperature: 95.3,
            action: OverheatAction::PowerCut,
        };
        assert_eq!(OverheatEvent::IDENTIFIER, "overheat");
        assert_eq!(OverheatEvent::KIND, x_sdk::model::EventKind::Alert);
        let payload = e.to_payload();
        assert_eq!(
            Value::Object(payload.clone()),
            json!({"temperature":95.3,"action":1})
        );
        assert_eq!(OverheatEvent::from_payload(&payload).unwrap(), e);
        let err =
            OverheatEvent::from_payload(&map(json!({"temperature":95.3,"action":7}))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "action: unknown enum key 7 (allowed: 0=none, 1=powerCut)"
        );
        let err = OverheatEvent::from_payload(&map(json!({"temperature":95.3}))).unwrap_err();
        assert_eq!(err.to_string(), "action: missing");
    }

    struct Plug {
        resets: u32,
    }

    impl SmartPlugServiceHandler for Plug {
        fn reset(&mut self, scope: ResetScope) -> Result<ResetOutput, ServiceFailure> {
            if scope == ResetScope::Key1 {
                return Err("factory reset needs the button held".into());
            }
            self.resets += 1;
            Ok(ResetOutput {
                result: true,
                reset_at: Date::from_millis(1_700_000_000_000),
            })
        }

        fn set_schedule(
            &mut self,
            on_at: Date,
            off_at: Date,
            _repeat: bool,
        ) -> Result<(), ServiceFailure> {
            if off_at <= on_at {
                return Err("offAt must be after onAt".into());
            }
            Ok(())
        }
    }

    #[test]
    fn service_calls_decode_and_dispatch() {
        let call = SmartPlugService::decode("reset", &map(json!({"scope":"0"}))).unwrap();
        assert_eq!(
            call,
            SmartPlugService::Reset {
                scope: ResetScope::Key0
            }
        );
        assert_eq!(call.identifier(), "reset");
        assert_eq!(Value::Object(call.to_params()), json!({"scope":0}));
        let mut plug = Plug { resets: 0 };
        let data = call.dispatch(&mut plug).unwrap();
        assert_eq!(
            Value::Object(data),
            json!({"result":1,"resetAt":1_700_000_000_000i64})
        );
        assert_eq!(plug.resets, 1);

        let failed = SmartPlugService::Reset {
            scope: ResetScope::Key1,
        }
        .dispatch(&mut plug);
        assert_eq!(
            failed.unwrap_err().to_string(),
            "factory reset needs the button held"
        );

        let call = SmartPlugService::decode(
            "setSchedule",
            &map(json!({"onAt":"1700000000000","offAt":1700003600000i64,"repeat":true})),
        )
        .unwrap();
        assert_eq!(call.dispatch(&mut plug).unwrap(), serde_json::Map::new());

        for (id, params, expected) in [
            (
                "reset",
                json!({"scope":5}),
                "scope: unknown enum key 5 (allowed: 0=电量清零, 1=恢复出厂设置)",
            ),
            ("reset", json!({}), "scope: missing"),
            (
                "reset",
                json!({"scope":0,"force":true}),
                "force: unknown parameter",
            ),
            ("reboot", json!({}), "reboot: unknown service"),
            (
                "setSchedule",
                json!({"onAt":1.5,"offAt":1,"repeat":0}),
                "onAt: expected a date in integer milliseconds, got 1.5",
            ),
        ] {
            let err = SmartPlugService::decode(id, &map(params)).unwrap_err();
            assert_eq!(err.to_string(), expected, "{id}");
        }
    }

    #[test]
    fn history_entries_carry_ms_timestamps() {
        let t = Date::from_millis(1_524_448_722_000);
        let report = SmartPlugReport::default().with_power(3.5);
        assert_eq!(
            Value::Object(history_entry(&report, t)),
            json!({"power":{"value":3.5,"time":1_524_448_722_000i64}})
        );
        let e = OverheatEvent {
            temperature: 90.0,
            action: OverheatAction::None,
        };
        assert_eq!(
            Value::Object(event_history(&e, t)),
            json!({"overheat":{"value":{"temperature":90.0,"action":0},"time":1_524_448_722_000i64}})
        );
    }

    #[test]
    fn descriptors_list_every_property() {
        let ids: Vec<&str> = SmartPlug::PROPERTIES.iter().map(|p| p.identifier).collect();
        assert_eq!(
            ids,
            [
                "switch",
                "power",
                "voltage",
                "current",
                "energy",
                "childLock",
                "countdown"
            ]
        );
        assert_eq!(SmartPlugService::SERVICES.len(), 2);
    }
}

mod sensor {
    use super::env_sensor::*;
    use super::*;

    #[test]
    fn report_round_trip_with_enum_text_and_date() {
        let state = EnvSensor {
            temperature: -12,
            humidity: 45,
            pm25: 35,
            co2: 800,
            air_quality: AirQuality::Good,
            report_interval: 60,
            location: "3F 会议室 A".into(),
            last_calibration: Date::from_millis(1_700_000_000_000),
            mode: Mode::Eco,
        };
        let payload = state.report().to_payload();
        assert_eq!(payload["airQuality"], json!(1));
        assert_eq!(payload["lastCalibration"], json!(1_700_000_000_000i64));
        assert_eq!(payload["location"], json!("3F 会议室 A"));
        let mut back = EnvSensor::default();
        back.merge(&EnvSensorReport::from_payload(&payload).unwrap());
        assert_eq!(back, state);
    }

    #[test]
    fn set_checks_step_from_min_enum_and_text_length() {
        let ok = EnvSensor::decode_set(&set(json!([
            {"identify":"reportInterval","value":"3600"},
            {"identify":"mode","value":"2"},
            {"identify":"location","value":"lab"}
        ])))
        .unwrap();
        assert_eq!(ok.report_interval, Some(3600));
        assert_eq!(ok.mode, Some(Mode::Boost));
        for (params, expected) in [
            (
                json!([{"identify":"reportInterval","value":15}]),
                "reportInterval: 15 is not a multiple of the step 10 from 10",
            ),
            (
                json!([{"identify":"mode","value":3}]),
                "mode: unknown enum key 3 (allowed: 0=normal, 1=eco, 2=boost)",
            ),
            (
                json!([{"identify":"location","value":"x".repeat(65)}]),
                "location: text of 65 bytes is longer than the maximum 64",
            ),
            (
                json!([{"identify":"location","value":5}]),
                "location: expected a string, got 5",
            ),
            (
                json!([{"identify":"temperature","value":20}]),
                "temperature: read-only property",
            ),
        ] {
            let err = EnvSensor::decode_set(&set(params.clone())).unwrap_err();
            assert_eq!(err.to_string(), expected, "{params}");
        }
    }

    #[test]
    fn calibrate_service() {
        let call =
            EnvSensorService::decode("calibrate", &map(json!({"reference":"1000"}))).unwrap();
        assert_eq!(call, EnvSensorService::Calibrate { reference: 1000 });
        let err =
            EnvSensorService::decode("calibrate", &map(json!({"reference":399}))).unwrap_err();
        assert_eq!(err.to_string(), "reference: 399 is below the minimum 400");
    }
}

mod tracker {
    use super::cold_chain_tracker::*;
    use super::*;

    #[test]
    fn structs_and_arrays_round_trip() {
        let state = ColdChainTracker {
            position: Position {
                lat: 30.27,
                lng: 120.15,
                alt: 12.5,
            },
            probes: vec![4.5, -18.2],
            route: vec![RouteItem {
                lat: 30.0,
                lng: 120.0,
                ts: Date::from_millis(1),
            }],
            door_open: true,
            setpoint: -18.5,
            shipment_id: "SF123".into(),
            alarm_levels: vec![10, 50, 90],
        };
        let payload = state.report().to_payload();
        assert_eq!(
            Value::Object(payload.clone()),
            json!({
                "position":{"lat":30.27,"lng":120.15,"alt":12.5},
                "probes":[4.5,-18.2],
                "route":[{"lat":30.0,"lng":120.0,"ts":1}],
                "doorOpen":1,
                "setpoint":-18.5,
                "shipmentId":"SF123",
                "alarmLevels":[10,50,90]
            })
        );
        let mut back = ColdChainTracker::default();
        back.merge(&ColdChainTrackerReport::from_payload(&payload).unwrap());
        assert_eq!(back, state);
    }

    #[test]
    fn nested_errors_name_the_element_and_field() {
        for (params, expected) in [
            (
                json!([{"identify":"alarmLevels","value":[1,2,3,4]}]),
                "alarmLevels: 4 elements, at most 3 allowed",
            ),
            (
                json!([{"identify":"alarmLevels","value":[1,"200"]}]),
                "alarmLevels: [1]: 200 is above the maximum 100",
            ),
            (
                json!([{"identify":"alarmLevels","value":"10,20"}]),
                "alarmLevels: expected a list, got \"10,20\"",
            ),
            (
                json!([{"identify":"setpoint","value":-18.3}]),
                "setpoint: -18.3 is not a multiple of the step 0.5 from -30",
            ),
        ] {
            let err = ColdChainTracker::decode_set(&set(params.clone())).unwrap_err();
            assert_eq!(err.to_string(), expected, "{params}");
        }
        let err = ColdChainTrackerReport::from_payload(&map(json!({
            "route":[{"lat":1,"lng":2,"ts":3},{"lat":1,"ts":3}]
        })))
        .unwrap_err();
        assert_eq!(err.to_string(), "route: [1]: missing field \"lng\"");
        let err = ColdChainTrackerReport::from_payload(&map(json!({
            "position":{"lat":1,"lng":2,"alt":3,"speed":4}
        })))
        .unwrap_err();
        assert_eq!(err.to_string(), "position: unknown field \"speed\"");
    }

    #[test]
    fn struct_service_input() {
        let call = ColdChainTrackerService::decode(
            "setThresholds",
            &map(json!({"limits":{"low":-25,"high":"-15"}})),
        )
        .unwrap();
        assert_eq!(
            call,
            ColdChainTrackerService::SetThresholds {
                limits: SetThresholdsLimits {
                    low: -25.0,
                    high: -15.0
                }
            }
        );
    }
}

mod meter {
    use super::meter_hex::*;
    use super::*;

    #[test]
    fn meter_bindings() {
        let s = MeterHex::decode_set(&set(json!([
            {"identify":"relay","value":0},
            {"identify":"tariff","value":"1"},
            {"identify":"reportPeriod","value":900}
        ])))
        .unwrap();
        assert_eq!(s.tariff, Some(Tariff::Peak));
        let call =
            MeterHexService::decode("readRegister", &map(json!({"address":"65535"}))).unwrap();
        assert_eq!(call, MeterHexService::ReadRegister { address: 65535 });
        let e = TamperEvent {
            kind: TamperKind::Key1,
            at: Date::from_millis(5),
        };
        assert_eq!(Value::Object(e.to_payload()), json!({"kind":1,"at":5}));
    }
}
