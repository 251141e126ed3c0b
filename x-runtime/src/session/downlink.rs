//! What the session does with each message from the platform: decrypt, decode, route to
//! the model or the application, and answer on the topic the command table names.

use serde_json::Value;
use x_protocol::model::{ThingModel, ThingServices, ToPayload};
use x_protocol::payload::{
    ConfigSettings, OtaNotify, OtaNotifyAck, PassthroughDownlink, PropertyAsk, PropertySet,
    ServiceCall, TimeSyncData,
};
use x_protocol::{AckPayload, Frame, HeaderCtrl, MessageId, Publisher, Topic, TopicKind};

use super::{Ack, DeliveryError, Event, InFlight, Now, Phase, Purpose, Session, Ticket};
use crate::redact::Redacted;

impl<M: ThingModel, S: ThingServices> Session<M, S> {
    /// A message arrived on `topic`. Nothing here fails: what cannot be used is logged,
    /// counted, and answered "4001" where the protocol owes an answer.
    pub fn message(&mut self, topic: &str, bytes: &[u8], now: Now) {
        self.counters.received += 1;
        self.last_input = Some(now.instant);
        let topic = match Topic::parse_for(topic, &self.config.identity) {
            Ok(t) if t.kind().spec().publisher == Publisher::Platform => t,
            Ok(t) => return self.bad(&t.to_string(), "not a platform topic"),
            Err(e) => return self.bad(topic, &e.to_string()),
        };
        let frame = match Frame::decode(bytes) {
            Ok(f) => f,
            Err(e) => return self.bad(&topic.to_string(), &e.to_string()),
        };
        let span = tracing::debug_span!(
            "downlink",
            device = %self.config.identity,
            topic = topic.kind().spec().suffix,
            header_ctrl = frame.header_ctrl.code(),
            message_id = %frame.message_id,
        );
        let _entered = span.enter();
        if let HeaderCtrl::Unknown(code) = frame.header_ctrl {
            // Not a command of this protocol version: nothing is owed, nothing is done.
            return self.bad(
                &topic.to_string(),
                &format!("unknown HeaderCtrl {code}: ignored"),
            );
        }
        if !topic
            .kind()
            .spec()
            .header_ctrls
            .contains(&frame.header_ctrl)
        {
            let reason = format!(
                "HeaderCtrl {} does not belong on {}",
                frame.header_ctrl,
                topic.kind().spec().suffix
            );
            self.bad(&topic.to_string(), &reason);
            return self.refuse(&topic, &frame, &reason);
        }
        if topic.kind() == TopicKind::OtaNotify {
            // Read from its JSON text: an MD5 sent as a 128-bit number keeps every digit,
            // which a parsed `Value` would not.
            return match self.plain_payload_text(&frame, bytes) {
                Ok(text) => {
                    tracing::debug!("<- {text}");
                    self.ota_notify(&topic, &frame, &text);
                }
                Err(reason) => self.bad(&topic.to_string(), &format!("OTA notify: {reason}")),
            };
        }
        let payload = match self.plain_payload(&frame) {
            Ok(p) => p,
            Err(reason) => {
                self.bad(&topic.to_string(), &reason);
                return self.refuse(&topic, &frame, &reason);
            }
        };
        tracing::debug!("<- {}", Redacted(&payload));
        self.route(&topic, &frame, payload, now);
    }

    /// The frame's plain payload as JSON text, exactly as it was written (`bytes` is the
    /// frame): decrypted for encrypted products as [`Self::plain_payload`] does.
    fn plain_payload_text(&self, frame: &Frame, bytes: &[u8]) -> Result<String, String> {
        if !self.config.encrypted || !frame.payload.is_string() {
            return Frame::payload_text(bytes).map_err(|e| e.to_string());
        }
        let Some(current) = &self.keys.current else {
            return Err("encrypted payload but no SessionKey".to_owned());
        };
        match frame.decrypted_payload_text(current) {
            Ok(p) => Ok(p),
            Err(e) => match &self.keys.previous {
                Some(old) => frame.decrypted_payload_text(old).map_err(|_| e.to_string()),
                None => Err(e.to_string()),
            },
        }
    }

    /// The frame's payload in plain JSON: decrypted for encrypted products (string payloads,
    /// except the never-encrypted auth reply and time sync), under the current key or, for
    /// frames sent before a rotation, the previous one.
    fn plain_payload(&self, frame: &Frame) -> Result<Value, String> {
        let never = matches!(
            frame.header_ctrl,
            HeaderCtrl::Auth | HeaderCtrl::TimeSync | HeaderCtrl::FullHexReport
        );
        if !self.config.encrypted || never || !frame.payload.is_string() {
            return Ok(frame.payload.clone());
        }
        let Some(current) = &self.keys.current else {
            return Err("encrypted payload but no SessionKey".to_owned());
        };
        match frame.decrypted_payload(current) {
            Ok(p) => Ok(p),
            Err(e) => match &self.keys.previous {
                Some(old) => frame.decrypted_payload(old).map_err(|_| e.to_string()),
                None => Err(e.to_string()),
            },
        }
    }

