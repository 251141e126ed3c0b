//! Typed payloads of the protocol's commands, with the vendor's field names on the wire.
//!
//! Thing-model payloads (property report, event, service outputs) are product-specific and
//! come from the thing-model compiler; this module holds the fixed shapes around them.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::identity::{IdentityError, NodeEui, OpenId, ProductId, RegistrationType};
use crate::lenient::{self, Lenient};

use crate::secret::{DeviceSecret, SecretString};

/// HeaderCtrl 1, device to platform on `/sys/device/auth`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthRequest {
    /// The vendor account.
    #[serde(rename = "OpenID")]
    pub open_id: OpenId,
    /// The product.
    #[serde(rename = "ProductID")]
    pub product_id: ProductId,
    /// The device.
    #[serde(rename = "NodeEui")]
    pub node_eui: NodeEui,
    /// How the device is registered.
    #[serde(rename = "Type")]
    pub registration_type: RegistrationType,
}

/// The result code of an auth reply. Unlike ack codes these are numbers (strings are
/// accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthCode {
    /// 0: success; the reply carries the DeviceSecret.
    Ok,
    /// 1: the platform is busy; retry with backoff.
    Busy,
    /// 2: the product is not registered; check OpenID and ProductID.
    ProductNotRegistered,
    /// 4: the device is disabled or its NodeEui is illegal.
    DeviceRejected,
    /// 5: `Type` does not match the product's registration type.
    TypeMismatch,
    /// 6: device version and protocol version disagree.
    VersionMismatch,
    /// A code the protocol does not define.
    Unknown(i64),
}

impl AuthCode {
    /// The number that travels.
    pub fn code(self) -> i64 {
        match self {
            Self::Ok => 0,
            Self::Busy => 1,
            Self::ProductNotRegistered => 2,
            Self::DeviceRejected => 4,
            Self::TypeMismatch => 5,
            Self::VersionMismatch => 6,
            Self::Unknown(n) => n,
        }
    }

    /// The code for a number.
    pub fn from_code(code: i64) -> Self {
        match code {
            0 => Self::Ok,
            1 => Self::Busy,
            2 => Self::ProductNotRegistered,
            4 => Self::DeviceRejected,
            5 => Self::TypeMismatch,
            6 => Self::VersionMismatch,
            n => Self::Unknown(n),
        }
    }

    /// Whether trying again later may succeed (busy). Every other failure is final until
    /// the device's configuration or the platform's registry changes.
    pub fn is_retryable(self) -> bool {
        self == Self::Busy
    }
}

impl fmt::Display for AuthCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Self::Ok => "success",
            Self::Busy => "platform busy, retry later",
            Self::ProductNotRegistered => "product not registered (check OpenID and ProductID)",
            Self::DeviceRejected => "device disabled or NodeEui illegal",
            Self::TypeMismatch => "Type does not match the product's registration type",
            Self::VersionMismatch => "device version and protocol version disagree",
            Self::Unknown(_) => "undefined auth code",
        };
        write!(f, "{} ({what})", self.code())
    }
}

impl Serialize for AuthCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for AuthCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Lenient::deserialize(d)?;
        v.to_int()
            .map(Self::from_code)
            .ok_or_else(|| serde::de::Error::custom(format!("Code: expected a number, got {v:?}")))
    }
}

/// HeaderCtrl 1, platform to device on the device's downlink: the auth reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthReply {
    /// The result.
    #[serde(rename = "Code")]
    pub code: AuthCode,
    /// The DeviceSecret (present on success), as sent. See [`AuthReply::device_secret`].
    #[serde(
        rename = "DeviceSecret",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub device_secret: Option<SecretString>,
    /// For encrypted products: the session id.
    #[serde(rename = "SessionID", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// For encrypted products: the nonce.
    #[serde(rename = "Nonce", default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<i32>,
}

impl AuthReply {
    /// The DeviceSecret, validated as 32 hex characters.
    ///
    /// # Errors
    /// [`crate::identity::IdentityProblem::KeyLength`] if absent (length 0) or malformed.
    pub fn device_secret(&self) -> Result<DeviceSecret, IdentityError> {
        DeviceSecret::from_hex(self.device_secret.as_ref().map_or("", |s| s.expose()))
    }

    /// SessionID and Nonce, when both are present (encrypted products).
    pub fn session(&self) -> Option<SessionGrant> {
        Some(SessionGrant {
            session_id: self.session_id.clone()?,
            nonce: self.nonce?,
        })
    }
}

