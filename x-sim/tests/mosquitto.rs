#![allow(clippy::unwrap_used)]
//! The platform as an MQTT client of a real Mosquitto (the Debian package: `apt-get install
//! -y mosquitto`), in-process (`Sim::start` with `Mqtt::External`) and as `x-sim serve
//! --broker mqtt://HOST:PORT`, with a plain rumqttc client as the device: the auth phase
//! for a plain and an encrypted product, a property report, an event, time sync, a platform
//! command, the platform rejoining a restarted broker, and a dropped platform leaving it.
//!
//! Mosquitto does not apply the platform's login rules (with an external broker they are the
//! broker's: this one allows anonymous clients), so devices log in with their usual
//! credentials and nothing is refused. MQTT 3.1.1 has no "no local": the platform, subscribed
//! to `/sys/#`, receives its own publishes and must ignore them; devices subscribe exact
//! topics.

mod common;

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Device, PLUG_SECRET, Serve, WAIT, authenticate, plug_device};
use serde_json::{Value, json};
use x_protocol::payload::AuthCode;
use x_protocol::{DeviceIdentity, DeviceSecret, HeaderCtrl, ProductKey, RegistrationType};
use x_sim::platform::Command as PlatformCommand;
use x_sim::sim::{Mqtt, Sim, SimConfig};

const INSTALL: &str = "the mosquitto broker is not installed: run `apt-get install -y \
                       mosquitto` (Debian package; the binary is /usr/sbin/mosquitto)";

/// The mosquitto binary: on PATH, or in the sbin directories a non-root PATH may lack.
fn mosquitto_binary() -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|dir| dir.join("mosquitto"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{INSTALL}"))
}

/// A Mosquitto of the test's own on a free loopback port; killed when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    /// How many times it was started (each run logs to its own file).
    runs: u32,
}

