//! The device as product code uses it: a builder from the burned-in parameters, typed
//! reports and events that resolve on the platform's ack, the platform's requests as a
//! stream or through handlers, and a connection-state watch. Behind it one tokio task runs
//! the [`Session`] over rumqttc.

use std::collections::HashMap;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot, watch};
use x_protocol::model::hex::{HexError, HexEvent, HexModel, HexReply, HexServices};
use x_protocol::model::{ServiceFailure, ThingEvent, ThingModel, ThingServices};
use x_protocol::payload::OtaNotify;
use x_protocol::{ConnectType, DeviceIdentity, DeviceSecret, ProductKey, RegistrationType};

use crate::backoff::BackoffConfig;
use crate::driver;
use crate::ota::{Installer, OtaConfig, OtaEvent};
use crate::outbox::{Entry, OutboxError, OutboxLimits, OutboxWriter, Recovered};
use crate::session::{
    Ack, ConnectionState, Counters, DeliveryError, DeviceConfig, Firmware, Now, Persisted, Refusal,
    Session, Ticket, Token,
};
use crate::state_dir::{StateDir, StateDirError};

pub use crate::empty::NoServices;

/// Where the broker is: `mqtt://host:port` (plain TCP) or `mqtts://host:port` (TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Whether to use TLS.
    pub tls: bool,
}

/// Why a broker address could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("broker address {value:?}: {reason}")]
pub struct BrokerAddrError {
    /// The address as given.
    pub value: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl std::str::FromStr for BrokerAddr {
    type Err = BrokerAddrError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| BrokerAddrError {
            value: s.to_owned(),
            reason,
        };
        let (tls, rest, default_port) = if let Some(r) = s.strip_prefix("mqtt://") {
            (false, r, 1883)
        } else if let Some(r) = s.strip_prefix("mqtts://") {
            (true, r, 8883)
        } else if s.contains("://") {
            return Err(err("the scheme must be mqtt:// or mqtts://"));
        } else {
            (false, s, 1883)
        };
        let rest = rest.trim_end_matches('/');
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => (
                h,
                p.parse::<u16>()
                    .map_err(|_| err("the port must be a number from 1 to 65535"))?,
            ),
            _ => (rest, default_port),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(err("the host is empty"));
        }
        if port == 0 {
            return Err(err("the port must be a number from 1 to 65535"));
        }
        Ok(Self {
            host: host.to_owned(),
            port,
            tls,
        })
    }
}

impl std::fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

/// A service handler: takes a decoded call, returns its outputs or a failure.
pub type ServiceFn<S> =
    Box<dyn FnMut(S) -> Result<Map<String, Value>, ServiceFailure> + Send + 'static>;

/// A HEX service handler: writes the reply the generated `dispatch_hex` writes.
pub type HexServiceFn<S> =
    Box<dyn FnMut(S, &mut [u8]) -> Result<HexReply, HexError> + Send + 'static>;

/// How the driver answers service calls.
pub(crate) enum Handler<S> {
    /// Through the request stream ([`Request::Service`]).
    Stream,
    /// A JSON handler, run on the device's task.
    Json(ServiceFn<S>),
    /// A HEX handler, run on the device's task.
    Hex(HexServiceFn<S>),
}

