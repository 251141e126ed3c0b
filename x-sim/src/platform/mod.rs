//! The platform's side of the protocol, over any [`Link`]: the auth phase (HeaderCtrl 1 with
//! DeviceSecret, and SessionID/Nonce for encrypted products), acks of every device message on
//! the right topic with the request's MessageId and HeaderCtrl, decryption, thing-model checks
//! of JSON reports ("4001" with the reason), HEX reports decoded by the product's parsing
//! script, time sync, firmware reports with OTA, SessionKey rotation, a record of
//! everything received, and a log of every rule a device broke (both persisted when a store
//! is attached).
//!
//! Platform commands and the device's answers are in [`command`]; stored data and its
//! queries in [`data`]; OTA progress in [`ota`]; sessions and key rotation in [`session`];
//! the violation log in [`violations`]; the live feed of messages and violations in [`live`].

pub mod command;
pub mod data;
pub mod live;
pub mod ota;
pub mod session;
pub mod violations;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use x_protocol::payload::{AuthCode, AuthRequest, FirmwareReport, OtaNotify};
use x_protocol::topic::AUTH_TOPIC;
use x_protocol::{
    AckPayload, DeviceIdentity, Frame, HeaderCtrl, MessageId, MessageIdSource, Publisher, Topic,
    TopicKind,
};

pub use command::{Answer, Command, CommandError};
pub use data::Received;
pub use live::{Direction, Live, LiveEvent, LiveKind};
pub use ota::{OtaProgress, OtaState};
pub use violations::{Rule, Violation, ViolationLog};

use crate::access::PlatformAccess;
use crate::broker::Message;
use crate::firmware::Firmware;
use crate::link::Link;
use crate::login::{Login, auth_reply};
use crate::registry::{Format, Registry};
use crate::store::Store;
use crate::sync::{lock, read, write};
use session::Sessions;
use violations::{Evidence, registry_secrets};

/// How the platform behaves where the protocol leaves it a choice.
#[derive(Debug, Clone)]
pub struct PlatformConfig {
    /// The time zone time sync replies name.
    pub timezone: String,
    /// How long a SessionKey lives before the platform rotates it (HeaderCtrl 3); the
    /// platform's default is 48 hours.
    pub session_ttl: Duration,
    /// How long commands wait for the device's answer unless told otherwise.
    pub command_timeout: Duration,
    /// The firmware server's base URL (`http://127.0.0.1:PORT`), for OTA notify URLs.
    pub firmware_url: Option<String>,
    /// How many violations are kept per device (the newest; older ones are counted and
    /// dropped). Default 1000.
    pub violations_per_device: usize,
    /// How long after acking an OTA notify a device has to report the target version before
    /// the OTA is `failed` ("no firmware report within the deadline after acking"). Default
    /// 10 minutes.
    pub ota_deadline: Duration,
    /// How many notifies firmware reports may cause per OTA task and device module (the
    /// first and the re-notifies after failures); once used up, the OTA stays `failed` until
    /// the task is set again. Explicit pushes ([`Platform::send_ota`]) are not limited.
    /// Default 3.
    pub ota_max_notifies: u32,
    /// Whether OTA notifies carry `MD5` as a JSON number (the digest's 128-bit big-endian
    /// value in decimal, as the vendor document's example sends it) instead of 32 hex
    /// digits. Default false (hex).
    pub ota_md5_number: bool,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            timezone: "Asia/Shanghai".to_owned(),
            session_ttl: Duration::from_secs(48 * 3600),
            command_timeout: Duration::from_secs(5),
            firmware_url: None,
            violations_per_device: 1000,
            ota_deadline: Duration::from_secs(600),
            ota_max_notifies: 3,
            ota_md5_number: false,
        }
    }
}

/// Fault injection: make the platform misbehave the way a real one can.
#[derive(Debug, Default)]
pub struct Faults {
    silent: AtomicBool,
    delay_ms: AtomicU64,
    busy_auths: AtomicU32,
    refuse_history: Mutex<Option<String>>,
}

impl Faults {
    /// Stops (or resumes) every reply to device messages: acks, auth replies, time sync.
    /// Withheld replies are logged, not queued.
    pub fn set_silent(&self, silent: bool) {
        self.silent.store(silent, Ordering::SeqCst);
    }

    /// Delays every reply to device messages by `delay` (zero: none).
    pub fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// Whether replies are withheld.
    pub fn silent(&self) -> bool {
        self.silent.load(Ordering::SeqCst)
    }

    /// The reply delay.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::SeqCst))
    }

    /// Answers the next `n` readable auth requests (of any device) with code 1, "platform
    /// busy", whatever the registry says; 0 ends it. Each busy answer counts one down.
    pub fn set_busy_auths(&self, n: u32) {
        self.busy_auths.store(n, Ordering::SeqCst);
    }

    /// How many auth requests are still to be answered "busy".
    pub fn busy_auths(&self) -> u32 {
        self.busy_auths.load(Ordering::SeqCst)
    }

    /// Takes one "busy" answer if any is left.
    fn take_busy_auth(&self) -> bool {
        self.busy_auths
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    /// Refuses every history upload (27) with a "4001" of `reason` (`None`: stop), as a
    /// platform's policy might: a refusal about no entry of the upload. Refused uploads are
    /// not recorded and are not violations of the device.
    pub fn set_refuse_history(&self, reason: Option<String>) {
        *lock(&self.refuse_history) = reason;
    }

    /// The reason history uploads are refused with, while they are.
    pub fn refuse_history(&self) -> Option<String> {
        lock(&self.refuse_history).clone()
    }
}

/// A frame the platform publishes.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    /// The topic.
    topic: String,
    /// The frame encoded, as it goes out.
    bytes: Vec<u8>,
    /// The frame and its payload before encryption, for the log and the live stream;
    /// dropped before the reply waits for the store when neither shows it.
    shown: Option<Box<(Frame, Value)>>,
}

impl Reply {
    /// The reply, encoded now: an ack may wait for the store before it leaves, and by then
    /// its frame is no longer in the CPU's caches (encoding it then cost twice as much).
    fn new(topic: &Topic, frame: Frame, plain: Value) -> Self {
        Self {
            topic: topic.to_string(),
            bytes: frame.encode(),
            shown: Some(Box::new((frame, plain))),
        }
    }
}

