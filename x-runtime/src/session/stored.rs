//! Store-and-forward in the session: reports and events the driver has made durable in the
//! outbox (by sequence number) are sent live when the device is online and has room, kept
//! while it is not, and uploaded as history (HeaderCtrl 27, with their observation times) in
//! bounded batches, oldest first, once it is back; HEX products replay theirs as HEX frames
//! (the protocol has no HEX history). An entry leaves the outbox only after the platform's
//! ack for it ([`Effect::Forget`]). Each entry of a history upload is a batch of its own in
//! `params`, so that a "4001" names refused entries by position (`params[3].properties..`):
//! exactly those are dropped and reported, the rest re-sent. A "4001" that names no entry
//! (a policy refusal, a key the platform cannot read) drops nothing: the upload's entries
//! wait, and the backlog tries again after a backoff.
//!
//! At-least-once, recognisably: an entry sent live goes under a MessageId derived from its
//! sequence number ([`stored_message_id`], the same after a restart), and when it must be
//! sent again (no ack in time, the connection gone, the process killed) it travels alone,
//! as a one-entry history upload under that same MessageId. A platform that got the first
//! send can tell the second one is the same message (x-sim does); entries never sent live
//! travel in batches under fresh ids, and their times identify them.

use serde_json::{Map, Value, json};
use x_protocol::model::hex::HexEvent;
use x_protocol::model::{ThingEvent, ThingModel, ThingServices};
use x_protocol::{Frame, HeaderCtrl, Identifier, MessageId, Topic, TopicKind};

use super::{DeliveryError, Effect, Event, InFlight, Now, Phase, Purpose, Session, Token, checked};
use crate::outbox::{Entry, EntryKind};

/// Which lane a stored entry travels in: sent as it was made (live), or from the backlog
/// (uploads after an outage, re-sends). The backlog may take half the window, never more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Sent when made.
    Live,
    /// Sent from what waited.
    Backlog,
}

/// The highest MessageId the session's own counter hands out; the ids above belong to
/// stored entries ([`stored_message_id`]).
pub(super) const OWN_IDS_LAST: u32 = 0x7FFF_FFFF;

/// The MessageId a stored entry travels under when sent on its own: derived from its outbox
/// sequence number (which is never reused), in the upper half of the id space, so that a
/// re-send after a reconnect or a restart carries the id of the first send.
pub fn stored_message_id(seq: u64) -> MessageId {
    let half = u64::from(OWN_IDS_LAST) + 1;
    let id = half + seq.saturating_sub(1) % half;
    MessageId::from(u32::try_from(id).unwrap_or(u32::MAX))
}

impl<M: ThingModel, S: ThingServices> Session<M, S> {
    /// Checks a report against the model, merges it into the state and returns it as an
    /// outbox entry observed now (platform clock where known). Works offline.
    ///
    /// # Errors
    /// [`DeliveryError::Invalid`] or, for HEX products, [`DeliveryError::Encode`]; the
    /// state is left alone.
    pub fn prepare_report(&mut self, report: &M::Report, now: Now) -> Result<Entry, DeliveryError> {
        let entry = self.report_entry(report, now)?;
        self.state.merge(report);
        Ok(entry)
    }

    /// Checks a report against the model and returns it as an outbox entry observed now,
    /// leaving the state alone: the caller merges it ([`Session::merge_report`]) once the
    /// entry is accepted (stored), so that a refused report never changes the state.
    ///
    /// # Errors
    /// As [`Session::prepare_report`].
    pub fn report_entry(&self, report: &M::Report, now: Now) -> Result<Entry, DeliveryError> {
        let payload = checked::<M::Report>(report)?;
        // Encoded before the state changes: what cannot be sent leaves the state alone.
        let entry = match &self.hex {
            None => Entry::new(
                EntryKind::Report,
                Value::Object(payload),
                self.best_time(now),
            ),
            Some(hex) => {
                let encode = hex.encode_report;
                let bytes = super::encode_hex(|out| encode(report, out))?;
                Entry::new(
                    EntryKind::HexReport,
                    Value::String(x_protocol::model::hex::to_hex(&bytes)),
                    self.best_time(now),
                )
            }
        };
        Ok(entry)
    }

    /// Merges a report's values into the property state.
    pub fn merge_report(&mut self, report: &M::Report) {
        self.state.merge(report);
    }

