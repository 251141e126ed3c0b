//! The sans-IO device session: every protocol decision of a device, with no sockets, no
//! async runtime and no clock of its own.
//!
//! The driver feeds it what happened ([`Session::start`], [`Session::connected`],
//! [`Session::connect_refused`], [`Session::subscribed`], [`Session::disconnected`],
//! [`Session::message`], [`Session::tick`]) and what the application wants (reports,
//! events, answers), then drains what to do ([`Session::poll_effect`]) and what to tell the
//! application ([`Session::poll_event`]), and sleeps until [`Session::next_deadline`].

mod downlink;
mod login;
mod stored;
mod types;

use std::collections::{HashMap, VecDeque};
use std::time::Instant;

use serde_json::{Map, Value};
use x_protocol::model::hex::{HexError, HexEvent, HexModel, HexServices};
use x_protocol::model::{ThingEvent, ThingModel, ThingServices, ToPayload};
use x_protocol::payload::FirmwareReport;
use x_protocol::{DeviceSecret, Frame, HeaderCtrl, MessageId, MessageIdSource, Topic, TopicKind};

pub use stored::stored_message_id;
pub use types::{
    Ack, ConnectionState, Counters, DeliveryError, DeviceConfig, Effect, Event, Firmware,
    LoginPhase, Now, Persisted, Refusal, Ticket, Timing, Token,
};

use crate::backoff::{Backoff, Jitter};
use crate::redact::Redacted;
use types::Keys;

/// The largest HEX frame the session encodes.
const HEX_BUFFER: usize = 1024;

/// A hook that may veto a decoded property set before it is applied: `Err(reason)` answers
/// "4001" with the reason and leaves the state alone.
pub type SetVeto<M> =
    Box<dyn FnMut(&M, &<M as ThingModel>::Set) -> Result<(), String> + Send + 'static>;

/// How a HEX product's frames are encoded and decoded: the generated codec's functions.
pub(crate) struct HexCodec<M: ThingModel, S> {
    encode_report: fn(&M::Report, &mut [u8]) -> Result<usize, HexError>,
    decode_set: fn(&[u8]) -> Result<M::Set, HexError>,
    decode_ask: fn(&[u8]) -> Result<Vec<&'static str>, HexError>,
    decode_call: fn(&[u8]) -> Result<S, HexError>,
    /// Reports go out as full HEX (28, bare hex) instead of HEX frames (18).
    full_hex: bool,
}

/// What an outstanding message waits for.
#[derive(Debug, Clone)]
enum Purpose {
    /// Something the application sent; resolved through [`Event::Delivered`].
    App(Token),
    /// A firmware report, re-sent up to the configured number of times under the same
    /// MessageId (an answer to a firmware ask keeps the ask's).
    Firmware {
        report: FirmwareReport,
        tries: u32,
        id: MessageId,
    },
    /// A time-sync request sent at this instant (for the round trip).
    TimeSync(Instant),
    /// The session's own answer to a platform request (its ack is consumed silently).
    Answer,
    /// Outbox entries sent together (one live frame, or one history upload), in which
    /// lane, and whether as a history upload (27).
    Stored {
        entries: Vec<(u64, crate::outbox::Entry)>,
        lane: stored::Lane,
        history: bool,
    },
}

#[derive(Debug, Clone)]
struct InFlight {
    ack_topic: TopicKind,
    header_ctrl: HeaderCtrl,
    deadline: Instant,
    purpose: Purpose,
}

/// Where the login stands.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Not started.
    Idle,
    /// Waiting for the backoff delay before connecting in `next`.
    Waiting { until: Instant, next: LoginPhase },
    /// CONNECT sent; waiting for CONNACK.
    Connecting { phase: LoginPhase },
    /// Connected; SUBSCRIBE sent.
    Subscribing {
        phase: LoginPhase,
        deadline: Instant,
    },
    /// Auth request sent; waiting for the reply.
    Authenticating { id: MessageId, deadline: Instant },
    /// Logged in.
    Online,
    /// Shut down.
    Stopped,
}

