use x_sdk::ThingModel;

#[derive(ThingModel)]
struct Meter {
    level: u8,
    maybe: Option<i32>,
    counters: std::collections::HashMap<String, i32>,
}

fn main() {}
