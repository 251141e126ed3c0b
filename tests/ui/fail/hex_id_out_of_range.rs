use x_sdk::ThingModel;

// A HEX id is one byte, 1..=255: the derive runs the same check as a model file.
#[derive(ThingModel)]
#[thing(hex)]
struct Meter {
    #[thing(hex(id = 0))]
    level: i32,
    #[thing(hex(id = 256))]
    relay: bool,
}

fn main() {}
