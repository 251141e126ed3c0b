use x_sdk::ThingModel;

#[derive(ThingModel)]
#[thing(model = "models/smart-plug.json")]
struct Plug {
    switch: bool,
    power: f32,
    voltage: f32,
    current: f32,
    #[thing(identifier = "childLock")]
    child_lock: bool,
}

fn main() {}