/// A device's protocol state machine, generic over its thing model `M` and its services `S`.
pub struct Session<M: ThingModel, S> {
    config: DeviceConfig,
    /// `/sys/{OpenID}/{ProductID}/{NodeEui}`, built once.
    prefix: String,
    hex: Option<HexCodec<M, S>>,
    state: M,
    settings: Map<String, Value>,
    veto: Option<SetVeto<M>>,
    secret: Option<DeviceSecret>,
    grant: Option<x_protocol::payload::SessionGrant>,
    keys: Keys,
    phase: Phase,
    connection: ConnectionState,
    backoff: Backoff,
    jitter: Jitter,
    ids: MessageIdSource,
    in_flight: HashMap<MessageId, Vec<InFlight>>,
    /// Deadlines of `in_flight` entries in the order they were set: the ack timeout is one
    /// constant, so this is also their time order, and the earliest is at the front. Entries
    /// acked meanwhile are skipped when they come up.
    deadlines: VecDeque<(Instant, MessageId)>,
    /// Full-HEX reports (28) waiting for their acks, which come in order (no MessageId).
    full_hex_queue: VecDeque<(Purpose, Instant)>,
    /// Outbox entries waiting to be sent, by sequence number (oldest first).
    stored: std::collections::BTreeMap<u64, crate::outbox::Entry>,
    /// The application's tokens of outbox entries, by sequence number.
    stored_tokens: HashMap<u64, Token>,
    /// Frames of stored entries waiting for their ack.
    stored_in_flight: usize,
    /// Until when the backlog waits after a history upload was refused without naming an
    /// entry, and the backoff that paces those waits.
    backlog_paused_until: Option<Instant>,
    backlog_backoff: Backoff,
    /// Of those, the frames of the backlog (history uploads, HEX replays): at most half the
    /// window, so that live reports keep flowing while an outage drains.
    backlog_in_flight: usize,
    next_token: u64,
    next_ticket: u64,
    tickets: HashMap<u64, (Topic, Frame)>,
    clock_offset_ms: Option<i64>,
    last_timestamp: u64,
    last_offline_s: u64,
    reauth_tried: bool,
    /// Whether the session has been online (every later login is a reconnect).
    was_online: bool,
    attempts: u32,
    /// The instant of the latest input, for entries created by answers.
    last_input: Option<Instant>,
    counters: Counters,
    effects: VecDeque<Effect>,
    events: VecDeque<Event<S, M::Set>>,
}

impl<M: ThingModel, S> std::fmt::Debug for Session<M, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("device", &self.config.identity)
            .field("phase", &self.phase)
            .field("connection", &self.connection)
            .field("in_flight", &self.in_flight.len())
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

impl<M: ThingModel, S: ThingServices> Session<M, S> {
    /// A session of a JSON product, with the device's initial property state, what was
    /// persisted by an earlier run, and a seed for the backoff jitter.
    pub fn new(config: DeviceConfig, state: M, persisted: Persisted, seed: u64) -> Self {
        let secret = config.device_secret.clone().or_else(|| {
            persisted
                .device_secret
                .as_ref()
                .and_then(|s| DeviceSecret::from_hex(s.expose()).ok())
        });
        let backoff = Backoff::new(config.timing.backoff);
        let mut session = Self {
            hex: None,
            state,
            settings: Map::new(),
            veto: None,
            secret,
            grant: None,
            keys: Keys::default(),
            phase: Phase::Idle,
            connection: ConnectionState::Idle,
            backoff,
            jitter: Jitter::new(seed),
            // Ids start at a seeded point so that two boots rarely reuse one.
            // Anywhere below OWN_IDS_LAST (the ids above are the stored entries', from their
            // sequence numbers), so that a platform's memory of recent ids rarely meets one
            // of an earlier boot.
            ids: MessageIdSource::within(
                (seed as u32 & stored::OWN_IDS_LAST).max(1),
                stored::OWN_IDS_LAST,
            ),
            in_flight: HashMap::new(),
            deadlines: VecDeque::new(),
            full_hex_queue: VecDeque::new(),
            stored: Default::default(),
            stored_tokens: HashMap::new(),
            stored_in_flight: 0,
            backlog_paused_until: None,
            backlog_backoff: Backoff::new(config.timing.backoff),
            backlog_in_flight: 0,
            next_token: 1,
            next_ticket: 1,
            tickets: HashMap::new(),
            clock_offset_ms: None,
            last_timestamp: persisted.last_login_timestamp,
            last_offline_s: persisted.last_offline,
            reauth_tried: false,
            was_online: false,
            attempts: 0,
            last_input: None,
            counters: Counters::default(),
            effects: VecDeque::new(),
            events: VecDeque::new(),
            prefix: config.identity.topic_prefix(),
            config,
        };
        if session.config.encrypted
            && let Some(grant) = persisted.session
        {
            session.install_grant(grant, false);
        }
        session
    }

