use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Dimmer {
    #[thing(step = 0)]
    level: f32,
    #[thing(min = 0.5)]
    count: i32,
}

fn main() {}