impl Handled {
    /// Drops what only the log and the live stream would show of the replies when neither
    /// shows it: on the platform's task, where it was made, rather than after the wait for
    /// the store on another thread (freeing memory of another thread's allocator arena
    /// contends for its lock).
    fn unshown(&mut self, shown: bool) {
        if !shown {
            for reply in &mut self.replies {
                reply.shown = None;
            }
        }
    }
}

/// What handling one message produced: replies, then OTA notifies to send after them.
#[derive(Debug, Default)]
struct Handled {
    replies: Vec<Reply>,
    ota: Vec<(DeviceIdentity, OtaNotify)>,
    /// The store writes the replies wait for: acks go out only once what they ack is
    /// durable.
    durable: Vec<data::Durable>,
}

/// How many handled messages may wait for their store writes before the platform stops
/// taking more from its inbox (backpressure instead of unbounded memory).
pub(crate) const ACK_QUEUE: usize = 1024;

/// What the platform is built from.
pub struct Parts {
    /// Products and devices (shared with the broker's access rules).
    pub registry: Arc<RwLock<Registry>>,
    /// The embedded broker's access rules; `None` over an external broker, where the topic
    /// names the device.
    pub access: Option<PlatformAccess>,
    /// Where replies and commands are published.
    pub link: Arc<dyn Link>,
    /// Where received data, sessions and device state are persisted.
    pub store: Option<Store>,
    /// Firmware images and OTA tasks.
    pub firmware: Option<Firmware>,
    /// Behaviour settings.
    pub config: PlatformConfig,
    /// The violation log, restored from the same store ([`ViolationLog::restore`]) and
    /// shared with the broker's access rules, which record forbidden topics in it.
    pub violations: ViolationLog,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("store", &self.store)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Who sent a message.
enum Origin {
    /// An auth-phase login (or, over an external broker, an auth request).
    Auth(DeviceIdentity),
    /// A device after the V2 login.
    Device(DeviceIdentity),
}

/// The platform logic. Cheap to clone; clones share everything.
#[derive(Clone)]
pub struct Platform {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Arc<RwLock<Registry>>,
    access: Option<PlatformAccess>,
    link: Arc<dyn Link>,
    store: Option<Store>,
    firmware: Option<Firmware>,
    config: PlatformConfig,
    sessions: Sessions,
    data: data::Data,
    violations: ViolationLog,
    live: Live,
    ids: MessageIdSource,
    pending: Mutex<Pending>,
    faults: Faults,
    /// Held by a registration from its check to its change of the registry, across its
    /// store write: registrations wait for each other, nothing else waits for them.
    registering: Mutex<()>,
}

impl std::fmt::Debug for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Platform")
            .field("config", &self.inner.config)
            .field("store", &self.inner.store)
            .finish_non_exhaustive()
    }
}

/// Commands waiting for their answer, by device and MessageId.
type Pending = HashMap<(String, MessageId), command::Waiting>;

/// Why the platform refused a device message: the rule broken and the reason the device is
/// told ("4001" Msg).
#[derive(Debug, Clone, PartialEq)]
struct Broken {
    rule: Rule,
    reason: String,
}

impl Broken {
    fn new(rule: Rule, reason: impl Into<String>) -> Self {
        Self {
            rule,
            reason: reason.into(),
        }
    }
}

/// Why the platform could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot restore the platform's state: {0}")]
pub struct PlatformError(#[from] crate::store::StoreError);

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The auth reply with `code` to the request `id` of the login `device`.
fn refuse_auth(device: &DeviceIdentity, id: MessageId, code: AuthCode) -> Option<Reply> {
    let reply = x_protocol::payload::AuthReply {
        code,
        device_secret: None,
        session_id: None,
        nonce: None,
    };
    let topic = Topic::new(device.clone(), TopicKind::Downlink).ok()?;
    let frame = Frame::with_payload(id, HeaderCtrl::Auth, &reply).ok()?;
    let plain = frame.payload.clone();
    Some(Reply::new(&topic, frame, plain))
}

/// The code the document's table gives an auth request whose payload does not read: an
/// illegal NodeEui is 4, a Type that is no registration type 5, anything else about the
/// product (OpenID, ProductID, a missing field) 2.
fn bad_request_code(payload: &Value) -> AuthCode {
    let node_ok = payload
        .get("NodeEui")
        .and_then(Value::as_str)
        .is_some_and(|n| x_protocol::NodeEui::new(n).is_ok());
    let type_ok = payload
        .get("Type")
        .and_then(Value::as_i64)
        .is_some_and(|t| x_protocol::RegistrationType::from_code(t).is_ok());
    if !node_ok {
        AuthCode::DeviceRejected
    } else if !type_ok {
        AuthCode::TypeMismatch
    } else {
        AuthCode::ProductNotRegistered
    }
}

/// What is wrong with the Version of an auth request that did not decode, when that is
/// what is wrong: another version, or a JSON object whose Version is missing or not a
/// string (`None` for anything else: not JSON, not an object, a Version of "2.0" with
/// another field wrong).
fn wrong_version(e: &x_protocol::FrameError, payload: &[u8]) -> Option<String> {
    if let x_protocol::FrameError::Version { found } = e {
        return Some(format!("Version {found:?}"));
    }
    let value = serde_json::from_slice::<Value>(payload).ok()?;
    match value.as_object()?.get("Version") {
        None => Some("no Version".to_owned()),
        Some(Value::String(v)) if v == x_protocol::PROTOCOL_VERSION => None,
        Some(Value::String(v)) => Some(format!("Version {v:?}")),
        Some(other) => Some(format!("Version {other} is not a string")),
    }
}

/// Why an auth reply refuses, for the violation log; `None` for success and for what is the
/// platform's fault (1, busy).
fn auth_refusal(code: AuthCode) -> Option<&'static str> {
    match code {
        AuthCode::ProductNotRegistered => Some(
            "the product is not registered, not this OpenID's, or not the product the login named",
        ),
        AuthCode::DeviceRejected => {
            Some("the device is disabled, not pre-registered, or not the device the login named")
        }
        AuthCode::TypeMismatch => Some("Type is not the product's registration type"),
        AuthCode::VersionMismatch => Some("the protocol versions disagree"),
        AuthCode::Ok | AuthCode::Busy | AuthCode::Unknown(_) => None,
    }
}

