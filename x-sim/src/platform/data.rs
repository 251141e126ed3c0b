//! What the platform received and keeps: every accepted device message with its time, the
//! latest properties, events and property history derived from them, and small state maps
//! (config, firmware, OTA progress). Written through to the store when one is attached, and
//! restored from it at start.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use x_protocol::payload::HistoryUpload;
use x_protocol::{DeviceIdentity, Frame, HeaderCtrl, MessageId, TopicKind};

use crate::store::{ReceivedRecord, Store, StoreError, Write};
use crate::sync::lock;

use super::now_ms;

/// One message the platform received from a device and accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Received {
    /// Its sequence number (1, 2, ...; continues across restarts with a store).
    pub seq: u64,
    /// The device.
    pub device: DeviceIdentity,
    /// Which topic it came on.
    pub kind: TopicKind,
    /// The event or service identifier of the topic, if it has one.
    pub identifier: Option<String>,
    /// The frame's command.
    pub header_ctrl: HeaderCtrl,
    /// The frame's MessageId.
    pub message_id: MessageId,
    /// The plain payload (decrypted); for HEX products, what the parsing script decoded
    /// (`{"HeaderCtrl":16,"Payload":{..}}`).
    pub payload: Value,
    /// HEX products: the hex as it came.
    pub raw: Option<String>,
    /// When, in Unix milliseconds.
    pub at_ms: i64,
}

/// A property value with its time.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Timed {
    /// The value as reported.
    pub value: Value,
    /// Unix milliseconds: the report's arrival, or a history entry's own time.
    pub time: i64,
}

/// An event a device reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EventRecord {
    /// The event identifier.
    pub identifier: String,
    /// Its outputs.
    pub value: Value,
    /// Unix milliseconds.
    pub time: i64,
}

/// The stored form of [`Received`].
#[derive(Serialize, Deserialize)]
struct Stored {
    device: String,
    topic: String,
    identifier: Option<String>,
    header_ctrl: i64,
    message_id: MessageId,
    payload: Value,
    raw: Option<String>,
    at_ms: i64,
}

/// [`Stored`] borrowed from a [`Received`], to encode without copying the payload: the same
/// fields, so the same JSON.
#[derive(Serialize)]
struct StoredRef<'a> {
    /// Written as its `OpenID/ProductID/NodeEui` text, without building that string first.
    #[serde(serialize_with = "as_text")]
    device: &'a DeviceIdentity,
    topic: &'static str,
    identifier: Option<&'a str>,
    header_ctrl: i64,
    message_id: &'a MessageId,
    payload: &'a Value,
    raw: Option<&'a str>,
    at_ms: i64,
}

/// Serializes a value as its `Display` text.
fn as_text<S: serde::Serializer>(value: &&DeviceIdentity, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

impl ReceivedRecord for Received {
    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        self.encode_stored(out)
            .map_err(|e| format!("a message of {}: {e}", self.device))
    }
}

impl Received {
    /// Writes the stored form's JSON to `out`.
    fn encode_stored(&self, out: &mut Vec<u8>) -> Result<(), serde_json::Error> {
        serde_json::to_writer(
            out,
            &StoredRef {
                device: &self.device,
                topic: self.kind.spec().suffix,
                identifier: self.identifier.as_deref(),
                header_ctrl: self.header_ctrl.code(),
                message_id: &self.message_id,
                payload: &self.payload,
                raw: self.raw.as_deref(),
                at_ms: self.at_ms,
            },
        )
    }

    fn from_stored(seq: u64, s: Stored) -> Result<Self, String> {
        let mut parts = s.device.splitn(3, '/');
        let (Some(o), Some(p), Some(n)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(format!(
                "device {:?} is not OpenID/ProductID/NodeEui",
                s.device
            ));
        };
        let device = DeviceIdentity::parse(o, p, n).map_err(|e| e.to_string())?;
        let kind = TopicKind::ALL
            .iter()
            .copied()
            .find(|k| k.spec().suffix == s.topic)
            .ok_or_else(|| format!("unknown topic kind {:?}", s.topic))?;
        Ok(Self {
            seq,
            device,
            kind,
            identifier: s.identifier,
            header_ctrl: HeaderCtrl::from_code(s.header_ctrl),
            message_id: s.message_id,
            payload: s.payload,
            raw: s.raw,
            at_ms: s.at_ms,
        })
    }

    /// The topic it came on.
    pub fn topic(&self) -> String {
        let suffix = self.kind.spec().suffix;
        let suffix = match &self.identifier {
            Some(id) => suffix.replace("{id}", id),
            None => suffix.to_owned(),
        };
        format!("{}/{suffix}", self.device.topic_prefix())
    }

