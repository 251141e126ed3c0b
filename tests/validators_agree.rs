//! One verdict at run time: x-sim's model-driven checks (`x_sim::validate`, which reads the
//! model IR) and the generated decoders (`FromPayload` of each model's report, events and
//! service outputs, as a device or a platform-side decoder runs them) give the same verdict
//! and the same reasons on random payloads, valid and invalid, of every type and constraint
//! the models use, for every model in `models/`: property reports, events, service outputs
//! and history uploads (HeaderCtrl 27). Text values include non-ASCII characters, so that a
//! side counting a text's length in characters rather than bytes would disagree.
//!
//! Each generated module is the golden file of its model (`tests/golden/`, which
//! `tests/generated.rs` keeps equal to what x-codegen generates).
#![allow(clippy::unwrap_used)]

#[rustfmt::skip]
#[path = "golden/smart_plug.rs"]
#[allow(dead_code)]
mod smart_plug;

#[rustfmt::skip]
#[path = "golden/env_sensor.rs"]
#[allow(dead_code)]
mod env_sensor;

#[rustfmt::skip]
#[path = "golden/cold_chain_tracker.rs"]
#[allow(dead_code)]
mod cold_chain_tracker;

#[rustfmt::skip]
#[path = "golden/meter_hex.rs"]
#[allow(dead_code)]
mod meter_hex;

#[rustfmt::skip]
#[path = "golden/env_sensor_hex.rs"]
#[allow(dead_code)]
mod env_sensor_hex;

use std::cell::Cell;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value, json};
use x_codegen::ir::{DataType, Field, Model, Numeric};
use x_sdk::model::{FromPayload, Rejections};

/// A generated decoder of one payload.
type Decode = fn(&Map<String, Value>) -> Result<(), Rejections>;

fn decode<T: FromPayload>(payload: &Map<String, Value>) -> Result<(), Rejections> {
    T::from_payload(payload).map(drop)
}

/// A model and its generated decoders: the report, each event, each service with outputs.
struct Case {
    file: &'static str,
    report: Decode,
    events: &'static [(&'static str, Decode)],
    services: &'static [(&'static str, Decode)],
}

const CASES: &[Case] = &[
    Case {
        file: "smart-plug.json",
        report: decode::<smart_plug::SmartPlugReport>,
        events: &[
            ("overheat", decode::<smart_plug::OverheatEvent>),
            ("powerOnline", decode::<smart_plug::PowerOnlineEvent>),
        ],
        services: &[("reset", decode::<smart_plug::ResetOutput>)],
    },
    Case {
        file: "env-sensor.json",
        report: decode::<env_sensor::EnvSensorReport>,
        events: &[
            ("threshold", decode::<env_sensor::ThresholdEvent>),
            ("sensorFault", decode::<env_sensor::SensorFaultEvent>),
        ],
        services: &[("calibrate", decode::<env_sensor::CalibrateOutput>)],
    },
    Case {
        file: "cold-chain-tracker.json",
        report: decode::<cold_chain_tracker::ColdChainTrackerReport>,
        events: &[("excursion", decode::<cold_chain_tracker::ExcursionEvent>)],
        services: &[(
            "setThresholds",
            decode::<cold_chain_tracker::SetThresholdsOutput>,
        )],
    },
    Case {
        file: "meter-hex.json",
        report: decode::<meter_hex::MeterHexReport>,
        events: &[
            ("tamper", decode::<meter_hex::TamperEvent>),
            ("overload", decode::<meter_hex::OverloadEvent>),
        ],
        services: &[
            ("relayControl", decode::<meter_hex::RelayControlOutput>),
            ("readRegister", decode::<meter_hex::ReadRegisterOutput>),
        ],
    },
    Case {
        file: "env-sensor-hex.json",
        report: decode::<env_sensor_hex::EnvSensorHexReport>,
        events: &[("sensorFault", decode::<env_sensor_hex::SensorFaultEvent>)],
        services: &[("calibrate", decode::<env_sensor_hex::CalibrateOutput>)],
    },
];

fn load(file: &str) -> Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    x_codegen::load(&text, &x_codegen::model_name_for(&path)).unwrap()
}

/// The verdict in a comparable form: `None` for accepted, else every reason as the device
/// would read it in a 4001, sorted (each side lists them in its own order).
fn verdict(result: Result<(), Rejections>) -> Option<Vec<String>> {
    result.err().map(|r| {
        let mut reasons: Vec<String> = r.0.iter().map(ToString::to_string).collect();
        reasons.sort();
        reasons
    })
}

