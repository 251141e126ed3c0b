//! The JSON envelope every message but the full-HEX report travels in, its command codes
//! (`HeaderCtrl`), message ids, and the ack payload.
//!
//! Encoding is strict (MessageId, HeaderCtrl, Payload, Version in that order; Version
//! "2.0"); decoding is lenient exactly where PROTOCOL-NOTES.md settles it: MessageId may be a
//! number or a string, ack codes may be numbers or strings, and unknown `HeaderCtrl` values
//! are kept so they can be reported.

use std::fmt;

use serde::de::{self, DeserializeOwned, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::crypto::{self, CryptoError};
use crate::lenient::Lenient;
use crate::secret::SessionKey;

/// The only protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "2.0";

/// Why a frame could not be decoded, or its payload not read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Not JSON, or JSON that is not a frame (missing or mistyped field; the reason names it).
    #[error("frame: {reason}")]
    Invalid {
        /// serde_json's description, naming the field and the position.
        reason: String,
    },
    /// A well-formed frame of a protocol version other than "2.0".
    #[error("frame: Version is {found:?}, only \"2.0\" is supported")]
    Version {
        /// The version the frame carries.
        found: String,
    },
    /// The payload does not have the shape its command requires.
    #[error("frame HeaderCtrl {header_ctrl}: Payload {reason}")]
    Payload {
        /// The frame's command.
        header_ctrl: HeaderCtrl,
        /// What is wrong, naming the field.
        reason: String,
    },
    /// An encrypted payload could not be decrypted.
    #[error("frame HeaderCtrl {header_ctrl}: encrypted Payload: {source}")]
    Decrypt {
        /// The frame's command.
        header_ctrl: HeaderCtrl,
        /// The cipher's complaint.
        source: CryptoError,
    },
}

/// A message id. The vendor's field table says String while every example sends a number;
/// this crate emits numbers and accepts either, and an ack echoes the request's id in the
/// form it came in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MessageId {
    /// A numeric id (what this crate sends).
    Number(u64),
    /// A string id, numeric or not, as some platforms send.
    Text(String),
}

impl From<u32> for MessageId {
    fn from(n: u32) -> Self {
        Self::Number(n.into())
    }
}

impl From<u64> for MessageId {
    fn from(n: u64) -> Self {
        Self::Number(n)
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(s) => write!(f, "{s:?}"),
        }
    }
}

