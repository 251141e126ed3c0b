//! The simulator's model checks give the same reasons as the generated bindings (see
//! tests/generated.rs in the root crate), so a device and the platform agree.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use x_sim::validate::{event_report, property_report};

fn model(file: &str) -> x_codegen::Model {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../models")
        .join(file);
    x_codegen::load(&std::fs::read_to_string(path).unwrap(), "M").unwrap()
}

#[test]
fn nested_values_and_the_same_messages() {
    let m = model("cold-chain-tracker.json");
    assert!(property_report(&m, &json!({"position":{"lat":30.27,"lng":120.15,"alt":12.5},"probes":[4.5,-18.2],"doorOpen":"1"})).is_ok());
    for (payload, reason) in [
        (
            json!({"route":[{"lat":1,"lng":2,"ts":3},{"lat":1,"ts":3}]}),
            "route: [1]: missing field \"lng\"",
        ),
        (
            json!({"position":{"lat":1,"lng":2,"alt":3,"speed":4}}),
            "position: unknown field \"speed\"",
        ),
        (
            json!({"alarmLevels":[1,"200"]}),
            "alarmLevels: [1]: 200 is above the maximum 100",
        ),
        (
            json!({"alarmLevels":[1,2,3,4]}),
            "alarmLevels: 4 elements, at most 3 allowed",
        ),
        (
            json!({"setpoint":-18.3}),
            "setpoint: -18.3 is not a multiple of the step 0.5 from -30",
        ),
        (
            json!({"shipmentId":7}),
            "shipmentId: expected a string, got 7",
        ),
        (json!([1]), "Payload: expected an object, got [1]"),
    ] {
        assert_eq!(
            property_report(&m, &payload).unwrap_err().to_string(),
            reason,
            "{payload}"
        );
    }
    let plug = model("smart-plug.json");
    assert_eq!(
        event_report(&plug, "overheat", &json!({"temperature":95.3,"action":7}))
            .unwrap_err()
            .to_string(),
        "action: unknown enum key 7 (allowed: 0=none, 1=powerCut)"
    );
    assert!(event_report(&plug, "powerOnline", &json!({"bootReason":"2","bootAt":1})).is_ok());
}

#[test]
fn history_uploads_are_checked_entry_by_entry() {
    let plug = model("smart-plug.json");
    let ok = json!({"params":[{"properties":[{"power":{"value":12.5,"time":1524448722000i64},"switch":{"value":1,"time":1524448722000i64}}],
        "events":[{"overheat":{"value":{"temperature":95.0,"action":1},"time":1524448722000i64}}]}]});
    assert!(x_sim::validate::history(&plug, &ok).is_ok());
    let bad = json!({"params":[
        {"properties":[{"power":{"value":99999,"time":1}},{"colour":{"value":1,"time":1}}]},
        {"properties":[{"switch":{"value":1}}],"events":[{"overheat":{"value":{"temperature":95.0},"time":1}}]}
    ]});
    assert_eq!(
        x_sim::validate::history(&plug, &bad)
            .unwrap_err()
            .to_string(),
        "params[0].properties.power: 99999 is above the maximum 3500; params[0].properties.colour: unknown property; \
         params[1].properties.switch: expected {value, time}, got missing field `time`; params[1].events.overheat.action: missing"
    );
}

#[test]
fn a_malformed_history_entry_does_not_hide_the_others_of_its_batch() {
    let plug = model("smart-plug.json");
    let upload = json!({"params":[
        {"properties":[{"switch":{"value":1}},{"power":{"value":99999,"time":1}}],
         "events":[{"overheat":{"value":{"temperature":95.0,"action":1}}}]},
        {"properties":[{"power":{"value":12.5,"time":2}}]}
    ]});
    let refused = x_sim::validate::history(&plug, &upload)
        .unwrap_err()
        .to_string();
    assert_eq!(
        refused,
        "params[0].properties.switch: expected {value, time}, got missing field `time`; \
         params[0].properties.power: 99999 is above the maximum 3500; \
         params[0].events.overheat: expected {value, time}, got missing field `time`"
    );
    // What the runtime reads from it: batch 0 only.
    let named = x_protocol::payload::refused_history_batches(&refused);
    assert_eq!(named.keys().copied().collect::<Vec<_>>(), [0]);
    assert_eq!(named[&0].len(), 3);
}
