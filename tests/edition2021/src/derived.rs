//! Hand-written models through every derive (`ThingModel`, `ThingEvent`, `ThingServices`,
//! `ThingStruct`, `ThingEnum`), checked against the model files: every model in `models/`,
//! here the smart plug (JSON) and the cold-chain tracker (HEX, with struct-typed
//! properties, event fields and service inputs), and in the submodules the environment
//! sensor (JSON and HEX) and the electricity meter (HEX, scaled numbers, fixed text).

pub mod env_sensor;
pub mod env_sensor_hex;
pub mod meter_hex;

use x_sdk::model::{Date, ServiceFailure};
use x_sdk::{ThingEnum, ThingEvent, ThingModel, ThingServices, ThingStruct};

/// The smart plug, written by hand; ranges and units come from the model file.
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

/// The plug's service handler.
#[derive(Debug)]
pub struct PlugDevice;

impl PlugServiceHandler for PlugDevice {
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

/// A GNSS fix: the struct type of the `position` property.
#[derive(Debug, Clone, PartialEq, Default, ThingStruct)]
pub struct Position {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// Altitude.
    pub alt: f32,
}

/// One point of the route.
#[derive(Debug, Clone, PartialEq, Default, ThingStruct)]
pub struct RoutePoint {
    /// Latitude.
    pub lat: f64,
    /// Longitude.
    pub lng: f64,
    /// When.
    pub ts: Date,
}

/// The cold-chain tracker, by hand: struct-typed and array properties, HEX layout from the
/// model file.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(model = "models/cold-chain-tracker.json")]
pub struct Tracker {
    /// Last fix.
    pub position: Position,
    /// Probe readings.
    pub probes: Vec<f32>,
    /// Recent fixes.
    pub route: Vec<RoutePoint>,
    /// Door.
    #[thing(identifier = "doorOpen")]
    pub door_open: bool,
    /// Target temperature.
    pub setpoint: f32,
    /// Waybill.
    #[thing(identifier = "shipmentId")]
    pub shipment_id: String,
    /// Escalation thresholds.
    #[thing(identifier = "alarmLevels")]
    pub alarm_levels: Vec<i32>,
}

/// When an excursion started and ended.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct Window {
    /// Start.
    pub start: Date,
    /// End.
    pub end: Date,
}

/// A temperature excursion: an event with a struct-typed field.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/cold-chain-tracker.json")]
pub struct Excursion {
    /// Probe slot.
    pub probe: i32,
    /// °C.
    pub temperature: f32,
    /// When.
    pub window: Window,
}

/// Temperature limits: a struct-typed service input.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct Limits {
    /// Lower limit.
    pub low: f32,
    /// Upper limit.
    pub high: f32,
}

/// Outputs of `setThresholds`.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct Accepted {
    /// Whether the limits were taken.
    pub accepted: bool,
}

/// The tracker's services.
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(model = "models/cold-chain-tracker.json")]
pub enum TrackerService {
    /// Set the thresholds.
    #[thing(output = Accepted)]
    SetThresholds {
        /// The limits.
        limits: Limits,
    },
}

/// The tracker's service handler.
#[derive(Debug)]
pub struct TrackerDevice;

impl TrackerServiceHandler for TrackerDevice {
    fn set_thresholds(&mut self, limits: Limits) -> Result<Accepted, ServiceFailure> {
        Ok(Accepted {
            accepted: limits.low < limits.high,
        })
    }
}

/// A heater's operating mode, with an explicit key and label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum Mode {
    /// Automatic.
    #[default]
    Auto,
    /// Full power.
    #[thing(key = 5, label = "boost")]
    Boost,
}

/// A point of a track.
#[derive(Debug, Clone, PartialEq, Default, ThingStruct)]
pub struct Point {
    /// Latitude.
    #[thing(min = -90, max = 90)]
    pub lat: f64,
    /// Longitude.
    #[thing(min = -180, max = 180)]
    pub lng: f64,
}

/// A model from attributes alone (no model file), with a raw identifier and an array of
/// structs.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
pub struct Heater {
    /// Target temperature.
    #[thing(access = "rw", min = 5, max = 30, step = 0.5, unit = "°C")]
    pub target: f32,
    /// Mode.
    #[thing(identifier = "workMode", access = "rw")]
    pub mode: Mode,
    /// Track.
    #[thing(size = 10)]
    pub track: Vec<Point>,
    /// Type label.
    #[thing(rename = "type", length = 16)]
    pub r#type: String,
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