    /// Makes this the session of a HEX product: reports, property sets, asks and service
    /// calls use the model's generated HEX codec (18/19/26 up, 22/24/25 down). With
    /// `full_hex`, reports go out as full-HEX reports (28: the bare hex, no frame).
    #[must_use]
    pub fn with_hex(mut self, full_hex: bool) -> Self
    where
        M: HexModel,
        S: HexServices,
    {
        self.hex = Some(HexCodec {
            encode_report: M::encode_report,
            decode_set: M::decode_set_hex,
            decode_ask: M::decode_ask,
            decode_call: S::decode_call_hex,
            full_hex,
        });
        self
    }

    /// Sets the hook that may veto property sets.
    pub fn set_veto(&mut self, veto: SetVeto<M>) {
        self.veto = Some(veto);
    }

    /// Whether this is a HEX product's session.
    pub fn is_hex(&self) -> bool {
        self.hex.is_some()
    }

    /// The device's configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The property state.
    pub fn state(&self) -> &M {
        &self.state
    }

    /// The property state, to change without reporting (the next report carries it).
    pub fn state_mut(&mut self) -> &mut M {
        &mut self.state
    }

    /// The device's config settings (what a config ask is answered with).
    pub fn settings(&self) -> &Map<String, Value> {
        &self.settings
    }

    /// Replaces the device's config settings.
    pub fn set_settings(&mut self, settings: Map<String, Value>) {
        self.settings = settings;
    }

    /// Where the connection stands.
    pub fn connection(&self) -> &ConnectionState {
        &self.connection
    }

    /// The counters.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// Reports, events, passthroughs and history uploads waiting for their ack.
    pub fn awaiting_ack(&self) -> usize {
        self.in_flight
            .values()
            .flatten()
            .filter(|f| matches!(f.purpose, Purpose::App(_)))
            .count()
            + self.full_hex_queue.len()
    }

    /// The platform's clock in Unix milliseconds, once a time sync has answered.
    pub fn platform_time(&self, now: Now) -> Option<i64> {
        self.clock_offset_ms.map(|o| now.unix_ms.saturating_add(o))
    }

    /// The best known time: the platform's once synced, the device's own before.
    pub fn best_time(&self, now: Now) -> i64 {
        self.platform_time(now).unwrap_or(now.unix_ms)
    }

    /// The next effect for the driver to perform.
    pub fn poll_effect(&mut self) -> Option<Effect> {
        self.effects.pop_front()
    }

    /// The next event for the application.
    pub fn poll_event(&mut self) -> Option<Event<S, M::Set>> {
        self.events.pop_front()
    }

    /// The earliest moment [`Session::tick`] may have something to do. It can be early (an
    /// ack that came meanwhile leaves its deadline queued until then); a tick with nothing
    /// due does nothing.
    pub fn next_deadline(&self) -> Option<Instant> {
        let phase = match &self.phase {
            Phase::Waiting { until, .. } => Some(*until),
            Phase::Subscribing { deadline, .. } | Phase::Authenticating { deadline, .. } => {
                Some(*deadline)
            }
            _ => None,
        };
        let acks = self.deadlines.front().map(|(d, _)| *d);
        let full_hex = self.full_hex_queue.front().map(|(_, d)| *d);
        phase
            .into_iter()
            .chain(acks)
            .chain(full_hex)
            .chain(self.backlog_paused_until)
            .min()
    }

