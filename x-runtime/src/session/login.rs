//! The login side of the session: which phase to connect in, the credentials of each, the
//! auth exchange, SessionKeys and their rotation, reconnect pacing and refusals.

use std::time::Duration;

use x_protocol::payload::{AuthCode, AuthReply, AuthRequest, SessionGrant};
use x_protocol::topic::AUTH_TOPIC;
use x_protocol::{
    ConnectType, Frame, HeaderCtrl, MqttLogin, Publisher, RegistrationType, SecretString, Topic,
    TopicKind, derive_session_key,
};

use super::{
    ConnectionState, DeliveryError, Effect, LoginPhase, Now, Persisted, Phase, Refusal, Session,
};
use x_protocol::model::{ThingModel, ThingServices};

impl<M: ThingModel, S: ThingServices> Session<M, S> {
    /// Starts the login: the auth phase where the device needs it, else the V2 login.
    pub fn start(&mut self, now: Now) {
        if self.phase == Phase::Idle {
            let phase = self.first_phase();
            self.open(phase, now);
        }
    }

    /// Whether the auth phase must run before the V2 login: no DeviceSecret yet, or an
    /// encrypted product without a session.
    fn first_phase(&self) -> LoginPhase {
        let needs_secret = self.secret.is_none();
        let needs_session = self.config.encrypted && self.keys.current.is_none();
        if needs_secret || needs_session {
            LoginPhase::Auth
        } else {
            LoginPhase::Connect
        }
    }

    /// Opens a connection in `phase` (or waits for the clock when a type-1 timestamp would
    /// not be later than the last one).
    pub(super) fn open(&mut self, phase: LoginPhase, now: Now) {
        let login = match phase {
            LoginPhase::Auth => {
                if self.config.registration == RegistrationType::DeviceSecretPreRegistered
                    && !self.config.encrypted
                    && self.secret.is_none()
                {
                    return self.refused(
                        Refusal::Config(
                            "a type-2 device needs its DeviceSecret configured".to_owned(),
                        ),
                        now,
                    );
                }
                MqttLogin::auth(&self.config.identity, &self.config.product_key)
            }
            LoginPhase::Connect => {
                let Some(secret) = self.secret.clone() else {
                    return self.open(LoginPhase::Auth, now);
                };
                let Some(timestamp) = self.login_timestamp(now) else {
                    // The platform wants a timestamp later than the last login and the last
                    // offline time: wait for the next second.
                    let wait = Duration::from_millis(1000 - (self.best_time(now) % 1000) as u64);
                    self.phase = Phase::Waiting {
                        until: now.instant + wait,
                        next: phase,
                    };
                    return;
                };
                MqttLogin::connect(
                    &self.config.identity,
                    &self.config.product_key,
                    &secret,
                    self.config.connect_type,
                    timestamp,
                )
            }
        };
        self.attempts += 1;
        self.counters.connects += 1;
        self.phase = Phase::Connecting { phase };
        self.set_connection(ConnectionState::Connecting {
            phase,
            attempt: self.attempts,
        });
        tracing::info!(device = %self.config.identity, ?phase, client_id = %login.client_id, "connecting");
        self.effects.push_back(Effect::Connect { phase, login });
    }

    /// The V2 login timestamp, in Unix seconds of the platform clock where known: later than
    /// the last one used and than the last offline time (type 1 refuses anything else).
    /// `None` when that moment is still to come.
    fn login_timestamp(&mut self, now: Now) -> Option<u64> {
        let secs = u64::try_from(self.best_time(now) / 1000).unwrap_or(0);
        if self.config.connect_type == ConnectType::TimestampChecked
            && secs <= self.last_timestamp.max(self.last_offline_s)
        {
            // A clock far behind the last timestamp (a reset RTC) must not stall the device
            // for long: past a minute, take the next second after the last one.
            if self.last_timestamp.saturating_sub(secs) > 60 {
                self.last_timestamp += 1;
                self.persist();
                return Some(self.last_timestamp);
            }
            return None;
        }
        self.last_timestamp = secs.max(self.last_timestamp);
        self.persist();
        Some(secs)
    }

