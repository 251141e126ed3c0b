//! What x-sim's tests share: the products and devices of their registries, the devices
//! themselves, an HTTP client for the API, and `x-sim serve` as a child process.
//!
//! The devices are the SDK's: a device that behaves is an `x_runtime::Device` on the
//! generated smart-plug bindings ([`Params::plug`]); a test that must see or choose the
//! bytes (what the platform sends, a device that misbehaves) uses a [`wire::Wire`], a raw
//! connection whose login and answers are the runtime's sans-IO session's.
#![allow(dead_code, clippy::unwrap_used)]

pub mod browser;
pub mod wire;

/// The smart plug's bindings, as x-codegen generates them from models/smart-plug.json.
#[rustfmt::skip]
#[path = "../../../../tests/golden/smart_plug.rs"]
#[allow(dead_code)]
pub mod smart_plug;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Map, Value, json};
use smart_plug::{
    OverheatAction, OverheatEvent, ResetOutput, ResetScope, SmartPlug, SmartPlugReport,
    SmartPlugService, SmartPlugServiceHandler,
};
use x_protocol::model::{Date, ServiceFailure, ThingModel, ThingServices};
use x_protocol::{ConnectType, DeviceIdentity, ProductKey, RegistrationType};
use x_runtime::{
    Ack, BackoffConfig, Delivery, DeliveryError, Device, DeviceBuilder, DeviceConfig, DeviceError,
    Refusal, Request,
};
use x_sim::registry::Registry;
use x_sim::sim::{Sim, SimConfig};

/// How long a test waits for any one thing.
pub const WAIT: Duration = Duration::from_secs(5);

/// The workspace root (registry model paths are relative to it).
pub fn root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

/// A registry from TOML text, model paths relative to the workspace root.
pub fn registry(toml: &str) -> Registry {
    Registry::from_toml(toml, root()).unwrap()
}

/// The platform in-process on free ports, in memory. `RUST_LOG=x_sim=info,x_runtime=debug`
/// shows both sides of the traffic.
pub async fn sim(toml: &str) -> Sim {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    Sim::start(SimConfig::local(registry(toml))).await.unwrap()
}

/// The OpenID of the tests' products.
const OPEN_ID: &str = "7ED01E2A";
/// The smart plug: a plain JSON product of type 1 (its devices are pre-registered).
const PLUG_ID: &str = "AA30C505";
const PLUG_KEY: &str = "DB6FACEF35BEBA0517712F0E4BE32936";
/// An encrypted JSON product of type 0 (its devices register themselves at auth).
const ENCRYPTED_ID: &str = "5E7A0B32";
const ENCRYPTED_KEY: &str = "00112233445566778899AABBCCDDEEFF";

/// The DeviceSecret of PLUG0001 where a registry gives it one (`device_secret = ...`).
pub const PLUG_SECRET: &str = "326086233FAB8A96566796551EB1DFF8";

/// Registry TOML: a JSON product on the smart-plug model.
fn smart_plug_model_product(id: &str, key: &str, registration: u8, encrypted: bool) -> String {
    format!(
        r#"
[[product]]
open_id = "{OPEN_ID}"
product_id = "{id}"
product_key = "{key}"
registration = {registration}
encrypted = {encrypted}
format = "json"
model = "models/smart-plug.json"
"#
    )
}

/// Registry TOML: the smart plug, a plain JSON product of type 1 (its devices are
/// pre-registered: [`plug_device`]).
pub fn plug_product() -> String {
    smart_plug_model_product(PLUG_ID, PLUG_KEY, 1, false)
}

/// Registry TOML: an encrypted JSON product of type 0 on the smart-plug model (its devices
/// register themselves at auth).
pub fn encrypted_product() -> String {
    smart_plug_model_product(ENCRYPTED_ID, ENCRYPTED_KEY, 0, true)
}

/// Registry TOML: a device of [`plug_product`], with `more` lines (`enabled = false`, ...).
pub fn plug_device(node_eui: &str, more: &str) -> String {
    format!("\n[[device]]\nproduct_id = \"{PLUG_ID}\"\nnode_eui = \"{node_eui}\"\n{more}\n")
}

