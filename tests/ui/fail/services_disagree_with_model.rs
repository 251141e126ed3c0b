use x_sdk::model::Date;
use x_sdk::ThingServices;

#[derive(ThingServices)]
#[thing(model = "models/smart-plug.json")]
enum Services {
    Reset { scope: i32 },
    #[thing(call = "sync")]
    SetSchedule {
        #[thing(identifier = "onAt")]
        on_at: Date,
        #[thing(identifier = "offAt")]
        off_at: Date,
        repeat: bool,
    },
    Reboot,
}

fn main() {}