impl Mosquitto {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        // A free port can be taken by someone else before mosquitto binds it: try again.
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            if let Some(child) = spawn(dir.path(), port, 1) {
                return Self {
                    child,
                    port,
                    dir,
                    runs: 1,
                };
            }
        }
        panic!("mosquitto did not start: {}", read_log(dir.path(), 1));
    }

    /// Kills it and starts it again on the same port.
    fn restart(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        self.runs += 1;
        self.child = spawn(self.dir.path(), self.port, self.runs)
            .unwrap_or_else(|| panic!("mosquitto did not restart: {}", self.log()));
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// The current run's log.
    fn log(&self) -> String {
        read_log(self.dir.path(), self.runs)
    }

    /// Waits (up to [`WAIT`]) for the current run's log to contain `text`, letting the
    /// test's runtime (and an in-process platform on it) run meanwhile.
    async fn wait_log(&self, text: &str) -> bool {
        let until = Instant::now() + WAIT;
        while Instant::now() < until {
            if self.log().contains(text) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits (up to [`WAIT`]) for the platform's client `me` to subscribe to `/sys/#`;
    /// fails with the log.
    async fn expect_platform_subscribed(&self, me: &str) {
        assert!(
            self.wait_log(&format!("{me} 1 /sys/#")).await,
            "{me} did not subscribe to /sys/#: {}",
            self.log()
        );
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_log(dir: &Path, run: u32) -> String {
    std::fs::read_to_string(dir.join(format!("mosquitto-{run}.log"))).unwrap_or_default()
}

/// Starts mosquitto on `port`; `None` if it exits before it accepts connections.
fn spawn(dir: &Path, port: u16, run: u32) -> Option<Child> {
    let config = dir.join("mosquitto.conf");
    std::fs::write(
        &config,
        format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n\
             log_dest stderr\nlog_type all\nlog_timestamp false\n"
        ),
    )
    .unwrap();
    let log = std::fs::File::create(dir.join(format!("mosquitto-{run}.log"))).unwrap();
    let mut child = Command::new(mosquitto_binary())
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run mosquitto ({e}); {INSTALL}"));
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let until = Instant::now() + WAIT;
    while Instant::now() < until {
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Some(child);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// One plain type-1 product (its device pre-registered with a secret) and one encrypted
/// type-0 product (its devices register at auth), both on the smart-plug model.
fn registry_toml() -> String {
    let secret = format!("device_secret = \"{PLUG_SECRET}\"");
    [
        common::plug_product(),
        plug_device("PLUG0001", &secret),
        common::encrypted_product(),
    ]
    .concat()
}

struct Product {
    id: DeviceIdentity,
    key: ProductKey,
    ty: RegistrationType,
    encrypted: bool,
}

fn plain() -> Product {
    let (id, key, ty) = common::plug();
    Product {
        id,
        key,
        ty,
        encrypted: false,
    }
}

fn encrypted(node_eui: &str) -> Product {
    let (id, key, ty) = common::encrypted(node_eui);
    Product {
        id,
        key,
        ty,
        encrypted: true,
    }
}

/// The auth phase over `/sys/device/auth` (Code 0 with the DeviceSecret, and SessionID and
/// Nonce for the encrypted product), then the device online with the V2 login and
/// subscribed to its exact topics.
async fn online(broker: SocketAddr, p: &Product) -> Device {
    let reply = authenticate(broker, &p.id, &p.key, p.ty).await;
    assert_eq!(reply.code, AuthCode::Ok, "{reply:?}");
    let secret = reply.device_secret().unwrap();
    if !p.encrypted {
        assert_eq!(secret, PLUG_SECRET.parse::<DeviceSecret>().unwrap());
    }
    assert_eq!(reply.session().is_some(), p.encrypted, "{reply:?}");
    // Auth again (a new session for the encrypted product) and log in.
    let mut dev = Device::online(broker, &p.id, &p.key, p.ty).await;
    assert_eq!(dev.key.is_some(), p.encrypted);
    let granted = dev
        .subscribe(&[
            "model/property/report_ack",
            "model/event/overheat/report_ack",
            "update_time_ack",
            "model/property/set",
        ])
        .await;
    assert!(granted.iter().all(|g| *g), "{granted:?}");
    dev
}

/// A property report (and one the model refuses), an event and time sync, each acked on
/// its ack topic (`{topic}_ack`) with the request's MessageId and HeaderCtrl (checked by
/// `Device::acked`); nothing else arrives.
async fn device_rows(dev: &mut Device) {
    let time_sync = ("update_time", HeaderCtrl::TimeSync, json!(""), "200");
    for (topic, ctrl, payload, code) in common::plug_reports().into_iter().chain([time_sync]) {
        let ack = dev.acked(topic, ctrl, payload).await;
        assert_eq!(ack.code.as_str(), code, "{topic}: {ack:?}");
        if ctrl == HeaderCtrl::TimeSync {
            let data = ack.data.unwrap();
            assert!(
                data["timestamp"].as_i64().unwrap() > 1_700_000_000_000,
                "{data}"
            );
        }
    }
    // One ack each: the platform did not answer its own publishes.
    assert!(dev.quiet_for(Duration::from_millis(300)).await);
}

/// A property set from the platform, answered by the device with the applied values.
async fn property_set(sim: &Sim, dev: &mut Device, switch: i64) {
    let id = dev.id.clone();
    let (answer, ()) = tokio::join!(
        sim.platform().send_command(
            &id,
            PlatformCommand::SetProperties(json!({"switch": switch})),
            None
        ),
        dev.answer_property_set(
            json!([{"identify": "switch", "value": switch}]),
            json!({"switch": switch})
        )
    );
    let answer = answer.unwrap();
    assert_eq!(answer.ack().unwrap().data, Some(json!({"switch": switch})));
}

/// What the platform recorded from a device: only the device's own messages, once each.
fn received(sim: &Sim, id: &DeviceIdentity) -> Vec<(HeaderCtrl, Value)> {
    sim.platform()
        .received_from(id)
        .into_iter()
        .map(|r| (r.header_ctrl, r.payload))
        .collect()
}

async fn external_sim(broker: &Mosquitto) -> Sim {
    let mut config = SimConfig::local(common::registry(&registry_toml()));
    config.mqtt = Mqtt::External {
        host: "127.0.0.1".into(),
        port: broker.port,
    };
    config.http = None;
    Sim::start(config).await.unwrap()
}

#[tokio::test]
async fn in_process_platform_over_mosquitto() {
    let broker = Mosquitto::start();
    let sim = external_sim(&broker).await;
    assert!(sim.broker().is_none() && sim.mqtt_addr().is_none());
    // Joined as its own client, subscribed to /sys/#.
    let me = sim.client_id().unwrap().to_owned();
    broker.expect_platform_subscribed(&me).await;

    for p in [plain(), encrypted("ENC00001")] {
        let mut dev = online(broker.addr(), &p).await;
        if p.encrypted {
            assert_eq!(sim.platform().session_key(&p.id), dev.key);
        }
        device_rows(&mut dev).await;
        property_set(&sim, &mut dev, 0).await;
        assert!(dev.quiet_for(Duration::from_millis(300)).await);

        let latest = sim.platform().latest_properties(&p.id);
        assert_eq!(
            (&latest["switch"].value, &latest["power"].value),
            (&json!(1), &json!(12.5))
        );
        let ctrls: Vec<HeaderCtrl> = received(&sim, &p.id).into_iter().map(|r| r.0).collect();
        assert_eq!(
            ctrls,
            // (The report the model refused is not kept.)
            [
                HeaderCtrl::PropertyReport,
                HeaderCtrl::EventReport,
                HeaderCtrl::TimeSync,
                HeaderCtrl::PropertySet,
            ],
            "{}",
            p.id
        );
        // The encrypted device's frames travelled encrypted; the platform keeps them plain.
        assert_eq!(
            received(&sim, &p.id)[0].1,
            json!({"switch": 1, "power": 12.5})
        );
    }
}

#[tokio::test]
async fn platform_rejoins_a_restarted_mosquitto() {
    let mut broker = Mosquitto::start();
    let sim = external_sim(&broker).await;
    let me = sim.client_id().unwrap().to_owned();
    let p = encrypted("ENC00002");
    let mut dev = online(broker.addr(), &p).await;
    property_set(&sim, &mut dev, 1).await;
    drop(dev);

    broker.restart();
    // The platform reconnects on its own and subscribes again.
    broker.expect_platform_subscribed(&me).await;
    let mut dev = online(broker.addr(), &p).await;
    device_rows(&mut dev).await;
    property_set(&sim, &mut dev, 0).await;
}

#[tokio::test]
async fn serve_with_broker_flag_over_mosquitto() {
    let broker = Mosquitto::start();
    let config = common::registry_file(broker.dir.path(), &registry_toml());
    let url = broker.url();
    let serve = Serve::start(&[
        "--config",
        config.to_str().unwrap(),
        "--broker",
        &url,
        "--http",
        "off",
    ]);
    assert!(serve.mqtt.is_none() && serve.http.is_none());
    let me = format!("x-sim-platform-{}-0", serve.child.id());
    broker.expect_platform_subscribed(&me).await;

    for p in [plain(), encrypted("ENC00003")] {
        let mut dev = online(broker.addr(), &p).await;
        device_rows(&mut dev).await;
        let prefix = p.id.topic_prefix();
        assert!(serve.wait_log(&format!("<- {prefix}/update_time")));
        // It logs what it received and what it sent, and did not take its own acks for
        // device messages.
        let log = serve.log();
        let count = |text: &str| log.iter().filter(|l| l.contains(text)).count();
        assert_eq!(
            count(&format!("<- {prefix}/model/property/report ")),
            2,
            "{log:#?}"
        );
        assert_eq!(count(&format!("-> {prefix}/model/property/report_ack ")), 2);
        assert_eq!(count(&format!("<- {prefix}/model/property/report_ack")), 0);
        assert_eq!(count(&format!("<- {prefix}/downlink")), 0);
    }
    assert_eq!(
        serve
            .log()
            .iter()
            .filter(|l| l.contains("<- /sys/device/auth"))
            .count(),
        4
    );
}

/// A dropped platform leaves the broker instead of reconnecting for ever.
#[tokio::test]
async fn a_dropped_platform_leaves_the_broker() {
    let broker = Mosquitto::start();
    let first = external_sim(&broker).await;
    let me = first.client_id().unwrap().to_owned();
    drop(first);
    assert!(
        broker
            .wait_log(&format!("Client {me} closed its connection"))
            .await,
        "{}",
        broker.log()
    );
    let sim = external_sim(&broker).await;
    let mut dev = online(broker.addr(), &plain()).await;
    device_rows(&mut dev).await;
    property_set(&sim, &mut dev, 1).await;
    assert!(
        !broker.log().contains("already connected"),
        "{}",
        broker.log()
    );
}