/// HeaderCtrl 3 on the downlink, and the session part of an auth reply: the inputs of the
/// SessionKey derivation ([`crate::crypto::derive_session_key`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionGrant {
    /// The session id.
    #[serde(rename = "SessionID")]
    pub session_id: String,
    /// The nonce (a Java `int` on the platform).
    #[serde(rename = "Nonce")]
    pub nonce: i32,
}

/// HeaderCtrl 7 on the downlink: passthrough data for the application.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PassthroughDownlink {
    /// The application data, as sent (usually a string).
    pub data: Value,
}

/// HeaderCtrl 8 on `firmware_report`: the device's firmware versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FirmwareReport {
    /// Hardware version.
    #[serde(rename = "HardVer")]
    pub hard_ver: String,
    /// Software version, compared with OTA targets by exact ASCII equality.
    #[serde(rename = "SoftVer")]
    pub soft_ver: String,
    /// Upgrade method; 2 = HTTP, the only one MQTT supports.
    #[serde(rename = "Type")]
    pub upgrade_type: u8,
    /// The module; absent means "default", the device's main firmware.
    #[serde(rename = "Module", default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

/// The module name the protocol uses when `Module` is absent.
pub const DEFAULT_MODULE: &str = "default";

/// HeaderCtrl 9 on `ota_notify`: a firmware update is available.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaNotify {
    /// Upgrade method (2 = HTTP).
    #[serde(rename = "Type")]
    pub upgrade_type: u8,
    /// HTTP download address.
    #[serde(rename = "Url")]
    pub url: String,
    /// Target software version.
    #[serde(rename = "SoftVer")]
    pub soft_ver: String,
    /// Image size in bytes.
    #[serde(rename = "SoftSize")]
    pub soft_size: u64,
    /// MD5 of the image: a hex string, though the vendor example sends a number. A number
    /// is kept as the digits it was written with (a 128-bit digest needs all 39 of them):
    /// decode the notify from its payload's JSON text ([`crate::Frame::payload_text`],
    /// [`crate::Frame::decrypted_payload_text`]) for that, since a parsed
    /// [`serde_json::Value`] holds such a number as a float (refused, naming the value).
    #[serde(rename = "MD5", deserialize_with = "lenient::md5")]
    pub md5: String,
    /// Download id, echoed in the ack.
    #[serde(rename = "DownID")]
    pub down_id: String,
    /// The image's file name.
    #[serde(
        rename = "firmwareName",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub firmware_name: Option<String>,
    /// The module; absent means "default".
    #[serde(rename = "Module", default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
}

impl OtaNotify {
    /// The module this update is for, "default" when absent.
    pub fn module(&self) -> &str {
        self.module.as_deref().unwrap_or(DEFAULT_MODULE)
    }

    /// The notify's payload as JSON text with `MD5` written as a JSON number, the form of
    /// the vendor document's example: the digest's 128-bit big-endian value in decimal (up
    /// to 39 digits, which a [`serde_json::Value`] cannot hold, hence text). `None` when
    /// the MD5 is neither 32 hex digits nor a decimal number of at most 128 bits.
    pub fn to_json_md5_as_number(&self) -> Option<String> {
        let md5 = self.md5.trim();
        let number = if md5.len() == 32 && md5.bytes().all(|b| b.is_ascii_hexdigit()) {
            u128::from_str_radix(md5, 16).ok()?
        } else if !md5.is_empty() && md5.bytes().all(|b| b.is_ascii_digit()) {
            md5.parse::<u128>().ok()?
        } else {
            return None;
        };
        let digits = number.to_string();
        let mut with_digits = self.clone();
        with_digits.md5.clone_from(&digits);
        let text = serde_json::to_string(&with_digits).ok()?;
        // Compact JSON writes the member exactly so; inside a string its quotes would be
        // escaped, so only the member itself matches.
        let quoted = format!("\"MD5\":\"{digits}\"");
        text.contains(&quoted)
            .then(|| text.replacen(&quoted, &format!("\"MD5\":{digits}"), 1))
    }
}

/// HeaderCtrl 9 on `ota_notify_ack`: the device confirms an OTA notify.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OtaNotifyAck {
    /// The notify's download id.
    #[serde(rename = "DownID")]
    pub down_id: String,
}

/// HeaderCtrl 14: a config report (device, on `config_report`) or a config set (platform,
/// on `down_config`). `Settings` is accepted as an object or as a string holding one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigSettings {
    /// Key/value settings.
    #[serde(
        rename = "Settings",
        deserialize_with = "lenient::object_or_json_string"
    )]
    pub settings: Map<String, Value>,
}

/// One entry of a property set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertyValue {
    /// The property's identifier.
    pub identify: String,
    /// Its new value; may arrive as a string and is coerced by the thing model.
    pub value: Value,
}