    /// Handles the passing of time: ack timeouts, auth and subscribe timeouts, and the end
    /// of a backoff delay.
    pub fn tick(&mut self, now: Now) {
        self.last_input = Some(now.instant);
        match self.phase.clone() {
            Phase::Waiting { until, next } if until <= now.instant => self.open(next, now),
            Phase::Subscribing { deadline, .. } if deadline <= now.instant => {
                self.effects.push_back(Effect::Disconnect);
                self.lost("no SUBACK in time".to_owned(), now);
            }
            Phase::Authenticating { deadline, .. } if deadline <= now.instant => {
                tracing::warn!(device = %self.config.identity, "no auth reply in time");
                self.effects.push_back(Effect::Disconnect);
                self.lost("no auth reply in time".to_owned(), now);
            }
            _ => {}
        }
        self.expire_acks(now);
        if self
            .backlog_paused_until
            .is_some_and(|until| until <= now.instant)
        {
            self.backlog_paused_until = None;
            self.pump_stored(now);
        }
    }

    /// Shuts the session down: pending deliveries fail with [`DeliveryError::Stopped`] and
    /// the connection is closed. Going offline now is remembered (persisted), so that the
    /// next login, even of another run, is stamped later than the platform's record of it.
    pub fn stop(&mut self, now: Now) {
        if self.phase == Phase::Stopped {
            return;
        }
        if self.phase == Phase::Online {
            self.last_offline_s = u64::try_from(self.best_time(now) / 1000).unwrap_or(0);
            self.persist();
        }
        self.fail_all(&DeliveryError::Stopped);
        self.phase = Phase::Stopped;
        self.effects.push_back(Effect::Disconnect);
        self.set_connection(ConnectionState::Stopped);
    }

    // ---- application calls ------------------------------------------------------------

    /// Sends a property report: JSON (16) or, for HEX products, HEX (18 or 28). The values
    /// are merged into the state first.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`] when not online, [`DeliveryError::Encode`] when a HEX
    /// value does not fit.
    pub fn report(&mut self, report: &M::Report, now: Now) -> Result<Token, DeliveryError> {
        self.require_online()?;
        let entry = self.prepare_report(report, now)?;
        self.send_entry(&entry, now)
    }

    /// Sends a report of every property's current value.
    ///
    /// # Errors
    /// As [`Session::report`].
    pub fn report_all(&mut self, now: Now) -> Result<Token, DeliveryError> {
        let report = self.state.report();
        self.report(&report, now)
    }

    /// Sends a JSON event report (17) on `model/event/{id}/report`.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`], or [`DeliveryError::Encode`] for a HEX product (use
    /// [`Session::hex_event`]).
    pub fn event<E: ThingEvent>(&mut self, event: &E, now: Now) -> Result<Token, DeliveryError> {
        self.require_online()?;
        let entry = self.prepare_event(event, now)?;
        self.send_entry(&entry, now)
    }

    /// Sends a HEX event report (19) on `model/hex/report`.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`], [`DeliveryError::Encode`] when a value does not fit.
    pub fn hex_event<E: HexEvent>(&mut self, event: &E, now: Now) -> Result<Token, DeliveryError> {
        self.require_online()?;
        let entry = self.prepare_hex_event(event, now)?;
        self.send_entry(&entry, now)
    }

    /// Sends a prepared report or event (not kept in an outbox) in the frame it travels in
    /// on its own, the same frame a stored entry goes live in.
    fn send_entry(
        &mut self,
        entry: &crate::outbox::Entry,
        now: Now,
    ) -> Result<Token, DeliveryError> {
        if self.is_full_hex_report(entry) {
            let token = self.token();
            let text = entry.payload.as_str().unwrap_or_default().to_owned();
            self.send_full_hex(&text, Purpose::App(token), now);
            return Ok(token);
        }
        let (kind, topic, header_ctrl, payload) = self.live_frame(entry).ok_or_else(|| {
            DeliveryError::Encode(format!("{:?}: no topic to send it on", entry.kind))
        })?;
        Ok(self.send_app(kind, topic, header_ctrl, payload, now))
    }

