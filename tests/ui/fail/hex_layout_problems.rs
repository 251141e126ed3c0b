use x_sdk::ThingModel;

#[derive(ThingModel)]
#[thing(hex(mode = "packed"))]
struct Meter {
    #[thing(min = 0, max = 1000, hex(type = "u8"))]
    level: i32,
    #[thing(hex(type = "u16", scale = 0.1))]
    voltage: f32,
    #[thing(hex(type = "u24"))]
    current: f32,
    #[thing(hex(id = 1))]
    relay: bool,
    #[thing(length = 300)]
    name: String,
}

fn main() {}