/// At most this many characters of a payload go into a log line.
const LOG_PAYLOAD: usize = 400;

fn shorten(text: &str) -> String {
    match text.char_indices().nth(LOG_PAYLOAD) {
        Some((at, _)) => format!("{}... ({} bytes)", &text[..at], text.len()),
        None => text.to_owned(),
    }
}

impl Platform {
    /// The platform over its parts, with what the store holds restored (received data,
    /// sessions).
    ///
    /// # Errors
    /// The store cannot be read.
    pub fn new(parts: Parts) -> Result<Self, PlatformError> {
        let data = data::Data::restore(parts.store.as_ref())?;
        let sessions = Sessions::restore(parts.store.as_ref(), &read(&parts.registry))?;
        Ok(Self {
            inner: Arc::new(Inner {
                registry: parts.registry,
                access: parts.access,
                link: parts.link,
                store: parts.store,
                firmware: parts.firmware,
                config: parts.config,
                sessions,
                data,
                live: parts.violations.live().clone(),
                violations: parts.violations,
                ids: MessageIdSource::default(),
                pending: Mutex::default(),
                faults: Faults::default(),
                registering: Mutex::default(),
            }),
        })
    }

    /// Handles every message from `inbox` until it closes, publishing the replies. Also
    /// rotates SessionKeys as they expire and fails OTAs past their deadlines.
    pub fn serve(&self, mut inbox: mpsc::Receiver<Message>) -> tokio::task::JoinHandle<()> {
        let platform = self.clone();
        let rotation = self.clone().rotate_expired_keys();
        let ota = self.clone().watch_ota_deadlines();
        // Replies leave in the order their messages came, each once the store writes it
        // waits for are durable; the writer commits in that order too, so waiting in turn
        // costs nothing while many messages share a commit.
        let (ready, mut waiting) = mpsc::channel::<Handled>(ACK_QUEUE);
        let sender = self.clone();
        tokio::spawn(async move {
            while let Some(mut handled) = waiting.recv().await {
                let mut durable = Ok(());
                for d in handled.durable.drain(..) {
                    durable = durable.and(d.wait().await);
                }
                match durable {
                    Ok(()) => sender.send(handled),
                    Err(e) => {
                        for reply in &handled.replies {
                            tracing::error!(target: "x_sim", "-x {} withheld: what it acks is not stored: {e}", reply.topic);
                        }
                    }
                }
            }
        });
        let store = self.inner.store.clone();
        tokio::spawn(async move {
            while let Some(message) = inbox.recv().await {
                // A slow disk holds the platform back here (and so the broker behind it),
                // asynchronously, instead of growing the store's queue.
                if let Some(store) = &store {
                    store.room().await;
                }
                // HEX messages go through the product's parsing script, which blocks until
                // the script thread ran it: handled on a blocking thread, so the async
                // workers (the broker, the HTTP API) go on meanwhile. In order all the same.
                let mut handled = if message.topic.contains("/model/hex") {
                    let p = platform.clone();
                    match tokio::task::spawn_blocking(move || p.handle(&message)).await {
                        Ok(handled) => handled,
                        Err(e) => {
                            tracing::error!(target: "x_sim", "handling a HEX message failed: {e}");
                            continue;
                        }
                    }
                } else {
                    platform.handle(&message)
                };
                if handled.replies.is_empty() && handled.ota.is_empty() {
                    continue;
                }
                handled.unshown(platform.replies_shown());
                if ready.send(handled).await.is_err() {
                    break;
                }
            }
            rotation.abort();
            ota.abort();
        })
    }

    /// The registry.
    pub fn registry(&self) -> &Arc<RwLock<Registry>> {
        &self.inner.registry
    }

    /// The fault switches.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// The settings.
    pub fn config(&self) -> &PlatformConfig {
        &self.inner.config
    }

    /// Firmware images and OTA tasks, when the platform has a firmware server.
    pub fn firmware(&self) -> Option<&Firmware> {
        self.inner.firmware.as_ref()
    }

    /// The store, when one is attached.
    pub fn store(&self) -> Option<&Store> {
        self.inner.store.as_ref()
    }