    /// Sends passthrough data (4) on `uplink`.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`].
    pub fn passthrough(&mut self, data: Value, now: Now) -> Result<Token, DeliveryError> {
        self.require_online()?;
        let payload = serde_json::json!({ "data": data });
        Ok(self.send_app(
            TopicKind::Uplink,
            self.topic_string(TopicKind::Uplink),
            HeaderCtrl::Uplink,
            payload,
            now,
        ))
    }

    /// Sends a history upload (27): the payload of [`x_protocol::payload::HistoryUpload`].
    ///
    /// # Errors
    /// [`DeliveryError::Offline`].
    pub fn history(&mut self, upload: Value, now: Now) -> Result<Token, DeliveryError> {
        self.require_online()?;
        Ok(self.send_app(
            TopicKind::HistoryReport,
            self.topic_string(TopicKind::HistoryReport),
            HeaderCtrl::HistoryReport,
            upload,
            now,
        ))
    }

    /// Reports the device's config settings (14 on `config_report`), unasked.
    ///
    /// # Errors
    /// [`DeliveryError::Offline`].
    pub fn report_config(&mut self) -> Result<(), DeliveryError> {
        self.require_online()?;
        let frame = self.config_frame(self.ids.next_id());
        self.publish(self.topic(TopicKind::ConfigReport), frame);
        Ok(())
    }

    /// Reports every module's firmware (8), as after a login and on a firmware ask.
    pub fn report_firmware(&mut self, now: Now) {
        for report in self.firmware_reports() {
            self.send_firmware(report, 0, None, now);
        }
    }

    /// The firmware report of every module, the default module first.
    fn firmware_reports(&self) -> Vec<FirmwareReport> {
        let mut modules: Vec<&Firmware> = self.config.firmware.iter().collect();
        modules.sort_by_key(|f| f.module.is_some());
        modules
            .into_iter()
            .map(|fw| FirmwareReport {
                hard_ver: fw.hard_ver.clone(),
                soft_ver: fw.soft_ver.clone(),
                upgrade_type: 2,
                module: fw.module.clone(),
            })
            .collect()
    }

    /// Changes a module's software version (after an OTA install); the next firmware report
    /// carries it.
    pub fn set_soft_ver(&mut self, module: Option<&str>, soft_ver: &str) {
        match self
            .config
            .firmware
            .iter_mut()
            .find(|f| f.module.as_deref() == module)
        {
            Some(fw) => fw.soft_ver = soft_ver.to_owned(),
            None => self.config.firmware.push(Firmware {
                module: module.map(str::to_owned),
                hard_ver: String::new(),
                soft_ver: soft_ver.to_owned(),
            }),
        }
    }

    /// Sends a time-sync request (29); the answer sets the platform clock.
    pub fn sync_time(&mut self, now: Now) {
        if self.phase != Phase::Online {
            return;
        }
        let frame = Frame::new(
            self.ids.next_id(),
            HeaderCtrl::TimeSync,
            Value::String(String::new()),
        );
        self.expect_ack(
            &frame,
            TopicKind::UpdateTimeAck,
            Purpose::TimeSync(now.instant),
            now,
        );
        self.publish(self.topic(TopicKind::UpdateTime), frame);
    }

    /// Answers a service call of a JSON product: "200" with the outputs, or "4001" with the
    /// failure.
    ///
    /// # Errors
    /// The ticket was answered already or belongs to a connection that is gone.
    pub fn reply_service(
        &mut self,
        ticket: Ticket,
        result: Result<Map<String, Value>, x_protocol::model::ServiceFailure>,
    ) -> Result<(), Ticket> {
        let Some((topic, request)) = self.tickets.remove(&ticket.0) else {
            return Err(ticket);
        };
        let ack = match result {
            Ok(outputs) => x_protocol::AckPayload::success(Some(Value::Object(outputs))),
            Err(failure) => {
                self.counters.refused_commands += 1;
                x_protocol::AckPayload::failure(failure.0)
            }
        };
        // A HEX call answered in JSON terms takes the ack form the table also allows (24
        // acked on the HEX downlink ack) rather than a service reply (26).
        let reply = topic.kind().spec().ack_to(request.header_ctrl);
        self.answer(&topic, &request, ack.to_value(), reply);
        Ok(())
    }

