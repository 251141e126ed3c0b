use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Timer {
    remaining: std::time::Duration,
}

fn main() {}
