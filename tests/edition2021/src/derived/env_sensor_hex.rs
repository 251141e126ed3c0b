//! `models/env-sensor-hex.json` by hand: a positional, big-endian HEX product; its layout,
//! ids and wire types come from the model file.

use x_sdk::model::ServiceFailure;
use x_sdk::{ThingEvent, ThingModel, ThingServices, ThingStruct};

use super::env_sensor::{AirQuality, SensorMode};

/// The HEX environment sensor. Its fields are not in the model file's order: the HEX ids
/// (positions in the file) come from the file, so the frames are the same.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(model = "models/env-sensor-hex.json")]
pub struct EnvSensorHex {
    /// Working mode.
    pub mode: SensorMode,
    /// °C, on i8.
    pub temperature: i32,
    /// %, on u8.
    pub humidity: i32,
    /// µg/m³, on u16.
    pub pm25: i32,
    /// ppm, on u16.
    pub co2: i32,
    /// Air quality.
    #[thing(identifier = "airQuality")]
    pub air_quality: AirQuality,
    /// Seconds between reports, on u16.
    #[thing(identifier = "reportInterval")]
    pub report_interval: i32,
}

/// A sensor failed: a HEX event.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/env-sensor-hex.json")]
pub struct SensorFault {
    /// Fault code, on u8.
    pub code: i32,
}

/// Outputs of `calibrate`.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct Offset {
    /// The offset found, on i16.
    #[thing(hex(type = "i16"))]
    pub offset: i32,
}

/// The HEX sensor's services.
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(model = "models/env-sensor-hex.json")]
pub enum EnvSensorHexService {
    /// Calibrate against a reference gas.
    #[thing(output = Offset)]
    Calibrate {
        /// Reference concentration, ppm, on u16.
        reference: i32,
    },
}

/// The HEX sensor's service handler.
#[derive(Debug)]
pub struct EnvSensorHexDevice;

impl EnvSensorHexServiceHandler for EnvSensorHexDevice {
    fn calibrate(&mut self, reference: i32) -> Result<Offset, ServiceFailure> {
        if reference > 4000 {
            return Err("out of range".into());
        }
        Ok(Offset {
            offset: 420 - reference,
        })
    }
}
