use x_sdk::ThingEvent;

#[derive(ThingEvent)]
#[thing(identifier = "overheat", kind = "info", model = "models/smart-plug.json")]
struct Overheat {
    #[thing(min = 0)]
    temperature: f32,
}

#[derive(ThingEvent)]
#[thing(model = "models/smart-plug.json")]
struct Meltdown {
    level: i32,
}

fn main() {}