    /// The properties this message reports (property reports, HEX property reports), with
    /// their time; history uploads give each entry its own time.
    pub fn properties(&self) -> Vec<(String, Timed)> {
        let timed = |map: &serde_json::Map<String, Value>, time| {
            map.iter()
                .map(|(k, v)| {
                    (
                        k.clone(),
                        Timed {
                            value: v.clone(),
                            time,
                        },
                    )
                })
                .collect()
        };
        match self.kind {
            TopicKind::PropertyReport => self
                .payload
                .as_object()
                .map_or_else(Vec::new, |m| timed(m, self.at_ms)),
            TopicKind::HexReport | TopicKind::FullHex
                if self.payload.get("HeaderCtrl").and_then(Value::as_i64) == Some(16) =>
            {
                self.payload
                    .get("Payload")
                    .and_then(Value::as_object)
                    .map_or_else(Vec::new, |m| timed(m, self.at_ms))
            }
            TopicKind::HistoryReport => self
                .history()
                .params
                .iter()
                .filter_map(|b| b.property_entries().ok())
                .flatten()
                .map(|(id, t)| {
                    (
                        id.to_owned(),
                        Timed {
                            value: t.value.clone(),
                            time: t.time,
                        },
                    )
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A history upload's batches (none when the payload is not one).
    fn history(&self) -> HistoryUpload {
        serde_json::from_value(self.payload.clone()).unwrap_or_default()
    }

    /// The events this message reports (event reports, HEX event reports, history).
    pub fn events(&self) -> Vec<EventRecord> {
        match self.kind {
            TopicKind::EventReport => vec![EventRecord {
                identifier: self.identifier.clone().unwrap_or_default(),
                value: self.payload.clone(),
                time: self.at_ms,
            }],
            TopicKind::HexReport | TopicKind::FullHex
                if self.payload.get("HeaderCtrl").and_then(Value::as_i64) == Some(17) =>
            {
                vec![EventRecord {
                    identifier: self
                        .payload
                        .get("Event")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_owned(),
                    value: self.payload.get("Payload").cloned().unwrap_or(Value::Null),
                    time: self.at_ms,
                }]
            }
            TopicKind::HistoryReport => self
                .history()
                .params
                .iter()
                .filter_map(|b| b.event_entries().ok())
                .flatten()
                .map(|(id, t)| EventRecord {
                    identifier: id.to_owned(),
                    value: t.value.clone(),
                    time: t.time,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A message being recorded.
pub(crate) struct Incoming<'a> {
    pub device: &'a DeviceIdentity,
    pub kind: TopicKind,
    pub identifier: Option<String>,
    pub frame: &'a Frame,
    pub payload: Value,
    pub raw: Option<String>,
}

impl Incoming<'_> {
    /// Its record, received now, not (yet) numbered or kept.
    fn unrecorded(self) -> Received {
        Received {
            seq: 0,
            device: self.device.clone(),
            kind: self.kind,
            identifier: self.identifier,
            header_ctrl: self.frame.header_ctrl,
            message_id: self.frame.message_id.clone(),
            payload: self.payload,
            raw: self.raw,
            at_ms: now_ms(),
        }
    }
}

/// How many recent messages per device are remembered to recognise re-sends.
const RECENT_PER_DEVICE: usize = 4096;

/// What recording a message did.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Recorded {
    /// It was new (a history upload possibly stripped of entries already held) and is kept.
    New(Received),
    /// It was a re-send of a message already kept: nothing was recorded. The record is the
    /// incoming message (not stored), with the reason.
    Duplicate(Received, String),
}

/// What x-sim remembers to keep at-least-once delivery harmless: per device, the recent
/// messages by MessageId with what they said, and the times of the history entries held.
#[derive(Debug, Default)]
struct Seen {
    /// The MessageIds of the recent messages, oldest first (each once).
    recent: VecDeque<MessageId>,
    /// What each of them said (see [`content_of`]).
    ids: HashMap<MessageId, Value>,
    /// History entries held: (is event, identifier, time, value as JSON text): two samples
    /// of one property in the same millisecond with different values are two entries.
    history: HashSet<(bool, String, i64, String)>,
}

impl Seen {
    fn remember(&mut self, r: &Received) {
        if let Some(content) = content_of(
            r.kind,
            r.identifier.as_deref(),
            &r.payload,
            r.raw.as_deref(),
        ) {
            // A reused MessageId keeps its place; its content is the newest.
            if self.ids.insert(r.message_id.clone(), content).is_none() {
                self.recent.push_back(r.message_id.clone());
                if self.recent.len() > RECENT_PER_DEVICE
                    && let Some(old) = self.recent.pop_front()
                {
                    self.ids.remove(&old);
                }
            }
        }
        if r.kind == TopicKind::HistoryReport {
            self.history.extend(history_keys(&r.payload));
        }
    }
}

/// What a data message says, times aside, in one form for a live report or event and a
/// one-entry history upload of it: two messages of a device with the same MessageId and the
/// same content are one message sent twice. `None` for messages that are not data.
fn content_of(
    kind: TopicKind,
    identifier: Option<&str>,
    payload: &Value,
    raw: Option<&str>,
) -> Option<Value> {
    match kind {
        TopicKind::PropertyReport => Some(serde_json::json!({ "properties": payload })),
        TopicKind::EventReport => {
            Some(serde_json::json!({ "event": identifier, "value": payload }))
        }
        TopicKind::HexReport => Some(serde_json::json!({ "hex": raw })),
        TopicKind::HistoryReport => {
            let batches = payload.get("params").and_then(Value::as_array)?;
            let maps = |field: &str| -> Vec<&serde_json::Map<String, Value>> {
                batches
                    .iter()
                    .filter_map(|b| b.get(field).and_then(Value::as_array))
                    .flatten()
                    .filter_map(Value::as_object)
                    .collect()
            };
            let (properties, events) = (maps("properties"), maps("events"));
            let untimed = |v: &Value| v.get("value").cloned().unwrap_or(Value::Null);
            match (properties.as_slice(), events.as_slice()) {
                ([one], []) => Some(serde_json::json!({
                    "properties": one.iter().map(|(k, v)| (k.clone(), untimed(v))).collect::<serde_json::Map<_, _>>()
                })),
                ([], [one]) if one.len() == 1 => one
                    .iter()
                    .next()
                    .map(|(id, v)| serde_json::json!({ "event": id, "value": untimed(v) })),
                _ => Some(serde_json::json!({ "history": payload })),
            }
        }
        _ => None,
    }
}

/// The (is event, identifier, time, value) of every entry of a history upload.
fn history_keys(payload: &Value) -> Vec<(bool, String, i64, String)> {
    let mut keys = Vec::new();
    for batch in payload
        .get("params")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        for (field, event) in [("properties", false), ("events", true)] {
            for map in batch
                .get(field)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(Value::as_object)
            {
                for (id, v) in map {
                    if let Some(time) = v.get("time").and_then(Value::as_i64) {
                        keys.push((event, id.clone(), time, value_text(v)));
                    }
                }
            }
        }
    }
    keys
}

/// An entry's value as JSON text (the key of what it said).
fn value_text(entry: &Value) -> String {
    entry.get("value").map(Value::to_string).unwrap_or_default()
}

/// A history upload without the entries `held` already has; how many were taken out.
fn without_held(payload: &Value, held: &HashSet<(bool, String, i64, String)>) -> (Value, usize) {
    let mut payload = payload.clone();
    let mut removed = 0;
    if let Some(batches) = payload.get_mut("params").and_then(Value::as_array_mut) {
        for batch in batches.iter_mut() {
            for (field, event) in [("properties", false), ("events", true)] {
                let Some(maps) = batch.get_mut(field).and_then(Value::as_array_mut) else {
                    continue;
                };
                for map in maps.iter_mut() {
                    if let Some(map) = map.as_object_mut() {
                        map.retain(|id, v| {
                            let time = v.get("time").and_then(Value::as_i64);
                            let keep = time.is_none_or(|t| {
                                !held.contains(&(event, id.clone(), t, value_text(v)))
                            });
                            removed += usize::from(!keep);
                            keep
                        });
                    }
                }
                maps.retain(|m| m.as_object().is_none_or(|m| !m.is_empty()));
            }
        }
        batches.retain(|b| {
            ["properties", "events"].iter().any(|f| {
                b.get(*f)
                    .and_then(Value::as_array)
                    .is_some_and(|a| !a.is_empty())
            })
        });
    }
    (payload, removed)
}

pub(crate) use crate::store::Durable;

/// The platform's data, in memory and written through to the store.
#[derive(Debug, Default)]
pub(crate) struct Data {
    /// Shared with the store's writer thread, which encodes each for the store.
    received: Mutex<Vec<Arc<Received>>>,
    next_seq: Mutex<u64>,
    last_seen: Mutex<HashMap<String, i64>>,
    state: Mutex<BTreeMap<(String, String), Value>>,
    seen: Mutex<HashMap<String, Seen>>,
    /// Where received messages and state are written (through its writer thread), when a
    /// store is attached.
    store: Option<Store>,
}

impl Data {
    /// Restores received data and state maps from the store, and writes to it from now on.
    pub fn restore(store: Option<&Store>) -> Result<Self, StoreError> {
        let mut data = Self::default();
        let Some(store) = store else {
            return Ok(data);
        };
        let mut received = Vec::new();
        let mut after = 0;
        loop {
            let page = store.received(after, 1000)?;
            let Some(&(last, _)) = page.last() else {
                break;
            };
            for (seq, value) in page {
                match serde_json::from_value::<Stored>(value)
                    .map_err(|e| e.to_string())
                    .and_then(|s| Received::from_stored(seq, s))
                {
                    Ok(r) => received.push(Arc::new(r)),
                    Err(e) => {
                        tracing::error!(target: "x_sim", "stored message {seq} is unreadable, kept in the store but not loaded: {e}");
                    }
                }
            }
            after = last;
        }
        *lock(&data.next_seq) = after.max(store.last_received_seq()?);
        for r in &received {
            lock(&data.seen)
                .entry(r.device.to_string())
                .or_default()
                .remember(r);
            lock(&data.last_seen)
                .entry(r.device.to_string())
                .and_modify(|t| *t = (*t).max(r.at_ms))
                .or_insert(r.at_ms);
        }
        *lock(&data.received) = received;
        for map in ["config", "firmware", "ota"] {
            for (key, value) in store.state(map)? {
                lock(&data.state).insert((map.to_owned(), key), value);
            }
        }
        data.store = Some(store.clone());
        Ok(data)
    }

    /// Records an accepted data message unless it is a re-send of one already kept: the
    /// same MessageId with the same content (a live report and the one-entry history upload
    /// a device re-sends it as count as the same), or history entries (identifier and time)
    /// already held, which are taken out of the upload. With a store, a new record comes
    /// with its [`Durable`].
    pub fn record_once(&self, mut m: Incoming<'_>) -> (Recorded, Option<Durable>) {
        let device = m.device.to_string();
        let id = m.frame.message_id.clone();
        let content = content_of(
            m.kind,
            m.identifier.as_deref(),
            &m.payload,
            m.raw.as_deref(),
        );
        let mut removed = 0;
        {
            let seen = lock(&self.seen);
            let held = seen.get(&device);
            if let (Some(content), Some(held)) = (&content, held)
                && held.ids.get(&id) == Some(content)
            {
                let reason = format!("a re-send of MessageId {id} (already held)");
                return (Recorded::Duplicate(m.unrecorded(), reason), None);
            }
            if m.kind == TopicKind::HistoryReport
                && let Some(held) = held
            {
                let (payload, n) = without_held(&m.payload, &held.history);
                removed = n;
                m.payload = payload;
            }
        }
        if removed > 0 && history_keys(&m.payload).is_empty() {
            let reason = format!("every entry of history upload {id} is already held");
            return (Recorded::Duplicate(m.unrecorded(), reason), None);
        }
        if removed > 0 {
            tracing::info!(target: "x_sim", "{device}: history upload {id}: {removed} entries already held, not recorded again");
        }
        let (record, durable) = self.record(m);
        (Recorded::New(record), durable)
    }

    /// Records an accepted message: numbered and kept in memory at once (so a re-send is
    /// recognised while the first is being written), and handed to the store writer when
    /// there is a store. Returns the record and, with a store, the [`Durable`] to wait
    /// for its commit with: its ack must wait for that.
    pub fn record(&self, m: Incoming<'_>) -> (Received, Option<Durable>) {
        let mut record = m.unrecorded();
        let mut received = lock(&self.received);
        record.seq = {
            let mut next = lock(&self.next_seq);
            *next = next.saturating_add(1);
            *next
        };
        lock(&self.seen)
            .entry(record.device.to_string())
            .or_default()
            .remember(&record);
        // One copy for the caller; the kept one is shared with the store's writer thread,
        // which encodes it there. Queued while `received` is held, so the writer gets
        // records in their order.
        let kept = Arc::new(record.clone());
        let durable =
            (self.store.as_ref()).map(|store| store.queue_received(kept.seq, kept.clone()));
        received.push(kept);
        (record, durable)
    }

    /// Notes that a device sent something now.
    pub fn seen(&self, device: &DeviceIdentity) {
        lock(&self.last_seen).insert(device.to_string(), now_ms());
    }

    /// When a device last sent something (Unix milliseconds).
    pub fn last_seen(&self, device: &DeviceIdentity) -> Option<i64> {
        lock(&self.last_seen).get(&device.to_string()).copied()
    }

    /// Every received message.
    pub fn received(&self) -> Vec<Received> {
        lock(&self.received)
            .iter()
            .map(|r| Received::clone(r))
            .collect()
    }

    /// One state value.
    pub fn state(&self, map: &str, key: &str) -> Option<Value> {
        lock(&self.state)
            .get(&(map.to_owned(), key.to_owned()))
            .cloned()
    }

    /// One state map.
    pub fn state_map(&self, map: &str) -> Vec<(String, Value)> {
        lock(&self.state)
            .iter()
            .filter(|((m, _), _)| m == map)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Changes a state value atomically: `f` gets the current value and returns the new
    /// one (`None`: leave it), which is queued to the store; the [`Durable`] of that write.
    pub fn update_state(
        &self,
        map: &str,
        key: &str,
        f: impl FnOnce(Option<&Value>) -> Option<Value>,
    ) -> Option<Durable> {
        let mut state = lock(&self.state);
        let slot = (map.to_owned(), key.to_owned());
        let value = f(state.get(&slot))?;
        // Queued under the lock (without waiting), so that the store gets the values of one
        // key in the order they were set.
        let durable = self.queue_state(map, key, &value);
        state.insert(slot, value);
        durable
    }

    /// Sets a state value and queues it to the store; the [`Durable`] of that write.
    pub fn put_state(&self, map: &str, key: &str, value: &Value) -> Option<Durable> {
        let mut state = lock(&self.state);
        let durable = self.queue_state(map, key, value);
        state.insert((map.to_owned(), key.to_owned()), value.clone());
        durable
    }

    fn queue_state(&self, map: &str, key: &str, value: &Value) -> Option<Durable> {
        let store = self.store.as_ref()?;
        match Write::state(map, key, value) {
            Ok(write) => Some(store.queue(write)),
            Err(e) => {
                tracing::error!(target: "x_sim", "cannot store {map}/{key}: {e}");
                None
            }
        }
    }
}

impl super::Platform {
    /// Everything received so far, oldest first.
    pub fn received(&self) -> Vec<Received> {
        self.inner.data.received()
    }

    /// Messages of one device, oldest first.
    pub fn received_from(&self, device: &DeviceIdentity) -> Vec<Received> {
        let mut all = self.inner.data.received();
        all.retain(|r| &r.device == device);
        all
    }

    /// The latest value of every property the device reported, with its time.
    pub fn latest_properties(&self, device: &DeviceIdentity) -> BTreeMap<String, Timed> {
        let mut latest: BTreeMap<String, Timed> = BTreeMap::new();
        for r in self.received_from(device) {
            for (id, timed) in r.properties() {
                match latest.get(&id) {
                    Some(t) if t.time > timed.time => {}
                    _ => {
                        latest.insert(id, timed);
                    }
                }
            }
        }
        latest
    }

    /// Every value of the device's properties over time (optionally one property), ordered
    /// by time.
    pub fn property_history(
        &self,
        device: &DeviceIdentity,
        property: Option<&str>,
    ) -> Vec<(String, Timed)> {
        let mut all: Vec<(String, Timed)> = self
            .received_from(device)
            .iter()
            .flat_map(Received::properties)
            .filter(|(id, _)| property.is_none_or(|p| p == id))
            .collect();
        all.sort_by_key(|(_, t)| t.time);
        all
    }

    /// The device's events, ordered by time.
    pub fn events(&self, device: &DeviceIdentity) -> Vec<EventRecord> {
        let mut all: Vec<EventRecord> = self
            .received_from(device)
            .iter()
            .flat_map(Received::events)
            .collect();
        all.sort_by_key(|e| e.time);
        all
    }

    /// When the device last sent anything (Unix milliseconds).
    pub fn last_seen(&self, device: &DeviceIdentity) -> Option<i64> {
        self.inner.data.last_seen(device)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// What the platform writes (borrowed, [`StoredRef`]) reads back (owned, [`Stored`]) as
    /// the same record.
    #[test]
    fn a_stored_record_reads_back_as_it_was() {
        let received = Received {
            seq: 7,
            device: DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap(),
            kind: TopicKind::EventReport,
            identifier: Some("overheat".into()),
            header_ctrl: HeaderCtrl::EventReport,
            message_id: MessageId::from(42u32),
            payload: serde_json::json!({"temperature": 81.5, "action": 1}),
            raw: Some("0A0B".into()),
            at_ms: 1_700_000_000_123,
        };
        let mut json = Vec::new();
        received.encode_stored(&mut json).unwrap();
        let stored: Stored = serde_json::from_slice(&json).unwrap();
        assert_eq!(Received::from_stored(7, stored).unwrap(), received);
    }
}
