//! What goes into and comes out of a device session: its configuration, the effects it asks
//! the driver to perform, the events it hands the application, and the connection state.

use std::fmt;
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use x_protocol::payload::{AuthCode, OtaNotify};
use x_protocol::{
    ConnectType, DeviceIdentity, DeviceSecret, MqttLogin, ProductKey, RegistrationType, SessionKey,
};

use crate::backoff::BackoffConfig;

/// The present moment, as the driver sees it: a monotonic instant for deadlines and the
/// wall clock (Unix milliseconds) for login timestamps and observation times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// Monotonic time.
    pub instant: Instant,
    /// Wall-clock time, Unix milliseconds (the device's own clock).
    pub unix_ms: i64,
}

impl Now {
    /// The current time from the system clocks.
    pub fn system() -> Self {
        Self {
            instant: Instant::now(),
            unix_ms: x_protocol::model::Date::now().millis(),
        }
    }

    /// This moment shifted by `d` on both clocks.
    pub fn after(self, d: Duration) -> Self {
        Self {
            instant: self.instant + d,
            unix_ms: self
                .unix_ms
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// The parameters burned into a device, and how its session behaves.
#[derive(Clone)]
pub struct DeviceConfig {
    /// OpenID, ProductID and NodeEui.
    pub identity: DeviceIdentity,
    /// The product's secret.
    pub product_key: ProductKey,
    /// The DeviceSecret when it is burned in (type 2) or already known; types 0 and 1 learn
    /// it in the auth phase.
    pub device_secret: Option<DeviceSecret>,
    /// How the device is registered.
    pub registration: RegistrationType,
    /// Whether the product encrypts payloads (needs a SessionKey from the auth phase).
    pub encrypted: bool,
    /// Whether the V2 login carries a checked timestamp (type 1, the default) or not.
    pub connect_type: ConnectType,
    /// Firmware of the default module and any named modules, reported after every login.
    pub firmware: Vec<Firmware>,
    /// Timeouts, pacing and limits.
    pub timing: Timing,
}

impl fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("identity", &self.identity)
            .field("product_key", &self.product_key)
            .field("device_secret", &self.device_secret)
            .field("registration", &self.registration)
            .field("encrypted", &self.encrypted)
            .field("connect_type", &self.connect_type)
            .field("firmware", &self.firmware)
            .field("timing", &self.timing)
            .finish()
    }
}

impl DeviceConfig {
    /// A device with the defaults: registration type 1, plain payloads, checked timestamps,
    /// firmware `1.0.0` / `1.0.0` for the default module.
    pub fn new(identity: DeviceIdentity, product_key: ProductKey) -> Self {
        Self {
            identity,
            product_key,
            device_secret: None,
            registration: RegistrationType::ProductSecretPreRegistered,
            encrypted: false,
            connect_type: ConnectType::TimestampChecked,
            firmware: vec![Firmware::new("1.0.0", "1.0.0")],
            timing: Timing::default(),
        }
    }
}

/// One module's firmware versions, as the firmware report (HeaderCtrl 8) carries them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    /// The module; `None` is the default module (the device's main firmware).
    pub module: Option<String>,
    /// Hardware version.
    pub hard_ver: String,
    /// Software version, compared with OTA targets by exact string equality.
    pub soft_ver: String,
}

impl Firmware {
    /// The default module's versions.
    pub fn new(hard_ver: impl Into<String>, soft_ver: impl Into<String>) -> Self {
        Self {
            module: None,
            hard_ver: hard_ver.into(),
            soft_ver: soft_ver.into(),
        }
    }

    /// A named module's versions.
    pub fn module(
        module: impl Into<String>,
        hard_ver: impl Into<String>,
        soft_ver: impl Into<String>,
    ) -> Self {
        Self {
            module: Some(module.into()),
            ..Self::new(hard_ver, soft_ver)
        }
    }
}

/// Timeouts, pacing and limits of a session.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// How long the platform has to ack a report, event, passthrough or history upload.
    pub ack_timeout: Duration,
    /// How long the platform has to answer the auth request.
    pub auth_timeout: Duration,
    /// How long the broker has to confirm a subscription.
    pub subscribe_timeout: Duration,
    /// Reconnect pacing.
    pub backoff: BackoffConfig,
    /// Firmware reports are sent again this many times when no ack arrives.
    pub firmware_retries: u32,
    /// Whether to ask the platform for its time after every login.
    pub time_sync: bool,
    /// Outbox entries in flight at once (live frames and history batches).
    pub window: usize,
    /// Entries per history upload.
    pub history_batch: usize,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            ack_timeout: Duration::from_secs(10),
            auth_timeout: Duration::from_secs(10),
            subscribe_timeout: Duration::from_secs(10),
            backoff: BackoffConfig::default(),
            firmware_retries: 3,
            time_sync: true,
            window: 32,
            history_batch: 50,
        }
    }
}

/// Which login phase a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LoginPhase {
    /// The auth phase (product credentials, HeaderCtrl 1).
    Auth,
    /// The V2 login (device credentials).
    Connect,
}

