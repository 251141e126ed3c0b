//! The violation log: every protocol rule a device broke, per device, with the frame as it
//! came (its payload decrypted where it decrypts), so that a CI run of a firmware can assert
//! "no violations" in one call. Rejected messages are kept here, not only logged.
//!
//! Bounded per device (the newest [`PlatformConfig::violations_per_device`], with a count of
//! the older ones dropped) and written through to the store when one is attached, restored
//! at start. Frames are kept up to [`FRAME_LIMIT`] bytes. Secrets never enter a record:
//! fields named like one (`DeviceSecret`, `SessionKey`, `ProductKey`, `password`) and any
//! text holding the device's DeviceSecret, ProductKey or SessionKey are `[redacted]`.
//!
//! [`PlatformConfig::violations_per_device`]: super::PlatformConfig::violations_per_device

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use x_protocol::{DeviceIdentity, Frame, HeaderCtrl, MessageId};
use zeroize::Zeroizing;

use crate::registry::Registry;
use crate::store::{Durable, Store, StoreError, Write};
use crate::sync::lock;

use super::live::Live;
use super::now_ms;

/// At most this many bytes of a frame are kept in a violation; a longer one is kept as the
/// text of its first bytes, marked `truncated`.
pub const FRAME_LIMIT: usize = 16 * 1024;

/// At most this many characters of a topic are kept (a forbidden topic can be any string).
const TOPIC_LIMIT: usize = 512;

/// At most this many characters of a reason are kept (a report with thousands of bad values
/// has a long one).
const REASON_LIMIT: usize = 4096;

