//! The bindings and derives of this crate at work: reports encoded (JSON and HEX), property
//! sets, events and service calls decoded, derived and generated code agreeing.

use serde_json::{json, Map, Value};
use x_sdk::model::hex::{HexEvent, HexModel, HexServices};
use x_sdk::model::{
    Date, FromPayload, PropertyValue, ThingEvent, ThingModel, ThingServices, ToPayload,
};

use crate::derived::{
    Action, Excursion, Heater, Limits, Mode, Overheat, Plug, PlugDevice, PlugReport, PlugService,
    Point, Position, Probe, RoutePoint, Scope, Tracker, TrackerDevice, TrackerService, Window,
};
use crate::generated::{cold_chain_tracker as tracker, smart_plug as plug};

fn params(v: Value) -> Vec<PropertyValue> {
    serde_json::from_value(v).expect("property set params")
}

fn map(v: Value) -> Map<String, Value> {
    serde_json::from_value(v).expect("a JSON object")
}

#[test]
fn generated_plug_reports_and_takes_property_sets() {
    let state = plug::SmartPlug {
        switch: true,
        power: 23.7,
        countdown: 60,
        ..plug::SmartPlug::default()
    };
    let payload = state.report().to_payload();
    assert_eq!(payload["switch"], json!(1));
    assert_eq!(payload["countdown"], json!(60));
    let back = plug::SmartPlugReport::from_payload(&payload).unwrap();
    assert_eq!(back.power, Some(23.7));

    let set = plug::SmartPlug::decode_set(&params(json!([
        {"identify":"countdown","value":"100"},
        {"identify":"childLock","value":1}
    ])))
    .unwrap();
    assert_eq!(set.countdown, Some(100));
    assert_eq!(set.child_lock, Some(true));
    let err =
        plug::SmartPlug::decode_set(&params(json!([{"identify":"power","value":1}]))).unwrap_err();
    assert_eq!(err.to_string(), "power: read-only property");
}

#[test]
fn generated_struct_parameters_decode() {
    let call = tracker::ColdChainTrackerService::decode(
        "setThresholds",
        &map(json!({"limits":{"low":-25,"high":"-15"}})),
    )
    .unwrap();
    let tracker::ColdChainTrackerService::SetThresholds { limits } = call;
    assert_eq!((limits.low, limits.high), (-25.0, -15.0));
    let err = tracker::ColdChainTrackerService::decode(
        "setThresholds",
        &map(json!({"limits":{"low":-25}})),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "limits: missing field \"high\"");
}