/// What the session asks its driver to do, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Close any connection and open a new one with these credentials.
    Connect {
        /// The login phase.
        phase: LoginPhase,
        /// ClientID, UserName and Password.
        login: MqttLogin,
    },
    /// Subscribe to these filters (QoS 1), in one SUBSCRIBE.
    Subscribe(Vec<String>),
    /// Publish at QoS 1.
    Publish {
        /// The topic.
        topic: String,
        /// The MQTT payload.
        payload: Vec<u8>,
    },
    /// Close the connection (a clean MQTT DISCONNECT).
    Disconnect,
    /// Write what must survive a restart to the state directory (atomically).
    Persist(Persisted),
    /// The platform acked (or refused for good) these outbox entries: remove them.
    Forget(Vec<u64>),
}

/// What a device keeps across restarts.
#[derive(Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Persisted {
    /// The DeviceSecret learnt in the auth phase (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_secret: Option<x_protocol::SecretString>,
    /// The session of an encrypted product: SessionID and Nonce.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<x_protocol::payload::SessionGrant>,
    /// The last V2 login timestamp used (Unix seconds); the next one is later.
    #[serde(default)]
    pub last_login_timestamp: u64,
    /// When the device last went offline (Unix seconds, the platform clock where known):
    /// the platform refuses a type-1 login stamped at or before it, also after a restart.
    #[serde(default)]
    pub last_offline: u64,
}

impl fmt::Debug for Persisted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persisted")
            .field(
                "device_secret",
                &self.device_secret.as_ref().map(|_| "[redacted]"),
            )
            // SessionID and Nonce derive the SessionKey: as secret as the key.
            .field("session", &self.session.as_ref().map(|_| "[redacted]"))
            .field("last_login_timestamp", &self.last_login_timestamp)
            .field("last_offline", &self.last_offline)
            .finish()
    }
}

/// Identifies one report, event, passthrough or history upload until its ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Token(pub(crate) u64);

/// Identifies one service call until it is answered.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Ticket(pub(crate) u64);

/// The platform's "200" ack of something the device sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Ack {
    /// The ack's `Data`, if any.
    pub data: Option<Value>,
}

/// Why something the device sent did not get a "200" ack.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// The platform refused it ("4001"); `reason` is its `Msg`.
    #[error("refused by the platform ({code}): {reason}")]
    Rejected {
        /// The ack's code.
        code: String,
        /// The ack's `Msg`.
        reason: String,
    },
    /// No ack within the ack timeout.
    #[error("no ack within {0:?}")]
    Timeout(Duration),
    /// The connection went down before the ack arrived.
    #[error("the connection went down before the ack arrived")]
    Disconnected,
    /// The device was not online when it was sent.
    #[error("the device is not online")]
    Offline,
    /// It breaks the thing model (a value out of range, say): it was not sent. The text
    /// names every field and why.
    #[error("not sent, the thing model refuses it: {0}")]
    Invalid(String),
    /// It could not be encoded (a HEX value that does not fit, an event a HEX product
    /// lacks); `reason` says which field.
    #[error("cannot encode: {0}")]
    Encode(String),
    /// The device was shut down (an outbox entry stays stored and is sent after a restart).
    #[error("the device was shut down")]
    Stopped,
    /// The outbox was full and its policy dropped this entry to make room.
    #[error("dropped from the full outbox")]
    Dropped,
    /// The outbox is full and its policy ([`crate::outbox::FullPolicy::RefuseNew`])
    /// refuses new entries: it was not stored (nor merged into the property state).
    #[error(
        "not stored: the outbox is full ({entries} entries, {bytes} bytes) and refuses new entries"
    )]
    OutboxFull {
        /// Entries the outbox holds.
        entries: usize,
        /// Payload bytes it holds.
        bytes: u64,
    },
    /// The outbox could not store it (the text says why).
    #[error("not stored: {0}")]
    Store(String),
}

/// Why the platform or broker refused the device; readable, and distinct per cause.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// The auth phase answered with a code other than 0.
    #[error("auth refused: code {0}")]
    Auth(AuthCode),
    /// The auth reply said 0 but carried no usable DeviceSecret or session.
    #[error("auth reply unusable: {0}")]
    BadAuthReply(String),
    /// The broker refused the CONNECT with this CONNACK return code (4: bad user name or
    /// password, 5: not authorised).
    #[error("{phase:?} login refused with CONNACK code {code}")]
    Connack {
        /// The login phase.
        phase: LoginPhase,
        /// The CONNACK return code.
        code: u8,
    },
    /// The broker refused a subscription.
    #[error("subscription refused: {0}")]
    Subscription(String),
    /// A type-2 device with no DeviceSecret configured, or any device whose configuration
    /// cannot work (the text says what).
    #[error("configuration: {0}")]
    Config(String),
}

impl Refusal {
    /// Whether trying again soon may succeed (platform busy); other refusals back off to the
    /// cap.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Auth(code) if code.is_retryable())
    }
}