/// Defines [`Rule`] and its one table of stable names.
macro_rules! rules {
    ($($(#[$doc:meta])* $rule:ident = $name:literal,)*) => {
        /// A protocol rule a device broke. Each has a stable snake_case name ([`Rule::name`]),
        /// which the HTTP API and the store use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Rule {
            $($(#[$doc])* $rule,)*
        }

        impl Rule {
            /// Every rule, in the order of the documentation.
            pub const ALL: &'static [Rule] = &[$(Rule::$rule,)*];

            /// The stable name (`plaintext`, `thing_model`, ...).
            pub fn name(self) -> &'static str {
                match self {
                    $(Rule::$rule => $name,)*
                }
            }
        }
    };
}

rules! {
    /// A publish on a topic the login may not publish (another device's, a platform
    /// topic, anything but `/sys/device/auth` in the auth phase): the embedded broker
    /// closes the connection.
    ForbiddenTopic = "forbidden_topic",
    /// A subscription outside the login's own topics: SUBACK 0x80 for that filter.
    ForbiddenSubscription = "forbidden_subscription",
    /// A message on a device topic (or the auth topic) that is not a frame: not JSON, a
    /// missing or mistyped field, a Version other than "2.0". Not acked: it has no
    /// MessageId to ack with.
    UnreadableFrame = "unreadable_frame",
    /// A HeaderCtrl that does not belong on its topic, or a HEX frame whose decoding is
    /// another frame type than its HeaderCtrl (an 18 that decodes to 17).
    HeaderCtrlMismatch = "header_ctrl_mismatch",
    /// A plain payload from a device of an encrypted product.
    Plaintext = "plaintext",
    /// An encrypted payload that does not decrypt under the device's SessionKey (or the
    /// device has none).
    Undecryptable = "undecryptable",
    /// A payload that is not of its command's shape (a firmware report without `SoftVer`,
    /// a HEX report whose Payload is no string).
    BadPayload = "bad_payload",
    /// Refused by the thing model: an unknown property, event or output, a missing output,
    /// a value of the wrong type or outside the model's range.
    ThingModel = "thing_model",
    /// HEX that the product's parsing script cannot decode (bad hex, the script threw), or
    /// a HEX frame from a product that is not a HEX product.
    HexParse = "hex_parse",
    /// An answer to a platform command on another topic, or with another HeaderCtrl, than
    /// the command table says, or an answer to a command the table gives no answer (HTTP
    /// 502).
    AnswerOffTable = "answer_off_table",
    /// An answer to a platform command whose content is wrong: not an ack, set Data or
    /// service outputs the model refuses, a property ask answered without the asked
    /// properties, a config report without Settings, an OTA ack without its DownID (HTTP
    /// 502).
    BadAnswer = "bad_answer",
    /// An auth request the platform refused (reply Code 2, 4, 5 or 6).
    AuthRefused = "auth_refused",
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Rule {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Rule::ALL
            .iter()
            .copied()
            .find(|r| r.name() == s)
            .ok_or_else(|| format!("unknown rule {s:?}"))
    }
}

impl Serialize for Rule {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Rule {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// One rule a device broke, with what it sent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Violation {
    /// Its number among the device's violations (1, 2, ...; continues across restarts
    /// with a store).
    pub seq: u64,
    /// The rule.
    pub rule: Rule,
    /// What was wrong, as the device was told (the "4001" Msg) or as the platform logged it.
    pub reason: String,
    /// The topic it came on (for a forbidden subscription, the filter).
    pub topic: String,
    /// The frame's HeaderCtrl, when it can be read.
    #[serde(rename = "HeaderCtrl")]
    pub header_ctrl: Option<HeaderCtrl>,
    /// The frame's MessageId, when it can be read.
    #[serde(rename = "MessageId")]
    pub message_id: Option<MessageId>,
    /// The frame as it came: its JSON, or its text when it is not JSON (or longer than
    /// [`FRAME_LIMIT`]); `null` when there was none (a subscription).
    pub frame: Value,
    /// The payload decrypted, when the frame carried one that decrypts.
    pub payload: Option<Value>,
    /// Whether `frame` (or `payload`) is only the first [`FRAME_LIMIT`] bytes of what came.
    pub truncated: bool,
    /// When, in Unix milliseconds.
    pub time: i64,
}

/// What a device sent, as the platform saw it when it broke a rule.
pub(crate) struct Evidence<'a> {
    /// The topic (or subscription filter).
    pub topic: &'a str,
    /// The bytes as they came (empty for a subscription).
    pub bytes: &'a [u8],
    /// The frame, when it decoded.
    pub frame: Option<&'a Frame>,
    /// The HeaderCtrl, when the bytes do not say it (a full-HEX report is 28).
    pub header_ctrl: Option<HeaderCtrl>,
    /// The payload decrypted.
    pub plain: Option<Value>,
}

impl<'a> Evidence<'a> {
    /// The bytes of a message on `topic`, read for what they say (frame or not).
    pub fn of(topic: &'a str, bytes: &'a [u8]) -> Self {
        Self {
            topic,
            bytes,
            frame: None,
            header_ctrl: None,
            plain: None,
        }
    }

    /// A message whose frame decoded.
    pub fn of_frame(topic: &'a str, bytes: &'a [u8], frame: &'a Frame) -> Self {
        Self {
            frame: Some(frame),
            ..Self::of(topic, bytes)
        }
    }
}

/// The text that must never appear in a record of `device`: its DeviceSecret and its
/// product's ProductKey, as hex.
pub(crate) fn registry_secrets(
    registry: &Registry,
    device: &DeviceIdentity,
) -> Vec<Zeroizing<String>> {
    let mut secrets = Vec::new();
    if let Some(d) = registry.device(device.product_id.as_str(), device.node_eui.as_str()) {
        secrets.push(Zeroizing::new(d.secret.expose_hex().to_owned()));
    }
    if let Some(p) = registry.product(device.product_id.as_str()) {
        secrets.push(Zeroizing::new(p.product_key.expose_hex().to_owned()));
    }
    secrets
}

/// Field names whose values are secrets wherever they appear.
fn secret_field(name: &str) -> bool {
    ["devicesecret", "sessionkey", "productkey", "password"]
        .iter()
        .any(|s| name.eq_ignore_ascii_case(s))
}

const REDACTED: &str = "[redacted]";

/// `text` with every occurrence of a secret (any case) replaced.
fn redact_text(text: &str, secrets: &[Zeroizing<String>]) -> String {
    let mut out = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let upper = Zeroizing::new(out.to_ascii_uppercase());
        let wanted = Zeroizing::new(secret.to_ascii_uppercase());
        if !upper.contains(wanted.as_str()) {
            continue;
        }
        // Hex secrets are ASCII, so byte offsets of the uppercased text are the text's.
        let mut kept = String::with_capacity(out.len());
        let mut at = 0;
        while let Some(found) = upper[at..].find(wanted.as_str()) {
            kept.push_str(&out[at..at + found]);
            kept.push_str(REDACTED);
            at += found + wanted.len();
        }
        kept.push_str(&out[at..]);
        out = kept;
    }
    out
}

/// `value` with secret fields and secret text replaced.
fn redact(value: &mut Value, secrets: &[Zeroizing<String>]) {
    match value {
        Value::String(s) => *s = redact_text(s, secrets),
        Value::Array(items) => items.iter_mut().for_each(|v| redact(v, secrets)),
        Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if secret_field(key) {
                    *v = json!(REDACTED);
                } else {
                    redact(v, secrets);
                }
            }
        }
        _ => {}
    }
}