#[test]
fn every_model_in_models_has_a_case_with_every_event_and_service() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    let mut files: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".json"))
        .collect();
    files.sort();
    let mut covered: Vec<String> = CASES.iter().map(|c| c.file.to_owned()).collect();
    covered.sort();
    assert_eq!(files, covered, "a model in models/ without a case here");
    for case in CASES {
        let model = load(case.file);
        let events: Vec<&str> = model.events.iter().map(|e| e.identifier.as_str()).collect();
        let cased: Vec<&str> = case.events.iter().map(|(id, _)| *id).collect();
        assert_eq!(events, cased, "{}: events", case.file);
        let services: Vec<&str> = model
            .services
            .iter()
            .filter(|s| !s.outputs.is_empty())
            .map(|s| s.identifier.as_str())
            .collect();
        let cased: Vec<&str> = case.services.iter().map(|(id, _)| *id).collect();
        assert_eq!(services, cased, "{}: services with outputs", case.file);
    }
}

/// A number of a numeric type: a multiple of its step from its minimum when it has one.
fn number(n: &Numeric, int: bool) -> BoxedStrategy<f64> {
    let (lo, hi) = (
        n.min.unwrap_or(if int { -100_000.0 } else { -1e6 }),
        n.max.unwrap_or(if int { 100_000.0 } else { 1e6 }),
    );
    match n.step {
        Some(step) if step > 0.0 => {
            let steps = ((hi - lo) / step).floor().min(1e6) as i64;
            (0..=steps.max(0))
                .prop_map(move |k| {
                    let v = lo + k as f64 * step;
                    // The decimal a device would send (0.1 steps as 12.3, not 12.300000000001).
                    (v * 1e6).round() / 1e6
                })
                .boxed()
        }
        _ if int => ((lo as i64)..=(hi as i64)).prop_map(|v| v as f64).boxed(),
        _ => (lo..=hi).boxed(),
    }
}

/// A value of `ty` the model accepts.
fn valid(ty: &DataType) -> BoxedStrategy<Value> {
    match ty {
        DataType::Int(n) => number(n, true).prop_map(|v| json!(v as i64)).boxed(),
        DataType::Float(n) | DataType::Double(n) => number(n, false).prop_map(|v| json!(v)).boxed(),
        DataType::Bool(_) => prop_oneof![Just(json!(0)), Just(json!(1))].boxed(),
        DataType::Enum(e) => {
            let keys: Vec<i64> = e.variants.iter().map(|v| v.key).collect();
            proptest::sample::select(keys)
                .prop_map(|k| json!(k))
                .boxed()
        }
        DataType::Text(len) => {
            // At most `max` bytes (the model's length is in bytes), of characters one to four
            // bytes long.
            let max = len.unwrap_or(64).min(64) as usize;
            proptest::collection::vec(text_char(), 0..=max)
                .prop_map(move |chars| {
                    let mut text = String::new();
                    for c in chars {
                        if text.len() + c.len_utf8() > max {
                            break;
                        }
                        text.push(c);
                    }
                    json!(text)
                })
                .boxed()
        }
        DataType::Date => (0i64..4_102_444_800_000).prop_map(|ms| json!(ms)).boxed(),
        DataType::Struct(s) => object(&s.fields, false).boxed(),
        DataType::Array { size, item } => {
            let max = size.unwrap_or(8).min(8) as usize;
            proptest::collection::vec(valid(item), 0..=max)
                .prop_map(Value::Array)
                .boxed()
        }
        DataType::External(_) => Just(Value::Null).boxed(),
    }
}

