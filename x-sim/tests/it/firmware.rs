//! The firmware server and OTA task list: uploads kept on disk across reopen, downloads over
//! real HTTP (full, ranges, HEAD, 404), input validation and the OTA notify decision.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use md5::{Digest, Md5};
use reqwest::StatusCode;
use reqwest::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, LAST_MODIFIED, RANGE,
};
use x_protocol::payload::{FirmwareReport, OtaNotify};
use x_sim::firmware::{Firmware, FirmwareError, FirmwareImage, OtaTask};

const PRODUCT: &str = "AA30C505";
const OTHER_PRODUCT: &str = "BB30C505";

/// 1000 bytes that are not all alike, so a wrong slice shows.
fn image_bytes(seed: u8) -> Vec<u8> {
    (0..1000u32)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn md5_hex(bytes: &[u8]) -> String {
    Md5::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Serves `firmware.routes()` on a free port; returns the base URL.
async fn serve(firmware: &Firmware) -> String {
    // The workspace's reqwest has no rustls provider of its own (see x-sim's Cargo.toml).
    crate::common::http_ready();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let router = firmware.routes();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

fn report(soft_ver: &str, module: Option<&str>) -> FirmwareReport {
    FirmwareReport {
        hard_ver: "H1".to_owned(),
        soft_ver: soft_ver.to_owned(),
        upgrade_type: 2,
        module: module.map(str::to_owned),
    }
}

#[tokio::test]
async fn full_download_matches_the_upload() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    let bytes = image_bytes(1);
    let image = firmware
        .upload(PRODUCT, "default", "1.0.1", "plug-1.0.1.bin", &bytes)
        .unwrap();
    assert_eq!(
        image,
        FirmwareImage {
            product_id: PRODUCT.to_owned(),
            module: "default".to_owned(),
            version: "1.0.1".to_owned(),
            file_name: "plug-1.0.1.bin".to_owned(),
            size: 1000,
            md5: md5_hex(&bytes),
            path: format!("/firmware/{PRODUCT}/default/1.0.1/plug-1.0.1.bin"),
        }
    );
    assert_eq!(image.md5.len(), 32);
    assert_eq!(image.md5, image.md5.to_ascii_lowercase());

    let base = serve(&firmware).await;
    let response = reqwest::get(format!("{base}{}", image.path)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], "1000");
    assert_eq!(response.headers()[ACCEPT_RANGES], "bytes");
    assert_eq!(response.headers()[CONTENT_TYPE], "application/octet-stream");
    assert!(response.headers().contains_key(LAST_MODIFIED));
    let body = response.bytes().await.unwrap();
    assert_eq!(&body[..], &bytes[..]);
    assert_eq!(md5_hex(&body), image.md5);
}

#[tokio::test]
async fn ranges_head_and_unknown_images() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    let bytes = image_bytes(2);
    let image = firmware
        .upload(PRODUCT, "wifi", "2.0", "wifi.bin", &bytes)
        .unwrap();
    let base = serve(&firmware).await;
    let url = format!("{base}{}", image.path);
    let client = reqwest::Client::new();

    // A closed range.
    let response = client
        .get(&url)
        .header(RANGE, "bytes=10-19")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 10-19/1000");
    assert_eq!(response.headers()[CONTENT_LENGTH], "10");
    assert_eq!(&response.bytes().await.unwrap()[..], &bytes[10..20]);

    // An open-ended range: resuming a download.
    let response = client
        .get(&url)
        .header(RANGE, "bytes=100-")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 100-999/1000");
    assert_eq!(&response.bytes().await.unwrap()[..], &bytes[100..]);

    // A suffix range: the last 16 bytes.
    let response = client
        .get(&url)
        .header(RANGE, "bytes=-16")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 984-999/1000");
    assert_eq!(&response.bytes().await.unwrap()[..], &bytes[984..]);

    // Past the end.
    let response = client
        .get(&url)
        .header(RANGE, "bytes=5000-6000")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes */1000");

    // HEAD: the headers of a GET, no body.
    let response = client.head(&url).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], "1000");
    assert_eq!(response.headers()[ACCEPT_RANGES], "bytes");
    assert!(response.bytes().await.unwrap().is_empty());

    // Unknown version, unknown product, and a known image under another file name.
    for path in [
        format!("/firmware/{PRODUCT}/wifi/9.9/wifi.bin"),
        format!("/firmware/{OTHER_PRODUCT}/wifi/2.0/wifi.bin"),
        format!("/firmware/{PRODUCT}/default/2.0/wifi.bin"),
        format!("/firmware/{PRODUCT}/wifi/2.0/other.bin"),
    ] {
        let response = client.get(format!("{base}{path}")).send().await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path}");
        assert!(
            response.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/plain")
        );
        let text = response.text().await.unwrap();
        assert!(text.contains("firmware image not found"), "{text}");
    }
    let text = client
        .get(format!("{base}/firmware/{PRODUCT}/wifi/9.9/wifi.bin"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("9.9") && text.contains("wifi"), "{text}");
}

