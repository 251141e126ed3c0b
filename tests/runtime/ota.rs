//! OTA on the device against x-sim's firmware server (real HTTP on loopback, real files in
//! the state directory): an update x-sim's OTA task offers is downloaded, verified,
//! installed by the file-swapping installer and reported after a new login; the version
//! running is not downloaded again; a wrong MD5 or a too-large image is never installed;
//! two modules update independently; an encrypted product gets its notify encrypted; an
//! `https://` URL is downloaded over TLS, trusting the configured CA only. With x-sim's
//! download faults: a body cut off mid-way resumes from the byte it had (`Range`), a server
//! without Range support restarts cleanly from zero, a short body is never installed and
//! resumes once the server has it all, an oversize body is cut off and refused, and a device
//! process SIGKILLed mid-download resumes from its partial file after a restart. Over
//! Mosquitto, a sniffer sees what really went over the wire: an MD5 as a 128-bit JSON
//! number, and an encrypted product's notify and ack as ciphertext strings.
#![allow(clippy::unwrap_used)]

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
use crate::plug;

use crate::support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use plug::{SmartPlug, SmartPlugService};
use support::{WAIT, wait_for};
use x_sdk::protocol::{DeviceIdentity, RegistrationType};
use x_sdk::runtime::ota::{FileInstaller, OtaConfig, OtaError, OtaEvent};
use x_sdk::runtime::{BackoffConfig, Device, DeviceBuilder, Request};
use x_sim::sim::Sim;

const PLUG: &str = "AA30C505";
const PLUG_KEY: &str = "DB6FACEF35BEBA0517712F0E4BE32936";

