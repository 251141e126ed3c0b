//! The platform's side of the protocol, on the simulator broker: the auth phase (HeaderCtrl
//! 1 with DeviceSecret, and SessionID/Nonce for encrypted products), acks of device messages
//! on the right topic with the request's MessageId and HeaderCtrl, decryption of encrypted
//! payloads, time sync, and a record of everything received.
//!
//! JSON property reports and events of thing-model products are checked against the model
//! (unknown identifiers, wrong types, out-of-range values: "4001" with the reason).
//!
//! History uploads are checked entry by entry.
//!
//! Not yet here (the x-sim issue goes on): HEX decoding through the parsing script, downlinks with awaited acks, key rotation,
//! config, OTA, persistence and the HTTP API.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::oneshot;

use serde_json::{Value, json};
use x_protocol::payload::{AuthRequest, SessionGrant};
use x_protocol::topic::AUTH_TOPIC;
use x_protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, MessageId, SessionKey, Topic, TopicKind,
    derive_session_key,
};

use crate::access::PlatformAccess;
use crate::broker::{BrokerHandle, Message};
use crate::login::{Login, auth_reply};
use crate::registry::Registry;
use crate::sync::{lock, read, write};

/// One message the platform received from a device, as it was understood.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// The device.
    pub device: DeviceIdentity,
    /// Which topic it came on.
    pub kind: TopicKind,
    /// The frame's command.
    pub header_ctrl: HeaderCtrl,
    /// The plain payload (decrypted for encrypted products).
    pub payload: Value,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// What the platform did with a message, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// The topic it published on.
    pub topic: String,
    /// The frame it published.
    pub frame: Frame,
}

/// The platform logic.
#[derive(Debug, Clone)]
pub struct Platform {
    registry: Arc<RwLock<Registry>>,
    access: PlatformAccess,
    sessions: Arc<Mutex<HashMap<String, SessionKey>>>,
    received: Arc<Mutex<Vec<Received>>>,
    next_session: Arc<Mutex<u32>>,
    ids: Arc<x_protocol::MessageIdSource>,
    pending: Arc<Mutex<Pending>>,
    timezone: String,
}

/// Commands waiting for their answer, by device and MessageId.
type Pending = HashMap<(String, MessageId), oneshot::Sender<Frame>>;

