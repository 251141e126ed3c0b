use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Lamp {
    #[thing(min = 0, max = 10)]
    name: String,
    #[thing(step = 1)]
    on: bool,
}

fn main() {}