/// Why a device could not be built or started.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    /// The state directory could not be read.
    #[error(transparent)]
    StateDir(#[from] StateDirError),
    /// The outbox could not be opened.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The broker address is invalid.
    #[error(transparent)]
    Broker(#[from] BrokerAddrError),
    /// TLS was asked for but cannot be set up (the text says why).
    #[error("TLS: {0}")]
    Tls(String),
    /// The platform refused the first login for a reason retrying cannot fix (the device
    /// is stopped).
    #[error("the platform refused the device: {0}")]
    Refused(Refusal),
    /// The device stopped before it got online.
    #[error("the device stopped before it got online")]
    Stopped,
    /// The first login did not succeed in time.
    #[error("not online within {0:?}")]
    Timeout(Duration),
    /// `start` or `connect` was called outside a tokio runtime.
    #[error("a device runs on a tokio runtime: call start() or connect() inside one")]
    NoRuntime,
    /// OTA was configured without a state directory to download into.
    #[error("OTA needs a state directory (DeviceBuilder::state_dir) to download into")]
    OtaWithoutStateDir,
}

/// Turns a session into a HEX product's (captured where the HEX bounds hold).
pub(crate) type HexSetup<M, S> = fn(Session<M, S>) -> Session<M, S>;

/// A caller waiting for an ack, holding its window place (outbox entries hold none: the
/// session paces those).
pub(crate) type Waiter = (
    oneshot::Sender<Result<Ack, DeliveryError>>,
    Option<OwnedSemaphorePermit>,
);

/// Builds a [`Device`] from the parameters burned into it.
pub struct DeviceBuilder<M: ThingModel, S = NoServices> {
    pub(crate) config: DeviceConfig,
    pub(crate) broker: BrokerAddr,
    pub(crate) ca_file: Option<PathBuf>,
    pub(crate) state_dir: Option<PathBuf>,
    pub(crate) keep_alive: Duration,
    pub(crate) window: usize,
    pub(crate) request_capacity: usize,
    pub(crate) state: M,
    pub(crate) settings: Map<String, Value>,
    pub(crate) handler: Handler<S>,
    pub(crate) veto: Option<crate::session::SetVeto<M>>,
    pub(crate) hex: Option<HexSetup<M, S>>,
    pub(crate) seed: Option<u64>,
    pub(crate) outbox: Option<OutboxLimits>,
    pub(crate) ota: Option<Arc<dyn Installer>>,
    pub(crate) ota_config: OtaConfig,
}

impl<M: ThingModel, S> std::fmt::Debug for DeviceBuilder<M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceBuilder")
            .field("config", &self.config)
            .field("broker", &self.broker)
            .field("state_dir", &self.state_dir)
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl<M: ThingModel + Default + Send + 'static, S: ThingServices + Send + 'static> Device<M, S>
where
    M::Set: Send,
{
    /// A builder for the device `identity` of the product with `product_key`. Defaults:
    /// broker `mqtt://127.0.0.1:1883`, registration type 1, plain payloads, keep-alive 60 s,
    /// a window of 32 un-acked messages, no state directory (nothing persists).
    pub fn builder(identity: DeviceIdentity, product_key: ProductKey) -> DeviceBuilder<M, S> {
        DeviceBuilder {
            config: DeviceConfig::new(identity, product_key),
            broker: BrokerAddr {
                host: "127.0.0.1".into(),
                port: 1883,
                tls: false,
            },
            ca_file: None,
            state_dir: None,
            keep_alive: Duration::from_secs(60),
            window: 32,
            request_capacity: 64,
            state: M::default(),
            settings: Map::new(),
            handler: Handler::Stream,
            veto: None,
            hex: None,
            seed: None,
            outbox: Some(OutboxLimits::default()),
            ota: None,
            ota_config: OtaConfig::default(),
        }
    }
}

impl<M: ThingModel + Send + 'static, S: ThingServices + Send + 'static> DeviceBuilder<M, S>
where
    M::Set: Send,
{
    /// The broker to connect to.
    ///
    /// # Errors
    /// [`BrokerAddrError`] naming what is wrong with the address.
    pub fn broker(mut self, addr: &str) -> Result<Self, BrokerAddrError> {
        self.broker = addr.parse()?;
        Ok(self)
    }

    /// The broker to connect to, already parsed.
    #[must_use]
    pub fn broker_addr(mut self, addr: BrokerAddr) -> Self {
        self.broker = addr;
        self
    }

    /// A PEM file of the CA certificates that sign the broker's certificate (`mqtts://`).
    #[must_use]
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
    }

    /// How the device is registered (default 1).
    #[must_use]
    pub fn registration(mut self, registration: RegistrationType) -> Self {
        self.config.registration = registration;
        self
    }

    /// The DeviceSecret burned in at the factory (type 2).
    #[must_use]
    pub fn device_secret(mut self, secret: DeviceSecret) -> Self {
        self.config.device_secret = Some(secret);
        self
    }

    /// Whether the product encrypts payloads.
    #[must_use]
    pub fn encrypted(mut self, encrypted: bool) -> Self {
        self.config.encrypted = encrypted;
        self
    }

    /// Whether the V2 login's timestamp is checked (type 1, the default) or not (type 0).
    #[must_use]
    pub fn connect_type(mut self, connect_type: ConnectType) -> Self {
        self.config.connect_type = connect_type;
        self
    }

    /// The default module's firmware versions.
    #[must_use]
    pub fn firmware(mut self, hard_ver: &str, soft_ver: &str) -> Self {
        self.config.firmware.retain(|f| f.module.is_some());
        self.config
            .firmware
            .insert(0, Firmware::new(hard_ver, soft_ver));
        self
    }

    /// A named module's firmware versions, reported beside the default module's.
    #[must_use]
    pub fn module_firmware(mut self, module: &str, hard_ver: &str, soft_ver: &str) -> Self {
        self.config
            .firmware
            .retain(|f| f.module.as_deref() != Some(module));
        self.config
            .firmware
            .push(Firmware::module(module, hard_ver, soft_ver));
        self
    }

    /// Where the DeviceSecret, the session and the last login timestamp are kept.
    #[must_use]
    pub fn state_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.state_dir = Some(dir.into());
        self
    }

    /// Bounds of the outbox in the state directory (default 100,000 entries, 64 MiB, drop
    /// the oldest when full); `None` keeps nothing (reports then fail while offline).
    #[must_use]
    pub fn outbox(mut self, limits: Option<OutboxLimits>) -> Self {
        self.outbox = limits;
        self
    }

    /// Runs OTA updates with `installer`: each notify for another version than the
    /// module's is downloaded into the state directory (resumable, exactly SoftSize bytes,
    /// MD5 verified), installed, and the new version reported after a new login; progress
    /// and outcome arrive as [`Request::Ota`]. Needs a state directory. Without an
    /// installer, notifies are handed to the application as [`Request::OtaNotify`].
    pub fn ota(mut self, installer: impl Installer) -> Self {
        self.ota = Some(Arc::new(installer));
        self
    }

    /// How OTA downloads go (size limit, attempts, backoff, CA file); see [`OtaConfig`].
    pub fn ota_config(mut self, config: OtaConfig) -> Self {
        self.ota_config = config;
        self
    }

    /// Entries per history upload (default 50).
    #[must_use]
    pub fn history_batch(mut self, entries: usize) -> Self {
        self.config.timing.history_batch = entries.max(1);
        self
    }

    /// The MQTT keep-alive (default 60 s).
    #[must_use]
    pub fn keep_alive(mut self, keep_alive: Duration) -> Self {
        self.keep_alive = keep_alive;
        self
    }

    /// How many reports, events and passthroughs may wait for their ack at once
    /// (default 32); further sends wait for a place.
    #[must_use]
    pub fn window(mut self, window: usize) -> Self {
        self.window = window.max(1);
        self.config.timing.window = self.window;
        self
    }

    /// How long the platform has to ack a message (default 10 s).
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.config.timing.ack_timeout = timeout;
        self
    }

    /// How long the platform has to answer the auth request (default 10 s).
    #[must_use]
    pub fn auth_timeout(mut self, timeout: Duration) -> Self {
        self.config.timing.auth_timeout = timeout;
        self
    }

    /// Reconnect pacing (default: 0.5 s doubling to 60 s, full jitter).
    #[must_use]
    pub fn backoff(mut self, backoff: BackoffConfig) -> Self {
        self.config.timing.backoff = backoff;
        self
    }

    /// Whether to sync time with the platform after each login (default on).
    #[must_use]
    pub fn time_sync(mut self, on: bool) -> Self {
        self.config.timing.time_sync = on;
        self
    }

    /// The initial property state (default: the model's `Default`).
    #[must_use]
    pub fn state(mut self, state: M) -> Self {
        self.state = state;
        self
    }

    /// The device's config settings, answered to a config ask.
    #[must_use]
    pub fn settings(mut self, settings: Map<String, Value>) -> Self {
        self.settings = settings;
        self
    }

    /// How many platform requests may wait in the request stream (default 64).
    #[must_use]
    pub fn request_capacity(mut self, capacity: usize) -> Self {
        self.request_capacity = capacity.max(1);
        self
    }

    /// A seed for the backoff jitter and the first MessageId (default: from the clock).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Answers service calls with `handler` on the device's task, typically the generated
    /// dispatch: `.services(move |call: SmartPlugService| call.dispatch(&mut relay))`.
    /// Without a handler, calls arrive as [`Request::Service`] and may be answered later
    /// (for services that take time).
    #[must_use]
    pub fn services(
        mut self,
        handler: impl FnMut(S) -> Result<Map<String, Value>, ServiceFailure> + Send + 'static,
    ) -> Self {
        self.handler = Handler::Json(Box::new(handler));
        self
    }

    /// A hook that may refuse a decoded property set before it is applied:
    /// `Err(reason)` answers "4001" with the reason.
    #[must_use]
    pub fn on_property_set(
        mut self,
        veto: impl FnMut(&M, &M::Set) -> Result<(), String> + Send + 'static,
    ) -> Self {
        self.veto = Some(Box::new(veto));
        self
    }

    /// Starts the device in the background and returns at once; watch
    /// [`Device::connection`] for where it stands.
    ///
    /// # Errors
    /// The state directory cannot be read, or TLS cannot be set up.
    pub fn start(self) -> Result<Device<M, S>, DeviceError> {
        driver::start(self)
    }

    /// Starts the device and waits until it is online.
    ///
    /// # Errors
    /// As [`DeviceBuilder::start`], and [`DeviceError::Refused`] when the platform refuses
    /// the first login for a reason retrying cannot fix (the device is then stopped).
    /// Network faults, auth-reply timeouts and "platform busy" are retried with the
    /// backoff until the device is online.
    pub async fn connect(self) -> Result<Device<M, S>, DeviceError> {
        let device = self.start()?;
        match device.wait_online().await {
            Ok(()) => Ok(device),
            Err(e) => {
                device.shutdown().await;
                Err(e)
            }
        }
    }
}

