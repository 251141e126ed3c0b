use x_sdk::ThingModel;

#[derive(ThingModel)]
#[thing(model = "models/no-such-model.json")]
struct Plug {
    switch: bool,
}

fn main() {}
