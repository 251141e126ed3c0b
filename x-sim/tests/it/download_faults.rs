//! Fault injection of the firmware server over real HTTP (reqwest, and raw TCP where the
//! bytes on the wire matter): Range ignored, the connection dropped after N bytes and the
//! download resumed, bodies shorter and longer than the image, a delay per chunk with a
//! downloader killed mid-download, faults per image and for every image, spent after N
//! responses; and the record of the requests each image got.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use md5::{Digest, Md5};
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, RANGE};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use x_sim::firmware::{DownloadFaults, DownloadRequest, FILLER, Firmware};
use x_sim::sim::{Sim, SimConfig};

use crate::common::http_ready;

const PRODUCT: &str = "AA30C505";

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

/// A firmware directory with images `1.0.1` and `1.0.2` of the default module, served on a
/// free port. Returns the firmware, its base URL, the two URL paths and their bytes.
struct Server {
    firmware: Firmware,
    base: String,
    _dir: tempfile::TempDir,
}

impl Server {
    async fn start() -> Self {
        http_ready();
        let dir = tempfile::tempdir().unwrap();
        let firmware = Firmware::open(dir.path()).unwrap();
        for (version, seed) in [("1.0.1", 1), ("1.0.2", 2)] {
            firmware
                .upload(PRODUCT, "default", version, "plug.bin", &image_bytes(seed))
                .unwrap();
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let router = firmware.routes();
        tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            firmware,
            base: format!("http://{addr}"),
            _dir: dir,
        }
    }

    fn path(version: &str) -> String {
        format!("/firmware/{PRODUCT}/default/{version}/plug.bin")
    }

    fn url(&self, version: &str) -> String {
        format!("{}{}", self.base, Self::path(version))
    }

    fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    async fn get(&self, version: &str, range: Option<&str>) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(self.url(version));
        if let Some(range) = range {
            request = request.header(RANGE, range);
        }
        request.send().await.unwrap()
    }

    /// A GET over a raw TCP connection, read until the server closes it.
    async fn raw(&self, version: &str, range: Option<&str>) -> Raw {
        raw_get(self.addr(), &Self::path(version), range).await
    }

    fn requests(&self, version: &str) -> Vec<DownloadRequest> {
        self.firmware.requests(PRODUCT, "default", version)
    }

    fn ranges(&self, version: &str) -> Vec<(Option<String>, u16)> {
        self.requests(version)
            .into_iter()
            .map(|r| (r.range, r.status))
            .collect()
    }
}

/// An HTTP answer as it came over a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Raw {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn content_length(&self) -> usize {
        self.header("content-length").unwrap().parse().unwrap()
    }
}

/// Sends `GET path` (with `Connection: close`) to `addr` and reads until the connection
/// ends, by a close or a reset: what arrived.
async fn raw_get(addr: &str, path: &str, range: Option<&str>) -> Raw {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let range = range.map_or(String::new(), |r| format!("Range: {r}\r\n"));
    let request =
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{range}Connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .expect("the server neither finished nor closed");
    let split = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("no complete header");
    let head = String::from_utf8(bytes[..split].to_vec()).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Raw {
        status,
        headers,
        body: bytes[split + 4..].to_vec(),
    }
}

