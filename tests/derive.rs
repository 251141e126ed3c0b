//! Hand-written models through the derives behave exactly like generated ones: the same
//! model file, written as Rust with `#[thing(model = ..)]`, gives the same payloads, the
//! same coercions and the same rejections as the bindings x-codegen generates from it.
#![allow(clippy::unwrap_used)]

/// Generated from models/smart-plug.json, to compare against.
#[rustfmt::skip]
#[path = "golden/smart_plug.rs"]
pub mod generated;
/// Generated from models/meter-hex.json, to compare against.
#[rustfmt::skip]
#[path = "golden/meter_hex.rs"]
pub mod generated_meter;

use serde_json::{Value, json};
use x_sdk::model::{
    Date, FromPayload, PropertyValue, ServiceFailure, ThingEnum, ThingEvent, ThingModel,
    ThingServices, ThingStruct, ToPayload,
};
use x_sdk::{ThingEnum, ThingEvent, ThingModel, ThingServices, ThingStruct};

/// The smart plug, written by hand. Specs the attributes leave out (ranges, units) come from
/// the model file, which the derive checks field by field.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(model = "models/smart-plug.json")]
pub struct Plug {
    /// The relay.
    pub switch: bool,
    /// Watts.
    pub power: f32,
    /// Volts.
    pub voltage: f32,
    /// Amperes.
    pub current: f32,
    /// kWh.
    pub energy: f64,
    /// Child lock.
    #[thing(identifier = "childLock", access = "rw")]
    pub child_lock: bool,
    /// Seconds.
    #[thing(min = 0, max = 86400)]
    pub countdown: i32,
}

/// What the plug did about overheating.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum Action {
    /// Nothing.
    #[default]
    #[thing(label = "none")]
    Nothing = 0,
    /// Cut the power.
    #[thing(label = "powerCut")]
    PowerCut = 1,
}

/// Overheat alarm.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(identifier = "overheat", model = "models/smart-plug.json")]
pub struct Overheat {
    /// °C.
    pub temperature: f32,
    /// What the plug did.
    pub action: Action,
}

/// Why the plug booted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ThingEnum)]
pub enum BootReason {
    /// Power applied.
    PowerOn,
    /// Watchdog reset.
    Watchdog,
    /// After an OTA upgrade.
    OtaUpgrade,
    /// The user pressed reset.
    UserReset,
}

/// Boot notice.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/smart-plug.json")]
pub struct PowerOnline {
    /// Why.
    #[thing(identifier = "bootReason")]
    pub boot_reason: BootReason,
    /// When.
    #[thing(identifier = "bootAt")]
    pub boot_at: Date,
}

/// What a reset clears.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ThingEnum)]
pub enum Scope {
    /// The energy counter.
    Energy,
    /// Everything.
    Factory,
}

/// Outputs of `reset`.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct ResetDone {
    /// Whether it worked.
    pub result: bool,
    /// When.
    #[thing(identifier = "resetAt")]
    pub reset_at: Date,
}

/// The plug's services.
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(model = "models/smart-plug.json")]
pub enum PlugService {
    /// Reset.
    #[thing(output = ResetDone)]
    Reset {
        /// What to reset.
        scope: Scope,
    },
    /// Schedule on/off.
    SetSchedule {
        /// On time.
        #[thing(identifier = "onAt")]
        on_at: Date,
        /// Off time.
        #[thing(identifier = "offAt")]
        off_at: Date,
        /// Daily.
        repeat: bool,
    },
}

struct Device;

impl PlugServiceHandler for Device {
    fn reset(&mut self, scope: Scope) -> Result<ResetDone, ServiceFailure> {
        match scope {
            Scope::Energy => Ok(ResetDone {
                result: true,
                reset_at: Date::from_millis(42),
            }),
            Scope::Factory => Err("not now".into()),
        }
    }

    fn set_schedule(&mut self, _: Date, _: Date, _: bool) -> Result<(), ServiceFailure> {
        Ok(())
    }
}

