use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Lamp {
    #[thing(colour = "red")]
    on: bool,
}

fn main() {}
