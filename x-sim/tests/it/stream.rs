//! `GET /api/stream` over real HTTP: the Server-Sent Events a client sees while the SDK's
//! runtime is online: its login, reports and their acks, a property set from the API and the
//! device's answer, in order and only for the device asked for; encrypted payloads plain and
//! marked; violations as their own event; bad filters refused by name.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::smart_plug::SmartPlugReport;
use common::wire::Wire;
use common::{Api, WAIT, acked, online, plug, plug_device};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// PLUG0001 and PLUG0002 of the smart plug, and the encrypted product.
fn registry() -> String {
    [
        common::plug_product(),
        plug_device("PLUG0001", ""),
        plug_device("PLUG0002", ""),
        common::encrypted_product(),
    ]
    .concat()
}

/// An open event stream, read event by event.
struct Events {
    response: reqwest::Response,
    buffer: String,
}

impl Events {
    /// Opens `GET path` and checks it is an event stream.
    async fn open(api: &Api, path: &str) -> Self {
        let response = api.get(path).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (its name and data), comments skipped.
    async fn next(&mut self) -> (String, Value) {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut name = None;
                let mut data = None;
                for line in block.lines() {
                    if let Some(n) = line.strip_prefix("event: ") {
                        name = Some(n.to_owned());
                    } else if let Some(d) = line.strip_prefix("data: ") {
                        data = Some(serde_json::from_str(d).unwrap());
                    }
                }
                if let (Some(name), Some(data)) = (name, data) {
                    return (name, data);
                }
                continue;
            }
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Events until one that `done` takes; returns all of them, that one last.
    async fn until(&mut self, done: impl Fn(&str, &Value) -> bool) -> Vec<(String, Value)> {
        let mut seen = Vec::new();
        loop {
            let (name, data) = self.next().await;
            let last = done(&name, &data);
            seen.push((name, data));
            if last {
                return seen;
            }
        }
    }
}

fn is_message(name: &str, data: &Value, direction: &str, header_ctrl: u64) -> bool {
    name == "message" && data["direction"] == direction && data["HeaderCtrl"] == header_ctrl
}

#[tokio::test]
async fn a_device_s_messages_both_ways_as_they_happen() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let addr = sim.mqtt_addr().unwrap();
    let mut mine = Events::open(&api, "/api/stream?device=AA30C505/PLUG0001").await;
    let mut all = Events::open(&api, "/api/stream").await;

    // Another device first: the unfiltered stream has it, the filtered one never does.
    let other = online(common::plug_named("PLUG0002").plug(addr)).await;
    let seen = all
        .until(|n, d| d["node_eui"] == "PLUG0002" && is_message(n, d, "up", 1))
        .await;
    assert!(seen.iter().all(|(_, d)| d["node_eui"] == "PLUG0002"));

    let device = online(plug().plug(addr)).await;
    // The login: the auth request and its reply, whose DeviceSecret never travels in the
    // stream.
    let seen = mine.until(|n, d| is_message(n, d, "down", 1)).await;
    let (_, reply) = seen.last().unwrap();
    assert!(
        reply["topic"].as_str().unwrap().contains("PLUG0001"),
        "{reply}"
    );
    if let Some(secret) = reply["Payload"].get("DeviceSecret") {
        assert_eq!(secret, "[redacted]");
    }

    // A report goes up and its ack comes down, with the report's MessageId.
    acked(device.report(SmartPlugReport::default().with_power(12.5)))
        .await
        .unwrap();
    let seen = mine.until(|n, d| is_message(n, d, "up", 16)).await;
    let (_, report) = seen.last().unwrap();
    assert_eq!(report["Payload"]["power"], 12.5, "{report}");
    assert_eq!(report["encrypted"], false);
    assert_eq!(
        (report["product_id"].as_str(), report["node_eui"].as_str()),
        (Some("AA30C505"), Some("PLUG0001"))
    );
    assert!(report["time"].is_i64(), "{report}");
    let ack = mine.until(|n, d| is_message(n, d, "down", 16)).await;
    let ack = &ack.last().unwrap().1;
    assert_eq!(ack["MessageId"], report["MessageId"]);
    assert_eq!(ack["Payload"]["Code"], "200", "{ack}");

    // A property set from the API: the command down, the device's answer up.
    let set = tokio::spawn({
        let post = api
            .post("/api/devices/AA30C505/PLUG0001/properties")
            .json(&json!({"switch": 1}));
        async move { post.send().await.unwrap().status() }
    });
    let seen = mine.until(|n, d| is_message(n, d, "down", 20)).await;
    let command = &seen.last().unwrap().1;
    assert_eq!(
        command["Payload"],
        json!({"params": [{"identify": "switch", "value": 1}]}),
        "{command}"
    );
    assert!(
        command["topic"]
            .as_str()
            .unwrap()
            .ends_with("/model/property/set")
    );
    let seen = mine.until(|n, d| is_message(n, d, "up", 20)).await;
    let answer = &seen.last().unwrap().1;
    assert_eq!(answer["MessageId"], command["MessageId"]);
    assert_eq!(answer["Payload"]["Code"], "200", "{answer}");
    assert_eq!(set.await.unwrap(), StatusCode::OK);
    drop((device, other));
}

#[tokio::test]
async fn encrypted_payloads_are_plain_and_marked_and_violations_are_events() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    let addr = sim.mqtt_addr().unwrap();
    let mut events = Events::open(&api, "/api/stream").await;

    let params = common::encrypted("ENC00001");
    let device = online(params.plug(addr)).await;
    acked(device.report(SmartPlugReport::default().with_power(7.5)))
        .await
        .unwrap();
    let seen = events.until(|n, d| is_message(n, d, "up", 16)).await;
    let report = &seen.last().unwrap().1;
    assert_eq!(report["encrypted"], true, "{report}");
    assert_eq!(report["Payload"]["power"], 7.5, "{report}");
    // No secret of the session reaches the stream.
    let text = seen.iter().map(|(_, d)| d.to_string()).collect::<String>();
    assert!(!text.contains("00112233445566778899AABBCCDDEEFF"));

    // A report the model refuses: the message, its "4001" ack and the violation.
    let mut wire = Wire::online(addr, &plug()).await;
    common::refused_report(&mut wire).await;
    let seen = events.until(|n, _| n == "violation").await;
    let violation = &seen.last().unwrap().1;
    assert_eq!(violation["rule"], "thing_model", "{violation}");
    assert_eq!(violation["node_eui"], "PLUG0001");
    assert!(
        violation["reason"]
            .as_str()
            .unwrap()
            .contains("above the maximum"),
        "{violation}"
    );
    drop(device);
}

#[tokio::test]
async fn bad_filters_are_refused_by_name() {
    let sim = common::sim(&registry()).await;
    let api = Api::new(&sim);
    for (query, status, says) in [
        ("?device=AA30C505", StatusCode::BAD_REQUEST, "?device:"),
        ("?node=PLUG0001", StatusCode::BAD_REQUEST, "?node:"),
        (
            "?device=AA30C505/NOSUCH01",
            StatusCode::NOT_FOUND,
            "not registered",
        ),
    ] {
        let (got, body) = tokio::time::timeout(
            Duration::from_secs(10),
            api.send(api.get(&format!("/api/stream{query}"))),
        )
        .await
        .unwrap();
        assert_eq!(got, status, "{query}: {body}");
        assert!(body["error"].as_str().unwrap().contains(says), "{body}");
    }
}