/// Writes registry TOML as `dir/registry.toml` for `x-sim serve --config`, its model paths
/// made absolute (in a file they are relative to the file's directory); returns the path.
pub fn registry_file(dir: &Path, toml: &str) -> PathBuf {
    let models = root()
        .join("models")
        .display()
        .to_string()
        .replace('\\', "/");
    let file = dir.join("registry.toml");
    std::fs::write(&file, toml.replace("\"models/", &format!("\"{models}/"))).unwrap();
    file
}

/// The parameters burned into a test device.
#[derive(Debug, Clone)]
pub struct Params {
    pub id: DeviceIdentity,
    pub product_key: ProductKey,
    pub registration: RegistrationType,
    pub encrypted: bool,
}

/// PLUG0001 of [`plug_product`].
pub fn plug() -> Params {
    plug_named("PLUG0001")
}

/// A device of [`plug_product`] (registered or not).
pub fn plug_named(node_eui: &str) -> Params {
    Params::new(PLUG_ID, node_eui, PLUG_KEY)
}

/// A device of [`encrypted_product`] (it registers itself at auth).
pub fn encrypted(node_eui: &str) -> Params {
    Params {
        registration: RegistrationType::ProductSecretUnregistered,
        encrypted: true,
        ..Params::new(ENCRYPTED_ID, node_eui, ENCRYPTED_KEY)
    }
}

/// A smart-plug device as product code builds it.
pub type Plug = Device<SmartPlug, SmartPlugService>;

impl Params {
    /// A device of another product of the tests' OpenID (type 1, plain).
    pub fn new(product_id: &str, node_eui: &str, product_key: &str) -> Self {
        Self {
            id: DeviceIdentity::parse(OPEN_ID, product_id, node_eui).unwrap(),
            product_key: product_key.parse().unwrap(),
            registration: RegistrationType::ProductSecretPreRegistered,
            encrypted: false,
        }
    }

    /// A runtime device of any model with these parameters on the broker at `addr`:
    /// reconnects paced from 100 ms to 2 s, acks awaited 3 s.
    pub fn builder<M, S>(&self, addr: SocketAddr) -> DeviceBuilder<M, S>
    where
        M: ThingModel + Default + Send + 'static,
        M::Set: Send,
        S: ThingServices + Send + 'static,
    {
        Device::<M, S>::builder(self.id.clone(), self.product_key.clone())
            .broker(&format!("mqtt://{addr}"))
            .unwrap()
            .registration(self.registration)
            .encrypted(self.encrypted)
            .backoff(BackoffConfig {
                base: Duration::from_millis(100),
                cap: Duration::from_secs(2),
                jitter: 1.0,
            })
            .ack_timeout(Duration::from_secs(3))
    }

    /// The smart plug as product code writes it ([`Params::builder`]), its services run by
    /// [`Relay`], firmware `h1` / `1.0.0`.
    pub fn plug(&self, addr: SocketAddr) -> DeviceBuilder<SmartPlug, SmartPlugService> {
        self.builder(addr)
            .firmware("h1", "1.0.0")
            .services(|call: SmartPlugService| call.dispatch(&mut Relay))
    }

    /// The session configuration of a [`wire::Wire`]: it sends nothing on its own (no
    /// firmware report, no time sync) and logs in with an unchecked timestamp (so that it
    /// may follow another login of the same device within a second).
    pub fn config(&self) -> DeviceConfig {
        let mut config = DeviceConfig::new(self.id.clone(), self.product_key.clone());
        config.registration = self.registration;
        config.encrypted = self.encrypted;
        config.connect_type = ConnectType::Unchecked;
        config.firmware.clear();
        config.timing.time_sync = false;
        config
    }
}

/// The smart plug's services as product code implements the generated handler: `reset`
/// with scope 0 answers `{result: 1, resetAt: 1700000000000}`, scope 1 fails;
/// `setSchedule` needs `offAt` after `onAt`.
pub struct Relay;

impl SmartPlugServiceHandler for Relay {
    fn reset(&mut self, scope: ResetScope) -> Result<ResetOutput, ServiceFailure> {
        match scope {
            ResetScope::Key0 => Ok(ResetOutput {
                result: true,
                reset_at: Date::from_millis(1_700_000_000_000),
            }),
            ResetScope::Key1 => Err("factory reset needs the button held".into()),
        }
    }

