use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Plug {
    #[thing(identifier = "power-now")]
    power: f32,
    _reserved: i32,
}

fn main() {}