#[tokio::test]
async fn names_that_need_percent_encoding_download() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    let bytes = image_bytes(3);
    let image = firmware
        .upload(PRODUCT, "ble core", "V1.0 (rc#1)", "fw 100%.bin", &bytes)
        .unwrap();
    assert_eq!(
        image.path,
        format!("/firmware/{PRODUCT}/ble%20core/V1.0%20%28rc%231%29/fw%20100%25.bin")
    );
    let base = serve(&firmware).await;
    let response = reqwest::get(format!("{base}{}", image.path)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(&response.bytes().await.unwrap()[..], &bytes[..]);
}

#[tokio::test]
async fn reupload_replaces_the_image() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    let base = serve(&firmware).await;
    let first = firmware
        .upload(PRODUCT, "default", "1.0", "a.bin", &image_bytes(4))
        .unwrap();
    let second_bytes = image_bytes(5)[..700].to_vec();
    let second = firmware
        .upload(PRODUCT, "default", "1.0", "b.bin", &second_bytes)
        .unwrap();
    assert_eq!(second.size, 700);
    assert_ne!(first.md5, second.md5);
    assert_eq!(firmware.images(), vec![second.clone()]);
    assert_eq!(
        firmware.image(PRODUCT, "default", "1.0"),
        Some(second.clone())
    );

    let old = reqwest::get(format!("{base}{}", first.path)).await.unwrap();
    assert_eq!(old.status(), StatusCode::NOT_FOUND);
    let new = reqwest::get(format!("{base}{}", second.path))
        .await
        .unwrap();
    assert_eq!(&new.bytes().await.unwrap()[..], &second_bytes[..]);

    // The replaced file is gone from disk: one image file left.
    let files = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .count();
    assert_eq!(files, 1);
}

#[tokio::test]
async fn reopening_the_directory_keeps_images_and_tasks() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image_bytes(6);
    {
        let firmware = Firmware::open(dir.path()).unwrap();
        firmware
            .upload(PRODUCT, "default", "1.0", "one.bin", &image_bytes(7))
            .unwrap();
        firmware
            .upload(PRODUCT, "default", "2.0", "two.bin", &bytes)
            .unwrap();
        firmware
            .upload(OTHER_PRODUCT, "wifi", "3.0", "three.bin", &image_bytes(8))
            .unwrap();
        firmware.set_task(PRODUCT, "default", "2.0").unwrap();
        firmware.set_task(OTHER_PRODUCT, "wifi", "3.0").unwrap();
        firmware.remove_task(OTHER_PRODUCT, "wifi").unwrap();
    }
    // Leftovers of an interrupted write are cleaned up on open.
    std::fs::write(dir.path().join("images/99.bin.tmp"), b"partial").unwrap();
    std::fs::write(dir.path().join("images/98.bin"), b"orphan").unwrap();

    let firmware = Firmware::open(dir.path()).unwrap();
    let images = firmware.images();
    assert_eq!(images.len(), 3);
    let two = firmware.image(PRODUCT, "default", "2.0").unwrap();
    assert_eq!(two.md5, md5_hex(&bytes));
    assert_eq!(two.size, 1000);
    assert_eq!(
        firmware.tasks(),
        vec![OtaTask {
            product_id: PRODUCT.to_owned(),
            module: "default".to_owned(),
            version: "2.0".to_owned(),
            serial: 1,
        }]
    );
    assert!(!dir.path().join("images/99.bin.tmp").exists());
    assert!(!dir.path().join("images/98.bin").exists());

    // New uploads after reopen do not reuse a file still in use.
    firmware
        .upload(PRODUCT, "default", "4.0", "four.bin", &image_bytes(9))
        .unwrap();
    let base = serve(&firmware).await;
    let body = reqwest::get(format!("{base}{}", two.path))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&body[..], &bytes[..]);
    // Task serials go on after the reopen (two tasks were set before it): a task set again
    // is a new one.
    let again = firmware.set_task(PRODUCT, "default", "2.0").unwrap();
    assert_eq!(again.serial, 3);
}