    /// An event as an outbox entry (JSON products).
    ///
    /// # Errors
    /// [`DeliveryError::Invalid`], or [`DeliveryError::Encode`] for a HEX product.
    pub fn prepare_event<E: ThingEvent>(
        &self,
        event: &E,
        now: Now,
    ) -> Result<Entry, DeliveryError> {
        if self.hex.is_some() {
            // A HEX product's event travels as its HEX frame (19), whichever call sent it.
            let mut encoded = false;
            let bytes = super::encode_hex(|out| match event.encode_hex_event(out) {
                Some(result) => {
                    encoded = true;
                    result
                }
                None => Ok(0),
            })?;
            if !encoded {
                return Err(DeliveryError::Encode(format!(
                    "event {}: it has no HEX layout, and this is a HEX product (give it a HEX id \
                     in the model or #[thing(hex ...)])",
                    E::IDENTIFIER
                )));
            }
            return Ok(self.hex_event_entry(&bytes, now));
        }
        self.history_event(event, self.best_time(now))
    }

    /// A HEX event as an outbox entry.
    ///
    /// # Errors
    /// [`DeliveryError::Encode`] when a value does not fit.
    pub fn prepare_hex_event<E: HexEvent>(
        &self,
        event: &E,
        now: Now,
    ) -> Result<Entry, DeliveryError> {
        let bytes = super::encode_hex(|out| event.encode_hex(out))?;
        Ok(self.hex_event_entry(&bytes, now))
    }

    /// An encoded HEX event as an outbox entry.
    fn hex_event_entry(&self, bytes: &[u8], now: Now) -> Entry {
        Entry::new(
            EntryKind::HexEvent,
            Value::String(x_protocol::model::hex::to_hex(bytes)),
            self.best_time(now),
        )
    }

    /// Whether an entry stored now could go live at once (online, room in the window): the
    /// caller marks such an entry [`Entry::live`] before storing it.
    pub fn may_send_live(&self) -> bool {
        self.phase == Phase::Online && self.stored_in_flight < self.config.timing.window
    }

    /// Takes an entry the outbox holds under `seq`: one marked [`Entry::live`] is sent at
    /// once when online with room in the window; otherwise (or unmarked: data sampled
    /// earlier) it is kept for a history upload. The token resolves on its ack.
    pub fn queue_stored(&mut self, seq: u64, mut entry: Entry, now: Now) -> Token {
        let token = self.token();
        self.stored_tokens.insert(seq, token);
        if entry.live && self.may_send_live() {
            self.send_live(seq, entry, Lane::Live, now);
        } else {
            // Never sent under its own id: it may travel in a batch.
            entry.live = false;
            self.stored.insert(seq, entry);
            self.pump_stored(now);
        }
        token
    }

    /// What the outbox held at start: kept for upload once online.
    pub fn restore_stored(&mut self, entries: Vec<(u64, Entry)>) {
        self.stored.extend(entries);
    }

    /// Entries the outbox dropped to make room (its full policy): they will never be sent.
    pub fn dropped_stored(&mut self, seqs: &[u64]) {
        for seq in seqs {
            self.stored.remove(seq);
            self.counters.outbox_dropped += 1;
            if let Some(token) = self.stored_tokens.remove(seq) {
                self.deliver(token, Err(DeliveryError::Dropped));
            }
        }
        if !seqs.is_empty() {
            tracing::warn!(device = %self.config.identity, dropped = seqs.len(), "outbox full: oldest entries dropped");
        }
    }

    /// Entries waiting for an upload (not in flight).
    pub fn stored_waiting(&self) -> usize {
        self.stored.len()
    }

    /// Sends an entry on its own under its own id: a report or event (16, 17), a HEX frame
    /// (18, 19) or a full-HEX report (28, which has no id: its acks come in order).
    fn send_live(&mut self, seq: u64, mut entry: Entry, lane: Lane, now: Now) {
        entry.live = true;
        if self.is_full_hex_report(&entry) {
            let text = entry.payload.as_str().unwrap_or_default().to_owned();
            self.count_in_flight(lane);
            let purpose = Purpose::Stored {
                entries: vec![(seq, entry)],
                lane,
                history: false,
            };
            self.send_full_hex(&text, purpose, now);
            return;
        }
        let Some((kind, topic, header_ctrl, payload)) = self.live_frame(&entry) else {
            return self.refused_stored(seq, entry, "cannot be sent".to_owned());
        };
        let frame = Frame::new(stored_message_id(seq), header_ctrl, payload);
        self.wait_stored(&frame, kind, vec![(seq, entry)], lane, now);
        self.publish_to(kind, topic, frame);
    }

    fn count_in_flight(&mut self, lane: Lane) {
        self.stored_in_flight += 1;
        if lane == Lane::Backlog {
            self.backlog_in_flight += 1;
        }
    }

    /// Whether the backlog may send another frame: online, room in the window, the backlog
    /// within its half of it, and not waiting after a refusal that named no entry.
    fn backlog_has_room(&self) -> bool {
        self.phase == Phase::Online
            && self.backlog_paused_until.is_none()
            && self.stored_in_flight < self.config.timing.window
            && self.backlog_in_flight < (self.config.timing.window / 2).max(1)
    }