fn temp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("x-sdk-ota-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// x-sim with a data directory (so it has a firmware server) and its HTTP listener.
async fn sim_with_firmware(dir: &Path) -> Sim {
    let mut config = support::config();
    config.data_dir = Some(dir.join("sim"));
    Sim::start(config).await.unwrap()
}

/// Bytes of an image that are not all alike.
fn image(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn device(
    sim: &Sim,
    product: &str,
    key: &str,
    node: &str,
    dir: &Path,
) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    device_at(&url, product, key, node, dir)
}

/// The plug with OTA on the broker at `url`.
fn device_at(
    url: &str,
    product: &str,
    key: &str,
    node: &str,
    dir: &Path,
) -> DeviceBuilder<SmartPlug, SmartPlugService> {
    let id = DeviceIdentity::parse("7ED01E2A", product, node).unwrap();
    Device::<SmartPlug, SmartPlugService>::builder(id, key.parse().unwrap())
        .broker(url)
        .unwrap()
        .state_dir(dir.join("state"))
        .firmware("HW1", "1.0.0")
        .ota(FileInstaller::new(dir.join("installed")))
        .ota_config(quick_ota())
}

/// The OTA events of a device until one for which `last` holds.
async fn ota_events(
    device: &Device<SmartPlug, SmartPlugService>,
    last: impl Fn(&OtaEvent) -> bool,
) -> Vec<OtaEvent> {
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while let Some(request) = device.next_request().await {
            if let Request::Ota(event) = request {
                let done = last(&event);
                seen.push(event);
                if done {
                    return;
                }
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no final OTA event; saw {seen:?}"));
    seen
}

fn finished(e: &OtaEvent) -> bool {
    matches!(e, OtaEvent::Installed { .. } | OtaEvent::Failed { .. })
}

/// What x-sim last heard of a device's module version.
fn reported(sim: &Sim, id: &DeviceIdentity, module: &str) -> Option<String> {
    let firmware = sim
        .platform()
        .state("firmware", &format!("{id}/{module}"))?;
    firmware.get("SoftVer")?.as_str().map(str::to_owned)
}

/// Where the examples' installer puts the default module's image under `dir`.
fn installed_image(dir: &std::path::Path) -> std::path::PathBuf {
    dir.join("installed").join("default.bin")
}

/// The default module's installed image under `dir` is exactly `bytes`.
#[track_caller]
fn assert_installed(dir: &std::path::Path, bytes: &[u8]) {
    assert_eq!(std::fs::read(installed_image(dir)).unwrap(), bytes);
}

#[tokio::test]
async fn an_offered_update_is_downloaded_verified_installed_and_reported() {
    let dir = temp("happy");
    let sim = sim_with_firmware(&dir).await;
    let bytes = image(300_000, 7);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "1.1.0", "plug-1.1.0.bin", &bytes)
        .unwrap();
    firmware.set_task(PLUG, "default", "1.1.0").unwrap();

    let device = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir)
        .connect()
        .await
        .unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "1.1.0"),
        "{events:?}"
    );
    assert!(matches!(
        events.first(),
        Some(OtaEvent::Started {
            from: 0,
            total: 300_000,
            ..
        })
    ));
    assert!(
        events
            .iter()
            .any(|e| matches!(e, OtaEvent::Progress { .. }))
    );
    let installed = FileInstaller::new(dir.join("installed"));
    let target = installed_image(&dir);
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    drop(installed);
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    // Logged in again and reported the new version.
    wait_for(|| reported(&sim, &id, "default").as_deref() == Some("1.1.0")).await;
    assert!(device.counters().session.connects >= 2);
    // Nothing left half-done in the state directory.
    let ota_dir = dir.join("state").join("ota");
    let left: Vec<_> = std::fs::read_dir(&ota_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "installed.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
    device.shutdown().await;
    drop(device);

    // A restart with the same burned-in version reports what was installed, and x-sim
    // (whose task is that version) offers nothing more.
    let again = device_restart(&sim, &dir).await;
    wait_for(|| reported(&sim, &id, "default").as_deref() == Some("1.1.0")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_millis(50), again.next_request()).await
    {
        assert!(
            !matches!(r, Request::Ota(OtaEvent::Started { .. })),
            "downloaded again"
        );
    }
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn device_restart(sim: &Sim, dir: &Path) -> Device<SmartPlug, SmartPlugService> {
    device(sim, PLUG, PLUG_KEY, "PLUG0001", dir)
        .connect()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_version_running_is_not_downloaded_and_a_wrong_md5_is_never_installed() {
    let dir = temp("md5");
    let sim = sim_with_firmware(&dir).await;
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "1.0.0", "same.bin", &image(1000, 1))
        .unwrap();
    firmware
        .upload(PLUG, "default", "2.0.0", "two.bin", &image(50_000, 2))
        .unwrap();
    let device = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir)
        .connect()
        .await
        .unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();

    // The same version: acked, nothing downloaded.
    firmware.set_task(PLUG, "default", "1.0.0").unwrap();
    let notify = sim.platform().ota_notify_for(&id, None).unwrap();
    sim.platform().send_ota(&id, notify, None).await.unwrap();
    let events = ota_events(&device, |e| matches!(e, OtaEvent::UpToDate { .. })).await;
    assert_eq!(events.len(), 1, "{events:?}");
    // Nothing was fetched: the firmware server saw no request for the image.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let gets = firmware.requests(PLUG, "default", "1.0.0");
    assert!(gets.is_empty(), "{gets:?}");

    // Another version under a wrong MD5: downloaded, refused, not installed.
    firmware.set_task(PLUG, "default", "2.0.0").unwrap();
    let mut notify = sim.platform().ota_notify_for(&id, None).unwrap();
    notify.md5 = "00000000000000000000000000000000".into();
    sim.platform().send_ota(&id, notify, None).await.unwrap();
    let events = ota_events(&device, finished).await;
    match events.last() {
        Some(OtaEvent::Failed {
            error: OtaError::Digest { expected, got },
            version,
            ..
        }) => {
            assert_eq!(version, "2.0.0");
            assert_eq!(expected, "00000000000000000000000000000000");
            assert_eq!(got.len(), 32);
        }
        other => panic!("expected a digest failure, got {other:?} ({events:?})"),
    }
    assert!(!installed_image(&dir).exists());
    let part = dir.join("state").join("ota").join("default.part");
    assert!(!part.exists(), "a bad image is not kept");
    assert_eq!(reported(&sim, &id, "default").as_deref(), Some("1.0.0"));
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_image_larger_than_the_maximum_fails_before_anything_is_written() {
    let dir = temp("too-large");
    let sim = sim_with_firmware(&dir).await;
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "3.0.0", "big.bin", &image(20_000, 3))
        .unwrap();
    firmware.set_task(PLUG, "default", "3.0.0").unwrap();
    let device = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir)
        .ota_config(OtaConfig {
            max_image_bytes: 10_000,
            ..OtaConfig::default()
        })
        .connect()
        .await
        .unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(
            events.last(),
            Some(OtaEvent::Failed {
                error: OtaError::TooLarge {
                    size: 20_000,
                    max: 10_000
                },
                ..
            })
        ),
        "{events:?}"
    );
    assert!(!events.iter().any(|e| matches!(e, OtaEvent::Started { .. })));
    assert!(!dir.join("state").join("ota").join("default.part").exists());
    // A platform that offers it again after each failure report is not followed into a
    // loop: the same target fails at most 3 times.
    let mut failures = 1;
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_millis(500), device.next_request()).await
    {
        if matches!(r, Request::Ota(OtaEvent::Failed { .. })) {
            failures += 1;
        }
    }
    assert!(failures <= 3, "{failures} failures");
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn two_modules_update_independently() {
    let dir = temp("modules");
    let sim = sim_with_firmware(&dir).await;
    let firmware = sim.platform().firmware().unwrap();
    let (main, wifi) = (image(80_000, 4), image(40_000, 5));
    firmware
        .upload(PLUG, "default", "1.2.0", "main.bin", &main)
        .unwrap();
    firmware
        .upload(PLUG, "wifi", "2.1", "wifi.bin", &wifi)
        .unwrap();
    firmware.set_task(PLUG, "default", "1.2.0").unwrap();
    firmware.set_task(PLUG, "wifi", "2.1").unwrap();
    let device = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir)
        .module_firmware("wifi", "W1", "2.0")
        .connect()
        .await
        .unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    let mut installed = Vec::new();
    tokio::time::timeout(WAIT, async {
        while installed.len() < 2 {
            match device.next_request().await {
                Some(Request::Ota(OtaEvent::Installed { module, version })) => {
                    installed.push((module, version));
                }
                Some(Request::Ota(OtaEvent::Failed { error, .. })) => panic!("{error}"),
                Some(_) => {}
                None => panic!("stopped"),
            }
        }
    })
    .await
    .unwrap();
    installed.sort();
    assert_eq!(
        installed,
        [
            ("default".into(), "1.2.0".into()),
            ("wifi".into(), "2.1".into())
        ]
    );
    let inst = FileInstaller::new(dir.join("installed"));
    let _ = inst;
    assert_installed(&dir, &main);
    let wifi_file = dir
        .join("installed")
        .join(format!("m-{}.bin", hex::encode("wifi")));
    assert_eq!(std::fs::read(wifi_file).unwrap(), wifi);
    wait_for(|| {
        reported(&sim, &id, "default").as_deref() == Some("1.2.0")
            && reported(&sim, &id, "wifi").as_deref() == Some("2.1")
    })
    .await;
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_encrypted_product_gets_its_notify_encrypted_and_updates() {
    let dir = temp("encrypted");
    let sim = sim_with_firmware(&dir).await;
    let product = "5E7A0B32";
    let bytes = image(64_000, 6);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(product, "default", "1.0.1", "enc.bin", &bytes)
        .unwrap();
    firmware.set_task(product, "default", "1.0.1").unwrap();
    let device = device(
        &sim,
        product,
        "00112233445566778899AABBCCDDEEFF",
        "ENCOTA01",
        &dir,
    )
    .registration(RegistrationType::ProductSecretUnregistered)
    .encrypted(true)
    .connect()
    .await
    .unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "1.0.1"),
        "{events:?}"
    );
    assert_installed(&dir, &bytes);
    let id = sim.device(product, "ENCOTA01").unwrap();
    wait_for(|| reported(&sim, &id, "default").as_deref() == Some("1.0.1")).await;
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Serves `body` over HTTPS on a free loopback port with the certificate in `files`, to
/// every connection; returns the port.
async fn https_server(files: &x_sim::mosquitto::TlsFiles, body: Vec<u8>) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    // ring, as the runtime uses (see x-runtime/src/tls.rs on its deprecation).
    #[allow(deprecated)]
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, body) = (acceptor.clone(), body.clone());
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&body).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    port
}