/// A value of `ty` that breaks one rule (the wrong JSON type, out of range, off its step, too
/// long, an unknown enum key, a struct with an unknown or a missing field, an invalid element),
/// or sits right at a boundary, where the two sides could round differently.
fn invalid(ty: &DataType) -> BoxedStrategy<Value> {
    let wrong_type = prop_oneof![
        Just(json!("text")),
        Just(json!({"a": 1})),
        Just(json!([1, 2])),
        Just(Value::Null),
        Just(json!(true)),
        Just(json!(1.5)),
        Just(json!(-7)),
    ];
    match ty {
        DataType::Int(n) | DataType::Float(n) | DataType::Double(n) => {
            let mut broken: Vec<Value> = Vec::new();
            if let Some(max) = n.max {
                broken.push(json!(max + n.step.unwrap_or(1.0)));
            }
            if let Some(min) = n.min {
                broken.push(json!(min - n.step.unwrap_or(1.0)));
            }
            if let (Some(step), Some(min)) = (n.step, n.min) {
                broken.push(json!(min + step / 3.0));
            }
            if let Some(max) = n.max {
                // At and just past the boundary, where a tolerance or a rounding would show.
                broken.push(json!(max));
                broken.push(json!(max + 1e-9));
                broken.push(json!(max + 1e-3));
            }
            if let (Some(step), Some(min)) = (n.step, n.min) {
                broken.push(json!(min + step * 0.5));
                broken.push(json!(min + step * 0.999_999_9));
            }
            broken.push(json!(1e12));
            broken.push(json!(3.0));
            broken.push(json!(f64::from(f32::MAX) * 2.0));
            broken.push(json!("12"));
            prop_oneof![wrong_type, proptest::sample::select(broken)].boxed()
        }
        DataType::Enum(e) => {
            let unused = e.variants.iter().map(|v| v.key).max().unwrap_or(0) + 1;
            prop_oneof![wrong_type, Just(json!(unused)), Just(json!(-1))].boxed()
        }
        DataType::Text(len) => {
            let len = len.unwrap_or(64) as usize;
            let too_long = json!("x".repeat(len + 1));
            // No more characters than the length allows, but more bytes: a side counting
            // characters would accept it.
            let too_many_bytes = json!("é".repeat(len / 2 + 1));
            let at_the_limit = json!(format!("{}{}", "x".repeat(len % 2), "é".repeat(len / 2)));
            prop_oneof![
                Just(json!(12)),
                Just(json!({"a": 1})),
                Just(too_long),
                Just(too_many_bytes),
                Just(at_the_limit),
            ]
            .boxed()
        }
        DataType::Struct(s) => {
            let fields = s.fields.clone();
            prop_oneof![wrong_type, object(&fields, true)].boxed()
        }
        DataType::Array { size, item } => {
            let too_many = size.map(|s| {
                proptest::collection::vec(valid(item), (s as usize + 1)..=(s as usize + 2))
                    .prop_map(Value::Array)
                    .boxed()
            });
            let bad_item = invalid(item).prop_map(|v| Value::Array(vec![v])).boxed();
            match too_many {
                Some(many) => prop_oneof![wrong_type, many, bad_item].boxed(),
                None => prop_oneof![wrong_type, bad_item].boxed(),
            }
        }
        DataType::Bool(_) | DataType::Date => prop_oneof![
            Just(json!("text")),
            Just(json!({"a": 1})),
            Just(json!(2)),
            Just(json!(1.5)),
            Just(Value::Null),
        ]
        .boxed(),
        DataType::External(_) => Just(Value::Null).boxed(),
    }
}

/// A character of a text value: ASCII letters, and characters of two, three and four bytes
/// in UTF-8 (`é`, `°`, `温`, `中`, `🌡`).
fn text_char() -> BoxedStrategy<char> {
    prop_oneof![
        3 => proptest::char::range('a', 'z'),
        1 => proptest::sample::select(vec!['é', '°', '温', '中', '🌡']),
    ]
    .boxed()
}

/// Mostly a valid value, sometimes an invalid one.
fn value(ty: &DataType) -> BoxedStrategy<Value> {
    prop_oneof![3 => valid(ty), 1 => invalid(ty)].boxed()
}

/// An object of `fields`, each present; with `break_one`, a value invalid, an unknown key
/// added, or a field left out.
fn object(fields: &[Field], break_one: bool) -> BoxedStrategy<Value> {
    let values: Vec<BoxedStrategy<Value>> = fields
        .iter()
        .map(|f| {
            if break_one {
                value(&f.ty)
            } else {
                valid(&f.ty)
            }
        })
        .collect();
    let names: Vec<String> = fields.iter().map(|f| f.identifier.clone()).collect();
    let count = names.len();
    (values, 0..4usize, 0..count.max(1))
        .prop_map(move |(values, how, which)| {
            let mut map: Map<String, Value> = names.iter().cloned().zip(values).collect();
            if break_one {
                match how {
                    0 => {
                        map.insert("unknownField".into(), json!(1));
                    }
                    1 if count > 0 => {
                        map.remove(&names[which]);
                    }
                    _ => {}
                }
            }
            Value::Object(map)
        })
        .boxed()
}

