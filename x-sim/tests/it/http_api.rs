//! The HTTP JSON API over real HTTP (reqwest) against a platform whose devices are the SDK's
//! runtime (and wires where a device must misbehave): registrations and their errors, device
//! state after reports, commands answered by the device (and bad answers, timeouts, unknown
//! devices), OTA end to end (upload, task, notify on a firmware report, download with
//! ranges, "succeeded" once the new version is reported), and fault injection (silence, delay,
//! drop, SessionKey rotation).
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::{Duration, Instant};

use common::smart_plug::{SmartPlug, SmartPlugReport};
use common::wire::Wire;
use common::{
    Api, Params, WAIT, acked, no_request, node_euis, object, online, plug, plug_device, refusal,
    request,
};
use md5::{Digest, Md5};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_RANGE, RANGE};
use serde_json::{Value, json};
use x_protocol::payload::{AuthCode, OtaNotify, SessionGrant};
use x_protocol::{AckPayload, HeaderCtrl, RegistrationType, TopicKind};
use x_runtime::{BackoffConfig, ConnectionState, NoModel, NoServices, Refusal, Request};
use x_sim::sim::{Sim, SimConfig};

/// The smart plug with PLUG0001, and the encrypted product.
fn registry() -> String {
    [
        common::plug_product(),
        plug_device("PLUG0001", ""),
        common::encrypted_product(),
    ]
    .concat()
}

/// Where the API has PLUG0001.
const PLUG: &str = "/api/devices/AA30C505/PLUG0001";

/// The platform in memory (no firmware server).
async fn start() -> Sim {
    common::sim(&registry()).await
}

/// The platform with a data directory: the store and the firmware server.
async fn start_with_data(dir: &std::path::Path) -> Sim {
    let mut config = SimConfig::local(common::registry(&registry()));
    config.data_dir = Some(dir.to_path_buf());
    Sim::start(config).await.unwrap()
}

/// The error message of an error body.
fn error(body: &Value) -> &str {
    body["error"]
        .as_str()
        .unwrap_or_else(|| panic!("no error message: {body}"))
}

/// Now, in Unix milliseconds.
fn now_ms() -> i64 {
    i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis(),
    )
    .unwrap()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test]
