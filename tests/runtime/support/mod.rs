//! What the runtime tests share: one registry of every kind of product, x-sim on it
//! in-process, tracing to the test output, and waiting for a condition.
#![allow(dead_code)]

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

/// How long a test waits for any one thing.
pub const WAIT: Duration = Duration::from_secs(15);

/// The products and devices of the runtime tests (model paths relative to the workspace):
/// the smart plug plain and pre-registered (type 1), encrypted and self-registering (type 0),
/// and with a burned-in DeviceSecret (type 2), plain and encrypted; a product whose platform
/// model is the environment sensor's, for a smart plug built on another model than the
/// platform's (its reports are refused "4001"); the HEX meter plain and encrypted; a
/// passthrough product, plain and encrypted.
pub const REGISTRY: &str = r#"
[[product]]
open_id = "7ED01E2A"
product_id = "AA30C505"
product_key = "DB6FACEF35BEBA0517712F0E4BE32936"
registration = 1
format = "json"
model = "models/smart-plug.json"

[[device]]
product_id = "AA30C505"
node_eui = "PLUG0001"

[[product]]
open_id = "7ED01E2A"
product_id = "5E7A0B32"
product_key = "00112233445566778899AABBCCDDEEFF"
registration = 0
encrypted = true
format = "json"
model = "models/smart-plug.json"

[[product]]
open_id = "7ED01E2A"
product_id = "2D2D2D2D"
product_key = "A1A2A3A4A5A6A7A8A9AAABACADAEAFA0"
registration = 2
format = "json"
model = "models/smart-plug.json"

[[device]]
product_id = "2D2D2D2D"
node_eui = "PLUGT2"
device_secret = "326086233FAB8A96566796551EB1DFF8"

[[product]]
open_id = "7ED01E2A"
product_id = "2E2E2E2E"
product_key = "B1B2B3B4B5B6B7B8B9BABBBCBDBEBFB0"
registration = 2
encrypted = true
format = "json"
model = "models/smart-plug.json"

[[device]]
product_id = "2E2E2E2E"
node_eui = "PLUGT2E"
device_secret = "426086233FAB8A96566796551EB1DFF8"

[[product]]
open_id = "7ED01E2A"
product_id = "E5E5E5E5"
product_key = "C1C2C3C4C5C6C7C8C9CACBCCCDCECFC0"
registration = 1
format = "json"
model = "models/env-sensor.json"

[[device]]
product_id = "E5E5E5E5"
node_eui = "PLUGOLD1"

[[product]]
open_id = "7ED01E2A"
product_id = "4D455445"
product_key = "0F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
format = "hex"
model = "models/meter-hex.json"

[[device]]
product_id = "4D455445"
node_eui = "MTR00001"

[[device]]
product_id = "4D455445"
node_eui = "MTR00002"

[[product]]
open_id = "7ED01E2A"
product_id = "4D455446"
product_key = "1F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
encrypted = true
format = "hex"
model = "models/meter-hex.json"

[[device]]
product_id = "4D455446"
node_eui = "MTRENC01"

[[product]]
open_id = "7ED01E2A"
product_id = "9A55A55A"
product_key = "2F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
format = "passthrough"

[[device]]
product_id = "9A55A55A"
node_eui = "DTU00001"

[[product]]
open_id = "7ED01E2A"
product_id = "9A55A55B"
product_key = "3F1E2D3C4B5A69788796A5B4C3D2E1F0"
registration = 1
encrypted = true
format = "passthrough"

[[device]]
product_id = "9A55A55B"
node_eui = "DTUENC01"
"#;

/// Logs to the test output; `RUST_LOG=x_runtime=debug,x_sim=info` shows both sides.
pub fn tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

