//! A plain rumqttc client acting as a device, for tests of the platform: the auth phase,
//! the V2 login, exact-topic subscriptions, frames out (encrypted when the device has a
//! SessionKey) and frames in, and the device's side of platform commands. Nothing of the
//! SDK's runtime is used. Also: the products and devices the tests share, an HTTP client for
//! the API, and `x-sim serve` as a child process.
//!
//! The device helpers that assert are plain functions returning their future and marked
//! `#[track_caller]` (on an `async fn` the attribute does nothing): a failure names the
//! test's line.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::panic::Location;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS,
};
use serde_json::{Value, json};
use x_protocol::payload::{AuthReply, AuthRequest};
use x_protocol::{
    AckPayload, ConnectType, DeviceIdentity, DeviceSecret, Frame, HeaderCtrl, MqttLogin,
    ProductKey, RegistrationType, SessionKey, derive_session_key,
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

/// The platform in-process on free ports, in memory.
pub async fn sim(toml: &str) -> Sim {
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

/// PLUG0001 of [`plug_product`]: its identity, the ProductKey and the registration type.
pub fn plug() -> (DeviceIdentity, ProductKey, RegistrationType) {
    (
        DeviceIdentity::parse(OPEN_ID, PLUG_ID, "PLUG0001").unwrap(),
        PLUG_KEY.parse().unwrap(),
        RegistrationType::ProductSecretPreRegistered,
    )
}

/// A device of [`encrypted_product`]: its identity, the ProductKey and the registration
/// type.
pub fn encrypted(node_eui: &str) -> (DeviceIdentity, ProductKey, RegistrationType) {
    (
        DeviceIdentity::parse(OPEN_ID, ENCRYPTED_ID, node_eui).unwrap(),
        ENCRYPTED_KEY.parse().unwrap(),
        RegistrationType::ProductSecretUnregistered,
    )
}

/// Device messages of the smart plug (`P/topic`, HeaderCtrl, payload) and the ack Code each
/// gets: a property report (switch 1, power 12.5), one the model refuses (power 99999:
/// acked 4001, not kept) and an overheat event (temperature 96.5, action 1).
pub fn plug_reports() -> [(&'static str, HeaderCtrl, Value, &'static str); 3] {
    [
        (
            "model/property/report",
            HeaderCtrl::PropertyReport,
            json!({"switch": 1, "power": 12.5}),
            "200",
        ),
        (
            "model/property/report",
            HeaderCtrl::PropertyReport,
            json!({"power": 99_999}),
            "4001",
        ),
        (
            "model/event/overheat/report",
            HeaderCtrl::EventReport,
            json!({"temperature": 96.5, "action": 1}),
            "200",
        ),
    ]
}

/// The payload of an ack frame.
#[track_caller]
pub fn ack_of(frame: &Frame) -> AckPayload {
    serde_json::from_value(frame.payload.clone())
        .unwrap_or_else(|e| panic!("not an ack ({e}): {frame:?}"))
}

/// A device connected to a broker.
pub struct Device {
    pub id: DeviceIdentity,
    pub client: AsyncClient,
    events: EventLoop,
    inbox: VecDeque<(String, Vec<u8>)>,
    /// The SessionKey of an encrypted product: frames out are encrypted with it (except 1,
    /// 28, 29) and frames in are decrypted.
    pub key: Option<SessionKey>,
    next_id: u32,
}

/// Why a connection did not come up.
#[derive(Debug, PartialEq)]
pub enum Refused {
    /// A CONNACK with this code.
    Code(ConnectReturnCode),
    /// The connection closed without a CONNACK.
    Closed(String),
}

async fn open(addr: SocketAddr, login: &MqttLogin) -> Result<(AsyncClient, EventLoop), Refused> {
    let mut options = MqttOptions::new(&login.client_id, addr.ip().to_string(), addr.port());
    options.set_credentials(&login.username, login.password.expose());
    options.set_keep_alive(Duration::from_secs(30));
    let (client, mut events) = AsyncClient::new(options, 64);
    tokio::time::timeout(WAIT, async {
        loop {
            match events.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => return Ok(()),
                Err(ConnectionError::ConnectionRefused(code)) => return Err(Refused::Code(code)),
                Err(e) => return Err(Refused::Closed(e.to_string())),
                _ => {}
            }
        }
    })
    .await
    .expect("no CONNACK in time")?;
    Ok((client, events))
}

/// The auth phase: connects with the ProductKey, asks, returns the reply.
pub async fn authenticate(
    addr: SocketAddr,
    id: &DeviceIdentity,
    product_key: &ProductKey,
    ty: RegistrationType,
) -> AuthReply {
    authenticate_as(addr, id, id, product_key, ty).await
}

/// The auth phase with a request about `asked` from a login as `id`.
pub async fn authenticate_as(
    addr: SocketAddr,
    id: &DeviceIdentity,
    asked: &DeviceIdentity,
    product_key: &ProductKey,
    ty: RegistrationType,
) -> AuthReply {
    let login = MqttLogin::auth(id, product_key);
    let (client, events) = open(addr, &login).await.unwrap();
    let mut d = Device::new(id, client, events);
    d.subscribe_full(&format!("{}/downlink", id.topic_prefix()))
        .await;
    let request = AuthRequest {
        open_id: asked.open_id.clone(),
        product_id: asked.product_id.clone(),
        node_eui: asked.node_eui.clone(),
        registration_type: ty,
    };
    let frame = Frame::with_payload(4242u32, HeaderCtrl::Auth, &request).unwrap();
    d.publish_bytes("/sys/device/auth", frame.encode()).await;
    let (topic, reply) = d.next_frame().await;
    assert_eq!(topic, format!("{}/downlink", id.topic_prefix()));
    assert_eq!(reply.message_id, 4242u32.into());
    reply.payload_as().unwrap()
}

impl Device {
    fn new(id: &DeviceIdentity, client: AsyncClient, events: EventLoop) -> Self {
        Self {
            id: id.clone(),
            client,
            events,
            inbox: VecDeque::new(),
            key: None,
            next_id: 1,
        }
    }

    /// The V2 login.
    pub async fn connect(
        addr: SocketAddr,
        id: &DeviceIdentity,
        product_key: &ProductKey,
        secret: &DeviceSecret,
        ty: ConnectType,
        timestamp: u64,
    ) -> Result<Self, Refused> {
        let login = MqttLogin::connect(id, product_key, secret, ty, timestamp);
        let (client, events) = open(addr, &login).await?;
        Ok(Self::new(id, client, events))
    }

    /// Both phases: auth (for the secret and session), then the V2 login with type 1 and
    /// the current time.
    pub async fn online(
        addr: SocketAddr,
        id: &DeviceIdentity,
        product_key: &ProductKey,
        ty: RegistrationType,
    ) -> Self {
        let reply = authenticate(addr, id, product_key, ty).await;
        assert!(reply.code == x_protocol::payload::AuthCode::Ok, "{reply:?}");
        let secret = reply.device_secret().unwrap();
        let mut d = Self::connect(addr, id, product_key, &secret, ConnectType::Unchecked, 1)
            .await
            .unwrap();
        if let Some(g) = reply.session() {
            d.key = Some(derive_session_key(product_key, &g.session_id, g.nonce).unwrap());
        }
        d
    }

    /// Subscribes to `P/suffix` for each suffix (exact topics), waiting for the SUBACKs.
    /// Returns the return codes.
    pub async fn subscribe(&mut self, suffixes: &[&str]) -> Vec<bool> {
        let mut granted = Vec::new();
        for s in suffixes {
            let topic = format!("{}/{s}", self.id.topic_prefix());
            granted.push(self.subscribe_full(&topic).await);
        }
        granted
    }

    /// Subscribes to a full filter; whether it was granted.
    pub async fn subscribe_full(&mut self, filter: &str) -> bool {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        let ack = self
            .poll_until(|e| match e {
                Event::Incoming(Packet::SubAck(a)) => Some(a.return_codes.clone()),
                _ => None,
            })
            .await;
        matches!(ack.first(), Some(rumqttc::SubscribeReasonCode::Success(_)))
    }

    /// Polls the connection until `f` picks an event, keeping publishes that arrive.
    async fn poll_until<T>(&mut self, mut f: impl FnMut(&Event) -> Option<T>) -> T {
        tokio::time::timeout(WAIT, async {
            loop {
                let event = self.events.poll().await.expect("connection failed");
                if let Event::Incoming(Packet::Publish(p)) = &event {
                    self.inbox.push_back((p.topic.clone(), p.payload.to_vec()));
                }
                if let Some(t) = f(&event) {
                    return t;
                }
            }
        })
        .await
        .expect("timed out waiting on the connection")
    }

    /// Whether the connection closes within `within` (a dropped client, a refused publish).
    pub async fn closes_within(&mut self, within: Duration) -> bool {
        tokio::time::timeout(within, async {
            loop {
                if self.events.poll().await.is_err() {
                    return;
                }
            }
        })
        .await
        .is_ok()
    }

    /// Publishes raw bytes on a full topic and waits until they are sent.
    pub async fn publish_bytes(&mut self, topic: &str, bytes: Vec<u8>) {
        self.client
            .publish(topic, QoS::AtLeastOnce, false, bytes)
            .await
            .unwrap();
        self.poll_until(|e| matches!(e, Event::Outgoing(Outgoing::Publish(_))).then_some(()))
            .await;
    }

    /// A fresh MessageId.
    pub fn next_id(&mut self) -> u32 {
        self.next_id += 1;
        self.next_id
    }

    /// Publishes a frame on `P/suffix`, encrypted with the SessionKey when there is one and
    /// the command is encrypted.
    pub async fn send(&mut self, suffix: &str, mut frame: Frame) {
        if let Some(key) = &self.key
            && frame.header_ctrl.is_encrypted_uplink()
        {
            frame.encrypt_payload(key);
        }
        let topic = format!("{}/{suffix}", self.id.topic_prefix());
        self.publish_bytes(&topic, frame.encode()).await;
    }

    /// Sends a frame with a fresh MessageId and returns the next frame received (its topic
    /// suffix, and the frame with its payload decrypted).
    pub async fn request(
        &mut self,
        suffix: &str,
        ctrl: HeaderCtrl,
        payload: Value,
    ) -> (String, Frame) {
        let id = self.next_id();
        self.send(suffix, Frame::new(id, ctrl, payload)).await;
        let (topic, frame) = self.next().await;
        assert_eq!(frame.message_id, id.into(), "{topic}: {frame:?}");
        (topic, frame)
    }

    /// The next message: topic suffix (after `P/`) and the raw payload.
    pub async fn next_raw(&mut self) -> (String, Vec<u8>) {
        if self.inbox.is_empty() {
            self.poll_until(|e| matches!(e, Event::Incoming(Packet::Publish(_))).then_some(()))
                .await;
        }
        let (topic, payload) = self.inbox.pop_front().unwrap();
        let prefix = format!("{}/", self.id.topic_prefix());
        let suffix = topic.strip_prefix(&prefix).unwrap_or(&topic).to_owned();
        (suffix, payload)
    }

    /// The next frame with a full topic.
    async fn next_frame(&mut self) -> (String, Frame) {
        if self.inbox.is_empty() {
            self.poll_until(|e| matches!(e, Event::Incoming(Packet::Publish(_))).then_some(()))
                .await;
        }
        let (topic, payload) = self.inbox.pop_front().unwrap();
        (topic, Frame::decode(&payload).unwrap())
    }

    /// The next frame: topic suffix, and the frame with its payload decrypted when it is an
    /// encrypted string.
    pub async fn next(&mut self) -> (String, Frame) {
        let (suffix, payload) = self.next_raw().await;
        let mut frame = Frame::decode(&payload).unwrap();
        if let (Some(key), Value::String(_)) = (&self.key, &frame.payload)
            && let Ok(plain) = frame.decrypted_payload(key)
        {
            frame.payload = plain;
        }
        (suffix, frame)
    }

    /// Whether nothing arrives within `within`.
    pub async fn quiet_for(&mut self, within: Duration) -> bool {
        if !self.inbox.is_empty() {
            return false;
        }
        tokio::time::timeout(within, async {
            loop {
                if let Ok(Event::Incoming(Packet::Publish(p))) = self.events.poll().await {
                    self.inbox.push_back((p.topic.clone(), p.payload.to_vec()));
                    return;
                }
            }
        })
        .await
        .is_err()
    }

    /// Answers a command frame: publishes `answer` (same MessageId as `to`) on `P/suffix`.
    pub async fn answer(&mut self, to: &Frame, suffix: &str, ctrl: HeaderCtrl, payload: Value) {
        self.send(suffix, Frame::new(to.message_id.clone(), ctrl, payload))
            .await;
    }

    /// Answers a command frame with a success ack carrying `data`.
    pub async fn ack_success(
        &mut self,
        to: &Frame,
        suffix: &str,
        ctrl: HeaderCtrl,
        data: Option<Value>,
    ) {
        let ack = serde_json::to_value(AckPayload::success(data)).unwrap();
        self.answer(to, suffix, ctrl, ack).await;
    }

    /// Sends a frame with a fresh MessageId and takes the platform's ack of it, which must
    /// arrive on `P/{suffix}_ack` with `ctrl` (and the MessageId). Returns the ack.
    #[track_caller]
    pub fn acked(
        &mut self,
        suffix: &str,
        ctrl: HeaderCtrl,
        payload: Value,
    ) -> impl Future<Output = AckPayload> {
        self.acked_at(Location::caller(), suffix, ctrl, payload)
    }

    async fn acked_at(
        &mut self,
        at: &Location<'_>,
        suffix: &str,
        ctrl: HeaderCtrl,
        payload: Value,
    ) -> AckPayload {
        let (topic, frame) = self.request(suffix, ctrl, payload).await;
        assert_eq!(
            (topic.as_str(), frame.header_ctrl),
            (format!("{suffix}_ack").as_str(), ctrl),
            "at {at}: the ack of {suffix}: {frame:?}"
        );
        serde_json::from_value(frame.payload.clone())
            .unwrap_or_else(|e| panic!("at {at}: not an ack ({e}): {frame:?}"))
    }

    /// A property report (16) with a fresh MessageId; its ack, checked as [`Self::acked`]
    /// does.
    #[track_caller]
    pub fn report_properties(&mut self, properties: Value) -> impl Future<Output = AckPayload> {
        self.acked_at(
            Location::caller(),
            "model/property/report",
            HeaderCtrl::PropertyReport,
            properties,
        )
    }

    /// The next frame, which must arrive on `P/suffix` with `ctrl`.
    #[track_caller]
    pub fn expect(&mut self, suffix: &str, ctrl: HeaderCtrl) -> impl Future<Output = Frame> {
        self.expect_at(Location::caller(), suffix, ctrl)
    }

    async fn expect_at(&mut self, at: &Location<'_>, suffix: &str, ctrl: HeaderCtrl) -> Frame {
        let (topic, frame) = self.next().await;
        assert_eq!(
            (topic.as_str(), frame.header_ctrl),
            (suffix, ctrl),
            "at {at}: {frame:?}"
        );
        frame
    }

    /// The next frame, which must arrive on `P/suffix` with `ctrl` and carry `payload`
    /// (decrypted).
    #[track_caller]
    pub fn expect_payload(
        &mut self,
        suffix: &str,
        ctrl: HeaderCtrl,
        payload: Value,
    ) -> impl Future<Output = Frame> {
        self.expect_payload_at(Location::caller(), suffix, ctrl, payload)
    }

    async fn expect_payload_at(
        &mut self,
        at: &Location<'_>,
        suffix: &str,
        ctrl: HeaderCtrl,
        payload: Value,
    ) -> Frame {
        let frame = self.expect_at(at, suffix, ctrl).await;
        assert_eq!(frame.payload, payload, "at {at}: the payload of {suffix}");
        frame
    }

    /// The platform's passthrough downlink (7), which must carry `payload`, acked with
    /// success.
    #[track_caller]
    pub fn answer_downlink(&mut self, payload: Value) -> impl Future<Output = ()> {
        let at = Location::caller();
        async move {
            let frame = self
                .expect_payload_at(at, "downlink", HeaderCtrl::Downlink, payload)
                .await;
            self.ack_success(&frame, "downlink_ack", HeaderCtrl::Downlink, None)
                .await;
        }
    }

    /// Answers a command with a report on `P/suffix` (same MessageId as `to`) and takes the
    /// platform's ack of it, which must arrive on `P/{suffix}_ack` with `ctrl` and that
    /// MessageId. Returns the ack.
    #[track_caller]
    pub fn answer_with_report(
        &mut self,
        to: &Frame,
        suffix: &str,
        ctrl: HeaderCtrl,
        report: Value,
    ) -> impl Future<Output = Frame> {
        self.answer_with_report_at(Location::caller(), to, suffix, ctrl, report)
    }

    async fn answer_with_report_at(
        &mut self,
        at: &Location<'_>,
        to: &Frame,
        suffix: &str,
        ctrl: HeaderCtrl,
        report: Value,
    ) -> Frame {
        self.answer(to, suffix, ctrl, report).await;
        let (topic, ack) = self.next().await;
        assert_eq!(
            (topic.as_str(), ack.header_ctrl, &ack.message_id),
            (format!("{suffix}_ack").as_str(), ctrl, &to.message_id),
            "at {at}: the ack of the report {suffix}: {ack:?}"
        );
        ack
    }

    /// The platform's property ask (23), which must ask for `params`, answered with the
    /// property report `report` (16, with the ask's MessageId); the report's ack taken.
    #[track_caller]
    pub fn answer_property_ask(
        &mut self,
        params: Value,
        report: Value,
    ) -> impl Future<Output = ()> {
        let at = Location::caller();
        async move {
            let asked = json!({"params": params});
            let ask = self
                .expect_payload_at(at, "model/property/ask", HeaderCtrl::PropertyAsk, asked)
                .await;
            self.answer_with_report_at(
                at,
                &ask,
                "model/property/report",
                HeaderCtrl::PropertyReport,
                report,
            )
            .await;
        }
    }

    /// The platform's service call (21) of `service`, which must carry `params`, answered
    /// with `reply`.
    #[track_caller]
    pub fn answer_service_call(
        &mut self,
        service: &str,
        params: Value,
        reply: &AckPayload,
    ) -> impl Future<Output = ()> {
        let at = Location::caller();
        async move {
            let topic = format!("model/service/{service}");
            let call = json!({"serviceIdentify": service, "params": params});
            let call = self
                .expect_payload_at(at, &topic, HeaderCtrl::ServiceCall, call)
                .await;
            let ack = serde_json::to_value(reply).unwrap();
            self.answer(&call, &format!("{topic}/ack"), HeaderCtrl::ServiceCall, ack)
                .await;
        }
    }

    /// The platform's config ask (14 on `ask_config`, which must carry `{}`) or set (14 on
    /// `down_config`, which must carry `{"Settings": settings}`), answered with a config
    /// report of `settings`.
    #[track_caller]
    pub fn answer_config(&mut self, topic: &str, settings: Value) -> impl Future<Output = ()> {
        let at = Location::caller();
        async move {
            let expected = if topic == "down_config" {
                json!({"Settings": settings})
            } else {
                json!({})
            };
            let frame = self
                .expect_payload_at(at, topic, HeaderCtrl::Config, expected)
                .await;
            let report = json!({"Settings": settings});
            self.answer(&frame, "config_report", HeaderCtrl::Config, report)
                .await;
        }
    }

    /// Acks an OTA notify (9) with the DownID `down_id`.
    pub async fn ack_ota_notify(&mut self, notify: &Frame, down_id: &str) {
        let echo = json!({"DownID": down_id});
        self.answer(notify, "ota_notify_ack", HeaderCtrl::OtaNotify, echo)
            .await;
    }

    /// The platform's property set (20), which must set `params` (`[{"identify", "value"}]`),
    /// answered with a success ack carrying `data`.
    #[track_caller]
    pub fn answer_property_set(&mut self, params: Value, data: Value) -> impl Future<Output = ()> {
        let at = Location::caller();
        async move {
            let set = json!({"params": params});
            let set = self
                .expect_payload_at(at, "model/property/set", HeaderCtrl::PropertySet, set)
                .await;
            self.ack_success(
                &set,
                "model/property/set_ack",
                HeaderCtrl::PropertySet,
                Some(data),
            )
            .await;
        }
    }
}

/// An HTTP client for the JSON API of one platform.
pub struct Api {
    base: String,
    pub client: reqwest::Client,
}

impl Api {
    /// For an in-process platform.
    pub fn new(sim: &Sim) -> Self {
        Self::at(sim.http_addr().unwrap())
    }

    /// For the API on `http`.
    pub fn at(http: SocketAddr) -> Self {
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

/// The `node_eui` of each device in the API's device list.
pub fn node_euis(devices: &Value) -> Vec<&str> {
    devices
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {devices}"))
        .iter()
        .map(|d| d["node_eui"].as_str().unwrap())
        .collect()
}

/// The `seq` of each message in a list of the API's messages.
pub fn seqs(messages: &Value) -> Vec<u64> {
    messages
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {messages}"))
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect()
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