impl Serialize for MessageId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Number(n) => s.serialize_u64(*n),
            Self::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'de> Deserialize<'de> for MessageId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = MessageId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("MessageId as a non-negative integer or a string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<MessageId, E> {
                Ok(MessageId::Number(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<MessageId, E> {
                u64::try_from(v)
                    .map(MessageId::Number)
                    .map_err(|_| E::custom(format!("MessageId {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<MessageId, E> {
                Ok(MessageId::Text(v.to_owned()))
            }
        }
        d.deserialize_any(V)
    }
}

macro_rules! header_ctrl {
    ($( $(#[$doc:meta])* $name:ident = $code:literal, )*) => {
        /// The command code of a frame (`HeaderCtrl`): every command of the protocol, and
        /// [`HeaderCtrl::Unknown`] for a value the protocol does not define, kept so that it
        /// can be reported rather than rejected at decode time.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum HeaderCtrl {
            $( $(#[$doc])* $name, )*
            /// A value the protocol does not define.
            Unknown(i64),
        }

        impl HeaderCtrl {
            /// Every command the protocol defines, in numeric order.
            pub const ALL: &'static [HeaderCtrl] = &[$(HeaderCtrl::$name,)*];

            /// The number that travels in the frame.
            pub fn code(self) -> i64 {
                match self {
                    $( HeaderCtrl::$name => $code, )*
                    HeaderCtrl::Unknown(n) => n,
                }
            }

            /// The command for a number; [`HeaderCtrl::Unknown`] when undefined.
            pub fn from_code(code: i64) -> Self {
                match code {
                    $( $code => HeaderCtrl::$name, )*
                    other => HeaderCtrl::Unknown(other),
                }
            }
        }
    };
}

header_ctrl! {
    /// 1: auth request (device) and auth reply (platform).
    Auth = 1,
    /// 3: the platform issues a new SessionID and Nonce.
    SessionKeyUpdate = 3,
    /// 4: passthrough uplink.
    Uplink = 4,
    /// 7: passthrough downlink.
    Downlink = 7,
    /// 8: firmware version report.
    FirmwareReport = 8,
    /// 9: OTA notify (platform) and its ack (device).
    OtaNotify = 9,
    /// 13: the platform asks for the firmware version.
    AskFirmware = 13,
    /// 14: config ask, config set and config report.
    Config = 14,
    /// 16: property report (JSON), also the answer to a property ask.
    PropertyReport = 16,
    /// 17: event report (JSON).
    EventReport = 17,
    /// 18: property report (HEX).
    HexPropertyReport = 18,
    /// 19: event report (HEX).
    HexEventReport = 19,
    /// 20: property set (JSON).
    PropertySet = 20,
    /// 21: service call (JSON).
    ServiceCall = 21,
    /// 22: property set (HEX).
    HexPropertySet = 22,
    /// 23: property ask (JSON).
    PropertyAsk = 23,
    /// 24: service call (HEX).
    HexServiceCall = 24,
    /// 25: property ask (HEX).
    HexPropertyAsk = 25,
    /// 26: service-call reply (HEX).
    HexServiceReply = 26,
    /// 27: history upload (JSON).
    HistoryReport = 27,
    /// 28: full-HEX report (bare hex MQTT payload; only its ack is a frame).
    FullHexReport = 28,
    /// 29: time sync.
    TimeSync = 29,
}

impl HeaderCtrl {
    /// Whether a device frame with this command has an encrypted payload in an encrypted
    /// product. Auth (1), full HEX (28) and time sync (29) are never encrypted.
    pub fn is_encrypted_uplink(self) -> bool {
        !matches!(self, Self::Auth | Self::FullHexReport | Self::TimeSync)
    }
}

impl fmt::Display for HeaderCtrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(n) => write!(f, "{n} (unknown)"),
            known => write!(f, "{} ({known:?})", known.code()),
        }
    }
}

impl Serialize for HeaderCtrl {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(self.code())
    }
}

impl<'de> Deserialize<'de> for HeaderCtrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        i64::deserialize(d).map(Self::from_code)
    }
}

/// One protocol frame: `{"MessageId":..,"HeaderCtrl":..,"Payload":..,"Version":"2.0"}`.
///
/// `payload` is kept as JSON: an object for plain frames, a hex string for encrypted or HEX
/// frames, `""` for a time-sync request. [`Frame::payload_as`] reads it as a typed payload
/// from [`crate::payload`].
///
/// ```
/// use x_protocol::{AckPayload, Frame, HeaderCtrl, MessageId};
///
/// let text = br#"{"MessageId":"42","HeaderCtrl":16,"Payload":{"power":12.5},"Version":"2.0"}"#;
/// let frame = Frame::decode(text)?;
/// assert_eq!(frame.header_ctrl, HeaderCtrl::PropertyReport);
/// // The ack echoes the MessageId in the form it came (a string here).
/// let ack = Frame::ack_of(&frame, &AckPayload::success(None));
/// assert!(String::from_utf8(ack.encode())?.starts_with(r#"{"MessageId":"42""#));
/// # let _ = MessageId::from(1u64);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Frame {
    /// The message id; acks echo the request's.
    #[serde(rename = "MessageId")]
    pub message_id: MessageId,
    /// The command.
    #[serde(rename = "HeaderCtrl")]
    pub header_ctrl: HeaderCtrl,
    /// The payload.
    #[serde(rename = "Payload")]
    pub payload: Value,
    /// The protocol version; "2.0" for every frame this crate builds or accepts.
    #[serde(rename = "Version")]
    pub version: String,
}

impl Frame {
    /// A version "2.0" frame.
    pub fn new(message_id: impl Into<MessageId>, header_ctrl: HeaderCtrl, payload: Value) -> Self {
        Self {
            message_id: message_id.into(),
            header_ctrl,
            payload,
            version: PROTOCOL_VERSION.to_owned(),
        }
    }

