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
    /// MD5 of the image: a hex string, though the vendor example sends a number.
    #[serde(rename = "MD5", deserialize_with = "lenient::text")]
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