    /// The broker accepted the CONNECT: subscribe to what this phase may.
    pub fn connected(&mut self, now: Now) {
        let Phase::Connecting { phase } = self.phase else {
            return;
        };
        let filters = match phase {
            LoginPhase::Auth => vec![TopicKind::Downlink.filter(&self.config.identity)],
            LoginPhase::Connect => self.filters(),
        };
        self.phase = Phase::Subscribing {
            phase,
            deadline: now.instant + self.config.timing.subscribe_timeout,
        };
        self.effects.push_back(Effect::Subscribe(filters));
    }

    /// Every platform topic of the device, once each.
    fn filters(&self) -> Vec<String> {
        let hex = self.hex.is_some();
        let mut filters: Vec<String> = TopicKind::ALL
            .iter()
            .filter(|k| k.spec().publisher == Publisher::Platform && **k != TopicKind::Auth)
            .filter(|k| {
                let is_hex = matches!(
                    k,
                    TopicKind::HexReportAck | TopicKind::HexDownlink | TopicKind::FullHexAck
                );
                let is_json_model = matches!(
                    k,
                    TopicKind::PropertyReportAck
                        | TopicKind::EventReportAck
                        | TopicKind::PropertySet
                        | TopicKind::ServiceCall
                        | TopicKind::PropertyAsk
                );
                if hex { !is_json_model } else { !is_hex }
            })
            .map(|k| k.filter(&self.config.identity))
            .collect();
        filters.dedup();
        filters
    }

    /// The broker answered the SUBSCRIBE; `refused` lists the filters it refused.
    pub fn subscribed(&mut self, refused: &[String], now: Now) {
        let Phase::Subscribing { phase, .. } = self.phase else {
            return;
        };
        if !refused.is_empty() {
            self.effects.push_back(Effect::Disconnect);
            return self.refused(Refusal::Subscription(refused.join(", ")), now);
        }
        match phase {
            LoginPhase::Auth => self.send_auth_request(now),
            LoginPhase::Connect => self.online(now),
        }
    }

    fn send_auth_request(&mut self, now: Now) {
        let id = self.ids.next_id();
        let request = AuthRequest {
            open_id: self.config.identity.open_id.clone(),
            product_id: self.config.identity.product_id.clone(),
            node_eui: self.config.identity.node_eui.clone(),
            registration_type: self.config.registration,
        };
        let Ok(frame) = Frame::with_payload(id.clone(), HeaderCtrl::Auth, &request) else {
            return;
        };
        self.phase = Phase::Authenticating {
            id,
            deadline: now.instant + self.config.timing.auth_timeout,
        };
        self.set_connection(ConnectionState::Authenticating);
        let span = self.uplink_span(AUTH_TOPIC, frame.header_ctrl, &frame.message_id);
        let _entered = span.enter();
        tracing::debug!("-> {}", crate::redact::Redacted(&frame.payload));
        self.counters.sent += 1;
        self.effects.push_back(Effect::Publish {
            topic: Topic::auth().to_string(),
            payload: frame.encode(),
        });
    }

    /// Logged in and subscribed: report firmware, sync time.
    fn online(&mut self, now: Now) {
        if self.was_online {
            self.counters.reconnects += 1;
        }
        self.was_online = true;
        self.phase = Phase::Online;
        self.attempts = 0;
        self.reauth_tried = false;
        self.backoff.reset();
        self.set_connection(ConnectionState::Online);
        self.report_firmware(now);
        if self.config.timing.time_sync {
            self.sync_time(now);
        }
        self.pump_stored(now);
    }

