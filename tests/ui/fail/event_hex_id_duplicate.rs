use x_sdk::{ThingEnum, ThingEvent};
use x_sdk::model::Date;

#[derive(Clone, Copy, ThingEnum)]
enum Kind {
    #[thing(label = "cover")]
    Cover,
    #[thing(label = "magnet")]
    Magnet,
}

// The meter's `tamper` event has HEX id 1: the whole model (the file's events with this one
// in place of `overload`) would have two events with id 1.
#[derive(ThingEvent)]
#[thing(identifier = "overload", model = "models/meter-hex.json", hex(id = 1))]
struct Overload {
    power: f32,
    limit: f32,
}

// Without a model file, the event alone: its outputs and id through the same checks.
#[derive(ThingEvent)]
#[thing(identifier = "tamper", hex(id = 1))]
struct Tamper {
    kind: Kind,
    at: Date,
    #[thing(identifier = "kind")]
    again: i32,
}

fn main() {}