fn params(v: Value) -> Vec<PropertyValue> {
    serde_json::from_value(v).unwrap()
}

fn map(v: Value) -> serde_json::Map<String, Value> {
    serde_json::from_value(v).unwrap()
}

#[test]
fn derived_and_generated_describe_the_same_model() {
    let derived: Vec<_> = Plug::PROPERTIES
        .iter()
        .map(|p| (p.identifier, p.access, p.kind))
        .collect();
    let generated: Vec<_> = generated::SmartPlug::PROPERTIES
        .iter()
        .map(|p| (p.identifier, p.access, p.kind))
        .collect();
    assert_eq!(derived, generated);
    // Names and units are inherited from the model file.
    assert_eq!(Plug::PROPERTIES[1].name, "实时功率");
    assert_eq!(Action::VARIANTS, generated::OverheatAction::VARIANTS);
    assert_eq!(ResetDone::FIELDS, generated::ResetOutput::FIELDS);
    assert_eq!(PlugService::SERVICES, generated::SmartPlugService::SERVICES);
    assert_eq!(Overheat::KIND, generated::OverheatEvent::KIND);
    assert_eq!(PowerOnline::IDENTIFIER, "powerOnline");
}

#[test]
fn same_payloads_for_the_same_values() {
    let d = Plug {
        switch: true,
        power: 23.7,
        energy: 1.5,
        countdown: 30,
        ..Plug::default()
    };
    let g = generated::SmartPlug {
        switch: true,
        power: 23.7,
        energy: 1.5,
        countdown: 30,
        ..generated::SmartPlug::default()
    };
    assert_eq!(d.report().to_payload(), g.report().to_payload());
    let e = Overheat {
        temperature: 88.8,
        action: Action::PowerCut,
    };
    let ge = generated::OverheatEvent {
        temperature: 88.8,
        action: generated::OverheatAction::PowerCut,
    };
    assert_eq!(e.to_payload(), ge.to_payload());
    assert_eq!(Overheat::from_payload(&ge.to_payload()).unwrap(), e);
}

#[test]
fn same_coercions_and_rejections() {
    let cases = [
        json!([{"identify":"countdown","value":"100"}]),
        json!([{"identify":"countdown","value":"1.5"}]),
        json!([{"identify":"countdown","value":90000}]),
        json!([{"identify":"power","value":1}]),
        json!([{"identify":"nope","value":1}]),
        json!([{"identify":"switch","value":"true"},{"identify":"childLock","value":0}]),
    ];
    for case in cases {
        let d = Plug::decode_set(&params(case.clone()));
        let g = generated::SmartPlug::decode_set(&params(case.clone()));
        match (d, g) {
            (Ok(d), Ok(g)) => assert_eq!(d.to_payload(), g.to_payload(), "{case}"),
            (Err(d), Err(g)) => assert_eq!(d.to_string(), g.to_string(), "{case}"),
            (d, g) => panic!("{case}: derived {d:?} vs generated {g:?}"),
        }
    }
    // A step inherited from the model: power's 0.1 (read-only, so checked via a report).
    let err = PlugReport::from_payload(&map(json!({"power": 0.25}))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "power: 0.25 is not a multiple of the step 0.1 from 0"
    );
}

#[test]
fn derived_services_dispatch() {
    let call = PlugService::decode("reset", &map(json!({"scope":"0"}))).unwrap();
    assert_eq!(
        call,
        PlugService::Reset {
            scope: Scope::Energy
        }
    );
    assert_eq!(
        Value::Object(call.dispatch(&mut Device).unwrap()),
        json!({"result":1,"resetAt":42})
    );
    let gen_call =
        generated::SmartPlugService::decode("reset", &map(json!({"scope":"0"}))).unwrap();
    assert_eq!(
        call_params(&PlugService::Reset {
            scope: Scope::Energy
        }),
        gen_call.to_params()
    );
    let err = PlugService::decode("setSchedule", &map(json!({"onAt":1}))).unwrap_err();
    assert_eq!(err.to_string(), "offAt: missing; repeat: missing");
    assert_eq!(
        PlugService::Reset {
            scope: Scope::Factory
        }
        .dispatch(&mut Device)
        .unwrap_err()
        .to_string(),
        "not now"
    );
}