    /// The auth reply (HeaderCtrl 1 on the downlink).
    pub(super) fn auth_reply(&mut self, frame: &Frame, now: Now) {
        let Phase::Authenticating { id, .. } = &self.phase else {
            tracing::warn!(device = %self.config.identity, "auth reply outside the auth phase: ignored");
            self.counters.bad_frames += 1;
            return;
        };
        if *id != frame.message_id {
            tracing::warn!(device = %self.config.identity, message_id = %frame.message_id, "auth reply for another request: ignored");
            self.counters.bad_frames += 1;
            return;
        }
        let reply: AuthReply = match frame.payload_as() {
            Ok(r) => r,
            Err(e) => {
                self.effects.push_back(Effect::Disconnect);
                return self.refused(Refusal::BadAuthReply(e.to_string()), now);
            }
        };
        if reply.code != AuthCode::Ok {
            self.effects.push_back(Effect::Disconnect);
            return self.refused(Refusal::Auth(reply.code), now);
        }
        match reply.device_secret() {
            Ok(secret) => self.secret = Some(secret),
            // A type-2 device keeps its burned-in secret when the reply carries none.
            Err(_) if self.secret.is_some() => {}
            Err(e) => {
                self.effects.push_back(Effect::Disconnect);
                return self.refused(Refusal::BadAuthReply(e.to_string()), now);
            }
        }
        if self.config.encrypted {
            let Some(grant) = reply.session() else {
                self.effects.push_back(Effect::Disconnect);
                return self.refused(
                    Refusal::BadAuthReply(
                        "an encrypted product's reply needs SessionID and Nonce".into(),
                    ),
                    now,
                );
            };
            if !self.install_grant(grant, false) {
                self.effects.push_back(Effect::Disconnect);
                return self.refused(
                    Refusal::BadAuthReply("SessionID and Nonce give no SessionKey".into()),
                    now,
                );
            }
        }
        self.persist();
        tracing::info!(device = %self.config.identity, "auth phase done");
        // Close the auth connection and log in with the device credentials.
        self.effects.push_back(Effect::Disconnect);
        self.open(LoginPhase::Connect, now);
    }

    /// Derives and installs the SessionKey of `grant`; with `rotate`, the old key is kept
    /// for frames in flight.
    pub(super) fn install_grant(&mut self, grant: SessionGrant, rotate: bool) -> bool {
        match derive_session_key(&self.config.product_key, &grant.session_id, grant.nonce) {
            Ok(key) => {
                let old = self.keys.current.replace(key);
                self.keys.previous = if rotate { old } else { None };
                self.grant = Some(grant);
                true
            }
            Err(e) => {
                tracing::warn!(device = %self.config.identity, "SessionKey: {e}");
                false
            }
        }
    }

    /// HeaderCtrl 3: a new SessionID and Nonce.
    pub(super) fn rotate(&mut self, frame: &Frame, payload: &serde_json::Value) {
        match serde_json::from_value::<SessionGrant>(payload.clone()) {
            Ok(grant) if self.config.encrypted => {
                if self.install_grant(grant, true) {
                    self.counters.rotations += 1;
                    self.persist();
                    tracing::info!(device = %self.config.identity, "SessionKey rotated");
                    self.events.push_back(super::Event::KeyRotated);
                }
            }
            Ok(_) => {
                tracing::warn!(device = %self.config.identity, "SessionKey update for a plain product: ignored");
            }
            Err(e) => {
                self.counters.bad_frames += 1;
                tracing::warn!(device = %self.config.identity, message_id = %frame.message_id, "bad SessionKey update: {e}");
            }
        }
    }

    /// The broker refused the CONNECT with a CONNACK return code.
    pub fn connect_refused(&mut self, code: u8, now: Now) {
        let Phase::Connecting { phase } = self.phase else {
            return;
        };
        // 4 (bad user name or password) and 5 (not authorised) for a V2 login: the secret
        // or session may be stale. Run the auth phase once more where the type allows it.
        let credentials = matches!(code, 4 | 5);
        if phase == LoginPhase::Connect && credentials && !self.reauth_tried && self.can_reauth() {
            self.reauth_tried = true;
            tracing::warn!(device = %self.config.identity, code, "V2 login refused: running the auth phase again");
            return self.open(LoginPhase::Auth, now);
        }
        let refusal = Refusal::Connack { phase, code };
        if credentials {
            self.refused(refusal, now);
        } else {
            self.lost(refusal.to_string(), now);
        }
    }

    /// Logs in again from the start, closing the connection the session has: after an OTA
    /// install, the document's "auth/connect again" (the firmware report after the login
    /// carries the new version).
    pub fn relogin(&mut self, now: Now) {
        if matches!(self.phase, Phase::Idle | Phase::Stopped) {
            return;
        }
        if self.phase == Phase::Online {
            self.last_offline_s = u64::try_from(self.best_time(now) / 1000).unwrap_or(0);
        }
        tracing::info!(device = %self.config.identity, "logging in again");
        self.effects.push_back(Effect::Disconnect);
        self.fail_all(&DeliveryError::Disconnected);
        let phase = self.first_phase();
        self.open(phase, now);
    }