    fn route(&mut self, topic: &Topic, frame: &Frame, payload: Value, now: Now) {
        let hc = frame.header_ctrl;
        match topic.kind() {
            TopicKind::Downlink => match hc {
                HeaderCtrl::Auth => self.auth_reply(frame, now),
                HeaderCtrl::SessionKeyUpdate => self.rotate(frame, &payload),
                _ => self.passthrough_down(topic, frame, &payload),
            },
            TopicKind::PropertySet => self.property_set(topic, frame, &payload),
            TopicKind::ServiceCall => self.service_call(topic, frame, &payload),
            TopicKind::PropertyAsk => self.property_ask(topic, frame, &payload),
            TopicKind::HexDownlink => self.hex_downlink(topic, frame, &payload),
            TopicKind::AskFirmware => self.firmware_asked(frame, now),
            TopicKind::AskConfig => {
                let answer = self.config_frame(frame.message_id.clone());
                self.answer(topic, frame, answer.payload, None);
            }
            TopicKind::DownConfig => self.config_set(topic, frame, &payload),
            _ => self.ack_received(topic, frame, &payload, now),
        }
    }

    fn passthrough_down(&mut self, topic: &Topic, frame: &Frame, payload: &Value) {
        match serde_json::from_value::<PassthroughDownlink>(payload.clone()) {
            Ok(p) => {
                self.answer(topic, frame, AckPayload::success(None).to_value(), None);
                self.events.push_back(Event::Passthrough(p.data));
            }
            Err(e) => self.refuse(topic, frame, &format!("Payload: {e}")),
        }
    }

    fn property_set(&mut self, topic: &Topic, frame: &Frame, payload: &Value) {
        let set = match serde_json::from_value::<PropertySet>(payload.clone()) {
            Ok(s) => s,
            Err(e) => return self.refuse(topic, frame, &format!("Payload: {e}")),
        };
        match M::decode_set(&set.params) {
            Ok(set) => self.apply_set(topic, frame, set),
            Err(rejections) => self.refuse(topic, frame, &rejections.to_string()),
        }
    }

    /// Vetoes, applies and acks a decoded property set with the applied values.
    fn apply_set(&mut self, topic: &Topic, frame: &Frame, set: M::Set) {
        if let Some(veto) = &mut self.veto
            && let Err(reason) = veto(&self.state, &set)
        {
            return self.refuse(topic, frame, &reason);
        }
        self.state.apply(&set);
        let data = Value::Object(set.to_payload());
        self.answer(
            topic,
            frame,
            AckPayload::success(Some(data)).to_value(),
            None,
        );
        self.events.push_back(Event::PropertiesSet(set));
    }

    fn service_call(&mut self, topic: &Topic, frame: &Frame, payload: &Value) {
        let call = match serde_json::from_value::<ServiceCall>(payload.clone()) {
            Ok(c) => c,
            Err(e) => return self.refuse(topic, frame, &format!("Payload: {e}")),
        };
        let service = topic
            .identifier()
            .map_or(call.service.as_str(), |i| i.as_str());
        if service != call.service {
            let reason = format!(
                "serviceIdentify {:?} differs from the topic's service {service:?}",
                call.service
            );
            return self.refuse(topic, frame, &reason);
        }
        match S::decode(service, &call.params) {
            Ok(call) => self.hand_over(topic, frame, call),
            Err(rejections) => self.refuse(topic, frame, &rejections.to_string()),
        }
    }

    /// Hands a decoded call to the application, keeping what the answer needs.
    fn hand_over(&mut self, topic: &Topic, frame: &Frame, call: S) {
        let ticket = self.next_ticket;
        self.next_ticket += 1;
        self.tickets.insert(ticket, (topic.clone(), frame.clone()));
        self.events.push_back(Event::ServiceCall {
            ticket: Ticket(ticket),
            call,
        });
    }

    fn property_ask(&mut self, topic: &Topic, frame: &Frame, payload: &Value) {
        let ask = match serde_json::from_value::<PropertyAsk>(payload.clone()) {
            Ok(a) => a,
            Err(e) => return self.refuse(topic, frame, &format!("Payload: {e}")),
        };
        match self.state.ask(&ask.params) {
            Ok(values) => self.answer(topic, frame, Value::Object(values), None),
            Err(rejections) => self.refuse(topic, frame, &rejections.to_string()),
        }
    }