#[tokio::test]
async fn an_https_url_is_downloaded_trusting_the_configured_ca() {
    let dir = temp("https");
    let (ca_file, files) = support::certificates(&dir.join("tls"));
    let bytes = image(120_000, 9);
    let port = https_server(&files, bytes.clone()).await;
    let sim = sim_with_firmware(&dir).await;
    let md5 = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(&bytes))
    };
    let notify = |down_id: &str| x_sdk::protocol::payload::OtaNotify {
        upgrade_type: 2,
        url: format!("https://localhost:{port}/plug-1.3.0.bin"),
        soft_ver: "1.3.0".into(),
        soft_size: bytes.len() as u64,
        md5: md5.clone(),
        down_id: down_id.into(),
        firmware_name: Some("plug-1.3.0.bin".into()),
        module: None,
    };

    // Without the CA: the server is not trusted and nothing is installed.
    let untrusting = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir)
        .ota_config(OtaConfig {
            attempts: 2,
            ca_file: Some(support::certificates(&dir.join("other")).0),
            ..quick_ota()
        })
        .connect()
        .await
        .unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    sim.platform()
        .send_ota(&id, notify("D1"), None)
        .await
        .unwrap();
    let events = ota_events(&untrusting, finished).await;
    match events.last() {
        Some(OtaEvent::Failed {
            error: OtaError::Network { reason, .. },
            ..
        }) => {
            assert!(reason.to_lowercase().contains("certificate"), "{reason}");
        }
        other => panic!("expected a TLS failure, got {other:?}"),
    }
    assert!(!installed_image(&dir).exists());
    untrusting.shutdown().await;
    drop(untrusting);

    // With it: downloaded over TLS, verified, installed.
    let trusting = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir)
        .ota_config(OtaConfig {
            ca_file: Some(ca_file),
            ..quick_ota()
        })
        .connect()
        .await
        .unwrap();
    sim.platform()
        .send_ota(&id, notify("D2"), None)
        .await
        .unwrap();
    let events = ota_events(&trusting, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "1.3.0"),
        "{events:?}"
    );
    assert_installed(&dir, &bytes);
    trusting.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Short pauses between download attempts.
fn quick_ota() -> OtaConfig {
    OtaConfig {
        backoff: BackoffConfig {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            jitter: 0.2,
        },
        ..OtaConfig::default()
    }
}

