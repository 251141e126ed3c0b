//! Lenient decoding helpers for exactly the places where PROTOCOL-NOTES.md says the platform
//! may send either a number or a string (ack and auth codes, the OTA MD5) or a JSON object either as an
//! object or as a string containing JSON (`Settings`).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use std::fmt;

/// A value the platform may send as an integer or as a string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lenient {
    /// An integer.
    Int(i64),
    /// A string, as sent (it may or may not hold digits).
    Text(String),
}

impl Lenient {
    /// The value as text: integers in decimal, strings as sent.
    pub(crate) fn into_text(self) -> String {
        match self {
            Lenient::Int(n) => n.to_string(),
            Lenient::Text(s) => s,
        }
    }

    /// The value as an integer, parsing a string if needed.
    pub(crate) fn to_int(&self) -> Option<i64> {
        match self {
            Lenient::Int(n) => Some(*n),
            Lenient::Text(s) => s.trim().parse().ok(),
        }
    }
}

impl<'de> Deserialize<'de> for Lenient {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Lenient;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an integer or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Lenient, E> {
                Ok(Lenient::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Lenient, E> {
                i64::try_from(v)
                    .map(Lenient::Int)
                    .map_err(|_| E::custom(format!("integer {v} is out of range")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Lenient, E> {
                Ok(Lenient::Text(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Lenient, E> {
                Ok(Lenient::Text(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// Deserializes the OTA notify's MD5, which PROTOCOL-NOTES.md says may come as a string or as
/// a number: a string as sent, a number as the exact digits it was written with.
///
/// A 128-bit digest sent as a number does not fit the integers serde_json reads, and as a
/// float it would lose digits; so the field is taken as raw JSON text (serde_json's
/// `RawValue`). Decoded from the payload's text (`serde_json::from_str`, or
/// [`crate::Frame::payload_text`] first), every digit is kept. Decoded from a
/// [`serde_json::Value`], a number too large for 64 bits has already become a float: that
/// is refused, naming the value, rather than taken with digits missing.
pub(crate) fn md5<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let raw = Box::<RawValue>::deserialize(d)?;
    md5_text(raw.get()).map_err(de::Error::custom)
}

/// The MD5 text of a raw JSON value: a string's content, or an integer's digits.
fn md5_text(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.starts_with('"') {
        return serde_json::from_str::<String>(raw).map_err(|e| format!("MD5 {raw}: {e}"));
    }
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(raw.to_owned());
    }
    if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(format!(
            "MD5 {raw} is not an integer: a digest sent as a number keeps its digits only when \
             the notify is read from its payload text, not from a parsed JSON value"
        ));
    }
    Err(format!("MD5 must be a string or an integer, got {raw}"))
}

/// Deserializes a JSON object sent either as an object or as a string containing one.
pub(crate) fn object_or_json_string<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Map<String, Value>, D::Error> {
    match Value::deserialize(d)? {
        Value::Object(map) => Ok(map),
        Value::String(s) => match serde_json::from_str::<Value>(&s) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(other) => Err(de::Error::custom(format!(
                "expected a JSON object inside the string, got {other}"
            ))),
            Err(e) => Err(de::Error::custom(format!(
                "the string does not hold valid JSON: {e}"
            ))),
        },
        other => Err(de::Error::custom(format!(
            "expected an object or a string holding a JSON object, got {other}"
        ))),
    }
}