impl<M: ThingModel + Send + 'static, S: HexServices + Send + 'static> DeviceBuilder<M, S>
where
    M: HexModel,
    M::Set: Send,
{
    /// Makes this a HEX product: reports, sets, asks and service calls use the generated
    /// HEX codec; with `full_hex`, reports go out as full-HEX reports (28).
    #[must_use]
    pub fn hex(mut self, full_hex: bool) -> Self {
        self.hex = Some(if full_hex {
            |s: Session<M, S>| s.with_hex(true)
        } else {
            |s: Session<M, S>| s.with_hex(false)
        });
        self
    }

    /// Answers HEX service calls with `handler`, typically the generated dispatch:
    /// `.hex_services(move |call: MeterHexService, out: &mut [u8]| call.dispatch_hex(&mut relay, out))`.
    #[must_use]
    pub fn hex_services(
        mut self,
        handler: impl FnMut(S, &mut [u8]) -> Result<HexReply, HexError> + Send + 'static,
    ) -> Self {
        self.handler = Handler::Hex(Box::new(handler));
        self
    }
}

/// What the platform asked or told the device, for the application.
#[derive(Debug)]
pub enum Request<M: ThingModel, S> {
    /// A service call to answer (when no handler is set).
    Service(ServiceRequest<S>),
    /// A property set, already applied to the state and acked.
    PropertiesSet(M::Set),
    /// Passthrough downlink data, already acked.
    Passthrough(Value),
    /// New config settings, already merged and reported back.
    ConfigChanged(Map<String, Value>),
    /// An OTA notify, already acked with its DownID (without an installer: with one, the
    /// runtime runs the update and says how it goes with [`Request::Ota`]).
    OtaNotify(Box<OtaNotify>),
    /// How an update the runtime runs goes (with an installer, [`DeviceBuilder::ota`]).
    Ota(OtaEvent),
    /// The platform's clock was read.
    TimeSynced {
        /// Platform time, Unix milliseconds.
        platform_ms: i64,
        /// The platform's time zone.
        timezone: String,
    },
    /// The SessionKey was rotated.
    KeyRotated,
    /// The platform refused an outbox entry for good (a "4001" naming it, as x-sim names
    /// history entries by position): dropped from the outbox, counted in
    /// `outbox_refused`, never sent again. Its [`Delivery`] fails with
    /// [`DeliveryError::Rejected`] too, where this run made the entry.
    EntryRefused {
        /// The entry.
        entry: Box<Entry>,
        /// What the platform said of it.
        reason: String,
    },
    /// A history upload was refused without naming any entry (a policy refusal, a key the
    /// platform could not read): nothing was dropped (counted in `uploads_refused`); its
    /// entries are uploaded again after `retry_in`, backing off while it lasts.
    UploadRefused {
        /// The ack's `Msg`.
        reason: String,
        /// How many entries the upload held (all kept).
        entries: usize,
        /// When the next upload is tried.
        retry_in: Duration,
    },
}