/// x-sim with an image of `len` bytes as the task for the plug's default module, and the
/// plug's device builder.
async fn offered(
    name: &str,
    len: usize,
) -> (
    PathBuf,
    Sim,
    Vec<u8>,
    DeviceBuilder<SmartPlug, SmartPlugService>,
) {
    let dir = temp(name);
    let sim = sim_with_firmware(&dir).await;
    let bytes = image(len, 11);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "1.9.0", "plug-1.9.0.bin", &bytes)
        .unwrap();
    let builder = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir).ota_config(OtaConfig {
        attempts: 3,
        ..quick_ota()
    });
    (dir, sim, bytes, builder)
}

fn faults(sim: &Sim, faults: Option<x_sim::firmware::DownloadFaults>) {
    let firmware = sim.platform().firmware().unwrap();
    firmware.set_image_faults(PLUG, "default", "1.9.0", faults);
}

fn requests(sim: &Sim) -> Vec<x_sim::firmware::DownloadRequest> {
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .requests(PLUG, "default", "1.9.0")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect()
}

fn offer(sim: &Sim) {
    let firmware = sim.platform().firmware().unwrap();
    firmware.set_task(PLUG, "default", "1.9.0").unwrap();
}

#[tokio::test]
async fn a_download_cut_off_mid_way_resumes_from_the_byte_it_had() {
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, bytes, builder) = offered("resume", 256_000).await;
    faults(&sim, Some(DownloadFaults::dropping_after(100_000).times(1)));
    offer(&sim);
    let device = builder.connect().await.unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { .. })),
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|e| matches!(e, OtaEvent::Started { from: 100_000, .. })),
        "{events:?}"
    );
    let gets = requests(&sim);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[0].range, None);
    assert_eq!(gets[1].range.as_deref(), Some("bytes=100000-"));
    assert_eq!(gets[1].status, 206);
    assert_installed(&dir, &bytes);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_server_without_range_support_restarts_the_download_cleanly_from_zero() {
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, bytes, builder) = offered("no-range", 200_000).await;
    // Every answer ignores Range; the first is also cut off after 80,000 bytes.
    sim.platform()
        .firmware()
        .unwrap()
        .set_faults(DownloadFaults::ignoring_range());
    faults(
        &sim,
        Some(
            DownloadFaults {
                ignore_range: true,
                ..DownloadFaults::dropping_after(80_000)
            }
            .times(1),
        ),
    );
    offer(&sim);
    let device = builder.connect().await.unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { .. })),
        "{events:?}"
    );
    let gets = requests(&sim);
    assert_eq!(gets.len(), 2, "{gets:?}");
    assert_eq!(gets[1].range.as_deref(), Some("bytes=80000-"));
    assert_eq!(gets[1].status, 200, "answered with the whole image");
    // Not the first 80,000 bytes twice: the image as it is.
    assert_installed(&dir, &bytes);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_short_body_is_never_installed_and_resumes_once_the_server_has_it_all() {
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, bytes, builder) = offered("short", 100_000).await;
    faults(&sim, Some(DownloadFaults::short_by(1_000)));
    offer(&sim);
    let device = builder.connect().await.unwrap();
    let events = ota_events(&device, finished).await;
    match events.last() {
        Some(OtaEvent::Failed {
            error:
                OtaError::Truncated {
                    got,
                    size,
                    attempts,
                },
            ..
        }) => {
            assert_eq!((*got, *size, *attempts), (99_000, 100_000, 3));
        }
        other => panic!("expected a truncated download, got {other:?} ({events:?})"),
    }
    assert!(!installed_image(&dir).exists());
    let part = dir.join("state").join("ota").join("default.part");
    assert_eq!(
        std::fs::metadata(&part).unwrap().len(),
        99_000,
        "kept to resume"
    );

    // The server is mended; the next notify resumes from byte 99,000.
    faults(&sim, None);
    sim.platform().firmware().unwrap().clear_requests();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    let mut notify = sim.platform().ota_notify_for(&id, None).unwrap();
    notify.down_id = "AGAIN".into();
    sim.platform().send_ota(&id, notify, None).await.unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { .. })),
        "{events:?}"
    );
    assert_eq!(requests(&sim)[0].range.as_deref(), Some("bytes=99000-"));
    assert_installed(&dir, &bytes);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_partial_download_of_another_target_is_discarded_not_resumed() {
    use x_sim::firmware::DownloadFaults;
    let dir = temp("stale-part");
    // One notify per task from firmware reports: the failure report below brings no
    // second notify of 1.9.0, so nothing but the partial file is left of it.
    let mut config = support::config();
    config.data_dir = Some(dir.join("sim"));
    config.platform.ota_max_notifies = 1;
    let sim = Sim::start(config).await.unwrap();
    sim.platform()
        .firmware()
        .unwrap()
        .upload(
            PLUG,
            "default",
            "1.9.0",
            "plug-1.9.0.bin",
            &image(100_000, 11),
        )
        .unwrap();
    let builder = device(&sim, PLUG, PLUG_KEY, "PLUG0001", &dir).ota_config(OtaConfig {
        attempts: 3,
        ..quick_ota()
    });
    // 1.9.0 fails after its attempts with 99,000 bytes held, kept to resume.
    faults(&sim, Some(DownloadFaults::short_by(1_000)));
    offer(&sim);
    let device = builder.connect().await.unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(
            events.last(),
            Some(OtaEvent::Failed {
                error: OtaError::Truncated { .. },
                ..
            })
        ),
        "{events:?}"
    );
    let part = dir.join("state").join("ota").join("default.part");
    assert_eq!(std::fs::metadata(&part).unwrap().len(), 99_000);

    // The platform now offers another image for the module: larger, so the old bytes
    // would pass for its beginning if they were resumed.
    let newer = image(150_000, 21);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "2.0.0", "plug-2.0.0.bin", &newer)
        .unwrap();
    firmware.set_task(PLUG, "default", "2.0.0").unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    let notify = sim.platform().ota_notify_for(&id, None).unwrap();
    sim.platform().send_ota(&id, notify, None).await.unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "2.0.0"),
        "{events:?}"
    );
    assert!(
        matches!(
            events.first(),
            Some(OtaEvent::Started {
                from: 0,
                total: 150_000,
                ..
            })
        ),
        "started from zero, not from the other image's bytes: {events:?}"
    );
    assert!(
        events
            .iter()
            .all(|e| !matches!(e, OtaEvent::Started { total, .. } if *total != 150_000)),
        "nothing of 1.9.0 ran again: {events:?}"
    );
    let gets: Vec<_> = firmware
        .requests(PLUG, "default", "2.0.0")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].range, None, "no Range: nothing of 1.9.0 resumed");
    assert_installed(&dir, &newer);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_oversize_body_is_cut_off_at_soft_size_and_never_installed() {
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, _, builder) = offered("oversize", 100_000).await;
    faults(&sim, Some(DownloadFaults::long_by(5_000)));
    offer(&sim);
    let device = builder.connect().await.unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(
            events.last(),
            Some(OtaEvent::Failed {
                error: OtaError::Oversize { size: 100_000 },
                ..
            })
        ),
        "{events:?}"
    );
    assert!(!installed_image(&dir).exists());
    assert!(!dir.join("state").join("ota").join("default.part").exists());
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, OtaEvent::Progress { done, .. } if *done > 100_000)),
        "nothing past SoftSize was written"
    );
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// Environment of the OTA child process: broker URL and working directory.
const CHILD_ENV: &str = "X_OTA_CHILD";