    /// Whether an entry is a report of a full-HEX product (it goes as 28, bare hex).
    pub(super) fn is_full_hex_report(&self, entry: &Entry) -> bool {
        entry.kind == EntryKind::HexReport && self.hex.as_ref().is_some_and(|h| h.full_hex)
    }

    /// The frame an entry travels in when sent on its own: 16, 17, 18 or 19.
    pub(super) fn live_frame(
        &self,
        entry: &Entry,
    ) -> Option<(TopicKind, String, HeaderCtrl, Value)> {
        Some(match &entry.kind {
            EntryKind::Report => (
                TopicKind::PropertyReport,
                self.topic_string(TopicKind::PropertyReport),
                HeaderCtrl::PropertyReport,
                entry.payload.clone(),
            ),
            EntryKind::Event(id) => {
                let id = Identifier::new(id.clone()).ok()?;
                let topic = Topic::with_identifier(
                    self.config.identity.clone(),
                    TopicKind::EventReport,
                    id,
                )
                .ok()?;
                (
                    TopicKind::EventReport,
                    topic.to_string(),
                    HeaderCtrl::EventReport,
                    entry.payload.clone(),
                )
            }
            EntryKind::HexReport | EntryKind::HexEvent => (
                TopicKind::HexReport,
                self.topic_string(TopicKind::HexReport),
                if entry.kind == EntryKind::HexReport {
                    HeaderCtrl::HexPropertyReport
                } else {
                    HeaderCtrl::HexEventReport
                },
                entry.payload.clone(),
            ),
        })
    }

    fn wait_stored(
        &mut self,
        frame: &Frame,
        kind: TopicKind,
        entries: Vec<(u64, Entry)>,
        lane: Lane,
        now: Now,
    ) {
        let ack_topic = kind
            .spec()
            .reply_to(frame.header_ctrl)
            .map_or(TopicKind::PropertyReportAck, |r| r.topic);
        self.count_in_flight(lane);
        let purpose = Purpose::Stored {
            entries,
            lane,
            history: frame.header_ctrl == HeaderCtrl::HistoryReport,
        };
        self.expect_ack(frame, ack_topic, purpose, now);
    }

    /// Sends what waits, oldest first, while the backlog has room (half the window, so
    /// live reports keep flowing): JSON products in history batches (an entry already sent
    /// under its own id goes alone, under that id again), HEX products one frame each.
    pub(super) fn pump_stored(&mut self, now: Now) {
        while self.backlog_has_room() && !self.stored.is_empty() {
            if self.hex.is_some() {
                if let Some((seq, entry)) = self.stored.pop_first() {
                    self.send_live(seq, entry, Lane::Backlog, now);
                }
                continue;
            }
            if let Some(entry) = self.stored.first_entry()
                && entry.get().live
            {
                let (seq, entry) = entry.remove_entry();
                let id = stored_message_id(seq);
                self.send_history(vec![(seq, entry)], id, now);
                continue;
            }
            let mut batch = Vec::new();
            while batch.len() < self.config.timing.history_batch.max(1) {
                match self.stored.first_entry() {
                    Some(e) if !e.get().live => batch.push(e.remove_entry()),
                    _ => break,
                }
            }
            let id = self.ids.next_id();
            self.send_history(batch, id, now);
        }
    }

    /// Sends entries as one history upload (27), oldest first, each entry a batch of its
    /// own in `params` (`{"properties":[{..}],"events":[]}` or the other way round), so that
    /// `params[i]` is entry `i` when the platform names what it refuses.
    fn send_history(&mut self, batch: Vec<(u64, Entry)>, id: MessageId, now: Now) {
        let params: Vec<Value> = batch
            .iter()
            .map(|(_, entry)| {
                let timed = |value: &Value| json!({ "value": value, "time": entry.observed_ms });
                match &entry.kind {
                    EntryKind::Event(id) => {
                        let mut one = Map::new();
                        one.insert(id.clone(), timed(&entry.payload));
                        json!({ "properties": [], "events": [one] })
                    }
                    _ => {
                        let map: Map<String, Value> = entry
                            .payload
                            .as_object()
                            .map(|m| m.iter().map(|(k, v)| (k.clone(), timed(v))).collect())
                            .unwrap_or_default();
                        json!({ "properties": [map], "events": [] })
                    }
                }
            })
            .collect();
        let payload = json!({ "params": params });
        let frame = Frame::new(id, HeaderCtrl::HistoryReport, payload);
        self.wait_stored(&frame, TopicKind::HistoryReport, batch, Lane::Backlog, now);
        self.publish_to(
            TopicKind::HistoryReport,
            self.topic_string(TopicKind::HistoryReport),
            frame,
        );
    }

