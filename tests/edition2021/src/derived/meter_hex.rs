//! `models/meter-hex.json` by hand: a positional, little-endian HEX product with scaled and
//! offset numbers, fixed-length text, two events and two services with declared ids.

use x_sdk::model::{Date, ServiceFailure};
use x_sdk::{ThingEnum, ThingEvent, ThingModel, ThingServices, ThingStruct};

/// The tariff in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum Tariff {
    /// Flat rate.
    #[default]
    #[thing(label = "flat")]
    Flat,
    /// Peak.
    #[thing(label = "peak")]
    Peak,
    /// Off-peak.
    #[thing(label = "valley")]
    Valley,
}

/// What tampering was seen (the model's labels are Chinese).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum TamperKind {
    /// The cover was opened.
    #[default]
    #[thing(label = "开盖")]
    CoverOpen,
    /// A strong magnet.
    #[thing(label = "强磁干扰")]
    Magnet,
}

/// The electricity meter.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(model = "models/meter-hex.json")]
pub struct Meter {
    /// V, u16 scaled 0.1.
    pub voltage: f32,
    /// A, u16 scaled 0.01.
    pub current: f32,
    /// kW, u16 scaled 0.001.
    #[thing(identifier = "activePower")]
    pub active_power: f32,
    /// kWh, u32 scaled 0.01.
    #[thing(identifier = "energyTotal")]
    pub energy_total: f64,
    /// Hz, u16 scaled 0.01 from 40.
    pub frequency: f32,
    /// Relay closed.
    pub relay: bool,
    /// Tariff.
    pub tariff: Tariff,
    /// Meter number, text:12.
    #[thing(identifier = "meterNo")]
    pub meter_no: String,
    /// Seconds between reports, u32.
    #[thing(identifier = "reportPeriod")]
    pub report_period: i32,
}

/// Tampering: a HEX event (id 1 in the model file).
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/meter-hex.json")]
pub struct Tamper {
    /// What was seen.
    pub kind: TamperKind,
    /// When.
    pub at: Date,
}

/// Overload: a HEX event (id 2) with a scaled output.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/meter-hex.json")]
pub struct Overload {
    /// kW, u16 scaled 0.001.
    pub power: f32,
    /// kW.
    pub limit: f32,
}

/// Outputs of `relayControl`.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct RelayState {
    /// Relay closed.
    pub state: bool,
}

/// Outputs of `readRegister`.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct RegisterValue {
    /// The value, on u16.
    #[thing(min = 0, max = 65535, hex(type = "u16"))]
    pub value: i32,
}

/// The meter's services (HEX ids 16 and 17 from the model file).
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(model = "models/meter-hex.json")]
pub enum MeterService {
    /// Open or close the relay.
    #[thing(output = RelayState)]
    RelayControl {
        /// Close it.
        on: bool,
    },
    /// Read a register.
    #[thing(output = RegisterValue)]
    ReadRegister {
        /// Register address, on u16.
        address: i32,
    },
}

/// The meter's service handler: a relay and registers holding their address doubled.
#[derive(Debug, Default)]
pub struct MeterDevice {
    /// The relay.
    pub relay: bool,
}

impl MeterServiceHandler for MeterDevice {
    fn relay_control(&mut self, on: bool) -> Result<RelayState, ServiceFailure> {
        self.relay = on;
        Ok(RelayState { state: on })
    }

    fn read_register(&mut self, address: i32) -> Result<RegisterValue, ServiceFailure> {
        Ok(RegisterValue {
            value: (address * 2) % 65536,
        })
    }
}