/// The first `limit` characters of `text` (never splitting one).
fn prefix(text: &str, limit: usize) -> &str {
    match text.char_indices().nth(limit) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

/// At most the first `limit` bytes of `text` (never splitting a character).
fn cut(text: &str, limit: usize) -> &str {
    let mut end = text.len().min(limit);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// `value` as kept: itself, or when its JSON is longer than [`FRAME_LIMIT`], the first
/// bytes of that text (secrets are taken out first, so that none is cut in half).
fn bounded(mut value: Value, secrets: &[Zeroizing<String>]) -> (Value, bool) {
    redact(&mut value, secrets);
    let text = value.to_string();
    if text.len() > FRAME_LIMIT {
        (json!(cut(&text, FRAME_LIMIT)), true)
    } else {
        (value, false)
    }
}

impl Violation {
    /// The record of `rule` broken with `evidence`, secrets taken out.
    fn new(
        rule: Rule,
        reason: &str,
        evidence: Evidence<'_>,
        secrets: &[Zeroizing<String>],
    ) -> Self {
        let bytes = evidence.bytes;
        let parsed: Option<Value> = serde_json::from_slice(bytes).ok();
        // What the bytes say even when they are not a valid frame (a Version of 1.0, a
        // missing field).
        let field = |name: &str| parsed.as_ref().and_then(|v| v.get(name)).cloned();
        let header_ctrl = evidence
            .frame
            .map(|f| f.header_ctrl)
            .or(evidence.header_ctrl)
            .or_else(|| {
                field("HeaderCtrl")
                    .and_then(|v| v.as_i64())
                    .map(HeaderCtrl::from_code)
            });
        let message_id = evidence.frame.map(|f| f.message_id.clone()).or_else(|| {
            field("MessageId").and_then(|v| serde_json::from_value::<MessageId>(v).ok())
        });
        let (frame, mut truncated) = match parsed {
            None if bytes.is_empty() => (Value::Null, false),
            Some(v) if bytes.len() <= FRAME_LIMIT => bounded(v, secrets),
            // Not JSON, or too long: the text, cut where it must be.
            _ => {
                let text = redact_text(&String::from_utf8_lossy(bytes), secrets);
                let kept = cut(&text, FRAME_LIMIT);
                (json!(kept), kept.len() < text.len())
            }
        };
        let payload = evidence.plain.map(|p| {
            let (p, cut) = bounded(p, secrets);
            truncated |= cut;
            p
        });
        Self {
            seq: 0,
            rule,
            reason: redact_text(prefix(reason, REASON_LIMIT), secrets),
            topic: redact_text(prefix(evidence.topic, TOPIC_LIMIT), secrets),
            header_ctrl,
            message_id,
            frame,
            payload,
            truncated,
            time: now_ms(),
        }
    }

    /// The record as the HTTP API shows it.
    pub fn to_json(&self) -> Value {
        json!({
            "seq": self.seq,
            "rule": self.rule.name(),
            "reason": self.reason,
            "topic": self.topic,
            "HeaderCtrl": self.header_ctrl.map(HeaderCtrl::code),
            "MessageId": self.message_id,
            "frame": self.frame,
            "payload": self.payload,
            "truncated": self.truncated,
            "time": self.time,
        })
    }
}

/// One device's violations: the newest, and the number of the last one (so the count of
/// those dropped is `last_seq - kept.len()`).
#[derive(Debug, Default)]
struct DeviceLog {
    kept: VecDeque<Violation>,
    last_seq: u64,
}

#[derive(Debug)]
struct Inner {
    devices: Mutex<HashMap<String, DeviceLog>>,
    store: Option<Store>,
    per_device: usize,
    /// Where each violation is also published as it is recorded.
    live: Live,
}

/// The violation log of every device. Cheap to clone; clones share the log (the broker's
/// access rules record forbidden topics in it, the platform everything else).
#[derive(Debug, Clone)]
pub struct ViolationLog {
    inner: Arc<Inner>,
}

impl ViolationLog {
    /// An empty log in memory, keeping the newest `per_device` violations of each device
    /// (at least one).
    pub fn new(per_device: usize) -> Self {
        Self {
            inner: Arc::new(Inner {
                devices: Mutex::default(),
                store: None,
                per_device: per_device.max(1),
                live: Live::new(),
            }),
        }
    }

    /// The log written through to `store` (when given), with what it holds restored.
    ///
    /// # Errors
    /// The store cannot be read. A record that does not decode is logged and skipped.
    pub fn restore(store: Option<&Store>, per_device: usize) -> Result<Self, StoreError> {
        let per_device = per_device.max(1);
        let mut devices: HashMap<String, DeviceLog> = HashMap::new();
        if let Some(store) = store {
            for (device, seq, value) in store.violations()? {
                let log = devices.entry(device.clone()).or_default();
                log.last_seq = log.last_seq.max(seq);
                match serde_json::from_value::<Violation>(value) {
                    Ok(mut v) => {
                        v.seq = seq;
                        log.kept.push_back(v);
                    }
                    Err(e) => {
                        tracing::error!(target: "x_sim", "stored violation {seq} of {device} is unreadable, not loaded: {e}");
                    }
                }
            }
            for log in devices.values_mut() {
                // Stored in key order, which is sequence order; keep the newest.
                while log.kept.len() > per_device {
                    log.kept.pop_front();
                }
            }
        }
        Ok(Self {
            inner: Arc::new(Inner {
                devices: Mutex::new(devices),
                store: store.cloned(),
                per_device,
                live: Live::new(),
            }),
        })
    }

    /// Records that `device` broke `rule` with what `evidence` holds; `secrets` (hex text)
    /// are taken out of the record. Returns the record and, with a store, the [`Durable`]
    /// of its write, queued to the store's writer thread (nothing here waits for the disk).
    pub(crate) fn record(
        &self,
        device: &DeviceIdentity,
        rule: Rule,
        reason: &str,
        evidence: Evidence<'_>,
        secrets: &[Zeroizing<String>],
    ) -> (Violation, Option<Durable>) {
        let mut violation = Violation::new(rule, reason, evidence, secrets);
        let key = device.to_string();
        let mut devices = lock(&self.inner.devices);
        let log = devices.entry(key.clone()).or_default();
        log.last_seq = log.last_seq.saturating_add(1);
        violation.seq = log.last_seq;
        log.kept.push_back(violation.clone());
        while log.kept.len() > self.inner.per_device {
            log.kept.pop_front();
        }
        let oldest_kept = log.kept.front().map_or(violation.seq, |v| v.seq);
        // Queued under the lock (without waiting), so that the writer gets a device's
        // violations in the order of their numbers.
        let durable = self.inner.store.as_ref().and_then(|store| {
            match Write::violation(&key, violation.seq, &violation, oldest_kept) {
                Ok(write) => Some(store.queue(write)),
                Err(e) => {
                    tracing::error!(target: "x_sim", "cannot store violation {} of {device}: {e}", violation.seq);
                    None
                }
            }
        });
        drop(devices);
        self.inner.live.violation(device, &violation);
        tracing::debug!(
            target: "x_sim",
            "{device}: violation {} ({}): {}",
            violation.seq,
            rule.name(),
            prefix(&violation.reason, 400)
        );
        (violation, durable)
    }

    /// The device's violations kept, oldest first.
    pub fn of(&self, device: &DeviceIdentity) -> Vec<Violation> {
        lock(&self.inner.devices)
            .get(&device.to_string())
            .map(|log| log.kept.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// How many violations the device has had, including those dropped.
    pub fn count(&self, device: &DeviceIdentity) -> u64 {
        lock(&self.inner.devices)
            .get(&device.to_string())
            .map_or(0, |log| log.last_seq)
    }

    /// How many of the device's violations were dropped to keep the newest.
    pub fn dropped(&self, device: &DeviceIdentity) -> u64 {
        lock(&self.inner.devices)
            .get(&device.to_string())
            .map_or(0, |log| log.last_seq - log.kept.len() as u64)
    }

    /// How many violations are kept per device.
    pub fn per_device(&self) -> usize {
        self.inner.per_device
    }

    /// The live feed each violation is published to as it is recorded; the platform
    /// publishes its messages to the same one, so that a listener sees them in order.
    pub fn live(&self) -> &Live {
        &self.inner.live
    }
}

impl super::Platform {
    /// The rules the device broke, oldest first: the newest
    /// [`PlatformConfig::violations_per_device`](super::PlatformConfig::violations_per_device)
    /// of them.
    pub fn violations(&self, device: &DeviceIdentity) -> Vec<Violation> {
        self.inner.violations.of(device)
    }

    /// How many rules the device has broken, including violations dropped to keep the newest:
    /// 0 for a device that behaves.
    pub fn violation_count(&self, device: &DeviceIdentity) -> u64 {
        self.inner.violations.count(device)
    }

    /// How many of the device's violations were dropped to keep the newest.
    pub fn violations_dropped(&self, device: &DeviceIdentity) -> u64 {
        self.inner.violations.dropped(device)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn secrets() -> Vec<Zeroizing<String>> {
        vec![Zeroizing::new(
            "326086233FAB8A96566796551EB1DFF8".to_owned(),
        )]
    }

    #[test]
    fn rule_names_are_unique_and_parse_back() {
        let mut names: Vec<&str> = Rule::ALL.iter().map(|r| r.name()).collect();
        for rule in Rule::ALL {
            assert_eq!(rule.name().parse::<Rule>(), Ok(*rule));
            assert_eq!(serde_json::to_value(rule).unwrap(), json!(rule.name()));
        }
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Rule::ALL.len());
        assert!("nonsense".parse::<Rule>().is_err());
    }

    #[test]
    fn secrets_are_redacted_in_any_case() {
        let mut v = json!({
            "DeviceSecret": "anything",
            "password": "p",
            "note": "key 326086233fab8a96566796551eb1dff8 here",
            "list": ["326086233FAB8A96566796551EB1DFF8"],
        });
        redact(&mut v, &secrets());
        assert_eq!(
            v,
            json!({
                "DeviceSecret": "[redacted]",
                "password": "[redacted]",
                "note": "key [redacted] here",
                "list": ["[redacted]"],
            })
        );
    }

    #[test]
    fn frames_are_read_for_what_they_say() {
        let bytes = br#"{"MessageId":7,"HeaderCtrl":16,"Payload":{},"Version":"1.0"}"#;
        let v = Violation::new(
            Rule::UnreadableFrame,
            "Version",
            Evidence::of("t", bytes),
            &[],
        );
        assert_eq!(v.header_ctrl, Some(HeaderCtrl::PropertyReport));
        assert_eq!(v.message_id, Some(MessageId::from(7u32)));
        assert_eq!(v.frame["Version"], json!("1.0"));
        // Not JSON: the text; too long: its first bytes, marked.
        let v = Violation::new(
            Rule::UnreadableFrame,
            "x",
            Evidence::of("t", b"\xffab"),
            &[],
        );
        assert_eq!(v.frame, json!("\u{fffd}ab"));
        let long = "é".repeat(FRAME_LIMIT);
        let v = Violation::new(
            Rule::UnreadableFrame,
            "x",
            Evidence::of("t", long.as_bytes()),
            &[],
        );
        assert!(v.truncated);
        assert_eq!(v.frame.as_str().unwrap().len(), FRAME_LIMIT);
        // A long frame that is JSON: its text cut, what it says still read.
        let big = format!(
            r#"{{"MessageId":9,"HeaderCtrl":16,"Payload":{{"x":"{}"}},"Version":"2.0"}}"#,
            "a".repeat(FRAME_LIMIT)
        );
        let v = Violation::new(
            Rule::ThingModel,
            "x",
            Evidence::of("t", big.as_bytes()),
            &[],
        );
        assert!(v.truncated);
        assert_eq!(v.frame.as_str().unwrap().len(), FRAME_LIMIT);
        assert_eq!(v.message_id, Some(MessageId::from(9u32)));
    }

    #[test]
    fn the_log_keeps_the_newest() {
        let log = ViolationLog::new(3);
        let device = DeviceIdentity::parse("7ED01E2A", "AA30C505", "PLUG0001").unwrap();
        for _ in 0..5 {
            log.record(&device, Rule::Plaintext, "r", Evidence::of("t", b"{}"), &[]);
        }
        let seqs: Vec<u64> = log.of(&device).iter().map(|v| v.seq).collect();
        assert_eq!(seqs, [3, 4, 5]);
        assert_eq!((log.count(&device), log.dropped(&device)), (5, 2));
    }
}