    /// A frame whose payload is a typed payload from [`crate::payload`].
    ///
    /// # Errors
    /// [`FrameError::Payload`] if the payload cannot be represented as JSON (a map with
    /// non-string keys, say); the payload types of this crate always can.
    pub fn with_payload<P: Serialize>(
        message_id: impl Into<MessageId>,
        header_ctrl: HeaderCtrl,
        payload: &P,
    ) -> Result<Self, FrameError> {
        let value = serde_json::to_value(payload).map_err(|e| FrameError::Payload {
            header_ctrl,
            reason: e.to_string(),
        })?;
        Ok(Self::new(message_id, header_ctrl, value))
    }

    /// A HEX frame (HeaderCtrl 18, 19, 26 from the device; 22, 24, 25 from the platform)
    /// whose payload is `bytes` as lowercase hex text. The full-HEX report (28) is not a
    /// frame: its MQTT payload is [`crate::model::hex::to_hex`] of the bytes alone.
    pub fn hex(message_id: impl Into<MessageId>, header_ctrl: HeaderCtrl, bytes: &[u8]) -> Self {
        Self::new(
            message_id,
            header_ctrl,
            Value::String(crate::model::hex::to_hex(bytes)),
        )
    }

    /// The bytes of a HEX frame's payload (hex text, either case).
    ///
    /// # Errors
    /// [`FrameError::Payload`] if the payload is not a string of hex digits.
    pub fn hex_bytes(&self) -> Result<Vec<u8>, FrameError> {
        let Value::String(text) = &self.payload else {
            return Err(FrameError::Payload {
                header_ctrl: self.header_ctrl,
                reason: format!("expected a hex string, got {}", self.payload),
            });
        };
        crate::model::hex::from_hex(text).map_err(|e| FrameError::Payload {
            header_ctrl: self.header_ctrl,
            reason: e.to_string(),
        })
    }

    /// The ack of `request`: same MessageId (in the same form) and HeaderCtrl.
    pub fn ack_of(request: &Frame, ack: &AckPayload) -> Self {
        Self::new(
            request.message_id.clone(),
            request.header_ctrl,
            ack.to_value(),
        )
    }

    /// Decodes a frame and checks its version.
    ///
    /// # Errors
    /// [`FrameError::Invalid`] for malformed JSON or a missing or mistyped field (the reason
    /// names it); [`FrameError::Version`] for a version other than "2.0".
    pub fn decode(bytes: &[u8]) -> Result<Self, FrameError> {
        let frame: Frame = serde_json::from_slice(bytes).map_err(|e| FrameError::Invalid {
            reason: e.to_string(),
        })?;
        if frame.version != PROTOCOL_VERSION {
            return Err(FrameError::Version {
                found: frame.version,
            });
        }
        Ok(frame)
    }

    /// Encodes the frame as compact JSON, fields in protocol order.
    pub fn encode(&self) -> Vec<u8> {
        // A struct of a `Value` and plain fields always serializes.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// The JSON text of the `Payload` of the frame in `bytes`, exactly as it came: for a
    /// payload a [`Value`] cannot hold exactly, such as an OTA notify whose MD5 is a
    /// 128-bit number (a `Value` keeps it as a float, losing digits).
    ///
    /// # Errors
    /// [`FrameError::Invalid`] when `bytes` is not a JSON object with a `Payload`.
    pub fn payload_text(bytes: &[u8]) -> Result<String, FrameError> {
        #[derive(Deserialize)]
        struct PayloadOnly<'a> {
            #[serde(rename = "Payload", borrow)]
            payload: &'a RawValue,
        }
        serde_json::from_slice::<PayloadOnly<'_>>(bytes)
            .map(|f| f.payload.get().to_owned())
            .map_err(|e| FrameError::Invalid {
                reason: e.to_string(),
            })
    }