    /// The platform's answer to stored entries sent together (in `lane`, as a history
    /// upload or not).
    pub(super) fn stored_answered(
        &mut self,
        entries: Vec<(u64, Entry)>,
        (lane, history): (Lane, bool),
        result: Result<super::Ack, DeliveryError>,
        now: Now,
    ) {
        self.stored_in_flight = self.stored_in_flight.saturating_sub(1);
        if lane == Lane::Backlog {
            self.backlog_in_flight = self.backlog_in_flight.saturating_sub(1);
        }
        match result {
            Ok(ack) => {
                if history {
                    self.backlog_backoff.reset();
                }
                let seqs: Vec<u64> = entries.iter().map(|(s, _)| *s).collect();
                for seq in &seqs {
                    if let Some(token) = self.stored_tokens.remove(seq) {
                        self.deliver(token, Ok(ack.clone()));
                    } else {
                        self.counters.acked += 1;
                    }
                }
                self.effects.push_back(Effect::Forget(seqs));
            }
            Err(DeliveryError::Rejected { reason, .. }) if history => {
                self.history_refused(entries, &reason, now);
            }
            Err(DeliveryError::Rejected { reason, .. })
                if super::downlink::looks_stale(&reason) =>
            {
                // The platform cannot read our frames (the session is being renewed): the
                // entry is not at fault and waits for the next upload.
                self.stored.extend(entries);
            }
            // A frame of one entry (16, 17, 18, 19, 28): the refusal is about that entry.
            Err(DeliveryError::Rejected { reason, .. }) => {
                for (seq, entry) in entries {
                    self.refused_stored(seq, entry, reason.clone());
                }
            }
            Err(_) => {
                // Not acked in time, or the connection went: kept for the next upload.
                self.stored.extend(entries);
            }
        }
        self.pump_stored(now);
    }

    /// A history upload refused ("4001"): the entries its `Msg` names by position
    /// (`params[i]..`) are dropped and reported, the others wait for the next upload. When
    /// it names none, nothing is dropped: the application hears of it, and the backlog waits
    /// a backoff before it tries again.
    fn history_refused(&mut self, entries: Vec<(u64, Entry)>, reason: &str, now: Now) {
        let named = x_protocol::payload::refused_history_batches(reason);
        let mut kept = Vec::new();
        let mut refused = Vec::new();
        for (i, (seq, entry)) in entries.into_iter().enumerate() {
            match named.get(&i) {
                Some(why) => refused.push((seq, entry, why.join("; "))),
                None => kept.push((seq, entry)),
            }
        }
        if refused.is_empty() {
            let random = self.random();
            let delay = self.backlog_backoff.next_delay(random);
            self.backlog_paused_until = Some(now.instant + delay);
            self.counters.uploads_refused += 1;
            tracing::warn!(device = %self.config.identity, entries = kept.len(), "history upload refused without naming an entry ({reason}): kept, trying again in {delay:?}");
            self.events.push_back(Event::UploadRefused {
                reason: reason.to_owned(),
                entries: kept.len(),
                retry_in: delay,
            });
        }
        for (seq, entry, why) in refused {
            self.refused_stored(seq, entry, why);
        }
        self.stored.extend(kept);
    }

    /// An entry the platform refused for good: dropped from the outbox, counted, and
    /// reported (its delivery, where this run made it, and an event).
    fn refused_stored(&mut self, seq: u64, entry: Entry, reason: String) {
        tracing::warn!(device = %self.config.identity, seq, "stored entry refused by the platform: {reason}");
        self.counters.outbox_refused += 1;
        let error = DeliveryError::Rejected {
            code: "4001".into(),
            reason: reason.clone(),
        };
        match self.stored_tokens.remove(&seq) {
            Some(token) => self.deliver(token, Err(error)),
            None => self.counters.rejected += 1,
        }
        self.effects.push_back(Effect::Forget(vec![seq]));
        self.events.push_back(Event::EntryRefused { entry, reason });
    }

    /// Puts in-flight stored entries back (the connection is gone).
    pub(super) fn requeue_stored(&mut self, waiting: &[InFlight]) {
        for f in waiting {
            if let Purpose::Stored { entries, .. } = &f.purpose {
                self.stored.extend(entries.iter().cloned());
            }
        }
        self.stored_in_flight = 0;
        self.backlog_in_flight = 0;
    }

    /// An event observed at `observed_ms`, as an outbox entry.
    ///
    /// # Errors
    /// [`DeliveryError::Invalid`].
    pub fn history_event<E: ThingEvent>(
        &self,
        event: &E,
        observed_ms: i64,
    ) -> Result<Entry, DeliveryError> {
        Identifier::new(E::IDENTIFIER).map_err(|e| DeliveryError::Encode(e.to_string()))?;
        Ok(Entry::new(
            EntryKind::Event(E::IDENTIFIER.to_owned()),
            Value::Object(checked::<E>(event)?),
            observed_ms,
        ))
    }
}