    /// Registrations one at a time (see [`Inner::registering`]).
    pub(crate) fn registering(&self) -> std::sync::MutexGuard<'_, ()> {
        lock(&self.inner.registering)
    }

    /// The live feed: every message each way and every violation, as they happen.
    pub fn live(&self) -> &Live {
        &self.inner.live
    }

    /// Whether the device's product encrypts its payloads.
    fn is_encrypted(&self, device: &DeviceIdentity) -> bool {
        read(&self.inner.registry)
            .product(device.product_id.as_str())
            .is_some_and(|p| p.encrypted)
    }

    /// Publishes one frame, logged as one line with its plain payload.
    fn publish(&self, topic: &str, frame: &Frame, plain: &Value) {
        self.publish_encoded(topic, frame, plain, frame.encode());
    }

    /// Whether replies are shown: logged (`x_sim` at info) or streamed live.
    fn replies_shown(&self) -> bool {
        tracing::enabled!(target: "x_sim", tracing::Level::INFO) || self.inner.live.listened()
    }

    /// Publishes one frame already encoded as `bytes` (a payload written as text, which a
    /// `Value` cannot hold), logged as [`Platform::publish`] logs it.
    fn publish_encoded(&self, topic: &str, frame: &Frame, plain: &Value, bytes: Vec<u8>) {
        tracing::info!(target: "x_sim", "-> {topic} {}", describe(frame, plain));
        self.inner
            .live
            .message(Direction::Down, None, topic, frame, plain);
        self.inner.link.publish(topic, bytes);
    }

    /// Publishes what handling a message produced, honouring the faults.
    fn send(&self, handled: Handled) {
        if handled.replies.is_empty() && handled.ota.is_empty() {
            return;
        }
        if self.inner.faults.silent() {
            for reply in &handled.replies {
                tracing::info!(target: "x_sim", "-x {} withheld (fault injection: silent)", reply.topic);
            }
            return;
        }
        let delay = self.inner.faults.delay();
        let platform = self.clone();
        let run = move || {
            for reply in handled.replies {
                match reply.shown {
                    Some(shown) => {
                        let (frame, plain) = *shown;
                        platform.publish_encoded(&reply.topic, &frame, &plain, reply.bytes);
                    }
                    None => platform.inner.link.publish(&reply.topic, reply.bytes),
                }
            }
            for (device, notify) in handled.ota {
                let p = platform.clone();
                tokio::spawn(async move { p.notify_ota(&device, notify).await });
            }
        };
        if delay.is_zero() {
            run();
        } else {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                run();
            });
        }
    }

    /// Who sent a message: on the embedded broker, the login the broker accepted for the
    /// connection, which comes with the message (not looked up now: the connection may have
    /// closed since, after its PUBACK); over an external broker, the topic (or the auth
    /// request) names the device. Messages the platform published itself come back here
    /// too and are recognised by their topic.
    fn origin(&self, message: &Message) -> Option<Origin> {
        match (&message.from, &self.inner.access) {
            (Some(_), Some(_)) => match message.login.clone()? {
                Login::Auth { device } => Some(Origin::Auth(device)),
                Login::Device { device, .. } => Some(Origin::Device(device)),
            },
            (None, None) if message.topic == AUTH_TOPIC => {
                let frame = Frame::decode(&message.payload).ok()?;
                let request: AuthRequest = frame.payload_as().ok()?;
                Some(Origin::Auth(DeviceIdentity {
                    open_id: request.open_id,
                    product_id: request.product_id,
                    node_eui: request.node_eui,
                }))
            }
            (None, None) => {
                let topic = Topic::parse(&message.topic).ok()?;
                (topic.kind().spec().publisher == Publisher::Device)
                    .then(|| topic.device().cloned())
                    .flatten()
                    .map(Origin::Device)
            }
            _ => None,
        }
    }

    /// Handles one message; returns what to publish.
    fn handle(&self, message: &Message) -> Handled {
        let Some(origin) = self.origin(message) else {
            return Handled::default();
        };
        let log_raw = || {
            tracing::info!(
                target: "x_sim",
                "<- {} {}",
                message.topic,
                shorten(&String::from_utf8_lossy(&message.payload))
            );
        };
        match origin {
            Origin::Auth(device) if message.topic == AUTH_TOPIC => {
                log_raw();
                match Frame::decode(&message.payload) {
                    Ok(frame) => self.inner.live.message(
                        Direction::Up,
                        Some(&device),
                        AUTH_TOPIC,
                        &frame,
                        &frame.payload,
                    ),
                    Err(_) => self.inner.live.raw(
                        &device,
                        AUTH_TOPIC,
                        &String::from_utf8_lossy(&message.payload),
                    ),
                }
                let mut durable = Vec::new();
                let replies = self
                    .auth(&device, &message.payload, &mut durable)
                    .into_iter()
                    .collect();
                Handled {
                    replies,
                    durable,
                    ..Handled::default()
                }
            }
            Origin::Auth(_) => Handled::default(),
            Origin::Device(device) => {
                let topic = match Topic::parse_for(&message.topic, &device) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::warn!(target: "x_sim", "{}: {e}", message.topic);
                        self.violation(
                            &device,
                            &Broken::new(Rule::ForbiddenTopic, e.to_string()),
                            Evidence::of(&message.topic, &message.payload),
                        );
                        return Handled::default();
                    }
                };
                self.inner.data.seen(&device);
                if topic.kind() == TopicKind::FullHex {
                    log_raw();
                    self.inner.live.raw(
                        &device,
                        &message.topic,
                        &String::from_utf8_lossy(&message.payload),
                    );
                    return self.full_hex(&device, &topic, &message.payload);
                }
                match Frame::decode(&message.payload) {
                    Ok(frame) => self.device_frame(&device, &topic, frame, &message.payload),
                    Err(e) => {
                        log_raw();
                        self.inner.live.raw(
                            &device,
                            &message.topic,
                            &String::from_utf8_lossy(&message.payload),
                        );
                        // No MessageId to ack with: the device sees no ack.
                        tracing::warn!(target: "x_sim", "{topic}: unreadable frame, not acked: {e}");
                        self.violation(
                            &device,
                            &Broken::new(Rule::UnreadableFrame, format!("{e} (not acked)")),
                            Evidence::of(&message.topic, &message.payload),
                        );
                        Handled::default()
                    }
                }
            }
        }
    }

    /// The reply to an auth request; what it waits for (a refusal's violation record, a
    /// self-registered device, the session) is added to `durable`: the reply leaves once
    /// they are stored.
    fn auth(
        &self,
        device: &DeviceIdentity,
        payload: &[u8],
        durable: &mut Vec<data::Durable>,
    ) -> Option<Reply> {
        let mut broken = |rule, reason: String| {
            durable.extend(self.violation(
                device,
                &Broken::new(rule, reason),
                Evidence::of(AUTH_TOPIC, payload),
            ));
        };
        let frame = match Frame::decode(payload) {
            Ok(f) => f,
            // A request of another protocol version (a Version other than "2.0", missing,
            // or not a string) gets the code the document gives for it; only one with no
            // MessageId to answer goes unanswered.
            Err(e) => {
                let Some(version) = wrong_version(&e, payload) else {
                    tracing::warn!(target: "x_sim", "{AUTH_TOPIC}: unreadable, not answered: {e}");
                    broken(Rule::UnreadableFrame, format!("{e} (not answered)"));
                    return None;
                };
                let id = serde_json::from_slice::<Value>(payload).ok().and_then(|v| {
                    serde_json::from_value::<MessageId>(v.get("MessageId")?.clone()).ok()
                });
                let Some(id) = id else {
                    tracing::warn!(target: "x_sim", "{AUTH_TOPIC}: {version}, no MessageId: not answered");
                    broken(
                        Rule::UnreadableFrame,
                        format!("{version}, and no MessageId to answer with: not answered"),
                    );
                    return None;
                };
                tracing::warn!(target: "x_sim", "{AUTH_TOPIC}: {version}: refused with code 6");
                broken(
                    Rule::AuthRefused,
                    format!("{version}, only \"2.0\" is supported: refused with code 6"),
                );
                return refuse_auth(device, id, AuthCode::VersionMismatch);
            }
        };
        if frame.header_ctrl != HeaderCtrl::Auth {
            tracing::warn!(target: "x_sim", "{AUTH_TOPIC}: HeaderCtrl {} is not an auth request", frame.header_ctrl);
            broken(
                Rule::HeaderCtrlMismatch,
                format!(
                    "HeaderCtrl {} does not belong on {AUTH_TOPIC} (only 1, the auth request): not answered",
                    frame.header_ctrl.code()
                ),
            );
            return None;
        }
        let request: AuthRequest = match frame.payload_as() {
            Ok(r) => r,
            Err(e) => {
                let code = bad_request_code(&frame.payload);
                tracing::warn!(target: "x_sim", "{AUTH_TOPIC}: {e}: refused with code {}", code.code());
                broken(
                    Rule::AuthRefused,
                    format!("{e}: refused with code {}", code.code()),
                );
                return refuse_auth(device, frame.message_id, code);
            }
        };
        if self.inner.faults.take_busy_auth() {
            tracing::info!(target: "x_sim", "{AUTH_TOPIC}: {device} answered code 1 (fault injection: busy)");
            return refuse_auth(device, frame.message_id, AuthCode::Busy);
        }
        let mut grant = None;
        let (reply, registered) = {
            let mut registry = write(&self.inner.registry);
            let (product, node) = (device.product_id.as_str(), device.node_eui.as_str());
            let known = registry.device(product, node).is_some();
            let reply = auth_reply(&mut registry, device, &request, || {
                let g = self.inner.sessions.new_grant();
                grant = Some(g.clone());
                g
            });
            // A device the auth registered (type 0) is persisted.
            let registered = (!known)
                .then(|| registry.device(product, node).cloned())
                .flatten();
            (reply, registered)
        };
        if let Some(why) = auth_refusal(reply.code) {
            broken(
                Rule::AuthRefused,
                format!("refused with code {}: {why}", reply.code.code()),
            );
        }
        if reply.code == x_protocol::payload::AuthCode::Ok
            && let (Some(store), Some(d)) = (&self.inner.store, registered)
        {
            // Persist a self-registered (type 0) device; the reply waits for it.
            match crate::store::Write::device(&d) {
                Ok(write) => durable.push(store.queue(write)),
                Err(e) => tracing::error!(target: "x_sim", "cannot persist {device}: {e}"),
            }
        }
        if let Some(g) = grant {
            durable.extend(self.start_session(device, g));
        }
        let topic = Topic::new(device.clone(), TopicKind::Downlink).ok()?;
        let frame = Frame::with_payload(frame.message_id.clone(), HeaderCtrl::Auth, &reply).ok()?;
        let plain = frame.payload.clone();
        Some(Reply::new(&topic, frame, plain))
    }

    fn device_frame(
        &self,
        device: &DeviceIdentity,
        topic: &Topic,
        frame: Frame,
        bytes: &Bytes,
    ) -> Handled {
        let kind = topic.kind();
        let identifier = topic.identifier().map(|i| i.as_str().to_owned());
        let belongs = kind.spec().header_ctrls.contains(&frame.header_ctrl);
        let plain = if belongs {
            self.plain_payload(device, &frame)
        } else {
            Err(Broken::new(
                Rule::HeaderCtrlMismatch,
                format!(
                    "HeaderCtrl {} does not belong on {}",
                    frame.header_ctrl.code(),
                    kind.spec().suffix
                ),
            ))
        };
        tracing::info!(
            target: "x_sim",
            "<- {topic} {}",
            describe(&frame, plain.as_ref().unwrap_or(&frame.payload))
        );
        self.inner.live.message(
            Direction::Up,
            Some(device),
            &topic.to_string(),
            &frame,
            plain.as_ref().unwrap_or(&frame.payload),
        );
        // The command table says which ack answers which request; a frame with a HeaderCtrl
        // that does not belong on its topic is refused on the topic's ack topic.
        let spec = kind.spec();
        let ack_spec = match spec.publisher {
            Publisher::Device => spec
                .reply_to(frame.header_ctrl)
                .or_else(|| spec.replies.first().copied()),
            Publisher::Platform => None,
        };
        let Some(ack_spec) = ack_spec else {
            // Answers to platform commands, and config reports: recorded, not acked.
            return self.answer_frame(device, topic, frame, plain, bytes);
        };
        let mut ota = Vec::new();
        let mut durable = Vec::new();
        let outcome = plain.and_then(|payload| {
            self.understand(device, kind, identifier.as_deref(), &frame, payload)
        });
        let policy = if kind == TopicKind::HistoryReport {
            self.inner.faults.refuse_history()
        } else {
            None
        };
        let ack = match outcome {
            // A policy refusal (fault injection): about no entry, not the device's fault.
            Ok(_) if policy.is_some() => {
                let reason = policy.unwrap_or_default();
                tracing::info!(target: "x_sim", "{topic}: history upload refused by policy: {reason}");
                AckPayload::failure(reason)
            }
            Ok(understood) => {
                let incoming = data::Incoming {
                    device,
                    kind,
                    identifier: identifier.clone(),
                    frame: &frame,
                    payload: understood.payload.clone(),
                    raw: understood.raw.clone(),
                };
                // At-least-once delivery from devices: a re-send is acked again, kept once.
                let (recorded, written) = self.inner.data.record_once(incoming);
                durable.extend(written);
                let record = match recorded {
                    data::Recorded::New(record) => record,
                    data::Recorded::Duplicate(record, why) => {
                        tracing::info!(target: "x_sim", "{topic}: {why}: acked, not recorded again");
                        record
                    }
                };
                if matches!(
                    kind,
                    TopicKind::PropertyReport | TopicKind::HexReport | TopicKind::FirmwareReport
                ) {
                    // The answer to a property ask (23/25), a HEX service call (24) or a
                    // firmware ask (13).
                    self.answer(device, answer_of(topic, &frame, &record), bytes, None);
                }
                if kind == TopicKind::FirmwareReport
                    && let Some(notify) =
                        self.firmware_reported(device, &record.payload, &mut durable)
                {
                    ota.push((device.clone(), notify));
                }
                AckPayload::success(understood.ack_data)
            }
            Err(broken) => {
                tracing::warn!(target: "x_sim", "{topic}: rejected: {}", broken.reason);
                // Kept in the violation log, with its payload decrypted where it decrypts.
                let name = topic.to_string();
                let evidence = Evidence {
                    plain: self.decrypted(device, &frame),
                    ..Evidence::of_frame(&name, bytes, &frame)
                };
                // The refusal leaves once its record is stored.
                durable.extend(self.violation(device, &broken, evidence));
                AckPayload::failure(broken.reason)
            }
        };
        let ack_topic = topic.answer_on(ack_spec);
        let mut ack = Frame::ack_of(&frame, &ack);
        let plain = ack.payload.clone();
        // Acks of encrypted commands travel encrypted, like every platform frame of an
        // encrypted product (the time sync reply, like its request, does not).
        if self.is_encrypted(device)
            && frame.header_ctrl.is_encrypted_uplink()
            && let Some(key) = self.session_key(device)
        {
            ack.encrypt_payload(&key);
        }
        let replies = match ack_topic {
            Some(t) => vec![Reply::new(&t, ack, plain)],
            None => Vec::new(),
        };
        Handled {
            replies,
            ota,
            durable,
        }
    }

    /// A device's answer to a command, or a config report: recorded and handed to the
    /// command waiting for it. A frame that broke a rule (a HeaderCtrl not of its topic, a
    /// plain or undecryptable payload) goes to the violation log, by the checked command
    /// waiting for it ([`Platform::send_command`]) if there is one, else here.
    fn answer_frame(
        &self,
        device: &DeviceIdentity,
        topic: &Topic,
        frame: Frame,
        plain: Result<Value, Broken>,
        bytes: &Bytes,
    ) -> Handled {
        let (payload, broken) = match plain {
            Ok(p) => (p, None),
            Err(broken) => {
                tracing::warn!(target: "x_sim", "{topic}: {}", broken.reason);
                (frame.payload.clone(), Some(broken))
            }
        };
        let readable = broken.is_none();
        // Not acked: nothing waits for the write.
        let (record, _) = self.inner.data.record(data::Incoming {
            device,
            kind: topic.kind(),
            identifier: topic.identifier().map(|i| i.as_str().to_owned()),
            frame: &frame,
            payload,
            raw: None,
        });
        if topic.kind() == TopicKind::ConfigReport {
            // Not acked: nothing waits for the write.
            let _ = self.put_state("config", &device.to_string(), &record.payload);
        }
        if topic.kind() == TopicKind::OtaNotifyAck && readable {
            self.ota_acked(device, &record.payload);
        }
        if let Some(broken) = self.answer(device, answer_of(topic, &frame, &record), bytes, broken)
        {
            let name = topic.to_string();
            self.violation(device, &broken, Evidence::of_frame(&name, bytes, &frame));
        }
        Handled::default()
    }

    /// Records that `device` broke a rule, secrets (its DeviceSecret, ProductKey and
    /// SessionKeys) taken out of the record. With a store, the [`data::Durable`] of the
    /// record's write: an answer that tells the device about the violation waits for it.
    fn violation(
        &self,
        device: &DeviceIdentity,
        broken: &Broken,
        evidence: Evidence<'_>,
    ) -> Option<data::Durable> {
        let mut secrets = registry_secrets(&read(&self.inner.registry), device);
        secrets.extend(self.inner.sessions.key_hexes(device));
        let (_, durable) =
            self.inner
                .violations
                .record(device, broken.rule, &broken.reason, evidence, &secrets);
        durable
    }

    /// The payload of a frame of an encrypted product decrypted, when it is encrypted and
    /// decrypts.
    fn decrypted(&self, device: &DeviceIdentity, frame: &Frame) -> Option<Value> {
        (self.is_encrypted(device)
            && frame.header_ctrl.is_encrypted_uplink()
            && frame.payload.is_string())
        .then(|| self.inner.sessions.decrypt(device, frame).ok())
        .flatten()
    }

    /// What a device message means, once decrypted: checked against the model, decoded
    /// through the parsing script for HEX products.
    fn understand(
        &self,
        device: &DeviceIdentity,
        kind: TopicKind,
        identifier: Option<&str>,
        frame: &Frame,
        payload: Value,
    ) -> Result<Understood, Broken> {
        match kind {
            TopicKind::HexReport => {
                let hex = payload.as_str().ok_or_else(|| {
                    Broken::new(
                        Rule::BadPayload,
                        format!("Payload: expected a hex string, got {payload}"),
                    )
                })?;
                let decoded = self.decode_hex(device, hex, Some(frame.header_ctrl))?;
                Ok(Understood {
                    payload: decoded,
                    raw: Some(hex.to_owned()),
                    ack_data: None,
                })
            }
            TopicKind::PropertyReport | TopicKind::EventReport | TopicKind::HistoryReport => {
                self.check_model(device, kind, identifier, &payload)?;
                Ok(Understood::plain(payload))
            }
            TopicKind::FirmwareReport => {
                serde_json::from_value::<FirmwareReport>(payload.clone()).map_err(|e| {
                    Broken::new(
                        Rule::BadPayload,
                        format!("Payload: not a firmware report: {e}"),
                    )
                })?;
                Ok(Understood::plain(payload))
            }
            TopicKind::UpdateTime => Ok(Understood {
                payload,
                raw: None,
                ack_data: Some(
                    json!({"timestamp": now_ms(), "timezone": self.inner.config.timezone}),
                ),
            }),
            _ => Ok(Understood::plain(payload)),
        }
    }

    /// The frame's payload in plain JSON: decrypted for encrypted products, except the
    /// commands that are never encrypted.
    fn plain_payload(&self, device: &DeviceIdentity, frame: &Frame) -> Result<Value, Broken> {
        if !self.is_encrypted(device) || !frame.header_ctrl.is_encrypted_uplink() {
            return Ok(frame.payload.clone());
        }
        // Devices of an encrypted product must encrypt (only the platform may send either).
        if !frame.payload.is_string() {
            return Err(Broken::new(
                Rule::Plaintext,
                format!(
                    "payload must be encrypted for this product (HeaderCtrl {} travels encrypted)",
                    frame.header_ctrl.code()
                ),
            ));
        }
        self.inner
            .sessions
            .decrypt(device, frame)
            .map_err(|reason| {
                if self.plain_hex(device, frame) {
                    Broken::new(
                        Rule::Plaintext,
                        format!(
                            "payload must be encrypted for this product (HeaderCtrl {} travels \
                         encrypted): this is plain HEX",
                            frame.header_ctrl.code()
                        ),
                    )
                } else {
                    Broken::new(Rule::Undecryptable, reason)
                }
            })
    }

    /// Whether a HEX frame (18, 19, 26) whose payload does not decrypt is HEX as the
    /// product's script reads it unencrypted: a HEX payload is a string either way, so this
    /// tells plaintext from a payload encrypted under another key.
    fn plain_hex(&self, device: &DeviceIdentity, frame: &Frame) -> bool {
        let hex_frame = matches!(
            frame.header_ctrl,
            HeaderCtrl::HexPropertyReport
                | HeaderCtrl::HexEventReport
                | HeaderCtrl::HexServiceReply
        );
        let Some(hex) = frame.payload.as_str().filter(|_| hex_frame) else {
            return false;
        };
        // Read by the script; values the model refuses are plain all the same.
        match self.decode_hex(device, hex, Some(frame.header_ctrl)) {
            Ok(_) => true,
            Err(broken) => broken.rule == Rule::ThingModel,
        }
    }

    /// Hands a device's answer (with its bytes, and the rule its frame broke, if any) to the
    /// command waiting for it (same MessageId). Returns the rule broken when no checked
    /// command took it: the caller records it.
    fn answer(
        &self,
        device: &DeviceIdentity,
        answer: Answer,
        bytes: &Bytes,
        broken: Option<Broken>,
    ) -> Option<Broken> {
        let waiting =
            lock(&self.inner.pending).remove(&(device.to_string(), answer.message_id.clone()));
        match waiting {
            Some(w) if w.checked => {
                let _ = w.tx.send(command::Delivered {
                    answer,
                    bytes: bytes.clone(),
                    broken,
                });
                None
            }
            Some(w) => {
                let _ = w.tx.send(command::Delivered {
                    answer,
                    bytes: bytes.clone(),
                    broken: None,
                });
                broken
            }
            None => broken,
        }
    }

    /// Checks JSON reports and events of thing-model products against the model.
    fn check_model(
        &self,
        device: &DeviceIdentity,
        kind: TopicKind,
        identifier: Option<&str>,
        payload: &Value,
    ) -> Result<(), Broken> {
        let Some(model) = self.model_of(device, Some(Format::Json)) else {
            return Ok(());
        };
        let result = match kind {
            TopicKind::PropertyReport => crate::validate::property_report(&model, payload),
            TopicKind::HistoryReport => crate::validate::history(&model, payload),
            _ => crate::validate::event_report(&model, identifier.unwrap_or_default(), payload),
        };
        result.map_err(|rejections| Broken::new(Rule::ThingModel, rejections.to_string()))
    }

    /// The device's product model (of products with format `only`, when given).
    fn model_of(
        &self,
        device: &DeviceIdentity,
        only: Option<Format>,
    ) -> Option<std::sync::Arc<x_codegen::Model>> {
        let registry = read(&self.inner.registry);
        match registry.product(device.product_id.as_str()) {
            Some(p) if only.is_none_or(|f| f == p.format) => {
                p.model.as_ref().map(|m| std::sync::Arc::clone(m.model()))
            }
            _ => None,
        }
    }

    /// Decodes device hex through the product's parsing script, checking that the frame
    /// type agrees with the frame's HeaderCtrl (`expect`) and the values with the model.
    fn decode_hex(
        &self,
        device: &DeviceIdentity,
        hex: &str,
        expect: Option<HeaderCtrl>,
    ) -> Result<Value, Broken> {
        let script = {
            let registry = read(&self.inner.registry);
            match registry.product(device.product_id.as_str()) {
                Some(p) if p.format == Format::Hex => p.script.clone(),
                _ => None,
            }
        }
        .ok_or_else(|| {
            Broken::new(
                Rule::HexParse,
                format!(
                    "product {} is not a HEX product with a parsing script",
                    device.product_id
                ),
            )
        })?;
        let hex_error = |e: &dyn std::fmt::Display| Broken::new(Rule::HexParse, e.to_string());
        let bytes = x_protocol::model::hex::from_hex(hex).map_err(|e| hex_error(&e))?;
        let decoded = crate::script::with_script(&script, move |s| s.raw_data_to_protocol(&bytes))
            .map_err(|e| hex_error(&e))?
            .map_err(|e| hex_error(&e))?;
        let decoded_ctrl = decoded.get("HeaderCtrl").and_then(Value::as_i64);
        if let Some(expect) = expect {
            let want = match expect {
                HeaderCtrl::HexPropertyReport => 16,
                HeaderCtrl::HexEventReport => 17,
                _ => 21,
            };
            if decoded_ctrl != Some(want) {
                return Err(Broken::new(
                    Rule::HeaderCtrlMismatch,
                    format!(
                        "HeaderCtrl {} but the parsing script decoded {}",
                        expect.code(),
                        decoded.get("HeaderCtrl").cloned().unwrap_or(Value::Null)
                    ),
                ));
            }
        }
        if let Some(model) = self.model_of(device, Some(Format::Hex)) {
            let payload = decoded.get("Payload").cloned().unwrap_or(Value::Null);
            let checked = match decoded_ctrl {
                Some(16) => crate::validate::property_report(&model, &payload),
                Some(17) => crate::validate::event_report(
                    &model,
                    decoded
                        .get("Event")
                        .and_then(Value::as_str)
                        .unwrap_or_default(),
                    &payload,
                ),
                _ => Ok(()),
            };
            checked.map_err(|r| Broken::new(Rule::ThingModel, r.to_string()))?;
        }
        Ok(decoded)
    }

    /// A full-HEX report (28): the bare hex through the script, acked with 28.
    fn full_hex(&self, device: &DeviceIdentity, topic: &Topic, payload: &[u8]) -> Handled {
        let mut durable = Vec::new();
        let text = String::from_utf8_lossy(payload).into_owned();
        // A full-HEX report has no MessageId of its own; the ack gets a fresh one.
        let frame = Frame::new(
            self.inner.ids.next_id(),
            HeaderCtrl::FullHexReport,
            Value::String(text.clone()),
        );
        let ack = match self.decode_hex(device, text.trim(), None) {
            Ok(decoded) => {
                let (_, written) = self.inner.data.record(data::Incoming {
                    device,
                    kind: TopicKind::FullHex,
                    identifier: None,
                    frame: &frame,
                    payload: decoded,
                    raw: Some(text.trim().to_owned()),
                });
                durable.extend(written);
                AckPayload::success(None)
            }
            Err(broken) => {
                tracing::warn!(target: "x_sim", "full-HEX report of {device} rejected: {}", broken.reason);
                let name = topic.to_string();
                let evidence = Evidence {
                    header_ctrl: Some(HeaderCtrl::FullHexReport),
                    ..Evidence::of(&name, payload)
                };
                durable.extend(self.violation(device, &broken, evidence));
                AckPayload::failure(broken.reason)
            }
        };
        let replies = match Topic::new(device.clone(), TopicKind::FullHexAck) {
            Ok(t) => {
                let ack = Frame::ack_of(&frame, &ack);
                let plain = ack.payload.clone();
                vec![Reply::new(&t, ack, plain)]
            }
            Err(_) => Vec::new(),
        };
        Handled {
            replies,
            durable,
            ..Handled::default()
        }
    }

    /// The OTA notify for a device's module (default "default") under its product's OTA task,
    /// to send now whatever version the device last reported.
    ///
    /// # Errors
    /// No firmware server, or no task for the product and module.
    pub fn ota_notify_for(
        &self,
        device: &DeviceIdentity,
        module: Option<&str>,
    ) -> Result<OtaNotify, String> {
        let firmware = self
            .inner
            .firmware
            .as_ref()
            .ok_or("no firmware server: the platform has no data directory")?;
        let base = self
            .inner
            .config
            .firmware_url
            .as_deref()
            .ok_or("no firmware server URL: the platform has no HTTP listener")?;
        let module = module.unwrap_or(x_protocol::payload::DEFAULT_MODULE);
        firmware
            .task_notify(base, device.product_id.as_str(), module)
            .ok_or_else(|| {
                format!(
                    "no OTA task for product {} module {module}",
                    device.product_id
                )
            })
    }

    /// A value of one of the platform's small state maps (`config`, `firmware`, `ota`).
    pub fn state(&self, map: &str, key: &str) -> Option<Value> {
        self.inner.data.state(map, key)
    }

    /// Every entry of one state map.
    pub fn state_map(&self, map: &str) -> Vec<(String, Value)> {
        self.inner.data.state_map(map)
    }

    /// Changes a state value (see [`data::Data::update_state`]); nothing waits for its
    /// write.
    fn update_state(&self, map: &str, key: &str, f: impl FnOnce(Option<&Value>) -> Option<Value>) {
        let _ = self.inner.data.update_state(map, key, f);
    }

    /// Sets a state value; the [`data::Durable`] of its write, when there is a store.
    fn put_state(&self, map: &str, key: &str, value: &Value) -> Option<data::Durable> {
        self.inner.data.put_state(map, key, value)
    }

    /// Whether the device is connected (`None` over an external broker, where the platform
    /// cannot see connections).
    pub fn online(&self, device: &DeviceIdentity) -> Option<bool> {
        self.inner.access.as_ref().map(|a| a.online(device))
    }

    /// A device's last offline time (Unix seconds), as the embedded broker saw it.
    pub fn last_offline(&self, device: &DeviceIdentity) -> Option<u64> {
        self.inner.access.as_ref()?.last_offline(device)
    }

    /// When the embedded broker refused CONNECTs naming `device` (auth-phase and V2 logins),
    /// oldest first (the newest [`crate::access::REFUSED_CONNECTS_KEPT`]); `None` over an
    /// external broker, where the platform cannot see CONNECTs.
    pub fn refused_connects(&self, device: &DeviceIdentity) -> Option<Vec<std::time::Instant>> {
        self.inner
            .access
            .as_ref()
            .map(|a| a.refused_connects(device))
    }

    /// Closes the device's connection (fault injection; embedded broker only). Returns
    /// whether it was connected.
    pub fn drop_device(&self, device: &DeviceIdentity) -> bool {
        let Some(access) = &self.inner.access else {
            return false;
        };
        access
            .client_of(device)
            .is_some_and(|client| self.inner.link.drop_client(&client))
    }
}

