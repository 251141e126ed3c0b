//! Lenient decoding helpers for exactly the places where PROTOCOL-NOTES.md says the platform
//! may send either a number or a string (ack and auth codes, the OTA MD5) or a JSON object either as an
//! object or as a string containing JSON (`Settings`).

use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};
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

/// Deserializes a string that may have been sent as a number.
pub(crate) fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Lenient::deserialize(d).map(Lenient::into_text)
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