/// The device process of the kill test: the plug with OTA, printing its OTA events, until
/// killed (or installed).
#[test]
#[ignore = "the device process of the OTA kill test; that test starts it"]
fn ota_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let (url, dir) = spec.split_once('|').unwrap();
    let dir = PathBuf::from(dir);
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async move {
            let id = DeviceIdentity::parse("7ED01E2A", PLUG, "PLUG0001").unwrap();
            let device =
                Device::<SmartPlug, SmartPlugService>::builder(id, PLUG_KEY.parse().unwrap())
                    .broker(url)
                    .unwrap()
                    .state_dir(dir.join("state"))
                    .firmware("HW1", "1.0.0")
                    .ota(FileInstaller::new(dir.join("installed")))
                    .ota_config(quick_ota())
                    .start()
                    .unwrap();
            while let Some(request) = device.next_request().await {
                use std::io::Write;
                let line = match request {
                    Request::Ota(OtaEvent::Started { from, .. }) => format!("started {from}"),
                    Request::Ota(OtaEvent::Progress { done, .. }) => format!("progress {done}"),
                    Request::Ota(OtaEvent::Installed { .. }) => "installed".to_owned(),
                    Request::Ota(OtaEvent::Failed { error, .. }) => format!("failed {error}"),
                    _ => continue,
                };
                let mut out = std::io::stdout().lock();
                writeln!(out, "{line}").unwrap();
                out.flush().unwrap();
            }
        });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_device_killed_mid_download_resumes_from_its_partial_file_after_a_restart() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, bytes, _) = offered("killed", 400_000).await;
    // Slow: 8 KiB every 20 ms, about a second for the image.
    sim.platform()
        .firmware()
        .unwrap()
        .set_faults(DownloadFaults::delayed(8192, Duration::from_millis(20)));
    offer(&sim);
    let url = format!("mqtt://{}", sim.mqtt_addr().unwrap());
    let spawn = || {
        Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "ota::ota_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_ENV, format!("{url}|{}", dir.display()))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // The first run: killed once a third of the image is on disk.
    let mut child = spawn();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut killed_at = 0;
    for line in lines.map_while(Result::ok) {
        if let Some(done) = line.strip_prefix("progress ") {
            let done: u64 = done.parse().unwrap();
            if done > 130_000 {
                child.kill().unwrap(); // SIGKILL
                killed_at = done;
                break;
            }
        }
        assert!(line != "installed", "installed before the kill");
    }
    child.wait().unwrap();
    assert!(killed_at > 0);
    let part = dir.join("state").join("ota").join("default.part");
    let held = std::fs::metadata(&part).unwrap().len();
    assert!(held >= killed_at, "{held} < {killed_at}");

    // The second run resumes from what the partial file holds and installs.
    let mut child = spawn();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.map_while(Result::ok) {
        let done = line == "installed" || line.starts_with("failed");
        seen.push(line);
        if done {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        seen.last().map(String::as_str),
        Some("installed"),
        "{seen:?}"
    );
    let from: u64 = seen
        .iter()
        // (libtest's "test ota_child ... " may precede the first line)
        .find_map(|l| l.split("started ").nth(1))
        .unwrap_or_else(|| panic!("no start in {seen:?}"))
        .parse()
        .unwrap();
    assert!(from >= killed_at, "resumed from {from}, had {killed_at}");
    let ranges: Vec<Option<String>> = requests(&sim).into_iter().map(|r| r.range).collect();
    assert!(
        ranges.contains(&Some(format!("bytes={from}-"))),
        "{ranges:?}"
    );
    assert_installed(&dir, &bytes);
    let _ = std::fs::remove_dir_all(&dir);
}

/// An installer that refuses: the flash is write-protected. It keeps when it was called
/// (Unix ms).
#[derive(Clone, Default)]
struct WriteProtected {
    called_ms: std::sync::Arc<std::sync::atomic::AtomicI64>,
}

impl x_sdk::runtime::ota::Installer for WriteProtected {
    fn install(&self, image: &Path, update: &x_sdk::runtime::ota::Update) -> Result<(), String> {
        assert_eq!(std::fs::metadata(image).unwrap().len(), update.size);
        assert!(!update.down_id.is_empty());
        self.called_ms.store(
            x_sdk::model::Date::now().millis(),
            std::sync::atomic::Ordering::SeqCst,
        );
        Err(format!(
            "flash bank for {} is write-protected",
            update.module_name()
        ))
    }
}

#[tokio::test]
async fn an_installer_failure_keeps_the_old_version_reports_it_and_tells_the_application() {
    let (dir, sim, _, builder) = offered("install-fails", 50_000).await;
    offer(&sim);
    let installer = WriteProtected::default();
    let device = builder.ota(installer.clone()).connect().await.unwrap();
    let events = ota_events(&device, finished).await;
    match events.last() {
        Some(OtaEvent::Failed {
            error: OtaError::Install(reason),
            version,
            ..
        }) => {
            assert_eq!(version, "1.9.0");
            assert!(reason.contains("write-protected"), "{reason}");
        }
        other => panic!("expected an installer failure, got {other:?}"),
    }
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    assert_eq!(reported(&sim, &id, "default").as_deref(), Some("1.0.0"));
    // The old version was reported again after the failure: x-sim received a firmware
    // report of 1.0.0 after the installer refused.
    let failed_at = installer
        .called_ms
        .load(std::sync::atomic::Ordering::SeqCst);
    assert!(failed_at > 0);
    wait_for(|| {
        sim.platform().received_from(&id).iter().any(|r| {
            r.kind == x_sdk::protocol::TopicKind::FirmwareReport
                && r.at_ms >= failed_at
                && r.payload["SoftVer"] == "1.0.0"
        })
    })
    .await;
    // No new login: the device did not take the new version.
    assert_eq!(
        device.counters().session.connects,
        2,
        "auth phase and V2 login only"
    );
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_second_notify_supersedes_a_running_update_only_for_another_target() {
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, _, builder) = offered("supersede", 300_000).await;
    let newer = image(60_000, 12);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "2.0.0", "plug-2.0.0.bin", &newer)
        .unwrap();
    // 1.9.0 downloads slowly: there is time to send the other notifies.
    faults(
        &sim,
        Some(DownloadFaults::delayed(8192, Duration::from_millis(20))),
    );
    let device = builder.connect().await.unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    offer(&sim);
    let slow = sim.platform().ota_notify_for(&id, None).unwrap();
    sim.platform()
        .send_ota(&id, slow.clone(), None)
        .await
        .unwrap();
    ota_events(&device, |e| matches!(e, OtaEvent::Progress { .. })).await;
    // The same image again (another DownID): not a new update.
    let mut again = slow.clone();
    again.down_id = "SAME-AGAIN".into();
    sim.platform().send_ota(&id, again, None).await.unwrap();
    // Another target: the running download stops and 2.0.0 is installed.
    firmware.set_task(PLUG, "default", "2.0.0").unwrap();
    let newer_notify = sim.platform().ota_notify_for(&id, None).unwrap();
    sim.platform()
        .send_ota(&id, newer_notify, None)
        .await
        .unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "2.0.0"),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, OtaEvent::Installed { version, .. } if version == "1.9.0")),
        "{events:?}"
    );
    let slow_gets = requests(&sim).len();
    assert_eq!(slow_gets, 1, "the same image was not fetched twice");
    assert_installed(&dir, &newer);
    wait_for(|| reported(&sim, &id, "default").as_deref() == Some("2.0.0")).await;
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The payloads of the OTA notifies a sniffer saw, as JSON text on the wire.
fn notifies_seen(sniffer: &support::Sniffer) -> Vec<String> {
    sniffer
        .messages()
        .into_iter()
        .filter(|(topic, _)| topic.ends_with("/ota_notify"))
        .map(|(_, bytes)| x_sdk::protocol::Frame::payload_text(&bytes).unwrap())
        .collect()
}