    /// Answers a service call of a HEX product with the reply the generated `dispatch_hex`
    /// wrote (26 on `model/hex/report`, with the call's MessageId).
    ///
    /// # Errors
    /// The ticket was answered already or belongs to a connection that is gone.
    pub fn reply_service_hex(&mut self, ticket: Ticket, reply: &[u8]) -> Result<(), Ticket> {
        let Some((topic, request)) = self.tickets.remove(&ticket.0) else {
            return Err(ticket);
        };
        let payload = Value::String(x_protocol::model::hex::to_hex(reply));
        self.answer(&topic, &request, payload, None);
        Ok(())
    }

    /// Answers a service call that could not be run at all (the HEX reply could not be
    /// encoded, say) with a "4001" ack on the call's ack topic.
    ///
    /// # Errors
    /// The ticket was answered already.
    pub fn refuse_service(&mut self, ticket: Ticket, reason: &str) -> Result<(), Ticket> {
        self.reply_service(
            ticket,
            Err(x_protocol::model::ServiceFailure(reason.to_owned())),
        )
    }

    // ---- internals shared by the submodules -------------------------------------------

    fn require_online(&self) -> Result<(), DeliveryError> {
        match self.phase {
            Phase::Online => Ok(()),
            Phase::Stopped => Err(DeliveryError::Stopped),
            _ => Err(DeliveryError::Offline),
        }
    }

    /// The topic string of a device kind without an identifier level.
    fn topic_string(&self, kind: TopicKind) -> String {
        let suffix = kind.spec().suffix;
        let mut topic = String::with_capacity(self.prefix.len() + 1 + suffix.len());
        topic.push_str(&self.prefix);
        topic.push('/');
        topic.push_str(suffix);
        topic
    }

    fn topic(&self, kind: TopicKind) -> Topic {
        // Every kind passed here is a device kind without an identifier level.
        Topic::new(self.config.identity.clone(), kind).unwrap_or_else(|_| Topic::auth())
    }

    fn token(&mut self) -> Token {
        let t = Token(self.next_token);
        self.next_token += 1;
        t
    }

    /// Sends an application message and remembers it until its ack.
    fn send_app(
        &mut self,
        kind: TopicKind,
        topic: String,
        header_ctrl: HeaderCtrl,
        payload: Value,
        now: Now,
    ) -> Token {
        let token = self.token();
        let frame = Frame::new(self.ids.next_id(), header_ctrl, payload);
        let ack_topic = kind
            .spec()
            .reply_to(header_ctrl)
            .map_or(TopicKind::PropertyReportAck, |r| r.topic);
        self.expect_ack(&frame, ack_topic, Purpose::App(token), now);
        self.publish_to(kind, topic, frame);
        token
    }

    /// The span of one uplink frame, as the `downlink` span is of one downlink frame: the
    /// device, the topic's suffix, the HeaderCtrl and the MessageId (none for full HEX).
    fn uplink_span(
        &self,
        topic: &str,
        header_ctrl: HeaderCtrl,
        message_id: &dyn std::fmt::Display,
    ) -> tracing::Span {
        tracing::debug_span!(
            "uplink",
            device = %self.config.identity,
            topic,
            header_ctrl = header_ctrl.code(),
            message_id = %message_id,
        )
    }

    /// Publishes a full-HEX report (28: the bare hex text, no frame, never encrypted).
    fn send_full_hex(&mut self, text: &str, purpose: Purpose, now: Now) {
        let span = self.uplink_span(
            TopicKind::FullHex.spec().suffix,
            HeaderCtrl::FullHexReport,
            &"none",
        );
        let _entered = span.enter();
        // The bare hex of a property report: no field of it is a secret.
        tracing::debug!("-> {text}");
        self.full_hex_queue
            .push_back((purpose, now.instant + self.config.timing.ack_timeout));
        self.counters.sent += 1;
        self.effects.push_back(Effect::Publish {
            topic: self.topic_string(TopicKind::FullHex),
            payload: text.as_bytes().to_vec(),
        });
    }