/// What a device message was understood as.
struct Understood {
    /// What is stored: the plain payload, or the script's decoding of HEX.
    payload: Value,
    /// The hex as it came, for HEX products.
    raw: Option<String>,
    /// The ack's `Data`.
    ack_data: Option<Value>,
}

impl Understood {
    fn plain(payload: Value) -> Self {
        Self {
            payload,
            raw: None,
            ack_data: None,
        }
    }
}

fn answer_of(topic: &Topic, frame: &Frame, record: &Received) -> Answer {
    Answer {
        topic: topic.to_string(),
        header_ctrl: frame.header_ctrl,
        message_id: frame.message_id.clone(),
        payload: record.payload.clone(),
        raw: record.raw.clone(),
    }
}

/// One readable line for a frame: command, MessageId and the plain payload (marked when it
/// travels encrypted). An auth reply's DeviceSecret is never logged.
fn describe(frame: &Frame, plain: &Value) -> String {
    let mut payload = plain.clone();
    if frame.header_ctrl == HeaderCtrl::Auth
        && let Some(secret) = payload.get_mut("DeviceSecret")
    {
        *secret = json!("[redacted]");
    }
    let encrypted = if frame.payload == *plain {
        ""
    } else {
        " (encrypted)"
    };
    shorten(&format!(
        "HeaderCtrl {} MessageId {} {payload}{encrypted}",
        frame.header_ctrl.code(),
        frame.message_id
    ))
}
