use x_sdk::{ThingEnum, ThingModel};

#[derive(ThingModel)]
struct Pair(i32, i32);

#[derive(ThingModel)]
struct Wrapper<T> {
    value: T,
}

#[derive(ThingEnum)]
enum Colour {
    Red,
    Custom(u32),
}

fn main() {}
