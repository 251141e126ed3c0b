use x_sdk::model::ThingModel;
use x_sdk::{ThingEnum, ThingModel, ThingStruct};

#[derive(Debug, Clone, Copy, PartialEq, Default, ThingEnum)]
enum Mode {
    #[default]
    Auto,
    #[thing(key = 5, label = "boost")]
    Boost,
}

#[derive(Debug, Clone, PartialEq, Default, ThingStruct)]
struct Point {
    #[thing(min = -90, max = 90)]
    lat: f64,
    #[thing(min = -180, max = 180)]
    lng: f64,
}

#[derive(Debug, Default, ThingModel)]
struct Heater {
    #[thing(access = "rw", min = 5, max = 30, step = 0.5, unit = "°C", unit_name = "摄氏度")]
    target: f32,
    #[thing(identifier = "workMode", access = "rw")]
    mode: Mode,
    #[thing(size = 10)]
    track: Vec<Point>,
    #[thing(rename = "type", length = 16)]
    r#type: String,
    on: bool,
}

fn main() {
    assert_eq!(Heater::PROPERTIES.len(), 5);
    assert_eq!(Heater::PROPERTIES[3].identifier, "type");
    let _ = HeaterReport::default().with_type("x".into()).with_on(true);
}