    /// Sends a firmware report (8) under `id` (a fresh one when `None`) and waits for its
    /// ack; without one in time it is sent again, under the same id, up to
    /// [`Timing::firmware_retries`] times.
    fn send_firmware(
        &mut self,
        report: FirmwareReport,
        tries: u32,
        id: Option<MessageId>,
        now: Now,
    ) {
        let id = id.unwrap_or_else(|| self.ids.next_id());
        let Ok(frame) = Frame::with_payload(id.clone(), HeaderCtrl::FirmwareReport, &report) else {
            return;
        };
        self.expect_ack(
            &frame,
            TopicKind::FirmwareReportAck,
            Purpose::Firmware { report, tries, id },
            now,
        );
        self.publish(self.topic(TopicKind::FirmwareReport), frame);
    }

    fn expect_ack(&mut self, frame: &Frame, ack_topic: TopicKind, purpose: Purpose, now: Now) {
        self.wait_for_ack(
            frame,
            InFlight {
                ack_topic,
                header_ctrl: frame.header_ctrl,
                deadline: now.instant + self.config.timing.ack_timeout,
                purpose,
            },
        );
    }

    fn wait_for_ack(&mut self, frame: &Frame, waiting: InFlight) {
        self.deadlines
            .push_back((waiting.deadline, frame.message_id.clone()));
        self.in_flight
            .entry(frame.message_id.clone())
            .or_default()
            .push(waiting);
    }

    /// Encrypts (where the product and command call for it), encodes and publishes a frame.
    fn publish(&mut self, topic: Topic, frame: Frame) {
        self.publish_to(topic.kind(), topic.to_string(), frame);
    }

    fn publish_to(&mut self, kind: TopicKind, topic: String, mut frame: Frame) {
        let span = self.uplink_span(kind.spec().suffix, frame.header_ctrl, &frame.message_id);
        let _entered = span.enter();
        tracing::debug!("-> {}", Redacted(&frame.payload));
        if self.config.encrypted && frame.header_ctrl.is_encrypted_uplink() {
            match &self.keys.current {
                Some(key) => frame.encrypt_payload(key),
                None => {
                    tracing::warn!(device = %self.config.identity, "no SessionKey: frame not sent");
                    return;
                }
            }
        }
        self.counters.sent += 1;
        self.effects.push_back(Effect::Publish {
            topic,
            payload: frame.encode(),
        });
    }

    /// Answers a platform request by the command table: on the reply topic, with the
    /// request's MessageId. Answers that are reports (16, 18, 26) are acked by the platform
    /// in turn; that ack is consumed here.
    fn answer(
        &mut self,
        request_topic: &Topic,
        request: &Frame,
        payload: Value,
        reply: Option<x_protocol::Reply>,
    ) {
        let reply = reply.or_else(|| request_topic.kind().spec().reply_to(request.header_ctrl));
        let Some(reply) = reply else { return };
        let Some(topic) = request_topic.answer_on(reply) else {
            return;
        };
        let frame = Frame::new(request.message_id.clone(), reply.header_ctrl, payload);
        // A report that answers is acked in turn; the deadline only bounds how long the
        // entry is kept, so the moment the request was handled is close enough.
        if let (Some(ack), Some(handled)) = (
            topic.kind().spec().reply_to(reply.header_ctrl),
            self.last_input,
        ) {
            let waiting = InFlight {
                ack_topic: ack.topic,
                header_ctrl: frame.header_ctrl,
                deadline: handled + self.config.timing.ack_timeout,
                purpose: Purpose::Answer,
            };
            self.wait_for_ack(&frame, waiting);
        }
        self.publish(topic, frame);
    }

    fn config_frame(&self, id: MessageId) -> Frame {
        Frame::new(
            id,
            HeaderCtrl::Config,
            serde_json::json!({ "Settings": Value::Object(self.settings.clone()) }),
        )
    }

    fn set_connection(&mut self, state: ConnectionState) {
        if self.connection != state {
            tracing::info!(device = %self.config.identity, state = ?state, "connection");
            self.connection = state.clone();
            self.events.push_back(Event::State(state));
        }
    }