fn call_params(call: &PlugService) -> serde_json::Map<String, Value> {
    call.to_params()
}

/// A model with no model file: everything comes from attributes.
#[derive(Debug, Default, ThingModel)]
pub struct Thermostat {
    /// Target temperature.
    #[thing(
        identifier = "target",
        access = "rw",
        min = 5,
        max = 35,
        step = 0.5,
        unit = "°C"
    )]
    pub target: f32,
    /// Display name.
    #[thing(access = "rw", length = 8)]
    pub label: String,
    /// Readings.
    #[thing(size = 3, min = -40, max = 80)]
    pub history: Vec<i32>,
}

#[test]
fn attribute_only_model() {
    let s = Thermostat::decode_set(&params(json!([
        {"identify":"target","value":"21.5"},
        {"identify":"label","value":"hall"}
    ])))
    .unwrap();
    assert_eq!(s.target, Some(21.5));
    for (case, expected) in [
        (
            json!([{"identify":"target","value":21.3}]),
            "target: 21.3 is not a multiple of the step 0.5 from 5",
        ),
        (
            json!([{"identify":"label","value":"living room"}]),
            "label: text of 11 bytes is longer than the maximum 8",
        ),
        (
            json!([{"identify":"history","value":[1]}]),
            "history: read-only property",
        ),
    ] {
        assert_eq!(
            Thermostat::decode_set(&params(case))
                .unwrap_err()
                .to_string(),
            expected
        );
    }
    let err = ThermostatReport::from_payload(&map(json!({"history":[1, 2, 99]}))).unwrap_err();
    assert_eq!(err.to_string(), "history: [2]: 99 is above the maximum 80");
}

/// HEX: a hand-written meter takes its layout from the model file and encodes exactly like
/// the generated bindings.
mod hex {
    use super::*;
    use x_sdk::model::hex::{HexEvent, HexModel, HexServices};

    use super::generated_meter;

    /// Tariff.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
    pub enum Tariff {
        /// Flat.
        #[default]
        Flat,
        /// Peak.
        Peak,
        /// Valley.
        Valley,
    }

    /// The meter, by hand; its HEX layout comes from the model file.
    #[derive(Debug, Clone, PartialEq, Default, ThingModel)]
    #[thing(model = "models/meter-hex.json")]
    pub struct Meter {
        /// V.
        pub voltage: f32,
        /// A.
        pub current: f32,
        /// kW.
        #[thing(identifier = "activePower")]
        pub active_power: f32,
        /// kWh.
        #[thing(identifier = "energyTotal")]
        pub energy_total: f64,
        /// Hz.
        pub frequency: f32,
        /// Relay.
        pub relay: bool,
        /// Tariff.
        pub tariff: Tariff,
        /// Meter number.
        #[thing(identifier = "meterNo")]
        pub meter_no: String,
        /// Seconds.
        #[thing(identifier = "reportPeriod")]
        pub report_period: i32,
    }

    /// Tamper kind.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, ThingEnum)]
    pub enum Kind {
        /// Cover opened.
        Cover,
        /// Magnet.
        Magnet,
    }

    /// Tamper alarm (HEX id from the model file).
    #[derive(Debug, Clone, PartialEq, ThingEvent)]
    #[thing(model = "models/meter-hex.json")]
    pub struct Tamper {
        /// Kind.
        pub kind: Kind,
        /// When.
        pub at: Date,
    }

    /// Relay state.
    #[derive(Debug, Clone, PartialEq, ThingStruct)]
    pub struct RelayState {
        /// On or off.
        pub state: bool,
    }

    /// Register value.
    #[derive(Debug, Clone, PartialEq, ThingStruct)]
    pub struct Register {
        /// The value.
        #[thing(hex(type = "u16"))]
        pub value: i32,
    }