#[tokio::test]
async fn an_md5_sent_as_a_128_bit_number_is_acked_downloaded_verified_and_installed() {
    let dir = temp("md5-number");
    let broker = x_sim::mosquitto::Mosquitto::start().unwrap();
    let data = dir.join("sim");
    let sim = support::sim_on_with(&broker, |c| {
        c.data_dir = Some(data);
        c.platform.ota_md5_number = true;
    })
    .await;
    let sniffer = support::Sniffer::start(&broker, "/sys/+/+/+/ota_notify").await;
    let bytes = image(150_000, 13);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(PLUG, "default", "1.4.0", "plug-1.4.0.bin", &bytes)
        .unwrap();
    firmware.set_task(PLUG, "default", "1.4.0").unwrap();
    // The real digest of the image the firmware server serves, as its 128-bit value.
    let md5 = {
        use md5::{Digest, Md5};
        hex::encode(Md5::digest(&bytes))
    };
    assert_eq!(firmware.image(PLUG, "default", "1.4.0").unwrap().md5, md5);
    let number = u128::from_str_radix(&md5, 16).unwrap().to_string();
    assert!(
        u64::try_from(u128::from_str_radix(&md5, 16).unwrap()).is_err(),
        "a digest past 64 bits"
    );

    let device = device_at(&broker.url(), PLUG, PLUG_KEY, "PLUG0001", &dir)
        .connect()
        .await
        .unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "1.4.0"),
        "{events:?}"
    );
    // On the wire, MD5 was a JSON number: the digest's value, every digit.
    let seen = notifies_seen(&sniffer);
    assert!(!seen.is_empty(), "no notify on the wire");
    let text = &seen[0];
    assert!(text.contains(&format!("\"MD5\":{number},")), "{text}");
    let down_id = serde_json::from_str::<serde_json::Value>(text).unwrap()["DownID"]
        .as_str()
        .unwrap()
        .to_owned();
    // Acked with its DownID (x-sim's OTA progress records the ack of that notify) ...
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    wait_for(|| {
        sim.platform()
            .state("ota", &format!("{id}/default"))
            .is_some_and(|p| p["DownID"] == down_id.as_str() && !p["acked_at_ms"].is_null())
    })
    .await;
    // ... downloaded from the firmware server, verified, installed, reported.
    let gets: Vec<_> = firmware
        .requests(PLUG, "default", "1.4.0")
        .into_iter()
        .filter(|r| r.method == "GET")
        .collect();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].status, 200);
    assert_installed(&dir, &bytes);
    wait_for(|| reported(&sim, &id, "default").as_deref() == Some("1.4.0")).await;
    assert_eq!(device.counters().session.bad_frames, 0);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn an_encrypted_products_notify_and_its_ack_are_string_payloads_on_the_wire() {
    let dir = temp("encrypted-wire");
    let broker = x_sim::mosquitto::Mosquitto::start().unwrap();
    let data = dir.join("sim");
    let sim = support::sim_on_with(&broker, |c| c.data_dir = Some(data)).await;
    let sniffer = support::Sniffer::start(&broker, "/sys/7ED01E2A/5E7A0B32/ENCWIRE1/#").await;
    let product = "5E7A0B32";
    let bytes = image(40_000, 14);
    let firmware = sim.platform().firmware().unwrap();
    firmware
        .upload(product, "default", "1.0.2", "enc.bin", &bytes)
        .unwrap();
    firmware.set_task(product, "default", "1.0.2").unwrap();
    let device = device_at(
        &broker.url(),
        product,
        "00112233445566778899AABBCCDDEEFF",
        "ENCWIRE1",
        &dir,
    )
    .registration(RegistrationType::ProductSecretUnregistered)
    .encrypted(true)
    .connect()
    .await
    .unwrap();
    let events = ota_events(&device, finished).await;
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "1.0.2"),
        "{events:?}"
    );
    let wire = |suffix: &str| -> Vec<serde_json::Value> {
        sniffer
            .messages()
            .into_iter()
            .filter(|(topic, _)| topic.ends_with(suffix))
            .map(|(_, b)| serde_json::from_slice::<serde_json::Value>(&b).unwrap())
            .collect()
    };
    let notifies = wire("/ota_notify");
    let acks = wire("/ota_notify_ack");
    assert!(
        !notifies.is_empty() && !acks.is_empty(),
        "{notifies:?} {acks:?}"
    );
    for frame in notifies.iter().chain(&acks) {
        assert_eq!(frame["HeaderCtrl"], 9);
        // A string of uppercase hex: the AES ciphertext, nothing readable.
        let payload = frame["Payload"]
            .as_str()
            .unwrap_or_else(|| panic!("{frame}"));
        assert!(
            payload.len() >= 32
                && payload.len() % 32 == 0
                && payload
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)),
            "{payload}"
        );
        assert!(!frame.to_string().contains("DownID"), "{frame}");
    }
    assert_installed(&dir, &bytes);
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn a_download_goes_on_across_an_mqtt_reconnect_and_installs() {
    use x_sdk::runtime::ConnectionState;
    use x_sim::firmware::DownloadFaults;
    let (dir, sim, bytes, builder) = offered("mqtt-reconnect", 400_000).await;
    // Slow: 4 KiB every 25 ms, about 2.5 s for the image.
    faults(
        &sim,
        Some(DownloadFaults::delayed(4096, Duration::from_millis(25))),
    );
    offer(&sim);
    let device = builder
        .backoff(BackoffConfig {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(200),
            jitter: 0.5,
        })
        .connect()
        .await
        .unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    let mut events = ota_events(&device, |e| matches!(e, OtaEvent::Progress { .. })).await;
    let connects = device.counters().session.connects;
    // The broker drops the device's connection mid-download (a network fault).
    let mut states = device.connection();
    assert!(sim.platform().drop_device(&id));
    tokio::time::timeout(
        WAIT,
        states.wait_for(|s| matches!(s, ConnectionState::Offline { .. })),
    )
    .await
    .unwrap()
    .unwrap();
    tokio::time::timeout(WAIT, states.wait_for(ConnectionState::is_online))
        .await
        .unwrap()
        .unwrap();
    assert!(device.counters().session.connects > connects);
    // Back online before the image was all there: the download was still under way.
    let mut took_while_online = Vec::new();
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_millis(1), device.next_request()).await
    {
        if let Request::Ota(e) = r {
            took_while_online.push(e);
        }
    }
    assert!(
        !took_while_online.iter().any(finished),
        "the download ended before the reconnect: {took_while_online:?}"
    );
    events.extend(took_while_online);
    events.extend(ota_events(&device, finished).await);
    assert!(
        matches!(events.last(), Some(OtaEvent::Installed { version, .. }) if version == "1.9.0"),
        "{events:?}"
    );
    // Never started again from zero: one request from the start, any others resuming.
    let gets = requests(&sim);
    assert_eq!(gets[0].range, None, "{gets:?}");
    assert!(gets[1..].iter().all(|r| r.range.is_some()), "{gets:?}");
    assert_installed(&dir, &bytes);
    wait_for(|| reported(&sim, &id, "default").as_deref() == Some("1.9.0")).await;
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn ota_events_are_kept_for_the_application_however_full_its_request_stream() {
    use x_sim::platform::Command;
    let (dir, sim, _, builder) = offered("full-stream", 200_000).await;
    let installer = WriteProtected::default();
    // Room for one request, and an application that takes none for now.
    let device = builder
        .request_capacity(1)
        .time_sync(false)
        .ota(installer.clone())
        .connect()
        .await
        .unwrap();
    let id = sim.device(PLUG, "PLUG0001").unwrap();
    for countdown in [60, 61, 62] {
        let answer = sim
            .platform()
            .send_command(
                &id,
                Command::SetProperties(serde_json::json!({ "countdown": countdown })),
                None,
            )
            .await
            .unwrap();
        assert!(answer.ack().unwrap().code.is_success());
    }
    // The first set took the one place; the others were dropped (counted).
    wait_for(|| device.counters().dropped_requests == 2).await;
    let dropped = device.counters().dropped_requests;

    // An update the installer refuses, while the stream is full.
    offer(&sim);
    let notify = sim.platform().ota_notify_for(&id, None).unwrap();
    sim.platform().send_ota(&id, notify, None).await.unwrap();
    wait_for(|| {
        let failed_at = installer
            .called_ms
            .load(std::sync::atomic::Ordering::SeqCst);
        failed_at > 0
            && sim.platform().received_from(&id).iter().any(|r| {
                r.kind == x_sdk::protocol::TopicKind::FirmwareReport && r.at_ms >= failed_at
            })
    })
    .await;
    assert_eq!(
        device.counters().dropped_requests,
        dropped,
        "no OTA event was dropped"
    );

    // The application reads at last: the property set that fitted, and the whole update.
    let mut sets = 0;
    let mut ota = Vec::new();
    while let Ok(Some(r)) =
        tokio::time::timeout(Duration::from_millis(300), device.next_request()).await
    {
        match r {
            Request::PropertiesSet(_) => sets += 1,
            Request::Ota(e) => ota.push(e),
            _ => {}
        }
    }
    assert_eq!(sets, 1);
    assert!(
        matches!(
            ota.first(),
            Some(OtaEvent::Started {
                from: 0,
                total: 200_000,
                ..
            })
        ),
        "{ota:?}"
    );
    assert!(
        ota.iter().any(|e| matches!(
            e,
            OtaEvent::Progress {
                done: 200_000,
                total: 200_000,
                ..
            }
        )),
        "{ota:?}"
    );
    assert!(
        matches!(
            ota.last(),
            Some(OtaEvent::Failed {
                error: OtaError::Install(_),
                ..
            })
        ),
        "{ota:?}"
    );
    device.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