/// HeaderCtrl 20 on `model/property/set`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropertySet {
    /// The properties to set.
    pub params: Vec<PropertyValue>,
}

/// HeaderCtrl 21 on `model/service/{service}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceCall {
    /// The service's identifier (also the last topic level).
    #[serde(rename = "serviceIdentify")]
    pub service: String,
    /// Input parameters by identifier.
    #[serde(default)]
    pub params: Map<String, Value>,
}

/// HeaderCtrl 23 on `model/property/ask`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PropertyAsk {
    /// The identifiers asked for.
    pub params: Vec<String>,
}

/// The `Data` of a time-sync ack (HeaderCtrl 29).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeSyncData {
    /// Platform time in Unix milliseconds.
    pub timestamp: i64,
    /// The platform's time zone, e.g. "Asia/Shanghai".
    #[serde(default)]
    pub timezone: String,
}

/// A value with its Unix-millisecond time, as history entries carry them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimedValue {
    /// The value (for events, an object of outputs).
    pub value: Value,
    /// When it was observed, Unix milliseconds.
    pub time: i64,
}

/// One batch of a history upload: property snapshots and events, each keyed by identifier.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HistoryBatch {
    /// Property snapshots: identifier -> timed value.
    #[serde(default)]
    pub properties: Vec<Map<String, Value>>,
    /// Events: identifier -> timed outputs.
    #[serde(default)]
    pub events: Vec<Map<String, Value>>,
}

/// HeaderCtrl 27 on `model/history/data/report`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct HistoryUpload {
    /// The batches.
    pub params: Vec<HistoryBatch>,
}

/// The entries of a history upload that a "4001" names, by their batch's position in
/// `params`, with the rejections naming each: every "; "-separated rejection of the ack's
/// `Msg` that starts with `params[N].properties` or `params[N].events` (as x-sim names
/// them: `params[3].properties.power: 9003 is above the maximum 3500`). A `Msg` that names
/// no entry (a policy refusal, a payload or key the platform could not read) gives an
/// empty map: nothing in the upload is known to be at fault.
pub fn refused_history_batches(msg: &str) -> std::collections::BTreeMap<usize, Vec<String>> {
    let mut named: std::collections::BTreeMap<usize, Vec<String>> = Default::default();
    for rejection in msg.split("; ") {
        let rejection = rejection.trim();
        let Some(rest) = rejection.strip_prefix("params[") else {
            continue;
        };
        let Some((index, rest)) = rest.split_once(']') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        if rest.starts_with(".properties") || rest.starts_with(".events") {
            named.entry(index).or_default().push(rejection.to_owned());
        }
    }
    named
}

impl HistoryBatch {
    /// Every property entry as (identifier, timed value).
    ///
    /// # Errors
    /// The identifier whose entry is not `{value, time}`, and why.
    pub fn property_entries(&self) -> Result<Vec<(&str, TimedValue)>, (String, String)> {
        entries(&self.properties)
    }

    /// Every event entry as (identifier, timed outputs).
    ///
    /// # Errors
    /// The identifier whose entry is not `{value, time}`, and why.
    pub fn event_entries(&self) -> Result<Vec<(&str, TimedValue)>, (String, String)> {
        entries(&self.events)
    }
}

