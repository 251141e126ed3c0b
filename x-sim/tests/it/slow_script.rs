//! A HEX product's parsing script runs off the async workers: while a slow script decodes
//! a device's report, the platform's HTTP API still answers (the tests' runtime has a
//! single worker thread, so a script run on it would stall everything).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::wire::Mqtt;
use common::{Api, PLUG_SECRET, Params, sim};
use x_protocol::{ConnectType, MqttLogin, Topic, TopicKind};

fn registry() -> String {
    format!(
        r#"
[[product]]
open_id = "7ED01E2A"
product_id = "7E5A0002"
product_key = "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF"
registration = 1
format = "hex"
model = "x-sim/tests/fixtures/thermo.json"
script = "x-sim/tests/fixtures/slow.js"

[[device]]
product_id = "7E5A0002"
node_eui = "SLOW0001"
device_secret = "{PLUG_SECRET}"
"#
    )
}

#[tokio::test]
async fn the_api_answers_while_a_slow_script_runs() {
    let sim = sim(&registry()).await;
    let api = Api::new(&sim);
    let params = Params::new("7E5A0002", "SLOW0001", "A0A1A2A3A4A5A6A7A8A9AAABACADAEAF");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let login = MqttLogin::connect(
        &params.id,
        &params.product_key,
        &PLUG_SECRET.parse().unwrap(),
        ConnectType::Unchecked,
        now,
    );
    // The script loops for about 2 s in a debug build, and far longer when the test binary's
    // other tests share two busy cores: wait for its ack as long as it takes (the point is
    // that the API answers meanwhile, not how fast the script is).
    let mut mqtt = Mqtt::open(sim.mqtt_addr().unwrap(), &login)
        .await
        .unwrap()
        .waiting(Duration::from_secs(120));
    let ack = Topic::new(params.id.clone(), TopicKind::FullHexAck).unwrap();
    mqtt.subscribe(&[ack.to_string()]).await;
    let report = Topic::new(params.id.clone(), TopicKind::FullHex).unwrap();
    let sent = Instant::now();
    mqtt.publish(&report.to_string(), b"01".to_vec()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    // The API answers while the script runs.
    api.ok("/api/devices").await;
    let api_answered = sent.elapsed();
    let (topic, _) = mqtt.next().await;
    let acked = sent.elapsed();
    assert_eq!(topic, ack.to_string());
    // Well before the script is done (it loops for about 2 s in a debug build).
    assert!(
        api_answered * 4 < acked,
        "the API answered after {api_answered:?}, only about when the script was done ({acked:?})"
    );
    eprintln!("API answered after {api_answered:?}, the report was acked after {acked:?}");
}
