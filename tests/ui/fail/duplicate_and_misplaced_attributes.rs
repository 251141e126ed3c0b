use x_sdk::ThingModel;

#[derive(ThingModel)]
#[thing(kind = "alert")]
struct Plug {
    #[thing(min = 0, min = 1)]
    power: f32,
    #[thing(length = 8)]
    level: i32,
    #[thing(size = 3)]
    name: String,
    #[thing(access = "write")]
    on: bool,
}

fn main() {}