#[test]
fn an_index_naming_a_missing_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    {
        let firmware = Firmware::open(dir.path()).unwrap();
        firmware
            .upload(PRODUCT, "default", "1.0", "one.bin", &image_bytes(1))
            .unwrap();
    }
    let file = std::fs::read_dir(dir.path().join("images"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::remove_file(&file).unwrap();
    let err = Firmware::open(dir.path()).unwrap_err();
    assert!(matches!(err, FirmwareError::Index { .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("index.json"), "{message}");
    assert!(message.contains(&file.display().to_string()), "{message}");
}

#[test]
fn inputs_are_validated() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    let bytes = image_bytes(1);
    let cases: [(&str, &str, &str, &str, &str, &str); 11] = [
        ("XYZ", "default", "1.0", "a.bin", "product_id", "XYZ"),
        (
            "AA30C50",
            "default",
            "1.0",
            "a.bin",
            "product_id",
            "AA30C50",
        ),
        (PRODUCT, "", "1.0", "a.bin", "module", ""),
        (PRODUCT, "a/b", "1.0", "a.bin", "module", "a/b"),
        (PRODUCT, "default", "..", "a.bin", "version", ".."),
        (PRODUCT, "default", "1..0", "a.bin", "version", "1..0"),
        (PRODUCT, "default", "1.0é", "a.bin", "version", "1.0é"),
        (PRODUCT, "default", "1.0\n", "a.bin", "version", "1.0\n"),
        (PRODUCT, "default", "1.0 ", "a.bin", "version", "1.0 "),
        (
            PRODUCT,
            "default",
            "1.0",
            "../a.bin",
            "file_name",
            "../a.bin",
        ),
        (PRODUCT, "default", "1.0", ".", "file_name", "."),
    ];
    for (product, module, version, file_name, field, value) in cases {
        let err = firmware
            .upload(product, module, version, file_name, &bytes)
            .unwrap_err();
        match &err {
            FirmwareError::Invalid {
                field: f, value: v, ..
            } => {
                assert_eq!((*f, v.as_str()), (field, value), "{err}");
            }
            other => panic!("{other:?}"),
        }
        let message = err.to_string();
        assert!(message.starts_with(field), "{message}");
        assert!(message.contains(&format!("{value:?}")), "{message}");
    }
    let err = firmware
        .upload(PRODUCT, "default", "1.0", "a.bin", &[])
        .unwrap_err();
    assert!(matches!(err, FirmwareError::EmptyImage { .. }), "{err:?}");
    assert!(err.to_string().contains("a.bin"), "{err}");

    // Nothing was stored.
    assert!(firmware.images().is_empty());

    // Tasks validate too, and need the image.
    let err = firmware.set_task(PRODUCT, "a/b", "1.0").unwrap_err();
    assert!(
        matches!(
            err,
            FirmwareError::Invalid {
                field: "module",
                ..
            }
        ),
        "{err:?}"
    );
    let err = firmware.set_task(PRODUCT, "default", "1.0").unwrap_err();
    assert!(matches!(err, FirmwareError::NoSuchImage { .. }), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(PRODUCT) && message.contains("\"default\"") && message.contains("\"1.0\""),
        "{message}"
    );
    assert!(firmware.tasks().is_empty());
    assert_eq!(firmware.remove_task(PRODUCT, "default").unwrap(), None);
}

#[tokio::test]
async fn notify_for_follows_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    let bytes = image_bytes(10);
    let image = firmware
        .upload(PRODUCT, "default", "1.0.2", "plug.bin", &bytes)
        .unwrap();
    let base = serve(&firmware).await;

    // No task yet.
    assert_eq!(
        firmware.notify_for(&base, PRODUCT, &report("1.0.1", None)),
        None
    );

    firmware.set_task(PRODUCT, "default", "1.0.2").unwrap();
    // Same version: nothing to do, also when the module is spelled out.
    assert_eq!(
        firmware.notify_for(&base, PRODUCT, &report("1.0.2", None)),
        None
    );
    assert_eq!(
        firmware.notify_for(&base, PRODUCT, &report("1.0.2", Some("default"))),
        None
    );
    // Other upgrade types and other products: nothing.
    let mut other_type = report("1.0.1", None);
    other_type.upgrade_type = 1;
    assert_eq!(firmware.notify_for(&base, PRODUCT, &other_type), None);
    assert_eq!(
        firmware.notify_for(&base, OTHER_PRODUCT, &report("1.0.1", None)),
        None
    );

    // A different version, even by case or a suffix: an update (exact ASCII equality).
    let notify = firmware
        .notify_for(&format!("{base}/"), PRODUCT, &report("1.0.1", None))
        .unwrap();
    assert_eq!(
        notify,
        OtaNotify {
            upgrade_type: 2,
            url: format!("{base}{}", image.path),
            soft_ver: "1.0.2".to_owned(),
            soft_size: 1000,
            md5: image.md5.clone(),
            down_id: notify.down_id.clone(),
            firmware_name: Some("plug.bin".to_owned()),
            module: None,
        }
    );
    assert!(
        notify.down_id.len() == 8 && notify.down_id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        notify.down_id
    );
    assert!(
        firmware
            .notify_for(&base, PRODUCT, &report("1.0.2 ", None))
            .is_some()
    );
    // "default" spelled out gets a notify without Module, as an absent one.
    let spelled = firmware
        .notify_for(&base, PRODUCT, &report("1.0.0", Some("default")))
        .unwrap();
    assert_eq!(spelled.module, None);

    // The Url downloads the image; size and MD5 check out as the device checks them.
    let body = reqwest::get(&notify.url)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body.len() as u64, notify.soft_size);
    assert_eq!(md5_hex(&body), notify.md5);
    assert_eq!(&body[..], &bytes[..]);

    // The task goes away: no more notifies.
    let removed = firmware.remove_task(PRODUCT, "default").unwrap().unwrap();
    assert_eq!(removed.version, "1.0.2");
    assert_eq!(
        firmware.notify_for(&base, PRODUCT, &report("1.0.1", None)),
        None
    );
}

