//! Store-and-forward in the session: reports and events the driver has made durable in the
//! outbox (by sequence number) are sent live when the device is online and has room, kept
//! while it is not, and uploaded as history (HeaderCtrl 27, with their observation times) in
//! bounded batches, oldest first, once it is back; HEX products replay theirs as HEX frames
//! (the protocol has no HEX history). An entry leaves the outbox only after the platform's
//! ack for it ([`Effect::Forget`]). A refused batch is split in halves until the refused
//! entries are alone; a refused single entry is dropped and reported, the others re-sent.

use serde_json::{Map, Value, json};
use x_protocol::model::hex::HexEvent;
use x_protocol::model::{ThingEvent, ThingModel, ThingServices};
use x_protocol::{Frame, HeaderCtrl, Identifier, Topic, TopicKind};

use super::{DeliveryError, Effect, InFlight, Now, Phase, Purpose, Session, Token, checked};
use crate::outbox::{Entry, EntryKind};

impl<M: ThingModel, S: ThingServices> Session<M, S> {
    /// Checks a report against the model, merges it into the state and returns it as an
    /// outbox entry observed now (platform clock where known). Works offline.
    ///
    /// # Errors
    /// [`DeliveryError::Invalid`] or, for HEX products, [`DeliveryError::Encode`]; the
    /// state is left alone.
    pub fn prepare_report(&mut self, report: &M::Report, now: Now) -> Result<Entry, DeliveryError> {
        let payload = checked::<M::Report>(report)?;
        let entry = match &self.hex {
            None => Entry {
                kind: EntryKind::Report,
                payload: Value::Object(payload),
                observed_ms: self.best_time(now),
            },
            Some(hex) => {
                let encode = hex.encode_report;
                let bytes = super::encode_hex(|out| encode(report, out))?;
                Entry {
                    kind: EntryKind::HexReport,
                    payload: Value::String(x_protocol::model::hex::to_hex(&bytes)),
                    observed_ms: self.best_time(now),
                }
            }
        };
        self.state.merge(report);
        Ok(entry)
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
            return Err(DeliveryError::Encode(format!(
                "event {}: a HEX product sends events as HEX (hex_event)",
                E::IDENTIFIER
            )));
        }
        Ok(Entry {
            kind: EntryKind::Event(E::IDENTIFIER.to_owned()),
            payload: Value::Object(checked::<E>(event)?),
            observed_ms: self.best_time(now),
        })
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
        Ok(Entry {
            kind: EntryKind::HexEvent,
            payload: Value::String(x_protocol::model::hex::to_hex(&bytes)),
            observed_ms: self.best_time(now),
        })
    }

    /// Takes an entry the outbox holds under `seq`: with `live`, sent at once when online
    /// with room in the window; otherwise (or without `live`: data sampled earlier) kept for
    /// a history upload. The token resolves on its ack.
    pub fn queue_stored(&mut self, seq: u64, entry: Entry, live: bool, now: Now) -> Token {
        let token = self.token();
        self.stored_tokens.insert(seq, token);
        if live && self.phase == Phase::Online && self.stored_in_flight < self.config.timing.window
        {
            self.send_live(seq, entry, now);
        } else {
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

    fn send_live(&mut self, seq: u64, entry: Entry, now: Now) {
        let Some((kind, topic, header_ctrl, payload)) = self.live_frame(&entry) else {
            return self.refused_stored(&[(seq, entry)], "cannot be sent".to_owned());
        };
        let frame = Frame::new(self.ids.next_id(), header_ctrl, payload);
        self.wait_stored(&frame, kind, vec![(seq, entry)], now);
        self.publish_to(kind, topic, frame);
    }

    /// The frame an entry travels in when sent on its own: 16, 17, 18 or 19.
    fn live_frame(&self, entry: &Entry) -> Option<(TopicKind, String, HeaderCtrl, Value)> {
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
        now: Now,
    ) {
        let ack_topic = kind
            .spec()
            .reply_to(frame.header_ctrl)
            .map_or(TopicKind::PropertyReportAck, |r| r.topic);
        self.stored_in_flight += 1;
        self.expect_ack(frame, ack_topic, Purpose::Stored(entries), now);
    }

    /// Sends what waits, oldest first, while the window has room: JSON products in history
    /// batches, HEX products one frame each.
    pub(super) fn pump_stored(&mut self, now: Now) {
        while self.phase == Phase::Online
            && self.stored_in_flight < self.config.timing.window
            && !self.stored.is_empty()
        {
            if self.hex.is_some() {
                if let Some((seq, entry)) = self.stored.pop_first() {
                    self.send_live(seq, entry, now);
                }
                continue;
            }
            let mut batch = Vec::new();
            while batch.len() < self.config.timing.history_batch.max(1) {
                match self.stored.pop_first() {
                    Some(e) => batch.push(e),
                    None => break,
                }
            }
            self.send_history(batch, now);
        }
    }

    fn send_history(&mut self, batch: Vec<(u64, Entry)>, now: Now) {
        let mut properties = Vec::new();
        let mut events = Vec::new();
        for (_, entry) in &batch {
            let timed = |value: &Value| json!({ "value": value, "time": entry.observed_ms });
            match &entry.kind {
                EntryKind::Event(id) => {
                    let mut one = Map::new();
                    one.insert(id.clone(), timed(&entry.payload));
                    events.push(Value::Object(one));
                }
                _ => {
                    let map: Map<String, Value> = entry
                        .payload
                        .as_object()
                        .map(|m| m.iter().map(|(k, v)| (k.clone(), timed(v))).collect())
                        .unwrap_or_default();
                    properties.push(Value::Object(map));
                }
            }
        }
        let payload = json!({ "params": [{ "properties": properties, "events": events }] });
        let frame = Frame::new(self.ids.next_id(), HeaderCtrl::HistoryReport, payload);
        self.wait_stored(&frame, TopicKind::HistoryReport, batch, now);
        self.publish_to(
            TopicKind::HistoryReport,
            self.topic_string(TopicKind::HistoryReport),
            frame,
        );
    }

    /// The platform's answer to stored entries sent together.
    pub(super) fn stored_answered(
        &mut self,
        entries: Vec<(u64, Entry)>,
        result: Result<super::Ack, DeliveryError>,
        now: Now,
    ) {
        self.stored_in_flight = self.stored_in_flight.saturating_sub(1);
        match result {
            Ok(ack) => {
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
            Err(DeliveryError::Rejected { reason, .. }) if entries.len() > 1 => {
                // Which entries were refused? Halve the batch until each refusal is alone.
                tracing::warn!(device = %self.config.identity, entries = entries.len(), "history batch refused ({reason}): splitting it");
                let mut entries = entries;
                let second = entries.split_off(entries.len() / 2);
                self.send_history(entries, now);
                self.send_history(second, now);
            }
            Err(DeliveryError::Rejected { reason, .. }) => self.refused_stored(&entries, reason),
            Err(_) => {
                // Not acked in time, or the connection went: kept for the next upload.
                self.stored.extend(entries);
            }
        }
        self.pump_stored(now);
    }

    /// Entries the platform refused on their own: dropped from the outbox and reported.
    fn refused_stored(&mut self, entries: &[(u64, Entry)], reason: String) {
        let seqs: Vec<u64> = entries.iter().map(|(s, _)| *s).collect();
        for seq in &seqs {
            tracing::warn!(device = %self.config.identity, seq, "stored entry refused by the platform: {reason}");
            self.counters.outbox_refused += 1;
            let error = DeliveryError::Rejected {
                code: "4001".into(),
                reason: reason.clone(),
            };
            match self.stored_tokens.remove(seq) {
                Some(token) => self.deliver(token, Err(error)),
                None => self.counters.rejected += 1,
            }
        }
        self.effects.push_back(Effect::Forget(seqs));
    }

    /// Puts in-flight stored entries back (the connection is gone).
    pub(super) fn requeue_stored(&mut self, waiting: &[InFlight]) {
        for f in waiting {
            if let Purpose::Stored(entries) = &f.purpose {
                self.stored.extend(entries.iter().cloned());
            }
        }
        self.stored_in_flight = 0;
    }

    /// A report as outbox entries fit to go as history (for devices that sample locally
    /// and upload later): `report` observed at `observed_ms`.
    ///
    /// # Errors
    /// [`DeliveryError::Invalid`].
    pub fn history_entry(
        &self,
        report: &M::Report,
        observed_ms: i64,
    ) -> Result<Entry, DeliveryError> {
        Ok(Entry {
            kind: EntryKind::Report,
            payload: Value::Object(checked::<M::Report>(report)?),
            observed_ms,
        })
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
        Ok(Entry {
            kind: EntryKind::Event(E::IDENTIFIER.to_owned()),
            payload: Value::Object(checked::<E>(event)?),
            observed_ms,
        })
    }
}