#[tokio::test]
async fn ignored_range_is_a_200_with_the_whole_image() {
    let server = Server::start().await;
    let image = image_bytes(2);
    server.firmware.set_image_faults(
        PRODUCT,
        "default",
        "1.0.2",
        Some(DownloadFaults::ignoring_range()),
    );
    let response = server.get("1.0.2", Some("bytes=400-")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers().get(CONTENT_RANGE), None);
    // A server without Range support does not offer it either.
    assert_eq!(response.headers().get(ACCEPT_RANGES), None);
    assert_eq!(response.headers()[CONTENT_LENGTH], "1000");
    assert_eq!(response.bytes().await.unwrap(), image);
    // The other image still honours Range.
    let response = server.get("1.0.1", Some("bytes=400-")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.bytes().await.unwrap(), image_bytes(1)[400..]);

    let requests = server.requests("1.0.2");
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(
        (r.method.as_str(), r.range.as_deref(), r.status, r.faulted),
        ("GET", Some("bytes=400-"), 200, true)
    );
    assert!(r.at_ms > 0);
    assert_eq!(
        server.ranges("1.0.1"),
        [(Some("bytes=400-".to_owned()), 206)]
    );
    let faulted: Vec<bool> = server.requests("1.0.1").iter().map(|r| r.faulted).collect();
    assert_eq!(faulted, [false]);
}

#[tokio::test]
async fn a_dropped_connection_then_a_resumed_download() {
    let server = Server::start().await;
    let image = image_bytes(2);
    server.firmware.set_image_faults(
        PRODUCT,
        "default",
        "1.0.2",
        Some(DownloadFaults::dropping_after(300).times(1)),
    );
    // The headers announce the whole image; 300 bytes come, then the connection ends.
    let first = server.raw("1.0.2", None).await;
    assert_eq!(first.status, 200);
    assert_eq!(first.content_length(), 1000);
    assert_eq!(first.body, image[..300]);
    // The fault was for one response: the resumed download gets the rest.
    let rest = server.raw("1.0.2", Some("bytes=300-")).await;
    assert_eq!(rest.status, 206);
    assert_eq!(rest.header("content-range"), Some("bytes 300-999/1000"));
    let whole = [first.body, rest.body].concat();
    assert_eq!(md5_hex(&whole), md5_hex(&image));
    assert_eq!(
        server.ranges("1.0.2"),
        [(None, 200), (Some("bytes=300-".to_owned()), 206)]
    );
    assert_eq!(
        server.firmware.image_faults(PRODUCT, "default", "1.0.2"),
        None
    );

    // reqwest sees the cut as an error of the body, after the bytes that came.
    server.firmware.set_image_faults(
        PRODUCT,
        "default",
        "1.0.2",
        Some(DownloadFaults::dropping_after(100).times(1)),
    );
    let mut response = server.get("1.0.2", Some("bytes=500-")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 500-999/1000");
    let mut got = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => got.extend_from_slice(&chunk),
            Ok(None) => panic!("the body ended cleanly after {} bytes", got.len()),
            Err(e) => break e,
        }
    };
    assert!(error.is_body() || error.is_decode(), "{error:?}");
    assert_eq!(got, image[500..600]);

    // A cut at 0: the headers and not one byte.
    server.firmware.set_image_faults(
        PRODUCT,
        "default",
        "1.0.2",
        Some(DownloadFaults::dropping_after(0)),
    );
    for _ in 0..2 {
        let none = server.raw("1.0.2", None).await;
        assert_eq!((none.status, none.body.len()), (200, 0));
    }
    server
        .firmware
        .set_image_faults(PRODUCT, "default", "1.0.2", None);
    assert_eq!(server.raw("1.0.2", None).await.body, image);
}