/// Why a platform command got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// No answer within the timeout.
    #[error("no answer from {device} within {timeout:?}")]
    Timeout {
        /// The device.
        device: String,
        /// How long the platform waited.
        timeout: Duration,
    },
    /// The command could not be built.
    #[error("{0}")]
    Build(String),
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Platform {
    /// Platform logic over the registry and the broker's access rules.
    pub fn new(registry: Arc<RwLock<Registry>>, access: PlatformAccess) -> Self {
        Self {
            registry,
            access,
            sessions: Arc::default(),
            received: Arc::default(),
            next_session: Arc::default(),
            ids: Arc::default(),
            pending: Arc::default(),
            timezone: "Asia/Shanghai".to_owned(),
        }
    }

    /// Serves the broker: every message on `/sys/#` is handled and its replies published.
    pub fn serve(&self, broker: &BrokerHandle) -> tokio::task::JoinHandle<()> {
        let mut inbox = broker.subscribe("/sys/#");
        let platform = self.clone();
        let broker = broker.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                for reply in platform.handle(&message) {
                    broker.publish(&reply.topic, reply.frame.encode());
                }
            }
        })
    }

    /// Whether the device's product encrypts its payloads.
    fn is_encrypted(&self, device: &DeviceIdentity) -> bool {
        read(&self.registry)
            .product(device.product_id.as_str())
            .is_some_and(|p| p.encrypted)
    }

    /// Everything received so far.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received).clone()
    }

    /// The SessionKey of a device of an encrypted product, once it has authenticated.
    pub fn session_key(&self, device: &DeviceIdentity) -> Option<SessionKey> {
        lock(&self.sessions).get(&device.to_string()).cloned()
    }

    /// Handles one message from a client; returns the replies to publish. Messages the
    /// platform publishes itself, and frames it cannot read, get no reply (they are logged).
    pub fn handle(&self, message: &Message) -> Vec<Reply> {
        let Some(client) = &message.from else {
            return Vec::new();
        };
        let Ok(frame) = Frame::decode(&message.payload) else {
            // Full-HEX reports (28) are bare hex strings, not frames.
            return self.full_hex(client, message);
        };
        match self.access.login(client) {
            Some(Login::Auth { device }) if message.topic == AUTH_TOPIC => {
                self.auth(&device, &frame).into_iter().collect()
            }
            Some(Login::Device { device, .. }) => self.device_frame(&device, &message.topic, frame),
            _ => Vec::new(),
        }
    }

    fn auth(&self, device: &DeviceIdentity, frame: &Frame) -> Option<Reply> {
        if frame.header_ctrl != HeaderCtrl::Auth {
            return None;
        }
        let request: AuthRequest = frame.payload_as().ok()?;
        let mut grant = None;
        let reply = {
            let mut registry = write(&self.registry);
            auth_reply(&mut registry, device, &request, || {
                let g = self.new_session();
                grant = Some(g.clone());
                g
            })
        };
        if let Some(g) = grant {
            let registry = read(&self.registry);
            if let Some(product) = registry.product(device.product_id.as_str())
                && let Ok(key) = derive_session_key(&product.product_key, &g.session_id, g.nonce)
            {
                lock(&self.sessions).insert(device.to_string(), key);
            }
        }
        let topic = Topic::new(device.clone(), TopicKind::Downlink).ok()?;
        let frame = Frame::with_payload(frame.message_id.clone(), HeaderCtrl::Auth, &reply).ok()?;
        Some(Reply {
            topic: topic.to_string(),
            frame,
        })
    }

    fn new_session(&self) -> SessionGrant {
        let mut next = lock(&self.next_session);
        *next = next.wrapping_add(1);
        // Short enough that SessionID + hex(Nonce) stays one AES block.
        SessionGrant {
            session_id: format!("{:08X}", 0x3700_0000u32.wrapping_add(*next)),
            nonce: i32::try_from(*next % 0x7fff).unwrap_or(1),
        }
    }

    fn device_frame(&self, device: &DeviceIdentity, topic: &str, frame: Frame) -> Vec<Reply> {
        let Ok(parsed) = Topic::parse_for(topic, device) else {
            return Vec::new();
        };
        let kind = parsed.kind();
        let ack_kind = match kind {
            TopicKind::Uplink => TopicKind::UplinkAck,
            TopicKind::FirmwareReport => TopicKind::FirmwareReportAck,
            TopicKind::PropertyReport => TopicKind::PropertyReportAck,
            TopicKind::EventReport => TopicKind::EventReportAck,
            TopicKind::HistoryReport => TopicKind::HistoryReportAck,
            TopicKind::HexReport => TopicKind::HexReportAck,
            TopicKind::UpdateTime => TopicKind::UpdateTimeAck,
            // Acks of platform commands, and config reports: recorded, not acked.
            _ => {
                let frame = match self.plain_payload(device, &frame) {
                    Ok(payload) => Frame { payload, ..frame },
                    Err(_) => frame,
                };
                self.record(device, kind, &frame);
                self.answer(device, &frame);
                return Vec::new();
            }
        };
        let checked = self.plain_payload(device, &frame).and_then(|payload| {
            self.check_model(
                device,
                kind,
                parsed.identifier().map(|i| i.as_str()),
                &payload,
            )
            .map(|()| payload)
        });
        let ack = match checked {
            Ok(payload) => {
                let frame = Frame {
                    payload,
                    ..frame.clone()
                };
                self.record(device, kind, &frame);
                if matches!(kind, TopicKind::PropertyReport | TopicKind::FirmwareReport) {
                    // The answer to a property ask (23) or a firmware ask (13).
                    self.answer(device, &frame);
                }
                if kind == TopicKind::UpdateTime {
                    AckPayload::success(Some(
                        json!({"timestamp": now_ms(), "timezone": self.timezone}),
                    ))
                } else {
                    AckPayload::success(None)
                }
            }
            Err(reason) => AckPayload::failure(reason),
        };
        let ack_topic = match parsed.identifier() {
            Some(id) => Topic::with_identifier(device.clone(), ack_kind, id.clone()),
            None => Topic::new(device.clone(), ack_kind),
        };
        match ack_topic {
            Ok(t) => vec![Reply {
                topic: t.to_string(),
                frame: Frame::ack_of(&frame, &ack),
            }],
            Err(_) => Vec::new(),
        }
    }

    /// The frame's payload in plain JSON: decrypted for encrypted products, except the
    /// commands that are never encrypted.
    fn plain_payload(&self, device: &DeviceIdentity, frame: &Frame) -> Result<Value, String> {
        let encrypted = self.is_encrypted(device);
        if !encrypted || !frame.header_ctrl.is_encrypted_uplink() {
            return Ok(frame.payload.clone());
        }
        let Some(key) = self.session_key(device) else {
            return Err("no SessionKey: run the auth phase first".to_owned());
        };
        frame.decrypted_payload(&key).map_err(|e| e.to_string())
    }

    /// Hands a device's answer to the command waiting for it (same MessageId).
    fn answer(&self, device: &DeviceIdentity, frame: &Frame) {
        let waiting = lock(&self.pending).remove(&(device.to_string(), frame.message_id.clone()));
        if let Some(tx) = waiting {
            let _ = tx.send(frame.clone());
        }
    }

    /// Sends a platform command to a device and waits for its answer: the ack on the
    /// command's ack topic (property set, service call, passthrough downlink, OTA notify), or
    /// the report that answers it (property ask, config ask or set, firmware ask), matched by
    /// MessageId. Payloads of encrypted products are encrypted; the answer's payload comes back
    /// decrypted.
    ///
    /// # Errors
    /// [`CommandError::Timeout`] when the device does not answer in time.
    pub async fn command(
        &self,
        broker: &BrokerHandle,
        topic: &Topic,
        header_ctrl: HeaderCtrl,
        payload: Value,
        timeout: Duration,
    ) -> Result<Frame, CommandError> {
        let Some(device) = topic.device().cloned() else {
            return Err(CommandError::Build(
                "the auth topic takes no commands".into(),
            ));
        };
        let id = self.ids.next_id();
        let mut frame = Frame::new(id.clone(), header_ctrl, payload);
        let encrypted = self.is_encrypted(&device);
        if encrypted {
            match self.session_key(&device) {
                Some(key) => frame.encrypt_payload(&key),
                None => {
                    return Err(CommandError::Build(format!(
                        "{device} has no SessionKey yet"
                    )));
                }
            }
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert((device.to_string(), id.clone()), tx);
        broker.publish(&topic.to_string(), frame.encode());
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(answer)) => Ok(answer),
            _ => {
                lock(&self.pending).remove(&(device.to_string(), id));
                Err(CommandError::Timeout {
                    device: device.to_string(),
                    timeout,
                })
            }
        }
    }

    /// Checks JSON reports and events of thing-model products against the model.
    fn check_model(
        &self,
        device: &DeviceIdentity,
        kind: TopicKind,
        identifier: Option<&str>,
        payload: &Value,
    ) -> Result<(), String> {
        if !matches!(
            kind,
            TopicKind::PropertyReport | TopicKind::EventReport | TopicKind::HistoryReport
        ) {
            return Ok(());
        }
        let source = {
            let registry = read(&self.registry);
            match registry.product(device.product_id.as_str()) {
                Some(p) if p.format == crate::registry::Format::Json => p.model.clone(),
                _ => None,
            }
        };
        let Some(source) = source else {
            return Ok(());
        };
        let model = source
            .model()
            .map_err(|_| "the product's thing model does not load".to_owned())?;
        let result = match kind {
            TopicKind::PropertyReport => crate::validate::property_report(&model, payload),
            TopicKind::HistoryReport => crate::validate::history(&model, payload),
            _ => crate::validate::event_report(&model, identifier.unwrap_or_default(), payload),
        };
        result.map_err(|rejections| rejections.to_string())
    }

    fn record(&self, device: &DeviceIdentity, kind: TopicKind, frame: &Frame) {
        lock(&self.received).push(Received {
            device: device.clone(),
            kind,
            header_ctrl: frame.header_ctrl,
            payload: frame.payload.clone(),
            at_ms: now_ms(),
        });
    }

    fn full_hex(&self, client: &str, message: &Message) -> Vec<Reply> {
        let Some(Login::Device { device, .. }) = self.access.login(client) else {
            return Vec::new();
        };
        let Ok(topic) = Topic::parse_for(&message.topic, &device) else {
            return Vec::new();
        };
        if topic.kind() != TopicKind::FullHex {
            return Vec::new();
        }
        let text = String::from_utf8_lossy(&message.payload).into_owned();
        // A full-HEX report has no MessageId of its own; the ack gets a fresh one.
        let frame = Frame::new(
            self.ids.next_id(),
            HeaderCtrl::FullHexReport,
            Value::String(text),
        );
        let ack = match x_protocol::model::hex::from_hex(frame.payload.as_str().unwrap_or_default())
        {
            Ok(_) => {
                self.record(&device, TopicKind::FullHex, &frame);
                AckPayload::success(None)
            }
            Err(e) => AckPayload::failure(e.to_string()),
        };
        match Topic::new(device, TopicKind::FullHexAck) {
            Ok(t) => vec![Reply {
                topic: t.to_string(),
                frame: Frame::ack_of(&frame, &ack),
            }],
            Err(_) => Vec::new(),
        }
    }
}