/// Answers service calls; implemented by the device's shared core.
pub(crate) trait Replier<S>: Send + Sync {
    fn reply(&self, ticket: Ticket, result: Result<Map<String, Value>, ServiceFailure>);
    fn reply_hex(&self, ticket: Ticket, reply: &[u8]);
}

/// A service call waiting for its answer. Dropping it unanswered answers "4001".
pub struct ServiceRequest<S> {
    pub(crate) call: Option<S>,
    pub(crate) ticket: Option<Ticket>,
    pub(crate) replier: Arc<dyn Replier<S>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for ServiceRequest<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceRequest")
            .field("call", &self.call)
            .finish_non_exhaustive()
    }
}

impl<S> ServiceRequest<S> {
    /// The decoded call.
    pub fn call(&self) -> Option<&S> {
        self.call.as_ref()
    }

    /// Takes the call out (to run it elsewhere); answer with [`ServiceRequest::reply`].
    pub fn take_call(&mut self) -> Option<S> {
        self.call.take()
    }

    /// Answers a JSON product's call: "200" with the outputs or "4001" with the failure.
    pub fn reply(mut self, result: Result<Map<String, Value>, ServiceFailure>) {
        if let Some(ticket) = self.ticket.take() {
            self.replier.reply(ticket, result);
        }
    }

    /// Answers a HEX product's call with the reply `dispatch_hex` wrote.
    pub fn reply_hex(mut self, reply: &[u8]) {
        if let Some(ticket) = self.ticket.take() {
            self.replier.reply_hex(ticket, reply);
        }
    }
}

impl<S> Drop for ServiceRequest<S> {
    fn drop(&mut self) {
        if let Some(ticket) = self.ticket.take() {
            self.replier.reply(
                ticket,
                Err(ServiceFailure(
                    "the device dropped the call unanswered".into(),
                )),
            );
        }
    }
}

/// The shared core of a device: the session, the callers waiting for acks, the window.
pub(crate) struct Core<M: ThingModel, S> {
    pub(crate) session: Session<M, S>,
    pub(crate) waiters: HashMap<Token, Waiter>,
}