    /// Services, ids 16 and 17 from the model file.
    #[derive(Debug, Clone, PartialEq, ThingServices)]
    #[thing(model = "models/meter-hex.json")]
    pub enum MeterService {
        /// Relay.
        #[thing(output = RelayState)]
        RelayControl {
            /// On.
            on: bool,
        },
        /// Register read.
        #[thing(output = Register)]
        ReadRegister {
            /// Address.
            address: i32,
        },
    }

    struct Device;

    impl MeterServiceHandler for Device {
        fn relay_control(&mut self, on: bool) -> Result<RelayState, ServiceFailure> {
            Ok(RelayState { state: on })
        }

        fn read_register(&mut self, address: i32) -> Result<Register, ServiceFailure> {
            Ok(Register { value: address * 2 })
        }
    }

    #[test]
    fn derived_hex_encodes_like_generated() {
        let derived = Meter {
            voltage: 220.5,
            current: 1.25,
            active_power: 0.275,
            energy_total: 1234.56,
            frequency: 50.01,
            relay: true,
            tariff: Tariff::Peak,
            meter_no: "000123456789".into(),
            report_period: 900,
        };
        let generated = generated_meter::MeterHex {
            voltage: 220.5,
            current: 1.25,
            active_power: 0.275,
            energy_total: 1234.56,
            frequency: 50.01,
            relay: true,
            tariff: generated_meter::Tariff::Peak,
            meter_no: "000123456789".into(),
            report_period: 900,
        };
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        let n = Meter::encode_report(&derived.report(), &mut a).unwrap();
        let m = generated_meter::MeterHex::encode_report(&generated.report(), &mut b).unwrap();
        assert_eq!(a[..n], b[..m]);
        assert_eq!(
            x_sdk::model::hex::to_hex(&a[..n]),
            "019d087d00130140e20100e903010130303031323334353637383984030000"
        );
        assert_eq!(Meter::decode_report(&a[..n]).unwrap(), derived.report());

        let tamper = Tamper {
            kind: Kind::Magnet,
            at: Date::from_millis(1_717_401_600_000),
        };
        assert_eq!(Tamper::HEX_ID, 1);
        let n = tamper.encode_hex(&mut a).unwrap();
        assert_eq!(x_sdk::model::hex::to_hex(&a[..n]), "02010100c01cdd8f010000");

        let call = MeterService::decode_call_hex(&[0x82, 0x11, 0x02, 0x01]).unwrap();
        assert_eq!(call, MeterService::ReadRegister { address: 258 });
        let reply = call.dispatch_hex(&mut Device, &mut a).unwrap();
        assert_eq!(x_sdk::model::hex::to_hex(&a[..reply.len]), "0311000402");
    }

    /// A HEX layout from attributes alone.
    #[derive(Debug, Default, ThingModel)]
    #[thing(hex(mode = "positional", byte_order = "little"))]
    pub struct Probe {
        /// °C, on i16 with scale 0.1.
        #[thing(min = -40, max = 125, hex(type = "i16", scale = 0.1))]
        pub temperature: f32,
        /// Label, 4 bytes.
        #[thing(hex(type = "text:4"))]
        pub label: String,
        /// Counter.
        #[thing(access = "rw", min = 0, max = 255, hex(id = 9, type = "u8"))]
        pub counter: i32,
    }

    #[test]
    fn attribute_only_hex_layout() {
        let p = Probe {
            temperature: -12.5,
            label: "ab".into(),
            counter: 7,
        };
        let mut buf = [0u8; 16];
        let n = Probe::encode_report(&p.report(), &mut buf).unwrap();
        // -125 as i16 little-endian, "ab\0\0", 7.
        assert_eq!(buf[..n], [0x01, 0x83, 0xff, b'a', b'b', 0, 0, 7]);
        let set = Probe::decode_set_hex(&[0x81, 9, 200]).unwrap();
        assert_eq!(set.counter, Some(200));
        let err = Probe::decode_set_hex(&[0x81, 1, 0, 0]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "property temperature (id at byte 1) is read-only"
        );
    }
}