    /// Encodes the frame with `payload_text` (JSON text) written as its `Payload` as it
    /// is, in place of [`Frame::payload`]: for a payload a [`Value`] cannot hold exactly.
    ///
    /// # Errors
    /// [`FrameError::Payload`] when `payload_text` is not JSON.
    pub fn encode_with_payload_text(&self, payload_text: &str) -> Result<Vec<u8>, FrameError> {
        #[derive(Serialize)]
        struct WithText<'a> {
            #[serde(rename = "MessageId")]
            message_id: &'a MessageId,
            #[serde(rename = "HeaderCtrl")]
            header_ctrl: HeaderCtrl,
            #[serde(rename = "Payload")]
            payload: &'a RawValue,
            #[serde(rename = "Version")]
            version: &'a str,
        }
        let raw: Box<RawValue> =
            serde_json::from_str(payload_text).map_err(|e| FrameError::Payload {
                header_ctrl: self.header_ctrl,
                reason: format!("the payload text is not JSON: {e}"),
            })?;
        serde_json::to_vec(&WithText {
            message_id: &self.message_id,
            header_ctrl: self.header_ctrl,
            payload: &raw,
            version: &self.version,
        })
        .map_err(|e| FrameError::Payload {
            header_ctrl: self.header_ctrl,
            reason: e.to_string(),
        })
    }

    /// Reads the payload as `P`.
    ///
    /// # Errors
    /// [`FrameError::Payload`] naming the field that is missing or has the wrong type.
    pub fn payload_as<P: DeserializeOwned>(&self) -> Result<P, FrameError> {
        P::deserialize(&self.payload).map_err(|e| FrameError::Payload {
            header_ctrl: self.header_ctrl,
            reason: e.to_string(),
        })
    }

    /// Reads the payload as an ack.
    ///
    /// # Errors
    /// [`FrameError::Payload`] if it is not `{Code, Msg?, Data?}`.
    pub fn ack(&self) -> Result<AckPayload, FrameError> {
        self.payload_as()
    }

    /// Replaces the payload with its encryption under `key`: the uppercase hex of
    /// AES-128-ECB-PKCS#7 of the payload's JSON text.
    pub fn encrypt_payload(&mut self, key: &SessionKey) {
        let plain = zeroize::Zeroizing::new(serde_json::to_vec(&self.payload).unwrap_or_default());
        self.payload = Value::String(crypto::encrypt_hex(key, &plain));
    }

    /// Replaces the payload with the encryption under `key` of `payload_text` (JSON text,
    /// encrypted as it is): for a payload a [`Value`] cannot hold exactly.
    pub fn encrypt_payload_text(&mut self, key: &SessionKey, payload_text: &str) {
        self.payload = Value::String(crypto::encrypt_hex(key, payload_text.as_bytes()));
    }

    /// Returns the plain payload of a frame from an encrypted product.
    ///
    /// A string payload is decrypted and parsed as JSON; any other payload is returned as it
    /// is, since the platform may send plain frames to an encrypted device.
    ///
    /// # Errors
    /// [`FrameError::Decrypt`] if the ciphertext is bad, [`FrameError::Payload`] if the
    /// plaintext is not JSON.
    pub fn decrypted_payload(&self, key: &SessionKey) -> Result<Value, FrameError> {
        if !self.payload.is_string() {
            return Ok(self.payload.clone());
        }
        let plain = self.decrypt_text(key)?;
        serde_json::from_str(&plain).map_err(|e| FrameError::Payload {
            header_ctrl: self.header_ctrl,
            reason: format!("decrypted text is not JSON: {e}"),
        })
    }

    /// The plain JSON text of an encrypted (string) payload, exactly as it was encrypted:
    /// for a payload a [`Value`] cannot hold exactly.
    ///
    /// # Errors
    /// [`FrameError::Payload`] if the payload is not a string or the plaintext is not
    /// UTF-8 JSON, [`FrameError::Decrypt`] if the ciphertext is bad.
    pub fn decrypted_payload_text(&self, key: &SessionKey) -> Result<String, FrameError> {
        let text = self.decrypt_text(key)?;
        serde_json::from_str::<&RawValue>(&text).map_err(|e| FrameError::Payload {
            header_ctrl: self.header_ctrl,
            reason: format!("decrypted text is not JSON: {e}"),
        })?;
        Ok(text)
    }

    /// The decrypted text of a string payload (not yet checked to be JSON).
    fn decrypt_text(&self, key: &SessionKey) -> Result<String, FrameError> {
        let Value::String(cipher) = &self.payload else {
            return Err(FrameError::Payload {
                header_ctrl: self.header_ctrl,
                reason: format!(
                    "expected an encrypted (string) payload, got {}",
                    self.payload
                ),
            });
        };
        let plain = crypto::decrypt_hex(key, cipher).map_err(|source| FrameError::Decrypt {
            header_ctrl: self.header_ctrl,
            source,
        })?;
        String::from_utf8(plain).map_err(|e| FrameError::Payload {
            header_ctrl: self.header_ctrl,
            reason: format!("decrypted text is not JSON (not UTF-8): {e}"),
        })
    }
}

