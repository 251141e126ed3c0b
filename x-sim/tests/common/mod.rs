//! A plain rumqttc client acting as a device, for tests of the platform: the auth phase,
//! the V2 login, exact-topic subscriptions, frames out (encrypted when the device has a
//! SessionKey) and frames in. Nothing of the SDK's runtime is used.
#![allow(dead_code, clippy::unwrap_used)]

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, Event, EventLoop, MqttOptions, Outgoing,
    Packet, QoS,
};
use serde_json::Value;
use x_protocol::payload::{AuthReply, AuthRequest};
use x_protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, Frame, HeaderCtrl, MqttLogin, ProductKey,
    RegistrationType, SessionKey, derive_session_key,
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
    let mut d = Device {
        id: id.clone(),
        client,
        events,
        inbox: VecDeque::new(),
        key: None,
        next_id: 1,
    };
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
        Ok(Self {
            id: id.clone(),
            client,
            events,
            inbox: VecDeque::new(),
            key: None,
            next_id: 1,
        })
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