    fn deliver(&mut self, token: Token, result: Result<Ack, DeliveryError>) {
        match &result {
            Ok(_) => self.counters.acked += 1,
            Err(DeliveryError::Rejected { .. }) => self.counters.rejected += 1,
            Err(DeliveryError::Timeout(_)) => self.counters.timed_out += 1,
            Err(_) => {}
        }
        self.events.push_back(Event::Delivered { token, result });
    }

    fn expire_acks(&mut self, now: Now) {
        let timeout = self.config.timing.ack_timeout;
        let mut expired = Vec::new();
        while let Some((deadline, id)) = self.deadlines.front().cloned() {
            if deadline > now.instant {
                break;
            }
            self.deadlines.pop_front();
            if let Some(list) = self.in_flight.get_mut(&id) {
                list.retain(|f| {
                    let keep = f.deadline > now.instant;
                    if !keep {
                        expired.push(f.purpose.clone());
                    }
                    keep
                });
                if list.is_empty() {
                    self.in_flight.remove(&id);
                }
            }
        }
        while self
            .full_hex_queue
            .front()
            .is_some_and(|(_, d)| *d <= now.instant)
        {
            if let Some((purpose, _)) = self.full_hex_queue.pop_front() {
                expired.push(purpose);
            }
        }
        for purpose in expired {
            match purpose {
                Purpose::App(token) => self.deliver(token, Err(DeliveryError::Timeout(timeout))),
                Purpose::Firmware { report, tries, id }
                    if tries < self.config.timing.firmware_retries =>
                {
                    tracing::warn!(device = %self.config.identity, "no firmware report ack; sending again");
                    if self.phase == Phase::Online {
                        self.send_firmware(report, tries + 1, Some(id), now);
                    }
                }
                Purpose::Stored {
                    entries,
                    lane,
                    history,
                } => {
                    self.stored_answered(
                        entries,
                        (lane, history),
                        Err(DeliveryError::Timeout(timeout)),
                        now,
                    );
                }
                Purpose::Firmware { .. } | Purpose::TimeSync(_) | Purpose::Answer => {}
            }
        }
    }

    /// Fails everything waiting for an ack (the connection is gone).
    fn fail_all(&mut self, error: &DeliveryError) {
        self.deadlines.clear();
        let full_hex = self
            .full_hex_queue
            .drain(..)
            .map(|(purpose, deadline)| InFlight {
                ack_topic: TopicKind::FullHexAck,
                header_ctrl: HeaderCtrl::FullHexReport,
                deadline,
                purpose,
            });
        let waiting: Vec<InFlight> = self
            .in_flight
            .drain()
            .flat_map(|(_, v)| v)
            .chain(full_hex)
            .collect();
        // Outbox entries are not lost with the connection: they wait for the next upload.
        self.requeue_stored(&waiting);
        if *error == DeliveryError::Stopped {
            for (_, token) in std::mem::take(&mut self.stored_tokens) {
                self.deliver(token, Err(DeliveryError::Stopped));
            }
        }
        for f in waiting {
            if let Purpose::App(token) = f.purpose {
                self.deliver(token, Err(error.clone()));
            }
        }
        self.tickets.clear();
    }

    fn random(&mut self) -> f64 {
        self.jitter.next()
    }
}

/// The payload of a report or event, checked against the model the way the platform will
/// check it (ranges, steps, lengths), so that what the model refuses is never sent.
fn checked<T: ToPayload + x_protocol::model::FromPayload>(
    value: &T,
) -> Result<Map<String, Value>, DeliveryError> {
    let payload = value.to_payload();
    match T::from_payload(&payload) {
        Ok(_) => Ok(payload),
        Err(rejections) => Err(DeliveryError::Invalid(rejections.to_string())),
    }
}

/// Encodes into a stack buffer and copies out what was written.
fn encode_hex(
    encode: impl FnOnce(&mut [u8]) -> Result<usize, HexError>,
) -> Result<Vec<u8>, DeliveryError> {
    let mut buf = [0u8; HEX_BUFFER];
    let n = encode(&mut buf).map_err(|e| DeliveryError::Encode(e.to_string()))?;
    Ok(buf[..n.min(HEX_BUFFER)].to_vec())
}

#[cfg(test)]
mod tests;
