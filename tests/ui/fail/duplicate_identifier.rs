use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Sensor {
    #[thing(identifier = "temp")]
    inside: f32,
    #[thing(identifier = "temp")]
    outside: f32,
}

fn main() {}
