use x_sdk::{ThingEnum, ThingEvent};

#[derive(Debug, Clone, Copy, ThingEnum)]
enum Action {
    Nothing = 0,
    PowerCut = 2,
}

#[derive(ThingEvent)]
#[thing(identifier = "overheat", model = "models/smart-plug.json")]
struct Overheat {
    temperature: f32,
    action: Action,
}

fn main() {}