#[tokio::test]
async fn short_and_long_bodies_with_honest_lengths() {
    let server = Server::start().await;
    let image = image_bytes(2);
    let set = |faults| {
        server
            .firmware
            .set_image_faults(PRODUCT, "default", "1.0.2", Some(faults));
    };

    set(DownloadFaults::short_by(100));
    let response = server.get("1.0.2", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], "900");
    assert_eq!(response.headers()[ACCEPT_RANGES], "bytes");
    assert_eq!(response.bytes().await.unwrap(), image[..900]);
    // Ranges are of the short body, as if it were the whole image.
    let response = server.get("1.0.2", Some("bytes=800-")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 800-899/900");
    assert_eq!(response.bytes().await.unwrap(), image[800..900]);
    let response = server.get("1.0.2", Some("bytes=950-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes */900");
    // Shorter than there is: empty.
    set(DownloadFaults::short_by(5000));
    let response = server.get("1.0.2", None).await;
    assert_eq!(response.headers()[CONTENT_LENGTH], "0");
    assert!(response.bytes().await.unwrap().is_empty());

    set(DownloadFaults::long_by(50));
    let response = server.get("1.0.2", None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[CONTENT_LENGTH], "1050");
    let body = response.bytes().await.unwrap();
    assert_eq!(body[..1000], image);
    assert!(body[1000..].iter().all(|&b| b == FILLER));
    assert_eq!(body.len(), 1050);
    let response = server.get("1.0.2", Some("bytes=990-")).await;
    assert_eq!(response.headers()[CONTENT_RANGE], "bytes 990-1049/1050");
    let body = response.bytes().await.unwrap();
    assert_eq!(body[..10], image[990..]);
    assert_eq!(body.len(), 60);
    // Over raw TCP: exactly what the headers say, then the connection closes.
    let raw = server.raw("1.0.2", None).await;
    assert_eq!((raw.content_length(), raw.body.len()), (1050, 1050));

    // Faults combine: a long body, Range ignored, cut after 1020 bytes.
    set(DownloadFaults {
        ignore_range: true,
        drop_after: Some(1020),
        ..DownloadFaults::long_by(50)
    });
    let raw = server.raw("1.0.2", Some("bytes=10-")).await;
    assert_eq!((raw.status, raw.content_length()), (200, 1050));
    assert_eq!(raw.body[..1000], image);
    assert_eq!(raw.body.len(), 1020);
    assert_eq!(raw.header("accept-ranges"), None);
    assert!(server.requests("1.0.2").iter().all(|r| r.faulted));
}

#[tokio::test]
async fn a_slow_download_killed_midway_and_resumed() {
    let server = Server::start().await;
    let image = image_bytes(2);
    // 100 bytes every 30 ms: the whole image takes at least 300 ms.
    server
        .firmware
        .set_faults(DownloadFaults::delayed(100, Duration::from_millis(30)));
    let started = Instant::now();
    let body = server.get("1.0.2", None).await.bytes().await.unwrap();
    assert_eq!(body, image);
    assert!(
        started.elapsed() >= Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );

    // A downloader that stops after 300 bytes (its process killed), then starts again from
    // the byte it had.
    let mut response = server.get("1.0.2", None).await;
    let mut got = Vec::new();
    while got.len() < 300 {
        got.extend_from_slice(&response.chunk().await.unwrap().unwrap());
    }
    drop(response);
    got.truncate(300);
    assert_eq!(got, image[..300]);
    server.firmware.clear_faults();
    let response = server.get("1.0.2", Some("bytes=300-")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    got.extend_from_slice(&response.bytes().await.unwrap());
    assert_eq!(got, image);
    assert_eq!(
        server.ranges("1.0.2"),
        [
            (None, 200),
            (None, 200),
            (Some("bytes=300-".to_owned()), 206)
        ]
    );
    let faulted: Vec<bool> = server.requests("1.0.2").iter().map(|r| r.faulted).collect();
    assert_eq!(faulted, [true, true, false]);
    // The server still serves after a client vanished mid-body.
    assert_eq!(
        server.get("1.0.1", None).await.bytes().await.unwrap(),
        image_bytes(1)
    );
}

#[tokio::test]
async fn faults_per_image_for_every_image_and_spent() {
    let server = Server::start().await;
    server
        .firmware
        .set_faults(DownloadFaults::short_by(1).times(3));
    server.firmware.set_image_faults(
        PRODUCT,
        "default",
        "1.0.2",
        Some(DownloadFaults::long_by(1).times(1)),
    );
    assert_eq!(
        server.firmware.faults(),
        Some(DownloadFaults::short_by(1).times(3))
    );
    let len = async |version| server.get(version, None).await.bytes().await.unwrap().len();
    // The image's own faults first, for their one response; then the global ones.
    assert_eq!(len("1.0.2").await, 1001);
    assert_eq!(len("1.0.2").await, 999);
    assert_eq!(len("1.0.1").await, 999);
    // HEAD is never faulted and does not count.
    let head = reqwest::Client::new()
        .head(server.url("1.0.1"))
        .send()
        .await
        .unwrap();
    assert_eq!(head.headers()[CONTENT_LENGTH], "1000");
    assert_eq!(len("1.0.1").await, 999);
    // Spent: both are served as uploaded.
    assert_eq!(server.firmware.faults(), None);
    assert_eq!(len("1.0.1").await, 1000);
    assert_eq!(len("1.0.2").await, 1000);
    let methods: Vec<(String, bool)> = server
        .requests("1.0.1")
        .into_iter()
        .map(|r| (r.method, r.faulted))
        .collect();
    assert_eq!(
        methods,
        [
            ("GET".to_owned(), true),
            ("HEAD".to_owned(), false),
            ("GET".to_owned(), true),
            ("GET".to_owned(), false)
        ]
    );

    // Faults for an image not uploaded yet apply once it is; clear_faults takes all away.
    server.firmware.set_image_faults(
        PRODUCT,
        "default",
        "2.0.0",
        Some(DownloadFaults::short_by(10)),
    );
    server
        .firmware
        .upload(PRODUCT, "default", "2.0.0", "plug.bin", &image_bytes(3))
        .unwrap();
    assert_eq!(len("2.0.0").await, 990);
    server.firmware.set_faults(DownloadFaults::ignoring_range());
    server.firmware.clear_faults();
    assert_eq!(len("2.0.0").await, 1000);
    assert_eq!(
        server.get("1.0.1", Some("bytes=0-9")).await.status(),
        StatusCode::PARTIAL_CONTENT
    );
    // A wrong file name is a 404 and no request of the image.
    let before = server.requests("1.0.1").len();
    let response = reqwest::get(format!(
        "{}/firmware/{PRODUCT}/default/1.0.1/other.bin",
        server.base
    ))
    .await
    .unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(server.requests("1.0.1").len(), before);
    server.firmware.clear_requests();
    assert!(server.requests("1.0.1").is_empty());
}

/// The same faults through a running simulator: the OTA notify's URL on its HTTP server.
#[tokio::test]
async fn faults_through_the_simulator() {
    http_ready();
    let dir = tempfile::tempdir().unwrap();
    let registry = x_sim::registry::Registry::from_toml(
        &format!(
            r#"
[[product]]
open_id = "7ED01E2A"
product_id = "{PRODUCT}"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"
"#
        ),
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/..")),
    )
    .unwrap();
    let mut config = SimConfig::local(registry);
    config.data_dir = Some(dir.path().to_path_buf());
    let sim = Sim::start(config).await.unwrap();
    let firmware = sim.platform().firmware().unwrap();
    let image = image_bytes(9);
    let uploaded = firmware
        .upload(PRODUCT, "default", "3.0.0", "plug.bin", &image)
        .unwrap();
    firmware.set_image_faults(
        PRODUCT,
        "default",
        "3.0.0",
        Some(DownloadFaults::dropping_after(10).times(1)),
    );
    let addr = sim.http_addr().unwrap().to_string();
    let cut = raw_get(&addr, &uploaded.path, None).await;
    assert_eq!(cut.body, image[..10]);
    let rest = raw_get(&addr, &uploaded.path, Some("bytes=10-")).await;
    assert_eq!([cut.body, rest.body].concat(), image);
    let ranges: Vec<Option<String>> = firmware
        .requests(PRODUCT, "default", "3.0.0")
        .into_iter()
        .map(|r| r.range)
        .collect();
    assert_eq!(ranges, [None, Some("bytes=10-".to_owned())]);
}