    /// HEX property set (22), service call (24) and property ask (25).
    fn hex_downlink(&mut self, topic: &Topic, frame: &Frame, payload: &Value) {
        let Some(hex) = &self.hex else {
            return self.refuse(topic, frame, "this device is not a HEX product");
        };
        let (decode_set, decode_ask, decode_call) =
            (hex.decode_set, hex.decode_ask, hex.decode_call);
        let bytes = match payload {
            Value::String(text) => x_protocol::model::hex::from_hex(text.trim()),
            other => return self.refuse(topic, frame, &format!("expected hex text, got {other}")),
        };
        let bytes = match bytes {
            Ok(b) => b,
            Err(e) => return self.refuse(topic, frame, &e.to_string()),
        };
        match frame.header_ctrl {
            HeaderCtrl::HexPropertySet => match decode_set(&bytes) {
                Ok(set) => self.apply_set(topic, frame, set),
                Err(e) => self.refuse(topic, frame, &e.to_string()),
            },
            HeaderCtrl::HexServiceCall => match decode_call(&bytes) {
                Ok(call) => self.hand_over(topic, frame, call),
                Err(e) => self.refuse(topic, frame, &e.to_string()),
            },
            _ => match decode_ask(&bytes) {
                Ok(ids) => self.hex_ask_answer(topic, frame, &ids),
                Err(e) => self.refuse(topic, frame, &e.to_string()),
            },
        }
    }

    /// Answers a HEX ask with a HEX report (18) of the asked properties, or of every property
    /// when the layout is positional (it cannot carry a subset).
    fn hex_ask_answer(&mut self, topic: &Topic, frame: &Frame, ids: &[&str]) {
        let Some(encode) = self.hex.as_ref().map(|h| h.encode_report) else {
            return;
        };
        let asked: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
        let partial =
            self.state.ask(&asked).ok().and_then(|map| {
                <M::Report as x_protocol::model::FromPayload>::from_payload(&map).ok()
            });
        let attempt = partial
            .as_ref()
            .and_then(|r| super::encode_hex(|out| encode(r, out)).ok());
        let bytes = match attempt {
            Some(b) => b,
            None => match super::encode_hex(|out| encode(&self.state.report(), out)) {
                Ok(b) => b,
                Err(e) => return self.refuse(topic, frame, &e.to_string()),
            },
        };
        let payload = Value::String(x_protocol::model::hex::to_hex(&bytes));
        self.answer(topic, frame, payload, None);
    }

    /// A firmware ask (13): the default module's report answers it with the ask's
    /// MessageId; other modules follow with their own. Each is sent again, under the same
    /// MessageId, when its ack does not come (the document's rule for firmware reports).
    fn firmware_asked(&mut self, frame: &Frame, now: Now) {
        let mut reports = self.firmware_reports().into_iter();
        if let Some(first) = reports.next() {
            self.send_firmware(first, 0, Some(frame.message_id.clone()), now);
        }
        for report in reports {
            self.send_firmware(report, 0, None, now);
        }
    }

    /// An OTA notify (9), read from its payload's JSON text: acked with its DownID first.
    fn ota_notify(&mut self, topic: &Topic, frame: &Frame, text: &str) {
        match serde_json::from_str::<OtaNotify>(text) {
            Ok(notify) => {
                let ack = OtaNotifyAck {
                    down_id: notify.down_id.clone(),
                };
                let ack = serde_json::to_value(ack).unwrap_or(Value::Null);
                self.answer(topic, frame, ack, None);
                self.events.push_back(Event::OtaNotify(notify));
            }
            Err(e) => self.bad(&topic.to_string(), &format!("OTA notify: {e}")),
        }
    }

    fn config_set(&mut self, topic: &Topic, frame: &Frame, payload: &Value) {
        match serde_json::from_value::<ConfigSettings>(payload.clone()) {
            Ok(set) => {
                for (k, v) in &set.settings {
                    self.settings.insert(k.clone(), v.clone());
                }
                let answer = self.config_frame(frame.message_id.clone());
                self.answer(topic, frame, answer.payload, None);
                self.events.push_back(Event::ConfigChanged(set.settings));
            }
            Err(e) => self.bad(&topic.to_string(), &format!("config set: {e}")),
        }
    }