    fn set_schedule(&mut self, on_at: Date, off_at: Date, _: bool) -> Result<(), ServiceFailure> {
        if off_at <= on_at {
            return Err("offAt must be later than onAt".into());
        }
        Ok(())
    }
}

/// Starts a device and waits until it is online.
pub async fn online<M, S>(builder: DeviceBuilder<M, S>) -> Device<M, S>
where
    M: ThingModel + Send + 'static,
    M::Set: Send,
    S: ThingServices + Send + 'static,
{
    tokio::time::timeout(2 * WAIT, builder.connect())
        .await
        .expect("not online in time")
        .unwrap_or_else(|e| panic!("not online: {e}"))
}

/// Why the platform refused a runtime device's first login.
pub async fn refusal(builder: DeviceBuilder<SmartPlug, SmartPlugService>) -> Refusal {
    match tokio::time::timeout(2 * WAIT, builder.connect()).await {
        Ok(Err(DeviceError::Refused(refusal))) => refusal,
        Ok(Err(e)) => panic!("not a refusal: {e}"),
        Ok(Ok(device)) => panic!("not refused: {device:?}"),
        Err(_) => panic!("neither online nor refused in time"),
    }
}

/// The platform's ack of something sent: waits for the window, then for the ack.
pub async fn acked(
    sent: impl Future<Output = Result<Delivery, DeliveryError>>,
) -> Result<Ack, DeliveryError> {
    let delivery = sent.await?;
    tokio::time::timeout(WAIT, delivery)
        .await
        .expect("no outcome in time")
}

/// The smart plug's property report (switch on, power 12.5 W) and overheat event
/// (96.5 degrees, power cut), both acked "200".
pub async fn report_and_event(device: &Plug) {
    let report = SmartPlugReport::default()
        .with_switch(true)
        .with_power(12.5);
    acked(device.report(report)).await.unwrap();
    let event = OverheatEvent {
        temperature: 96.5,
        action: OverheatAction::PowerCut,
    };
    acked(device.event(&event)).await.unwrap();
}

/// A property report the model refuses (power 99999, which no runtime device sends), sent
/// over a wire: the platform acks it "4001" with the reason.
pub async fn refused_report(wire: &mut wire::Wire) {
    let topic = wire.topic(x_protocol::TopicKind::PropertyReport);
    let ctrl = x_protocol::HeaderCtrl::PropertyReport;
    let ack = wire.acked(&topic, ctrl, json!({"power": 99_999})).await;
    assert_eq!(
        (ack.code.as_str(), ack.msg.as_str()),
        ("4001", "power: 99999 is above the maximum 3500")
    );
}

/// The next request from the platform that `pick` takes, skipping others.
pub async fn request<T>(
    device: &Plug,
    mut pick: impl FnMut(Request<SmartPlug, SmartPlugService>) -> Option<T>,
) -> T {
    tokio::time::timeout(WAIT, async {
        loop {
            let request = device.next_request().await.expect("the device stopped");
            if let Some(t) = pick(request) {
                return t;
            }
        }
    })
    .await
    .expect("no such request in time")
}

/// Whether no request but time-sync notices arrives within `within`.
pub async fn no_request(device: &Plug, within: Duration) -> bool {
    tokio::time::timeout(within, async {
        loop {
            match device.next_request().await {
                Some(Request::TimeSynced { .. }) => {}
                other => return other,
            }
        }
    })
    .await
    .is_err()
}

/// Waits (up to [`WAIT`]) until `done` holds.
pub async fn wait_for(what: &str, done: impl Fn() -> bool) {
    let until = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < until, "still not {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A JSON object.
pub fn object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        other => panic!("not an object: {other}"),
    }
}

/// An HTTP client for the JSON API of one platform.
pub struct Api {
    base: String,
    pub client: reqwest::Client,
}