    /// Whether the auth phase can give the device new credentials.
    fn can_reauth(&self) -> bool {
        self.config.registration.needs_auth_for_secret() || self.config.encrypted
    }

    /// The platform cannot read the device's frames (an ack says the ciphertext or session
    /// is bad): the session is stale; log in again through the auth phase.
    pub(super) fn session_stale(&mut self, now: Now) {
        if self.phase != Phase::Online || self.reauth_tried {
            return;
        }
        tracing::warn!(device = %self.config.identity, "the platform cannot read our frames: running the auth phase again");
        self.reauth_tried = true;
        self.keys = Default::default();
        self.effects.push_back(Effect::Disconnect);
        self.fail_all(&DeliveryError::Disconnected);
        self.open(LoginPhase::Auth, now);
    }

    /// The connection closed by itself (network fault, broker gone, keep-alive lost). The
    /// driver does not report connections the session closed with [`Effect::Disconnect`].
    pub fn disconnected(&mut self, reason: &str, now: Now) {
        self.fail_all(&DeliveryError::Disconnected);
        match self.phase {
            Phase::Idle | Phase::Stopped | Phase::Waiting { .. } => {}
            Phase::Online => {
                self.last_offline_s = u64::try_from(self.best_time(now) / 1000).unwrap_or(0);
                self.lost(reason.to_owned(), now);
            }
            Phase::Connecting { .. } | Phase::Subscribing { .. } | Phase::Authenticating { .. } => {
                self.lost(reason.to_owned(), now);
            }
        }
    }

    /// Retry after the backoff delay, from the phase the device needs now.
    pub(super) fn lost(&mut self, reason: String, now: Now) {
        let r = self.random();
        let delay = self.backoff.next_delay(r);
        let delay = self.wait(delay, now);
        self.set_connection(ConnectionState::Offline {
            reason,
            retry_in: delay,
        });
    }

    /// A refusal: busy is retried with the backoff, everything else waits for the cap.
    pub(super) fn refused(&mut self, reason: Refusal, now: Now) {
        let r = self.random();
        let delay = if reason.is_retryable() {
            self.backoff.next_delay(r)
        } else {
            self.backoff.capped_delay(r)
        };
        let delay = self.wait(delay, now);
        tracing::warn!(device = %self.config.identity, "{reason}; retrying in {delay:?}");
        self.set_connection(ConnectionState::Refused {
            reason,
            retry_in: delay,
        });
    }

    /// Waits `delay`, or longer where the next login cannot be stamped before (type 1:
    /// later than the last login and the last offline time, in whole seconds); returns the
    /// delay it waits, which is what the connection state announces.
    fn wait(&mut self, delay: Duration, now: Now) -> Duration {
        let next = self.first_phase();
        let delay = delay.max(self.stamp_wait(next, now));
        self.phase = Phase::Waiting {
            until: now.instant + delay,
            next,
        };
        delay
    }

    /// How long until a login in `phase` can carry a timestamp later than the last one used
    /// and the last offline time: zero but for type-1 V2 logins within that second (a clock
    /// far behind is not waited for: [`Session::login_timestamp`] takes the next second).
    fn stamp_wait(&self, phase: LoginPhase, now: Now) -> Duration {
        if phase != LoginPhase::Connect || self.config.connect_type != ConnectType::TimestampChecked
        {
            return Duration::ZERO;
        }
        let last = self.last_timestamp.max(self.last_offline_s);
        let now_ms = self.best_time(now);
        let secs = u64::try_from(now_ms / 1000).unwrap_or(0);
        if secs > last || self.last_timestamp.saturating_sub(secs) > 60 {
            return Duration::ZERO;
        }
        let next_ms = i64::try_from((last + 1).saturating_mul(1000)).unwrap_or(i64::MAX);
        Duration::from_millis(u64::try_from(next_ms.saturating_sub(now_ms)).unwrap_or(0))
    }

    /// Asks the driver to store what must survive a restart.
    pub(super) fn persist(&mut self) {
        let persisted = Persisted {
            device_secret: self
                .secret
                .as_ref()
                .map(|s| SecretString::new(s.expose_hex().to_owned())),
            session: self.grant.clone(),
            last_login_timestamp: self.last_timestamp,
            last_offline: self.last_offline_s,
        };
        self.effects.push_back(Effect::Persist(persisted));
    }
}
