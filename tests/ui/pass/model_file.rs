use x_sdk::model::{Date, ServiceFailure};
use x_sdk::{ThingEnum, ThingModel, ThingServices, ThingStruct};

#[derive(Debug, Default, ThingModel)]
#[thing(model = "models/env-sensor.json")]
struct Sensor {
    temperature: i32,
    humidity: i32,
    pm25: i32,
    co2: i32,
    #[thing(identifier = "airQuality")]
    air_quality: Quality,
    #[thing(identifier = "reportInterval")]
    report_interval: i32,
    location: String,
    #[thing(identifier = "lastCalibration")]
    last_calibration: Date,
    mode: Mode,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, ThingEnum)]
enum Quality {
    #[default]
    Excellent,
    Good,
    Moderate,
    Poor,
}

#[derive(Debug, Clone, Copy, PartialEq, Default, ThingEnum)]
enum Mode {
    #[default]
    Normal,
    Eco,
    Boost,
}

#[derive(Debug, ThingStruct)]
struct Calibrated {
    offset: i32,
    #[thing(identifier = "calibratedAt")]
    calibrated_at: Date,
}

#[derive(Debug, ThingServices)]
#[thing(model = "models/env-sensor.json")]
enum Services {
    #[thing(output = Calibrated)]
    Calibrate { reference: i32 },
}

struct Device;

impl ServicesHandler for Device {
    fn calibrate(&mut self, reference: i32) -> Result<Calibrated, ServiceFailure> {
        Ok(Calibrated {
            offset: reference - 400,
            calibrated_at: Date::now(),
        })
    }
}

fn main() {
    let _ = Services::Calibrate { reference: 500 }.dispatch(&mut Device);
    let _ = Sensor::default();
}