pub(crate) struct Shared<M: ThingModel, S> {
    pub(crate) core: Mutex<Core<M, S>>,
    pub(crate) wake: Notify,
    pub(crate) window: Arc<Semaphore>,
    pub(crate) connection: watch::Sender<ConnectionState>,
    pub(crate) requests: tokio::sync::Mutex<mpsc::Receiver<Request<M, S>>>,
    pub(crate) dropped_requests: std::sync::atomic::AtomicU64,
    pub(crate) pubacks: Arc<std::sync::atomic::AtomicU64>,
    pub(crate) state_dir: Option<StateDir>,
    pub(crate) outbox: Option<OutboxWriter>,
    pub(crate) recovered: Option<Recovered>,
    /// OTA events for the application, kept until taken (never dropped for a full request
    /// stream; see [`OtaEvents`]).
    pub(crate) ota_events: OtaEvents,
}

impl<M: ThingModel, S> Shared<M, S> {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Core<M, S>> {
        self.core
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// OTA events waiting for the application, beside the request stream: kept until
/// [`Device::next_request`] takes them, so that a full stream never costs an update's
/// outcome. Bounded without losing what matters: a progress event replaces its module's
/// latest waiting event when that is a progress too (it only says more), and past [`OtaEvents::LIMIT`] events
/// the oldest `Started`, `Progress` or `UpToDate` gives way (counted as a dropped
/// request); `Installed` and `Failed` go only when nothing else is left to give way.
#[derive(Debug, Default)]
pub(crate) struct OtaEvents {
    queue: Mutex<std::collections::VecDeque<OtaEvent>>,
    ready: Notify,
}

impl OtaEvents {
    /// The most events kept for an application that does not take them.
    pub(crate) const LIMIT: usize = 256;

    /// Keeps `event` for the application; returns how many older events gave way (0 but
    /// for an application that has not taken [`OtaEvents::LIMIT`] of them).
    pub(crate) fn push(&self, event: OtaEvent) -> u64 {
        let mut queue = self
            .queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The module's latest waiting event, when it is a progress, says less than this one.
        if let OtaEvent::Progress { module, .. } = &event
            && let Some(waiting) = queue.iter_mut().rev().find(|e| e.module() == module)
            && matches!(waiting, OtaEvent::Progress { .. })
        {
            *waiting = event;
            return 0;
        }
        queue.push_back(event);
        let mut gave_way = 0;
        while queue.len() > Self::LIMIT {
            let minor = queue.iter().position(|e| {
                matches!(
                    e,
                    OtaEvent::Started { .. }
                        | OtaEvent::Progress { .. }
                        | OtaEvent::UpToDate { .. }
                )
            });
            queue.remove(minor.unwrap_or(0));
            gave_way += 1;
        }
        drop(queue);
        self.ready.notify_one();
        gave_way
    }

    /// The oldest event waiting.
    fn take(&self) -> Option<OtaEvent> {
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .pop_front()
    }
}

impl<M: ThingModel + Send, S: ThingServices + Send> Replier<S> for Shared<M, S>
where
    M::Set: Send,
{
    fn reply(&self, ticket: Ticket, result: Result<Map<String, Value>, ServiceFailure>) {
        let _ = self.lock().session.reply_service(ticket, result);
        self.wake.notify_one();
    }

    fn reply_hex(&self, ticket: Ticket, reply: &[u8]) {
        let _ = self.lock().session.reply_service_hex(ticket, reply);
        self.wake.notify_one();
    }
}

/// A device on the X platform. Cheap to clone; every clone drives the same connection,
/// and the device stops (disconnecting cleanly) when the last clone is dropped.
pub struct Device<M: ThingModel, S: ThingServices = NoServices> {
    pub(crate) shared: Arc<Shared<M, S>>,
    pub(crate) guard: Arc<Guard<M, S>>,
}

impl<M: ThingModel, S: ThingServices> Clone for Device<M, S> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            guard: self.guard.clone(),
        }
    }
}

/// Stops the device when the last [`Device`] handle goes away.
pub(crate) struct Guard<M: ThingModel, S: ThingServices> {
    shared: Arc<Shared<M, S>>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl<M: ThingModel, S: ThingServices> Guard<M, S> {
    pub(crate) fn new(shared: Arc<Shared<M, S>>, task: tokio::task::JoinHandle<()>) -> Self {
        Self {
            shared,
            task: Mutex::new(Some(task)),
        }
    }

    fn stop(&self) -> Option<tokio::task::JoinHandle<()>> {
        self.shared.lock().session.stop(Now::system());
        self.shared.wake.notify_one();
        self.task
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
    }
}

impl<M: ThingModel, S: ThingServices> Drop for Guard<M, S> {
    fn drop(&mut self) {
        // The task sees the stopped session, sends DISCONNECT and ends by itself.
        let _ = self.stop();
    }
}

impl<M: ThingModel, S: ThingServices> std::fmt::Debug for Device<M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let core = self.shared.lock();
        f.debug_struct("Device")
            .field("identity", &core.session.config().identity)
            .field("connection", core.session.connection())
            .finish_non_exhaustive()
    }
}

/// Resolves when the platform acks a message (or will not).
#[derive(Debug)]
pub struct Delivery {
    token: Token,
    rx: oneshot::Receiver<Result<Ack, DeliveryError>>,
}

