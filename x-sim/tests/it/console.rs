//! The web console in a real browser (headless Chromium through chromedriver) against
//! `x-sim serve` as a user runs it, with a device of the SDK's runtime online: the device
//! list shows it online, a property set from the form reaches the device and its answer
//! appears beside the form, the live log shows a report as it happens, and the chart draws
//! the property's values. Screenshots go to `target/` (and to `docs/` with
//! `UPDATE_SCREENSHOTS=1`). Also: the HTTP token, in a browser and over plain HTTP.
#![allow(clippy::unwrap_used)]

use crate::common;

use std::time::Duration;

use common::browser::Browser;
use common::smart_plug::SmartPlugReport;
use common::{Api, Serve, acked, online, plug, plug_device};
use reqwest::StatusCode;
use serde_json::json;
use x_runtime::Request;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_shows_a_live_device_and_drives_it() {
    let dir = tempfile::tempdir().unwrap();
    let toml = [common::plug_product(), plug_device("PLUG0001", "")].concat();
    let data = dir.path().join("data");
    let serve = Serve::local(
        &common::registry_file(dir.path(), &toml),
        &["--data", data.to_str().unwrap()],
    );
    let http = serve.http.unwrap();
    let device = online(plug().plug(serve.mqtt.unwrap())).await;
    for power in [12.5, 30.0, 21.5] {
        acked(device.report(SmartPlugReport::default().with_power(power)))
            .await
            .unwrap();
    }

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://{http}/"))
        .await
        .unwrap();

    // The device list: the plug online, its firmware, no violations.
    let row = r#"tr[data-device="AA30C505/PLUG0001"]"#;
    browser
        .until(
            "the device online",
            &format!("{row} td[data-online=true]"),
            |t| t.contains("online"),
        )
        .await;
    let text = browser
        .until("the device row", row, |t| t.contains("1.0.0"))
        .await;
    assert!(
        text.contains("PLUG0001") && text.contains("智能插座"),
        "{text}"
    );
    assert_eq!(
        browser.texts(&format!("{row} [data-violations]")).await,
        vec!["0".to_owned()]
    );
    browser.screenshot("console-devices").await;

    // The device page: properties typed by the model (unit, enum labels, ranges).
    browser.click(&format!("{row} a")).await;
    let power = browser
        .until(
            "the latest power",
            r#"#properties tr[data-property="power"]"#,
            |t| t.contains("21.5 W"),
        )
        .await;
    assert!(power.contains("0 … 3500, step 0.1"), "{power}");
    browser
        .until(
            "switch with its label",
            r#"#properties tr[data-property="switch"]"#,
            |t| t.contains("0=off, 1=on"),
        )
        .await;

    // The chart: one point per value reported.
    assert!(
        browser
            .until_count("chart points", "#chart circle.pt", 3)
            .await
            >= 3
    );

    // The live log: a report made now shows up, upward, with its plain payload.
    acked(device.report(SmartPlugReport::default().with_power(42.5)))
        .await
        .unwrap();
    let logged = browser
        .until(
            "the report in the live log",
            r#"#log tr[data-kind=message][data-direction=up][data-hc="16"]"#,
            |t| t.contains(r#""power":42.5"#),
        )
        .await;
    assert!(logged.contains("PropertyReport"), "{logged}");
    assert!(
        browser
            .until_count("chart points", "#chart circle.pt", 4)
            .await
            >= 4
    );

    // A property set from the form: the device gets it, and its answer is shown.
    browser.select(r#"select[data-field="switch"]"#, "1").await;
    browser
        .select(r#"select[data-field="childLock"]"#, "1")
        .await;
    browser.click("#send-set").await;
    let set = common::request(&device, |r| match r {
        Request::PropertiesSet(set) => Some(set),
        _ => None,
    })
    .await;
    assert_eq!(set.switch, Some(true), "{set:?}");
    assert_eq!(set.child_lock, Some(true), "{set:?}");
    let answer = browser
        .until(
            "the device's answer",
            r#"#answer[data-status="200"]"#,
            |t| t.contains("property set: HTTP 200"),
        )
        .await;
    assert!(answer.contains(r#""Code": "200""#), "{answer}");
    assert!(answer.contains(r#""switch": 1"#), "{answer}");
    assert!(device.state().switch && device.state().child_lock);
    // The device reports what it now is; the page labels it from the model.
    acked(
        device.report(
            SmartPlugReport::default()
                .with_switch(true)
                .with_child_lock(true)
                .with_power(880.0),
        ),
    )
    .await
    .unwrap();
    browser
        .until(
            "switch on",
            r#"#properties tr[data-property="switch"] td.value"#,
            |t| t == "1 (on)",
        )
        .await;
    browser.screenshot("console-device").await;
    // The command and its answer went through the live log too.
    browser
        .until(
            "the set going down",
            r#"#log tr[data-direction=down][data-hc="20"]"#,
            |t| t.contains("PropertySet"),
        )
        .await;

    // A service call from its generated form, answered by the device's handler.
    browser.click(r#".tabs button[data-tab="service"]"#).await;
    browser.select("#service", "reset").await;
    browser.select(r#"select[data-field="scope"]"#, "0").await;
    browser.click("#send-service").await;
    let answer = browser
        .until(
            "the service's answer",
            r#"#answer[data-status="200"]"#,
            |t| t.contains("service reset: HTTP 200"),
        )
        .await;
    assert!(answer.contains("1700000000000"), "{answer}");

    // Firmware and OTA tasks: an image uploaded from a file and a task set from the forms;
    // the device, asked for its version, is notified of the task.
    browser.click(r#"a[data-nav="firmware"]"#).await;
    browser
        .until("the firmware page", "#images", |t| {
            t.contains("No images uploaded")
        })
        .await;
    browser
        .until("the task list", "#tasks", |t| t.contains("No OTA task"))
        .await;
    let image = dir.path().join("plug-1.0.1.bin");
    std::fs::write(&image, vec![0x5Au8; 4096]).unwrap();
    browser.type_into("#upload-version", "1.0.1").await;
    browser
        .type_into("#upload-file", image.to_str().unwrap())
        .await;
    browser.click("#upload-send").await;
    browser
        .until("the upload's MD5", "#upload-result", |t| {
            t.starts_with("uploaded: MD5 ")
        })
        .await;
    browser
        .until("the image listed", "#images", |t| {
            t.contains("plug-1.0.1.bin") && t.contains("4096 B")
        })
        .await;
    browser.type_into("#task-version", "1.0.1").await;
    browser.click("#task-send").await;
    browser
        .until("the task listed", "#tasks", |t| t.contains("serial"))
        .await;
    browser.screenshot("console-firmware").await;
    let asked = tokio::spawn({
        let api = Api::at(http);
        async move {
            api.send(api.get("/api/devices/AA30C505/PLUG0001/firmware"))
                .await
                .0
        }
    });
    let notify = common::request(&device, |r| match r {
        Request::OtaNotify(n) => Some(n),
        _ => None,
    })
    .await;
    assert_eq!(asked.await.unwrap(), StatusCode::OK);
    assert_eq!(
        (notify.soft_ver.as_str(), notify.soft_size),
        ("1.0.1", 4096)
    );
    drop(browser);
    device.shutdown().await;
    serve.kill();
}

/// A violation is counted on the device list and highlighted on the device page, live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn violations_are_highlighted() {
    let dir = tempfile::tempdir().unwrap();
    let toml = [common::plug_product(), plug_device("PLUG0001", "")].concat();
    let serve = Serve::local(&common::registry_file(dir.path(), &toml), &[]);
    let http = serve.http.unwrap();
    let mut wire = common::wire::Wire::online(serve.mqtt.unwrap(), &plug()).await;

    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://{http}/#/device/AA30C505/PLUG0001"))
        .await
        .unwrap();
    browser
        .until("the empty violation list", "#violations", |t| {
            t.contains("No rule broken")
        })
        .await;
    // Give the page's live stream a moment to open before the device misbehaves.
    tokio::time::sleep(Duration::from_millis(500)).await;
    common::refused_report(&mut wire).await;
    let row = browser
        .until("the violation in the live log", "#log tr.violation", |t| {
            t.contains("above the maximum 3500")
        })
        .await;
    assert!(!row.is_empty());
    browser
        .until("the violation listed", "#violations", |t| {
            t.contains("above the maximum 3500")
        })
        .await;
    browser.click(r##"a[href="#/"]"##).await;
    browser
        .until(
            "the count on the device list",
            r#"tr[data-device="AA30C505/PLUG0001"] .badge.bad[data-violations]"#,
            |t| t.starts_with("1 violation"),
        )
        .await;
    drop(browser);
    serve.kill();
}

/// With a token, every request without it is refused (401), a browser gets in once with
/// `/?token=` (kept in a cookie, taken off the address), and devices download the firmware
/// named in their notifies by its signed URL. Without a token, a non-loopback address is
/// refused at start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_the_api_and_the_console() {
    let dir = tempfile::tempdir().unwrap();
    let toml = [common::plug_product(), plug_device("PLUG0001", "")].concat();
    let config = common::registry_file(dir.path(), &toml);

    // Beyond loopback with no token: exit 2 naming --token.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_x-sim"))
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0", "--http", "0.0.0.0:0"])
        .env_remove("X_SIM_TOKEN")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("error: --token: "), "{stderr}");
    assert!(stderr.contains("not a loopback address"), "{stderr}");

    let token = "correct horse battery staple";
    let data = dir.path().join("data");
    let serve = Serve::local(
        &config,
        &["--data", data.to_str().unwrap(), "--token", token],
    );
    let http = serve.http.unwrap();
    let api = Api::at(http);
    for path in [
        "/api/devices",
        "/",
        "/console.js",
        "/api/stream",
        "/api/firmware",
    ] {
        let (status, body) = api.send(api.get(path)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("HTTP token"),
            "{body}"
        );
    }
    let (status, _) = api
        .send(api.get("/api/devices").bearer_auth("wrong token"))
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, devices) = api.send(api.get("/api/devices").bearer_auth(token)).await;
    assert_eq!(status, StatusCode::OK, "{devices}");
    // The token is never logged.
    assert!(!serve.log().iter().any(|l| l.contains(token)));

    // Firmware: uploaded and set with the token; the device's notify names a signed URL,
    // which serves the image with no token; the same URL without its signature, or the
    // signature of another image, does not.
    let (status, _) = api
        .send(
            api.put("/api/firmware/AA30C505/default/1.0.1/plug.bin")
                .bearer_auth(token)
                .body(vec![7u8; 1000]),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = api
        .send(
            api.put("/api/ota/AA30C505/default")
                .bearer_auth(token)
                .body(json!({"version": "1.0.1"}).to_string()),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let device = online(plug().plug(serve.mqtt.unwrap())).await;
    let notify = common::request(&device, |r| match r {
        Request::OtaNotify(notice) => Some(notice),
        _ => None,
    })
    .await;
    let url = notify.url.clone();
    assert!(
        url.contains("/firmware/AA30C505/default/1.0.1/plug.bin?sig="),
        "{url}"
    );
    assert!(!url.contains("horse"), "{url}");
    let client = reqwest::Client::new();
    let image = client.get(&url).send().await.unwrap();
    assert_eq!(image.status(), StatusCode::OK);
    assert_eq!(image.bytes().await.unwrap().len(), 1000);
    let unsigned = url.split('?').next().unwrap();
    assert_eq!(
        client.get(unsigned).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    let other = url.replace("1.0.1", "1.0.2");
    assert_eq!(
        client.get(&other).send().await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    device.shutdown().await;

    // A browser: refused without the token; with ?token= once, it gets the page, the
    // address loses the token, and the page's own requests (fetch, the live stream) work.
    let browser = Browser::start().await;
    browser
        .client
        .goto(&format!("http://{http}/"))
        .await
        .unwrap();
    browser
        .until("the refusal", "body", |t| {
            t.contains("needs its HTTP token")
        })
        .await;
    let with_token = format!("http://{http}/?token={}", token.replace(' ', "%20"));
    browser.client.goto(&with_token).await.unwrap();
    browser
        .until(
            "the device list",
            r#"tr[data-device="AA30C505/PLUG0001"]"#,
            |t| t.contains("PLUG0001"),
        )
        .await;
    let address = browser.client.current_url().await.unwrap();
    assert!(!address.as_str().contains("token"), "{address}");
    browser
        .until("the live stream open", "#live", |t| t == "live")
        .await;
    drop(browser);
    serve.kill();
}