/// A property report: some properties (mostly valid values), sometimes an unknown one.
fn report(model: &Model) -> BoxedStrategy<Map<String, Value>> {
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> = model
        .properties
        .iter()
        .map(|p| {
            let id = p.field.identifier.clone();
            proptest::option::of(value(&p.field.ty).prop_map(move |v| (id.clone(), v))).boxed()
        })
        .collect();
    (entries, proptest::bool::weighted(0.1))
        .prop_map(|(entries, unknown)| {
            let mut map: Map<String, Value> = entries.into_iter().flatten().collect();
            if unknown {
                map.insert("noSuchProperty".into(), json!(1));
            }
            map
        })
        .boxed()
}

/// The outputs of an event or service: each present (mostly valid), sometimes one missing
/// or one unknown.
fn outputs(fields: &[Field]) -> BoxedStrategy<Map<String, Value>> {
    prop_oneof![2 => object(fields, false), 3 => object(fields, true)]
        .prop_map(|v| match v {
            Value::Object(map) => map,
            _ => Map::new(),
        })
        .boxed()
}

/// Random payloads from `payloads` through x-sim's check `sim` and the generated decoder
/// `generated`: the same verdict and reasons every time, and both verdicts seen often enough
/// for the agreement to mean something.
fn agree(
    label: &str,
    payloads: BoxedStrategy<Map<String, Value>>,
    sim: impl Fn(&Value) -> Result<(), Rejections>,
    generated: impl Fn(&Map<String, Value>) -> Result<(), Rejections>,
) {
    let seen = [Cell::new(0usize), Cell::new(0usize)];
    let mut runner = TestRunner::new(Config {
        cases: 1000,
        failure_persistence: None,
        ..Config::default()
    });
    runner
        .run(&payloads, |payload| {
            let by_sim = verdict(sim(&Value::Object(payload.clone())));
            let by_generated = verdict(generated(&payload));
            let slot = &seen[usize::from(by_sim.is_some())];
            slot.set(slot.get() + 1);
            prop_assert_eq!(by_sim, by_generated, "{}: {:?}", label, payload);
            Ok(())
        })
        .unwrap();
    let seen = seen.map(Cell::into_inner);
    assert!(
        seen[0] > 20 && seen[1] > 20,
        "{label}: accepted/refused {seen:?}"
    );
}

#[test]
fn property_reports_get_the_same_verdict_from_x_sim_and_the_generated_decoder() {
    for case in CASES {
        let model = load(case.file);
        let sim = |p: &Value| x_sim::validate::property_report(&model, p);
        agree(case.file, report(&model), sim, case.report);
    }
}

#[test]
fn events_get_the_same_verdict_from_x_sim_and_the_generated_decoder() {
    for case in CASES {
        let model = load(case.file);
        for (id, decode) in case.events {
            let event = model.events.iter().find(|e| e.identifier == *id).unwrap();
            let sim = |p: &Value| x_sim::validate::event_report(&model, id, p);
            let label = format!("{} event {id}", case.file);
            agree(&label, outputs(&event.outputs), sim, *decode);
        }
    }
}

#[test]
fn service_outputs_get_the_same_verdict_from_x_sim_and_the_generated_decoder() {
    for case in CASES {
        let model = load(case.file);
        for (id, decode) in case.services {
            let service = model.services.iter().find(|s| s.identifier == *id).unwrap();
            let sim = |p: &Value| x_sim::validate::service_outputs(&model, id, p);
            let label = format!("{} service {id}", case.file);
            agree(&label, outputs(&service.outputs), sim, *decode);
        }
    }
}

