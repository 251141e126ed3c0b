use x_sdk::ThingModel;

#[derive(ThingModel)]
#[thing(model = "models/smart-plug.json")]
struct Plug {
    switch: i32,
    power: f64,
    voltage: f32,
    current: f32,
    energy: f64,
    #[thing(identifier = "childLock")]
    child_lock: bool,
    countdown: String,
}

fn main() {}
