//! `models/env-sensor.json` by hand: a JSON product with enum properties, an alert and an
//! error event, and an async service with outputs.

use x_sdk::model::{Date, ServiceFailure};
use x_sdk::{ThingEnum, ThingEvent, ThingModel, ThingServices, ThingStruct};

/// Air quality, as the model labels it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum AirQuality {
    /// Excellent.
    #[default]
    #[thing(label = "excellent")]
    Excellent,
    /// Good.
    #[thing(label = "good")]
    Good,
    /// Moderate.
    #[thing(label = "moderate")]
    Moderate,
    /// Poor.
    #[thing(label = "poor")]
    Poor,
}

/// The sensor's working mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, ThingEnum)]
pub enum SensorMode {
    /// Normal.
    #[default]
    #[thing(label = "normal")]
    Normal,
    /// Power saving.
    #[thing(label = "eco")]
    Eco,
    /// Fast sampling.
    #[thing(label = "boost")]
    Boost,
}

/// The environment sensor; ranges, units and access come from the model file.
#[derive(Debug, Clone, PartialEq, Default, ThingModel)]
#[thing(model = "models/env-sensor.json")]
pub struct EnvSensor {
    /// °C.
    pub temperature: i32,
    /// %.
    pub humidity: i32,
    /// µg/m³.
    pub pm25: i32,
    /// ppm.
    pub co2: i32,
    /// Air quality.
    #[thing(identifier = "airQuality")]
    pub air_quality: AirQuality,
    /// Seconds between reports.
    #[thing(identifier = "reportInterval")]
    pub report_interval: i32,
    /// Where it hangs.
    pub location: String,
    /// Last calibration.
    #[thing(identifier = "lastCalibration")]
    pub last_calibration: Date,
    /// Working mode.
    pub mode: SensorMode,
}

/// A reading crossed its threshold.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/env-sensor.json")]
pub struct Threshold {
    /// Which reading.
    pub param: String,
    /// Its value.
    pub value: i32,
}

/// A sensor failed.
#[derive(Debug, Clone, PartialEq, ThingEvent)]
#[thing(model = "models/env-sensor.json")]
pub struct SensorFault {
    /// Fault code.
    pub code: i32,
    /// What failed.
    pub detail: String,
}

/// Outputs of `calibrate`.
#[derive(Debug, Clone, PartialEq, ThingStruct)]
pub struct Calibrated {
    /// The offset found.
    pub offset: i32,
    /// When.
    #[thing(identifier = "calibratedAt")]
    pub calibrated_at: Date,
}

/// The sensor's services.
#[derive(Debug, Clone, PartialEq, ThingServices)]
#[thing(model = "models/env-sensor.json")]
pub enum EnvSensorService {
    /// Calibrate against a reference gas.
    #[thing(output = Calibrated)]
    Calibrate {
        /// Reference concentration, ppm.
        reference: i32,
    },
}

/// The sensor's service handler.
#[derive(Debug)]
pub struct EnvSensorDevice;

impl EnvSensorServiceHandler for EnvSensorDevice {
    fn calibrate(&mut self, reference: i32) -> Result<Calibrated, ServiceFailure> {
        Ok(Calibrated {
            offset: 420 - reference,
            calibrated_at: Date::from_millis(7),
        })
    }
}