async fn registrations_over_http() {
    let sim = start().await;
    let api = Api::new(&sim);
    let addr = sim.mqtt_addr().unwrap();

    // A JSON product with its thing model inline, and a passthrough product.
    let model: Value = serde_json::from_str(
        &std::fs::read_to_string(common::root().join("models/smart-plug.json")).unwrap(),
    )
    .unwrap();
    let json_product = json!({
        "open_id": "7ED01E2A",
        "product_id": "C0FFEE01",
        "product_key": "0123456789ABCDEF0123456789ABCDEF",
        "registration": 1,
        "format": "json",
        "model": model,
    });
    let (status, body) = api
        .send(api.post("/api/products").json(&json_product))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body, json!({"product_id": "C0FFEE01"}));
    let passthrough = json!({
        "open_id": "7ED01E2A",
        "product_id": "C0FFEE02",
        "product_key": "FEDCBA9876543210FEDCBA9876543210",
        "registration": 2,
        "format": "passthrough",
    });
    let (status, body) = api.send(api.post("/api/products").json(&passthrough)).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");

    // Refused products: the error names the field.
    for (change, field) in [
        (json!({"product_key": "XYZ"}), "product_key"),
        (json!({"product_id": "C0FFEE0"}), "product_id"),
        (json!({"open_id": "7ED/1E2A"}), "open_id"),
        (json!({"format": "xml"}), "format"),
        (json!({"registration": 7}), "registration"),
        (json!({"model": {"properties": 5}}), "model"),
        (json!({"colour": "red"}), "colour"),
    ] {
        let mut product = json_product.clone();
        for (k, v) in change.as_object().unwrap() {
            product[k] = v.clone();
        }
        let (status, body) = api.send(api.post("/api/products").json(&product)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{change}: {body}");
        assert!(error(&body).contains(field), "{change}: {body}");
    }
    // A JSON product needs its model.
    let mut no_model = json_product.clone();
    no_model.as_object_mut().unwrap().remove("model");
    let (status, body) = api.send(api.post("/api/products").json(&no_model)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error(&body).starts_with("model"), "{body}");
    // Not JSON at all.
    let (status, body) = api
        .send(
            api.post("/api/products")
                .header("content-type", "application/json")
                .body("{\"open_id\":"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error(&body).starts_with("body"), "{body}");

    // Devices: without a secret the platform issues one; with one it is kept.
    let (status, issued) = api
        .send(
            api.post("/api/devices")
                .json(&json!({"product_id": "C0FFEE01", "node_eui": "NEWPLUG1"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["enabled"], true);
    let secret = issued["device_secret"].as_str().unwrap();
    assert_eq!(secret.len(), 32);
    assert!(secret.bytes().all(|b| b.is_ascii_hexdigit()), "{secret}");
    let given = "326086233FAB8A96566796551EB1DFF8";
    let (status, body) = api
        .send(api.post("/api/devices").json(&json!({
            "product_id": "C0FFEE02",
            "node_eui": "PASS0001",
            "device_secret": given,
        })))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert!(
        body["device_secret"]
            .as_str()
            .unwrap()
            .eq_ignore_ascii_case(given),
        "{body}"
    );

    // Refused devices.
    for (device, status, field) in [
        (
            json!({"product_id": "C0FFEE01", "node_eui": "bad/id"}),
            StatusCode::BAD_REQUEST,
            "node_eui",
        ),
        (
            json!({"product_id": "C0FFEE1", "node_eui": "NEWPLUG2"}),
            StatusCode::BAD_REQUEST,
            "product_id",
        ),
        (
            json!({"product_id": "C0FFEE01", "node_eui": "NEWPLUG2", "device_secret": "12"}),
            StatusCode::BAD_REQUEST,
            "device_secret",
        ),
        (
            json!({"product_id": "0BADF00D", "node_eui": "NEWPLUG2"}),
            StatusCode::CONFLICT,
            "0BADF00D",
        ),
        (
            json!({"product_id": "C0FFEE01", "node_eui": "NEWPLUG1"}),
            StatusCode::CONFLICT,
            "twice",
        ),
    ] {
        let (got, body) = api.send(api.post("/api/devices").json(&device)).await;
        assert_eq!(got, status, "{device}: {body}");
        assert!(error(&body).contains(field), "{device}: {body}");
    }

    // Both lists show the registrations.
    let products = api.ok("/api/products").await;
    let find = |id: &str| {
        products
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["product_id"] == id)
            .unwrap_or_else(|| panic!("{id} not in {products}"))
            .clone()
    };
    let p = find("C0FFEE01");
    assert_eq!(
        (&p["format"], &p["registration"], &p["encrypted"]),
        (&json!("json"), &json!(1), &json!(false))
    );
    assert!(p["model"].is_string(), "{p}");
    let p = find("C0FFEE02");
    assert_eq!(
        (&p["format"], &p["model"]),
        (&json!("passthrough"), &Value::Null)
    );
    find("AA30C505");
    let devices = api.ok("/api/devices").await;
    let nodes = node_euis(&devices);
    for node in ["PLUG0001", "NEWPLUG1", "PASS0001"] {
        assert!(nodes.contains(&node), "{node} not in {devices}");
    }

    // The inline model is the one reports are checked against: a report in range is acked,
    // one out of range (which only a wire sends) is refused.
    let new_plug = Params::new("C0FFEE01", "NEWPLUG1", "0123456789ABCDEF0123456789ABCDEF");
    let device = online(new_plug.plug(addr)).await;
    let report = SmartPlugReport::default().with_power(12.5);
    acked(device.report(report)).await.unwrap();
    device.shutdown().await;
    let mut wire = Wire::online(addr, &new_plug).await;
    common::refused_report(&mut wire).await;
    wire.disconnect().await;
    // The given secret is the one the V2 login of a type-2 device takes.
    let mut pass = Params::new("C0FFEE02", "PASS0001", "FEDCBA9876543210FEDCBA9876543210");
    pass.registration = RegistrationType::DeviceSecretPreRegistered;
    let pass_dev = pass
        .builder::<NoModel, NoServices>(addr)
        .device_secret(given.parse().unwrap());
    let pass_dev = online(pass_dev).await;
    acked(pass_dev.passthrough(json!("AQID"))).await.unwrap();
    pass_dev.shutdown().await;

    // Disabled: auth answers 4; enabled again: 0.
    let path = "/api/devices/C0FFEE01/NEWPLUG1";
    let (status, body) = api
        .send(api.patch(path).json(&json!({"enabled": false})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["enabled"], false);
    assert_eq!(api.ok(path).await["enabled"], false);
    assert_eq!(
        refusal(new_plug.plug(addr)).await,
        Refusal::Auth(AuthCode::DeviceRejected)
    );
    let (status, _) = api
        .send(api.patch(path).json(&json!({"enabled": true})))
        .await;
    assert_eq!(status, StatusCode::OK);
    online(new_plug.plug(addr)).await.shutdown().await;
    let (status, body) = api
        .send(api.patch(path).json(&json!({"enabled": "no"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = api
        .send(
            api.patch("/api/devices/C0FFEE01/NOSUCH01")
                .json(&json!({"enabled": false})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error(&body).contains("NOSUCH01"), "{body}");
}

#[tokio::test]
async fn device_state_over_http() {
    let sim = start().await;
    let api = Api::new(&sim);
    let params = plug();
    let addr = sim.mqtt_addr().unwrap();

    let before = api.ok(PLUG).await;
    assert_eq!(
        (&before["online"], &before["node_eui"], &before["enabled"]),
        (&json!(false), &json!("PLUG0001"), &json!(true))
    );
    assert_eq!(before["open_id"], "7ED01E2A");
    // A report the model rejects (acked 4001, not kept), from a wire.
    let mut wire = Wire::online(addr, &params).await;
    common::refused_report(&mut wire).await;
    wire.disconnect().await;
    let device = online(params.plug(addr).time_sync(false)).await;
    let online = api.until(PLUG, |d| d["online"] == true).await;
    assert!(online["last_offline"].is_null() || online["last_offline"].is_u64());

    let history = json!({"params": [{
        "properties": [{"power": {"value": 1.5, "time": 1_700_000_000_000_i64}}],
        "events": [{"overheat": {"value": {"temperature": 90, "action": 1}, "time": 1_700_000_001_000_i64}}]
    }]});
    let started = now_ms();
    // A property report, an event, history.
    common::report_and_event(&device).await;
    acked(device.history(history)).await.unwrap();

    // Latest properties with their time: the history entry is older than the live report.
    let latest = api.ok(&format!("{PLUG}/properties")).await;
    assert_eq!(latest["switch"]["value"], 1);
    assert_eq!(latest["power"]["value"], 12.5);
    assert!(
        latest["power"]["time"].as_i64().unwrap() >= started,
        "{latest}"
    );
    assert_eq!(latest.as_object().unwrap().len(), 2, "{latest}");

    // History of one property, by time; of all properties.
    let power = api.ok(&format!("{PLUG}/history?property=power")).await;
    let values: Vec<(&Value, &Value)> = power
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (&e["identifier"], &e["value"]))
        .collect();
    assert_eq!(
        values,
        vec![
            (&json!("power"), &json!(1.5)),
            (&json!("power"), &json!(12.5))
        ]
    );
    assert_eq!(power[0]["time"], 1_700_000_000_000_i64);
    let all = api.ok(&format!("{PLUG}/history")).await;
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");

    // Events, by time: the uploaded one first.
    let events = api.ok(&format!("{PLUG}/events")).await;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0]["identifier"], "overheat");
    assert_eq!(events[0]["time"], 1_700_000_001_000_i64);
    assert_eq!(
        events[1]["value"],
        json!({"temperature": 96.5, "action": 1})
    );

    // Messages: the accepted ones (after the login's firmware report), paged.
    let listed = api.ok(&format!("{PLUG}/messages")).await;
    let messages = listed.as_array().unwrap();
    let shape: Vec<(&Value, &Value)> = messages
        .iter()
        .map(|m| (&m["topic"], &m["HeaderCtrl"]))
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                &json!("/sys/7ED01E2A/AA30C505/PLUG0001/firmware_report"),
                &json!(8)
            ),
            (
                &json!("/sys/7ED01E2A/AA30C505/PLUG0001/model/property/report"),
                &json!(16)
            ),
            (
                &json!("/sys/7ED01E2A/AA30C505/PLUG0001/model/event/overheat/report"),
                &json!(17)
            ),
            (
                &json!("/sys/7ED01E2A/AA30C505/PLUG0001/model/history/data/report"),
                &json!(27)
            ),
        ],
        "{messages:?}"
    );
    assert_eq!(messages[2]["identifier"], "overheat");
    assert_eq!(messages[1]["Payload"], json!({"switch": 1, "power": 12.5}));
    assert!(messages[1]["time"].as_i64().unwrap() >= started);
    let seqs = common::seqs(&listed);
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let page = |after: u64, limit: usize| {
        let path = format!("{PLUG}/messages?after={after}&limit={limit}");
        let api = &api;
        async move { common::seqs(&api.ok(&path).await) }
    };
    assert_eq!(page(0, 2).await, seqs[..2]);
    assert_eq!(page(seqs[1], 2).await, seqs[2..]);
    assert_eq!(page(seqs[3], 2).await, Vec::<u64>::new());

    // An unknown device is a 404 on every query.
    for what in ["", "/properties", "/history", "/events", "/messages"] {
        let (status, body) = api
            .send(api.get(&format!("/api/devices/AA30C505/NOSUCH01{what}")))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{what}: {body}");
        assert!(error(&body).contains("AA30C505/NOSUCH01"), "{body}");
    }
}

/// Every command the API sends, answered by the device over MQTT while the request waits.
#[tokio::test]
async fn commands_over_http_return_the_answer() {
    let sim = start().await;
    let api = Api::new(&sim);
    let params = plug();
    let addr = sim.mqtt_addr().unwrap();
    let state = SmartPlug {
        power: 3.5,
        ..SmartPlug::default()
    };
    let device = params
        .plug(addr)
        .firmware("h1", "1.0.1")
        .settings(object(json!({"reportPeriod": 60})))
        .state(state);
    let device = online(device).await;

    // 20: property set; the answer is the ack.
    let (status, body) = api
        .send(
            api.post(&format!("{PLUG}/properties"))
                .json(&json!({"switch": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let answer = &body["answer"];
    assert_eq!(answer["HeaderCtrl"], 20);
    assert_eq!(answer["Payload"]["Code"], "200");
    assert_eq!(answer["Payload"]["Data"], json!({"switch": 1}));
    assert!(
        answer["topic"]
            .as_str()
            .unwrap()
            .ends_with("/PLUG0001/model/property/set_ack"),
        "{answer}"
    );
    assert!(answer["MessageId"].is_u64(), "{answer}");
    assert!(device.state().switch);

    // 21: service call with its outputs.
    let (status, body) = api
        .send(
            api.post(&format!("{PLUG}/services/reset"))
                .json(&json!({"scope": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["answer"]["HeaderCtrl"], 21);
    assert_eq!(
        body["answer"]["Payload"]["Data"],
        json!({"result": 1, "resetAt": 1_700_000_000_000_i64})
    );

    // 23: property ask, answered from the state by a report with the same MessageId
    // (acked too).
    let (status, body) = api
        .send(
            api.post(&format!("{PLUG}/properties/ask"))
                .json(&json!(["power"])),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["answer"]["HeaderCtrl"], 16);
    assert_eq!(body["answer"]["Payload"], json!({"power": 3.5}));
    assert_eq!(
        api.ok(&format!("{PLUG}/properties")).await["power"]["value"],
        3.5
    );

    // 14: config ask and set, each answered by a config report.
    for (request, what, settings) in [
        (
            api.get(&format!("{PLUG}/config")),
            "ask",
            json!({"reportPeriod": 60}),
        ),
        (
            api.post(&format!("{PLUG}/config"))
                .json(&json!({"reportPeriod": 30})),
            "set",
            json!({"reportPeriod": 30}),
        ),
    ] {
        let (status, body) = api.send(request).await;
        assert_eq!(status, StatusCode::OK, "{what}: {body}");
        assert_eq!(body["answer"]["Payload"], json!({"Settings": settings}));
    }
    assert_eq!(
        api.ok(PLUG).await["config"],
        json!({"Settings": {"reportPeriod": 30}})
    );

    // 13: firmware ask, answered by a firmware report (which is acked too).
    let report = json!({"HardVer": "h1", "SoftVer": "1.0.1", "Type": 2});
    let (status, body) = api.send(api.get(&format!("{PLUG}/firmware"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["answer"]["HeaderCtrl"], 8);
    assert_eq!(body["answer"]["Payload"], report);
    let state = api.ok(PLUG).await;
    assert_eq!(state["firmware"]["default"], report);
    // No firmware server: no OTA progress.
    assert_eq!(state["ota"], json!({}));

    // 7: passthrough downlink, acked on downlink_ack.
    let (status, body) = api
        .send(
            api.post(&format!("{PLUG}/passthrough"))
                .json(&json!("AQID")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["answer"]["HeaderCtrl"], 7);
    assert_eq!(body["answer"]["Payload"]["Code"], "200");
    let data = request(&device, |r| match r {
        Request::Passthrough(d) => Some(d),
        _ => None,
    })
    .await;
    assert_eq!(data, json!("AQID"));
    assert_eq!(device.counters().session.bad_frames, 0);
    device.shutdown().await;

    // What no runtime device answers, from a wire. A bad answer (set ack Data out of the
    // model's range): 502 with the answer.
    let mut dev = Wire::online(addr, &params).await;
    let ((status, body), ()) = tokio::join!(
        api.send(
            api.post(&format!("{PLUG}/properties"))
                .json(&json!({"switch": 1}))
        ),
        async {
            let m = dev
                .expect(TopicKind::PropertySet, HeaderCtrl::PropertySet)
                .await;
            let ack = AckPayload::success(Some(json!({"power": 99_999})));
            dev.answer(&m, ack.to_value()).await;
        }
    );
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert!(error(&body).contains("above the maximum 3500"), "{body}");
    assert_eq!(body["answer"]["HeaderCtrl"], 20);
    assert_eq!(body["answer"]["Payload"]["Data"], json!({"power": 99_999}));

    // No answer within ?timeout_ms: 504 (the command did go out).
    let started = Instant::now();
    let ((status, body), m) = tokio::join!(
        api.send(api.get(&format!("{PLUG}/config?timeout_ms=200"))),
        dev.next()
    );
    assert_eq!(status, StatusCode::GATEWAY_TIMEOUT, "{body}");
    assert_eq!(m.topic.kind(), TopicKind::AskConfig);
    assert!(error(&body).contains("no answer"), "{body}");
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < WAIT);

    // Requests the API refuses before sending anything.
    for (request, status) in [
        (
            api.post("/api/devices/AA30C505/NOSUCH01/properties")
                .json(&json!({"switch": 1})),
            StatusCode::NOT_FOUND,
        ),
        (
            api.post("/api/devices/AA30C505/NOSUCH01/services/reset"),
            StatusCode::NOT_FOUND,
        ),
        (
            api.get("/api/devices/AA30C505/NOSUCH01/config"),
            StatusCode::NOT_FOUND,
        ),
        (
            api.post(&format!("{PLUG}/properties/ask"))
                .json(&json!({"params": "power"})),
            StatusCode::BAD_REQUEST,
        ),
        (
            api.post(&format!("{PLUG}/properties")).json(&json!(5)),
            StatusCode::BAD_REQUEST,
        ),
        (
            api.post(&format!("{PLUG}/passthrough")).body("not json"),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, body) = api.send(request).await;
        assert_eq!(got, status, "{body}");
        assert!(body["error"].is_string(), "{body}");
    }
    assert!(dev.quiet_for(Duration::from_millis(200)).await);
}

/// 3000 bytes that are not all alike.
fn image_bytes() -> Vec<u8> {
    (0..3000u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(7))
        .collect()
}

#[tokio::test]
async fn ota_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_with_data(dir.path()).await;
    let api = Api::new(&sim);
    let bytes = image_bytes();

    // Upload the image, then make it the product's target.
    let (status, image) = api
        .send(
            api.put("/api/firmware/AA30C505/default/1.0.2/plug.bin")
                .body(bytes.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    assert_eq!(image["size"], bytes.len());
    assert_eq!(image["md5"], md5_hex(&bytes));
    assert_eq!(image["path"], "/firmware/AA30C505/default/1.0.2/plug.bin");
    // Images and tasks belong to registered products.
    let (status, body) = api
        .send(
            api.put("/api/firmware/0BADF00D/default/1.0.2/plug.bin")
                .body(bytes.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(
        error(&body).contains("product 0BADF00D is not registered"),
        "{body}"
    );
    let (status, _) = api
        .send(
            api.put("/api/ota/0BADF00D/default")
                .json(&json!({"version": "1.0.2"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, task) = api
        .send(
            api.put("/api/ota/AA30C505/default")
                .json(&json!({"version": "1.0.2"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{task}");
    assert_eq!(
        task,
        json!({"product_id": "AA30C505", "module": "default", "version": "1.0.2", "serial": 1})
    );
    assert_eq!(api.ok("/api/firmware").await, json!([image]));
    assert_eq!(api.ok("/api/ota").await, json!([task]));
    // Refusals: a task for a version never uploaded, an empty image.
    let (status, body) = api
        .send(
            api.put("/api/ota/AA30C505/default")
                .json(&json!({"version": "9.9.9"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error(&body).contains("9.9.9"), "{body}");
    let (status, body) = api
        .send(api.put("/api/firmware/AA30C505/default/1.0.3/plug.bin"))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // The device logs in reporting 1.0.1: the report is acked, a notify for 1.0.2 follows,
    // and the device acks it with its DownID.
    let device = plug()
        .plug(sim.mqtt_addr().unwrap())
        .firmware("h1", "1.0.1");
    let device = online(device.time_sync(false)).await;
    let notify = request(&device, |r| match r {
        Request::OtaNotify(n) => Some(OtaNotify::clone(&n)),
        _ => None,
    })
    .await;
    let url = format!(
        "http://{}/firmware/AA30C505/default/1.0.2/plug.bin",
        sim.http_addr().unwrap()
    );
    assert_eq!(notify.url, url);
    assert_eq!(notify.soft_ver, "1.0.2");
    assert_eq!(notify.soft_size, bytes.len() as u64);
    assert_eq!(notify.md5, md5_hex(&bytes));
    assert_eq!(notify.upgrade_type, 2);
    assert_eq!(notify.firmware_name.as_deref(), Some("plug.bin"));
    assert_eq!(notify.module, None);
    let down_id = notify.down_id.clone();
    let ota = api
        .until(PLUG, |d| d["ota"]["default"]["status"] == "acked")
        .await["ota"]["default"]
        .clone();
    assert_eq!(
        (&ota["DownID"], &ota["SoftVer"]),
        (&json!(down_id), &json!("1.0.2"))
    );

    // It downloads the image, whole and in part, and checks size and MD5.
    let response = reqwest::get(&url).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.bytes().await.unwrap();
    assert_eq!(body.len() as u64, notify.soft_size);
    assert_eq!(md5_hex(&body), notify.md5);
    let response = api
        .client
        .get(&url)
        .header(RANGE, "bytes=1000-1999")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(
        response.headers()[CONTENT_RANGE],
        format!("bytes 1000-1999/{}", bytes.len()).as_str()
    );
    assert_eq!(response.bytes().await.unwrap(), bytes[1000..2000]);

    // It installs and reports 1.0.2: acked, no new notify, the OTA succeeded.
    device.set_soft_ver(None, "1.0.2");
    let state = api
        .until(PLUG, |d| d["ota"]["default"]["status"] == "succeeded")
        .await;
    assert_eq!(state["ota"]["default"]["version"], "1.0.2");
    assert_eq!(state["ota"]["default"]["notifies"], 1);
    assert_eq!(state["firmware"]["default"]["SoftVer"], "1.0.2");
    assert_eq!(state["ota"]["default"]["DownID"], down_id.as_str());
    assert!(no_request(&device, Duration::from_millis(300)).await);

    // A notify on demand, whatever the device runs.
    let ((status, body), again) = tokio::join!(api.send(api.post(&format!("{PLUG}/ota"))), async {
        request(&device, |r| match r {
            Request::OtaNotify(n) => Some(OtaNotify::clone(&n)),
            _ => None,
        })
        .await
    });
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["answer"]["HeaderCtrl"], 9);
    assert_eq!(again.soft_ver, "1.0.2");
    assert_ne!(again.down_id, down_id);
    // No task for that module: 409, nothing sent.
    let (status, body) = api
        .send(
            api.post(&format!("{PLUG}/ota"))
                .json(&json!({"module": "wifi"})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(error(&body).contains("wifi"), "{body}");
    assert!(no_request(&device, Duration::from_millis(200)).await);
    assert_eq!(device.counters().session.bad_frames, 0);
}

#[tokio::test]
async fn firmware_needs_a_data_directory() {
    let sim = start().await;
    let api = Api::new(&sim);
    let (status, body) = api
        .send(
            api.put("/api/firmware/AA30C505/default/1.0.2/plug.bin")
                .body(image_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(error(&body).contains("data directory"), "{body}");
    let (status, _) = api.send(api.get("/api/ota")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = api.send(api.post(&format!("{PLUG}/ota"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
}

/// Firmware images are often larger than a JSON body: a few megabytes upload whole.
#[tokio::test]
async fn large_firmware_images_upload() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_with_data(dir.path()).await;
    let api = Api::new(&sim);
    let bytes: Vec<u8> = (0..6 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let (status, image) = api
        .send(
            api.put("/api/firmware/AA30C505/default/2.0.0/big.bin")
                .body(bytes.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{image}");
    assert_eq!(image["size"], bytes.len());
    assert_eq!(image["md5"], md5_hex(&bytes));
    let body = reqwest::get(api.url("/firmware/AA30C505/default/2.0.0/big.bin"))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len(), bytes.len());
}

#[tokio::test]
async fn faults_over_http() {
    let sim = start().await;
    let api = Api::new(&sim);
    let addr = sim.mqtt_addr().unwrap();
    // Acks awaited 1 s; after a drop, 5 s before the next login.
    let device = plug()
        .plug(addr)
        .time_sync(false)
        .ack_timeout(Duration::from_secs(1))
        .backoff(BackoffConfig {
            base: Duration::from_secs(5),
            cap: Duration::from_secs(5),
            jitter: 0.0,
        });
    let device = online(device).await;
    common::wait_for("firmware reported", || {
        sim.platform()
            .state("firmware", "7ED01E2A/AA30C505/PLUG0001/default")
            .is_some()
    })
    .await;
    assert_eq!(
        api.ok("/api/faults").await,
        json!({"silent": false, "delay_ms": 0, "busy_auths": 0})
    );

    // Silent: the report is not acked.
    let (status, body) = api
        .send(api.put("/api/faults").json(&json!({"silent": true})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"silent": true, "delay_ms": 0, "busy_auths": 0})
    );
    let report = || SmartPlugReport::default().with_switch(true);
    let silent = acked(device.report(report())).await;
    assert!(
        matches!(silent, Err(x_runtime::DeliveryError::Timeout(_))),
        "{silent:?}"
    );

    // Delayed: the ack comes, late.
    let (status, body) = api
        .send(
            api.put("/api/faults")
                .json(&json!({"silent": false, "delay_ms": 300, "busy_auths": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"silent": false, "delay_ms": 300, "busy_auths": 0})
    );
    let sent = Instant::now();
    acked(device.report(report())).await.unwrap();
    let took = sent.elapsed();
    assert!(took >= Duration::from_millis(300), "{took:?}");
    let (status, body) = api
        .send(api.put("/api/faults").json(&json!({"delay_ms": 0})))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"silent": false, "delay_ms": 0, "busy_auths": 0})
        )
    );
    let (status, body) = api
        .send(api.put("/api/faults").json(&json!({"slow": true})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(error(&body).contains("slow"), "{body}");

    // History refused by policy: a 4001 about no entry, until "" lifts it.
    let (status, body) = api
        .send(
            api.put("/api/faults")
                .json(&json!({"refuse_history": "paused"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!({"silent": false, "delay_ms": 0, "busy_auths": 0, "refuse_history": "paused"})
    );
    let refused = acked(device.history(json!({"params": [{"properties": [
        {"power": {"value": 1.5, "time": 1_700_000_000_000_i64}}
    ]}]})))
    .await;
    assert!(
        matches!(&refused, Err(x_runtime::DeliveryError::Rejected { reason, .. }) if reason == "paused"),
        "{refused:?}"
    );
    let (status, body) = api
        .send(api.put("/api/faults").json(&json!({"refuse_history": ""})))
        .await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"silent": false, "delay_ms": 0, "busy_auths": 0})
        )
    );

    // Drop: the connection closes, the device shows offline (and stays so while it waits).
    let mut states = device.connection();
    let (status, body) = api.send(api.post(&format!("{PLUG}/drop"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({"dropped": true}));
    let offline = states.wait_for(|s| matches!(s, ConnectionState::Offline { .. }));
    tokio::time::timeout(WAIT, offline).await.unwrap().unwrap();
    api.until(PLUG, |d| d["online"] == false).await;
    let (_, body) = api.send(api.post(&format!("{PLUG}/drop"))).await;
    assert_eq!(body, json!({"dropped": false}));
    device.shutdown().await;

    // Session rotation: a plain product has none; an encrypted one's device gets 3.
    let (status, body) = api.send(api.post(&format!("{PLUG}/session/rotate"))).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let dir = tempfile::tempdir().unwrap();
    let enc = common::encrypted("ENC00001")
        .plug(addr)
        .state_dir(dir.path());
    let enc = online(enc).await;
    let path = "/api/devices/5E7A0B32/ENC00001";
    let before = api.ok(path).await["session_id"].clone();
    assert!(before.is_string(), "{before}");
    let (status, body) = api.send(api.post(&format!("{path}/session/rotate"))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let grant: SessionGrant = serde_json::from_value(body.clone()).unwrap();
    // The device took the new session from the HeaderCtrl 3 frame.
    request(&enc, |r| matches!(r, Request::KeyRotated).then_some(())).await;
    assert_eq!(
        enc.persisted().unwrap().unwrap().session,
        Some(grant.clone())
    );
    assert_eq!(api.ok(path).await["session_id"], grant.session_id.as_str());
    assert_ne!(before, grant.session_id.as_str());
    // The new key works.
    let report = SmartPlugReport::default().with_switch(false);
    acked(enc.report(report)).await.unwrap();

    // Busy: the next two auth requests are answered code 1; a device keeps trying (connect()
    // does not give up on a refusal that retrying fixes) and gets online with the third.
    let (status, body) = api
        .send(api.put("/api/faults").json(&json!({"busy_auths": 2})))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["busy_auths"], 2);
    let dir = tempfile::tempdir().unwrap();
    let busy = common::encrypted("ENC00002")
        .plug(addr)
        .state_dir(dir.path())
        .backoff(BackoffConfig {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(2),
            jitter: 0.0,
        });
    let busy = online(busy).await;
    assert!(busy.is_online());
    // Both busy answers were given (the fault counts them down), then the login worked.
    assert_eq!(api.ok("/api/faults").await["busy_auths"], 0);
}

/// A disk that fails is the server's fault, not the client's.
#[tokio::test]
async fn a_failing_disk_is_a_server_error() {
    let dir = tempfile::tempdir().unwrap();
    let sim = start_with_data(dir.path()).await;
    let api = Api::new(&sim);
    // Images cannot be written where a file stands in for their directory.
    let images = dir.path().join("firmware/images");
    std::fs::remove_dir_all(&images).unwrap();
    std::fs::write(&images, b"not a directory").unwrap();
    let (status, body) = api
        .send(
            api.put("/api/firmware/AA30C505/default/1.0.2/plug.bin")
                .body(image_bytes()),
        )
        .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR, "{body}");
    assert!(error(&body).contains("images"), "{body}");
    assert_eq!(api.ok("/api/firmware").await, json!([]));
}