/// The code of an ack payload. Sent as a string ("200", "4001"); accepted as a number too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AckCode {
    /// "200": the operation succeeded.
    Success,
    /// "4001": the operation failed.
    Failure,
    /// Any other code, as sent.
    Other(String),
}

impl AckCode {
    /// The code as it travels.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Success => "200",
            Self::Failure => "4001",
            Self::Other(s) => s,
        }
    }

    /// Whether this is "200".
    pub fn is_success(&self) -> bool {
        *self == Self::Success
    }
}

impl fmt::Display for AckCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for AckCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AckCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = Lenient::deserialize(d)?.into_text();
        Ok(match text.trim() {
            "200" => Self::Success,
            "4001" => Self::Failure,
            _ => Self::Other(text),
        })
    }
}

/// The payload of an ack: `{"Code":"200","Msg":"SUCCESS","Data":{..}}`, `Data` omitted when
/// absent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AckPayload {
    /// The result code.
    #[serde(rename = "Code")]
    pub code: AckCode,
    /// A human-readable message ("SUCCESS", or why it failed).
    #[serde(rename = "Msg", default)]
    pub msg: String,
    /// Output data, if any.
    #[serde(rename = "Data", default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl AckPayload {
    /// A "200" ack with `Msg` "SUCCESS" and optional data. Empty data objects are omitted,
    /// as the protocol asks.
    pub fn success(data: Option<Value>) -> Self {
        Self {
            code: AckCode::Success,
            msg: "SUCCESS".to_owned(),
            data: data.filter(|d| !matches!(d, Value::Object(m) if m.is_empty())),
        }
    }

    /// A "4001" ack whose `Msg` says why.
    pub fn failure(msg: impl Into<String>) -> Self {
        Self {
            code: AckCode::Failure,
            msg: msg.into(),
            data: None,
        }
    }

    /// The payload as JSON.
    pub fn to_value(&self) -> Value {
        // Strings and a `Value` always serialize.
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_fields_in_protocol_order() {
        let f = Frame::new(
            1231u32,
            HeaderCtrl::PropertyReport,
            json!({"temp":100,"humi":20}),
        );
        assert_eq!(
            String::from_utf8(f.encode()).unwrap(),
            r#"{"MessageId":1231,"HeaderCtrl":16,"Payload":{"temp":100,"humi":20},"Version":"2.0"}"#
        );
    }

    #[test]
    fn ack_echoes_string_message_id() {
        let req =
            Frame::decode(br#"{"MessageId":"abc","HeaderCtrl":20,"Payload":{},"Version":"2.0"}"#)
                .unwrap();
        let ack = Frame::ack_of(&req, &AckPayload::success(Some(json!({}))));
        assert_eq!(
            String::from_utf8(ack.encode()).unwrap(),
            r#"{"MessageId":"abc","HeaderCtrl":20,"Payload":{"Code":"200","Msg":"SUCCESS"},"Version":"2.0"}"#
        );
    }

    #[test]
    fn lenient_where_the_notes_say() {
        let f = Frame::decode(
            br#"{"MessageId":"192155183","HeaderCtrl":16,"Payload":{"Code":200,"Msg":"SUCCESS"},"Version":"2.0"}"#,
        )
        .unwrap();
        assert_eq!(f.message_id, MessageId::Text("192155183".into()));
        assert_eq!(f.ack().unwrap().code, AckCode::Success);
        let ack = Frame::ack_of(&f, &AckPayload::failure("temp: out of range"));
        assert!(String::from_utf8(ack.encode()).unwrap().starts_with(
            r#"{"MessageId":"192155183","HeaderCtrl":16,"Payload":{"Code":"4001","Msg":"temp: out of range"}"#
        ));
    }

    #[test]
    fn unknown_header_ctrl_is_kept() {
        let f = Frame::decode(br#"{"MessageId":1,"HeaderCtrl":99,"Payload":{},"Version":"2.0"}"#)
            .unwrap();
        assert_eq!(f.header_ctrl, HeaderCtrl::Unknown(99));
        assert_eq!(f.header_ctrl.to_string(), "99 (unknown)");
    }
}
