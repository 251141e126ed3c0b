use x_sdk::{ThingEvent, ThingServices};

#[derive(ThingEvent)]
#[thing(hex)]
struct Alarm {
    #[thing(hex(id = 2))]
    code: i32,
}

#[derive(ThingServices)]
#[thing(hex(mode = "tagged"))]
enum Services {
    #[thing(hex(id = 3))]
    Reboot,
    #[thing(hex(id = 3))]
    Reset,
}

fn main() {}