/// Where the device's connection stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionState {
    /// Not started yet.
    Idle,
    /// Opening a connection (`attempt` counts from 1 since the last time online).
    Connecting {
        /// The login phase.
        phase: LoginPhase,
        /// Attempts since the last time online.
        attempt: u32,
    },
    /// Connected with product credentials, waiting for the auth reply.
    Authenticating,
    /// Logged in, subscribed, ready.
    Online,
    /// Connection lost or not possible; retrying after `retry_in`.
    Offline {
        /// What happened.
        reason: String,
        /// The backoff delay before the next attempt.
        retry_in: Duration,
    },
    /// Refused by the platform; retrying after `retry_in` (the cap for refusals that
    /// retrying cannot fix).
    Refused {
        /// Why.
        reason: Refusal,
        /// The delay before the next attempt.
        retry_in: Duration,
    },
    /// Shut down by the application.
    Stopped,
}

impl ConnectionState {
    /// Whether the device is online.
    pub fn is_online(&self) -> bool {
        *self == Self::Online
    }
}

/// Counters the application can read at any time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames published (every kind, acks included).
    pub sent: u64,
    /// Reports, events, passthroughs and history uploads acked "200" (outbox entries
    /// counted one by one).
    pub acked: u64,
    /// Reports, events, passthroughs and history uploads the platform refused: acked with
    /// "4001" or any other code than "200" (outbox entries counted once each is refused on
    /// its own). Not counted in `acked`.
    pub rejected: u64,
    /// Reports, events, passthroughs and history uploads with no ack within the ack
    /// timeout. Not counted in `acked` or `rejected`.
    pub timed_out: u64,
    /// Frames received from the platform.
    pub received: u64,
    /// Received frames that could not be used (bad topic, JSON, ciphertext, payload,
    /// unknown HeaderCtrl, ack for nothing we sent).
    pub bad_frames: u64,
    /// Commands from the platform answered "4001" (the model or the application refused).
    pub refused_commands: u64,
    /// CONNECTs sent: every connection opened, auth-phase connections and attempts that
    /// failed included.
    pub connects: u64,
    /// Times the device got back online after it had been online before (a dropped
    /// connection, a broker restart, a login again after an OTA install or a stale
    /// session). The first login is not one; nor are the auth phase and failed attempts
    /// on the way (those are in `connects`).
    pub reconnects: u64,
    /// SessionKey rotations applied.
    pub rotations: u64,
    /// Outbox entries dropped because the outbox was full.
    pub outbox_dropped: u64,
    /// Outbox entries the platform refused for good (named by a "4001"): dropped,
    /// reported.
    pub outbox_refused: u64,
    /// History uploads refused without naming an entry: nothing dropped, retried after a
    /// backoff.
    pub uploads_refused: u64,
}

/// What the platform asked or told the application.
#[derive(Debug)]
pub enum Event<S, Set> {
    /// The connection state changed.
    State(ConnectionState),
    /// A report, event, passthrough or history upload got its ack, or will not.
    Delivered {
        /// What was sent.
        token: Token,
        /// The outcome.
        result: Result<Ack, DeliveryError>,
    },
    /// A property set was decoded, accepted, applied to the state and acked.
    PropertiesSet(Set),
    /// A service call was decoded; answer it with the session's `reply_service` (or
    /// `reply_service_hex` for HEX products).
    ServiceCall {
        /// Pass back with the answer.
        ticket: Ticket,
        /// The decoded call.
        call: S,
    },
    /// Passthrough downlink data (HeaderCtrl 7), already acked.
    Passthrough(Value),
    /// The platform set config (HeaderCtrl 14 on `down_config`); the settings are merged
    /// into the device's config and reported back.
    ConfigChanged(Map<String, Value>),
    /// An OTA notify (HeaderCtrl 9), already acked with its DownID.
    OtaNotify(OtaNotify),
    /// The platform's clock, from a time sync: Unix milliseconds at the moment it arrived,
    /// and the platform's time zone.
    TimeSynced {
        /// Platform time, Unix milliseconds.
        platform_ms: i64,
        /// The platform's time zone ("Asia/Shanghai").
        timezone: String,
    },
    /// The platform issued a new SessionKey (HeaderCtrl 3).
    KeyRotated,
    /// The platform refused an outbox entry for good (a "4001" naming it): it is dropped
    /// from the outbox and never sent again. Its `Delivered` says so too, where this run
    /// made the entry.
    EntryRefused {
        /// The entry.
        entry: crate::outbox::Entry,
        /// What the platform said of it.
        reason: String,
    },
    /// A history upload was refused ("4001") without naming any entry of it (a policy
    /// refusal, a payload or key the platform could not read): nothing was dropped; its
    /// entries are uploaded again after `retry_in`.
    UploadRefused {
        /// The ack's `Msg`.
        reason: String,
        /// How many entries the upload held (all kept).
        entries: usize,
        /// When the backlog tries again.
        retry_in: Duration,
    },
}

/// The keys of an encrypted product: the current one, and the one before the last rotation
/// for frames that were in flight.
#[derive(Clone, Default)]
pub(crate) struct Keys {
    pub(crate) current: Option<SessionKey>,
    pub(crate) previous: Option<SessionKey>,
}