impl Delivery {
    /// Which message this is.
    pub fn token(&self) -> Token {
        self.token
    }
}

impl std::future::Future for Delivery {
    type Output = Result<Ack, DeliveryError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(DeliveryError::Stopped)))
    }
}

impl<M: ThingModel + Send + 'static, S: ThingServices + Send + 'static> Device<M, S>
where
    M::Set: Send,
{
    /// Sends through the session once a window place is free; the returned [`Delivery`]
    /// resolves on the ack.
    async fn send(
        &self,
        send: impl FnOnce(&mut Session<M, S>, Now) -> Result<Token, DeliveryError>,
    ) -> Result<Delivery, DeliveryError> {
        let permit = self
            .shared
            .window
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| DeliveryError::Stopped)?;
        let (tx, rx) = oneshot::channel();
        let token = {
            let mut core = self.shared.lock();
            let token = send(&mut core.session, Now::system())?;
            core.waiters.insert(token, (tx, Some(permit)));
            token
        };
        self.shared.wake.notify_one();
        Ok(Delivery { token, rx })
    }

    /// Makes an entry durable in the outbox, then hands it to the session (live when it
    /// can, history otherwise) after `stored` had its say (a report merges into the state
    /// only once it is stored); the [`Delivery`] resolves on the platform's ack.
    async fn store(
        &self,
        outbox: &OutboxWriter,
        live: bool,
        prepare: impl FnOnce(&mut Session<M, S>, Now) -> Result<Entry, DeliveryError>,
        stored: impl FnOnce(&mut Session<M, S>),
    ) -> Result<Delivery, DeliveryError> {
        let entry = {
            let mut core = self.shared.lock();
            if *core.session.connection() == ConnectionState::Stopped {
                return Err(DeliveryError::Stopped);
            }
            let mut entry = prepare(&mut core.session, Now::system())?;
            // Marked before it is stored: after a crash, an entry that may have gone out
            // under its own id is sent again under that id.
            entry.live = live && core.session.may_send_live();
            entry
        };
        let appended = outbox
            .append(vec![entry.clone()])
            .await
            .map_err(|e| match e {
                OutboxError::Full { entries, bytes } => {
                    DeliveryError::OutboxFull { entries, bytes }
                }
                other => DeliveryError::Store(other.to_string()),
            })?;
        let seq = appended
            .seqs
            .first()
            .copied()
            .ok_or_else(|| DeliveryError::Store("no sequence number".into()))?;
        let (tx, rx) = oneshot::channel();
        let token = {
            let mut core = self.shared.lock();
            let dropped: Vec<u64> = appended.dropped.iter().map(|(s, _)| *s).collect();
            core.session.dropped_stored(&dropped);
            stored(&mut core.session);
            let token = core.session.queue_stored(seq, entry, Now::system());
            core.waiters.insert(token, (tx, None));
            token
        };
        self.shared.wake.notify_one();
        Ok(Delivery { token, rx })
    }

    /// Sends a property report, merged into the state once it is accepted (with an outbox:
    /// once it is stored). Waits for a window place; the [`Delivery`] resolves on the
    /// platform's ack.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`] when not online (without an outbox);
    /// [`DeliveryError::Invalid`] or [`DeliveryError::Encode`] for values the model or the
    /// HEX layout refuses; [`DeliveryError::OutboxFull`] when a full outbox refuses new
    /// entries ([`crate::outbox::FullPolicy::RefuseNew`]); the state is then left alone.
    pub async fn report(&self, report: M::Report) -> Result<Delivery, DeliveryError> {
        match &self.shared.outbox {
            Some(outbox) => {
                self.store(
                    outbox,
                    true,
                    |s, now| s.report_entry(&report, now),
                    |s| s.merge_report(&report),
                )
                .await
            }
            None => self.send(|s, now| s.report(&report, now)).await,
        }
    }

    /// Sends a report of every property's current value.
    ///
    /// # Errors
    /// As [`Device::report`].
    pub async fn report_all(&self) -> Result<Delivery, DeliveryError> {
        let report = self.shared.lock().session.state().report();
        self.report(report).await
    }

    /// Sends an event (JSON products).
    ///
    /// # Errors
    /// As [`Device::report`].
    pub async fn event<E: ThingEvent>(&self, event: &E) -> Result<Delivery, DeliveryError> {
        match &self.shared.outbox {
            Some(outbox) => {
                self.store(outbox, true, |s, now| s.prepare_event(event, now), |_| {})
                    .await
            }
            None => self.send(|s, now| s.event(event, now)).await,
        }
    }

    /// Records a report observed earlier (`observed_ms`, Unix ms), for devices that sample
    /// locally and upload later: stored in the outbox and uploaded as history (27) with its
    /// time. HEX products have no history: theirs is replayed as a HEX report.
    ///
    /// # Errors
    /// [`DeliveryError::Invalid`]; [`DeliveryError::Store`] without a state directory
    /// (history lives in the outbox).
    pub async fn record(
        &self,
        report: M::Report,
        observed_ms: i64,
    ) -> Result<Delivery, DeliveryError> {
        let outbox = self.outbox()?;
        self.store(
            outbox,
            false,
            |s, _| {
                let mut entry = s.report_entry(&report, Now::system())?;
                entry.observed_ms = observed_ms;
                Ok(entry)
            },
            |s| s.merge_report(&report),
        )
        .await
    }

    /// Records an event observed earlier, as [`Device::record`] does a report.
    ///
    /// # Errors
    /// As [`Device::record`].
    pub async fn record_event<E: ThingEvent>(
        &self,
        event: &E,
        observed_ms: i64,
    ) -> Result<Delivery, DeliveryError> {
        let outbox = self.outbox()?;
        self.store(
            outbox,
            false,
            |s, _| s.history_event(event, observed_ms),
            |_| {},
        )
        .await
    }

    fn outbox(&self) -> Result<&OutboxWriter, DeliveryError> {
        self.shared.outbox.as_ref().ok_or_else(|| {
            DeliveryError::Store("history needs a state directory for the outbox".into())
        })
    }

    /// Reports and events stored and not yet acked (waiting or in flight are both counted
    /// by the outbox itself; this is what waits for an upload).
    pub fn waiting_upload(&self) -> usize {
        self.shared.lock().session.stored_waiting()
    }

    /// What opening the outbox found: a corrupt store set aside, if it was.
    pub fn outbox_recovered(&self) -> Option<&Recovered> {
        self.shared.recovered.as_ref()
    }

    /// Sends an event of a HEX product.
    ///
    /// # Errors
    /// As [`Device::report`].
    pub async fn hex_event<E: HexEvent>(&self, event: &E) -> Result<Delivery, DeliveryError> {
        match &self.shared.outbox {
            Some(outbox) => {
                self.store(
                    outbox,
                    true,
                    |s, now| s.prepare_hex_event(event, now),
                    |_| {},
                )
                .await
            }
            None => self.send(|s, now| s.hex_event(event, now)).await,
        }
    }

    /// Sends passthrough data (HeaderCtrl 4).
    ///
    /// # Errors
    /// As [`Device::report`].
    pub async fn passthrough(&self, data: Value) -> Result<Delivery, DeliveryError> {
        self.send(|s, now| s.passthrough(data, now)).await
    }

    /// Sends a history upload (HeaderCtrl 27).
    ///
    /// # Errors
    /// As [`Device::report`].
    pub async fn history(&self, upload: Value) -> Result<Delivery, DeliveryError> {
        self.send(|s, now| s.history(upload, now)).await
    }

    /// Reports the config settings unasked.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`].
    pub fn report_config(&self) -> Result<(), DeliveryError> {
        let r = self.shared.lock().session.report_config();
        self.shared.wake.notify_one();
        r
    }

    /// A copy of the property state.
    pub fn state(&self) -> M
    where
        M: Clone,
    {
        self.shared.lock().session.state().clone()
    }

    /// Changes the property state without reporting; the next report carries it.
    pub fn update<R>(&self, change: impl FnOnce(&mut M) -> R) -> R {
        change(self.shared.lock().session.state_mut())
    }

    /// The config settings.
    pub fn settings(&self) -> Map<String, Value> {
        self.shared.lock().session.settings().clone()
    }

    /// Changes a module's software version (after an installation) and reports firmware.
    pub fn set_soft_ver(&self, module: Option<&str>, soft_ver: &str) {
        let mut core = self.shared.lock();
        core.session.set_soft_ver(module, soft_ver);
        if core.session.is_online() {
            core.session.report_firmware(Now::system());
        }
        drop(core);
        self.shared.wake.notify_one();
    }

    /// The platform's clock (Unix milliseconds), once a time sync answered.
    pub fn platform_time(&self) -> Option<i64> {
        self.shared.lock().session.platform_time(Now::system())
    }

    /// The counters.
    pub fn counters(&self) -> DeviceCounters {
        DeviceCounters {
            session: self.shared.lock().session.counters(),
            dropped_requests: self
                .shared
                .dropped_requests
                .load(std::sync::atomic::Ordering::Relaxed),
            pubacks: self
                .shared
                .pubacks
                .load(std::sync::atomic::Ordering::Relaxed),
        }
    }

    /// The next request from the platform or the next OTA event ([`Request::Ota`], kept
    /// until taken however full the request stream is); `None` once the device is shut
    /// down and nothing is left.
    pub async fn next_request(&self) -> Option<Request<M, S>> {
        let mut requests = self.shared.requests.lock().await;
        loop {
            if let Some(event) = self.shared.ota_events.take() {
                return Some(Request::Ota(event));
            }
            tokio::select! {
                biased;
                // An event pushed since `take` left its permit: this wakes at once.
                () = self.shared.ota_events.ready.notified() => {}
                request = requests.recv() => {
                    return request.or_else(|| self.shared.ota_events.take().map(Request::Ota));
                }
            }
        }
    }

    /// Watches the connection state.
    pub fn connection(&self) -> watch::Receiver<ConnectionState> {
        self.shared.connection.subscribe()
    }

    /// Whether the device is online now.
    pub fn is_online(&self) -> bool {
        self.shared.connection.borrow().is_online()
    }

    /// Waits until the device is online. Network faults, auth-reply timeouts and refusals
    /// that retrying can fix ("platform busy", [`Refusal::is_retryable`]) are waited
    /// through: the device keeps retrying with its backoff meanwhile.
    ///
    /// # Errors
    /// [`DeviceError::Refused`] at the first refusal that retrying cannot fix (wrong
    /// credentials, an unknown product, ...), [`DeviceError::Stopped`] if the device stops
    /// first.
    pub async fn wait_online(&self) -> Result<(), DeviceError> {
        let mut rx = self.connection();
        loop {
            match rx.borrow_and_update().clone() {
                ConnectionState::Online => return Ok(()),
                ConnectionState::Refused { reason, .. } if !reason.is_retryable() => {
                    return Err(DeviceError::Refused(reason));
                }
                ConnectionState::Stopped => return Err(DeviceError::Stopped),
                _ => {}
            }
            if rx.changed().await.is_err() {
                return Err(DeviceError::Stopped);
            }
        }
    }

    /// As [`Device::wait_online`], giving up after `timeout`.
    ///
    /// # Errors
    /// As [`Device::wait_online`], or [`DeviceError::Timeout`].
    pub async fn wait_online_for(&self, timeout: Duration) -> Result<(), DeviceError> {
        tokio::time::timeout(timeout, self.wait_online())
            .await
            .unwrap_or(Err(DeviceError::Timeout(timeout)))
    }

    /// Disconnects cleanly and stops the device: messages still waiting for an ack fail
    /// with [`DeliveryError::Stopped`].
    pub async fn shutdown(&self) {
        if let Some(task) = self.guard.stop() {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }

    /// What the state directory holds now (for tools and tests).
    ///
    /// # Errors
    /// The state directory cannot be read.
    pub fn persisted(&self) -> Result<Option<Persisted>, StateDirError> {
        self.shared
            .state_dir
            .as_ref()
            .map(StateDir::load)
            .transpose()
    }
}

