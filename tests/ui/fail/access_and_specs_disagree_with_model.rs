use x_sdk::ThingModel;

#[derive(ThingModel)]
#[thing(model = "models/smart-plug.json")]
struct Plug {
    switch: bool,
    #[thing(access = "rw")]
    power: f32,
    #[thing(max = 250)]
    voltage: f32,
    current: f32,
    energy: f64,
    #[thing(identifier = "childLock")]
    child_lock: bool,
    countdown: i32,
    colour: i32,
}

fn main() {}