/// Installs the process-wide rustls provider reqwest needs (the workspace's reqwest has
/// none of its own: see x-sim's Cargo.toml); call before building an HTTP client.
pub fn http_ready() {
    // ring, as the runtime uses (deprecated in rustls 0.23.48 for lacking post-quantum
    // key exchange; see x-runtime/src/tls.rs).
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Api {
    /// For an in-process platform.
    pub fn new(sim: &Sim) -> Self {
        Self::at(sim.http_addr().unwrap())
    }

    /// For the API on `http`.
    pub fn at(http: SocketAddr) -> Self {
        http_ready();
        Self {
            base: format!("http://{http}"),
            client: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.put(self.url(path))
    }

    pub fn patch(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.patch(self.url(path))
    }

    /// Sends a request; the status and the body as JSON (or as a JSON string when it is not
    /// JSON).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> (StatusCode, Value) {
        let response = request.send().await.unwrap();
        let status = response.status();
        let bytes = response.bytes().await.unwrap();
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, body)
    }

    /// GET, expecting 200.
    pub async fn ok(&self, path: &str) -> Value {
        let (status, body) = self.send(self.get(path)).await;
        assert_eq!(status, StatusCode::OK, "GET {path}: {body}");
        body
    }

    /// Polls GET `path` until `done` holds for the body (up to [`WAIT`]).
    pub async fn until(&self, path: &str, done: impl Fn(&Value) -> bool) -> Value {
        let until = Instant::now() + WAIT;
        loop {
            let body = self.ok(path).await;
            if done(&body) {
                return body;
            }
            assert!(Instant::now() < until, "GET {path}: still {body}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// What `pick` takes from each entry of a list the API answered (it must take something).
pub fn each<'a, T>(list: &'a Value, pick: impl Fn(&'a Value) -> Option<T>) -> Vec<T> {
    list.as_array()
        .unwrap_or_else(|| panic!("not a list: {list}"))
        .iter()
        .map(|entry| pick(entry).unwrap_or_else(|| panic!("unexpected entry {entry}")))
        .collect()
}

/// The `node_eui` of each device in the API's device list.
pub fn node_euis(devices: &Value) -> Vec<&str> {
    each(devices, |d| d["node_eui"].as_str())
}

/// The `seq` of each message in a list of the API's messages.
pub fn seqs(messages: &Value) -> Vec<u64> {
    each(messages, |m| m["seq"].as_u64())
}

/// `x-sim serve` as a child process: its addresses, and its log (stderr) collected in the
/// background.
pub struct Serve {
    pub child: std::process::Child,
    pub mqtt: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _stdout: std::io::BufReader<std::process::ChildStdout>,
}

impl Serve {
    /// Starts `x-sim serve ARGS` and reads the address lines it prints.
    pub fn start(args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_x-sim"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                sink.lock().unwrap().push(line);
            }
        });
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let (mut mqtt, mut http) = (None, None);
        let wants_http = !args.windows(2).any(|w| w == ["--http", "off"]);
        // With --broker there is no listener to print: wait for the platform to join.
        let wants_joined = args.contains(&"--broker");
        let wants_mqtt = !wants_joined;
        let mut joined = false;
        while (wants_mqtt && mqtt.is_none())
            || (wants_http && http.is_none())
            || (wants_joined && !joined)
        {
            let mut line = String::new();
            if stdout.read_line(&mut line).unwrap() == 0 {
                panic!("x-sim serve exited: {:?}", log.lock().unwrap());
            }
            if let Some(a) = line.trim().strip_prefix("x-sim: broker listening on ") {
                mqtt = Some(a.parse().unwrap());
            }
            if let Some(a) = line.trim().strip_prefix("x-sim: HTTP API on http://") {
                http = Some(a.parse().unwrap());
            }
            if line.starts_with("x-sim: platform joined the broker at ") {
                joined = true;
            }
        }
        Self {
            child,
            mqtt,
            http,
            log,
            _stdout: stdout,
        }
    }

    /// The log lines so far.
    pub fn log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// `x-sim serve --config CONFIG` with the embedded broker and HTTP on free loopback
    /// ports, plus `extra` flags.
    pub fn local(config: &Path, extra: &[&str]) -> Self {
        let config = config.to_str().unwrap();
        let mut args = vec![
            "--config",
            config,
            "--listen",
            "127.0.0.1:0",
            "--http",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Self::start(&args)
    }

    /// Waits (up to [`WAIT`]) for a log line containing `text`.
    pub fn wait_log(&self, text: &str) -> bool {
        let until = std::time::Instant::now() + WAIT;
        while std::time::Instant::now() < until {
            if self.log().iter().any(|l| l.contains(text)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// Kills the process the hard way (SIGKILL: no shutdown code runs).
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