/// Counters of a device: the session's, and requests the application did not take in time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeviceCounters {
    /// The session's counters.
    pub session: Counters,
    /// Requests dropped because the request stream was full (their acks were sent).
    pub dropped_requests: u64,
    /// Publishes the broker confirmed (MQTT PUBACK), whatever the platform said of them.
    pub pubacks: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(module: &str, done: u64) -> OtaEvent {
        OtaEvent::Progress {
            module: module.into(),
            done,
            total: 100,
        }
    }

    #[test]
    fn ota_events_wait_coalescing_progress_and_give_way_only_past_the_limit() {
        let events = OtaEvents::default();
        let started = OtaEvent::Started {
            module: "default".into(),
            version: "2".into(),
            from: 0,
            total: 100,
        };
        assert_eq!(events.push(started.clone()), 0);
        for done in [10, 20, 30] {
            assert_eq!(events.push(progress("default", done)), 0);
        }
        assert_eq!(events.push(progress("wifi", 5)), 0);
        let failed = OtaEvent::Failed {
            module: "default".into(),
            version: "2".into(),
            error: crate::ota::OtaError::Install("no".into()),
        };
        assert_eq!(events.push(failed.clone()), 0);
        // The latest progress of each module, in place; the outcome last.
        let taken: Vec<OtaEvent> = std::iter::from_fn(|| events.take()).collect();
        assert_eq!(
            taken,
            [
                started.clone(),
                progress("default", 30),
                progress("wifi", 5),
                failed.clone()
            ]
        );
        // A progress after another attempt's start stays after it.
        events.push(progress("default", 40));
        events.push(started.clone());
        events.push(progress("default", 50));
        events.push(progress("default", 60));
        let taken: Vec<OtaEvent> = std::iter::from_fn(|| events.take()).collect();
        assert_eq!(
            taken,
            [progress("default", 40), started, progress("default", 60)]
        );
        // Never taken: past the limit, minor events give way first, outcomes stay.
        let mut gave_way = 0;
        for i in 0..OtaEvents::LIMIT as u64 {
            gave_way += events.push(failed.clone());
            gave_way += events.push(OtaEvent::UpToDate {
                module: "default".into(),
                version: i.to_string(),
            });
        }
        assert_eq!(gave_way, OtaEvents::LIMIT as u64);
        let taken: Vec<OtaEvent> = std::iter::from_fn(|| events.take()).collect();
        assert_eq!(taken.len(), OtaEvents::LIMIT);
        assert!(taken.iter().all(|e| *e == failed));
    }
}