/// A `MakeWriter` into a shared buffer: a test's own tracing subscriber writes here, and the
/// test reads the log back.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    /// What was logged so far.
    pub fn text(&self) -> String {
        let bytes = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// The tests' configuration of x-sim: [`REGISTRY`], in memory, free loopback ports.
pub fn config() -> SimConfig {
    tracing();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    SimConfig::local(Registry::from_toml(REGISTRY, root).expect("the tests' registry"))
}

/// x-sim in-process on its embedded broker.
pub async fn sim() -> Sim {
    Sim::start(config()).await.expect("x-sim starts")
}

/// x-sim joined to `broker` as a client (`--broker` mode), subscribed before this returns.
pub async fn sim_on(broker: &x_sim::mosquitto::Mosquitto) -> Sim {
    let mut config = config();
    config.mqtt = x_sim::sim::Mqtt::External {
        host: "127.0.0.1".into(),
        port: broker.port(),
    };
    config.http = None;
    let sim = Sim::start(config).await.expect("x-sim starts");
    platform_subscribed(broker).await;
    sim
}

/// Waits until the platform's client has subscribed to `/sys/#` on `broker` (after it
/// started or restarted).
pub async fn platform_subscribed(broker: &x_sim::mosquitto::Mosquitto) {
    let until = std::time::Instant::now() + WAIT;
    while !broker.log().contains(" 1 /sys/#") && std::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until `done` holds, failing the test after [`WAIT`].
pub async fn wait_for(done: impl Fn() -> bool) {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("condition within the wait");
}

/// A CA and a server certificate for `localhost` and `127.0.0.1` signed by it, written
/// under `dir`: the CA file, and the server's certificate and key files.
pub fn certificates(dir: &Path) -> (std::path::PathBuf, x_sim::mosquitto::TlsFiles) {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "x-sdk test CA");
    let ca = ca_params.self_signed(&ca_key).expect("CA certificate");
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().expect("server key");
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("server");
    let cert = params.signed_by(&key, &issuer).expect("server certificate");
    std::fs::create_dir_all(dir).expect("certificate dir");
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).expect("CA file");
    let files = x_sim::mosquitto::TlsFiles {
        cert: dir.join("server.pem"),
        key: dir.join("server.key"),
    };
    std::fs::write(&files.cert, cert.pem()).expect("server certificate file");
    std::fs::write(&files.key, key.serialize_pem()).expect("server key file");
    (ca_file, files)
}

/// The resident memory (VmRSS) of process `pid`, in bytes; 0 where /proc does not say.
pub fn resident_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// x-sim joined to `broker` as a client, with its HTTP listener (and so, given a data
/// directory, a firmware server), after `configure` had its say; subscribed before this
/// returns.
pub async fn sim_on_with(
    broker: &x_sim::mosquitto::Mosquitto,
    configure: impl FnOnce(&mut SimConfig),
) -> Sim {
    let mut config = config();
    config.mqtt = x_sim::sim::Mqtt::External {
        host: "127.0.0.1".into(),
        port: broker.port(),
    };
    configure(&mut config);
    let sim = Sim::start(config).await.expect("x-sim starts");
    platform_subscribed(broker).await;
    sim
}

/// Messages as they were on the wire: (topic, payload bytes), oldest first.
type Seen = std::sync::Arc<std::sync::Mutex<Vec<(String, Vec<u8>)>>>;

/// A plain MQTT client on a broker that records every message on its filter, as it was on
/// the wire: what a device really received, not what the platform meant to send.
pub struct Sniffer {
    seen: Seen,
    task: tokio::task::JoinHandle<()>,
}

impl Sniffer {
    /// Subscribes to `filter` on `broker` (QoS 1), and returns once the broker granted it.
    pub async fn start(broker: &x_sim::mosquitto::Mosquitto, filter: &str) -> Self {
        use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
        let mut options = MqttOptions::new("x-sdk-test-sniffer", "127.0.0.1", broker.port());
        options.set_max_packet_size(1 << 20, 1 << 20);
        let (client, mut events) = AsyncClient::new(options, 16);
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .expect("sniffer subscribe queued");
        let seen: Seen = Default::default();
        let (subscribed, granted) = tokio::sync::oneshot::channel();
        let mut subscribed = Some(subscribed);
        let keep = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        if let Some(tx) = subscribed.take() {
                            let _ = tx.send(());
                        }
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        keep.lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .push((p.topic.clone(), p.payload.to_vec()));
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        tokio::time::timeout(WAIT, granted)
            .await
            .expect("the sniffer's SUBACK within the wait")
            .expect("the sniffer runs");
        Self { seen, task }
    }

    /// Every message seen so far: (topic, payload bytes), oldest first.
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl Drop for Sniffer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