fn entries(maps: &[Map<String, Value>]) -> Result<Vec<(&str, TimedValue)>, (String, String)> {
    let mut out = Vec::new();
    for map in maps {
        for (id, v) in map {
            let tv = TimedValue::deserialize(v).map_err(|e| (id.clone(), e.to_string()))?;
            out.push((id.as_str(), tv));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::{Frame, HeaderCtrl, SessionKey};

    /// The MD5 of "The quick brown fox jumps over the lazy dog", and its 128-bit value.
    const HEX: &str = "9e107d9d372bb6826bd81d3542a419d6";
    const NUMBER: &str = "210103647840849757586127012022035159510";

    fn notify(md5: &str) -> OtaNotify {
        OtaNotify {
            upgrade_type: 2,
            url: "http://127.0.0.1:8080/firmware/AA30C505/default/1.1/a.bin".into(),
            soft_ver: "1.1".into(),
            soft_size: 43,
            md5: md5.into(),
            down_id: "E0C040B1".into(),
            firmware_name: Some("a.bin".into()),
            module: None,
        }
    }

    #[test]
    fn an_md5_sent_as_a_128_bit_number_is_read_with_every_digit() {
        assert_eq!(u128::from_str_radix(HEX, 16).unwrap().to_string(), NUMBER);
        let text = notify(HEX).to_json_md5_as_number().unwrap();
        assert!(text.contains(&format!("\"MD5\":{NUMBER},")), "{text}");
        // Plain: the frame's payload text, as it came.
        let frame = Frame::new(7u32, HeaderCtrl::OtaNotify, Value::Null);
        let bytes = frame.encode_with_payload_text(&text).unwrap();
        let payload = Frame::payload_text(&bytes).unwrap();
        assert_eq!(payload, text);
        let read: OtaNotify = serde_json::from_str(&payload).unwrap();
        assert_eq!(read.md5, NUMBER);
        assert_eq!(read.down_id, "E0C040B1");
        // Encrypted: the decrypted text, as it was encrypted.
        let key = SessionKey::from_bytes([9; 16]);
        let mut frame = Frame::new(8u32, HeaderCtrl::OtaNotify, Value::Null);
        frame.encrypt_payload_text(&key, &text);
        let wire = Frame::decode(&frame.encode()).unwrap();
        assert!(wire.payload.is_string());
        let read: OtaNotify =
            serde_json::from_str(&wire.decrypted_payload_text(&key).unwrap()).unwrap();
        assert_eq!(read.md5, NUMBER);
        // Strings and small numbers as before.
        let read: OtaNotify =
            serde_json::from_str(&serde_json::to_string(&notify(HEX)).unwrap()).unwrap();
        assert_eq!(read.md5, HEX);
        let small = text.replace(NUMBER, "232435456");
        let read: OtaNotify = serde_json::from_str(&small).unwrap();
        assert_eq!(read.md5, "232435456");
        let from_value: OtaNotify =
            serde_json::from_value(serde_json::from_str(&small).unwrap()).unwrap();
        assert_eq!(from_value.md5, "232435456");
    }

    #[test]
    fn a_parsed_value_that_lost_the_digits_is_refused_naming_the_md5() {
        let text = notify(HEX).to_json_md5_as_number().unwrap();
        // Parsed into a Value first, the number is a float: refused, never taken short.
        let value: Value = serde_json::from_str(&text).unwrap();
        assert!(value["MD5"].is_f64());
        let err = serde_json::from_value::<OtaNotify>(value).unwrap_err();
        assert!(err.to_string().contains("MD5"), "{err}");
        assert!(err.to_string().contains("not an integer"), "{err}");
        for (bad, says) in [
            ("true", "MD5 must be a string or an integer, got true"),
            ("1.5", "MD5 1.5 is not an integer"),
            ("null", "MD5 must be a string or an integer, got null"),
        ] {
            let err = serde_json::from_str::<OtaNotify>(&text.replace(NUMBER, bad)).unwrap_err();
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
        // Neither hex nor decimal: no numeric form.
        assert_eq!(notify("not-a-digest").to_json_md5_as_number(), None);
        assert_eq!(
            notify(NUMBER).to_json_md5_as_number(),
            notify(HEX).to_json_md5_as_number()
        );
    }

    #[test]
    fn a_4001_names_history_entries_by_their_batch_position_or_names_none() {
        let named = refused_history_batches(
            "params[3].properties.power: 9003 is above the maximum 3500; \
             params[0].events.overheat.action: missing; params[3].properties.colour: unknown property",
        );
        assert_eq!(named.keys().copied().collect::<Vec<_>>(), [0, 3]);
        assert_eq!(
            named[&3],
            [
                "params[3].properties.power: 9003 is above the maximum 3500",
                "params[3].properties.colour: unknown property"
            ]
        );
        for none in [
            "",
            "payload must be encrypted for this product",
            "Payload: expected a history upload {params: [{properties, events}]}, got x",
            "history uploads are paused",
            "params[x].properties.power: bad",
            "params[2]: no such list",
            "power: 9003 is above the maximum 3500",
        ] {
            assert!(refused_history_batches(none).is_empty(), "{none:?}");
        }
    }

    #[test]
    fn payload_text_and_encode_with_payload_text_refuse_what_is_not_json() {
        assert!(matches!(
            Frame::payload_text(b"{\"MessageId\":1}"),
            Err(crate::FrameError::Invalid { .. })
        ));
        assert!(Frame::payload_text(b"not json").is_err());
        let frame = Frame::new(1u32, HeaderCtrl::OtaNotify, Value::Null);
        assert!(matches!(
            frame.encode_with_payload_text("{\"MD5\":"),
            Err(crate::FrameError::Payload { .. })
        ));
        let key = SessionKey::from_bytes([1; 16]);
        assert!(frame.decrypted_payload_text(&key).is_err(), "not a string");
    }
}