/// A history upload (HeaderCtrl 27): one to three batches, each with property snapshots
/// (mostly valid values, sometimes an unknown property) and entries of the model's events
/// (outputs mostly valid, sometimes one missing, unknown or bad), each `{value, time}`.
fn history(model: &Model) -> BoxedStrategy<Map<String, Value>> {
    let time = 1_700_000_000_000i64..1_800_000_000_000;
    let property = report(model).prop_flat_map(move |snapshot| {
        proptest::collection::vec(time.clone(), snapshot.len()).prop_map(move |times| {
            let timed: Map<String, Value> = snapshot
                .iter()
                .zip(times)
                .map(|((id, v), t)| (id.clone(), json!({"value": v, "time": t})))
                .collect();
            timed
        })
    });
    let events: Vec<BoxedStrategy<Map<String, Value>>> = model
        .events
        .iter()
        .map(|e| {
            let id = e.identifier.clone();
            (outputs(&e.outputs), 1_700_000_000_000i64..1_800_000_000_000)
                .prop_map(move |(outs, t)| {
                    let mut entry = Map::new();
                    entry.insert(id.clone(), json!({"value": outs, "time": t}));
                    entry
                })
                .boxed()
        })
        .collect();
    let event = if events.is_empty() {
        Just(Map::new()).boxed()
    } else {
        proptest::strategy::Union::new(events).boxed()
    };
    let batch = (
        proptest::collection::vec(property, 0..=2),
        proptest::collection::vec(event, 0..=2),
    )
        .prop_map(|(properties, events)| {
            json!({
                "properties": properties.into_iter().filter(|m| !m.is_empty()).collect::<Vec<_>>(),
                "events": events.into_iter().filter(|m| !m.is_empty()).collect::<Vec<_>>(),
            })
        });
    proptest::collection::vec(batch, 1..=3)
        .prop_map(|batches| {
            let mut map = Map::new();
            map.insert("params".into(), Value::Array(batches));
            map
        })
        .boxed()
}

/// A history upload read with the generated decoders, as a platform-side decoder built on
/// the bindings would: the upload's shape through x-protocol's `HistoryUpload`, each
/// property snapshot through the report's `FromPayload` and each event entry through the
/// event's, every rejection named by batch and identifier as a 4001 names it.
fn history_by_generated(case: &Case, payload: &Map<String, Value>) -> Result<(), Rejections> {
    let upload: x_protocol::payload::HistoryUpload =
        serde_json::from_value(Value::Object(payload.clone())).unwrap();
    let mut rejections = Rejections::default();
    for (b, batch) in upload.params.iter().enumerate() {
        for (id, timed) in batch.property_entries().unwrap() {
            let mut one = Map::new();
            one.insert(id.to_owned(), timed.value.clone());
            if let Err(r) = (case.report)(&one) {
                for x in r.0 {
                    rejections.push(format!("params[{b}].properties.{}", x.identifier), x.reason);
                }
            }
        }
        for (id, timed) in batch.event_entries().unwrap() {
            let decode = case
                .events
                .iter()
                .find(|(e, _)| *e == id)
                .map(|(_, d)| *d)
                .unwrap();
            let Value::Object(outputs) = &timed.value else {
                panic!("the strategy makes event values objects")
            };
            if let Err(r) = decode(outputs) {
                for x in r.0 {
                    rejections.push(
                        format!("params[{b}].events.{id}.{}", x.identifier),
                        x.reason,
                    );
                }
            }
        }
    }
    rejections.into_result(|| ())
}

#[test]
fn history_uploads_get_the_same_verdict_from_x_sim_and_the_generated_decoders() {
    for case in CASES {
        let model = load(case.file);
        let sim = |p: &Value| x_sim::validate::history(&model, p);
        let generated = |p: &Map<String, Value>| history_by_generated(case, p);
        agree(
            &format!("{} history", case.file),
            history(&model),
            sim,
            generated,
        );
    }
}

#[test]
fn text_lengths_are_counted_in_bytes_on_both_sides() {
    // A text property of env-sensor with a length limit: the same rule on both sides.
    let model = load("env-sensor.json");
    assert_eq!(CASES[1].file, "env-sensor.json");
    let field = model
        .properties
        .iter()
        .find(|p| matches!(p.field.ty, DataType::Text(Some(_))))
        .map(|p| p.field.clone())
        .unwrap();
    let DataType::Text(Some(len)) = field.ty else {
        unreachable!()
    };
    let fits = json!("é".repeat(len as usize / 2));
    let too_many_bytes = json!("é".repeat(len as usize / 2 + 1));
    assert!(
        (len as usize / 2 + 1) <= len as usize,
        "fewer characters than the limit"
    );
    for (value, accepted) in [(fits, true), (too_many_bytes, false)] {
        let mut payload = Map::new();
        payload.insert(field.identifier.clone(), value.clone());
        let by_sim = x_sim::validate::property_report(&model, &Value::Object(payload.clone()));
        let by_generated = (CASES[1].report)(&payload);
        assert_eq!(by_sim.is_ok(), accepted, "x-sim on {value}");
        assert_eq!(by_generated.is_ok(), accepted, "generated on {value}");
    }
}