#[test]
fn derived_plug_matches_generated() {
    let derived = Plug {
        switch: true,
        power: 23.7,
        countdown: 30,
        ..Plug::default()
    };
    let generated = plug::SmartPlug {
        switch: true,
        power: 23.7,
        countdown: 30,
        ..plug::SmartPlug::default()
    };
    assert_eq!(
        derived.report().to_payload(),
        generated.report().to_payload()
    );
    let set = json!([{"identify":"countdown","value":"1.5"}]);
    assert_eq!(
        Plug::decode_set(&params(set.clone()))
            .unwrap_err()
            .to_string(),
        plug::SmartPlug::decode_set(&params(set))
            .unwrap_err()
            .to_string()
    );
    let set = Plug::decode_set(&params(json!([{"identify":"switch","value":"true"}]))).unwrap();
    assert_eq!(set.switch, Some(true));
    let err = PlugReport::from_payload(&map(json!({"power": 0.25}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "power: 0.25 is not a multiple of the step 0.1 from 0"
    );

    let event = Overheat {
        temperature: 88.5,
        action: Action::PowerCut,
    };
    assert_eq!(Overheat::IDENTIFIER, "overheat");
    let payload = event.to_payload();
    assert_eq!(
        Value::Object(payload.clone()),
        json!({"temperature":88.5,"action":1})
    );
    assert_eq!(Overheat::from_payload(&payload).unwrap(), event);

    let call = PlugService::decode("reset", &map(json!({"scope":"0"}))).unwrap();
    assert_eq!(
        call,
        PlugService::Reset {
            scope: Scope::Energy
        }
    );
    assert_eq!(
        Value::Object(call.dispatch(&mut PlugDevice).unwrap()),
        json!({"result":1,"resetAt":42})
    );
    let err = PlugService::decode("setSchedule", &map(json!({"onAt":1}))).unwrap_err();
    assert_eq!(err.to_string(), "offAt: missing; repeat: missing");
}

fn tracker_pair() -> (Tracker, tracker::ColdChainTracker) {
    let derived = Tracker {
        position: Position {
            lat: 30.27,
            lng: 120.15,
            alt: 12.5,
        },
        probes: vec![4.5, -18.2],
        route: vec![RoutePoint {
            lat: 30.0,
            lng: 120.0,
            ts: Date::from_millis(1),
        }],
        door_open: true,
        setpoint: -18.5,
        shipment_id: "SF123".into(),
        alarm_levels: vec![10, 50, 90],
    };
    let generated = tracker::ColdChainTracker {
        position: tracker::Position {
            lat: 30.27,
            lng: 120.15,
            alt: 12.5,
        },
        probes: vec![4.5, -18.2],
        route: vec![tracker::RouteItem {
            lat: 30.0,
            lng: 120.0,
            ts: Date::from_millis(1),
        }],
        door_open: true,
        setpoint: -18.5,
        shipment_id: "SF123".into(),
        alarm_levels: vec![10, 50, 90],
    };
    (derived, generated)
}

#[test]
fn derived_struct_properties_match_generated_in_json() {
    let (derived, generated) = tracker_pair();
    let payload = derived.report().to_payload();
    assert_eq!(payload, generated.report().to_payload());
    assert_eq!(
        payload["position"],
        json!({"lat":30.27,"lng":120.15,"alt":12.5})
    );
    let mut back = Tracker::default();
    back.merge(&<Tracker as ThingModel>::Report::from_payload(&payload).unwrap());
    assert_eq!(back, derived);

    let set = Tracker::decode_set(&params(json!([
        {"identify":"setpoint","value":"-20"},
        {"identify":"alarmLevels","value":[5,"15",25]}
    ])))
    .unwrap();
    assert_eq!(set.setpoint, Some(-20.0));
    assert_eq!(set.alarm_levels, Some(vec![5, 15, 25]));
    let err =
        Tracker::decode_set(&params(json!([{"identify":"position","value":{}}]))).unwrap_err();
    assert_eq!(err.to_string(), "position: read-only property");
}

#[test]
fn derived_hex_encodes_like_generated() {
    let (derived, generated) = tracker_pair();
    let (mut a, mut b) = ([0u8; 256], [0u8; 256]);
    let n = Tracker::encode_report(&derived.report(), &mut a).unwrap();
    let m = tracker::ColdChainTracker::encode_report(&generated.report(), &mut b).unwrap();
    assert_eq!(a[..n], b[..m]);
    let mut back = Tracker::default();
    back.merge(&Tracker::decode_report(&a[..n]).unwrap());
    assert_eq!(back.position, derived.position);
    assert_eq!(back.shipment_id, derived.shipment_id);

    let event = Excursion {
        probe: 2,
        temperature: 9.5,
        window: Window {
            start: Date::from_millis(1_000),
            end: Date::from_millis(61_000),
        },
    };
    let generated_event = tracker::ExcursionEvent {
        probe: 2,
        temperature: 9.5,
        window: tracker::ExcursionWindow {
            start: Date::from_millis(1_000),
            end: Date::from_millis(61_000),
        },
    };
    assert_eq!(event.to_payload(), generated_event.to_payload());
    let n = event.encode_hex(&mut a).unwrap();
    let m = generated_event.encode_hex(&mut b).unwrap();
    assert_eq!(a[..n], b[..m]);
    assert_eq!(Excursion::decode_hex(&a[..n]).unwrap(), event);

    let call = TrackerService::decode(
        "setThresholds",
        &map(json!({"limits":{"low":-25,"high":"-15"}})),
    )
    .unwrap();
    assert_eq!(
        call,
        TrackerService::SetThresholds {
            limits: Limits {
                low: -25.0,
                high: -15.0
            }
        }
    );
    let n = generated_call_hex(&mut a);
    assert_eq!(TrackerService::decode_call_hex(&a[..n]).unwrap(), call);
    let reply = call.dispatch_hex(&mut TrackerDevice, &mut a).unwrap();
    assert!(reply.len > 0);
}

/// The HEX frame of a `setThresholds` call with limits -25 ..= -15, built from the generated
/// bindings' own encoder.
fn generated_call_hex(out: &mut [u8]) -> usize {
    let call = tracker::ColdChainTrackerService::SetThresholds {
        limits: tracker::SetThresholdsLimits {
            low: -25.0,
            high: -15.0,
        },
    };
    call.encode_call_hex(out).unwrap()
}

#[test]
fn attribute_only_models() {
    let set = Heater::decode_set(&params(json!([
        {"identify":"target","value":"21.5"},
        {"identify":"workMode","value":5}
    ])))
    .unwrap();
    assert_eq!(set.target, Some(21.5));
    assert_eq!(set.mode, Some(Mode::Boost));
    let heater = Heater {
        track: vec![Point { lat: 1.5, lng: 2.5 }],
        r#type: "panel".into(),
        ..Heater::default()
    };
    let payload = heater.report().to_payload();
    assert_eq!(payload["track"], json!([{"lat":1.5,"lng":2.5}]));
    assert_eq!(payload["type"], json!("panel"));

    let probe = Probe {
        temperature: -12.5,
        label: "ab".into(),
        counter: 7,
    };
    let mut buf = [0u8; 16];
    let n = Probe::encode_report(&probe.report(), &mut buf).unwrap();
    assert_eq!(buf[..n], [0x01, 0x83, 0xff, b'a', b'b', 0, 0, 7]);
    assert_eq!(
        Probe::decode_set_hex(&[0x81, 9, 200]).unwrap().counter,
        Some(200)
    );
}
