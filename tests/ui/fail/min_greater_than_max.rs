use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Dimmer {
    #[thing(access = "rw", min = 100, max = 0)]
    level: i32,
}

fn main() {}