    /// An ack of something the session sent.
    fn ack_received(&mut self, topic: &Topic, frame: &Frame, payload: &Value, now: Now) {
        let ack: AckPayload = match serde_json::from_value(payload.clone()) {
            Ok(a) => a,
            Err(e) => return self.bad(&topic.to_string(), &format!("not an ack: {e}")),
        };
        let waiting = if topic.kind() == TopicKind::FullHexAck {
            // A full-HEX report has no MessageId; its acks come in order.
            self.full_hex_queue
                .pop_front()
                .map(|(purpose, _)| InFlight {
                    ack_topic: TopicKind::FullHexAck,
                    header_ctrl: HeaderCtrl::FullHexReport,
                    deadline: now.instant,
                    purpose,
                })
        } else {
            self.take_in_flight(&frame.message_id, topic.kind(), frame.header_ctrl)
        };
        let Some(waiting) = waiting else {
            return self.bad(
                &topic.to_string(),
                &format!(
                    "ack for MessageId {} that we are not waiting for",
                    frame.message_id
                ),
            );
        };
        if !ack.code.is_success() && looks_stale(&ack.msg) {
            self.session_stale(now);
        }
        match waiting.purpose {
            Purpose::App(token) => {
                let result = if ack.code.is_success() {
                    Ok(Ack { data: ack.data })
                } else {
                    Err(DeliveryError::Rejected {
                        code: ack.code.to_string(),
                        reason: ack.msg,
                    })
                };
                self.deliver(token, result);
            }
            Purpose::TimeSync(sent) => self.time_synced(ack, sent, now),
            Purpose::Stored {
                entries,
                lane,
                history,
            } => {
                let result = if ack.code.is_success() {
                    Ok(Ack { data: ack.data })
                } else {
                    Err(DeliveryError::Rejected {
                        code: ack.code.to_string(),
                        reason: ack.msg,
                    })
                };
                self.stored_answered(entries, (lane, history), result, now);
            }
            Purpose::Firmware { .. } | Purpose::Answer => {
                if !ack.code.is_success() {
                    tracing::warn!(
                        "the platform refused our {}: {}",
                        frame.header_ctrl,
                        ack.msg
                    );
                }
            }
        }
    }

    fn take_in_flight(
        &mut self,
        id: &MessageId,
        ack_topic: TopicKind,
        header_ctrl: HeaderCtrl,
    ) -> Option<InFlight> {
        let list = self.in_flight.get_mut(id)?;
        let at = list
            .iter()
            .position(|f| f.ack_topic == ack_topic && f.header_ctrl == header_ctrl)?;
        let found = list.remove(at);
        if list.is_empty() {
            self.in_flight.remove(id);
        }
        Some(found)
    }

    fn time_synced(&mut self, ack: AckPayload, sent: std::time::Instant, now: Now) {
        let data = ack
            .data
            .and_then(|d| serde_json::from_value::<TimeSyncData>(d).ok());
        let Some(data) = data else {
            return self.bad(
                "update_time_ack",
                "time sync ack without {timestamp, timezone}",
            );
        };
        // The platform stamped its reply about half a round trip ago.
        let half_rtt = now.instant.saturating_duration_since(sent) / 2;
        let platform_now = data
            .timestamp
            .saturating_add(i64::try_from(half_rtt.as_millis()).unwrap_or(0));
        self.clock_offset_ms = Some(platform_now - now.unix_ms);
        self.events.push_back(Event::TimeSynced {
            platform_ms: platform_now,
            timezone: data.timezone,
        });
    }

    /// Answers "4001" where the protocol owes an answer that is an ack.
    fn refuse(&mut self, topic: &Topic, frame: &Frame, reason: &str) {
        let spec = topic.kind().spec();
        // A HeaderCtrl that does not belong on the topic is refused on the topic's ack
        // topic with the HeaderCtrl the table gives that ack (the same MessageId says what
        // it answers): what the device sends stays on the table, whatever it was sent.
        let reply = spec.ack_to(frame.header_ctrl).or_else(|| {
            spec.replies
                .iter()
                .find(|r| r.is_ack)
                .map(|r| x_protocol::Reply {
                    request: frame.header_ctrl,
                    ..*r
                })
        });
        self.counters.refused_commands += 1;
        match reply {
            Some(reply) => {
                tracing::warn!("refused: {reason}");
                self.answer(
                    topic,
                    frame,
                    AckPayload::failure(reason).to_value(),
                    Some(reply),
                );
            }
            // An ask is answered with a report, which cannot say "4001": no answer.
            None => tracing::warn!("refused, with no ack to answer: {reason}"),
        }
    }

    /// Logs and counts a frame that cannot be used.
    fn bad(&mut self, topic: &str, reason: &str) {
        self.counters.bad_frames += 1;
        tracing::warn!(device = %self.config.identity, "{topic}: {reason}");
    }

    /// Whether the session is online.
    pub fn is_online(&self) -> bool {
        self.phase == Phase::Online
    }
}

/// Whether an ack's `Msg` says the platform could not read the device's ciphertext or has
/// no session for it.
pub(super) fn looks_stale(msg: &str) -> bool {
    let m = msg.to_ascii_lowercase();
    m.contains("ciphertext") || m.contains("sessionkey")
}