#[test]
fn modules_are_kept_apart() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    firmware
        .upload(PRODUCT, "wifi", "W2", "wifi.bin", &image_bytes(11))
        .unwrap();
    firmware.set_task(PRODUCT, "wifi", "W2").unwrap();

    // The wifi task does not fire for the main firmware.
    assert_eq!(
        firmware.notify_for("http://sim", PRODUCT, &report("1.0", None)),
        None
    );
    assert_eq!(
        firmware.notify_for("http://sim", PRODUCT, &report("1.0", Some("default"))),
        None
    );
    // A task for "default" needs a "default" image, even with the same version uploaded
    // for another module.
    assert!(matches!(
        firmware.set_task(PRODUCT, "default", "W2"),
        Err(FirmwareError::NoSuchImage { .. })
    ));

    let notify = firmware
        .notify_for("http://sim", PRODUCT, &report("W1", Some("wifi")))
        .unwrap();
    assert_eq!(notify.module.as_deref(), Some("wifi"));
    assert_eq!(notify.module(), "wifi");
    assert_eq!(notify.soft_ver, "W2");
    assert_eq!(
        notify.url,
        format!("http://sim/firmware/{PRODUCT}/wifi/W2/wifi.bin")
    );

    // Both modules with their own tasks.
    firmware
        .upload(PRODUCT, "default", "M2", "main.bin", &image_bytes(12))
        .unwrap();
    firmware.set_task(PRODUCT, "default", "M2").unwrap();
    let main = firmware
        .notify_for("http://sim", PRODUCT, &report("M1", None))
        .unwrap();
    assert_eq!((main.soft_ver.as_str(), main.module), ("M2", None));
    let wifi = firmware
        .notify_for("http://sim", PRODUCT, &report("M2", Some("wifi")))
        .unwrap();
    assert_eq!(wifi.soft_ver, "W2");
    assert_eq!(firmware.tasks().len(), 2);
}

#[test]
fn down_ids_are_unique() {
    let dir = tempfile::tempdir().unwrap();
    let firmware = Firmware::open(dir.path()).unwrap();
    firmware
        .upload(PRODUCT, "default", "2", "fw.bin", &image_bytes(13))
        .unwrap();
    firmware.set_task(PRODUCT, "default", "2").unwrap();
    let ids: Vec<String> = (0..1000)
        .map(|_| {
            firmware
                .notify_for("http://sim", PRODUCT, &report("1", None))
                .unwrap()
                .down_id
        })
        .collect();
    let unique: HashSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len());

    // A clone shares the counter.
    let clone = firmware.clone();
    let next = clone
        .notify_for("http://sim", PRODUCT, &report("1", None))
        .unwrap()
        .down_id;
    assert!(!unique.contains(&next));
}
